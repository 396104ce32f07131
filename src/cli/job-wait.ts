/**
 * What `jobs …` and `job run` share: the job's JSON as the admin API answers it, and waiting for
 * a job to stop running: following its progress stream (server-sent events, job-events.ts;
 * polling when the stream cannot be had), with a cli-progress bar with objects/s and ETA on a
 * terminal.
 */
import cliProgress from "cli-progress";
import type { CliKit } from "./access-keys.js";
import { followJob } from "./job-events.js";
import { costLine, estimateLine, type CostJson, type EstimateJson } from "./job-costs.js";

export interface JobJson {
  id: string;
  status: "running" | "done" | "cancelled";
  app: string | null;
  program: string | null;
  input: { bucket: string; prefix: string };
  output: { bucket: string; prefix: string };
  concurrency: number;
  total: number;
  counts: { pending: number; ok: number; failed: number };
  createdAt: string;
  finishedAt: string | null;
  estimate?: EstimateJson | null;
  cost?: CostJson;
  reduce?: {
    status: "pending" | "ok" | "failed";
    outputKey: string | null;
    output: string | null;
    encoding: "utf8" | "base64" | null;
    truncated: boolean;
    exitCode: number | null;
    error: { code: string; message: string } | null;
  } | null;
}

export interface ItemJson {
  seq: number;
  key: string;
  status: string;
  outputKey: string | null;
  error: { code: string; message: string } | null;
  exitCode?: number | null;
  output?: string | null;
  encoding?: "utf8" | "base64" | null;
  truncated?: boolean;
}

const POLL_MS = 500;

export function jobSummary(j: JobJson): string {
  const lines = [`${j.id}  ${j.status}  ${j.counts.ok + j.counts.failed}/${j.total} done (ok ${j.counts.ok}, failed ${j.counts.failed}, pending ${j.counts.pending})`];
  if (j.estimate != null) lines.push(`  ${estimateLine(j.estimate)}`);
  if (j.cost !== undefined) lines.push(`  ${costLine(j.cost)}${j.status === "running" ? " (so far)" : ""}`);
  return lines.join("\n");
}

/** Follows the job's progress stream (else polls) until it stops running; a progress bar on a terminal (stderr). */
export async function waitForJob<T extends { url: string; token: string }>(kit: CliKit<T>, target: T, job: JobJson): Promise<JobJson> {
  const bar = process.stderr.isTTY ? new cliProgress.SingleBar({ format: "{bar} {value}/{total} objects | {rate} objects/s | ETA {etaText} | failed {failed}", stream: process.stderr, hideCursor: true }, cliProgress.Presets.shades_classic) : undefined;
  const t0 = Date.now();
  const done0 = job.counts.ok + job.counts.failed;
  bar?.start(job.total, done0, { rate: "0", etaText: "?", failed: job.counts.failed });
  try {
    if (job.status === "running") {
      try {
        // The server's rate (over its last items) and ETA.
        return await followJob<JobJson>(target, job.id, (p) => bar?.update(p.done, { rate: (p.rate ?? 0).toFixed(1), etaText: p.etaSeconds === null ? "?" : `${p.etaSeconds}s`, failed: p.counts.failed }));
      } catch (e) {
        if (process.env.ZEROCELL_DEBUG !== undefined) process.stderr.write(`${(e as Error).message}; polling\n`);
      }
    }
    while (job.status === "running") {
      await new Promise((r) => setTimeout(r, POLL_MS));
      job = ((await kit.api(target, "GET", `/v1/jobs/${encodeURIComponent(job.id)}`)) as { job: JobJson }).job;
      const done = job.counts.ok + job.counts.failed;
      const rate = (done - done0) / Math.max(0.001, (Date.now() - t0) / 1000);
      bar?.update(done, { rate: rate.toFixed(1), etaText: rate > 0 ? `${Math.round(job.counts.pending / rate)}s` : "?", failed: job.counts.failed });
    }
  } finally {
    bar?.stop();
  }
  return job;
}
