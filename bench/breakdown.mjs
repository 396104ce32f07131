#!/usr/bin/env node
/**
 * Where a request's CPU goes, per runtime, served end to end: hello world in snapshot mode (fresh
 * state per request), c=8, keep-alive, on `zerocell serve`. Per request:
 *   - gateway  CPU of the gateway process (/proc/<pid>/stat) / requests: HTTP parse, route, pool,
 *              framing, response, log, usage record
 *   - host     CPU of the sandbox host processes / requests, split into
 *       guest  time inside the guest's entry (PHP's request handler, the WSGI call, the emulated
 *              program; wall time, which is CPU time for these CPU-bound guests)
 *       glue   the rest of the engine's `handle` (its CPU time minus guest)
 *       reset  CPU time of the host's reset after each request
 *       ipc    what is left of the host's CPU: its event loop, frame decode/encode, pipe writes,
 *              GC between requests (host − handle − reset)
 *   (guest, handle and reset from counters the hosts report per request, summed by the pool in
 *   GET /v1/pool `cpuUs`; for an older build without them: server-timing and reset p50)
 *   - loader   the load generator's own CPU (autocannon, this process) / requests, for reference
 * and the latencies: request arrival → guest code (server-timing `ready`) p50/p99.
 *
 *   node bench/breakdown.mjs [php python x86] [--duration 5] [--rounds 3] [--baseline DIR]
 *
 * --baseline DIR: a second build (a checkout with dist/ and node_modules/ of its own, e.g. the
 * commit before a change) measured in the same run, interleaved with this one round by round
 * (the machine is shared and noisy: A, B, A, B …), with the B/A ratio per figure.
 * Also exports `measureBreakdown` for bench/run.mjs, python.mjs and x86.mjs.
 */
import { cpSync, existsSync, readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { BUILD, ROOT, get, startHono, hostProcesses, installCleanup, latencyStat, load, logger, median, parseServerTiming, round, serverTimingSamples, sleep, startZerocell, stopChild, tempDir, waitFor200, zerocellCli } from "./lib.mjs";

const EXAMPLES = { php: "php-hello", python: "wsgi-hello", x86: "x86-cgi" };
const TICK_US = 1e6 / 100; // /proc/<pid>/stat counts in clock ticks (USER_HZ = 100 on Linux)

/** utime + stime of a process, µs (0 when it is gone). */
export function procCpuUs(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) * TICK_US;
  } catch {
    return 0;
  }
}

/** A bundle directory of the runtime's example with one snapshot-mode route on `host`. */
export function exampleBundle(runtime, host, mode = "snapshot") {
  const src = join(ROOT, "examples", EXAMPLES[runtime]);
  if (runtime === "x86" && !existsSync(join(src, "bin", "app"))) execFileSync(process.execPath, [join(ROOT, "scripts", "build-examples.mjs")], { stdio: "inherit" });
  const dir = tempDir(`zc-breakdown-${runtime}-`);
  cpSync(src, dir, { recursive: true });
  const toml = readFileSync(join(dir, "zerocell.toml"), "utf8").replace(/\n\[\[routes\]\][\s\S]*$/, "\n");
  writeFileSync(join(dir, "zerocell.toml"), `${toml}\n[[routes]]\nhost = "${host}"\npath = "/"\nmode = "${mode}"\n`);
  return dir;
}

/** Starts a zerocell server of `build` ({ root, cli }) and deploys each runtime's hello; returns a handle. */
export async function startServed(build, runtimes, log) {
  const saved = { root: BUILD.root, cli: BUILD.cli };
  Object.assign(BUILD, build);
  try {
    const server = startZerocell({ dataPrefix: "zc-breakdown-" });
    const urls = await server.listening();
    const token = readFileSync(join(server.dataDir, "admin-token"), "utf8").trim();
    for (const rt of runtimes) {
      const host = `${rt}.localhost`;
      const r = await zerocellCli(server.dataDir, ["deploy", exampleBundle(rt, host), "--app", `bench-${rt}`], build);
      if (r.code !== 0) throw new Error(`deploy ${rt} failed: ${r.out.slice(-400)}`);
      await waitFor200(urls.http + "/", { host }, 120_000, server.child);
      log(`${build.label}: ${rt} deployed`);
    }
    return { ...server, urls, token, build };
  } finally {
    Object.assign(BUILD, saved);
  }
}

/** The snapshot pool of `app` in /v1/pool (its reset p50 and CPU counters). */
async function poolOf(served, app) {
  try {
    const r = await fetch(served.urls.admin + "/v1/pool", { headers: { authorization: `Bearer ${served.token}` } });
    const j = await r.json();
    return (j.deployments ?? []).find((p) => p.app === app && p.mode === "snapshot") ?? null;
  } catch {
    return null;
  }
}

