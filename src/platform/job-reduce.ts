/**
 * A job's reduce step: once every map item finished (ok or failed), one run of the reduce program
 * in stdio mode with the outputs of the ok items concatenated in key order (item order: the input
 * listing is in key order) on stdin, its stdout stored as `<output prefix>_reduce` and its head
 * kept in the job's row for the job view. The step is a row of its own (job_reduces) written
 * with the job; it is recorded once, and a restart that finds a job whose map finished and whose
 * reduce did not runs it (metered under the fixed request id `job-<id>-reduce`, so a run cut by
 * a crash and run again is counted once). Exit code 0 is ok; any other fails the step with
 * `program_exit` (stdout still stored).
 * Must never: read more than REDUCE_LIMITS.maxInputBytes of map outputs into memory, or read
 * outputs of another job or account.
 */
import { Readable } from "node:stream";
import type { Platform } from "./index.js";
import type { JobReduceResult, JobRow } from "../store/jobs.js";
import { readObjectLimited } from "./object-runs.js";
import { jobTarget, programExit, runJobRun, type JobRetryLimits } from "./job-targets.js";
import { ZerocellError } from "../errors.js";
import { log } from "../log.js";

export const REDUCE_LIMITS = {
  /** The map outputs fed to the reduce program together, bytes (also the program's max_body_bytes). */
  maxInputBytes: 10 * 1024 * 1024,
  /** The head of the reduce output kept in the job's row (the whole output is the object), bytes. */
  maxOutputHeadBytes: 256 * 1024,
};

/** The reduce output's key: `<output prefix>_reduce`. */
export function reduceOutputKey(outputPrefix: string): string {
  return `${outputPrefix}_reduce`;
}

/** Runs a job's pending reduce step and records it (nothing when it has none, or it already ran). */
export async function runReduce(p: Platform, job: JobRow, limits: JobRetryLimits, stopped: () => boolean, cache: { program?: Buffer }): Promise<void> {
  const red = p.jobStore.reduce(job.id);
  if (red === undefined || red.status !== "pending") return;
  const t0 = performance.now();
  const wallUs = () => Math.max(1, Math.round((performance.now() - t0) * 1000));
  let bytesIn: number | undefined;
  let result: JobReduceResult;
  try {
    const target = await jobTarget(p, job.accountId, { appId: red.appId, programSha256: red.programSha256, io: "stdio", args: JSON.parse(red.args) as string[] | null, name: red.programName }, cache);
    const max = Math.min(REDUCE_LIMITS.maxInputBytes, target.maxBodyBytes);
    // 1. the ok outputs, in item (key) order, bounded as they are read
    const parts: Buffer[] = [];
    let total = 0;
    for (let after = -1; ; ) {
      const page = p.jobStore.items(job.id, { status: "ok", afterSeq: after, limit: 1000 });
      for (const item of page) {
        if (item.outputKey === null) continue;
        const left = max - total;
        const got = await readObjectLimited(p, job.accountId, job.outputBucket, item.outputKey, left).catch((e: unknown) => {
          if (e instanceof ZerocellError && e.code === "object_too_large_for_app") throw new ZerocellError("reduce_input_too_large", 413, `jobs: the map outputs exceed the reduce input limit of ${max} bytes`);
          throw e;
        });
        total += got.body.length;
        parts.push(got.body);
      }
      const last = page.at(-1);
      if (last === undefined || page.length < 1000) break;
      after = last.seq;
    }
    const body = Buffer.concat(parts);
    bytesIn = body.length;
    // 2. run once
    const key = reduceOutputKey(job.outputPrefix);
    const info = { key, size: body.length, etag: "", contentType: "application/octet-stream", metadata: { "zerocell-job": job.id }, lastModified: new Date() };
    const res = await runJobRun(p, target, { bucket: job.outputBucket, info, body }, `job-${job.id}-reduce`, limits, stopped, { job: job.id, step: "reduce" });
    const out = Buffer.from(res.body.buffer, res.body.byteOffset, res.body.byteLength);
    const exit = programExit(res);
    if (exit === undefined && res.status >= 400) {
      const text = out.subarray(0, 200).toString("utf8").replace(/[\u0000-\u001f]+/g, " ").trim();
      result = { status: "failed", errorCode: "program_failed", errorMessage: `the reduce program answered status ${res.status}${text === "" ? "" : `: ${text}`}`, bytesIn, wallUs: wallUs() };
    } else {
      // 3. store its stdout (also after a non-zero exit: it is reported)
      await p.objects.putObject(job.accountId, job.outputBucket, key, Readable.from([out]), { contentType: "application/octet-stream", contentLength: out.length, metadata: { "zerocell-job": job.id } });
      const head = { outputKey: key, outputHead: out.subarray(0, REDUCE_LIMITS.maxOutputHeadBytes).toString("base64"), outputBytes: out.length, bytesIn, wallUs: wallUs() };
      result = exit === undefined || exit.code === 0
        ? { status: "ok", ...head, ...(exit === undefined ? {} : { exitCode: exit.code }) }
        : { status: "failed", ...head, exitCode: exit.code, errorCode: "program_exit", errorMessage: `the reduce program exited with status ${exit.code}${exit.stderr === "" ? "" : `: ${exit.stderr}`}` };
    }
  } catch (e) {
    // A server shutting down cuts the step: it stays pending and runs after the restart.
    if (stopped() || p.pool.closed) return;
    const code = e instanceof ZerocellError ? e.code : "internal_error";
    const message = e instanceof ZerocellError && e.code !== "guest_error" ? e.message : "sandbox: the reduce program's engine failed";
    if (!(e instanceof ZerocellError) || e.code === "guest_error") log.error("job reduce failed", { job: job.id, code, err: (e as Error).message.slice(0, 2000) });
    result = { status: "failed", errorCode: code, errorMessage: message.slice(0, 1000), ...(bytesIn === undefined ? {} : { bytesIn }), wallUs: wallUs() };
  }
  // Its usage is written first (a crash in between runs it again, counted once by request id).
  p.usage.flush();
  p.jobStore.finishReduce(job.id, result);
  log.info("job reduce finished", { job: job.id, status: result.status, bytesIn: result.bytesIn ?? null, bytesOut: result.outputBytes ?? null });
}
