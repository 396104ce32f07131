/**
 * Instances restored from a snapshot that was loaded from the store (a restart), not taken in this
 * server's life, serve request bodies of every size like the instance that took it. Jobs saw
 * "memory access out of bounds" on 1–3 of 46 object runs after a restart: php-wasm's Asyncify
 * buffer (malloc'd by its JS glue at the first sleep, cached for ever) was not part of the
 * snapshot, so on restored hosts request bodies were placed over it and usleep() wrote the unwound
 * stack into them (src/runtime/php/asyncify-data.ts). The PHP app sleeps before it reads the body.
 */
import { describe, it, expect, afterAll, vi } from "vitest";
import { createHash } from "node:crypto";
import { startServer, phpBundle, writeBundle, fetchApp, admin, type TestServer } from "../helpers/server.js";

const APP = `<?php
usleep(1000);
$b = file_get_contents('php://input');
echo strlen($b), ' ', md5($b);
`;

const PY_APP = `import hashlib
def application(environ, start_response):
    n = int(environ.get("CONTENT_LENGTH") or 0)
    b = environ["wsgi.input"].read(n)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("%d %s" % (len(b), hashlib.md5(b).hexdigest())).encode()]
`;

/** Deterministic pseudo-random bytes (the sizes and contents must repeat run to run). */
function bytes(n: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

const SIZES = [0, 1, 100, 4095, 4096, 4097, 65535, 65536, 65537, 100_000, 200_000, 333_333, 500_000, 700_001, 1_000_000, 1 << 20];
for (let i = 0; i < 40; i++) SIZES.push((i * 2654435761) % (1 << 20));

async function runBodies(server: TestServer, host: string, method = "PUT"): Promise<string[]> {
  const fails: string[] = [];
  let next = 0;
  // Four at a time: the pool grows to several hosts, each restored from the snapshot.
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < SIZES.length) {
        const i = next++;
        const body = bytes(SIZES[i]!, i + 1);
        // PUT: PHP reads the body when the script asks (after its sleep); POST at startup.
        const res = await fetchApp(server, host, "/", { method: i % 4 === 3 ? "POST" : method, body, headers: { "content-type": "application/octet-stream" } });
        const want = `${body.length} ${createHash("md5").update(body).digest("hex")}`;
        if (res.status !== 200 || res.text !== want) fails.push(`${body.length} B: ${res.status} ${res.text.slice(0, 300)}`);
      }
    }),
  );
  return fails;
}

describe("snapshot restored after a restart", () => {
  let server: TestServer | undefined;
  afterAll(async () => {
    await server?.stop();
  });

  it("serves bodies from 0 B to 1 MiB on hosts restored from the stored snapshot (PHP and Python)", async () => {
    server = await startServer();
    const dataDir = server.dataDir;
    const empty = `0 ${createHash("md5").update("").digest("hex")}`;
    await server.cli(["deploy", phpBundle("bodies.localhost", { "index.php": APP }, `[limits]\nmax_body_bytes = 2097152\n`), "--app", "bodies"]);
    await server.cli(["deploy", writeBundle({ "zerocell.toml": `runtime = "python"\n[python]\napp = "app:application"\n[limits]\nmax_body_bytes = 2097152\n[[routes]]\nhost = "pybodies.localhost"\n`, "app.py": PY_APP }), "--app", "pybodies"]);
    expect((await fetchApp(server, "bodies.localhost", "/")).text).toBe(empty);
    expect((await fetchApp(server, "pybodies.localhost", "/")).text).toBe(empty);
    await vi.waitFor(() => expect(server!.output().split('"msg":"snapshot stored"').length).toBeGreaterThanOrEqual(3), { timeout: 120_000, interval: 200 });
    expect(await runBodies(server, "bodies.localhost")).toEqual([]);
    expect(await server.stop()).toBe(0);

    server = await startServer([], { dataDir });
    const fails = await runBodies(server, "bodies.localhost");
    const pyFails = await runBodies(server, "pybodies.localhost", "POST");
    const pools = (await admin(server, "GET", "/v1/pool")).json.deployments as Array<{ app: string; restoredFromSnapshot: number }>;
    for (const app of ["bodies", "pybodies"]) expect(pools.find((d) => d.app === app)!.restoredFromSnapshot, app).toBeGreaterThanOrEqual(1);
    expect(fails).toEqual([]);
    expect(pyFails).toEqual([]);
  }, 400_000);
});
