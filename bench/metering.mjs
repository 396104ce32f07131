#!/usr/bin/env node
/**
 * Zerocell metering benchmark: one run, one table, one JSON file.
 *
 *   node bench/metering.mjs [--duration 8] [--trials 3]
 *
 * 1. Metering cost: the hello page (examples/php-hello/public) in a bundle whose one route is in
 *    mode "daemon" (the cheapest sandbox, so metering overhead is as visible as it gets), served by
 *    two servers started side by side: one with metering on, one with --no-metering. After a
 *    warm-up of each, autocannon (c=16, HTTP, Host header of the route) runs against them
 *    alternately on/off/on/off for --duration seconds each; req/s (2xx) and exact p99 per run,
 *    ratio on/off (target: metering costs ≤ 5% of throughput, i.e. ratio ≥ 0.95).
 * 2. Loss window under kill -9: a server with metering on (--usage-flush-ms 100, then 500), loaded
 *    at c=16 by a client that keeps every 2xx response's x-request-id; after a random 2–4 s the
 *    server gets SIGKILL. Its sandbox hosts must die with it (leftovers are reported and killed).
 *    Then DIR/zerocell.db is opened with better-sqlite3: usage_records rows, SUM(usage_daily
 *    .requests) (must equal the rows: no double counting), distinct request ids, and
 *    PRAGMA integrity_check (must be "ok"). Lost = received − records; also exactly, by request
 *    id: received but not recorded, recorded but never received (in flight at the kill). The lost
 *    records as time at the measured rate (lost / req/s) are compared with the flush interval.
 *    --trials times per flush interval, each on a fresh data dir.
 * Loopback only. Kills every process it started and removes its temp dirs, also on error/SIGINT.
 * Writes bench/results/metering-<timestamp>.json. About 2 minutes.
 */
import { readFileSync, writeFileSync, existsSync, rmSync, cpSync } from "node:fs";
import { join } from "node:path";
import http from "node:http";
import { CLI, HOST_SCRIPT_MARK, ROOT, children, cleaningUp, cpuSnapshot, distOlderThanSrc, foreignCpuShare, gitInfo, hostProcesses, installCleanup, killGroup, load as autocannonLoad, logger, machineEnv, pct, psRows, renderTable, round, finishRun, runMain, runPhases, sleep, startZerocell, stopChild, tempDir, tempDirs, zerocellCli } from "./lib.mjs";
import Database from "better-sqlite3";

const EXAMPLE = join(ROOT, "examples", "php-hello");
const ROUTE_HOST = "meter.localhost";
const CONNECTIONS = 16;
const FLUSH_INTERVALS = [100, 500];
const COST_TARGET = 0.05; // metering may cost at most 5% of throughput
const KILL_AFTER_MS = [2000, 4000];

// ---------------------------------------------------------------- options

function parseArgs(argv) {
  const o = { duration: 8, trials: 3, warmup: 2 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => Number(a.includes("=") ? a.slice(a.indexOf("=") + 1) : argv[++i]);
    if (a === "--duration" || a.startsWith("--duration=")) o.duration = val();
    else if (a === "--trials" || a.startsWith("--trials=")) o.trials = val();
    else if (a === "-h" || a === "--help") {
      process.stdout.write("usage: node bench/metering.mjs [--duration SECONDS (default 8)] [--trials N (default 3, kill -9 trials per flush interval)]\n");
      process.exit(0);
    } else {
      process.stderr.write(`unknown argument: ${a}\n`);
      process.exit(2);
    }
  }
  if (!(o.duration > 0)) {
    process.stderr.write("--duration must be a positive number of seconds\n");
    process.exit(2);
  }
  if (!(Number.isInteger(o.trials) && o.trials >= 1)) {
    process.stderr.write("--trials must be a positive integer\n");
    process.exit(2);
  }
  return o;
}
const OPTS = parseArgs(process.argv.slice(2));

// ---------------------------------------------------------------- children and cleanup

/** Host pids seen under a server we killed with SIGKILL; killed at cleanup if still there. */
const hostPidsToReap = new Set();
let stopClients = false;

const log = logger("metering");

/** SIGKILL a pid only if it still runs a sandbox host (guards against pid reuse). */
function killHostPid(pid) {
  if (!isHostPid(pid)) return false;
  try {
    process.kill(pid, "SIGKILL");
    return true;
  } catch {
    return false;
  }
}

installCleanup(log, {
  start: () => {
    stopClients = true;
  },
  reap: () => {
    for (const pid of hostPidsToReap) killHostPid(pid);
    hostPidsToReap.clear();
  },
});

