/**
 * AWS Signature Version 4 verification for the S3 API: the Authorization header form and the
 * presigned-URL (query) form, plus the aws-chunked streaming payload form
 * (STREAMING-AWS4-HMAC-SHA256-PAYLOAD, each chunk signed). The canonical request and the signing
 * key come from @smithy/signature-v4 (the signer the AWS SDK itself uses), so what we compute is
 * what the SDK signs; we only parse, bound and compare.
 * Must never: accept a signature compared in variable time, a date outside the skew bound, a
 * presigned URL past its expiry (or valid for more than 7 days), or a payload whose signed hash
 * the body does not match (the store refuses to commit such a body).
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { SignatureV4, getSigningKey, createScope } from "@smithy/signature-v4";
import { Hash } from "@smithy/hash-node";
import type { HttpRequest, HeaderBag } from "@smithy/types";
import type { AccessKeys, ResolvedAccessKey } from "./access-keys.js";
import { ObjectStoreError } from "./store.js";

export interface SigV4Limits {
  /** Largest difference between the request's date and ours, ms (S3: 15 min). */
  maxClockSkewMs: number;
  /** Longest validity of a presigned URL, seconds (SigV4: 7 days). */
  maxPresignExpiresS: number;
  /** Largest aws-chunked chunk, bytes (the SDK sends 64 KiB). */
  maxChunkBytes: number;
  /** Longest chunk header line ("size;chunk-signature=…"), bytes. */
  maxChunkHeaderBytes: number;
}

export const DEFAULT_SIGV4_LIMITS: SigV4Limits = {
  maxClockSkewMs: 15 * 60 * 1000,
  maxPresignExpiresS: 7 * 24 * 3600,
  maxChunkBytes: 16 * 1024 * 1024,
  maxChunkHeaderBytes: 4096,
};

export interface SigV4Request {
  method: string;
  /** The request target as sent (path and query, still percent-encoded). */
  target: string;
  /** Lower-case header names (node's IncomingMessage.headers). */
  headers: Record<string, string | string[] | undefined>;
}

/** What the signature covers of the body. */
export type SignedPayload =
  | { kind: "sha256"; sha256: string }
  | { kind: "unsigned" }
  | { kind: "streaming"; decodedLength: number; seedSignature: string; signingKey: Uint8Array; scope: string; longDate: string }
  | { kind: "streaming-unsigned"; decodedLength: number };

export interface Authenticated {
  key: ResolvedAccessKey;
  payload: SignedPayload;
  /** The decoded query of the request (without the signature parameters' meaning). */
  query: Record<string, string>;
  /** The path, still percent-encoded. */
  path: string;
}

const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const HEX64 = /^[0-9a-f]{64}$/;
const LONG_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;

export const accessDenied = (message: string): ObjectStoreError => new ObjectStoreError("AccessDenied", "access_denied", 403, `s3: ${message}`);
const malformed = (message: string): ObjectStoreError => new ObjectStoreError("AuthorizationHeaderMalformed", "auth_malformed", 400, `s3: ${message}`);
const mismatch = (): ObjectStoreError => new ObjectStoreError("SignatureDoesNotMatch", "signature_mismatch", 403, "s3: the request signature we calculated does not match the signature you provided; check your key and signing method");

/** Exposes the SDK signer's canonical request (a protected method) without changing it. */
class CanonicalSigner extends SignatureV4 {
  canonicalRequest(request: HttpRequest, headers: HeaderBag, payloadHash: string): string {
    return this.createCanonicalRequest(request, headers, payloadHash);
  }
}

function header(h: SigV4Request["headers"], name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v.join(",") : v;
}

