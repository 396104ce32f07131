#!/usr/bin/env node
/**
 * Zerocell benchmark: one run, one table, one JSON file.
 *
 *   node bench/run.mjs [--duration 8] [--quick] [--wait-idle SECONDS] [--no-native] [--no-install]
 *
 * Measures, one target at a time on loopback:
 *   1. baseline: a bare Hono handler (bench/hono-server.mjs) in a child process;
 *   2. native: Debian nginx + php-fpm (pm=static, 2 children, unix socket) on the same hello
 *      index.php and on the generated "big" page (below); falls back to `php -S` (2 workers),
 *      else skips;
 *   3. zerocell: the built server (dist/, run `npx tsc -p tsconfig.json` first) with
 *      - one bundle of the hello page with three routes, snap.localhost (mode snapshot),
 *        daemon.localhost (daemon) and fresh.localhost (fresh): c=1,8,64 for snapshot and daemon,
 *        a fixed number of requests at c=1 and c=8 for fresh (a new sandbox per request), HTTPS
 *        c=8 on snapshot;
 *      - the "big" page: index.php requires lib.php, ~300 KB of generated PHP functions, then
 *        calls them 10k times; snapshot (big-snap.localhost) and daemon (big-daemon.localhost)
 *        at c=1,8,64, compared with the same files on nginx + php-fpm;
 *      - server-timing (ready = request arrival → guest code starting, acquire, run, total) over
 *        sequential keep-alive requests per page and mode, checked against the sandbox-ready
 *        targets (ready p50 ≤ 0.5 ms, p99 ≤ 2 ms);
 *      - the CPU of one request by part (gateway, host: guest, glue, reset, ipc + event loop) in
 *        snapshot mode at c=8, from the processes' CPU time and the pool's counters
 *        (bench/breakdown.mjs; run it alone for A/B against another build);
 *   4. cold deploy → first 200 for new apps (CLI start to first 200 from the new host), for the
 *      hello page and for the big page;
 *   5. memory: RSS (and PSS) of the sandbox host processes per page and mode right after their
 *      load, the gateway, the native and baseline processes.
 * Load generator: autocannon (programmatic, in this process, HTTP/1.1 keep-alive, pipelining 1).
 * Latency percentiles are computed exactly from every 2xx response time (autocannon's own
 * histogram has 1 ms resolution, too coarse for sub-ms handlers).
 * Default ~5 minutes (8 s per measured run), ~1.5 minutes with --quick (2 s per run).
 * Writes bench/results/<timestamp>.json. Kills every child it started, also on error/SIGINT.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync, existsSync, cpSync, openSync, closeSync, readdirSync, chmodSync } from "node:fs";
import { join, dirname } from "node:path";
import { CLI, ROOT, aptInstall, children, cleaningUp, cpuBusy, cpuSnapshot, deployAndPoll, deploySummary, distOlderThanSrc, foreignCpuShare, freePorts, get, gitInfo, hostProcesses, installCleanup, latencyStat, load, logger, machineEnv, noteBusyBefore, parseRunArgs, median, memRow, nodeHostRows, noteServerLogFailures, parseServerTiming, pct, poolInfo, psRows, descendants, renderTable, round, finishRun, machineFooter, runMain, runPhases, serverTimingSamples, sleep, startChild, startHono, startNginx, startZerocell, stopChild, stopZerocell, tempDir, waitFor200, waitIdle as waitIdleFor, writeNginxConf, zerocellCli } from "./lib.mjs";

import { measureBreakdown, renderBreakdown, summarize } from "./breakdown.mjs";

const EXAMPLE = join(ROOT, "examples", "php-hello");
const CONCURRENCIES = [1, 8, 64];
/** Sandbox-ready targets (ms), from request arrival to guest code starting in its sandbox. */
const READY_TARGET = { p50: 0.5, p99: 2 };
/** Size of the generated lib.php of the big page, and the loop count of its index.php. */
const BIG_LIB_BYTES = 300 * 1024;
const BIG_LOOP = 10_000;

// ---------------------------------------------------------------- options

function parseArgs(argv) {
  const o = parseRunArgs(argv, "usage: node bench/run.mjs [--duration SECONDS (default 8; 2 with --quick)] [--quick] [--wait-idle SECONDS] [--no-native] [--no-install]\n  --wait-idle N: before each target, wait up to N s for other processes to use <10% CPU (shared machines)\n");
  o.duration ??= o.quick ? 2 : 8;
  o.warmup = o.quick ? 1 : 2; // seconds of load before each target's measured runs
  o.timingSamples = o.quick ? 200 : 500; // sequential requests per mode for server-timing (hello)
  o.bigTimingSamples = o.quick ? 100 : 200; // the same for the big page
  o.freshRequests = o.quick ? { 1: 3, 8: 8 } : { 1: 8, 8: 16 }; // fresh mode: fixed counts per concurrency
  o.deployReps = o.quick ? 3 : 5;
  o.bigDeployReps = o.quick ? 2 : 3;
  return o;
}
const OPTS = parseArgs(process.argv.slice(2));

// ---------------------------------------------------------------- children and cleanup

const log = logger("bench");
installCleanup(log);

/**
 * With --wait-idle N: waits up to N s for other processes to use <10% of the CPUs (checked over
 * 2 s windows); notes it when they still do.
 */
const waitIdle = (name, result) => waitIdleFor(name, result, OPTS.waitIdle, log);

// ---------------------------------------------------------------- load generation

