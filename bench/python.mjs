#!/usr/bin/env node
/**
 * Zerocell Python (WSGI) benchmark against native gunicorn: one run, one comparison table, one
 * JSON file (bench/results/python-<timestamp>.json).
 *
 *   node bench/python.mjs [--duration 8] [--quick] [--wait-idle SECONDS] [--no-native] [--no-install]
 *
 * Two apps, served by both sides from the same files:
 *   - hello: examples/wsgi-hello (a small HTML page built from the environ);
 *   - slow:  bench/apps/wsgi-slow-import (its import compiles 600 regexes and builds a 100k-row
 *            table from a prime sieve, ~0.5 s under native CPython; each request is one dict
 *            lookup and one regex match). The app measures its own import (IMPORT_MS, in every
 *            answer), so the import time is known for native CPython and for Pyodide alike.
 * Measured, one target at a time on loopback:
 *   1. native: Debian's gunicorn (apt-get install gunicorn when missing, unless --no-install),
 *      `--workers 2 --worker-class sync` (2 CPUs), the app copied to a temp dir:
 *      - the app's import time under gunicorn's own python3, in fresh processes;
 *      - cold start → first 200: gunicorn spawned, polled until the first 200 (master start, fork,
 *        each worker imports the app — no --preload), several times;
 *      - sequential requests (client round trip; sync workers close every connection), then
 *        c=1,8,64 for --duration each;
 *      - RSS/PSS of the master and the workers after load.
 *   2. zerocell: the built server (dist/, `npx tsc -p tsconfig.json` first), one bundle per app
 *      with three routes, <app>-snap.localhost (snapshot), <app>-daemon.localhost (daemon),
 *      <app>-fresh.localhost (fresh); per app and mode:
 *      - server-timing over sequential keep-alive requests (ready = request arrival → guest
 *        code starting in its sandbox, acquire, run, total);
 *      - c=1,8,64 for --duration each (snapshot, daemon); fresh starts a new sandbox (a cold
 *        Pyodide boot + the app's import) per request, so it gets fixed request counts instead;
 *      - RSS/PSS of the mode's sandbox host processes after the load;
 *      - cold deploy → first 200: a new app (new deployment, snapshot route) deployed with the
 *        CLI, polled until its first 200 (CLI start → first 200), several times per app.
 * Load generator: autocannon (programmatic, in this process, HTTP/1.1 keep-alive, pipelining 1),
 * with a client hook that makes it measure `Connection: close` servers correctly (closeAwareClient).
 * Latency percentiles are exact, from every 2xx response time (autocannon's histogram has 1 ms
 * resolution). Ratios are zerocell / gunicorn. Kills every child it started, also on error/SIGINT.
 * Run full measurements under `flock /tmp/zerocell-bench.lock node bench/python.mjs` on a shared
 * machine, so two benchmarks never overlap. Default ~20 minutes, ~5 with --quick.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync, writeFileSync, existsSync, cpSync, openSync, closeSync, chmodSync } from "node:fs";
import { loadavg } from "node:os";
import { join, basename } from "node:path";
import http from "node:http";
import { measureBreakdown, renderBreakdown, summarize } from "./breakdown.mjs";
import { BUILD, CLI, ROOT, aptInstall, children, cleaningUp, cpuBusy, cpuSnapshot, deployAndPoll, deploySummary, descendants, distOlderThanSrc, foreignCpuShare, freePort, get, gitInfo, hostProcesses, installCleanup, latencyStat, load as autocannonLoad, logger, machineEnv, noteBusyBefore, parseRunArgs, makeBuildCopy, median, memRow, newestMtime, nodeHostRows, noteServerLogFailures, parseServerTiming, pct, poolInfo, psRows, renderTable as renderTableCols, round, finishRun, machineFooter, runMain, runPhases, sleep, startChild, startZerocell, stopChild, stopZerocell, tempDir, tempDirs, waitFor200 as waitFor200Until, waitIdle as waitIdleFor, zerocellCli as cliOf } from "./lib.mjs";

const CONCURRENCIES = [1, 8, 64];
const MODES = ["snapshot", "daemon", "fresh"];
/** Sandbox-ready targets (ms) of bench/run.mjs, from request arrival to guest code starting. */
const READY_TARGET = { p50: 0.5, p99: 2 };
const GUNICORN_WORKERS = 2;

/** The apps under test. `expect`: what a 200's body must contain. */
const APPS = [
  { name: "hello", dir: join(ROOT, "examples", "wsgi-hello"), expect: "Hello from WSGI" },
  { name: "slow", dir: join(ROOT, "bench", "apps", "wsgi-slow-import"), expect: "slow-import ok checksum=" },
];
const hostsOf = (app) => ({ snapshot: `${app}-snap.localhost`, daemon: `${app}-daemon.localhost`, fresh: `${app}-fresh.localhost` });

// ---------------------------------------------------------------- options

function parseArgs(argv) {
  const o = parseRunArgs(argv, "usage: node bench/python.mjs [--duration SECONDS (default 8; 2 with --quick)] [--quick] [--wait-idle SECONDS] [--no-native] [--no-install] [--no-build-copy]\n  --no-native: skip gunicorn; --no-install: do not apt-get install gunicorn when it is missing\n  --no-build-copy: run zerocell from dist/ itself instead of a private copy made at start\n  --wait-idle N: before each target, wait up to N s for other processes to use <10% CPU (shared machines)\n", {
    defaults: { buildCopy: true },
    flags: { "--no-build-copy": (x) => (x.buildCopy = false) },
  });
  o.duration ??= o.quick ? 2 : 8;
  o.warmup = o.quick ? 2 : 3; // seconds of c=8 load before each target's measured runs
  o.timingSamples = o.quick ? 200 : 500; // sequential requests per app and mode (server-timing)
  o.freshTimingSamples = o.quick ? 2 : 3; // the same for fresh mode (a cold sandbox each)
  // fresh mode: fixed request counts per concurrency (each request boots Pyodide and imports the app)
  o.freshRequests = o.quick ? { 1: 2, 8: 8 } : { 1: 4, 8: 8, 64: 64 };
  o.deployReps = o.quick ? 2 : 3; // zerocell cold deploy → first 200, per app
  o.coldReps = o.quick ? 3 : 5; // gunicorn cold start → first 200, per app
  o.importReps = o.quick ? 3 : 5; // native import-time measurements, per app
  return o;
}
const OPTS = parseArgs(process.argv.slice(2));