function parseLongDate(s: string): Date | undefined {
  const m = LONG_DATE.exec(s);
  if (m === null) return undefined;
  const d = new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!));
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/** Splits a request target into its raw path and decoded query (both bounded by Node's header limit). */
export function splitTarget(target: string): { path: string; query: Record<string, string> } {
  const q = target.indexOf("?");
  const path = q < 0 ? target : target.slice(0, q);
  const query: Record<string, string> = Object.create(null) as Record<string, string>;
  if (q >= 0) {
    for (const part of target.slice(q + 1).split("&")) {
      if (part === "") continue;
      const eq = part.indexOf("=");
      const k = eq < 0 ? part : part.slice(0, eq);
      const v = eq < 0 ? "" : part.slice(eq + 1);
      try {
        // SigV4 encodes spaces as %20; a "+" is a plus.
        query[decodeURIComponent(k)] = decodeURIComponent(v);
      } catch {
        throw new ObjectStoreError("InvalidArgument", "bad_query", 400, "s3: the query string is not valid percent-encoding");
      }
    }
  }
  return { path, query };
}

function hmacHex(key: Uint8Array, data: string): string {
  return createHmac("sha256", key).update(data, "utf8").digest("hex");
}

function sameHex(a: string, b: string): boolean {
  if (!HEX64.test(a) || !HEX64.test(b)) return false;
  return timingSafeEqual(Buffer.from(a, "hex"), Buffer.from(b, "hex"));
}

interface Credential {
  accessKeyId: string;
  shortDate: string;
  region: string;
  service: string;
}

function parseCredential(s: string): Credential {
  const parts = s.split("/");
  if (parts.length !== 5 || parts[4] !== "aws4_request") throw malformed("Credential must be KEY/DATE/REGION/s3/aws4_request");
  const [accessKeyId, shortDate, region, service] = parts as [string, string, string, string];
  if (!/^\d{8}$/.test(shortDate) || !/^[a-z0-9-]{1,32}$/.test(region) || service !== "s3") throw malformed("Credential has a bad date, region or service (must be s3)");
  return { accessKeyId, shortDate, region, service };
}

/**
 * Verifies a request's SigV4 signature (header or presigned form) and returns the key and what
 * the signature says about the body. Missing or unknown keys, bad signatures, stale dates and
 * expired URLs are all 403s that say nothing about any bucket.
 */
