#!/usr/bin/env node
/**
 * Cold restore (issue 13): how long an app scaled to zero takes to answer its next request,
 * restored from its stored snapshot on a spare host, next to a warm request in the same run.
 *
 *   node bench/cold.mjs [--apps 6] [--runtimes php,python] [--rounds 2] [--idle-ttl-ms 2000]
 *                       [--build DIR] [--label TEXT] [--settle-ms N]
 *
 * Starts the built server (dist/, or DIR's dist/ and node_modules/ with --build: a before/after
 * pair in the same machine state) with a short --idle-ttl-ms, deploys --apps hello apps per
 * runtime (each its own text), answers each once, and then, --rounds times: waits until every
 * app has scaled to zero (GET /v1/pool: no instance), and for each app in turn waits until a
 * spare host of its runtime is ready (the target's condition), sends one request — timed from
 * sending to the first byte of the response (headers) — and at once a second request to the same
 * app (a warm one: the instance just restored, reset). Every answer must be 200 with the app's
 * own text.
 *
 * Prints per runtime: cold and warm time to first byte p50/p99, the server-timing `ready`
 * (request arrival in the gateway → guest code in the sandbox), and the start's phases from
 * server-timing (`s-*`: admit = memory budget, snapfetch = stored snapshot → ready to send,
 * send = init sent → received by the host, engine/prepare/instantiate/import = the host's steps;
 * mean over the cold requests), the spare hosts taken and the restores that used a spare's
 * pre-instantiated engine (GET /v1/pool), and the load average at start and end.
 */
import http from "node:http";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { BUILD, installCleanup, logger, percentile, renderTable, round, runMain, sleep, startZerocell, stopChild, tempDir, writeResult, gitInfo } from "./lib.mjs";

const log = logger("cold");
installCleanup(log);

function arg(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? def : process.argv[i + 1];
}

const APPS = Number(arg("apps", 6));
const RUNTIMES = String(arg("runtimes", "php,python")).split(",").filter(Boolean);
const ROUNDS = Number(arg("rounds", 2));
const IDLE_TTL = Number(arg("idle-ttl-ms", 2000));
const LABEL = arg("label", "");
const BUILD_DIR = arg("build", undefined);
/** Pause after a spare is there (and preloaded, where the build says so) before the cold request, ms. */
const SETTLE_MS = arg("settle-ms", undefined);
if (BUILD_DIR !== undefined) Object.assign(BUILD, { root: BUILD_DIR, cli: join(BUILD_DIR, "dist", "src", "cli", "main.js"), copied: true });

const { packDirectory } = await import(pathToFileURL(join(BUILD.root, "dist", "src", "bundle", "pack.js")).href);

// A loaded machine makes a first Python request take seconds: not what this bench measures.
const LIMITS = "[limits]\ntimeout_ms = 60000\n";

function appDir(base, runtime, name) {
  const dir = join(base, name);
  if (runtime === "php") {
    mkdirSync(join(dir, "public"), { recursive: true });
    writeFileSync(join(dir, "zerocell.toml"), `runtime = "php"\n${LIMITS}[php]\ndocument_root = "public"\n`);
    writeFileSync(join(dir, "public", "index.php"), `<?php echo 'hello from ${name}';`);
  } else if (runtime === "python") {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "zerocell.toml"), `runtime = "python"\n${LIMITS}[python]\napp = "app:application"\n`);
    writeFileSync(join(dir, "app.py"), `def application(environ, start_response):\n    start_response("200 OK", [("content-type", "text/plain")])\n    return [b"hello from ${name}"]\n`);
  } else throw new Error(`cold: runtime ${runtime} is not benched`);
  return dir;
}

