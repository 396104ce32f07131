#!/usr/bin/env node
/**
 * Density: many deployed apps on one machine under the pool's memory budget (issue 13).
 *
 *   node bench/density.mjs [--apps 1000] [--hot 100] [--rounds 3] [--budget-mb 5120]
 *                          [--mix php=0.6,python=0.2,x86=0.2] [--deploy-concurrency 3]
 *                          [--concurrency 4] [--idle-ttl-ms 600000] [--instances-per-host N]
 *
 * Starts the built server (dist/) with `--memory-budget-mb`, deploys --apps hello apps (a mix of
 * PHP, Python WSGI and x86 CGI; every second app in an account of its own, created through the
 * admin API, the rest in the admin's account) through the admin API, each on its own host
 * `dN.localhost` (`dN.acct-dN.localhost` in an account of its own), each through the health
 * gate (so each deploy starts one host and stores its snapshot). Then --rounds passes of a
 * rotating loop over --hot of them (the first hot apps of the mix, interleaved), --concurrency
 * requests at a time over HTTP. Every request must answer
 * 200 with the app's own text.
 *
 * Prints: apps deployed and deploy rate; ready instances at the end; RSS and PSS of the whole
 * platform (gateway + every descendant: hosts, spares, wrappers) sampled every 3 s (max and
 * end), per ready instance; requests, errors; latency p50/p99 for requests that got a warm
 * instance (`x-zerocell-instance: …; reused`) and for those that started one ("new": a cold
 * restore from the stored snapshot, or a start after eviction), with the server-timing `ready`
 * (request arrival → guest code) of each; the pool's budget counters.
 */
