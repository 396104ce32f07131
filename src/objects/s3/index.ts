/**
 * The S3 object store backend: every account's objects in ONE remote bucket of any S3-compatible
 * store (OpenStack Swift's s3api, MinIO, AWS S3), reached with the AWS SDK v3, path-style.
 * Buckets stay in the platform's SQLite (buckets.ts); their objects live remotely under
 *
 *   <prefix><bucket id>/<key>        bucket id = "bkt_" + 20 random hex digits, never reused
 *
 * so a key is always taken relative to the id of the calling account's own bucket (looked up
 * by account and name): no key, however crafted, can name another bucket's objects, since the
 * id is not part of the key and every remote name begins with the caller's bucket id and "/".
 * Content type, user metadata and ETags are the remote object's own; multipart uploads are the
 * remote's, with this store's limits (part sizes, counts) checked before it is asked.
 *
 * A body is received in full (memory up to `spoolMemoryBytes`, else a temp file) and checked
 * before one PUT with its length and Content-MD5: the remote stores all of it or nothing, so a
 * failed write leaves the previous object. A remote that times out, refuses connections or
 * answers 5xx becomes a 503 `object_backend_unavailable` (retryable); any other refusal a 502.
 * Must never: send a remote name that does not start with the caller's bucket namespace, return
 * a listed name outside it, or pass a remote error's body to a client unchecked.
 */
import { mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { Readable, Transform } from "node:stream";
import { createHash } from "node:crypto";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
  type Part,
} from "@aws-sdk/client-s3";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import { count, eq } from "drizzle-orm";
import type { OpenedDb } from "../../store/index.js";
import { objectUploads } from "../../store/schema.js";
import { BucketRegistry } from "../buckets.js";
import {
  DEFAULT_OBJECT_LIMITS,
  ObjectStoreError,
  assertKey,
  assertMetadata,
  noSuchKey,
  noSuchUpload,
  tooLarge,
  type BucketInfo,
  type CompletedPart,
  type GetResult,
  type ListOptions,
  type ListResult,
  type ObjectInfo,
  type ObjectLimits,
  type ObjectStore,
  type ObjectUsage,
  type PutOptions,
  type QuotaChange,
  type RangeRequest,
} from "../store.js";
import { spool, type Spooled } from "./spool.js";

/** Where the remote store is and how long to wait for it (each field with its unit). */
export interface S3BackendConfig {
  /** Base URL of the S3 API, e.g. http://127.0.0.1:8080 (Swift's proxy with s3api). */
  endpoint: string;
  region: string;
  /** The one remote bucket that holds every account's objects. */
  bucket: string;
  /** Prepended to every remote name (lets several platforms share a bucket); may be "". */
  prefix: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Create the remote bucket when it is missing (else a missing bucket is an error). */
  createBucket: boolean;
  /** Time to open a connection, ms. */
  connectTimeoutMs: number;
  /** Longest silence on an open connection, ms (a stalled remote). */
  idleTimeoutMs: number;
  /** Attempts per remote call, retries included (SDK standard retry: 5xx, throttling, timeouts). */
  maxAttempts: number;
  /** Bodies up to this size are received in memory, larger ones in a temp file, bytes. */
  spoolMemoryBytes: number;
  /** The remote's longest object name, bytes (S3 and Swift: 1024). Keys get this less the namespace. */
  remoteMaxKeyBytes: number;
  /** Sockets kept open to the remote. */
  maxSockets: number;
}

export const DEFAULT_S3_BACKEND: Omit<S3BackendConfig, "endpoint" | "bucket" | "accessKeyId" | "secretAccessKey"> = {
  region: "us-east-1",
  prefix: "",
  createBucket: true,
  connectTimeoutMs: 5_000,
  idleTimeoutMs: 30_000,
  maxAttempts: 3,
  spoolMemoryBytes: 1024 * 1024,
  remoteMaxKeyBytes: 1024,
  maxSockets: 64,
};

/** "bkt_" + 20 hex digits + "/". */
const BUCKET_NS_BYTES = 25;
const UPLOAD_ID = /^[A-Za-z0-9._~=+-]{1,512}$/;
const PREFIX = /^[A-Za-z0-9._\/-]{0,200}$/;
const DEFAULT_CONTENT_TYPE = "application/octet-stream";
const MIME_WORD = /^=\?UTF-8\?B\?([A-Za-z0-9+/]*={0,2})\?=$/i;