// ---------------------------------------------------------------- small helpers

const mean = (xs) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);

function isHostPid(pid) {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(HOST_SCRIPT_MARK);
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------- HTTP client that keeps request ids

/**
 * Everything this bench received from one server's app: request ids of 2xx and of other answers.
 * Every request to a server's app goes through it (first-200 polling included), so the ids can be
 * compared with the server's usage_records.
 */
class Received {
  ok = new Map(); // x-request-id of complete 2xx responses → performance.now() at receipt
  okNoId = 0; // 2xx without x-request-id (should not happen)
  other = new Set(); // x-request-id of complete non-2xx responses
  otherNoId = 0;
  byStatus = {};
  /** performance.now() of each complete 2xx response. */
  times = [];
  errors = 0;
  errorSamples = [];
}

/** One GET counted into `rec`; resolves the status (or throws on a transport error). */
function countedGet(rec, url, host, agent, timeoutMs = 30_000) {
  const u = new URL(url);
  return new Promise((res, rej) => {
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: "GET", headers: { host }, agent, timeout: timeoutMs });
    req.on("timeout", () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on("error", rej);
    req.on("response", (r) => {
      r.on("data", () => {});
      r.on("error", rej);
      r.on("end", () => {
        if (!r.complete) return rej(new Error("response cut short"));
        const id = r.headers["x-request-id"];
        const s = r.statusCode;
        rec.byStatus[s] = (rec.byStatus[s] ?? 0) + 1;
        if (s >= 200 && s < 300) {
          const now = performance.now();
          rec.times.push(now);
          if (typeof id === "string") rec.ok.set(id, now);
          else rec.okNoId++;
        } else if (typeof id === "string") rec.other.add(id);
        else rec.otherNoId++;
        res(s);
      });
    });
    req.end();
  });
}

async function waitFor200Counted(rec, url, host, deadlineMs, child) {
  const end = Date.now() + deadlineMs;
  let last = "";
  const agent = new http.Agent({ keepAlive: false });
  try {
    while (Date.now() < end) {
      if (child?.exited) throw new Error(`${child.name} exited (${child.code ?? child.error?.message})`);
      if (cleaningUp) throw new Error("interrupted");
      try {
        const s = await countedGet(rec, url, host, agent, 5000);
        if (s === 200) return;
        last = `status ${s}`;
      } catch (e) {
        last = e.message;
      }
      await sleep(50);
    }
  } finally {
    agent.destroy();
  }
  throw new Error(`no 200 from ${host} at ${url} within ${deadlineMs} ms (last: ${last})`);
}

/**
 * `connections` keep-alive loops of sequential GETs until `state.stop`; transport errors after
 * the stop (the kill) end a loop, before it they are counted and retried.
 */
function startCountedLoad(rec, url, host, connections, state) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  state.inflight = 0;
  const loop = async () => {
    while (!state.stop && !stopClients) {
      state.inflight++;
      try {
        await countedGet(rec, url, host, agent, 15_000);
      } catch (e) {
        if (state.stop || stopClients) break;
        rec.errors++;
        if (rec.errorSamples.length < 5) rec.errorSamples.push(e.message);
        await sleep(10);
      } finally {
        state.inflight--;
      }
    }
  };
  const loops = Array.from({ length: connections }, loop);
  return { agent, done: Promise.allSettled(loops).finally(() => agent.destroy()) };
}

// ---------------------------------------------------------------- autocannon

/**
 * One autocannon run for `duration` s. req/s (2xx only, 1 decimal) and exact p50/p99 of 2xx
 * latency (ms), other CPU, and the server's CPU (gateway, hosts) in all and per 2xx request.
 */
function load({ url, host, connections, duration, serverPid }) {
  const accounting = () => {
    const snap0 = cpuSnapshot();
    return (answered) => {
      const snap1 = cpuSnapshot();
      const otherCpu = foreignCpuShare(snap0, snap1);
      const sc = serverPid === undefined ? null : serverCpuMs(snap0, snap1, serverPid);
      const perReq = (ms) => (sc !== null && answered > 0 ? round((ms * 1000) / answered, 0) : null);
      return {
        otherCpuPct: pct(otherCpu),
        gatewayCpuMs: sc?.gatewayMs ?? null,
        hostsCpuMs: sc?.hostsMs ?? null,
        gatewayCpuUsPerReq: perReq(sc?.gatewayMs),
        hostsCpuUsPerReq: perReq(sc?.hostsMs),
      };
    };
  };
  return autocannonLoad({ url, host, connections, duration, timeoutS: 10, rpsDecimals: 1, accounting });
}

