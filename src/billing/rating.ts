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

export function ratePeriod(plan: PricePlan, usage: PeriodUsage): RatedLine[] {
  const lines: RatedLine[] = [];
  // Requests
  const req = BigInt(usage.requests);
  const reqBillable = req > BigInt(plan.freeRequests) ? req - BigInt(plan.freeRequests) : 0n;
  lines.push({
    metric: "requests",
    description: `Requests: ${fmt(req)} (${fmt(plan.freeRequests)} free)`,
    quantity: reqBillable.toString(),
    unitPriceMicros: plan.requestPriceMicros,
    amount: Number(divRound(reqBillable * BigInt(plan.requestPriceMicros), MICROS)),
  });
  // Compute: GB-seconds
  const mbMs = BigInt(usage.mbMs);
  const freeMbMs = BigInt(plan.freeGbSeconds) * MB_MS_PER_GB_S;
  const mbMsBillable = mbMs > freeMbMs ? mbMs - freeMbMs : 0n;
  lines.push({
    metric: "compute",
    description: `Compute: ${decimal(mbMs, MB_MS_PER_GB_S, 6)} GB-s (${fmt(plan.freeGbSeconds)} GB-s free)`,
    quantity: decimal(mbMsBillable, MB_MS_PER_GB_S, 6),
    unitPriceMicros: plan.gbSecondPriceMicros,
    amount: Number(divRound(mbMsBillable * BigInt(plan.gbSecondPriceMicros), MB_MS_PER_GB_S * MICROS)),
  });
  // Instructions (x86 guests)
  if (usage.instructions > 0) {
    const ins = BigInt(usage.instructions);
    const freeIns = BigInt(plan.freeGigaInstructions) * GIGA;
    const insBillable = ins > freeIns ? ins - freeIns : 0n;
    lines.push({
      metric: "instructions",
      description: `Guest instructions: ${decimal(ins, GIGA, 3)} billion (${fmt(plan.freeGigaInstructions)} billion free)`,
      quantity: decimal(insBillable, GIGA, 9),
      unitPriceMicros: plan.gigaInstructionPriceMicros,
      amount: Number(divRound(insBillable * BigInt(plan.gigaInstructionPriceMicros), GIGA * MICROS)),
    });
  }
  return lines;
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
