#!/usr/bin/env node
/**
 * WordPress benchmark: the same WordPress 6.5 site on SQLite (bench/apps/wordpress/build.mjs)
 * under native nginx + php-fpm with opcache and under zerocell (snapshot mode, daemon mode), the
 * front page at c=1 and c=8, in one run:
 *
 *   node bench/wordpress.mjs [--duration 8] [--quick] [--wait-idle SECONDS] [--no-native] [--no-install]
 *
 *   1. native: Debian nginx + php-fpm (pm=static, 2 children, unix socket, opcache 128 MiB,
 *      validate_timestamps off) serving a copy of the site; php-sqlite3 installed with apt-get
 *      when PHP lacks pdo_sqlite;
 *   2. zerocell: the built server (dist/) with the site deployed once, two routes:
 *      wp-snap.localhost (snapshot mode: every request starts from the snapshot) and
 *      wp-daemon.localhost (daemon mode: state kept, no reset);
 *   3. for each: a warm-up, then sequential keep-alive requests reading Server-Timing (zerocell:
 *      run in the host vs total in the gateway), then c=1 and c=8 for --duration seconds;
 *   4. the report: req/s, ms per request (p50, p99), the ratio to native at each concurrency and
 *      the target (snapshot ≥ 50% of native at c=8), the precompile step's line from the server
 *      log (files compiled, opcache used, time), the snapshot's size, host memory.
 * Writes bench/results/wordpress-<timestamp>.json.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, closeSync, cpSync, existsSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { CLI, descendants, aptInstall, children, cleaningUp, cpuBusy, finishRun, freePorts, get, gitInfo, latencyStat, load, logger, machineEnv, machineFooter, memRow, noteBusyBefore, noteServerLogFailures, parseRunArgs, poolInfo, psRows, renderTable, round, runMain, runPhases, serverTimingSamples, sleep, startChild, startNginx, startZerocell, stopChild, stopZerocell, tempDir, waitFor200, waitIdle as waitIdleFor, writeNginxConf, zerocellCli } from "./lib.mjs";
import { buildWordPressSite } from "./apps/wordpress/build.mjs";

const log = logger("wordpress");
const OPTS = parseRunArgs(process.argv.slice(2), "usage: node bench/wordpress.mjs [--duration SECONDS (default 8; 3 with --quick)] [--quick] [--wait-idle SECONDS] [--no-native] [--no-install]\n");
OPTS.duration ??= OPTS.quick ? 3 : 8;
OPTS.warmupS = OPTS.quick ? 2 : 4;
OPTS.timingSamples = OPTS.quick ? 30 : 100;
const CONCURRENCIES = [1, 8];
const TARGET = { page: "front", mode: "snapshot", connections: 8, ratio: 0.5 };
const HOSTS = { snapshot: "wp-snap.localhost", daemon: "wp-daemon.localhost" };
const TITLE = "<title>My WordPress Website</title>";
const waitIdle = (name, result) => waitIdleFor(name, result, OPTS.waitIdle, log);

function checkFront(body, who) {
  if (!body.includes(TITLE)) throw new Error(`${who}: the front page has no "${TITLE}": ${body.slice(0, 300)}`);
}

/** Warm-up at c=8, then c=1 and c=8; rows tagged with target/mode. */
async function measure(result, target, mode, url, host) {
  const label = `${target}${mode ? ` ${mode}` : ""}`;
  await waitIdle(label, result);
  log(`${label}: warm-up ${OPTS.warmupS}s`);
  await load({ url, host, connections: 8, duration: OPTS.warmupS, timeoutS: 60 });
  for (const c of CONCURRENCIES) {
    log(`${label}: c=${c} for ${OPTS.duration}s`);
    result.runs.push({ target, page: "front", mode: mode ?? null, ...(await load({ url, host, connections: c, duration: OPTS.duration, timeoutS: 60, rpsDecimals: 1 })) });
  }
}

// ---------------------------------------------------------------- native

