/**
 * `zerocell jobs run|status|list|cancel`: a deployed app or a static x86-64 program run once per
 * object of a bucket prefix, outputs written under an output prefix (the admin API's /v1/jobs).
 * `run --wait` (and `status --wait`) follows the job's progress stream (server-sent events,
 * job-events.ts; polling when the stream cannot be had) and draws a progress bar with objects/s
 * and ETA on a terminal. `run --dry-run` prints the estimate only; `status` shows the estimate
 * and the cost (job-costs.ts).
 */
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import cliProgress from "cli-progress";
import type { CliKit } from "./access-keys.js";
import { followJob } from "./job-events.js";
import { costLine, estimateLine, type CostJson, type EstimateJson } from "./job-costs.js";

interface JobJson {
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
}

interface ItemJson {
  seq: number;
  key: string;
  status: string;
  outputKey: string | null;
  error: { code: string; message: string } | null;
}

const POLL_MS = 500;

function summary(j: JobJson): string {
  const lines = [`${j.id}  ${j.status}  ${j.counts.ok + j.counts.failed}/${j.total} done (ok ${j.counts.ok}, failed ${j.counts.failed}, pending ${j.counts.pending})`];
  if (j.estimate != null) lines.push(`  ${estimateLine(j.estimate)}`);
  if (j.cost !== undefined) lines.push(`  ${costLine(j.cost)}${j.status === "running" ? " (so far)" : ""}`);
  return lines.join("\n");
}

