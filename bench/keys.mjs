#!/usr/bin/env node
/**
 * Zerocell keyed-routes benchmark: one run, one table, one JSON file.
 *
 *   node bench/keys.mjs [--duration 8] [--connections 64] [--keys 1000] [--wait-idle SECONDS]
 *
 * Starts the built server (dist/, `npx tsc -p tsconfig.json` first) on a temp data dir, loopback
 * only, deploys examples/php-blog (app "blog") and a purpose-made keyed counter app (app "kv",
 * written to a temp dir):
 *
 *   [[routes]] host = "kv.localhost"  path = "/k/:key"      key = "key"   (keyed, snapshot)
 *   [[routes]] host = "kv.localhost"  path = "/nokey/:key"                (unkeyed, snapshot)
 *
 * whose index.php reads a counter file (GET) or increments it (POST): /data/counter on the keyed
 * route (so a POST changes /data → durable commit: temp file, fsync, rename, fsync of the dir,
 * before the response), /tmp/counter on the unkeyed one (same PHP work, no commit).
 *
 * Measures, at --connections (64), autocannon in this process, HTTP/1.1 keep-alive:
 *   1. 1 key vs --keys (1000) keys spread evenly (round-robin over the paths):
 *      blog GET /posts/1?json=1 vs /posts/<1..1000>?json=1 (ids > 3 answer 404 without touching
 *      /data: counted as answered), kv GET and POST /k/1 vs /k/<1..1000>;
 *   2. the commit's cost: kv POST vs GET (keyed) and vs the same code on /nokey/<1..1000>;
 *      Δ in ms per request (1000 / req/s, and p50/p99), plus sequential (c=1) requests with the
 *      server's Server-Timing (total − run = gateway work around the sandbox, commit included),
 *      and a local fsync+rename micro-benchmark on the same file system as the data dir;
 *   3. correctness after the POST runs: for every key that got POSTs, the counter it reads back
 *      equals the number of 2xx POSTs sent to it, and the key's commit count (admin API
 *      /v1/apps/kv/keys "version") too (no lost updates: requests per key are serialised).
 * Runs stop gracefully: after --duration no new request is sent and every in-flight one is
 * awaited, so each POST's outcome is known. req/s = answered requests / (first sent → last
 * answered). Latency percentiles exact, from every answered response.
 * Writes bench/results/keys-<timestamp>.json. Kills every child it started, also on error/SIGINT.
 * About 1.5–2 minutes with the defaults.
 */
