/**
 * What the benchmarks share: the project's paths, child processes started in their own process
 * group and stopped (with every grandchild) on exit or a signal (installCleanup, runMain: the
 * load generator too), temporary directories removed on exit, percentiles, medians and tables,
 * the "other CPU" accounting (cpuSnapshot, foreignCpuShare, waitIdle), ps/memory rows, the
 * autocannon runner (load), HTTP polling, the zerocell build copy, server, CLI and deploy
 * polling, the native baselines' plumbing (hono, nginx.conf, apt-get), the options run.mjs and
 * python.mjs share, and the result file. What one script measures its own way stays in it.
 */
import { spawn, execFileSync, spawnSync } from "node:child_process";
import { closeSync, cpSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync } from "node:fs";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { basename, join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import net from "node:net";
import http from "node:http";
import https from "node:https";
import autocannon from "autocannon";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const CLI = join(ROOT, "dist", "src", "cli", "main.js");
/** Child processes still to stop. */
export const children = new Set();
/** Temporary directories still to remove. */
export const tempDirs = new Set();

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function startChild(name, cmd, args, opts = {}) {
  const proc = spawn(cmd, args, { detached: true, stdio: opts.stdio ?? ["ignore", "ignore", "ignore"], env: opts.env ?? process.env, cwd: opts.cwd ?? ROOT });
  const child = { name, proc, exited: false, code: null };
  child.exitPromise = new Promise((r) => proc.once("exit", (code, signal) => {
    child.exited = true;
    child.code = code ?? signal;
    r();
  }));
  proc.once("error", (e) => {
    child.exited = true;
    child.error = e;
  });
  children.add(child);
  return child;
}

export function killGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
  } catch {
    // group already gone
  }
}

/** SIGTERM the leader, wait, then SIGKILL the whole group (catches orphaned grandchildren). */
export async function stopChild(child, timeoutMs = 10_000) {
  if (!children.has(child)) return;
  if (!child.exited && child.proc.pid !== undefined) {
    try {
      child.proc.kill("SIGTERM");
    } catch {
      // gone
    }
    await Promise.race([child.exitPromise, sleep(timeoutMs)]);
  }
  if (child.proc.pid !== undefined) killGroup(child.proc.pid, "SIGKILL");
  await Promise.race([child.exitPromise, sleep(2000)]);
  children.delete(child);
}

export function tempDir(prefix) {
  const d = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.add(d);
  return d;
}

export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx];
}

/** This process and its descendants in one snapshot. */
export function ourPids(snap) {
  const ours = new Set([process.pid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, p] of snap.procs) if (!ours.has(pid) && ours.has(p.ppid)) {
      ours.add(pid);
      grew = true;
    }
  }
  return ours;
}

/**
 * Share (0..1) of all CPUs used by other processes between two snapshots. Our processes count
 * with the CPU of the children they reaped (cutime/cstime), so hosts and CLI runs that started
 * and ended between the snapshots are ours too; a process of ours that was in `a` and has been
 * reaped by `b` has its time before `a` taken off again (its parent's cutime counts all of it).
 */
export function foreignCpuShare(a, b) {
  if (a === null || b === null) return null;
  const ours = ourPids(b);
  const oursBefore = ourPids(a);
  const all = (p) => p.jiffies + p.childJiffies;
  let oursJ = 0;
  let kernelJ = 0;
  for (const [pid, p] of b.procs) {
    if (ours.has(pid)) {
      const before = a.procs.get(pid);
      oursJ += all(p) - (before === undefined ? 0 : all(before));
    } else if (pid === 2 || p.ppid === 2) kernelJ += p.jiffies - (a.procs.get(pid)?.jiffies ?? 0);
  }
  for (const pid of oursBefore) if (!b.procs.has(pid)) oursJ -= all(a.procs.get(pid));
  const totalJ = Math.max(1, b.total - a.total);
  return Math.max(0, Math.min(1, (b.busy - a.busy - oursJ - kernelJ) / totalJ));
}

export function pad(s, n, right = false) {
  s = String(s ?? "-");
  return right ? s.padEnd(n) : s.padStart(n);
}

export function parseServerTiming(h) {
  const out = {};
  for (const m of String(h ?? "").matchAll(/([\w-]+);dur=([\d.]+)/g)) out[m[1]] = Number(m[2]);
  return out;
}

/** The CLI of `build` (default: dist/ in place; see makeBuildCopy) on the server in `dataDir`. */
export function zerocellCli(dataDir, args, build = { cli: CLI, root: ROOT }) {
  const env = { ...process.env, ZEROCELL_URL: "", ZEROCELL_TOKEN: "" };
  return new Promise((res) => {
    const c = startChild("zerocell cli", process.execPath, [build.cli, ...args, "--data", dataDir], { stdio: ["ignore", "pipe", "pipe"], env, cwd: build.root });
    let out = "";
    c.proc.stdout.on("data", (d) => (out += d));
    c.proc.stderr.on("data", (d) => (out += d));
    c.exitPromise.then(() => {
      children.delete(c);
      res({ code: c.code, out });
    });
  });
}

export function topForeignProcesses() {
  try {
    const text = execFileSync("ps", ["-e", "--sort=-pcpu", "-o", "pid=,pcpu=,args="], { encoding: "utf8" });
    return text.trim().split("\n").slice(0, 6).map((l) => l.trim().slice(0, 140)).filter((l) => !l.includes("ps -e"));
  } catch {
    return [];
  }
}

