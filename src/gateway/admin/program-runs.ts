/**
 * Admin API: POST a program to run against objects — `POST /v1/objects/run?bucket=B&key=K…`
 * with a single static x86-64 ELF as the body (src/platform/object-runs.ts). The program is
 * validated like a deployment, run once per named object of the token's account, and its outputs
 * returned; nothing is stored. An admin token runs in the default account (or ?account=).
 */
import { z } from "@hono/zod-openapi";
import type { AdminRoutes } from "./kit.js";
import { ProgramRunSchema } from "./schemas.js";
import { readStreamLimited } from "../body.js";
import { runProgram, PROGRAM_LIMITS, type ProgramTiming } from "../../platform/object-runs.js";
import { InputError, PayloadTooLargeError, ZerocellError } from "../../errors.js";

/**
 * The phases of a POSTed run, ms: body = arrival → the program read (auth included), validate
 * (desc: the validation cache's hit or miss), read = the first object, acquire = a sandbox for
 * it, ready = arrival → its guest starting (the host's clock, clamped), run = every object's run.
 */
function serverTiming(t: ProgramTiming | undefined, bodyMs: number, totalMs: number): string {
  const parts = [`body;dur=${bodyMs.toFixed(3)}`];
  if (t !== undefined) {
    parts.push(`validate;desc="${t.cache}";dur=${t.validateMs.toFixed(3)}`);
    if (t.readMs !== undefined) parts.push(`read;dur=${t.readMs.toFixed(3)}`);
    if (t.acquireMs !== undefined) parts.push(`acquire;dur=${t.acquireMs.toFixed(3)}`);
    if (t.readyMs !== undefined) parts.push(`ready;dur=${t.readyMs.toFixed(3)}`);
    parts.push(`run;dur=${t.runMs.toFixed(3)}`);
  }
  parts.push(`total;dur=${totalMs.toFixed(3)}`);
  return parts.join(", ");
}

export function registerProgramRunRoutes({ endpoint, platform, ownAccount }: AdminRoutes<"POST /v1/objects/run">): void {
  const spec = {
    tag: "objects",
    summary: "Run a static x86-64 ELF once per named object (the object as stdin); nothing is stored",
    query: z.object({ bucket: z.string().max(63), key: z.union([z.string(), z.array(z.string())]).openapi({ description: `Object keys (repeatable, 1 to ${PROGRAM_LIMITS.maxObjects})` }), account: z.string().max(63).optional().openapi({ description: "Admin tokens: the account (default: default)" }) }),
    rawBody: { contentTypes: ["application/octet-stream"], description: "The program" },
    responses: { 200: { description: "Each object's output", schema: ProgramRunSchema } },
  };
  endpoint("POST /v1/objects/run", spec, async (c, token) => {
    const bucket = c.req.query("bucket");
    const keys = c.req.queries("key") ?? [];
    if (bucket === undefined || bucket.length > 63) throw new InputError("run: ?bucket= is required");
    if (keys.length === 0 || keys.length > PROGRAM_LIMITS.maxObjects) throw new InputError(`run: name 1 to ${PROGRAM_LIMITS.maxObjects} objects with ?key=`);
    const own = ownAccount(token);
    const asked = c.req.query("account");
    let accountId = own;
    if (accountId === undefined) {
      const a = platform.store.accountByName(asked ?? "default");
      if (a === undefined) throw new ZerocellError("account_not_found", 404, `no account named "${(asked ?? "default").slice(0, 80)}"`);
      accountId = a.id;
    }
    const limit = PROGRAM_LIMITS.maxProgramBytes;
    const declared = c.req.header("content-length");
    if (declared !== undefined && Number(declared) > limit) throw new PayloadTooLargeError(`run: program of ${declared} bytes exceeds the limit of ${limit} bytes`);
    const body = c.req.raw.body;
    const program = body === null ? Buffer.alloc(0) : await readStreamLimited(body, limit, () => new PayloadTooLargeError(`run: program exceeds the limit of ${limit} bytes`));
    if (program.length === 0) throw new InputError("run: send the program (a static x86-64 ELF) as the body");
    const arrivedAt = (c.get("arrivedAt") as number | undefined) ?? performance.timeOrigin + performance.now();
    const bodyMs = performance.timeOrigin + performance.now() - arrivedAt;
    const timing: { arrivedAt: number; out?: ProgramTiming } = { arrivedAt };
    const run = await runProgram(platform, accountId, program, bucket, keys, timing);
    const res = c.json(run);
    res.headers.set("server-timing", serverTiming(timing.out, bodyMs, performance.timeOrigin + performance.now() - arrivedAt));
    return res;
  });
}
