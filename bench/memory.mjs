#!/usr/bin/env node
/**
 * Where the memory of one ready instance goes: per sandbox *node host process* (not the
 * unshare/setpriv wrappers around it) RSS, PSS and USS from /proc/PID/smaps_rollup, split by kind
 * from /proc/PID/smaps and the host's own report (GET /v1/pool/memory: V8 heap, linear memory,
 * snapshot bytes held in JS), for PHP hello, Python (WSGI) hello, x86 hello and WordPress in
 * snapshot and daemon mode; the gateway; a bare `node` for reference; and the marginal PSS of a
 * second host of the same deployment (snapshot mode, restored from the stored snapshot).
 *
 *   node bench/memory.mjs [--apps php,python,x86,wordpress] [--requests 3] [--settle 10] [--no-second] [--build DIR] [--label TEXT]
 *
 *   --settle S: seconds to wait after the last request before reading /proc (default 10: V8's
 *   memory reducer collects an idle process's garbage some seconds after its last allocation);
 *   --build DIR: run the server of another checkout's build (DIR/dist, DIR/node_modules), for
 *   before/after tables of the same machine state; --label names the run in the report.
 *
 * Columns (MB): RSS, PSS, USS of the node host; then its PSS by kind:
 *   files   node's binary and shared libraries (file-backed, shared between hosts: small PSS)
 *   linear  the wasm linear memory (PHP, Python) or nothing (x86: guest memory is in "rest"):
 *           "priv" its private pages (written since the snapshot mapping, or never mapped from
 *           it), "shared" its pages still shared with the snapshot memfd
 *   memfd+  snapshot memfd pages no mapping has touched: RAM the host owns (shmem) that RSS/PSS
 *           do not show — counted in "total"
 *   code    executable anonymous memory (V8's JIT: wasm Liftoff/TurboFan code, JS code)
 *   v8heap  V8's heap (total_physical_size, the host's report)
 *   snapJS  snapshot bytes the host holds in JS buffers (the host's report; part of "rest")
 *   rest    everything else anonymous: malloc (V8 zones, wasm module metadata and wire bytes,
 *           ArrayBuffer backing stores, Emscripten's in-memory FS), thread stacks
 *   total   PSS + memfd+: what one more such host costs the machine
 * Writes bench/results/memory-<timestamp>.json.
 */
import { cpSync, existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BUILD, ROOT, readRollup, readSmaps, splitSmaps, cleaningUp, finishRun, get, gitInfo, installCleanup, logger, machineEnv, renderTable, round, runMain, sleep, startChild, startZerocell, stopChild, stopZerocell, tempDir, waitFor200, zerocellCli } from "./lib.mjs";

const log = logger("memory");
installCleanup(log);

const USAGE = "usage: node bench/memory.mjs [--apps php,python,x86,wordpress] [--requests N] [--settle SECONDS] [--no-second] [--instances-per-host N] [--build DIR] [--label TEXT]\n";
function parseArgs(argv) {
  const o = { apps: "php,python,x86,wordpress", requests: 3, second: true, build: undefined, label: "", settle: 10, instancesPerHost: 1 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) {
        process.stderr.write(`${a} needs a value\n${USAGE}`);
        process.exit(2);
      }
      return v;
    };
    if (a === "--apps") o.apps = value();
    else if (a === "--requests") o.requests = Math.max(1, Number(value()) || 1);
    else if (a === "--no-second") o.second = false;
    else if (a === "--settle") o.settle = Math.max(0, Number(value()) || 0);
    else if (a === "--build") o.build = value();
    else if (a === "--instances-per-host") o.instancesPerHost = Math.max(1, Number(value()) || 1);
    else if (a === "--label") o.label = value();
    else if (a === "-h" || a === "--help") {
      process.stdout.write(USAGE);
      process.exit(0);
    } else {
      process.stderr.write(`unknown argument: ${a}\n${USAGE}`);
      process.exit(2);
    }
  }
  return o;
}
const OPTS = parseArgs(process.argv.slice(2));

const MB = 1024 * 1024;
const mb = (bytes) => (bytes === null || bytes === undefined ? null : round(bytes / MB, 1));

