/** src/billing/series.ts on a real database file: buckets, nearest-rank percentiles, the caps. */
import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { querySeries } from "../../src/billing/series.js";
import { openDb, type OpenedDb } from "../../src/store/index.js";

let dir: string;
let db: OpenedDb;
let n = 0;
const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);

function insert(app: string, startedAt: number, wallUs: number, status = 200, cpuUs: number | null = 10, mode = "snapshot"): void {
  db.sqlite
    .prepare(`INSERT INTO usage_records (request_id, account_id, app_id, deployment_id, route_key, started_at, wall_us, cpu_us, instructions, memory_mb, status, bytes_in, bytes_out, mode)
      VALUES (?, 'acct', ?, 'dep', NULL, ?, ?, ?, NULL, 128, ?, 0, 0, ?)`)
    .run(`r${++n}`, app, startedAt, wallUs, cpuUs, status, mode);
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "zerocell-series-"));
  db = openDb(join(dir, "zerocell.db"));
});
afterEach(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("querySeries", () => {
  it("buckets requests, 5xx and CPU; p50/p99 are nearest-rank; warm-ups and other apps are left out", () => {
    // Minute 0: wall 1..100 µs (p50 = 50, p99 = 99), 3 errors; minute 2: one request.
    for (let i = 1; i <= 100; i++) insert("a", T0 + i * 100, i, i <= 3 ? 503 : i === 4 ? 404 : 200, 10);
    insert("a", T0 + 2 * 60_000 + 5, 7_000, 200, null);
    insert("a", T0 + 1000, 999_999, 200, 10, "warmup");
    insert("b", T0 + 1000, 999_999, 500);
    insert("a", T0 - 1, 999_999, 500);
    const s = querySeries(db.sqlite, { appId: "a", fromMs: T0, bucketMs: 60_000, buckets: 3 });
    expect(s.truncated).toBe(false);
    expect(s.buckets).toEqual([
      { start: T0, requests: 100, errors: 3, p50WallUs: 50, p99WallUs: 99, cpuUs: 1000 },
      { start: T0 + 60_000, requests: 0, errors: 0, p50WallUs: null, p99WallUs: null, cpuUs: 0 },
      { start: T0 + 120_000, requests: 1, errors: 0, p50WallUs: 7_000, p99WallUs: 7_000, cpuUs: 0 },
    ]);
    expect(s.to).toBe(T0 + 180_000);
  });

  it("reads at most maxRecords (the newest) and says so; refuses too many buckets", () => {
    for (let i = 0; i < 10; i++) insert("a", T0 + i * 60_000, 100);
    const limits = { maxBuckets: 20, maxRecords: 4 };
    const s = querySeries(db.sqlite, { appId: "a", fromMs: T0, bucketMs: 60_000, buckets: 10 }, limits);
    expect(s.truncated).toBe(true);
    expect(s.buckets.map((b) => b.requests)).toEqual([0, 0, 0, 0, 0, 0, 1, 1, 1, 1]);
    expect(querySeries(db.sqlite, { appId: "a", fromMs: T0, bucketMs: 60_000, buckets: 10 }, { maxBuckets: 20, maxRecords: 10 }).truncated).toBe(false);
    expect(() => querySeries(db.sqlite, { appId: "a", fromMs: T0, bucketMs: 60_000, buckets: 21 }, limits)).toThrow(/21 buckets \(limit 20\)/);
  });
});
