#!/usr/bin/env node
/**
 * Object store through the S3 API: the real AWS SDK against the built server (dist/) on a temp
 * data dir, loopback HTTPS, against the physical limit measured in the same run on the same file
 * system (this process writing and reading the same bytes as files: temp file + fsync + rename +
 * fsync of the directory, like the disk backend; reads with readFile).
 *
 *   node bench/objects-s3.mjs [--objects 300] [--size 4096] [--big-mb 64] [--concurrency 8]
 *
 * Rows: PUT and GET of --objects objects of --size bytes (objects/s, --concurrency requests in
 * flight), and one --big-mb object PUT and GET in one request (MB/s); each with the baseline and
 * the ratio (S3 API / baseline). Plus a POSTed x86 program (test/fixtures/build/x86-exec/cgi-test,
 * built by scripts/build-x86-exec-fixtures.sh) run against one object: the first POST (validation)
 * and the median of 10 later ones (validation cached by content hash, warm host).
 * Writes bench/results/objects-s3-<timestamp>.json. About a minute.
 */
import { existsSync, mkdirSync, openSync, writeSync, fsyncSync, closeSync, renameSync, readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import https from "node:https";
import { randomBytes } from "node:crypto";
import { S3Client, CreateBucketCommand, PutObjectCommand, GetObjectCommand } from "@aws-sdk/client-s3";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import { ROOT, gitInfo, installCleanup, logger, median, renderTable, round, runMain, startZerocell, stopZerocell, tempDir, writeResult, zerocellCli } from "./lib.mjs";

const log = logger("objects-s3");

function parseArgs(argv) {
  const o = { objects: 300, size: 4096, bigMb: 64, concurrency: 8 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => Number(argv[++i]);
    if (a === "--objects") o.objects = val();
    else if (a === "--size") o.size = val();
    else if (a === "--big-mb") o.bigMb = val();
    else if (a === "--concurrency") o.concurrency = val();
    else throw new Error(`unknown argument: ${a}`);
  }
  return o;
}

async function inParallel(n, concurrency, fn) {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) await fn(next++);
  }));
}

