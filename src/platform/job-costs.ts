/**
 * What a job costs: an estimate before it starts, and the actual cost after (src/platform/jobs.ts
 * puts both in the job's view).
 *
 * Estimate: the objects and bytes under the input prefix, and the usage a run over them should
 * take — fitted to the program's (or app's) own past runs on objects in this account when there
 * are some (billed ms, CPU and instructions against bytes read: a line `a + b × bytes` per
 * object, least squares over the newest runs), else the stated defaults per object and per byte
 * (ESTIMATE_DEFAULTS). Priced with the account's plan (rating.ts `rateUsage`: unit prices, no
 * free allowance). The basis used is part of the answer.
 *
 * Cost: the sum of the job's usage records (request ids `job-<id>-…`, retries included), read
 * from the records every time (src/billing/job-usage.ts), never a counter of its own.
 * Must never: use another account's runs for an estimate, or count a record outside the job.
 */
import { LRUCache } from "lru-cache";
import type { Platform } from "./index.js";
import type { JobRow } from "../store/jobs.js";
import { PROGRAM_LIMITS } from "./object-runs.js";
import { rateUsage, type RatedUsage, type UsageHistory, type UsageTotals } from "../billing/index.js";

/** What an estimate assumes when the program has no history in the account. */
export const ESTIMATE_DEFAULTS = {
  /** Billed wall time per object, ms (each run is billed at least 1 ms). */
  billedMsPerObject: 5,
  /** Billed wall time per MiB read, ms (~50 MB/s). */
  billedMsPerMiB: 20,
  /** Guest instructions per object (x86 only: process start, exit). */
  instructionsPerObject: 100_000,
  /** Guest instructions per byte read (x86 only). */
  instructionsPerByte: 20,
} as const;

export const ESTIMATE_LIMITS = {
  /** Newest runs an estimate fits to, at most. */
  historyRuns: 10_000,
} as const;

const MIB = 1024 * 1024;

/** The usage a job is expected to take (or took): the quantities rating prices, and CPU. */
export interface EstimatedUsage {
  requests: number;
  /** Billed MB-ms (billed ms × memory). */
  mbMs: number;
  billedMs: number;
  cpuMs: number;
  instructions: number;
}

export interface JobEstimate {
  objects: number;
  /** Bytes of the objects under the input prefix when it was listed. */
  bytesIn: number;
  /** "history": fitted to `runs` past runs of the same program or app in this account; "default": ESTIMATE_DEFAULTS. */
  basis:
    | { kind: "history"; runs: number; perObject: Per; perByte: Per }
    | { kind: "default"; perObject: Per; perByte: Per };
  usage: EstimatedUsage;
  cost: RatedUsage;
  madeAt: string;
}

/** Per object or per byte read: billed ms, CPU ms and guest instructions. */
interface Per {
  billedMs: number;
  cpuMs: number;
  instructions: number;
}

export interface JobCost {
  usage: UsageTotals & { gbSeconds: number };
  cost: RatedUsage;
}

/** What runs each item: the usage records' app id, its billed memory, and whether it counts instructions (x86). */
export interface EstimateTarget {
  usageAppId: string;
  memoryMb: number;
  x86: boolean;
}

/** The estimate target of a job's program or app (an app without an active deployment: its newest limits are unknown, so 128 MB). */
export function estimateTarget(p: Platform, accountId: string, job: { appId: string | null; programSha256: string | null }): EstimateTarget {
  if (job.programSha256 !== null) return { usageAppId: `program:${job.programSha256.slice(0, 24)}`, memoryMb: PROGRAM_LIMITS.memoryMb, x86: true };
  const app = p.store.listApps(accountId).find((a) => a.id === job.appId);
  const manifest = app?.activeDeploymentId == null ? undefined : p.deployments.manifest(app.activeDeploymentId);
  return { usageAppId: job.appId ?? "", memoryMb: manifest?.limits.memoryMb ?? 128, x86: manifest?.runtime === "x86" };
}

