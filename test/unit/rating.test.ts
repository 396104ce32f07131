import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_PLAN, ratePeriod, rateUsage, periodDays, currentPeriod, type PricePlan, type RatedLine } from "../../src/billing/rating.js";
import { Billing, UsageRecorder, billedMbMs, type UsageRecord } from "../../src/billing/index.js";
import { openDb, Store, type OpenedDb } from "../../src/store/index.js";

/** MB-ms in one GB-second (1,024 MB × 1,000 ms). */
const GB_S = 1024 * 1000;

function plan(p: Partial<PricePlan>): PricePlan {
  return {
    id: "plan_test",
    name: "test",
    currency: "usd",
    requestPriceMicros: 0,
    gbSecondPriceMicros: 0,
    gigaInstructionPriceMicros: 0,
    freeRequests: 0,
    freeGbSeconds: 0,
    freeGigaInstructions: 0,
    ...p,
  };
}

const line = (lines: RatedLine[], metric: RatedLine["metric"]) => lines.find((l) => l.metric === metric);
const amounts = (lines: RatedLine[]) => Object.fromEntries(lines.map((l) => [l.metric, l.amount]));
const total = (lines: RatedLine[]) => lines.reduce((s, l) => s + l.amount, 0);

describe("rating: a job's usage (rateUsage)", () => {
  it("prices at the unit prices without free allowances, exact in micro minor units", () => {
    // 1,000 requests (20 µ¢ each), 2,048,000 MB-ms = 2 GB-s (1,667 µ¢ each), 3 billion instructions (1,000,000 µ¢ each).
    const r = rateUsage(DEFAULT_PLAN, { requests: 1000, mbMs: 2 * GB_S, instructions: 3e9 });
    expect(r.lines.map((l) => [l.metric, l.quantity, l.amountMicros])).toEqual([
      ["requests", "1000", 20_000],
      ["compute", "2.000000000", 3334],
      ["instructions", "3.000000000", 3_000_000],
    ]);
    expect(r).toMatchObject({ currency: "usd", plan: "standard", totalMicros: 3_023_334, total: 3 });
    // The same usage inside the period's free allowance is an invoice of 0: a job's cost ignores it.
    expect(total(ratePeriod(DEFAULT_PLAN, { requests: 1000, mbMs: 2 * GB_S, instructions: 3e9 }))).toBe(0);
  });

  it("one MB-ms rounds half-up to micro units; no instructions line without instructions", () => {
    const r = rateUsage(plan({ gbSecondPriceMicros: 1_024_000 * 3 + 512_000 }), { requests: 0, mbMs: 1, instructions: 0 });
    // 3.5 µ per MB-ms → 4 (half-up)
    expect(r.lines.map((l) => [l.metric, l.amountMicros])).toEqual([
      ["requests", 0],
      ["compute", 4],
    ]);
  });
});

