#!/usr/bin/env node
/**
 * Jobs over many objects (src/platform/jobs.ts) against the same program run natively over the
 * same files in a loop (one process per file, like one sandbox per object), in one run.
 *
 *   node bench/objects.mjs [--objects 2000] [--concurrency 4] [--baseline-sample 300] [--backend disk|swift] [--post-runs 200] [--post-only] [--grep-only] [--pattern needle]
 *
 * --backend swift also runs the x86 job on a second server whose object store is the S3 backend
 * on a real OpenStack Swift (Debian's, started here on loopback: scripts/swift-local.mjs), with
 * the same objects: its objects/s and MB/s next to the disk backend's, in the same run.
 *
 * Rows: objects/s of a job with the x86 wordcount program (test/fixtures/x86-exec/wordcount.c,
 * POSTed) vs the same static binary spawned natively per file; a PHP app job vs `php` CLI per
 * file (when `php` is installed); and POST /v1/objects/run: issue 14's "request arrival to the
 * program's first instruction ≤ 5 ms p50, validation included" read from the answer's
 * server-timing (ready = arrival → the guest starting in its sandbox; validate = hash + validation
 * or its cache), p50/p99 over --post-runs cached POSTs, against the first (validated) POST, for the
 * wordcount program (~40 KB) and the same program grown to ~1 MiB of code (buildPadded),
 * with a native spawn of the same binary as the baseline. The native baselines run on the first
 * --baseline-sample files (a rate). --post-only skips the job rows.
 *
 * The grep rows (issue 14's benchmark; --grep-only runs only these): `grep -c PATTERN` over every
 * object with Debian's busybox-static as the job program (stdio mode, args, okExitCodes 0,1: a
 * multipart POST /v1/jobs), objects/s and MB/s, against (a) downloading every object with the S3
 * SDK (8 in flight) and counting matching lines in Node, and (b) native `grep -rc PATTERN` over
 * the same objects written to files in a temp dir (the physical limit) — in one run, with the
 * three totals checked equal. Per task: p50 of the items' wall time (read + sandbox + store +
 * record), of the sandbox's share (the usage record's wall: acquire + run in the host) and of the
 * host's CPU for it, next to a native `busybox grep -c` spawn per file (process start + run).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import https from "node:https";
import { execFileSync, spawnSync } from "node:child_process";
import { S3Client, CreateBucketCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import { ROOT, gitInfo, installCleanup, logger, renderTable, round, runMain, startZerocell, stopZerocell, tempDir, writeResult, zerocellCli } from "./lib.mjs";

const log = logger("objects");

function parseArgs(argv) {
  const o = { objects: 2000, concurrency: 4, baselineSample: 300, postRuns: 200, postOnly: false, grepOnly: false, pattern: "needle", backend: "disk" };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => Number(argv[++i]);
    if (a === "--objects") o.objects = val();
    else if (a === "--concurrency") o.concurrency = val();
    else if (a === "--baseline-sample") o.baselineSample = val();
    else if (a === "--post-runs") o.postRuns = val();
    else if (a === "--post-only") o.postOnly = true;
    else if (a === "--grep-only") o.grepOnly = true;
    else if (a === "--pattern") o.pattern = argv[++i];
    else if (a === "--backend") {
      o.backend = argv[++i];
      if (o.backend !== "disk" && o.backend !== "swift") throw new Error("--backend is disk or swift");
    }
    else throw new Error(`unknown argument: ${a}`);
  }
  return o;
}

// Every 7th line of every third message mentions a needle (grep -c finds 0 in the others: exit 1).
const mail = (i) => `From: sender${i}@example.com\nTo: inbox@example.com\nSubject: message ${i}\n\n` + Array.from({ length: 5 + (i % 20) }, (_, l) => `line ${l} of message ${i} with some words in it${i % 3 === 0 && l % 7 === 0 ? " and a needle" : ""}`).join("\n") + "\n";

async function inParallel(n, concurrency, fn) {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) await fn(next++);
  }));
}

/** Native baseline: one process per file, files/s. */
function native(files, cmd, args) {
  const t0 = performance.now();
  for (const f of files) {
    const r = spawnSync(cmd, args, { input: readFileSync(f), env: { PATH_INFO: "/x", PATH: process.env.PATH } });
    if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr}`);
  }
  return files.length / ((performance.now() - t0) / 1000);
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const result = { bench: "objects", startedAt: new Date().toISOString(), options: o, git: gitInfo(), rows: [], notes: [] };
  execFileSync(join(ROOT, "scripts", "build-x86-exec-fixtures.sh"), { stdio: ["ignore", "ignore", "inherit"] });
  const prog = join(ROOT, "test", "fixtures", "build", "x86-exec", "wordcount");
  const totalBytes = Array.from({ length: o.objects }, (_, i) => Buffer.byteLength(mail(i))).reduce((a, b) => a + b, 0);
  /** A server (extra serve args) with an access key, buckets "mail" (the objects) and "out". */
  const setUp = async (label, args, env = {}) => {
    // The remote's credentials go to the server through its environment only (never argv).
    Object.assign(process.env, env);
    const server = startZerocell({ dataPrefix: "zc-bench-jobs-", args: ["--no-spare-hosts", ...args] });
    for (const k of Object.keys(env)) delete process.env[k];
    const urls = await server.listening();
    const key = JSON.parse((await zerocellCli(server.dataDir, ["access-keys", "create", "--json"])).out);
    const ca = readFileSync(join(server.dataDir, "certs", "ca.pem"), "utf8");
    const token = readFileSync(join(server.dataDir, "admin-token"), "utf8").trim();
    const s3 = new S3Client({ endpoint: urls.s3, region: "us-east-1", forcePathStyle: true, credentials: key, requestChecksumCalculation: "WHEN_REQUIRED", responseChecksumValidation: "WHEN_REQUIRED", requestHandler: new NodeHttpHandler({ httpsAgent: new https.Agent({ ca, keepAlive: true, maxSockets: 8 }) }) });
    await s3.send(new CreateBucketCommand({ Bucket: "mail" }));
    await s3.send(new CreateBucketCommand({ Bucket: "out" }));
    log(`${label}: putting ${o.objects} objects`);
    const t0 = performance.now();
    await inParallel(o.objects, 8, (i) => s3.send(new PutObjectCommand({ Bucket: "mail", Key: `in/${String(i).padStart(6, "0")}.eml`, Body: mail(i) })));
    const putRate = o.objects / ((performance.now() - t0) / 1000);
    s3.destroy();
    keys.set(server, { key, ca });
    return { server, urls, token, putRate };
  };
  const { server, urls, token, putRate } = await setUp("disk", []);
  result.dataDir = server.dataDir;
  const dir = tempDir("zc-bench-jobs-files-");
  mkdirSync(dir, { recursive: true });
  const files = [];
  for (let i = 0; i < Math.min(o.objects, o.baselineSample); i++) {
    const f = join(dir, `${i}.eml`);
    writeFileSync(f, mail(i));
    files.push(f);
  }
  const api = async (method, path, body, type, at = { urls, token }) => {
    const r = await fetch(`${at.urls.admin}${path}`, { method, headers: { authorization: `Bearer ${at.token}`, ...(type ? { "content-type": type } : {}) }, body });
    const j = await r.json();
    if (r.status >= 400) throw new Error(`${method} ${path}: ${JSON.stringify(j).slice(0, 300)}`);
    return { j, r };
  };
  const runJob = async (label, start, at = { urls, token }) => {
    const t0 = performance.now();
    const { j } = await start();
    let job = j.job;
    while (job.status === "running") {
      await new Promise((r) => setTimeout(r, 200));
      job = (await api("GET", `/v1/jobs/${job.id}`, undefined, undefined, at)).j.job;
    }
    const s = (performance.now() - t0) / 1000;
    if (job.counts.ok !== o.objects) result.notes.push(`${label}: ${JSON.stringify(job.counts)}`);
    return o.objects / s;
  };

  if (!o.postOnly) await grepRows({ o, result, urls, token, api, runJob, key: urlsKey(server), totalBytes });

  if (!o.postOnly && !o.grepOnly) {
  // 1. x86 (POSTed program) vs the same binary natively
  log("x86 job");
  const x86 = await runJob("x86", () => api("POST", `/v1/jobs?input=mail/in/&output=out/x86/&concurrency=${o.concurrency}`, readFileSync(prog), "application/octet-stream"));
  const x86Native = native(files, prog, []);
  result.rows.push({ what: `x86 wordcount, ${o.objects} objects (disk backend)`, job: x86, mbps: (x86 * totalBytes) / o.objects / 1e6, baseline: x86Native, base: "native binary, 1 process/file" });
  result.notes.push(`disk backend: ${round(putRate, 1)} S3 PUTs/s through the gateway (8 in parallel); ${o.objects} objects, ${round(totalBytes / 1e6, 2)} MB`);

  // 1b. the same job with the objects in Swift (S3 backend), same objects, same run
  if (o.backend === "swift") {
    const { startSwift } = await import("../scripts/swift-local.mjs");
    log("starting Swift (s3api) on loopback");
    const swift = await startSwift();
    try {
      const sw = await setUp("swift", ["--objects-backend", "s3", "--objects-s3-endpoint", swift.endpoint, "--objects-s3-bucket", "zc-bench"], { ZEROCELL_OBJECTS_S3_ACCESS_KEY_ID: swift.accessKeyId, ZEROCELL_OBJECTS_S3_SECRET_ACCESS_KEY: swift.secretAccessKey });
      try {
        log("x86 job, Swift backend");
        const at = { urls: sw.urls, token: sw.token };
        const x86Swift = await runJob("x86 swift", () => api("POST", `/v1/jobs?input=mail/in/&output=out/x86/&concurrency=${o.concurrency}`, readFileSync(prog), "application/octet-stream", at), at);
        result.rows.push({ what: `x86 wordcount, ${o.objects} objects (Swift backend)`, job: x86Swift, mbps: (x86Swift * totalBytes) / o.objects / 1e6, baseline: x86, base: "the same job, disk backend" });
        result.notes.push(`Swift backend: ${round(sw.putRate, 1)} S3 PUTs/s through the gateway (8 in parallel)`);
      } finally {
        await stopZerocell(sw.server.child, result);
      }
    } finally {
      await swift.stop();
    }
  }

  // 2. PHP app vs php CLI
  const php = spawnSync("which", ["php"]).status === 0;
  if (php) {
    const src = "<?php $b = file_get_contents('php://input'); echo count(preg_split('/\\s+/', trim($b), -1, PREG_SPLIT_NO_EMPTY)), \"\\n\";";
    const bdir = tempDir("zc-bench-jobs-php-");
    mkdirSync(join(bdir, "public"), { recursive: true });
    writeFileSync(join(bdir, "zerocell.toml"), 'runtime = "php"\n[php]\ndocument_root = "public"\n[[routes]]\nhost = "wc.localhost"\npath = "/"\n');
    writeFileSync(join(bdir, "public", "index.php"), src);
    await zerocellCli(server.dataDir, ["deploy", bdir, "--app", "wc"]);
    log("php job");
    const phpJob = await runJob("php", () => api("POST", "/v1/jobs", JSON.stringify({ app: "wc", input: "mail/in/", output: "out/php/", concurrency: o.concurrency }), "application/json"));
    const cli = join(bdir, "cli.php");
    writeFileSync(cli, src.replace("php://input", "php://stdin"));
    const phpNative = native(files, "php", [cli]);
    result.rows.push({ what: `PHP wordcount, ${o.objects} objects`, job: phpJob, baseline: phpNative, base: "php CLI, 1 process/file" });
  } else result.notes.push("no php CLI: PHP row skipped");
  }

  // 3. POST /v1/objects/run: arrival → first instruction, first (validated) vs cached
  const postRows = [];
  const programs = o.grepOnly ? [] : [["wordcount", prog], ["wordcount-1MiB", buildPadded(prog)]];
  for (const [name, file] of programs) {
    const bytes = readFileSync(file);
    const post = async () => {
      const t0 = performance.now();
      const { j, r } = await api("POST", "/v1/objects/run?bucket=mail&key=in/000000.eml", bytes, "application/octet-stream");
      return { ms: performance.now() - t0, timing: parseTiming(r.headers.get("server-timing")), header: r.headers.get("server-timing"), validation: j.validation };
    };
    log(`POST ${name} (${bytes.length} bytes) x ${o.postRuns + 1}`);
    const first = await post();
    if (first.validation !== "validated") result.notes.push(`${name}: the first POST was already cached`);
    const runs = [];
    for (let i = 0; i < o.postRuns; i++) runs.push(await post());
    const pick = (k) => runs.map((r) => r.timing[k]).filter((v) => v !== undefined);
    const row = { program: name, bytes: bytes.length, first: { ready: first.timing.ready, validate: first.timing.validate, total: first.ms, cache: first.timing.validateDesc } };
    for (const k of ["ready", "validate", "read", "acquire", "run", "body"]) row[k] = { p50: quantile(pick(k), 0.5), p99: quantile(pick(k), 0.99) };
    row.client = { p50: quantile(runs.map((r) => r.ms), 0.5), p99: quantile(runs.map((r) => r.ms), 0.99) };
    row.hits = runs.filter((r) => r.timing.validateDesc === "hit").length;
    // Baseline: the same binary spawned natively (fork + exec + its run), per run.
    const nat = [];
    for (let i = 0; i < Math.min(50, o.postRuns); i++) {
      const t0 = performance.now();
      spawnSync(file, [], { input: "x\n", env: { PATH_INFO: "/x" } });
      nat.push(performance.now() - t0);
    }
    row.nativeSpawn = { p50: quantile(nat, 0.5), p99: quantile(nat, 0.99) };
    postRows.push(row);
    result.notes.push(`server-timing of the first ${name} POST: ${first.header}`);
  }
  result.post = postRows;

  await stopZerocell(server.child, result);
  result.elapsedS = Math.round((Date.now() - started) / 1000);
  const grepTable = result.grep === undefined ? "" : `grep -c ${o.pattern} over ${o.objects} objects (${round(totalBytes / 1e6, 2)} MB): ratio = the row's objects/s / the Zerocell job's\n\n` + renderTable([["grep -c", "objects/s", "MB/s", "seconds", "total", "ratio to job"], ...result.grep.rows.map((r) => [r.what, String(round(r.rate, 1)), String(round(r.mbps, 3)), String(round(r.seconds, 2)), String(r.total), String(round(r.rate / result.grep.rows[0].rate, 3))])]) + `\n\nper task p50 (ms): item wall ${result.grep.task.itemWall}, sandbox (acquire + run) ${result.grep.task.sandboxWall}, host CPU ${result.grep.task.hostCpu}; native busybox grep spawn per file ${result.grep.task.nativeSpawn}\n\n`;
  const table = result.rows.length === 0 ? "(job rows skipped: --post-only / --grep-only)" : renderTable([["what", "job", "job MB/s", "baseline", "ratio", "baseline is"], ...result.rows.map((r) => [r.what, String(round(r.job, 1)), r.mbps === undefined ? "" : String(round(r.mbps, 3)), String(round(r.baseline, 1)), String(round(r.job / r.baseline, 2)), r.base])]);
  const f = (q) => (q === undefined || q.p50 === undefined ? "-" : `${round(q.p50, 2)} / ${round(q.p99, 2)}`);
  const postTable = renderTable([
    ["POST /v1/objects/run, ms p50 / p99", "bytes", "ready (arrival→1st instr.)", "validate", "acquire", "run", "client total", "first POST ready / validate (miss)", "native spawn", "ready / native"],
    ...postRows.map((r) => [r.program, String(r.bytes), f(r.ready), f(r.validate), f(r.acquire), f(r.run), f(r.client), `${round(r.first.ready ?? NaN, 2)} / ${round(r.first.validate ?? NaN, 2)}`, f(r.nativeSpawn), String(round((r.ready.p50 ?? NaN) / r.nativeSpawn.p50, 2))]),
  ]);
  const loadavg = (await import("node:os")).loadavg().map((x) => round(x, 1)).join(" ");
  result.notes.push(`load average at the end: ${loadavg} (2 cores)`);
  const rest = o.grepOnly ? "" : `jobs (objects/s) vs the same program natively over the same files (ratio = job / baseline)\n\n${table}\n\n${o.postRuns} cached POSTs per program after a first validated one (target: ready p50 ≤ 5 ms, validation included)\n\n${postTable}`;
  writeResult(result, `${grepTable}${rest}${result.notes.length ? "\n\n" + result.notes.join("\n") : ""}`, "objects-");
  return 0;
}

/** Each server's access key and CA (for the S3 SDK baseline). */
const keys = new Map();
const urlsKey = (server) => keys.get(server);

/**
 * The grep rows: the job (busybox grep -c in stdio mode) vs (a) S3 SDK download + count in Node
 * vs (b) native grep -rc over the same files.
 */
async function grepRows({ o, result, urls, api, runJob, key, totalBytes }) {
  const { S3Client: Client, GetObjectCommand, ListObjectsV2Command } = await import("@aws-sdk/client-s3");
  const Database = (await import("better-sqlite3")).default;
  const rows = [];
  const pattern = o.pattern;
  // 1. the job: a multipart POST (job JSON + busybox named grep: argv[0] picks the applet)
  log(`grep job over ${o.objects} objects`);
  const form = new FormData();
  form.append("job", JSON.stringify({ input: "mail/in/", output: "out/grep/", concurrency: o.concurrency, io: "stdio", programName: "grep", args: ["-c", pattern], okExitCodes: [0, 1] }));
  form.append("program", new Blob([readFileSync("/bin/busybox")]), "grep");
  const encoded = new Response(form);
  const body = Buffer.from(await encoded.arrayBuffer());
  const t0 = performance.now();
  let jobId;
  await runJob("grep", async () => {
    const r = await api("POST", "/v1/jobs", body, encoded.headers.get("content-type"));
    jobId = r.j.job.id;
    return r;
  });
  const jobS = (performance.now() - t0) / 1000;
  // its total: every item's output (a count), read back through the API
  let jobTotal = 0;
  const walls = [];
  for (let after = -1; ; ) {
    const { j } = await api("GET", `/v1/jobs/${jobId}?items=all&outputs=1&limit=1000&after=${after}`);
    for (const it of j.items) {
      jobTotal += Number((it.output ?? "0").trim());
      if (it.wallMs !== null) walls.push(it.wallMs);
    }
    if (j.items.length < 1000) break;
    after = j.items.at(-1).seq;
  }
  rows.push({ what: "Zerocell job (busybox grep, stdio, 1 sandbox run/object)", rate: o.objects / jobS, mbps: totalBytes / 1e6 / jobS, seconds: jobS, total: jobTotal });
  // per task: the items' usage records (sandbox wall: acquire + run; host CPU)
  const db = new Database(join(result.dataDir, "zerocell.db"), { readonly: true });
  const usage = db.prepare("SELECT wall_us AS wall, cpu_us AS cpu FROM usage_records WHERE request_id LIKE ?").all(`job-${jobId}-%`);
  db.close();
  // 2. (a) the S3 SDK: list, download every object (8 in flight), count matching lines in Node
  log("S3 SDK download + count");
  const s3 = new Client({ endpoint: urls.s3, region: "us-east-1", forcePathStyle: true, credentials: key.key, requestChecksumCalculation: "WHEN_REQUIRED", responseChecksumValidation: "WHEN_REQUIRED", requestHandler: new NodeHttpHandler({ httpsAgent: new https.Agent({ ca: key.ca, keepAlive: true, maxSockets: 8 }) }) });
  const t1 = performance.now();
  const names = [];
  for (let token; ; ) {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: "mail", Prefix: "in/", ContinuationToken: token }));
    for (const c of page.Contents ?? []) names.push(c.Key);
    if (!page.IsTruncated) break;
    token = page.NextContinuationToken;
  }
  let sdkTotal = 0;
  await inParallel(names.length, 8, async (i) => {
    const text = await (await s3.send(new GetObjectCommand({ Bucket: "mail", Key: names[i] }))).Body.transformToString();
    for (const line of text.split("\n")) if (line.includes(pattern)) sdkTotal++;
  });
  const sdkS = (performance.now() - t1) / 1000;
  s3.destroy();
  rows.push({ what: "S3 SDK: download every object (8 in flight) + count in Node", rate: names.length / sdkS, mbps: totalBytes / 1e6 / sdkS, seconds: sdkS, total: sdkTotal });
  // 3. (b) native grep -rc over the same objects as files
  const dir = tempDir("zc-bench-grep-files-");
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < o.objects; i++) writeFileSync(join(dir, `${String(i).padStart(6, "0")}.eml`), mail(i));
  const t2 = performance.now();
  const native = spawnSync("grep", ["-rc", pattern, dir], { maxBuffer: 256 << 20 });
  const nativeS = (performance.now() - t2) / 1000;
  const nativeTotal = native.stdout.toString().split("\n").filter(Boolean).reduce((a, l) => a + Number(l.slice(l.lastIndexOf(":") + 1)), 0);
  rows.push({ what: "native grep -rc over the same files (the physical limit)", rate: o.objects / nativeS, mbps: totalBytes / 1e6 / nativeS, seconds: nativeS, total: nativeTotal });
  // native busybox grep per file (process start + run), the reference for the per-task cost
  const spawns = [];
  for (let i = 0; i < Math.min(200, o.objects); i++) {
    const s = performance.now();
    spawnSync("/bin/busybox", ["grep", "-c", pattern, join(dir, `${String(i).padStart(6, "0")}.eml`)]);
    spawns.push(performance.now() - s);
  }
  if (new Set(rows.map((r) => r.total)).size !== 1) result.notes.push(`grep totals differ: ${rows.map((r) => `${r.what.split(":")[0]} ${r.total}`).join(", ")}`);
  const p50 = (xs) => round(quantile(xs, 0.5), 3);
  result.grep = { pattern, rows, task: { itemWall: p50(walls), sandboxWall: p50(usage.map((u) => u.wall / 1000)), hostCpu: p50(usage.filter((u) => u.cpu !== null).map((u) => u.cpu / 1000)), nativeSpawn: p50(spawns) } };
}

/**
 * The wordcount program grown to ~1 MiB of code (issue 14's "1 MB static program"): the same
 * source linked with a never-called function of 72,000 × 4 ordinary instructions (~1 MiB of
 * .text the validator decodes like any other). Built with musl-gcc next to the fixtures.
 */
function buildPadded(small) {
  const out = join(ROOT, "test", "fixtures", "build", "x86-exec", "wordcount-1m");
  if (existsSync(out)) return out;
  const dir = tempDir("zc-bench-pad-");
  mkdirSync(dir, { recursive: true });
  const pad = join(dir, "pad.s");
  writeFileSync(pad, ".text\n.globl zc_pad\n.type zc_pad,@function\nzc_pad:\n.rept 72000\n  mov %rdi, %rax\n  add $1, %rax\n  xor %ecx, %ecx\n  lea 8(%rsp), %rdx\n.endr\n  ret\n.section .note.GNU-stack,\"\",@progbits\n");
  execFileSync("musl-gcc", ["-static", "-O2", "-fno-stack-protector", "-I", join(ROOT, "include"), "-o", out, join(ROOT, "test", "fixtures", "x86-exec", "wordcount.c"), pad]);
  return out;
}

/** server-timing → { name: dur, nameDesc: desc }. */
function parseTiming(header) {
  const out = {};
  for (const part of (header ?? "").split(",")) {
    const [name, ...params] = part.trim().split(";");
    for (const p of params) {
      const [k, v] = p.split("=");
      if (k === "dur") out[name] = Number(v);
      else if (k === "desc") out[`${name}Desc`] = v.replace(/^"|"$/g, "");
    }
  }
  return out;
}

function quantile(values, q) {
  if (values.length === 0) return undefined;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

installCleanup(log);
runMain(main, log);
