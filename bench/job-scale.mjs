#!/usr/bin/env node
/**
 * A job at scale, with a poisoned object and a kill -9 in the middle (issue 14's "a job over
 * 10,000 objects with one poisoned object (crashes) reports exactly that object" and "kill -9 in
 * the middle of a job and a restart complete it with each task counted once"), on the real server.
 *
 *   node bench/job-scale.mjs [--objects 10000] [--concurrency 4] [--kill-at 0.3]
 *
 * Puts --objects mail-like objects through the S3 API, one of them (in the middle) carrying the
 * marker that makes the x86 wordcount program (test/fixtures/x86-exec/wordcount.c) fault. POSTs
 * the program as a job, SIGKILLs the server when --kill-at of the items finished, starts a new
 * server on the same data dir, and waits for the job to finish. Then checks, from the job API and
 * the SQLite file: every item finished exactly once (ok = N − 1, failed = 1, pending = 0), the
 * failed one is exactly the poisoned key, every ok output object holds the right word count (a sample
 * of 200 plus the first and last), and the usage records: one first-try record per item (request
 * id `job-<id>-<seq>`), the rest only retries (`-rN`). Prints a table; exits 1 when a check fails.
 * Writes bench/results/job-scale-<timestamp>.json.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import https from "node:https";
import Database from "better-sqlite3";
import { S3Client, CreateBucketCommand, PutObjectCommand, GetObjectCommand } from "@aws-sdk/client-s3";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import { ROOT, gitInfo, installCleanup, logger, renderTable, round, runMain, startZerocell, stopZerocell, writeResult, zerocellCli } from "./lib.mjs";

const log = logger("job-scale");

function parseArgs(argv) {
  const o = { objects: 10_000, concurrency: 4, killAt: 0.3 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--objects") o.objects = Number(argv[++i]);
    else if (a === "--concurrency") o.concurrency = Number(argv[++i]);
    else if (a === "--kill-at") o.killAt = Number(argv[++i]);
    else throw new Error(`unknown argument: ${a}\nusage: node bench/job-scale.mjs [--objects 10000] [--concurrency 4] [--kill-at 0.3]`);
  }
  if (!Number.isInteger(o.objects) || o.objects < 10) throw new Error("--objects: at least 10");
  if (!(o.killAt > 0 && o.killAt < 1)) throw new Error("--kill-at: a fraction between 0 and 1");
  return o;
}

/** A small mail-like object. */
function mail(i) {
  return `From: sender${i % 97}@example.org\nTo: inbox@example.com\nSubject: message ${i}\n\n${"lorem ipsum dolor sit amet ".repeat(3 + (i % 11))}\n`;
}

const keyOf = (i) => `in/${String(i).padStart(6, "0")}.eml`;

