/**
 * The pool's own logic (src/pool/index.ts) with in-process hosts behind its host seam
 * (`startHost`): acquire, FIFO queue and its bound, growth, release, replacement of spent hosts,
 * start failures, retirement, idle expiry and eviction. The same behaviour with real sandbox
 * processes is covered by test/integration/pool.test.ts.
 */
import { describe, it, expect, afterEach } from "vitest";
import { Pool, NO_ISOLATION, type DeploymentSource, type HostFactory, type HostResponse, type PoolHost, type PoolLimits } from "../../src/pool/index.js";
import { parseManifest } from "../../src/runtime/manifest.js";
import { InstanceUnavailableError, PoolSaturatedError, SandboxError } from "../../src/errors.js";
import type { EngineRequest } from "../../src/runtime/engine.js";

/**
 * A host that answers in-process: "/sleep/N" takes N ms, "/crash" makes the host exit, "/taint"
 * answers and marks it spent, "/wear" answers and marks it close to spent. Every host records the order of the requests it served.
 */
class FakeHost implements PoolHost {
  static nextPid = 1000;
  readonly pid = FakeHost.nextPid++;
  readonly readyMs = 1;
  readonly restored = false;
  tainted = false;
  worn = false;
  alive = true;
  served: string[] = [];
  shutdowns = 0;
  lastResetCpuUs: number | undefined;
  /** What memoryBytes() reports (PSS), bytes. */
  mem = 300 * MiB;
  #exit: Array<() => void> = [];

  onExit(listener: () => void): void {
    if (!this.alive) listener();
    else this.#exit.push(listener);
  }

  request(req: EngineRequest): { response: Promise<HostResponse>; idle: Promise<number | undefined> } {
    this.served.push(req.url);
    let idleResolve!: (v: number | undefined) => void;
    const idle = new Promise<number | undefined>((r) => (idleResolve = r));
    const response = new Promise<HostResponse>((resolve, reject) => {
      const m = /^\/sleep\/(\d+)/.exec(req.url);
      const ms = m === null ? 0 : Number(m[1]);
      setTimeout(() => {
        if (req.url === "/crash") {
          this.kill();
          reject(new SandboxError("host_crashed", 502, "sandbox: host process exited"));
          idleResolve(undefined);
          return;
        }
        if (req.url === "/taint") this.tainted = true;
        if (req.url === "/wear") this.worn = true;
        // "/cpu": the host reports 300 µs of CPU for the request, 100 of them the guest's, and a
        // reset of 50 µs.
        const cpu = req.url === "/cpu";
        resolve({ status: 200, headers: [], body: Buffer.from(`${this.pid}:${req.url}`), runMs: ms, startedAt: undefined, cpuUs: cpu ? 300 : undefined, ...(cpu ? { guestMs: 0.1 } : {}) });
        this.lastResetCpuUs = cpu ? 50 : undefined;
        idleResolve(0.1);
      }, ms);
    });
    return { response, idle };
  }

  memoryBytes(): number | undefined {
    return this.alive ? this.mem : undefined;
  }

  kill(): void {
    if (!this.alive) return;
    this.alive = false;
    for (const l of this.#exit.splice(0)) l();
  }

  async shutdown(): Promise<void> {
    this.shutdowns++;
    this.kill();
  }
}

const manifest = parseManifest('runtime = "php"\n');
const MiB = 1048576;

function source(id = "dep1"): DeploymentSource {
  return { deploymentId: id, appName: `app-${id}`, manifest, image: Buffer.alloc(0), env: {}, loadSnapshot: async () => undefined, hasSnapshot: () => true, saveSnapshot: () => {} };
}

function request(url: string): EngineRequest {
  return { method: "GET", url, headers: [], body: new Uint8Array(0), remoteAddr: "127.0.0.1", remotePort: 1, https: false, serverName: "x", serverPort: 80, scriptName: "", params: {} };
}

interface Harness {
  pool: Pool;
  hosts: FakeHost[];
  starts: number;
  /** Makes the next starts fail with this error. */
  failStarts: Error | undefined;
  /** Delay of each start, ms. */
  startDelayMs: number;
}

let live: Pool[] = [];

function harness(limits: Partial<PoolLimits> = {}): Harness {
  const h: Harness = { pool: undefined as unknown as Pool, hosts: [], starts: 0, failStarts: undefined, startDelayMs: 5 };
  const startHost: HostFactory = async (init) => {
    h.starts++;
    // Like a real host's start, an abort ends it at once.
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(resolve, h.startDelayMs);
      init.signal?.addEventListener("abort", () => {
        clearTimeout(t);
        reject(new SandboxError("host_retired", 503, "sandbox: retired while starting"));
      });
    });
    if (h.failStarts !== undefined) throw h.failStarts;
    const host = new FakeHost();
    h.hosts.push(host);
    return host;
  };
  h.pool = new Pool({ limits: { spareHosts: false, ...limits }, isolation: NO_ISOLATION, load: (id) => source(id), onLog: () => {}, startHost });
  live.push(h.pool);
  return h;
}