/** Child pids of `pid` (all threads). */
function childrenOf(pid) {
  const out = [];
  try {
    for (const t of readdirSync(`/proc/${pid}/task`)) for (const c of readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").split(" ")) if (c.trim()) out.push(Number(c));
  } catch {
    // gone
  }
  return out;
}

/** One process's row: rollup, split and (for hosts) the host's own report. */
function processRow(label, pid, report = null, tags = {}) {
  const r = readRollup(pid);
  const s = splitSmaps(readSmaps(pid));
  const v8heap = report?.v8?.totalPhysicalSize ?? null;
  const snapJs = report?.instance?.snapshotHeldBytes ?? null;
  return { label, pid, ...tags, rss: r.rss, pss: r.pss, uss: r.uss, ...s, v8heap, snapJs, rest: s.anon - (v8heap ?? 0), total: r.pss + s.memfdUnmapped, report };
}

// ---------------------------------------------------------------- apps

const HOST_SUFFIX = ".mem.localhost";

/** A copy of `dir` whose manifest routes `<name>-snap` (snapshot) and `<name>-daemon` (daemon). */
function withRoutes(dir, name) {
  const out = join(tempDir(`zc-mem-${name}-`), "app");
  cpSync(dir, out, { recursive: true });
  const toml = readFileSync(join(dir, "zerocell.toml"), "utf8").replace(/\[\[routes\]\][\s\S]*$/, "");
  writeFileSync(join(out, "zerocell.toml"), `${toml}\n${["snapshot", "daemon"].map((mode) => `[[routes]]\nhost = "${name}-${mode}${HOST_SUFFIX}"\npath = "/"\nmode = "${mode}"\n`).join("\n")}`);
  return out;
}

async function appDirs(names) {
  const out = [];
  for (const n of names) {
    if (n === "php") out.push({ name: "php", dir: join(ROOT, "examples", "php-hello") });
    else if (n === "python") out.push({ name: "python", dir: join(ROOT, "examples", "wsgi-hello") });
    else if (n === "x86") out.push({ name: "x86", dir: join(ROOT, "examples", "x86-cgi") });
    else if (n === "wordpress") {
      const { buildWordPressSite } = await import("./apps/wordpress/build.mjs");
      out.push({ name: "wordpress", dir: (await buildWordPressSite({})).dir });
    } else throw new Error(`unknown app ${n} (php, python, x86, wordpress)`);
  }
  return out;
}

// ---------------------------------------------------------------- main

/**
 * GET /v1/pool/memory; on a build without it (a baseline), the hosts from GET /v1/pool with the
 * node pid found under each wrapper and no host report.
 */
async function poolMemory(urls, token) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await poolMemoryOnce(urls, token);
    } catch (e) {
      // A kept-alive connection the server closed while this process was busy: try again.
      if (attempt >= 3 || !/fetch failed/.test(String(e))) throw e;
      await sleep(500);
    }
  }
}

async function poolMemoryOnce(urls, token) {
  const auth = { headers: { authorization: `Bearer ${token}`, connection: "close" } };
  const r = await fetch(urls.admin + "/v1/pool/memory", auth);
  if (r.status === 200) return r.json();
  if (r.status !== 404) throw new Error(`GET /v1/pool/memory: ${r.status} ${await r.text()}`);
  const pool = await (await fetch(urls.admin + "/v1/pool", auth)).json();
  const hosts = pool.deployments.flatMap((d) => (d.pids ?? []).map((pid) => ({ app: d.app, mode: d.mode, pid, nodePid: innermost(pid), report: null })));
  return { gateway: null, hosts, spares: pool.spares ?? { ready: [] } };
}

/** The innermost process under a wrapper pid (unshare → setpriv exec → node). */
function innermost(pid) {
  for (let depth = 0; depth < 4; depth++) {
    const inner = childrenOf(pid);
    if (inner.length === 0) return pid;
    pid = inner[0];
  }
  return pid;
}

/** A bare node process (the floor every host pays), measured after it settled. */
async function bareNode() {
  const child = startChild("bare node", process.execPath, ["-e", "setInterval(() => {}, 1e6)"]);
  await sleep(1500);
  const row = processRow("bare node -e (reference)", child.proc.pid);
  await stopChild(child);
  return row;
}

