/**
 * The object store seam: buckets and objects per account, one interface for every backend
 * (disk/, the default; s3/, a remote S3 API such as Swift's s3api). The S3 API, bindings and jobs
 * talk only to this.
 * Every call names the account: a backend never lets one account's call touch another's bucket,
 * and a bucket of another account answers exactly like one that does not exist.
 * Must never: trust a name, key, range or metadata value that `assertKey` and friends have not
 * checked; hold a whole object in memory (bodies are streams).
 */
import type { Readable } from "node:stream";
import { ZerocellError } from "../errors.js";

/** Limits of the object store, each with its unit (defaults below follow S3 where S3 has one). */
export interface ObjectLimits {
  /** Largest object from one PUT, bytes. */
  maxObjectBytes: number;
  /** Largest object a multipart upload may assemble, bytes. */
  maxMultipartObjectBytes: number;
  /** Largest part, bytes. */
  maxPartBytes: number;
  /** Smallest part other than the last one, bytes (S3: 5 MiB). */
  minPartBytes: number;
  /** Highest part number (S3: 10,000). */
  maxParts: number;
  /** Longest key, bytes of UTF-8 (S3: 1024). */
  maxKeyBytes: number;
  /** User metadata (names + values of x-amz-meta-*), bytes of UTF-8 (S3: 2 KiB). */
  maxMetadataBytes: number;
  /** Buckets per account. */
  maxBucketsPerAccount: number;
  /** Entries (keys + common prefixes) per list page (S3: 1000). */
  maxListKeys: number;
  /** Multipart uploads in progress per bucket. */
  maxUploadsPerBucket: number;
  /** Default quota: bytes of objects one account may store (an admin may set another per account). */
  quotaBytes: number;
  /** Default quota: objects one account may store (an admin may set another per account). */
  quotaObjects: number;
}

export const DEFAULT_OBJECT_LIMITS: ObjectLimits = {
  maxObjectBytes: 5 * 1024 ** 3,
  maxMultipartObjectBytes: 50 * 1024 ** 3,
  maxPartBytes: 5 * 1024 ** 3,
  minPartBytes: 5 * 1024 ** 2,
  maxParts: 10_000,
  maxKeyBytes: 1024,
  maxMetadataBytes: 2048,
  maxBucketsPerAccount: 100,
  maxListKeys: 1000,
  maxUploadsPerBucket: 1000,
  quotaBytes: 1024 ** 4,
  quotaObjects: 10_000_000,
};

/** What an account stores and may store (its quota: its own override, else the server's default). */
export interface ObjectUsage {
  /** Bytes of the account's objects (each object counted at its size, shared content included). */
  bytes: number;
  objects: number;
  quota: { bytes: number; objects: number };
  /** The per-account overrides (null: the server's default applies). */
  override: { bytes: number | null; objects: number | null };
}

/** A per-account quota change: a number sets it, null goes back to the default, absent keeps it. */
export interface QuotaChange {
  bytes?: number | null;
  objects?: number | null;
}

export interface BucketInfo {
  name: string;
  createdAt: Date;
}

export interface ObjectInfo {
  key: string;
  size: number;
  /** Without quotes: MD5 hex, or `md5-of-md5s-N` for multipart objects. */
  etag: string;
  contentType: string;
  /** User metadata: lower-case names (without x-amz-meta-) → values. */
  metadata: Record<string, string>;
  lastModified: Date;
}

/** A byte range as asked: `bytes=a-b`, `bytes=a-`, or the last n bytes (`bytes=-n`). */
export type RangeRequest = { start: number; end?: number } | { suffix: number };

export interface GetResult {
  info: ObjectInfo;
  /** The bytes served, inclusive; undefined when the whole object is served. */
  range: { start: number; end: number } | undefined;
  /** The bytes (the range only). Destroy it if unread. */
  body: Readable;
}

export interface PutOptions {
  contentType?: string;
  metadata?: Record<string, string>;
  /** Bytes the body must have (Content-Length); more or fewer fails the put. */
  contentLength?: number;
  /** SHA-256 hex the body must have (a signed x-amz-content-sha256); else nothing is stored. */
  expectedSha256?: string;
  /** MD5 (base64, Content-MD5) the body must have. */
  expectedMd5Base64?: string;
}

export interface ListOptions {
  prefix?: string;
  delimiter?: string;
  /** List keys after this one (exclusive): a continuation token decoded, or StartAfter. */
  after?: string;
  maxKeys?: number;
}

export interface ListResult {
  objects: ObjectInfo[];
  commonPrefixes: string[];
  isTruncated: boolean;
  /** Where the next page starts (pass as `after`); set when truncated. */
  nextAfter: string | undefined;
}

export interface CompletedPart {
  partNumber: number;
  /** With or without quotes. */
  etag: string;
}

