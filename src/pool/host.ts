/**
 * One sandbox host process, seen from the gateway: spawn it locked down, send it the app, send
 * it one request at a time, kill it when it overruns. Everything it sends back is untrusted and
 * goes through the size-limited frame decoder and a shape check.
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

type Pending = { resolve: (r: HostResponse) => void; reject: (e: unknown) => void; timer: NodeJS.Timeout | undefined };

export class SandboxHost {
  readonly #child: ChildProcess;
  readonly #process: HostProcess;
  readonly #opts: HostOptions;
  readonly #decoder: FrameDecoder;
  #nextId = 1;
  #pending = new Map<number, Pending>();
  #ready: { resolve: () => void; reject: (e: unknown) => void } | undefined;
  #exited = false;
  #exitReason: ZerocellError | undefined;
  #exitListeners: Array<() => void> = [];
  /** The host said its engine state is unknown (JS error in the engine): replace it. */
  tainted = false;
  /** The host's engine is close to exhaustion: the pool starts its successor (PoolHost.worn). */
  worn = false;
  readonly pid: number;
  readonly startedAt = performance.now();
  /** Spawn → ready (runtime load, image, warm-up, snapshot), ms. */
  readyMs = 0;
  /** Started from a stored snapshot (no init, no warm-up). */
  restored = false;
  /** The process was a spare (started and preloaded before this deployment came). */
  fromSpare = false;
  /** Restored on the engine instance its spare made ahead (no runtime start at handoff). */
  spareEngine = false;
  /**
   * Where a restore's time went, ms (server-timing of its first request): admit (memory budget)
   * and snapfetch (stored snapshot ready to send) measured by the pool, the rest by the host
   * (send, engine, prepare, instantiate, import).
   */
  startPhases: Record<string, number> = {};
  #onSnapshot: ((img: SnapshotImage) => void) | undefined;

  private constructor(proc: HostProcess, opts: HostOptions) {
    const child = proc.child;
    this.#process = proc;
    this.#child = child;
    this.#opts = opts;
    this.pid = child.pid ?? -1;
    this.#decoder = new FrameDecoder(maxHostFrameBytes(opts.maxResponseBytes));
    const replies = child.stdio[3] as Readable;
    replies.on("data", (chunk: Buffer) => {
      let frames: Frame[];
      try {
        frames = this.#decoder.push(chunk);
      } catch (e) {
        this.#fail(e instanceof ZerocellError ? e : new SandboxError("host_protocol", 502, "sandbox: host sent a malformed message"));
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
        if (line.length > 0) this.#opts.onLog(line.slice(0, MAX_LOG_LINE), this.#logRequestId);
      }
    });
    child.stdout?.resume();
    (child.stdin as Writable).on("error", () => {});
    child.on("exit", (code, signal) => {
      this.#exited = true;
      const reason =
        this.#exitReason ??
        (this.#process.overCeiling()
          ? new SandboxError("host_memory_limit", 502, `sandbox: host process passed its memory ceiling of ${Math.round(this.#process.ceilingBytes / 1048576)} MiB and was killed`)
          : new SandboxError("host_crashed", 502, `sandbox: host process exited (code ${code ?? "-"}, signal ${signal ?? "-"})`));
      this.#ready?.reject(reason);
      this.#ready = undefined;
      for (const p of this.#pending.values()) {
        if (p.timer !== undefined) clearTimeout(p.timer);
        p.reject(reason);
      }
      this.#pending.clear();
      for (const w of this.#memoryWaiters.splice(0)) w(undefined);
      this.#idleWaiter?.(undefined);
      this.#idleWaiter = undefined;
      for (const l of this.#exitListeners) l();
    });
  }

  /** Spawns a host and loads the deployment into it; resolves once it is ready for requests. */
  static async start(init: HostInit, opts: HostOptions): Promise<SandboxHost> {
    const runtime = init.manifest.runtime;
    const ceiling = hostMemoryCeiling(init.manifest.limits, opts.maxResponseBytes);
    const spare = opts.spares?.take(runtime);
    // A spare started with the default ceiling; it now holds this deployment's.
    spare?.setCeiling(ceiling);
    const proc = spare ?? spawnHost(runtime, opts.isolation, false, ceiling);
    // The next spare starts now: deploys and scale-ups come in bursts, and a spare needs ~1 s
    // (PHP) to a few seconds (Python's base image) before it saves anything.
    opts.spares?.want(runtime, 0);
    const host = new SandboxHost(proc, opts);
    host.fromSpare = spare !== undefined;
    const ready = new Promise<void>((resolve, reject) => {
      host.#ready = { resolve, reject };
    });
    // The platform's part of the start (spawn, engine load, instantiate) until tenant code runs;
    // from the first warm-up message on, the warm-up limits below apply instead.
    // Bounded by the host's CPU time like the warm-up (a start that needs 1 s of CPU took over
    // 30 s of wall time on a machine loaded 20×), with a wall-clock backstop for one that hangs.
    const startCpu0 = proc.cpuTimeMs();
    const startWall0 = performance.now();
    const startBackstop = opts.startTimeoutMs * WARMUP_WALL_FACTOR + WARMUP_WALL_SLACK_MS;
    host.#startTimer = setInterval(() => {
      const cpu = proc.cpuTimeMs();
      if (startCpu0 !== undefined && cpu !== undefined && cpu - startCpu0 > opts.startTimeoutMs) host.#fail(new SandboxError("host_start_timeout", 502, `sandbox: host used more than ${opts.startTimeoutMs} ms of CPU time without becoming ready`));
      else if (performance.now() - startWall0 > startBackstop) host.#fail(new SandboxError("host_start_timeout", 502, `sandbox: host did not become ready within ${Math.round(startBackstop)} ms`));
    }, WARMUP_CHECK_INTERVAL_MS);
    host.#onSnapshot = init.wantSnapshot ? init.onSnapshot : undefined;
    host.#warmup = { timeoutMs: init.manifest.limits.timeoutMs, bootMs: warmupBootAllowanceMs(runtime), startedAt: undefined, wallStart: 0, timer: undefined };
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
        if (proc.uid !== undefined) proc.child.once("exit", () => files.release(proc.uid));
      } catch {
        memory = readFileSync(snap.file.path);
      }
    }
    host.#send(
      {
        t: "init",
        deploymentId: init.deploymentId,
        manifest: init.manifest,
        maxResponseBytes: opts.maxResponseBytes,
        imageBytes: init.image.length,
        env: init.env,
        ...(snap === undefined ? {} : { snapshot: { engineBuild: snap.engineBuild, globals: snap.globals, extra: snap.extra, ...(file === undefined ? {} : { file }) } }),
        wantSnapshot: init.wantSnapshot,
        cold: init.cold,
        sentAt: performance.timeOrigin + performance.now(),
      },
      snap === undefined || file !== undefined || memory === undefined ? init.image : Buffer.concat([init.image, memory]),
    );
    const abort = () => host.#fail(new SandboxError("host_retired", 503, "sandbox: the deployment was retired while its instance was starting"));
    if (init.signal?.aborted === true) abort();
    else init.signal?.addEventListener("abort", abort, { once: true });
    try {
      await ready;
      host.#endWarmup(200, host.#warmupCpuUs);
    } catch (e) {
      host.#endWarmup(e instanceof SandboxError && e.code === "warmup_timeout" ? 504 : 502, undefined);
      throw e;
    } finally {
      clearInterval(host.#startTimer);
      init.signal?.removeEventListener("abort", abort);
    }
    return host;
  }

  get alive(): boolean {
    return !this.#exited;
  }

  onExit(listener: () => void): void {
    if (this.#exited) listener();
    else this.#exitListeners.push(listener);
  }

  #send(header: GatewayMessage, body?: Uint8Array): void {
    if (this.#exited) return;
    (this.#child.stdin as Writable).write(encodeFrame(header, body));
  }

  /** Kills the host with a reason every waiter will see. */
  #fail(reason: ZerocellError): void {
    this.#exitReason ??= reason;
    this.kill();
  }

  #onFrame(f: Frame): void {
    // Untrusted like everything from a host: parsed against the protocol's schemas first.
    const parsed = parseHostMessage(f.header);
    if (!parsed.ok) {
      // A malformed reply fails only its own request; anything else ends the host.
      const p = parsed.t === "res" && parsed.id !== undefined ? this.#pending.get(parsed.id) : undefined;
      if (p === undefined) return this.#fail(new SandboxError("host_protocol", 502, `sandbox: malformed message from host (${parsed.reason.slice(0, 200)})`));
      this.#settle(parsed.id!);
      p.reject(new SandboxError("bad_response", 502, "sandbox: the app's response was malformed"));
      return;
    }
    const h = parsed.msg;
    switch (h.t) {
      case "snapshot": {
        // Accepted once, only if asked for.
        const cb = this.#onSnapshot;
        this.#onSnapshot = undefined;
        if (cb === undefined) return this.#fail(new SandboxError("host_protocol", 502, "sandbox: unexpected snapshot from host"));
        if (f.body.length > PROTOCOL_LIMITS.maxSnapshotBytes) return this.#fail(new SandboxError("host_protocol", 502, "sandbox: snapshot too large"));
        cb({ engine: h.engine, engineBuild: h.engineBuild, globals: h.globals, extra: h.extra, memory: f.body });
        return;
      }
      case "warmup": {
        // Tenant code is running: each warm-up request gets timeout_ms (the first also the
        // runtime's boot allowance); past it the host is killed and the start fails with 504.
        const w = this.#warmup;
        if (w === undefined || this.#ready === undefined) return this.#fail(new SandboxError("host_protocol", 502, "sandbox: unexpected warm-up message from host"));
        if (w.startedAt === undefined) {
          w.startedAt = Date.now();
          w.wallStart = performance.now();
        }
        clearInterval(this.#startTimer);
        if (w.timer !== undefined) clearInterval(w.timer);
        // Bounded by the CPU time the host uses, not the wall clock: on a loaded machine a boot
        // that needs 2 s of CPU can take 20 s of wall time, and that is not the tenant's doing.
        // A wall-clock backstop (several times the limit) catches a warm-up that waits instead.
        const limit = w.timeoutMs + (h.index === 0 ? w.bootMs : 0);
        const backstop = limit * WARMUP_WALL_FACTOR + WARMUP_WALL_SLACK_MS;
        const what = `warm-up request ${h.index + 1}`;
        const why = `(limits.timeout_ms${h.index === 0 ? " + the runtime's boot allowance" : ""})`;
        const cpu0 = this.#process.cpuTimeMs();
        const wall0 = performance.now();
        w.timer = setInterval(() => {
          const cpu = this.#process.cpuTimeMs();
          if (cpu0 !== undefined && cpu !== undefined && cpu - cpu0 > limit) this.#fail(new SandboxError("warmup_timeout", 504, `sandbox: ${what} used more than ${limit} ms of CPU time ${why}`));
          else if (performance.now() - wall0 > backstop) this.#fail(new SandboxError("warmup_timeout", 504, `sandbox: ${what} did not finish within ${Math.round(backstop)} ms ${why}`));
        }, WARMUP_CHECK_INTERVAL_MS);
        return;
      }
      case "ready":
        // A snapshot comes before "ready" or not at all (a ready host owes nothing: the pool
        // may evict it at once).
        this.#onSnapshot = undefined;
        this.readyMs = performance.now() - this.startedAt;
        this.restored = h.restored === true;
        this.spareEngine = h.spareEngine === true && this.fromSpare;
        if (h.phases !== undefined) Object.assign(this.startPhases, h.phases);
        this.#warmupCpuUs = h.warmupCpuUs === undefined ? undefined : Math.min(h.warmupCpuUs, Math.ceil(Math.max(1, performance.now() - (this.#warmup?.wallStart ?? this.startedAt)) * 1000 * 4));
        this.#ready?.resolve();
        this.#ready = undefined;
        return;
      case "res": {
        const p = this.#pending.get(h.id);
        if (p === undefined) return this.#fail(new SandboxError("host_protocol", 502, "sandbox: reply to an unknown request"));
        this.#settle(h.id);
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
          this.#fail(new SandboxError(h.code, 500, `sandbox: ${h.message}`));
          return;
        }
        const p = this.#pending.get(h.id);
        if (p === undefined) return;
        this.#settle(h.id);
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
      case "mem":
        // Answers to memory() in order; one nobody asked for is ignored (display only).
        this.#memoryWaiters.shift()?.(h);
        return;
      case "idle":
        // Bounded like the request's CPU: at most 4 × the reset's wall time.
        this.lastResetCpuUs = h.resetCpuUs === undefined ? undefined : Math.min(h.resetCpuUs, Math.ceil(Math.max(1, h.resetMs ?? 0) * 1000 * 4));
        this.#idleWaiter?.(h.resetMs);
        this.#idleWaiter = undefined;
        return;
    }
  }

  #idleWaiter: ((resetMs: number | undefined) => void) | undefined;
  /** CPU time of the last reset, µs (what the host reported, bounded). */
  lastResetCpuUs: number | undefined;
  #warmup: { timeoutMs: number; bootMs: number; startedAt: number | undefined; wallStart: number; timer: NodeJS.Timeout | undefined } | undefined;
  #warmupCpuUs: number | undefined;
  #startTimer: NodeJS.Timeout | undefined;
  /** The gateway's id of the request this host serves or served last (for its log lines). */
  #logRequestId: string | undefined;

  /** Stops the warm-up timer and reports the warm-up's usage once (if tenant code ran). */
  #endWarmup(status: number, cpuUs: number | undefined): void {
    const w = this.#warmup;
    this.#warmup = undefined;
    if (w === undefined) return;
    if (w.timer !== undefined) clearInterval(w.timer);
    if (w.startedAt === undefined) return;
    this.#opts.onWarmup?.({ startedAt: w.startedAt, wallMs: performance.now() - w.wallStart, cpuUs, status });
  }

  #settle(id: number): void {
    const p = this.#pending.get(id);
    if (p?.timer !== undefined) clearTimeout(p.timer);
    this.#pending.delete(id);
  }

  /**
   * Runs one request. `reset` asks the host to reset the instance after replying. Resolves with
   * the response as soon as it arrives; `idle` resolves when the host is ready for the next one.
   */
  request(req: EngineRequest, reset: boolean, timeoutMs: number, appName: string): { response: Promise<HostResponse>; idle: Promise<number | undefined> } {
    const id = this.#nextId++;
    // Settled by the host's idle message, or by its exit (the exit handler calls the waiter).
    const idle = this.#exited ? Promise.resolve(undefined) : new Promise<number | undefined>((resolve) => (this.#idleWaiter = resolve));
    const response = new Promise<HostResponse>((resolve, reject) => {
      if (this.#exited) {
        reject(this.#exitReason ?? new SandboxError("host_crashed", 502, "sandbox: host process is gone"));
        return;
      }
      const timer = setTimeout(() => this.#fail(new SandboxTimeoutError(timeoutMs, appName)), timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
      // Lines the host writes from now on belong to this request (one request at a time).
      const { body, data, requestId, ...meta } = req;
      this.#logRequestId = requestId;
      this.#send(
        { t: "req", id, req: meta, reset, bodyBytes: body.byteLength, ...(data === undefined ? {} : { dataBytes: data.byteLength }) },
        data === undefined ? body : Buffer.concat([body, data]),
      );
    });
    return { response, idle };
  }


  /** Memory of the host's processes now (PSS), bytes; undefined once it exited. */
  memoryBytes(): number | undefined {
    return this.#exited ? undefined : this.#process.memoryBytes();
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
      this.#send({ t: "mem" });
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
    const gone = new Promise<void>((resolve) => this.onExit(resolve));
    this.#send({ t: "exit" });
    const t = setTimeout(() => this.kill(), 1000);
    await gone;
    clearTimeout(t);
  }
}
