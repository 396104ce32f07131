/**
 * The S3 API against the real server, driven by the real AWS SDK (and `aws s3` when installed):
 * the SDK's own calls must work unchanged with path-style addressing; hostile requests (bad or
 * expired signatures, other accounts' buckets, oversized or mismatched bodies, traversal in
 * keys, huge list pages) must fail with S3's error codes and leave nothing behind.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import https from "node:https";
import { createHash, createHmac } from "node:crypto";
import { execFileSync } from "node:child_process";
import { readdirSync, writeFileSync, mkdtempSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  HeadBucketCommand,
  ListBucketsCommand,
  PutObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  ListObjectsV2Command,
  ListObjectsCommand,
  CreateMultipartUploadCommand,
  UploadPartCommand,
  CompleteMultipartUploadCommand,
  AbortMultipartUploadCommand,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { SignatureV4 } from "@smithy/signature-v4";
import { HttpRequest } from "@smithy/protocol-http";
import { Hash } from "@smithy/hash-node";
import { startServer, admin, cleanup, type TestServer } from "../helpers/server.js";
import { s3Client, failure, rawS3, type Key } from "../helpers/s3.js";

let server: TestServer;
let main: Key;
let other: Key;
let readOnly: Key;

const client = (key: Key, extra: { systemClockOffset?: number } = {}) => s3Client(server, key, extra);
const raw = (opts: Parameters<typeof rawS3>[1]) => rawS3(server, opts);

describe("S3 API", () => {
  beforeAll(async () => {
    server = await startServer(["--no-spare-hosts"]);
    main = JSON.parse((await server.cli(["access-keys", "create", "--json"])).stdout) as Key;
    const acct = await admin(server, "POST", "/v1/accounts", { body: JSON.stringify({ name: "other" }), contentType: "application/json" });
    expect(acct.status).toBe(201);
    // An account token creates keys for its own account only.
    const own = await admin(server, "POST", "/v1/access-keys", { token: acct.json.token, body: "{}", contentType: "application/json" });
    expect(own.status).toBe(201);
    expect(own.json.account).toBe("other");
    other = own.json as Key;
    const foreign = await admin(server, "POST", "/v1/access-keys", { token: acct.json.token, body: JSON.stringify({ account: "default" }), contentType: "application/json" });
    expect(foreign.status).toBe(404);
    readOnly = JSON.parse((await server.cli(["access-keys", "create", "--read-only", "--json"])).stdout) as Key;
    await client(main).send(new CreateBucketCommand({ Bucket: "data" }));
  }, 120_000);

  afterAll(async () => {
    await server?.stop();
    if (server !== undefined) cleanup(server.dataDir);
  });

  it("writes the S3 endpoint to run/server.json and keeps secrets encrypted at rest", () => {
    expect(server.urls.s3).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const db = readFileSync(join(server.dataDir, "zerocell.db"));
    expect(db.includes(Buffer.from(main.secretAccessKey))).toBe(false);
    const mode = execFileSync("stat", ["-c", "%a", join(server.dataDir, "access-keys.key")], { encoding: "utf8" }).trim();
    expect(mode).toBe("600");
  });

  it("puts, gets and heads objects with metadata, type and ETag", async () => {
    const s3 = client(main);
    const put = await s3.send(new PutObjectCommand({ Bucket: "data", Key: "mail/0001.eml", Body: "Subject: hi\n\nhello", ContentType: "message/rfc822", Metadata: { from: "alice", n: "1" } }));
    expect(put.ETag).toBe(`"${createHash("md5").update("Subject: hi\n\nhello").digest("hex")}"`);
    const got = await s3.send(new GetObjectCommand({ Bucket: "data", Key: "mail/0001.eml" }));
    expect(await got.Body!.transformToString()).toBe("Subject: hi\n\nhello");
    expect(got).toMatchObject({ ContentType: "message/rfc822", Metadata: { from: "alice", n: "1" }, ETag: put.ETag, ContentLength: 18 });
    const head = await s3.send(new HeadObjectCommand({ Bucket: "data", Key: "mail/0001.eml" }));
    expect(head).toMatchObject({ ContentLength: 18, ETag: put.ETag, Metadata: { from: "alice", n: "1" } });
    expect(head.LastModified).toBeInstanceOf(Date);
    expect(await failure(s3.send(new GetObjectCommand({ Bucket: "data", Key: "nope" })))).toMatchObject({ name: "NoSuchKey", status: 404 });
    expect(await failure(s3.send(new HeadObjectCommand({ Bucket: "data", Key: "nope" })))).toMatchObject({ status: 404 });
    expect((await s3.send(new ListBucketsCommand({}))).Buckets?.map((b) => b.Name)).toEqual(["data"]);
    await s3.send(new HeadBucketCommand({ Bucket: "data" }));
  });

  it("lists with prefix, delimiter and continuation (v2 and v1)", async () => {
    const s3 = client(main);
    await s3.send(new CreateBucketCommand({ Bucket: "tree" }));
    const keys = ["a/1", "a/2", "a/b/3", "c/4", "d", "e f/5", "g&h<i>"];
    for (const k of keys) await s3.send(new PutObjectCommand({ Bucket: "tree", Key: k, Body: k }));
    const top = await s3.send(new ListObjectsV2Command({ Bucket: "tree", Delimiter: "/" }));
    expect(top.Contents?.map((o) => o.Key)).toEqual(["d", "g&h<i>"]);
    expect(top.CommonPrefixes?.map((p) => p.Prefix)).toEqual(["a/", "c/", "e f/"]);
    const inA = await s3.send(new ListObjectsV2Command({ Bucket: "tree", Prefix: "a/", Delimiter: "/" }));
    expect(inA.Contents?.map((o) => o.Key)).toEqual(["a/1", "a/2"]);
    expect(inA.CommonPrefixes?.map((p) => p.Prefix)).toEqual(["a/b/"]);
    const seen: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const r = await s3.send(new ListObjectsV2Command({ Bucket: "tree", MaxKeys: 2, ...(token === undefined ? {} : { ContinuationToken: token }) }));
      seen.push(...(r.Contents ?? []).map((o) => o.Key!));
      expect(r.KeyCount).toBeLessThanOrEqual(2);
      token = r.IsTruncated === true ? r.NextContinuationToken : undefined;
      pages++;
    } while (token !== undefined && pages < 10);
    expect(seen).toEqual(keys);
    expect(pages).toBe(4);
    const v1 = await s3.send(new ListObjectsCommand({ Bucket: "tree", Marker: "c/4", MaxKeys: 10 }));
    expect(v1.Contents?.map((o) => o.Key)).toEqual(["d", "e f/5", "g&h<i>"]);
    expect(await failure(s3.send(new ListObjectsV2Command({ Bucket: "tree", ContinuationToken: "garbage!" })))).toMatchObject({ status: 400 });
  });

  it("uploads in parts (multipart) with S3's ETag; aborts", async () => {
    const s3 = client(main);
    const p1 = Buffer.alloc(5 * 1024 * 1024, 1);
    const p2 = Buffer.alloc(5 * 1024 * 1024, 2);
    const p3 = Buffer.from("last part");
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: "data", Key: "big.bin", ContentType: "application/x-big", Metadata: { parts: "3" } }));
    const etags: string[] = [];
    for (const [i, p] of [p1, p2, p3].entries()) etags.push((await s3.send(new UploadPartCommand({ Bucket: "data", Key: "big.bin", UploadId, PartNumber: i + 1, Body: p }))).ETag!);
    const done = await s3.send(new CompleteMultipartUploadCommand({ Bucket: "data", Key: "big.bin", UploadId, MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) } }));
    const md5s = Buffer.concat([p1, p2, p3].map((p) => createHash("md5").update(p).digest()));
    expect(done.ETag).toBe(`"${createHash("md5").update(md5s).digest("hex")}-3"`);
    const got = await s3.send(new GetObjectCommand({ Bucket: "data", Key: "big.bin" }));
    expect(Buffer.from(await got.Body!.transformToByteArray()).equals(Buffer.concat([p1, p2, p3]))).toBe(true);
    expect(got).toMatchObject({ ContentType: "application/x-big", Metadata: { parts: "3" } });
    const aborted = await s3.send(new CreateMultipartUploadCommand({ Bucket: "data", Key: "gone" }));
    await s3.send(new UploadPartCommand({ Bucket: "data", Key: "gone", UploadId: aborted.UploadId, PartNumber: 1, Body: "x" }));
    await s3.send(new AbortMultipartUploadCommand({ Bucket: "data", Key: "gone", UploadId: aborted.UploadId }));
    expect(await failure(s3.send(new UploadPartCommand({ Bucket: "data", Key: "gone", UploadId: aborted.UploadId, PartNumber: 2, Body: "y" })))).toMatchObject({ name: "NoSuchUpload", status: 404 });
    expect(readdirSync(join(server.dataDir, "objects", "uploads"))).toEqual([]);
  });

  it("serves ranges", async () => {
    const s3 = client(main);
    await s3.send(new PutObjectCommand({ Bucket: "data", Key: "digits", Body: "0123456789" }));
    const r = await s3.send(new GetObjectCommand({ Bucket: "data", Key: "digits", Range: "bytes=2-4" }));
    expect(await r.Body!.transformToString()).toBe("234");
    expect(r).toMatchObject({ ContentRange: "bytes 2-4/10", ContentLength: 3, $metadata: { httpStatusCode: 206 } });
    const tail = await s3.send(new GetObjectCommand({ Bucket: "data", Key: "digits", Range: "bytes=-3" }));
    expect(await tail.Body!.transformToString()).toBe("789");
    expect(await failure(s3.send(new GetObjectCommand({ Bucket: "data", Key: "digits", Range: "bytes=20-" })))).toMatchObject({ name: "InvalidRange", status: 416 });
  });

  it("honours conditional requests (reads and writes)", async () => {
    const s3 = client(main);
    const { ETag } = await s3.send(new PutObjectCommand({ Bucket: "data", Key: "cond", Body: "v1" }));
    expect(await failure(s3.send(new GetObjectCommand({ Bucket: "data", Key: "cond", IfNoneMatch: ETag })))).toMatchObject({ status: 304 });
    expect(await failure(s3.send(new GetObjectCommand({ Bucket: "data", Key: "cond", IfMatch: '"0000"' })))).toMatchObject({ name: "PreconditionFailed", status: 412 });
    expect(await failure(s3.send(new GetObjectCommand({ Bucket: "data", Key: "cond", IfModifiedSince: new Date(Date.now() + 3600_000) })))).toMatchObject({ status: 304 });
    expect(await failure(s3.send(new GetObjectCommand({ Bucket: "data", Key: "cond", IfUnmodifiedSince: new Date(Date.now() - 3600_000) })))).toMatchObject({ status: 412 });
    const ok = await s3.send(new GetObjectCommand({ Bucket: "data", Key: "cond", IfMatch: ETag, IfModifiedSince: new Date(Date.now() - 3600_000) }));
    expect(await ok.Body!.transformToString()).toBe("v1");
    // Create-only and replace-only writes.
    expect(await failure(s3.send(new PutObjectCommand({ Bucket: "data", Key: "cond", Body: "v2", IfNoneMatch: "*" })))).toMatchObject({ status: 412 });
    expect(await failure(s3.send(new PutObjectCommand({ Bucket: "data", Key: "cond", Body: "v2", IfMatch: '"0000"' })))).toMatchObject({ status: 412 });
    await s3.send(new PutObjectCommand({ Bucket: "data", Key: "cond", Body: "v2", IfMatch: ETag }));
    await s3.send(new PutObjectCommand({ Bucket: "data", Key: "fresh", Body: "new", IfNoneMatch: "*" }));
    expect(await (await s3.send(new GetObjectCommand({ Bucket: "data", Key: "cond" }))).Body!.transformToString()).toBe("v2");
  });

  it("deletes objects (one and many) and empty buckets", async () => {
    const s3 = client(main);
    await s3.send(new CreateBucketCommand({ Bucket: "trash" }));
    for (const k of ["x", "y", "z"]) await s3.send(new PutObjectCommand({ Bucket: "trash", Key: k, Body: k }));
    expect(await failure(s3.send(new DeleteBucketCommand({ Bucket: "trash" })))).toMatchObject({ name: "BucketNotEmpty", status: 409 });
    await s3.send(new DeleteObjectCommand({ Bucket: "trash", Key: "x" }));
    await s3.send(new DeleteObjectCommand({ Bucket: "trash", Key: "x" }));
    const many = await s3.send(new DeleteObjectsCommand({ Bucket: "trash", Delete: { Objects: [{ Key: "y" }, { Key: "z" }] } }));
    expect(many.Deleted?.map((d) => d.Key).sort()).toEqual(["y", "z"]);
    await s3.send(new DeleteBucketCommand({ Bucket: "trash" }));
    expect(await failure(s3.send(new HeadBucketCommand({ Bucket: "trash" })))).toMatchObject({ status: 404 });
  });

  it("serves presigned URLs until they expire", async () => {
    const s3 = client(main);
    await s3.send(new PutObjectCommand({ Bucket: "data", Key: "shared.txt", Body: "for a link" }));
    const url = await getSignedUrl(s3, new GetObjectCommand({ Bucket: "data", Key: "shared.txt" }), { expiresIn: 60 });
    const u = new URL(url);
    expect((await raw({ method: "GET", path: u.pathname, query: Object.fromEntries(u.searchParams) })).text).toBe("for a link");
    // Tampering with the path breaks the signature.
    expect((await raw({ method: "GET", path: u.pathname.replace("shared", "sharee"), query: Object.fromEntries(u.searchParams) })).status).toBe(403);
    // Signed an hour ago for 60 s: expired.
    const stale = new URL(await getSignedUrl(s3, new GetObjectCommand({ Bucket: "data", Key: "shared.txt" }), { expiresIn: 60, signingDate: new Date(Date.now() - 3600_000) }));
    const r = await raw({ method: "GET", path: stale.pathname, query: Object.fromEntries(stale.searchParams) });
    expect(r.status).toBe(403);
    expect(r.text).toContain("<Code>AccessDenied</Code>");
    expect(r.text).toContain("expired");
    // A presigned PUT works too (UNSIGNED-PAYLOAD).
    const putUrl = new URL(await getSignedUrl(s3, new PutObjectCommand({ Bucket: "data", Key: "uploaded-by-link" }), { expiresIn: 60 }));
    expect((await raw({ method: "PUT", path: putUrl.pathname, query: Object.fromEntries(putUrl.searchParams), body: Buffer.from("via link") })).status).toBe(200);
    expect(await (await s3.send(new GetObjectCommand({ Bucket: "data", Key: "uploaded-by-link" }))).Body!.transformToString()).toBe("via link");
  });

  it("refuses bad signatures, unknown or revoked keys, stale dates, anonymous and out-of-scope requests", async () => {
    expect(await failure(client({ accessKeyId: main.accessKeyId, secretAccessKey: main.secretAccessKey + "x" }).send(new GetObjectCommand({ Bucket: "data", Key: "digits" })))).toMatchObject({ name: "SignatureDoesNotMatch", status: 403 });
    expect(await failure(client({ accessKeyId: "ZCAAAAAAAAAAAAAAAAAA", secretAccessKey: "x" }).send(new ListBucketsCommand({})))).toMatchObject({ name: "InvalidAccessKeyId", status: 403 });
    expect(await failure(client(main, { systemClockOffset: -3600_000 }).send(new ListBucketsCommand({})))).toMatchObject({ name: "RequestTimeTooSkewed", status: 403 });
    const anon = await raw({ method: "GET", path: "/data/digits" });
    expect(anon.status).toBe(403);
    expect(anon.text).toContain("<Code>AccessDenied</Code>");
    expect(await failure(client(readOnly).send(new PutObjectCommand({ Bucket: "data", Key: "ro", Body: "x" })))).toMatchObject({ name: "AccessDenied", status: 403 });
    expect(await (await client(readOnly).send(new GetObjectCommand({ Bucket: "data", Key: "digits" }))).Body!.transformToString()).toBe("0123456789");
    const temp = JSON.parse((await server.cli(["access-keys", "create", "--json"])).stdout) as Key;
    await client(temp).send(new ListBucketsCommand({}));
    await server.cli(["access-keys", "revoke", temp.accessKeyId]);
    expect(await failure(client(temp).send(new ListBucketsCommand({})))).toMatchObject({ name: "InvalidAccessKeyId", status: 403 });
  });

  it("answers for another account's bucket exactly as for a missing one", async () => {
    const s3 = client(other);
    const foreign = await failure(s3.send(new GetObjectCommand({ Bucket: "data", Key: "digits" })));
    const missing = await failure(s3.send(new GetObjectCommand({ Bucket: "dat4", Key: "digits" })));
    expect(foreign).toMatchObject({ name: "NoSuchBucket", status: 404 });
    expect(missing).toMatchObject({ name: "NoSuchBucket", status: 404 });
    expect((foreign as { message: string }).message.replace('"data"', "X")).toBe((missing as { message: string }).message.replace('"dat4"', "X"));
    expect(await failure(s3.send(new PutObjectCommand({ Bucket: "data", Key: "planted", Body: "x" })))).toMatchObject({ name: "NoSuchBucket" });
    expect(await failure(s3.send(new ListObjectsV2Command({ Bucket: "data" })))).toMatchObject({ name: "NoSuchBucket" });
    expect(await failure(s3.send(new DeleteObjectCommand({ Bucket: "data", Key: "digits" })))).toMatchObject({ name: "NoSuchBucket" });
    expect((await s3.send(new ListBucketsCommand({}))).Buckets ?? []).toEqual([]);
    // Its own bucket of the same name is its own.
    await s3.send(new CreateBucketCommand({ Bucket: "data" }));
    expect((await s3.send(new ListObjectsV2Command({ Bucket: "data" }))).KeyCount).toBe(0);
    expect(await (await client(main).send(new GetObjectCommand({ Bucket: "data", Key: "digits" }))).Body!.transformToString()).toBe("0123456789");
  });

  it("refuses oversized and mismatched bodies without storing them", async () => {
    // A declared 6 GiB PUT is refused before its body is read.
    const big = await raw({ method: "PUT", path: "/data/huge", key: main, payloadHash: "UNSIGNED-PAYLOAD", headers: { "content-length": String(6 * 1024 ** 3) } }).catch((e: Error) => ({ status: -1, text: e.message, headers: {} }));
    if (big.status !== -1) {
      expect(big.status).toBe(400);
      expect(big.text).toContain("<Code>EntityTooLarge</Code>");
    }
    // A body whose SHA-256 is not the signed one.
    const liar = await raw({ method: "PUT", path: "/data/liar", key: main, payloadHash: createHash("sha256").update("promised").digest("hex"), body: Buffer.from("delivered"), headers: { "content-length": "9" } });
    expect(liar.status).toBe(400);
    expect(liar.text).toContain("<Code>XAmzContentSHA256Mismatch</Code>");
    // A body that does not match Content-MD5.
    const md5 = await raw({ method: "PUT", path: "/data/md5", key: main, body: Buffer.from("abc"), headers: { "content-length": "3", "content-md5": createHash("md5").update("abd").digest("base64") } });
    expect(md5.text).toContain("<Code>BadDigest</Code>");
    // XML bombs and garbage in request documents.
    const bomb = Buffer.from('<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><Delete><Object><Key>&b;</Key></Object></Delete>');
    const x = await raw({ method: "POST", path: "/data", query: { delete: "" }, key: main, body: bomb, headers: { "content-length": String(bomb.length) } });
    expect(x.status).toBe(400);
    expect(x.text).toContain("<Code>MalformedXML</Code>");
    const s3 = client(main);
    for (const k of ["huge", "liar", "md5"]) expect(await failure(s3.send(new HeadObjectCommand({ Bucket: "data", Key: k })))).toMatchObject({ status: 404 });
    expect(readdirSync(join(server.dataDir, "objects", "tmp"))).toEqual([]);
    // The server still serves.
    expect(await (await s3.send(new GetObjectCommand({ Bucket: "data", Key: "digits" }))).Body!.transformToString()).toBe("0123456789");
  });

  it("accepts signed aws-chunked uploads (STREAMING-AWS4-HMAC-SHA256-PAYLOAD) and refuses a tampered chunk", async () => {
    const url = new URL(server.urls.s3);
    const data = Buffer.from("x".repeat(70_000) + "end");
    const put = async (key: string, tamper: boolean) => {
      const chunks = [data.subarray(0, 65_536), data.subarray(65_536), Buffer.alloc(0)];
      const encodedLength = chunks.reduce((n, c) => n + c.length.toString(16).length + ";chunk-signature=".length + 64 + 4 + c.length, 0);
      const signer = new SignatureV4({ credentials: main, region: "us-east-1", service: "s3", sha256: Hash.bind(null, "sha256"), uriEscapePath: false });
      const signed = await signer.sign(new HttpRequest({ method: "PUT", protocol: "https:", hostname: url.hostname, port: Number(url.port), path: `/data/${key}`, headers: { host: url.host, "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "content-encoding": "aws-chunked", "x-amz-decoded-content-length": String(data.length), "content-length": String(encodedLength) } }));
      const h = signed.headers as Record<string, string>;
      const seed = /Signature=([0-9a-f]{64})/.exec(h.authorization!)![1]!;
      const longDate = h["x-amz-date"]!;
      const scope = `${longDate.slice(0, 8)}/us-east-1/s3/aws4_request`;
      const hmac = (k: Buffer | string, d: string) => createHmac("sha256", k).update(d).digest();
      const signingKey = hmac(hmac(hmac(hmac("AWS4" + main.secretAccessKey, longDate.slice(0, 8)), "us-east-1"), "s3"), "aws4_request");
      const sha = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");
      let prev = seed;
      const parts: Buffer[] = [];
      for (const c of chunks) {
        const sig = hmac(signingKey, ["AWS4-HMAC-SHA256-PAYLOAD", longDate, scope, prev, sha(""), sha(c)].join("\n")).toString("hex");
        prev = sig;
        const body = tamper && c.length > 0 && c === chunks[1] ? Buffer.from(c.toString().replace("end", "END")) : c;
        parts.push(Buffer.from(`${c.length.toString(16)};chunk-signature=${sig}\r\n`), body, Buffer.from("\r\n"));
      }
      const body = Buffer.concat(parts);
      expect(body.length).toBe(encodedLength);
      return new Promise<{ status: number; text: string }>((resolve, reject) => {
        const req = https.request({ host: url.hostname, port: url.port, path: `/data/${key}`, method: "PUT", headers: h, ca: server.ca, agent: false }, (res) => {
          const out: Buffer[] = [];
          res.on("data", (c: Buffer) => out.push(c));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(out).toString() }));
        });
        req.on("error", reject);
        req.end(body);
      });
    };
    expect((await put("chunked-ok", false)).status).toBe(200);
    expect(Buffer.from(await (await client(main).send(new GetObjectCommand({ Bucket: "data", Key: "chunked-ok" }))).Body!.transformToByteArray()).equals(data)).toBe(true);
    const bad = await put("chunked-bad", true);
    expect(bad.status).toBe(403);
    expect(bad.text).toContain("<Code>SignatureDoesNotMatch</Code>");
    expect(await failure(client(main).send(new HeadObjectCommand({ Bucket: "data", Key: "chunked-bad" })))).toMatchObject({ status: 404 });
  });

  it("keeps keys as names: traversal stays inside the bucket", async () => {
    const s3 = client(main);
    for (const k of ["../../../etc/passwd", "..%2F..%2Fx", "a/./b/../c", "/leading"]) {
      await s3.send(new PutObjectCommand({ Bucket: "data", Key: k, Body: `v:${k}` }));
      expect(await (await s3.send(new GetObjectCommand({ Bucket: "data", Key: k }))).Body!.transformToString()).toBe(`v:${k}`);
    }
    // Raw traversal in the request path: still a key of this bucket, never a file.
    const r = await raw({ method: "GET", path: "/data/../../../etc/passwd", key: main });
    expect(r.text).toBe("v:../../../etc/passwd");
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: "data", Prefix: ".." }));
    expect(listed.Contents?.map((o) => o.Key)).toEqual(["..%2F..%2Fx", "../../../etc/passwd"]);
    for (const sub of readdirSync(join(server.dataDir, "objects", "blobs"))) expect(sub).toMatch(/^[0-9a-f]{2}$/);
    expect(await failure(s3.send(new PutObjectCommand({ Bucket: "data", Key: "k".repeat(1025), Body: "x" })))).toMatchObject({ name: "KeyTooLongError", status: 400 });
  });

  it("caps list pages whatever max-keys asks for", async () => {
    const s3 = client(main);
    await s3.send(new CreateBucketCommand({ Bucket: "many" }));
    const keys = Array.from({ length: 1005 }, (_, i) => `k${String(i).padStart(5, "0")}`);
    for (let i = 0; i < keys.length; i += 25) await Promise.all(keys.slice(i, i + 25).map((k) => s3.send(new PutObjectCommand({ Bucket: "many", Key: k, Body: "." }))));
    const r = await raw({ method: "GET", path: "/many", query: { "list-type": "2", "max-keys": "100000000" }, key: main });
    expect(r.status).toBe(200);
    expect(r.text.match(/<Key>/g)?.length).toBe(1000);
    expect(r.text).toContain("<IsTruncated>true</IsTruncated>");
    const rest = await s3.send(new ListObjectsV2Command({ Bucket: "many", StartAfter: "k00999" }));
    expect(rest.Contents?.map((o) => o.Key)).toEqual(keys.slice(1000));
    expect((await raw({ method: "GET", path: "/many", query: { "list-type": "2", "max-keys": "-1" }, key: main })).status).toBe(400);
  }, 180_000);

  const hasAws = (() => {
    try {
      execFileSync("aws", ["--version"], { stdio: "ignore", timeout: 20_000 });
      return true;
    } catch {
      return false;
    }
  })();

  it.skipIf(!hasAws)("works with `aws s3` unchanged (--endpoint-url, path-style)", () => {
    const dir = mkdtempSync(join(tmpdir(), "zc-aws-"));
    writeFileSync(join(dir, "ca.pem"), server.ca);
    writeFileSync(join(dir, "hello.txt"), "hello from aws cli\n");
    const env = { ...process.env, AWS_ACCESS_KEY_ID: main.accessKeyId, AWS_SECRET_ACCESS_KEY: main.secretAccessKey, AWS_DEFAULT_REGION: "us-east-1", AWS_CONFIG_FILE: join(dir, "none"), AWS_SHARED_CREDENTIALS_FILE: join(dir, "none"), AWS_CA_BUNDLE: join(dir, "ca.pem") };
    const aws = (...args: string[]) => execFileSync("aws", ["--endpoint-url", server.urls.s3, "s3", ...args], { env, encoding: "utf8", timeout: 60_000 });
    aws("mb", "s3://cli-bucket");
    aws("cp", join(dir, "hello.txt"), "s3://cli-bucket/dir/hello.txt");
    expect(aws("ls", "s3://cli-bucket/dir/")).toContain("hello.txt");
    aws("cp", "s3://cli-bucket/dir/hello.txt", join(dir, "back.txt"));
    expect(readFileSync(join(dir, "back.txt"), "utf8")).toBe("hello from aws cli\n");
    aws("rm", "--recursive", "s3://cli-bucket/");
    aws("rb", "s3://cli-bucket");
    cleanup(dir);
  });
});