const text = (r: HostResponse) => Buffer.from(r.body).toString();

afterEach(async () => {
  for (const p of live) await p.close();
  live = [];
});

describe("pool (in-process hosts)", () => {
  it("reuses an idle host without starting another, and says which requests were reused", async () => {
    const h = harness({ maxInstancesPerDeployment: 2 });
    const a = await h.pool.run("dep1", "snapshot", request("/a"), 1000);
    const b = await h.pool.run("dep1", "snapshot", request("/b"), 1000);
    expect(h.starts).toBe(1);
    expect(a.reused).toBe(false);
    expect(b.reused).toBe(true);
    expect(text(b)).toBe(`${h.hosts[0]!.pid}:/b`);
  });

  it("sums the CPU its hosts report per request (handle, guest, reset) for the breakdown", async () => {
    const h = harness({ maxInstancesPerDeployment: 1 });
    for (let i = 0; i < 3; i++) await h.pool.run("dep1", "snapshot", request("/cpu"), 1000);
    await h.pool.run("dep1", "snapshot", request("/a"), 1000);
    await expect.poll(() => h.pool.stats()[0]!.resets).toBe(4);
    expect(h.pool.stats()[0]!.cpuUs).toEqual({ requests: 4, handleUs: 900, guestUs: 300, resetUs: 150 });
  });

  it("grows to the per-deployment maximum under concurrent load, never beyond", async () => {
    const h = harness({ maxInstancesPerDeployment: 3 });
    const all = await Promise.all(Array.from({ length: 12 }, (_, i) => h.pool.run("dep1", "snapshot", request(`/sleep/20?${i}`), 5000)));
    expect(all.every((r) => r.status === 200)).toBe(true);
    expect(h.starts).toBe(3);
    expect(new Set(all.map((r) => text(r).split(":")[0])).size).toBe(3);
  });

  it("queues in FIFO order and refuses past the queue bound with 503 and Retry-After", async () => {
    const h = harness({ maxInstancesPerDeployment: 1, maxQueue: 3 });
    await h.pool.run("dep1", "snapshot", request("/warm"), 1000);
    const inflight = h.pool.run("dep1", "snapshot", request("/sleep/30"), 1000);
    const queued = [1, 2, 3].map((i) => h.pool.run("dep1", "snapshot", request(`/q${i}`), 1000));
    let refused: unknown;
    try {
      await h.pool.run("dep1", "snapshot", request("/q4"), 1000);
    } catch (e) {
      refused = e;
    }
    expect(refused).toBeInstanceOf(PoolSaturatedError);
    expect((refused as PoolSaturatedError).status).toBe(503);
    expect((refused as PoolSaturatedError).retryAfterS).toBeGreaterThan(0);
    expect((refused as Error).message).toContain("queue full (limit 3)");
    await Promise.all([inflight, ...queued]);
    expect(h.hosts[0]!.served).toEqual(["/warm", "/sleep/30", "/q1", "/q2", "/q3"]);
  });

  it("replaces a host that crashed or is spent; the next request gets a new one", async () => {
    const h = harness({ maxInstancesPerDeployment: 1 });
    await expect(h.pool.run("dep1", "snapshot", request("/crash"), 1000)).rejects.toMatchObject({ code: "host_crashed" });
    const after = await h.pool.run("dep1", "snapshot", request("/a"), 1000);
    expect(text(after)).toBe(`${h.hosts[1]!.pid}:/a`);
    await h.pool.run("dep1", "snapshot", request("/taint"), 1000);
    const third = await h.pool.run("dep1", "snapshot", request("/b"), 1000);
    expect(text(third)).toBe(`${h.hosts[2]!.pid}:/b`);
    expect(h.hosts[1]!.shutdowns).toBe(1);
  });

  it("starts a worn host's successor while the worn host serves on, then stops the worn host", async () => {
    const h = harness({ maxInstancesPerDeployment: 1 });
    await h.pool.run("dep1", "daemon", request("/a"), 1000);
    const worn = h.hosts[0]!;
    h.startDelayMs = 400; // the successor's start takes a while
    await h.pool.run("dep1", "daemon", request("/wear"), 1000);
    await expect.poll(() => h.starts).toBe(2);
    // While the successor starts, the worn host serves: no request waits for a start.
    const during = await h.pool.run("dep1", "daemon", request("/during"), 1000);
    expect(text(during)).toBe(`${worn.pid}:/during`);
    expect(during.reused).toBe(true);
    // Once the successor is ready it takes over, and the worn host is stopped.
    await expect.poll(() => worn.alive, { timeout: 10_000 }).toBe(false);
    expect(worn.shutdowns).toBe(1);
    const after = await h.pool.run("dep1", "daemon", request("/after"), 1000);
    expect(text(after)).toBe(`${h.hosts[1]!.pid}:/after`);
    expect(h.starts).toBe(2);
    expect(h.pool.stats()[0]!.instances).toBe(1);
  });

  it("a worn host busy when its successor is ready stops after its request; a failed successor is tried again", async () => {
    const h = harness({ maxInstancesPerDeployment: 1 });
    await h.pool.run("dep1", "daemon", request("/a"), 1000);
    const worn = h.hosts[0]!;
    h.failStarts = new SandboxError("host_start_failed", 503, "sandbox: no");
    await h.pool.run("dep1", "daemon", request("/wear"), 1000);
    await expect.poll(() => h.starts).toBe(2);
    // The failed successor start leaves the worn host serving; its next request starts another.
    await expect.poll(() => h.pool.stats()[0]!.starting).toBe(0);
    h.failStarts = undefined;
    h.startDelayMs = 200;
    await h.pool.run("dep1", "daemon", request("/b"), 5000);
    await expect.poll(() => h.starts).toBe(3);
    // The worn host takes a long request; its successor becomes ready meanwhile.
    const slow = await h.pool.run("dep1", "daemon", request("/sleep/600"), 5000);
    expect(text(slow)).toBe(`${worn.pid}:/sleep/600`);
    await expect.poll(() => worn.alive, { timeout: 10_000 }).toBe(false);
    expect(worn.shutdowns).toBe(1);
    expect(h.starts).toBe(3);
    const after = await h.pool.run("dep1", "daemon", request("/after"), 1000);
    expect(text(after)).toBe(`${h.hosts[1]!.pid}:/after`);
  });

  it("fresh mode never reuses a host", async () => {
    const h = harness();
    for (const u of ["/1", "/2", "/3"]) await h.pool.run("dep1", "fresh", request(u), 1000);
    expect(h.hosts.map((x) => x.served)).toEqual([["/1"], ["/2"], ["/3"]]);
  });

  it("keeps hosts of one deployment apart per mode (a daemon host never serves a snapshot request)", async () => {
    const h = harness();
    const d = await h.pool.run("dep1", "daemon", request("/d"), 1000);
    const s = await h.pool.run("dep1", "snapshot", request("/s"), 1000);
    expect(text(d).split(":")[0]).not.toBe(text(s).split(":")[0]);
  });

  it("fails every waiter with 503 + Retry-After and the start's code when no host can start", async () => {
    const h = harness({ maxInstancesPerDeployment: 2 });
    h.failStarts = new SandboxError("host_start_timeout", 502, "sandbox: host did not become ready");
    const all = await Promise.allSettled([1, 2, 3].map((i) => h.pool.run("dep1", "snapshot", request(`/${i}`), 1000)));
    for (const r of all) {
      expect(r.status).toBe("rejected");
      const e = (r as PromiseRejectedResult).reason as InstanceUnavailableError;
      expect(e).toBeInstanceOf(InstanceUnavailableError);
      expect(e).toMatchObject({ code: "instance_unavailable", status: 503, details: { reason: "host_start_timeout" } });
      expect(e.retryAfterS).toBeGreaterThan(0);
    }
    // It recovers once starts work again.
    h.failStarts = undefined;
    expect((await h.pool.run("dep1", "snapshot", request("/ok"), 1000)).status).toBe(200);
  });

  it("bounds the wait for an instance apart from timeout_ms: 503 instance_unavailable, the queue moves on", async () => {
    const h = harness({ maxInstancesPerDeployment: 1, maxAcquireWaitMs: 100 });
    const busy = h.pool.run("dep1", "snapshot", request("/sleep/400"), 5000);
    await expect.poll(() => h.pool.stats()[0]?.busy).toBe(1);
    await expect(h.pool.run("dep1", "snapshot", request("/waits"), 5000)).rejects.toMatchObject({ code: "instance_unavailable", status: 503, details: { reason: "acquire_timeout" } });
    expect((await busy).status).toBe(200);
    expect(h.pool.stats()[0]!.queued).toBe(0);
    // A request whose wait is short enough still runs, with its own full timeout_ms.
    expect((await h.pool.run("dep1", "snapshot", request("/sleep/150"), 1000)).status).toBe(200);
  });

  it("retiring a deployment lets its in-flight request finish, then shuts every host down", async () => {
    const h = harness({ maxInstancesPerDeployment: 2 });
    await h.pool.run("dep1", "snapshot", request("/a"), 1000);
    const inflight = h.pool.run("dep1", "snapshot", request("/sleep/50"), 1000);
    await new Promise((r) => setTimeout(r, 5));
    h.pool.retireExcept(new Set());
    expect((await inflight).status).toBe(200);
    await h.pool.close();
    expect(h.hosts.every((x) => !x.alive)).toBe(true);
    expect(h.pool.stats()).toEqual([]);
  });

  it("retiring a deployment whose host is still starting for nobody ends that start instead of waiting for it", async () => {
    const h = harness({ minInstancesPerDeployment: 1 });
    h.startDelayMs = 60_000;
    h.pool.prewarm("dep1", "snapshot");
    await expect.poll(() => h.starts).toBe(1);
    const t0 = Date.now();
    h.pool.retireExcept(new Set());
    await h.pool.close();
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(h.pool.stats()).toEqual([]);
  });

  it("does not prewarm a deployment whose last start failed (until a request succeeds), and shows why it failed", async () => {
    const h = harness({ minInstancesPerDeployment: 1 });
    h.failStarts = new SandboxError("warmup_timeout", 504, "sandbox: warm-up request 1 used too much CPU");
    await expect(h.pool.run("dep1", "snapshot", request("/a"), 1000)).rejects.toMatchObject({ code: "instance_unavailable", status: 503, details: { reason: "warmup_timeout" } });
    expect(h.pool.stats()[0]!.lastStartError).toMatchObject({ code: "warmup_timeout", message: "sandbox: warm-up request 1 used too much CPU" });
    h.failStarts = undefined;
    h.pool.prewarm("dep1", "snapshot");
    await new Promise((r) => setTimeout(r, 50));
    expect(h.starts).toBe(1);
    // A request still tries, and a success clears the failure.
    expect((await h.pool.run("dep1", "snapshot", request("/b"), 1000)).status).toBe(200);
    expect(h.starts).toBe(2);
    expect(h.pool.stats()[0]!.lastStartError).toBeUndefined();
  });

  it("stops idle hosts at their TTL down to the minimum, and evicts the least recently used past the global cap", async () => {
    const h = harness({ maxInstancesPerDeployment: 2, idleTtlMs: 100, minInstancesPerDeployment: 1 });
    await Promise.all([1, 2].map((i) => h.pool.run("dep1", "snapshot", request(`/sleep/20?${i}`), 1000)));
    expect(h.hosts.length).toBe(2);
    await expect.poll(() => h.hosts.filter((x) => x.alive).length, { timeout: 3000, interval: 20 }).toBe(1);
    const capped = harness({ maxIdleInstances: 1 });
    await capped.pool.run("a", "snapshot", request("/x"), 1000);
    await capped.pool.run("b", "snapshot", request("/x"), 1000);
    await expect.poll(() => capped.hosts.filter((x) => x.alive).length, { timeout: 3000, interval: 20 }).toBe(1);
    expect(capped.hosts[0]!.alive).toBe(false);
    expect(capped.pool.stats().find((s) => s.deploymentId === "a")?.evicted).toBe(1);
  });

  it("memory budget: a start that does not fit evicts the least recently used idle instance of another deployment first", async () => {
    // Hosts measure 300 MiB each (above the PHP start reservation of 256): 750 MiB holds two.
    const h = harness({ memoryBudgetBytes: 750 * MiB });
    await h.pool.run("a", "snapshot", request("/x"), 1000);
    await h.pool.run("b", "snapshot", request("/x"), 1000);
    expect(h.hosts.filter((x) => x.alive).length).toBe(2);
    // a is the least recently used: c's start evicts it, b stays.
    expect((await h.pool.run("c", "snapshot", request("/x"), 1000)).status).toBe(200);
    expect(h.hosts.map((x) => x.alive)).toEqual([false, true, true]);
    const m = h.pool.memory();
    expect(m.usedBytes).toBeLessThanOrEqual(m.budgetBytes);
    expect(m.usedBytes).toBe(600 * MiB);
    expect(m.evictionsForBudget).toBe(1);
    // a's next request is served again (its host starts anew, evicting b).
    expect((await h.pool.run("a", "snapshot", request("/x"), 1000)).status).toBe(200);
    expect(h.hosts[1]!.alive).toBe(false);
  });

  it("memory budget: with every instance busy a start waits for one to be free (then evicts it), and past the wait bound answers 503 memory_budget", async () => {
    const h = harness({ memoryBudgetBytes: 450 * MiB, maxAcquireWaitMs: 10_000 });
    const slow = h.pool.run("a", "snapshot", request("/sleep/300"), 5000);
    await expect.poll(() => h.hosts.length, { timeout: 3000, interval: 5 }).toBe(1);
    // b does not fit while a's host is busy: it waits, and starts once a's request is done.
    const t0 = performance.now();
    const b = await h.pool.run("b", "snapshot", request("/x"), 1000);
    expect(b.status).toBe(200);
    expect((await slow).status).toBe(200);
    expect(performance.now() - t0).toBeGreaterThan(100);
    expect(h.hosts[0]!.alive).toBe(false);
    expect(h.pool.memory().waited).toBe(1);

    const tight = harness({ memoryBudgetBytes: 450 * MiB, maxAcquireWaitMs: 200 });
    const long = tight.pool.run("a", "snapshot", request("/sleep/1500"), 5000);
    await expect.poll(() => tight.hosts.length, { timeout: 3000, interval: 5 }).toBe(1);
    const err = await tight.pool.run("b", "snapshot", request("/x"), 1000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InstanceUnavailableError);
    expect((err as InstanceUnavailableError).details).toEqual({ reason: "memory_budget" });
    expect((err as Error).message).toMatch(/memory budget \(450 MiB/);
    // Not the deployment's failure: nothing recorded against b, a is untouched.
    expect(tight.pool.stats().find((s) => s.deploymentId === "b")?.lastStartError).toBeUndefined();
    expect((await long).status).toBe(200);
    expect(tight.pool.memory().refused).toBe(1);
  });

  it("memory budget: a burst of new deployments never holds more hosts than the budget, and every request is answered", async () => {
    const h = harness({ memoryBudgetBytes: 1050 * MiB });
    // The first host is measured (300 MiB), so each start reserves 300 MiB: three fit.
    await h.pool.run("d0", "snapshot", request("/x"), 1000);
    let maxAlive = 0;
    const watch = setInterval(() => (maxAlive = Math.max(maxAlive, h.hosts.filter((x) => x.alive).length)), 1);
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => h.pool.run(`d${i + 1}`, "snapshot", request("/sleep/10"), 1000)));
    clearInterval(watch);
    expect(results.every((r) => r.status === 200)).toBe(true);
    expect(h.starts).toBe(13);
    expect(maxAlive).toBeLessThanOrEqual(3);
    expect(h.pool.memory().usedBytes).toBeLessThanOrEqual(1050 * MiB);
  });

  it("prewarms only a deployment that keeps a minimum, and only into free room: a prewarm never evicts another app's instance", async () => {
    // Scale to zero (the default): a prewarm (every route reload asks for one) starts nothing.
    const zero = harness();
    zero.pool.prewarm("dep1", "snapshot");
    await new Promise((r) => setTimeout(r, 50));
    expect(zero.starts).toBe(0);
    // With a minimum, a prewarm starts a host while there is room...
    const h = harness({ minInstancesPerDeployment: 1, memoryBudgetBytes: 650 * MiB });
    h.pool.prewarm("a", "snapshot");
    await expect.poll(() => h.hosts.length, { timeout: 3000, interval: 5 }).toBe(1);
    await h.pool.run("b", "snapshot", request("/x"), 1000);
    // ...but with the budget full of idle instances it skips: a and b stay, nothing is evicted.
    h.pool.prewarm("c", "snapshot");
    await new Promise((r) => setTimeout(r, 50));
    expect(h.starts).toBe(2);
    expect(h.hosts.map((x) => x.alive)).toEqual([true, true]);
    expect(h.pool.memory()).toMatchObject({ evictionsForBudget: 0, skippedSpeculative: 1 });
    // A request for c does evict (the least recently used, a).
    expect((await h.pool.run("c", "snapshot", request("/x"), 1000)).status).toBe(200);
    expect(h.hosts.map((x) => x.alive)).toEqual([false, true, true]);
  });

  it("scales an idle deployment to zero by default (no minimum), and its next request starts a host again", async () => {
    const h = harness({ idleTtlMs: 100 });
    await h.pool.run("dep1", "snapshot", request("/x"), 1000);
    await expect.poll(() => h.hosts.filter((x) => x.alive).length, { timeout: 3000, interval: 20 }).toBe(0);
    expect(h.pool.memory().usedBytes).toBe(0);
    expect((await h.pool.run("dep1", "snapshot", request("/y"), 1000)).status).toBe(200);
    expect(h.starts).toBe(2);
  });
});
