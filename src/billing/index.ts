/**
 * Billing, first part: metering. One usage record per request, queued in memory and written in
 * batched SQLite transactions (WAL) every flush interval, off the request path; flushed on
 * shutdown. A crash loses about one interval of records (plus event-loop delay); never twice
 * (request ids are unique). Daily aggregates per account and app are updated in the same
 * transaction. Rating (rating.ts), invoices and the Stripe sync (stripe-sync.ts) build on them.
 */
import type { Statement } from "better-sqlite3";
import type { OpenedDb } from "../store/index.js";
import { log } from "../log.js";

export interface UsageRecord {
  requestId: string;
  accountId: string;
  appId: string;
  deploymentId: string;
  routeKey: string | null;
  /** ms since the epoch. */
  startedAt: number;
  /** Time inside the sandbox, µs (gateway-measured, from acquire to response). */
  wallUs: number;
  /** CPU time of the sandbox host process while the request ran, µs (null: not reported, e.g. a timeout). */
  cpuUs: number | null;
  /** Guest instructions executed, where the engine counts them (x86); null elsewhere. */
  instructions: number | null;
  /** Billed memory (the configured limit), MB. */
  memoryMb: number;
  status: number;
  bytesIn: number;
  bytesOut: number;
  mode: string;
}

/** Billed MB-milliseconds of one request: wall time rounded up to 1 ms, times the memory limit. */
export function billedMbMs(r: Pick<UsageRecord, "wallUs" | "memoryMb">): number {
  return Math.ceil(r.wallUs / 1000) * r.memoryMb;
}

export interface UsageRecorderOptions {
  /** Max time a record waits in memory before it is written, ms. */
  flushIntervalMs: number;
  /** Records kept in memory at most; beyond it a flush happens at once. */
  maxBuffered?: number;
  /** false: record nothing (benchmarks measure the cost of metering with it). */
  enabled?: boolean;
}

