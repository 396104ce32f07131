/**
 * What a job's map items and its reduce step run: a deployed app (its active deployment), or a
 * POSTed program (the blob store) in CGI or stdio mode, with the job's arguments. Arguments are
 * part of a stdio program's manifest (its entry snapshot holds argv), so a program or app run
 * with arguments is an in-memory deployment of its own, named by their hash. Also: how a stdio
 * run's exit code is read back (the engine's x-zerocell-exit-code header) and the job API's
 * argument rules.
 * Must never: run another account's app, or give arguments to a program that is not in stdio
 * mode (a CGI program's argv is fixed, a PHP or Python app has none).
 */
import { createHash } from "node:crypto";
import type { Manifest } from "../bundle/index.js";
import type { Platform } from "./index.js";
import { programTarget, runOnObject, type RunTarget } from "./object-runs.js";
import type { ObjectInfo } from "../objects/index.js";
import { log } from "../log.js";
import { argsProblem, x86Section } from "../runtime/x86/checks.js";
import { InputError, ZerocellError } from "../errors.js";
import type { PoolRunResult } from "../pool/index.js";

/** The engine's stdio-mode headers (src/runtime/x86/index.ts STDIO_HEADERS; not imported: that file loads Unicorn). */
const EXIT_CODE_HEADER = "x-zerocell-exit-code";
const STDERR_HEADER = "x-zerocell-stderr";

/** Limits of a job's exit-code rule. */
export const JOB_EXIT_LIMITS = { maxOkExitCodes: 256 } as const;

/** The program of a job's map step or reduce step, as stored. */
export interface JobProgram {
  appId: string | null;
  programSha256: string | null;
  /** For a POSTed program: "cgi" or "stdio" (null: cgi). */
  io: "cgi" | "stdio" | null;
  /** Replaces the program's arguments (null: a POSTed program has none, an app keeps its own). */
  args: string[] | null;
  /** A POSTed program's file name (argv[0] /app/bin/<name>); null: "app". */
  name: string | null;
}

/** Checks a job's `args` (400 bad_args with the reason). */
export function assertJobArgs(args: unknown, what = "args"): asserts args is string[] {
  if (!Array.isArray(args)) throw new InputError(`jobs: ${what} must be an array of strings`, { code: "bad_args" });
  const problem = argsProblem(args);
  if (problem !== undefined) throw new InputError(`jobs: ${what}: ${problem}`, { code: "bad_args" });
}

/** Checks `okExitCodes`: 1 to 256 distinct integers 0–255 (400 bad_ok_exit_codes). */
export function assertOkExitCodes(codes: unknown): asserts codes is number[] {
  const ok = Array.isArray(codes) && codes.length >= 1 && codes.length <= JOB_EXIT_LIMITS.maxOkExitCodes && codes.every((c) => Number.isInteger(c) && c >= 0 && c <= 255);
  if (!ok) throw new InputError("jobs: okExitCodes must be a list of 1 to 256 exit codes, each 0 to 255", { code: "bad_ok_exit_codes" });
}

/** The app's active deployment and its manifest, or a 503 when it has none. */
function activeDeployment(p: Platform, accountId: string, appId: string): { deploymentId: string; manifest: Manifest } {
  const app = p.store.listApps(accountId).find((a) => a.id === appId);
  const deploymentId = app?.activeDeploymentId ?? undefined;
  const manifest = deploymentId === undefined ? undefined : p.deployments.manifest(deploymentId);
  if (deploymentId === undefined || manifest === undefined) throw new ZerocellError("app_inactive", 503, `jobs: the app has no active deployment`);
  return { deploymentId, manifest };
}

/** 400 args_need_stdio unless the app's active deployment is an x86 program in stdio mode. */
export function assertAppTakesArgs(p: Platform, accountId: string, appId: string): void {
  const { manifest } = activeDeployment(p, accountId, appId);
  if ((manifest.runtime as string) !== "x86" || x86Section(manifest)?.io !== "stdio") {
    throw new InputError(`jobs: arguments need an x86 app in stdio mode ([x86] io = "stdio"); this app is ${manifest.runtime === "x86" ? "a CGI program" : `a ${manifest.runtime} app`}`, { code: "args_need_stdio" });
  }
}

/**
 * Where one run of a job program goes. `cache.program` keeps a POSTed program's bytes once read
 * from the blob store (validated again by programTarget after a restart: its cache is by hash).
 */