// ---------------------------------------------------------------- children and cleanup

const log = logger("bench-py");
installCleanup(log);

// ---------------------------------------------------------------- small helpers

const load1 = () => round(loadavg()[0], 2);
/** A text table, the first two columns (app, measure / target, app) left-aligned. */
const renderTable = (rows) => renderTableCols(rows, 2);

/** GET polling for a 200 (lib.mjs's waitFor200), each request's timeout up to the time left (5–60 s). */
const waitFor200 = (url, opts, deadlineMs, child) => waitFor200Until(url, opts, deadlineMs, child, { attemptTimeoutMs: (left) => Math.max(5000, Math.min(60_000, left)) });

/** The import time the slow app reports in its answers, ms (null for other apps). */
const importMsOf = (body) => {
  const m = /import_ms=([\d.]+)/.exec(body ?? "");
  return m ? Number(m[1]) : null;
};
const checksumOf = (body) => /checksum=(\S+)/.exec(body ?? "")?.[1] ?? null;

/** With --wait-idle N: waits up to N s for other processes to use <10% of the CPUs. */
const waitIdle = (name, result) => waitIdleFor(name, result, OPTS.waitIdle, log);

// ---------------------------------------------------------------- load generation

/**
 * autocannon 8 mishandles servers that close the connection after every response (gunicorn's
 * sync workers answer `Connection: close`): it writes the next request on the closing socket,
 * reconnects on 'end' *and* on the write's ECONNRESET, and keeps the lost requests in its
 * pipeline queue, so later responses are matched with old start times (measured: p50 441 ms
 * for a server answering in 0.6 ms, ECONNRESET errors, more sockets than connections). This
 * hook (autocannon's `setupClient`) makes a client stop writing once a response said
 * `Connection: close`, and on reconnect drop the old socket and the unanswered requests, so
 * every latency is write → response on one connection (connect time included). It changes
 * nothing for keep-alive servers (zerocell).
 */
function closeAwareClient(client) {
  const connect = client._connect;
  client._connect = function () {
    if (this.conn !== undefined) {
      this.conn.removeAllListeners();
      this.conn.on("error", () => {});
      this.conn.destroy();
    }
    this.pipelinedRequests.clear();
    this.zcClosing = false;
    return connect.call(this);
  };
  const doRequest = client._doRequest;
  client._doRequest = function (...args) {
    if (this.zcClosing) return undefined; // the server closes this socket: wait for 'end'
    return doRequest.apply(this, args);
  };
  client.on("headers", (h) => {
    const hs = h.headers ?? [];
    for (let i = 0; i + 1 < hs.length; i += 2) {
      if (String(hs[i]).toLowerCase() === "connection" && /close/i.test(String(hs[i + 1]))) client.zcClosing = true;
    }
  });
}

/**
 * One autocannon run (lib.mjs's load, with closeAwareClient), for `duration` seconds or for
 * `amount` requests in all. Returns req/s (2xx only), exact p50/p99 of 2xx latency (ms), error
 * counts, other CPU and the load average.
 */
async function load({ url, connections, duration, amount, host, timeoutS = 10 }) {
  const { connections: c, ...rest } = await autocannonLoad({ url, connections, duration, amount, host, timeoutS, setupClient: closeAwareClient });
  return { connections: c, ...(amount !== undefined ? { amount } : {}), ...rest, load1: load1() };
}

/**
 * `n` sequential GETs (keep-alive when the server allows it): client round trip, server-timing
 * (zerocell), the instance header, and the import time the slow app reports.
 */
async function sequentialSamples(url, host, n, expect) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const ready = [], acq = [], run = [], total = [], client = [], imports = [];
  const instances = {};
  let bad = 0;
  let noReady = 0;
  let lastBad = null;
  try {
    for (let i = 0; i < n && !cleaningUp; i++) {
      const t0 = performance.now();
      let r;
      try {
        r = await get(url, { host, agent, timeoutMs: 120_000 });
      } catch (e) {
        bad++;
        lastBad = e.message;
        continue;
      }
      const dt = performance.now() - t0;
      if (r.status !== 200 || !r.body.includes(expect)) {
        bad++;
        lastBad = `status ${r.status}: ${r.body.slice(0, 160)}`;
        continue;
      }
      client.push(dt);
      const im = importMsOf(r.body);
      if (im !== null) imports.push(im);
      const inst = r.headers["x-zerocell-instance"];
      if (inst !== undefined) instances[inst] = (instances[inst] ?? 0) + 1;
      const st = parseServerTiming(r.headers["server-timing"]);
      if (st.run === undefined) continue;
      if (st.ready === undefined) noReady++;
      else ready.push(st.ready);
      acq.push(st.acquire ?? 0);
      run.push(st.run);
      total.push(st.total);
    }
  } finally {
    agent.destroy();
  }
  const stat = (xs) => latencyStat(xs);
  return {
    samples: client.length,
    failed: bad,
    ...(lastBad ? { lastFailure: lastBad } : {}),
    withoutReady: noReady,
    readyMs: stat(ready),
    acquireMs: stat(acq),
    runMs: stat(run),
    totalMs: stat(total),
    clientRoundTripMs: stat(client),
    instances,
    // distinct import times seen (one per instance that answered)
    importMsSeen: [...new Set(imports)],
  };
}

// ---------------------------------------------------------------- the apps

