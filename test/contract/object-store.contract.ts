/**
 * The object store contract: the same cases run against every backend (disk:
 * object-store-disk.test.ts; S3 on a real Swift: object-store-swift.test.ts). A backend passes when an S3 client could not tell it from S3 through these calls.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { createHash } from "node:crypto";
import type { Readable } from "node:stream";
import type { ObjectLimits, ObjectStore } from "../../src/objects/index.js";

export interface ContractTarget {
  store: ObjectStore;
  /** Two accounts the backend knows. */
  accounts: [string, string];
  close(): Promise<void>;
}

async function* chunks(data: Buffer | string, size = 64 * 1024): AsyncGenerator<Uint8Array> {
  const b = Buffer.from(data);
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

async function readAll(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(Buffer.from(c as Uint8Array));
  return Buffer.concat(parts);
}

const md5 = (b: Buffer | string) => createHash("md5").update(b).digest("hex");

/** Limits the suite sets so its size cases run fast; every backend must honour them. */
export const CONTRACT_LIMITS: Partial<ObjectLimits> = { maxObjectBytes: 1024 * 1024, minPartBytes: 256 * 1024, maxListKeys: 1000, maxBucketsPerAccount: 5 };

/** What a backend offers beyond the common contract. */
export interface ContractFeatures {
  /** Per-account quotas (bytes and objects counted on every write); without them usage and setQuota answer 501. */
  quotas: boolean;
}

export function runObjectStoreContract(name: string, open: (limits: Partial<ObjectLimits>) => Promise<ContractTarget>, features: ContractFeatures = { quotas: true }): void {
  describe(`object store contract: ${name}`, () => {
    let t: ContractTarget;
    let s: ObjectStore;
    let a: string;
    let b: string;

    beforeAll(async () => {
      t = await open(CONTRACT_LIMITS);
      s = t.store;
      [a, b] = t.accounts;
      await s.createBucket(a, "alpha");
    });
    afterAll(async () => {
      await t.close();
    });

    it("creates, lists and deletes buckets; names follow S3's rules", async () => {
      await s.createBucket(a, "scratch-1");
      expect((await s.listBuckets(a)).map((x) => x.name)).toEqual(["alpha", "scratch-1"]);
      await expect(s.createBucket(a, "scratch-1")).rejects.toMatchObject({ s3Code: "BucketAlreadyOwnedByYou" });
      for (const bad of ["ab", "Upper", "a..b", "-ab", "192.168.1.1", "x".repeat(64), "a_b", "xn--abc"]) {
        await expect(s.createBucket(a, bad), bad).rejects.toMatchObject({ s3Code: "InvalidBucketName", status: 400 });
      }
      await s.deleteBucket(a, "scratch-1");
      await expect(s.headBucket(a, "scratch-1")).rejects.toMatchObject({ s3Code: "NoSuchBucket", status: 404 });
    });

    it("keeps accounts apart: another account's bucket is exactly a missing one", async () => {
      await s.putObject(a, "alpha", "secret.txt", chunks("a's data"));
      const missing = await s.headBucket(b, "no-such-bucket").catch((e: unknown) => e);
      const foreign = await s.headBucket(b, "alpha").catch((e: unknown) => e);
      expect(foreign).toMatchObject({ s3Code: "NoSuchBucket", status: 404 });
      expect((foreign as Error).message).toBe((missing as Error).message.replace("no-such-bucket", "alpha"));
      await expect(s.getObject(b, "alpha", "secret.txt")).rejects.toMatchObject({ s3Code: "NoSuchBucket" });
      await expect(s.putObject(b, "alpha", "x", chunks("b"))).rejects.toMatchObject({ s3Code: "NoSuchBucket" });
      await expect(s.deleteObject(b, "alpha", "secret.txt")).rejects.toMatchObject({ s3Code: "NoSuchBucket" });
      await expect(s.listObjects(b, "alpha")).rejects.toMatchObject({ s3Code: "NoSuchBucket" });
      // b may have its own "alpha": a different bucket.
      await s.createBucket(b, "alpha");
      expect((await s.listObjects(b, "alpha")).objects).toEqual([]);
      expect((await readAll((await s.getObject(a, "alpha", "secret.txt")).body)).toString()).toBe("a's data");
      await s.deleteBucket(b, "alpha");
      expect(await s.listBuckets(b)).toEqual([]);
    });

    it("puts, gets and heads an object with its ETag, type and user metadata", async () => {
      const data = Buffer.alloc(300_000, 7);
      const info = await s.putObject(a, "alpha", "dir/file.bin", chunks(data), { contentType: "application/x-test", metadata: { owner: "me", "two-words": "héllo wörld" } });
      expect(info).toMatchObject({ key: "dir/file.bin", size: data.length, etag: md5(data), contentType: "application/x-test" });
      const head = await s.headObject(a, "alpha", "dir/file.bin");
      expect(head).toMatchObject({ size: data.length, etag: md5(data), metadata: { owner: "me", "two-words": "héllo wörld" } });
      const got = await s.getObject(a, "alpha", "dir/file.bin");
      expect(got.range).toBeUndefined();
      expect((await readAll(got.body)).equals(data)).toBe(true);
      await expect(s.headObject(a, "alpha", "nope")).rejects.toMatchObject({ s3Code: "NoSuchKey", status: 404 });
    });

    it("stores empty objects and replaces objects on a second put", async () => {
      const e = await s.putObject(a, "alpha", "empty", chunks(""));
      expect(e).toMatchObject({ size: 0, etag: md5("") });
      expect((await readAll((await s.getObject(a, "alpha", "empty")).body)).length).toBe(0);
      await s.putObject(a, "alpha", "v", chunks("one"));
      await s.putObject(a, "alpha", "v", chunks("two!"));
      expect((await readAll((await s.getObject(a, "alpha", "v")).body)).toString()).toBe("two!");
      expect((await s.headObject(a, "alpha", "v")).size).toBe(4);
    });

    it("serves ranges and refuses unsatisfiable ones", async () => {
      await s.putObject(a, "alpha", "digits", chunks("0123456789"));
      const r = async (range: Parameters<ObjectStore["getObject"]>[3]) => {
        const g = await s.getObject(a, "alpha", "digits", range);
        return { range: g.range, text: (await readAll(g.body)).toString() };
      };
      expect(await r({ start: 2, end: 4 })).toEqual({ range: { start: 2, end: 4 }, text: "234" });
      expect(await r({ start: 7 })).toEqual({ range: { start: 7, end: 9 }, text: "789" });
      expect(await r({ suffix: 3 })).toEqual({ range: { start: 7, end: 9 }, text: "789" });
      expect(await r({ start: 8, end: 100 })).toEqual({ range: { start: 8, end: 9 }, text: "89" });
      await expect(s.getObject(a, "alpha", "digits", { start: 10 })).rejects.toMatchObject({ s3Code: "InvalidRange", status: 416 });
      await expect(s.getObject(a, "alpha", "digits", { start: 5, end: 4 })).rejects.toMatchObject({ s3Code: "InvalidRange" });
    });

    it("keeps a reader's bytes when the object is deleted or replaced while it reads", async () => {
      const data = Buffer.alloc(200_000, 3);
      await s.putObject(a, "alpha", "busy", chunks(data));
      const g = await s.getObject(a, "alpha", "busy");
      await s.deleteObject(a, "alpha", "busy");
      expect((await readAll(g.body)).equals(data)).toBe(true);
      await expect(s.headObject(a, "alpha", "busy")).rejects.toMatchObject({ s3Code: "NoSuchKey" });
    });

    it("deletes idempotently and shares identical bytes safely", async () => {
      await s.putObject(a, "alpha", "same-1", chunks("identical"));
      await s.putObject(a, "alpha", "same-2", chunks("identical"));
      await s.deleteObject(a, "alpha", "same-1");
      await s.deleteObject(a, "alpha", "same-1");
      expect((await readAll((await s.getObject(a, "alpha", "same-2")).body)).toString()).toBe("identical");
    });

    it("enforces limits: object size, key length, metadata size, declared length, digests", async () => {
      const lim = s.limits;
      await expect(s.putObject(a, "alpha", "big", chunks(Buffer.alloc(lim.maxObjectBytes + 1)))).rejects.toMatchObject({ s3Code: "EntityTooLarge", status: 400 });
      await expect(s.putObject(a, "alpha", "big", chunks("x"), { contentLength: lim.maxObjectBytes + 1 })).rejects.toMatchObject({ s3Code: "EntityTooLarge" });
      await expect(s.headObject(a, "alpha", "big")).rejects.toMatchObject({ s3Code: "NoSuchKey" });
      await expect(s.putObject(a, "alpha", "k".repeat(lim.maxKeyBytes + 1), chunks("x"))).rejects.toMatchObject({ s3Code: "KeyTooLongError" });
      await s.putObject(a, "alpha", "é".repeat(lim.maxKeyBytes / 2), chunks("x"));
      await expect(s.putObject(a, "alpha", "é".repeat(lim.maxKeyBytes / 2 + 1), chunks("x"))).rejects.toMatchObject({ s3Code: "KeyTooLongError" });
      await expect(s.putObject(a, "alpha", "", chunks("x"))).rejects.toMatchObject({ status: 400 });
      await expect(s.putObject(a, "alpha", "nul\0key", chunks("x"))).rejects.toMatchObject({ status: 400 });
      await expect(s.putObject(a, "alpha", "m", chunks("x"), { metadata: { big: "v".repeat(lim.maxMetadataBytes) } })).rejects.toMatchObject({ s3Code: "MetadataTooLarge" });
      await expect(s.putObject(a, "alpha", "m", chunks("x"), { metadata: { "Bad Name": "v" } })).rejects.toMatchObject({ status: 400 });
      await expect(s.putObject(a, "alpha", "short", chunks("abc"), { contentLength: 4 })).rejects.toMatchObject({ s3Code: "IncompleteBody" });
      await expect(s.putObject(a, "alpha", "sha", chunks("abc"), { expectedSha256: "0".repeat(64) })).rejects.toMatchObject({ s3Code: "XAmzContentSHA256Mismatch" });
      await expect(s.putObject(a, "alpha", "md5", chunks("abc"), { expectedMd5Base64: createHash("md5").update("abd").digest("base64") })).rejects.toMatchObject({ s3Code: "BadDigest" });
      for (const k of ["short", "sha", "md5"]) await expect(s.headObject(a, "alpha", k)).rejects.toMatchObject({ s3Code: "NoSuchKey" });
      const ok = await s.putObject(a, "alpha", "sha-ok", chunks("abc"), { expectedSha256: createHash("sha256").update("abc").digest("hex"), expectedMd5Base64: createHash("md5").update("abc").digest("base64"), contentLength: 3 });
      expect(ok.size).toBe(3);
    });

    it("treats keys as names: dots, slashes and traversal stay keys", async () => {
      for (const k of ["../../../etc/passwd", "/abs", "a//b", "./x", "..", "%2e%2e/y", "ünï/cödé 😀"]) {
        await s.putObject(a, "alpha", k, chunks(`v:${k}`));
        expect((await readAll((await s.getObject(a, "alpha", k)).body)).toString()).toBe(`v:${k}`);
      }
    });

    it("lists with prefix, delimiter and continuation, in byte order", async () => {
      await s.createBucket(a, "listing");
      const keys = ["a.txt", "b/1", "b/2", "b/c/3", "c", "d/x", "d/y", "e", "é", "😀"];
      for (const k of keys) await s.putObject(a, "listing", k, chunks(k));
      const all = await s.listObjects(a, "listing");
      expect(all.objects.map((o) => o.key)).toEqual(keys);
      expect(all.isTruncated).toBe(false);
      const top = await s.listObjects(a, "listing", { delimiter: "/" });
      expect(top.objects.map((o) => o.key)).toEqual(["a.txt", "c", "e", "é", "😀"]);
      expect(top.commonPrefixes).toEqual(["b/", "d/"]);
      const inB = await s.listObjects(a, "listing", { prefix: "b/", delimiter: "/" });
      expect(inB.objects.map((o) => o.key)).toEqual(["b/1", "b/2"]);
      expect(inB.commonPrefixes).toEqual(["b/c/"]);
      // Pages of 2 entries (keys and common prefixes count alike) cover everything once.
      const seen: string[] = [];
      let after: string | undefined;
      for (let page = 0; page < 20; page++) {
        const r = await s.listObjects(a, "listing", { delimiter: "/", maxKeys: 2, ...(after === undefined ? {} : { after }) });
        seen.push(...r.objects.map((o) => o.key), ...r.commonPrefixes);
        expect(r.objects.length + r.commonPrefixes.length).toBeLessThanOrEqual(2);
        if (!r.isTruncated) break;
        after = r.nextAfter;
      }
      expect(seen.sort()).toEqual(["a.txt", "b/", "c", "d/", "e", "é", "😀"].sort());
      expect((await s.listObjects(a, "listing", { prefix: "zz" })).objects).toEqual([]);
      expect((await s.listObjects(a, "listing", { maxKeys: 0 })).objects).toEqual([]);
      // A page never holds more than the limit, whatever is asked.
      const huge = await s.listObjects(a, "listing", { maxKeys: 10_000_000 });
      expect(huge.objects.length).toBe(keys.length);
    });

    it("refuses to delete a bucket that is not empty", async () => {
      await expect(s.deleteBucket(a, "listing")).rejects.toMatchObject({ s3Code: "BucketNotEmpty", status: 409 });
    });

    it("limits buckets per account", async () => {
      const made: string[] = [];
      await expect(async () => {
        for (let i = 0; i < 10; i++) {
          await s.createBucket(a, `many-${i}`);
          made.push(`many-${i}`);
        }
      }).rejects.toMatchObject({ s3Code: "TooManyBuckets" });
      for (const m of made) await s.deleteBucket(a, m);
    });

    it("assembles multipart uploads with S3's ETag and part rules", async () => {
      const min = s.limits.minPartBytes;
      const p1 = Buffer.alloc(min, 1);
      const p2 = Buffer.alloc(min, 2);
      const p3 = Buffer.from("tail");
      const id = await s.createMultipartUpload(a, "alpha", "multi", { contentType: "text/x-multi", metadata: { m: "1" } });
      const e1 = await s.uploadPart(a, "alpha", "multi", id, 1, chunks(p1));
      const e2 = await s.uploadPart(a, "alpha", "multi", id, 2, chunks(Buffer.alloc(10))); // replaced below
      expect(e2.size).toBe(10);
      const e2b = await s.uploadPart(a, "alpha", "multi", id, 2, chunks(p2));
      const e3 = await s.uploadPart(a, "alpha", "multi", id, 3, chunks(p3));
      expect(e1.etag).toBe(md5(p1));
      await expect(s.completeMultipartUpload(a, "alpha", "multi", id, [{ partNumber: 2, etag: e2b.etag }, { partNumber: 1, etag: e1.etag }])).rejects.toMatchObject({ s3Code: "InvalidPartOrder" });
      await expect(s.completeMultipartUpload(a, "alpha", "multi", id, [{ partNumber: 1, etag: e1.etag }, { partNumber: 2, etag: e2.etag }])).rejects.toMatchObject({ s3Code: "InvalidPart" });
      await expect(s.completeMultipartUpload(a, "alpha", "multi", id, [{ partNumber: 3, etag: e3.etag }, { partNumber: 4, etag: e3.etag }])).rejects.toMatchObject({ s3Code: "InvalidPart" });
      await expect(s.completeMultipartUpload(b, "alpha", "multi", id, [{ partNumber: 1, etag: e1.etag }])).rejects.toMatchObject({ s3Code: "NoSuchBucket" });
      await expect(s.completeMultipartUpload(a, "alpha", "other-key", id, [{ partNumber: 1, etag: e1.etag }])).rejects.toMatchObject({ s3Code: "NoSuchUpload" });
      const info = await s.completeMultipartUpload(a, "alpha", "multi", id, [{ partNumber: 1, etag: `"${e1.etag}"` }, { partNumber: 2, etag: e2b.etag }, { partNumber: 3, etag: e3.etag }]);
      const expectedEtag = createHash("md5").update(Buffer.concat([p1, p2, p3].map((p) => createHash("md5").update(p).digest()))).digest("hex") + "-3";
      expect(info).toMatchObject({ size: p1.length + p2.length + p3.length, etag: expectedEtag, contentType: "text/x-multi", metadata: { m: "1" } });
      expect((await readAll((await s.getObject(a, "alpha", "multi")).body)).equals(Buffer.concat([p1, p2, p3]))).toBe(true);
      await expect(s.uploadPart(a, "alpha", "multi", id, 4, chunks("late"))).rejects.toMatchObject({ s3Code: "NoSuchUpload" });
    });

    it("refuses small middle parts, bad part numbers and bad upload ids; aborts", async () => {
      const id = await s.createMultipartUpload(a, "alpha", "small");
      const e1 = await s.uploadPart(a, "alpha", "small", id, 1, chunks("x"));
      const e2 = await s.uploadPart(a, "alpha", "small", id, 2, chunks("y"));
      await expect(s.completeMultipartUpload(a, "alpha", "small", id, [{ partNumber: 1, etag: e1.etag }, { partNumber: 2, etag: e2.etag }])).rejects.toMatchObject({ s3Code: "EntityTooSmall" });
      for (const n of [0, -1, 1.5, s.limits.maxParts + 1]) await expect(s.uploadPart(a, "alpha", "small", id, n, chunks("z"))).rejects.toMatchObject({ status: 400 });
      for (const bad of ["../../etc", "0".repeat(31), id.toUpperCase() === id ? "f".repeat(32) : id.toUpperCase()]) {
        await expect(s.uploadPart(a, "alpha", "small", bad, 1, chunks("z"))).rejects.toMatchObject({ s3Code: "NoSuchUpload" });
      }
      await s.abortMultipartUpload(a, "alpha", "small", id);
      await expect(s.completeMultipartUpload(a, "alpha", "small", id, [{ partNumber: 1, etag: e1.etag }])).rejects.toMatchObject({ s3Code: "NoSuchUpload" });
      await expect(s.headObject(a, "alpha", "small")).rejects.toMatchObject({ s3Code: "NoSuchKey" });
    });

    it("copies within an account only, with the source's or replaced metadata", async () => {
      await s.createBucket(a, "copies");
      await s.putObject(a, "copies", "src", chunks("copy me"), { contentType: "text/plain", metadata: { color: "red" } });
      const same = await s.copyObject(a, { bucket: "copies", key: "src" }, "copies", "dst");
      expect(same).toMatchObject({ key: "dst", size: 7, contentType: "text/plain", metadata: { color: "red" } });
      expect((await readAll((await s.getObject(a, "copies", "dst")).body)).toString()).toBe("copy me");
      const replaced = await s.copyObject(a, { bucket: "copies", key: "src" }, "copies", "dst2", { contentType: "text/x", metadata: {} });
      expect(replaced).toMatchObject({ contentType: "text/x", metadata: {} });
      // The source deleted: the copies keep their bytes.
      await s.deleteObject(a, "copies", "src");
      expect((await readAll((await s.getObject(a, "copies", "dst2")).body)).toString()).toBe("copy me");
      await expect(s.copyObject(a, { bucket: "copies", key: "src" }, "copies", "x")).rejects.toMatchObject({ s3Code: "NoSuchKey" });
      await s.createBucket(b, "theirs");
      await s.putObject(b, "theirs", "secret", chunks("s"));
      await expect(s.copyObject(a, { bucket: "theirs", key: "secret" }, "copies", "stolen")).rejects.toMatchObject({ s3Code: "NoSuchBucket" });
      await expect(s.copyObject(b, { bucket: "copies", key: "dst" }, "theirs", "stolen")).rejects.toMatchObject({ s3Code: "NoSuchBucket" });
      for (const k of ["dst", "dst2"]) await s.deleteObject(a, "copies", k);
      await s.deleteObject(b, "theirs", "secret");
    });

    it.runIf(!features.quotas)("a backend without quotas says so (501 quota_unsupported), never a wrong count", () => {
      expect(() => s.usage(b)).toThrow(expect.objectContaining({ code: "quota_unsupported", status: 501 }));
      expect(() => s.setQuota(b, { bytes: 10 })).toThrow(expect.objectContaining({ code: "quota_unsupported", status: 501 }));
    });

    it.runIf(features.quotas)("counts bytes and objects per account and refuses writes past the account's quota", async () => {
      const before = s.usage(b);
      expect(before).toMatchObject({ bytes: 0, objects: 0, override: { bytes: null, objects: null } });
      await s.createBucket(b, "quota");
      s.setQuota(b, { bytes: 10, objects: 2 });
      await s.putObject(b, "quota", "one", chunks("123456"));
      await expect(s.putObject(b, "quota", "two", chunks("12345"))).rejects.toMatchObject({ s3Code: "QuotaExceeded", code: "quota_exceeded", status: 403 });
      await expect(s.headObject(b, "quota", "two")).rejects.toMatchObject({ s3Code: "NoSuchKey" });
      await s.putObject(b, "quota", "two", chunks("1234"));
      await expect(s.putObject(b, "quota", "three", chunks(""))).rejects.toMatchObject({ s3Code: "QuotaExceeded" });
      await expect(s.copyObject(b, { bucket: "quota", key: "two" }, "quota", "three")).rejects.toMatchObject({ s3Code: "QuotaExceeded" });
      // Overwrites are charged the difference, deletes give room back.
      await s.putObject(b, "quota", "one", chunks("1"));
      expect(s.usage(b)).toMatchObject({ bytes: 5, objects: 2, quota: { bytes: 10, objects: 2 } });
      await s.deleteObject(b, "quota", "one");
      await s.deleteObject(b, "quota", "two");
      expect(s.setQuota(b, { bytes: null, objects: null })).toMatchObject({ bytes: 0, objects: 0, quota: { bytes: s.limits.quotaBytes, objects: s.limits.quotaObjects } });
      // The other account's usage is its own.
      expect(s.usage(a).objects).toBeGreaterThan(0);
      expect(() => s.setQuota(b, { bytes: -1 })).toThrow(/quota/);
    });
  });
}
