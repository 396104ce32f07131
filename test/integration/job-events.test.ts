/**
 * Job progress over server-sent events, and what a job costs: the stream of a job delivers each
 * finished item once and a `done` whose counts are the job's; a stream resumed with
 * Last-Event-ID skips what it saw; another account's job is 404; the per-account stream limit
 * answers 429 and a client that goes away frees its slot (the server's open-stream gauge falls
 * back to 0); a dry run creates nothing and its estimate counts the prefix's objects and bytes;
 * after a job, its `cost` is the sum of its items' usage records (as the usage API reports
 * them), and `zerocell usage --jobs` and `jobs status` show estimate and cost.
 */
import { describe, it, expect, beforeAll, afterAll, vi } from "vitest";
import { join } from "node:path";
import { writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import http from "node:http";
import { Readable } from "node:stream";
import { createHash } from "node:crypto";
import { EventSourceParserStream } from "eventsource-parser/stream";
import { CreateBucketCommand, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { queryDb, startServer, admin, cleanup, phpBundle, type TestServer } from "../helpers/server.js";
import { s3Client, type Key } from "../helpers/s3.js";
import { x86Fixture } from "../helpers/x86.js";
import { DEFAULT_PLAN, rateUsage } from "../../src/billing/rating.js";

const json = (o: unknown) => ({ body: JSON.stringify(o), contentType: "application/json" });
const N = 20;
const POISONED = 7;
const SLOW = 40;
const keyOf = (i: number) => `inbox/${String(i).padStart(4, "0")}.eml`;

function mail(i: number): string {
  const body = Array.from({ length: 3 + (i % 7) }, (_, l) => `line ${l} of message ${i} with some words ${"x ".repeat(i % 5)}`).join("\n");
  return `From: sender${i}@example.com\nSubject: message ${i}\n\n${body}${i === POISONED ? "\nPOISON\n" : "\n"}`;
}

interface JobJson {
  id: string;
  status: string;
  total: number;
  counts: { pending: number; ok: number; failed: number };
  estimate: { objects: number; bytesIn: number; basis: { kind: string; runs?: number }; usage: { requests: number; instructions: number }; cost: { totalMicros: number; currency: string } } | null;
  cost: { usage: { records: number; requests: number; mbMs: number; cpuUs: number; instructions: number; bytesIn: number; bytesOut: number; wallUs: number }; cost: { totalMicros: number; currency: string } };
}

interface SseEvent {
  event?: string;
  id?: string;
  data: string;
}

/** An open event stream: events as they come, and a way to hang up. */
interface Stream {
  status: number;
  events: SseEvent[];
  /** Resolves when the server ended the stream (or the client hung up). */
  ended: Promise<void>;
  close(): void;
  body: string;
}

describe("jobs: progress over SSE, estimate and cost", () => {
  let server: TestServer;
  let s3: S3Client;
  let key: Key;
  let otherToken = "";
  let program: Buffer;
  let programFile = "";
  const totalBytes = Array.from({ length: N }, (_, i) => Buffer.byteLength(mail(i))).reduce((a, b) => a + b, 0);

  const query = <T>(sql: string, ...args: unknown[]): T[] => queryDb<T>(server, sql, ...args);
  const job = async (id: string) => (await admin(server, "GET", `/v1/jobs/${id}`)).json.job as JobJson;
  const metric = async (name: string) => {
    const m = await admin(server, "GET", "/metrics");
    const line = String(m.json).split("\n").find((l) => l.startsWith(`${name} `));
    return Number(line?.split(" ")[1] ?? NaN);
  };
  const openStreams = () => metric("zerocell_job_event_streams");

  /**
   * Opens GET /v1/jobs/:id/events and collects its events in the background. A connection of its
   * own (agent: false): a kept-alive socket the server closed while a synchronous CLI run blocked
   * this process would fail the request.
   */
  const stream = async (id: string, opts: { token?: string; lastEventId?: string } = {}): Promise<Stream> => {
    const headers: Record<string, string> = { authorization: `Bearer ${opts.token ?? server.token}`, accept: "text/event-stream" };
    if (opts.lastEventId !== undefined) headers["last-event-id"] = opts.lastEventId;
    const req = http.request(`${server.urls.admin}/v1/jobs/${id}/events`, { headers, agent: false });
    let closed = false;
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      req.on("response", resolve);
      req.on("error", reject);
      req.end();
    });
    const s: Stream = { status: res.statusCode ?? 0, events: [], ended: Promise.resolve(), close: () => ((closed = true), req.destroy()), body: "" };
    if (s.status !== 200) {
      for await (const c of res) s.body += String(c);
      return s;
    }
    expect(res.headers["content-type"]).toContain("text/event-stream");
    s.ended = (async () => {
      try {
        const web = Readable.toWeb(res) as unknown as ReadableStream<Uint8Array>;
        for await (const e of web.pipeThrough(new TextDecoderStream() as unknown as TransformStream<Uint8Array, string>).pipeThrough(new EventSourceParserStream()) as unknown as AsyncIterable<SseEvent>) s.events.push(e);
      } catch (e) {
        if (!closed) throw e;
      }
    })();
    return s;
  };
  const itemsOf = (s: Stream) => s.events.filter((e) => e.event === "items").flatMap((e) => (JSON.parse(e.data) as { items: Array<{ seq: number; key: string; status: string; error: string | null }> }).items);

  beforeAll(async () => {
    server = await startServer(["--no-spare-hosts"]);
    key = JSON.parse((await server.cli(["access-keys", "create", "--json"])).stdout) as Key;
    s3 = s3Client(server, key);
    await server.cli(["deploy", phpBundle("slow.localhost", { "index.php": "<?php usleep(200000); echo strlen(file_get_contents('php://input'));" }), "--app", "slow"]);
    await s3.send(new CreateBucketCommand({ Bucket: "mail" }));
    await s3.send(new CreateBucketCommand({ Bucket: "out" }));
    for (let i = 0; i < N; i++) await s3.send(new PutObjectCommand({ Bucket: "mail", Key: keyOf(i), Body: mail(i) }));
    for (let i = 0; i < SLOW; i++) await s3.send(new PutObjectCommand({ Bucket: "mail", Key: `slow/${i}`, Body: `object ${i}` }));
    otherToken = (await admin(server, "POST", "/v1/accounts", json({ name: "other" }))).json.token;
    program = x86Fixture("wordcount");
    programFile = join(tmpdir(), `wordcount-events-${process.pid}`);
    writeFileSync(programFile, program, { mode: 0o755 });
  }, 240_000);

  afterAll(async () => {
    await server?.stop();
    if (server !== undefined) cleanup(server.dataDir);
  });

  it("a dry run creates nothing; its estimate counts the prefix's objects and bytes (default basis without history)", async () => {
    const dry = await admin(server, "POST", "/v1/jobs?input=mail/inbox/&output=out/x86/&dry_run=1", { body: program, contentType: "application/octet-stream" });
    expect(dry.status, JSON.stringify(dry.json)).toBe(200);
    expect(dry.json.job).toBeUndefined();
    expect(dry.json.estimate).toMatchObject({ objects: N, bytesIn: totalBytes, basis: { kind: "default" }, usage: { requests: N }, cost: { currency: "usd" } });
    expect(dry.json.estimate.usage.instructions).toBeGreaterThan(0);
    expect(dry.json.estimate.cost.totalMicros).toBeGreaterThan(0);
    // "estimate": true in a JSON body does the same for an app.
    const app = await admin(server, "POST", "/v1/jobs", json({ app: "slow", input: "mail/slow/", output: "out/slow/", estimate: true }));
    expect(app.status, JSON.stringify(app.json)).toBe(200);
    expect(app.json.estimate).toMatchObject({ objects: SLOW, bytesIn: Array.from({ length: SLOW }, (_, i) => `object ${i}`.length).reduce((a, b) => a + b, 0), basis: { kind: "default" } });
    // The CLI's --dry-run prints it.
    expect((await server.cli(["jobs", "run", "--program", programFile, "--input", "mail/inbox/", "--output", "out/x86/", "--dry-run"])).stdout).toMatch(new RegExp(`estimate: ${N} objects, ${totalBytes} bytes`));
    // Nothing created: no job, no item, no stored program.
    expect((await admin(server, "GET", "/v1/jobs")).json.jobs).toEqual([]);
    expect(query<{ n: number }>("SELECT COUNT(*) AS n FROM job_items")[0]!.n).toBe(0);
    const sha = createHash("sha256").update(program).digest("hex");
    expect(existsSync(join(server.dataDir, "blobs", "sha256", sha.slice(0, 2), sha.slice(2)))).toBe(false);
  }, 120_000);

  it("after a job its cost is the sum of its items' usage records; `zerocell usage --jobs` and `jobs status` show it; the next estimate uses the history", async () => {
    const opened = await metric("zerocell_job_event_streams_opened_total");
    const r = await server.cli(["jobs", "run", "--program", programFile, "--input", "mail/inbox/", "--output", "out/x86/", "--concurrency", "2", "--wait", "--json"], { allowFail: true });
    expect(r.code, r.stderr).toBe(2);
    // --wait followed the job's progress stream (not polling).
    expect(await metric("zerocell_job_event_streams_opened_total")).toBe(opened + 1);
    const id = (JSON.parse(r.stdout) as { job: JobJson }).job.id;
    const j = await job(id);
    expect(j.counts).toEqual({ ok: N - 1, failed: 1, pending: 0 });
    expect(j.estimate).toMatchObject({ objects: N, bytesIn: totalBytes, basis: { kind: "default" } });
    // A created job keeps its program in the blob store (the path the dry run left empty).
    const sha = createHash("sha256").update(program).digest("hex");
    expect(existsSync(join(server.dataDir, "blobs", "sha256", sha.slice(0, 2), sha.slice(2)))).toBe(true);
    // The usage records of the job's items, summed here.
    const rec = query<{ n: number; ins: number; cpu: number; bin: number; bout: number; mbMs: number }>(
      "SELECT COUNT(*) AS n, SUM(instructions) AS ins, SUM(cpu_us) AS cpu, SUM(bytes_in) AS bin, SUM(bytes_out) AS bout, SUM(((wall_us + 999) / 1000) * memory_mb) AS mbMs FROM usage_records WHERE request_id LIKE ?",
      `job-${id}-%`,
    )[0]!;
    expect(rec.n).toBeGreaterThanOrEqual(N);
    // Metered per task: instructions, CPU time and bytes read.
    expect(rec.ins).toBeGreaterThan(0);
    expect(rec.cpu).toBeGreaterThan(0);
    expect(rec.bin).toBeGreaterThanOrEqual(totalBytes);
    expect(j.cost.usage).toMatchObject({ records: rec.n, requests: rec.n, instructions: rec.ins, cpuUs: rec.cpu, bytesIn: rec.bin, bytesOut: rec.bout, mbMs: rec.mbMs });
    // The usage API (daily aggregates per app: the program's runs are this job's only) agrees, and so does the rated amount.
    const usage = (await admin(server, "GET", "/v1/usage")).json.usage as Array<{ app: string; requests: number; instructions: number; bytesIn: number; bytesOut: number; gbSeconds: number }>;
    const row = usage.find((u) => u.app.startsWith("program:"));
    expect(row, JSON.stringify(usage)).toMatchObject({ requests: j.cost.usage.requests, instructions: j.cost.usage.instructions, bytesIn: j.cost.usage.bytesIn, bytesOut: j.cost.usage.bytesOut });
    const mbMs = Math.round(row!.gbSeconds * 1024 * 1000);
    expect(j.cost.cost.totalMicros).toBe(rateUsage(DEFAULT_PLAN, { requests: row!.requests, mbMs, instructions: row!.instructions }).totalMicros);
    expect(j.cost.cost.totalMicros).toBeGreaterThan(0);
    // zerocell usage --jobs
    const listed = (JSON.parse((await server.cli(["usage", "--jobs", "--json"])).stdout) as { jobs: JobJson[] }).jobs.find((x) => x.id === id);
    expect(listed).toMatchObject({ estimate: j.estimate, cost: j.cost });
    const text = (await server.cli(["usage", "--jobs"])).stdout;
    expect(text).toContain(id);
    expect(text).toContain((j.cost.cost.totalMicros / 1e8).toFixed(6));
    // jobs status shows the estimate and the cost
    const status = (await server.cli(["jobs", "status", id], { allowFail: true })).stdout;
    expect(status).toContain(`estimate: ${N} objects, ${totalBytes} bytes`);
    expect(status).toContain(`cost: ${rec.n} runs`);
    // Another account sees no job usage of ours.
    expect((await admin(server, "GET", "/v1/usage/jobs", { token: otherToken })).json.jobs).toEqual([]);
    // The next estimate is fitted to this program's runs; instructions are deterministic, so it is close.
    const next = (await admin(server, "POST", "/v1/jobs?input=mail/inbox/&output=out/x86b/&dry_run=1", { body: program, contentType: "application/octet-stream" })).json.estimate as NonNullable<JobJson["estimate"]>;
    expect(next.basis.kind).toBe("history");
    expect(next.basis.runs).toBeGreaterThanOrEqual(N - 1);
    expect(Math.abs(next.usage.instructions - rec.ins) / rec.ins).toBeLessThan(0.25);
  }, 240_000);

  it("the stream of a finished job: each item once, then `done` with the job's counts; Last-Event-ID skips what was seen", async () => {
    const id = ((await admin(server, "GET", "/v1/jobs")).json.jobs as JobJson[])[0]!.id;
    const s = await stream(id);
    expect(s.status).toBe(200);
    await s.ended;
    const items = itemsOf(s);
    expect(items.map((i) => i.seq).sort((a, b) => a - b)).toEqual(Array.from({ length: N }, (_, i) => i));
    expect(items.find((i) => i.seq === POISONED)).toMatchObject({ key: keyOf(POISONED), status: "failed", error: expect.any(String) });
    const last = s.events.at(-1)!;
    expect(last.event).toBe("done");
    const done = (JSON.parse(last.data) as { job: JobJson }).job;
    const now = await job(id);
    expect(done.counts).toEqual(now.counts);
    expect(done.status).toBe("done");
    // Ids are finish numbers: resuming after the 5th item sends the rest, in the same order.
    const resumed = await stream(id, { lastEventId: "5" });
    await resumed.ended;
    expect(itemsOf(resumed)).toEqual(items.slice(5));
    expect(resumed.events.at(-1)!.event).toBe("done");
    // A bad Last-Event-ID is refused with a code.
    const bad = await stream(id, { lastEventId: "x1" });
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body).error.code).toBe("bad_last_event_id");
  }, 120_000);

  it("a live job: items and progress as they finish, a reconnect resumes where it left, another account gets 404, the stream limit is 429, and hanging up frees the slot", async () => {
    const started = await admin(server, "POST", "/v1/jobs", json({ app: "slow", input: "mail/slow/", output: "out/slow/", concurrency: 1 }));
    expect(started.status, JSON.stringify(started.json)).toBe(201);
    const id = started.json.job.id as string;
    expect(started.json.job.estimate).toMatchObject({ objects: SLOW, basis: { kind: "default" } });
    // Another account: 404 like a missing job, no slot taken.
    const theirs = await stream(id, { token: otherToken });
    expect(theirs.status).toBe(404);
    expect(JSON.parse(theirs.body).error.code).toBe("job_not_found");

    // 1. the first stream sees a few items, then hangs up
    const first = await stream(id);
    expect(first.status).toBe(200);
    await vi.waitFor(() => expect(itemsOf(first).length).toBeGreaterThanOrEqual(3), { timeout: 60_000, interval: 50 });
    expect(first.events.some((e) => e.event === "progress")).toBe(true);
    const progress = JSON.parse(first.events.filter((e) => e.event === "progress").at(-1)!.data) as { total: number; status: string };
    expect(progress).toMatchObject({ total: SLOW, status: "running" });
    first.close();
    await first.ended;
    const seen = itemsOf(first);
    const lastId = first.events.filter((e) => e.id !== undefined).at(-1)!.id!;

    // 2. a reconnect with the last id seen, while the job runs: it gets the rest (checked below)
    const rest = await stream(id, { lastEventId: lastId });
    expect(rest.status).toBe(200);
    // 3. the stream limit: 8 per account (the reconnect is one); the 9th is 429
    const held: Stream[] = [rest];
    for (let i = 0; i < 7; i++) held.push(await stream(id));
    expect(held.map((h) => h.status)).toEqual(Array(8).fill(200));
    expect(await openStreams()).toBe(8);
    const ninth = await stream(id);
    expect(ninth.status).toBe(429);
    expect(JSON.parse(ninth.body).error.code).toBe("too_many_streams");
    // A stream that hangs up frees its slot at once: a new one gets it.
    held.pop()!.close();
    await vi.waitFor(async () => expect(await openStreams()).toBe(7), { timeout: 30_000, interval: 100 });
    const again = await stream(id);
    expect(again.status).toBe(200);
    held.push(again);
    // The CLI's --wait cannot have a stream now (429): it polls, and still reports the finished job.
    expect((await job(id)).status).toBe("running");
    const opened = await metric("zerocell_job_event_streams_opened_total");
    const waited = JSON.parse((await server.cli(["jobs", "status", id, "--wait", "--json"])).stdout) as { job: JobJson };
    expect(waited.job).toMatchObject({ status: "done", counts: { ok: SLOW, failed: 0, pending: 0 } });
    expect(await metric("zerocell_job_event_streams_opened_total")).toBe(opened);
    // The held streams end with the job (each with `done`); every slot is free again.
    await Promise.all(held.map((h) => h.ended));
    expect(held.every((h) => h.events.at(-1)?.event === "done")).toBe(true);
    await vi.waitFor(async () => expect(await openStreams()).toBe(0), { timeout: 30_000, interval: 100 });
    // 4. the reconnect got the rest: nothing twice, nothing lost
    const after = itemsOf(rest);
    const all = [...seen, ...after].map((i) => i.seq).sort((a, b) => a - b);
    expect(all).toEqual(Array.from({ length: SLOW }, (_, i) => i));
    const done = JSON.parse(rest.events.at(-1)!.data) as { job: JobJson };
    expect(rest.events.at(-1)!.event).toBe("done");
    expect(done.job.counts).toEqual((await job(id)).counts);
    expect(done.job.counts).toEqual({ ok: SLOW, failed: 0, pending: 0 });
  }, 240_000);

  it("a client that goes away mid-job releases its stream at once", async () => {
    const started = await admin(server, "POST", "/v1/jobs", json({ app: "slow", input: "mail/slow/", output: "out/slow2/", concurrency: 1 }));
    const id = started.json.job.id as string;
    const streams = [await stream(id), await stream(id), await stream(id)];
    expect(await openStreams()).toBe(3);
    for (const s of streams) s.close();
    await vi.waitFor(async () => expect(await openStreams()).toBe(0), { timeout: 30_000, interval: 100 });
    expect((await job(id)).status).toBe("running");
    await admin(server, "POST", `/v1/jobs/${id}/cancel`);
    // A cancelled job's stream ends with `done` (status cancelled) once its item in flight finished.
    const s = await stream(id);
    await s.ended;
    const done = JSON.parse(s.events.at(-1)!.data) as { job: JobJson };
    expect(done.job.status).toBe("cancelled");
    expect(done.job.counts).toEqual((await job(id)).counts);
  }, 120_000);
});