export async function verifySigV4(req: SigV4Request, keys: AccessKeys, now: Date = new Date(), limits: SigV4Limits = DEFAULT_SIGV4_LIMITS): Promise<Authenticated> {
  const { path, query } = splitTarget(req.target);
  const auth = header(req.headers, "authorization");
  const presigned = query["X-Amz-Algorithm"] !== undefined;
  if (auth === undefined && !presigned) throw accessDenied("anonymous access is not allowed; sign the request with an access key (SigV4)");

  let cred: Credential;
  let signedHeaders: string[];
  let signature: string;
  let longDate: string;
  let payloadHash: string;
  if (presigned) {
    if (query["X-Amz-Algorithm"] !== "AWS4-HMAC-SHA256") throw malformed("only AWS4-HMAC-SHA256 is supported");
    cred = parseCredential(query["X-Amz-Credential"] ?? "");
    signedHeaders = (query["X-Amz-SignedHeaders"] ?? "").split(";");
    signature = query["X-Amz-Signature"] ?? "";
    longDate = query["X-Amz-Date"] ?? "";
    const expires = Number(query["X-Amz-Expires"]);
    const signedAt = parseLongDate(longDate);
    if (signedAt === undefined || !Number.isInteger(expires) || expires < 1 || expires > limits.maxPresignExpiresS) throw malformed(`X-Amz-Date and X-Amz-Expires (1..${limits.maxPresignExpiresS} s) are required`);
    if (now.getTime() > signedAt.getTime() + expires * 1000) throw accessDenied("request has expired");
    if (signedAt.getTime() - now.getTime() > limits.maxClockSkewMs) throw new ObjectStoreError("RequestTimeTooSkewed", "clock_skew", 403, "s3: the request's date is too far in the future");
    payloadHash = query["X-Amz-Content-Sha256"] ?? "UNSIGNED-PAYLOAD";
  } else {
    const m = /^AWS4-HMAC-SHA256 (.+)$/.exec(auth!);
    if (m === null) throw malformed("the Authorization header must be AWS4-HMAC-SHA256 (SigV4)");
    const fields: Record<string, string> = {};
    for (const f of m[1]!.split(",")) {
      const eq = f.indexOf("=");
      if (eq > 0) fields[f.slice(0, eq).trim()] = f.slice(eq + 1).trim();
    }
    cred = parseCredential(fields.Credential ?? "");
    signedHeaders = (fields.SignedHeaders ?? "").split(";");
    signature = fields.Signature ?? "";
    longDate = header(req.headers, "x-amz-date") ?? "";
    const signedAt = parseLongDate(longDate);
    if (signedAt === undefined) throw accessDenied("x-amz-date is missing or malformed");
    if (Math.abs(signedAt.getTime() - now.getTime()) > limits.maxClockSkewMs) throw new ObjectStoreError("RequestTimeTooSkewed", "clock_skew", 403, `s3: the request's date differs from the server's by more than ${limits.maxClockSkewMs / 60000} minutes`);
    const declared = header(req.headers, "x-amz-content-sha256");
    if (declared === undefined) throw new ObjectStoreError("InvalidRequest", "missing_content_sha256", 400, "s3: x-amz-content-sha256 is required");
    payloadHash = declared;
  }
  if (longDate.slice(0, 8) !== cred.shortDate) throw malformed("the credential's date is not the request's date");
  if (!signedHeaders.includes("host")) throw malformed("SignedHeaders must include host");
  if (signedHeaders.length > 64 || signedHeaders.some((h) => !/^[a-z0-9-]{1,64}$/.test(h))) throw malformed("SignedHeaders is malformed");
  if (!presigned && !signedHeaders.includes("x-amz-date")) throw malformed("SignedHeaders must include x-amz-date");

  const key = keys.resolve(cred.accessKeyId);
  if (key === undefined) throw new ObjectStoreError("InvalidAccessKeyId", "invalid_access_key", 403, "s3: the access key id does not exist or was revoked");

  // 1. canonical request, exactly as the SDK's signer builds it (path not re-escaped for S3)
  const canonicalHeaders: HeaderBag = {};
  for (const h of signedHeaders) {
    const v = header(req.headers, h);
    if (v === undefined) throw malformed(`signed header ${h} is missing`);
    canonicalHeaders[h] = v.replace(/[\r\n]/g, " ").replace(/[ \t]+/g, " ").trim();
  }
  const signer = new CanonicalSigner({ credentials: { accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey }, region: cred.region, service: "s3", sha256: Hash.bind(null, "sha256"), uriEscapePath: false });
  const signedQuery = { ...query };
  delete signedQuery["X-Amz-Signature"];
  const canonical = signer.canonicalRequest({ method: req.method, path, query: signedQuery, headers: {}, protocol: "https:", hostname: "", } as unknown as HttpRequest, canonicalHeaders, payloadHash);
  // 2. string to sign, 3. signature with the derived key; compared in constant time
  const scope = createScope(cred.shortDate, cred.region, "s3");
  const stringToSign = `AWS4-HMAC-SHA256\n${longDate}\n${scope}\n${createHash("sha256").update(canonical, "utf8").digest("hex")}`;
  const signingKey = await getSigningKey(Hash.bind(null, "sha256"), { accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey }, cred.shortDate, cred.region, "s3");
  if (!sameHex(hmacHex(signingKey, stringToSign), signature)) throw mismatch();

  // 4. what the signature covers of the body
  let payload: SignedPayload;
  if (HEX64.test(payloadHash)) payload = { kind: "sha256", sha256: payloadHash };
  else if (payloadHash === "UNSIGNED-PAYLOAD") payload = { kind: "unsigned" };
  else if (payloadHash === "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" || payloadHash === "STREAMING-UNSIGNED-PAYLOAD-TRAILER") {
    const decodedLength = Number(header(req.headers, "x-amz-decoded-content-length"));
    if (!Number.isSafeInteger(decodedLength) || decodedLength < 0) throw new ObjectStoreError("MissingContentLength", "missing_decoded_length", 411, "s3: aws-chunked bodies need x-amz-decoded-content-length");
    payload = payloadHash === "STREAMING-UNSIGNED-PAYLOAD-TRAILER" ? { kind: "streaming-unsigned", decodedLength } : { kind: "streaming", decodedLength, seedSignature: signature, signingKey, scope, longDate };
  } else throw new ObjectStoreError("InvalidArgument", "bad_content_sha256", 400, `s3: x-amz-content-sha256 "${payloadHash.slice(0, 80)}" is not supported`);
  return { key, payload, query, path };
}

