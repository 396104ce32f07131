import { describe, it, expect, beforeAll, afterAll, vi } from "vitest";
import { startServer, phpBundle, fetchApp, isAlive, childPids, admin, writeBundle, type TestServer } from "../helpers/server.js";
import { execFileSync } from "node:child_process";

/** Host processes (node …/host/main.js) that currently serve `deploymentId`… we can't see that from outside; use the app's pids by diffing. */
function hostPidsNow(server: TestServer): number[] {
  return childPids(server.proc.pid!).filter((pid) => {
    try {
      return execFileSync("ps", ["-o", "args=", "-p", String(pid)], { encoding: "utf8" }).includes("host/main.js");
    } catch {
      return false;
    }
  });
}

describe("pool limits: queue, response size, crashes, drain on deploy", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer(["--max-instances", "1", "--max-queue", "2", "--max-response-bytes", "1048576"]);
    await server.cli(["deploy", phpBundle("slow.localhost", { "index.php": "<?php usleep((int)($_GET['ms'] ?? 500) * 1000); echo 'slept';" }), "--app", "slow"]);
    await server.cli(["deploy", phpBundle("big.localhost", { "index.php": "<?php echo str_repeat('x', (int)$_GET['n']);" }), "--app", "big"]);
    await server.cli(["deploy", phpBundle("other.localhost", { "index.php": "<?php echo 'other ok';" }), "--app", "other"]);
  });
  afterAll(async () => {
    const pids = server.hostPids();
    expect(await server.stop()).toBe(0);
    for (const pid of pids) await vi.waitFor(() => expect(isAlive(pid)).toBe(false), { timeout: 10_000, interval: 100 });
  });

  it("queues up to the limit, then answers 503 with Retry-After", async () => {
    await fetchApp(server, "slow.localhost", "/?ms=1");
    const all = await Promise.all(Array.from({ length: 6 }, () => fetchApp(server, "slow.localhost", "/?ms=400")));
    const ok = all.filter((r) => r.status === 200);
    const busy = all.filter((r) => r.status === 503);
    // 1 instance running + 2 queued; the rest are refused at once.
    expect(ok.length).toBe(3);
    expect(busy.length).toBe(3);
    for (const r of busy) {
      expect(r.headers["retry-after"]).toMatch(/^\d+$/);
      expect(r.text).toContain("queue full (limit 2)");
    }
  });

  it("daemon mode: a PHP instance is recycled to its snapshot in its own host before its descriptor table runs out, with no failed request", async () => {
    // php-wasm leaks two descriptors per request without a reset: an instance would be spent after
    // ~1,800 requests; at about half of them the host resets it to its snapshot (a recycled
    // worker) instead of the pool starting a new host. 1,100 requests pass that point once.
    await server.cli(["deploy", writeBundle({ "zerocell.toml": `runtime = "php"\nhealth = []\n[[routes]]\nhost = "wear.localhost"\npath = "/"\nmode = "daemon"\n`, "index.php": "<?php echo 'w';" }), "--app", "wear"]);
    const wearPool = async () => (await admin(server, "GET", "/v1/pool")).json.deployments.find((x: { app: string; mode: string }) => x.app === "wear" && x.mode === "daemon") as { pids: number[]; instanceStartMs: { count: number } } | undefined;
    expect((await fetchApp(server, "wear.localhost", "/")).text).toBe("w");
    const first = (await wearPool())!.pids;
    expect(first.length).toBe(1);
    const statuses = new Map<number, number>();
    // Two at a time: one running and one queued (max-instances 1, max-queue 2).
    for (let i = 0; i < 550; i++) {
      for (const r of await Promise.all([fetchApp(server, "wear.localhost", "/"), fetchApp(server, "wear.localhost", "/")])) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    }
    expect(Object.fromEntries(statuses)).toEqual({ 200: 1100 });
    const d = await wearPool();
    // One start (the deploy's), the same process: recycled, not replaced.
    expect(d?.instanceStartMs.count).toBe(1);
    expect(d?.pids).toEqual(first);
    expect(isAlive(first[0]!)).toBe(true);
  }, 300_000);

  it("refuses a response larger than the limit with 502 and keeps serving", async () => {
    expect((await fetchApp(server, "big.localhost", "/?n=1000")).text).toBe("x".repeat(1000));
    const r = await fetchApp(server, "big.localhost", "/?n=2000000");
    expect(r.status).toBe(502);
    expect(r.text).toMatch(/exceeds the limit of 1048576 bytes/);
    expect((await fetchApp(server, "big.localhost", "/?n=10")).status).toBe(200);
  });

  it("a host killed mid-request fails only its own request (502); the app recovers, other apps are untouched", async () => {
    await fetchApp(server, "slow.localhost", "/?ms=1");
    const inflight = fetchApp(server, "slow.localhost", "/?ms=3000");
    const slow = await vi.waitFor(async () => {
      const pool = await admin(server, "GET", "/v1/pool");
      const d = pool.json.deployments.find((x: { app: string }) => x.app === "slow");
      expect(d?.busy).toBe(1);
      return d;
    }, { timeout: 15_000, interval: 20 });
    expect(slow.pids.length).toBe(1);
    process.kill(slow.pids[0], "SIGKILL");
    const failed = await inflight;
    expect(failed?.status).toBe(502);
    expect(failed?.text).toMatch(/host process exited/);
    expect((await fetchApp(server, "slow.localhost", "/?ms=1")).text).toBe("slept");
    expect((await fetchApp(server, "other.localhost", "/")).text).toBe("other ok");
  });

  it("deploying a new version lets in-flight requests on the old one finish, then frees its instances", async () => {
    await fetchApp(server, "slow.localhost", "/?ms=1");
    const hostsBefore = hostPidsNow(server);
    const inflight = fetchApp(server, "slow.localhost", "/?ms=1500");
    // Deploy once the request runs on the old version.
    await vi.waitFor(async () => {
      const pool = await admin(server, "GET", "/v1/pool");
      expect(pool.json.deployments.find((x: { app: string }) => x.app === "slow")?.busy).toBe(1);
    }, { timeout: 15_000, interval: 20 });
    await server.cli(["deploy", phpBundle("slow.localhost", { "index.php": "<?php echo 'v-next';" }), "--app", "slow"]);
    expect((await fetchApp(server, "slow.localhost", "/")).text).toBe("v-next");
    const old = await inflight;
    expect(old.status).toBe(200);
    expect(old.text).toBe("slept");
    // The old version's hosts exit once drained.
    await expect
      .poll(() => {
        const now = new Set(hostPidsNow(server));
        return hostsBefore.filter((p) => now.has(p)).length;
      }, { timeout: 30_000, interval: 100 })
      .toBeLessThan(hostsBefore.length);
  });
});