// ---------------------------------------------------------------- numbers

export const round = (x, d = 2) => (Number.isFinite(x) ? Math.round(x * 10 ** d) / 10 ** d : null);
/** A share (0..1) as a whole percentage; null stays null. */
export const pct = (share) => (share === null || share === undefined ? null : Math.round(share * 100));

/** Median of the finite values of `xs` (NaN when there are none). */
export function median(xs) {
  const s = [...xs].filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** A text table: the first row is the header (underlined); the first `leftColumns` columns are left-aligned. */
export function renderTable(rows, leftColumns = 1) {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i] ?? "-").length)));
  return rows.map((r, ri) => r.map((c, i) => pad(c, w[i], i < leftColumns)).join("  ") + (ri === 0 ? "\n" + w.map((n) => "-".repeat(n)).join("  ") : "")).join("\n");
}

// ---------------------------------------------------------------- cleanup, signals, main

/** True once a signal arrived: the scripts stop starting new work. */
export let cleaningUp = false;
/** The autocannon instance running now (stopped by cleanup()). */
let currentCannon;
let cleanupHooks = {};

/**
 * Stops the load generator and every child, removes the temp dirs. `hooks` (installCleanup):
 * start() runs first, reap() after the children are stopped (and on exit).
 */
export async function cleanup() {
  cleanupHooks.start?.();
  if (currentCannon !== undefined) {
    try {
      currentCannon.stop();
    } catch {
      // ignore
    }
  }
  await Promise.all([...children].map((c) => stopChild(c, 8000)));
  cleanupHooks.reap?.();
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
  tempDirs.clear();
}

/**
 * Kills every child (process group) and removes the temp dirs on exit, and on SIGINT/SIGTERM/
 * SIGHUP: logs it, cleans up and exits 130. `hooks`: see cleanup().
 */
export function installCleanup(log, hooks = {}) {
  cleanupHooks = hooks;
  process.on("exit", () => {
    // last resort, synchronous
    for (const c of children) if (c.proc.pid !== undefined) killGroup(c.proc.pid, "SIGKILL");
    cleanupHooks.reap?.();
    for (const d of tempDirs) {
      try {
        rmSync(d, { recursive: true, force: true });
      } catch {
        // ignore
      }
    }
  });
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.on(sig, () => {
      if (cleaningUp) return;
      cleaningUp = true;
      log(`${sig}: stopping children and exiting`);
      cleanup().finally(() => process.exit(130));
    });
  }
}

/** Runs main(), then cleans up and exits with its code (the signal handler does it on a signal). */
export function runMain(main, log) {
  main().then(
    async (code) => {
      if (cleaningUp) return; // the signal handler cleans up and exits
      await cleanup();
      process.exit(code);
    },
    async (e) => {
      if (cleaningUp) return;
      log(`fatal: ${e.stack ?? e}`);
      await cleanup();
      process.exit(1);
    },
  );
}

/** A log function writing `[tag HH:MM:SS] msg` to stderr. */
export function logger(tag) {
  return (msg) => process.stderr.write(`[${tag} ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

// ---------------------------------------------------------------- the run's environment and results

/** { gitCommit, gitDirty (src/ has changes) }, as far as git answers. */
export function gitInfo() {
  const out = {};
  try {
    out.gitCommit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: ROOT, encoding: "utf8" }).trim();
    out.gitDirty = execFileSync("git", ["status", "--porcelain", "--", "src"], { cwd: ROOT, encoding: "utf8" }).trim() !== "";
  } catch {
    // not a git checkout
  }
  return out;
}

/** Newest mtime (ms) of the files below `dir` whose name ends with `ext`. */
export function newestMtime(dir, ext) {
  let newest = 0;
  const walk = (d) => {
    for (const f of readdirSync(d, { withFileTypes: true })) {
      if (f.isDirectory()) walk(join(d, f.name));
      else if (f.name.endsWith(ext)) newest = Math.max(newest, statSync(join(d, f.name)).mtimeMs);
    }
  };
  walk(dir);
  return newest;
}

/** True when some src/*.ts is newer than the built CLI (dist/ may not match the source). */
export const distOlderThanSrc = () => newestMtime(join(ROOT, "src"), ".ts") > statSync(CLI).mtimeMs;

/**
 * Prints the report and the elapsed time, writes the result (with the report as `table`) to
 * bench/results/<prefix><startedAt>.json and says where.
 */
export function writeResult(result, text, prefix = "") {
  process.stdout.write(text + `\n\nelapsed ${result.elapsedS}s\n`);
  const dir = join(ROOT, "bench", "results");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${prefix}${result.startedAt.replace(/[:.]/g, "-")}.json`);
  result.table = text;
  writeFileSync(file, JSON.stringify(result, null, 2) + "\n");
  process.stdout.write(`wrote ${file}\n`);
}

// ---------------------------------------------------------------- CPU and processes

/**
 * CPU accounting snapshot (/proc/stat and every /proc/PID/stat), to tell how much of a run's CPU
 * went to processes that are not ours (foreignCpuShare).
 */
export function cpuSnapshot() {
  try {
    const f = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
    const total = f.reduce((a, b) => a + b, 0);
    const busy = total - f[3] - (f[4] ?? 0);
    const procs = new Map();
    for (const d of readdirSync("/proc")) {
      if (!/^\d+$/.test(d)) continue;
      try {
        const st = readFileSync(`/proc/${d}/stat`, "utf8");
        const rest = st.slice(st.lastIndexOf(")") + 2).split(" ");
        // utime+stime, and cutime+cstime (children it has reaped: short-lived hosts, CLI runs)
        procs.set(Number(d), { ppid: Number(rest[1]), jiffies: Number(rest[11]) + Number(rest[12]), childJiffies: Number(rest[13]) + Number(rest[14]) });
      } catch {
        // exited
      }
    }
    return { total, busy, procs };
  } catch {
    return null;
  }
}