/** The app's files (no manifest, no __pycache__) copied into a new temp dir. */
function copyAppFiles(app, prefix) {
  const dir = tempDir(prefix);
  chmodSync(dir, 0o755);
  cpSync(app.dir, dir, { recursive: true, filter: (src) => !src.includes("__pycache__") && basename(src) !== "zerocell.toml" });
  return dir;
}

/** The app's manifest without its routes (runtime, [python], limits...). */
function manifestHead(app) {
  const toml = readFileSync(join(app.dir, "zerocell.toml"), "utf8");
  const i = toml.search(/^\[\[routes\]\]/m);
  return (i === -1 ? toml : toml.slice(0, i)).trimEnd() + "\n";
}

/** "module:callable" from the app's manifest ([python] app). */
function wsgiSpec(app) {
  return /^\s*app\s*=\s*"([^"]+)"/m.exec(readFileSync(join(app.dir, "zerocell.toml"), "utf8"))?.[1] ?? "app:application";
}

/** A bundle of the app with the given routes ([host, mode]). */
function bundleWithRoutes(app, routes) {
  const dir = copyAppFiles(app, `zc-bench-py-${app.name}-`);
  writeFileSync(join(dir, "zerocell.toml"), `# bench/python.mjs: ${app.name}\n` + manifestHead(app) +
    routes.map(([host, mode]) => `\n[[routes]]\nhost = "${host}"\npath = "/"\nmode = "${mode}"\n`).join(""));
  return dir;
}

// ---------------------------------------------------------------- native: gunicorn

const GUNICORN = "/usr/bin/gunicorn";

/** apt-get install gunicorn, once, only when it is missing. */
function ensureGunicorn(notes) {
  if (existsSync(GUNICORN)) return true;
  if (!OPTS.install) {
    notes.push("native: gunicorn not installed and --no-install given");
    return false;
  }
  if (process.getuid?.() !== 0) {
    notes.push("native: gunicorn not installed and not root (apt-get install -y gunicorn)");
    return false;
  }
  log("native: installing gunicorn with apt-get (one-time)");
  const err = aptInstall(["gunicorn"], { blockServices: false });
  if (err !== null) notes.push(`native: apt-get install gunicorn failed: ${err}`);
  return existsSync(GUNICORN);
}

/** The interpreter gunicorn runs on (its script's shebang). */
function gunicornPython() {
  const first = readFileSync(GUNICORN, "utf8").split("\n")[0];
  const m = /^#!\s*(\S+)(?:\s+(\S+))?/.exec(first);
  if (!m) return "/usr/bin/python3";
  return m[1].endsWith("/env") && m[2] ? m[2] : m[1];
}

/** An environment for native Python: no pyenv/venv leaks, no bytecode writes (equal cold starts). */
function pythonEnv() {
  const env = { ...process.env, PYTHONDONTWRITEBYTECODE: "1" };
  for (const k of Object.keys(env)) if (k === "PYTHONPATH" || k === "PYTHONHOME" || k === "VIRTUAL_ENV" || k.startsWith("PYENV")) delete env[k];
  env.PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  return env;
}

/** Import the app's module `reps` times, each in a fresh interpreter; ms per import. */
function nativeImportTimes(python, app, dir, reps) {
  const mod = wsgiSpec(app).split(":")[0];
  const code = `import json, sys, time\nsys.path.insert(0, ${JSON.stringify(dir)})\nt = time.perf_counter()\nimport ${mod} as m\nprint(json.dumps({"ms": (time.perf_counter() - t) * 1000, "self": getattr(m, "IMPORT_MS", None), "checksum": getattr(m, "CHECKSUM", None)}))`;
  const out = [];
  for (let i = 0; i < reps && !cleaningUp; i++) {
    const r = spawnSync(python, ["-c", code], { env: pythonEnv(), cwd: dir, encoding: "utf8", timeout: 60_000 });
    if (r.status !== 0) throw new Error(`${python} import ${mod} failed: ${(r.stderr ?? "").slice(-400)}`);
    out.push(JSON.parse(r.stdout.trim().split("\n").pop()));
  }
  return out;
}

function startGunicorn(app, dir, port, logPath) {
  const fd = openSync(logPath, "a");
  const child = startChild(`gunicorn ${app.name}`, GUNICORN, [
    "--workers", String(GUNICORN_WORKERS), "--worker-class", "sync", "--bind", `127.0.0.1:${port}`,
    "--chdir", dir, "--error-logfile", "-", "--log-level", "warning", wsgiSpec(app),
  ], { stdio: ["ignore", fd, fd], env: pythonEnv(), cwd: dir });
  closeSync(fd);
  return child;
}

/** Spawn → first 200 (polled every 5 ms, a new connection each), `reps` times; the last one is kept running. */
async function gunicornColdStarts(app, dir, logPath, reps) {
  const each = [];
  let running;
  for (let i = 1; i <= reps && !cleaningUp; i++) {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}/`;
    const t0 = performance.now();
    const child = startGunicorn(app, dir, port, logPath);
    let first = null;
    let polls = 0;
    const end = Date.now() + 60_000;
    while (Date.now() < end) {
      if (child.exited) throw new Error(`gunicorn exited (${child.code}): ${readFileSync(logPath, "utf8").slice(-600)}`);
      polls++;
      try {
        const r = await get(url, { timeoutMs: 30_000 });
        if (r.status === 200) {
          first = { ms: performance.now() - t0, body: r.body };
          break;
        }
      } catch {
        // not listening yet
      }
      await sleep(5);
    }
    if (first === null) throw new Error(`gunicorn ${app.name}: no 200 within 60 s: ${readFileSync(logPath, "utf8").slice(-600)}`);
    if (!first.body.includes(app.expect)) throw new Error(`gunicorn ${app.name}: unexpected body ${JSON.stringify(first.body.slice(0, 160))}`);
    each.push({ totalMs: round(first.ms, 1), polls, importMs: importMsOf(first.body) });
    log(`gunicorn ${app.name} cold start #${i}: first 200 after ${round(first.ms, 0)} ms${importMsOf(first.body) !== null ? ` (the answering worker's import: ${importMsOf(first.body)} ms)` : ""}`);
    if (i < reps) await stopChild(child);
    else running = { child, url, body: first.body };
  }
  return { reps, medianMs: round(median(each.map((e) => e.totalMs)), 1), each, running };
}

