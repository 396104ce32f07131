/**
 * One sandbox host process, seen from the gateway: spawn it locked down, open instances (slots)
 * in it, send it one request at a time, kill it when it overruns. A process carries one slot, or
 * with `--instances-per-host N` up to N slots of ONE account (src/pool/slots.ts places them);
 * `HostSlot` is one instance — what the pool sees as a host. Everything a host sends back is
 * untrusted and goes through the size-limited frame decoder and a shape check.
 * Must never: open a slot for another account than the process's first slot's; send a slot's
 * request while another request or start of the process is running (its timeout would count the
 * other's time).
 */
import type { ChildProcess } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import { encodeFrame, FrameDecoder, maxHostFrameBytes, parseHostMessage, PROTOCOL_LIMITS, type Frame, type GatewayMessage, type HostMemoryReport } from "../protocol/index.js";
import type { EngineRequest, EngineResponse } from "../runtime/engine.js";
import type { Manifest } from "../bundle/index.js";
import { SandboxError, SandboxTimeoutError, ZerocellError } from "../errors.js";
import type { SnapshotImage } from "../snapshot/store.js";
import type { SpareHosts } from "./spares.js";
import { warmupBootAllowanceMs } from "../runtime/index.js";
import { hostMemoryCeiling, spawnHost, type HostIsolation, type HostProcess } from "./spawn.js";
import { readFileSync } from "node:fs";
import { snapshotFiles } from "../snapshot/files.js";

/** How long after a spare is taken its replacement starts, ms (SandboxHost.spawn). */
const SPARE_REPLACE_DELAY_MS = 200;

export interface HostOptions {
  /** The OS layers hosts start in (namespaces, uid, memory cgroup; src/pool/spawn.ts). */
  isolation: HostIsolation;
  /** Largest response body a guest may send back, bytes. */
  maxResponseBytes: number;
  /** How long a host may take from spawn to ready, ms. */
  startTimeoutMs: number;
  /**
   * Called with each line the host writes to stderr (already truncated), with the request id of
   * the request the host served last (undefined before its first: start and warm-up).
   */
  onLog: (line: string, requestId?: string) => void;
  /** Spare hosts to take a process from instead of spawning one (src/pool/spares.ts). */
  spares?: SpareHosts;
  /**
   * Called once per host start that ran the app's warm-up (tenant code): its wall time from the
   * first warm-up request to ready or failure, the CPU the host reported, and how it ended
   * (200 ready, 504 over its time, 502 the host failed). The gateway bills it.
   */
  onWarmup?: (r: WarmupUsage) => void;
}

export interface WarmupUsage {
  startedAt: number;
  wallMs: number;
  cpuUs: number | undefined;
  status: number;
}


export interface HostInit {
  deploymentId: string;
  /** The deployment's account (slots of one process are all of one account); undefined: never shared. */
  accountId?: string | undefined;
  manifest: Manifest;
  image: Buffer;
  /** The app's environment variables (in the init message; never logged). */
  env: Record<string, string>;
  /** A stored snapshot to start from instead of init + warm-up. */
  snapshot: SnapshotImage | undefined;
  /** Ask the host for its snapshot after warm-up (calls onSnapshot). */
  wantSnapshot: boolean;
  /** Fresh mode: full init, no snapshot. */
  cold: boolean;
  /** The process may get another slot after this one: the host makes a blank instance ahead (InitMessage). */
  blankAhead?: boolean;
  onSnapshot: (img: SnapshotImage) => void;
  /** Aborted when nobody needs the host any more (its pool retired): a start in progress is killed. */
  signal?: AbortSignal;
}

export interface HostResponse extends EngineResponse {
  runMs: number;
  /** When the host started the request, wall-clock ms (performance.timeOrigin based). */
  startedAt: number | undefined;
  /** CPU time the host process spent on the request, µs, as the host reported it (bounded by runMs × 4). */
  cpuUs: number | undefined;
  /** CPU ms inside the guest's entry point as the host reported it (display only). */
  guestMs?: number | undefined;
}

const MAX_LOG_LINE = 2048;
/** How often a warm-up's CPU time is read, ms. */
const WARMUP_CHECK_INTERVAL_MS = 100;
/** A warm-up's wall-clock backstop: this many times its CPU limit, plus the slack below. */
const WARMUP_WALL_FACTOR = 3;
const WARMUP_WALL_SLACK_MS = 10_000;

type Pending = { slot: HostSlot; resolve: (r: HostResponse) => void; reject: (e: unknown) => void; timer: NodeJS.Timeout | undefined };

/** A unit of work the process runs alone: a slot's start (until ready or failed) or a request (until idle). */
type Job = { slot: HostSlot; run: () => void };

