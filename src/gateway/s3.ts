/**
 * The S3-compatible API (its own HTTPS listener; path-style addressing: /BUCKET/KEY), so the AWS
 * SDK and `aws s3` work unchanged with `forcePathStyle` / `--endpoint-url`. HTTP only: every
 * request is authenticated with SigV4 (src/objects/sigv4.ts) against an account's access key,
 * then handed to the object store (src/objects) under that account. Errors become S3's XML
 * error documents here and nowhere else; unknown errors are a 500 InternalError with the request
 * id (the stack goes to the log only).
 * Must never: touch a bucket of an account other than the key's, answer differently for
 * another account's bucket and a missing one, read a body without a limit, or store a body
 * whose signed SHA-256 it does not match.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { createHash, randomBytes } from "node:crypto";
import { pipeline } from "node:stream/promises";
import { XMLParser } from "fast-xml-parser";
import type { Platform } from "../platform/index.js";
import { ObjectStoreError, noSuchKey, type ObjectInfo, type RangeRequest, type ObjectStore, type PutOptions } from "../objects/index.js";
import { verifySigV4, decodeAwsChunked, accessDenied, type Authenticated } from "../objects/sigv4.js";
import { isZerocellError } from "../errors.js";
import { runBoundObject, boundTarget } from "../platform/object-runs.js";
import { appHeaders } from "./app-handler.js";
import { log } from "../log.js";

const NS = "http://s3.amazonaws.com/doc/2006-03-01/";
/** Largest XML request body (CompleteMultipartUpload of 10,000 parts, DeleteObjects of 1,000 keys), bytes. */
const MAX_XML_BYTES = 2 * 1024 * 1024;
/** Keys per DeleteObjects request (S3: 1000). */
const MAX_DELETE_KEYS = 1000;

interface S3Response {
  status: number;
  headers?: Record<string, string>;
  body?: string | Buffer | NodeJS.ReadableStream;
}

// --- XML out: a few fixed shapes, text escaped here (control characters as character references) ---

function esc(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[&<>"'\u0000-\u0008\u000b\u000c\u000d\u000e-\u001f\ufffe\uffff]/g, (c) => `&#x${c.charCodeAt(0).toString(16)};`);
}
const el = (tag: string, inner: string | string[]): string => `<${tag}>${Array.isArray(inner) ? inner.join("") : inner}</${tag}>`;
const t = (tag: string, text: string | number | boolean): string => el(tag, esc(String(text)));
const doc = (root: string, inner: string[]): string => `<?xml version="1.0" encoding="UTF-8"?>\n<${root} xmlns="${NS}">${inner.join("")}</${root}>`;
const xml = (status: number, body: string, headers: Record<string, string> = {}): S3Response => ({ status, headers: { "content-type": "application/xml", ...headers }, body });

// --- XML in: fast-xml-parser, no DTDs ---

const xmlParser = new XMLParser({ ignoreAttributes: true, parseTagValue: false, trimValues: false, isArray: (name) => name === "Part" || name === "Object" });

function parseXml(raw: Buffer): Record<string, unknown> {
  const text = raw.toString("utf8");
  // Entity expansion bombs need a DTD; S3's request documents never have one.
  if (/<!DOCTYPE|<!ENTITY/i.test(text)) throw new ObjectStoreError("MalformedXML", "bad_xml", 400, "s3: DTDs are not accepted");
  try {
    return xmlParser.parse(text, true) as Record<string, unknown>;
  } catch (cause) {
    throw new ObjectStoreError("MalformedXML", "bad_xml", 400, "s3: the XML body is not well-formed", { cause });
  }
}

// --- request pieces ---

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(",") : v;
}

function etagHeader(etag: string): string {
  return `"${etag}"`;
}

function httpDate(d: Date): string {
  return d.toUTCString();
}

function isoDate(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, ".000Z");
}

function metadataOf(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (!name.startsWith("x-amz-meta-") || value === undefined) continue;
    out[name.slice("x-amz-meta-".length)] = Array.isArray(value) ? value.join(",") : value;
  }
  return out;
}

