/**
 * Code next to the data: runs a bound app's handler (src/objects/bindings.ts) with one object as
 * its input — the request body (stdin for x86 CGI programs, php://input for PHP, wsgi.input for
 * Python), its key, bucket, ETag, type and user metadata as headers — in the app's pool, in
 * snapshot mode, under the app's own limits, and meters it like an app request.
 * Must never: run an app of another account than the bucket's, or feed it more than the app's
 * max_body_bytes.
 */
import { createHash, randomUUID } from "node:crypto";
import { LRUCache } from "lru-cache";
import { stringify as stringifyToml } from "smol-toml";
import { MANIFEST_FILE, encodeImage, type BundleImage, type Manifest } from "../bundle/index.js";
import { parseManifest, validateBundle } from "../runtime/index.js";
import type { Platform } from "./index.js";
import type { BindingInfo } from "../objects/bindings.js";
import type { ObjectInfo } from "../objects/index.js";
import type { PoolRunResult } from "../pool/index.js";
import type { EngineRequest } from "../runtime/engine.js";
import { InputError, ZerocellError } from "../errors.js";

export interface BoundRun {
  binding: BindingInfo;
  result: PoolRunResult;
}

/** The app and limits a binding runs: its active deployment, or a 503 when it has none. */
export function boundTarget(p: Platform, binding: BindingInfo): { deploymentId: string; maxBodyBytes: number; timeoutMs: number; memoryMb: number } {
  const app = p.store.listApps(binding.accountId).find((a) => a.id === binding.appId);
  const deploymentId = app?.activeDeploymentId ?? undefined;
  const manifest = deploymentId === undefined ? undefined : p.deployments.manifest(deploymentId);
  if (deploymentId === undefined || manifest === undefined) throw new ZerocellError("binding_app_inactive", 503, `objects: the app "${binding.app}" bound to this prefix has no active deployment`);
  return { deploymentId, maxBodyBytes: manifest.limits.maxBodyBytes, timeoutMs: manifest.limits.timeoutMs, memoryMb: manifest.limits.memoryMb };
}

/** What one run needs: the pool deployment, its limits, and whom to meter. */
export interface RunTarget {
  deploymentId: string;
  accountId: string;
  appId: string;
  maxBodyBytes: number;
  timeoutMs: number;
  memoryMb: number;
}

/** How a run is metered: its usage mode, and a request id (a fixed one is counted once, however often it is recorded). */
export interface RunMetering {
  mode: "object" | "job";
  requestId?: string;
}

/** Runs the binding's app once with the object (already read, within maxBodyBytes) as input. */
export async function runBoundObject(p: Platform, binding: BindingInfo, object: { bucket: string; info: ObjectInfo; body: Buffer }): Promise<PoolRunResult> {
  return runOnObject(p, { ...boundTarget(p, binding), accountId: binding.accountId, appId: binding.appId }, object);
}

/** One object through one deployment: the object is the request body (stdin), its facts are headers. */
export async function runOnObject(p: Platform, target: RunTarget, object: { bucket: string; info: ObjectInfo; body: Buffer }, metering: RunMetering = { mode: "object" }): Promise<PoolRunResult> {
  if (object.body.length > target.maxBodyBytes) throw new ZerocellError("object_too_large_for_app", 413, `objects: object of ${object.body.length} bytes exceeds the program's max_body_bytes of ${target.maxBodyBytes}`);
  const headers: Array<[string, string]> = [
    ["content-type", object.info.contentType],
    ["content-length", String(object.body.length)],
    ["x-zerocell-object-bucket", object.bucket],
    ["x-zerocell-object-key", encodeURIComponent(object.info.key)],
    ["x-zerocell-object-etag", object.info.etag],
    ...Object.entries(object.info.metadata).map(([k, v]): [string, string] => [`x-zerocell-meta-${k}`, v]),
  ];
  const req: EngineRequest = {
    method: "POST",
    // The key as the path (each segment percent-encoded): PATH_INFO for CGI and WSGI.
    url: "/" + object.info.key.split("/").map(encodeURIComponent).join("/"),
    headers,
    body: object.body,
    remoteAddr: "",
    remotePort: 0,
    https: true,
    serverName: "objects",
    serverPort: 0,
    scriptName: "",
    params: {},
  };
  const startedAt = Date.now();
  const t0 = performance.now();
  let status = 500;
  let result: PoolRunResult | undefined;
  try {
    result = await p.pool.run(target.deploymentId, "snapshot", req, target.timeoutMs);
    status = result.status;
    return result;
  } catch (e) {
    if (e instanceof ZerocellError) status = e.status;
    throw e;
  } finally {
    p.usage.record({
      requestId: metering.requestId ?? `object-${randomUUID()}`,
      accountId: target.accountId,
      appId: target.appId,
      deploymentId: target.deploymentId,
      routeKey: null,
      startedAt,
      wallUs: Math.max(1, Math.round((performance.now() - t0) * 1000)),
      cpuUs: result?.cpuUs ?? null,
      instructions: result?.usage?.instructions ?? null,
      memoryMb: target.memoryMb,
      status,
      bytesIn: object.body.length,
      bytesOut: result?.body.byteLength ?? 0,
      mode: metering.mode,
    });
  }
}