import { mkdirSync, readFileSync, writeFileSync, existsSync, rmSync, openSync, closeSync, writeSync, fsyncSync, renameSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import http from "node:http";
import { CLI, ROOT, cleaningUp, cpuSnapshot, distOlderThanSrc, foreignCpuShare, gitInfo, installCleanup, logger, machineEnv, noteBusyBefore, parseServerTiming, pct, percentile, renderTable, request, round, finishRun, runAutocannon, runMain, sleep, startZerocell, stopZerocell, tempDir, waitFor200, zerocellCli } from "./lib.mjs";

const BLOG = join(ROOT, "examples", "php-blog");
const KV_HOST = "kv.localhost";
const BLOG_HOST = "blog.localhost";

// ---------------------------------------------------------------- options

function parseArgs(argv) {
  const o = { duration: 8, connections: 64, keys: 1000, seq: 200, warmup: 2, waitIdle: 0 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => Number(a.includes("=") ? a.slice(a.indexOf("=") + 1) : argv[++i]);
    if (a === "--duration" || a.startsWith("--duration=")) o.duration = val();
    else if (a === "--connections" || a.startsWith("--connections=")) o.connections = val();
    else if (a === "--keys" || a.startsWith("--keys=")) o.keys = val();
    else if (a === "--wait-idle" || a.startsWith("--wait-idle=")) o.waitIdle = val();
    else if (a === "-h" || a === "--help") {
      process.stdout.write("usage: node bench/keys.mjs [--duration SECONDS (default 8)] [--connections N (default 64)] [--keys N (default 1000)] [--wait-idle SECONDS]\n  --wait-idle N: before starting, wait up to N s for other processes to use <10% CPU (shared machines)\n");
      process.exit(0);
    } else {
      process.stderr.write(`unknown argument: ${a}\n`);
      process.exit(2);
    }
  }
  for (const k of ["duration", "connections", "keys"]) {
    if (!(o[k] > 0)) {
      process.stderr.write(`--${k} must be a positive number\n`);
      process.exit(2);
    }
  }
  if (!(o.waitIdle >= 0)) {
    process.stderr.write("--wait-idle must be a number of seconds\n");
    process.exit(2);
  }
  o.connections = Math.floor(o.connections);
  o.keys = Math.floor(o.keys);
  return o;
}
const OPTS = parseArgs(process.argv.slice(2));

// ---------------------------------------------------------------- children and cleanup

const log = logger("keys");
installCleanup(log);

// ---------------------------------------------------------------- small helpers

const stat = (xs) => {
  const s = Float64Array.from(xs).sort();
  return { n: s.length, p50: round(percentile(s, 50), 3), p99: round(percentile(s, 99), 3), mean: round(s.reduce((a, b) => a + b, 0) / (s.length || 1), 3) };
};

/** Busy share of all CPUs over `ms`, not counting this process. */
async function cpuBusy(ms = 1000) {
  const a = cpuSnapshot();
  await sleep(ms);
  return foreignCpuShare(a, cpuSnapshot());
}

// ---------------------------------------------------------------- load generation

/**
 * Per-key outcome of every request sent by load() with `track` set (POSTs to the keyed route):
 * key → { sent, ok (2xx), bad (other statuses) }. Sent − ok − bad = never answered.
 */
const posts = new Map();
function tally(key) {
  let t = posts.get(key);
  if (t === undefined) posts.set(key, (t = { sent: 0, ok: 0, bad: 0 }));
  return t;
}

/**
 * One autocannon run at `connections`, for `duration` seconds (then graceful: no new request,
 * every in-flight one awaited) or for `amount` requests. `pathFor(i)` gives the i-th request's
 * path (a shared counter across connections: round-robin over the keys); `keyFor(i)` its key for
 * tracking (`track`). `ok(status)`: the statuses that count as answered (default 2xx).
 */
async function load({ label, url, host, method = "GET", pathFor, keyFor, connections, duration, amount, ok = (s) => s >= 200 && s < 300, track = false, timeoutS = 30 }) {
  const lat = [];
  const statusCounts = {};
  let answered = 0;
  let other = 0;
  let seq = 0;
  let tFirst;
  let tLast;
  const clients = [];
  const body = method === "POST" ? "n=1" : undefined;
  const headers = { host, ...(body === undefined ? {} : { "content-type": "application/x-www-form-urlencoded" }) };
  const requests = [{
    method,
    headers,
    ...(body === undefined ? {} : { body }),
    setupRequest: (req, context) => {
      const i = seq++;
      tFirst ??= performance.now();
      req.path = pathFor(i);
      if (track) {
        context.key = keyFor(i);
        tally(context.key).sent++;
      }
      return req;
    },
    onResponse: (status, _body, context) => {
      if (track && context.key !== undefined) {
        const t = tally(context.key);
        if (status >= 200 && status < 300) t.ok++;
        else t.bad++;
      }
    },
  }];
  const opts = {
    url,
    connections,
    pipelining: 1,
    timeout: timeoutS,
    requests,
    sampleInt: 100,
    // Amount mode, with a per-connection limit lowered at the deadline (graceful stop).
    amount: amount ?? 1_000_000_000,
    setupClient: (client) => clients.push(client),
  };
  if (amount !== undefined && amount < connections) opts.connections = amount;
  let deadline;
  if (amount === undefined) {
    deadline = setTimeout(() => {
      for (const c of clients) c.responseMax = Math.max(1, c.reqsMade);
    }, duration * 1000);
  }
  const snap0 = cpuSnapshot();
  const r = await runAutocannon(opts, (_client, status, _bytes, ms) => {
    tLast = performance.now();
    statusCounts[status] = (statusCounts[status] ?? 0) + 1;
    if (ok(status)) {
      answered++;
      lat.push(ms);
    } else other++;
  });
  clearTimeout(deadline);
  const otherCpu = foreignCpuShare(snap0, cpuSnapshot());
  const spanS = tFirst !== undefined && tLast !== undefined ? (tLast - tFirst) / 1000 : r.duration;
  const sorted = Float64Array.from(lat).sort();
  const rps = answered / spanS;
  return {
    label,
    method,
    connections: opts.connections,
    durationS: round(spanS, 2),
    sent: seq,
    requests: answered,
    rps: round(rps, rps < 100 ? 2 : 0),
    msPerReq: round(1000 / rps, 3), // inverse throughput: the time the system spends per request
    p50Ms: round(percentile(sorted, 50), 3),
    p99Ms: round(percentile(sorted, 99), 3),
    maxMs: round(sorted[sorted.length - 1], 3),
    statusCounts,
    notOk: other,
    errors: r.errors,
    timeouts: r.timeouts,
    otherCpuPct: pct(otherCpu),
  };
}

/** `n` sequential keep-alive requests; Server-Timing and client round trip per request. */
async function sequential({ label, url, host, method, path, n, track = false, key }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const client = [], total = [], run = [], acquire = [], around = [];
  let bad = 0;
  try {
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      if (track) tally(key).sent++;
      let r;
      try {
        r = await request(url + path, { method, host, agent, ...(method === "POST" ? { body: "n=1" } : {}) });
      } catch {
        bad++;
        continue;
      }
      const dt = performance.now() - t0;
      if (track) {
        if (r.status >= 200 && r.status < 300) tally(key).ok++;
        else tally(key).bad++;
      }
      const st = parseServerTiming(r.headers["server-timing"]);
      if (r.status !== 200 || st.run === undefined || st.total === undefined) {
        bad++;
        continue;
      }
      client.push(dt);
      total.push(st.total);
      run.push(st.run);
      acquire.push(st.acquire ?? 0);
      around.push(st.total - st.run - (st.acquire ?? 0));
    }
  } finally {
    agent.destroy();
  }
  return { label, method, path, samples: client.length, failed: bad, clientMs: stat(client), totalMs: stat(total), runMs: stat(run), acquireMs: stat(acquire), aroundMs: stat(around) };
}