export class UsageRecorder {
  readonly #db: OpenedDb;
  /** A prepared statement: drizzle's query builder costs ~0.2 ms per row, this ~10 µs. */
  readonly #insert: Statement;
  /** Per account/app/day aggregates, updated in the same transaction (never by scanning). */
  readonly #daily: Statement;
  readonly #opts: Required<UsageRecorderOptions>;
  #buffer: UsageRecord[] = [];
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(db: OpenedDb, opts: UsageRecorderOptions) {
    this.#db = db;
    this.#insert = db.sqlite.prepare(
      `INSERT INTO usage_records (request_id, account_id, app_id, deployment_id, route_key, started_at, wall_us, cpu_us, instructions, memory_mb, status, bytes_in, bytes_out, mode)
       VALUES (@requestId, @accountId, @appId, @deploymentId, @routeKey, @startedAt, @wallUs, @cpuUs, @instructions, @memoryMb, @status, @bytesIn, @bytesOut, @mode)
       ON CONFLICT (request_id) DO NOTHING`,
    );
    this.#daily = db.sqlite.prepare(
      `INSERT INTO usage_daily (account_id, app_id, day, requests, errors, mb_ms, wall_us, instructions, bytes_in, bytes_out)
       VALUES (@accountId, @appId, @day, @requests, @errors, @mbMs, @wallUs, @instructions, @bytesIn, @bytesOut)
       ON CONFLICT (account_id, app_id, day) DO UPDATE SET
         requests = requests + excluded.requests, errors = errors + excluded.errors, mb_ms = mb_ms + excluded.mb_ms,
         wall_us = wall_us + excluded.wall_us, instructions = instructions + excluded.instructions, bytes_in = bytes_in + excluded.bytes_in, bytes_out = bytes_out + excluded.bytes_out`,
    );
    this.#opts = { maxBuffered: 10_000, enabled: true, ...opts };
  }

  /** Totals for operators (/metrics): records written, failed flushes, and the metering lag. */
  get stats(): { buffered: number; written: number; flushFailures: number; lagMs: number } {
    return { buffered: this.#buffer.length, written: this.#written, flushFailures: this.#flushFailures, lagMs: this.#buffer.length === 0 ? 0 : performance.now() - this.#oldestAt };
  }

  #written = 0;
  #flushFailures = 0;
  /** When the oldest record still in memory was recorded (performance.now() ms). */
  #oldestAt = 0;

  record(r: UsageRecord): void {
    if (this.#closed || !this.#opts.enabled) return;
    if (this.#buffer.length === 0) this.#oldestAt = performance.now();
    this.#buffer.push(r);
    // After a failed flush the retry waits its turn (a flush attempt blocks the event loop for
    // up to the database's busy timeout): a full buffer does not retry on every record.
    if (this.#buffer.length >= this.#opts.maxBuffered && performance.now() >= this.#retryAt) this.flush();
    else this.#timer ??= setTimeout(() => this.flush(), this.#opts.flushIntervalMs);
  }

  /** No flush is attempted from record() before this time (performance.now() ms) after a failure. */
  #retryAt = 0;

  /** An invoice of the account for the period exists (the period is closed for it). */
  get #closedPeriod() {
    return (this.#closedStmt ??= this.#db.sqlite.prepare("SELECT 1 FROM invoices WHERE account_id = ? AND period = ?"));
  }
  #closedStmt: import("better-sqlite3").Statement | undefined;

  /** Writes every buffered record in one transaction. */
  flush(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = this.#buffer;
    if (batch.length === 0) return;
    const oldestAt = this.#oldestAt;
    this.#buffer = [];
    try {
      const write = this.#db.sqlite.transaction((rows: UsageRecord[]) => {
        // Aggregate the batch first, then one upsert per (account, app, day). A record that was
        // already written (same request id) is not counted twice.
        const days = new Map<string, { accountId: string; appId: string; day: string; requests: number; errors: number; mbMs: number; wallUs: number; instructions: number; bytesIn: number; bytesOut: number }>();
        for (const r of rows) {
          if (this.#insert.run(r).changes === 0) continue;
          let day = new Date(r.startedAt).toISOString().slice(0, 10);
          // Late usage for a period already invoiced counts in the next period not invoiced (from
          // today on), so it is billed once, in the next invoice, never lost. Future periods
          // cannot be closed: the loop ends within a period or two.
          while (this.#closedPeriod.get(r.accountId, day.slice(0, 7)) !== undefined) {
            const [y, m] = day.split("-").map(Number) as [number, number];
            const next = new Date(Date.UTC(y, m, 1)).toISOString().slice(0, 10);
            const today = new Date().toISOString().slice(0, 10);
            day = next > today ? next : today;
          }
          const k = `${r.accountId}\u0000${r.appId}\u0000${day}`;
          let d = days.get(k);
          if (d === undefined) days.set(k, (d = { accountId: r.accountId, appId: r.appId, day, requests: 0, errors: 0, mbMs: 0, wallUs: 0, instructions: 0, bytesIn: 0, bytesOut: 0 }));
          // A warm-up (mode "warmup") is billed for its time, not as a request.
          if (r.mode !== "warmup") {
            d.requests++;
            if (r.status >= 500) d.errors++;
          }
          d.mbMs += billedMbMs(r);
          d.wallUs += r.wallUs;
          d.instructions += r.instructions ?? 0;
          d.bytesIn += r.bytesIn;
          d.bytesOut += r.bytesOut;
        }
        for (const d of days.values()) this.#daily.run(d);
      });
      write(batch);
      this.#written += batch.length;
    } catch (e) {
      this.#flushFailures++;
      this.#oldestAt = oldestAt;
      log.error("usage flush failed", { err: (e as Error).message, records: batch.length });
      // Keep them for the next try rather than lose them.
      this.#buffer = batch.concat(this.#buffer);
      this.#retryAt = performance.now() + this.#opts.flushIntervalMs * 10;
      this.#timer ??= setTimeout(() => this.flush(), this.#opts.flushIntervalMs * 10);
    }
  }

  close(): void {
    this.flush();
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
  }
}

export { Billing, type InvoiceInfo, type UsageRow } from "./service.js";
export { SERIES_LIMITS, type Series, type SeriesBucket, type SeriesLimits } from "./series.js";
export { StripeSync, type StripeSyncOptions } from "./stripe-sync.js";
export { DEFAULT_PLAN, ratePeriod, rateUsage, currentPeriod, periodDays, type PricePlan, type RatedUsage } from "./rating.js";
export type { UsageHistory, UsageTotals } from "./job-usage.js";