function objectHeaders(info: ObjectInfo): Record<string, string> {
  const h: Record<string, string> = {
    etag: etagHeader(info.etag),
    "last-modified": httpDate(info.lastModified),
    "content-type": info.contentType,
    "accept-ranges": "bytes",
  };
  for (const [k, v] of Object.entries(info.metadata)) h[`x-amz-meta-${k}`] = v;
  return h;
}

/** A single `bytes=` range; anything else (several ranges, bad syntax) means the whole object, as S3 does. */
function parseRange(value: string | undefined): RangeRequest | undefined {
  if (value === undefined) return undefined;
  const m = /^bytes=(\d{0,15})-(\d{0,15})$/.exec(value.trim());
  if (m === null) return undefined;
  const [, a, b] = m as unknown as [string, string, string];
  if (a === "" && b === "") return undefined;
  if (a === "") return { suffix: Number(b) };
  return b === "" ? { start: Number(a) } : { start: Number(a), end: Number(b) };
}

function etagList(v: string): string[] {
  return v.split(",").map((s) => s.trim().replace(/^W\//, "").replace(/^"(.*)"$/, "$1"));
}

/** RFC 9110 §13.2.2 order: If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since. */
function checkConditions(req: IncomingMessage, info: ObjectInfo, read: boolean): "ok" | "not-modified" {
  const failed = () => new ObjectStoreError("PreconditionFailed", "precondition_failed", 412, "s3: at least one of the preconditions you specified did not hold");
  const seconds = Math.floor(info.lastModified.getTime() / 1000);
  const ifMatch = header(req, "if-match");
  const ifNoneMatch = header(req, "if-none-match");
  if (ifMatch !== undefined) {
    const list = etagList(ifMatch);
    if (!list.includes("*") && !list.includes(info.etag)) throw failed();
  } else {
    const ius = header(req, "if-unmodified-since");
    const d = ius === undefined ? NaN : Date.parse(ius);
    if (!Number.isNaN(d) && seconds > Math.floor(d / 1000)) throw failed();
  }
  if (ifNoneMatch !== undefined) {
    const list = etagList(ifNoneMatch);
    if (list.includes("*") || list.includes(info.etag)) {
      if (read) return "not-modified";
      throw failed();
    }
  } else if (read) {
    const ims = header(req, "if-modified-since");
    const d = ims === undefined ? NaN : Date.parse(ims);
    if (!Number.isNaN(d) && seconds <= Math.floor(d / 1000)) return "not-modified";
  }
  return "ok";
}

async function readSmallBody(req: IncomingMessage, auth: Authenticated): Promise<Buffer> {
  const declared = Number(header(req, "content-length") ?? "0");
  if (declared > MAX_XML_BYTES) throw new ObjectStoreError("EntityTooLarge", "entity_too_large", 400, `s3: request document of ${declared} bytes exceeds ${MAX_XML_BYTES}`);
  const source = auth.payload.kind === "streaming" || auth.payload.kind === "streaming-unsigned" ? decodeAwsChunked(req, auth.payload) : req;
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of source) {
    n += c.byteLength;
    if (n > MAX_XML_BYTES) throw new ObjectStoreError("EntityTooLarge", "entity_too_large", 400, `s3: request document exceeds ${MAX_XML_BYTES} bytes`);
    parts.push(Buffer.from(c));
  }
  const raw = Buffer.concat(parts);
  if (auth.payload.kind === "sha256" && createHash("sha256").update(raw).digest("hex") !== auth.payload.sha256) {
    throw new ObjectStoreError("XAmzContentSHA256Mismatch", "sha256_mismatch", 400, "s3: the body's SHA-256 differs from x-amz-content-sha256");
  }
  return raw;
}

/** The body of a PUT as the store should receive it, with what must hold of it. */
function uploadBody(req: IncomingMessage, auth: Authenticated): { body: AsyncIterable<Uint8Array>; options: Omit<PutOptions, "contentType" | "metadata"> } {
  const md5 = header(req, "content-md5");
  const common = md5 === undefined ? {} : { expectedMd5Base64: md5 };
  if (auth.payload.kind === "streaming" || auth.payload.kind === "streaming-unsigned") {
    return { body: decodeAwsChunked(req, auth.payload), options: { ...common, contentLength: auth.payload.decodedLength } };
  }
  const cl = header(req, "content-length");
  if (cl === undefined || !/^\d{1,15}$/.test(cl)) throw new ObjectStoreError("MissingContentLength", "missing_content_length", 411, "s3: PUT needs a Content-Length");
  return { body: req, options: { ...common, contentLength: Number(cl), ...(auth.payload.kind === "sha256" ? { expectedSha256: auth.payload.sha256 } : {}) } };
}

function encodeKey(key: string, encoding: string | undefined): string {
  return encoding === "url" ? encodeURIComponent(key).replace(/%2F/g, "/") : key;
}

function parseMaxKeys(v: string | undefined, limit: number): number {
  if (v === undefined) return limit;
  if (!/^\d{1,9}$/.test(v)) throw new ObjectStoreError("InvalidArgument", "bad_max_keys", 400, "s3: max-keys must be a non-negative integer");
  return Math.min(Number(v), limit);
}

function decodeToken(token: string): string {
  const raw = Buffer.from(token, "base64url").toString("utf8");
  if (token.length > 4096 || !raw.startsWith("k:")) throw new ObjectStoreError("InvalidArgument", "bad_continuation_token", 400, "s3: the continuation token is not valid");
  return raw.slice(2);
}

const encodeToken = (after: string): string => Buffer.from(`k:${after}`, "utf8").toString("base64url");

// --- operations ---

async function listObjects(store: ObjectStore, account: string, bucket: string, q: Record<string, string>): Promise<S3Response> {
  const v2 = q["list-type"] === "2";
  const prefix = q.prefix ?? "";
  const delimiter = q.delimiter;
  const enc = q["encoding-type"];
  const maxKeys = parseMaxKeys(q["max-keys"], store.limits.maxListKeys);
  const after = v2 ? (q["continuation-token"] !== undefined ? decodeToken(q["continuation-token"]) : q["start-after"]) : q.marker;
  const r = await store.listObjects(account, bucket, { prefix, ...(delimiter === undefined ? {} : { delimiter }), ...(after === undefined || after === "" ? {} : { after }), maxKeys });
  const contents = r.objects.map((o) => el("Contents", [t("Key", encodeKey(o.key, enc)), t("LastModified", isoDate(o.lastModified)), t("ETag", etagHeader(o.etag)), t("Size", o.size), t("StorageClass", "STANDARD")]));
  const prefixes = r.commonPrefixes.map((p) => el("CommonPrefixes", t("Prefix", encodeKey(p, enc))));
  const head = [t("Name", bucket), t("Prefix", encodeKey(prefix, enc)), ...(delimiter === undefined ? [] : [t("Delimiter", encodeKey(delimiter, enc))]), t("MaxKeys", maxKeys), ...(enc === "url" ? [t("EncodingType", "url")] : []), t("IsTruncated", r.isTruncated)];
  if (v2) {
    const tokens = [...(q["continuation-token"] === undefined ? [] : [t("ContinuationToken", q["continuation-token"])]), ...(r.isTruncated && r.nextAfter !== undefined ? [t("NextContinuationToken", encodeToken(r.nextAfter))] : []), ...(q["start-after"] === undefined ? [] : [t("StartAfter", encodeKey(q["start-after"], enc))])];
    return xml(200, doc("ListBucketResult", [...head, t("KeyCount", r.objects.length + r.commonPrefixes.length), ...tokens, ...contents, ...prefixes]));
  }
  const marker = [t("Marker", encodeKey(q.marker ?? "", enc)), ...(r.isTruncated && r.nextAfter !== undefined ? [t("NextMarker", encodeKey(r.nextAfter, enc))] : [])];
  return xml(200, doc("ListBucketResult", [...head, ...marker, ...contents, ...prefixes]));
}

/**
 * A GET under a bound prefix: the object (whole, within the app's max_body_bytes) is the input of
 * the bound app's handler, whose response is the answer (its headers checked like any app's).
 */
async function runBinding(platform: Platform, account: string, bucket: string, key: string): Promise<S3Response | undefined> {
  const binding = platform.bindings.match(account, bucket, key);
  if (binding === undefined) return undefined;
  const limit = boundTarget(platform, binding).maxBodyBytes;
  const got = await platform.objects.getObject(account, bucket, key);
  if (got.info.size > limit) {
    got.body.destroy();
    throw new ObjectStoreError("EntityTooLarge", "object_too_large_for_app", 400, `s3: object of ${got.info.size} bytes exceeds the bound app's max_body_bytes of ${limit}`);
  }
  const parts: Buffer[] = [];
  for await (const c of got.body) parts.push(c as Buffer);
  const res = await runBoundObject(platform, binding, { bucket, info: got.info, body: Buffer.concat(parts) });
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(appHeaders(res.headers))) headers[k] = Array.isArray(v) ? v.join(", ") : v;
  headers["x-zerocell-binding"] = binding.id;
  headers["content-length"] = String(res.body.byteLength);
  return { status: res.status, headers, body: Buffer.from(res.body.buffer, res.body.byteOffset, res.body.byteLength) };
}