describe("rating: the standard plan", () => {
  it("has the prices and free allowances docs/billing.md lists", () => {
    expect(DEFAULT_PLAN).toMatchObject({
      name: "standard",
      currency: "usd",
      requestPriceMicros: 20, // $0.20 per million = 20 µ¢ each
      gbSecondPriceMicros: 1667, // $0.00001667
      gigaInstructionPriceMicros: 1_000_000, // $0.01 per billion
      freeRequests: 1_000_000,
      freeGbSeconds: 400_000,
      freeGigaInstructions: 1000,
    });
  });

  it("zero usage: a requests and a compute line of 0, no instructions line", () => {
    expect(ratePeriod(DEFAULT_PLAN, { requests: 0, mbMs: 0, instructions: 0 })).toEqual([
      { metric: "requests", description: "Requests: 0 (1,000,000 free)", quantity: "0", unitPriceMicros: 20, amount: 0 },
      { metric: "compute", description: "Compute: 0.000000 GB-s (400,000 GB-s free)", quantity: "0.000000", unitPriceMicros: 1667, amount: 0 },
    ]);
  });

  it("usage inside the free allowance costs nothing; the first unit past it is billable", () => {
    const atFree = ratePeriod(DEFAULT_PLAN, { requests: 1_000_000, mbMs: 400_000 * GB_S, instructions: 1000 * 1e9 });
    expect(atFree.map((l) => [l.metric, l.quantity, l.amount])).toEqual([
      ["requests", "0", 0],
      ["compute", "0.000000", 0],
      ["instructions", "0.000000000", 0],
    ]);
    const past = ratePeriod(DEFAULT_PLAN, { requests: 1_000_001, mbMs: 400_000 * GB_S + 1, instructions: 1000 * 1e9 + 1 });
    // One request (20 µ¢), one MB-ms (1/1,024,000 GB-s) and one instruction: far below half a cent.
    expect(past.map((l) => [l.metric, l.quantity, l.amount])).toEqual([
      ["requests", "1", 0],
      ["compute", "0.000001", 0],
      ["instructions", "0.000000001", 0],
    ]);
  });

  it("a month of a busy app, by hand", () => {
    // 3.5M requests of 256 MB × 600 ms (rounded-up wall), 1,500 billion x86 instructions.
    const mbMs = 3_500_000 * 600 * 256; // 537,600,000,000 MB-ms = 525,000 GB-s
    const lines = ratePeriod(DEFAULT_PLAN, { requests: 3_500_000, mbMs, instructions: 1_500_000_000_000 });
    expect(lines).toEqual([
      // (3,500,000 − 1,000,000) × 20 µ¢ = 50,000,000 µ¢ = 50 ¢
      { metric: "requests", description: "Requests: 3,500,000 (1,000,000 free)", quantity: "2500000", unitPriceMicros: 20, amount: 50 },
      // (525,000 − 400,000) GB-s × 1,667 µ¢ = 208,375,000 µ¢ = 208.375 ¢ → 208 ¢
      { metric: "compute", description: "Compute: 525000.000000 GB-s (400,000 GB-s free)", quantity: "125000.000000", unitPriceMicros: 1667, amount: 208 },
      // (1,500 − 1,000) billion × 1,000,000 µ¢ = 500 ¢
      { metric: "instructions", description: "Guest instructions: 1500.000 billion (1,000 billion free)", quantity: "500.000000000", unitPriceMicros: 1_000_000, amount: 500 },
    ]);
    expect(total(lines)).toBe(758); // $7.58
  });
});

describe("rating: per-request prices", () => {
  it("rounds a line half-up to minor units, once", () => {
    const p = plan({ requestPriceMicros: 20 });
    // 20 µ¢ each: 24,999 → 0.49998 ¢; 25,000 → 0.5 ¢; 75,000 → 1.5 ¢; 125,000 → 2.5 ¢ (half-up, not to even)
    const rate = (requests: number) => line(ratePeriod(p, { requests, mbMs: 0, instructions: 0 }), "requests")!.amount;
    expect(rate(24_999)).toBe(0);
    expect(rate(25_000)).toBe(1);
    expect(rate(74_999)).toBe(1);
    expect(rate(75_000)).toBe(2);
    expect(rate(125_000)).toBe(3);
    expect(rate(1_000_000)).toBe(20);
  });

  it("1 µ¢ per request: a million requests are a cent, never a per-request rounding to 0", () => {
    const p = plan({ requestPriceMicros: 1 });
    const rate = (requests: number) => line(ratePeriod(p, { requests, mbMs: 0, instructions: 0 }), "requests")!.amount;
    expect(rate(1)).toBe(0);
    expect(rate(499_999)).toBe(0);
    expect(rate(500_000)).toBe(1);
    expect(rate(1_499_999)).toBe(1);
    expect(rate(1_500_000)).toBe(2);
    expect(rate(123_456_789)).toBe(123); // 123.456789 ¢
  });

  it("rounds each line, then adds the rounded lines (the total is not rounded again)", () => {
    // Each line is exactly half a cent: 1 ¢ each after rounding, 3 ¢ in all (unrounded: 1.5 ¢).
    const p = plan({ requestPriceMicros: 1, gbSecondPriceMicros: GB_S, gigaInstructionPriceMicros: 1_000_000 });
    const lines = ratePeriod(p, { requests: 500_000, mbMs: 500_000, instructions: 500_000_000 });
    expect(amounts(lines)).toEqual({ requests: 1, compute: 1, instructions: 1 });
    expect(total(lines)).toBe(3);
  });
});