async function runNative(result, site) {
  if (!OPTS.native) return result.notes.push("native: skipped (--no-native)");
  const nginxBin = "/usr/sbin/nginx";
  const fpmBin = ["8.4", "8.3", "8.2"].map((v) => `/usr/sbin/php-fpm${v}`).find((p) => existsSync(p));
  const hasSqlite = () => fpmBin !== undefined && /pdo_sqlite/.test(execFileSync(fpmBin, ["-m"], { encoding: "utf8" }));
  if (!existsSync(nginxBin) || fpmBin === undefined || !hasSqlite()) {
    if (!OPTS.install) return result.notes.push("native: nginx/php-fpm/php-sqlite3 missing and --no-install given");
    log("native: installing nginx-light php-fpm php-sqlite3 with apt-get (one-time)");
    const err = aptInstall(["nginx-light", "php-fpm", "php-sqlite3"]);
    if (err !== null) return result.notes.push(`native: apt-get install failed: ${err}`);
  }
  const fpm = ["8.4", "8.3", "8.2"].map((v) => `/usr/sbin/php-fpm${v}`).find((p) => existsSync(p));
  const dir = tempDir("zc-bench-wp-native-");
  chmodSync(dir, 0o755);
  const docroot = join(dir, "site");
  cpSync(site, docroot, { recursive: true });
  const sock = join(dir, "php-fpm.sock");
  writeFileSync(join(dir, "php-fpm.conf"), `[global]
pid = ${join(dir, "php-fpm.pid")}
error_log = ${join(dir, "php-fpm.log")}
daemonize = no

[wordpress]
listen = ${sock}
listen.mode = 0666
pm = static
pm.max_children = 2
php_admin_value[opcache.enable] = 1
php_admin_value[opcache.memory_consumption] = 128
php_admin_value[opcache.interned_strings_buffer] = 16
php_admin_value[opcache.max_accelerated_files] = 10000
php_admin_value[opcache.validate_timestamps] = 0
php_admin_value[opcache.jit] = off
php_admin_value[memory_limit] = 256M
`);
  const [port] = await freePorts(1);
  writeNginxConf(dir, `  server {
    listen 127.0.0.1:${port};
    root ${docroot};
    index index.php;
    location / { try_files $uri $uri/ /index.php?$args; }
    location ~ \\.php$ {
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
      fastcgi_pass unix:${sock};
    }
  }
`);
  const out = openSync(join(dir, "php-fpm.out"), "a");
  const fpmChild = startChild("php-fpm", fpm, ["-F", "-R", "-y", join(dir, "php-fpm.conf")], { stdio: ["ignore", out, out] });
  closeSync(out);
  for (const end = Date.now() + 10_000; !existsSync(sock); await sleep(50)) {
    if (fpmChild.exited || Date.now() > end) throw new Error(`php-fpm did not start: ${readFileSync(join(dir, "php-fpm.out"), "utf8").slice(-500)}`);
  }
  const nginx = startNginx(nginxBin, dir);
  const url = `http://127.0.0.1:${port}/`;
  try {
    const first = await waitFor200(url, { host: "wp-native.localhost" }, 30_000, nginx);
    checkFront(first.body, "native");
    result.env.native = { server: "nginx + php-fpm (pm=static, 2 children, unix socket, nginx 2 workers), opcache 128 MiB, validate_timestamps=0", php: execFileSync(fpm, ["-v"], { encoding: "utf8" }).split("\n")[0] };
    const st = await sequential(url, "wp-native.localhost", OPTS.timingSamples, [fpmChild.proc.pid, nginx.proc.pid]);
    result.sequential.push({ target: "native", mode: null, ...st });
    await measure(result, "native", null, url, "wp-native.localhost");
    result.memory.push(memRow("native php-fpm (master + 2 workers)", psRows().filter((r) => r.pid === fpmChild.proc.pid || r.ppid === fpmChild.proc.pid)));
  } finally {
    await stopChild(nginx);
    await stopChild(fpmChild);
  }
}

/** CPU time (user + system) of `roots` and all their descendants, ms (/proc, 10 ms ticks). */
function treeCpuMs(roots) {
  const rows = psRows();
  const pids = new Set(roots);
  for (const r of roots) for (const d of descendants(r, rows)) pids.add(d.pid);
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(f[11]) + Number(f[12]);
    } catch {
      // gone
    }
  }
  return ticks * 10;
}

/**
 * Sequential keep-alive requests: client round trip (and Server-Timing run/total when present),
 * ms; with `roots`, also the server's CPU time per request (every process under `roots`): on a
 * shared machine the one figure that other processes do not inflate.
 */
async function sequential(url, host, n, roots = []) {
  const cpu0 = treeCpuMs(roots);
  const withCpu = (o) => (roots.length > 0 && o.samples > 0 ? { ...o, cpuMsPerRequest: round((treeCpuMs(roots) - cpu0) / o.samples, 1) } : o);
  const s = await serverTimingSamples(url, host, n);
  if (s.run.length > 0) return withCpu({ samples: s.run.length, failed: s.failed, clientMs: latencyStat(s.client), runMs: latencyStat(s.run), totalMs: latencyStat(s.total), readyMs: latencyStat(s.ready) });
  // No Server-Timing (native): time the round trips alone.
  const ms = [];
  for (let i = 0; i < n && !cleaningUp; i++) {
    const t0 = performance.now();
    const r = await get(url, { host });
    if (r.status === 200) ms.push(performance.now() - t0);
  }
  return withCpu({ samples: ms.length, clientMs: latencyStat(ms) });
}

// ---------------------------------------------------------------- zerocell

