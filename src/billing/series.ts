/**
 * Per-app time series from the usage records: requests, errors (5xx), p50/p99 wall time and CPU
 * per bucket (a minute or an hour) over a window. Computed in SQLite (window functions) over the
 * `usage_app_time_idx` index (app_id, started_at); the window and bucket count are bounded by
 * SERIES_LIMITS so one call reads a bounded number of records.
 */
import type { Database } from "better-sqlite3";

export interface SeriesLimits {
  /** Buckets one answer holds at most. */
  maxBuckets: number;
  /** Usage records one answer reads at most (the newest ones); beyond it `truncated` is true. */
  maxRecords: number;
}

export const SERIES_LIMITS: SeriesLimits = { maxBuckets: 1440, maxRecords: 200_000 };

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

interface Row {
  b: number;
  n: number;
  errors: number;
  p50: number | null;
  p99: number | null;
  cpu: number | null;
}

const SQL = `
WITH r AS (
  SELECT started_at, wall_us, cpu_us, status FROM usage_records
  WHERE app_id = @appId AND started_at >= @from AND started_at < @to AND mode <> 'warmup'
  ORDER BY started_at DESC LIMIT @cap
), ranked AS (
  SELECT CAST((started_at - @from) / @bucketMs AS INTEGER) AS b, wall_us, cpu_us, status,
         ROW_NUMBER() OVER (PARTITION BY CAST((started_at - @from) / @bucketMs AS INTEGER) ORDER BY wall_us) AS rn,
         COUNT(*) OVER (PARTITION BY CAST((started_at - @from) / @bucketMs AS INTEGER)) AS n
  FROM r
)
SELECT b, MAX(n) AS n, SUM(status >= 500) AS errors,
       MAX(CASE WHEN rn = (n * 50 + 99) / 100 THEN wall_us END) AS p50,
       MAX(CASE WHEN rn = (n * 99 + 99) / 100 THEN wall_us END) AS p99,
       SUM(cpu_us) AS cpu
FROM ranked GROUP BY b ORDER BY b`;

const statements = new WeakMap<Database, ReturnType<Database["prepare"]>>();

/** The buckets of one app; empty buckets are included (zero requests, null percentiles). */
export function querySeries(sqlite: Database, q: SeriesQuery, limits: SeriesLimits = SERIES_LIMITS): Series {
  if (q.buckets < 1 || q.buckets > limits.maxBuckets) throw new RangeError(`series: ${q.buckets} buckets (limit ${limits.maxBuckets})`);
  let stmt = statements.get(sqlite);
  if (stmt === undefined) statements.set(sqlite, (stmt = sqlite.prepare(SQL)));
  const to = q.fromMs + q.bucketMs * q.buckets;
  // One more than the cap tells a full window from one that was cut.
  const rows = stmt.all({ appId: q.appId, from: q.fromMs, to, bucketMs: q.bucketMs, cap: limits.maxRecords + 1 }) as Row[];
  const seen = rows.reduce((s, r) => s + r.n, 0);
  const truncated = seen > limits.maxRecords;
  const byIndex = new Map(rows.map((r) => [r.b, r]));
  const buckets: SeriesBucket[] = [];
  for (let i = 0; i < q.buckets; i++) {
    const r = byIndex.get(i);
    buckets.push({ start: q.fromMs + i * q.bucketMs, requests: r?.n ?? 0, errors: r?.errors ?? 0, p50WallUs: r?.p50 ?? null, p99WallUs: r?.p99 ?? null, cpuUs: r?.cpu ?? 0 });
  }
  return { bucketMs: q.bucketMs, from: q.fromMs, to, buckets, truncated };
}