// load(): lib.mjs (one autocannon run: req/s of 2xx, exact p50/p99, errors, other CPU)

/** Warm-up, then c=1,8,64 for OPTS.duration each. `tags` ({ page, mode }) go into every row. */
async function measureTarget(name, proto, base, tags = {}) {
  const label = [name, tags.page, tags.mode].filter(Boolean).join(" ");
  log(`${label}: warmup ${OPTS.warmup}s`);
  await load({ ...base, connections: 8, duration: OPTS.warmup });
  const runs = [];
  for (const c of CONCURRENCIES) {
    log(`${label}: ${proto} c=${c} for ${OPTS.duration}s`);
    runs.push({ target: name, page: "hello", mode: null, proto, ...tags, ...(await load({ ...base, connections: c, duration: OPTS.duration })) });
  }
  return runs;
}

// ---------------------------------------------------------------- apps under test

/** zerocell.toml of a PHP app with document_root "public" and the given routes ([host, mode]). */
function appToml(comment, routes) {
  return `# ${comment}\nruntime = "php"\n\n[php]\nversion = "8.3"\ndocument_root = "public"\n` +
    routes.map(([host, mode]) => `\n[[routes]]\nhost = "${host}"\npath = "/"\nmode = "${mode}"\n`).join("");
}

/** The hello page as one bundle with one route per mode. */
function makeModesApp() {
  const dir = tempDir("zc-bench-modes-");
  cpSync(join(EXAMPLE, "public"), join(dir, "public"), { recursive: true });
  writeFileSync(join(dir, "zerocell.toml"), appToml("bench: examples/php-hello in every mode", [["snap.localhost", "snapshot"], ["daemon.localhost", "daemon"], ["fresh.localhost", "fresh"]]));
  return dir;
}

/**
 * The big page: public/index.php requires ../lib.php (BIG_LIB_BYTES of generated functions) and
 * calls them BIG_LOOP times. Written once per run to a temp dir (readable by php-fpm too), with a
 * zerocell.toml routing big-snap.localhost (snapshot) and big-daemon.localhost (daemon). The
 * expected output is computed here, so both servers' answers can be checked.
 */
function makeBigApp() {
  const dir = tempDir("zc-bench-big-");
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, "public"));
  const params = [];
  let lib = "<?php\n// Generated by bench/run.mjs: the library every request of the big page requires.\n";
  for (let n = 0; lib.length < BIG_LIB_BYTES; n++) {
    const p = { a: ((n * 7919) % 997) + 3, b: (n * 104729) % 65521, m: (n % 89) + 7, k: n % 13, w: (n % 5) + 1 };
    params.push(p);
    lib += `function zc_f${n}(int $x): int {\n  $y = ($x * ${p.a} + ${p.b}) % 65521;\n  if ($y % ${p.m} === 0) {\n    return intdiv($y, ${p.m}) + ${p.k};\n  }\n  $s = 'k${n}-' . $y;\n  return strlen($s) + ($y % 97) * ${p.w};\n}\n`;
  }
  const nf = params.length;
  writeFileSync(join(dir, "lib.php"), lib);
  writeFileSync(join(dir, "public", "index.php"), `<?php
require __DIR__ . '/../lib.php';
header('Content-Type: text/plain; charset=utf-8');
$acc = 0;
for ($i = 0; $i < ${BIG_LOOP}; $i++) {
  $f = 'zc_f' . ($i % ${nf});
  $acc = ($acc * 31 + $f($i)) % 1000003;
}
echo "big page: ${nf} functions, acc=", $acc, ", PHP ", PHP_VERSION, "\\n";
`);
  writeFileSync(join(dir, "zerocell.toml"), appToml("bench: the big page", [["big-snap.localhost", "snapshot"], ["big-daemon.localhost", "daemon"]]));
  let acc = 0;
  for (let i = 0; i < BIG_LOOP; i++) {
    const n = i % nf;
    const p = params[n];
    const y = (i * p.a + p.b) % 65521;
    const v = y % p.m === 0 ? Math.floor(y / p.m) + p.k : `k${n}-${y}`.length + (y % 97) * p.w;
    acc = (acc * 31 + v) % 1000003;
  }
  return { dir, docroot: join(dir, "public"), functions: nf, libBytes: Buffer.byteLength(lib), expect: `big page: ${nf} functions, acc=${acc},` };
}

/** Set in main(): the big app, shared by the native and zerocell phases. */
let BIG;

// ---------------------------------------------------------------- targets

/**
 * The bare engine's ceiling for the big page: bench/engine-loop.mjs runs the same bundle with the
 * same php-wasm build in one Node process (no gateway, no IPC, one core), with a reset after each
 * request (snapshot mode's work) and without (daemon mode's). Issue 12's CPU-bound target is
 * zerocell c=1 ≥ 90% of this.
 */
async function runEngine(result) {
  if (!BIG) return;
  result.engine = {};
  const n = OPTS.quick ? 200 : 600;
  for (const [mode, extra] of [["snapshot", []], ["daemon", ["--daemon"]]]) {
    log(`bare engine big ${mode}: ${n} requests in one process (bench/engine-loop.mjs)`);
    const snap = cpuSnapshot();
    const out = execFileSync(process.execPath, [join(ROOT, "bench", "engine-loop.mjs"), "php", "--dir", BIG.dir, "--n", String(n), "--json", ...extra], { encoding: "utf8", timeout: 600_000 });
    const r = JSON.parse(out.trim().split("\n").pop());
    if (r.status !== 200) result.notes.push(`bare engine big ${mode}: status ${r.status}`);
    result.engine[mode] = { ...r, otherCpuPct: pct(foreignCpuShare(snap, cpuSnapshot())) };
  }
}