export class S3ObjectStore implements ObjectStore {
  readonly limits: ObjectLimits;
  readonly #config: S3BackendConfig;
  readonly #client: S3Client;
  readonly #buckets: BucketRegistry;
  readonly #o: OpenedDb;
  readonly #tmp: string;
  #ready: Promise<void> | undefined;

  constructor(init: { db: OpenedDb; tmpDir: string; config: S3BackendConfig; limits?: Partial<ObjectLimits> }) {
    const c = init.config;
    if (!PREFIX.test(c.prefix)) throw new ObjectStoreError("InvalidArgument", "bad_backend_config", 500, "objects.s3: the key prefix must be at most 200 of A-Z a-z 0-9 . _ / -");
    if (c.bucket === "") throw new ObjectStoreError("InvalidArgument", "bad_backend_config", 500, "objects.s3: no remote bucket configured");
    this.#config = c;
    const limits = { ...DEFAULT_OBJECT_LIMITS, ...init.limits };
    // The namespace takes its bytes from the remote's name limit.
    limits.maxKeyBytes = Math.min(limits.maxKeyBytes, c.remoteMaxKeyBytes - Buffer.byteLength(c.prefix) - BUCKET_NS_BYTES);
    this.limits = limits;
    this.#buckets = new BucketRegistry(init.db, limits);
    this.#o = init.db;
    this.#tmp = init.tmpDir;
    mkdirSync(this.#tmp, { recursive: true, mode: 0o700 });
    // Bodies a crash interrupted never reached the remote.
    for (const f of readdirSync(this.#tmp)) rmSync(join(this.#tmp, f), { force: true });
    this.#client = new S3Client({
      endpoint: c.endpoint,
      region: c.region,
      forcePathStyle: true,
      credentials: { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey },
      // Swift's s3api (and most S3-compatibles) reject the SDK's default CRC32 trailers.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      maxAttempts: c.maxAttempts,
      requestHandler: new NodeHttpHandler({ connectionTimeout: c.connectTimeoutMs, socketTimeout: c.idleTimeoutMs, httpAgent: { keepAlive: true, maxSockets: c.maxSockets }, httpsAgent: { keepAlive: true, maxSockets: c.maxSockets } }),
    });
  }

  async close(): Promise<void> {
    this.#client.destroy();
  }

  /** Checks once (until it succeeds) that the remote bucket exists, creating it when allowed. */
  #ensure(): Promise<void> {
    this.#ready ??= (async () => {
      const Bucket = this.#config.bucket;
      try {
        await this.#client.send(new HeadBucketCommand({ Bucket }));
      } catch (e) {
        const status = e instanceof S3ServiceException ? e.$metadata.httpStatusCode : undefined;
        if (status !== 404 || !this.#config.createBucket) throw translate(e, "head the remote bucket");
        try {
          await this.#client.send(new CreateBucketCommand({ Bucket }));
        } catch (e2) {
          if (!(e2 instanceof S3ServiceException && (e2.name === "BucketAlreadyOwnedByYou" || e2.name === "BucketAlreadyExists"))) throw translate(e2, "create the remote bucket");
        }
      }
    })().catch((e: unknown) => {
      this.#ready = undefined;
      throw e;
    });
    return this.#ready;
  }

  /** The remote names of a bucket's objects all start with this (the bucket id is never a client's input). */
  #ns(bucketId: string): string {
    return `${this.#config.prefix}${bucketId}/`;
  }

  async #send<T>(what: string, call: () => Promise<T>, notFound?: () => ObjectStoreError): Promise<T> {
    await this.#ensure();
    try {
      return await call();
    } catch (e) {
      throw translate(e, what, notFound);
    }
  }

  // --- buckets (SQLite; the remote needs none per account bucket) ---

  async createBucket(accountId: string, name: string): Promise<BucketInfo> {
    return this.#buckets.create(accountId, name);
  }

  async deleteBucket(accountId: string, name: string): Promise<void> {
    const b = this.#buckets.row(accountId, name);
    const hasUpload = this.#o.db.select({ id: objectUploads.id }).from(objectUploads).where(eq(objectUploads.bucketId, b.id)).limit(1).get() !== undefined;
    const objects = hasUpload ? undefined : await this.#send("list objects", () => this.#client.send(new ListObjectsV2Command({ Bucket: this.#config.bucket, Prefix: this.#ns(b.id), MaxKeys: 1 })));
    if (hasUpload || (objects?.Contents?.length ?? 0) > 0) throw new ObjectStoreError("BucketNotEmpty", "bucket_not_empty", 409, `objects: bucket "${name}" is not empty`);
    this.#buckets.remove(b.id);
  }

  async headBucket(accountId: string, name: string): Promise<BucketInfo> {
    return this.#buckets.head(accountId, name);
  }

  async listBuckets(accountId: string): Promise<BucketInfo[]> {
    return this.#buckets.list(accountId);
  }

  // --- objects ---

  /** The remote name of an account's key: checks the bucket is the caller's and the key is valid. */
  #remote(accountId: string, bucket: string, key: string): { Bucket: string; Key: string; bucketId: string } {
    const b = this.#buckets.row(accountId, bucket);
    assertKey(key, this.limits);
    return { Bucket: this.#config.bucket, Key: this.#ns(b.id) + key, bucketId: b.id };
  }

  #spool(body: AsyncIterable<Uint8Array>, limit: number, what: string, check: Pick<PutOptions, "contentLength" | "expectedSha256" | "expectedMd5Base64">): Promise<Spooled> {
    return spool(body, { limit, what, memoryBytes: this.#config.spoolMemoryBytes, tmpDir: this.#tmp, check });
  }

  async putObject(accountId: string, bucket: string, key: string, body: AsyncIterable<Uint8Array>, options: PutOptions = {}): Promise<ObjectInfo> {
    const r = this.#remote(accountId, bucket, key);
    const metadata = options.metadata ?? {};
    assertMetadata(metadata, this.limits);
    const got = await this.#spool(body, this.limits.maxObjectBytes, "object", options);
    try {
      const contentType = options.contentType ?? DEFAULT_CONTENT_TYPE;
      const res = await this.#send("put object", () => this.#client.send(new PutObjectCommand({ Bucket: r.Bucket, Key: r.Key, Body: got.body(), ContentLength: got.size, ContentMD5: got.md5.toString("base64"), ContentType: contentType, Metadata: encodeMetadata(metadata) })));
      const etag = stripQuotes(res.ETag ?? "");
      if (etag !== got.md5.toString("hex")) throw new ObjectStoreError("InternalError", "object_backend_failed", 502, `objects.s3: the remote stored "${key.slice(0, 200)}" with ETag ${etag.slice(0, 80)}, not the body's MD5`);
      return { key, size: got.size, etag, contentType, metadata, lastModified: new Date() };
    } finally {
      await got.release();
    }
  }

  /**
   * A copy within one account: the source read through this backend and written as a new object
   * (both names go through the account's own namespace). Bytes travel through the gateway: the
   * remote's own CopyObject is not used.
   */
  async copyObject(accountId: string, source: { bucket: string; key: string }, bucket: string, key: string, replace?: Pick<PutOptions, "contentType" | "metadata">): Promise<ObjectInfo> {
    this.#remote(accountId, bucket, key);
    const src = await this.getObject(accountId, source.bucket, source.key);
    const contentType = replace === undefined ? src.info.contentType : (replace.contentType ?? DEFAULT_CONTENT_TYPE);
    const metadata = replace === undefined ? src.info.metadata : (replace.metadata ?? {});
    return this.putObject(accountId, bucket, key, src.body, { contentType, metadata, contentLength: src.info.size });
  }

  /** Quotas are kept by the disk backend only (it holds every object's row); this one refuses. */
  usage(_accountId: string): ObjectUsage {
    throw quotasUnsupported();
  }

  setQuota(_accountId: string, _change: QuotaChange): ObjectUsage {
    throw quotasUnsupported();
  }

  async headObject(accountId: string, bucket: string, key: string): Promise<ObjectInfo> {
    const r = this.#remote(accountId, bucket, key);
    const h = await this.#send("head object", () => this.#client.send(new HeadObjectCommand({ Bucket: r.Bucket, Key: r.Key })), () => noSuchKey(key));
    return { key, size: h.ContentLength ?? 0, etag: stripQuotes(h.ETag ?? ""), contentType: h.ContentType ?? DEFAULT_CONTENT_TYPE, metadata: decodeMetadata(h.Metadata), lastModified: h.LastModified ?? new Date(0) };
  }

  async getObject(accountId: string, bucket: string, key: string, range?: RangeRequest): Promise<GetResult> {
    const r = this.#remote(accountId, bucket, key);
    let header: string | undefined;
    if (range !== undefined) {
      if ("suffix" in range ? !(range.suffix > 0) : range.start < 0 || (range.end !== undefined && range.end < range.start)) throw unsatisfiable(undefined);
      header = "suffix" in range ? `bytes=-${range.suffix}` : `bytes=${range.start}-${range.end ?? ""}`;
    }
    let res;
    try {
      res = await this.#send("get object", () => this.#client.send(new GetObjectCommand({ Bucket: r.Bucket, Key: r.Key, ...(header === undefined ? {} : { Range: header }) })), () => noSuchKey(key));
    } catch (e) {
      // A remote 416 does not say the size; S3 clients are told it (Content-Range: bytes */size).
      if (e instanceof ObjectStoreError && e.s3Code === "InvalidRange") throw unsatisfiable((await this.headObject(accountId, bucket, key).catch(() => undefined))?.size);
      throw e;
    }
    const body = res.Body as Readable | undefined;
    const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(res.ContentRange ?? "");
    const size = m !== null ? Number(m[3]) : (res.ContentLength ?? 0);
    const info: ObjectInfo = { key, size, etag: stripQuotes(res.ETag ?? ""), contentType: res.ContentType ?? DEFAULT_CONTENT_TYPE, metadata: decodeMetadata(res.Metadata), lastModified: res.LastModified ?? new Date(0) };
    let served: { start: number; end: number } | undefined;
    if (range !== undefined) {
      if (m !== null) served = { start: Number(m[1]), end: Number(m[2]) };
      else if (size === 0) {
        body?.destroy();
        throw unsatisfiable(0);
      } else served = { start: 0, end: size - 1 }; // the remote served it all: so was the range
    }
    let out: Readable = body ?? Readable.from([]);
    // A whole single-part object is checked against its ETag (its MD5) as it streams.
    if (served === undefined && /^[0-9a-f]{32}$/.test(info.etag) && body !== undefined) out = verifyMd5(body, info.etag);
    return { info, range: served, body: out };
  }

  async deleteObject(accountId: string, bucket: string, key: string): Promise<void> {
    const r = this.#remote(accountId, bucket, key);
    try {
      await this.#send("delete object", () => this.#client.send(new DeleteObjectCommand({ Bucket: r.Bucket, Key: r.Key })), () => noSuchKey(key));
    } catch (e) {
      // Idempotent, as S3: deleting a missing key succeeds.
      if (!(e instanceof ObjectStoreError && e.s3Code === "NoSuchKey")) throw e;
    }
  }

  async listObjects(accountId: string, bucket: string, options: ListOptions = {}): Promise<ListResult> {
    const b = this.#buckets.row(accountId, bucket);
    const prefix = options.prefix ?? "";
    const delimiter = options.delimiter === "" ? undefined : options.delimiter;
    const maxKeys = Math.max(0, Math.min(options.maxKeys ?? this.limits.maxListKeys, this.limits.maxListKeys));
    if (Buffer.byteLength(prefix) > this.limits.maxKeyBytes || Buffer.byteLength(options.after ?? "") > this.limits.maxKeyBytes || (delimiter !== undefined && Buffer.byteLength(delimiter) > this.limits.maxKeyBytes)) {
      throw new ObjectStoreError("InvalidArgument", "bad_list", 400, `objects: prefix, delimiter and marker are limited to ${this.limits.maxKeyBytes} bytes`);
    }
    const out: ListResult = { objects: [], commonPrefixes: [], isTruncated: false, nextAfter: undefined };
    if (maxKeys === 0) return out;
    const ns = this.#ns(b.id);
    const after = options.after !== undefined && options.after >= prefix ? options.after : undefined;
    const strip = (remote: string): string | undefined => {
      const name = decodeListed(remote);
      return name.startsWith(ns) ? name.slice(ns.length) : undefined;
    };
    let token: string | undefined;
    let entries = 0;
    for (let page = 0; ; page++) {
      if (page >= 100) throw new ObjectStoreError("ServiceUnavailable", "object_backend_failed", 502, "objects.s3: the remote listing did not advance");
      const res = await this.#send("list objects", () =>
        this.#client.send(new ListObjectsV2Command({ Bucket: this.#config.bucket, Prefix: ns + prefix, MaxKeys: maxKeys - entries, EncodingType: "url", ...(delimiter === undefined ? {} : { Delimiter: delimiter }), ...(token !== undefined ? { ContinuationToken: token } : after !== undefined ? { StartAfter: ns + after } : {}) })),
      );
      type Entry = { name: string; info?: ObjectInfo };
      const listed: Entry[] = [];
      for (const o of res.Contents ?? []) {
        const key = o.Key === undefined ? undefined : strip(o.Key);
        if (key === undefined) continue;
        listed.push({ name: key, info: { key, size: o.Size ?? 0, etag: stripQuotes(o.ETag ?? ""), contentType: "", metadata: {}, lastModified: o.LastModified ?? new Date(0) } });
      }
      for (const p of res.CommonPrefixes ?? []) {
        const cp = p.Prefix === undefined ? undefined : strip(p.Prefix);
        // A common prefix given as the marker was returned on the page before.
        if (cp !== undefined && cp !== options.after) listed.push({ name: cp });
      }
      listed.sort((x, y) => Buffer.compare(Buffer.from(x.name), Buffer.from(y.name)));
      for (const e of listed) {
        if (entries >= maxKeys) break;
        if (e.info !== undefined) out.objects.push(e.info);
        else out.commonPrefixes.push(e.name);
        out.nextAfter = e.name;
        entries++;
      }
      if (res.IsTruncated !== true || res.NextContinuationToken === undefined) return { ...out, nextAfter: undefined };
      if (entries >= maxKeys) return { ...out, isTruncated: true };
      token = res.NextContinuationToken;
    }
  }

  // --- multipart uploads (the remote's, with this store's limits) ---

  /**
   * Uploads in progress are also recorded here (table object_uploads, id = the remote's upload
   * id): an id answers only for the bucket and key it was created for, and a completed or
   * aborted upload takes no more parts (Swift's s3api keeps accepting parts for a completed
   * upload, so completing can be retried; S3 does not).
   */
  #upload(accountId: string, bucket: string, key: string, uploadId: string): { Bucket: string; Key: string; UploadId: string } {
    const r = this.#remote(accountId, bucket, key);
    if (!UPLOAD_ID.test(uploadId)) throw noSuchUpload(uploadId);
    const row = this.#o.db.select().from(objectUploads).where(eq(objectUploads.id, uploadId)).get();
    if (row === undefined || row.bucketId !== r.bucketId || row.key !== key) throw noSuchUpload(uploadId);
    return { Bucket: r.Bucket, Key: r.Key, UploadId: uploadId };
  }

  #dropUpload(uploadId: string): void {
    this.#o.db.delete(objectUploads).where(eq(objectUploads.id, uploadId)).run();
  }

  async createMultipartUpload(accountId: string, bucket: string, key: string, options: Pick<PutOptions, "contentType" | "metadata"> = {}): Promise<string> {
    const r = this.#remote(accountId, bucket, key);
    const metadata = options.metadata ?? {};
    assertMetadata(metadata, this.limits);
    const limit = this.limits.maxUploadsPerBucket;
    const n = this.#o.db.select({ n: count() }).from(objectUploads).where(eq(objectUploads.bucketId, r.bucketId)).get()?.n ?? 0;
    if (n >= limit) throw new ObjectStoreError("TooManyUploads", "too_many_uploads", 400, `objects: a bucket may have at most ${limit} multipart uploads in progress`);
    const contentType = options.contentType ?? DEFAULT_CONTENT_TYPE;
    const res = await this.#send("create upload", () => this.#client.send(new CreateMultipartUploadCommand({ Bucket: r.Bucket, Key: r.Key, ContentType: contentType, Metadata: encodeMetadata(metadata) })));
    const id = res.UploadId;
    if (id === undefined || !UPLOAD_ID.test(id)) throw new ObjectStoreError("InternalError", "object_backend_failed", 502, "objects.s3: the remote returned no usable upload id");
    this.#o.db.insert(objectUploads).values({ id, bucketId: r.bucketId, key, contentType, metadata: JSON.stringify(metadata), createdAt: Date.now() }).run();
    return id;
  }

  async uploadPart(accountId: string, bucket: string, key: string, uploadId: string, partNumber: number, body: AsyncIterable<Uint8Array>, options: Omit<PutOptions, "contentType" | "metadata"> = {}): Promise<{ etag: string; size: number }> {
    const u = this.#upload(accountId, bucket, key, uploadId);
    if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > this.limits.maxParts) throw new ObjectStoreError("InvalidArgument", "bad_part_number", 400, `objects: part number must be an integer from 1 to ${this.limits.maxParts}`);
    const got = await this.#spool(body, this.limits.maxPartBytes, "part", options);
    try {
      const res = await this.#send("upload part", () => this.#client.send(new UploadPartCommand({ ...u, PartNumber: partNumber, Body: got.body(), ContentLength: got.size, ContentMD5: got.md5.toString("base64") })), () => noSuchUpload(uploadId));
      return { etag: stripQuotes(res.ETag ?? got.md5.toString("hex")), size: got.size };
    } finally {
      await got.release();
    }
  }

  async completeMultipartUpload(accountId: string, bucket: string, key: string, uploadId: string, parts: CompletedPart[]): Promise<ObjectInfo> {
    const u = this.#upload(accountId, bucket, key, uploadId);
    if (parts.length === 0) throw new ObjectStoreError("MalformedXML", "no_parts", 400, "objects: a multipart upload needs at least one part");
    if (parts.length > this.limits.maxParts) throw new ObjectStoreError("InvalidArgument", "too_many_parts", 400, `objects: at most ${this.limits.maxParts} parts`);
    // 1. The parts the remote holds (sizes and ETags), to check this store's rules first.
    const stored = new Map<number, Part>();
    let marker: string | undefined;
    for (let page = 0; page <= Math.ceil(this.limits.maxParts / 1000); page++) {
      const res = await this.#send("list parts", () => this.#client.send(new ListPartsCommand({ ...u, MaxParts: 1000, ...(marker === undefined ? {} : { PartNumberMarker: marker }) })), () => noSuchUpload(uploadId));
      for (const p of res.Parts ?? []) if (p.PartNumber !== undefined) stored.set(p.PartNumber, p);
      if (res.IsTruncated !== true || res.NextPartNumberMarker === undefined) break;
      marker = res.NextPartNumberMarker;
    }
    let last = 0;
    let total = 0;
    const chosen: Array<{ partNumber: number; size: number; etag: string }> = [];
    for (const p of parts) {
      if (p.partNumber <= last) throw new ObjectStoreError("InvalidPartOrder", "bad_part_order", 400, "objects: parts must be listed in ascending order, each once");
      last = p.partNumber;
      const s = stored.get(p.partNumber);
      if (s === undefined || stripQuotes(s.ETag ?? "") !== stripQuotes(p.etag)) throw new ObjectStoreError("InvalidPart", "bad_part", 400, `objects: part ${p.partNumber} was not uploaded or its ETag differs`);
      total += s.Size ?? 0;
      chosen.push({ partNumber: p.partNumber, size: s.Size ?? 0, etag: stripQuotes(s.ETag ?? "") });
    }
    for (const [i, s] of chosen.entries()) {
      if (i < chosen.length - 1 && s.size < this.limits.minPartBytes) throw new ObjectStoreError("EntityTooSmall", "part_too_small", 400, `objects: part ${s.partNumber} has ${s.size} bytes; every part but the last needs at least ${this.limits.minPartBytes}`);
    }
    if (total > this.limits.maxMultipartObjectBytes) throw tooLarge("object", total, this.limits.maxMultipartObjectBytes);
    // 2. The remote assembles; 3. its result, as a HEAD sees it.
    try {
      await this.#send("complete upload", () => this.#client.send(new CompleteMultipartUploadCommand({ ...u, MultipartUpload: { Parts: chosen.map((p) => ({ PartNumber: p.partNumber, ETag: `"${p.etag}"` })) } })), () => noSuchUpload(uploadId));
    } catch (e) {
      if (e instanceof ObjectStoreError && e.s3Code === "NoSuchUpload") this.#dropUpload(uploadId);
      throw e;
    }
    this.#dropUpload(uploadId);
    return this.headObject(accountId, bucket, key);
  }

  async abortMultipartUpload(accountId: string, bucket: string, key: string, uploadId: string): Promise<void> {
    const u = this.#upload(accountId, bucket, key, uploadId);
    try {
      await this.#send("abort upload", () => this.#client.send(new AbortMultipartUploadCommand(u)), () => noSuchUpload(uploadId));
    } catch (e) {
      if (!(e instanceof ObjectStoreError && e.s3Code === "NoSuchUpload")) throw e;
    }
    this.#dropUpload(uploadId);
  }
}

