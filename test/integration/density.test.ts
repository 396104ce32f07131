/**
 * Density with real sandbox hosts: the pool's memory budget holds under a burst of new
 * deployments (measured from outside, in /proc), an app evicted for the budget serves its next
 * request from its stored snapshot, and two accounts never share a host process.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { readFileSync } from "node:fs";
import { watchPeakPss, startServer, phpBundle, fetchApp, admin, childPids, type TestServer } from "../helpers/server.js";
import { packDirectory } from "../../src/bundle/pack.js";

const MiB = 1048576;
const BUDGET_MB = 700;


function uidOf(pid: number): number | undefined {
  try {
    const m = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m === null ? undefined : Number(m[1]);
  } catch {
    return undefined;
  }
}

async function deploy(server: TestServer, app: string, host: string, token?: string): Promise<{ status: number; json: any }> {
  const archive = await packDirectory(phpBundle(host, { "index.php": `<?php echo 'hello from ${app}';` }));
  return admin(server, "POST", `/v1/apps/${app}/deployments?host=${host}`, { body: archive, contentType: "application/gzip", ...(token === undefined ? {} : { token }) });
}

type PoolJson = { deployments: Array<{ app: string; instances: number; pids: number[]; restoredFromSnapshot: number }>; memory: { budgetBytes: number; usedBytes: number; evictionsForBudget: number } };

describe("memory budget (real hosts)", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer(["--memory-budget-mb", String(BUDGET_MB), "--max-instances", "1"]);
  });
  afterAll(async () => {
    expect(await server.stop()).toBe(0);
  });

  it("holds under a burst of new deployments, evicting idle instances (LRU); an evicted app serves its next request from its snapshot", async () => {
    // A first app, answered once, then idle: the least recently used when the burst comes.
    expect((await deploy(server, "first", "first.localhost")).status).toBe(201);
    expect((await fetchApp(server, "first.localhost", "/")).text).toBe("hello from first");
    const watch = watchPeakPss(server);
    const burst = await Promise.all(Array.from({ length: 5 }, (_, i) => deploy(server, `burst${i}`, `burst${i}.localhost`)));
    const peak = await watch.stop();
    expect(burst.map((r) => r.status)).toEqual([201, 201, 201, 201, 201]);
    // Measured from outside: the hosts and spares together stayed within the budget (20% for
    // what a host grows past its estimate between two samples, and a spare starting).
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(BUDGET_MB * MiB * 1.2);
    const pool = (await admin(server, "GET", "/v1/pool")).json as PoolJson;
    expect(pool.memory.budgetBytes).toBe(BUDGET_MB * MiB);
    expect(pool.memory.evictionsForBudget).toBeGreaterThanOrEqual(1);
    const first = () => pool.deployments.find((d) => d.app === "first")!;
    expect(first().instances).toBe(0);
    // Its next request starts a host from the stored snapshot (no init, no warm-up).
    const r = await fetchApp(server, "first.localhost", "/");
    expect(r.status).toBe(200);
    expect(r.text).toBe("hello from first");
    expect(r.headers["x-zerocell-instance"]).toMatch(/new/);
    const after = ((await admin(server, "GET", "/v1/pool")).json as PoolJson).deployments.find((d) => d.app === "first")!;
    expect(after.restoredFromSnapshot, server.output().split("\n").filter((l) => /snapshot|restor|cold/i.test(l)).join("\n")).toBe(first().restoredFromSnapshot + 1);
    // Every app of the burst still answers (each may be restored in turn).
    for (let i = 0; i < 5; i++) expect((await fetchApp(server, `burst${i}.localhost`, "/")).text).toBe(`hello from burst${i}`);
    // `zerocell pool` shows the budget and its use.
    expect((await server.cli(["pool"])).stdout).toMatch(/memory budget: \d+ of 700 MiB in use/);
  }, 300_000);

  it("two accounts never share a host process", async () => {
    const other = await admin(server, "POST", "/v1/accounts", { body: JSON.stringify({ name: "density-other" }), contentType: "application/json" });
    expect(other.status).toBe(201);
    const upMine = await deploy(server, "mine", "mine.localhost");
    expect(upMine.status, JSON.stringify(upMine.json)).toBe(201);
    const upTheirs = await deploy(server, "theirs", "theirs.density-other.localhost", other.json.token);
    expect(upTheirs.status, JSON.stringify(upTheirs.json)).toBe(201);
    expect((await fetchApp(server, "mine.localhost", "/")).text).toBe("hello from mine");
    expect((await fetchApp(server, "theirs.density-other.localhost", "/")).text).toBe("hello from theirs");
    const pool = (await admin(server, "GET", "/v1/pool")).json as PoolJson;
    const pids = (app: string) => pool.deployments.filter((d) => d.app === app).flatMap((d) => d.pids);
    const mine = pids("mine");
    const theirs = pids("theirs");
    expect(mine.length).toBeGreaterThan(0);
    expect(theirs.length).toBeGreaterThan(0);
    expect(mine.filter((p) => theirs.includes(p))).toEqual([]);
    // Each host is its own uid (setpriv, below the wrapper): no two hosts of the two accounts share one.
    const uids = (ps: number[]) => ps.flatMap((p) => childPids(p)).map(uidOf).filter((u): u is number => u !== undefined && u !== 0);
    const mu = uids(mine);
    const tu = uids(theirs);
    if (mu.length > 0 && tu.length > 0) expect(mu.filter((u) => tu.includes(u))).toEqual([]);
    // And no pid serves two deployments at all.
    const all = pool.deployments.flatMap((d) => d.pids);
    expect(new Set(all).size).toBe(all.length);
  }, 300_000);
});

type ColdPoolJson = PoolJson & { spares: { ready: Array<{ runtime: string; pid: number }>; taken: number; restoredOnSpareEngine: number } };

describe("cold restore on a spare host (real hosts)", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer(["--idle-ttl-ms", "1500", "--max-instances", "1"]);
  });
  afterAll(async () => {
    expect(await server.stop()).toBe(0);
  });

  it("an app scaled to zero is restored from its snapshot on the next request, on the spare's pre-instantiated engine, with its env and state", async () => {
    const page = `<?php echo 'hello from cold ', getenv('GREETING') === false ? '-' : getenv('GREETING'), ' ', ini_get('memory_limit'), ' ', file_exists('/app/public/index.php') ? 'image' : 'no-image';`;
    const archive = await packDirectory(phpBundle("cold.localhost", { "index.php": page }, "[limits]\nmemory_mb = 96\n"));
    expect((await admin(server, "POST", "/v1/apps/cold/deployments?host=cold.localhost", { body: archive, contentType: "application/gzip" })).status).toBe(201);
    // memory_limit comes from limits.memory_mb (the blank engine had the default's): the restored
    // instance must run with the snapshot's settings, not the blank's.
    // The env is part of the deployment: the new version's snapshot holds it in guest memory.
    const env = await admin(server, "POST", "/v1/apps/cold/env", { body: JSON.stringify({ set: [{ name: "GREETING", value: "bonjour" }] }), contentType: "application/json" });
    expect(env.status).toBe(201);
    const want = "hello from cold bonjour 96M image";
    expect((await fetchApp(server, "cold.localhost", "/")).text).toBe(want);
    // The new version's snapshot stored (sent after the first request, gzip'd off the event loop).
    const id = String(env.json.deployment.id);
    await expect.poll(() => server.output().split("\n").some((l) => l.includes('"snapshot stored"') && l.includes(id)), { timeout: 60_000, interval: 200 }).toBe(true);
    const pool = async () => (await admin(server, "GET", "/v1/pool")).json as ColdPoolJson;
    const cold = (p: ColdPoolJson) => p.deployments.filter((d) => d.app === "cold");
    for (let round = 0; round < 2; round++) {
      // Scaled to zero (idle TTL), and a spare PHP host waiting.
      await expect.poll(async () => cold(await pool()).reduce((n, d) => n + d.instances, 0), { timeout: 60_000, interval: 200 }).toBe(0);
      await expect.poll(async () => (await pool()).spares.ready.some((s) => s.runtime === "php"), { timeout: 60_000, interval: 200 }).toBe(true);
      const before = await pool();
      const r = await fetchApp(server, "cold.localhost", "/");
      expect(r.status).toBe(200);
      expect(r.text).toBe(want);
      expect(r.headers["x-zerocell-instance"]).toMatch(/new/);
      // The start's phases are in server-timing (the host's import among them).
      expect(String(r.headers["server-timing"]), server.output().split("\n").filter((l) => /snapshot|restor|cold|blank|fail/i.test(l)).slice(-20).join("\n")).toMatch(/s-import;dur=/);
      const after = await pool();
      const restored = (p: ColdPoolJson) => cold(p).reduce((n, d) => n + d.restoredFromSnapshot, 0);
      expect(restored(after), server.output().split("\n").filter((l) => /snapshot|restor|cold|blank/i.test(l)).slice(-20).join("\n")).toBe(restored(before) + 1);
      // The restore used the engine the spare instantiated before it had any tenant.
      expect(after.spares.restoredOnSpareEngine).toBe(before.spares.restoredOnSpareEngine + 1);
      // The restored instance resets and serves again like any other.
      const again = await fetchApp(server, "cold.localhost", "/");
      expect(again.text).toBe(want);
      expect(again.headers["x-zerocell-instance"]).toMatch(/reused/);
    }
  }, 300_000);
});
