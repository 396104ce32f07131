/**
 * What jobs cost, for people: `zerocell usage --jobs` (GET /v1/usage/jobs: per job the objects,
 * the estimate made before it started and the actual cost, the sum of its items' usage
 * records), and the estimate/cost lines of `zerocell jobs status` and `jobs run --dry-run`.
 */
import type { CliKit } from "./access-keys.js";

export interface RatedJson {
  currency: string;
  plan: string;
  totalMicros: number;
  total: number;
}

export interface EstimateJson {
  objects: number;
  bytesIn: number;
  basis: { kind: "history" | "default"; runs?: number };
  usage: { requests: number; mbMs: number; billedMs: number; cpuMs: number; instructions: number };
  cost: RatedJson;
}

export interface CostJson {
  usage: { records: number; requests: number; errors: number; gbSeconds: number; wallUs: number; cpuUs: number; instructions: number; bytesIn: number; bytesOut: number };
  cost: RatedJson;
}

/** Micro minor units → the currency's major unit with 6 decimals ("0.000123 usd"); a job often costs less than a cent. */
export function money(r: RatedJson): string {
  return `${(r.totalMicros / 100_000_000).toFixed(6)} ${r.currency}`;
}

export function estimateLine(e: EstimateJson): string {
  const basis = e.basis.kind === "history" ? `basis: ${e.basis.runs ?? 0} past runs of this program` : "basis: default rates, no past runs";
  return `estimate: ${e.objects} objects, ${e.bytesIn} bytes, ${e.usage.billedMs} billed ms, ${e.usage.instructions} instructions → ${money(e.cost)} (${basis})`;
}

export function costLine(c: CostJson): string {
  const u = c.usage;
  return `cost: ${u.records} runs, ${u.gbSeconds.toFixed(6)} GB-s, CPU ${(u.cpuUs / 1000).toFixed(1)} ms, ${u.instructions} instructions, read ${u.bytesIn} bytes, wrote ${u.bytesOut} bytes → ${money(c.cost)}`;
}

interface JobCostRowJson {
  id: string;
  status: string;
  app: string | null;
  program: string | null;
  objects: number;
  createdAt: string;
  estimate: EstimateJson | null;
  cost: CostJson;
}

/** `zerocell usage --jobs`: one row per job, newest first. */
export async function printJobUsage<T extends { url: string; token: string }>(kit: CliKit<T>, target: T, opts: { account?: string; json?: boolean }): Promise<void> {
  const qs = opts.account === undefined ? "" : `?account=${encodeURIComponent(opts.account)}`;
  const res = (await kit.api(target, "GET", `/v1/usage/jobs${qs}`)) as { jobs: JobCostRowJson[] };
  kit.print(opts.json === true, res, () =>
    kit.table([
      ["JOB", "STATUS", "PROGRAM", "OBJECTS", "BYTES IN", "ESTIMATED", "ACTUAL", "RUNS", "INSTRUCTIONS", "CPU MS", "BASIS"],
      ...res.jobs.map((j) => [
        j.id,
        j.status,
        j.app ?? `x86:${(j.program ?? "").slice(0, 12)}`,
        String(j.objects),
        String(j.cost.usage.bytesIn),
        j.estimate === null ? "-" : money(j.estimate.cost),
        money(j.cost.cost),
        String(j.cost.usage.records),
        String(j.cost.usage.instructions),
        (j.cost.usage.cpuUs / 1000).toFixed(1),
        j.estimate === null ? "-" : j.estimate.basis.kind === "history" ? `history (${j.estimate.basis.runs ?? 0} runs)` : "default",
      ]),
    ]),
  );
}