import http from "node:http";
import { mkdirSync, readFileSync, writeFileSync, copyFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import {
  ROOT, descendants, installCleanup, logger, parseServerTiming, percentile, psRows, renderTable, round, runMain, startZerocell, stopChild, tempDir, writeResult, gitInfo,
} from "./lib.mjs";

const log = logger("density");
installCleanup(log);

function arg(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? def : process.argv[i + 1];
}

const APPS = Number(arg("apps", 1000));
const HOT = Math.min(APPS, Number(arg("hot", 100)));
const ROUNDS = Number(arg("rounds", 3));
/**
 * The pool's budget charges the hosts' PSS; the issue's target is the platform's RSS (≤ 8 GB),
 * which counts node's shared pages (~40 MB a process) once per process: with ~60 processes RSS
 * ran ~1.45× PSS, so 5 GiB of budget is about 8 GB of RSS (docs/memory.md).
 */
const BUDGET_MB = Number(arg("budget-mb", 5120));
const DEPLOY_C = Number(arg("deploy-concurrency", 3));
const C = Number(arg("concurrency", 4));
const IDLE_TTL = Number(arg("idle-ttl-ms", 600_000));
/** Host slots: instances of one account per host process (serve --instances-per-host; 1 = off). */
const SLOTS = Number(arg("instances-per-host", 1));
/** How often the platform's peak RSS/PSS is sampled (every process's smaps_rollup: not free). */
const PEAK_SAMPLE_MS = 3000;
const MIX = Object.fromEntries(arg("mix", "php=0.6,python=0.2,x86=0.2").split(",").map((kv) => kv.split("=")).map(([k, v]) => [k, Number(v)]));

const { packDirectory } = await import(pathToFileURL(join(ROOT, "dist", "src", "bundle", "pack.js")).href);

/**
 * One app directory per app (deploys run concurrently: a directory shared by a runtime's apps was
 * rewritten by one worker while another packed it); each app's text names the app so a wrong
 * answer is caught.
 */
function makeTemplates(dir) {
  const t = {};
  t.php = (name) => {
    const php = join(dir, `php-${name}`);
    mkdirSync(join(php, "public"), { recursive: true });
    writeFileSync(join(php, "zerocell.toml"), 'runtime = "php"\n[php]\ndocument_root = "public"\n');
    writeFileSync(join(php, "public", "index.php"), `<?php echo 'hello from ${name}';`);
    return php;
  };
  t.python = (name) => {
    const py = join(dir, `python-${name}`);
    mkdirSync(py, { recursive: true });
    writeFileSync(join(py, "zerocell.toml"), 'runtime = "python"\n[python]\napp = "app:application"\n');
    writeFileSync(join(py, "app.py"), `def application(environ, start_response):\n    start_response("200 OK", [("content-type", "text/plain")])\n    return [b"hello from ${name}"]\n`);
    return py;
  };
  // x86: the example CGI program (bin/app, built by scripts/build-examples.mjs); its text is the
  // same for every app, so the check is on its own output plus the app's host.
  const x86 = join(dir, "x86");
  mkdirSync(join(x86, "bin"), { recursive: true });
  writeFileSync(join(x86, "zerocell.toml"), readFileSync(join(ROOT, "examples", "x86-cgi", "zerocell.toml"), "utf8").replace(/\[\[routes\]\][\s\S]*$/, ""));
  copyFileSync(join(ROOT, "examples", "x86-cgi", "bin", "app"), join(x86, "bin", "app"));
  t.x86 = () => x86;
  return t;
}

function runtimeOf(i) {
  // Deterministic interleaving by the mix's shares.
  const f = ((i * 0.6180339887) % 1 + 1) % 1;
  let acc = 0;
  for (const [rt, share] of Object.entries(MIX)) {
    acc += share;
    if (f < acc) return rt;
  }
  return "php";
}

async function api(urls, token, method, path, body, type = "application/json") {
  const r = await fetch(urls.admin + path, { method, headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": type }) }, body });
  const text = await r.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = { raw: text };
  }
  return { status: r.status, json };
}

/**
 * RSS and PSS of the gateway and every descendant, read without blocking this process's event
 * loop (it drives the deploys and the loop): smaps_rollup costs the kernel ~5–15 ms per host process, so a
 * synchronous read of hundreds of them every second took most of a core from the platform.
 */
async function platformMemoryAsync(serverPid) {
  const rows = psRows();
  const procs = [rows.find((r) => r.pid === serverPid), ...descendants(serverPid, rows)].filter(Boolean);
  const pss = await Promise.all(procs.map((p) => readFile(`/proc/${p.pid}/smaps_rollup`, "utf8").then((t) => Number(/^Pss:\s+(\d+)\s+kB/m.exec(t)?.[1] ?? 0), () => 0)));
  // The gateway is the first row (the hosts' budget does not cover it).
  return { procs: procs.length, rssMb: procs.reduce((n, p) => n + (p.rssKb ?? 0), 0) / 1024, pssMb: pss.reduce((a, b) => a + b, 0) / 1024, gatewayRssMb: (procs[0]?.rssKb ?? 0) / 1024, gatewayPssMb: (pss[0] ?? 0) / 1024 };
}

/**
 * Where the deploys' time went, p50 ms per part, from the server's "deployed" log records:
 * beforeCheck (bundle checks, blob, record), check (the health check: the host's start), its
 * start phases (admit = the memory budget, snapfetch, spawn…), and the host's own spawn → ready.
 */
function deployBreakdown(logPath) {
  const parts = {};
  const add = (k, v) => typeof v === "number" && (parts[k] ??= []).push(v);
  for (const line of readFileSync(logPath, "utf8").split("\n")) {
    if (!line.includes('"deployed"')) continue;
    let rec;
    try {
      rec = JSON.parse(line);
    } catch {
      continue;
    }
    if (rec.msg !== "deployed") continue;
    add("total", rec.ms);
    add("beforeCheck", rec.beforeCheckMs);
    add("check", rec.checkMs);
    add("hostReady", rec.hostReadyMs);
    for (const [k, v] of Object.entries(rec.startPhases ?? {})) add(`phase:${k}`, v);
  }
  return Object.fromEntries(Object.entries(parts).map(([k, v]) => [k, round(percentile(v.sort((a, b) => a - b), 50), 0)]));
}

const agent = new http.Agent({ keepAlive: true, maxSockets: C });

function get(urls, host) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const req = http.request(urls.http + "/", { headers: { host }, agent, timeout: 120_000 }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString(), ms: performance.now() - t0, instance: String(res.headers["x-zerocell-instance"] ?? ""), timing: parseServerTiming(res.headers["server-timing"]) }));
    });
    req.on("error", (e) => resolve({ status: 0, text: e.message, ms: performance.now() - t0, instance: "", timing: {} }));
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.end();
  });
}