/** What the commit itself costs on this file system: write ~200 B, fsync, rename, fsync dir. */
function fsyncMicro(dir, n = 200) {
  const d = join(dir, "fsync-micro");
  mkdirSync(d, { recursive: true });
  const file = join(d, "x.img");
  const buf = Buffer.alloc(200, 7);
  const ms = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const tmp = `${file}.${i}.tmp`;
    const fd = openSync(tmp, "w", 0o600);
    try {
      writeSync(fd, buf);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
    const dfd = openSync(d, "r");
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
    ms.push(performance.now() - t0);
  }
  rmSync(d, { recursive: true, force: true });
  return stat(ms);
}

// ---------------------------------------------------------------- the counter app

const KV_TOML = `# bench/keys.mjs: a per-key counter. /k/:key is keyed (one request at a time per key, its own
# /data, committed durably when a request changes it); /nokey/:key runs the same code unkeyed.
runtime = "php"

[php]
version = "8.3"
document_root = "public"
front_controller = "index.php"

[[routes]]
host = "${KV_HOST}"
path = "/k/:key"
key = "key"

[[routes]]
host = "${KV_HOST}"
path = "/nokey/:key"
`;

const KV_PHP = `<?php
// GET: read the counter. POST: increment it. Keyed route: /data/counter (committed per key);
// unkeyed route: /tmp/counter (scratch, emptied per request in snapshot mode): same work, no commit.
$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
$dir = str_starts_with($path, '/k/') ? '/data' : '/tmp';
$file = $dir . '/counter';
$n = is_file($file) ? (int)file_get_contents($file) : 0;
if ($_SERVER['REQUEST_METHOD'] === 'POST') {
    $n++;
    file_put_contents($file, (string)$n);
}
header('Content-Type: application/json');
echo json_encode(['key' => rawurldecode(basename($path)), 'counter' => $n]);
`;

function makeKvApp() {
  const dir = tempDir("zc-keys-kv-");
  mkdirSync(join(dir, "public"));
  writeFileSync(join(dir, "zerocell.toml"), KV_TOML);
  writeFileSync(join(dir, "public", "index.php"), KV_PHP);
  return dir;
}

// ---------------------------------------------------------------- zerocell