/** Limits of a POSTed program (a single static x86-64 ELF), bytes and ms. */
export const PROGRAM_LIMITS = {
  /** Largest program. */
  maxProgramBytes: 16 * 1024 * 1024,
  /** Objects one POST may name. */
  maxObjects: 100,
  timeoutMs: 10_000,
  memoryMb: 64,
  /** Largest object fed to the program. */
  maxObjectBytes: 10 * 1024 * 1024,
};

/** How a POSTed program runs: CGI (the default), or stdio with these arguments (checked by the manifest parser). */
export interface ProgramIo {
  io: "cgi" | "stdio";
  args: string[];
  /** The program's file name in its one-file bundle (argv[0] is /app/bin/<name>; default "app"). */
  name?: string | undefined;
}

/** A program's file name: what argv[0] ends with (busybox picks its applet by it). */
export const PROGRAM_NAME = /^(?!\.\.?$)[A-Za-z0-9._-]{1,64}$/;

/** Validation results by program SHA-256 (and io + args) (a program validated once is not decoded again). */
const validated = new LRUCache<string, { manifest: Manifest; image: Buffer }>({ max: 256 });
/** Programs (SHA-256) the static validator accepted. */
const validPrograms = new LRUCache<string, true>({ max: 1024 });

/**
 * Where a POSTed program's time went (ms), for the answer's server-timing header. `readyMs`:
 * request arrival → the first object's guest starting in its sandbox (the host's clock, clamped).
 */
export interface ProgramTiming {
  /** SHA-256 of the program, and its validation (decode + checks) or the cache lookup. */
  validateMs: number;
  cache: "hit" | "miss";
  /** Reading the first object. */
  readMs?: number;
  /** Waiting for a sandbox for the first object. */
  acquireMs?: number;
  readyMs?: number;
  /** Every object's run in its sandbox, summed. */
  runMs: number;
}

export interface ProgramRun {
  program: string;
  validation: "cached" | "validated";
  results: Array<{ key: string; status?: number; output?: string; encoding?: "utf8" | "base64"; error?: { code: string; message: string } }>;
}

/**
 * 1. validate a POSTed program (or find its validation by content hash), 2. register an
 * in-memory deployment per account and program (a host never serves two accounts).
 */