/**
 * One measured round of `runtime`'s snapshot route `host` (app `app`) on a started server
 * (`served`: { child, urls, token, build: { label } }): c=`connections` load for `duration` s
 * with the CPU of gateway, hosts and loader read around it, then `samples` sequential requests
 * for server-timing. Figures in µs per request (latencies in ms). The gateway and host CPU are
 * the whole processes': other routes of the same server must be idle meanwhile.
 */
export async function measureBreakdown(served, runtime, { host = `${runtime}.localhost`, app = `bench-${runtime}`, path = "/", duration = 5, connections = 8, samples = 300 } = {}) {
  const url = served.urls.http + path;
  const gw = served.child.proc.pid;
  const hosts = hostProcesses(gw).map((r) => r.pid);
  const cpu = () => ({ gw: procCpuUs(gw), hosts: hosts.reduce((s, p) => s + procCpuUs(p), 0), me: process.cpuUsage() });
  const pool0 = await poolOf(served, app);
  const c0 = cpu();
  const r = await load({ url, connections, duration, host });
  const c1 = cpu();
  const pool1 = await poolOf(served, app);
  const me = process.cpuUsage(c0.me);
  const n = Math.max(1, r.requests + r.non2xx);
  const agentSamples = await serverTimingSamples(url, host, samples);
  const extra = await timingExtra(url, host, Math.min(samples, 200));
  const gatewayUs = (c1.gw - c0.gw) / n;
  const hostUs = (c1.hosts - c0.hosts) / n;
  let handleUs, guestUs, resetUs, how;
  const k0 = pool0?.cpuUs;
  const k1 = pool1?.cpuUs;
  if (k0 !== undefined && k1 !== undefined && k1.requests > k0.requests) {
    // Counters the hosts report (CPU of handle and reset, guest wall time), over the load run.
    const m = k1.requests - k0.requests;
    handleUs = (k1.handleUs - k0.handleUs) / m;
    guestUs = (k1.guestUs - k0.guestUs) / m;
    resetUs = (k1.resetUs - k0.resetUs) / m;
    how = "counters";
  } else {
    // An older build: server-timing p50 of sequential requests, reset p50 of the pool (wall).
    handleUs = (median(agentSamples.run) ?? 0) * 1000;
    guestUs = extra.guest.length > 0 ? median(extra.guest) * 1000 : 0;
    resetUs = (pool1?.resetMs?.p50 ?? 0) * 1000;
    how = "p50";
  }
  return {
    runtime,
    build: served.build.label,
    rps: Math.round(r.rps),
    p50Ms: r.p50Ms,
    p99Ms: r.p99Ms,
    non2xx: r.non2xx,
    otherCpuPct: r.otherCpuPct,
    split: how,
    perRequestUs: {
      total: Math.round(gatewayUs + hostUs),
      gateway: Math.round(gatewayUs),
      host: Math.round(hostUs),
      guest: Math.round(guestUs),
      glue: Math.round(handleUs - guestUs),
      reset: Math.round(resetUs),
      ipc: Math.round(hostUs - handleUs - resetUs),
      loader: Math.round((me.user + me.system) / n),
    },
    ready: latencyStat(agentSamples.ready),
  };
}

/** The bare Hono handler (bench/hono-server.mjs) under the same load: its process CPU per request. */
export async function measureHono(hono, { duration = 5, connections = 8 } = {}) {
  const pid = hono.child.proc.pid;
  const c0 = procCpuUs(pid);
  const r = await load({ url: hono.url, connections, duration });
  const us = (procCpuUs(pid) - c0) / Math.max(1, r.requests);
  return { runtime: "hono", build: "bare handler", rps: Math.round(r.rps), p50Ms: r.p50Ms, p99Ms: r.p99Ms, otherCpuPct: r.otherCpuPct, perRequestUs: { total: Math.round(us), gateway: Math.round(us), host: 0, guest: 0, glue: 0, reset: 0, ipc: 0, loader: 0 }, ready: { p50: null, p99: null } };
}

async function timingExtra(url, host, n) {
  const out = { guest: [], cpu: [] };
  const http = await import("node:http");
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let i = 0; i < n; i++) {
      const r = await get(url, { host, agent });
      const st = parseServerTiming(r.headers["server-timing"]);
      if (st.guest !== undefined) out.guest.push(st.guest);
      if (st.cpu !== undefined) out.cpu.push(st.cpu);
    }
  } finally {
    agent.destroy();
  }
  return out;
}