/** A sandbox host process: its pipe, its slots, and the one-at-a-time queue of their work. */
export class SandboxHost {
  readonly #child: ChildProcess;
  readonly #process: HostProcess;
  readonly #decoder: FrameDecoder;
  #nextId = 1;
  readonly #pending = new Map<number, Pending>();
  /** Slots open or opening, by number. */
  readonly #slots = new Map<number, HostSlot>();
  /** Slots promised to starts still waiting for the memory budget (src/pool/slots.ts). */
  #reserved = 0;
  /** Per slot number, the memory ceiling its deployment adds, bytes. */
  readonly #ceilings = new Map<number, number>();
  /**
   * Open slots per deployment, as the host counts them (from its ready to the close sent): the
   * host keeps a deployment's prepared image while one is open, so a later slot is sent without it.
   */
  readonly #images = new Map<string, number>();
  #exited = false;
  #exitReason: ZerocellError | undefined;
  /** The slot whose request or start made the process exit (a timeout): the others see a crash. */
  #exitCulprit: HostSlot | undefined;
  readonly #exitListeners: Array<() => void> = [];
  readonly #jobs: Job[] = [];
  #current: HostSlot | undefined;
  /** The slot whose work the process ran last (its log lines go to that deployment). */
  #lastSlot: HostSlot | undefined;
  readonly pid: number;
  readonly runtime: Manifest["runtime"];
  /** The account of its first slot (undefined: a deployment that never shares a process). */
  readonly accountId: string | undefined;
  /** The process was a spare (started and preloaded before this deployment came). */
  readonly fromSpare: boolean;

