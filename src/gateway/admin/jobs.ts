/**
 * Admin API: jobs (src/platform/jobs.ts) — a deployed app or a POSTed x86-64 program run once per
 * object of a bucket prefix, outputs written under an output prefix.
 *   POST /v1/jobs                       JSON { app, input: "BUCKET/PREFIX", output: "BUCKET/PREFIX", concurrency? }
 *   POST /v1/jobs?input=…&output=…      a static x86-64 ELF as the body (application/octet-stream)
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
const JobBody = z.object({ app: z.string().min(1).max(63), input: Location, output: Location, concurrency: z.number().int().optional(), account: z.string().max(63).optional(), estimate: z.boolean().optional() }).strict();

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
    rawBody: { contentTypes: ["application/octet-stream"], description: "A static x86-64 ELF" },
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
      const spec = { app: body.app, input: parseLocation(body.input, "input"), output: parseLocation(body.output, "output"), ...(body.concurrency === undefined ? {} : { concurrency: body.concurrency }) };
      return createOrEstimate(c, dryRun(c, body), accountId, spec);
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

  endpoint("GET /v1/jobs/:id", { tag: "objects", summary: "A job's counts, and its items with ?items=all|ok|failed|pending", responses: { 200: { description: "The job", schema: z.object({ job: JobSchema, items: z.array(z.looseObject({ seq: z.number().int(), key: z.string(), status: z.string() })).optional() }) } } }, (c, token) => {
    const id = c.req.param("id") ?? "";
    const job = jobs().get(id, scopeOf(token));
    const which = c.req.query("items");
    if (which === undefined) return c.json({ job });
    if (!["all", "ok", "failed", "pending"].includes(which)) throw new InputError("jobs: ?items= is all, ok, failed or pending");
    const after = Number(c.req.query("after") ?? "-1");
    const limit = Number(c.req.query("limit") ?? "1000");
    if (!Number.isInteger(after) || !Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new InputError("jobs: ?after= is an item seq, ?limit= 1 to 10000");
    const items = jobs().items(id, scopeOf(token), { ...(which === "all" ? {} : { status: which as "ok" | "failed" | "pending" }), afterSeq: after, limit });
    return c.json({ job, items });
  });

  endpoint("POST /v1/jobs/:id/cancel", { tag: "objects", summary: "Cancel a job: no new item starts", responses: { 200: { description: "The job", schema: z.object({ job: JobSchema }) } } }, (c, token) => c.json({ job: jobs().cancel(c.req.param("id") ?? "", scopeOf(token)) }));
}
