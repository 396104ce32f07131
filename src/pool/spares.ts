/**
 * Spare hosts: per runtime, a host process already started with the runtime's flags, whose
 * engine is loaded and preloaded (php-wasm imported and php.wasm compiled, …) but which has no
 * deployment yet — it has never seen a tenant's bytes. A deploy, a scale-up or a fresh-mode
 * request takes it instead of paying for a Node start and the runtime's load, and a new spare
 * is started at once (bursts of deploys were measured slower when it waited for the taken host).
 * Spares exist for the runtimes in use (the first pool of a runtime asks for one), one each.
 */
import type { Manifest } from "../bundle/index.js";
import { hostMemoryCeiling, spawnHost, type HostIsolation, type HostProcess } from "./spawn.js";
import { SPARE_PRELOADED_LINE } from "../protocol/index.js";

type Runtime = Manifest["runtime"];

/** A spare's memory ceiling is that of the manifest's defaults; taking it sets the deployment's. */
const SPARE_LIMITS = { memoryMb: 128, dataMb: 16 };

export class SpareHosts {
  readonly #isolation: HostIsolation;
  readonly #maxResponseBytes: number;
  readonly #delayMs: number;
  readonly #spares = new Map<Runtime, { proc: HostProcess; onExit: () => void; onStderr: (s: string) => void; preloaded: boolean }>();
  readonly #onLog: (runtime: Runtime, line: string) => void;
  readonly #timers = new Map<Runtime, NodeJS.Timeout>();
  #closed = false;
  /** Spares handed out so far (for /v1/pool and tests). */
  taken = 0;

  /** `delayMs`: how long after it is wanted a spare is started (start-up is busy enough). */
  constructor(opts: { isolation: HostIsolation; maxResponseBytes: number; delayMs?: number; onLog?: (runtime: Runtime, line: string) => void }) {
    this.#isolation = opts.isolation;
    this.#maxResponseBytes = opts.maxResponseBytes;
    this.#onLog = opts.onLog ?? (() => {});
    this.#delayMs = opts.delayMs ?? 1000;
  }

  /** A live spare for `runtime`, now owned by the caller; undefined when there is none. */
  take(runtime: Runtime): HostProcess | undefined {
    const spare = this.#spares.get(runtime);
    if (spare === undefined) return undefined;
    this.#spares.delete(runtime);
    const child = spare.proc.child;
    child.off("exit", spare.onExit);
    child.stderr?.off("data", spare.onStderr);
    if (child.exitCode !== null || child.signalCode !== null || child.killed) return undefined;
    this.taken++;
    return spare.proc;
  }

  /** Makes sure a spare for `runtime` exists or is on its way (after the delay). */
  want(runtime: Runtime, delayMs = this.#delayMs): void {
    if (this.#closed || this.#spares.has(runtime) || this.#timers.has(runtime)) return;
    const timer = setTimeout(() => {
      this.#timers.delete(runtime);
      if (this.#closed || this.#spares.has(runtime)) return;
      const proc = spawnHost(runtime, this.#isolation, true, hostMemoryCeiling(SPARE_LIMITS, this.#maxResponseBytes));
      const child = proc.child;
      child.on("error", () => {});
      // A spare that dies is forgotten; the next want() starts another.
      const onExit = () => {
        if (this.#spares.get(runtime)?.proc === proc) this.#spares.delete(runtime);
      };
      child.once("exit", onExit);
      // What a spare writes before it is taken (a preload failure) goes to the log; a full pipe
      // would otherwise stall it.
      child.stdout?.resume();
      child.stderr?.setEncoding("utf8");
      const entry = { proc, onExit, onStderr: (_: string) => {}, preloaded: false };
      entry.onStderr = (s: string) => {
        for (const line of s.split("\n")) {
          // Its engine is loaded and its blank instance made (a spare runs no tenant code).
          if (line === SPARE_PRELOADED_LINE) entry.preloaded = true;
          else if (line.length > 0) this.#onLog(runtime, line.slice(0, 2048));
        }
      };
      child.stderr?.on("data", entry.onStderr);
      this.#spares.set(runtime, entry);
    }, delayMs);
    timer.unref();
    this.#timers.set(runtime, timer);
  }

  /** Runtimes with a spare now, their pids, and whether each has finished its preload. */
  list(): Array<{ runtime: Runtime; pid: number; preloaded: boolean }> {
    return [...this.#spares].map(([runtime, s]) => ({ runtime, pid: s.proc.child.pid ?? -1, preloaded: s.preloaded }));
  }

  close(): void {
    this.#closed = true;
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    for (const s of this.#spares.values()) s.proc.kill();
    this.#spares.clear();
  }
}