describe("rating: GB-seconds", () => {
  it("billed MB-ms round the wall time up to a whole ms, times the configured memory", () => {
    expect(billedMbMs({ wallUs: 0, memoryMb: 128 })).toBe(0);
    expect(billedMbMs({ wallUs: 1, memoryMb: 128 })).toBe(128);
    expect(billedMbMs({ wallUs: 1000, memoryMb: 128 })).toBe(128);
    expect(billedMbMs({ wallUs: 1001, memoryMb: 128 })).toBe(256);
    expect(billedMbMs({ wallUs: 99_500, memoryMb: 512 })).toBe(100 * 512);
  });

  it("a million 100 ms requests at 128 MB are 12,500 GB-s", () => {
    const mbMs = 1_000_000 * billedMbMs({ wallUs: 99_200, memoryMb: 128 });
    const [, compute] = ratePeriod(plan({ gbSecondPriceMicros: 1667 }), { requests: 1_000_000, mbMs, instructions: 0 });
    // 12,500 × 1,667 µ¢ = 20,837,500 µ¢ = 20.8375 ¢ → 21 ¢
    expect(compute).toEqual({ metric: "compute", description: "Compute: 12500.000000 GB-s (0 GB-s free)", quantity: "12500.000000", unitPriceMicros: 1667, amount: 21 });
  });

  it("shows GB-s to 6 places (half-up) but prices the exact MB-ms", () => {
    const q = (mbMs: number) => line(ratePeriod(plan({}), { requests: 0, mbMs, instructions: 0 }), "compute")!.quantity;
    expect(q(1)).toBe("0.000001"); // 0.0000009765625
    expect(q(512)).toBe("0.000500");
    expect(q(GB_S / 2)).toBe("0.500000");
    expect(q(GB_S * 3 + 1)).toBe("3.000001");
    // 1,024,000 µ¢ (1.024 ¢) per GB-s: the amount in ¢ is MB-ms / 1,000,000, rounded half-up.
    const a = (mbMs: number) => line(ratePeriod(plan({ gbSecondPriceMicros: GB_S }), { requests: 0, mbMs, instructions: 0 }), "compute")!.amount;
    expect(a(1_499_999)).toBe(1);
    expect(a(1_500_000)).toBe(2);
    expect(a(2_500_000)).toBe(3);
  });

  it("subtracts the free GB-s in MB-ms, before rounding", () => {
    const p = plan({ gbSecondPriceMicros: GB_S, freeGbSeconds: 1 });
    // 1 GB-s free = 1,024,000 MB-ms; 1,524,000 MB-ms leave 500,000 MB-ms = 0.5 ¢ → 1 ¢
    const [, compute] = ratePeriod(p, { requests: 0, mbMs: 1_524_000, instructions: 0 });
    expect(compute).toMatchObject({ quantity: "0.488281", amount: 1, description: "Compute: 1.488281 GB-s (1 GB-s free)" });
  });
});