/** Busy fraction of all CPUs over `ms` (from /proc/stat), not counting this process. */
export async function cpuBusy(ms = 1000) {
  const read = () => {
    const f = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
    const idle = f[3] + (f[4] ?? 0);
    return { idle, total: f.reduce((a, b) => a + b, 0) };
  };
  try {
    const a = read();
    const own0 = process.cpuUsage();
    await sleep(ms);
    const b = read();
    const own = process.cpuUsage(own0);
    const totalJ = Math.max(1, b.total - a.total);
    const busyJ = totalJ - (b.idle - a.idle);
    const ownJ = ((own.user + own.system) / 1e6) * 100; // USER_HZ = 100
    return Math.max(0, (busyJ - ownJ) / totalJ); // busy share of all CPUs, not counting this process
  } catch {
    return null;
  }
}

/**
 * With `seconds` > 0: waits up to that long for other processes to use <10% of the CPUs
 * (foreignCpuShare over 2 s windows); notes it in `result.notes` when they still do.
 */
export async function waitIdle(name, result, seconds, log) {
  if (!(seconds > 0) || cleaningUp) return;
  const end = Date.now() + seconds * 1000;
  let share = 1;
  let waited = false;
  while (Date.now() < end && !cleaningUp) {
    const a = cpuSnapshot();
    await sleep(2000);
    share = foreignCpuShare(a, cpuSnapshot()) ?? 0;
    if (share < 0.1) break;
    if (!waited) log(`${name}: waiting up to ${seconds}s for the machine to be idle (${pct(share)}% other CPU; top: ${topForeignProcesses().slice(0, 2).join(" || ").slice(0, 200)})`);
    waited = true;
  }
  if (share >= 0.1) result.notes.push(`${name}: machine still busy (${pct(share)}% other CPU) after waiting ${seconds}s for idle`);
  else log(`${name}: machine idle (${pct(share)}% other CPU)`);
}