async function runZerocell(result, site) {
  if (!existsSync(CLI)) throw new Error(`${CLI} missing: build first (npm run build)`);
  // The site with a manifest of two routes, one per mode.
  const bundle = join(tempDir("zc-bench-wp-bundle-"), "site");
  cpSync(site, bundle, { recursive: true });
  const manifest = readFileSync(join(site, "zerocell.toml"), "utf8").replace(/\[\[routes\]\][\s\S]*$/, "");
  writeFileSync(join(bundle, "zerocell.toml"), `${manifest}${Object.entries(HOSTS).map(([mode, host]) => `[[routes]]\nhost = "${host}"\npath = "/"\nmode = "${mode}"\n`).join("\n")}`);
  const { child: server, dataDir, logPath, listening } = startZerocell({ dataPrefix: "zc-bench-wp-data-", args: ["--idle-ttl-ms", "1800000"] });
  try {
    const urls = await listening();
    const token = readFileSync(join(dataDir, "admin-token"), "utf8").trim();
    const t0 = performance.now();
    const dep = await zerocellCli(dataDir, ["deploy", bundle, "--app", "wordpress"]);
    if (dep.code !== 0) throw new Error(`deploy failed (${dep.code}):\n${dep.out}`);
    const url = urls.http + "/";
    result.env.zerocell = { firstRequest: {} };
    for (const [mode, host] of Object.entries(HOSTS)) {
      const first = await waitFor200(url, { host }, 180_000, server, { attemptTimeoutMs: () => 120_000 });
      checkFront(first.body, `zerocell ${mode}`);
      result.env.zerocell.firstRequest[mode] = { msSinceDeploy: round(performance.now() - t0, 0), serverTiming: first.headers["server-timing"] };
      log(`zerocell ${mode}: first 200 after ${Math.round(performance.now() - t0)} ms`);
    }
    for (const [mode, host] of Object.entries(HOSTS)) {
      await waitIdle(`zerocell ${mode} sequential`, result);
      result.sequential.push({ target: "zerocell", mode, ...(await sequential(url, host, OPTS.timingSamples, [server.proc.pid])) });
      await measure(result, "zerocell", mode, url, host);
      const info = await poolInfo(urls, token);
      const pids = new Set((info?.deployments ?? []).filter((d) => d.app === "wordpress" && d.mode === mode).flatMap((d) => d.pids ?? []));
      // The pool's pids are the isolation wrappers (unshare/setpriv): count the node under each.
      const rows = psRows();
      const hostProcs = [...pids].map((pid) => [rows.find((r) => r.pid === pid), ...descendants(pid, rows)].filter(Boolean).sort((a, b) => b.rssKb - a.rssKb)[0]).filter(Boolean);
      result.memory.push(memRow(`zerocell hosts ${mode} (after load)`, hostProcs));
    }
    result.memory.push(memRow("zerocell gateway (after load)", psRows().filter((r) => r.pid === server.proc.pid)));
    // what the precompile step did, and the snapshot's size
    result.env.zerocell.precompile = readFileSync(logPath, "utf8").split("\n").filter((l) => l.includes("precompile: {")).map((l) => l.slice(l.indexOf("precompile: ") + 12)).slice(0, 2);
    const db = new Database(join(dataDir, "zerocell.db"), { readonly: true });
    try {
      result.env.zerocell.snapshots = db.prepare("SELECT engine_build, memory_bytes FROM snapshots").all();
    } finally {
      db.close();
    }
  } finally {
    await stopZerocell(server, result);
    noteServerLogFailures(logPath, result);
  }
}

// ---------------------------------------------------------------- report