describe("rating: x86 instructions", () => {
  const x86 = plan({ gigaInstructionPriceMicros: 1_000_000, freeGigaInstructions: 1 });

  it("has no instructions line without instructions, and one inside the free allowance", () => {
    expect(ratePeriod(x86, { requests: 5, mbMs: 5, instructions: 0 }).map((l) => l.metric)).toEqual(["requests", "compute"]);
    expect(line(ratePeriod(x86, { requests: 0, mbMs: 0, instructions: 999_999_999 }), "instructions")).toEqual({
      metric: "instructions",
      description: "Guest instructions: 1.000 billion (1 billion free)",
      quantity: "0.000000000",
      unitPriceMicros: 1_000_000,
      amount: 0,
    });
  });

  it("bills billions past the allowance to the instruction, rounded once", () => {
    // 3,500,000,001 − 1,000,000,000 = 2,500,000,001 instructions × 1 ¢ per billion = 2.500000001 ¢ → 3 ¢
    const l = line(ratePeriod(x86, { requests: 0, mbMs: 0, instructions: 3_500_000_001 }), "instructions")!;
    expect(l).toMatchObject({ quantity: "2.500000001", amount: 3, description: "Guest instructions: 3.500 billion (1 billion free)" });
    // exactly 2.5 billion past it: 2.5 ¢ → 3 ¢; one instruction less: 2.499999999 ¢ → 2 ¢
    expect(line(ratePeriod(x86, { requests: 0, mbMs: 0, instructions: 3_500_000_000 }), "instructions")!.amount).toBe(3);
    expect(line(ratePeriod(x86, { requests: 0, mbMs: 0, instructions: 3_499_999_999 }), "instructions")!.amount).toBe(2);
  });
});

describe("rating: huge usage", () => {
  it("is exact at 2^53 − 1 of every metric, where floating point is not", () => {
    const M = Number.MAX_SAFE_INTEGER; // 9,007,199,254,740,991
    const lines = ratePeriod(DEFAULT_PLAN, { requests: M, mbMs: M, instructions: M });
    expect(lines).toEqual([
      // 9,007,199,253,740,991 × 20 µ¢ = 180,143,985,074,819,820 µ¢ = 180,143,985,074.81982 ¢
      { metric: "requests", description: "Requests: 9,007,199,254,740,991 (1,000,000 free)", quantity: "9007199253740991", unitPriceMicros: 20, amount: 180_143_985_075 },
      // (M − 409,600,000,000) MB-ms = 8,795,693,022.2079990234375 GB-s × 1,667 µ¢ = 14,662,420.268… ¢
      { metric: "compute", description: "Compute: 8796093022.207999 GB-s (400,000 GB-s free)", quantity: "8795693022.207999", unitPriceMicros: 1667, amount: 14_662_420 },
      // (M − 10^12) instructions = 9,006,199.254740991 billion × 1 ¢ = 9,006,199.25… ¢
      { metric: "instructions", description: "Guest instructions: 9007199.255 billion (1,000 billion free)", quantity: "9006199.254740991", unitPriceMicros: 1_000_000, amount: 9_006_199 },
    ]);
    // What floating point would have shown (the reason rating uses integers):
    expect(String((M - 400_000 * GB_S) / GB_S)).not.toBe("8795693022.207999");
    expect(String((M - 1e12) / 1e9)).not.toBe("9006199.254740991");
  });
});

describe("rating: currencies", () => {
  it("rates in the plan's minor units whatever the currency (the plan carries it)", () => {
    const usage = { requests: 2_000_000, mbMs: 10 * GB_S, instructions: 0 };
    const usd = ratePeriod(plan({ currency: "usd", requestPriceMicros: 30, gbSecondPriceMicros: 50_000 }), usage);
    const jpy = ratePeriod(plan({ currency: "jpy", requestPriceMicros: 30, gbSecondPriceMicros: 50_000 }), usage);
    // 2,000,000 × 30 µ = 60 minor units; 10 GB-s × 50,000 µ = 0.5 minor units → 1
    expect(amounts(usd)).toEqual({ requests: 60, compute: 1 });
    expect(jpy).toEqual(usd);
  });
});