runMain(async () => {
  const t0 = Date.now();
  const server = startZerocell({ dataPrefix: "zc-bench-density-", args: ["--memory-budget-mb", String(BUDGET_MB), "--idle-ttl-ms", String(IDLE_TTL), "--max-queue", "4096", ...(SLOTS > 1 ? ["--instances-per-host", String(SLOTS)] : [])] });
  const urls = await server.listening();
  const admin = readFileSync(join(server.dataDir, "admin-token"), "utf8").trim();
  const templates = makeTemplates(tempDir("zc-bench-density-apps-"));
  const result = { bench: "density", startedAt: new Date(t0).toISOString(), elapsedS: 0, git: gitInfo(), args: { APPS, HOT, ROUNDS, BUDGET_MB, DEPLOY_C, C, IDLE_TTL, MIX, SLOTS }, deploy: {}, loop: {}, memory: {}, pool: null, notes: [] };
  let peak = { rssMb: 0, pssMb: 0, gatewayPssMb: 0 };
  let sampling = false;
  const sampler = setInterval(() => {
    if (sampling) return;
    sampling = true;
    platformMemoryAsync(server.child.proc.pid).then((m) => {
      if (m.rssMb > peak.rssMb) peak = { ...peak, rssMb: m.rssMb };
      if (m.pssMb > peak.pssMb) peak = { ...peak, pssMb: m.pssMb };
      if (m.gatewayPssMb > peak.gatewayPssMb) peak = { ...peak, gatewayPssMb: m.gatewayPssMb };
    }).finally(() => (sampling = false));
  }, PEAK_SAMPLE_MS);

  // 1. deploy
  // An ordinary account routes only names under its own ACCOUNT.localhost (the base-domain policy).
  const apps = Array.from({ length: APPS }, (_, i) => ({ name: `d${i}`, host: i % 2 === 1 ? `d${i}.acct-d${i}.localhost` : `d${i}.localhost`, runtime: runtimeOf(i), own: i % 2 === 1 }));
  const tokens = new Map();
  let next = 0;
  let failed = 0;
  const deployMs = [];
  const tDeploy = performance.now();
  const worker = async () => {
    while (next < apps.length) {
      const a = apps[next++];
      let token = admin;
      if (a.own) {
        const r = await api(urls, admin, "POST", "/v1/accounts", JSON.stringify({ name: `acct-${a.name}` }));
        if (r.status !== 201) throw new Error(`account for ${a.name}: ${r.status} ${JSON.stringify(r.json)}`);
        token = r.json.token;
      }
      tokens.set(a.name, token);
      const archive = await packDirectory(templates[a.runtime](a.name));
      const s = performance.now();
      const r = await api(urls, token, "POST", `/v1/apps/${a.name}/deployments?host=${a.host}`, archive, "application/gzip");
      deployMs.push(performance.now() - s);
      if (r.status !== 201) {
        failed++;
        a.failed = true;
        if (failed <= 5) log(`deploy ${a.name} (${a.runtime}) failed: ${r.status} ${JSON.stringify(r.json).slice(0, 300)}`);
      }
      const done = deployMs.length;
      if (done % 50 === 0) {
        const m = await platformMemoryAsync(server.child.proc.pid);
        log(`deployed ${done}/${APPS} (${round(done / ((performance.now() - tDeploy) / 1000), 2)}/s), platform RSS ${round(m.rssMb, 0)} MB, PSS ${round(m.pssMb, 0)} MB (gateway ${round(m.gatewayPssMb, 0)}), ${m.procs} processes`);
      }
    }
  };
  await Promise.all(Array.from({ length: DEPLOY_C }, worker));
  const deploySeconds = (performance.now() - tDeploy) / 1000;
  deployMs.sort((a, b) => a - b);
  result.deploy = { apps: APPS, failed, seconds: round(deploySeconds, 1), perSecond: round(APPS / deploySeconds, 2), p50Ms: round(percentile(deployMs, 50), 0), p99Ms: round(percentile(deployMs, 99), 0) };
  result.deploy.breakdownP50Ms = deployBreakdown(server.logPath);
  result.memory.afterDeploy = await platformMemoryAsync(server.child.proc.pid);
  log(`deployed ${APPS} apps in ${round(deploySeconds, 0)} s (${failed} failed)`);

  // 2. the rotating loop over the hot apps
  const hot = apps.filter((a) => !a.failed).slice(0, HOT);
  const order = [];
  for (let r = 0; r < ROUNDS; r++) for (const a of hot) order.push(a);
  const warm = [];
  const cold = [];
  const warmReady = [];
  const coldReady = [];
  const coldPhases = {};
  let errors = 0;
  const errorSamples = [];
  let i = 0;
  const tLoop = performance.now();
  const loopWorker = async () => {
    while (i < order.length) {
      const a = order[i++];
      const r = await get(urls, a.host);
      const okText = a.runtime === "x86" ? r.text.length > 0 : r.text === `hello from ${a.name}`;
      if (r.status !== 200 || !okText) {
        errors++;
        if (errorSamples.length < 5) errorSamples.push(`${a.name} (${a.runtime}): ${r.status} ${r.text.slice(0, 200)}`);
        continue;
      }
      const isNew = /\bnew\b/.test(r.instance);
      (isNew ? cold : warm).push(r.ms);
      if (r.timing.ready !== undefined) (isNew ? coldReady : warmReady).push(r.timing.ready);
      // Where a cold request's time went: the start's phases (s-admit = the memory budget, …).
      if (isNew) for (const [k, v] of Object.entries(r.timing)) if (k.startsWith("s-") || k === "acquire" || k === "run") (coldPhases[k] ??= []).push(v);
    }
  };
  await Promise.all(Array.from({ length: C }, loopWorker));
  const loopS = (performance.now() - tLoop) / 1000;
  clearInterval(sampler);
  for (const xs of [warm, cold, warmReady, coldReady]) xs.sort((a, b) => a - b);
  const q = (xs) => (xs.length === 0 ? { n: 0, p50: null, p99: null } : { n: xs.length, p50: round(percentile(xs, 50), 1), p99: round(percentile(xs, 99), 1) });
  const coldPhaseMeans = Object.fromEntries(Object.entries(coldPhases).map(([k, v]) => [k, round(v.reduce((a, b) => a + b, 0) / v.length, 1)]));
  result.loop = { requests: order.length, errors, errorSamples, seconds: round(loopS, 1), reqPerS: round(order.length / loopS, 1), warm: q(warm), cold: q(cold), warmReadyMs: q(warmReady), coldReadyMs: q(coldReady), coldPhaseMeansMs: coldPhaseMeans };
  const end = await platformMemoryAsync(server.child.proc.pid);
  const pool = (await api(urls, admin, "GET", "/v1/pool")).json;
  const ready = (pool.deployments ?? []).reduce((n, d) => n + d.instances, 0);
  result.pool = { readyInstances: ready, memory: pool.memory, spares: pool.spares?.ready?.length ?? 0 };
  result.memory.end = end;
  result.memory.peak = peak;
  result.memory.perReadyInstancePssMb = ready > 0 ? round(end.pssMb / ready, 1) : null;

  const mb = (x) => round(x, 0);
  const rows = [
    ["", "value"],
    ["apps deployed (failed)", `${APPS} (${failed})`],
    ["deploys per second (p50 / p99 ms each)", `${result.deploy.perSecond} (${result.deploy.p50Ms} / ${result.deploy.p99Ms})`],
    ["deploy p50 by part (ms, server log)", Object.entries(result.deploy.breakdownP50Ms ?? {}).map(([k, v]) => `${k} ${v}`).join(", ") || "-"],
    ["memory budget (MiB)", String(BUDGET_MB)],
    ["ready instances at the end", String(ready)],
    ["platform RSS / PSS at the end (MB)", `${mb(end.rssMb)} / ${mb(end.pssMb)}`],
    ["platform RSS / PSS peak (MB)", `${mb(peak.rssMb)} / ${mb(peak.pssMb)}`],
    ["PSS per ready instance (MB, whole platform / instances)", String(result.memory.perReadyInstancePssMb)],
    ["gateway PSS after deploys / at the end / peak (MB)", `${mb(result.memory.afterDeploy.gatewayPssMb)} / ${mb(end.gatewayPssMb)} / ${mb(peak.gatewayPssMb)}`],
    [`loop: requests over ${hot.length} apps × ${ROUNDS} (c=${C})`, `${order.length} in ${round(loopS, 1)} s (${result.loop.reqPerS}/s)`],
    ["errors", String(errors)],
    ["warm: n, p50 / p99 ms (ready p50 / p99)", `${warm.length}, ${result.loop.warm.p50} / ${result.loop.warm.p99} (${result.loop.warmReadyMs.p50} / ${result.loop.warmReadyMs.p99})`],
    ["cold (instance started): n, p50 / p99 ms (ready p50 / p99)", `${cold.length}, ${result.loop.cold.p50} / ${result.loop.cold.p99} (${result.loop.coldReadyMs.p50} / ${result.loop.coldReadyMs.p99})`],
    ["cold: mean ms by phase (server-timing)", Object.entries(coldPhaseMeans).map(([k, v]) => `${k} ${v}`).join(", ") || "-"],
    ["budget: used / budget MiB, evictions, refused", pool.memory ? `${mb(pool.memory.usedBytes / 1048576)} / ${mb(pool.memory.budgetBytes / 1048576)}, ${pool.memory.evictionsForBudget}, ${pool.memory.refused}` : "-"],
  ];
  result.elapsedS = round((Date.now() - t0) / 1000, 0);
  const text = `density: ${APPS} apps, ${HOT} hot, budget ${BUDGET_MB} MiB\n${renderTable(rows)}\n${errorSamples.join("\n")}`;
  log(`\n${text}`);
  writeResult(result, text, "density-");
  agent.destroy();
  await stopChild(server.child, 60_000);
  log(`done in ${round((Date.now() - t0) / 1000, 0)} s`);
}, log);
