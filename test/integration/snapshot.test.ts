import { describe, it, expect, afterAll, vi } from "vitest";
import Database from "better-sqlite3";
import { join } from "node:path";
import { writeFileSync, readFileSync } from "node:fs";
import { startServer, phpBundle, fetchApp, admin, type TestServer } from "../helpers/server.js";

const APP = `<?php
require __DIR__ . '/lib.php';
$s = opcache_get_status(false)['opcache_statistics'];
echo json_encode(['v' => lib_value(), 'hits' => $s['hits'], 'cached' => $s['num_cached_scripts'], 'rand' => bin2hex(random_bytes(8))]);
`;
const LIB = "<?php\nfunction lib_value() { return 42; }\n" + Array.from({ length: 500 }, (_, i) => `function f${i}($x) { return $x * ${i}; }`).join("\n");

async function poolOf(server: TestServer) {
  const r = await admin(server, "GET", "/v1/pool");
  return r.json.deployments.find((d: { app: string; mode: string }) => d.app === "snap" && d.mode === "snapshot");
}

/** Polls `fn` until it gives a value other than undefined or false. */
function waitFor<T>(fn: () => Promise<T | undefined> | T | undefined): Promise<T> {
  return vi.waitFor(
    async () => {
      const v = await fn();
      if (v === undefined || v === false) throw new Error("still waiting");
      return v;
    },
    { timeout: 20_000, interval: 100 },
  );
}

function snapshotRows(dataDir: string): Array<{ sha256: string; engine_build: string; memory_bytes: number }> {
  const db = new Database(join(dataDir, "zerocell.db"), { readonly: true });
  try {
    return db.prepare("SELECT sha256, engine_build, memory_bytes FROM snapshots").all() as Array<{ sha256: string; engine_build: string; memory_bytes: number }>;
  } finally {
    db.close();
  }
}

describe("snapshots are stored at deploy and survive a restart", () => {
  let server: TestServer;
  afterAll(async () => {
    await server?.stop();
  });

  it("stores a snapshot after the first instance's warm-up, and restores from it after a restart", async () => {
    server = await startServer();
    const dataDir = server.dataDir;
    await server.cli(["deploy", phpBundle("snap.localhost", { "index.php": APP, "lib.php": LIB }), "--app", "snap"]);
    const first = JSON.parse((await fetchApp(server, "snap.localhost", "/")).text);
    expect(first.v).toBe(42);
    const rows = await waitFor(() => (snapshotRows(dataDir).length > 0 ? snapshotRows(dataDir) : undefined));
    expect(rows.length).toBe(1);
    expect(rows[0]!.engine_build).toMatch(/^php-wasm-[\d.]+\/node-8-3-[\d.]+\/engine-\d+\/ini-[0-9a-f]{12}$/);
    expect(rows[0]!.memory_bytes).toBeGreaterThan(1_000_000);
    // The row is written before the log line: poll for the line.
    await waitFor(() => (server.output().includes('"msg":"snapshot stored"') ? true : undefined));
    expect(await server.stop()).toBe(0);

    // Restart on the same data dir: the instance comes back from the stored snapshot.
    server = await startServer([], { dataDir });
    const res = JSON.parse((await fetchApp(server, "snap.localhost", "/")).text);
    expect(res.v).toBe(42);
    // Opcache was warmed by the warm-up before the snapshot: the scripts are cached at once.
    expect(res.cached).toBeGreaterThanOrEqual(2);
    expect(res.hits).toBeGreaterThanOrEqual(2);
    const stats = await waitFor(() => poolOf(server));
    expect(stats.restoredFromSnapshot).toBeGreaterThanOrEqual(1);
    expect(snapshotRows(dataDir).length).toBe(1);
    expect(await server.stop()).toBe(0);
  }, 240_000);

  it("detects a corrupt snapshot file, serves anyway, and stores a new one", async () => {
    const dataDir = server.dataDir;
    const [row] = snapshotRows(dataDir);
    const file = join(dataDir, "blobs", "sha256", row!.sha256.slice(0, 2), row!.sha256.slice(2));
    const bytes = readFileSync(file);
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
    writeFileSync(file, bytes);
    server = await startServer([], { dataDir });
    const res = JSON.parse((await fetchApp(server, "snap.localhost", "/")).text);
    expect(res.v).toBe(42);
    expect(server.output()).toMatch(/snapshot not usable, rebuilding it: blobs: blob [0-9a-f]+ is corrupt/);
    await waitFor(() => snapshotRows(dataDir).some((r) => r.sha256 !== row!.sha256) || undefined);
    expect(await server.stop()).toBe(0);
  });

  it("never loads a snapshot of another engine build", async () => {
    const dataDir = server.dataDir;
    const db = new Database(join(dataDir, "zerocell.db"));
    db.prepare("UPDATE snapshots SET engine_build = 'php-wasm-0.0.0/other-build'").run();
    db.close();
    server = await startServer([], { dataDir });
    expect(JSON.parse((await fetchApp(server, "snap.localhost", "/")).text).v).toBe(42);
    const stats = await waitFor(() => poolOf(server));
    expect(stats.restoredFromSnapshot).toBe(0);
    // A snapshot for the current build is taken again.
    await waitFor(() => snapshotRows(dataDir).some((r) => r.engine_build.startsWith("php-wasm-3")) || undefined);
  });
});
