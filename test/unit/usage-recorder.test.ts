import { describe, it, expect, beforeEach, afterEach, vi } from "vitest";
import Database from "better-sqlite3";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UsageRecorder, billedMbMs, type UsageRecord } from "../../src/billing/index.js";
import { openDb, type OpenedDb } from "../../src/store/index.js";

let dir: string;
let file: string;
let db: OpenedDb;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "zerocell-usage-"));
  file = join(dir, "zerocell.db");
  db = openDb(file);
});

afterEach(() => {
  vi.useRealTimers();
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

let n = 0;
function rec(r: Partial<UsageRecord> = {}): UsageRecord {
  n++;
  return {
    requestId: `req-${n}`,
    accountId: "acct_a",
    appId: "app_a",
    deploymentId: "dep_a",
    routeKey: null,
    startedAt: Date.UTC(2026, 10, 15, 12),
    wallUs: 1500,
    cpuUs: 900,
    instructions: null,
    memoryMb: 128,
    status: 200,
    bytesIn: 10,
    bytesOut: 100,
    mode: "snapshot",
    ...r,
  };
}

const countRecords = () => (db.sqlite.prepare("SELECT count(*) AS c FROM usage_records").get() as { c: number }).c;
const daily = () =>
  db.sqlite.prepare("SELECT account_id, app_id, day, requests, errors, mb_ms, wall_us, instructions, bytes_in, bytes_out FROM usage_daily ORDER BY account_id, app_id, day").all();
/** usage_daily recomputed from the records by SQL: what the aggregates must equal. */
const dailyFromRecords = () =>
  db.sqlite
    .prepare(
      `SELECT account_id, app_id, strftime('%Y-%m-%d', started_at / 1000, 'unixepoch') AS day,
              sum(mode <> 'warmup') AS requests, sum(mode <> 'warmup' AND status >= 500) AS errors,
              sum(((wall_us + 999) / 1000) * memory_mb) AS mb_ms, sum(wall_us) AS wall_us,
              sum(coalesce(instructions, 0)) AS instructions, sum(bytes_in) AS bytes_in, sum(bytes_out) AS bytes_out
       FROM usage_records GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`,
    )
    .all();

describe("UsageRecorder: batching", () => {
  it("writes nothing at once; everything one flush interval after the first record of a batch", () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const u = new UsageRecorder(db, { flushIntervalMs: 100 });
    u.record(rec());
    vi.advanceTimersByTime(60);
    u.record(rec()); // does not push the deadline back
    expect(countRecords()).toBe(0);
    vi.advanceTimersByTime(39);
    expect(countRecords()).toBe(0);
    vi.advanceTimersByTime(1);
    expect(countRecords()).toBe(2);
    // The next record starts a new interval.
    u.record(rec());
    vi.advanceTimersByTime(99);
    expect(countRecords()).toBe(2);
    vi.advanceTimersByTime(1);
    expect(countRecords()).toBe(3);
    expect(vi.getTimerCount()).toBe(0);
    u.close();
  });

  it("writes after the interval with real timers too", async () => {
    const u = new UsageRecorder(db, { flushIntervalMs: 20 });
    u.record(rec());
    expect(countRecords()).toBe(0);
    const deadline = Date.now() + 5000;
    while (countRecords() === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(countRecords()).toBe(1);
    u.close();
  });

  it("flushes at once when maxBuffered records wait, without waiting for the timer", () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const u = new UsageRecorder(db, { flushIntervalMs: 60_000, maxBuffered: 3 });
    u.record(rec());
    u.record(rec());
    expect(countRecords()).toBe(0);
    u.record(rec());
    expect(countRecords()).toBe(3);
    expect(vi.getTimerCount()).toBe(0);
    u.record(rec());
    expect(countRecords()).toBe(3);
    u.close();
    expect(countRecords()).toBe(4);
  });

  it("flushes on close, then ignores records", () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const u = new UsageRecorder(db, { flushIntervalMs: 60_000 });
    u.record(rec());
    u.record(rec());
    u.close();
    expect(countRecords()).toBe(2);
    expect(vi.getTimerCount()).toBe(0);
    u.record(rec());
    u.flush();
    vi.advanceTimersByTime(120_000);
    expect(countRecords()).toBe(2);
  });

  it("writes the record's fields as given", () => {
    const u = new UsageRecorder(db, { flushIntervalMs: 60_000 });
    const r = rec({ routeKey: "alice", wallUs: 12_345, cpuUs: null, instructions: 987_654_321, memoryMb: 256, status: 504, bytesIn: 3, bytesOut: 4, mode: "daemon" });
    u.record(r);
    u.close();
    expect(db.sqlite.prepare("SELECT * FROM usage_records").get()).toMatchObject({
      request_id: r.requestId,
      account_id: "acct_a",
      app_id: "app_a",
      deployment_id: "dep_a",
      route_key: "alice",
      started_at: r.startedAt,
      wall_us: 12_345,
      cpu_us: null,
      instructions: 987_654_321,
      memory_mb: 256,
      status: 504,
      bytes_in: 3,
      bytes_out: 4,
      mode: "daemon",
    });
  });

  it("a disabled recorder writes nothing, on flush or close", () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const u = new UsageRecorder(db, { flushIntervalMs: 10, maxBuffered: 1, enabled: false });
    for (let i = 0; i < 10; i++) u.record(rec());
    expect(vi.getTimerCount()).toBe(0);
    u.flush();
    u.close();
    expect(countRecords()).toBe(0);
    expect(daily()).toEqual([]);
  });
});