describe("periods", () => {
  it("periodDays: first and last UTC day of a month, leap years included; undefined for anything else", () => {
    expect(periodDays("2026-11")).toEqual({ from: "2026-11-01", to: "2026-11-30" });
    expect(periodDays("2026-12")).toEqual({ from: "2026-12-01", to: "2026-12-31" });
    expect(periodDays("2026-02")).toEqual({ from: "2026-02-01", to: "2026-02-28" });
    expect(periodDays("2028-02")).toEqual({ from: "2028-02-01", to: "2028-02-29" });
    expect(periodDays("2100-02")).toEqual({ from: "2100-02-01", to: "2100-02-28" });
    for (const bad of ["2026-13", "2026-00", "2026-1", "26-11", "2026-11-01", " 2026-11", "2026-11\n", ""]) expect(periodDays(bad)).toBeUndefined();
  });

  it("currentPeriod is the UTC month", () => {
    expect(currentPeriod(new Date("2026-11-30T23:59:59.999Z"))).toBe("2026-11");
    expect(currentPeriod(new Date("2026-12-01T00:00:00.000Z"))).toBe("2026-12");
  });
});

describe("invoices from the daily aggregates (Billing on a real SQLite file)", () => {
  let dir: string;
  let db: OpenedDb;
  let store: Store;
  let billing: Billing;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "zerocell-rating-"));
    db = openDb(join(dir, "zerocell.db"));
    store = new Store(db);
    billing = new Billing(db);
  });

  afterEach(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function record(accountId: string, i: number, r: Partial<UsageRecord>): UsageRecord {
    return {
      requestId: `req-${accountId}-${i}`,
      accountId,
      appId: "app_x",
      deploymentId: "dep_x",
      routeKey: null,
      startedAt: Date.UTC(2026, 10, 1 + (i % 30), 12),
      wallUs: 1000,
      cpuUs: null,
      instructions: null,
      memoryMb: 128,
      status: 200,
      bytesIn: 0,
      bytesOut: 0,
      mode: "snapshot",
      ...r,
    };
  }

  it("refuses to close the current or a future period", () => {
    const now = new Date(Date.UTC(2026, 11, 5));
    expect(() => billing.closePeriod("2026-12", false, now)).toThrow(/still open/);
    expect(() => billing.closePeriod("2027-01", false, now)).toThrow(/in the future/);
    expect(billing.closePeriod("2026-11", false, now)).toMatchObject({ created: [], existing: 0 });
    // The operator's override (tests, demos) allows the current period, never a future one.
    const lenient = new Billing(db, { allowClosingOpenPeriods: true });
    expect(lenient.closePeriod("2026-12", false, now).created).toEqual([]);
    expect(() => lenient.closePeriod("2027-01", false, now)).toThrow(/in the future/);
  });

  it("usage arriving late for a closed period is billed in the next open one, once", () => {
    const a = store.createAccount("late-co", null);
    const rec = new UsageRecorder(db, { flushIntervalMs: 60_000, enabled: true });
    rec.record(record(a.id, 1, { startedAt: Date.UTC(2020, 0, 10) }));
    rec.flush();
    const closed = billing.closePeriod("2020-01", false);
    const requestsIn = (from: string, to: string) => (db.sqlite.prepare("SELECT coalesce(sum(requests), 0) AS n FROM usage_daily WHERE account_id = ? AND day BETWEEN ? AND ?").get(a.id, from, to) as { n: number }).n;
    expect(requestsIn("2020-01-01", "2020-01-31")).toBe(1);
    // Two late records of January 2020 (one repeated: the same request id counts once).
    rec.record(record(a.id, 2, { startedAt: Date.UTC(2020, 0, 20) }));
    rec.record(record(a.id, 2, { startedAt: Date.UTC(2020, 0, 20) }));
    rec.close();
    // January (invoiced) is unchanged; the late request counts today, in the open period.
    expect(requestsIn("2020-01-01", "2020-01-31")).toBe(1);
    const today = new Date().toISOString().slice(0, 10);
    expect(requestsIn(today, today)).toBe(1);
    expect(billing.invoice(closed.created[0]!.id)!.total).toBe(closed.created[0]!.total);
  });

  it("drafts and closes invoices in each account's plan currency; totals are the sums of the lines", () => {
    // ¥30 per million requests (30 micro-yen each), ¥2 per GB-s, nothing free.
    const yen = billing.createPlan({ name: "tokyo", currency: "jpy", requestPriceMicros: 30, gbSecondPriceMicros: 2_000_000, gigaInstructionPriceMicros: 0, freeRequests: 0, freeGbSeconds: 0, freeGigaInstructions: 0 });
    const euro = billing.createPlan({ name: "paris", currency: "eur", requestPriceMicros: 25, gbSecondPriceMicros: 1500, gigaInstructionPriceMicros: 0, freeRequests: 0, freeGbSeconds: 0, freeGigaInstructions: 0 });
    const a = store.createAccount("tokyo-co", yen.id);
    const b = store.createAccount("paris-co", euro.id);
    const c = store.createAccount("std-co", null);
    const rec = new UsageRecorder(db, { flushIntervalMs: 60_000 });
    // a: 60,000 requests of 8 ms at 128 MB → 61,440,000 MB-ms = 60 GB-s
    for (let i = 0; i < 60_000; i++) rec.record(record(a.id, i, { wallUs: 7_001 + (i % 999), memoryMb: 128 }));
    // b: 20,000 requests of 1 ms at 1,024 MB (20,000 × 1,024 MB-ms = 20 GB-s) and one in December
    for (let i = 0; i < 20_000; i++) rec.record(record(b.id, i, { memoryMb: 1024 }));
    rec.record(record(b.id, 99_999, { startedAt: Date.UTC(2026, 11, 1), memoryMb: 1024 }));
    // c: 10 requests, inside the standard plan's allowance
    for (let i = 0; i < 10; i++) rec.record(record(c.id, i, {}));
    rec.close();

    const da = billing.draft(a.id, "2026-11");
    // 60,000 × 30 µ¥ = ¥1.8 → ¥2; 60 GB-s × 2,000,000 µ¥ = ¥120
    expect(da).toMatchObject({ status: "draft", currency: "jpy", plan: "tokyo", total: 122 });
    expect(da.lines.map((l) => [l.metric, l.quantity, l.amount])).toEqual([
      ["requests", "60000", 2],
      ["compute", "60.000000", 120],
    ]);
    const db_ = billing.draft(b.id, "2026-11");
    // 20,000 × 25 µ = 0.5 cent → 1; 20 GB-s × 1,500 µ = 0.03 cent → 0 (December's request not counted)
    expect(db_).toMatchObject({ currency: "eur", plan: "paris", total: 1 });
    expect(db_.lines.map((l) => [l.metric, l.quantity, l.amount])).toEqual([
      ["requests", "20000", 1],
      ["compute", "20.000000", 0],
    ]);
    expect(billing.draft(c.id, "2026-11")).toMatchObject({ currency: "usd", plan: "standard", total: 0 });

    const closed = billing.closePeriod("2026-11", false);
    expect(closed.existing).toBe(0);
    expect(closed.created.map((i) => [i.account, i.status, i.currency, i.total]).sort()).toEqual([
      ["paris-co", "open", "eur", 1],
      ["std-co", "open", "usd", 0],
      ["tokyo-co", "open", "jpy", 122],
    ]);
    for (const inv of closed.created) expect(inv.total).toBe(inv.lines.reduce((s, l) => s + l.amount, 0));
    // Closing again creates nothing.
    expect(billing.closePeriod("2026-11", false)).toMatchObject({ created: [], existing: 3 });
  });
});