async function run(result) {
  if (!existsSync(CLI)) throw new Error(`${CLI} missing: build first (npx tsc -p tsconfig.json)`);
  const { child: server, dataDir, logPath, listening } = startZerocell({ dataPrefix: "zc-keys-data-", args: ["--idle-ttl-ms", "1800000"] });
  try {
    const urls = await listening();
    for (const u of [urls.http, urls.admin]) {
      const h = new URL(u).hostname;
      if (h !== "127.0.0.1" && h !== "localhost" && h !== "[::1]") throw new Error(`server not on loopback: ${u}`);
    }
    const token = readFileSync(join(dataDir, "admin-token"), "utf8").trim();
    log(`server listening (${urls.http}); deploying blog and kv`);
    for (const [app, dir] of [["blog", BLOG], ["kv", makeKvApp()]]) {
      const dep = await zerocellCli(dataDir, ["deploy", dir, "--app", app]);
      if (dep.code !== 0) throw new Error(`deploy of ${app} failed (${dep.code}):\n${dep.out}`);
    }
    const base = urls.http;
    const first = {};
    for (const [host, path] of [[BLOG_HOST, "/posts/1?json=1"], [KV_HOST, "/k/probe"], [KV_HOST, "/nokey/probe"]]) {
      const r = await waitFor200(base + path, { host, method: "GET" }, 60_000, server);
      first[`${host}${path}`] = { body: r.body.trim().slice(0, 200), serverTiming: parseServerTiming(r.headers["server-timing"]) };
    }
    result.env.firstResponses = first;
    log("first 200s: blog /posts/1, kv /k/probe, kv /nokey/probe");

    const K = OPTS.keys;
    const C = OPTS.connections;
    const D = OPTS.duration;
    const spread = (prefix, suffix = "") => (i) => `${prefix}${(i % K) + 1}${suffix}`;
    const one = (p) => () => p;
    const keySpread = (i) => String((i % K) + 1);
    const keyOne = () => "1";
    const push = (group, r) => {
      result.runs.push({ group, ...r });
      log(`  ${r.label}: ${r.rps} req/s, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms, statuses ${JSON.stringify(r.statusCounts)}${r.errors ? `, errors ${r.errors}` : ""}`);
    };

    // ---- 1a. the blog: 1 key vs K keys (ids > 3: 404 without touching /data)
    log(`blog: warmup ${OPTS.warmup}s GET /posts/1 c=8`);
    await load({ label: "warmup", url: base, host: BLOG_HOST, pathFor: one("/posts/1?json=1"), connections: 8, duration: OPTS.warmup });
    const blogOk = (s) => s === 200 || s === 404;
    log(`blog: GET c=${C}, ${D}s each`);
    push("blog", await load({ label: "blog GET /posts/1?json=1 (1 key)", url: base, host: BLOG_HOST, pathFor: one("/posts/1?json=1"), connections: C, duration: D, ok: blogOk }));
    push("blog", await load({ label: `blog GET /posts/<1..${K}>?json=1 (${K} keys)`, url: base, host: BLOG_HOST, pathFor: spread("/posts/", "?json=1"), connections: C, duration: D, ok: blogOk }));

    // ---- 1b/2. the counter app
    log(`kv: warmup ${OPTS.warmup}s GET /k/<1..${K}> c=8, then ${K} POSTs (one per key: creates every key)`);
    await load({ label: "warmup", url: base, host: KV_HOST, pathFor: spread("/k/"), connections: 8, duration: OPTS.warmup });
    const w = await load({ label: "warmup POST", url: base, host: KV_HOST, method: "POST", pathFor: spread("/k/"), keyFor: keySpread, track: true, connections: C, amount: K });
    result.warmupPost = w;
    log(`kv: runs at c=${C}, ${D}s each`);
    push("kv", await load({ label: "kv GET /k/1 (1 key)", url: base, host: KV_HOST, pathFor: one("/k/1"), connections: C, duration: D }));
    push("kv", await load({ label: `kv GET /k/<1..${K}> (${K} keys)`, url: base, host: KV_HOST, pathFor: spread("/k/"), connections: C, duration: D }));
    push("kv", await load({ label: "kv POST /k/1 (1 key)", url: base, host: KV_HOST, method: "POST", pathFor: one("/k/1"), keyFor: keyOne, track: true, connections: C, duration: D }));
    push("kv", await load({ label: `kv POST /k/<1..${K}> (${K} keys)`, url: base, host: KV_HOST, method: "POST", pathFor: spread("/k/"), keyFor: keySpread, track: true, connections: C, duration: D }));
    push("kv", await load({ label: `kv GET /nokey/<1..${K}> (unkeyed)`, url: base, host: KV_HOST, pathFor: spread("/nokey/"), connections: C, duration: D }));
    push("kv", await load({ label: `kv POST /nokey/<1..${K}> (unkeyed)`, url: base, host: KV_HOST, method: "POST", pathFor: spread("/nokey/"), connections: C, duration: D }));

    // ---- 2b. sequential, with Server-Timing: what the gateway spends around the sandbox
    log(`sequential c=1: ${OPTS.seq} requests each, GET/POST keyed and unkeyed`);
    result.sequential = [
      await sequential({ label: "keyed GET /k/seq", url: base, host: KV_HOST, method: "GET", path: "/k/seq", n: OPTS.seq }),
      await sequential({ label: "keyed POST /k/seq", url: base, host: KV_HOST, method: "POST", path: "/k/seq", n: OPTS.seq, track: true, key: "seq" }),
      await sequential({ label: "unkeyed GET /nokey/seq", url: base, host: KV_HOST, method: "GET", path: "/nokey/seq", n: OPTS.seq }),
      await sequential({ label: "unkeyed POST /nokey/seq", url: base, host: KV_HOST, method: "POST", path: "/nokey/seq", n: OPTS.seq }),
    ];
    result.fsyncMicro = fsyncMicro(dataDir);
    log(`fsync+rename micro-benchmark on the data dir's file system: p50 ${result.fsyncMicro.p50} ms, p99 ${result.fsyncMicro.p99} ms`);

    // ---- 3. correctness: every key that got POSTs
    log(`correctness: reading back ${posts.size} counters`);
    let adminKeys = null;
    try {
      const r = await fetch(urls.admin + "/v1/apps/kv/keys", { headers: { authorization: `Bearer ${token}` } });
      adminKeys = new Map((await r.json()).keys.map((k) => [k.key, k]));
    } catch (e) {
      result.notes.push(`correctness: admin API /v1/apps/kv/keys failed: ${e.message}`);
    }
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    const checks = [];
    const entries = [...posts.entries()];
    try {
      for (let i = 0; i < entries.length; i += 8) {
        await Promise.all(entries.slice(i, i + 8).map(async ([key, t]) => {
          const r = await request(`${base}/k/${encodeURIComponent(key)}`, { method: "GET", host: KV_HOST, agent });
          let counter = null;
          try {
            counter = JSON.parse(r.body).counter;
          } catch {
            // not JSON
          }
          const version = adminKeys?.get(key)?.version ?? null;
          checks.push({ key, sent: t.sent, ok: t.ok, bad: t.bad, unanswered: t.sent - t.ok - t.bad, status: r.status, counter, commits: version, match: counter === t.ok, commitsMatch: version === null ? null : version === t.ok });
        }));
      }
    } finally {
      agent.destroy();
    }
    checks.sort((a, b) => b.ok - a.ok || Number(a.key) - Number(b.key));
    const mism = checks.filter((c) => !c.match);
    const vmism = checks.filter((c) => c.commitsMatch === false);
    result.correctness = {
      keysChecked: checks.length,
      postsOk: checks.reduce((a, c) => a + c.ok, 0),
      postsNotOk: checks.reduce((a, c) => a + c.bad, 0),
      postsUnanswered: checks.reduce((a, c) => a + c.unanswered, 0),
      counterMatches: checks.length - mism.length,
      counterMismatches: mism.slice(0, 50),
      commitCountMismatches: vmism.slice(0, 50),
      commitCountChecked: adminKeys !== null,
      sample: [...new Set([...checks.slice(0, 3), ...checks.filter((c) => ["2", String(Math.ceil(K / 2)), String(K)].includes(c.key))])],
    };

    result.pool = await fetch(urls.admin + "/v1/pool", { headers: { authorization: `Bearer ${token}` } }).then((r) => r.json()).catch(() => null);
  } finally {
    await stopZerocell(server, result);
    try {
      const bad = readFileSync(logPath, "utf8").split("\n").filter((l) => /"status":5\d\d/.test(l) || /"level":"error"/.test(l));
      if (bad.length) {
        result.zerocellErrors = bad.slice(0, 50);
        result.notes.push(`zerocell server log: ${bad.length} 5xx/error lines; first: ${bad.slice(0, 3).map((l) => l.slice(0, 300)).join(" || ")}`);
      }
    } catch {
      // no log
    }
  }
}