describe("UsageRecorder: daily aggregates", () => {
  it("counts by hand: warm-ups add time, not requests; 5xx are errors; days are UTC", () => {
    const u = new UsageRecorder(db, { flushIntervalMs: 60_000 });
    const day1 = Date.UTC(2026, 10, 15, 23, 59, 59, 999);
    const day2 = Date.UTC(2026, 10, 16, 0, 0, 0, 0);
    u.record(rec({ startedAt: day1, wallUs: 1, memoryMb: 128, status: 200, bytesIn: 1, bytesOut: 2 })); // 1 ms × 128
    u.record(rec({ startedAt: day1, wallUs: 2001, memoryMb: 128, status: 502, instructions: 1000, bytesIn: 3, bytesOut: 4 })); // 3 ms × 128
    u.record(rec({ startedAt: day1, wallUs: 250_000, memoryMb: 128, status: 200, mode: "warmup", bytesIn: 0, bytesOut: 0 })); // 250 ms × 128
    u.record(rec({ startedAt: day1, wallUs: 100_000, memoryMb: 128, status: 504, mode: "warmup", bytesIn: 0, bytesOut: 0 })); // a killed warm-up: no error either
    u.record(rec({ startedAt: day2, wallUs: 999, memoryMb: 512, status: 404, bytesIn: 5, bytesOut: 6 })); // 1 ms × 512
    u.record(rec({ startedAt: day2, appId: "app_b", wallUs: 1000, memoryMb: 64, status: 500, instructions: 7 }));
    u.close();
    expect(daily()).toEqual([
      { account_id: "acct_a", app_id: "app_a", day: "2026-11-15", requests: 2, errors: 1, mb_ms: 128 + 384 + 32_000 + 12_800, wall_us: 1 + 2001 + 250_000 + 100_000, instructions: 1000, bytes_in: 4, bytes_out: 6 },
      { account_id: "acct_a", app_id: "app_a", day: "2026-11-16", requests: 1, errors: 0, mb_ms: 512, wall_us: 999, instructions: 0, bytes_in: 5, bytes_out: 6 },
      { account_id: "acct_a", app_id: "app_b", day: "2026-11-16", requests: 1, errors: 1, mb_ms: 64, wall_us: 1000, instructions: 7, bytes_in: 10, bytes_out: 100 },
    ]);
    expect(daily()).toEqual(dailyFromRecords());
  });

  it("equal the records after many batches of mixed records, duplicates included", () => {
    // A deterministic generator: 3 accounts × 2 apps × 4 days (across a month end), statuses,
    // modes, x86 instructions, and 1 in 10 request ids sent again later.
    let seed = 42;
    const next = (m: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % m;
    };
    const u = new UsageRecorder(db, { flushIntervalMs: 60_000, maxBuffered: 257 });
    const sent: UsageRecord[] = [];
    for (let i = 0; i < 3000; i++) {
      const again = i > 100 && next(10) === 0 ? sent[next(sent.length)] : undefined;
      if (again !== undefined) {
        // Same id, different contents: the first one written wins, counted once.
        u.record({ ...again, wallUs: again.wallUs + 1_000_000, status: 500, mode: "snapshot" });
        continue;
      }
      const r = rec({
        accountId: `acct_${next(3)}`,
        appId: `app_${next(2)}`,
        startedAt: Date.UTC(2026, 9, 30, 0, 0, 0) + next(4 * 86_400_000),
        wallUs: 1 + next(3_000_000),
        instructions: next(3) === 0 ? next(2_000_000_000) : null,
        memoryMb: [64, 128, 256, 1024][next(4)]!,
        status: [200, 200, 200, 404, 500, 502, 504][next(7)]!,
        bytesIn: next(10_000),
        bytesOut: next(1_000_000),
        mode: ["snapshot", "snapshot", "daemon", "fresh", "warmup"][next(5)]!,
      });
      sent.push(r);
      u.record(r);
    }
    u.close();
    expect(countRecords()).toBe(sent.length);
    const rows = daily() as Array<{ day: string; requests: number; mb_ms: number }>;
    expect(rows).toEqual(dailyFromRecords());
    expect(new Set(rows.map((r) => r.day))).toEqual(new Set(["2026-10-30", "2026-10-31", "2026-11-01", "2026-11-02"]));
    // And against the records as sent (not as read back).
    const nonWarmup = sent.filter((r) => r.mode !== "warmup");
    expect(rows.reduce((s, r) => s + r.requests, 0)).toBe(nonWarmup.length);
    expect(rows.reduce((s, r) => s + r.mb_ms, 0)).toBe(sent.reduce((s, r) => s + billedMbMs(r), 0));
  });

  it("does not count a request id twice, in one batch or across batches", () => {
    const u = new UsageRecorder(db, { flushIntervalMs: 60_000 });
    const r = rec({ requestId: "req-dup", wallUs: 1000 });
    u.record(r);
    u.record({ ...r, wallUs: 9_000_000 });
    u.flush();
    u.record({ ...r, wallUs: 5_000_000, appId: "app_other" });
    u.close();
    expect(countRecords()).toBe(1);
    expect(db.sqlite.prepare("SELECT wall_us FROM usage_records").get()).toEqual({ wall_us: 1000 });
    expect(daily()).toEqual([{ account_id: "acct_a", app_id: "app_a", day: "2026-11-15", requests: 1, errors: 0, mb_ms: 128, wall_us: 1000, instructions: 0, bytes_in: 10, bytes_out: 100 }]);
  });

  it("two recorders on one file (two gateways' worth) add up, and a record written by both counts once", () => {
    const other = openDb(file);
    try {
      const u1 = new UsageRecorder(db, { flushIntervalMs: 60_000 });
      const u2 = new UsageRecorder(other, { flushIntervalMs: 60_000 });
      const shared = rec();
      u1.record(rec());
      u1.record(shared);
      u2.record(rec());
      u2.record(shared);
      u1.close();
      u2.close();
      expect(countRecords()).toBe(3);
      expect(daily()).toMatchObject([{ requests: 3 }]);
      expect(daily()).toEqual(dailyFromRecords());
    } finally {
      other.close();
    }
  });
});