export async function programTarget(p: Platform, accountId: string, program: Buffer, knownSha256?: string, run: ProgramIo = { io: "cgi", args: [] }): Promise<{ sha: string; validation: "cached" | "validated"; target: RunTarget }> {
  // `knownSha256`: the caller read the program from the content-addressed blob store by this hash.
  const sha = knownSha256 ?? createHash("sha256").update(program).digest("hex");
  // A stdio program's arguments are part of its manifest (and of its entry snapshot): each set
  // of arguments is a deployment of its own, named by their hash.
  const name = run.name ?? "app";
  if (!PROGRAM_NAME.test(name)) throw new InputError("objects: a program name is 1 to 64 of A-Z a-z 0-9 . _ - (not . or ..)", { code: "bad_program_name" });
  const variant = run.io === "cgi" && name === "app" ? "" : createHash("sha256").update(JSON.stringify([run.io, run.args, name])).digest("hex").slice(0, 16);
  const cacheKey = variant === "" ? sha : `${sha}:${variant}`;
  let v = validated.get(cacheKey);
  const validation = v === undefined ? "validated" : "cached";
  if (v === undefined) {
    const x86 = run.io === "cgi" ? { program: `bin/${name}` } : { program: `bin/${name}`, io: run.io, args: run.args };
    // A Unix tool may exit non-zero on empty input (grep): a stdio program's hosts start without the "/" health request.
    const text = stringifyToml({ runtime: "x86", ...(run.io === "stdio" ? { health: [] } : {}), x86, limits: { timeout_ms: PROGRAM_LIMITS.timeoutMs, memory_mb: PROGRAM_LIMITS.memoryMb, max_body_bytes: PROGRAM_LIMITS.maxObjectBytes } }) + "\n";
    const image: BundleImage = {
      entries: [
        { path: "bin", kind: "dir", mode: 0o755 },
        { path: `bin/${name}`, kind: "file", mode: 0o755, data: program },
        { path: MANIFEST_FILE, kind: "file", mode: 0o644, data: Buffer.from(text) },
      ],
      totalBytes: program.length + text.length,
    };
    const manifest = parseManifest(text);
    // The program's own checks (the static validator) ran once per program, whatever its arguments.
    if (validPrograms.get(sha) === undefined) await validateBundle(manifest, image);
    validPrograms.set(sha, true);
    v = { manifest, image: encodeImage(image) };
    validated.set(cacheKey, v);
  }
  const deploymentId = `prog_${sha.slice(0, 24)}${variant === "" ? "" : `_${variant}`}_${accountId}`;
  p.deployments.addEphemeral(deploymentId, `program-${sha.slice(0, 12)}`, v.manifest, v.image);
  return { sha, validation, target: { deploymentId, accountId, appId: `program:${sha.slice(0, 24)}`, maxBodyBytes: PROGRAM_LIMITS.maxObjectBytes, timeoutMs: PROGRAM_LIMITS.timeoutMs, memoryMb: PROGRAM_LIMITS.memoryMb } };
}

/** An object's bytes, refused (before reading) when larger than `maxBytes`. */
export async function readObjectLimited(p: Platform, accountId: string, bucket: string, key: string, maxBytes: number): Promise<{ info: ObjectInfo; body: Buffer }> {
  const got = await p.objects.getObject(accountId, bucket, key);
  if (got.info.size > maxBytes) {
    got.body.destroy();
    throw new ZerocellError("object_too_large_for_app", 413, `objects: object of ${got.info.size} bytes exceeds the program's limit of ${maxBytes} bytes`);
  }
  const parts: Buffer[] = [];
  for await (const c of got.body) parts.push(c as Buffer);
  return { info: got.info, body: Buffer.concat(parts) };
}

/**
 * POST a program: a single static x86-64 ELF, validated exactly like a deployment (the same
 * manifest parser and runtime checks on a one-file bundle; results cached by content hash),
 * run once per named object of the account's bucket (the object as stdin), outputs returned.
 * Nothing is stored: the deployment lives in memory only (per account and program).
 */
export async function runProgram(p: Platform, accountId: string, program: Buffer, bucket: string, keys: string[], timing?: { arrivedAt: number; out?: ProgramTiming }): Promise<ProgramRun> {
  const v0 = performance.now();
  const { sha, validation, target } = await programTarget(p, accountId, program);
  const t: ProgramTiming = { validateMs: performance.now() - v0, cache: validation === "cached" ? "hit" : "miss", runMs: 0 };
  if (timing !== undefined) timing.out = t;
  // 3. run once per object, in order; a failing object is reported, never dropped
  const results: ProgramRun["results"] = [];
  for (const key of keys) {
    try {
      const r0 = performance.now();
      const got = await readObjectLimited(p, accountId, bucket, key, target.maxBodyBytes);
      t.readMs ??= performance.now() - r0;
      const r = await runOnObject(p, target, { bucket, ...got });
      t.runMs += r.runMs;
      t.acquireMs ??= r.acquireMs;
      if (t.readyMs === undefined && r.startedAt !== undefined && timing !== undefined) t.readyMs = Math.max(0, r.startedAt - timing.arrivedAt);
      const out = Buffer.from(r.body.buffer, r.body.byteOffset, r.body.byteLength);
      const text = out.toString("utf8");
      const isText = Buffer.from(text, "utf8").equals(out);
      results.push({ key, status: r.status, output: isText ? text : out.toString("base64"), encoding: isText ? "utf8" : "base64" });
    } catch (e) {
      if (!(e instanceof ZerocellError) || e.code === "no_such_bucket") throw e;
      results.push({ key, error: { code: e.code, message: e.code === "guest_error" ? "sandbox: the program's engine failed" : e.message } });
    }
  }
  return { program: sha, validation, results };
}