async function runHono(result) {
  const { child, url } = await startHono();
  try {
    result.runs.push(...(await measureTarget("hono", "http", { url })));
    result.memory.push(memRow("hono baseline process", psRows().filter((r) => r.pid === child.proc.pid)));
  } finally {
    await stopChild(child);
  }
}

function findBinary(candidates) {
  for (const c of candidates) {
    if (c.includes("*")) {
      const dir = dirname(c);
      const prefix = c.slice(dir.length + 1).replace("*", "");
      try {
        const hit = readdirSync(dir).filter((f) => f.startsWith(prefix)).sort().pop();
        if (hit) return join(dir, hit);
      } catch {
        // no dir
      }
    } else if (existsSync(c)) return c;
  }
  return undefined;
}

const nativeBins = () => ({
  nginx: findBinary(["/usr/sbin/nginx"]),
  fpm: findBinary(["/usr/sbin/php-fpm*"]),
  php: findBinary(["/usr/bin/php"]),
});

/** apt-get install, once, only when the binaries are missing. Keeps Debian from starting the services. */
function ensureNativePackages(notes) {
  let b = nativeBins();
  if (b.nginx && b.fpm) return b;
  if (!OPTS.install) {
    notes.push("native: nginx/php-fpm not installed and --no-install given");
    return b;
  }
  if (process.getuid?.() !== 0) {
    notes.push("native: nginx/php-fpm not installed and not root (apt-get install -y nginx-light php-fpm php-cli)");
    return b;
  }
  log("native: installing nginx-light php-fpm php-cli with apt-get (one-time)");
  const err = aptInstall(["nginx-light", "php-fpm", "php-cli"]);
  if (err !== null) notes.push(`native: apt-get install failed: ${err}`);
  b = nativeBins();
  return b;
}

/** One nginx server block: every path runs DOCROOT/index.php through php-fpm. */
function nginxServer(port, docroot, sock) {
  return `  server {
    listen 127.0.0.1:${port};
    root ${docroot};
    location / {
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME ${join(docroot, "index.php")};
      fastcgi_param SCRIPT_NAME /index.php;
      fastcgi_pass unix:${sock};
    }
  }
`;
}

/** nginx + php-fpm serving the hello page on `port` and the big page (if any) on `bigPort`. */
async function startNginxFpm(bins, dir, port, bigPort) {
  const sock = join(dir, "php-fpm.sock");
  const docroot = join(EXAMPLE, "public");
  writeFileSync(join(dir, "php-fpm.conf"), `[global]
pid = ${join(dir, "php-fpm.pid")}
error_log = ${join(dir, "php-fpm.log")}
daemonize = no

[bench]
listen = ${sock}
listen.mode = 0666
pm = static
pm.max_children = 2
`);
  writeNginxConf(dir, `${nginxServer(port, docroot, sock)}${BIG ? nginxServer(bigPort, BIG.docroot, sock) : ""}`);
  const fpmLog = openSync(join(dir, "php-fpm.out"), "a");
  const fpm = startChild("php-fpm", bins.fpm, ["-F", "-R", "-y", join(dir, "php-fpm.conf")], { stdio: ["ignore", fpmLog, fpmLog] });
  closeSync(fpmLog);
  const end = Date.now() + 10_000;
  while (!existsSync(sock)) {
    if (fpm.exited) throw new Error(`php-fpm exited: ${readFileSync(join(dir, "php-fpm.out"), "utf8").slice(-500)}`);
    if (Date.now() > end) throw new Error("php-fpm: no socket within 10 s");
    await sleep(50);
  }
  const nginx = startNginx(bins.nginx, dir);
  const url = `http://127.0.0.1:${port}/`;
  const bigUrl = BIG ? `http://127.0.0.1:${bigPort}/` : undefined;
  try {
    await waitFor200(url, {}, 10_000, nginx);
    if (bigUrl) await waitFor200(bigUrl, {}, 10_000, nginx);
  } catch (e) {
    let errLog = "";
    try {
      errLog = readFileSync(join(dir, "nginx-error.log"), "utf8").slice(-500) + readFileSync(join(dir, "nginx.out"), "utf8").slice(-500);
    } catch {
      // none
    }
    throw new Error(`${e.message}\n${errLog}`);
  }
  return { url, bigUrl, procs: [fpm, nginx], desc: "nginx + php-fpm (pm=static, 2 children, unix socket, nginx 2 workers)" };
}

async function startPhpBuiltin(bins, port, bigPort) {
  const start = async (name, p, docroot) => {
    const child = startChild(name, bins.php, ["-S", `127.0.0.1:${p}`, "-t", docroot], {
      env: { ...process.env, PHP_CLI_SERVER_WORKERS: "2" },
    });
    const url = `http://127.0.0.1:${p}/`;
    await waitFor200(url, {}, 10_000, child);
    return { url, child };
  };
  const hello = await start("php -S", port, join(EXAMPLE, "public"));
  const big = BIG ? await start("php -S big", bigPort, BIG.docroot) : undefined;
  return { url: hello.url, bigUrl: big?.url, procs: [hello.child, ...(big ? [big.child] : [])], desc: "php -S (PHP built-in server, PHP_CLI_SERVER_WORKERS=2)" };
}