/** Buckets and objects per account. Implementations: DiskObjectStore (disk/), S3ObjectStore (s3/). */
export interface ObjectStore {
  readonly limits: ObjectLimits;
  createBucket(accountId: string, name: string): Promise<BucketInfo>;
  /** Refuses a bucket that still has objects or uploads (BucketNotEmpty). */
  deleteBucket(accountId: string, name: string): Promise<void>;
  headBucket(accountId: string, name: string): Promise<BucketInfo>;
  listBuckets(accountId: string): Promise<BucketInfo[]>;

  putObject(accountId: string, bucket: string, key: string, body: AsyncIterable<Uint8Array>, options?: PutOptions): Promise<ObjectInfo>;
  headObject(accountId: string, bucket: string, key: string): Promise<ObjectInfo>;
  getObject(accountId: string, bucket: string, key: string, range?: RangeRequest): Promise<GetResult>;
  /** Idempotent: deleting a missing key succeeds (S3). */
  deleteObject(accountId: string, bucket: string, key: string): Promise<void>;
  listObjects(accountId: string, bucket: string, options?: ListOptions): Promise<ListResult>;

  createMultipartUpload(accountId: string, bucket: string, key: string, options?: Pick<PutOptions, "contentType" | "metadata">): Promise<string>;
  uploadPart(accountId: string, bucket: string, key: string, uploadId: string, partNumber: number, body: AsyncIterable<Uint8Array>, options?: Omit<PutOptions, "contentType" | "metadata">): Promise<{ etag: string; size: number }>;
  completeMultipartUpload(accountId: string, bucket: string, key: string, uploadId: string, parts: CompletedPart[]): Promise<ObjectInfo>;
  abortMultipartUpload(accountId: string, bucket: string, key: string, uploadId: string): Promise<void>;

  /** Copies an object within the account (S3 CopyObject); metadata and type copied unless given. */
  copyObject(accountId: string, source: { bucket: string; key: string }, bucket: string, key: string, replace?: Pick<PutOptions, "contentType" | "metadata">): Promise<ObjectInfo>;

  /** The account's stored bytes and objects and its quota. */
  usage(accountId: string): ObjectUsage;
  /** Sets (or clears) the account's own quota. */
  setQuota(accountId: string, change: QuotaChange): ObjectUsage;

  close(): Promise<void>;
}

/**
 * An object store error. `s3Code` is the S3 error code the S3 API answers with (NoSuchKey,
 * InvalidRange, …); `code` is ours (snake case, like every ZerocellError).
 */
export class ObjectStoreError extends ZerocellError {
  readonly s3Code: string;
  constructor(s3Code: string, code: string, status: number, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(code, status, message, options);
    this.s3Code = s3Code;
  }
}

/**
 * A write that would take the account past its quota (S3 answers 403 with this code, as
 * S3-compatible stores do; the API answers 403 quota_exceeded). Nothing is stored.
 */
export function quotaExceeded(what: "bytes" | "objects", used: number, adding: number, limit: number): ObjectStoreError {
  const message = what === "bytes" ? `objects: storing ${adding} more bytes would exceed the account's quota of ${limit} bytes (${used} in use)` : `objects: one more object would exceed the account's quota of ${limit} objects (${used} stored)`;
  return new ObjectStoreError("QuotaExceeded", "quota_exceeded", 403, message, { details: { quota: what, limit, used } });
}

export const noSuchBucket = (name: string): ObjectStoreError => new ObjectStoreError("NoSuchBucket", "no_such_bucket", 404, `objects: no bucket named "${name.slice(0, 63)}"`);
export const noSuchKey = (key: string): ObjectStoreError => new ObjectStoreError("NoSuchKey", "no_such_key", 404, `objects: no object with key "${key.slice(0, 200)}"`);
export const noSuchUpload = (id: string): ObjectStoreError => new ObjectStoreError("NoSuchUpload", "no_such_upload", 404, `objects: no multipart upload "${id.slice(0, 64)}"`);

const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** S3's bucket naming rules (3-63 of a-z 0-9 . -, no "..", not an IP address, no reserved affixes). */
export function assertBucketName(name: string): void {
  const bad = (why: string) => new ObjectStoreError("InvalidBucketName", "bad_bucket_name", 400, `objects: bucket name "${name.slice(0, 63)}" ${why}`);
  if (!BUCKET_NAME.test(name)) throw bad("must be 3-63 characters of a-z, 0-9, \".\" and \"-\", starting and ending with a letter or digit");
  if (name.includes("..") || name.includes(".-") || name.includes("-.")) throw bad("must not contain \"..\", \".-\" or \"-.\"");
  if (/^\d+\.\d+\.\d+\.\d+$/.test(name)) throw bad("must not look like an IP address");
  if (name.startsWith("xn--") || name.startsWith("sthree-") || name.endsWith("-s3alias") || name.endsWith("--ol-s3")) throw bad("uses a prefix or suffix S3 reserves");
}

