/**
 * Admin API: jobs (src/platform/jobs.ts) — a deployed app or a POSTed x86-64 program run once per
 * object of a bucket prefix, outputs written under an output prefix.
 *   POST /v1/jobs                       JSON { app, input: "BUCKET/PREFIX", output?: "BUCKET/PREFIX", concurrency?, args?,
 *                                       okExitCodes?, reduce?: { app, args? } }
 *   POST /v1/jobs                       multipart/form-data: part "job" (the JSON above, plus io?), part "program"
 *                                       (a static x86-64 ELF) unless it names an app, optional part "reduce" (an ELF)
 *   POST /v1/jobs?input=…&output=…      a static x86-64 ELF as the body (application/octet-stream, CGI mode)
 *   POST /v1/jobs?dry_run=1 (or "estimate": true in the JSON)   the estimate only: nothing is created
 *   GET  /v1/jobs                       the account's jobs, newest first
 *   GET  /v1/jobs/:id?items=all|failed|ok|pending&after=SEQ&limit=N   counts, and items when asked
 *   POST /v1/jobs/:id/cancel
 * An account token works in its own account; an admin token in the default one (or ?account=).
 * Must never: let an account see, cancel or run against another account's job, bucket or app
 * (each answers like a missing one).
 */
import type { Context } from "hono";
import { z } from "@hono/zod-openapi";
import type { AdminRoutes } from "./kit.js";
import type { TokenInfo } from "../../store/index.js";
import { readStreamLimited } from "../body.js";
import { jobsOf, type JobSpec } from "../../platform/jobs.js";
import { PROGRAM_LIMITS } from "../../platform/object-runs.js";
import { InputError, PayloadTooLargeError, ZerocellError } from "../../errors.js";
import { parseInput } from "./openapi.js";

type Endpoint = "POST /v1/jobs" | "GET /v1/jobs" | "GET /v1/jobs/:id" | "POST /v1/jobs/:id/cancel";

/** "BUCKET/PREFIX" (or "BUCKET"): the bucket is everything before the first "/". */
export function parseLocation(s: string, what: string): { bucket: string; prefix: string } {
  const slash = s.indexOf("/");
  const bucket = slash === -1 ? s : s.slice(0, slash);
  const prefix = slash === -1 ? "" : s.slice(slash + 1);
  if (bucket.length < 3 || bucket.length > 63) throw new InputError(`jobs: ${what} must be BUCKET or BUCKET/PREFIX`, { code: "bad_location" });
  return { bucket, prefix };
}

const Location = z.string().min(3).max(1100);
// Arguments and exit codes are checked by the job service (codes bad_args, bad_ok_exit_codes); the body's size bounds them first.
const Args = z.array(z.unknown()).openapi({ description: "argv after argv[0] of a stdio program (≤ 128 arguments, ≤ 4 KiB each, ≤ 16 KiB in all, no NUL)" });
const JobFields = {
  input: Location,
  output: Location.optional().openapi({ description: "Default: the input bucket, prefix _jobs/<job id>/" }),
  concurrency: z.number().int().optional(),
  args: Args.optional(),
  okExitCodes: z.array(z.unknown()).optional().openapi({ description: "Exit codes of a stdio program that make an item ok (default [0])" }),
  account: z.string().max(63).optional(),
  estimate: z.boolean().optional().openapi({ description: "true: answer 200 with the estimate only; nothing is created" }),
};
const JobBody = z.object({ app: z.string().min(1).max(63), ...JobFields, reduce: z.object({ app: z.string().min(1).max(63), args: Args.optional() }).strict().optional() }).strict();
/** The "job" part of a multipart body: the program (and a reduce program) are parts of their own. */
const ProgramName = z.string().max(64).optional().openapi({ description: 'The program file\'s name: argv[0] is /app/bin/<name> (busybox picks its applet by it); default "app"' });
const JobPart = z
  .object({ ...JobFields, app: z.string().min(1).max(63).optional(), io: z.enum(["cgi", "stdio"]).optional(), programName: ProgramName, reduce: z.object({ app: z.string().min(1).max(63).optional(), args: Args.optional(), programName: ProgramName }).strict().optional() })
  .strict();