describe("UsageRecorder: a failed flush", () => {
  it("keeps the records (with ones recorded since) and writes them once the database takes writes again", () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    // Another connection holds the write lock; this connection gives up after 20 ms instead of 5 s.
    db.sqlite.pragma("busy_timeout = 20");
    const locker = new Database(file);
    try {
      const u = new UsageRecorder(db, { flushIntervalMs: 100 });
      u.record(rec({ requestId: "kept-1" }));
      u.record(rec({ requestId: "kept-2" }));
      locker.exec("BEGIN IMMEDIATE");
      vi.advanceTimersByTime(100); // the flush fails (SQLITE_BUSY)
      expect(countRecords()).toBe(0);
      u.record(rec({ requestId: "later" }));
      // The retry waits 10 intervals, not 1.
      vi.advanceTimersByTime(500);
      locker.exec("COMMIT");
      expect(countRecords()).toBe(0);
      vi.advanceTimersByTime(500);
      expect(db.sqlite.prepare("SELECT request_id FROM usage_records ORDER BY id").all()).toEqual([{ request_id: "kept-1" }, { request_id: "kept-2" }, { request_id: "later" }]);
      expect(daily()).toMatchObject([{ requests: 3 }]);
      u.close();
      expect(countRecords()).toBe(3);
    } finally {
      if (locker.inTransaction) locker.exec("ROLLBACK");
      locker.close();
    }
  });

  it("rolls a batch that fails part way back whole (nothing half-written), and retries it whole", () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    // A record the insert refuses (NOT NULL on account_id; typed code cannot make one) after a
    // good one in the same batch. Observed: the good one is held back with it on every retry,
    // and both are dropped (logged) at close.
    const u = new UsageRecorder(db, { flushIntervalMs: 100 });
    u.record(rec({ requestId: "good" }));
    u.record(rec({ requestId: "bad", accountId: null as unknown as string }));
    u.flush();
    expect(countRecords()).toBe(0);
    expect(daily()).toEqual([]);
    vi.advanceTimersByTime(1000); // the retry, 10 intervals later
    expect(countRecords()).toBe(0);
    u.close();
    expect(countRecords()).toBe(0);
  });
});

describe("UsageRecorder: while the database refuses writes", () => {
  // After a failed flush the recorder waits 10 flush intervals before trying again, also when
  // maxBuffered records wait: each attempt can block the event loop for the busy timeout.
  it("record() past maxBuffered does not retry the failed flush synchronously on every call", () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    db.sqlite.pragma("busy_timeout = 100");
    const locker = new Database(file);
    try {
      const u = new UsageRecorder(db, { flushIntervalMs: 100, maxBuffered: 2 });
      locker.exec("BEGIN IMMEDIATE");
      u.record(rec());
      u.record(rec()); // maxBuffered: a flush, which fails after busy_timeout
      const t0 = performance.now();
      for (let i = 0; i < 5; i++) u.record(rec());
      const ms = performance.now() - t0;
      locker.exec("COMMIT");
      u.close();
      expect(countRecords()).toBe(7);
      // Five more records: pushed to the buffer, no 100 ms attempt each (~500 ms today).
      expect(ms).toBeLessThan(100);
    } finally {
      if (locker.inTransaction) locker.exec("ROLLBACK");
      locker.close();
    }
  });
});