/**
 * CPU time (ms) of a server between two snapshots: the gateway process itself (where metering
 * runs), and its sandbox hosts (descendants, plus children it reaped meanwhile). Much less
 * sensitive to other load on the machine than req/s. USER_HZ = 100 (10 ms ticks).
 */
function serverCpuMs(a, b, pid) {
  if (a === null || b === null) return null;
  const ga = a.procs.get(pid);
  const gb = b.procs.get(pid);
  if (ga === undefined || gb === undefined) return null;
  const desc = new Set([pid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [p, x] of b.procs) if (!desc.has(p) && desc.has(x.ppid)) {
      desc.add(p);
      grew = true;
    }
  }
  desc.delete(pid);
  let hostsJ = gb.childJiffies - ga.childJiffies;
  for (const p of desc) {
    const x = b.procs.get(p);
    const before = a.procs.get(p);
    hostsJ += x.jiffies + x.childJiffies - (before === undefined ? 0 : before.jiffies + before.childJiffies);
  }
  return { gatewayMs: (gb.jiffies - ga.jiffies) * 10, hostsMs: hostsJ * 10 };
}

// ---------------------------------------------------------------- servers

/** The hello page with one route, mode daemon. */
function makeBundle() {
  const dir = tempDir("zc-meter-bundle-");
  cpSync(join(EXAMPLE, "public"), join(dir, "public"), { recursive: true });
  writeFileSync(join(dir, "zerocell.toml"), `# bench/metering.mjs: examples/php-hello, daemon mode (cheapest sandbox)\nruntime = "php"\n\n[php]\nversion = "8.3"\ndocument_root = "public"\n\n[[routes]]\nhost = "${ROUTE_HOST}"\npath = "/"\nmode = "daemon"\n`);
  return dir;
}

/**
 * A server on a fresh data dir (loopback, ports picked by the kernel), with the bundle deployed
 * and its first 200 received (counted into `rec`).
 */
