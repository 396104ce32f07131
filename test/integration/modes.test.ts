import { describe, it, expect, beforeAll, afterAll, vi } from "vitest";
import { startServer, writeBundle, fetchApp, isAlive, admin, type TestServer } from "../helpers/server.js";

/** A bundle with one route per mode, all served by the same PHP code. */
function modeBundle(): string {
  const code = `<?php
header('Content-Type: application/json');
session_start();
$before = [
  'tmp' => @file_get_contents('/tmp/left-behind'),
  'session' => $_SESSION['n'] ?? null,
  'oc_hits' => opcache_get_status(false)['opcache_statistics']['hits'] ?? null,
];
file_put_contents('/tmp/left-behind', 'from ' . $_SERVER['REQUEST_URI']);
$_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
mt_srand(42);
echo json_encode($before + ['sid' => session_id(), 'rand' => bin2hex(random_bytes(8)), 'mt' => mt_rand(), 'lcg' => lcg_value(), 'uniq' => uniqid('', true)]);
`;
  return writeBundle({
    "zerocell.toml": `runtime = "php"
[php]
document_root = "public"
front_controller = "index.php"
[[routes]]
host = "snap.localhost"
mode = "snapshot"
[[routes]]
host = "daemon.localhost"
mode = "daemon"
[[routes]]
host = "fresh.localhost"
mode = "fresh"
`,
    "public/index.php": code,
  });
}

describe("modes: snapshot resets every request, daemon keeps state, fresh starts anew", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
    await server.cli(["deploy", modeBundle(), "--app", "modes"]);
  });
  afterAll(async () => {
    const pids = server.hostPids();
    expect(await server.stop()).toBe(0);
    for (const pid of pids) await vi.waitFor(() => expect(isAlive(pid)).toBe(false), { timeout: 10_000, interval: 100 });
  });

  async function twice(host: string): Promise<[any, any]> {
    const a = await fetchApp(server, host, "/a");
    expect(a.status).toBe(200);
    const cookie = String(a.headers["set-cookie"]?.[0] ?? "").split(";")[0]!;
    const b = await fetchApp(server, host, "/b", { headers: { cookie } });
    expect(b.status).toBe(200);
    return [JSON.parse(a.text), JSON.parse(b.text)];
  }

  it("snapshot: request 2 sees nothing request 1 left (tmp files, session, opcache counters)", async () => {
    // Warm both instances of the pool so the same instance is likely reused.
    for (let i = 0; i < 4; i++) await fetchApp(server, "snap.localhost", "/warm");
    for (let i = 0; i < 3; i++) {
      const [a, b] = await twice("snap.localhost");
      expect(b.tmp).toBe(false);
      expect(b.session).toBeNull();
      // Opcache's hit counter lives in linear memory: restored to the snapshot's value each time.
      expect(b.oc_hits).toBe(a.oc_hits);
    }
  });

  it("snapshot: every request draws fresh randomness", async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const r = JSON.parse((await fetchApp(server, "snap.localhost", "/r")).text);
      for (const k of ["rand", "sid", "uniq"]) {
        expect(seen.has(r[k])).toBe(false);
        seen.add(r[k]);
      }
    }
  });

  it("daemon: state carries over between requests of the same instance", async () => {
    const a = await fetchApp(server, "daemon.localhost", "/a");
    const cookie = String(a.headers["set-cookie"]?.[0] ?? "").split(";")[0]!;
    let carried = false;
    let hitsGrew = false;
    let prevHits = JSON.parse(a.text).oc_hits as number;
    for (let i = 0; i < 6; i++) {
      const r = JSON.parse((await fetchApp(server, "daemon.localhost", `/n${i}`, { headers: { cookie } })).text);
      if (typeof r.tmp === "string" && r.tmp.startsWith("from /")) carried = true;
      if (r.oc_hits > prevHits) hitsGrew = true;
      prevHits = r.oc_hits;
    }
    expect(carried).toBe(true);
    expect(hitsGrew).toBe(true);
  });

  it("daemon: an instance that used up its descriptor table is recycled to its snapshot in its own process, not replaced by a new host", async () => {
    // php-wasm opens two descriptors per request and never closes them; at half the table
    // (~900 requests) the host resets the instance to its snapshot, as php-fpm's pm.max_requests
    // recycles a worker: the kept state starts over, the process and its instance stay.
    await server.cli(["deploy", writeBundle({
      "zerocell.toml": `runtime = "php"\n[php]\ndocument_root = "public"\n[[routes]]\nhost = "recycle.localhost"\nmode = "daemon"\n`,
      "public/index.php": `<?php $n = (int)@file_get_contents('/tmp/n') + 1; file_put_contents('/tmp/n', (string)$n); echo $n;`,
    }), "--app", "recycle"]);
    const pool = async () => (await admin(server, "GET", "/v1/pool")).json.deployments.filter((d: { app: string; mode: string }) => d.app === "recycle" && d.mode === "daemon");
    const counts: number[] = [];
    for (let i = 0; i < 2000; i++) {
      const r = await fetchApp(server, "recycle.localhost", "/", { scheme: "http" });
      expect(r.status, r.text).toBe(200);
      counts.push(Number(r.text));
    }
    const d = (await pool())[0];
    // Up to two instances served (the next request may come before the previous one's instance
    // is idle again), each from a host started once: ~1,000 requests each, past its ~900.
    const starts = d.instanceStartMs.count as number;
    expect(starts, JSON.stringify(d)).toBeLessThanOrEqual(2);
    expect(d.pids.length).toBe(d.instances);
    // Each start counts from 1, and so does each recycle: more 1s than starts.
    const ones = counts.filter((n) => n === 1).length;
    expect(ones, JSON.stringify(d)).toBeGreaterThan(starts);
    // No instance kept its state past the recycle point.
    expect(Math.max(...counts)).toBeLessThan(1000);
  }, 240_000);

  it("fresh: every request gets a new instance", async () => {
    const r1 = await fetchApp(server, "fresh.localhost", "/a");
    const r2 = await fetchApp(server, "fresh.localhost", "/b");
    expect(JSON.parse(r2.text).tmp).toBe(false);
    expect(r1.headers["x-zerocell-instance"]).toBe("fresh; new");
    expect(r2.headers["x-zerocell-instance"]).toBe("fresh; new");
  });
});
