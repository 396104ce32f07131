/**
 * Jobs and their items (tables `jobs`, `job_items`): what src/platform/jobs.ts runs and resumes.
 * An item is written once when it finishes (ok or failed); one still "pending" after a restart
 * is run again, one that finished never is.
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
}

export interface JobCounts {
  pending: number;
  ok: number;
  failed: number;
}

const JOB_COLUMNS = `id, account_id AS accountId, app_id AS appId, program_sha256 AS programSha256, input_bucket AS inputBucket, input_prefix AS inputPrefix,
  output_bucket AS outputBucket, output_prefix AS outputPrefix, concurrency, status, total, created_at AS createdAt, finished_at AS finishedAt`;
const ITEM_COLUMNS = `seq, key, status, output_key AS outputKey, error_code AS errorCode, error_message AS errorMessage, http_status AS httpStatus,
  bytes_in AS bytesIn, bytes_out AS bytesOut, wall_us AS wallUs, finished_at AS finishedAt`;

export class JobStore {
  readonly #o: OpenedDb;
  readonly #s: Record<"insertJob" | "insertItem" | "get" | "pending" | "finish" | "status" | "counts" | "running" | "active" | "all", Statement>;

  constructor(o: OpenedDb) {
    this.#o = o;
    const q = (sql: string) => o.sqlite.prepare(sql);
    this.#s = {
      insertJob: q(`INSERT INTO jobs (id, account_id, app_id, program_sha256, input_bucket, input_prefix, output_bucket, output_prefix, concurrency, status, total, created_at)
        VALUES (@id, @accountId, @appId, @programSha256, @inputBucket, @inputPrefix, @outputBucket, @outputPrefix, @concurrency, @status, @total, @createdAt)`),
      insertItem: q("INSERT INTO job_items (job_id, seq, key, status) VALUES (?, ?, ?, 'pending')"),
      get: q(`SELECT ${JOB_COLUMNS} FROM jobs WHERE id = ?`),
      pending: q("SELECT seq, key FROM job_items WHERE job_id = ? AND status = 'pending' AND seq > ? ORDER BY seq LIMIT ?"),
      finish: q(`UPDATE job_items SET status = @status, output_key = @outputKey, error_code = @errorCode, error_message = @errorMessage, http_status = @httpStatus,
        bytes_in = @bytesIn, bytes_out = @bytesOut, wall_us = @wallUs, finished_at = @finishedAt WHERE job_id = @jobId AND seq = @seq AND status = 'pending'`),
      status: q("UPDATE jobs SET status = ?, finished_at = ? WHERE id = ? AND status = 'running'"),
      counts: q("SELECT status, COUNT(*) AS n FROM job_items WHERE job_id = ? GROUP BY status"),
      running: q(`SELECT ${JOB_COLUMNS} FROM jobs WHERE status = 'running' ORDER BY created_at`),
      active: q("SELECT COUNT(*) AS n FROM jobs WHERE account_id = ? AND status = 'running'"),
      all: q("SELECT COUNT(*) AS n FROM jobs WHERE account_id = ?"),
    };
  }

  /** The job and one pending item per key, in one transaction. */
  create(job: Omit<JobRow, "status" | "total" | "finishedAt">, keys: string[]): JobRow {
    const row: JobRow = { ...job, status: "running", total: keys.length, finishedAt: null };
    this.#o.sqlite.transaction(() => {
      const { finishedAt: _f, ...cols } = row;
      this.#s.insertJob.run(cols);
      keys.forEach((k, i) => this.#s.insertItem.run(job.id, i, k));
    })();
    return row;
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
    return (
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
      }).changes === 1
    );
  }

  /** Ends a running job (false when it was not running). */
  setStatus(jobId: string, status: Exclude<JobStatus, "running">): boolean {
    return this.#s.status.run(status, Date.now(), jobId).changes === 1;
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