function phpVersion(bin) {
  try {
    return execFileSync(bin, ["-r", "echo PHP_VERSION, ' opcache=', (function_exists('opcache_get_status') ? 'loaded' : 'no');"], { encoding: "utf8", timeout: 5000 }).trim();
  } catch {
    return null;
  }
}

async function runNative(result) {
  if (!OPTS.native) {
    result.notes.push("native: skipped (--no-native)");
    return;
  }
  const bins = ensureNativePackages(result.notes);
  const dir = tempDir("zc-bench-native-");
  chmodSync(dir, 0o755);
  let server;
  if (bins.nginx && bins.fpm) {
    try {
      server = await startNginxFpm(bins, dir, ...(await freePorts(2)));
    } catch (e) {
      result.notes.push(`native: nginx + php-fpm failed to start: ${e.message.split("\n").join(" | ").slice(0, 400)}`);
      for (const c of [...children]) if (c.name === "php-fpm" || c.name === "nginx") await stopChild(c);
    }
  } else {
    result.notes.push("native: nginx or php-fpm binary not found");
  }
  if (server === undefined && bins.php) {
    try {
      server = await startPhpBuiltin(bins, ...(await freePorts(2)));
      result.notes.push("native: fell back to php -S");
    } catch (e) {
      result.notes.push(`native: php -S failed: ${e.message}`);
      for (const c of [...children]) if (c.name.startsWith("php -S")) await stopChild(c);
    }
  }
  if (server === undefined) {
    result.notes.push("native: SKIPPED (no nginx+php-fpm and no php-cli)");
    return;
  }
  try {
    const sample = await get(server.url);
    result.env.native = { server: server.desc, php: phpVersion(bins.fpm ?? bins.php) ?? phpVersion(bins.php), sampleBody: sample.body.trim() };
    if (bins.fpm) {
      try {
        result.env.native.opcache = /Zend OPcache/.test(execFileSync(bins.fpm, ["-m"], { encoding: "utf8" }));
      } catch {
        // ignore
      }
    }
    result.runs.push(...(await measureTarget("native", "http", { url: server.url }, { page: "hello" })));
    if (server.bigUrl) {
      const big = await get(server.bigUrl);
      result.env.native.bigSampleBody = big.body.trim();
      if (!big.body.startsWith(BIG.expect)) result.notes.push(`native: big page answered ${JSON.stringify(big.body.slice(0, 120))}, expected "${BIG.expect} ..."`);
      result.runs.push(...(await measureTarget("native", "http", { url: server.bigUrl }, { page: "big" })));
    }
    const rows = psRows();
    for (const p of server.procs) {
      const self = rows.filter((r) => r.pid === p.proc.pid);
      const kids = descendants(p.proc.pid, rows);
      result.memory.push(memRow(`${p.name} master`, self));
      if (kids.length) result.memory.push(memRow(`${p.name} workers`, kids));
    }
  } finally {
    const t = performance.now();
    for (const p of [...server.procs].reverse()) await stopChild(p);
    log(`native: stopped in ${Math.round(performance.now() - t)} ms`);
  }
}

// ---------------------------------------------------------------- zerocell

/** Server-timing over `n` sequential keep-alive requests, ms as p50 / p99 (lib.mjs's serverTimingSamples). */
async function serverTiming(url, host, n) {
  const s = await serverTimingSamples(url, host, n);
  return {
    samples: s.run.length,
    failed: s.failed,
    withoutReady: s.withoutReady,
    readyMs: latencyStat(s.ready),
    acquireMs: latencyStat(s.acquire),
    runMs: latencyStat(s.run),
    totalMs: latencyStat(s.total),
    totalMinusRunMs: latencyStat(s.total.map((t, i) => t - s.run[i])),
    clientRoundTripMs: latencyStat(s.client),
  };
}

/**
 * Cold deploy → first 200, `reps` times, each time a new app (a new deployment, so a cold first
 * host): `bundleFor(host)` makes a bundle directory that routes `host`. `expect`: the body's start.
 */
async function deployToFirst200(dataDir, httpUrl, reps, page, bundleFor, expect) {
  const out = [];
  const tag = Math.random().toString(36).slice(2, 7);
  for (let i = 1; i <= reps; i++) {
    const app = `bench-${page}-${tag}-${i}`;
    const host = `${app}.localhost`;
    const bundle = bundleFor(host);
    const d = await deployAndPoll(dataDir, httpUrl, {
      app,
      host,
      bundle,
      deadlineMs: 60_000,
      requestTimeoutMs: 30_000,
      check: (r) => {
        if (expect !== undefined && !r.body.startsWith(expect)) throw new Error(`deploy test (${page}): unexpected body ${JSON.stringify(r.body.slice(0, 120))}`);
      },
    });
    const { ms: firstMs, cliMs, polls } = d;
    const firstTiming = d.response === null ? null : parseServerTiming(d.response.headers["server-timing"]);
    if (firstMs === null) throw new Error(`deploy test (${page}): no 200 from ${host} within 60 s`);
    out.push({ app, totalMs: round(firstMs, 1), cliExitMs: round(cliMs, 1), polls, firstRequest: firstTiming });
    log(`deploy→200 ${page} #${i}: ${round(firstMs, 0)} ms (CLI exited after ${round(cliMs, 0)} ms; first 200's server-timing ready=${firstTiming?.ready} acquire=${firstTiming?.acquire} run=${firstTiming?.run})`);
  }
  return {
    page,
    reps,
    ...deploySummary(out),
  };
}

