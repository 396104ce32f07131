/**
 * Jobs and their items (tables `jobs`, `job_items`): what src/platform/jobs.ts runs and resumes.
 * An item is written once when it finishes (ok or failed); one still "pending" after a restart
 * is run again, one that finished never is. Each finished item gets the next `finish_no` of its job
 * (1, 2, …) in the same statement: the progress stream's event ids (src/platform/job-events.ts).
 * Must never: return a job of another account to a call that names an account.
 */
import type { Statement } from "better-sqlite3";
import type { OpenedDb } from "./db.js";

export type JobStatus = "running" | "done" | "cancelled";
export type JobItemStatus = "pending" | "ok" | "failed";

export interface JobRow {
  id: string;
  accountId: string;
  appId: string | null;
  programSha256: string | null;
  inputBucket: string;
  inputPrefix: string;
  outputBucket: string;
  outputPrefix: string;
  concurrency: number;
  status: JobStatus;
  total: number;
  createdAt: number;
  finishedAt: number | null;
  /** How a POSTed program meets each object ("cgi" | "stdio"); null: cgi, or the app's own. */
  io: string | null;
  /** The program's arguments as a JSON array (stdio mode); null: none, or the app's own. */
  args: string | null;
  /** Exit codes that count as ok, a JSON array; null: [0]. */
  okExitCodes: string | null;
  /** A POSTed program's file name (argv[0] /app/bin/<name>); null: "app". */
  programName: string | null;
}

export type JobReduceStatus = "pending" | "ok" | "failed";

/** A job's reduce step (table job_reduces). */
export interface JobReduceRow {
  jobId: string;
  appId: string | null;
  programSha256: string | null;
  programName: string | null;
  /** JSON array of strings, or "null" (an app's own arguments). */
  args: string;
  status: JobReduceStatus;
  outputKey: string | null;
  /** The first bytes of the output, base64. */
  outputHead: string | null;
  outputBytes: number | null;
  exitCode: number | null;
  errorCode: string | null;
  errorMessage: string | null;
  bytesIn: number | null;
  wallUs: number | null;
  finishedAt: number | null;
}

export interface JobReduceResult {
  status: "ok" | "failed";
  outputKey?: string;
  outputHead?: string;
  outputBytes?: number;
  exitCode?: number;
  errorCode?: string;
  errorMessage?: string;
  bytesIn?: number;
  wallUs: number;
}

export interface JobItemRow {
  seq: number;
  key: string;
  status: JobItemStatus;
  outputKey: string | null;
  errorCode: string | null;
  errorMessage: string | null;
  httpStatus: number | null;
  bytesIn: number | null;
  bytesOut: number | null;
  wallUs: number | null;
  finishedAt: number | null;
  exitCode: number | null;
}

export interface JobItemResult {
  status: "ok" | "failed";
  outputKey?: string;
  errorCode?: string;
  errorMessage?: string;
  httpStatus?: number;
  bytesIn?: number;
  bytesOut?: number;
  wallUs: number;
  exitCode?: number;
}

/** A finished item, in the order items finished (`no` = its finish_no). */
export interface FinishedItem {
  no: number;
  seq: number;
  key: string;
  status: "ok" | "failed";
  errorCode: string | null;
}

export interface JobCounts {
  pending: number;
  ok: number;
  failed: number;
}

const JOB_COLUMNS = `id, account_id AS accountId, app_id AS appId, program_sha256 AS programSha256, input_bucket AS inputBucket, input_prefix AS inputPrefix,
  output_bucket AS outputBucket, output_prefix AS outputPrefix, concurrency, status, total, created_at AS createdAt, finished_at AS finishedAt,
  io, args, ok_exit_codes AS okExitCodes, program_name AS programName`;
const ITEM_COLUMNS = `seq, key, status, output_key AS outputKey, error_code AS errorCode, error_message AS errorMessage, http_status AS httpStatus,
  bytes_in AS bytesIn, bytes_out AS bytesOut, wall_us AS wallUs, finished_at AS finishedAt, exit_code AS exitCode`;
const REDUCE_COLUMNS = `job_id AS jobId, app_id AS appId, program_sha256 AS programSha256, program_name AS programName, args, status, output_key AS outputKey, output_head AS outputHead,
  output_bytes AS outputBytes, exit_code AS exitCode, error_code AS errorCode, error_message AS errorMessage, bytes_in AS bytesIn, wall_us AS wallUs, finished_at AS finishedAt`;

export class JobStore {
  readonly #o: OpenedDb;
  readonly #s: Record<"insertJob" | "insertItem" | "get" | "pending" | "finish" | "status" | "counts" | "running" | "active" | "all" | "insertReduce" | "getReduce" | "finishReduce", Statement>;