/** A key: 1..maxKeyBytes bytes of UTF-8, no NUL. Keys are names, never paths: no backend maps one to a file. */
export function assertKey(key: string, limits: ObjectLimits): void {
  const bytes = Buffer.byteLength(key, "utf8");
  if (bytes === 0) throw new ObjectStoreError("InvalidArgument", "bad_key", 400, "objects: the key is empty");
  if (bytes > limits.maxKeyBytes) throw new ObjectStoreError("KeyTooLongError", "key_too_long", 400, `objects: key of ${bytes} bytes exceeds the limit of ${limits.maxKeyBytes} bytes`);
  if (key.includes("\0")) throw new ObjectStoreError("InvalidArgument", "bad_key", 400, "objects: the key contains a NUL character");
  if (!isWellFormed(key)) throw new ObjectStoreError("InvalidArgument", "bad_key", 400, "objects: the key is not valid UTF-8 (lone surrogate)");
}

function isWellFormed(s: string): boolean {
  // String.prototype.isWellFormed is Node 20+; written out so the check is visible.
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (!(d >= 0xdc00 && d <= 0xdfff)) return false;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) return false;
  }
  return true;
}

const META_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]{1,128}$/;

/** User metadata: header-token names, printable values, total under maxMetadataBytes. */
export function assertMetadata(metadata: Record<string, string>, limits: ObjectLimits): void {
  let total = 0;
  for (const [name, value] of Object.entries(metadata)) {
    if (!META_NAME.test(name)) throw new ObjectStoreError("InvalidArgument", "bad_metadata", 400, `objects: metadata name "${name.slice(0, 64)}" is not a lower-case header token`);
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u0008\u000a-\u001f\u007f]/.test(value)) throw new ObjectStoreError("InvalidArgument", "bad_metadata", 400, `objects: metadata "${name}" has a control character`);
    total += Buffer.byteLength(name, "utf8") + Buffer.byteLength(value, "utf8");
  }
  if (total > limits.maxMetadataBytes) throw new ObjectStoreError("MetadataTooLarge", "metadata_too_large", 400, `objects: user metadata of ${total} bytes exceeds the limit of ${limits.maxMetadataBytes} bytes`);
}

export function tooLarge(what: string, size: number, limit: number): ObjectStoreError {
  return new ObjectStoreError("EntityTooLarge", "entity_too_large", 400, `objects: ${what} of ${size} bytes or more exceeds the limit of ${limit} bytes`, { details: { limit } });
}

/** A received body against what the request declared (length, SHA-256, MD5); a backend stores nothing that fails. */
export function assertBodyMatches(got: { size: number; sha256: string; md5: Buffer }, options: Pick<PutOptions, "contentLength" | "expectedSha256" | "expectedMd5Base64">): void {
  if (options.contentLength !== undefined && got.size !== options.contentLength) throw new ObjectStoreError("IncompleteBody", "incomplete_body", 400, `objects: the body has ${got.size} bytes, Content-Length said ${options.contentLength}`);
  if (options.expectedSha256 !== undefined && options.expectedSha256 !== got.sha256) throw new ObjectStoreError("XAmzContentSHA256Mismatch", "sha256_mismatch", 400, "objects: the body's SHA-256 differs from x-amz-content-sha256");
  if (options.expectedMd5Base64 !== undefined && options.expectedMd5Base64 !== got.md5.toString("base64")) throw new ObjectStoreError("BadDigest", "md5_mismatch", 400, "objects: the body's MD5 differs from Content-MD5");
}

/** Resolves a range against an object's size (inclusive bounds), or throws InvalidRange (416). */
export function resolveRange(range: RangeRequest, size: number): { start: number; end: number } {
  const unsatisfiable = () => new ObjectStoreError("InvalidRange", "invalid_range", 416, `objects: the range is not satisfiable for an object of ${size} bytes`, { details: { size } });
  if ("suffix" in range) {
    if (range.suffix <= 0 || size === 0) throw unsatisfiable();
    return { start: Math.max(0, size - range.suffix), end: size - 1 };
  }
  if (range.start >= size) throw unsatisfiable();
  const end = range.end === undefined ? size - 1 : Math.min(range.end, size - 1);
  if (end < range.start) throw unsatisfiable();
  return { start: range.start, end };
}

/** The smallest string greater than every string that starts with `prefix` (UTF-8 byte order). */
export function prefixEnd(prefix: string): string | undefined {
  const cps = [...prefix];
  while (cps.length > 0) {
    const last = cps.pop()!.codePointAt(0)!;
    // Skip the surrogate range: the next code point after U+D7FF in UTF-8 order is U+E000.
    const next = last === 0xd7ff ? 0xe000 : last + 1;
    if (next <= 0x10ffff) return cps.join("") + String.fromCodePoint(next);
  }
  return undefined;
}