// ---------------------------------------------------------------- report

function report(result) {
  const L = [];
  const K = OPTS.keys;
  const fmtOther = (x) => (x === null || x === undefined ? "?" : `${x}%`);
  L.push(`Zerocell keyed routes bench  ${result.startedAt}  c=${OPTS.connections}, ${OPTS.duration}s/run, ${K} keys  ${result.env.cpus} CPUs  node ${result.env.node}  commit ${result.env.gitCommit ?? "?"}${result.env.gitDirty ? " (src dirty)" : ""}`);
  L.push("");
  L.push(renderTable([
    ["run", "requests", "req/s", "ms/req", "p50 ms", "p99 ms", "max ms", "statuses", "errors", "other CPU"],
    ...result.runs.map((r) => [r.label, r.requests, r.rps, r.msPerReq, r.p50Ms, r.p99Ms, r.maxMs, Object.entries(r.statusCounts).map(([k, v]) => `${k}:${v}`).join(","), r.errors + r.timeouts, fmtOther(r.otherCpuPct)]),
  ]));
  L.push("ms/req = 1000 / req/s (time the whole system spends per request at this concurrency); blog rows count 200 and 404 as answered");
  const find = (label) => result.runs.find((r) => r.label.startsWith(label));
  const diff = (name, a, b) => {
    if (!a || !b) return [name, "-", "-", "-", "-"];
    const d = (x, y) => (x === null || y === null ? "-" : (x - y >= 0 ? "+" : "") + round(x - y, 3));
    return [name, round(a.rps / b.rps, 3), d(a.msPerReq, b.msPerReq), d(a.p50Ms, b.p50Ms), d(a.p99Ms, b.p99Ms)];
  };
  const g1 = find("kv GET /k/1 "), gK = find("kv GET /k/<"), p1 = find("kv POST /k/1 "), pK = find("kv POST /k/<"), ng = find("kv GET /nokey"), np = find("kv POST /nokey");
  const b1 = find("blog GET /posts/1?"), bK = find("blog GET /posts/<");
  L.push("");
  L.push(renderTable([
    ["comparison (A vs B)", "req/s A/B", "Δ ms/req", "Δ p50 ms", "Δ p99 ms"],
    diff(`blog: ${K} keys vs 1 key (GET)`, bK, b1),
    diff(`kv GET: ${K} keys vs 1 key`, gK, g1),
    diff(`kv POST: ${K} keys vs 1 key`, pK, p1),
    diff("commit, 1 key: POST vs GET", p1, g1),
    diff(`commit, ${K} keys: POST vs GET`, pK, gK),
    diff(`keyed vs unkeyed, POST (${K} keys)`, pK, np),
    diff(`keyed vs unkeyed, GET (${K} keys)`, gK, ng),
    diff("unkeyed: POST vs GET (PHP write only)", np, ng),
  ]));
  if (result.sequential?.length) {
    L.push("");
    L.push(`sequential keep-alive requests (c=1), ms as p50 / p99; around = gateway total − acquire − run (key queue, /data load, commit, response)`);
    const pp = (m) => `${m.p50} / ${m.p99}`;
    L.push(renderTable([
      ["request", "n", "client round trip", "server total", "run (sandbox)", "acquire", "around"],
      ...result.sequential.map((s) => [s.label, `${s.samples}${s.failed ? ` (${s.failed} failed)` : ""}`, pp(s.clientMs), pp(s.totalMs), pp(s.runMs), pp(s.acquireMs), pp(s.aroundMs)]),
    ]));
    const s = Object.fromEntries(result.sequential.map((x) => [x.label.split(" /")[0], x]));
    const kg = s["keyed GET"], kp = s["keyed POST"], ug = s["unkeyed GET"], up = s["unkeyed POST"];
    if (kg && kp && ug && up) {
      result.commitCostSequentialMs = {
        aroundPostMinusGet: round(kp.aroundMs.p50 - kg.aroundMs.p50, 3),
        totalKeyedPostMinusUnkeyedPost: round(kp.totalMs.p50 - up.totalMs.p50, 3),
        totalKeyedGetMinusUnkeyedGet: round(kg.totalMs.p50 - ug.totalMs.p50, 3),
      };
      L.push(`commit cost, sequential p50: around(keyed POST) − around(keyed GET) = ${result.commitCostSequentialMs.aroundPostMinusGet} ms; total keyed POST − unkeyed POST = ${result.commitCostSequentialMs.totalKeyedPostMinusUnkeyedPost} ms; total keyed GET − unkeyed GET = ${result.commitCostSequentialMs.totalKeyedGetMinusUnkeyedGet} ms`);
    }
  }
  if (result.fsyncMicro) L.push(`fsync+rename+fsync(dir) of a 200 B file on the data dir's file system (this process, ${result.fsyncMicro.n}×): p50 ${result.fsyncMicro.p50} ms, p99 ${result.fsyncMicro.p99} ms, mean ${result.fsyncMicro.mean} ms`);
  const c = result.correctness;
  if (c) {
    L.push("");
    L.push(`correctness (every key that got POSTs, counter read back with GET /k/<key>; commits = admin API version):`);
    L.push(`  ${c.keysChecked} keys, ${c.postsOk} POSTs answered 2xx, ${c.postsNotOk} non-2xx, ${c.postsUnanswered} unanswered; counter == 2xx POSTs for ${c.counterMatches}/${c.keysChecked} keys${c.commitCountChecked ? `; commits == 2xx POSTs for ${c.keysChecked - c.commitCountMismatches.length}/${c.keysChecked}` : ""} → ${c.counterMismatches.length === 0 && c.commitCountMismatches.length === 0 ? "NO LOST UPDATES" : "MISMATCH"}`);
    L.push(renderTable([
      ["key", "POSTs sent", "2xx", "non-2xx", "counter", "commits", "ok"],
      ...[...c.sample, ...c.counterMismatches.slice(0, 10)].map((k) => [k.key, k.sent, k.ok, k.bad, k.counter, k.commits, k.match && k.commitsMatch !== false ? "yes" : "NO"]),
    ]));
  }
  L.push("");
  L.push(`machine: ${result.env.cpus} CPUs (${result.env.cpuModel ?? "?"}), ${result.env.memGb} GB; CPU busy (other processes) before start: ${result.env.cpuBusyBefore === null ? "?" : Math.round(result.env.cpuBusyBefore * 100) + "%"}; load avg ${result.env.loadavgBefore.join(" ")}${result.env.waitedIdleS !== undefined ? ` (after waiting ${result.env.waitedIdleS}s for idle: ${result.env.loadavgStart.join(" ")})` : ""} → ${result.env.loadavgAfter?.join(" ") ?? "?"}`);
  L.push("load generator: autocannon in the bench process (HTTP/1.1 keep-alive, pipelining 1), sharing the CPUs with the server; server defaults (--max-instances 2, metering on), mode snapshot");
  L.push("other CPU: share of all CPUs used during the run by processes that are not this bench or its children; >5% means a noisy run");
  for (const n of result.notes) L.push(`note: ${n}`);
  return L.join("\n");
}