  constructor(o: OpenedDb) {
    this.#o = o;
    const q = (sql: string) => o.sqlite.prepare(sql);
    this.#s = {
      insertJob: q(`INSERT INTO jobs (id, account_id, app_id, program_sha256, input_bucket, input_prefix, output_bucket, output_prefix, concurrency, status, total, created_at, io, args, ok_exit_codes, program_name)
        VALUES (@id, @accountId, @appId, @programSha256, @inputBucket, @inputPrefix, @outputBucket, @outputPrefix, @concurrency, @status, @total, @createdAt, @io, @args, @okExitCodes, @programName)`),
      insertReduce: q("INSERT INTO job_reduces (job_id, app_id, program_sha256, program_name, args, status) VALUES (@jobId, @appId, @programSha256, @programName, @args, 'pending')"),
      getReduce: q(`SELECT ${REDUCE_COLUMNS} FROM job_reduces WHERE job_id = ?`),
      finishReduce: q(`UPDATE job_reduces SET status = @status, output_key = @outputKey, output_head = @outputHead, output_bytes = @outputBytes, exit_code = @exitCode,
        error_code = @errorCode, error_message = @errorMessage, bytes_in = @bytesIn, wall_us = @wallUs, finished_at = @finishedAt WHERE job_id = @jobId AND status = 'pending'`),
      insertItem: q("INSERT INTO job_items (job_id, seq, key, status) VALUES (?, ?, ?, 'pending')"),
      get: q(`SELECT ${JOB_COLUMNS} FROM jobs WHERE id = ?`),
      pending: q("SELECT seq, key FROM job_items WHERE job_id = ? AND status = 'pending' AND seq > ? ORDER BY seq LIMIT ?"),
      finish: q(`UPDATE job_items SET status = @status, output_key = @outputKey, error_code = @errorCode, error_message = @errorMessage, http_status = @httpStatus,
        bytes_in = @bytesIn, bytes_out = @bytesOut, wall_us = @wallUs, finished_at = @finishedAt, exit_code = @exitCode,
        finish_no = (SELECT COALESCE(MAX(finish_no), 0) + 1 FROM job_items WHERE job_id = @jobId) WHERE job_id = @jobId AND seq = @seq AND status = 'pending'`),
      status: q("UPDATE jobs SET status = ?, finished_at = ? WHERE id = ? AND status = 'running'"),
      counts: q("SELECT status, COUNT(*) AS n FROM job_items WHERE job_id = ? GROUP BY status"),
      running: q(`SELECT ${JOB_COLUMNS} FROM jobs WHERE status = 'running' ORDER BY created_at`),
      active: q("SELECT COUNT(*) AS n FROM jobs WHERE account_id = ? AND status = 'running'"),
      all: q("SELECT COUNT(*) AS n FROM jobs WHERE account_id = ?"),
    };
  }

  /** The job, one pending item per key, its pending reduce step (if any) and its cost estimate (JSON), in one transaction. */
  create(job: Omit<JobRow, "status" | "total" | "finishedAt">, keys: string[], reduce?: Pick<JobReduceRow, "appId" | "programSha256" | "programName" | "args">, estimate?: string): JobRow {
    const row: JobRow = { ...job, status: "running", total: keys.length, finishedAt: null };
    this.#o.sqlite.transaction(() => {
      const { finishedAt: _f, ...cols } = row;
      this.#s.insertJob.run(cols);
      keys.forEach((k, i) => this.#s.insertItem.run(job.id, i, k));
      if (reduce !== undefined) this.#s.insertReduce.run({ jobId: job.id, ...reduce });
      if (estimate !== undefined) this.#o.sqlite.prepare("UPDATE jobs SET estimate = ? WHERE id = ?").run(estimate, job.id);
    })();
    return row;
  }

  /** A job's reduce step, if it has one. */
  reduce(jobId: string): JobReduceRow | undefined {
    return this.#s.getReduce.get(jobId) as JobReduceRow | undefined;
  }

  /** Records the reduce step once (false when it was no longer pending). */
  finishReduce(jobId: string, r: JobReduceResult): boolean {
    return (
      this.#s.finishReduce.run({
        jobId,
        status: r.status,
        outputKey: r.outputKey ?? null,
        outputHead: r.outputHead ?? null,
        outputBytes: r.outputBytes ?? null,
        exitCode: r.exitCode ?? null,
        errorCode: r.errorCode ?? null,
        errorMessage: r.errorMessage ?? null,
        bytesIn: r.bytesIn ?? null,
        wallUs: r.wallUs,
        finishedAt: Date.now(),
      }).changes === 1
    );
  }

  /** The estimate stored when the job was created (JSON), if any. */
  estimateOf(jobId: string): string | null {
    return ((this.#o.sqlite.prepare("SELECT estimate FROM jobs WHERE id = ?").get(jobId) as { estimate: string | null } | undefined)?.estimate) ?? null;
  }

  // --- changes: the progress stream is woken by these, then reads the rows ---

  readonly #listeners = new Set<(jobId: string) => void>();

  /** Calls `fn` after an item of a job finished or the job stopped running (committed). */
  onChange(fn: (jobId: string) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  #changed(jobId: string): void {
    // A listener's failure is its own: the item is recorded whatever a stream does.
    for (const fn of this.#listeners) {
      try {
        fn(jobId);
      } catch {
        // ignored
      }
    }
  }

  /** Items finished after finish_no `afterNo`, in the order they finished. */
  finishedAfter(jobId: string, afterNo: number, limit: number): FinishedItem[] {
    return (this.#finishedAfter ??= this.#o.sqlite.prepare(
      "SELECT finish_no AS no, seq, key, status, error_code AS errorCode FROM job_items WHERE job_id = ? AND finish_no > ? ORDER BY finish_no LIMIT ?",
    )).all(jobId, afterNo, Math.floor(limit)) as FinishedItem[];
  }
  #finishedAfter: Statement | undefined;

  /** The highest finish_no of a job (0: none finished) and when the item `back` places before it finished (ms). */
  finishMark(jobId: string, back: number): { lastNo: number; backNo: number; backAt: number | null } {
    const lastNo = (this.#o.sqlite.prepare("SELECT COALESCE(MAX(finish_no), 0) AS n FROM job_items WHERE job_id = ?").get(jobId) as { n: number }).n;
    const backNo = Math.max(1, lastNo - back);
    const at = this.#o.sqlite.prepare("SELECT finished_at AS at FROM job_items WHERE job_id = ? AND finish_no = ?").get(jobId, backNo) as { at: number | null } | undefined;
    return { lastNo, backNo, backAt: at?.at ?? null };
  }

  /** A job, if it exists and (when `accountId` is given) belongs to that account. */
  get(id: string, accountId: string | undefined): JobRow | undefined {
    const row = this.#s.get.get(id) as JobRow | undefined;
    return row === undefined || (accountId !== undefined && row.accountId !== accountId) ? undefined : row;
  }

  list(accountId: string | undefined, limit: number): JobRow[] {
    const where = accountId === undefined ? "" : "WHERE account_id = ?";
    return this.#o.sqlite.prepare(`SELECT ${JOB_COLUMNS} FROM jobs ${where} ORDER BY created_at DESC, id LIMIT ${Math.floor(limit)}`).all(...(accountId === undefined ? [] : [accountId])) as JobRow[];
  }

  /** Pending items after `afterSeq`, in order. */
  pending(jobId: string, afterSeq: number, limit: number): Array<{ seq: number; key: string }> {
    return this.#s.pending.all(jobId, afterSeq, limit) as Array<{ seq: number; key: string }>;
  }

  /** Records a finished item once (false when it was no longer pending). */
  finishItem(jobId: string, seq: number, r: JobItemResult): boolean {
    const changed =
      this.#s.finish.run({
        jobId,
        seq,
        status: r.status,
        outputKey: r.outputKey ?? null,
        errorCode: r.errorCode ?? null,
        errorMessage: r.errorMessage ?? null,
        httpStatus: r.httpStatus ?? null,
        bytesIn: r.bytesIn ?? null,
        bytesOut: r.bytesOut ?? null,
        wallUs: r.wallUs,
        finishedAt: Date.now(),
        exitCode: r.exitCode ?? null,
      }).changes === 1;
    if (changed) this.#changed(jobId);
    return changed;
  }

  /** Ends a running job (false when it was not running). */
  setStatus(jobId: string, status: Exclude<JobStatus, "running">): boolean {
    const changed = this.#s.status.run(status, Date.now(), jobId).changes === 1;
    if (changed) this.#changed(jobId);
    return changed;
  }

  counts(jobId: string): JobCounts {
    const c: JobCounts = { pending: 0, ok: 0, failed: 0 };
    for (const r of this.#s.counts.all(jobId) as Array<{ status: JobItemStatus; n: number }>) c[r.status] = r.n;
    return c;
  }

  /** Items in order from `afterSeq` (exclusive), optionally of one status. */
  items(jobId: string, opts: { status?: JobItemStatus; afterSeq?: number; limit: number }): JobItemRow[] {
    const byStatus = opts.status === undefined ? "" : "AND status = ?";
    return this.#o.sqlite
      .prepare(`SELECT ${ITEM_COLUMNS} FROM job_items WHERE job_id = ? AND seq > ? ${byStatus} ORDER BY seq LIMIT ?`)
      .all(jobId, opts.afterSeq ?? -1, ...(opts.status === undefined ? [] : [opts.status]), Math.floor(opts.limit)) as JobItemRow[];
  }

  /** Jobs a restart must resume. */
  running(): JobRow[] {
    return this.#s.running.all() as JobRow[];
  }

  activeCount(accountId: string): number {
    return (this.#s.active.get(accountId) as { n: number }).n;
  }

  count(accountId: string): number {
    return (this.#s.all.get(accountId) as { n: number }).n;
  }
}