async function runNative(result) {
  if (!OPTS.native) {
    result.notes.push("native: skipped (--no-native)");
    return;
  }
  if (!ensureGunicorn(result.notes)) {
    result.notes.push("native: SKIPPED (no gunicorn)");
    return;
  }
  const python = gunicornPython();
  result.env.native = {
    server: `gunicorn --workers ${GUNICORN_WORKERS} --worker-class sync (no --preload), loopback TCP`,
    gunicorn: (() => {
      try {
        return execFileSync(GUNICORN, ["--version"], { encoding: "utf8", env: pythonEnv() }).trim();
      } catch (e) {
        return `? (${e.message.slice(0, 80)})`;
      }
    })(),
    python,
    pythonVersion: (() => {
      try {
        return execFileSync(python, ["-c", "import sys; print(sys.version.split()[0])"], { encoding: "utf8", env: pythonEnv() }).trim();
      } catch {
        return null;
      }
    })(),
  };
  log(`native: ${result.env.native.gunicorn} on ${python} ${result.env.native.pythonVersion}`);
  for (const app of APPS) {
    if (cleaningUp) return;
    await waitIdle(`gunicorn ${app.name}`, result);
    const dir = copyAppFiles(app, `zc-bench-py-native-${app.name}-`);
    const logPath = join(dir, "..", `${basename(dir)}-gunicorn.log`);
    tempDirs.add(logPath);
    const imports = nativeImportTimes(python, app, dir, OPTS.importReps);
    const importMs = imports.map((x) => round(x.ms, 1));
    result.imports.push({ app: app.name, where: "native", python: `${python} ${result.env.native.pythonVersion}`, medianMs: round(median(importMs), 1), eachMs: importMs, checksum: imports[0]?.checksum ?? null });
    log(`native ${app.name}: import of the app module in a fresh ${basename(python)}: median ${round(median(importMs), 0)} ms [${importMs.join(", ")}]`);
    const snap = cpuSnapshot();
    const cold = await gunicornColdStarts(app, dir, logPath, OPTS.coldReps);
    const { running, ...coldRest } = cold;
    result.cold.push({ app: app.name, target: "gunicorn", what: "spawn → first 200", ...coldRest, otherCpuPct: pct(foreignCpuShare(snap, cpuSnapshot())) });
    if (running === undefined) return;
    try {
      log(`gunicorn ${app.name}: warmup ${OPTS.warmup}s`);
      await load({ url: running.url, connections: 8, duration: OPTS.warmup });
      log(`gunicorn ${app.name}: ${OPTS.timingSamples} sequential requests`);
      const snap2 = cpuSnapshot();
      const seq = await sequentialSamples(running.url, undefined, OPTS.timingSamples, app.expect);
      result.sequential.push({ target: "gunicorn", app: app.name, mode: null, ...seq, otherCpuPct: pct(foreignCpuShare(snap2, cpuSnapshot())) });
      for (const c of CONCURRENCIES) {
        if (cleaningUp) return;
        log(`gunicorn ${app.name}: c=${c} for ${OPTS.duration}s`);
        result.runs.push({ target: "gunicorn", app: app.name, mode: null, ...(await load({ url: running.url, connections: c, duration: OPTS.duration })) });
      }
      const rows = psRows();
      const master = rows.filter((r) => r.pid === running.child.proc.pid);
      const workers = descendants(running.child.proc.pid, rows);
      result.memory.push(memRow(`gunicorn ${app.name} master (after load)`, master, { target: "gunicorn", app: app.name, role: "master" }));
      result.memory.push(memRow(`gunicorn ${app.name} workers (after load)`, workers, { target: "gunicorn", app: app.name, role: "workers" }));
      result.memory.push(memRow(`gunicorn ${app.name} master + workers`, [...master, ...workers], { target: "gunicorn", app: app.name, role: "all" }));
    } finally {
      await stopChild(running.child);
      try {
        const errs = readFileSync(logPath, "utf8").split("\n").filter((l) => /error|exception|traceback|timeout/i.test(l));
        if (errs.length) result.notes.push(`gunicorn ${app.name} log: ${errs.length} error lines, e.g. ${errs.slice(0, 3).join(" | ").slice(0, 400)}`);
      } catch {
        // no log
      }
    }
  }
}

// ---------------------------------------------------------------- zerocell

// The build under test is lib.mjs's BUILD: by default a private copy made at start
// (makeBuildCopy), so a rebuild of dist/ during the run cannot mix two builds.

/** The CLI of the build under test, on the server in `dataDir`. */
const zerocellCli = (dataDir, args) => cliOf(dataDir, args, BUILD);

/** Waits (up to `ms`) until no host of the app's `mode` pool is starting; returns the pool info. */
async function poolSettled(urls, token, appName, mode, ms = 60_000) {
  let info;
  for (const end = Date.now() + ms; ;) {
    info = await poolInfo(urls, token);
    const mine = (info?.deployments ?? []).filter((d) => d.app === appName && d.mode === mode);
    if (Date.now() > end || (mine.length > 0 && mine.every((d) => d.starting === 0 && d.instances > 0))) break;
    await sleep(100);
  }
  return info;
}