async function getObject(store: ObjectStore, account: string, bucket: string, key: string, req: IncomingMessage, q: Record<string, string>, head: boolean): Promise<S3Response> {
  const range = parseRange(header(req, "range"));
  if (head) {
    const info = await store.headObject(account, bucket, key);
    if (checkConditions(req, info, true) === "not-modified") return { status: 304, headers: { etag: etagHeader(info.etag), "last-modified": httpDate(info.lastModified) } };
    return { status: 200, headers: { ...objectHeaders(info), "content-length": String(info.size) } };
  }
  const got = await store.getObject(account, bucket, key, range);
  try {
    if (checkConditions(req, got.info, true) === "not-modified") {
      got.body.destroy();
      return { status: 304, headers: { etag: etagHeader(got.info.etag), "last-modified": httpDate(got.info.lastModified) } };
    }
  } catch (e) {
    got.body.destroy();
    throw e;
  }
  const headers = objectHeaders(got.info);
  // Presigned GETs may ask for response headers (S3's response-* parameters).
  for (const [param, name] of [["response-content-type", "content-type"], ["response-content-disposition", "content-disposition"], ["response-cache-control", "cache-control"], ["response-content-encoding", "content-encoding"], ["response-content-language", "content-language"], ["response-expires", "expires"]] as const) {
    const v = q[param];
    if (v !== undefined && v.length <= 1024 && !/[\r\n\0]/.test(v)) headers[name] = v;
  }
  if (got.range !== undefined) {
    headers["content-range"] = `bytes ${got.range.start}-${got.range.end}/${got.info.size}`;
    headers["content-length"] = String(got.range.end - got.range.start + 1);
    return { status: 206, headers, body: got.body };
  }
  headers["content-length"] = String(got.info.size);
  return { status: 200, headers, body: got.body };
}