describe("pool growth and idle eviction", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer(["--max-instances", "2", "--idle-ttl-ms", "2000"]);
    // Requests of 1 s: six sent at once overlap even when a loaded machine spreads their arrival.
    await server.cli(["deploy", phpBundle("grow.localhost", { "index.php": "<?php usleep(1000000); echo 'ok';" }), "--app", "grow"]);
  });
  afterAll(async () => {
    expect(await server.stop()).toBe(0);
  });

  it("grows to the maximum under concurrent load, scales to zero when idle, and restores from the snapshot", async () => {
    await fetchApp(server, "grow.localhost", "/");
    const results = await Promise.all(Array.from({ length: 6 }, () => fetchApp(server, "grow.localhost", "/")));
    expect(results.every((r) => r.status === 200)).toBe(true);
    const stats = async () => (await admin(server, "GET", "/v1/pool")).json.deployments.find((d: { app: string }) => d.app === "grow");
    // The second instance may still be starting when the queue has drained (slow machines).
    await expect.poll(async () => (await stats()).instances, { timeout: 30_000, interval: 100 }).toBe(2);
    // Idle past the TTL (2 s): scaled to zero, no host process left for the app.
    await expect.poll(async () => (await stats()).instances, { timeout: 30_000, interval: 200 }).toBe(0);
    expect((await stats()).evicted).toBe(2);
    const restoredBefore = (await stats()).restoredFromSnapshot;
    // The next request starts a host from the stored snapshot (no init, no warm-up) and is served.
    const r = await fetchApp(server, "grow.localhost", "/");
    expect(r.text).toBe("ok");
    expect(r.headers["x-zerocell-instance"]).toMatch(/new/);
    expect((await stats()).restoredFromSnapshot).toBe(restoredBefore + 1);
  });
});

describe("spare hosts: a preloaded host per runtime in use, taken by the next deploy", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(async () => {
    const pids = server.hostPids();
    expect(await server.stop()).toBe(0);
    // Spares are stopped with the server too (a wrapper may outlive its host by a moment on a
    // loaded machine: waited for, as pool-memory.test does).
    for (const pid of pids) await vi.waitFor(() => expect(isAlive(pid)).toBe(false), { timeout: 10_000, interval: 100 });
  });

  async function spares(): Promise<{ ready: Array<{ runtime: string; pid: number }>; taken: number }> {
    return (await admin(server, "GET", "/v1/pool")).json.spares;
  }

  function waitForSpare(runtime: string): Promise<number> {
    return vi.waitFor(async () => {
      const s = (await spares()).ready.find((x) => x.runtime === runtime);
      if (s === undefined || !isAlive(s.pid)) throw new Error(`no ${runtime} spare yet`);
      return s.pid;
    }, { timeout: 30_000, interval: 200 });
  }

  it("keeps one for PHP once a PHP app runs, hands it to the next deployment, and starts another", async () => {
    expect((await spares()).ready).toEqual([]); // nothing in use yet: no spare
    await server.cli(["deploy", phpBundle("spare-a.localhost", { "index.php": "<?php echo 'a';" }), "--app", "spare-a"]);
    expect((await fetchApp(server, "spare-a.localhost", "/")).text).toBe("a");
    const sparePid = await waitForSpare("php");
    const takenBefore = (await spares()).taken;

    await server.cli(["deploy", phpBundle("spare-b.localhost", { "index.php": "<?php echo 'b ' . getmypid();" }), "--app", "spare-b"]);
    expect((await fetchApp(server, "spare-b.localhost", "/")).text).toMatch(/^b /);
    const pool = await admin(server, "GET", "/v1/pool");
    const b = pool.json.deployments.find((d: { app: string }) => d.app === "spare-b");
    // The new deployment runs in the process that was the spare, and it is no longer a spare.
    expect(b.pids).toContain(sparePid);
    expect((await spares()).taken).toBe(takenBefore + 1);
    const next = await waitForSpare("php");
    expect(next).not.toBe(sparePid);
    expect((await server.cli(["pool"])).stdout).toMatch(new RegExp(`spare hosts ready: .*php \\(pid ${next}\\)`));
    // Each app still sees only itself.
    expect((await fetchApp(server, "spare-a.localhost", "/")).text).toBe("a");
    // Two deploys and two spare starts (up to 30 s each when the machine is loaded).
  }, 240_000);

  it("shows spares to admins only", async () => {
    const acct = await admin(server, "POST", "/v1/accounts", { body: JSON.stringify({ name: "spare-viewer" }), contentType: "application/json" });
    expect(acct.status).toBe(201);
    const r = await admin(server, "GET", "/v1/pool", { token: acct.json.token });
    expect(r.status).toBe(200);
    expect(r.json.spares).toBeUndefined();
  });
});
