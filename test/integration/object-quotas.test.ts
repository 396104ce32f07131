/**
 * Per-account object store quotas (bytes and objects): the default from the server's flags, an
 * admin's per-account override, a 403 QuotaExceeded through the AWS SDK for PutObject, CopyObject
 * and CompleteMultipartUpload, the API's error shape and usage (`GET /v1/objects/usage`,
 * `zerocell buckets usage|quota`), job outputs failing with quota_exceeded, and concurrent
 * writes that cannot all fit: exactly as many succeed as the quota allows.
 */
import { describe, it, expect, beforeAll, afterAll, vi } from "vitest";
import { CreateBucketCommand, PutObjectCommand, CopyObjectCommand, GetObjectCommand, DeleteObjectCommand, CreateMultipartUploadCommand, UploadPartCommand, CompleteMultipartUploadCommand, AbortMultipartUploadCommand, HeadObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { createAccount, json, startServer, admin, cleanup, phpBundle, type TestServer } from "../helpers/server.js";
import { s3Client, failure, type Key } from "../helpers/s3.js";

describe("object store quotas", () => {
  let server: TestServer;
  let s3: S3Client;
  const put = (key: string, bytes: number, bucket = "qqq") => s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: Buffer.alloc(bytes, 0x61) }));
  const usage = async (account?: string, token?: string) => (await admin(server, "GET", `/v1/objects/usage${account === undefined ? "" : `?account=${account}`}`, token === undefined ? {} : { token })).json;
  const setQuota = (body: unknown, account = "default") => admin(server, "PUT", `/v1/accounts/${account}/object-quota`, json(body));

  beforeAll(async () => {
    // Server-wide defaults from the flags: 10,000 bytes and 5 objects per account.
    server = await startServer(["--object-quota-bytes", "10000", "--object-quota-objects", "5"]);
    s3 = s3Client(server, JSON.parse((await server.cli(["access-keys", "create", "--json"])).stdout) as Key);
    await s3.send(new CreateBucketCommand({ Bucket: "qqq" }));
  }, 120_000);

  afterAll(async () => {
    await server?.stop();
    if (server !== undefined) cleanup(server.dataDir);
  });

  it("applies the server's default quota, counts overwrites and deletes, and answers 403 QuotaExceeded", async () => {
    await put("a", 4000);
    await put("b", 5000);
    expect(await usage()).toMatchObject({ account: "default", bytes: 9000, objects: 2, quota: { bytes: 10_000, objects: 5 }, override: { bytes: null, objects: null } });
    const over = await failure(put("c", 1001));
    expect(over).toMatchObject({ name: "QuotaExceeded", status: 403 });
    expect((over as { message: string }).message).toMatch(/quota of 10000 bytes/);
    await expect(s3.send(new HeadObjectCommand({ Bucket: "qqq", Key: "c" }))).rejects.toThrow();
    // An overwrite is charged the difference; smaller always fits.
    await put("b", 1000);
    await put("c", 5000);
    expect(await usage()).toMatchObject({ bytes: 10_000, objects: 3 });
    await s3.send(new DeleteObjectCommand({ Bucket: "qqq", Key: "c" }));
    expect(await usage()).toMatchObject({ bytes: 5000, objects: 2 });
    // The object count: 5 objects of 1 byte fit, the 6th does not.
    await put("c", 1);
    await put("d", 1);
    await put("e", 1);
    expect(await failure(put("f", 1))).toMatchObject({ name: "QuotaExceeded", status: 403 });
    expect((await failure(put("f", 0))) as { message: string }).toMatchObject({ message: expect.stringMatching(/quota of 5 objects/) });
    for (const k of ["c", "d", "e"]) await s3.send(new DeleteObjectCommand({ Bucket: "qqq", Key: k }));
  });

  it("an admin sets a per-account quota; CopyObject is charged like a put", async () => {
    const set = await setQuota({ bytes: 20_000, objects: 3 });
    expect(set.status).toBe(200);
    expect(set.json).toMatchObject({ quota: { bytes: 20_000, objects: 3 }, override: { bytes: 20_000, objects: 3 } });
    // a (4000) + b (1000) = 5000; a copy of a: 9000 bytes, 3 objects.
    const copied = await s3.send(new CopyObjectCommand({ Bucket: "qqq", Key: "a-copy", CopySource: "qqq/a" }));
    expect(copied.CopyObjectResult?.ETag).toBeDefined();
    expect(await (await s3.send(new GetObjectCommand({ Bucket: "qqq", Key: "a-copy" }))).Body!.transformToString()).toBe("a".repeat(4000));
    expect(await usage()).toMatchObject({ bytes: 9000, objects: 3 });
    expect(await failure(s3.send(new CopyObjectCommand({ Bucket: "qqq", Key: "a-copy-2", CopySource: "/qqq/a" })))).toMatchObject({ name: "QuotaExceeded", status: 403 });
    await setQuota({ objects: 10 });
    await s3.send(new CopyObjectCommand({ Bucket: "qqq", Key: "a-copy-2", CopySource: "qqq/a" }));
    await s3.send(new CopyObjectCommand({ Bucket: "qqq", Key: "a-copy-3", CopySource: "qqq/a" }));
    expect(await usage()).toMatchObject({ bytes: 17_000, objects: 5 });
    expect(await failure(s3.send(new CopyObjectCommand({ Bucket: "qqq", Key: "a-copy-4", CopySource: "qqq/a" })))).toMatchObject({ name: "QuotaExceeded", status: 403 });
    for (const k of ["a-copy", "a-copy-2", "a-copy-3"]) await s3.send(new DeleteObjectCommand({ Bucket: "qqq", Key: k }));
    // Clearing the override returns to the server's default.
    expect((await setQuota({ bytes: null, objects: null })).json).toMatchObject({ quota: { bytes: 10_000, objects: 5 }, override: { bytes: null, objects: null } });
  });

  it("CompleteMultipartUpload past the quota fails and stores nothing", async () => {
    await setQuota({ bytes: 12 * 1024 * 1024 });
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: "qqq", Key: "big" }));
    const parts = [];
    for (const [n, size] of [[1, 5 * 1024 * 1024], [2, 8 * 1024 * 1024]] as const) {
      const r = await s3.send(new UploadPartCommand({ Bucket: "qqq", Key: "big", UploadId, PartNumber: n, Body: Buffer.alloc(size, n) }));
      parts.push({ PartNumber: n, ETag: r.ETag });
    }
    expect(await failure(s3.send(new CompleteMultipartUploadCommand({ Bucket: "qqq", Key: "big", UploadId, MultipartUpload: { Parts: parts } })))).toMatchObject({ name: "QuotaExceeded", status: 403 });
    await expect(s3.send(new HeadObjectCommand({ Bucket: "qqq", Key: "big" }))).rejects.toThrow();
    expect(await usage()).toMatchObject({ bytes: 5000, objects: 2 });
    await s3.send(new AbortMultipartUploadCommand({ Bucket: "qqq", Key: "big", UploadId }));
    await setQuota({ bytes: null });
  }, 120_000);

  it("concurrent writes that cannot all fit: exactly as many succeed as the quota allows", async () => {
    // 2 objects stored, 5 allowed: of 12 concurrent new keys, 3 succeed.
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => failure(put(`race-${i}`, 10))));
    expect(results.filter((r) => r === "ok").length).toBe(3);
    expect(results.filter((r) => r !== "ok").every((r) => typeof r === "object" && r.name === "QuotaExceeded" && r.status === 403)).toBe(true);
    expect(await usage()).toMatchObject({ bytes: 5030, objects: 5 });
    for (let i = 0; i < 12; i++) await s3.send(new DeleteObjectCommand({ Bucket: "qqq", Key: `race-${i}` }));
    expect(await usage()).toMatchObject({ bytes: 5000, objects: 2 });
  });

  it("the API: usage for the account's own token only, quotas set by admins only, the one error shape; the CLI", async () => {
    const alice = await createAccount(server, "alice");
    expect((await usage(undefined, alice))).toMatchObject({ account: "alice", bytes: 0, objects: 0, quota: { bytes: 10_000, objects: 5 } });
    const other = await admin(server, "GET", "/v1/objects/usage?account=default", { token: alice });
    expect(other.status).toBe(404);
    expect(other.json.error).toMatchObject({ code: "account_not_found" });
    const denied = await admin(server, "PUT", "/v1/accounts/alice/object-quota", { ...json({ bytes: 1 }), token: alice });
    expect(denied.status).toBe(403);
    expect(denied.json.error.code).toBe("forbidden");
    const bad = await setQuota({ bytes: -1 });
    expect(bad.status).toBe(400);
    expect((await setQuota({ bytes: 1 }, "nobody")).status).toBe(404);
    const cli = JSON.parse((await server.cli(["buckets", "quota", "--account", "alice", "--bytes", "777", "--json"])).stdout);
    expect(cli).toMatchObject({ account: "alice", quota: { bytes: 777, objects: 5 }, override: { bytes: 777, objects: null } });
    const text = (await server.cli(["buckets", "usage", "--account", "default"])).stdout;
    expect(text).toMatch(/bytes\s+5000 of 10000 \(50\.0%; quota: default\)/);
    expect(text).toMatch(/objects\s+2 of 5/);
  });

  it("job outputs are charged: items past the quota fail with quota_exceeded, the rest are stored", async () => {
    await server.cli(["deploy", phpBundle("echo.localhost", { "index.php": "<?php echo file_get_contents('php://input');" }), "--app", "echo"]);
    await s3.send(new CreateBucketCommand({ Bucket: "inb" }));
    // 2 objects in q + 3 inputs = 5: no output fits the default quota of 5 objects...
    for (let i = 0; i < 3; i++) await put(`in/${i}`, 100, "inb");
    const started = await admin(server, "POST", "/v1/jobs", json({ app: "echo", input: "inb/in/", output: "qqq/out/", concurrency: 1 }));
    expect(started.status).toBe(201);
    const id = started.json.job.id as string;
    await vi.waitFor(async () => expect((await admin(server, "GET", `/v1/jobs/${id}`)).json.job.status).toBe("done"), { timeout: 120_000, interval: 250 });
    const failed = (await admin(server, "GET", `/v1/jobs/${id}?items=failed`)).json.items as Array<{ error: { code: string; message: string } }>;
    expect(failed.length, JSON.stringify(failed)).toBe(3);
    expect(failed.map((i) => i.error.code)).toEqual(["quota_exceeded", "quota_exceeded", "quota_exceeded"]);
    expect(failed[0]!.error.message).toMatch(/quota of 5 objects/);
    // ...with room for one more object, exactly one output is stored.
    await setQuota({ objects: 6 });
    const again = (await admin(server, "POST", "/v1/jobs", json({ app: "echo", input: "inb/in/", output: "qqq/out2/", concurrency: 2 }))).json.job.id as string;
    await vi.waitFor(async () => expect((await admin(server, "GET", `/v1/jobs/${again}`)).json.job.status).toBe("done"), { timeout: 120_000, interval: 250 });
    expect((await admin(server, "GET", `/v1/jobs/${again}`)).json.job.counts).toEqual({ ok: 1, failed: 2, pending: 0 });
    expect(await usage()).toMatchObject({ objects: 6 });
  }, 240_000);
});
