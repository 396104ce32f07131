/**
 * Usage of a slice of requests, read from the usage records themselves (never a second counter):
 * a job's items are metered under request ids `job-<id>-<seq>[-rN]`, so a job's cost is one
 * range scan of the request-id index. And the per-object history of a program or app — how its
 * past runs' billed time, CPU and instructions grew with the bytes they read — for estimates.
 */
import type { Database } from "better-sqlite3";

/** Totals of some usage records (what a job's view calls `cost.usage`). */
export interface UsageTotals {
  /** Usage records: one per run of an item (a retried item has two). */
  records: number;
  /** Records that count as requests (every mode but warm-ups). */
  requests: number;
  /** Records of runs that failed in the sandbox (status ≥ 500). */
  errors: number;
  /** Billed MB-ms: wall time rounded up to 1 ms × billed memory, summed. */
  mbMs: number;
  wallUs: number;
  /** Host CPU time, µs (runs that reported none count 0). */
  cpuUs: number;
  /** Guest instructions (x86; 0 for runtimes that do not count them). */
  instructions: number;
  /** Bytes read: the objects fed to the program. */
  bytesIn: number;
  /** Bytes written: the program's outputs. */
  bytesOut: number;
}

/** The sums an estimate fits a line to: for x = bytes read and each y, n, Σx, Σy, Σx², Σxy. */
export interface UsageHistory {
  n: number;
  sumX: number;
  sumXX: number;
  /** y: billed ms (wall time rounded up to 1 ms). */
  billedMs: { sumY: number; sumXY: number };
  cpuUs: { sumY: number; sumXY: number };
  instructions: { sumY: number; sumXY: number };
}

/**
 * Sums the records whose request id starts with `prefix`, of one account. The range
 * [prefix, prefix + U+FFFF) walks the unique request-id index (LIKE would scan the table). The
 * account test is written `account_id || '' = ?` so the planner cannot pick the account's index
 * instead (it did: every record of the account scanned, 45 ms for a job of 1,000 items among
 * 300,000 records; bench/job-cost.mjs).
 */
export function usageOfRequests(db: Database, accountId: string, prefix: string): UsageTotals {
  const row = db
    .prepare(
      `SELECT COUNT(*) AS records, COALESCE(SUM(mode != 'warmup'), 0) AS requests, COALESCE(SUM(status >= 500), 0) AS errors,
        COALESCE(SUM(((wall_us + 999) / 1000) * memory_mb), 0) AS mbMs, COALESCE(SUM(wall_us), 0) AS wallUs, COALESCE(SUM(cpu_us), 0) AS cpuUs,
        COALESCE(SUM(instructions), 0) AS instructions, COALESCE(SUM(bytes_in), 0) AS bytesIn, COALESCE(SUM(bytes_out), 0) AS bytesOut
       FROM usage_records WHERE request_id >= ? AND request_id < ? AND account_id || '' = ?`,
    )
    .get(prefix, `${prefix}\uffff`, accountId) as UsageTotals;
  return row;
}

/**
 * The newest `limit` successful job and object runs of an app (or a POSTed program: app id
 * `program:<sha>`) in one account — another account's runs of the same program are not used.
 */
export function usageHistory(db: Database, accountId: string, appId: string, limit: number): UsageHistory {
  // TOTAL() sums as floating point: Σxy of 10⁴ runs can pass 2⁶³ where SUM() would throw.
  const r = db
    .prepare(
      `SELECT COUNT(*) AS n, TOTAL(x) AS sumX, TOTAL(x * x) AS sumXX,
        TOTAL(ms) AS msY, TOTAL(x * ms) AS msXY, TOTAL(cpu) AS cpuY, TOTAL(x * cpu) AS cpuXY, TOTAL(ins) AS insY, TOTAL(x * ins) AS insXY
       FROM (SELECT CAST(bytes_in AS REAL) AS x, CAST((wall_us + 999) / 1000 AS REAL) AS ms, CAST(COALESCE(cpu_us, 0) AS REAL) AS cpu, CAST(COALESCE(instructions, 0) AS REAL) AS ins
             FROM usage_records WHERE app_id = ? AND account_id = ? AND mode IN ('job', 'object') AND status < 400
             ORDER BY started_at DESC LIMIT ?)`,
    )
    .get(appId, accountId, Math.floor(limit)) as Record<string, number>;
  return {
    n: r.n ?? 0,
    sumX: r.sumX ?? 0,
    sumXX: r.sumXX ?? 0,
    billedMs: { sumY: r.msY ?? 0, sumXY: r.msXY ?? 0 },
    cpuUs: { sumY: r.cpuY ?? 0, sumXY: r.cpuXY ?? 0 },
    instructions: { sumY: r.insY ?? 0, sumXY: r.insXY ?? 0 },
  };
}