/** A copy of examples/php-hello routing `host` (mode snapshot). */
function helloBundleFor(host) {
  const toml = readFileSync(join(EXAMPLE, "zerocell.toml"), "utf8");
  const bundle = tempDir("zc-bench-bundle-");
  cpSync(EXAMPLE, bundle, { recursive: true });
  const newToml = toml.replace(/host\s*=\s*"hello\.localhost"/, `host = "${host}"`);
  if (newToml === toml) throw new Error("deploy test: could not rewrite the route host in examples/php-hello/zerocell.toml");
  writeFileSync(join(bundle, "zerocell.toml"), newToml);
  return bundle;
}

/** A copy of the big app routing `host` (mode snapshot). */
function bigBundleFor(host) {
  const bundle = tempDir("zc-bench-bundle-");
  cpSync(BIG.dir, bundle, { recursive: true });
  writeFileSync(join(bundle, "zerocell.toml"), appToml("bench: the big page (deploy test)", [[host, "snapshot"]]));
  return bundle;
}

const HELLO_HOSTS = { snapshot: "snap.localhost", daemon: "daemon.localhost", fresh: "fresh.localhost" };
const BIG_HOSTS = { snapshot: "big-snap.localhost", daemon: "big-daemon.localhost" };

async function runZerocell(result) {
  if (!existsSync(CLI)) throw new Error(`${CLI} missing: build first (npx tsc -p tsconfig.json)`);
  // Idle TTL well past the run, so every mode's hosts are still there for the memory readings.
  const { child: server, dataDir, logPath, listening } = startZerocell({ dataPrefix: "zc-bench-data-", args: ["--idle-ttl-ms", "1800000"] });
  try {
    const urls = await listening();
    const token = readFileSync(join(dataDir, "admin-token"), "utf8").trim();
    log("zerocell: server listening; deploying the hello (3 modes) and big bundles");
    const apps = [["modes", makeModesApp(), HELLO_HOSTS, "hello"], ...(BIG ? [["big", BIG.dir, BIG_HOSTS, "big"]] : [])];
    for (const [app, dir] of apps) {
      const dep = await zerocellCli(dataDir, ["deploy", dir, "--app", app]);
      if (dep.code !== 0) throw new Error(`deploy of the ${app} bundle failed (${dep.code}):\n${dep.out}`);
      log(`zerocell: deployed ${app}`);
    }
    const httpUrl = urls.http + "/";
    const httpsUrl = urls.https + "/";
    result.env.zerocell = { coldFirstRequest: {} };
    for (const [, , hosts, page] of apps) {
      for (const [mode, host] of Object.entries(hosts)) {
        const first = await waitFor200(httpUrl, { host }, 60_000, server);
        log(`zerocell: first 200 from ${host}`);
        result.env.zerocell.coldFirstRequest[`${page}/${mode}`] = parseServerTiming(first.headers["server-timing"]);
        if (page === "hello" && mode === "snapshot") result.env.zerocell.sampleBody = first.body.trim();
        if (page === "big") {
          result.env.zerocell.bigSampleBody = first.body.trim();
          if (!first.body.startsWith(BIG.expect)) result.notes.push(`zerocell: big page (${mode}) answered ${JSON.stringify(first.body.slice(0, 120))}, expected "${BIG.expect} ..."`);
        }
      }
    }

    /** RSS/PSS of one app's hosts of one mode (pids from the admin API's pool stats). */
    const memOf = async (label, app, mode) => {
      // Let hosts that are starting (fresh mode replaces its host after every request) come up.
      let info;
      for (const end = Date.now() + 15_000; ;) {
        info = await poolInfo(urls, token);
        const mine = (info?.deployments ?? []).filter((d) => d.app === app && d.mode === mode);
        if (Date.now() > end || (mine.length > 0 && mine.every((d) => d.starting === 0 && d.instances > 0))) break;
        await sleep(100);
      }
      const pids = new Set((info?.deployments ?? []).filter((d) => d.app === app && d.mode === mode).flatMap((d) => d.pids ?? []));
      if (pids.size === 0) result.notes.push(`memory: no host pids for ${app}/${mode} in /v1/pool`);
      // The node processes inside the pool's pids (those are the unshare/setpriv wrappers).
      result.memory.push(memRow(label, nodeHostRows([...pids])));
    };

    /** Warm-up, sequential server-timing samples, then c=1,8,64; memory of the mode's hosts. */
    const measureMode = async (app, page, mode, host, samples) => {
      const label = `zerocell ${page} ${mode}`;
      await waitIdle(label, result);
      log(`${label}: warmup ${OPTS.warmup}s`);
      await load({ url: httpUrl, host, connections: 8, duration: OPTS.warmup });
      log(`${label}: ${samples} sequential requests for server-timing`);
      const snap = cpuSnapshot();
      const st = await serverTiming(httpUrl, host, samples);
      result.serverTiming.push({ page, mode, ...st, otherCpuPct: pct(foreignCpuShare(snap, cpuSnapshot())) });
      for (const c of CONCURRENCIES) {
        log(`${label}: http c=${c} for ${OPTS.duration}s`);
        result.runs.push({ target: "zerocell", page, mode, proto: "http", ...(await load({ url: httpUrl, host, connections: c, duration: OPTS.duration })) });
      }
      await memOf(`zerocell hosts ${page}/${mode} (after load)`, app, mode);
    };

    // 1. hello page, per mode
    await measureMode("modes", "hello", "snapshot", HELLO_HOSTS.snapshot, OPTS.timingSamples);
    log("zerocell hello snapshot: CPU per request by part, c=8");
    result.breakdown = [await measureBreakdown({ child: server, urls, token, build: { label: "this" } }, "php", { host: HELLO_HOSTS.snapshot, app: "modes", duration: OPTS.duration, samples: OPTS.quick ? 100 : 300 })];
    log(`zerocell hello snapshot: https c=8 for ${OPTS.duration}s`);
    await load({ url: httpsUrl, host: HELLO_HOSTS.snapshot, servername: HELLO_HOSTS.snapshot, connections: 8, duration: 1 });
    result.runs.push({ target: "zerocell", page: "hello", mode: "snapshot", proto: "https", ...(await load({ url: httpsUrl, host: HELLO_HOSTS.snapshot, servername: HELLO_HOSTS.snapshot, connections: 8, duration: OPTS.duration })) });
    await measureMode("modes", "hello", "daemon", HELLO_HOSTS.daemon, OPTS.timingSamples);
    await waitIdle("zerocell hello fresh", result);
    for (const c of [1, 8]) {
      const n = OPTS.freshRequests[c];
      log(`zerocell hello fresh: http c=${c}, ${n} requests`);
      result.runs.push({ target: "zerocell", page: "hello", mode: "fresh", proto: "http", ...(await load({ url: httpUrl, host: HELLO_HOSTS.fresh, connections: c, amount: n, timeoutS: 60 })) });
    }
    await memOf("zerocell hosts hello/fresh (after load, unused)", "modes", "fresh");

    // 2. big page
    if (BIG) {
      await measureMode("big", "big", "snapshot", BIG_HOSTS.snapshot, OPTS.bigTimingSamples);
      await measureMode("big", "big", "daemon", BIG_HOSTS.daemon, OPTS.bigTimingSamples);
    }
    result.pool = await poolInfo(urls, token);
    const rows = psRows();
    result.memory.push(memRow("zerocell gateway (after load)", rows.filter((r) => r.pid === server.proc.pid)));
    result.memory.push(memRow("zerocell hosts, all (after load)", hostProcesses(server.proc.pid, rows)));

    // 3. cold deploy → first 200
    await waitIdle("zerocell deploy", result);
    const snap = cpuSnapshot();
    log(`zerocell: deploy → first 200, ${OPTS.deployReps} new hello apps`);
    const hello = await deployToFirst200(dataDir, httpUrl, OPTS.deployReps, "hello", helloBundleFor);
    hello.otherCpuPct = pct(foreignCpuShare(snap, cpuSnapshot()));
    result.deploys.push(hello);
    if (BIG) {
      const snap2 = cpuSnapshot();
      log(`zerocell: deploy → first 200, ${OPTS.bigDeployReps} new big apps`);
      const big = await deployToFirst200(dataDir, httpUrl, OPTS.bigDeployReps, "big", bigBundleFor, BIG.expect);
      big.otherCpuPct = pct(foreignCpuShare(snap2, cpuSnapshot()));
      result.deploys.push(big);
    }
    result.memory.push(memRow("zerocell hosts, all (after the deploy tests)", hostProcesses(server.proc.pid)));
    result.memory.push(memRow("zerocell gateway (end)", psRows().filter((r) => r.pid === server.proc.pid)));
  } finally {
    await stopZerocell(server, result);
    // server-side failures, for the report: 5xx answers per host and status, and the reasons
    // the gateway logged ("request failed" warnings, errors), counted by code and message
    noteServerLogFailures(logPath, result);
  }
}