function stripQuotes(etag: string): string {
  return etag.replace(/^"(.*)"$/, "$1");
}

function unsatisfiable(size: number | undefined): ObjectStoreError {
  return new ObjectStoreError("InvalidRange", "invalid_range", 416, size === undefined ? "objects: the range is not satisfiable" : `objects: the range is not satisfiable for an object of ${size} bytes`, size === undefined ? {} : { details: { size } });
}

/** Listed names arrive URL-encoded (EncodingType=url: XML cannot carry every key). */
function decodeListed(s: string): string {
  return decodeURIComponent(s.replace(/\+/g, "%20"));
}

/**
 * User metadata travels as x-amz-meta-* headers: values that are not plain printable ASCII (or
 * that have edge spaces, which HTTP trims, or look encoded) go as RFC 2047 words, as S3 does.
 */
export function encodeMetadata(m: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(m)) out[k] = /^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$/.test(v) && !v.startsWith("=?") ? v : v === "" ? "" : `=?UTF-8?B?${Buffer.from(v, "utf8").toString("base64")}?=`;
  return out;
}

export function decodeMetadata(m: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(m ?? {})) {
    const w = MIME_WORD.exec(v);
    out[k.toLowerCase()] = w === null ? v : Buffer.from(w[1]!, "base64").toString("utf8");
  }
  return out;
}

