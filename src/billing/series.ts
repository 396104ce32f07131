/**
 * Per-app time series from the usage records: requests, errors (5xx), p50/p99 wall time and CPU
 * per bucket (a minute or an hour) over a window, from the records read through the
 * `usage_app_time_idx` index (app_id, started_at); the window and bucket count are bounded by
 * SERIES_LIMITS so one call reads a bounded number of records.
 */
import type { Database, Statement } from "better-sqlite3";

export interface SeriesLimits {
  /** Buckets one answer holds at most. */
  maxBuckets: number;
  /** Usage records one answer reads at most (the newest ones; 1.7–3.9 µs each on this loaded 2-core machine, bench/stats-series.mjs: 100,000 block the event loop 0.17–0.39 s); beyond it `truncated` is true. */
  maxRecords: number;
}

export const SERIES_LIMITS: SeriesLimits = { maxBuckets: 1440, maxRecords: 100_000 };

export interface SeriesQuery {
  appId: string;
  /** Start of the first bucket, ms since the epoch (a multiple of bucketMs). */
  fromMs: number;
  /** Bucket width, ms. */
  bucketMs: number;
  buckets: number;
}

export interface SeriesBucket {
  /** Start of the bucket, ms since the epoch. */
  start: number;
  requests: number;
  /** Responses with a 5xx status. */
  errors: number;
  /** Wall time in the sandbox, µs (nearest-rank percentiles); null without requests. */
  p50WallUs: number | null;
  p99WallUs: number | null;
  /** CPU time of the sandbox host summed over the bucket's requests, µs. */
  cpuUs: number;
}

export interface Series {
  bucketMs: number;
  from: number;
  to: number;
  buckets: SeriesBucket[];
  /** More records than SERIES_LIMITS.maxRecords fell in the window: only the newest were read. */
  truncated: boolean;
}

// The newest records of the window through usage_app_time_idx; grouped and ranked in JS (SQLite's
// window functions cost ~14 µs a record here, this ~1 µs).
const SQL = `SELECT started_at, wall_us, cpu_us, status FROM usage_records
  WHERE app_id = ? AND started_at >= ? AND started_at < ? AND mode <> 'warmup'
  ORDER BY started_at DESC LIMIT ?`;

const statements = new WeakMap<Database, Statement>();

/** Nearest-rank percentile of sorted values (p in 0..100). */
function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** The buckets of one app; empty buckets are included (zero requests, null percentiles). */
export function querySeries(sqlite: Database, q: SeriesQuery, limits: SeriesLimits = SERIES_LIMITS): Series {
  if (q.buckets < 1 || q.buckets > limits.maxBuckets) throw new RangeError(`series: ${q.buckets} buckets (limit ${limits.maxBuckets})`);
  let stmt = statements.get(sqlite);
  if (stmt === undefined) statements.set(sqlite, (stmt = sqlite.prepare(SQL).raw(true)));
  const to = q.fromMs + q.bucketMs * q.buckets;
  const walls: number[][] = Array.from({ length: q.buckets }, () => []);
  const errors = new Array<number>(q.buckets).fill(0);
  const cpu = new Array<number>(q.buckets).fill(0);
  let seen = 0;
  // One more than the cap tells a full window from one that was cut; the extra one is not counted.
  for (const row of stmt.iterate(q.appId, q.fromMs, to, limits.maxRecords + 1) as IterableIterator<[number, number, number | null, number]>) {
    if (++seen > limits.maxRecords) break;
    const b = Math.floor((row[0] - q.fromMs) / q.bucketMs);
    walls[b]!.push(row[1]);
    if (row[3] >= 500) errors[b]!++;
    cpu[b]! += row[2] ?? 0;
  }
  const buckets: SeriesBucket[] = walls.map((w, i) => {
    const sorted = Float64Array.from(w).sort();
    return {
      start: q.fromMs + i * q.bucketMs,
      requests: w.length,
      errors: errors[i]!,
      p50WallUs: w.length === 0 ? null : percentile(sorted, 50),
      p99WallUs: w.length === 0 ? null : percentile(sorted, 99),
      cpuUs: cpu[i]!,
    };
  });
  return { bucketMs: q.bucketMs, from: q.fromMs, to, buckets, truncated: seen > limits.maxRecords };
}
