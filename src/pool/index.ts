/**
 * Pool: owns the sandbox host processes that run each deployment and hands one to each request.
 * Acquire is O(1) when a host is idle; otherwise the request waits in a bounded FIFO queue while
 * the pool grows up to its per-deployment maximum. A host serves one request at a time, is reset
 * (snapshot mode) or replaced (fresh mode) after each, and is killed when it overruns its
 * wall-clock limit. A host process holds one instance, or with `instancesPerHost` > 1 several
 * instances (slots) of ONE account (src/pool/slots.ts): an instance is then (process, slot).
 * Must never: block the gateway's event loop on guest code, or let one deployment's failure
 * touch another's hosts.
 */
import { SandboxHost, type HostInit, type HostOptions, type HostResponse, type WarmupUsage } from "./host.js";
import type { SnapshotImage } from "../snapshot/store.js";
import type { EngineRequest } from "../runtime/engine.js";
import type { HostMemoryReport } from "../protocol/index.js";
import type { Manifest } from "../bundle/index.js";
import type { RouteMode } from "../router/index.js";
import { LRUCache } from "lru-cache";
import { InstanceUnavailableError, PoolSaturatedError, SandboxError, ZerocellError } from "../errors.js";
import { totalmem } from "node:os";
import { MemoryBudget, defaultBudgetBytes, type Charge } from "./budget.js";
import { treeMemoryBytesAsync } from "./spawn.js";
import { HostSlots, type SlotReservation } from "./slots.js";
import { PROTOCOL_LIMITS } from "../protocol/index.js";

export type { WarmupUsage, HostInit, HostOptions, HostResponse } from "./host.js";
export { hostNodeArgs, detectHostIsolation, closeHostIsolation, NO_ISOLATION, HOST_UID, type HostIsolation } from "./spawn.js";
import { SpareHosts } from "./spares.js";
import type { HostIsolation } from "./spawn.js";

export interface PoolLimits {
  /** Host processes (one instance each) per deployment. */
  maxInstancesPerDeployment: number;
  /** Requests waiting for an instance, per deployment; beyond it 503 + Retry-After. */
  maxQueue: number;
  /** Largest response body, bytes. */
  maxResponseBytes: number;
  /**
   * CPU time a host may use from spawn until tenant code runs (its first warm-up message) or it
   * is ready, ms; a wall-clock backstop of 3 × this + 10 s catches one that hangs.
   */
  startTimeoutMs: number;
  /** An instance idle this long is stopped (down to minInstancesPerDeployment), ms. */
  idleTtlMs: number;
  /**
   * Instances each deployment and mode keeps even when idle (default 0: an idle app scales to
   * zero and its next request starts a host from the stored snapshot).
   */
  minInstancesPerDeployment: number;
  /** Idle instances across all deployments; beyond it the least recently used is stopped. */
  maxIdleInstances: number;
  /** Keep one preloaded spare host per runtime in use (src/pool/spares.ts). */
  spareHosts: boolean;
  /**
   * Longest a request waits for an instance (queue and start), ms; then 503 + Retry-After. Apart
   * from the app's timeout_ms, which starts when the instance takes the request.
   */
  maxAcquireWaitMs: number;
  /**
   * Memory all sandbox hosts together may use (measured PSS, estimates for starts), bytes; 0 =
   * 60% of the machine's memory. Starts beyond it evict idle instances (LRU) or wait.
   */
  memoryBudgetBytes: number;
  /** How often the hosts' memory is read from /proc for the budget, ms. */
  memorySampleMs: number;
  /**
   * Instances (slots) one host process may carry, all of one account (default 1: a process per
   * instance). Above 1 a new instance prefers a free slot in a process of its account — same
   * deployment first — over a new process, and is charged a slot's marginal memory; the slots
   * of a process run their requests one at a time (one thread). At most PROTOCOL_LIMITS.maxSlotsPerHost.
   */
  instancesPerHost: number;
}

/** What one host of a runtime is assumed to cost until one was measured, bytes (PSS, measured at main). */
const DEFAULT_HOST_ESTIMATE_BYTES: Record<string, number> = { php: 256 * 1048576, python: 320 * 1048576, x86: 128 * 1048576 };
/**
 * What one more instance in a running process is charged at its start, bytes (measured marginals,
 * bench/multi-instance.mjs and bench/memory.mjs: PHP ~7–12 MB, Python ~35–65 MB; biased up for a
 * start's peak). The sampled share of the process's PSS replaces it once the slot is ready.
 */
const DEFAULT_SLOT_ESTIMATE_BYTES: Record<string, number> = { php: 32 * 1048576, python: 128 * 1048576, x86: 48 * 1048576 };

export const DEFAULT_POOL_LIMITS: PoolLimits = {
  maxInstancesPerDeployment: 2,
  maxQueue: 256,
  maxResponseBytes: 32 * 1024 * 1024,
  startTimeoutMs: 30_000,
  idleTtlMs: 5 * 60_000,
  minInstancesPerDeployment: 0,
  maxIdleInstances: 256,
  spareHosts: true,
  maxAcquireWaitMs: 60_000,
  memoryBudgetBytes: 0,
  memorySampleMs: 5_000,
  instancesPerHost: 1,
};

