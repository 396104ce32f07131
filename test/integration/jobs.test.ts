/**
 * Jobs over many objects: 50 mail-like objects, a PHP app and a POSTed x86 program counting the
 * words of each, outputs written under an output prefix and checked; the one poisoned object is
 * reported as failed; cancel stops a job; kill -9 and a restart finish a job with each item
 * run to completion once and metered once; another account reaches neither our buckets, nor
 * our app, nor our jobs.
 */
import { describe, it, expect, beforeAll, afterAll, vi } from "vitest";
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { CreateBucketCommand, PutObjectCommand, GetObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { queryDb, startServer, admin, cleanup, phpBundle, isAlive, type TestServer } from "../helpers/server.js";
import { s3Client, type Key } from "../helpers/s3.js";
import { x86Fixture } from "../helpers/x86.js";

const json = (o: unknown) => ({ body: JSON.stringify(o), contentType: "application/json" });
const N = 50;
const POISONED = 17;
const words = (s: string) => s.trim().split(/\s+/).filter(Boolean).length;
const keyOf = (i: number) => `inbox/${String(i).padStart(4, "0")}.eml`;

/** A mail-like text: headers and a body of a few lines (the poisoned one says POISON). */
function mail(i: number): string {
  const body = Array.from({ length: 3 + (i % 7) }, (_, l) => `line ${l} of message ${i} with some words ${"x ".repeat(i % 5)}`).join("\n");
  return `From: sender${i}@example.com\nTo: inbox@example.com\nSubject: message ${i}\n\n${body}${i === POISONED ? "\nPOISON\n" : "\n"}`;
}

interface JobJson {
  id: string;
  status: string;
  total: number;
  counts: { pending: number; ok: number; failed: number };
}

describe("jobs: a program over every object of a prefix", () => {
  let server: TestServer;
  let s3: S3Client;
  let otherToken = "";
  let key: Key;

  const query = <T>(sql: string, ...args: unknown[]): T[] => queryDb<T>(server, sql, ...args);
  const job = async (id: string, token?: string) => (await admin(server, "GET", `/v1/jobs/${id}`, token === undefined ? {} : { token })).json.job as JobJson;
  const output = async (bucket: string, key: string) => (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body!.transformToString();

  beforeAll(async () => {
    server = await startServer(["--no-spare-hosts"]);
    key = JSON.parse((await server.cli(["access-keys", "create", "--json"])).stdout) as Key;
    s3 = s3Client(server, key);
    const wc = `<?php
$body = file_get_contents('php://input');
if (strpos($body, 'POISON') !== false) { http_response_code(500); echo "poisoned"; exit; }
header('Content-Type: text/plain');
echo count(preg_split('/\\s+/', trim($body), -1, PREG_SPLIT_NO_EMPTY)), "\\n";
`;
    await server.cli(["deploy", phpBundle("wc.localhost", { "index.php": wc }), "--app", "wc"]);
    await server.cli(["deploy", phpBundle("slow.localhost", { "index.php": "<?php usleep(250000); echo strlen(file_get_contents('php://input'));" }), "--app", "slow"]);
    await s3.send(new CreateBucketCommand({ Bucket: "mail" }));
    await s3.send(new CreateBucketCommand({ Bucket: "out" }));
    for (let i = 0; i < N; i++) await s3.send(new PutObjectCommand({ Bucket: "mail", Key: keyOf(i), Body: mail(i), ContentType: "message/rfc822" }));
    otherToken = (await admin(server, "POST", "/v1/accounts", json({ name: "other" }))).json.token;
  }, 240_000);

  afterAll(async () => {
    await server?.stop();
    if (server !== undefined) cleanup(server.dataDir);
  });

  it("runs a PHP app once per object: outputs under the output prefix, the poisoned object failed, each item metered once", async () => {
    const r = await server.cli(["jobs", "run", "--app", "wc", "--input", "mail/inbox/", "--output", "out/wc/", "--concurrency", "4", "--wait", "--json"], { allowFail: true });
    // Exit status 2: the job finished with failed items.
    expect(r.code, r.stderr).toBe(2);
    const res = JSON.parse(r.stdout) as { job: JobJson; failed: Array<{ key: string; error: { code: string; message: string } }> };
    expect(res.job).toMatchObject({ status: "done", total: N, counts: { ok: N - 1, failed: 1, pending: 0 } });
    expect(res.failed).toHaveLength(1);
    expect(res.failed[0]).toMatchObject({ key: keyOf(POISONED), error: { code: "program_failed" } });
    expect(res.failed[0]!.error.message).toContain("status 500");
    for (let i = 0; i < N; i++) {
      if (i === POISONED) continue;
      expect(await output("out", `wc/${String(i).padStart(4, "0")}.eml`)).toBe(`${words(mail(i))}\n`);
    }
    // One usage record per item, mode "job", billed to the job's account.
    const usage = query<{ n: number; accounts: number; ids: number }>("SELECT COUNT(*) AS n, COUNT(DISTINCT account_id) AS accounts, COUNT(DISTINCT request_id) AS ids FROM usage_records WHERE mode = 'job' AND request_id LIKE ?", `job-${res.job.id}-%`);
    expect(usage[0]).toEqual({ n: N, accounts: 1, ids: N });
    // status and list
    expect(JSON.parse((await server.cli(["jobs", "list", "--json"])).stdout).jobs[0]).toMatchObject({ id: res.job.id, status: "done" });
    const items = JSON.parse((await server.cli(["jobs", "status", res.job.id, "--items", "all", "--json"])).stdout) as { items: Array<{ key: string; status: string; outputKey: string | null }> };
    expect(items.items).toHaveLength(N);
    expect(items.items[0]).toMatchObject({ key: keyOf(0), status: "ok", outputKey: "wc/0000.eml" });
  }, 240_000);

  it("runs a POSTed x86 program the same way", async () => {
    const file = join(tmpdir(), `wordcount-${process.pid}`);
    writeFileSync(file, x86Fixture("wordcount"), { mode: 0o755 });
    const r = await server.cli(["jobs", "run", "--program", file, "--input", "mail/inbox/", "--output", "out/x86/", "--concurrency", "2", "--wait", "--json"], { allowFail: true });
    expect(r.code, r.stderr).toBe(2);
    const res = JSON.parse(r.stdout) as { job: JobJson; failed: Array<{ key: string; error: { code: string } }> };
    expect(res.job.counts).toEqual({ ok: N - 1, failed: 1, pending: 0 });
    expect(res.failed.map((f) => f.key)).toEqual([keyOf(POISONED)]);
    for (const i of [0, 1, 33, N - 1]) expect(await output("out", `x86/${String(i).padStart(4, "0")}.eml`)).toBe(`${words(mail(i))}\n`);
    // A program with a privileged instruction is refused before any job exists.
    const evil = await admin(server, "POST", "/v1/jobs?input=mail/inbox/&output=out/evil/", { body: x86Fixture("privileged"), contentType: "application/octet-stream" });
    expect(evil.status).toBe(400);
  }, 240_000);

  it("refuses bad jobs with a code: overlapping output, concurrency out of range, unknown app", async () => {
    const post = (o: unknown) => admin(server, "POST", "/v1/jobs", json(o));
    expect((await post({ app: "wc", input: "mail/inbox/", output: "mail/inbox/out/" })).json.error.code).toBe("output_overlaps_input");
    expect((await post({ app: "wc", input: "mail/inbox/", output: "out/a/", concurrency: 1000 })).json.error.code).toBe("bad_concurrency");
    expect((await post({ app: "nope", input: "mail/inbox/", output: "out/a/" })).status).toBe(404);
    expect((await post({ app: "wc", input: "nobucket/x", output: "out/a/" })).json.error.code).toBe("no_such_bucket");
  });

  it("refuses hostile multipart job bodies with a code, and creates no job for them", async () => {
    const before = (await admin(server, "GET", "/v1/jobs")).json.jobs.length as number;
    const B = "zcboundary";
    const part = (name: string, body: string | Buffer, file = false) =>
      Buffer.concat([Buffer.from(`--${B}\r\ncontent-disposition: form-data; name="${name}"${file ? '; filename="p"' : ""}\r\ncontent-type: ${file ? "application/octet-stream" : "application/json"}\r\n\r\n`), Buffer.from(body), Buffer.from("\r\n")]);
    const post = (parts: Buffer[], raw?: Buffer) =>
      admin(server, "POST", "/v1/jobs", { body: raw ?? Buffer.concat([...parts, Buffer.from(`--${B}--\r\n`)]), contentType: `multipart/form-data; boundary=${B}` });
    const job = JSON.stringify({ input: "mail/inbox/", output: "out/mp/" });
    const cases: Array<[string, Promise<{ status: number; json: any }>, number, string]> = [
      ["not multipart at all", post([], Buffer.from("\x00\x01garbage without a boundary")), 400, "bad_multipart"],
      ["an unknown part", post([part("job", job), part("extra", "x")]), 400, "bad_multipart"],
      ["no job part", post([part("program", x86Fixture("wordcount"), true)]), 400, "bad_multipart"],
      ["a job part that is not JSON", post([part("job", "{nope"), part("program", x86Fixture("wordcount"), true)]), 400, "bad_multipart"],
      ["neither an app nor a program", post([part("job", job)]), 400, "bad_multipart"],
      ["a job part over its limit", post([part("job", JSON.stringify({ input: "mail/inbox/", output: "out/mp/", pad: "x".repeat(300 * 1024) })), part("program", x86Fixture("wordcount"), true)]), 413, ""],
      ["a program that is not an ELF", post([part("job", job), part("program", "#!/bin/sh\necho hi\n", true)]), 400, ""],
    ];
    for (const [what, res, status, code] of cases) {
      const r = await res;
      expect(r.status, `${what}: ${JSON.stringify(r.json)}`).toBe(status);
      if (code !== "") expect(r.json.error.code, what).toBe(code);
      expect(typeof r.json.error.message, what).toBe("string");
    }
    // Nothing was created, and the server still takes a good multipart job.
    expect((await admin(server, "GET", "/v1/jobs")).json.jobs.length).toBe(before);
    const ok = await post([part("job", JSON.stringify({ input: "mail/inbox/", output: "out/mp-ok/", estimate: true })), part("program", x86Fixture("wordcount"), true)]);
    expect(ok.status, JSON.stringify(ok.json)).toBeLessThan(300);
  });

  it("another account can neither run against our buckets or app nor see or cancel our jobs", async () => {
    const mine = (await admin(server, "GET", "/v1/jobs")).json.jobs as JobJson[];
    expect(mine.length).toBeGreaterThan(0);
    const theirs = (o: unknown) => admin(server, "POST", "/v1/jobs", { token: otherToken, ...json(o) });
    // Our app: 404 like a missing one.
    const app = await theirs({ app: "wc", input: "mail/inbox/", output: "out/x/" });
    expect(app.status).toBe(404);
    expect(["app_not_found", "no_such_bucket"]).toContain(app.json.error.code);
    // Our buckets, with a program of theirs: their namespace has no "mail" nor "out".
    const program = await admin(server, "POST", "/v1/jobs?input=mail/inbox/&output=out/theirs/", { token: otherToken, body: x86Fixture("wordcount"), contentType: "application/octet-stream" });
    expect(program.status).toBe(404);
    expect(program.json.error.code).toBe("no_such_bucket");
    expect((await admin(server, "GET", "/v1/jobs", { token: otherToken })).json.jobs).toEqual([]);
    expect((await admin(server, "GET", `/v1/jobs/${mine[0]!.id}`, { token: otherToken })).status).toBe(404);
    expect((await admin(server, "POST", `/v1/jobs/${mine[0]!.id}/cancel`, { token: otherToken })).status).toBe(404);
  });

  it("cancel stops a job: no item starts after it", async () => {
    const started = await admin(server, "POST", "/v1/jobs", json({ app: "slow", input: "mail/inbox/", output: "out/slow-cancel/", concurrency: 1 }));
    expect(started.status, JSON.stringify(started.json)).toBe(201);
    const id = started.json.job.id as string;
    await vi.waitFor(async () => expect((await job(id)).counts.ok).toBeGreaterThanOrEqual(2), { timeout: 60_000, interval: 100 });
    const cancelled = JSON.parse((await server.cli(["jobs", "cancel", id, "--json"])).stdout).job as JobJson;
    expect(cancelled.status).toBe("cancelled");
    // The item in flight may still finish; then nothing more does.
    await new Promise((r) => setTimeout(r, 1500));
    const a = await job(id);
    await new Promise((r) => setTimeout(r, 1500));
    const b = await job(id);
    expect(b.status).toBe("cancelled");
    expect(b.counts).toEqual(a.counts);
    expect(b.counts.pending).toBeGreaterThan(0);
  }, 120_000);

  it("kill -9 in the middle of a job: after a restart it completes, each item once, metered once", async () => {
    const started = await admin(server, "POST", "/v1/jobs", json({ app: "slow", input: "mail/inbox/", output: "out/slow/", concurrency: 2 }));
    const id = started.json.job.id as string;
    await vi.waitFor(async () => expect((await job(id)).counts.ok).toBeGreaterThanOrEqual(4), { timeout: 60_000, interval: 100 });
    const hosts = server.hostPids();
    const exited = new Promise((r) => server.proc.once("exit", r));
    server.proc.kill("SIGKILL");
    await exited;
    const before = query<{ n: number }>("SELECT COUNT(*) AS n FROM job_items WHERE job_id = ? AND status = 'ok'", id)[0]!.n;
    expect(before).toBeLessThan(N);
    server = await startServer(["--no-spare-hosts"], { dataDir: server.dataDir });
    s3 = s3Client(server, key);
    await vi.waitFor(async () => expect((await job(id)).status).toBe("done"), { timeout: 120_000, interval: 250 });
    expect((await job(id)).counts, JSON.stringify(query("SELECT * FROM job_items WHERE job_id = ? AND status = 'failed'", id))).toEqual({ ok: N, failed: 0, pending: 0 });
    for (const i of [0, POISONED, N - 1]) expect(await output("out", `slow/${String(i).padStart(4, "0")}.eml`)).toBe(String(Buffer.byteLength(mail(i))));
    // Each item's run metered exactly once across both processes (a retry after a sandbox
    // failure is a run of its own, under "-rN").
    const usage = query<{ n: number; first: number }>("SELECT COUNT(*) AS n, SUM(request_id NOT LIKE '%-r%') AS first FROM usage_records WHERE mode = 'job' AND request_id LIKE ?", `job-${id}-%`)[0]!;
    expect(usage.first).toBe(N);
    expect(usage.n).toBe(N + query<{ n: number }>("SELECT COUNT(*) AS n FROM usage_records WHERE request_id LIKE ?", `job-${id}-%-r%`)[0]!.n);
    // The killed server's sandbox hosts did not outlive it.
    await vi.waitFor(() => expect(hosts.filter(isAlive)).toEqual([]), { timeout: 30_000, interval: 200 });
  }, 300_000);
});