/** Cold deploy → first 200, `reps` times, each a new app (new deployment, cold first host). */
async function deployToFirst200(dataDir, httpUrl, reps, app) {
  const out = [];
  const tag = Math.random().toString(36).slice(2, 7);
  for (let i = 1; i <= reps && !cleaningUp; i++) {
    const name = `bench-py-${app.name}-${tag}-${i}`;
    const host = `${name}.localhost`;
    const bundle = bundleWithRoutes(app, [[host, "snapshot"]]);
    const d = await deployAndPoll(dataDir, httpUrl, {
      app: name,
      host,
      bundle,
      deadlineMs: 120_000,
      requestTimeoutMs: 60_000,
      check: (r) => {
        if (!r.body.includes(app.expect)) throw new Error(`deploy test (${app.name}): unexpected body ${JSON.stringify(r.body.slice(0, 160))}`);
      },
    });
    const cliMs = d.cliMs;
    const first = d.response === null ? null : { ms: d.ms, timing: parseServerTiming(d.response.headers["server-timing"]), body: d.response.body };
    if (first === null) throw new Error(`deploy test (${app.name}): no 200 from ${host} within 120 s`);
    out.push({ app: name, totalMs: round(first.ms, 1), cliExitMs: round(cliMs, 1), polls: d.polls, firstRequest: first.timing, importMs: importMsOf(first.body) });
    log(`deploy→200 ${app.name} #${i}: ${round(first.ms, 0)} ms (CLI exited after ${round(cliMs, 0)} ms; first 200's server-timing ready=${first.timing.ready} acquire=${first.timing.acquire} run=${first.timing.run}${importMsOf(first.body) !== null ? `; Pyodide import ${importMsOf(first.body)} ms` : ""})`);
  }
  return {
    reps,
    ...deploySummary(out),
  };
}

async function runZerocell(result) {
  if (!existsSync(CLI)) throw new Error(`${CLI} missing: build first (npx tsc -p tsconfig.json)`);
  if (OPTS.buildCopy) await makeBuildCopy(result, "zc-bench-py-build-", log);
  else result.env.build = { copiedTo: null, distNewestFile: new Date(newestMtime(join(ROOT, "dist"), ".js")).toISOString() };
  // Idle TTL well past the run, so every mode's hosts are still there for the memory readings.
  const { child: server, dataDir, logPath, listening } = startZerocell({ dataPrefix: "zc-bench-py-data-", args: ["--idle-ttl-ms", "3600000"] });
  try {
    const urls = await listening();
    const token = readFileSync(join(dataDir, "admin-token"), "utf8").trim();
    const httpUrl = urls.http + "/";
    result.env.zerocell = { coldFirstRequest: {} };

    for (const app of APPS) {
      if (cleaningUp) return;
      const hosts = hostsOf(app.name);
      const appName = `py-${app.name}`;
      // Deploy one app at a time: its three routes' first hosts start cold, in parallel.
      await waitIdle(`zerocell ${app.name}`, result);
      const bundle = bundleWithRoutes(app, MODES.map((m) => [hosts[m], m]));
      const dep = await zerocellCli(dataDir, ["deploy", bundle, "--app", appName]);
      if (dep.code !== 0) throw new Error(`deploy of ${app.name} failed (${dep.code}):\n${dep.out}`);
      log(`zerocell: deployed ${appName} (${MODES.map((m) => hosts[m]).join(", ")}); waiting for the first 200 of each route`);
      for (const mode of MODES) {
        const first = await waitFor200(httpUrl, { host: hosts[mode] }, 180_000, server);
        if (!first.body.includes(app.expect)) result.notes.push(`zerocell ${app.name}/${mode}: unexpected body ${JSON.stringify(first.body.slice(0, 160))}`);
        result.env.zerocell.coldFirstRequest[`${app.name}/${mode}`] = { ...parseServerTiming(first.headers["server-timing"]), instance: first.headers["x-zerocell-instance"], importMs: importMsOf(first.body) };
        if (app.name === "slow") result.env.zerocell.slowChecksum = checksumOf(first.body);
        if (app.name === "hello") result.env.zerocell.helloPython = /<th>python<\/th><td>([^<]+)</.exec(first.body)?.[1] ?? null;
        log(`zerocell: first 200 from ${hosts[mode]}`);
      }
      for (const mode of MODES) await poolSettled(urls, token, appName, mode);

      const memOf = async (mode) => {
        const info = await poolSettled(urls, token, appName, mode, 30_000);
        const pids = new Set((info?.deployments ?? []).filter((d) => d.app === appName && d.mode === mode).flatMap((d) => d.pids ?? []));
        if (pids.size === 0) result.notes.push(`memory: no host pids for ${appName}/${mode} in /v1/pool`);
        result.memory.push(memRow(`zerocell hosts ${app.name}/${mode} (after load)`, nodeHostRows([...pids]), { target: "zerocell", app: app.name, mode, role: "hosts" }));
      };

      for (const mode of ["snapshot", "daemon"]) {
        if (cleaningUp) return;
        const label = `zerocell ${app.name} ${mode}`;
        await waitIdle(label, result);
        log(`${label}: warmup ${OPTS.warmup}s`);
        await load({ url: httpUrl, host: hosts[mode], connections: 8, duration: OPTS.warmup });
        await poolSettled(urls, token, appName, mode, 30_000); // a second host may still be starting
        log(`${label}: ${OPTS.timingSamples} sequential requests for server-timing`);
        const snap = cpuSnapshot();
        const st = await sequentialSamples(httpUrl, hosts[mode], OPTS.timingSamples, app.expect);
        result.sequential.push({ target: "zerocell", app: app.name, mode, ...st, otherCpuPct: pct(foreignCpuShare(snap, cpuSnapshot())) });
        for (const c of CONCURRENCIES) {
          if (cleaningUp) return;
          log(`${label}: c=${c} for ${OPTS.duration}s`);
          result.runs.push({ target: "zerocell", app: app.name, mode, ...(await load({ url: httpUrl, host: hosts[mode], connections: c, duration: OPTS.duration })) });
        }
        if (app.name === "hello" && mode === "snapshot") {
          log(`${label}: CPU per request by part, c=8`);
          result.breakdown = [await measureBreakdown({ child: server, urls, token, build: { label: "this" } }, "python", { host: hosts[mode], app: appName, duration: OPTS.duration, samples: OPTS.quick ? 100 : 300 })];
        }
        await memOf(mode);
      }

      // fresh: a new sandbox per request (cold Pyodide boot + import): fixed request counts
      {
        const label = `zerocell ${app.name} fresh`;
        await waitIdle(label, result);
        await poolSettled(urls, token, appName, "fresh");
        log(`${label}: ${OPTS.freshTimingSamples} sequential requests for server-timing`);
        const snap = cpuSnapshot();
        const st = await sequentialSamples(httpUrl, hosts.fresh, OPTS.freshTimingSamples, app.expect);
        result.sequential.push({ target: "zerocell", app: app.name, mode: "fresh", ...st, otherCpuPct: pct(foreignCpuShare(snap, cpuSnapshot())) });
        for (const c of CONCURRENCIES) {
          const n = OPTS.freshRequests[c];
          if (n === undefined || cleaningUp) continue;
          await poolSettled(urls, token, appName, "fresh");
          log(`${label}: c=${c}, ${n} requests`);
          result.runs.push({ target: "zerocell", app: app.name, mode: "fresh", ...(await load({ url: httpUrl, host: hosts.fresh, connections: c, amount: n, timeoutS: 900 })) });
        }
        await memOf("fresh");
        result.memory[result.memory.length - 1].label = `zerocell hosts ${app.name}/fresh (after load, unused)`;
      }
    }
    result.pool = await poolInfo(urls, token);
    const rows = psRows();
    // spare hosts (preloaded, no deployment): { ready: [{ runtime, pid }], taken } from /v1/pool
    const spares = Array.isArray(result.pool?.spares) ? result.pool.spares : result.pool?.spares?.ready;
    if (Array.isArray(spares)) {
      const sparePids = new Set(spares.map((x) => x.pid));
      result.memory.push(memRow(`zerocell spare hosts (${spares.map((x) => x.runtime).join(", ") || "none"})`, rows.filter((r) => sparePids.has(r.pid)), { target: "zerocell", role: "spares" }));
    }
    result.memory.push(memRow("zerocell gateway (after load)", rows.filter((r) => r.pid === server.proc.pid), { target: "zerocell", role: "gateway" }));
    result.memory.push(memRow("zerocell hosts, all (after load)", hostProcesses(server.proc.pid, rows), { target: "zerocell", role: "all hosts" }));

    // cold deploy → first 200, per app
    for (const app of APPS) {
      if (cleaningUp) return;
      await waitIdle(`zerocell deploy ${app.name}`, result);
      const snap = cpuSnapshot();
      log(`zerocell: deploy → first 200, ${OPTS.deployReps} new ${app.name} apps`);
      const d = await deployToFirst200(dataDir, httpUrl, OPTS.deployReps, app);
      result.cold.push({ app: app.name, target: "zerocell", what: "CLI deploy → first 200 (new app, snapshot route)", ...d, otherCpuPct: pct(foreignCpuShare(snap, cpuSnapshot())) });
    }
    result.memory.push(memRow("zerocell gateway (end)", psRows().filter((r) => r.pid === server.proc.pid), { target: "zerocell", role: "gateway end" }));
  } finally {
    await stopZerocell(server, result);
    // server-side failures: 5xx answers per host and status, and the reasons the gateway logged
    noteServerLogFailures(logPath, result);
  }
}