async function main() {
  if (OPTS.build !== undefined) Object.assign(BUILD, { root: OPTS.build, cli: join(OPTS.build, "dist", "src", "cli", "main.js") });
  if (!existsSync(BUILD.cli)) throw new Error(`${BUILD.cli} missing: build first (npm run build)`);
  const t0 = Date.now();
  const result = { bench: "memory", label: OPTS.label, startedAt: new Date().toISOString(), env: { ...machineEnv(), ...gitInfo(), build: BUILD.root }, rows: [], second: [], notes: [] };
  const apps = await appDirs(OPTS.apps.split(","));
  result.rows.push(await bareNode());
  // --instances-per-host N > 1: instances of one account share host processes (slots); the
  // "2nd host" step then measures a 2nd slot (rows are per process, not per instance).
  result.instancesPerHost = OPTS.instancesPerHost;
  const server = startZerocell({ dataPrefix: "zc-mem-data-", args: ["--idle-ttl-ms", "1800000", ...(OPTS.instancesPerHost > 1 ? ["--instances-per-host", String(OPTS.instancesPerHost)] : [])] });
  try {
    const urls = await server.listening();
    const token = readFileSync(join(server.dataDir, "admin-token"), "utf8").trim();
    for (const app of apps) {
      if (cleaningUp) break;
      log(`${app.name}: deploy`);
      const dep = await zerocellCli(server.dataDir, ["deploy", withRoutes(app.dir, app.name), "--app", app.name], BUILD);
      if (dep.code !== 0) throw new Error(`${app.name}: deploy failed (${dep.code}): ${dep.out.slice(-600)}`);
      for (const mode of ["snapshot", "daemon"]) {
        const host = `${app.name}-${mode}${HOST_SUFFIX}`;
        await waitFor200(urls.http + "/", { host }, 300_000, server.child, { attemptTimeoutMs: () => 120_000 });
        for (let i = 1; i < OPTS.requests; i++) {
          const r = await get(urls.http + "/", { host, timeoutMs: 120_000 });
          if (r.status !== 200) result.notes.push(`${host}: request ${i + 1} answered ${r.status}`);
        }
      }
    }
    // Let the first hosts send their snapshots (1 s after their first request) and settle.
    await sleep(Math.max(3, OPTS.settle) * 1000);
    const mem = await poolMemory(urls, token);
    const seen = new Set();
    for (const h of mem.hosts) {
      if (h.nodePid === null || seen.has(h.nodePid)) continue;
      seen.add(h.nodePid);
      result.rows.push(processRow(`${h.app} ${h.mode}`, h.nodePid, h.report, { app: h.app, mode: h.mode }));
    }
    for (const s of mem.spares.ready ?? []) {
      result.rows.push(processRow(`spare ${s.runtime}`, innermost(s.pid), null, { app: "spare", mode: s.runtime }));
    }
    result.rows.push({ ...processRow("gateway", server.child.proc.pid, null, { app: "gateway" }), gateway: mem.gateway });

    // A second host of each snapshot-mode deployment: two requests at once make the pool grow;
    // the new host restores the stored snapshot. Marginal = the sum of the deployment's hosts'
    // PSS (+ unmapped memfd pages) after, minus the one host's before.
    if (OPTS.second) {
      for (const app of apps) {
        try {
          await secondHost(app);
        } catch (e) {
          result.notes.push(`${app.name}: 2nd host step failed: ${String(e.message ?? e).slice(0, 300)}`);
        }
      }
    }
    async function secondHost(app) {
      {
        if (cleaningUp) return;
        const host = `${app.name}-snapshot${HOST_SUFFIX}`;
        const mine = async () => (await poolMemory(urls, token)).hosts.filter((h) => h.app === app.name && h.mode === "snapshot" && h.nodePid !== null);
        // Per process: slots of one process (--instances-per-host) list the same pid.
        const totalOf = (hosts) => [...new Set(hosts.map((h) => h.nodePid))].reduce((n, pid) => n + processRow("", pid).total, 0);
        let before = await mine();
        if (before.length > 1) {
          // The pool grew already (a request while the host sent its snapshot): keep the first.
          result.notes.push(`${app.name}: ${before.length} snapshot hosts before the 2nd-host step; the marginal is all of them minus the first`);
        }
        const first = before[0];
        if (first === undefined) {
          result.notes.push(`${app.name}: no snapshot host to grow from`);
          return;
        }
        const pssBefore = totalOf([first]);
        let after = before;
        for (const end = Date.now() + 120_000; Date.now() < end && after.length < 2; ) {
          await Promise.all([1, 2, 3, 4].map(() => get(urls.http + "/", { host, timeoutMs: 120_000 }).catch(() => null)));
          await sleep(500);
          after = await mine();
        }
        if (after.length < 2) {
          result.notes.push(`${app.name}: no second host within 120 s`);
          return;
        }
        for (let i = 0; i < OPTS.requests; i++) await Promise.all([1, 2].map(() => get(urls.http + "/", { host, timeoutMs: 120_000 })));
        await sleep(Math.max(2.5, OPTS.settle) * 1000);
        after = await mine();
        const newHost = after.find((h) => h.nodePid !== first.nodePid);
        const row = newHost === undefined ? null : processRow(`${app.name} snapshot, 2nd host`, newHost.nodePid, newHost.report, { app: app.name, mode: "snapshot-2nd" });
        if (row !== null) result.rows.push(row);
        const totalAfter = totalOf(after);
        result.second.push({ app: app.name, hosts: after.length, processes: new Set(after.map((h) => h.nodePid)).size, totalBefore: pssBefore, totalAfter, marginal: (totalAfter - pssBefore) / (after.length - 1) });
      }
    }
  } finally {
    await stopZerocell(server.child, result);
  }
  finishRun(result, t0, report, "memory-");
  return 0;
}

