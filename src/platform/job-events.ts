/**
 * A job's progress as a stream of events (served as server-sent events by
 * src/gateway/admin/job-events.ts):
 *   items     finished items { seq, key, status, error } in the order they finished, with the
 *             job's counts; id = the last item's finish number (job_items.finish_no), so
 *             Last-Event-ID resumes after it. One item per event while they come slowly,
 *             batched (≤ maxItemsPerEvent) and at most one event per minEventIntervalMs when
 *             fast; a backlog (a late or resumed stream) goes in full batches back to back.
 *   progress  counts, objects/s (over the last `rateWindowItems` items) and the ETA, at most
 *             once per progressIntervalMs and only after a change;
 *   done      { job }: the job's view once it stopped and its last item finished; then the end.
 * A comment line after keepAliveMs of silence keeps proxies from closing an idle stream.
 *
 * The rows are the truth: a stream reads finished items after its cursor from the store, and
 * the store's change hook only wakes it, so a slow client costs no memory (it just lags), and a
 * stream opened late or resumed is the same code as a live one.
 * Must never: stream another account's job (the gateway checks before opening), or keep a
 * stream (and its slot) after its client went away.
 */
import { Counter, Gauge } from "prom-client";
import type { Platform } from "./index.js";
import type { JobRow } from "../store/jobs.js";
import { jobsOf, type JobView } from "./jobs.js";
import { ZerocellError } from "../errors.js";

export interface JobEventLimits {
  /** Streams one account may hold open at once (beyond: 429 too_many_streams). */
  maxStreamsPerAccount: number;
  /** Streams the server holds open at once, all accounts (beyond: 429 too_many_streams). */
  maxStreams: number;
  /** Items one `items` event carries at most. */
  maxItemsPerEvent: number;
  /** Least time between two `items` events while the stream is caught up, ms (100: ≤ 10 events/s). */
  minEventIntervalMs: number;
  /** Least time between two `progress` events, ms. */
  progressIntervalMs: number;
  /** Silence after which a comment line is written, ms. */
  keepAliveMs: number;
  /** A stream ends after this long (the client reconnects with Last-Event-ID), ms. */
  maxStreamMs: number;
  /** Finished items the objects/s rate is measured over. */
  rateWindowItems: number;
}

export const DEFAULT_JOB_EVENT_LIMITS: JobEventLimits = {
  maxStreamsPerAccount: 8,
  maxStreams: 256,
  maxItemsPerEvent: 500,
  minEventIntervalMs: 100,
  progressIntervalMs: 1000,
  keepAliveMs: 15_000,
  maxStreamMs: 60 * 60_000,
  rateWindowItems: 50,
};

/** One event of the stream (a `comment` is written as an SSE comment line, not an event). */
export interface JobEvent {
  event?: "items" | "progress" | "done";
  id?: string;
  data?: string;
  comment?: string;
}

export interface JobProgress {
  status: JobRow["status"];
  total: number;
  counts: { pending: number; ok: number; failed: number };
  /** Items finished (ok + failed). */
  done: number;
  /** Objects per second over the last items; null before any finished. */
  rate: number | null;
  /** Seconds left at that rate; null when the job is not running or no rate is known. */
  etaSeconds: number | null;
}

/** An open stream's hold on its slot and its wake-ups. */
interface Subscription {
  /** Resolves after `ms`, or at once when the job changed since the last wait (or the stream closed). */
  wait(ms: number): Promise<void>;
  close(): void;
}

export class JobEvents {
  readonly #p: Platform;
  readonly limits: JobEventLimits;
  /** Job id → the wake-ups of its open streams. */
  readonly #subscribers = new Map<string, Set<() => void>>();
  readonly #perAccount = new Map<string, number>();
  #open = 0;
  #opened = 0;