/** Passes bytes through and fails the stream at its end when their MD5 is not `expected`. */
function verifyMd5(body: Readable, expected: string): Readable {
  const h = createHash("md5");
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      h.update(chunk);
      cb(null, chunk);
    },
    flush(cb) {
      cb(h.digest("hex") === expected ? null : new ObjectStoreError("InternalError", "object_corrupt", 502, "objects.s3: the remote's bytes do not match the object's ETag"));
    },
  });
  body.on("error", (e) => t.destroy(e));
  t.on("close", () => body.destroy());
  return body.pipe(t);
}

const RETRYABLE_NAMES = new Set(["SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "RequestTimeoutException", "TimeoutError", "ThrottlingException"]);

/** A remote failure as this store's error: missing things as ours, outages as a retryable 503. */
function translate(e: unknown, what: string, notFound?: () => ObjectStoreError): ObjectStoreError {
  if (e instanceof ObjectStoreError) return e;
  if (e instanceof S3ServiceException) {
    const status = e.$metadata.httpStatusCode ?? 0;
    const name = e.name;
    if (notFound !== undefined && (name === "NoSuchKey" || name === "NoSuchUpload" || name === "NotFound" || status === 404) && name !== "NoSuchBucket") return notFound();
    if (name === "InvalidRange" || status === 416) return unsatisfiable(undefined);
    if (name === "InvalidPart") return new ObjectStoreError("InvalidPart", "bad_part", 400, `objects: the remote refused a part (${e.message.slice(0, 200)})`, { cause: e });
    if (name === "EntityTooSmall") return new ObjectStoreError("EntityTooSmall", "part_too_small", 400, `objects: the remote store's smallest part is larger than this part (${e.message.slice(0, 200)})`, { cause: e });
    if (name === "EntityTooLarge") return new ObjectStoreError("EntityTooLarge", "entity_too_large", 400, `objects: the remote store refused the size (${e.message.slice(0, 200)})`, { cause: e });
    if (status >= 500 || RETRYABLE_NAMES.has(name)) return unavailable(`${what}: the remote answered ${status} ${name}`, e);
    return new ObjectStoreError("InternalError", "object_backend_failed", 502, `objects.s3: ${what}: the remote refused (${status} ${name})`, { cause: e, details: { retryable: false } });
  }
  // No answer at all: refused connection, reset, DNS, timeout.
  const err = e as { name?: string; code?: string; message?: string };
  return unavailable(`${what}: ${err.code ?? err.name ?? "error"} ${String(err.message ?? "").slice(0, 200)}`.trim(), e);
}

function unavailable(message: string, cause: unknown): ObjectStoreError {
  return new ObjectStoreError("ServiceUnavailable", "object_backend_unavailable", 503, `objects.s3: ${message} (retry later)`, { cause, details: { retryable: true } });
}

function quotasUnsupported(): ObjectStoreError {
  return new ObjectStoreError("NotImplemented", "quota_unsupported", 501, "objects: per-account quotas are kept by the disk backend only; this server stores objects in an S3 backend");
}