async function inParallel(n, concurrency, fn) {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) await fn(next++);
  }));
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const result = { bench: "job-scale", startedAt: new Date().toISOString(), options: o, git: gitInfo(), checks: [] };
  execFileSync(join(ROOT, "scripts", "build-x86-exec-fixtures.sh"), { stdio: ["ignore", "ignore", "inherit"] });
  const prog = readFileSync(join(ROOT, "test", "fixtures", "build", "x86-exec", "wordcount"));
  const poisoned = Math.floor(o.objects / 2) + 1;
  const body = (i) => mail(i) + (i === poisoned ? "POISON\n" : "");

  let server = startZerocell({ dataPrefix: "zc-bench-job-scale-", args: ["--no-spare-hosts"] });
  const dataDir = server.dataDir;
  let urls = await server.listening();
  const token = readFileSync(join(dataDir, "admin-token"), "utf8").trim();
  const ca = readFileSync(join(dataDir, "certs", "ca.pem"), "utf8");
  const key = JSON.parse((await zerocellCli(dataDir, ["access-keys", "create", "--json"])).out);
  const s3For = (u) => new S3Client({ endpoint: u.s3, region: "us-east-1", forcePathStyle: true, credentials: key, requestChecksumCalculation: "WHEN_REQUIRED", responseChecksumValidation: "WHEN_REQUIRED", requestHandler: new NodeHttpHandler({ httpsAgent: new https.Agent({ ca, keepAlive: true, maxSockets: 8 }) }) });
  let s3 = s3For(urls);
  await s3.send(new CreateBucketCommand({ Bucket: "mail" }));
  await s3.send(new CreateBucketCommand({ Bucket: "out" }));
  log(`putting ${o.objects} objects (object ${keyOf(poisoned)} poisoned)`);
  let t0 = performance.now();
  await inParallel(o.objects, 8, (i) => s3.send(new PutObjectCommand({ Bucket: "mail", Key: keyOf(i), Body: body(i) })));
  result.putSeconds = round((performance.now() - t0) / 1000, 1);

  const api = async (method, path, b, type) => {
    const r = await fetch(`${urls.admin}${path}`, { method, headers: { authorization: `Bearer ${token}`, ...(type ? { "content-type": type } : {}) }, body: b });
    const j = await r.json();
    if (r.status >= 400) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(j).slice(0, 300)}`);
    return j;
  };

  // 1. the job, and a kill -9 once --kill-at of it finished
  t0 = performance.now();
  const id = (await api("POST", `/v1/jobs?input=mail/in/&output=out/wc/&concurrency=${o.concurrency}`, prog, "application/octet-stream")).job.id;
  log(`job ${id} started`);
  const killAfter = Math.floor(o.objects * o.killAt);
  for (;;) {
    const j = (await api("GET", `/v1/jobs/${id}`)).job;
    if (j.counts.ok + j.counts.failed >= killAfter) break;
    if (j.status !== "running") throw new Error(`the job stopped before the kill: ${JSON.stringify(j.counts)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const exited = new Promise((r) => server.child.proc.once("exit", r));
  server.child.proc.kill("SIGKILL");
  await exited;
  const beforeKill = new Database(join(dataDir, "zerocell.db"), { readonly: true }).prepare("SELECT status, COUNT(*) AS n FROM job_items WHERE job_id = ? GROUP BY status").all(id);
  result.atKill = Object.fromEntries(beforeKill.map((r) => [r.status, r.n]));
  result.killedAfterSeconds = round((performance.now() - t0) / 1000, 1);
  log(`killed the server (SIGKILL) at ${JSON.stringify(result.atKill)}; restarting on the same data dir`);

  // 2. a new server resumes it
  const restartAt = performance.now();
  server = startZerocell({ dataPrefix: "zc-bench-job-scale-", args: ["--no-spare-hosts"], dataDir });
  urls = await server.listening();
  s3.destroy();
  s3 = s3For(urls);
  let job;
  for (;;) {
    job = (await api("GET", `/v1/jobs/${id}`)).job;
    if (job.status !== "running") break;
    await new Promise((r) => setTimeout(r, 500));
  }
  result.resumeSeconds = round((performance.now() - restartAt) / 1000, 1);
  result.totalSeconds = round((performance.now() - t0) / 1000, 1);
  result.counts = job.counts;

  // 3. checks
  const check = (what, ok, detail) => {
    result.checks.push({ what, ok, detail });
    if (!ok) log(`FAILED: ${what}: ${detail}`);
  };
  check("job done", job.status === "done", job.status);
  check("counts: ok = N − 1, failed = 1, pending = 0", job.counts.ok === o.objects - 1 && job.counts.failed === 1 && job.counts.pending === 0, JSON.stringify(job.counts));
  const failed = (await api("GET", `/v1/jobs/${id}?items=failed&limit=100`)).items;
  check("the failed item is exactly the poisoned object", failed.length === 1 && failed[0].key === keyOf(poisoned), JSON.stringify(failed.map((f) => [f.key, f.error?.code])));
  const db = new Database(join(dataDir, "zerocell.db"), { readonly: true });
  const items = db.prepare("SELECT COUNT(*) AS n, COUNT(DISTINCT seq) AS seqs FROM job_items WHERE job_id = ?").get(id);
  check("one item row per object", items.n === o.objects && items.seqs === o.objects, JSON.stringify(items));
  const usage = db.prepare("SELECT COUNT(*) AS n, COUNT(DISTINCT request_id) AS ids, SUM(request_id NOT LIKE '%-r%') AS first FROM usage_records WHERE mode = 'job' AND request_id LIKE ?").get(`job-${id}-%`);
  check("usage: one first-try record per object, each request id once", usage.first === o.objects && usage.ids === usage.n, JSON.stringify(usage));
  result.usage = usage;
  const sample = [0, o.objects - 1, ...Array.from({ length: 200 }, (_, k) => Math.floor((k * o.objects) / 200))].filter((i) => i !== poisoned);
  let wrong = 0;
  for (const i of sample) {
    const got = await (await s3.send(new GetObjectCommand({ Bucket: "out", Key: `wc/${String(i).padStart(6, "0")}.eml` }))).Body.transformToString();
    // wordcount answers the object's word count and a newline.
    if (got !== `${mail(i).trim().split(/\s+/).filter(Boolean).length}\n`) wrong++;
  }
  check(`outputs right (${sample.length} sampled)`, wrong === 0, `${wrong} wrong`);
  db.close();
  s3.destroy();
  await stopZerocell(server.child, { notes: [] });

  const rows = [
    ["job at scale", "result"],
    ["objects (poisoned)", `${o.objects} (${keyOf(poisoned)})`],
    ["put through S3", `${result.putSeconds} s`],
    ["killed (SIGKILL) after", `${result.killedAfterSeconds} s, items then: ${JSON.stringify(result.atKill)}`],
    ["restart → job done", `${result.resumeSeconds} s`],
    ["job total (incl. restart)", `${result.totalSeconds} s = ${round(o.objects / result.totalSeconds, 1)} objects/s`],
    ["final counts", JSON.stringify(job.counts)],
    ["usage records (first tries / all)", `${usage.first} / ${usage.n}`],
    ...result.checks.map((c) => [`check: ${c.what}`, c.ok ? "ok" : `FAILED (${c.detail})`]),
  ];
  result.elapsedS = result.totalSeconds;
  writeResult(result, renderTable(rows), "job-scale-");
  if (result.checks.some((c) => !c.ok)) process.exitCode = 1;
}

installCleanup(log);
runMain(main, log);