/**
 * Decodes an aws-chunked body ("hex-size;chunk-signature=sig\r\n data \r\n" …, a zero-size
 * chunk, optional trailers) and, for signed streams, checks each chunk's signature, chained from
 * the seed signature. Bytes are passed on as they arrive; a bad signature or framing throws
 * before the body ends, so the store (which commits only at the end) never keeps such a body.
 */
export async function* decodeAwsChunked(body: AsyncIterable<Uint8Array>, payload: Extract<SignedPayload, { kind: "streaming" | "streaming-unsigned" }>, limits: SigV4Limits = DEFAULT_SIGV4_LIMITS): AsyncGenerator<Uint8Array> {
  const bad = (why: string) => new ObjectStoreError("IncompleteBody", "bad_chunked_body", 400, `s3: aws-chunked body: ${why}`);
  const it = body[Symbol.asyncIterator]();
  let buf = Buffer.alloc(0);
  let ended = false;
  const more = async (): Promise<boolean> => {
    if (ended) return false;
    const r = await it.next();
    if (r.done === true) {
      ended = true;
      return false;
    }
    buf = buf.length === 0 ? Buffer.from(r.value) : Buffer.concat([buf, r.value]);
    return true;
  };
  const line = async (): Promise<string> => {
    for (;;) {
      const i = buf.indexOf("\r\n");
      if (i >= 0) {
        const l = buf.subarray(0, i).toString("latin1");
        buf = buf.subarray(i + 2);
        return l;
      }
      if (buf.length > limits.maxChunkHeaderBytes) throw bad("chunk header too long");
      if (!(await more())) throw bad("ended inside a chunk header");
    }
  };
  let prev = payload.kind === "streaming" ? payload.seedSignature : "";
  let total = 0;
  for (;;) {
    const header = await line();
    const m = /^([0-9a-fA-F]{1,8})(?:;chunk-signature=([0-9a-f]{64}))?$/.exec(header);
    if (m === null) throw bad("malformed chunk header");
    const size = parseInt(m[1]!, 16);
    if (size > limits.maxChunkBytes) throw bad(`chunk of ${size} bytes exceeds ${limits.maxChunkBytes}`);
    if (payload.kind === "streaming" && m[2] === undefined) throw bad("chunk without a signature");
    const h = createHash("sha256");
    let left = size;
    while (left > 0) {
      if (buf.length === 0 && !(await more())) throw bad("ended inside a chunk");
      const take = buf.subarray(0, Math.min(left, buf.length));
      buf = buf.subarray(take.length);
      left -= take.length;
      h.update(take);
      total += take.length;
      if (total > payload.decodedLength) throw bad("more bytes than x-amz-decoded-content-length");
      yield take;
    }
    if (payload.kind === "streaming") {
      const sts = `AWS4-HMAC-SHA256-PAYLOAD\n${payload.longDate}\n${payload.scope}\n${prev}\n${EMPTY_SHA256}\n${h.digest("hex")}`;
      if (!sameHex(hmacHex(payload.signingKey, sts), m[2]!)) throw mismatch();
      prev = m[2]!;
    }
    if (size === 0) break;
    while (buf.length < 2) if (!(await more())) throw bad("missing CRLF after a chunk");
    if (buf[0] !== 13 || buf[1] !== 10) throw bad("missing CRLF after a chunk");
    buf = buf.subarray(2);
  }
  // Trailers (checksums of the unsigned-trailer form) end with an empty line; they are not kept.
  let trailerBytes = 0;
  while (!ended || buf.length > 0) {
    if (buf.length === 0 && !(await more())) break;
    trailerBytes += buf.length;
    buf = Buffer.alloc(0);
    if (trailerBytes > limits.maxChunkHeaderBytes) throw bad("trailers too long");
  }
  if (total !== payload.decodedLength) throw bad(`${total} bytes, x-amz-decoded-content-length said ${payload.decodedLength}`);
}