async function startServer(name, extraArgs, bundle, rec) {
  const { child, dataDir, logPath, logTail, listening } = startZerocell({
    dataPrefix: `zc-meter-data-${name}-`,
    args: ["--host", "127.0.0.1", "--admin-host", "127.0.0.1", ...extraArgs],
    name: `zerocell serve (${name})`,
    label: `server ${name}`,
    stopOnCleanup: true,
  });
  const server = { name, child, dataDir, logPath, logTail };
  try {
    server.urls = await listening();
    for (const [k, u] of Object.entries(server.urls)) {
      if (typeof u !== "string" || !/^[a-z]+:\/\//.test(u)) continue; // pid, …
      const h = new URL(u).hostname;
      if (h !== "127.0.0.1" && h !== "localhost" && h !== "[::1]") throw new Error(`server ${name} is not on loopback: ${u}`);
    }
    server.httpUrl = server.urls.http + "/";
    const dep = await zerocellCli(dataDir, ["deploy", bundle, "--app", "meter"]);
    if (dep.code !== 0) throw new Error(`deploy to ${name} failed (${dep.code}):\n${dep.out}`);
    await waitFor200Counted(rec, server.httpUrl, ROUTE_HOST, 60_000, child);
    return server;
  } catch (e) {
    await stopChild(child, 5000);
    throw e;
  }
}

/** Usage rows of a (stopped or killed) server's database, and its integrity. */
function readUsage(dataDir, wantIds = false) {
  const db = new Database(join(dataDir, "zerocell.db"), { fileMustExist: true });
  try {
    const records = db.prepare("SELECT COUNT(*) AS n, COUNT(DISTINCT request_id) AS d FROM usage_records").get();
    const daily = db.prepare("SELECT COALESCE(SUM(requests), 0) AS n FROM usage_daily").get();
    const integrity = db.prepare("PRAGMA integrity_check").all().map((r) => Object.values(r)[0]).join("; ");
    const ids = wantIds ? new Set(db.prepare("SELECT request_id FROM usage_records").pluck().all()) : undefined;
    return { records: records.n, distinctIds: records.d, dailySum: daily.n, integrity, ids };
  } finally {
    db.close();
  }
}

// ---------------------------------------------------------------- 1. metering cost

async function runCost(result, bundle) {
  log("cost: starting two servers (metering on, --no-metering)");
  const recOn = new Received();
  const recOff = new Received();
  const [on, off] = await Promise.all([
    startServer("on", ["--usage-flush-ms", "100"], bundle, recOn),
    startServer("off", ["--no-metering"], bundle, recOff),
  ]).catch(async (e) => {
    // the other one may have started
    for (const c of [...children]) if (c.name.startsWith("zerocell serve")) await stopChild(c, 5000);
    throw e;
  });
  const cost = { route: `${ROUTE_HOST} (daemon)`, connections: CONNECTIONS, durationS: OPTS.duration, runs: [] };
  result.cost = cost;
  try {
    let acTotal = { on: 0, off: 0 };
    for (const s of [on, off]) {
      log(`cost: warm-up ${s.name} ${OPTS.warmup}s`);
      const w = await load({ url: s.httpUrl, host: ROUTE_HOST, connections: CONNECTIONS, duration: OPTS.warmup, serverPid: s.child.proc.pid });
      acTotal[s.name] += w.requests;
    }
    const order = [on, off, on, off];
    for (let i = 0; i < order.length; i++) {
      if (cleaningUp) return;
      const s = order[i];
      log(`cost: round ${(i >> 1) + 1}, metering ${s.name}, c=${CONNECTIONS} for ${OPTS.duration}s`);
      const r = await load({ url: s.httpUrl, host: ROUTE_HOST, connections: CONNECTIONS, duration: OPTS.duration, serverPid: s.child.proc.pid });
      acTotal[s.name] += r.requests;
      cost.runs.push({ metering: s.name, round: (i >> 1) + 1, ...r });
      log(`cost:   ${r.rps} req/s, p99 ${r.p99Ms} ms${r.non2xx ? `, ${r.non2xx} non-2xx` : ""}${r.errors + r.timeouts ? `, ${r.errors + r.timeouts} errors` : ""}`);
    }
    const rpsOf = (m) => cost.runs.filter((r) => r.metering === m).map((r) => r.rps);
    const p99Of = (m) => cost.runs.filter((r) => r.metering === m).map((r) => r.p99Ms);
    cost.meanRps = { on: round(mean(rpsOf("on")), 1), off: round(mean(rpsOf("off")), 1) };
    cost.meanP99Ms = { on: round(mean(p99Of("on")), 3), off: round(mean(p99Of("off")), 3) };
    cost.ratioRps = round(cost.meanRps.on / cost.meanRps.off, 4);
    cost.ratioP99 = round(cost.meanP99Ms.on / cost.meanP99Ms.off, 4);
    cost.ratioRpsPerRound = [0, 1].map((k) => round(cost.runs[2 * k].rps / cost.runs[2 * k + 1].rps, 4));
    cost.costPct = round((1 - cost.ratioRps) * 100, 2);
    // run-to-run spread of the same configuration, to judge the ratio against the noise
    const spread = (xs) => (xs.length > 1 ? (Math.max(...xs) - Math.min(...xs)) / mean(xs) : 0);
    cost.spreadPct = { on: round(spread(rpsOf("on")) * 100, 2), off: round(spread(rpsOf("off")) * 100, 2) };
    cost.targetMet = cost.ratioRps >= 1 - COST_TARGET;
    // CPU per request: the gateway is where metering runs; robust to a busy machine, unlike req/s
    const cpuOf = (m, f) => {
      const rs = cost.runs.filter((r) => r.metering === m && r[f] !== null);
      const req = rs.reduce((x, r) => x + r.requests, 0);
      return req > 0 ? (rs.reduce((x, r) => x + r[f], 0) * 1000) / req : NaN;
    };
    cost.gatewayCpuUsPerReq = { on: round(cpuOf("on", "gatewayCpuMs"), 0), off: round(cpuOf("off", "gatewayCpuMs"), 0) };
    cost.hostsCpuUsPerReq = { on: round(cpuOf("on", "hostsCpuMs"), 0), off: round(cpuOf("off", "hostsCpuMs"), 0) };
    const tot = (m) => cpuOf(m, "gatewayCpuMs") + cpuOf(m, "hostsCpuMs");
    cost.meteringCpuUsPerReq = round(cpuOf("on", "gatewayCpuMs") - cpuOf("off", "gatewayCpuMs"), 0);
    cost.meteringCpuShareOfServerPct = round(((tot("on") - tot("off")) / tot("on")) * 100, 2);
    cost.clientCounted2xx = { on: acTotal.on + recOn.ok.size, off: acTotal.off + recOff.ok.size };
  } finally {
    // graceful stop: the metering server flushes its queue on SIGTERM
    await Promise.all([stopChild(on.child, 15_000), stopChild(off.child, 15_000)]);
    for (const s of [on, off]) if (s.child.code !== 0 && s.child.code !== null) result.notes.push(`cost: server ${s.name} exit code on SIGTERM: ${s.child.code}`);
  }
  // Sanity: the metering server recorded what it served; the other nothing.
  try {
    cost.dbAfterGracefulStop = { on: readUsage(on.dataDir), off: readUsage(off.dataDir) };
    const a = cost.dbAfterGracefulStop;
    if (a.off.records !== 0) result.notes.push(`cost: the --no-metering server wrote ${a.off.records} usage records`);
    if (a.on.records === 0) result.notes.push("cost: the metering server wrote no usage records");
    if (a.on.records !== a.on.dailySum) result.notes.push(`cost: DOUBLE/UNDER COUNT after graceful stop: ${a.on.records} usage_records vs SUM(usage_daily.requests) ${a.on.dailySum}`);
    if (a.on.integrity !== "ok" || a.off.integrity !== "ok") result.notes.push(`cost: integrity_check on=${a.on.integrity} off=${a.off.integrity}`);
  } catch (e) {
    result.notes.push(`cost: could not read the databases: ${e.message}`);
  }
  for (const s of [on, off]) {
    rmSync(s.dataDir, { recursive: true, force: true });
    tempDirs.delete(s.dataDir);
  }
}

// ---------------------------------------------------------------- 2. loss window under kill -9

async function killTrial(flushMs, trial, bundle) {
  const rec = new Received();
  const server = await startServer(`kill-${flushMs}-${trial}`, ["--usage-flush-ms", String(flushMs)], bundle, rec);
  const pid = server.child.proc.pid;
  const row = { flushMs, trial };
  try {
    const state = { stop: false };
    const t0 = performance.now();
    const { done } = startCountedLoad(rec, server.httpUrl, ROUTE_HOST, CONNECTIONS, state);
    const killAfter = Math.round(KILL_AFTER_MS[0] + Math.random() * (KILL_AFTER_MS[1] - KILL_AFTER_MS[0]));
    await sleep(killAfter);
    if (cleaningUp) throw new Error("interrupted");
    if (server.child.exited) throw new Error(`server died before the kill (${server.child.code}):\n${server.logTail()}`);
    // hosts under the server right before the kill
    const hostsBefore = hostProcesses(pid).map((r) => r.pid);
    for (const h of hostsBefore) hostPidsToReap.add(h);
    const tKill = performance.now();
    const receivedAtKill = rec.ok.size;
    const inflightAtKill = state.inflight;
    state.stop = true;
    process.kill(pid, "SIGKILL");
    await Promise.race([server.child.exitPromise, sleep(5000)]);
    row.serverExit = server.child.code;
    // the client: every loop ends on its connection's reset
    await Promise.race([done, sleep(10_000)]);
    row.receivedAfterKill = rec.ok.size - receivedAtKill;
    // sandbox hosts must go with the server (stdin closes): give them a moment, then look
    let leftovers = [];
    for (const end = Date.now() + 2000; Date.now() < end;) {
      leftovers = hostsBefore.filter(isHostPid);
      if (leftovers.length === 0) break;
      await sleep(100);
    }
    // anything else still in the server's process group running a host
    const groupHosts = psRows().filter((r) => r.pgid === pid && r.args.includes(HOST_SCRIPT_MARK)).map((r) => r.pid);
    const allLeft = [...new Set([...leftovers, ...groupHosts])];
    row.hostsBeforeKill = hostsBefore.length;
    row.hostsLeftover = allLeft.length;
    for (const h of allLeft) killHostPid(h);
    for (const h of hostsBefore) hostPidsToReap.delete(h);
    killGroup(pid, "SIGKILL");

    // rate just before the kill: 2xx responses in the last 1.5 s of load (else the whole load)
    const win = Math.min(1500, tKill - t0);
    const inWin = rec.times.filter((t) => t > tKill - win && t <= tKill).length;
    row.loadMs = round(tKill - t0, 0);
    row.rps = round(inWin / (win / 1000), 1);
    row.inflightAtKill = inflightAtKill;
    row.clientErrorsBeforeKill = rec.errors;
    if (rec.errorSamples.length) row.clientErrorSamples = rec.errorSamples;
    row.non2xx = rec.other.size + rec.otherNoId;
    row.received = rec.ok.size + rec.okNoId;

    const db = readUsage(server.dataDir, true);
    row.records = db.records;
    row.distinctIds = db.distinctIds;
    row.dailySum = db.dailySum;
    row.integrity = db.integrity;
    row.doubleCount = db.records !== db.dailySum || db.records !== db.distinctIds;
    row.receivedMinusRecords = row.received - row.records;
    // exact, by request id
    let receivedNotRecorded = 0;
    let oldestLost = Infinity;
    let newestRecorded = -Infinity;
    for (const [id, at] of rec.ok) {
      if (!db.ids.has(id)) {
        receivedNotRecorded++;
        oldestLost = Math.min(oldestLost, at);
      } else newestRecorded = Math.max(newestRecorded, at);
    }
    // Direct, rate-independent: how long before the kill the oldest lost response arrived (its
    // record was queued slightly before that), and the newest recorded one (≈ the last flush).
    row.oldestLostAgeMs = receivedNotRecorded > 0 ? round(tKill - oldestLost, 1) : 0;
    row.newestRecordedAgeMs = Number.isFinite(newestRecorded) ? round(tKill - newestRecorded, 1) : null;
    let recordedNotReceived = 0;
    let recordedNon2xx = 0;
    for (const id of db.ids) {
      if (rec.other.has(id)) recordedNon2xx++;
      else if (!rec.ok.has(id)) recordedNotReceived++;
    }
    row.lost = Math.max(0, row.receivedMinusRecords);
    row.lostById = receivedNotRecorded; // 2xx the client got that are not in the database
    row.recordedNotReceived = recordedNotReceived; // in the database, response never reached the client
    row.recordedNon2xx = recordedNon2xx;
    row.lostMs = row.rps > 0 ? round((row.lostById / row.rps) * 1000, 1) : null;
    row.lostMsWithinFlush = row.lostMs !== null && row.lostMs <= flushMs;
    row.oldestLostWithinFlush = row.oldestLostAgeMs <= flushMs;
    return row;
  } finally {
    if (!server.child.exited) await stopChild(server.child, 5000);
    else children.delete(server.child);
    rmSync(server.dataDir, { recursive: true, force: true });
    tempDirs.delete(server.dataDir);
  }
}

async function runKills(result, bundle) {
  result.kill = { connections: CONNECTIONS, killAfterMs: KILL_AFTER_MS, trials: [] };
  for (const flushMs of FLUSH_INTERVALS) {
    for (let t = 1; t <= OPTS.trials; t++) {
      if (cleaningUp) return;
      log(`kill -9: flush ${flushMs} ms, trial ${t}/${OPTS.trials}`);
      try {
        const row = await killTrial(flushMs, t, bundle);
        result.kill.trials.push(row);
        log(`kill -9:   ${row.received} received, ${row.records} recorded, lost ${row.lostById} by id (${row.lostMs} ms at ${row.rps} req/s), in DB but not received ${row.recordedNotReceived}, integrity ${row.integrity}, leftover hosts ${row.hostsLeftover}/${row.hostsBeforeKill}`);
        if (row.receivedMinusRecords < 0) log(`kill -9:   !!! MORE RECORDS THAN RESPONSES RECEIVED (${row.receivedMinusRecords}) — see the by-id breakdown`);
        if (row.doubleCount) log(`kill -9:   !!! DOUBLE COUNT: records ${row.records}, distinct ids ${row.distinctIds}, SUM(usage_daily.requests) ${row.dailySum}`);
      } catch (e) {
        if (cleaningUp) return;
        result.kill.trials.push({ flushMs, trial: t, error: String(e.message).slice(0, 600) });
        result.notes.push(`kill -9 flush ${flushMs} trial ${t}: FAILED: ${String(e.message).split("\n").slice(0, 4).join(" | ").slice(0, 400)}`);
        log(`kill -9 trial failed: ${e.stack ?? e}`);
      }
    }
  }
  result.kill.summary = FLUSH_INTERVALS.map((flushMs) => {
    const rows = result.kill.trials.filter((r) => r.flushMs === flushMs && r.error === undefined);
    return {
      flushMs,
      trials: rows.length,
      lostMsMean: round(mean(rows.map((r) => r.lostMs)), 1),
      lostMsMax: rows.length ? Math.max(...rows.map((r) => r.lostMs ?? 0)) : null,
      allWithinFlush: rows.every((r) => r.lostMsWithinFlush),
      oldestLostAgeMsMax: rows.length ? Math.max(...rows.map((r) => r.oldestLostAgeMs)) : null,
      allOldestLostWithinFlush: rows.every((r) => r.oldestLostWithinFlush),
      allIntegrityOk: rows.every((r) => r.integrity === "ok"),
      noDoubleCount: rows.every((r) => !r.doubleCount),
      noLeftoverHosts: rows.every((r) => r.hostsLeftover === 0),
    };
  });
}

// ---------------------------------------------------------------- report

function report(result) {
  const lines = [];
  const fmtOther = (x) => (x === null || x === undefined ? "?" : `${x}%`);
  lines.push(`Zerocell metering bench  ${result.startedAt}  ${result.env.cpus} CPUs  node ${result.env.node}  commit ${result.env.gitCommit ?? "?"}${result.env.gitDirty ? " (src dirty)" : ""}`);
  const c = result.cost;
  if (c) {
    lines.push("");
    lines.push(`1. metering cost: ${c.route}, HTTP, autocannon c=${c.connections}, ${c.durationS}s per run, alternating on/off`);
    lines.push(renderTable([
      ["metering", "round", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "non2xx", "errors", "gateway CPU µs/req", "hosts CPU µs/req", "other CPU"],
      ...c.runs.map((r) => [r.metering, r.round, r.requests, r.rps, r.p50Ms, r.p99Ms, r.maxMs, r.non2xx, r.errors + r.timeouts, r.gatewayCpuUsPerReq, r.hostsCpuUsPerReq, fmtOther(r.otherCpuPct)]),
    ]));
    if (c.ratioRps !== undefined) {
      lines.push(`mean req/s on ${c.meanRps.on} / off ${c.meanRps.off} = ${c.ratioRps} (per round: ${c.ratioRpsPerRound.join(", ")}); metering costs ${c.costPct}% of throughput → target ≤ ${COST_TARGET * 100}%: ${c.targetMet ? "MET" : "NOT MET"}`);
      lines.push(`mean p99 on ${c.meanP99Ms.on} ms / off ${c.meanP99Ms.off} ms = ${c.ratioP99}`);
      lines.push(`run-to-run spread of req/s, same configuration: on ${c.spreadPct.on}%, off ${c.spreadPct.off}%${Math.max(c.spreadPct.on, c.spreadPct.off) > 2 * COST_TARGET * 100 ? " — larger than the effect measured: the req/s ratio is noise on this run" : ""}`);
      lines.push(`CPU per request (all on/off runs): gateway on ${c.gatewayCpuUsPerReq.on} µs / off ${c.gatewayCpuUsPerReq.off} µs (metering ≈ ${c.meteringCpuUsPerReq} µs/req); hosts on ${c.hostsCpuUsPerReq.on} / off ${c.hostsCpuUsPerReq.off} µs; metering ≈ ${c.meteringCpuShareOfServerPct}% of the server's CPU per request (a throughput cost estimate when the server is CPU-bound)`);
    }
    const g = c.dbAfterGracefulStop;
    if (g) lines.push(`after SIGTERM: metering server has ${g.on.records} usage records (SUM(usage_daily.requests) ${g.on.dailySum}, integrity ${g.on.integrity}; client counted ${c.clientCounted2xx?.on} 2xx, not counting responses in flight when each autocannon run stopped), --no-metering server ${g.off.records} records`);
  }
  const k = result.kill;
  if (k) {
    lines.push("");
    lines.push(`2. loss window under kill -9: metering on, load c=${k.connections} (client keeps each 2xx's x-request-id), SIGKILL after a random ${k.killAfterMs[0] / 1000}–${k.killAfterMs[1] / 1000} s`);
    lines.push(renderTable([
      ["flush ms", "trial", "load s", "req/s", "received", "records", "daily sum", "recv-rec", "lost (by id)", "lost ms", "≤ flush", "oldest lost ms", "≤ flush", "newest rec ms", "in DB not recv", "in flight", "integrity", "hosts left"],
      ...k.trials.map((r) => (r.error !== undefined
        ? [r.flushMs, r.trial, "FAILED", r.error.split("\n")[0].slice(0, 60), "", "", "", "", "", "", "", "", "", "", "", "", "", ""]
        : [r.flushMs, r.trial, round(r.loadMs / 1000, 2), r.rps, r.received, r.records, r.dailySum, r.receivedMinusRecords < 0 ? `${r.receivedMinusRecords} !!!` : r.receivedMinusRecords, r.lostById, r.lostMs, r.lostMsWithinFlush ? "yes" : "NO", r.oldestLostAgeMs, r.oldestLostWithinFlush ? "yes" : "NO", r.newestRecordedAgeMs, r.recordedNotReceived, r.inflightAtKill, r.integrity, `${r.hostsLeftover}/${r.hostsBeforeKill}`])),
    ]));
    for (const s of k.summary ?? []) {
      if (s.trials === 0) {
        lines.push(`flush ${s.flushMs} ms: no successful trial`);
        continue;
      }
      lines.push(`flush ${s.flushMs} ms: ${s.trials} trials, lost window (lost / req/s) mean ${s.lostMsMean} ms, max ${s.lostMsMax} ms (${s.allWithinFlush ? "all within" : "NOT all within"} the flush interval); oldest lost response max ${s.oldestLostAgeMsMax} ms before the kill (${s.allOldestLostWithinFlush ? "all within" : "NOT all within"}); integrity ${s.allIntegrityOk ? "ok" : "NOT OK"}; ${s.noDoubleCount ? "no double count" : "DOUBLE COUNT"}; ${s.noLeftoverHosts ? "no leftover hosts" : "LEFTOVER HOSTS (killed)"}`);
    }
    for (const r of k.trials) {
      if (r.error !== undefined) continue;
      if (r.receivedMinusRecords < 0) lines.push(`!!! flush ${r.flushMs} trial ${r.trial}: ${-r.receivedMinusRecords} MORE records than 2xx responses received; by id: ${r.recordedNotReceived} recorded but never received (in flight at the kill), ${r.recordedNon2xx} recorded non-2xx; ${r.doubleCount ? "AND A DOUBLE COUNT" : "no duplicate ids, daily sum = records: not a double count"}`);
      if (r.doubleCount) lines.push(`!!! DOUBLE COUNT flush ${r.flushMs} trial ${r.trial}: records ${r.records}, distinct ids ${r.distinctIds}, SUM(usage_daily.requests) ${r.dailySum}`);
      if (r.clientErrorsBeforeKill) lines.push(`flush ${r.flushMs} trial ${r.trial}: ${r.clientErrorsBeforeKill} client errors before the kill (${(r.clientErrorSamples ?? []).join("; ")})`);
      if (r.non2xx) lines.push(`flush ${r.flushMs} trial ${r.trial}: ${r.non2xx} non-2xx responses`);
    }
    lines.push("received: complete 2xx responses the client got (first-200 polling included); records: usage_records rows; daily sum: SUM(usage_daily.requests);");
    lines.push("lost (by id): received request ids missing from usage_records; lost ms = lost / req/s (rate over the last 1.5 s before the kill);");
    lines.push("oldest lost ms: how long before the kill the client got the oldest response whose record is lost (rate-independent loss window); newest rec ms: the same for the newest recorded one (≈ time since the last flush);");
    lines.push("in DB not recv: records whose response never reached the client (in flight at the kill; recv-rec = lost − this); in flight: client requests outstanding at the kill;");
    lines.push("hosts left: sandbox hosts still alive 2 s after the server's SIGKILL / hosts before it (leftovers are killed).");
  }
  lines.push("");
  lines.push(`load avg ${result.env.loadavgBefore.join(" ")} → ${result.env.loadavgAfter?.join(" ") ?? "?"}; load generator in the bench process, sharing the CPUs with the server under test`);
  lines.push("other CPU: share of all CPUs used during the run by processes that are not this bench or its children; >5% means a noisy run");
  for (const n of result.notes) lines.push(`note: ${n}`);
  return lines.join("\n");
}

// ---------------------------------------------------------------- main

async function main() {
  const t0 = Date.now();
  const result = {
    startedAt: new Date().toISOString(),
    options: { duration: OPTS.duration, warmup: OPTS.warmup, trials: OPTS.trials, connections: CONNECTIONS, flushIntervals: FLUSH_INTERVALS, costTarget: COST_TARGET, killAfterMs: KILL_AFTER_MS },
    env: machineEnv({ memory: false }),
    notes: [],
  };
  Object.assign(result.env, gitInfo());
  if (!existsSync(CLI)) throw new Error(`${CLI} missing: build first (npx tsc -p tsconfig.json)`);
  {
    if (distOlderThanSrc()) result.notes.push("dist/ is older than some file in src/: the measured server may not match the source");
  }
  const bundle = makeBundle();
  const failed = await runPhases([["cost", () => runCost(result, bundle)], ["kill", () => runKills(result, bundle)]], result, log);
  if (cleaningUp) return 130;
  finishRun(result, t0, report, "metering-");
  const bad = result.kill?.trials.some((r) => r.error !== undefined || r.doubleCount || r.integrity !== "ok");
  return failed || bad ? 1 : 0;
}

runMain(main, log);