/** Rows for a table: one per (runtime, build), medians over rounds. */
export function summarize(rows) {
  const key = (r) => `${r.runtime}\t${r.build}`;
  const groups = new Map();
  for (const r of rows) groups.set(key(r), [...(groups.get(key(r)) ?? []), r]);
  const out = [];
  for (const [, rs] of groups) {
    const m = (f) => median(rs.map(f).filter((x) => typeof x === "number"));
    out.push({
      runtime: rs[0].runtime,
      build: rs[0].build,
      rounds: rs.length,
      rps: Math.round(m((r) => r.rps)),
      p50Ms: round(m((r) => r.p50Ms), 3),
      p99Ms: round(m((r) => r.p99Ms), 3),
      readyP50Ms: round(m((r) => r.ready.p50), 3),
      readyP99Ms: round(m((r) => r.ready.p99), 3),
      us: Object.fromEntries(Object.keys(rs[0].perRequestUs).map((k) => [k, Math.round(m((r) => r.perRequestUs[k]))])),
      otherCpuPct: m((r) => r.otherCpuPct),
    });
  }
  return out;
}

export function renderBreakdown(summary) {
  const head = ["runtime", "build", "req/s c=8", "p50 ms", "ready p50/p99 ms", "CPU µs/req: total", "gateway", "host", "guest", "glue", "reset", "ipc+loop", "loader", "other CPU %"];
  const lines = summary.map((s) => [s.runtime, s.build, s.rps, s.p50Ms, `${s.readyP50Ms}/${s.readyP99Ms}`, s.us.total, s.us.gateway, s.us.host, s.us.guest, s.us.glue, s.us.reset, s.us.ipc, s.us.loader, s.otherCpuPct]);
  const w = head.map((h, i) => Math.max(String(h).length, ...lines.map((l) => String(l[i]).length)));
  return [head, ...lines].map((l) => l.map((c, i) => String(c).padStart(w[i])).join("  ")).join("\n");
}

async function main() {
  const args = process.argv.slice(2);
  const opt = (name, dflt) => {
    const i = args.indexOf(`--${name}`);
    return i === -1 ? dflt : args[i + 1];
  };
  const runtimes = args.filter((a, i) => !a.startsWith("--") && !args[i - 1]?.startsWith("--"));
  const list = runtimes.length > 0 ? runtimes : ["php", "python", "x86"];
  const duration = Number(opt("duration", 5));
  const rounds = Number(opt("rounds", 3));
  const baseline = opt("baseline", undefined);
  const log = logger("breakdown");
  installCleanup(log);
  const builds = [{ root: ROOT, cli: join(ROOT, "dist", "src", "cli", "main.js"), label: "this" }];
  if (baseline !== undefined) builds.unshift({ root: baseline, cli: join(baseline, "dist", "src", "cli", "main.js"), label: "baseline" });
  const served = [];
  for (const b of builds) served.push(await startServed(b, list, log));
  const rows = [];
  // The gateway's share against a bare Hono handler (the same HTTP stack, nothing behind it).
  const hono = await startHono();
  await load({ url: hono.url, connections: 8, duration: 1 });
  for (let i = 0; i < rounds; i++) rows.push(await measureHono(hono, { duration }));
  await stopChild(hono.child);
  for (const rt of list) {
    // warm every host up before the first measured round
    for (const s of served) await load({ url: s.urls.http + "/", connections: 8, duration: 2, host: `${rt}.localhost` });
    for (let i = 0; i < rounds; i++) {
      for (const s of i % 2 === 0 ? served : [...served].reverse()) {
        const r = await measureBreakdown(s, rt, { duration });
        log(`${rt} ${s.build.label} round ${i + 1}: ${r.rps} req/s, CPU µs/req ${JSON.stringify(r.perRequestUs)}, ready p50 ${r.ready.p50} ms`);
        rows.push(r);
      }
      await sleep(200);
    }
  }
  for (const s of served) await stopChild(s.child, 15_000);
  const summary = summarize(rows);
  console.log(renderBreakdown(summary));
  const bare = summary.find((s) => s.runtime === "hono")?.us.gateway;
  if (bare) for (const s of summary) if (s.runtime !== "hono") console.log(`${s.runtime} ${s.build}: gateway CPU per request ${s.us.gateway} µs = ${round(s.us.gateway / bare, 2)} × the bare Hono handler's ${bare} µs (overhead ${round((s.us.gateway / bare - 1) * 100, 0)}%)`);
  mkdirSync(join(ROOT, "bench", "results"), { recursive: true });
  const file = join(ROOT, "bench", "results", `breakdown-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  writeFileSync(file, JSON.stringify({ rows, summary }, null, 2));
  console.log(`wrote ${file}`);
  process.exit(0);
}

if (import.meta.url === `file://${process.argv[1]}`) main().catch((e) => {
  console.error(e);
  process.exit(1);
});