  private constructor(proc: HostProcess, opts: HostOptions, runtime: Manifest["runtime"], accountId: string | undefined, fromSpare: boolean) {
    const child = proc.child;
    this.#process = proc;
    this.#child = child;
    this.runtime = runtime;
    this.accountId = accountId;
    this.fromSpare = fromSpare;
    this.pid = child.pid ?? -1;
    this.#decoder = new FrameDecoder(maxHostFrameBytes(opts.maxResponseBytes));
    const replies = child.stdio[3] as Readable;
    replies.on("data", (chunk: Buffer) => {
      let frames: Frame[];
      try {
        frames = this.#decoder.push(chunk);
      } catch (e) {
        this.fail(e instanceof ZerocellError ? e : new SandboxError("host_protocol", 502, "sandbox: host sent a malformed message"));
        return;
      }
      for (const f of frames) this.#onFrame(f);
    });
    replies.on("error", () => {});
    let partial = "";
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (s: string) => {
      partial += s;
      if (partial.length > MAX_LOG_LINE * 8) partial = partial.slice(-MAX_LOG_LINE * 8);
      let nl: number;
      while ((nl = partial.indexOf("\n")) !== -1) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        // Lines belong to the slot whose work runs (one at a time), else to the last one's.
        const slot = this.#current ?? this.#lastSlot;
        if (line.length > 0) slot?.log(line.slice(0, MAX_LOG_LINE));
      }
    });
    child.stdout?.resume();
    (child.stdin as Writable).on("error", () => {});
    child.on("exit", (code, signal) => {
      this.#exited = true;
      const crash = this.#process.overCeiling()
        ? new SandboxError("host_memory_limit", 502, `sandbox: host process passed its memory ceiling of ${Math.round(this.#process.ceilingBytes / 1048576)} MiB and was killed`)
        : new SandboxError("host_crashed", 502, `sandbox: host process exited (code ${code ?? "-"}, signal ${signal ?? "-"})`);
      // The slot that caused the exit (its timeout) sees why; every other slot sees a crash.
      const reasonFor = (slot: HostSlot) => (this.#exitReason !== undefined && (this.#exitCulprit === undefined || this.#exitCulprit === slot) ? this.#exitReason : crash);
      for (const p of this.#pending.values()) {
        if (p.timer !== undefined) clearTimeout(p.timer);
        p.reject(reasonFor(p.slot));
      }
      this.#pending.clear();
      this.#jobs.length = 0;
      for (const w of this.#memoryWaiters.splice(0)) w(undefined);
      for (const s of [...this.#slots.values()]) s.gone(reasonFor(s));
      this.#slots.clear();
      for (const l of this.#exitListeners) l();
    });
  }

  /** Spawns a host (or takes a spare) and opens slot 0 with the deployment; resolves once it is ready. */
  static async start(init: HostInit, opts: HostOptions): Promise<HostSlot> {
    return SandboxHost.spawn(init, opts).openSlot(init, opts);
  }

  /** A new host process for `init`'s runtime and account (a spare if one is ready), no slot open yet. */
  static spawn(init: HostInit, opts: HostOptions): SandboxHost {
    const runtime = init.manifest.runtime;
    const ceiling = hostMemoryCeiling(init.manifest.limits, opts.maxResponseBytes);
    const spare = opts.spares?.take(runtime);
    // A spare started with the default ceiling; it now holds this deployment's.
    spare?.setCeiling(ceiling);
    const proc = spare ?? spawnHost(runtime, opts.isolation, false, ceiling);
    // The next spare starts almost at once: deploys and scale-ups come in bursts, and a spare
    // needs ~1 s (PHP) to a few seconds (Python's base image) before it saves anything. Not in the
    // same tick: a Node start takes both cores for a moment, and the request that took this
    // spare (a cold restore answers in tens of ms) should not share them with it.
    opts.spares?.want(runtime, SPARE_REPLACE_DELAY_MS);
    return new SandboxHost(proc, opts, runtime, init.accountId, spare !== undefined);
  }

  get alive(): boolean {
    return !this.#exited;
  }

  /** Alive and not shutting down: a slot may still open in it. */
  get accepting(): boolean {
    return !this.#exited && !this.#shuttingDown;
  }

  #shuttingDown = false;

  /** Slots open or opening. */
  get slotCount(): number {
    return this.#slots.size;
  }

  /** Whether this process has the deployment's image (a slot of it is or was open). */
  hasDeployment(deploymentId: string): boolean {
    return (this.#images.get(deploymentId) ?? 0) > 0;
  }

  /** The host opened `slot` (it said ready): it holds the slot's deployment's image now. */
  opened(slot: HostSlot): void {
    this.#images.set(slot.deploymentId, (this.#images.get(slot.deploymentId) ?? 0) + 1);
  }

  /** Slots still free under `max`, counting reservations (none once it is shutting down). */
  freeSlots(max: number): number {
    return !this.accepting ? 0 : Math.max(0, Math.min(max, PROTOCOL_LIMITS.maxSlotsPerHost) - this.#slots.size - this.#reserved);
  }

  /** Promises one slot to a start that waits for the memory budget; `release` gives it back unused. */
  reserve(): { release: () => void; consume: () => void } {
    this.#reserved++;
    let done = false;
    const end = () => {
      if (done) return false;
      done = true;
      this.#reserved--;
      return true;
    };
    return { release: () => end() && this.#exitIfEmpty(), consume: () => void end() };
  }

  onExit(listener: () => void): void {
    if (this.#exited) listener();
    else this.#exitListeners.push(listener);
  }

  /**
   * Opens a slot with a deployment (init, or a restore from its snapshot) and resolves once it is
   * ready. The start runs when the process is free of other work.
   */
  async openSlot(init: HostInit, opts: HostOptions): Promise<HostSlot> {
    if (!this.accepting) throw this.#exitReason ?? new SandboxError("host_crashed", 502, "sandbox: host process is gone");
    // Must never: a second account in one process (the host checks it again).
    if (this.#slots.size > 0 && (init.accountId === undefined || init.accountId !== this.accountId)) throw new SandboxError("host_account", 500, "sandbox: a host process carries one account's instances only");
    let n = 0;
    while (this.#slots.has(n)) n++;
    if (n >= PROTOCOL_LIMITS.maxSlotsPerHost) throw new SandboxError("host_slots", 500, "sandbox: no free slot in the host process");
    const slot = new HostSlot(this, n, opts, init.deploymentId);
    this.#slots.set(n, slot);
    this.#ceilings.set(n, hostMemoryCeiling(init.manifest.limits, opts.maxResponseBytes));
    // The process's ceiling covers every open slot (the first one's was set at spawn).
    if (this.#slots.size > 1) this.#process.setCeiling([...this.#ceilings.values()].reduce((a, b) => a + b, 0));
    try {
      await slot.start(init, opts, this.#process);
    } catch (e) {
      // An abandoned start the host is still running keeps its number until the host answers
      // (then HostSlot closes it); any other failed start frees it now.
      if (this.#current !== slot) this.#dropSlot(slot);
      throw e;
    }
    return slot;
  }

  /** Runs `run` when the process has no other work (one request or start at a time). */
  enqueue(slot: HostSlot, run: () => void): void {
    if (this.#exited) return;
    if (this.#current === undefined) {
      this.#current = slot;
      this.#lastSlot = slot;
      run();
    } else this.#jobs.push({ slot, run });
  }

  /** The work of `slot` is over (ready, failed start, idle after a request): the next may run. */
  jobDone(slot: HostSlot): void {
    if (this.#current !== slot) {
      // Not started yet (a start abandoned while queued): just drop it.
      const i = this.#jobs.findIndex((j) => j.slot === slot);
      if (i !== -1) this.#jobs.splice(i, 1);
      return;
    }
    this.#current = undefined;
    const next = this.#jobs.shift();
    if (next !== undefined) {
      this.#current = next.slot;
      this.#lastSlot = next.slot;
      next.run();
    }
  }

  /** Whether `slot`'s work is what the process runs now. */
  running(slot: HostSlot): boolean {
    return this.#current === slot;
  }

  /** Whether `slot` has work running or queued. */
  busyWith(slot: HostSlot): boolean {
    return this.#current === slot || this.#jobs.some((j) => j.slot === slot);
  }

  /**
   * Whether this process serves more than one slot: open or opening ones, and ones promised to
   * starts waiting for the memory budget (reserve). Such a process is not killed for one slot's
   * sake (an evicted idle slot is closed): a start the budget admits by evicting an idle slot of
   * the very process it reserved in would otherwise find that process killed.
   */
  get shared(): boolean {
    return this.#slots.size > 1 || (this.#slots.size > 0 && this.#reserved > 0);
  }

  send(header: GatewayMessage, body?: Uint8Array): void {
    if (this.#exited) return;
    (this.#child.stdin as Writable).write(encodeFrame(header, body));
  }

  /** Kills the process with a reason every waiter (of `culprit`, or of every slot) will see. */
  fail(reason: ZerocellError, culprit?: HostSlot): void {
    if (this.#exitReason === undefined) {
      this.#exitReason = reason;
      this.#exitCulprit = culprit;
    }
    this.kill();
  }

  nextRequestId(): number {
    return this.#nextId++;
  }

  addPending(id: number, p: Pending): void {
    this.#pending.set(id, p);
  }

  settle(id: number): void {
    const p = this.#pending.get(id);
    if (p?.timer !== undefined) clearTimeout(p.timer);
    this.#pending.delete(id);
  }

  pending(id: number): Pending | undefined {
    return this.#pending.get(id);
  }

  /** A slot stopped (closed by its pool, or its start failed): its instance is freed in the host. */
  #dropSlot(slot: HostSlot): void {
    if (this.#slots.get(slot.slot) !== slot) return;
    this.#slots.delete(slot.slot);
    this.#ceilings.delete(slot.slot);
    if (slot.isOpen) {
      const n = (this.#images.get(slot.deploymentId) ?? 1) - 1;
      if (n <= 0) this.#images.delete(slot.deploymentId);
      else this.#images.set(slot.deploymentId, n);
    }
    this.jobDone(slot);
    this.send({ t: "close", slot: slot.slot });
    this.#exitIfEmpty();
  }

  /** Closes a slot; the process exits with its last one (it held tenant data: never a spare again). */
  closeSlot(slot: HostSlot): Promise<void> {
    this.#dropSlot(slot);
    return this.#exited || this.#slots.size > 0 || this.#reserved > 0 ? Promise.resolve() : this.#exitDone;
  }

  #exitDone: Promise<void> = Promise.resolve();

  #exitIfEmpty(): void {
    if (this.#exited || this.#slots.size > 0 || this.#reserved > 0) return;
    this.#exitDone = this.shutdown();
  }

  #onFrame(f: Frame): void {
    // Untrusted like everything from a host: parsed against the protocol's schemas first.
    const parsed = parseHostMessage(f.header);
    if (!parsed.ok) {
      // A malformed reply fails only its own request; anything else ends the host.
      const p = parsed.t === "res" && parsed.id !== undefined ? this.#pending.get(parsed.id) : undefined;
      if (p === undefined) return this.fail(new SandboxError("host_protocol", 502, `sandbox: malformed message from host (${parsed.reason.slice(0, 200)})`));
      this.settle(parsed.id!);
      p.reject(new SandboxError("bad_response", 502, "sandbox: the app's response was malformed"));
      return;
    }
    const h = parsed.msg;
    switch (h.t) {
      case "mem":
        // Answers to memory() in order; one nobody asked for is ignored (display only).
        this.#memoryWaiters.shift()?.(h);
        return;
      case "res": {
        const p = this.#pending.get(h.id);
        if (p === undefined) return this.fail(new SandboxError("host_protocol", 502, "sandbox: reply to an unknown request"));
        p.slot.onMessage(h, f);
        return;
      }
      case "fail":
        if (h.id !== undefined) {
          this.#pending.get(h.id)?.slot.onMessage(h, f);
          return;
        }
    }
    const slot = this.#slots.get(h.slot ?? 0);
    if (slot === undefined) return this.fail(new SandboxError("host_protocol", 502, `sandbox: message for slot ${h.slot ?? 0}, which is not open`));
    slot.onMessage(h, f);
  }

  /** Memory of the host's processes now (PSS), bytes; undefined once it exited. */
  memoryBytes(): number | undefined {
    return this.#exited ? undefined : this.#process.memoryBytes();
  }

  /** memoryBytes() read off the event loop (the pool's periodic sampler). */
  async memoryBytesAsync(): Promise<number | undefined> {
    if (this.#exited) return undefined;
    const bytes = await this.#process.memoryBytesAsync();
    return this.#exited ? undefined : bytes;
  }

  cpuTimeMs(): number | undefined {
    return this.#process.cpuTimeMs();
  }

  /** CPU time of the node host's main thread (where guest code runs), ms (spawn.ts). */
  mainThreadCpuMs(): number | undefined {
    return this.#process.mainThreadCpuMs();
  }

  readonly #memoryWaiters: Array<(r: HostMemoryReport | undefined) => void> = [];

  /**
   * The host's own report of its memory (V8 heap and code, linear memory, snapshot bytes held),
   * for diagnostics (GET /v1/pool/memory, bench/memory.mjs): answered after the request it is
   * serving, if any; undefined if it exits or does not answer within `timeoutMs`.
   */
  memory(timeoutMs = 5000): Promise<HostMemoryReport | undefined> {
    if (this.#exited) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const waiter = (r: HostMemoryReport | undefined) => {
        clearTimeout(timer);
        resolve(r);
      };
      const timer = setTimeout(() => {
        const i = this.#memoryWaiters.indexOf(waiter);
        // Keep the slot (an answer may still come, for this waiter's place in the queue).
        if (i !== -1) this.#memoryWaiters[i] = () => {};
        resolve(undefined);
      }, timeoutMs);
      this.#memoryWaiters.push(waiter);
      this.send({ t: "mem" });
    });
  }

  /** The node process inside the wrappers (unshare/setpriv): the one whose memory counts. */
  get nodePid(): number | undefined {
    return this.#process.nodePid();
  }

  kill(): void {
    if (!this.#exited) this.#process.kill();
  }

  /** Asks the host to exit; kills it if it does not within a second. */
  async shutdown(): Promise<void> {
    if (this.#exited) return;
    this.#shuttingDown = true;
    const gone = new Promise<void>((resolve) => this.onExit(resolve));
    this.send({ t: "exit" });
    const t = setTimeout(() => this.kill(), 1000);
    await gone;
    clearTimeout(t);
  }
}

/**
 * One instance (slot) in a host process: what the pool sees as a host. Its requests and its start
 * run when the process is free; killing a busy slot kills the process (its guest is stuck in it),
 * an idle one of a shared process is only closed.
 */
export class HostSlot {
  readonly #host: SandboxHost;
  readonly slot: number;
  readonly #opts: HostOptions;
  readonly deploymentId: string;
  #closed = false;
  /** The host opened it (said ready): it holds an instance until the slot is closed. */
  isOpen = false;
  #ready: { resolve: () => void; reject: (e: unknown) => void } | undefined;
  #exitListeners: Array<() => void> = [];
  /** The host said its engine state is unknown (JS error in the engine): replace it. */
  tainted = false;
  /** The host's engine is close to exhaustion: the pool starts its successor (PoolHost.worn). */
  worn = false;
  readonly startedAt = performance.now();
  /** Spawn (or slot opening) → ready (runtime load, image, warm-up, snapshot), ms. */
  readyMs = 0;
  /** Started from a stored snapshot (no init, no warm-up). */
  restored = false;
  /** Restored on the engine instance its spare made ahead (no runtime start at handoff). */
  spareEngine = false;
  /**
   * Where a restore's time went, ms (server-timing of its first request): admit (memory budget)
   * and snapfetch (stored snapshot ready to send) measured by the pool, the rest by the host
   * (send, engine, prepare, instantiate, import).
   */
  startPhases: Record<string, number> = {};
  /** When its init went to the host (performance.now()), for the start's phases. */
  #initSentAt: number | undefined;
  #onSnapshot: ((img: SnapshotImage) => void) | undefined;
  #idleWaiter: ((resetMs: number | undefined) => void) | undefined;
  /** CPU time of the last reset, µs (what the host reported, bounded). */
  lastResetCpuUs: number | undefined;
  #warmup: { timeoutMs: number; bootMs: number; startedAt: number | undefined; wallStart: number; timer: NodeJS.Timeout | undefined } | undefined;
  #warmupCpuUs: number | undefined;
  #startTimer: NodeJS.Timeout | undefined;
  /** The gateway's id of the request this slot serves or served last (for its log lines). */
  #logRequestId: string | undefined;

  constructor(host: SandboxHost, slot: number, opts: HostOptions, deploymentId: string) {
    this.#host = host;
    this.slot = slot;
    this.#opts = opts;
    this.deploymentId = deploymentId;
  }

  /** The process (the pid, the memory report and the crash are the process's). */
  get process(): SandboxHost {
    return this.#host;
  }

  get pid(): number {
    return this.#host.pid;
  }

  get fromSpare(): boolean {
    return this.#host.fromSpare && this.slot === 0;
  }

  get alive(): boolean {
    return !this.#closed && this.#host.alive;
  }

  /** Other slots share its process (its measured memory is a share, not what one host costs). */
  get sharesProcess(): boolean {
    return this.#host.slotCount > 1;
  }

  onExit(listener: () => void): void {
    if (!this.alive) listener();
    else this.#exitListeners.push(listener);
  }

  log(line: string): void {
    this.#opts.onLog(line, this.#logRequestId);
  }

  /** The process exited (or the slot closed): every waiter of this slot learns why. */
  gone(reason: ZerocellError): void {
    if (this.#closed && this.#exitListeners.length === 0) return;
    this.#closed = true;
    clearInterval(this.#startTimer);
    this.#ready?.reject(reason);
    this.#ready = undefined;
    this.#idleWaiter?.(undefined);
    this.#idleWaiter = undefined;
    const listeners = this.#exitListeners.splice(0);
    for (const l of listeners) l();
  }

  /** Sends the init (when the process is free) and waits for ready; the start's bounds apply. */
  async start(init: HostInit, opts: HostOptions, proc: HostProcess): Promise<void> {
    const host = this.#host;
    const runtime = init.manifest.runtime;
    const ready = new Promise<void>((resolve, reject) => {
      this.#ready = { resolve, reject };
    });
    this.#onSnapshot = init.wantSnapshot ? init.onSnapshot : undefined;
    this.#warmup = { timeoutMs: init.manifest.limits.timeoutMs, bootMs: warmupBootAllowanceMs(runtime), startedAt: undefined, wallStart: 0, timer: undefined };
    const abort = () => {
      const reason = new SandboxError("host_retired", 503, "sandbox: the deployment was retired while its instance was starting");
      // A start in a shared process is not killed (the other slots serve on): queued, it is
      // dropped; running, the slot is closed once it is ready.
      if (host.shared) {
        this.#ready?.reject(reason);
        this.#ready = undefined;
        // Still queued: out of the queue.
        if (!host.running(this)) host.jobDone(this);
      } else host.fail(reason, this);
    };
    if (init.signal?.aborted === true) abort();
    else init.signal?.addEventListener("abort", abort, { once: true });
    host.enqueue(this, () => {
      if (this.#ready === undefined) {
        // Abandoned while it waited its turn.
        host.jobDone(this);
        return;
      }
      // The platform's part of the start (spawn, engine load, instantiate) until tenant code runs;
      // from the first warm-up message on, the warm-up limits below apply instead.
      // Bounded by the host's CPU time like the warm-up (a start that needs 1 s of CPU took over
      // 30 s of wall time on a machine loaded 20×), with a wall-clock backstop for one that hangs.
      const startCpu0 = proc.cpuTimeMs();
      const startWall0 = performance.now();
      const startBackstop = opts.startTimeoutMs * WARMUP_WALL_FACTOR + WARMUP_WALL_SLACK_MS;
      this.#startTimer = setInterval(() => {
        const cpu = proc.cpuTimeMs();
        if (startCpu0 !== undefined && cpu !== undefined && cpu - startCpu0 > opts.startTimeoutMs) host.fail(new SandboxError("host_start_timeout", 502, `sandbox: host used more than ${opts.startTimeoutMs} ms of CPU time without becoming ready`), this);
        else if (performance.now() - startWall0 > startBackstop) host.fail(new SandboxError("host_start_timeout", 502, `sandbox: host did not become ready within ${Math.round(startBackstop)} ms`), this);
      }, WARMUP_CHECK_INTERVAL_MS);
      const snap = init.cold ? undefined : init.snapshot;
      // A snapshot in a file (PHP, Python): a hard link in the host's own directory, mapped by the
      // host (src/snapshot/files.ts), after the spare was taken; otherwise its bytes go in the frame.
      let file: { path: string; bytes: number } | undefined;
      let memory = snap?.memory;
      if (snap?.file !== undefined) {
        const files = snapshotFiles();
        try {
          if (files === undefined) throw new Error("no snapshot files");
          file = { path: files.link(snap.file, proc.uid), bytes: snap.file.bytes };
          // A uid of its own: its directory is emptied when it exits (before the uid is reused).
          // Hosts that share the gateway's uid share one directory of content-addressed links.
          if (proc.uid !== undefined && this.slot === 0) proc.child.once("exit", () => files.release(proc.uid));
        } catch {
          memory = readFileSync(snap.file.path);
        }
      }
      // A later slot of a deployment the process has: its image is not sent again.
      const sameImage = host.hasDeployment(init.deploymentId);
      const image = sameImage ? Buffer.alloc(0) : init.image;
      host.send(
        {
          t: "init",
          ...(this.slot === 0 ? {} : { slot: this.slot }),
          ...(init.accountId === undefined ? {} : { accountId: init.accountId }),
          ...(sameImage ? { sameImage } : {}),
          deploymentId: init.deploymentId,
          manifest: init.manifest,
          maxResponseBytes: opts.maxResponseBytes,
          imageBytes: image.length,
          env: init.env,
          ...(snap === undefined ? {} : { snapshot: { engineBuild: snap.engineBuild, globals: snap.globals, extra: snap.extra, ...(file === undefined ? {} : { file }) } }),
          wantSnapshot: init.wantSnapshot,
          cold: init.cold,
          ...(init.blankAhead === true ? { blankAhead: true } : {}),
          sentAt: performance.timeOrigin + (this.#initSentAt = performance.now()),
        },
        snap === undefined || file !== undefined || memory === undefined ? image : Buffer.concat([image, memory]),
      );
    });
    try {
      await ready;
      this.#endWarmup(200, this.#warmupCpuUs);
    } catch (e) {
      this.#endWarmup(e instanceof SandboxError && e.code === "warmup_timeout" ? 504 : 502, undefined);
      throw e;
    } finally {
      clearInterval(this.#startTimer);
      init.signal?.removeEventListener("abort", abort);
    }
  }

  onMessage(h: ReturnType<typeof parseHostMessage> extends infer R ? (R extends { ok: true; msg: infer M } ? M : never) : never, f: Frame): void {
    const host = this.#host;
    switch (h.t) {
      case "snapshot": {
        // Accepted once, only if asked for.
        const cb = this.#onSnapshot;
        this.#onSnapshot = undefined;
        if (cb === undefined) return host.fail(new SandboxError("host_protocol", 502, "sandbox: unexpected snapshot from host"));
        if (f.bodyBytes > PROTOCOL_LIMITS.maxSnapshotBytes) return host.fail(new SandboxError("host_protocol", 502, "sandbox: snapshot too large"));
        if (h.encoding === "gzip") {
          // Stored as it came; the load inflates at most memoryBytes and refuses any other length.
          if (h.memoryBytes === undefined) return host.fail(new SandboxError("host_protocol", 502, "sandbox: gzip'd snapshot without its memoryBytes"));
          cb({ engine: h.engine, engineBuild: h.engineBuild, globals: h.globals, extra: h.extra, memory: Buffer.alloc(0), memoryGzip: f.bodyChunks ?? [f.body], memoryBytes: h.memoryBytes });
          return;
        }
        // A large image stays in the chunks it arrived in (the store gzips them as a stream).
        cb({ engine: h.engine, engineBuild: h.engineBuild, globals: h.globals, extra: h.extra, ...(f.bodyChunks === undefined ? { memory: f.body } : { memory: Buffer.alloc(0), memoryParts: f.bodyChunks, memoryBytes: f.bodyBytes }) });
        return;
      }
      case "warmup": {
        // Tenant code is running: each warm-up request gets timeout_ms (the first also the
        // runtime's boot allowance); past it the host is killed and the start fails with 504.
        const w = this.#warmup;
        if (w === undefined || this.#ready === undefined) return host.fail(new SandboxError("host_protocol", 502, "sandbox: unexpected warm-up message from host"));
        if (w.startedAt === undefined) {
          w.startedAt = Date.now();
          w.wallStart = performance.now();
        }
        clearInterval(this.#startTimer);
        if (w.timer !== undefined) clearInterval(w.timer);
        // Bounded by the CPU time the host uses, not the wall clock: on a loaded machine a boot
        // that needs 2 s of CPU can take 20 s of wall time, and that is not the tenant's doing.
        // A wall-clock backstop (several times the limit) catches a warm-up that waits instead.
        // (The process runs one slot's work at a time: its CPU now is this warm-up's.)
        const limit = w.timeoutMs + (h.index === 0 ? w.bootMs : 0);
        const backstop = limit * WARMUP_WALL_FACTOR + WARMUP_WALL_SLACK_MS;
        const what = `warm-up request ${h.index + 1}`;
        const why = `(limits.timeout_ms${h.index === 0 ? " + the runtime's boot allowance" : ""})`;
        // The main thread's CPU: V8's background threads compiling php.wasm (seconds of CPU in a
        // new host, overlapping its first requests) are the platform's work, not the warm-up's.
        const cpu0 = host.mainThreadCpuMs();
        const wall0 = performance.now();
        w.timer = setInterval(() => {
          const cpu = host.mainThreadCpuMs();
          if (cpu0 !== undefined && cpu !== undefined && cpu - cpu0 > limit) host.fail(new SandboxError("warmup_timeout", 504, `sandbox: ${what} used more than ${limit} ms of CPU time ${why}`), this);
          else if (performance.now() - wall0 > backstop) host.fail(new SandboxError("warmup_timeout", 504, `sandbox: ${what} did not finish within ${Math.round(backstop)} ms ${why}`), this);
        }, WARMUP_CHECK_INTERVAL_MS);
        return;
      }
      case "ready":
        // A snapshot comes before "ready" or not at all (a ready host owes nothing: the pool
        // may evict it at once).
        this.#onSnapshot = undefined;
        this.readyMs = performance.now() - this.startedAt;
        this.restored = h.restored === true;
        // A spare's blank, or (a later slot) one its process made ahead (InitMessage.blankAhead).
        this.spareEngine = h.spareEngine === true && (this.fromSpare || this.slot > 0);
        if (h.phases !== undefined) Object.assign(this.startPhases, h.phases);
        if (this.#initSentAt !== undefined) {
          // The gateway's side of the start: waiting for the process (slot created → init sent),
          // and what the host's own phases do not cover (ready sent → received here: mostly the
          // snapshot frame crossing the pipe before it).
          this.startPhases.queue = this.#initSentAt - this.startedAt;
          if (h.ms !== undefined) this.startPhases.transit = Math.max(0, performance.now() - this.#initSentAt - (h.phases?.send ?? 0) - h.ms);
        }
        this.#warmupCpuUs = h.warmupCpuUs === undefined ? undefined : Math.min(h.warmupCpuUs, Math.ceil(Math.max(1, performance.now() - (this.#warmup?.wallStart ?? this.startedAt)) * 1000 * 4));
        this.isOpen = true;
        host.opened(this);
        host.jobDone(this);
        if (this.#ready === undefined) {
          // Its start was abandoned (the pool retired) while the host ran it: close it.
          void host.closeSlot(this);
          return;
        }
        this.#ready.resolve();
        this.#ready = undefined;
        return;
      case "res": {
        const p = host.pending(h.id);
        if (p === undefined) return host.fail(new SandboxError("host_protocol", 502, "sandbox: reply to an unknown request"));
        host.settle(h.id);
        if (h.bodyBytes > f.body.length || (h.dataBytes ?? 0) !== f.body.length - h.bodyBytes) {
          p.reject(new SandboxError("bad_response", 502, "sandbox: malformed response (body and data lengths)"));
          return;
        }
        if (h.bodyBytes > this.#opts.maxResponseBytes) {
          p.reject(new SandboxError("response_too_large", 502, `sandbox: response body of ${h.bodyBytes} bytes exceeds the limit of ${this.#opts.maxResponseBytes} bytes`));
          return;
        }
        p.resolve({
          status: h.status,
          headers: h.headers,
          body: f.body.subarray(0, h.bodyBytes),
          ...(h.dataBytes === undefined ? {} : { data: f.body.subarray(h.bodyBytes) }),
          runMs: h.runMs,
          startedAt: h.startedAt,
          // What the host says it used, bounded: CPU by 4 × the run's wall time.
          cpuUs: h.cpuUs === undefined ? undefined : Math.min(h.cpuUs, Math.ceil(Math.max(1, h.runMs) * 1000 * 4)),
          guestMs: h.guestMs === undefined ? undefined : Math.min(h.guestMs, Math.max(1, h.runMs) * 4),
          ...(h.instructions === undefined ? {} : { usage: { instructions: Math.min(h.instructions, PROTOCOL_LIMITS.maxInstructions) } }),
        });
        return;
      }
      case "fail": {
        if (h.id === undefined) {
          const reason = new SandboxError(h.code, 500, `sandbox: ${h.message}`);
          // The slot's start failed. Alone in its process, the process goes (as it always did);
          // in a shared one, only the slot (the host freed what it had made).
          if (!host.shared) return host.fail(reason, this);
          host.jobDone(this);
          const abandoned = this.#ready === undefined;
          this.#ready?.reject(reason);
          this.#ready = undefined;
          if (abandoned) void host.closeSlot(this);
          return;
        }
        const p = host.pending(h.id);
        if (p === undefined) return;
        host.settle(h.id);
        const status = h.code === "response_too_large" ? 502 : 500;
        p.reject(new SandboxError(h.code, status, `sandbox: ${h.message}`));
        return;
      }
      case "tainted":
        this.tainted = true;
        return;
      case "worn":
        this.worn = true;
        return;
      case "idle":
        // Bounded like the request's CPU: at most 4 × the reset's wall time.
        this.lastResetCpuUs = h.resetCpuUs === undefined ? undefined : Math.min(h.resetCpuUs, Math.ceil(Math.max(1, h.resetMs ?? 0) * 1000 * 4));
        host.jobDone(this);
        this.#idleWaiter?.(h.resetMs);
        this.#idleWaiter = undefined;
        return;
      case "mem":
        return;
    }
  }

  /** Stops the warm-up timer and reports the warm-up's usage once (if tenant code ran). */
  #endWarmup(status: number, cpuUs: number | undefined): void {
    const w = this.#warmup;
    this.#warmup = undefined;
    if (w === undefined) return;
    if (w.timer !== undefined) clearInterval(w.timer);
    if (w.startedAt === undefined) return;
    this.#opts.onWarmup?.({ startedAt: w.startedAt, wallMs: performance.now() - w.wallStart, cpuUs, status });
  }

  /**
   * Runs one request. `reset` asks the host to reset the instance after replying. Resolves with
   * the response as soon as it arrives; `idle` resolves when the slot is ready for the next one.
   * The request is sent when the process is free (other slots' work first); its timeout starts then.
   */
  request(req: EngineRequest, reset: boolean, timeoutMs: number, appName: string): { response: Promise<HostResponse>; idle: Promise<number | undefined> } {
    const host = this.#host;
    const id = host.nextRequestId();
    // Settled by the host's idle message, or by its exit (gone() calls the waiter).
    const idle = !this.alive ? Promise.resolve(undefined) : new Promise<number | undefined>((resolve) => (this.#idleWaiter = resolve));
    const response = new Promise<HostResponse>((resolve, reject) => {
      if (!this.alive) {
        reject(new SandboxError("host_crashed", 502, "sandbox: host process is gone"));
        return;
      }
      const pending: Pending = { slot: this, resolve, reject, timer: undefined };
      host.addPending(id, pending);
      host.enqueue(this, () => {
        pending.timer = setTimeout(() => host.fail(new SandboxTimeoutError(timeoutMs, appName), this), timeoutMs);
        // Lines the host writes from now on belong to this request (one request at a time).
        const { body, data, requestId, ...meta } = req;
        this.#logRequestId = requestId;
        host.send(
          { t: "req", id, ...(this.slot === 0 ? {} : { slot: this.slot }), req: meta, reset, bodyBytes: body.byteLength, ...(data === undefined ? {} : { dataBytes: data.byteLength }) },
          data === undefined ? body : Buffer.concat([body, data]),
        );
      });
    });
    return { response, idle };
  }

  /** This slot's share of the process's memory (PSS ÷ open slots), bytes; undefined once gone. */
  memoryBytes(): number | undefined {
    if (!this.alive) return undefined;
    const bytes = this.#host.memoryBytes();
    return bytes === undefined ? undefined : Math.round(bytes / Math.max(1, this.#host.slotCount));
  }

  async memoryBytesAsync(): Promise<number | undefined> {
    if (!this.alive) return undefined;
    const bytes = await this.#host.memoryBytesAsync();
    return bytes === undefined || !this.alive ? undefined : Math.round(bytes / Math.max(1, this.#host.slotCount));
  }

  /** The process's report (shared by its slots). */
  memory(timeoutMs = 5000): Promise<HostMemoryReport | undefined> {
    return this.#host.memory(timeoutMs);
  }

  get nodePid(): number | undefined {
    return this.#host.nodePid;
  }

  /**
   * Frees the instance now. Busy (its guest is running or its request queued) or alone in its
   * process: the process is killed, as a host always was. Idle in a shared process: the slot is
   * closed and the other slots serve on.
   */
  kill(): void {
    if (!this.alive) return;
    if (!this.#host.shared || this.#host.busyWith(this)) this.#host.kill();
    else void this.shutdown();
  }

  /** Closes the slot (the process exits with its last slot). */
  async shutdown(): Promise<void> {
    if (!this.alive) return;
    const done = this.#host.closeSlot(this);
    this.gone(new SandboxError("host_closed", 503, "sandbox: the instance was stopped"));
    await done;
  }
}