  constructor(p: Platform, limits: Partial<JobEventLimits> = {}) {
    this.#p = p;
    this.limits = { ...DEFAULT_JOB_EVENT_LIMITS, ...limits };
    p.jobStore.onChange((jobId) => {
      for (const wake of this.#subscribers.get(jobId) ?? []) wake();
    });
    const self = this;
    new Gauge({
      name: "zerocell_job_event_streams",
      help: "Job progress streams (server-sent events) open now",
      registers: [p.metrics.registry],
      collect() {
        this.set(self.openStreams);
      },
    });
    new Counter({
      name: "zerocell_job_event_streams_opened_total",
      help: "Job progress streams opened since the server started",
      registers: [p.metrics.registry],
      collect() {
        this.reset();
        this.inc(self.openedStreams);
      },
    });
  }

  /** Streams opened since start. */
  get openedStreams(): number {
    return this.#opened;
  }

  /** Streams open now (each holds one subscriber). */
  get openStreams(): number {
    return this.#open;
  }

  /** Takes a stream slot for the account or throws 429 too_many_streams; the slot is freed by the subscription's close. */
  #subscribe(accountId: string, jobId: string): Subscription {
    const l = this.limits;
    const mine = this.#perAccount.get(accountId) ?? 0;
    if (mine >= l.maxStreamsPerAccount) throw new ZerocellError("too_many_streams", 429, `jobs: this account has ${mine} progress streams open (limit ${l.maxStreamsPerAccount}); close one`);
    if (this.#open >= l.maxStreams) throw new ZerocellError("too_many_streams", 429, `jobs: ${this.#open} progress streams open on this server (limit ${l.maxStreams}); try again later`);
    this.#perAccount.set(accountId, mine + 1);
    this.#open++;
    this.#opened++;
    let dirty = false;
    let wakeWaiter: (() => void) | undefined;
    let closed = false;
    const wake = () => {
      dirty = true;
      wakeWaiter?.();
    };
    let set = this.#subscribers.get(jobId);
    if (set === undefined) this.#subscribers.set(jobId, (set = new Set()));
    set.add(wake);
    return {
      wait: (ms) => {
        if (dirty || closed) {
          dirty = false;
          return Promise.resolve();
        }
        return new Promise<void>((resolve) => {
          const timer = setTimeout(done, Math.max(0, ms));
          function done() {
            clearTimeout(timer);
            wakeWaiter = undefined;
            dirty = false;
            resolve();
          }
          wakeWaiter = done;
        });
      },
      close: () => {
        if (closed) return;
        closed = true;
        wakeWaiter?.();
        const s = this.#subscribers.get(jobId);
        s?.delete(wake);
        if (s !== undefined && s.size === 0) this.#subscribers.delete(jobId);
        const n = (this.#perAccount.get(accountId) ?? 1) - 1;
        if (n <= 0) this.#perAccount.delete(accountId);
        else this.#perAccount.set(accountId, n);
        this.#open--;
      },
    };
  }

  /** Counts, objects/s and ETA of a job now. */
  progress(row: JobRow): JobProgress {
    const store = this.#p.jobStore;
    const counts = store.counts(row.id);
    const done = counts.ok + counts.failed;
    // Rate over the last items: from the finish of the item `rateWindowItems` back (or the job's
    // creation, early on) to now, so a stalled job's rate falls as time passes.
    const w = this.limits.rateWindowItems;
    const mark = store.finishMark(row.id, w);
    const n = mark.lastNo > w ? w : mark.lastNo;
    const from = mark.lastNo > w ? mark.backAt : row.createdAt;
    const rate = n === 0 || from === null ? null : n / Math.max(0.001, (Date.now() - from) / 1000);
    const running = row.status === "running";
    return { status: row.status, total: row.total, counts, done, rate: rate === null ? null : Math.round(rate * 100) / 100, etaSeconds: running && rate !== null && rate > 0 ? Math.round(counts.pending / rate) : null };
  }

  /**
   * Opens one job's stream: takes a slot now (429 too_many_streams when none is free). `events`
   * runs from after finish number `afterNo` (0: from the first item) until the job is done, the
   * stream's time is up, or `close` (the client went away). The caller has checked the job is
   * the account's, and must call `close` whatever happens (it frees the slot; twice is fine).
   */
  open(accountId: string, jobId: string, afterNo: number): { events: AsyncGenerator<JobEvent, void, void>; close: () => void } {
    const sub = this.#subscribe(accountId, jobId);
    let closed = false;
    const close = () => {
      closed = true;
      sub.close();
    };
    return { events: this.#events(accountId, jobId, afterNo, sub, () => closed), close };
  }

  async *#events(accountId: string, jobId: string, afterNo: number, sub: Subscription, isClosed: () => boolean): AsyncGenerator<JobEvent, void, void> {
    const l = this.limits;
    const store = this.#p.jobStore;
    const jobs = jobsOf(this.#p);
    try {
      const openedAt = Date.now();
      let cursor = afterNo;
      let lastItemsAt = 0;
      let lastProgressAt = 0;
      let lastWriteAt = Date.now();
      let changed = true;
      for (;;) {
        if (isClosed() || Date.now() - openedAt > l.maxStreamMs) return;
        const row = store.get(jobId, accountId);
        if (row === undefined) return;
        // 1. finished items after the cursor: a full batch at once (a backlog), else at most
        // one event per minEventIntervalMs
        const items = store.finishedAfter(jobId, cursor, l.maxItemsPerEvent);
        if (items.length > 0) {
          const since = Date.now() - lastItemsAt;
          if (items.length < l.maxItemsPerEvent && since < l.minEventIntervalMs) {
            await sub.wait(l.minEventIntervalMs - since);
            continue;
          }
          cursor = items.at(-1)!.no;
          lastItemsAt = lastWriteAt = Date.now();
          changed = true;
          yield { event: "items", id: String(cursor), data: JSON.stringify({ items: items.map((i) => ({ seq: i.seq, key: i.key, status: i.status, error: i.errorCode })), counts: store.counts(jobId) }) };
          continue;
        }
        // 2. done: the job stopped and none of its items is still in flight here
        if (row.status !== "running" && !jobs.isActive(jobId)) {
          yield { event: "progress", data: JSON.stringify(this.progress(row)) };
          const view: JobView = jobs.view(store.get(jobId, accountId) ?? row);
          yield { event: "done", data: JSON.stringify({ job: view }) };
          return;
        }
        // 3. progress, after a change, at most once per progressIntervalMs
        const now = Date.now();
        if (changed && now - lastProgressAt >= l.progressIntervalMs) {
          lastProgressAt = lastWriteAt = now;
          changed = false;
          yield { event: "progress", data: JSON.stringify(this.progress(row)) };
          continue;
        }
        // 4. keep-alive
        if (now - lastWriteAt >= l.keepAliveMs) {
          lastWriteAt = now;
          yield { comment: "keep-alive" };
        }
        // A cancelled job's last item in flight does not wake the stream: look again each second.
        const untilProgress = changed ? l.progressIntervalMs - (now - lastProgressAt) : l.keepAliveMs - (now - lastWriteAt);
        await sub.wait(Math.max(10, Math.min(untilProgress, row.status === "running" ? l.keepAliveMs : 1000)));
      }
    } finally {
      sub.close();
    }
  }
}

/** The job event hub of a platform (one per platform, made on first use). */
const hubs = new WeakMap<Platform, JobEvents>();
export function jobEventsOf(p: Platform, limits?: Partial<JobEventLimits>): JobEvents {
  let h = hubs.get(p);
  if (h === undefined) hubs.set(p, (h = new JobEvents(p, limits)));
  return h;
}