/** `ps` rows: pid, ppid, pgid, rss (KiB), args. */
export function psRows() {
  const text = execFileSync("ps", ["-e", "-o", "pid=,ppid=,pgid=,rss=,args="], { encoding: "utf8" });
  return text.trim().split("\n").map((l) => {
    const m = l.trim().match(/^(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(.*)$/);
    return m ? { pid: +m[1], ppid: +m[2], pgid: +m[3], rssKb: +m[4], args: m[5] } : null;
  }).filter(Boolean);
}

export function descendants(rootPid, rows = psRows()) {
  const out = [];
  const walk = (p) => {
    for (const r of rows) if (r.ppid === p) {
      out.push(r);
      walk(r.pid);
    }
  };
  walk(rootPid);
  return out;
}

/** What a sandbox host process's command line contains. */
export const HOST_SCRIPT_MARK = join("runtime", "host", "main.js");

/**
 * The sandbox host processes under a zerocell server: the node processes only, not the
 * unshare/setpriv wrappers around them (their command lines name the host script too).
 */
export function hostProcesses(serverPid, rows = psRows()) {
  const marked = descendants(serverPid, rows).filter((r) => r.args.includes(HOST_SCRIPT_MARK));
  return marked.filter((r) => !marked.some((c) => c.ppid === r.pid));
}

/** The node host processes inside the given host pids (the wrappers' pids, as /v1/pool lists them). */
export function nodeHostRows(pids, rows = psRows()) {
  const out = [];
  for (const pid of pids) {
    let cur = rows.find((r) => r.pid === pid);
    for (let depth = 0; cur !== undefined && depth < 4; depth++) {
      const inner = rows.find((r) => r.ppid === cur.pid);
      if (inner === undefined) break;
      cur = inner;
    }
    if (cur !== undefined) out.push(cur);
  }
  return out;
}

/** Proportional set size (shared pages split between sharers), KiB; null if unreadable. */
export function pssKb(pid) {
  try {
    const m = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8").match(/^Pss:\s+(\d+)\s+kB/m);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** RSS (and PSS when readable for all) of `procs` (ps rows); `tags` go into the row after the label. */
export function memRow(label, procs, tags = {}) {
  const rss = procs.map((p) => p.rssKb / 1024);
  const pss = procs.map((p) => pssKb(p.pid)).filter((x) => x !== null).map((x) => x / 1024);
  return {
    label,
    ...tags,
    count: procs.length,
    rssMbEach: rss.map((x) => round(x, 1)),
    rssMbMean: round(rss.reduce((a, b) => a + b, 0) / (rss.length || 1), 1),
    rssMbTotal: round(rss.reduce((a, b) => a + b, 0), 1),
    pssMbTotal: pss.length === procs.length ? round(pss.reduce((a, b) => a + b, 0), 1) : null,
  };
}

// ---------------------------------------------------------------- memory by kind (/proc/PID/smaps; bench/memory.mjs)

/** The VMAs of a process with their smaps fields (kB → bytes). */
export function readSmaps(pid) {
  const maps = [];
  let cur;
  for (const line of readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ (\d+)\s*(.*)$/.exec(line);
    if (m) {
      cur = { start: BigInt(`0x${m[1]}`), end: BigInt(`0x${m[2]}`), perm: m[3], inode: m[4], name: m[5].trim(), f: {} };
      cur.size = Number(cur.end - cur.start);
      maps.push(cur);
      continue;
    }
    const f = /^(\w+):\s+(\d+) kB$/.exec(line);
    if (f && cur) cur.f[f[1]] = Number(f[2]) * 1024;
  }
  return maps;
}

/** smaps_rollup: rss, pss, uss (private clean + dirty), bytes. */
export function readRollup(pid) {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
  const kb = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? 0) * 1024;
  return { rss: kb("Rss"), pss: kb("Pss"), uss: kb("Private_Clean") + kb("Private_Dirty") };
}

/** A wasm memory's reservation (V8 reserves ≥ 8 GiB of address space per 32-bit memory). */
const RESERVATION_BYTES = 4 * 2 ** 30;
const SNAPSHOT_MEMFD = "/memfd:zerocell-snapshot";

/**
 * PSS of a process by kind (bytes): files, linear memory (private / shared with the snapshot
 * memfd), memfd pages nobody maps, executable anonymous code, the rest of anonymous memory.
 */
export function splitSmaps(maps) {
  const out = { files: 0, linearPriv: 0, linearShared: 0, memfdUnmapped: 0, code: 0, anon: 0, linearBytes: 0 };
  // The committed part of a wasm memory: the readable/writable VMAs right below a huge PROT_NONE
  // reservation, contiguous with it (the memfd mapping over its start included).
  const linear = new Set();
  for (let i = 0; i < maps.length; i++) {
    const m = maps[i];
    if (m.perm !== "---p" || m.size < RESERVATION_BYTES) continue;
    for (let j = i - 1; j >= 0 && maps[j].end === maps[j + 1].start && maps[j].perm.startsWith("rw") && (maps[j].name === "" || maps[j].name.startsWith(SNAPSHOT_MEMFD)); j--) linear.add(maps[j]);
  }
  // A memfd (by inode) holds its whole size (it was written whole); pages some mapping has touched
  // are in PSS already, the others are RAM no PSS shows.
  const memfds = new Map();
  const noteMemfd = (m) => {
    const filePages = (m.f.Rss ?? 0) - (m.f.Anonymous ?? 0);
    const seen = memfds.get(m.inode) ?? { size: 0, mapped: 0 };
    memfds.set(m.inode, { size: Math.max(seen.size, m.size), mapped: Math.max(seen.mapped, filePages) });
  };
  for (const m of maps) {
    const pss = m.f.Pss ?? 0;
    if (linear.has(m)) {
      out.linearBytes += m.size;
      // Anonymous pages (copies written since the memfd was mapped, or memory never mapped from
      // it) vs pages of the memfd (shared with every process that maps the same pages).
      const anon = m.f.Anonymous ?? 0;
      out.linearPriv += anon;
      out.linearShared += Math.max(0, pss - anon);
      if (m.name.startsWith(SNAPSHOT_MEMFD)) noteMemfd(m);
    } else if (m.name.startsWith(SNAPSHOT_MEMFD)) {
      // Another mapping of a snapshot memfd (the read-only view the reset compares with).
      out.linearShared += pss;
      noteMemfd(m);
    } else if (m.name.startsWith("/") || m.name === "[vdso]") {
      out.files += pss;
    } else if (m.perm.includes("x")) {
      out.code += pss;
    } else {
      out.anon += pss;
    }
  }
  for (const { size, mapped } of memfds.values()) out.memfdUnmapped += Math.max(0, size - mapped);
  return out;
}

// ---------------------------------------------------------------- HTTP

export function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/** `n` distinct free loopback ports. */
export async function freePorts(n) {
  const out = new Set();
  while (out.size < n) out.add(await freePort());
  return [...out];
}

/**
 * One request (http or https, by the URL); resolves { status, headers, body } (never rejects on
 * HTTP errors). A `body` is sent form-encoded. The timeout error names the method when one is given.
 */
export function request(url, { method, host, agent, servername, body, headers = {}, timeoutMs = 30_000 } = {}) {
  const u = new URL(url);
  const mod = u.protocol === "https:" ? https : http;
  return new Promise((res, rej) => {
    const req = mod.request({
      host: u.hostname,
      port: u.port,
      path: u.pathname + u.search,
      method: method ?? "GET",
      headers: { ...(host === undefined ? {} : { host }), ...(body === undefined ? {} : { "content-type": "application/x-www-form-urlencoded", "content-length": Buffer.byteLength(body) }), ...headers },
      agent: agent ?? false,
      ...(u.protocol === "https:" ? { rejectUnauthorized: false, servername: servername ?? host } : {}),
      timeout: timeoutMs,
    });
    req.on("timeout", () => req.destroy(new Error(`timeout after ${timeoutMs} ms: ${method === undefined ? "" : `${method} `}${url}`)));
    req.on("error", rej);
    req.on("response", (r) => {
      const chunks = [];
      r.on("data", (c) => chunks.push(c));
      r.on("end", () => res({ status: r.statusCode, headers: r.headers, body: Buffer.concat(chunks).toString("utf8") }));
      r.on("error", rej);
    });
    req.end(body);
  });
}
export const get = request;

/**
 * Polls `url` (GET, `opts` as for request()) every 50 ms until a 200, for up to `deadlineMs`;
 * throws when `child` exits first. `attemptTimeoutMs(msLeft)`: each request's timeout (5 s);
 * `stopOnCleanup`: give up once a signal arrived.
 */
export async function waitFor200(url, opts = {}, deadlineMs = 20_000, child, { attemptTimeoutMs = () => 5000, stopOnCleanup = false } = {}) {
  const end = Date.now() + deadlineMs;
  let last = "";
  while (Date.now() < end && !(stopOnCleanup && cleaningUp)) {
    if (child?.exited) throw new Error(`${child.name} exited (${child.code ?? child.error?.message})`);
    try {
      const r = await request(url, { ...opts, timeoutMs: attemptTimeoutMs(end - Date.now()) });
      if (r.status === 200) return r;
      last = `status ${r.status}: ${r.body.slice(0, 200)}`;
    } catch (e) {
      last = e.message;
    }
    await sleep(50);
  }
  throw new Error(`no 200 from ${url} within ${deadlineMs} ms (last: ${last})`);
}

// ---------------------------------------------------------------- load generation

/** Runs autocannon with `opts` (stopped by cleanup() meanwhile); `onResponse` gets every response. */
export async function runAutocannon(opts, onResponse) {
  const inst = autocannon(opts);
  currentCannon = inst;
  inst.on("response", onResponse);
  const r = await inst;
  currentCannon = undefined;
  return r;
}

/** The default accounting around a load run: the share of CPU other processes used (otherCpuPct). */
export function otherCpuAccounting() {
  const snap0 = cpuSnapshot();
  return () => ({ otherCpuPct: pct(foreignCpuShare(snap0, cpuSnapshot())) });
}

/**
 * One autocannon run (HTTP/1.1, pipelining 1), for `duration` seconds or for `amount` requests in
 * all. Returns req/s (2xx only; `rpsDecimals`, default 2 below 100 req/s, else 0), exact p50/p99
 * of 2xx latency (ms), error counts, then the fields of `accounting`: it is called right before
 * the run and returns a function called right after it with the 2xx count (default: other CPU).
 */
export async function load({ url, connections, duration, amount, host, servername, timeoutS = 10, setupClient, rpsDecimals, accounting = otherCpuAccounting }) {
  const lat = [];
  let non2xx = 0;
  const statusCounts = {};
  const opts = { url, connections, pipelining: 1, timeout: timeoutS };
  if (setupClient !== undefined) opts.setupClient = setupClient;
  if (amount !== undefined) opts.amount = amount;
  else opts.duration = duration;
  if (host !== undefined) opts.headers = { host };
  if (servername !== undefined) opts.servername = servername;
  const done = accounting();
  const r = await runAutocannon(opts, (_client, status, _bytes, ms) => {
    if (status >= 200 && status < 300) lat.push(ms);
    else {
      non2xx++;
      statusCounts[status] = (statusCounts[status] ?? 0) + 1;
    }
  });
  const extra = done(lat.length);
  const sorted = Float64Array.from(lat).sort();
  const rps = lat.length / r.duration;
  return {
    connections,
    durationS: r.duration,
    requests: lat.length,
    rps: round(rps, rpsDecimals ?? (rps < 100 ? 2 : 0)),
    p50Ms: round(percentile(sorted, 50), 3),
    p99Ms: round(percentile(sorted, 99), 3),
    maxMs: round(sorted[sorted.length - 1], 3),
    non2xx,
    non2xxByStatus: statusCounts,
    errors: r.errors,
    timeouts: r.timeouts,
    ...extra,
  };
}

/**
 * `n` sequential GETs on one keep-alive connection, reading Server-Timing: per answered 200 with
 * `run` and `total`, the ready (when given), acquire (0 when missing), run, total and client
 * round trip, in ms. Stops early once a signal arrived.
 */
export async function serverTimingSamples(url, host, n) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const s = { ready: [], acquire: [], run: [], total: [], client: [], failed: 0, withoutReady: 0 };
  try {
    for (let i = 0; i < n && !cleaningUp; i++) {
      const t0 = performance.now();
      const r = await get(url, { host, agent });
      const dt = performance.now() - t0;
      const st = parseServerTiming(r.headers["server-timing"]);
      if (r.status !== 200 || st.run === undefined || st.total === undefined) {
        s.failed++;
        continue;
      }
      if (st.ready === undefined) s.withoutReady++;
      else s.ready.push(st.ready);
      s.acquire.push(st.acquire ?? 0);
      s.run.push(st.run);
      s.total.push(st.total);
      s.client.push(dt);
    }
  } finally {
    agent.destroy();
  }
  return s;
}

/** p50 and p99 (and the max with `withMax`) of `xs`, ms to 3 decimals. */
export function latencyStat(xs, withMax = false) {
  const s = Float64Array.from(xs).sort();
  return { p50: round(percentile(s, 50), 3), p99: round(percentile(s, 99), 3), ...(withMax ? { max: round(s[s.length - 1], 3) } : {}) };
}

// ---------------------------------------------------------------- the zerocell build and server

/**
 * The zerocell build under test: dist/ in place, or after makeBuildCopy() a private copy made at
 * start: dist/, migrations/, package.json and node_modules/ (hard links, same file system), so a
 * rebuild of dist/ during the run (other people work in this tree) cannot mix two builds —
 * sandbox hosts are spawned from the build's files all through the run, and the gateway's
 * permission flags allow reads from its own package root only (so node_modules cannot be a symlink).
 */
export const BUILD = { root: ROOT, cli: CLI, copied: false };

/** Copies the build into a temp dir (`prefix`), once dist/ has not changed for 10 s; notes it in result.env.build. */
export async function makeBuildCopy(result, prefix, log) {
  const dist = join(ROOT, "dist");
  for (let attempt = 1; attempt <= 20 && !cleaningUp; attempt++) {
    const before = newestMtime(dist, ".js");
    if (Date.now() - before < 10_000) {
      // a build may be writing dist/ right now
      log(`build copy: dist/ changed ${Math.round((Date.now() - before) / 1000)} s ago; waiting for it to settle`);
      await sleep(10_000);
      continue;
    }
    const dir = tempDir(prefix);
    cpSync(dist, join(dir, "dist"), { recursive: true });
    cpSync(join(ROOT, "migrations"), join(dir, "migrations"), { recursive: true });
    cpSync(join(ROOT, "package.json"), join(dir, "package.json"));
    execFileSync("cp", ["-al", join(ROOT, "node_modules"), join(dir, "node_modules")]);
    if (newestMtime(dist, ".js") !== before) {
      rmSync(dir, { recursive: true, force: true });
      tempDirs.delete(dir);
      log("build copy: dist/ changed while copying; again");
      await sleep(5000);
      continue;
    }
    Object.assign(BUILD, { root: dir, cli: join(dir, "dist", "src", "cli", "main.js"), copied: true });
    result.env.build = { copiedTo: dir, distNewestFile: new Date(before).toISOString() };
    log(`build copy: dist/ (newest file ${new Date(before).toISOString().slice(11, 19)}) copied to ${dir}`);
    return;
  }
  throw new Error("build copy: dist/ kept changing; run with --no-build-copy or later");
}

/**
 * Starts `zerocell serve` of BUILD on a new temp data dir (`dataPrefix`), loopback ports picked by
 * the kernel, its output in <dataDir>-server.log. Returns { child, dataDir, logPath, logTail(),
 * listening() }: listening() waits (30 s) for run/server.json and the "zerocell listening" line
 * and resolves the server's URLs; its errors name the server `label`.
 */
export function startZerocell({ dataPrefix, dataDir: reuse, args = [], name = "zerocell serve", label = "zerocell server", stopOnCleanup = false }) {
  // reuse: the data dir of a server started earlier (a restart); else a new temp dir.
  const dataDir = reuse ?? tempDir(dataPrefix);
  const logPath = join(dataDir, "..", `${basename(dataDir)}-server.log`);
  tempDirs.add(logPath);
  // A restart on the same data dir: what the previous server wrote does not say this one listens.
  const logFrom = existsSync(logPath) ? statSync(logPath).size : 0;
  if (reuse !== undefined) rmSync(join(dataDir, "run", "server.json"), { force: true });
  const fd = openSync(logPath, "a");
  const child = startChild(name, process.execPath, [BUILD.cli, "serve", "--data", dataDir, "--http-port", "0", "--https-port", "0", "--admin-port", "0", "--s3-port", "0", ...args], {
    stdio: ["ignore", fd, fd],
    env: { ...process.env, ZEROCELL_URL: "", ZEROCELL_TOKEN: "" },
    cwd: BUILD.root,
  });
  closeSync(fd);
  const logTail = () => {
    try {
      return readFileSync(logPath, "utf8").slice(-1500);
    } catch {
      return "";
    }
  };
  const listening = async () => {
    const serverJson = join(dataDir, "run", "server.json");
    const end = Date.now() + 90_000;
    while (!existsSync(serverJson) || !readFileSync(logPath).subarray(logFrom).toString("utf8").includes("zerocell listening")) {
      if (child.exited) throw new Error(`${label} exited early (${child.code}):\n${logTail()}`);
      if (Date.now() > end) throw new Error(`${label} did not start:\n${logTail()}`);
      if (stopOnCleanup && cleaningUp) throw new Error("interrupted");
      await sleep(50);
    }
    return JSON.parse(readFileSync(serverJson, "utf8"));
  };
  return { child, dataDir, logPath, logTail, listening };
}

/** The admin API's /v1/pool (null when it does not answer). */
export async function poolInfo(urls, token) {
  try {
    const r = await fetch(urls.admin + "/v1/pool", { headers: { authorization: `Bearer ${token}` } });
    return await r.json();
  } catch {
    return null;
  }
}

/**
 * Server-side failures in a zerocell server's log, for the report: 5xx answers per host and
 * status, and the reasons the gateway logged ("request failed" warnings, errors), counted by code
 * and message; into result.zerocellErrors and a note when there are any.
 */
export function noteServerLogFailures(logPath, result) {
  try {
    const answers = new Map();
    const reasons = new Map();
    const keep = [];
    for (const line of readFileSync(logPath, "utf8").split("\n")) {
      if (!line.startsWith("{")) continue;
      let o;
      try {
        o = JSON.parse(line);
      } catch {
        continue;
      }
      if (o.msg === "request" && o.status >= 500) {
        const k = `${o.host} ${o.status}`;
        answers.set(k, (answers.get(k) ?? 0) + 1);
      } else if (o.level === "error" || o.msg === "request failed") {
        const k = `${o.code ?? o.level}: ${String(o.message ?? o.msg).slice(0, 160)}`;
        reasons.set(k, (reasons.get(k) ?? 0) + 1);
        if (keep.length < 50) keep.push(line.slice(0, 1000));
      }
    }
    if (answers.size || reasons.size) {
      result.zerocellErrors = { answers: Object.fromEntries(answers), reasons: Object.fromEntries(reasons), lines: keep };
      const fmt = (m) => [...m].map(([k, v]) => `${v}× ${k}`).join("; ");
      result.notes.push(`zerocell server log: 5xx answers: ${fmt(answers) || "none"}; logged failures: ${fmt(reasons) || "none"}`);
    }
  } catch {
    // no log
  }
}

/**
 * Cold deploy → first 200 of one new app: the CLI deploys `bundle` as `app` (routing `host`)
 * while `httpUrl` is polled (keep-alive, every 5 ms) until its first 200, for up to `deadlineMs`.
 * `check(response)` may throw on a wrong answer. Resolves { ms, cliMs, polls, response } (ms from
 * the CLI's start; response null when no 200 came in time).
 */
export async function deployAndPoll(dataDir, httpUrl, { app, host, bundle, deadlineMs, requestTimeoutMs, check = () => {} }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const t0 = performance.now();
  let cliMs = null;
  let cliResult;
  const cliDone = zerocellCli(dataDir, ["deploy", bundle, "--app", app], BUILD).then((r) => {
    cliMs = performance.now() - t0;
    cliResult = r;
  });
  let first = null;
  let polls = 0;
  try {
    const end = Date.now() + deadlineMs;
    while (Date.now() < end) {
      if (cliResult !== undefined && cliResult.code !== 0) throw new Error(`deploy failed (${cliResult.code}): ${cliResult.out.slice(-400)}`);
      polls++;
      let r;
      try {
        r = await get(httpUrl, { host, agent, timeoutMs: requestTimeoutMs });
      } catch {
        r = undefined;
      }
      if (r?.status === 200) {
        first = { ms: performance.now() - t0, response: r };
        check(r);
        break;
      }
      await sleep(5);
    }
    await cliDone;
  } finally {
    agent.destroy();
  }
  return { ms: first?.ms ?? null, cliMs, polls, response: first?.response ?? null };
}

// ---------------------------------------------------------------- baselines

/** bench/hono-server.mjs (a bare Hono handler) in a child; resolves { child, url } once it answers 200. */
export async function startHono() {
  const child = startChild("hono", process.execPath, [join(ROOT, "bench", "hono-server.mjs")], { stdio: ["ignore", "pipe", "inherit"] });
  try {
    const port = await new Promise((res, rej) => {
      let buf = "";
      const t = setTimeout(() => rej(new Error("hono: no port within 10 s")), 10_000);
      child.proc.stdout.on("data", (d) => {
        buf += d;
        const m = buf.match(/\{"port":(\d+)\}/);
        if (m) {
          clearTimeout(t);
          res(Number(m[1]));
        }
      });
      child.exitPromise.then(() => rej(new Error(`hono exited (${child.code})`)));
    });
    const url = `http://127.0.0.1:${port}/`;
    await waitFor200(url, {}, 10_000, child);
    return { child, url };
  } catch (e) {
    await stopChild(child);
    throw e;
  }
}

/**
 * apt-get install -y --no-install-recommends `packages` (apt-get update and again on failure).
 * `blockServices`: a policy-rc.d for the time of the install keeps Debian from starting system-wide
 * services. Returns null, or the last lines of apt-get's error.
 */
export function aptInstall(packages, { blockServices = true } = {}) {
  const policy = "/usr/sbin/policy-rc.d";
  const addedPolicy = blockServices && !existsSync(policy);
  if (addedPolicy) {
    writeFileSync(policy, "#!/bin/sh\nexit 101\n");
    chmodSync(policy, 0o755);
  }
  try {
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    const install = () => spawnSync("apt-get", ["install", "-y", "--no-install-recommends", ...packages], { env, stdio: ["ignore", "ignore", "pipe"], timeout: 300_000 });
    let r = install();
    if (r.status !== 0) {
      spawnSync("apt-get", ["update"], { env, stdio: "ignore", timeout: 180_000 });
      r = install();
    }
    return r.status === 0 ? null : String(r.stderr ?? r.error?.message ?? "").trim().split("\n").slice(-2).join(" | ");
  } finally {
    if (addedPolicy) rmSync(policy, { force: true });
  }
}

/** An nginx.conf in `dir` (2 workers, keep-alive, no access log, temp paths in dir) around `servers` (server blocks). */
export function writeNginxConf(dir, servers) {
  mkdirSync(join(dir, "nginx-tmp"), { recursive: true });
  writeFileSync(join(dir, "nginx.conf"), `daemon off;
master_process on;
worker_processes 2;
user root;
pid ${join(dir, "nginx.pid")};
error_log ${join(dir, "nginx-error.log")} warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_timeout 65;
  keepalive_requests 1000000;
  client_body_temp_path ${join(dir, "nginx-tmp", "body")};
  fastcgi_temp_path ${join(dir, "nginx-tmp", "fastcgi")};
  proxy_temp_path ${join(dir, "nginx-tmp", "proxy")};
  uwsgi_temp_path ${join(dir, "nginx-tmp", "uwsgi")};
  scgi_temp_path ${join(dir, "nginx-tmp", "scgi")};
${servers}}
`);
}

/** Starts `bin` (nginx) on `dir`'s nginx.conf, its output in dir/nginx.out. */
export function startNginx(bin, dir) {
  const log = openSync(join(dir, "nginx.out"), "a");
  const child = startChild("nginx", bin, ["-p", dir + "/", "-e", join(dir, "nginx-error.log"), "-c", join(dir, "nginx.conf")], { stdio: ["ignore", log, log] });
  closeSync(log);
  return child;
}

// ---------------------------------------------------------------- options and start (run.mjs, python.mjs, keys.mjs)

/**
 * The options bench/run.mjs and bench/python.mjs share: --quick, --duration SECONDS (also
 * --duration=S), --wait-idle SECONDS, --no-native, --no-install, -h/--help (prints `usage`,
 * exits 0); `flags`: more switches, name → (o) => set an option on `o` (`defaults` first).
 * Anything else, or a bad --wait-idle / --duration, exits 2 with a message.
 */
export function parseRunArgs(argv, usage, { defaults = {}, flags = {} } = {}) {
  const o = { quick: false, duration: undefined, native: true, install: true, waitIdle: 0, ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--quick") o.quick = true;
    else if (a === "--duration") o.duration = Number(argv[++i]);
    else if (a.startsWith("--duration=")) o.duration = Number(a.slice("--duration=".length));
    else if (a === "--wait-idle") o.waitIdle = Number(argv[++i]);
    else if (a === "--no-native") o.native = false;
    else if (a === "--no-install") o.install = false;
    else if (Object.hasOwn(flags, a)) flags[a](o);
    else if (a === "-h" || a === "--help") {
      process.stdout.write(usage);
      process.exit(0);
    } else {
      process.stderr.write(`unknown argument: ${a}\n`);
      process.exit(2);
    }
  }
  if (!(o.waitIdle >= 0)) {
    process.stderr.write("--wait-idle must be a number of seconds\n");
    process.exit(2);
  }
  if (o.duration !== undefined && !(o.duration > 0)) {
    process.stderr.write("--duration must be a positive number of seconds\n");
    process.exit(2);
  }
  return o;
}

/** After result.env.cpuBusyBefore is measured: a note and a warning when other processes used >15% of the CPUs. */
/**
 * The closing lines of a report that uses the shared other-CPU measure: how busy the machine
 * was, what generated the load (`loadGenerator`), what "other CPU" means, and the run's notes.
 */
export function machineFooter(result, loadGenerator) {
  return [
    `machine CPU busy (other processes) before start: ${result.env.cpuBusyBefore === null ? "?" : Math.round(result.env.cpuBusyBefore * 100) + "%"}; load avg ${result.env.loadavgBefore.join(" ")} → ${result.env.loadavgAfter?.join(" ") ?? "?"}`,
    loadGenerator,
    "other CPU: share of all CPUs used during the run by processes that are not this bench or its children (not kernel threads); >5% means a noisy run",
    ...result.notes.map((n) => `note: ${n}`),
  ];
}

export function noteBusyBefore(result, log) {
  if (result.env.cpuBusyBefore !== null && result.env.cpuBusyBefore > 0.15) {
    result.notes.push(`machine not idle before start (${Math.round(result.env.cpuBusyBefore * 100)}% CPU busy); top: ${topForeignProcesses().slice(0, 3).join(" || ")}`);
    log(`warning: machine is ${Math.round(result.env.cpuBusyBefore * 100)}% busy before start; numbers will be noisy`);
  }
}

/** The machine, for result.env: node, CPUs, memory (with `memory`), load average. */
export function machineEnv({ memory = true } = {}) {
  return {
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    ...(memory ? { memGb: round(totalmem() / 2 ** 30, 1) } : {}),
    loadavgBefore: loadavg().map((x) => round(x, 2)),
  };
}

/** Stops a zerocell server (SIGTERM, 15 s) and notes an exit code other than 0. */
export async function stopZerocell(server, result) {
  await stopChild(server, 15_000);
  if (server.code !== 0 && server.code !== null) result.notes.push(`zerocell server exit code on SIGTERM: ${server.code}`);
}

/**
 * Runs the phases ([name, fn]) in turn until a signal arrives: `before(name)` first, then fn();
 * a failure is noted in the result (`name: FAILED: …`) and logged, then `afterFailure()` runs.
 * Resolves true when one failed.
 */
export async function runPhases(phases, result, log, { before, afterFailure } = {}) {
  let failed = false;
  for (const [name, fn] of phases) {
    if (cleaningUp) break;
    await before?.(name);
    try {
      await fn();
    } catch (e) {
      failed = true;
      result.notes.push(`${name}: FAILED: ${String(e.message).split("\n").slice(0, 6).join(" | ").slice(0, 600)}`);
      if (!cleaningUp) log(`${name} failed: ${e.stack ?? e}`);
      await afterFailure?.();
    }
  }
  return failed;
}

/** The end of a run: load average after, elapsed time since `t0`, then report(result) printed and written (writeResult). */
export function finishRun(result, t0, report, prefix = "") {
  result.env.loadavgAfter = loadavg().map((x) => round(x, 2));
  result.elapsedS = round((Date.now() - t0) / 1000, 1);
  writeResult(result, report(result), prefix);
}

/** Medians of cold deploy → first 200 rows ({ totalMs, cliExitMs, firstRequest: server-timing }), and the rows as `each`. */
export function deploySummary(out) {
  return {
    medianMs: round(median(out.map((o) => o.totalMs)), 1),
    medianCliExitMs: round(median(out.map((o) => o.cliExitMs)), 1),
    medianFirstAcquireMs: round(median(out.map((o) => o.firstRequest?.acquire ?? NaN)), 1),
    medianFirstRunMs: round(median(out.map((o) => o.firstRequest?.run ?? NaN)), 1),
    each: out,
  };
}