/** The fields the JSON body and the multipart "job" part share, as a JobSpec's. */
function commonSpec(b: { input: string; output?: string | undefined; concurrency?: number | undefined; args?: unknown[] | undefined; okExitCodes?: unknown[] | undefined }) {
  return {
    input: parseLocation(b.input, "input"),
    ...(b.output === undefined ? {} : { output: parseLocation(b.output, "output") }),
    ...(b.concurrency === undefined ? {} : { concurrency: b.concurrency }),
    // Checked by the job service (bad_args, bad_ok_exit_codes) with its limits.
    ...(b.args === undefined ? {} : { args: b.args as string[] }),
    ...(b.okExitCodes === undefined ? {} : { okExitCodes: b.okExitCodes as number[] }),
  };
}

/** An item's output shown by ?outputs=1, bytes (the whole output is the object). */
const MAX_ITEM_OUTPUT_BYTES = 64 * 1024;

/** Largest multipart job body: two programs and the JSON part. */
const MAX_MULTIPART_BYTES = 2 * PROGRAM_LIMITS.maxProgramBytes + 1024 * 1024;
const MAX_JOB_PART_BYTES = 256 * 1024;

/**
 * A multipart job: parts "job" (JSON), "program" (the ELF) and "reduce" (an ELF), read under
 * MAX_MULTIPART_BYTES and parsed by undici's FormData parser (Node's fetch Response).
 * Must never: hold more than the limit of an untrusted body, or accept a part over its own limit.
 */
async function readMultipartJob(c: Context, type: string): Promise<{ job: z.output<typeof JobPart>; program: Buffer | undefined; reduce: Buffer | undefined }> {
  const declared = c.req.header("content-length");
  if (declared !== undefined && Number(declared) > MAX_MULTIPART_BYTES) throw new PayloadTooLargeError(`jobs: body of ${declared} bytes exceeds the limit of ${MAX_MULTIPART_BYTES} bytes`);
  const raw = c.req.raw.body;
  const bytes = raw === null ? Buffer.alloc(0) : await readStreamLimited(raw, MAX_MULTIPART_BYTES, () => new PayloadTooLargeError(`jobs: body exceeds the limit of ${MAX_MULTIPART_BYTES} bytes`));
  let form: FormData;
  try {
    form = await new Response(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) as Uint8Array<ArrayBuffer>, { headers: { "content-type": type } }).formData();
  } catch {
    throw new InputError("jobs: the body is not valid multipart/form-data", { code: "bad_multipart" });
  }
  const part = async (name: string, limit: number): Promise<Buffer | undefined> => {
    const v = form.get(name);
    if (v === null) return undefined;
    const b = typeof v === "string" ? Buffer.from(v) : Buffer.from(await v.arrayBuffer());
    if (b.length > limit) throw new PayloadTooLargeError(`jobs: part "${name}" of ${b.length} bytes exceeds the limit of ${limit} bytes`);
    return b;
  };
  for (const name of form.keys()) if (!["job", "program", "reduce"].includes(name)) throw new InputError(`jobs: unknown multipart part "${name.slice(0, 40)}" (parts: job, program, reduce)`, { code: "bad_multipart" });
  const jobText = await part("job", MAX_JOB_PART_BYTES);
  const program = await part("program", PROGRAM_LIMITS.maxProgramBytes);
  const reduce = await part("reduce", PROGRAM_LIMITS.maxProgramBytes);
  if (jobText === undefined) throw new InputError('jobs: a multipart job has a "job" part (JSON)', { code: "bad_multipart" });
  let data: unknown;
  try {
    data = JSON.parse(jobText.toString("utf8"));
  } catch {
    throw new InputError('jobs: the "job" part is not valid JSON', { code: "bad_multipart" });
  }
  const job = parseInput(JobPart, data, "job part");
  if ((job.app === undefined) === (program === undefined || program.length === 0)) throw new InputError('jobs: a multipart job names an app in its "job" part or sends a "program" part (a static x86-64 ELF), one of them', { code: "bad_multipart" });
  return { job, program, reduce };
}

const JobSchema = z.looseObject({ id: z.string(), status: z.string() });