// ---------------------------------------------------------------- report

function report(result) {
  const lines = [];
  const fmtOther = (x) => (x === null || x === undefined ? "?" : `${x}%`);
  const nat = result.env.native;
  lines.push(`Zerocell Python bench  ${result.startedAt}  duration ${OPTS.duration}s/run${OPTS.quick ? " (quick)" : ""}  ${result.env.cpus} CPUs  node ${result.env.node}  commit ${result.env.gitCommit ?? "?"}${result.env.gitDirty ? " (src dirty)" : ""}`);
  lines.push(`native: ${nat ? `${nat.gunicorn}, ${nat.server}, ${nat.python} ${nat.pythonVersion}` : "none"}; zerocell: Pyodide (CPython ${result.env.zerocell?.helloPython ?? "?"}) in sandbox hosts, max 2 instances per deployment and mode${result.pool?.spares ? `, spare hosts on (${result.pool.spares.taken ?? "?"} taken)` : ""}; build: ${result.env.build?.copiedTo ? `private copy of dist/ (newest file ${result.env.build.distNewestFile})` : "dist/ in place"}`);
  lines.push(`fresh mode: fixed request counts ${Object.entries(OPTS.freshRequests).map(([c, n]) => `c=${c}: ${n}`).join(", ")} (a cold sandbox per request)`);
  lines.push("");

  const run = (target, app, mode, c) => result.runs.find((r) => r.target === target && r.app === app && (r.mode ?? null) === mode && r.connections === c);
  const seq = (target, app, mode) => result.sequential.find((s) => s.target === target && s.app === app && (s.mode ?? null) === mode);
  const cold = (target, app) => result.cold.find((d) => d.target === target && d.app === app);
  const mem = (pred) => result.memory.find(pred);
  const flag = (r) => (r && (r.non2xx || r.errors || r.timeouts) ? "!" : "");
  const v = (x) => (x === null || x === undefined || Number.isNaN(x) ? "-" : String(x));
  const ratio = (z, g) => (Number.isFinite(z) && Number.isFinite(g) && g > 0 ? `${(z / g).toFixed(z / g < 0.1 ? 4 : z / g < 10 ? 2 : 1)}×` : "-");

  const header = ["app", "measure", "gunicorn", ...MODES.flatMap((m) => [`zc ${m}`, "zc/gu"])];
  const rows = [header];
  result.ratios = {};
  for (const app of APPS.map((a) => a.name)) {
    const ratios = (result.ratios[app] = {});
    const add = (measure, gVal, zVals, key) => {
      rows.push([app, measure, v(gVal), ...MODES.flatMap((m) => [v(zVals[m]), ratio(typeof zVals[m] === "string" ? parseFloat(zVals[m]) : zVals[m], typeof gVal === "string" ? parseFloat(gVal) : gVal)])]);
      if (key) ratios[key] = Object.fromEntries(MODES.map((m) => {
        const z = typeof zVals[m] === "string" ? parseFloat(zVals[m]) : zVals[m];
        const g = typeof gVal === "string" ? parseFloat(gVal) : gVal;
        return [m, Number.isFinite(z) && Number.isFinite(g) && g > 0 ? round(z / g, 4) : null];
      }));
    };
    for (const c of CONCURRENCIES) {
      const g = run("gunicorn", app, null, c);
      add(`req/s c=${c}`, g ? `${g.rps}${flag(g)}` : null, Object.fromEntries(MODES.map((m) => {
        const r = run("zerocell", app, m, c);
        return [m, r ? `${r.rps}${flag(r)}` : null];
      })), `rps_c${c}`);
    }
    for (const [p, key] of [["p50", "p50Ms"], ["p99", "p99Ms"]]) {
      for (const c of CONCURRENCIES) {
        add(`${p} ms c=${c}`, run("gunicorn", app, null, c)?.[key], Object.fromEntries(MODES.map((m) => [m, run("zerocell", app, m, c)?.[key]])), `${p}_c${c}`);
      }
    }
    add("sequential round trip p50 ms", seq("gunicorn", app, null)?.clientRoundTripMs.p50, Object.fromEntries(MODES.map((m) => [m, seq("zerocell", app, m)?.clientRoundTripMs.p50])), "seq_p50");
    add("sequential round trip p99 ms", seq("gunicorn", app, null)?.clientRoundTripMs.p99, Object.fromEntries(MODES.map((m) => [m, seq("zerocell", app, m)?.clientRoundTripMs.p99])), "seq_p99");
    rows.push([app, "sandbox ready p50 / p99 ms", "-", ...MODES.flatMap((m) => {
      const s = seq("zerocell", app, m);
      return [s ? `${v(s.readyMs.p50)} / ${v(s.readyMs.p99)}` : "-", ""];
    })]);
    add("cold → first 200 ms, median", cold("gunicorn", app)?.medianMs, { snapshot: cold("zerocell", app)?.medianMs }, "cold_first200");
    add("RSS MB after load, all procs", mem((m) => m.target === "gunicorn" && m.app === app && m.role === "all")?.rssMbTotal,
      Object.fromEntries(MODES.map((m) => [m, mem((x) => x.target === "zerocell" && x.app === app && x.mode === m)?.rssMbTotal])), "rss_total");
    add("PSS MB after load, all procs", mem((m) => m.target === "gunicorn" && m.app === app && m.role === "all")?.pssMbTotal,
      Object.fromEntries(MODES.map((m) => [m, mem((x) => x.target === "zerocell" && x.app === app && x.mode === m)?.pssMbTotal])), "pss_total");
  }
  lines.push("zerocell (zc) vs gunicorn; zc/gu = zerocell ÷ gunicorn (req/s: >1 is zerocell faster; ms and MB: >1 is zerocell slower/bigger); ! = the run had non-2xx answers or errors (see below)");
  lines.push(renderTable(rows));

  lines.push("");
  lines.push("every load run (autocannon; exact percentiles of 2xx latencies)");
  lines.push(renderTable([
    ["target", "app", "mode", "conns", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "non2xx", "errors", "other CPU", "load1"],
    ...result.runs.map((r) => [r.target, r.app, r.mode ?? "-", r.connections, r.amount !== undefined ? `${r.requests}/${r.amount}` : r.requests, r.rps, r.p50Ms, r.p99Ms, r.maxMs, r.non2xx ? `${r.non2xx} (${Object.entries(r.non2xxByStatus).map(([k, n]) => `${k}:${n}`).join(",")})` : 0, r.errors + r.timeouts, fmtOther(r.otherCpuPct), r.load1]),
  ]));

  if (result.sequential.length) {
    const pp = (m) => `${m.p50} / ${m.p99}`;
    lines.push("");
    lines.push("sequential requests (zerocell: keep-alive, server-timing; gunicorn sync workers close each connection), ms as p50 / p99");
    lines.push(renderTable([
      ["target", "app", "mode", "n", "ready", "acquire", "run (in host)", "total (gateway)", "client round trip", "instances", "other CPU"],
      ...result.sequential.map((s) => [s.target, s.app, s.mode ?? "-", `${s.samples}${s.failed ? ` (${s.failed} failed)` : ""}${s.withoutReady ? ` (${s.withoutReady} no ready)` : ""}`,
        s.target === "zerocell" ? pp(s.readyMs) : "-", s.target === "zerocell" ? pp(s.acquireMs) : "-", s.target === "zerocell" ? pp(s.runMs) : "-", s.target === "zerocell" ? pp(s.totalMs) : "-",
        pp(s.clientRoundTripMs), Object.entries(s.instances).map(([k, n]) => `${k}:${n}`).join(", ") || "-", fmtOther(s.otherCpuPct)]),
    ]));
    result.readyTargets = [];
    const mark = (x, lim) => (x !== null && Number.isFinite(x) ? `${x} ${x <= lim ? "ok" : "MISS"}` : "n/a");
    lines.push(`sandbox-ready targets of bench/run.mjs (ready p50 ≤ ${READY_TARGET.p50} ms, p99 ≤ ${READY_TARGET.p99} ms):`);
    for (const s of result.sequential.filter((x) => x.target === "zerocell")) {
      const ok = s.readyMs.p50 !== null && s.readyMs.p99 !== null && s.readyMs.p50 <= READY_TARGET.p50 && s.readyMs.p99 <= READY_TARGET.p99;
      result.readyTargets.push({ app: s.app, mode: s.mode, p50: s.readyMs.p50, p99: s.readyMs.p99, met: ok });
      lines.push(`  ${s.app}/${s.mode}: p50 ${mark(s.readyMs.p50, READY_TARGET.p50)}, p99 ${mark(s.readyMs.p99, READY_TARGET.p99)} → ${ok ? "MET" : "NOT MET"}`);
    }
  }

  lines.push("");
  for (const im of result.imports) lines.push(`import of the ${im.app} app module, ${im.where} (${im.python}, fresh process each): median ${im.medianMs} ms [${im.eachMs.join(", ")}]${im.checksum ? ` checksum ${im.checksum}` : ""}`);
  const pyImports = [];
  const cf = result.env.zerocell?.coldFirstRequest ?? {};
  for (const [k, t] of Object.entries(cf)) if (k.startsWith("slow/") && t.importMs !== null) pyImports.push(t.importMs);
  for (const s of result.sequential) if (s.target === "zerocell" && s.app === "slow") pyImports.push(...s.importMsSeen);
  for (const d of result.cold) if (d.target === "zerocell" && d.app === "slow") pyImports.push(...d.each.map((e) => e.importMs).filter((x) => x !== null));
  const gunImports = result.cold.filter((d) => d.target === "gunicorn" && d.app === "slow").flatMap((d) => d.each.map((e) => e.importMs)).filter((x) => x !== null);
  if (gunImports.length) lines.push(`slow app import as timed by the module itself in gunicorn workers at cold start (2 workers importing at once): [${gunImports.join(", ")}] ms`);
  if (pyImports.length) {
    const uniq = [...new Set(pyImports)];
    result.env.zerocell.slowImportMsUnderPyodide = uniq;
    lines.push(`slow app import as timed by the module itself under Pyodide (each distinct cold instance seen): median ${round(median(uniq), 1)} ms [${uniq.join(", ")}]`);
  }
  const nativeSum = result.imports.find((i) => i.app === "slow")?.checksum;
  if (nativeSum && result.env.zerocell?.slowChecksum && nativeSum !== result.env.zerocell.slowChecksum) result.notes.push(`slow app checksum differs: native ${nativeSum}, Pyodide ${result.env.zerocell.slowChecksum}`);
  if (Object.keys(cf).length) lines.push(`first request per route right after the app's deploy (ms): ${Object.entries(cf).map(([k, t]) => `${k} ready=${t.ready ?? "?"} (${t.instance ?? "?"})`).join("; ")}`);
  for (const d of result.cold) {
    lines.push(`${d.target} ${d.app}: ${d.what}, ${d.reps} times: median ${d.medianMs} ms [${d.each.map((e) => e.totalMs).join(", ")}]; other CPU ${fmtOther(d.otherCpuPct)}`);
    if (d.target === "zerocell") lines.push(`  of which: CLI process exit median ${d.medianCliExitMs} ms; first request's acquire (host start) median ${d.medianFirstAcquireMs} ms, run median ${d.medianFirstRunMs} ms`);
  }
  const starts = (result.pool?.deployments ?? []).filter((d) => d.app?.startsWith("py-")).map((d) => `${d.app}/${d.mode} ${d.instanceStartMs?.count ?? 0}× p50 ${d.instanceStartMs?.p50 ?? "?"} (${d.restoredFromSnapshot ?? 0} from snapshot)`);
  if (starts.length) lines.push(`zerocell instance start (spawn → ready) per pool, ms: ${starts.join("; ")}`);

  if (result.memory.length) {
    lines.push("");
    lines.push(renderTable([
      ["memory", "", "procs", "RSS MB each", "RSS MB mean", "RSS MB total", "PSS MB total"],
      ...result.memory.map((m) => [m.label, "", m.count, m.rssMbEach.length > 6 ? `${m.rssMbEach.slice(0, 6).join(" ")} …` : m.rssMbEach.join(" "), m.rssMbMean, m.rssMbTotal, m.pssMbTotal]),
    ]));
  }
  lines.push("");
  if (result.breakdown?.length) {
    lines.push("");
    lines.push("CPU per request by part, WSGI hello snapshot mode, c=8 (µs; bench/breakdown.mjs: host = guest + glue + reset + ipc+loop)");
    lines.push(renderBreakdown(summarize(result.breakdown)));
  }
  lines.push(...machineFooter(result, "load generator: autocannon in the bench process, sharing the same 2 CPUs as the server under test; gunicorn's sync workers close every connection, so its runs reconnect per request (closeAwareClient hook)"));
  return lines.join("\n");
}

