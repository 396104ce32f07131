/**
 * End to end on Swift: the server started with the S3 object backend pointed at a real
 * OpenStack Swift (s3api) on loopback; the AWS SDK's own calls (put, get, head, list,
 * multipart, range, delete) through the gateway's S3 API; a job over 20 objects whose inputs and
 * outputs live in Swift. Swift is checked directly too: every remote name sits under the
 * platform's prefix and a bucket id, never under a client's bucket name or key alone.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { createHash } from "node:crypto";
import {
  S3Client,
  CreateBucketCommand,
  PutObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  DeleteObjectCommand,
  CreateMultipartUploadCommand,
  UploadPartCommand,
  CompleteMultipartUploadCommand,
} from "@aws-sdk/client-s3";
import { startServer, cleanup, type TestServer } from "../helpers/server.js";
import { s3Client, failure, type Key } from "../helpers/s3.js";
import { startSwift, type SwiftServer } from "../helpers/swift.js";
import { x86Fixture } from "../helpers/x86.js";

const N = 20;
const keyOf = (i: number) => `inbox/${String(i).padStart(3, "0")}.eml`;
const mail = (i: number) => `From: a${i}@example.com\nSubject: m${i}\n\n${"word ".repeat(3 + i)}\n`;
const words = (s: string) => s.trim().split(/\s+/).filter(Boolean).length;

describe("S3 API and jobs with the Swift backend", () => {
  let swift: SwiftServer;
  let server: TestServer;
  let s3: S3Client;
  let direct: S3Client;

  beforeAll(async () => {
    swift = await startSwift();
    process.env.ZEROCELL_OBJECTS_S3_ACCESS_KEY_ID = swift.accessKeyId;
    process.env.ZEROCELL_OBJECTS_S3_SECRET_ACCESS_KEY = swift.secretAccessKey;
    try {
      server = await startServer(["--no-spare-hosts", "--objects-backend", "s3", "--objects-s3-endpoint", swift.endpoint, "--objects-s3-bucket", "zc-e2e", "--objects-s3-prefix", "zc/"]);
    } finally {
      delete process.env.ZEROCELL_OBJECTS_S3_ACCESS_KEY_ID;
      delete process.env.ZEROCELL_OBJECTS_S3_SECRET_ACCESS_KEY;
    }
    s3 = s3Client(server, JSON.parse((await server.cli(["access-keys", "create", "--json"])).stdout) as Key);
    direct = new S3Client({ endpoint: swift.endpoint, region: swift.region, forcePathStyle: true, credentials: { accessKeyId: swift.accessKeyId, secretAccessKey: swift.secretAccessKey }, requestChecksumCalculation: "WHEN_REQUIRED", responseChecksumValidation: "WHEN_REQUIRED" });
  }, 400_000);

  afterAll(async () => {
    await server?.stop();
    if (server !== undefined) cleanup(server.dataDir);
    direct?.destroy();
    await swift?.stop();
  }, 120_000);

  it("serves the SDK's put, get, head, range, list, multipart and delete from Swift", async () => {
    await s3.send(new CreateBucketCommand({ Bucket: "docs" }));
    const put = await s3.send(new PutObjectCommand({ Bucket: "docs", Key: "a/hello.txt", Body: "hello, swift", ContentType: "text/plain", Metadata: { lang: "en", note: "hi there" } }));
    expect(put.ETag).toBe(`"${createHash("md5").update("hello, swift").digest("hex")}"`);
    const got = await s3.send(new GetObjectCommand({ Bucket: "docs", Key: "a/hello.txt" }));
    expect(await got.Body!.transformToString()).toBe("hello, swift");
    expect(got.ContentType).toBe("text/plain");
    const head = await s3.send(new HeadObjectCommand({ Bucket: "docs", Key: "a/hello.txt" }));
    expect(head.Metadata).toEqual({ lang: "en", note: "hi there" });
    const range = await s3.send(new GetObjectCommand({ Bucket: "docs", Key: "a/hello.txt", Range: "bytes=7-11" }));
    expect(range.ContentRange).toBe("bytes 7-11/12");
    expect(await range.Body!.transformToString()).toBe("swift");

    // Multipart: a 5 MiB part (S3's minimum) and a tail.
    const p1 = Buffer.alloc(5 * 1024 * 1024, 7);
    const p2 = Buffer.from("tail");
    const up = await s3.send(new CreateMultipartUploadCommand({ Bucket: "docs", Key: "big.bin" }));
    const e1 = await s3.send(new UploadPartCommand({ Bucket: "docs", Key: "big.bin", UploadId: up.UploadId, PartNumber: 1, Body: p1 }));
    const e2 = await s3.send(new UploadPartCommand({ Bucket: "docs", Key: "big.bin", UploadId: up.UploadId, PartNumber: 2, Body: p2 }));
    const done = await s3.send(new CompleteMultipartUploadCommand({ Bucket: "docs", Key: "big.bin", UploadId: up.UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: e1.ETag }, { PartNumber: 2, ETag: e2.ETag }] } }));
    const md5s = Buffer.concat([p1, p2].map((p) => createHash("md5").update(p).digest()));
    expect(done.ETag).toBe(`"${createHash("md5").update(md5s).digest("hex")}-2"`);
    const tail = await s3.send(new GetObjectCommand({ Bucket: "docs", Key: "big.bin", Range: "bytes=-6" }));
    expect(Buffer.from(await tail.Body!.transformToByteArray()).equals(Buffer.concat([Buffer.alloc(2, 7), p2]))).toBe(true);

    const list = await s3.send(new ListObjectsV2Command({ Bucket: "docs", Delimiter: "/" }));
    expect(list.Contents?.map((o) => o.Key)).toEqual(["big.bin"]);
    expect(list.CommonPrefixes?.map((p) => p.Prefix)).toEqual(["a/"]);
    await s3.send(new DeleteObjectCommand({ Bucket: "docs", Key: "a/hello.txt" }));
    expect(await failure(s3.send(new HeadObjectCommand({ Bucket: "docs", Key: "a/hello.txt" })))).toMatchObject({ status: 404 });

    // The bytes are in Swift, under the platform's prefix and the bucket's id only.
    const remote = await direct.send(new ListObjectsV2Command({ Bucket: "zc-e2e" }));
    const names = (remote.Contents ?? []).map((o) => o.Key!);
    expect(names).toHaveLength(1);
    expect(names[0]).toMatch(/^zc\/bkt_[0-9a-f]{20}\/big\.bin$/);
  }, 240_000);

  it(`runs a job over ${N} objects whose inputs and outputs live in Swift`, async () => {
    await s3.send(new CreateBucketCommand({ Bucket: "mail" }));
    for (let i = 0; i < N; i++) await s3.send(new PutObjectCommand({ Bucket: "mail", Key: keyOf(i), Body: mail(i), ContentType: "message/rfc822" }));
    const file = join(tmpdir(), `wordcount-swift-${process.pid}`);
    writeFileSync(file, x86Fixture("wordcount"), { mode: 0o755 });
    const r = await server.cli(["jobs", "run", "--program", file, "--input", "mail/inbox/", "--output", "mail/out/", "--concurrency", "4", "--wait", "--json"], { allowFail: true });
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const res = JSON.parse(r.stdout) as { job: { status: string; counts: { ok: number; failed: number; pending: number } } };
    expect(res.job).toMatchObject({ status: "done", counts: { ok: N, failed: 0, pending: 0 } });
    for (let i = 0; i < N; i++) {
      const out = await s3.send(new GetObjectCommand({ Bucket: "mail", Key: `out/${String(i).padStart(3, "0")}.eml` }));
      expect(await out.Body!.transformToString()).toBe(`${words(mail(i))}\n`);
    }
    const remote = await direct.send(new ListObjectsV2Command({ Bucket: "zc-e2e", Prefix: "zc/" }));
    expect((remote.Contents ?? []).filter((o) => /\/out\/\d{3}\.eml$/.test(o.Key!))).toHaveLength(N);
  }, 300_000);
});