// ---------------------------------------------------------------- report

function report(result) {
  const lines = [];
  const fmtOther = (x) => (x === null || x === undefined ? "?" : `${x}%`);
  lines.push(`Zerocell bench  ${result.startedAt}  duration ${OPTS.duration}s/run${OPTS.quick ? " (quick)" : ""}  ${result.env.cpus} CPUs  node ${result.env.node}  commit ${result.env.gitCommit ?? "?"}${result.env.gitDirty ? " (src dirty)" : ""}`);
  if (result.env.bigPage) lines.push(`big page: index.php requires lib.php (${Math.round(result.env.bigPage.libBytes / 1024)} KB, ${result.env.bigPage.functions} generated functions) and calls them ${result.env.bigPage.loop} times; fresh mode: ${OPTS.freshRequests[1]} requests at c=1, ${OPTS.freshRequests[8]} at c=8`);
  lines.push("");
  lines.push(renderTable([
    ["target", "page", "mode", "proto", "conns", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "non2xx", "errors", "other CPU"],
    ...result.runs.map((r) => [r.target, r.page, r.mode ?? "-", r.proto, r.connections, r.requests, r.rps, r.p50Ms, r.p99Ms, r.maxMs, r.non2xx ? `${r.non2xx} (${Object.entries(r.non2xxByStatus).map(([k, v]) => `${k}:${v}`).join(",")})` : 0, r.errors + r.timeouts, fmtOther(r.otherCpuPct)]),
  ]));
  lines.push("");
  const rps = (t, page, mode, c, proto = "http") => result.runs.find((r) => r.target === t && r.page === page && (r.mode ?? null) === mode && r.connections === c && r.proto === proto)?.rps;
  const ratio = (a, b) => (a && b ? (a / b).toFixed(3) : "-");
  const zc = (page, mode, c, proto) => rps("zerocell", page, mode, c, proto);
  lines.push(renderTable([
    ["hello page, ratio of req/s", ...CONCURRENCIES.map((c) => `c=${c}`)],
    ["zerocell snapshot / hono", ...CONCURRENCIES.map((c) => ratio(zc("hello", "snapshot", c), rps("hono", "hello", null, c)))],
    ["zerocell snapshot / native", ...CONCURRENCIES.map((c) => ratio(zc("hello", "snapshot", c), rps("native", "hello", null, c)))],
    ["zerocell daemon / native", ...CONCURRENCIES.map((c) => ratio(zc("hello", "daemon", c), rps("native", "hello", null, c)))],
    ["zerocell daemon / snapshot", ...CONCURRENCIES.map((c) => ratio(zc("hello", "daemon", c), zc("hello", "snapshot", c)))],
    ["zerocell fresh / snapshot", ...CONCURRENCIES.map((c) => ratio(zc("hello", "fresh", c), zc("hello", "snapshot", c)))],
    ["zerocell https / http (snapshot)", ...CONCURRENCIES.map((c) => (c === 8 ? ratio(zc("hello", "snapshot", 8, "https"), zc("hello", "snapshot", 8)) : "-"))],
  ]));
  lines.push("");
  lines.push(renderTable([
    ["big page, ratio of req/s", ...CONCURRENCIES.map((c) => `c=${c}`)],
    ["zerocell snapshot / native", ...CONCURRENCIES.map((c) => ratio(zc("big", "snapshot", c), rps("native", "big", null, c)))],
    ["zerocell daemon / native", ...CONCURRENCIES.map((c) => ratio(zc("big", "daemon", c), rps("native", "big", null, c)))],
    ["zerocell daemon / snapshot", ...CONCURRENCIES.map((c) => ratio(zc("big", "daemon", c), zc("big", "snapshot", c)))],
    ["native big / native hello", ...CONCURRENCIES.map((c) => ratio(rps("native", "big", null, c), rps("native", "hello", null, c)))],
    ["zerocell snapshot big / hello", ...CONCURRENCIES.map((c) => ratio(zc("big", "snapshot", c), zc("hello", "snapshot", c)))],
  ]));
  if (result.engine) {
    const e = result.engine;
    lines.push("");
    lines.push(`big page against the bare engine (bench/engine-loop.mjs: same bundle, same php-wasm, one Node process, one core): snapshot ${e.snapshot?.reqPerS ?? "?"} req/s (handle p50 ${e.snapshot?.handle?.p50Us ?? "?"} µs + reset p50 ${e.snapshot?.reset?.p50Us ?? "?"} µs), daemon ${e.daemon?.reqPerS ?? "?"} req/s`);
    lines.push(renderTable([
      ["big page / bare engine", "c=1", "c=8", "c=64"],
      ["zerocell snapshot / engine loop with reset", ...CONCURRENCIES.map((c) => ratio(zc("big", "snapshot", c), e.snapshot?.reqPerS))],
      ["zerocell daemon / engine loop without reset", ...CONCURRENCIES.map((c) => ratio(zc("big", "daemon", c), e.daemon?.reqPerS))],
      ["native / engine loop without reset", ...CONCURRENCIES.map((c) => ratio(rps("native", "big", null, c), e.daemon?.reqPerS))],
    ]));
    lines.push("  (target: c=1 ≥ 0.9, the served path costs ≤10% over the engine's own; at c=8 two cores serve, the loop uses one)");
  }
  const r4 = (x) => (x ? round(x, 4) : null);
  result.ratios = Object.fromEntries(CONCURRENCIES.map((c) => [`c${c}`, {
    zerocellOverHono: r4(zc("hello", "snapshot", c) / rps("hono", "hello", null, c)),
    zerocellOverNative: r4(zc("hello", "snapshot", c) / rps("native", "hello", null, c)),
    daemonOverNative: r4(zc("hello", "daemon", c) / rps("native", "hello", null, c)),
    bigSnapshotOverNative: r4(zc("big", "snapshot", c) / rps("native", "big", null, c)),
    bigDaemonOverNative: r4(zc("big", "daemon", c) / rps("native", "big", null, c)),
    bigSnapshotOverEngine: r4(zc("big", "snapshot", c) / result.engine?.snapshot?.reqPerS),
    bigDaemonOverEngine: r4(zc("big", "daemon", c) / result.engine?.daemon?.reqPerS),
  }]));
  if (result.serverTiming.length) {
    const pp = (m) => `${m.p50} / ${m.p99}`;
    lines.push("");
    lines.push(`server-timing, sequential keep-alive requests per page and mode, ms as p50 / p99 (ready = request arrival → guest code starting in its sandbox)`);
    lines.push(renderTable([
      ["page", "mode", "n", "ready", "acquire", "run (in host)", "total (gateway)", "total - run", "client round trip", "other CPU"],
      ...result.serverTiming.map((st) => [st.page, st.mode, `${st.samples}${st.failed ? ` (${st.failed} failed)` : ""}${st.withoutReady ? ` (${st.withoutReady} no ready)` : ""}`, pp(st.readyMs), pp(st.acquireMs), pp(st.runMs), pp(st.totalMs), pp(st.totalMinusRunMs), pp(st.clientRoundTripMs), fmtOther(st.otherCpuPct)]),
    ]));
    const mark = (v, lim) => (Number.isFinite(v) && v !== null ? `${v} ${v <= lim ? "ok" : "MISS"}` : "n/a");
    lines.push(`sandbox-ready targets: ready p50 ≤ ${READY_TARGET.p50} ms and p99 ≤ ${READY_TARGET.p99} ms`);
    result.readyTargets = [];
    for (const st of result.serverTiming) {
      const ok = st.readyMs.p50 !== null && st.readyMs.p99 !== null && st.readyMs.p50 <= READY_TARGET.p50 && st.readyMs.p99 <= READY_TARGET.p99;
      result.readyTargets.push({ page: st.page, mode: st.mode, p50: st.readyMs.p50, p99: st.readyMs.p99, met: ok });
      lines.push(`  ${st.page}/${st.mode}: p50 ${mark(st.readyMs.p50, READY_TARGET.p50)}, p99 ${mark(st.readyMs.p99, READY_TARGET.p99)} → ${ok ? "MET" : "NOT MET"}`);
    }
  }
  if (result.breakdown?.length) {
    lines.push("");
    lines.push("CPU per request by part, hello snapshot mode, c=8 (µs; bench/breakdown.mjs: host = guest + glue + reset + ipc+loop)");
    lines.push(renderBreakdown(summarize(result.breakdown)));
  }
  const cold = result.env.zerocell?.coldFirstRequest;
  if (result.deploys.length || cold) lines.push("");
  if (cold) {
    lines.push(`first request per route after the start deploys (ms): ${Object.entries(cold).map(([k, t]) => `${k} ready=${t.ready ?? "?"} acquire=${t.acquire ?? "?"} run=${t.run ?? "?"}`).join("; ")}`);
  }
  for (const d of result.deploys) {
    lines.push(`deploy → first 200, ${d.page} page (new app + host, ${d.reps} times): median ${d.medianMs} ms  [${d.each.map((e) => e.totalMs).join(", ")}]; other CPU ${fmtOther(d.otherCpuPct)}`);
    lines.push(`  of which: CLI process exit median ${d.medianCliExitMs} ms; first request's acquire (host start) median ${d.medianFirstAcquireMs} ms, run median ${d.medianFirstRunMs} ms`);
  }
  if (result.memory.length) {
    lines.push("");
    lines.push(renderTable([
      ["memory", "procs", "RSS MB each", "RSS MB mean", "RSS MB total", "PSS MB total"],
      ...result.memory.map((m) => [m.label, m.count, m.rssMbEach.length > 6 ? `${m.rssMbEach.slice(0, 6).join(" ")} …` : m.rssMbEach.join(" "), m.rssMbMean, m.rssMbTotal, m.pssMbTotal]),
    ]));
  }
  lines.push("");
  lines.push(`PHP: zerocell ${result.env.zerocell?.sampleBody?.match(/PHP ([\d.]+)/)?.[1] ?? "?"} (php-wasm); native ${result.env.native?.php ?? "n/a"}${result.env.native ? ` via ${result.env.native.server}` : ""}`);
  if (result.env.zerocell?.bigSampleBody || result.env.native?.bigSampleBody) lines.push(`big page answers: zerocell "${result.env.zerocell?.bigSampleBody ?? "-"}"; native "${result.env.native?.bigSampleBody ?? "-"}"`);
  lines.push(...machineFooter(result, "load generator: autocannon in the bench process, sharing the same CPUs as the server under test"));
  return lines.join("\n");
}

