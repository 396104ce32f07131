/**
 * The object store contract against the S3 backend on a real OpenStack Swift (Debian's, with
 * s3api), started here on loopback. A Swift that cannot start fails this file with its output.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import net from "node:net";
import http from "node:http";
import { createHash } from "node:crypto";
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { openDb, Store } from "../../src/store/index.js";
import { S3ObjectStore, DEFAULT_S3_BACKEND, type S3BackendConfig } from "../../src/objects/index.js";
import { startSwift, type SwiftServer } from "../helpers/swift.js";
import { runObjectStoreContract } from "./object-store.contract.js";

let swift: SwiftServer | undefined;
let swiftFailure: unknown;

beforeAll(async () => {
  try {
    swift = await startSwift();
  } catch (e) {
    swiftFailure = e;
  }
}, 300_000);

afterAll(async () => {
  await swift?.stop();
}, 60_000);

it("Swift starts on loopback with s3api", () => {
  if (swiftFailure !== undefined) throw swiftFailure;
  expect(swift?.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
});

runObjectStoreContract("s3 backend on Swift", async (limits) => {
  if (swift === undefined) throw new Error(`Swift did not start: ${String(swiftFailure)}`);
  const dir = mkdtempSync(join(tmpdir(), "zc-objects-s3-"));
  const db = openDb(join(dir, "zerocell.db"));
  const store = new Store(db);
  const a = store.createAccount("acct-a", null).id;
  const b = store.createAccount("acct-b", null).id;
  const objects = new S3ObjectStore({
    db,
    tmpDir: join(dir, "objects-tmp"),
    config: { ...DEFAULT_S3_BACKEND, endpoint: swift.endpoint, region: swift.region, bucket: "zc-contract", prefix: "t1/", accessKeyId: swift.accessKeyId, secretAccessKey: swift.secretAccessKey },
    limits,
  });
  return {
    store: objects,
    accounts: [a, b],
    close: async () => {
      await objects.close();
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}, { quotas: false });

// --- the remote failing: clear, retryable errors; a failed write leaves the previous object ---

describe("s3 backend when the remote fails", () => {
  const servers: Array<net.Server | http.Server> = [];
  let dir = "";
  let db: ReturnType<typeof openDb>;
  let account = "";
  const stores: S3ObjectStore[] = [];
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "zc-objects-s3f-"));
    db = openDb(join(dir, "zerocell.db"));
    account = new Store(db).createAccount("acct-f", null).id;
  });
  afterAll(async () => {
    for (const s of stores) await s.close();
    for (const s of servers) await new Promise((r) => s.close(r));
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const listen = async <T extends net.Server | http.Server>(s: T): Promise<string> => {
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
    return `http://127.0.0.1:${(s.address() as net.AddressInfo).port}`;
  };
  const storeAt = (endpoint: string, extra: Partial<S3BackendConfig> = {}) => {
    const s = new S3ObjectStore({ db, tmpDir: join(dir, `tmp-${stores.length}`), config: { ...DEFAULT_S3_BACKEND, endpoint, bucket: "zc-faults", accessKeyId: swift?.accessKeyId ?? "x", secretAccessKey: swift?.secretAccessKey ?? "y", maxAttempts: 2, connectTimeoutMs: 2000, idleTimeoutMs: 1500, ...extra } });
    stores.push(s);
    return s;
  };
  const body = (n: number, fill = 1) => (async function* () { yield Buffer.alloc(n, fill); })();

  it("a refused connection, a stalled remote and a 5xx answer are 503 object_backend_unavailable (retryable)", async () => {
    const closed = new net.Server();
    const closedUrl = await listen(closed);
    await new Promise((r) => closed.close(r));
    servers.pop();
    const stalled = await listen(net.createServer((sock) => sock.on("data", () => {})));
    const failing = await listen(http.createServer((req, res) => { req.resume(); res.writeHead(500, { "content-type": "application/xml" }).end("<Error><Code>InternalError</Code><Message>boom</Message></Error>"); }));
    for (const [i, url] of [closedUrl, stalled, failing].entries()) {
      const s = storeAt(url);
      const name = `down-${i}`;
      await s.createBucket(account, name);
      await expect(s.putObject(account, name, "k", body(10)), url).rejects.toMatchObject({ s3Code: "ServiceUnavailable", code: "object_backend_unavailable", status: 503, details: { retryable: true } });
      await expect(s.headObject(account, name, "k"), url).rejects.toMatchObject({ code: "object_backend_unavailable" });
    }
  }, 120_000);

  it("a write cut off mid-body (client or network) leaves the previous object whole", async () => {
    if (swift === undefined) throw new Error(`Swift did not start: ${String(swiftFailure)}`);
    const direct = storeAt(swift.endpoint, { idleTimeoutMs: 30_000 });
    await direct.createBucket(account, "cut");
    const v1 = Buffer.alloc(300_000, 1);
    await direct.putObject(account, "cut", "obj", body(300_000, 1));
    // 1. The client's body fails half-way: nothing reaches the remote.
    async function* broken() {
      yield Buffer.alloc(100_000, 2);
      throw new Error("client went away");
    }
    await expect(direct.putObject(account, "cut", "obj", broken())).rejects.toThrow(/client went away/);
    // 2. The connection to the remote is cut after 64 KiB of the request: a retryable 503.
    const target = new URL(swift.endpoint);
    const cutter = await listen(net.createServer((client) => {
      const up = net.connect(Number(target.port), target.hostname);
      let sent = 0;
      client.on("data", (d: Buffer) => {
        sent += d.length;
        if (sent > 64 * 1024) {
          client.destroy();
          up.destroy();
        } else up.write(d);
      });
      up.on("data", (d) => client.write(d));
      up.on("error", () => client.destroy());
      client.on("error", () => up.destroy());
    }));
    const viaCutter = storeAt(cutter, { idleTimeoutMs: 30_000 });
    await expect(viaCutter.putObject(account, "cut", "obj", body(300_000, 3))).rejects.toMatchObject({ code: "object_backend_unavailable", status: 503 });
    const got = await direct.getObject(account, "cut", "obj");
    const parts: Buffer[] = [];
    for await (const c of got.body) parts.push(c as Buffer);
    expect(Buffer.concat(parts).equals(v1)).toBe(true);
    expect(got.info.etag).toBe(createHash("md5").update(v1).digest("hex"));
  }, 120_000);
});