function report(result) {
  const lines = [];
  lines.push(`WordPress bench  ${result.startedAt}  ${OPTS.duration}s/run${OPTS.quick ? " (quick)" : ""}  ${result.env.cpus} CPUs  node ${result.env.node}  commit ${result.env.gitCommit ?? "?"}`);
  lines.push(`site: ${result.env.site}`);
  lines.push("");
  lines.push(renderTable([
    ["target", "mode", "conns", "requests", "req/s", "ms/req (1000·c / req/s)", "p50 ms", "p99 ms", "non2xx", "errors", "other CPU"],
    ...result.runs.map((r) => [r.target, r.mode ?? "-", r.connections, r.requests, r.rps, r.rps ? round((1000 * r.connections) / r.rps, 1) : "-", r.p50Ms, r.p99Ms, r.non2xx, r.errors + r.timeouts, r.otherCpuPct === undefined || r.otherCpuPct === null ? "?" : `${r.otherCpuPct}%`]),
  ]));
  const rps = (t, m, c) => result.runs.find((r) => r.target === t && (r.mode ?? null) === m && r.connections === c)?.rps;
  const ratio = (a, b) => (a && b ? round(a / b, 3) : null);
  lines.push("");
  lines.push(renderTable([
    ["front page, ratio of req/s", ...CONCURRENCIES.map((c) => `c=${c}`)],
    ["zerocell snapshot / native", ...CONCURRENCIES.map((c) => ratio(rps("zerocell", "snapshot", c), rps("native", null, c)) ?? "-")],
    ["zerocell daemon / native", ...CONCURRENCIES.map((c) => ratio(rps("zerocell", "daemon", c), rps("native", null, c)) ?? "-")],
    ["zerocell daemon / snapshot", ...CONCURRENCIES.map((c) => ratio(rps("zerocell", "daemon", c), rps("zerocell", "snapshot", c)) ?? "-")],
  ]));
  const got = ratio(rps("zerocell", TARGET.mode, TARGET.connections), rps("native", null, TARGET.connections));
  result.target = { ...TARGET, got, met: got !== null && got >= TARGET.ratio };
  lines.push(`target: front page, snapshot mode ≥ ${TARGET.ratio * 100}% of native php-fpm + opcache at c=${TARGET.connections}: ${got === null ? "n/a" : `${round(got * 100, 1)}% → ${result.target.met ? "MET" : "MISSED"}`}`);
  lines.push("");
  const pp = (m) => (m ? `${m.p50} / ${m.p99}` : "-");
  lines.push("sequential keep-alive requests, ms as p50 / p99 (run = guest code in the host, total = in the gateway)");
  lines.push(renderTable([
    ["target", "mode", "n", "client round trip", "total (gateway)", "run (host)", "ready", "server CPU ms/req"],
    ...result.sequential.map((s) => [s.target, s.mode ?? "-", s.samples, pp(s.clientMs), pp(s.totalMs), pp(s.runMs), pp(s.readyMs), s.cpuMsPerRequest ?? "-"]),
  ]));
  const cpu = (t, m) => result.sequential.find((s) => s.target === t && (s.mode ?? null) === m)?.cpuMsPerRequest;
  if (cpu("native", null) && cpu("zerocell", "snapshot")) {
    lines.push(`server CPU per request (all processes of the server, sequential): zerocell snapshot / native = ${round(cpu("zerocell", "snapshot") / cpu("native", null), 2)}×, daemon / native = ${cpu("zerocell", "daemon") ? round(cpu("zerocell", "daemon") / cpu("native", null), 2) : "-"}×; at equal CPU per request the c=8 ratio of req/s is its inverse, ${round(cpu("native", null) / cpu("zerocell", "snapshot"), 3)} (snapshot)`);
  }
  const z = result.env.zerocell;
  if (z) {
    lines.push("");
    for (const [mode, f] of Object.entries(z.firstRequest ?? {})) lines.push(`zerocell ${mode}: deploy → first 200 ${f.msSinceDeploy} ms (server-timing ${f.serverTiming ?? "-"})`);
    for (const p of z.precompile ?? []) lines.push(`precompile (host log): ${p}`);
    for (const s of z.snapshots ?? []) lines.push(`snapshot: ${round(s.memory_bytes / 2 ** 20, 1)} MiB (${s.engine_build})`);
  }
  if (result.memory.length) {
    lines.push("");
    lines.push(renderTable([
      ["memory", "procs", "RSS MB each", "RSS MB total", "PSS MB total"],
      ...result.memory.map((m) => [m.label, m.count, m.rssMbEach.join(" "), m.rssMbTotal, m.pssMbTotal]),
    ]));
  }
  lines.push(`PHP: zerocell php-wasm 8.3; native ${result.env.native?.php ?? "n/a"}`);
  lines.push(...machineFooter(result, "load generator: autocannon in the bench process, sharing the same CPUs as the servers under test"));
  return lines.join("\n");
}

async function main() {
  const t0 = Date.now();
  const result = { startedAt: new Date().toISOString(), options: { ...OPTS, concurrencies: CONCURRENCIES }, env: machineEnv(), runs: [], sequential: [], memory: [], notes: [] };
  Object.assign(result.env, gitInfo());
  log("building the site (bench/apps/wordpress/build.mjs)");
  const site = await buildWordPressSite({});
  result.env.site = `${site.dir} (WordPress 6.5 + SQLite integration, @wp-playground/wordpress-builds)`;
  result.env.cpuBusyBefore = await cpuBusy(1000);
  noteBusyBefore(result, log);
  const failed = await runPhases([
    ["native", () => runNative(result, site.dir)],
    ["zerocell", () => runZerocell(result, site.dir)],
  ], result, log, { afterFailure: async () => { for (const c of [...children]) await stopChild(c); } });
  if (cleaningUp) return 130;
  finishRun(result, t0, report, "wordpress-");
  return failed ? 1 : 0;
}

runMain(main, log);