/** Least squares y = a + b·x over the history; a per-object mean when the sizes do not vary or a term would be negative. */
function fitLine(h: UsageHistory, y: { sumY: number; sumXY: number }): { a: number; b: number } {
  const n = h.n;
  const den = n * h.sumXX - h.sumX * h.sumX;
  if (n >= 2 && den > 1e-9 * n * h.sumXX) {
    const b = (n * y.sumXY - h.sumX * y.sumY) / den;
    const a = (y.sumY - b * h.sumX) / n;
    if (a >= 0 && b >= 0) return { a, b };
  }
  return { a: y.sumY / n, b: 0 };
}

/** The estimate of a run over `objects` objects of `bytes` bytes in all. */
export function estimateJob(p: Platform, accountId: string, target: EstimateTarget, objects: number, bytes: number): JobEstimate {
  const h = p.billing.usageHistory(accountId, target.usageAppId, ESTIMATE_LIMITS.historyRuns);
  let perObject: Per;
  let perByte: Per;
  let basis: JobEstimate["basis"];
  if (h.n > 0) {
    const ms = fitLine(h, h.billedMs);
    const cpu = fitLine(h, h.cpuUs);
    const ins = fitLine(h, h.instructions);
    perObject = { billedMs: ms.a, cpuMs: cpu.a / 1000, instructions: ins.a };
    perByte = { billedMs: ms.b, cpuMs: cpu.b / 1000, instructions: ins.b };
    basis = { kind: "history", runs: h.n, perObject, perByte };
  } else {
    const d = ESTIMATE_DEFAULTS;
    perObject = { billedMs: d.billedMsPerObject, cpuMs: d.billedMsPerObject, instructions: target.x86 ? d.instructionsPerObject : 0 };
    perByte = { billedMs: d.billedMsPerMiB / MIB, cpuMs: d.billedMsPerMiB / MIB, instructions: target.x86 ? d.instructionsPerByte : 0 };
    basis = { kind: "default", perObject, perByte };
  }
  const total = (k: keyof Per) => Math.max(0, perObject[k] * objects + perByte[k] * bytes);
  // Every run is billed at least 1 ms.
  const billedMs = Math.max(objects, Math.round(total("billedMs")));
  const usage: EstimatedUsage = { requests: objects, mbMs: billedMs * target.memoryMb, billedMs, cpuMs: Math.round(total("cpuMs")), instructions: Math.round(total("instructions")) };
  const cost = rateUsage(p.billing.planOf(accountId), { requests: usage.requests, mbMs: usage.mbMs, instructions: usage.instructions });
  return { objects, bytesIn: bytes, basis, usage, cost, madeAt: new Date().toISOString() };
}

/**
 * Sums of finished jobs (stopped a minute ago or more, no item in flight): their records never
 * change again (request ids are unique, written once; each item's record is flushed before the
 * item is marked, and the minute covers a flush that failed and is retried), so the query's
 * answer is kept rather than run again (~75 ms for 100,000 records on this machine). The price is
 * applied each time (a plan may change).
 */
const finishedTotals = new LRUCache<string, UsageTotals>({ max: 10_000 });

/** How long after a job stopped its sums are taken as final, ms. */
const FINAL_AFTER_MS = 60_000;

/**
 * The job's usage records summed and priced with the account's plan (items still running count
 * once their record is written). `stopped`: the job is not running and none of its items is in flight.
 */
export function jobCost(p: Platform, row: Pick<JobRow, "id" | "accountId" | "finishedAt">, stopped = false): JobCost {
  // The trailing "-" keeps job_x from matching job_xy (ids have a fixed length anyway).
  const u = finishedTotals.get(row.id) ?? p.billing.usageOfRequests(row.accountId, `job-${row.id}-`);
  if (stopped && row.finishedAt !== null && Date.now() - row.finishedAt >= FINAL_AFTER_MS) finishedTotals.set(row.id, u);
  const cost = rateUsage(p.billing.planOf(row.accountId), { requests: u.requests, mbMs: u.mbMs, instructions: u.instructions });
  return { usage: { ...u, gbSeconds: u.mbMs / 1024 / 1000 }, cost };
}
