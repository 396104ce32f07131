/**
 * The pool's memory budget: the sandbox hosts of every deployment (and the spare hosts) together
 * stay under one number of bytes. A host start must be admitted first: it reserves an estimate
 * of what one host of its runtime costs; once the host is ready its measured memory (PSS of its
 * process tree, from /proc) replaces the estimate and is sampled again every few seconds. When a
 * start does not fit, the pool evicts idle instances, least recently used first; when none is
 * idle, the start waits for memory to be freed, within a bound, and the request then gets 503 +
 * Retry-After — instances are evicted by the pool, never by the kernel's OOM killer.
 * Must never: admit a start that does not fit while an idle instance could be evicted instead,
 * or let a waiting start hold a reservation it has not been given.
 */
import { InstanceUnavailableError } from "../errors.js";

export type BudgetRuntime = string;

export interface MemoryBudgetOptions {
  /** The budget, bytes. */
  budgetBytes: number;
  /** What one host of a runtime is assumed to cost before any was measured, bytes. */
  defaultEstimateBytes: (runtime: BudgetRuntime) => number;
  /**
   * What one more instance in a slot of a running host process costs (`--instances-per-host`),
   * bytes: its engine's private memory, not a runtime (bench/multi-instance.mjs, docs/memory.md).
   */
  slotEstimateBytes?: (runtime: BudgetRuntime) => number;
  /** Longest a start waits for memory before it fails with 503, ms. */
  maxWaitMs: number;
}

/** An admitted start or a running host: what it is charged. */
export interface Charge {
  readonly runtime: BudgetRuntime;
  /** A whole host process, or one more slot in a running one. */
  readonly kind: "host" | "slot";
  bytes: number;
  /** Measured (true) or still the estimate. */
  measured: boolean;
}

interface MemoryWaiter {
  runtime: BudgetRuntime;
  kind: "host" | "slot";
  resolve: (c: Charge) => void;
  reject: (e: unknown) => void;
  timer: NodeJS.Timeout;
}

/** Default budget: 60% of the machine's memory (the gateway, the database and the page cache need the rest). */
export function defaultBudgetBytes(totalMemBytes: number): number {
  return Math.floor(totalMemBytes * 0.6);
}

export class MemoryBudget {
  readonly #opts: MemoryBudgetOptions;
  readonly #charges = new Set<Charge>();
  readonly #waiters: MemoryWaiter[] = [];
  /** Mean measured bytes per runtime (exponentially weighted), the estimate for the next start. */
  readonly #learned = new Map<BudgetRuntime, number>();
  /** Bytes outside the pool's hosts that count against the budget (the spare hosts), read when needed. */
  outsideBytes: () => number = () => 0;
  /** Frees memory by evicting one idle instance; false when none is idle. */
  evictOne: () => boolean = () => false;

  readonly stats = { admitted: 0, waited: 0, refused: 0, evictionsForBudget: 0, evictionsOverBudget: 0, skippedSpeculative: 0 };

  constructor(opts: MemoryBudgetOptions) {
    this.#opts = opts;
  }

  get budgetBytes(): number {
    return this.#opts.budgetBytes;
  }

  /** Bytes charged now: measured hosts, reservations of starts and the spares. */
  get usedBytes(): number {
    let sum = this.outsideBytes();
    for (const c of this.#charges) sum += c.bytes;
    return sum;
  }

  /** Starts waiting for memory now. */
  get waiting(): number {
    return this.#waiters.length;
  }

  estimate(runtime: BudgetRuntime): number {
    return this.#learned.get(runtime) ?? this.#opts.defaultEstimateBytes(runtime);
  }

  /**
   * Admits one host start of `runtime`: resolves with its charge once it fits (after evicting
   * idle instances if needed), or rejects with 503 `memory_budget` after the wait bound or when
   * `signal` aborts. The caller must `release()` the charge when the host is gone (or its start failed).
   */
  admit(runtime: BudgetRuntime, signal?: AbortSignal, speculative = false, kind: "host" | "slot" = "host"): Promise<Charge> {
    // A speculative start (a prewarm, a replacement nobody waits for) only takes free room: it
    // never evicts another app's idle instance and never waits, or starts ahead of demand would
    // evict each other in turn (every deploy prewarmed every app).
    const now = this.#tryAdmit(runtime, kind, speculative);
    if (now !== undefined) return Promise.resolve(now);
    if (speculative) {
      this.stats.skippedSpeculative++;
      return Promise.reject(this.#unavailable(runtime));
    }
    this.stats.waited++;
    return new Promise<Charge>((resolve, reject) => {
      const waiter: MemoryWaiter = {
        runtime,
        kind,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#drop(waiter);
          this.stats.refused++;
          reject(this.#unavailable(runtime));
        }, this.#opts.maxWaitMs),
      };
      signal?.addEventListener("abort", () => {
        if (this.#drop(waiter)) reject(new InstanceUnavailableError("pool: the start was no longer needed", 1, { reason: "retired" }));
      });
      this.#waiters.push(waiter);
    });
  }

  #unavailable(runtime: BudgetRuntime): InstanceUnavailableError {
    const mb = (b: number) => Math.round(b / 1048576);
    return new InstanceUnavailableError(
      `pool: the memory budget (${mb(this.budgetBytes)} MiB, ${mb(this.usedBytes)} MiB in use) has no room for another ${runtime} instance and none is idle; try again shortly`,
      5,
      { reason: "memory_budget" },
    );
  }

  #drop(w: MemoryWaiter): boolean {
    const i = this.#waiters.indexOf(w);
    if (i === -1) return false;
    this.#waiters.splice(i, 1);
    clearTimeout(w.timer);
    return true;
  }

  #fits(bytes: number): boolean {
    return this.usedBytes + bytes <= this.#opts.budgetBytes;
  }