async function putObject(store: ObjectStore, account: string, bucket: string, key: string, req: IncomingMessage, auth: Authenticated): Promise<S3Response> {
  const copySource = header(req, "x-amz-copy-source");
  if (copySource !== undefined) return copyObject(store, account, bucket, key, copySource, req, auth);
  // Conditional writes (If-None-Match: * = create only; If-Match = replace only that version).
  if (header(req, "if-none-match") !== undefined || header(req, "if-match") !== undefined) {
    const existing = await store.headObject(account, bucket, key).catch((e: unknown) => {
      if (e instanceof ObjectStoreError && e.s3Code === "NoSuchKey") return undefined;
      throw e;
    });
    if (existing === undefined) {
      if (header(req, "if-match") !== undefined) throw noSuchKey(key);
    } else checkConditions(req, existing, false);
  }
  const { body, options } = uploadBody(req, auth);
  const contentType = header(req, "content-type");
  const info = await store.putObject(account, bucket, key, body, { ...options, metadata: metadataOf(req), ...(contentType === undefined ? {} : { contentType }) });
  return { status: 200, headers: { etag: etagHeader(info.etag) } };
}

/**
 * CopyObject: `x-amz-copy-source: [/]BUCKET/KEY` (percent-encoded) of the same account (another
 * account's bucket is a missing one); metadata and content type copied, or replaced with
 * `x-amz-metadata-directive: REPLACE`. The key needs "read" as well as "write". Conditional
 * copies (x-amz-copy-source-if-*) and versions are not implemented (501).
 */