/** What the pool needs to start a deployment's hosts (loaded from the store on demand). */
export interface DeploymentSource {
  deploymentId: string;
  appName: string;
  /** Its account: instances of one account may share a host process; undefined never shares. */
  accountId?: string | undefined;
  manifest: Manifest;
  /** encodeImage() of the bundle. */
  image: Buffer;
  /** The app's environment variables for this deployment (secrets decrypted; never logged). */
  env: Record<string, string>;
  /** The stored snapshot for the running engine build, if any (a corrupt one rejects). */
  loadSnapshot(): Promise<SnapshotImage | undefined>;
  /** Whether one is stored (or being stored): then new hosts need not send theirs. */
  hasSnapshot(): boolean;
  saveSnapshot(img: SnapshotImage): void;
}

export interface PoolRunResult extends HostResponse {
  acquireMs: number;
  /** The first request of a new host: where its start's time went, ms. */
  startPhases?: Record<string, number> | undefined;
  /** Whether this request got a host that had served before (reset) or a new one. */
  reused: boolean;
}

/** The last N samples of a duration, for p50/p99 without unbounded memory. */
class Samples {
  readonly #values: number[] = [];
  #next = 0;
  count = 0;
  constructor(readonly capacity = 1024) {}
  add(v: number): void {
    this.count++;
    if (this.#values.length < this.capacity) this.#values.push(v);
    else {
      this.#values[this.#next] = v;
      this.#next = (this.#next + 1) % this.capacity;
    }
  }
  summary(): { count: number; p50: number | null; p99: number | null } {
    if (this.#values.length === 0) return { count: this.count, p50: null, p99: null };
    const sorted = [...this.#values].sort((a, b) => a - b);
    const at = (q: number) => Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! * 1000) / 1000;
    return { count: this.count, p50: at(0.5), p99: at(0.99) };
  }
}

interface Waiter {
  resolve: (host: Slot) => void;
  reject: (e: unknown) => void;
}

/**
 * What the pool needs of a host (SandboxHost is the real one: a sandbox process). The seam lets
 * the pool's own logic (queue, growth, release, retirement, eviction) be tested with in-process
 * hosts; the real-process behaviour keeps its integration tests.
 */
export interface PoolHost {
  readonly pid: number;
  /** Spawn → ready, ms. */
  readonly readyMs: number;
  /** Started from a stored snapshot (no init, no warm-up). */
  readonly restored: boolean;
  /** Restored on a blank engine instance made ahead: a spare host's, or one its process made for a later slot. */
  readonly spareEngine?: boolean;
  /** Where its start's time went, ms (server-timing of its first request; SandboxHost.startPhases). */
  readonly startPhases?: Record<string, number>;
  /** Its engine state is unknown (or spent): replace it after this request. */
  readonly tainted: boolean;
  /** Close to spent (the engine passed WORN_AT): start its successor, keep serving until it is ready. */
  readonly worn?: boolean;
  readonly alive: boolean;
  /** CPU time of the host's last reset, µs, as the host reported it (for the CPU breakdown). */
  readonly lastResetCpuUs?: number | undefined;
  /** Memory the host uses now (PSS of its processes), bytes; undefined when unknown or gone. */
  memoryBytes?(): number | undefined;
  /** memoryBytes() read without blocking the event loop; the sampler prefers it. */
  memoryBytesAsync?(): Promise<number | undefined>;
  onExit(listener: () => void): void;
  /** One request; `idle` resolves when the host can take the next (after its reset), or when it exits. */
  request(req: EngineRequest, reset: boolean, timeoutMs: number, appName: string): { response: Promise<HostResponse>; idle: Promise<number | undefined> };
  kill(): void;
  shutdown(): Promise<void>;
  /** The host's own memory report (diagnostics; SandboxHost asks the process). */
  memory?(): Promise<HostMemoryReport | undefined>;
  /** The node process's pid inside the wrappers (its memory is the host's). */
  readonly nodePid?: number | undefined;
  /** Other instances share its process: memoryBytes() is its share, not what a host costs. */
  readonly sharesProcess?: boolean;
}

/** Starts a host loaded with a deployment; resolves once it is ready for requests. */
export type HostFactory = (init: HostInit, opts: HostOptions) => Promise<PoolHost>;

interface Slot {
  host: PoolHost;
  served: number;
  /** What the memory budget charges for this host. */
  charge: Charge | undefined;
  /** The replacement started because the host is worn (DeploymentPool.#replaceAhead). */
  successor?: Promise<void> | undefined;
  /** Its successor is ready: stop it after its current request. */
  superseded?: boolean;
}

/** What the pool-wide idle cache needs from a deployment pool. */
interface IdleTracker {
  idle(slot: Slot, pool: DeploymentPool): void;
  busy(slot: Slot): void;
  /** The pool-wide totals every deployment's pool adds to. */
  readonly counters: PoolCounters;
  readonly budget: MemoryBudget;
  /** Where instances go when processes carry several (undefined: one process per instance). */
  readonly slots: HostSlots | undefined;
}

/** Pool-wide totals since start (monotonic; /metrics exports them as counters). */
export interface PoolCounters {
  hostStarts: number;
  hostStartFailures: number;
  /** Hosts started from a stored snapshot (no init, no warm-up). */
  restoredFromSnapshot: number;
  /** Of those, restored on the engine instance a spare host made ahead (no runtime start). */
  restoredOnSpareEngine: number;
  /** Hosts that exited while serving or idle (crash, kill, memory ceiling), not stopped by the pool. */
  hostExits: number;
  resets: number;
  /** Idle instances stopped past the global cap (LRU). */
  evictions: number;
  /** Requests refused with 503 because a deployment's queue was full. */
  saturated: number;
}

class DeploymentPool {
  readonly source: DeploymentSource;
  readonly mode: RouteMode;
  /** Set for a key's dedicated pool (daemon-mode keyed routes). */
  instanceKey: string | undefined;
  readonly #limits: PoolLimits;
  readonly #hostOpts: HostOptions;
  readonly #all = new Set<Slot>();
  readonly #idle: Slot[] = [];
  readonly #waiters: Waiter[] = [];
  #starting = 0;
  #busy = 0;
  readonly acquireMs = new Samples();
  readonly resetMs = new Samples();
  readonly startMs = new Samples();
  /**
   * Where the hosts' CPU went, summed over requests (µs, as hosts report it: untrusted, display
   * only): the engine's handle (guest + glue), the guest alone (wall), the resets.
   */
  readonly cpu = { requests: 0, handleUs: 0, guestUs: 0, resetUs: 0 };
  retiring = false;
  #drained: Array<() => void> = [];
  /** Hosts being shut down, so retire() can wait for every one of them. */
  readonly #stopping = new Set<Promise<void>>();

  readonly #tracker: IdleTracker;
  readonly #startHost: HostFactory;

  constructor(source: DeploymentSource, mode: RouteMode, limits: PoolLimits, hostOpts: HostOptions, tracker: IdleTracker, startHost: HostFactory) {
    this.#tracker = tracker;
    this.#startHost = startHost;
    this.source = source;
    this.mode = mode;
    this.#limits = limits;
    this.#hostOpts = hostOpts;
  }

  get stats() {
    return {
      instances: this.#all.size,
      /** Host process ids (for operators: kill, inspect). */
      pids: [...this.#all].map((s) => s.host.pid),
      idle: this.#idle.length,
      busy: this.#busy,
      starting: this.#starting,
      queued: this.#waiters.length,
      resets: this.resetMs.count,
      evicted: this.evicted,
      restoredFromSnapshot: this.restored,
      restoredOnSpareEngine: this.restoredOnSpareEngine,
      lastStartError: this.lastStartError,
      /** What the memory budget charges for this pool's hosts (measured PSS or the estimate), bytes. */
      memoryBytes: [...this.#all].reduce((sum, s) => sum + (s.charge?.bytes ?? 0), 0),
      acquireMs: this.acquireMs.summary(),
      resetMs: this.resetMs.summary(),
      cpuUs: { ...this.cpu },
      /** New instance: spawn → ready (runtime, image, warm-up, snapshot). */
      instanceStartMs: this.startMs.summary(),
    };
  }

  /** Reads each host's memory (PSS) into the budget, off the event loop where the host can. */
  async sampleMemory(budget: MemoryBudget): Promise<void> {
    await Promise.all(
      [...this.#all].map(async (s) => {
        const bytes = s.host.memoryBytesAsync !== undefined ? await s.host.memoryBytesAsync() : s.host.memoryBytes?.();
        // Gone meanwhile: its charge was released with it.
        if (s.charge !== undefined && bytes !== undefined && this.#all.has(s)) budget.measured(s.charge, bytes, s.host.sharesProcess !== true);
      }),
    );
  }

  /** Every host of this pool now (idle, busy). */
  hosts(): PoolHost[] {
    return [...this.#all].map((s) => s.host);
  }

  /** Starts one host ahead of the first request. */
  prewarm(): void {
    // A deployment whose last start failed (a warm-up that crashed or timed out) is not started
    // again on every deploy of another app: the next request to it tries again.
    // Only where the deployment keeps a minimum (`--min-instances`): with scale to zero an app
    // gets a host on demand, and a prewarm only takes free room in the memory budget.
    if (this.#limits.minInstancesPerDeployment > 0 && this.lastStartError === undefined && this.#all.size + this.#starting === 0) void this.#grow(true).catch(() => {});
  }

  /** Why the last host start failed, until a start succeeds (shown by `zerocell pool`). */
  lastStartError: { code: string; message: string; at: string } | undefined;
  /** Aborted at retirement when no request waits: hosts still starting are killed, not awaited. */
  readonly #abort = new AbortController();

  /**
   * Starts one more host: from the stored snapshot when there is one (no init, no warm-up),
   * otherwise cold, asking it for its snapshot so the next ones can skip init. Fresh mode always
   * starts cold: that is its point.
   */
  #grow(speculative = false): Promise<PoolHost> {
    this.#starting++;
    const cold = this.mode === "fresh";
    const budget = this.#tracker.budget;
    let charge: Charge | undefined;
    const phases: Record<string, number> = {};
    let at = performance.now();
    const lap = (name: string) => {
      phases[name] = performance.now() - at;
      at = performance.now();
    };
    // A free slot in a process of the same account, if processes carry several (fresh mode: a
    // process of its own, init included). Reserved before the budget's wait, so it is charged
    // as a slot.
    const placer = this.#tracker.slots;
    const reservation: SlotReservation | undefined = cold ? undefined : placer?.reserve(this.source.accountId, this.source.deploymentId, this.source.manifest.runtime);
    // The memory budget admits the start first (evicting idle instances of any deployment, LRU).
    return budget
      .admit(this.source.manifest.runtime, this.#abort.signal, speculative, reservation === undefined ? "host" : "slot")
      .then((c) => {
        charge = c;
        lap("admit");
        return cold ? undefined : this.source.loadSnapshot().finally(() => lap("snapfetch")).catch((e: unknown) => {
          this.#hostOpts.onLog(`snapshot not usable, rebuilding it: ${(e as Error).message}`);
          return undefined;
        });
      })
      .then((snap) => {
        const init: HostInit = {
            deploymentId: this.source.deploymentId,
            accountId: this.source.accountId,
            manifest: this.source.manifest,
            image: this.source.image,
            env: this.source.env,
            snapshot: snap,
            wantSnapshot: !cold && snap === undefined && !this.source.hasSnapshot(),
            cold,
            onSnapshot: (img) => this.source.saveSnapshot(img),
            signal: this.#abort.signal,
        };
        return placer !== undefined && !cold ? placer.start(init, this.#hostOpts, reservation) : this.#startHost(init, this.#hostOpts);
      })
      .then((host) => {
        this.#starting--;
        this.lastStartError = undefined;
        this.startMs.add(host.readyMs);
        this.#tracker.counters.hostStarts++;
        if (host.restored) {
          this.restored++;
          this.#tracker.counters.restoredFromSnapshot++;
          if (host.spareEngine === true) {
            this.restoredOnSpareEngine++;
            this.#tracker.counters.restoredOnSpareEngine++;
          }
        }
        if (host.startPhases !== undefined) Object.assign(host.startPhases, phases);
        const slot: Slot = { host, served: 0, charge };
        const measured = host.memoryBytes?.();
        if (charge !== undefined && measured !== undefined) budget.measured(charge, measured, host.sharesProcess !== true);
        this.#all.add(slot);
        host.onExit(() => {
          if (this.#all.has(slot)) this.#tracker.counters.hostExits++;
          if (slot.charge !== undefined) budget.release(slot.charge);
          this.#forget(slot);
        });
        this.#release(slot);
        return host;
      })
      .catch((e: unknown) => {
        this.#starting--;
        reservation?.release();
        if (charge !== undefined) budget.release(charge);
        const noMemory = e instanceof InstanceUnavailableError && e.details?.reason === "memory_budget";
        if (speculative && noMemory) {
          // A prewarm that found no free room is skipped quietly; a request that came meanwhile
          // gets a start of its own (which may evict), not this refusal.
          if (!this.retiring && this.#waiters.length > 0 && this.#all.size + this.#starting === 0) void this.#grow().catch(() => {});
          this.#checkDrained();
          throw e;
        }
        // No room in the memory budget is the platform's state, not the deployment's failure.
        if (!this.#abort.signal.aborted && !noMemory) {
          this.#tracker.counters.hostStartFailures++;
          const err = e instanceof ZerocellError ? e : undefined;
          this.lastStartError = { code: err?.code ?? "host_start_failed", message: (e as Error).message, at: new Date().toISOString() };
        }
        // Nobody will start a host for the waiters: fail them (503, the start's code kept; its
        // message, which may carry the app's log lines, stays in the log and `zerocell pool`).
        const code = e instanceof ZerocellError ? e.code : "host_start_failed";
        if (!this.#abort.signal.aborted) this.#hostOpts.onLog(noMemory ? `no instance started: ${(e as Error).message}` : `instance start failed (${code}): ${(e as Error).message}`);
        const unavailable = () =>
          noMemory ? (e as InstanceUnavailableError) : new InstanceUnavailableError(`pool: no instance of ${this.source.appName} could start (${code}); try again shortly`, 5, { cause: e, reason: code });
        if (this.#all.size + this.#starting === 0) {
          for (const w of this.#waiters.splice(0)) w.reject(unavailable());
        } else {
          this.#waiters.shift()?.reject(unavailable());
        }
        this.#checkDrained();
        throw e;
      });
  }

  /**
   * Starts one host and resolves once it is ready (it then serves like any other), or rejects
   * with why it failed: the deploy's health check.
   */
  start(): Promise<PoolHost> {
    return this.#grow();
  }

  #forget(slot: Slot): void {
    this.#all.delete(slot);
    const i = this.#idle.indexOf(slot);
    // Only an idle slot is in the idle cache (and one being evicted is out of #idle already: the
    // cache must not be touched from inside its own dispose callback).
    if (i !== -1) {
      this.#idle.splice(i, 1);
      this.#tracker.busy(slot);
    }
    this.#checkDrained();
  }

  acquire(): Promise<Slot> | Slot {
    const slot = this.#idle.pop();
    if (slot !== undefined) {
      this.#tracker.busy(slot);
      this.#busy++;
      return slot;
    }
    if (this.#waiters.length >= this.#limits.maxQueue) {
      this.#tracker.counters.saturated++;
      throw new PoolSaturatedError(
        `pool: ${this.#all.size} instances of ${this.source.appName} busy and queue full (limit ${this.#limits.maxQueue})`,
      );
    }
    // Grow only if the hosts already starting will not cover the requests already waiting.
    if (this.#all.size + this.#starting < this.#limits.maxInstancesPerDeployment && this.#waiters.length >= this.#starting) void this.#grow().catch(() => {});
    return new Promise<Slot>((resolve, reject) => {
      const waiter: Waiter = {
        resolve: (s) => {
          clearTimeout(timer);
          this.#busy++;
          resolve(s);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      // The wait has its own bound: past it the request leaves the queue with 503 + Retry-After.
      const timer = setTimeout(() => {
        const i = this.#waiters.indexOf(waiter);
        if (i === -1) return;
        this.#waiters.splice(i, 1);
        this.#checkDrained();
        reject(new InstanceUnavailableError(`pool: no instance of ${this.source.appName} was free within ${this.#limits.maxAcquireWaitMs} ms`, 5, { reason: "acquire_timeout" }));
      }, this.#limits.maxAcquireWaitMs);
      this.#waiters.push(waiter);
    });
  }

  /** Gives a host back after its request (and reset) finished, or drops it if it is spent. */
  done(slot: Slot, keep: boolean): void {
    this.#busy--;
    if (!keep || !slot.host.alive || slot.host.tainted || slot.superseded === true || this.retiring) {
      this.#all.delete(slot);
      this.#stop(slot);
      // Keep one instance ready (fresh mode replaces every host after its request). A superseded
      // host's successor is already serving: it needs no replacement.
      if (!this.retiring && slot.superseded !== true && (this.#waiters.length > 0 || this.#all.size + this.#starting === 0)) void this.#grow(this.#waiters.length === 0).catch(() => {});
      this.#checkDrained();
      return;
    }
    if (slot.host.worn === true) this.#replaceAhead(slot);
    this.#release(slot);
  }

  /**
   * Proactive replacement: a worn host (close to what only a new instance frees, e.g. PHP's
   * descriptor table in daemon mode) serves on while its successor starts; once the successor is
   * ready (and serving), the worn host stops — at once if idle, else after its current request.
   * So load never waits for a host start when a host runs out. For that while the deployment may
   * hold one host above maxInstancesPerDeployment per worn host. A successor that fails to start
   * is tried again after the worn host's next request.
   */
  #replaceAhead(slot: Slot): void {
    if (slot.successor !== undefined || this.retiring) return;
    slot.successor = this.#grow().then(
      () => {
        slot.superseded = true;
        const i = this.#idle.indexOf(slot);
        if (i === -1) return; // busy: done() stops it
        this.#idle.splice(i, 1);
        this.#tracker.busy(slot);
        this.#all.delete(slot);
        this.#stop(slot);
      },
      () => {
        slot.successor = undefined;
      },
    );
  }

  #release(slot: Slot): void {
    if (this.retiring && this.#waiters.length === 0) {
      this.#all.delete(slot);
      this.#stop(slot);
      this.#checkDrained();
      return;
    }
    const w = this.#waiters.shift();
    if (w !== undefined) w.resolve(slot);
    else {
      this.#idle.push(slot);
      this.#tracker.idle(slot, this);
    }
  }

  #checkDrained(): void {
    if (this.#busy === 0 && this.#waiters.length === 0 && this.#starting === 0) {
      for (const d of this.#drained.splice(0)) d();
    }
  }

  /** Stops taking new work once queued requests are served, then shuts every host down. */
  async retire(): Promise<void> {
    this.retiring = true;
    const done = new Promise<void>((resolve) => {
      this.#drained.push(resolve);
    });
    for (const s of this.#idle.splice(0)) {
      this.#tracker.busy(s);
      this.#all.delete(s);
      this.#stop(s);
    }
    // Hosts still starting for nobody are killed rather than awaited (a warm-up may take seconds).
    if (this.#waiters.length === 0) this.#abort.abort();
    this.#checkDrained();
    await done;
    for (const s of this.#all) this.#stop(s);
    this.#all.clear();
    await Promise.all([...this.#stopping]);
  }

  #stop(slot: Slot, kill = false): void {
    // Its memory is free from here on for the budget (the process is killed within a second).
    if (slot.charge !== undefined) this.#tracker.budget.release(slot.charge);
    if (kill) slot.host.kill();
    const p = slot.host.shutdown().finally(() => this.#stopping.delete(p));
    this.#stopping.add(p);
  }

  killAll(): void {
    for (const s of this.#all) s.host.kill();
  }

  /**
   * Called by the idle cache when an idle instance expired (TTL) or was evicted (global cap).
   * Expiry keeps the deployment's minimum; eviction under the cap does not.
   */
  evict(slot: Slot, reason: "expire" | "evict"): void {
    const i = this.#idle.indexOf(slot);
    if (i === -1) return;
    if (reason === "expire" && this.#all.size <= this.#limits.minInstancesPerDeployment) {
      // Keep it, and give it a new lease (not from inside the cache's dispose callback).
      setImmediate(() => {
        if (this.#idle.includes(slot)) this.#tracker.idle(slot, this);
      });
      return;
    }
    this.#idle.splice(i, 1);
    this.#all.delete(slot);
    // An idle host holds no request: evicted ones are killed at once, so the memory the budget
    // stops charging is free within milliseconds, not after a graceful exit.
    this.#stop(slot, reason === "evict");
    this.evicted++;
    if (reason === "evict") this.#tracker.counters.evictions++;
    if (this.#all.size + this.#starting + this.#waiters.length + this.#busy === 0) this.onEmpty?.();
  }

  /** Called when an evicted pool holds nothing any more (a key's pool is then forgotten). */
  onEmpty: (() => void) | undefined;

  evicted = 0;
  /** Hosts started from a stored snapshot. */
  restored = 0;
  /** Of those, restored on the engine instance a spare host made ahead. */
  restoredOnSpareEngine = 0;
}

export class Pool {
  readonly #limits: PoolLimits;
  readonly #hostOpts: HostOptions;
  readonly #load: (deploymentId: string) => DeploymentSource;
  readonly #spares: SpareHosts | undefined;
  readonly #pools = new Map<string, DeploymentPool>();
  readonly #retiring = new Set<Promise<void>>();
  #closed = false;
  /** Idle instances of every deployment, least recently used first out; TTL stops long-idle ones. */
  readonly #idleCache: LRUCache<Slot, DeploymentPool>;
  readonly #tracker: IdleTracker;
  readonly #budget: MemoryBudget;
  readonly #slots: HostSlots | undefined;
  readonly #sampler: NodeJS.Timeout;
  #sampleCount = 0;
  /** The spare hosts' memory at the last sample, by pid, bytes. */
  #spareBytes = new Map<number, number>();

  constructor(options: {
    limits?: Partial<PoolLimits>;
    isolation: HostIsolation;
    load: (deploymentId: string) => DeploymentSource;
    /** A line a host wrote, with the request it belongs to (src/pool/host.ts HostOptions.onLog). */
    onLog: (deploymentId: string, line: string, requestId?: string) => void;
    onWarmup?: (deploymentId: string, usage: WarmupUsage) => void;
    /** How hosts start (default: a sandbox process, SandboxHost.start). */
    startHost?: HostFactory;
  }) {
    this.#onWarmup = options.onWarmup;
    this.#startHost = options.startHost ?? ((init, opts) => SandboxHost.start(init, opts));
    this.#limits = { ...DEFAULT_POOL_LIMITS, ...options.limits };
    this.#load = options.load;
    this.#spares = this.#limits.spareHosts ? new SpareHosts({ isolation: options.isolation, maxResponseBytes: this.#limits.maxResponseBytes, onLog: (runtime, line) => options.onLog(`spare:${runtime}`, line) }) : undefined;
    this.#hostOpts = {
      isolation: options.isolation,
      maxResponseBytes: this.#limits.maxResponseBytes,
      startTimeoutMs: this.#limits.startTimeoutMs,
      onLog: () => {},
      ...(this.#spares === undefined ? {} : { spares: this.#spares }),
    };
    this.#onLog = options.onLog;
    this.#idleCache = new LRUCache<Slot, DeploymentPool>({
      max: this.#limits.maxIdleInstances,
      ttl: this.#limits.idleTtlMs,
      ttlAutopurge: true,
      dispose: (pool, slot, reason) => {
        if (reason === "expire" || reason === "evict") pool.evict(slot, reason);
      },
    });
    if (!(Number.isInteger(this.#limits.instancesPerHost) && this.#limits.instancesPerHost >= 1 && this.#limits.instancesPerHost <= PROTOCOL_LIMITS.maxSlotsPerHost)) {
      throw new RangeError(`pool: instancesPerHost must be an integer from 1 to ${PROTOCOL_LIMITS.maxSlotsPerHost} (got ${this.#limits.instancesPerHost})`);
    }
    // Slots need the real host processes (an injected startHost knows nothing of them).
    this.#slots = this.#limits.instancesPerHost > 1 && options.startHost === undefined ? new HostSlots(this.#limits.instancesPerHost) : undefined;
    this.#budget = new MemoryBudget({
      budgetBytes: this.#limits.memoryBudgetBytes > 0 ? this.#limits.memoryBudgetBytes : defaultBudgetBytes(totalmem()),
      defaultEstimateBytes: (runtime) => DEFAULT_HOST_ESTIMATE_BYTES[runtime] ?? DEFAULT_HOST_ESTIMATE_BYTES.php!,
      slotEstimateBytes: (runtime) => DEFAULT_SLOT_ESTIMATE_BYTES[runtime] ?? DEFAULT_SLOT_ESTIMATE_BYTES.php!,
      maxWaitMs: this.#limits.maxAcquireWaitMs,
    });
    // Room for a start is made by evicting the least recently used idle instance of any deployment
    // (a host sends its snapshot before it is ready, so evicting an idle one never loses it).
    this.#budget.evictOne = () => {
      for (const slot of this.#idleCache.rkeys()) {
        const pool = this.#idleCache.peek(slot);
        this.#idleCache.delete(slot);
        pool?.evict(slot, "evict");
        return true;
      }
      return false;
    };
    // Spare hosts count: their last measured memory, or the runtime's estimate until measured
    // (a spare is started whenever one is taken, before the next sample).
    this.#budget.outsideBytes = () => {
      let sum = 0;
      for (const s of this.#spares?.list() ?? []) sum += this.#spareBytes.get(s.pid) ?? this.#budget.estimate(s.runtime);
      return sum;
    };
    this.#tracker = {
      idle: (slot, pool) => {
        this.#idleCache.set(slot, pool);
        // An idle instance can be evicted: a start waiting for memory may fit now.
        if (this.#budget.waiting > 0) queueMicrotask(() => this.#budget.wake());
      },
      busy: (slot) => this.#idleCache.delete(slot),
      counters: this.counters,
      budget: this.#budget,
      slots: this.#slots,
    };
    this.#sampler = setInterval(() => this.#sampleMemory(), 500);
    this.#sampler.unref();
  }

  /** Reads every host's (and spare's) memory for the budget. */
  #sampleMemory(): void {
    this.#sampleCount++;
    // Starts waiting for memory try again twice a second (a host that owed its snapshot may be
    // evictable now); /proc is read only every memorySampleMs, one sample at a time.
    if (this.#budget.waiting > 0) this.#budget.wake();
    if (this.#sampleCount % Math.max(1, Math.round(this.#limits.memorySampleMs / 500)) !== 0 || this.#sampling) return;
    this.#sampling = true;
    void this.#readMemory().finally(() => {
      this.#sampling = false;
    });
  }

  /** A memory sample in progress (/proc read on libuv's threads). */
  #sampling = false;

  async #readMemory(): Promise<void> {
    try {
      const spareList = (this.#spares?.list() ?? []).filter((s) => s.pid > 0);
      const [, spareBytes] = await Promise.all([
        Promise.all([...this.#pools.values()].map((p) => p.sampleMemory(this.#budget))),
        Promise.all(spareList.map((s) => treeMemoryBytesAsync(s.pid))),
      ]);
      this.#spareBytes = new Map(spareList.map((s, i) => [s.pid, spareBytes[i]!]));
      // Measured past the budget (hosts grew after their admission): idle instances go, LRU first.
      this.#budget.enforce();
    } catch (e) {
      // Every read above turns a vanished process into 0 or undefined: this is a bug, not a race.
      process.stderr.write(`pool: memory sample failed: ${(e as Error).stack ?? String(e)}\n`);
    }
  }

  /** The memory budget and what uses it (GET /v1/pool, `zerocell pool`, /metrics). */
  memory(): { budgetBytes: number; usedBytes: number; waitingStarts: number; estimateBytes: Record<string, number>; instancesPerHost: number; admitted: number; waited: number; refused: number; evictionsForBudget: number; evictionsOverBudget: number; skippedSpeculative: number } {
    return {
      budgetBytes: this.#budget.budgetBytes,
      instancesPerHost: this.#limits.instancesPerHost,
      usedBytes: this.#budget.usedBytes,
      waitingStarts: this.#budget.waiting,
      estimateBytes: Object.fromEntries(Object.keys(DEFAULT_HOST_ESTIMATE_BYTES).map((r) => [r, this.#budget.estimate(r)])),
      ...this.#budget.stats,
    };
  }

  readonly counters: PoolCounters = { hostStarts: 0, hostStartFailures: 0, restoredFromSnapshot: 0, restoredOnSpareEngine: 0, hostExits: 0, resets: 0, evictions: 0, saturated: 0 };
  readonly #onLog: (deploymentId: string, line: string, requestId?: string) => void;
  readonly #onWarmup: ((deploymentId: string, usage: WarmupUsage) => void) | undefined;
  readonly #startHost: HostFactory;

  /**
   * Hosts of one deployment are kept apart per mode: a host that served a daemon request carries
   * state, so it must never serve a snapshot or fresh one.
   */
  #poolFor(deploymentId: string, mode: RouteMode, instanceKey?: string): DeploymentPool {
    if (this.#closed) throw new PoolSaturatedError("pool: the server is shutting down", 5);
    const key = instanceKey === undefined ? `${deploymentId}/${mode}` : `${deploymentId}/${mode}/key:${instanceKey}`;
    let p = this.#pools.get(key);
    if (p === undefined || p.retiring) {
      const source = this.#load(deploymentId);
      this.#spares?.want(source.manifest.runtime);
      // A key's own instance: one at most, none kept once idle past the TTL.
      const limits = instanceKey === undefined ? this.#limits : { ...this.#limits, maxInstancesPerDeployment: 1, minInstancesPerDeployment: 0 };
      p = new DeploymentPool(source, mode, limits, { ...this.#hostOpts, onLog: (line, requestId) => this.#onLog(deploymentId, line, requestId), onWarmup: (u) => this.#onWarmup?.(deploymentId, u) }, this.#tracker, this.#startHost);
      if (instanceKey !== undefined) {
        p.instanceKey = instanceKey;
        const created = p;
        p.onEmpty = () => {
          if (this.#pools.get(key) === created) this.#pools.delete(key);
        };
      }
      this.#pools.set(key, p);
    }
    return p;
  }

  /** Deployments whose health check runs now (count per id): a route reload does not retire them. */
  readonly #probing = new Map<string, number>();

  /**
   * The deploy's health check: starts one host of a deployment that is not active yet (init,
   * warm-up, health paths) and resolves once it is ready, or rejects with why it failed. A ready
   * host stays in the pool for `mode` (the deployment's first requests use it) unless `keep` is
   * false; a failed deployment's hosts are all stopped.
   */
  async probe(deploymentId: string, mode: RouteMode, keep = true): Promise<{ readyMs: number; phases: Record<string, number> }> {
    this.#probing.set(deploymentId, (this.#probing.get(deploymentId) ?? 0) + 1);
    const key = `${deploymentId}/${mode}`;
    try {
      const host = await this.#poolFor(deploymentId, mode).start();
      if (!keep) this.#retireKey(key);
      return { readyMs: host.readyMs, phases: { ...host.startPhases } };
    } catch (e) {
      this.#retireKey(key);
      throw e;
    } finally {
      const n = (this.#probing.get(deploymentId) ?? 1) - 1;
      if (n === 0) this.#probing.delete(deploymentId);
      else this.#probing.set(deploymentId, n);
    }
  }

  #retireKey(key: string): void {
    const p = this.#pools.get(key);
    if (p === undefined) return;
    this.#pools.delete(key);
    const done = p.retire().finally(() => this.#retiring.delete(done));
    this.#retiring.add(done);
  }

  /** Starts a host for a deployment's mode in the background (after deploy, at start-up). */
  prewarm(deploymentId: string, mode: RouteMode): void {
    this.#poolFor(deploymentId, mode).prewarm();
  }

  /**
   * 1. acquire an instance, 2. run the request on it, 3. give it back (reset / replace).
   * `instanceKey` gives the request a dedicated instance (daemon-mode keyed routes).
   */
  async run(deploymentId: string, mode: RouteMode, req: EngineRequest, timeoutMs: number, instanceKey?: string): Promise<PoolRunResult> {
    const pool = this.#poolFor(deploymentId, mode, instanceKey);
    const t0 = performance.now();
    // 1. acquire
    const got = pool.acquire();
    const slot = got instanceof Promise ? await got : got;
    const acquireMs = performance.now() - t0;
    pool.acquireMs.add(acquireMs);
    const reused = slot.served > 0;
    slot.served++;
    // 2. run
    const { response, idle } = slot.host.request(req, mode === "snapshot", timeoutMs, pool.source.appName);
    // 3. release once the host has reset; fresh mode never reuses a host.
    void idle.then((resetMs) => {
      if (resetMs !== undefined) {
        pool.resetMs.add(resetMs);
        this.counters.resets++;
        pool.cpu.resetUs += slot.host.lastResetCpuUs ?? 0;
      }
      pool.done(slot, mode !== "fresh");
    });
    try {
      const res = await response;
      pool.cpu.requests++;
      pool.cpu.handleUs += res.cpuUs ?? 0;
      pool.cpu.guestUs += (res.guestMs ?? 0) * 1000;
      return { ...res, acquireMs, reused, ...(reused ? {} : { startPhases: slot.host.startPhases }) };
    } catch (e) {
      if (e instanceof SandboxError && (e.code === "sandbox_timeout" || e.code === "host_crashed")) slot.host.kill();
      throw e;
    }
  }

  /** Drains and frees every deployment not in `active` (after a deploy or rollback). */
  retireExcept(active: Set<string>): void {
    for (const [key, p] of this.#pools) {
      if (!active.has(p.source.deploymentId) && !this.#probing.has(p.source.deploymentId)) this.#retireKey(key);
    }
  }

  stats(): Array<{ deploymentId: string; app: string; mode: RouteMode; key: string | null } & DeploymentPool["stats"]> {
    return [...this.#pools.values()].map((p) => ({ deploymentId: p.source.deploymentId, app: p.source.appName, mode: p.mode, key: p.instanceKey ?? null, ...p.stats }));
  }

  /** Host processes that carry slots, with their account and open slots (admin diagnostics, tests). */
  hostProcesses(): Array<{ pid: number; accountId: string | undefined; slots: number }> {
    return this.#slots?.list() ?? [];
  }

  /** Every host of every deployment's pool, with what it serves (diagnostics: GET /v1/pool/memory). */
  hosts(): Array<{ deploymentId: string; app: string; mode: RouteMode; host: PoolHost }> {
    return [...this.#pools.values()].flatMap((p) => p.hosts().map((host) => ({ deploymentId: p.source.deploymentId, app: p.source.appName, mode: p.mode, host })));
  }

  /** Waits for in-flight requests, then stops every host. */
  /** Spare hosts waiting now (runtime and pid) and how many were taken so far. */
  spares(): { ready: Array<{ runtime: string; pid: number; preloaded: boolean }>; taken: number; restoredOnSpareEngine: number } {
    return { ready: this.#spares?.list() ?? [], taken: this.#spares?.taken ?? 0, restoredOnSpareEngine: this.counters.restoredOnSpareEngine };
  }

  /** Set once close() began: no new work is taken. */
  get closed(): boolean {
    return this.#closed;
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#sampler);
    this.#budget.close();
    this.#spares?.close();
    this.#idleCache.clear();
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all([...pools.map((p) => p.retire()), ...this.#retiring]);
  }

  killAll(): void {
    this.#spares?.close();
    for (const p of this.#pools.values()) p.killAll();
  }
}