function writeDurable(dir, name, data) {
  const tmp = join(dir, `${name}.tmp`);
  const fd = openSync(tmp, "w");
  writeSync(fd, data);
  fsyncSync(fd);
  closeSync(fd);
  renameSync(tmp, join(dir, name));
  const d = openSync(dir, "r");
  fsyncSync(d);
  closeSync(d);
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const result = { bench: "objects-s3", startedAt: new Date().toISOString(), options: o, git: gitInfo(), rows: [], notes: [] };
  const server = startZerocell({ dataPrefix: "zc-bench-objects-", args: ["--no-spare-hosts", "--no-metering"] });
  const urls = await server.listening();
  const k = await zerocellCli(server.dataDir, ["access-keys", "create", "--json"]);
  const key = JSON.parse(k.out);
  const ca = readFileSync(join(server.dataDir, "certs", "ca.pem"), "utf8");
  const s3 = new S3Client({ endpoint: urls.s3, region: "us-east-1", forcePathStyle: true, credentials: key, requestChecksumCalculation: "WHEN_REQUIRED", responseChecksumValidation: "WHEN_REQUIRED", requestHandler: new NodeHttpHandler({ httpsAgent: new https.Agent({ ca, keepAlive: true, maxSockets: o.concurrency }) }) });
  await s3.send(new CreateBucketCommand({ Bucket: "bench" }));
  const bodies = Array.from({ length: o.objects }, () => randomBytes(o.size));
  const base = tempDir("zc-bench-objects-base-");
  mkdirSync(base, { recursive: true });

  // 1. small objects: PUT, then GET
  let t = performance.now();
  await inParallel(o.objects, o.concurrency, (i) => s3.send(new PutObjectCommand({ Bucket: "bench", Key: `obj/${i}`, Body: bodies[i] })));
  const putS = (performance.now() - t) / 1000;
  t = performance.now();
  await inParallel(o.objects, o.concurrency, async (i) => writeDurable(base, `obj-${i}`, bodies[i]));
  const putBaseS = (performance.now() - t) / 1000;
  t = performance.now();
  await inParallel(o.objects, o.concurrency, async (i) => {
    const r = await s3.send(new GetObjectCommand({ Bucket: "bench", Key: `obj/${i}` }));
    const b = await r.Body.transformToByteArray();
    if (b.length !== o.size) throw new Error("short read");
  });
  const getS = (performance.now() - t) / 1000;
  t = performance.now();
  await inParallel(o.objects, o.concurrency, async (i) => readFile(join(base, `obj-${i}`)));
  const getBaseS = (performance.now() - t) / 1000;
  result.rows.push({ what: `PUT ${o.objects} × ${o.size} B`, unit: "objects/s", s3: o.objects / putS, baseline: o.objects / putBaseS });
  result.rows.push({ what: `GET ${o.objects} × ${o.size} B`, unit: "objects/s", s3: o.objects / getS, baseline: o.objects / getBaseS });

  // 2. one big object
  const big = randomBytes(o.bigMb * 1024 * 1024);
  t = performance.now();
  await s3.send(new PutObjectCommand({ Bucket: "bench", Key: "big", Body: big }));
  const bigPutS = (performance.now() - t) / 1000;
  t = performance.now();
  writeDurable(base, "big", big);
  const bigPutBaseS = (performance.now() - t) / 1000;
  t = performance.now();
  const g = await s3.send(new GetObjectCommand({ Bucket: "bench", Key: "big" }));
  if ((await g.Body.transformToByteArray()).length !== big.length) throw new Error("short big read");
  const bigGetS = (performance.now() - t) / 1000;
  t = performance.now();
  await readFile(join(base, "big"));
  const bigGetBaseS = (performance.now() - t) / 1000;
  result.rows.push({ what: `PUT 1 × ${o.bigMb} MiB`, unit: "MB/s", s3: o.bigMb / bigPutS, baseline: o.bigMb / bigPutBaseS });
  result.rows.push({ what: `GET 1 × ${o.bigMb} MiB`, unit: "MB/s", s3: o.bigMb / bigGetS, baseline: o.bigMb / bigGetBaseS });

  // 3. a POSTed program: first (validated) vs later (validation cached, warm host)
  const prog = join(ROOT, "test", "fixtures", "build", "x86-exec", "cgi-test");
  if (existsSync(prog)) {
    await s3.send(new PutObjectCommand({ Bucket: "bench", Key: "stdin", Body: bodies[0] }));
    const token = readFileSync(join(server.dataDir, "admin-token"), "utf8").trim();
    const program = readFileSync(prog);
    const post = async () => {
      const t0 = performance.now();
      const r = await fetch(`${urls.admin}/v1/objects/run?bucket=bench&key=stdin`, { method: "POST", headers: { authorization: `Bearer ${token}` }, body: program });
      const j = await r.json();
      if (j.results?.[0]?.status !== 201) throw new Error(`program run failed: ${JSON.stringify(j).slice(0, 300)}`);
      return { ms: performance.now() - t0, validation: j.validation };
    };
    const first = await post();
    const later = [];
    for (let i = 0; i < 10; i++) later.push((await post()).ms);
    result.rows.push({ what: `POST program (${round(program.length / 1024, 0)} KiB) + 1 object`, unit: "ms", s3: median(later), baseline: first.ms, note: "s3 = median of 10 cached; baseline = first (validated, cold host)" });
  } else result.notes.push("no test/fixtures/build/x86-exec/cgi-test: run scripts/build-x86-exec-fixtures.sh for the program row");

  await stopZerocell(server.child, result);
  result.elapsedS = Math.round((Date.now() - started) / 1000);
  const table = renderTable([["what", "unit", "S3 API", "baseline", "ratio"], ...result.rows.map((r) => [r.what, r.unit, String(round(r.s3, 1)), String(round(r.baseline, 1)), String(round(r.s3 / r.baseline, 2))])]);
  writeResult(result, `objects through the S3 API vs the same bytes as files on the same disk (ratio = S3 / baseline)\n\n${table}${result.notes.length ? "\n\n" + result.notes.join("\n") : ""}`, "objects-s3-");
  return 0;
}

installCleanup(log);
runMain(main, log);
