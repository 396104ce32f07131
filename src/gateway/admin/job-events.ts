/**
 * Admin API: a job's progress as server-sent events, and what jobs cost.
 *   GET /v1/jobs/:id/events[?after=N]   text/event-stream: `items` (finished items; id = the last
 *                                       one's finish number: Last-Event-ID or ?after= resumes
 *                                       after it), `progress` (counts, objects/s, ETA), `done`
 *                                       ({ job }: the job's view; then the stream ends)
 *   GET /v1/usage/jobs[?account=]       per job: objects, bytes, the estimate and the actual cost
 * The events come from src/platform/job-events.ts; the costs from src/platform/job-costs.ts.
 * Must never: stream or price another account's job for an account token (404 job_not_found,
 * like a missing one), or hold a stream slot after the client went away.
 */
import { streamSSE } from "hono/streaming";
import { z } from "@hono/zod-openapi";
import type { AdminRoutes } from "./kit.js";
import type { Scope } from "../../store/index.js";
import { jobsOf } from "../../platform/jobs.js";
import { jobEventsOf } from "../../platform/job-events.js";
import { ErrorBodySchema } from "./openapi.js";
import { InputError, ZerocellError } from "../../errors.js";
import { log } from "../../log.js";

export const JOB_EVENT_ENDPOINTS = {
  "GET /v1/jobs/:id/events": ["deploy"],
  "GET /v1/usage/jobs": ["read-usage"],
} as const satisfies Record<string, readonly [Scope, ...Scope[]]>;

type Endpoint = keyof typeof JOB_EVENT_ENDPOINTS;

/** Jobs one /v1/usage/jobs answer lists at most (the newest). */
const MAX_USAGE_JOBS = 1000;

/** A finish number from Last-Event-ID or ?after= (client input: digits only, bounded). */
function parseAfter(value: string | undefined): number {
  if (value === undefined || value === "") return 0;
  if (!/^\d{1,15}$/.test(value.trim())) throw new InputError("jobs: Last-Event-ID (or ?after=) must be an event id this stream sent (a whole number)", { code: "bad_last_event_id" });
  return Number(value.trim());
}

const RatedSchema = z.looseObject({ currency: z.string(), totalMicros: z.number(), total: z.number() });
const JobCostRowSchema = z.object({
  id: z.string(),
  status: z.string(),
  app: z.string().nullable(),
  program: z.string().nullable(),
  objects: z.number().int(),
  createdAt: z.string(),
  finishedAt: z.string().nullable(),
  estimate: z.looseObject({ objects: z.number(), bytesIn: z.number(), cost: RatedSchema }).nullable(),
  cost: z.looseObject({ usage: z.looseObject({ records: z.number() }), cost: RatedSchema }),
});

export function registerJobEventRoutes({ endpoint, platform, ownAccount }: AdminRoutes<Endpoint>): void {
  const jobs = () => jobsOf(platform);
  // Made now, so the hub listens to the job store before any stream opens.
  const hub = jobEventsOf(platform);

  endpoint(
    "GET /v1/jobs/:id/events",
    {
      tag: "objects",
      summary: "A job's progress as server-sent events (items, progress, done)",
      description:
        "Events: `items` — data { items: [{ seq, key, status, error }], counts }, id = the last item's finish number (send it back as Last-Event-ID, or ?after=, to resume after it); " +
        "`progress` — { status, total, counts, done, rate (objects/s), etaSeconds }; `done` — { job }, then the stream ends. A job that already finished gets its items and `done` at once. " +
        "Items come one per event when slow, batched (at most 10 events/s) when fast. A comment line after 15 s of silence keeps the connection open.",
      query: z.object({ after: z.string().max(15).optional().openapi({ description: "Resume after this event id (same as the Last-Event-ID header)" }) }),
      responses: {
        200: { description: "The event stream", contentType: "text/event-stream", schema: z.string() },
        429: { description: "Too many progress streams open (per account or on the server): too_many_streams", schema: ErrorBodySchema },
      },
    },
    (c, token) => {
      const id = c.req.param("id") ?? "";
      // 404 first: another account's job answers like a missing one.
      const view = jobs().get(id, ownAccount(token));
      const row = platform.jobStore.get(view.id, undefined)!;
      const after = parseAfter(c.req.header("last-event-id") ?? c.req.query("after"));
      // A slot now (429 before the stream starts), freed when the stream ends either way.
      const { events, close } = hub.open(row.accountId, row.id, after);
      c.req.raw.signal.addEventListener("abort", close);
      return streamSSE(c, async (stream) => {
        stream.onAbort(close);
        try {
          for await (const e of events) {
            if (stream.aborted || stream.closed) break;
            if (e.comment !== undefined) await stream.write(`: ${e.comment}\n\n`);
            else await stream.writeSSE({ data: e.data ?? "", ...(e.event === undefined ? {} : { event: e.event }), ...(e.id === undefined ? {} : { id: e.id }) });
          }
        } catch (e) {
          // The stream has started (200 sent): the failure goes to the log, the client gets a generic event.
          log.error("job events stream failed", { job: row.id, err: (e as Error).message.slice(0, 1000) });
          await stream.writeSSE({ event: "error", data: JSON.stringify({ code: "internal_error", message: "jobs: the progress stream failed; reconnect with Last-Event-ID" }) });
        } finally {
          close();
        }
      });
    },
  );

  endpoint(
    "GET /v1/usage/jobs",
    {
      tag: "billing",
      summary: "Jobs with their estimate (made before each started) and actual cost (the sum of their items' usage records)",
      query: z.object({ account: z.string().max(63).optional() }),
      responses: { 200: { description: "Jobs, newest first", schema: z.object({ jobs: z.array(JobCostRowSchema) }) } },
    },
    (c, token, io) => {
      const q = io.query();
      const own = ownAccount(token);
      let accountId = own;
      if (q.account !== undefined) {
        const a = platform.store.accountByName(q.account);
        // Another account's name answers like a missing one.
        if (a === undefined || (own !== undefined && a.id !== own)) throw new ZerocellError("account_not_found", 404, `no account named "${q.account.slice(0, 80)}"`);
        accountId = a.id;
      }
      const rows = jobs()
        .list(accountId, MAX_USAGE_JOBS)
        .map((j) => ({ id: j.id, status: j.status, app: j.app, program: j.program, objects: j.total, createdAt: j.createdAt, finishedAt: j.finishedAt, estimate: j.estimate, cost: j.cost }));
      return c.json({ jobs: rows });
    },
  );
}
