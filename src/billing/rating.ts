/**
 * Rating: usage of a period × a price plan → invoice lines. All money is integers: prices in
 * micro minor units per unit (exact for tiny per-request prices), line amounts rounded half-up
 * to minor units once, invoice total = sum of line amounts. Quantities come from the daily
 * aggregates (never from scanning usage records).
 */

export interface PricePlan {
  id: string;
  name: string;
  currency: string;
  requestPriceMicros: number;
  gbSecondPriceMicros: number;
  gigaInstructionPriceMicros: number;
  freeRequests: number;
  freeGbSeconds: number;
  freeGigaInstructions: number;
}

/**
 * The default plan (documented in docs/billing.md): $0.20 per million requests, $0.0000166667 per
 * GB-second, $0.01 per billion x86 instructions; 1M requests, 400,000 GB-s and 1,000 billion
 * instructions free per month.
 */
export const DEFAULT_PLAN: PricePlan = {
  id: "plan_standard",
  name: "standard",
  currency: "usd",
  requestPriceMicros: 20,
  gbSecondPriceMicros: 1667,
  gigaInstructionPriceMicros: 1_000_000,
  freeRequests: 1_000_000,
  freeGbSeconds: 400_000,
  freeGigaInstructions: 1000,
};

export interface PeriodUsage {
  requests: number;
  /** Sum of ceil(wall ms) × billed MB. */
  mbMs: number;
  instructions: number;
}

export type Metric = "requests" | "compute" | "instructions";

export interface RatedLine {
  metric: Metric;
  description: string;
  /** Billable quantity (after the free allowance), decimal string. */
  quantity: string;
  unitPriceMicros: number;
  /** Minor units. */
  amount: number;
}

/** MB-ms in one GB-second. */
const MB_MS_PER_GB_S = 1024n * 1000n;
const GIGA = 1_000_000_000n;
const MICROS = 1_000_000n;

/** round(n / d) half-up, for non-negative BigInts. */
function divRound(n: bigint, d: bigint): bigint {
  return (2n * n + d) / (2n * d);
}

function decimal(n: bigint, d: bigint, places: number): string {
  const scale = 10n ** BigInt(places);
  const v = divRound(n * scale, d);
  const s = v.toString().padStart(places + 1, "0");
  return `${s.slice(0, -places)}.${s.slice(-places)}`;
}

function fmt(n: number | bigint): string {
  return BigInt(n).toLocaleString("en-US");
}

/** One metric of some usage: its quantity in the metric's smallest unit, and that unit per billed unit. */
interface MetricQuantity {
  metric: Metric;
  /** The whole quantity, in the smallest unit (requests, MB-ms, instructions). */
  total: bigint;
  /** What is billed: the total less the free allowance (when one applies). */
  billable: bigint;
  /** Smallest units per priced unit (1 request, 1 GB-s = 1,024,000 MB-ms, 10⁹ instructions). */
  perUnit: bigint;
  /** The free allowance, in priced units. */
  free: number;
  unitPriceMicros: number;
}

/** The quantities rating prices (instructions only when there are some); `free`: subtract the plan's allowances. */
function metricQuantities(plan: PricePlan, usage: PeriodUsage, free: boolean): MetricQuantity[] {
  const q = (metric: Metric, total: bigint, perUnit: bigint, freeUnits: number, unitPriceMicros: number): MetricQuantity => {
    const allowance = free ? BigInt(freeUnits) * perUnit : 0n;
    return { metric, total, billable: total > allowance ? total - allowance : 0n, perUnit, free: freeUnits, unitPriceMicros };
  };
  const out = [q("requests", BigInt(usage.requests), 1n, plan.freeRequests, plan.requestPriceMicros), q("compute", BigInt(usage.mbMs), MB_MS_PER_GB_S, plan.freeGbSeconds, plan.gbSecondPriceMicros)];
  if (usage.instructions > 0) out.push(q("instructions", BigInt(usage.instructions), GIGA, plan.freeGigaInstructions, plan.gigaInstructionPriceMicros));
  return out;
}

export function ratePeriod(plan: PricePlan, usage: PeriodUsage): RatedLine[] {
  return metricQuantities(plan, usage, true).map((m) => {
    const amount = Number(divRound(m.billable * BigInt(m.unitPriceMicros), m.perUnit * MICROS));
    switch (m.metric) {
      case "requests":
        return { metric: m.metric, description: `Requests: ${fmt(m.total)} (${fmt(m.free)} free)`, quantity: m.billable.toString(), unitPriceMicros: m.unitPriceMicros, amount };
      case "compute":
        return { metric: m.metric, description: `Compute: ${decimal(m.total, m.perUnit, 6)} GB-s (${fmt(m.free)} GB-s free)`, quantity: decimal(m.billable, m.perUnit, 6), unitPriceMicros: m.unitPriceMicros, amount };
      case "instructions":
        return { metric: m.metric, description: `Guest instructions: ${decimal(m.total, m.perUnit, 3)} billion (${fmt(m.free)} billion free)`, quantity: decimal(m.billable, m.perUnit, 9), unitPriceMicros: m.unitPriceMicros, amount };
    }
  });
}

/** Some usage priced at a plan's unit prices, free allowances left out (a job's share of a bill). */
export interface RatedUsage {
  currency: string;
  plan: string;
  lines: Array<{ metric: Metric; quantity: string; unitPriceMicros: number; amountMicros: number }>;
  /** Micro minor units (millionths of a cent for USD), each line rounded half-up once. */
  totalMicros: number;
  /** Minor units (cents), the micro total rounded half-up. */
  total: number;
}

/**
 * Rates a slice of usage (one job's items) with the same quantities and prices as an invoice,
 * without free allowances (they belong to the period, not to a job); amounts in micro minor
 * units, since one job often costs less than a cent.
 */
export function rateUsage(plan: PricePlan, usage: PeriodUsage): RatedUsage {
  const lines = metricQuantities(plan, usage, false).map((m) => ({
    metric: m.metric,
    quantity: m.perUnit === 1n ? m.billable.toString() : decimal(m.billable, m.perUnit, 9),
    unitPriceMicros: m.unitPriceMicros,
    amountMicros: Number(divRound(m.billable * BigInt(m.unitPriceMicros), m.perUnit)),
  }));
  const totalMicros = lines.reduce((s, l) => s + l.amountMicros, 0);
  return { currency: plan.currency, plan: plan.name, lines, totalMicros, total: Number(divRound(BigInt(totalMicros), MICROS)) };
}

const PERIOD = /^(\d{4})-(0[1-9]|1[0-2])$/;

/** Checks "YYYY-MM" and returns the first and last day ("YYYY-MM-DD"). */
export function periodDays(period: string): { from: string; to: string } | undefined {
  const m = PERIOD.exec(period);
  if (m === null) return undefined;
  const last = new Date(Date.UTC(Number(m[1]), Number(m[2]), 0)).getUTCDate();
  return { from: `${period}-01`, to: `${period}-${String(last).padStart(2, "0")}` };
}

export function currentPeriod(now = new Date()): string {
  return now.toISOString().slice(0, 7);
}
