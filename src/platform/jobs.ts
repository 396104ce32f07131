/**
 * Jobs: a deployed app (any runtime) or a POSTed x86-64 program run once per object of a bucket
 * prefix, in parallel, each output written as an object under an output prefix:
 * `<output prefix><key without the input prefix>`. Each object goes in exactly as
 * object-runs.ts feeds one (the request body: stdin, php://input, wsgi.input; its key as
 * PATH_INFO), in the deployment's pool (snapshot mode), under the program's own limits.
 *
 * Durable and resumable: the job and one row per object are written before anything runs; an
 * item is marked ok/failed once, after its output is stored; a restart runs the items still
 * pending and none that finished. Each item is metered (usage mode "job") under a request id
 * fixed per item, so a run cut by a crash and run again is counted once.
 *
 * Sharing: an item takes an instance through the pool's normal acquire path (the deployment's
 * FIFO queue, with web requests), a job holds at most `concurrency` places in it, and all jobs
 * together run at most `maxRunningItems` items (JobLimits), so jobs never take every core.
 * stdio programs (job-targets.ts): a POSTed program with `args`, or an x86 app in stdio mode,
 * runs as a Unix tool (the object on stdin, `args` as argv, stdout the output); its exit code
 * decides: one of `okExitCodes` (default [0]) is ok, another fails the item with `program_exit`
 * (its stdout still stored). A reduce step (job-reduce.ts) runs once after every item finished.
 *
 * Must never: read or write a bucket of another account than the job's, run an app of another
 * account, or count an item's usage twice.
 */
import { randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import type { Platform } from "./index.js";
import { programTarget, readObjectLimited, type RunTarget } from "./object-runs.js";
import { assertAppTakesArgs, assertJobArgs, assertOkExitCodes, jobTarget, programExit, runJobRun } from "./job-targets.js";
import { reduceOutputKey, runReduce } from "./job-reduce.js";
import type { JobCounts, JobItemRow, JobReduceRow, JobRow } from "../store/jobs.js";
import { InputError, ZerocellError } from "../errors.js";
import { log } from "../log.js";
import { estimateJob, estimateTarget, jobCost, type JobCost, type JobEstimate } from "./job-costs.js";

export interface JobLimits {
  /** Objects one job may cover (its prefix listed at creation), objects. */
  maxObjectsPerJob: number;
  /** Largest object fed to a job's program, bytes (also bounded by the app's max_body_bytes). */
  maxObjectBytes: number;
  /** Jobs running at once per account. */
  maxRunningJobsPerAccount: number;
  /** Jobs kept per account (any status). */
  maxJobsPerAccount: number;
  /** Highest `concurrency` a job may ask for, items in flight. */
  maxConcurrencyPerJob: number;
  /** `concurrency` when the job names none. */
  defaultConcurrency: number;
  /** Items in flight across every job of the server. */
  maxRunningItems: number;
  /** Tries per item when no instance was free (pool queue full or its wait bound passed). */
  maxTriesWhenBusy: number;
  /** Extra tries of an item whose sandbox broke under it (engine failure, host crash); each try is metered. */
  maxRetriesOnCrash: number;
}

export const DEFAULT_JOB_LIMITS: JobLimits = {
  maxObjectsPerJob: 100_000,
  maxObjectBytes: 10 * 1024 * 1024,
  maxRunningJobsPerAccount: 4,
  maxJobsPerAccount: 1000,
  maxConcurrencyPerJob: 8,
  defaultConcurrency: 2,
  maxRunningItems: 4,
  maxTriesWhenBusy: 5,
  maxRetriesOnCrash: 1,
};

export interface JobSpec {
  /** A deployed app of the account (its active deployment runs each item)… */
  app?: string;
  /** …or a single static x86-64 ELF, validated like a deployment and kept in the blob store. */
  program?: Buffer;
  /** The program's file name: argv[0] is /app/bin/<name> (busybox picks its applet by it); default "app". */
  programName?: string | undefined;
  input: { bucket: string; prefix: string };
  /** Default: the input bucket, prefix `_jobs/<job id>/`. */
  output?: { bucket: string; prefix: string } | undefined;
  concurrency?: number;
  /** A POSTed program's mode: "stdio" (the default when `args` is given) or "cgi" (the default otherwise). */
  io?: "cgi" | "stdio" | undefined;
  /** argv after argv[0] of a stdio program (a POSTed one, or an x86 app in stdio mode: they replace its own). */
  args?: string[] | undefined;
  /** Exit codes of a stdio program that make an item ok (default [0]; `grep` exits 1 when nothing matched). */
  okExitCodes?: number[] | undefined;
  /** Run once after every item finished, in stdio mode, the ok outputs concatenated on stdin. */
  reduce?: { app?: string | undefined; program?: Buffer | undefined; programName?: string | undefined; args?: string[] | undefined } | undefined;
}

export interface JobReduceView {
  status: JobReduceRow["status"];
  app: string | null;
  program: string | null;
  args: string[] | null;
  outputKey: string | null;
  /** The output's first bytes (UTF-8 text, or base64 with encoding "base64"), null before it ran. */
  output: string | null;
  encoding: "utf8" | "base64" | null;
  outputBytes: number | null;
  truncated: boolean;
  exitCode: number | null;
  error: { code: string; message: string } | null;
}

export interface JobView {
  id: string;
  status: JobRow["status"];
  app: string | null;
  program: string | null;
  input: { bucket: string; prefix: string };
  output: { bucket: string; prefix: string };
  concurrency: number;
  total: number;
  counts: JobCounts;
  createdAt: string;
  finishedAt: string | null;
  io: "cgi" | "stdio" | null;
  args: string[] | null;
  okExitCodes: number[];
  reduce: JobReduceView | null;
  /** Made before the job started (job-costs.ts); null for jobs older than estimates. */
  estimate: JobEstimate | null;
  /** The sum of the job's usage records so far, priced (final once the job stopped and its items in flight finished). */
  cost: JobCost;
}

export interface JobItemView {
  seq: number;
  key: string;
  status: JobItemRow["status"];
  outputKey: string | null;
  httpStatus: number | null;
  error: { code: string; message: string } | null;
  bytesIn: number | null;
  bytesOut: number | null;
  wallMs: number | null;
  exitCode: number | null;
}

/** A stored estimate (JSON written by create); null when missing or unreadable. */
function parseEstimate(text: string | null): JobEstimate | null {
  if (text === null) return null;
  try {
    return JSON.parse(text) as JobEstimate;
  } catch {
    return null;
  }
}

const jobNotFound = (id: string) => new ZerocellError("job_not_found", 404, `no job ${id.slice(0, 40)}`);

/** A FIFO of `size` slots: every waiter is served in arrival order (jobs share it fairly). */
class Slots {
  #free: number;
  readonly #waiters: Array<() => void> = [];
  constructor(size: number) {
    this.#free = size;
  }
  async take(): Promise<void> {
    if (this.#free > 0) {
      this.#free--;
      return;
    }
    await new Promise<void>((r) => this.#waiters.push(r));
  }
  give(): void {
    const next = this.#waiters.shift();
    if (next !== undefined) next();
    else this.#free++;
  }
}

/** A job being run by this process. */
interface Running {
  row: JobRow;
  cancelled: boolean;
  /** Pending items fetched and not yet taken, in order. */
  queue: Array<{ seq: number; key: string }>;
  /** The highest seq fetched so far. */
  fetchedTo: number;
  /** Resolves when every worker of the job has stopped. */
  done: Promise<void>;
  /** The program's bytes (POSTed programs), once read from the blob store. */
  program?: Buffer;
  /** Exit codes that make an item ok. */
  okExitCodes: number[];
}

export class Jobs {
  readonly #p: Platform;
  readonly limits: JobLimits;
  readonly #slots: Slots;
  readonly #running = new Map<string, Running>();
  #stopping = false;

  constructor(p: Platform, limits: Partial<JobLimits> = {}) {
    this.#p = p;
    this.limits = { ...DEFAULT_JOB_LIMITS, ...limits };
    this.#slots = new Slots(this.limits.maxRunningItems);
  }

  /**
   * 1. check the account's limits, 2. check both buckets (the account's own), 3. resolve the
   * program, 4. list the input prefix and estimate, 5. store the job and its items, 6. start it.
   */
  async create(accountId: string, spec: JobSpec): Promise<JobView> {
    return (await this.#create(accountId, spec, false)).view!;
  }

  /** A dry run: every check `create` makes, the listing and the estimate; nothing is stored or started. */
  async estimate(accountId: string, spec: JobSpec): Promise<JobEstimate> {
    return (await this.#create(accountId, spec, true)).estimate;
  }

  /** Items of the job still running in this process (a cancelled job's items in flight finish after the cancel). */
  isActive(id: string): boolean {
    return this.#running.has(id);
  }

  async #create(accountId: string, spec: JobSpec, dryRun: boolean): Promise<{ estimate: JobEstimate; view?: JobView }> {
    const store = this.#p.jobStore;
    const l = this.limits;
    // 1. limits
    if (store.activeCount(accountId) >= l.maxRunningJobsPerAccount) throw new ZerocellError("too_many_jobs", 429, `jobs: ${l.maxRunningJobsPerAccount} jobs of this account are running (limit ${l.maxRunningJobsPerAccount}); wait for one or cancel it`);
    if (store.count(accountId) >= l.maxJobsPerAccount) throw new ZerocellError("too_many_jobs", 429, `jobs: this account has ${l.maxJobsPerAccount} jobs (limit ${l.maxJobsPerAccount})`);
    const concurrency = spec.concurrency ?? l.defaultConcurrency;
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > l.maxConcurrencyPerJob) throw new InputError(`jobs: concurrency must be 1 to ${l.maxConcurrencyPerJob}`, { code: "bad_concurrency" });
    if ((spec.app === undefined) === (spec.program === undefined)) throw new InputError("jobs: name an app or send a program (not both)");
    if (spec.args !== undefined) assertJobArgs(spec.args);
    if (spec.okExitCodes !== undefined) assertOkExitCodes(spec.okExitCodes);
    if (spec.io !== undefined && spec.io !== "cgi" && spec.io !== "stdio") throw new InputError('jobs: io is "cgi" or "stdio"', { code: "bad_io" });
    // A POSTed program with arguments is a stdio program; a CGI program takes none.
    const io = spec.program === undefined ? null : (spec.io ?? (spec.args !== undefined ? "stdio" : "cgi"));
    if (io === "cgi" && spec.args !== undefined && spec.args.length > 0) throw new InputError('jobs: arguments need io = "stdio"', { code: "args_need_stdio" });
    if (spec.app !== undefined && spec.io !== undefined) throw new InputError("jobs: io applies to a POSTed program (an app runs as its manifest says)", { code: "bad_io" });
    const id = `job_${randomUUID().replace(/-/g, "").slice(0, 20)}`;
    // Without an output location the outputs go next to the input: `<input bucket>/_jobs/<job id>/`.
    const output = spec.output ?? { bucket: spec.input.bucket, prefix: `_jobs/${id}/` };
    // 2. buckets: another account's bucket answers like a missing one (no_such_bucket)
    await this.#p.objects.headBucket(accountId, spec.input.bucket);
    await this.#p.objects.headBucket(accountId, output.bucket);
    for (const prefix of [spec.input.prefix, output.prefix]) {
      if (Buffer.byteLength(prefix) > 1024 || prefix.includes("\0")) throw new InputError("jobs: a prefix is at most 1,024 bytes, without NUL", { code: "bad_prefix" });
    }
    // Outputs under the input prefix would overwrite inputs (or become inputs of the same listing).
    // The default output prefix holds this job's fresh id: no input key can be under it.
    if (spec.output !== undefined && spec.input.bucket === output.bucket && (output.prefix.startsWith(spec.input.prefix) || spec.input.prefix.startsWith(output.prefix))) {
      throw new InputError("jobs: the output prefix must not overlap the input prefix in the same bucket", { code: "output_overlaps_input" });
    }
    // 3. program
    let appId: string | null = null;
    let programSha256: string | null = null;
    if (spec.app !== undefined) {
      const app = this.#p.store.listApps(accountId).find((a) => a.name === spec.app);
      if (app === undefined) throw new ZerocellError("app_not_found", 404, `no app named "${spec.app.slice(0, 80)}"`);
      appId = app.id;
      if (spec.args !== undefined) assertAppTakesArgs(this.#p, accountId, appId);
      else this.#appTarget(accountId, appId);
    } else {
      const { sha } = await programTarget(this.#p, accountId, spec.program!, undefined, { io: io!, args: spec.args ?? [], name: spec.programName });
      programSha256 = sha;
    }
    const reduce = spec.reduce === undefined ? undefined : await this.#resolveReduce(accountId, spec.reduce);
    // 4. list (every key now: the job covers the objects that exist when it starts)
    const keys: string[] = [];
    let bytes = 0;
    let after: string | undefined;
    for (;;) {
      const page = await this.#p.objects.listObjects(accountId, spec.input.bucket, { prefix: spec.input.prefix, ...(after === undefined ? {} : { after }), maxKeys: 1000 });
      for (const o of page.objects) {
        keys.push(o.key);
        bytes += o.size;
      }
      if (keys.length > l.maxObjectsPerJob) throw new ZerocellError("job_too_large", 400, `jobs: more than ${l.maxObjectsPerJob} objects under the input prefix (limit ${l.maxObjectsPerJob} per job)`);
      if (!page.isTruncated || page.nextAfter === undefined) break;
      after = page.nextAfter;
    }
    // The reduce output must not be the output of an item.
    if (reduce !== undefined && keys.some((k) => output.prefix + k.slice(spec.input.prefix.length) === reduceOutputKey(output.prefix))) {
      throw new InputError(`jobs: the input key "${(spec.input.prefix + "_reduce").slice(0, 200)}" would overwrite the reduce output; use another output prefix`, { code: "output_overlaps_input" });
    }
    const estimate = estimateJob(this.#p, accountId, estimateTarget(this.#p, accountId, { appId, programSha256 }), keys.length, bytes);
    if (dryRun) return { estimate };
    // 5. store (a POSTed program in the blob store too, for a restart)
    if (spec.program !== undefined) this.#p.blobs.put(spec.program);
    if (spec.reduce?.program !== undefined) this.#p.blobs.put(spec.reduce.program);
    const row = store.create(
      { id, accountId, appId, programSha256, inputBucket: spec.input.bucket, inputPrefix: spec.input.prefix, outputBucket: output.bucket, outputPrefix: output.prefix, concurrency, createdAt: Date.now(), io, args: spec.args === undefined ? null : JSON.stringify(spec.args), okExitCodes: spec.okExitCodes === undefined ? null : JSON.stringify(spec.okExitCodes), programName: spec.program === undefined ? null : (spec.programName ?? null) },
      keys,
      reduce,
      JSON.stringify(estimate),
    );
    log.info("job created", { job: id, objects: keys.length, app: spec.app ?? null, program: programSha256?.slice(0, 16) ?? null, concurrency, reduce: reduce !== undefined });
    // 6. start
    this.#start(row);
    return { estimate, view: this.view(row) };
  }

  /** The reduce step's program: an app of the account (x86 stdio when given args) or a POSTed program (stdio), validated now. */
  async #resolveReduce(accountId: string, r: NonNullable<JobSpec["reduce"]>): Promise<{ appId: string | null; programSha256: string | null; programName: string | null; args: string }> {
    if ((r.app === undefined) === (r.program === undefined)) throw new InputError("jobs: the reduce step names an app or sends a program (not both)", { code: "bad_reduce" });
    if (r.args !== undefined) assertJobArgs(r.args, "reduce.args");
    if (r.app !== undefined) {
      const app = this.#p.store.listApps(accountId).find((a) => a.name === r.app);
      if (app === undefined) throw new ZerocellError("app_not_found", 404, `no app named "${r.app.slice(0, 80)}"`);
      if (r.args !== undefined) assertAppTakesArgs(this.#p, accountId, app.id);
      else this.#appTarget(accountId, app.id);
      return { appId: app.id, programSha256: null, programName: null, args: JSON.stringify(r.args ?? null) };
    }
    // Kept in the blob store by create's step 5 (not by a dry run).
    const { sha } = await programTarget(this.#p, accountId, r.program!, undefined, { io: "stdio", args: r.args ?? [], name: r.programName });
    return { appId: null, programSha256: sha, programName: r.programName ?? null, args: JSON.stringify(r.args ?? []) };
  }

  /** Starts every job a previous process left running (its pending items run; finished ones do not). */
  resumeAll(): void {
    for (const row of this.#p.jobStore.running()) {
      log.info("job resumed", { job: row.id, ...this.#p.jobStore.counts(row.id) });
      this.#start(row);
    }
  }

  /** Cancels a running job: no further item starts; items in flight finish and are recorded. */
  cancel(id: string, accountId: string | undefined): JobView {
    const row = this.#p.jobStore.get(id, accountId);
    if (row === undefined) throw jobNotFound(id);
    const r = this.#running.get(id);
    if (r !== undefined) r.cancelled = true;
    this.#p.jobStore.setStatus(id, "cancelled");
    return this.view(this.#p.jobStore.get(id, undefined)!);
  }

  get(id: string, accountId: string | undefined): JobView {
    const row = this.#p.jobStore.get(id, accountId);
    if (row === undefined) throw jobNotFound(id);
    return this.view(row);
  }

  list(accountId: string | undefined, limit = 100): JobView[] {
    return this.#p.jobStore.list(accountId, limit).map((r) => this.view(r));
  }

  items(id: string, accountId: string | undefined, opts: { status?: JobItemRow["status"]; afterSeq?: number; limit: number }): JobItemView[] {
    if (this.#p.jobStore.get(id, accountId) === undefined) throw jobNotFound(id);
    return this.#p.jobStore.items(id, opts).map((i) => ({
      seq: i.seq,
      key: i.key,
      status: i.status,
      outputKey: i.outputKey,
      httpStatus: i.httpStatus,
      error: i.errorCode === null ? null : { code: i.errorCode, message: i.errorMessage ?? "" },
      bytesIn: i.bytesIn,
      bytesOut: i.bytesOut,
      wallMs: i.wallUs === null ? null : i.wallUs / 1000,
      exitCode: i.exitCode,
    }));
  }

  view(row: JobRow): JobView {
    const app = row.appId === null ? null : (this.#p.store.listApps(row.accountId).find((a) => a.id === row.appId)?.name ?? row.appId);
    return {
      id: row.id,
      status: row.status,
      app,
      program: row.programSha256,
      input: { bucket: row.inputBucket, prefix: row.inputPrefix },
      output: { bucket: row.outputBucket, prefix: row.outputPrefix },
      concurrency: row.concurrency,
      total: row.total,
      counts: this.#p.jobStore.counts(row.id),
      createdAt: new Date(row.createdAt).toISOString(),
      finishedAt: row.finishedAt === null ? null : new Date(row.finishedAt).toISOString(),
      estimate: parseEstimate(this.#p.jobStore.estimateOf(row.id)),
      cost: jobCost(this.#p, row, row.status !== "running" && !this.#running.has(row.id)),
      io: row.io === "cgi" || row.io === "stdio" ? row.io : null,
      args: row.args === null ? null : (JSON.parse(row.args) as string[]),
      okExitCodes: okExitCodesOf(row),
      reduce: this.#reduceView(row),
    };
  }

  #reduceView(row: JobRow): JobReduceView | null {
    const r = this.#p.jobStore.reduce(row.id);
    if (r === undefined) return null;
    const head = r.outputHead === null ? null : Buffer.from(r.outputHead, "base64");
    const text = head?.toString("utf8");
    const isText = head !== null && Buffer.from(text!, "utf8").equals(head);
    return {
      status: r.status,
      app: r.appId === null ? null : (this.#p.store.listApps(row.accountId).find((a) => a.id === r.appId)?.name ?? r.appId),
      program: r.programSha256,
      args: JSON.parse(r.args) as string[] | null,
      outputKey: r.outputKey,
      output: head === null ? null : isText ? text! : head.toString("base64"),
      encoding: head === null ? null : isText ? "utf8" : "base64",
      outputBytes: r.outputBytes,
      truncated: head !== null && r.outputBytes !== null && r.outputBytes > head.length,
      exitCode: r.exitCode,
      error: r.errorCode === null ? null : { code: r.errorCode, message: r.errorMessage ?? "" },
    };
  }

  /** Stops starting items (server shutdown); waits for the items in flight. Jobs stay "running" for the next start. */
  async stop(): Promise<void> {
    this.#stopping = true;
    await Promise.all([...this.#running.values()].map((r) => r.done));
  }

  #start(row: JobRow): void {
    if (this.#running.has(row.id) || this.#stopping) return;
    const r: Running = { row, cancelled: false, queue: [], fetchedTo: -1, done: Promise.resolve(), okExitCodes: okExitCodesOf(row) };
    this.#running.set(row.id, r);
    const workers = Array.from({ length: row.concurrency }, () => this.#work(r));
    r.done = Promise.all(workers)
      .then(async () => {
        if (r.cancelled || this.#stopping) return;
        const counts = this.#p.jobStore.counts(row.id);
        if (counts.pending !== 0) return;
        // Every item finished: the reduce step (if any, and not yet run) before the job is done.
        await runReduce(this.#p, row, this.limits, () => r.cancelled || this.#stopping, {});
        if (r.cancelled || this.#stopping || this.#p.jobStore.reduce(row.id)?.status === "pending") return;
        if (this.#p.jobStore.setStatus(row.id, "done")) log.info("job done", { job: row.id, ...counts });
      })
      .catch((e: unknown) => log.error("job stopped by an error", { job: row.id, err: (e as Error).message.slice(0, 2000) }))
      .finally(() => this.#running.delete(row.id));
  }

  /** The next pending item of a job (fetched from the store in pages), or undefined when none is left. */
  #next(r: Running): { seq: number; key: string } | undefined {
    if (r.queue.length === 0) {
      r.queue = this.#p.jobStore.pending(r.row.id, r.fetchedTo, 256);
      const last = r.queue.at(-1);
      if (last !== undefined) r.fetchedTo = last.seq;
    }
    return r.queue.shift();
  }

  /** One of a job's `concurrency` workers: takes items until none is left or the job stops. */
  async #work(r: Running): Promise<void> {
    for (;;) {
      if (r.cancelled || this.#stopping) return;
      await this.#slots.take();
      try {
        if (r.cancelled || this.#stopping) return;
        const item = this.#next(r);
        if (item === undefined) return;
        await this.#runItem(r, item);
      } finally {
        this.#slots.give();
      }
    }
  }

  /** The app's active deployment and limits, or a 503 when it has none. */
  #appTarget(accountId: string, appId: string): RunTarget {
    const app = this.#p.store.listApps(accountId).find((a) => a.id === appId);
    const deploymentId = app?.activeDeploymentId ?? undefined;
    const manifest = deploymentId === undefined ? undefined : this.#p.deployments.manifest(deploymentId);
    if (deploymentId === undefined || manifest === undefined) throw new ZerocellError("app_inactive", 503, `jobs: the app has no active deployment`);
    return { deploymentId, accountId, appId, maxBodyBytes: manifest.limits.maxBodyBytes, timeoutMs: manifest.limits.timeoutMs, memoryMb: manifest.limits.memoryMb };
  }

  async #target(r: Running): Promise<RunTarget> {
    // A program is read from the blob store once per process (validated again after a restart);
    // each item touches its in-memory deployment so it stays registered while the job runs.
    const row = r.row;
    return jobTarget(this.#p, row.accountId, { appId: row.appId, programSha256: row.programSha256, io: row.io === "stdio" ? "stdio" : row.io === "cgi" ? "cgi" : null, args: row.args === null ? null : (JSON.parse(row.args) as string[]), name: row.programName }, r);
  }

  /**
   * One item: 1. read the object, 2. run the program on it (metered as "job"), 3. store its
   * output, 4. record ok or failed. Failures are the item's, never the job's.
   */
  async #runItem(r: Running, item: { seq: number; key: string }): Promise<void> {
    const job = r.row;
    const t0 = performance.now();
    const wallUs = () => Math.max(1, Math.round((performance.now() - t0) * 1000));
    let bytesIn: number | undefined;
    try {
      const target = await this.#target(r);
      // 1. read
      const object = await readObjectLimited(this.#p, job.accountId, job.inputBucket, item.key, Math.min(this.limits.maxObjectBytes, target.maxBodyBytes));
      bytesIn = object.body.length;
      // 2. run (busy pools waited out, a broken sandbox tried once more: runJobRun)
      const result = await runJobRun(this.#p, target, { bucket: job.inputBucket, ...object }, `job-${job.id}-${item.seq}`, this.limits, () => r.cancelled || this.#stopping, { job: job.id, seq: item.seq });
      const out = Buffer.from(result.body.buffer, result.body.byteOffset, result.body.byteLength);
      // A stdio program's exit code decides (its stdout is stored either way); otherwise the status.
      const exit = programExit(result);
      if (exit === undefined && result.status >= 400) {
        const text = out.subarray(0, 200).toString("utf8").replace(/[\u0000-\u001f]+/g, " ").trim();
        this.#p.usage.flush();
        this.#p.jobStore.finishItem(job.id, item.seq, { status: "failed", errorCode: "program_failed", errorMessage: `the program answered status ${result.status}${text === "" ? "" : `: ${text}`}`, httpStatus: result.status, bytesIn, bytesOut: out.length, wallUs: wallUs() });
        return;
      }
      // 3. store the output under the output prefix
      const outputKey = job.outputPrefix + item.key.slice(job.inputPrefix.length);
      const contentType = result.headers.find(([k]) => k.toLowerCase() === "content-type")?.[1] ?? "application/octet-stream";
      await this.#p.objects.putObject(job.accountId, job.outputBucket, outputKey, Readable.from([out]), { contentType: contentType.slice(0, 256), contentLength: out.length, metadata: { "zerocell-job": job.id } });
      // 4. record: the item's usage is written first (a crash in between runs the item again,
      // and its usage record, under the same request id, is not counted twice)
      this.#p.usage.flush();
      if (exit !== undefined && !r.okExitCodes.includes(exit.code)) {
        const errorMessage = `the program exited with status ${exit.code}${exit.stderr === "" ? "" : `: ${exit.stderr}`}`;
        this.#p.jobStore.finishItem(job.id, item.seq, { status: "failed", errorCode: "program_exit", errorMessage, exitCode: exit.code, outputKey, httpStatus: result.status, bytesIn, bytesOut: out.length, wallUs: wallUs() });
        return;
      }
      this.#p.jobStore.finishItem(job.id, item.seq, { status: "ok", outputKey, httpStatus: result.status, bytesIn, bytesOut: out.length, wallUs: wallUs(), ...(exit === undefined ? {} : { exitCode: exit.code }) });
    } catch (e) {
      // A server shutting down cuts items in flight: they stay pending and run after the restart.
      if (this.#stopping || this.#p.pool.closed) return;
      const code = e instanceof ZerocellError ? e.code : "internal_error";
      const message = e instanceof ZerocellError && e.code !== "guest_error" ? e.message : "sandbox: the program's engine failed";
      // The engine's own failure (guest_error) may carry internals: the log has it, the item a generic message.
      if (!(e instanceof ZerocellError) || e.code === "guest_error") log.error("job item failed", { job: job.id, seq: item.seq, code, err: (e as Error).message.slice(0, 2000) });
      // A bucket deleted under a running job fails each item with no_such_bucket (recorded, not thrown).
      this.#p.usage.flush();
      this.#p.jobStore.finishItem(job.id, item.seq, { status: "failed", errorCode: code, errorMessage: message.slice(0, 1000), ...(bytesIn === undefined ? {} : { bytesIn }), wallUs: wallUs() });
    }
  }
}

/** The exit codes that make an item of this job ok (default [0]). */
function okExitCodesOf(row: JobRow): number[] {
  return row.okExitCodes === null ? [0] : (JSON.parse(row.okExitCodes) as number[]);
}

/** The job service of a platform (one per platform, made on first use). */
const services = new WeakMap<Platform, Jobs>();
export function jobsOf(p: Platform, limits?: Partial<JobLimits>): Jobs {
  let j = services.get(p);
  if (j === undefined) services.set(p, (j = new Jobs(p, limits)));
  return j;
}