async function copyObject(store: ObjectStore, account: string, bucket: string, key: string, source: string, req: IncomingMessage, auth: Authenticated): Promise<S3Response> {
  if (!auth.key.scopes.includes("read")) throw accessDenied("this access key may not read the copy source");
  if (source.length > 3 * 1100) throw new ObjectStoreError("InvalidArgument", "bad_copy_source", 400, "s3: x-amz-copy-source is too long");
  if (Object.keys(req.headers).some((h) => h.startsWith("x-amz-copy-source-if-")) || source.includes("?versionId=")) {
    throw new ObjectStoreError("NotImplemented", "not_implemented", 501, "s3: conditional and versioned copies are not implemented");
  }
  let src: string;
  try {
    src = decodeURIComponent(source.startsWith("/") ? source.slice(1) : source);
  } catch {
    throw new ObjectStoreError("InvalidArgument", "bad_copy_source", 400, "s3: x-amz-copy-source is not valid percent-encoding");
  }
  const slash = src.indexOf("/");
  if (slash <= 0 || slash === src.length - 1) throw new ObjectStoreError("InvalidArgument", "bad_copy_source", 400, "s3: x-amz-copy-source must be BUCKET/KEY");
  const directive = (header(req, "x-amz-metadata-directive") ?? "COPY").toUpperCase();
  if (directive !== "COPY" && directive !== "REPLACE") throw new ObjectStoreError("InvalidArgument", "bad_metadata_directive", 400, "s3: x-amz-metadata-directive must be COPY or REPLACE");
  const contentType = header(req, "content-type");
  const replace = directive === "REPLACE" ? { metadata: metadataOf(req), ...(contentType === undefined ? {} : { contentType }) } : undefined;
  // A copy has no body; whatever was sent is not read.
  req.resume();
  const info = await store.copyObject(account, { bucket: src.slice(0, slash), key: src.slice(slash + 1) }, bucket, key, replace);
  return xml(200, doc("CopyObjectResult", [t("LastModified", isoDate(info.lastModified)), t("ETag", etagHeader(info.etag))]));
}

async function deleteObjects(store: ObjectStore, account: string, bucket: string, req: IncomingMessage, auth: Authenticated): Promise<S3Response> {
  const parsed = parseXml(await readSmallBody(req, auth));
  const del = parsed.Delete as { Object?: Array<{ Key?: unknown }>; Quiet?: unknown } | undefined;
  const objs = del?.Object ?? [];
  if (del === undefined || objs.length === 0) throw new ObjectStoreError("MalformedXML", "bad_xml", 400, "s3: Delete needs at least one Object");
  if (objs.length > MAX_DELETE_KEYS) throw new ObjectStoreError("MalformedXML", "too_many_keys", 400, `s3: at most ${MAX_DELETE_KEYS} keys per Delete`);
  const quiet = String(del.Quiet ?? "false") === "true";
  const out: string[] = [];
  for (const o of objs) {
    const key = typeof o.Key === "string" ? o.Key : String(o.Key ?? "");
    try {
      await store.deleteObject(account, bucket, key);
      if (!quiet) out.push(el("Deleted", t("Key", key)));
    } catch (e) {
      if (!(e instanceof ObjectStoreError) || e.status >= 500 || e.s3Code === "NoSuchBucket") throw e;
      out.push(el("Error", [t("Key", key), t("Code", e.s3Code), t("Message", e.message)]));
    }
  }
  return xml(200, doc("DeleteResult", out));
}

async function completeUpload(store: ObjectStore, account: string, bucket: string, key: string, uploadId: string, req: IncomingMessage, auth: Authenticated): Promise<S3Response> {
  const parsed = parseXml(await readSmallBody(req, auth));
  const parts = ((parsed.CompleteMultipartUpload as { Part?: Array<{ PartNumber?: unknown; ETag?: unknown }> } | undefined)?.Part ?? []).map((p) => {
    const n = Number(p.PartNumber);
    if (!Number.isInteger(n) || typeof p.ETag !== "string") throw new ObjectStoreError("MalformedXML", "bad_xml", 400, "s3: each Part needs a PartNumber and an ETag");
    return { partNumber: n, etag: p.ETag };
  });
  const info = await store.completeMultipartUpload(account, bucket, key, uploadId, parts);
  return xml(200, doc("CompleteMultipartUploadResult", [t("Location", `/${bucket}/${encodeURIComponent(key)}`), t("Bucket", bucket), t("Key", key), t("ETag", etagHeader(info.etag))]));
}