export async function jobTarget(p: Platform, accountId: string, prog: JobProgram, cache: { program?: Buffer }): Promise<RunTarget> {
  if (prog.appId !== null) {
    const { deploymentId, manifest } = activeDeployment(p, accountId, prog.appId);
    const limits = { maxBodyBytes: manifest.limits.maxBodyBytes, timeoutMs: manifest.limits.timeoutMs, memoryMb: manifest.limits.memoryMb };
    if (prog.args === null) return { deploymentId, accountId, appId: prog.appId, ...limits };
    // The app's bundle and env with these arguments: an in-memory deployment per (deployment, args).
    const sec = x86Section(manifest);
    if ((manifest.runtime as string) !== "x86" || sec?.io !== "stdio") throw new InputError("jobs: arguments need an x86 app in stdio mode", { code: "args_need_stdio" });
    const variant = createHash("sha256").update(JSON.stringify(prog.args)).digest("hex").slice(0, 16);
    const id = `args_${variant}_${deploymentId}`;
    const derived = { ...manifest, x86: { ...sec, args: prog.args } } as Manifest;
    if (!p.deployments.deriveEphemeral(id, deploymentId, derived)) throw new ZerocellError("app_inactive", 503, "jobs: the app's deployment is gone");
    return { deploymentId: id, accountId, appId: prog.appId, ...limits };
  }
  cache.program ??= p.blobs.get(prog.programSha256!);
  const io = prog.io ?? "cgi";
  return (await programTarget(p, accountId, cache.program, prog.programSha256!, { io, args: io === "stdio" ? (prog.args ?? []) : [], name: prog.name ?? undefined })).target;
}

/** A stdio run's exit code (0–255) and the head of its stderr, or undefined for a CGI/PHP/Python answer or a crash. */
export function programExit(result: PoolRunResult): { code: number; stderr: string } | undefined {
  let code: number | undefined;
  let stderr = "";
  for (const [k, v] of result.headers) {
    const name = k.toLowerCase();
    // Untrusted (the host may lie about its own program): a strict 0–255 integer or nothing.
    if (name === EXIT_CODE_HEADER && /^\d{1,3}$/.test(v) && Number(v) <= 255) code = Number(v);
    else if (name === STDERR_HEADER) {
      try {
        stderr = decodeURIComponent(v.slice(0, 4096));
      } catch {
        stderr = "";
      }
    }
  }
  return code === undefined ? undefined : { code, stderr: stderr.replace(/[\u0000-\u001f\u007f]+/g, " ").trim().slice(0, 300) };
}

/** How often a job run is tried again. */
export interface JobRetryLimits {
  /** Tries when no instance was free (pool queue full or its wait bound passed). */
  maxTriesWhenBusy: number;
  /** Extra tries when the sandbox broke under the run (engine failure, host crash); each is metered. */
  maxRetriesOnCrash: number;
}

/**
 * One job run (an item or the reduce step), metered as "job" under `requestId` (a fixed id is
 * counted once). No free instance (web traffic has the pool) is waited out with backoff, not a
 * failure; a sandbox that broke under the run gets `maxRetriesOnCrash` more tries (`-rN`).
 */
export async function runJobRun(p: Platform, target: RunTarget, object: { bucket: string; info: ObjectInfo; body: Buffer }, requestId: string, limits: JobRetryLimits, stopped: () => boolean, what: Record<string, unknown>): Promise<PoolRunResult> {
  let crashes = 0;
  for (let attempt = 1; ; attempt++) {
    try {
      return await runOnObject(p, target, object, { mode: "job", requestId: `${requestId}${attempt === 1 ? "" : `-r${attempt}`}` });
    } catch (e) {
      const code = e instanceof ZerocellError ? e.code : "";
      const busy = code === "pool_saturated" || code === "instance_unavailable";
      const broke = code === "guest_error" || code === "host_crashed";
      if (broke) {
        crashes++;
        log.warn("job item retried", { ...what, code, err: (e as Error).message.slice(0, 500) });
      }
      if ((!busy && !broke) || attempt >= limits.maxTriesWhenBusy || crashes > limits.maxRetriesOnCrash || stopped()) throw e;
      if (busy) await new Promise((res) => setTimeout(res, 250 * 2 ** attempt));
    }
  }
}