// ---------------------------------------------------------------- main

async function main() {
  const t0 = Date.now();
  const result = {
    startedAt: new Date().toISOString(),
    options: { duration: OPTS.duration, quick: OPTS.quick, warmup: OPTS.warmup, timingSamples: OPTS.timingSamples, freshTimingSamples: OPTS.freshTimingSamples, freshRequests: OPTS.freshRequests, deployReps: OPTS.deployReps, coldReps: OPTS.coldReps, importReps: OPTS.importReps, concurrencies: CONCURRENCIES, readyTarget: READY_TARGET, waitIdle: OPTS.waitIdle, gunicornWorkers: GUNICORN_WORKERS },
    env: machineEnv(),
    apps: APPS.map((a) => ({ name: a.name, dir: a.dir.slice(ROOT.length + 1) })),
    imports: [],
    runs: [],
    sequential: [],
    cold: [],
    memory: [],
    notes: [],
  };
  Object.assign(result.env, gitInfo());
  if (existsSync(CLI)) {
    if (distOlderThanSrc()) result.notes.push("dist/ is older than some file in src/: the measured server may not match the source (run npx tsc -p tsconfig.json)");
  }
  await sleep(300);
  result.env.cpuBusyBefore = await cpuBusy(1000);
  noteBusyBefore(result, log);
  const phases = [
    ["native", runNative],
    ["zerocell", runZerocell],
  ];
  const failed = await runPhases(phases.map(([name, fn]) => [name, () => fn(result)]), result, log, {
    afterFailure: async () => {
      for (const c of [...children]) await stopChild(c);
    },
  });
  if (cleaningUp) return 130; // interrupted: no partial results file
  finishRun(result, t0, report, "python-");
  return failed ? 1 : 0;
}

runMain(main, log);