export function registerJobCommands<T extends { url: string; token: string }>(program: Command, kit: CliKit<T>): void {
  const jobs = program.command("jobs").description("run an app or an x86-64 program once per object of a bucket prefix");

  /** Follows the job's progress stream (else polls) until it is done; a progress bar on a terminal. */
  const wait = async (target: T, job: JobJson): Promise<JobJson> => {
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
  };

  /** The job and, when it had failures, each failed object with its error. */
  const report = async (target: T, job: JobJson, json: boolean): Promise<void> => {
    const failed = job.counts.failed === 0 ? [] : ((await kit.api(target, "GET", `/v1/jobs/${encodeURIComponent(job.id)}?items=failed&limit=10000`)) as { items: ItemJson[] }).items;
    kit.print(json, { job, failed }, () => [summary(job), ...failed.map((i) => `  failed ${i.key}: ${i.error?.message ?? ""} (${i.error?.code ?? ""})`)].join("\n"));
    if (job.counts.failed > 0 && job.status === "done") process.exitCode = 2;
  };

  jobs
    .command("run")
    .description("start a job: --app NAME (a deployed app) or --program FILE (a static x86-64 ELF)")
    .option("--app <name>", "a deployed app of your account")
    .option("--program <file>", "a static x86-64 ELF program (validated like a deployment)")
    .requiredOption("--input <bucket/prefix>", "the objects to run on")
    .requiredOption("--output <bucket/prefix>", "where each output goes: <output prefix><key without the input prefix>")
    .option("--concurrency <n>", "objects in flight at once", (v) => Number(v))
    .option("--wait", "wait for the job to finish (a progress bar on a terminal)")
    .option("--dry-run", "print the estimate (objects, bytes, usage, cost and its basis); start nothing")
    .addOption(kit.dataOption())
    .addOption(kit.jsonOption())
    .action(async (opts: { app?: string; program?: string; input: string; output: string; concurrency?: number; wait?: boolean; dryRun?: boolean; data?: string; json?: boolean }) => {
      if ((opts.app === undefined) === (opts.program === undefined)) kit.fail("name --app or --program (one of them)");
      const target = kit.findTarget(opts);
      let res: { job: JobJson };
      if (opts.dryRun === true) {
        const est = (await (opts.app !== undefined
          ? kit.api(target, "POST", "/v1/jobs", Buffer.from(JSON.stringify({ app: opts.app, input: opts.input, output: opts.output, estimate: true })), "application/json")
          : kit.api(target, "POST", `/v1/jobs?${new URLSearchParams({ input: opts.input, output: opts.output, dry_run: "1" }).toString()}`, readFileSync(opts.program!), "application/octet-stream"))) as { estimate: EstimateJson };
        return kit.print(opts.json === true, est, () => estimateLine(est.estimate));
      }
      if (opts.app !== undefined) {
        const body = { app: opts.app, input: opts.input, output: opts.output, ...(opts.concurrency === undefined ? {} : { concurrency: opts.concurrency }) };
        res = (await kit.api(target, "POST", "/v1/jobs", Buffer.from(JSON.stringify(body)), "application/json")) as { job: JobJson };
      } else {
        const qs = new URLSearchParams({ input: opts.input, output: opts.output, ...(opts.concurrency === undefined ? {} : { concurrency: String(opts.concurrency) }) });
        res = (await kit.api(target, "POST", `/v1/jobs?${qs.toString()}`, readFileSync(opts.program!), "application/octet-stream")) as { job: JobJson };
      }
      if (opts.wait !== true) return kit.print(opts.json === true, res, () => `started ${summary(res.job)}`);
      await report(target, await wait(target, res.job), opts.json === true);
    });

  jobs
    .command("status")
    .argument("<id>")
    .option("--wait", "wait for the job to finish (a progress bar on a terminal)")
    .option("--items <which>", "list items too: all, ok, failed or pending")
    .addOption(kit.dataOption())
    .addOption(kit.jsonOption())
    .action(async (id: string, opts: { wait?: boolean; items?: string; data?: string; json?: boolean }) => {
      const target = kit.findTarget(opts);
      let job = ((await kit.api(target, "GET", `/v1/jobs/${encodeURIComponent(id)}`)) as { job: JobJson }).job;
      if (opts.wait === true) job = await wait(target, job);
      if (opts.items === undefined) return report(target, job, opts.json === true);
      const res = (await kit.api(target, "GET", `/v1/jobs/${encodeURIComponent(id)}?items=${encodeURIComponent(opts.items)}&limit=10000`)) as { job: JobJson; items: ItemJson[] };
      kit.print(opts.json === true, res, () => [summary(res.job), kit.table([["SEQ", "KEY", "STATUS", "OUTPUT / ERROR"], ...res.items.map((i) => [String(i.seq), i.key, i.status, i.outputKey ?? (i.error === null ? "" : `${i.error.code}: ${i.error.message}`)])])].join("\n"));
    });

  jobs
    .command("list")
    .addOption(kit.dataOption())
    .addOption(kit.jsonOption())
    .action(async (opts: { data?: string; json?: boolean }) => {
      const res = (await kit.api(kit.findTarget(opts), "GET", "/v1/jobs")) as { jobs: JobJson[] };
      kit.print(opts.json === true, res, () =>
        kit.table([["ID", "STATUS", "PROGRAM", "INPUT", "OUTPUT", "DONE", "FAILED", "CREATED"], ...res.jobs.map((j) => [j.id, j.status, j.app ?? `x86:${(j.program ?? "").slice(0, 12)}`, `${j.input.bucket}/${j.input.prefix}`, `${j.output.bucket}/${j.output.prefix}`, `${j.counts.ok + j.counts.failed}/${j.total}`, String(j.counts.failed), j.createdAt])]),
      );
    });

  jobs
    .command("cancel")
    .argument("<id>")
    .addOption(kit.dataOption())
    .addOption(kit.jsonOption())
    .action(async (id: string, opts: { data?: string; json?: boolean }) => {
      const res = (await kit.api(kit.findTarget(opts), "POST", `/v1/jobs/${encodeURIComponent(id)}/cancel`)) as { job: JobJson };
      kit.print(opts.json === true, res, () => `cancelled ${summary(res.job)}`);
    });
}