  #tryAdmit(runtime: BudgetRuntime, kind: "host" | "slot", noEviction = false): Charge | undefined {
    // A start reserves what its runtime's hosts were measured at, biased up to their peaks
    // (`measured`: a start's warm-up and snapshot capture peak above what hosts settle to), or
    // the runtime's default before any was measured. (It reserved at least the default, which
    // stayed 2–3× a host once hosts shrank: every start evicted two or three idle instances.)
    // A slot in a running process reserves the marginal cost of an instance.
    const slotBytes = kind === "slot" ? this.#opts.slotEstimateBytes?.(runtime) : undefined;
    const bytes = slotBytes ?? this.estimate(runtime);
    // Nothing else charged: one host is always admitted, however small the budget (a budget
    // below one host would otherwise serve nothing at all).
    while (!this.#fits(bytes) && this.#charges.size > 0) {
      if (noEviction || !this.evictOne()) return undefined;
      this.stats.evictionsForBudget++;
    }
    const charge: Charge = { runtime, kind: slotBytes === undefined ? "host" : "slot", bytes, measured: false };
    this.#charges.add(charge);
    this.stats.admitted++;
    return charge;
  }

  /**
   * The host of `charge` measured `bytes` (PSS, or its share of a process it shares with other
   * slots); the runtime's estimate of a whole host learns only from hosts alone in their process.
   */
  measured(charge: Charge, bytes: number, wholeHost = true): void {
    if (!this.#charges.has(charge) || !(bytes > 0)) return;
    charge.bytes = bytes;
    charge.measured = true;
    if (!wholeHost) return;
    const prev = this.#learned.get(charge.runtime);
    // Biased up: a start's peak (warm-up, snapshot capture) is above what it settles to, and an
    // estimate too low lets the budget be overrun until the next sample.
    this.#learned.set(charge.runtime, prev === undefined ? bytes : Math.max(bytes, Math.round(prev * 0.8 + bytes * 0.2)));
  }

  /**
   * After a sample: hosts grow past what they were admitted at (a request's heap, a slot's share
   * of a process rising as its other slots close), so the charges can pass the budget without
   * any start. Evicts idle instances, least recently used first, until they fit again or none is
   * idle; returns how many it evicted. What is busy stays over until it idles (the next sample).
   */
  enforce(): number {
    let n = 0;
    while (this.usedBytes > this.#opts.budgetBytes && this.#charges.size > 1 && this.evictOne()) {
      n++;
      this.stats.evictionsForBudget++;
      this.stats.evictionsOverBudget++;
    }
    return n;
  }

  /** The host is gone (or never started): its memory is free; waiting starts get their turn. */
  release(charge: Charge): void {
    if (!this.#charges.delete(charge)) return;
    // Not from inside an admission (an eviction releases while #tryAdmit loops).
    if (this.#waiters.length > 0) queueMicrotask(() => this.wake());
  }

  /** Lets waiting starts try again (memory was freed, or an instance became idle and evictable). */
  wake(): void {
    while (this.#waiters.length > 0) {
      const w = this.#waiters[0]!;
      const c = this.#tryAdmit(w.runtime, w.kind);
      if (c === undefined) return;
      this.#waiters.shift();
      clearTimeout(w.timer);
      w.resolve(c);
    }
  }

  close(): void {
    for (const w of this.#waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(new InstanceUnavailableError("pool: the server is shutting down", 5, { reason: "closed" }));
    }
  }
}