function report(result) {
  const f = (x) => (x === null || x === undefined ? "-" : mb(x));
  const lines = [`memory per process, MB${result.label ? ` (${result.label})` : ""}; commit ${result.env.gitCommit ?? "?"}${result.env.gitDirty ? "+dirty" : ""}, build ${result.env.build}`, ""];
  lines.push(
    renderTable([
      ["process", "RSS", "PSS", "USS", "files", "linear priv", "linear shared", "memfd+", "code", "v8heap", "snapJS", "rest", "total"],
      ...result.rows.map((r) => [r.label, f(r.rss), f(r.pss), f(r.uss), f(r.files), f(r.linearPriv), f(r.linearShared), f(r.memfdUnmapped), f(r.code), f(r.v8heap), f(r.snapJs), f(r.rest), f(r.total)]),
    ]),
  );
  if (result.second.length) {
    lines.push("", `marginal memory of a 2nd ready instance of a running deployment (snapshot mode; instances per host ${result.instancesPerHost ?? 1}; (PSS + memfd+ of its host processes after − the first's before) per added instance, MB`);
    lines.push(renderTable([["app", "instances", "processes", "before", "after", "marginal"], ...result.second.map((s) => [s.app, s.hosts, s.processes ?? s.hosts, f(s.totalBefore), f(s.totalAfter), f(s.marginal)])]));
  }
  const gw = result.rows.find((r) => r.app === "gateway")?.gateway;
  if (gw?.v8) lines.push("", `gateway: V8 heap ${f(gw.v8.totalPhysicalSize)} MB, ArrayBuffers ${f(gw.process.arrayBuffers)} MB, gzip'd snapshot cache ${gw.snapshotCache.entries} entries ${f(gw.snapshotCache.bytes)} MB`);
  lines.push("", "files: node binary and libraries (shared); linear: wasm linear memory (priv = private pages, shared = pages of the snapshot memfd); memfd+: memfd pages no mapping touched (RAM not in PSS); code: executable anonymous memory (wasm and JS JIT); v8heap: V8 heap (host's report); snapJS: snapshot bytes held in JS buffers (part of rest); rest: other anonymous memory (malloc: V8 zones, wasm metadata, ArrayBuffers, FS); total = PSS + memfd+");
  lines.push(...result.notes.map((n) => `note: ${n}`));
  return lines.join("\n");
}

runMain(main, log);