/** One S3 request: 1. authenticate, 2. address (bucket, key), 3. authorize, 4. run the operation. */
async function route(platform: Platform, req: IncomingMessage): Promise<S3Response> {
  const store = platform.objects;
  const method = req.method ?? "GET";
  // 1. authenticate
  const auth = await verifySigV4({ method, target: req.url ?? "/", headers: req.headers }, platform.accessKeys);
  const account = auth.key.accountId;
  const q = auth.query;
  // 2. address: /BUCKET[/KEY] (path-style); the key is everything after the bucket's slash
  if (!auth.path.startsWith("/")) throw new ObjectStoreError("InvalidURI", "bad_uri", 400, "s3: the path must start with /");
  const slash = auth.path.indexOf("/", 1);
  let bucket: string;
  let key: string | undefined;
  try {
    bucket = decodeURIComponent(slash < 0 ? auth.path.slice(1) : auth.path.slice(1, slash));
    key = slash < 0 || slash === auth.path.length - 1 ? undefined : decodeURIComponent(auth.path.slice(slash + 1));
  } catch {
    throw new ObjectStoreError("InvalidURI", "bad_uri", 400, "s3: the path is not valid percent-encoding");
  }
  // 3. authorize: reads need "read", everything else "write"
  const read = method === "GET" || method === "HEAD";
  if (!auth.key.scopes.includes(read ? "read" : "write")) throw accessDenied(`this access key may not ${read ? "read" : "write"}`);

  // 4. run
  if (bucket === "") {
    if (method !== "GET") throw new ObjectStoreError("MethodNotAllowed", "method_not_allowed", 405, "s3: only GET is allowed on /");
    const list = await store.listBuckets(account);
    return xml(200, doc("ListAllMyBucketsResult", [el("Owner", [t("ID", account), t("DisplayName", account)]), el("Buckets", list.map((b) => el("Bucket", [t("Name", b.name), t("CreationDate", isoDate(b.createdAt))])))]));
  }
  if (key === undefined) {
    switch (method) {
      case "PUT":
        await readSmallBody(req, auth); // CreateBucketConfiguration: the region is not ours to choose
        await store.createBucket(account, bucket);
        return { status: 200, headers: { location: `/${bucket}` } };
      case "HEAD":
        await store.headBucket(account, bucket);
        return { status: 200, headers: { "x-amz-bucket-region": "us-east-1" } };
      case "DELETE":
        await store.deleteBucket(account, bucket);
        return { status: 204 };
      case "POST":
        if ("delete" in q) return deleteObjects(store, account, bucket, req, auth);
        break;
      case "GET":
        if ("location" in q) {
          await store.headBucket(account, bucket);
          return xml(200, doc("LocationConstraint", []));
        }
        if ("uploads" in q || "versions" in q || "policy" in q || "acl" in q || "cors" in q || "lifecycle" in q || "tagging" in q) break;
        return listObjects(store, account, bucket, q);
    }
    throw new ObjectStoreError("NotImplemented", "not_implemented", 501, `s3: ${method} on a bucket with these parameters is not implemented`);
  }
  switch (method) {
    case "GET":
    case "HEAD":
      if (method === "GET") {
        const bound = await runBinding(platform, account, bucket, key);
        if (bound !== undefined) return bound;
      }
      return getObject(store, account, bucket, key, req, q, method === "HEAD");
    case "PUT": {
      if (q.uploadId !== undefined || q.partNumber !== undefined) {
        if (!/^\d{1,5}$/.test(q.partNumber ?? "")) throw new ObjectStoreError("InvalidArgument", "bad_part_number", 400, "s3: partNumber must be an integer");
        const { body, options } = uploadBody(req, auth);
        const r = await store.uploadPart(account, bucket, key, q.uploadId ?? "", Number(q.partNumber), body, options);
        return { status: 200, headers: { etag: etagHeader(r.etag) } };
      }
      return putObject(store, account, bucket, key, req, auth);
    }
    case "POST":
      if ("uploads" in q) {
        const contentType = header(req, "content-type");
        const id = await store.createMultipartUpload(account, bucket, key, { metadata: metadataOf(req), ...(contentType === undefined ? {} : { contentType }) });
        return xml(200, doc("InitiateMultipartUploadResult", [t("Bucket", bucket), t("Key", key), t("UploadId", id)]));
      }
      if (q.uploadId !== undefined) return completeUpload(store, account, bucket, key, q.uploadId, req, auth);
      break;
    case "DELETE":
      if (q.uploadId !== undefined) await store.abortMultipartUpload(account, bucket, key, q.uploadId);
      else await store.deleteObject(account, bucket, key);
      return { status: 204 };
  }
  throw new ObjectStoreError("NotImplemented", "not_implemented", 501, `s3: ${method} on an object with these parameters is not implemented`);
}

