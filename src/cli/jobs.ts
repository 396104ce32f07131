/**
 * `zerocell jobs run|status|list|cancel`: a deployed app or a static x86-64 program run once per
 * object of a bucket prefix, outputs written under an output prefix (the admin API's /v1/jobs).
 * `run --wait` (and `status --wait`) follows the job's progress stream (server-sent events,
 * job-events.ts; polling when the stream cannot be had) and draws a progress bar with objects/s
 * and ETA on a terminal (job-wait.ts). `run --dry-run` prints the estimate only; `status` shows
 * the estimate and the cost (job-costs.ts). `zerocell job run` (job-run.ts) is the Unix-tool
 * form: argv, stdin, stdout, reduce.
 */
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import type { CliKit } from "./access-keys.js";
import { jobSummary as summary, waitForJob, type ItemJson, type JobJson } from "./job-wait.js";
import { registerJobRunCommand } from "./job-run.js";
import { estimateLine, type EstimateJson } from "./job-costs.js";

export function registerJobCommands<T extends { url: string; token: string }>(program: Command, kit: CliKit<T>): void {
  registerJobRunCommand(program, kit);
  const jobs = program.command("jobs").description("run an app or an x86-64 program once per object of a bucket prefix");

  const wait = (target: T, job: JobJson): Promise<JobJson> => waitForJob(kit, target, job);

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
