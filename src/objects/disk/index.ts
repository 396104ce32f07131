/**
 * The local-disk object store (the default backend): metadata in the platform's SQLite (tables
 * buckets, objects, object_uploads, object_upload_parts), bytes as content-addressed blobs:
 *
 *   DIR/objects/blobs/ab/cdef…   one file per distinct content (sha256), shared by objects
 *   DIR/objects/uploads/<id>/<n> parts of multipart uploads in progress
 *   DIR/objects/tmp/             bodies being received (emptied at start)
 *
 * A write streams to a temp file (hashing MD5 and SHA-256 as it goes), fsyncs it, renames it to
 * its hash, fsyncs the directory, and only then records the object row: a crash leaves the old
 * object or the new one, never a row without its bytes. A blob no row references any more is
 * unlinked in the same synchronous step that drops the last row (pinned while a write that
 * needs it is between its rename and its row), so a blob is never removed under a reader or a
 * writer; readers open the file before they return, so a later delete does not cut them off.
 * Must never: build a file path from a key, a bucket name or an upload id that is not 32 hex
 * digits (keys are names in SQLite, never paths).
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, existsSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, unlinkSync, closeSync, fstatSync } from "node:fs";
import { open, rm } from "node:fs/promises";
import { join } from "node:path";
import { Readable, Transform, pipeline } from "node:stream";
import { and, asc, count, eq, gt, gte, lt, sql } from "drizzle-orm";
import type { OpenedDb } from "../../store/index.js";
import { objects, objectUploadParts, objectUploads, objectUsage } from "../../store/schema.js";
import { BucketRegistry } from "../buckets.js";
import {
  DEFAULT_OBJECT_LIMITS,
  ObjectStoreError,
  assertKey,
  assertBodyMatches,
  assertMetadata,
  tooLarge,
  noSuchKey,
  noSuchUpload,
  prefixEnd,
  quotaExceeded,
  resolveRange,
  type BucketInfo,
  type CompletedPart,
  type GetResult,
  type ListOptions,
  type ListResult,
  type ObjectInfo,
  type ObjectLimits,
  type ObjectStore,
  type PutOptions,
  type QuotaChange,
  type RangeRequest,
  type ObjectUsage,
} from "../store.js";

const HEX64 = /^[0-9a-f]{64}$/;
const UPLOAD_ID = /^[0-9a-f]{32}$/;
const DEFAULT_CONTENT_TYPE = "application/octet-stream";

interface Received {
  tmp: string;
  size: number;
  sha256: string;
  md5: Buffer;
}

type ObjectRow = typeof objects.$inferSelect;

function toInfo(row: ObjectRow): ObjectInfo {
  return {
    key: row.key,
    size: row.size,
    etag: row.etag,
    contentType: row.contentType,
    metadata: JSON.parse(row.metadata) as Record<string, string>,
    lastModified: new Date(row.lastModified),
  };
}

function stripQuotes(etag: string): string {
  return etag.replace(/^"(.*)"$/, "$1");
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export class DiskObjectStore implements ObjectStore {
  readonly limits: ObjectLimits;
  readonly #o: OpenedDb;
  readonly #buckets: BucketRegistry;
  readonly #blobs: string;
  readonly #uploads: string;
  readonly #tmp: string;
  /** Blobs a write has renamed into place but not yet recorded (never garbage-collected). */
  readonly #pinned = new Map<string, number>();
  /** Uploads being completed: parts may not change under the assembly. */
  readonly #completing = new Set<string>();

  constructor(init: { db: OpenedDb; dir: string; limits?: Partial<ObjectLimits> }) {
    this.#o = init.db;
    this.limits = { ...DEFAULT_OBJECT_LIMITS, ...init.limits };
    this.#buckets = new BucketRegistry(init.db, this.limits);
    this.#blobs = join(init.dir, "blobs");
    this.#uploads = join(init.dir, "uploads");
    this.#tmp = join(init.dir, "tmp");
    for (const d of [this.#blobs, this.#uploads, this.#tmp]) mkdirSync(d, { recursive: true, mode: 0o700 });
    // Bodies a crash interrupted never became objects.
    for (const f of readdirSync(this.#tmp)) rmSync(join(this.#tmp, f), { force: true });
  }

  get #db() {
    return this.#o.db;
  }

  async close(): Promise<void> {}

  // --- buckets ---

  #bucketRow(accountId: string, name: string) {
    return this.#buckets.row(accountId, name);
  }

  async createBucket(accountId: string, name: string): Promise<BucketInfo> {
    return this.#buckets.create(accountId, name);
  }

  async deleteBucket(accountId: string, name: string): Promise<void> {
    const b = this.#bucketRow(accountId, name);
    const hasObject = this.#db.select({ k: objects.key }).from(objects).where(eq(objects.bucketId, b.id)).limit(1).get() !== undefined;
    const hasUpload = this.#db.select({ id: objectUploads.id }).from(objectUploads).where(eq(objectUploads.bucketId, b.id)).limit(1).get() !== undefined;
    if (hasObject || hasUpload) throw new ObjectStoreError("BucketNotEmpty", "bucket_not_empty", 409, `objects: bucket "${name}" is not empty`);
    this.#buckets.remove(b.id);
  }

  async headBucket(accountId: string, name: string): Promise<BucketInfo> {
    return this.#buckets.head(accountId, name);
  }

  async listBuckets(accountId: string): Promise<BucketInfo[]> {
    return this.#buckets.list(accountId);
  }

  // --- bytes on disk ---

  #blobPath(sha: string): string {
    if (!HEX64.test(sha)) throw new Error(`objects: "${sha}" is not a sha256 hex digest`);
    return join(this.#blobs, sha.slice(0, 2), sha.slice(2));
  }

  /** Streams a body to a temp file under `limit` bytes, hashing it; the file is fsync'd. */
  async #receive(body: AsyncIterable<Uint8Array>, limit: number, what: string, options: Pick<PutOptions, "contentLength" | "expectedSha256" | "expectedMd5Base64">): Promise<Received> {
    if (options.contentLength !== undefined && options.contentLength > limit) throw tooLarge(what, options.contentLength, limit);
    const tmp = join(this.#tmp, randomBytes(12).toString("hex"));
    const fh = await open(tmp, "wx", 0o600);
    const sha = createHash("sha256");
    const md5 = createHash("md5");
    let size = 0;
    try {
      for await (const chunk of body) {
        size += chunk.byteLength;
        if (size > limit) throw tooLarge(what, size, limit);
        sha.update(chunk);
        md5.update(chunk);
        await fh.write(chunk);
      }
      await fh.sync();
    } catch (e) {
      await fh.close().catch(() => {});
      await rm(tmp, { force: true });
      throw e;
    }
    await fh.close();
    const r: Received = { tmp, size, sha256: sha.digest("hex"), md5: md5.digest() };
    try {
      assertBodyMatches(r, options);
    } catch (e) {
      rmSync(tmp, { force: true });
      throw e;
    }
    return r;
  }

  #pin(sha: string): void {
    this.#pinned.set(sha, (this.#pinned.get(sha) ?? 0) + 1);
  }

  #unpin(sha: string): void {
    const n = (this.#pinned.get(sha) ?? 1) - 1;
    if (n <= 0) this.#pinned.delete(sha);
    else this.#pinned.set(sha, n);
  }

  /** Moves a received body to its blob (or drops it when the blob exists) and pins the blob. */
  async #storeBlob(r: Received): Promise<void> {
    const path = this.#blobPath(r.sha256);
    const dir = join(this.#blobs, r.sha256.slice(0, 2));
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // Synchronous from the existence check to the pin: a delete's unlink cannot fall between.
    this.#pin(r.sha256);
    if (existsSync(path)) unlinkSync(r.tmp);
    else renameSync(r.tmp, path);
    try {
      await fsyncDir(dir);
    } catch (e) {
      this.#unpin(r.sha256);
      throw e;
    }
  }

  /** Unlinks blobs no object references and no write has pinned (call inside the step that dropped the rows). */
  #collect(shas: Iterable<string>): void {
    for (const sha of shas) {
      if (this.#pinned.has(sha)) continue;
      const used = this.#db.select({ k: objects.key }).from(objects).where(eq(objects.sha256, sha)).limit(1).get();
      if (used === undefined) rmSync(this.#blobPath(sha), { force: true });
    }
  }

  /**
   * Records (or replaces) an object row for a stored, pinned blob, then unpins it. The account's
   * quota is checked and its usage counted in the same transaction as the row: two writes cannot
   * both pass a check that only one of them fits (better-sqlite3 transactions are synchronous).
   */
  #record(accountId: string, bucketId: string, key: string, r: { sha256: string; size: number; etag: string }, contentType: string, metadata: Record<string, string>): ObjectInfo {
    try {
      const row: ObjectRow = { bucketId, key, sha256: r.sha256, size: r.size, etag: r.etag, contentType, metadata: JSON.stringify(metadata), lastModified: Date.now() };
      const old = this.#o.sqlite.transaction(() => {
        const prev = this.#db.select({ sha256: objects.sha256, size: objects.size }).from(objects).where(and(eq(objects.bucketId, bucketId), eq(objects.key, key))).get();
        this.#charge(accountId, r.size - (prev?.size ?? 0), prev === undefined ? 1 : 0);
        this.#db.insert(objects).values(row).onConflictDoUpdate({ target: [objects.bucketId, objects.key], set: { sha256: row.sha256, size: row.size, etag: row.etag, contentType, metadata: row.metadata, lastModified: row.lastModified } }).run();
        return prev?.sha256;
      })();
      this.#unpin(r.sha256);
      if (old !== undefined && old !== r.sha256) this.#collect([old]);
      return toInfo(row);
    } catch (e) {
      this.#unpin(r.sha256);
      this.#collect([r.sha256]);
      throw e;
    }
  }

  // --- usage and quotas ---

  #usageRow(accountId: string) {
    return this.#db.select().from(objectUsage).where(eq(objectUsage.accountId, accountId)).get();
  }

  /**
   * Adds to the account's usage, or throws QuotaExceeded when a growth would pass its quota
   * (shrinking always passes: an account over a lowered quota can still delete and overwrite
   * smaller). Call inside the transaction that writes the object rows.
   */
  #charge(accountId: string, bytes: number, count: number): void {
    if (bytes === 0 && count === 0) return;
    const u = this.#usageRow(accountId);
    const usedBytes = u?.bytes ?? 0;
    const usedObjects = u?.objects ?? 0;
    const quotaBytes = u?.quotaBytes ?? this.limits.quotaBytes;
    const quotaObjects = u?.quotaObjects ?? this.limits.quotaObjects;
    if (count > 0 && usedObjects + count > quotaObjects) throw quotaExceeded("objects", usedObjects, count, quotaObjects);
    if (bytes > 0 && usedBytes + bytes > quotaBytes) throw quotaExceeded("bytes", usedBytes, bytes, quotaBytes);
    this.#db
      .insert(objectUsage)
      .values({ accountId, bytes: Math.max(0, bytes), objects: Math.max(0, count) })
      .onConflictDoUpdate({ target: objectUsage.accountId, set: { bytes: sql`max(0, ${objectUsage.bytes} + ${bytes})`, objects: sql`max(0, ${objectUsage.objects} + ${count})` } })
      .run();
  }

  /** Refuses early (before a body is received) a write of `bytes` that cannot fit; the commit checks again. */
  #assertRoom(accountId: string, bucketId: string, key: string, bytes: number | undefined): void {
    if (bytes === undefined) return;
    const prev = this.#db.select({ size: objects.size }).from(objects).where(and(eq(objects.bucketId, bucketId), eq(objects.key, key))).get();
    const u = this.usage(accountId);
    const grow = bytes - (prev?.size ?? 0);
    if (prev === undefined && u.objects + 1 > u.quota.objects) throw quotaExceeded("objects", u.objects, 1, u.quota.objects);
    if (grow > 0 && u.bytes + grow > u.quota.bytes) throw quotaExceeded("bytes", u.bytes, grow, u.quota.bytes);
  }

  usage(accountId: string): ObjectUsage {
    const u = this.#usageRow(accountId);
    return {
      bytes: u?.bytes ?? 0,
      objects: u?.objects ?? 0,
      quota: { bytes: u?.quotaBytes ?? this.limits.quotaBytes, objects: u?.quotaObjects ?? this.limits.quotaObjects },
      override: { bytes: u?.quotaBytes ?? null, objects: u?.quotaObjects ?? null },
    };
  }

  setQuota(accountId: string, change: QuotaChange): ObjectUsage {
    for (const v of [change.bytes, change.objects]) {
      if (v !== undefined && v !== null && !(Number.isSafeInteger(v) && v >= 0)) throw new ObjectStoreError("InvalidArgument", "bad_quota", 400, "objects: a quota is a whole number of bytes or objects, 0 or more");
    }
    const set: { quotaBytes?: number | null; quotaObjects?: number | null } = {};
    if (change.bytes !== undefined) set.quotaBytes = change.bytes;
    if (change.objects !== undefined) set.quotaObjects = change.objects;
    if (Object.keys(set).length > 0) this.#db.insert(objectUsage).values({ accountId, ...set }).onConflictDoUpdate({ target: objectUsage.accountId, set }).run();
    return this.usage(accountId);
  }

  // --- objects ---

  async putObject(accountId: string, bucket: string, key: string, body: AsyncIterable<Uint8Array>, options: PutOptions = {}): Promise<ObjectInfo> {
    const b = this.#bucketRow(accountId, bucket);
    assertKey(key, this.limits);
    const metadata = options.metadata ?? {};
    assertMetadata(metadata, this.limits);
    this.#assertRoom(accountId, b.id, key, options.contentLength);
    const r = await this.#receive(body, this.limits.maxObjectBytes, "object", options);
    await this.#storeBlob(r);
    return this.#record(accountId, b.id, key, { sha256: r.sha256, size: r.size, etag: r.md5.toString("hex") }, options.contentType ?? DEFAULT_CONTENT_TYPE, metadata);
  }

  async copyObject(accountId: string, source: { bucket: string; key: string }, bucket: string, key: string, replace?: Pick<PutOptions, "contentType" | "metadata">): Promise<ObjectInfo> {
    const src = this.#objectRow(accountId, source.bucket, source.key);
    const b = this.#bucketRow(accountId, bucket);
    assertKey(key, this.limits);
    const metadata = replace === undefined ? (JSON.parse(src.metadata) as Record<string, string>) : (replace.metadata ?? {});
    assertMetadata(metadata, this.limits);
    // The same content: no bytes move. Pinned (synchronously after the lookup) so a delete of the
    // source in between cannot unlink the blob before the new row refers to it.
    this.#pin(src.sha256);
    if (!existsSync(this.#blobPath(src.sha256))) {
      this.#unpin(src.sha256);
      throw noSuchKey(source.key);
    }
    return this.#record(accountId, b.id, key, { sha256: src.sha256, size: src.size, etag: src.etag }, replace === undefined ? src.contentType : (replace.contentType ?? DEFAULT_CONTENT_TYPE), metadata);
  }

  #objectRow(accountId: string, bucket: string, key: string): ObjectRow {
    const b = this.#bucketRow(accountId, bucket);
    assertKey(key, this.limits);
    const row = this.#db.select().from(objects).where(and(eq(objects.bucketId, b.id), eq(objects.key, key))).get();
    if (row === undefined) throw noSuchKey(key);
    return row;
  }

  async headObject(accountId: string, bucket: string, key: string): Promise<ObjectInfo> {
    return toInfo(this.#objectRow(accountId, bucket, key));
  }

  async getObject(accountId: string, bucket: string, key: string, range?: RangeRequest): Promise<GetResult> {
    const row = this.#objectRow(accountId, bucket, key);
    const info = toInfo(row);
    const resolved = range === undefined ? undefined : resolveRange(range, row.size);
    // Opened now, in the same step as the lookup: a delete or overwrite after this returns does
    // not take the bytes away from this reader.
    const fd = openSync(this.#blobPath(row.sha256), "r");
    if (fstatSync(fd).size !== row.size) {
      closeSync(fd);
      throw new ObjectStoreError("InternalError", "object_corrupt", 500, `objects: the blob of "${key.slice(0, 200)}" has the wrong size`);
    }
    const start = resolved?.start ?? 0;
    const end = resolved?.end ?? row.size - 1;
    let body: Readable;
    if (row.size === 0) {
      closeSync(fd);
      body = Readable.from([]);
    } else {
      body = createReadStream("", { fd, start, end, autoClose: true });
      if (resolved === undefined) {
        const check = verifySha256(row.sha256);
        pipeline(body, check, () => {});
        body = check;
      }
    }
    return { info, range: resolved, body };
  }

  async deleteObject(accountId: string, bucket: string, key: string): Promise<void> {
    const b = this.#bucketRow(accountId, bucket);
    assertKey(key, this.limits);
    const prev = this.#o.sqlite.transaction(() => {
      const row = this.#db.select({ sha256: objects.sha256, size: objects.size }).from(objects).where(and(eq(objects.bucketId, b.id), eq(objects.key, key))).get();
      if (row !== undefined) {
        this.#db.delete(objects).where(and(eq(objects.bucketId, b.id), eq(objects.key, key))).run();
        this.#charge(accountId, -row.size, -1);
      }
      return row?.sha256;
    })();
    if (prev !== undefined) this.#collect([prev]);
  }

  async listObjects(accountId: string, bucket: string, options: ListOptions = {}): Promise<ListResult> {
    const b = this.#bucketRow(accountId, bucket);
    const prefix = options.prefix ?? "";
    const delimiter = options.delimiter === "" ? undefined : options.delimiter;
    const maxKeys = Math.max(0, Math.min(options.maxKeys ?? this.limits.maxListKeys, this.limits.maxListKeys));
    if (Buffer.byteLength(prefix) > this.limits.maxKeyBytes || Buffer.byteLength(options.after ?? "") > this.limits.maxKeyBytes || (delimiter !== undefined && Buffer.byteLength(delimiter) > this.limits.maxKeyBytes)) {
      throw new ObjectStoreError("InvalidArgument", "bad_list", 400, `objects: prefix, delimiter and marker are limited to ${this.limits.maxKeyBytes} bytes`);
    }
    const end = prefix === "" ? undefined : prefixEnd(prefix);
    const out: ListResult = { objects: [], commonPrefixes: [], isTruncated: false, nextAfter: undefined };
    // `from` is exclusive (the last key or common prefix returned); `fromInclusive` after a skip.
    let cursor: { key: string; inclusive: boolean } | undefined = options.after === undefined || options.after < prefix ? (prefix === "" ? undefined : { key: prefix, inclusive: true }) : { key: options.after, inclusive: false };
    // A marker inside a common prefix already returned resumes after that whole prefix.
    if (cursor !== undefined && !cursor.inclusive && delimiter !== undefined && cursor.key.startsWith(prefix)) {
      const i = cursor.key.indexOf(delimiter, prefix.length);
      if (i >= 0) {
        const cp = cursor.key.slice(0, i + delimiter.length);
        if (cursor.key === cp) {
          const after = prefixEnd(cp);
          if (after === undefined) return out;
          cursor = { key: after, inclusive: true };
        }
      }
    }
    let entries = 0;
    const BATCH = Math.min(1000, maxKeys + 1);
    for (;;) {
      const conds = [eq(objects.bucketId, b.id)];
      if (cursor !== undefined) conds.push(cursor.inclusive ? gte(objects.key, cursor.key) : gt(objects.key, cursor.key));
      if (end !== undefined) conds.push(lt(objects.key, end));
      const rows = this.#db.select().from(objects).where(and(...conds)).orderBy(asc(objects.key)).limit(BATCH).all();
      if (rows.length === 0) return out;
      for (const row of rows) {
        if (delimiter !== undefined) {
          const i = row.key.indexOf(delimiter, prefix.length);
          if (i >= 0) {
            const cp = row.key.slice(0, i + delimiter.length);
            if (entries >= maxKeys) {
              out.isTruncated = true;
              return out;
            }
            out.commonPrefixes.push(cp);
            entries++;
            out.nextAfter = cp;
            const after = prefixEnd(cp);
            if (after === undefined) return out;
            cursor = { key: after, inclusive: true };
            break;
          }
        }
        if (entries >= maxKeys) {
          out.isTruncated = true;
          return out;
        }
        out.objects.push(toInfo(row));
        entries++;
        out.nextAfter = row.key;
        cursor = { key: row.key, inclusive: false };
      }
    }
  }

  // --- multipart uploads ---

  #uploadRow(accountId: string, bucket: string, key: string, uploadId: string) {
    const b = this.#bucketRow(accountId, bucket);
    if (!UPLOAD_ID.test(uploadId)) throw noSuchUpload(uploadId);
    const u = this.#db.select().from(objectUploads).where(eq(objectUploads.id, uploadId)).get();
    if (u === undefined || u.bucketId !== b.id || u.key !== key) throw noSuchUpload(uploadId);
    return u;
  }

  #partPath(uploadId: string, partNumber: number): string {
    // uploadId was checked against UPLOAD_ID and partNumber is an integer in range.
    return join(this.#uploads, uploadId, String(partNumber));
  }

  async createMultipartUpload(accountId: string, bucket: string, key: string, options: Pick<PutOptions, "contentType" | "metadata"> = {}): Promise<string> {
    const b = this.#bucketRow(accountId, bucket);
    assertKey(key, this.limits);
    const metadata = options.metadata ?? {};
    assertMetadata(metadata, this.limits);
    const n = this.#db.select({ n: count() }).from(objectUploads).where(eq(objectUploads.bucketId, b.id)).get()?.n ?? 0;
    if (n >= this.limits.maxUploadsPerBucket) throw new ObjectStoreError("TooManyUploads", "too_many_uploads", 400, `objects: a bucket may have at most ${this.limits.maxUploadsPerBucket} multipart uploads in progress`);
    const id = randomBytes(16).toString("hex");
    mkdirSync(join(this.#uploads, id), { mode: 0o700 });
    this.#db.insert(objectUploads).values({ id, bucketId: b.id, key, contentType: options.contentType ?? DEFAULT_CONTENT_TYPE, metadata: JSON.stringify(metadata), createdAt: Date.now() }).run();
    return id;
  }

  async uploadPart(accountId: string, bucket: string, key: string, uploadId: string, partNumber: number, body: AsyncIterable<Uint8Array>, options: Omit<PutOptions, "contentType" | "metadata"> = {}): Promise<{ etag: string; size: number }> {
    this.#uploadRow(accountId, bucket, key, uploadId);
    if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > this.limits.maxParts) throw new ObjectStoreError("InvalidArgument", "bad_part_number", 400, `objects: part number must be an integer from 1 to ${this.limits.maxParts}`);
    if (this.#completing.has(uploadId)) throw noSuchUpload(uploadId);
    const r = await this.#receive(body, this.limits.maxPartBytes, "part", options);
    // The upload may have been completed or aborted while the part arrived.
    if (this.#completing.has(uploadId) || this.#db.select({ id: objectUploads.id }).from(objectUploads).where(eq(objectUploads.id, uploadId)).get() === undefined) {
      rmSync(r.tmp, { force: true });
      throw noSuchUpload(uploadId);
    }
    renameSync(r.tmp, this.#partPath(uploadId, partNumber));
    await fsyncDir(join(this.#uploads, uploadId));
    const etag = r.md5.toString("hex");
    this.#db.insert(objectUploadParts).values({ uploadId, partNumber, size: r.size, etag, createdAt: Date.now() }).onConflictDoUpdate({ target: [objectUploadParts.uploadId, objectUploadParts.partNumber], set: { size: r.size, etag, createdAt: Date.now() } }).run();
    return { etag, size: r.size };
  }

  async completeMultipartUpload(accountId: string, bucket: string, key: string, uploadId: string, parts: CompletedPart[]): Promise<ObjectInfo> {
    const u = this.#uploadRow(accountId, bucket, key, uploadId);
    if (this.#completing.has(uploadId)) throw noSuchUpload(uploadId);
    if (parts.length === 0) throw new ObjectStoreError("MalformedXML", "no_parts", 400, "objects: a multipart upload needs at least one part");
    if (parts.length > this.limits.maxParts) throw new ObjectStoreError("InvalidArgument", "too_many_parts", 400, `objects: at most ${this.limits.maxParts} parts`);
    const stored = new Map(this.#db.select().from(objectUploadParts).where(eq(objectUploadParts.uploadId, uploadId)).all().map((p) => [p.partNumber, p]));
    let last = 0;
    let total = 0;
    const chosen: Array<{ partNumber: number; size: number; etag: string }> = [];
    for (const p of parts) {
      if (p.partNumber <= last) throw new ObjectStoreError("InvalidPartOrder", "bad_part_order", 400, "objects: parts must be listed in ascending order, each once");
      last = p.partNumber;
      const s = stored.get(p.partNumber);
      if (s === undefined || s.etag !== stripQuotes(p.etag)) throw new ObjectStoreError("InvalidPart", "bad_part", 400, `objects: part ${p.partNumber} was not uploaded or its ETag differs`);
      total += s.size;
      chosen.push(s);
    }
    for (const [i, s] of chosen.entries()) {
      if (i < chosen.length - 1 && s.size < this.limits.minPartBytes) throw new ObjectStoreError("EntityTooSmall", "part_too_small", 400, `objects: part ${s.partNumber} has ${s.size} bytes; every part but the last needs at least ${this.limits.minPartBytes}`);
    }
    if (total > this.limits.maxMultipartObjectBytes) throw tooLarge("object", total, this.limits.maxMultipartObjectBytes);
    this.#assertRoom(accountId, u.bucketId, key, total);
    this.#completing.add(uploadId);
    try {
      const self = this;
      async function* concat(): AsyncGenerator<Uint8Array> {
        for (const p of chosen) yield* createReadStream(self.#partPath(uploadId, p.partNumber));
      }
      const r = await this.#receive(concat(), this.limits.maxMultipartObjectBytes, "object", { contentLength: total });
      const etagMd5 = createHash("md5");
      for (const p of chosen) etagMd5.update(Buffer.from(p.etag, "hex"));
      const etag = `${etagMd5.digest("hex")}-${chosen.length}`;
      await this.#storeBlob(r);
      const info = this.#record(accountId, u.bucketId, key, { sha256: r.sha256, size: r.size, etag }, u.contentType, JSON.parse(u.metadata) as Record<string, string>);
      this.#dropUpload(uploadId);
      return info;
    } finally {
      this.#completing.delete(uploadId);
    }
  }

  async abortMultipartUpload(accountId: string, bucket: string, key: string, uploadId: string): Promise<void> {
    this.#uploadRow(accountId, bucket, key, uploadId);
    if (this.#completing.has(uploadId)) throw noSuchUpload(uploadId);
    this.#dropUpload(uploadId);
  }

  #dropUpload(uploadId: string): void {
    this.#o.sqlite.transaction(() => {
      this.#db.delete(objectUploadParts).where(eq(objectUploadParts.uploadId, uploadId)).run();
      this.#db.delete(objectUploads).where(eq(objectUploads.id, uploadId)).run();
    })();
    rmSync(join(this.#uploads, uploadId), { recursive: true, force: true });
  }
}


/** Passes bytes through and fails the stream at its end when their SHA-256 is not `expected`. */
function verifySha256(expected: string): Transform {
  const h = createHash("sha256");
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      h.update(chunk);
      cb(null, chunk);
    },
    flush(cb) {
      const got = h.digest("hex");
      cb(got === expected ? null : new ObjectStoreError("InternalError", "object_corrupt", 500, "objects: a blob's bytes no longer match its hash"));
    },
  });
}