/** The one place S3 errors become responses (S3's XML error document; no body for HEAD). */
function errorResponse(e: unknown, requestId: string, resource: string): S3Response {
  let status = 500;
  let code = "InternalError";
  let message = `We encountered an internal error (request ${requestId}). Please try again.`;
  const headers: Record<string, string> = {};
  if (e instanceof ObjectStoreError) {
    status = e.status;
    code = e.s3Code;
    message = e.message;
    if (status === 416 && typeof e.details?.size === "number") headers["content-range"] = `bytes */${e.details.size}`;
  } else if (isZerocellError(e)) {
    // Our other errors (a bound app's sandbox failing, a full pool) keep their status.
    status = e.status;
    code = ({ 403: "AccessDenied", 404: "NoSuchKey", 413: "EntityTooLarge", 503: "ServiceUnavailable", 504: "RequestTimeout" } as Record<number, string>)[status] ?? (status >= 500 ? "InternalError" : "InvalidRequest");
    message = e.code === "guest_error" ? `s3: the bound app's engine failed while running this request (request ${requestId})` : e.message;
    if (status >= 500) log.warn("s3: request failed", { requestId, code: e.code, message: e.message });
  } else {
    log.error("s3: unexpected error", { requestId, err: e instanceof Error ? (e.stack ?? e.message) : String(e) });
  }
  if (status >= 500 && e instanceof ObjectStoreError) log.warn("s3: request failed", { requestId, code, message });
  return xml(status, doc("Error", [t("Code", code), t("Message", message), t("Resource", resource.slice(0, 1024)), t("RequestId", requestId)]).replace(` xmlns="${NS}"`, ""), headers);
}

/** The S3 listener's request handler. */
export function createS3Handler(platform: Platform): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const requestId = randomBytes(8).toString("hex").toUpperCase();
    const started = Date.now();
    void (async () => {
      let r: S3Response;
      try {
        r = await route(platform, req);
      } catch (e) {
        r = errorResponse(e, requestId, (req.url ?? "/").split("?")[0] ?? "/");
      }
      const head = req.method === "HEAD";
      const headers: Record<string, string> = { "x-amz-request-id": requestId, server: "zerocell", ...r.headers };
      if (typeof r.body === "string" || Buffer.isBuffer(r.body)) {
        const bytes = typeof r.body === "string" ? Buffer.from(r.body, "utf8") : r.body;
        if (!head) headers["content-length"] = String(bytes.length);
        res.writeHead(r.status, headers);
        res.end(head ? undefined : bytes);
      } else if (r.body !== undefined && !head) {
        res.writeHead(r.status, headers);
        try {
          await pipeline(r.body, res);
        } catch (e) {
          // The status is sent; a failure mid-body (a corrupt blob, a client gone) cuts the connection.
          res.destroy();
          if (!(e instanceof Error && "code" in e && e.code === "ERR_STREAM_PREMATURE_CLOSE")) log.warn("s3: response body failed", { requestId, err: (e as Error).message });
        }
      } else {
        if (r.status !== 204 && r.status !== 304 && headers["content-length"] === undefined) headers["content-length"] = "0";
        res.writeHead(r.status, headers);
        res.end();
      }
      // A body the handler did not read (an error before the upload was consumed) is never
      // read into memory: the connection is closed instead. A request without a body keeps
      // its connection (keep-alive).
      const declared = header(req, "content-length");
      const hasBody = header(req, "transfer-encoding") !== undefined || (declared !== undefined && declared !== "0");
      if (!hasBody) req.resume();
      else if (!req.complete) res.once("finish", () => req.destroy());
      log.info("s3", { id: requestId, method: req.method, status: r.status, ms: Date.now() - started });
    })();
  };
}