// ---------------------------------------------------------------- main

async function main() {
  const t0 = Date.now();
  const result = {
    startedAt: new Date().toISOString(),
    options: { duration: OPTS.duration, quick: OPTS.quick, warmup: OPTS.warmup, timingSamples: OPTS.timingSamples, bigTimingSamples: OPTS.bigTimingSamples, freshRequests: OPTS.freshRequests, deployReps: OPTS.deployReps, bigDeployReps: OPTS.bigDeployReps, concurrencies: CONCURRENCIES, readyTarget: READY_TARGET, waitIdle: OPTS.waitIdle },
    env: machineEnv(),
    runs: [],
    serverTiming: [],
    deploys: [],
    memory: [],
    notes: [],
  };
  Object.assign(result.env, gitInfo());
  if (existsSync(CLI)) {
    // warn if dist/ is older than src/ (the server under test is the built one)
    if (distOlderThanSrc()) result.notes.push("dist/ is older than some file in src/: the measured server may not match the source (run npx tsc -p tsconfig.json)");
  }
  await sleep(300); // let this process's own start-up settle
  result.env.cpuBusyBefore = await cpuBusy(1000);
  noteBusyBefore(result, log);

  try {
    BIG = makeBigApp();
    result.env.bigPage = { functions: BIG.functions, libBytes: BIG.libBytes, loop: BIG_LOOP };
    log(`big page: lib.php ${Math.round(BIG.libBytes / 1024)} KB, ${BIG.functions} functions, ${BIG_LOOP} calls per request`);
  } catch (e) {
    result.notes.push(`big page: could not be generated: ${e.message}`);
  }
  const phases = [
    ["hono", runHono],
    ["native", runNative],
    ["zerocell", runZerocell],
    ["engine", runEngine],
  ];
  const failed = await runPhases(phases.map(([name, fn]) => [name, () => fn(result)]), result, log, { before: (name) => waitIdle(name, result) });
  if (cleaningUp) return 130; // interrupted: no partial results file
  finishRun(result, t0, report);
  return failed ? 1 : 0;
}

runMain(main, log);