export function registerJobRoutes({ endpoint, platform, ownAccount }: AdminRoutes<Endpoint>): void {
  /** The token's account, or for an admin token the named (default: "default") one. */
  const accountOf = (token: TokenInfo, asked: string | undefined): string => {
    const own = ownAccount(token);
    if (own !== undefined) return own;
    const a = platform.store.accountByName(asked ?? "default");
    if (a === undefined) throw new ZerocellError("account_not_found", 404, `no account named "${(asked ?? "default").slice(0, 80)}"`);
    return a.id;
  };
  /** Which account's jobs a token may see: its own, or (admin) all. */
  const scopeOf = (token: TokenInfo) => ownAccount(token);
  const jobs = () => jobsOf(platform);

  const createSpec = {
    tag: "objects",
    summary: "Run a deployed app (JSON body) or a POSTed static x86-64 program (the body, with ?input=&output=) once per object of a bucket prefix",
    body: JobBody,
    rawBody: { contentTypes: ["application/octet-stream", "multipart/form-data"], description: 'A static x86-64 ELF (octet-stream, CGI mode), or multipart/form-data with parts "job" (JSON), "program" (ELF) and optionally "reduce" (ELF)' },
    query: z.object({ input: z.string().optional(), output: z.string().optional(), concurrency: z.string().optional(), account: z.string().optional(), dry_run: z.string().optional().openapi({ description: "1 or true: answer 200 with the estimate only (objects, bytes, usage, cost and its basis); nothing is created" }) }),
    responses: { 201: { description: "The job, started (with its estimate)", schema: z.object({ job: JobSchema }) }, 200: { description: "A dry run's estimate", schema: z.object({ estimate: z.looseObject({ objects: z.number().int(), bytesIn: z.number().int() }) }) } },
  };
  /** A dry run (?dry_run=1, or "estimate": true in a JSON body) answers the estimate; a job is created otherwise. */
  const dryRun = (c: Context, body?: { estimate?: boolean | undefined }) => body?.estimate === true || ["1", "true"].includes(c.req.query("dry_run") ?? "");
  const createOrEstimate = async (c: Context, dry: boolean, accountId: string, spec: JobSpec) =>
    dry ? c.json({ estimate: await jobs().estimate(accountId, spec) }, 200) : c.json({ job: await jobs().create(accountId, spec) }, 201);
  endpoint("POST /v1/jobs", createSpec, async (c: Context, token, io) => {
    const type = c.req.header("content-type") ?? "";
    if (type.startsWith("application/json")) {
      const body = (await io.body())!;
      const accountId = accountOf(token, body.account);
      const spec = {
        app: body.app,
        ...commonSpec(body),
        ...(body.reduce === undefined ? {} : { reduce: { app: body.reduce.app, args: body.reduce.args as string[] | undefined } }),
      };
      return createOrEstimate(c, dryRun(c, body), accountId, spec);
    }
    if (type.startsWith("multipart/form-data")) {
      const { job, program, reduce } = await readMultipartJob(c, type);
      const accountId = accountOf(token, job.account);
      if (job.reduce !== undefined && (job.reduce.app === undefined) === (reduce === undefined)) throw new InputError('jobs: a reduce step names an app ("reduce": { "app" }) or sends a "reduce" part (one of them)', { code: "bad_reduce" });
      const spec = {
        ...(job.app === undefined ? { program, programName: job.programName } : { app: job.app }),
        ...commonSpec(job),
        ...(job.io === undefined ? {} : { io: job.io }),
        ...(job.reduce === undefined && reduce === undefined ? {} : { reduce: { app: job.reduce?.app, program: reduce, programName: job.reduce?.programName, args: job.reduce?.args as string[] | undefined } }),
      };
      return createOrEstimate(c, dryRun(c, job), accountId, spec);
    }
    const input = c.req.query("input");
    const output = c.req.query("output");
    if (input === undefined || output === undefined || input.length > 1100 || output.length > 1100) throw new InputError("jobs: ?input=BUCKET/PREFIX and ?output=BUCKET/PREFIX are required with a program body");
    const concurrencyText = c.req.query("concurrency");
    const concurrency = concurrencyText === undefined ? undefined : Number(concurrencyText);
    const accountId = accountOf(token, c.req.query("account"));
    const limit = PROGRAM_LIMITS.maxProgramBytes;
    const declared = c.req.header("content-length");
    if (declared !== undefined && Number(declared) > limit) throw new PayloadTooLargeError(`jobs: program of ${declared} bytes exceeds the limit of ${limit} bytes`);
    const raw = c.req.raw.body;
    const program = raw === null ? Buffer.alloc(0) : await readStreamLimited(raw, limit, () => new PayloadTooLargeError(`jobs: program exceeds the limit of ${limit} bytes`));
    if (program.length === 0) throw new InputError("jobs: send a static x86-64 ELF as the body, or JSON naming an app");
    const spec = { program, input: parseLocation(input, "input"), output: parseLocation(output, "output"), ...(concurrency === undefined ? {} : { concurrency }) };
    return createOrEstimate(c, dryRun(c), accountId, spec);
  });

  endpoint("GET /v1/jobs", { tag: "objects", summary: "The account's jobs, newest first", responses: { 200: { description: "Jobs", schema: z.object({ jobs: z.array(JobSchema) }) } } }, (c, token) => c.json({ jobs: jobs().list(scopeOf(token)) }));

  /** An item's output object: its head as UTF-8 text, or base64 when it is not text. */
  const itemOutput = async (accountId: string, bucket: string, key: string | null): Promise<{ output: string | null; encoding: "utf8" | "base64" | null; truncated: boolean }> => {
    if (key === null) return { output: null, encoding: null, truncated: false };
    let got;
    try {
      got = await platform.objects.getObject(accountId, bucket, key, { start: 0, end: MAX_ITEM_OUTPUT_BYTES });
    } catch (e) {
      // Deleted by its owner since: reported as no output.
      if (e instanceof ZerocellError && e.status === 404) return { output: null, encoding: null, truncated: false };
      // An empty object has no byte 0 (416): its output is "".
      if (e instanceof ZerocellError && e.status === 416) return { output: "", encoding: "utf8", truncated: false };
      throw e;
    }
    const parts: Buffer[] = [];
    for await (const chunk of got.body) parts.push(chunk as Buffer);
    const all = Buffer.concat(parts);
    const head = all.subarray(0, MAX_ITEM_OUTPUT_BYTES);
    const text = head.toString("utf8");
    const isText = Buffer.from(text, "utf8").equals(head);
    return { output: isText ? text : head.toString("base64"), encoding: isText ? "utf8" : "base64", truncated: got.info.size > head.length };
  };

  endpoint("GET /v1/jobs/:id", { tag: "objects", summary: "A job's counts, and its items with ?items=all|ok|failed|pending (and each one's output with &outputs=1)", responses: { 200: { description: "The job", schema: z.object({ job: JobSchema, items: z.array(z.looseObject({ seq: z.number().int(), key: z.string(), status: z.string() })).optional() }) } } }, async (c, token) => {
    const id = c.req.param("id") ?? "";
    const job = jobs().get(id, scopeOf(token));
    const which = c.req.query("items");
    if (which === undefined) return c.json({ job });
    if (!["all", "ok", "failed", "pending"].includes(which)) throw new InputError("jobs: ?items= is all, ok, failed or pending");
    const after = Number(c.req.query("after") ?? "-1");
    const limit = Number(c.req.query("limit") ?? "1000");
    if (!Number.isInteger(after) || !Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new InputError("jobs: ?after= is an item seq, ?limit= 1 to 10000");
    const items = jobs().items(id, scopeOf(token), { ...(which === "all" ? {} : { status: which as "ok" | "failed" | "pending" }), afterSeq: after, limit });
    if (c.req.query("outputs") !== "1") return c.json({ job, items });
    // Each item's output (its first MAX_ITEM_OUTPUT_BYTES), read from the job's own output bucket.
    if (limit > 1000) throw new InputError("jobs: ?outputs=1 lists at most 1000 items a page (?limit=)");
    const accountId = platform.jobStore.get(id, scopeOf(token))!.accountId;
    const withOutputs = [];
    for (const item of items) withOutputs.push({ ...item, ...(await itemOutput(accountId, job.output.bucket, item.outputKey)) });
    return c.json({ job, items: withOutputs });
  });

  endpoint("POST /v1/jobs/:id/cancel", { tag: "objects", summary: "Cancel a job: no new item starts", responses: { 200: { description: "The job", schema: z.object({ job: JobSchema }) } } }, (c, token) => c.json({ job: jobs().cancel(c.req.param("id") ?? "", scopeOf(token)) }));
}