// ---------------------------------------------------------------- main

async function main() {
  const t0 = Date.now();
  const result = {
    startedAt: new Date().toISOString(),
    options: { ...OPTS },
    env: machineEnv(),
    runs: [],
    notes: [],
  };
  Object.assign(result.env, gitInfo());
  if (existsSync(CLI)) {
    if (distOlderThanSrc()) result.notes.push("dist/ is older than some file in src/: the measured server may not match the source");
  }
  await sleep(300);
  if (OPTS.waitIdle > 0) {
    const end = Date.now() + OPTS.waitIdle * 1000;
    let share = await cpuBusy(2000);
    if (share !== null && share >= 0.1) log(`waiting up to ${OPTS.waitIdle}s for the machine to be idle (${pct(share)}% other CPU)`);
    while (share !== null && share >= 0.1 && Date.now() < end && !cleaningUp) share = await cpuBusy(2000);
    result.env.waitedIdleS = round((Date.now() - t0) / 1000, 1);
    if (share !== null && share >= 0.1) result.notes.push(`machine still busy (${pct(share)}% other CPU) after waiting ${OPTS.waitIdle}s for idle`);
  }
  result.env.loadavgStart = loadavg().map((x) => round(x, 2));
  result.env.cpuBusyBefore = await cpuBusy(1000);
  noteBusyBefore(result, log);
  let failed = false;
  try {
    await run(result);
  } catch (e) {
    failed = true;
    result.notes.push(`FAILED: ${String(e.message).split("\n").slice(0, 6).join(" | ").slice(0, 600)}`);
    if (!cleaningUp) log(`failed: ${e.stack ?? e}`);
  }
  if (cleaningUp) return 130;
  if (result.correctness && (result.correctness.counterMismatches.length || result.correctness.commitCountMismatches.length)) failed = true;
  finishRun(result, t0, report, "keys-");
  return failed ? 1 : 0;
}

runMain(main, log);