async function api(urls, token, method, path, body, type = "application/json") {
  const r = await fetch(urls.admin + path, { method, headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": type }) }, body });
  const text = await r.text();
  try {
    return { status: r.status, json: JSON.parse(text) };
  } catch {
    return { status: r.status, json: { raw: text } };
  }
}

// A new connection per request (no keep-alive): the cold and warm requests pay the same.
function get(urls, host) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const req = http.request(urls.http + "/", { headers: { host }, agent: false, timeout: 120_000 }, (res) => {
      const ttfb = performance.now() - t0;
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString(), ttfb, instance: String(res.headers["x-zerocell-instance"] ?? ""), timing: String(res.headers["server-timing"] ?? "") }));
    });
    req.on("error", (e) => resolve({ status: 0, text: e.message, ttfb: performance.now() - t0, instance: "", timing: "" }));
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.end();
  });
}

function timings(h) {
  const out = {};
  for (const m of h.matchAll(/([\w-]+);dur=([\d.]+)/g)) out[m[1]] = Number(m[2]);
  return out;
}

async function waitFor(what, fn, timeoutMs = 120_000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > end) throw new Error(`cold: timed out waiting for ${what}`);
    await sleep(100);
  }
}

runMain(async () => {
  const t0 = Date.now();
  const load0 = loadavg();
  const server = startZerocell({ dataPrefix: "zc-bench-cold-", args: ["--idle-ttl-ms", String(IDLE_TTL), "--min-instances", "0", "--max-instances", "1"] });
  const urls = await server.listening();
  const admin = readFileSync(join(server.dataDir, "admin-token"), "utf8").trim();
  const base = tempDir("zc-bench-cold-apps-");
  const result = { bench: "cold", label: LABEL, build: BUILD.root, startedAt: new Date(t0).toISOString(), git: gitInfo(), args: { APPS, RUNTIMES, ROUNDS, IDLE_TTL }, loadavg: { start: load0 }, runtimes: {} };
  const pool = async () => (await api(urls, admin, "GET", "/v1/pool")).json;

  // 1. deploy and answer each app once
  const apps = [];
  for (const runtime of RUNTIMES) {
    for (let i = 0; i < APPS; i++) {
      const name = `${runtime}${i}`;
      const archive = await packDirectory(appDir(base, runtime, name));
      const r = await api(urls, admin, "POST", `/v1/apps/${name}/deployments?host=${name}.localhost`, archive, "application/gzip");
      if (r.status !== 201) throw new Error(`deploy ${name}: ${r.status} ${JSON.stringify(r.json).slice(0, 300)}`);
      // A loaded machine may keep the first request waiting past the pool's bound: try again.
      let first = await get(urls, `${name}.localhost`);
      for (let t = 0; t < 3 && first.status === 503; t++) first = await get(urls, `${name}.localhost`);
      if (first.status !== 200 || first.text !== `hello from ${name}`) throw new Error(`${name}: ${first.status} ${first.text.slice(0, 200)}`);
      apps.push({ name, runtime });
    }
    log(`deployed ${APPS} ${runtime} apps`);
  }

  // 2. rounds: all scaled to zero, then one cold and one warm request per app
  const samples = Object.fromEntries(RUNTIMES.map((r) => [r, { cold: [], warm: [], coldReady: [], warmReady: [], phases: [] }]));
  let errors = 0;
  for (let round_ = 0; round_ < ROUNDS; round_++) {
    await waitFor("every app to scale to zero", async () => ((await pool()).deployments ?? []).every((d) => d.instances === 0 && d.starting === 0));
    for (const a of apps) {
      // A spare that finished its preload (older builds do not say: any spare, and a pause).
      await waitFor(`a spare ${a.runtime} host`, async () => ((await pool()).spares?.ready ?? []).some((s) => s.runtime === a.runtime && s.preloaded !== false));
      // It collects its garbage 1 s after; Python builds its base image in the background.
      await sleep(SETTLE_MS !== undefined ? Number(SETTLE_MS) : a.runtime === "python" ? 4000 : 1500);
      const cold = await get(urls, `${a.name}.localhost`);
      const warm = await get(urls, `${a.name}.localhost`);
      for (const [r, kind] of [[cold, "new"], [warm, "reused"]]) {
        if (r.status !== 200 || r.text !== `hello from ${a.name}` || !r.instance.includes(kind)) {
          errors++;
          log(`${a.name}: ${r.status} ${r.instance} ${r.text.slice(0, 200)}`);
        }
      }
      const s = samples[a.runtime];
      const ct = timings(cold.timing);
      const wt = timings(warm.timing);
      s.cold.push(cold.ttfb);
      s.warm.push(warm.ttfb);
      if (ct.ready !== undefined) s.coldReady.push(ct.ready);
      if (wt.ready !== undefined) s.warmReady.push(wt.ready);
      s.phases.push(ct);
    }
    log(`round ${round_ + 1}/${ROUNDS} done`);
  }
  const p = await pool();
  result.pool = { spares: p.spares, restoredOnSpareEngine: p.spares?.restoredOnSpareEngine ?? null };
  result.loadavg.end = loadavg();

  // 3. the table
  const q = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length === 0 ? { n: 0, p50: null, p99: null } : { n: s.length, p50: round(percentile(s, 50), 1), p99: round(percentile(s, 99), 1) };
  };
  const rows = [["", ...RUNTIMES]];
  for (const r of RUNTIMES) {
    const s = samples[r];
    const names = [...new Set(s.phases.flatMap((t) => Object.keys(t)))];
    const mean = {};
    for (const n of names) {
      const xs = s.phases.map((t) => t[n]).filter((v) => v !== undefined);
      mean[n] = round(xs.reduce((a, b) => a + b, 0) / xs.length, 1);
    }
    result.runtimes[r] = { cold: q(s.cold), warm: q(s.warm), coldReady: q(s.coldReady), warmReady: q(s.warmReady), phasesMeanMs: mean };
  }
  const cell = (o) => `${o.p50} / ${o.p99} (n=${o.n})`;
  rows.push(["cold TTFB p50 / p99 ms", ...RUNTIMES.map((r) => cell(result.runtimes[r].cold))]);
  rows.push(["warm TTFB p50 / p99 ms", ...RUNTIMES.map((r) => cell(result.runtimes[r].warm))]);
  rows.push(["cold: ratio to warm (p50)", ...RUNTIMES.map((r) => String(round(result.runtimes[r].cold.p50 / result.runtimes[r].warm.p50, 1)))]);
  rows.push(["cold ready (arrival → guest) p50 / p99 ms", ...RUNTIMES.map((r) => cell(result.runtimes[r].coldReady))]);
  rows.push(["warm ready p50 / p99 ms", ...RUNTIMES.map((r) => cell(result.runtimes[r].warmReady))]);
  const phaseNames = [...new Set(RUNTIMES.flatMap((r) => Object.keys(result.runtimes[r].phasesMeanMs)))].filter((n) => n.startsWith("s-") || ["acquire", "run", "total"].includes(n));
  for (const n of phaseNames) rows.push([`cold phase ${n} (mean ms)`, ...RUNTIMES.map((r) => String(result.runtimes[r].phasesMeanMs[n] ?? "-"))]);
  rows.push(["errors", String(errors), ...RUNTIMES.slice(1).map(() => "")]);
  result.errors = errors;
  result.elapsedS = round((Date.now() - t0) / 1000, 0);
  const text = `cold restore${LABEL === "" ? "" : ` (${LABEL})`}: ${APPS} apps per runtime × ${ROUNDS} rounds, idle TTL ${IDLE_TTL} ms, build ${BUILD.root}\nload average start ${load0.map((x) => x.toFixed(1)).join(" ")}, end ${result.loadavg.end.map((x) => x.toFixed(1)).join(" ")}\nspares taken ${p.spares?.taken ?? "-"}, restores on a spare's pre-instantiated engine ${p.spares?.restoredOnSpareEngine ?? "-"}\n${renderTable(rows)}`;
  log(`\n${text}`);
  writeResult(result, text, "cold-");
  await stopChild(server.child, 60_000);
}, log);


