#!/usr/bin/env node
/**
 * x86 runtime benchmark: one run, one table, one JSON file (bench/results/x86-<timestamp>.json).
 *
 *   flock /tmp/zerocell-bench.lock node bench/x86.mjs [--quick] [--duration SECONDS]
 *        [--only cpu,grep,http,validate] [--grep-mb N] [--cpu-rounds N] [--wait-idle SECONDS] [--no-install]
 *        [--no-build-copy]
 *
 * Every ratio is against a native run of the same program in the same run:
 *   1. cpu: bench/x86/cpu.c (sieve of Eratosthenes = byte stores, SHA-256-style mixing over a
 *      1 MB word array = loads/ALU/stores, a register-only xorshift/multiply chain), built with
 *      `musl-gcc -static -O2` into a temp dir; native: median wall time of several runs
 *      (spawnSync, process start included); emulated: Zerocell's x86 engine called directly
 *      (runProgram() from dist/, in bench/x86/engine-run.mjs, no HTTP), median of a few runs.
 *      The same for each phase alone, and for 0 rounds (process/engine start only). The
 *      checksum it prints must be the same both ways.
 *   2. grep: Debian's busybox-static (/bin/busybox) `grep -c zerocell FILE` over a generated
 *      20 MB text file; natively on the file (page cache warm), emulated with the file in the
 *      program's read-only /app image (what a bundle's files are). The count is checked against
 *      the generator's.
 *   3. http: examples/x86-cgi (src/app.c built with musl-gcc into a temp bundle, route mode
 *      snapshot) deployed on `zerocell serve` (dist/): server-timing `ready` (request arrival →
 *      guest start) over sequential keep-alive requests, then autocannon c=1, 8, 64. Baselines
 *      in the same run: the same binary as a CGI program behind nginx + fcgiwrap (Debian;
 *      fcgiwrap is apt-installed when missing, like run.mjs does for php-fpm), and a bare Hono
 *      handler (bench/hono-server.mjs). (busybox httpd -f with a cgi-bin would be the smaller
 *      native server, but it ends CGI responses by closing the connection, without
 *      Content-Length or chunking, and autocannon counts none of them.)
 *   4. validate: node bench/x86-validate.mjs --json (validator MB/s on busybox, warm median).
 * The engine (parts 1, 2) and the server (part 3) run from a private copy of dist/ made at start
 * (as bench/python.mjs does), so a rebuild of dist/ by someone else during the run cannot mix
 * two builds; part 4 runs bench/x86-validate.mjs as it is (dist/ in place).
 * Load generator: autocannon in this process (HTTP/1.1 keep-alive, pipelining 1); percentiles
 * are exact over every 2xx response time, as in run.mjs.
 * Records the load average before/after each part and the share of CPU other processes used:
 * the machine has 2 cores and other work runs on it, so run it under flock (above) and read
 * "other CPU" before trusting a number. Kills every child it started, also on error/SIGINT.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { measureBreakdown, renderBreakdown, summarize } from "./breakdown.mjs";
import { BUILD, CLI, ROOT, aptInstall, children, cleaningUp, cpuSnapshot, distOlderThanSrc, foreignCpuShare, freePort, gitInfo, installCleanup, latencyStat, load as autocannonLoad, logger, machineEnv, makeBuildCopy, median, ourPids, parseServerTiming, pct, renderTable, round, finishRun, runMain, serverTimingSamples, sleep, startChild, startHono, startNginx, startZerocell, stopChild, tempDir, topForeignProcesses, waitFor200 as waitFor200Until, writeNginxConf, zerocellCli } from "./lib.mjs";

const CPU_SRC = join(ROOT, "bench", "x86", "cpu.c");
const ENGINE_RUN = join(ROOT, "bench", "x86", "engine-run.mjs");
const CGI_EXAMPLE = join(ROOT, "examples", "x86-cgi");
const INCLUDE = join(ROOT, "include");
const BUSYBOX = "/bin/busybox";
const CONCURRENCIES = [1, 8, 64];
const LOCK = "/tmp/zerocell-bench.lock";
const CGI_HOST = "x86.localhost";
const CGI_QUERY = "7";
const CGI_EXPECT = "n=7 n^2=49";
const GREP_PATTERN = "zerocell";
const PARTS = ["cpu", "grep", "http", "validate"];
/** Sandbox-ready targets (ms), as in run.mjs. */
const READY_TARGET = { p50: 0.5, p99: 2 };

// ---------------------------------------------------------------- options

function parseArgs(argv) {
  const o = { quick: false, duration: undefined, only: new Set(PARTS), install: true, grepMb: undefined, cpuRounds: undefined, waitIdle: 0, buildCopy: true };
  const num = (name, v) => {
    const n = Number(v);
    if (!(n > 0)) {
      process.stderr.write(`${name} must be a positive number\n`);
      process.exit(2);
    }
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [k, inline] = a.includes("=") ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)] : [a, undefined];
    const val = () => inline ?? argv[++i];
    if (k === "--quick") o.quick = true;
    else if (k === "--duration") o.duration = num("--duration", val());
    else if (k === "--grep-mb") o.grepMb = num("--grep-mb", val());
    else if (k === "--cpu-rounds") o.cpuRounds = Math.round(num("--cpu-rounds", val()));
    else if (k === "--no-install") o.install = false;
    else if (k === "--no-build-copy") o.buildCopy = false;
    else if (k === "--wait-idle") o.waitIdle = num("--wait-idle", val());
    else if (k === "--only") {
      o.only = new Set(String(val()).split(",").map((s) => s.trim()).filter(Boolean));
      for (const p of o.only) if (!PARTS.includes(p)) {
        process.stderr.write(`--only: unknown part ${p} (parts: ${PARTS.join(",")})\n`);
        process.exit(2);
      }
    } else if (k === "-h" || k === "--help") {
      process.stdout.write(`usage: flock ${LOCK} node bench/x86.mjs [--quick] [--duration SECONDS (default 8; 2 with --quick)]
       [--only ${PARTS.join(",")}] [--grep-mb N (default 20; 2 with --quick)] [--cpu-rounds N (default 8; 2 with --quick)]
       [--wait-idle SECONDS] [--no-install] [--no-build-copy]
  --no-build-copy: run the engine and the server from dist/ itself instead of a private copy made at start
  --wait-idle N: before each measure, wait up to N s for other processes to use <10% of the CPUs (shared machines)
  --no-install: do not apt-get install fcgiwrap when it is missing (the native CGI baseline is skipped)
  ZEROCELL_LIBUNICORN=PATH: run the in-process parts (cpu, grep) on another libunicorn (the server's hosts get an empty environment and keep the default)
`);
      process.exit(0);
    } else {
      process.stderr.write(`unknown argument: ${a}\n`);
      process.exit(2);
    }
  }
  o.duration ??= o.quick ? 2 : 8;
  o.warmup = o.quick ? 1 : 2; // seconds of load at c=8 before each HTTP target's runs
  o.timingSamples = o.quick ? 200 : 500; // sequential keep-alive requests for server-timing
  o.cpuRounds ??= o.quick ? 2 : 8; // ~35 ms of native work per round
  o.nativeReps = o.quick ? 3 : 7;
  o.emuReps = o.quick ? 1 : 3;
  o.grepMb ??= o.quick ? 2 : 20;
  o.grepNativeReps = o.quick ? 3 : 5;
  o.grepEmuReps = o.quick ? 1 : 2; // ~4.5 s per emulated MB with libunicorn 2.0.1
  o.validateIterations = o.quick ? 10 : 25;
  return o;
}
const OPTS = parseArgs(process.argv.slice(2));

// ---------------------------------------------------------------- cleanup

const log = logger("x86 bench");
installCleanup(log);

// ---------------------------------------------------------------- helpers

const loads = () => loadavg().map((x) => round(x, 2));

/**
 * CPU used between two snapshots by other processes, two ways (% of all CPUs):
 *   otherCpuPct: summed over the processes that are not this bench or its descendants and not
 *     kernel threads (their own time and their reaped children's). What this table shows.
 *   unaccountedCpuPct: lib.mjs's foreignCpuShare(), the machine's busy time minus ours: it also
 *     counts softirq (loopback networking under load), steal, and children that were reaped
 *     without a wait() — fcgiwrap ignores SIGCHLD, so the CGI processes of the native baseline
 *     land there, although they are ours.
 */
function otherCpu(a, b) {
  if (a === null || b === null) return { otherCpuPct: null, unaccountedCpuPct: null };
  const ours = ourPids(b);
  const oursBefore = ourPids(a);
  const all = (p) => p.jiffies + p.childJiffies;
  let j = 0;
  for (const [pid, p] of b.procs) {
    if (ours.has(pid) || oursBefore.has(pid) || pid === 2 || p.ppid === 2) continue;
    const before = a.procs.get(pid);
    j += all(p) - (before === undefined ? 0 : all(before));
  }
  // an other process that ended in between: its time before `a` is in its parent's reaped time again
  for (const [pid, p] of a.procs) if (!b.procs.has(pid) && !oursBefore.has(pid) && p.ppid !== 2 && pid !== 2) j -= all(p);
  const share = Math.max(0, Math.min(1, j / Math.max(1, b.total - a.total)));
  return { otherCpuPct: Math.round(share * 100), unaccountedCpuPct: pct(foreignCpuShare(a, b)) };
}

/** CPU time (ms) of this process's reaped children (cutime + cstime; 10 ms resolution). */
function childCpuMs() {
  try {
    const st = readFileSync("/proc/self/stat", "utf8");
    const rest = st.slice(st.lastIndexOf(")") + 2).split(" ");
    return (Number(rest[13]) + Number(rest[14])) * 10;
  } catch {
    return NaN;
  }
}

/** Runs `fn` and records around it: wall time, load average before/after, other processes' CPU share. */
async function measured(fn) {
  const la0 = loads();
  const snap = cpuSnapshot();
  const t = performance.now();
  const value = await fn();
  return { value, wallS: round((performance.now() - t) / 1000, 1), loadavgBefore: la0, loadavgAfter: loads(), ...otherCpu(snap, cpuSnapshot()) };
}

/**
 * With --wait-idle N: waits up to N s for other processes to use <10% of the CPUs (2 s windows);
 * notes it when they still do. Returns the last share seen (%).
 */
async function waitIdle(name, result) {
  if (!(OPTS.waitIdle > 0) || cleaningUp) return null;
  const end = Date.now() + OPTS.waitIdle * 1000;
  let share = 1;
  let waited = false;
  const t = Date.now();
  while (Date.now() < end && !cleaningUp) {
    const a = cpuSnapshot();
    await sleep(2000);
    share = (otherCpu(a, cpuSnapshot()).otherCpuPct ?? 0) / 100;
    if (share < 0.1) break;
    if (!waited) log(`${name}: waiting up to ${OPTS.waitIdle}s for the machine to be idle (${pct(share)}% other CPU; top: ${topForeignProcesses().slice(0, 2).join(" || ").slice(0, 200)})`);
    waited = true;
  }
  (result.waits ??= []).push({ name, waitedS: round((Date.now() - t) / 1000, 1), otherCpuPct: pct(share) });
  if (share >= 0.1) result.notes.push(`${name}: machine still busy (${pct(share)}% other CPU) after waiting ${OPTS.waitIdle}s for idle`);
  else if (waited) log(`${name}: machine idle (${pct(share)}% other CPU)`);
  return pct(share);
}

function lockHeld() {
  // flock -n on a new open file description fails while anyone (the flock wrapping this run, or
  // another benchmark) holds the lock.
  const r = spawnSync("flock", ["-n", LOCK, "true"], { stdio: "ignore" });
  if (r.error) return null;
  return r.status !== 0;
}

/** GET polling for a 200 (lib.mjs's waitFor200), given up once a signal arrived. */
const waitFor200 = (url, opts, deadlineMs, child) => waitFor200Until(url, opts, deadlineMs, child, { stopOnCleanup: true });

/** Starts a child with piped stdout and resolves its whole stdout when it exits 0. */
function runChild(name, cmd, args, opts = {}) {
  return new Promise((res, rej) => {
    const c = startChild(name, cmd, args, { stdio: ["ignore", "pipe", "pipe"], env: opts.env });
    let out = "";
    let err = "";
    c.proc.stdout.on("data", (d) => (out += d));
    c.proc.stderr.on("data", (d) => {
      err += d;
      if (err.length > 64 * 1024) err = err.slice(-32 * 1024);
    });
    c.exitPromise.then(() => {
      children.delete(c);
      if (c.code === 0) res({ out, err });
      else rej(new Error(`${name} exited with ${c.code ?? c.error?.message}: ${err.slice(-600)}`));
    });
  });
}

function musl(out, src, extra = []) {
  execFileSync("musl-gcc", ["-static", "-O2", ...extra, "-o", out, src], { stdio: ["ignore", "inherit", "inherit"] });
  return out;
}

/** Native runs: wall ms (spawnSync: fork/exec and exit included) and children's CPU ms of each. */
function nativeRuns(cmd, args, reps, expect) {
  const out = [];
  let stdout = "";
  spawnSync(cmd, args, { stdio: "ignore" }); // page cache, not measured
  for (let i = 0; i < reps; i++) {
    const c0 = childCpuMs();
    const t = performance.now();
    const r = spawnSync(cmd, args, { maxBuffer: 16 << 20 });
    const ms = performance.now() - t;
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: exit ${r.status ?? r.signal}: ${String(r.stderr).slice(0, 300)}`);
    stdout = r.stdout.toString();
    if (expect !== undefined && stdout !== expect) throw new Error(`${cmd} ${args.join(" ")}: output ${JSON.stringify(stdout)} differs from ${JSON.stringify(expect)}`);
    out.push({ ms, cpuMs: childCpuMs() - c0 });
  }
  return { stdout, runs: out, medianMs: round(median(out.map((r) => r.ms)), 2), minMs: round(Math.min(...out.map((r) => r.ms)), 2), cpuMsTotal: out.reduce((a, r) => a + r.cpuMs, 0) };
}

/** Emulated runs in bench/x86/engine-run.mjs (a child, so SIGINT can stop it). */
async function engineRuns(job, label) {
  const { out, err } = await runChild(`engine ${label}`, process.execPath, [ENGINE_RUN, JSON.stringify({ root: BUILD.root, ...job })]);
  const res = JSON.parse(out.trim().split("\n").pop());
  if (err.trim()) res.log = err.trim().slice(0, 2000);
  res.medianMs = round(median(res.runs.map((r) => r.ms)), 1);
  res.minMs = round(Math.min(...res.runs.map((r) => r.ms)), 1);
  res.medianCpuMs = round(median(res.runs.map((r) => r.cpuMs)), 1);
  res.medianEmulatorMs = round(median(res.runs.map((r) => r.emulatorMs)), 1);
  for (const r of res.runs) for (const k of ["ms", "cpuMs", "emulatorMs"]) r[k] = round(r[k], 2);
  return res;
}

// ---------------------------------------------------------------- the build under test

// The build under test is lib.mjs's BUILD: dist/ in place, or its private copy (makeBuildCopy).
const distModule = (rel) => pathToFileURL(join(BUILD.root, "dist", "src", ...rel.split("/"))).href;

// ---------------------------------------------------------------- result rows (cpu, grep)

/** Fields of a cpu/grep row: the native runs (nativeRuns()), `reps` of them. */
const nativeFields = (nat, reps) => ({ nativeMedianMs: nat.medianMs, nativeMinMs: nat.minMs, nativeRuns: nat.runs.map((r) => round(r.ms, 2)), nativeCpuMsPerRun: round(nat.cpuMsTotal / reps, 1) });
/** The emulated runs (engineRuns()). */
const emulatedFields = (emu) => ({ emulatedMedianMs: emu.medianMs, emulatedMinMs: emu.minMs, emulatedRuns: emu.runs.map((r) => r.ms), emulatedCpuMedianMs: emu.medianCpuMs, emulatorMedianMs: emu.medianEmulatorMs });
/** What the engine counted in its first run. */
const engineFields = (emu) => ({ meterEvents: emu.runs[0]?.events, guestCodeBytes: emu.runs[0]?.codeBytes, syscalls: emu.runs[0]?.syscalls });
/** The load average and other CPU around the measure (measured()). */
const measureFields = (m) => ({ loadavgBefore: m.loadavgBefore, loadavgAfter: m.loadavgAfter, otherCpuPct: m.otherCpuPct, unaccountedCpuPct: m.unaccountedCpuPct });

// ---------------------------------------------------------------- 1. cpu

async function runCpu(result) {
  const dir = tempDir("zc-x86-cpu-");
  const bin = musl(join(dir, "cpu"), CPU_SRC, ["-Wall"]);
  const out = { source: "bench/x86/cpu.c", build: "musl-gcc -static -O2", rounds: OPTS.cpuRounds, rows: [] };
  result.cpu = out;
  try {
    const { validateElf } = await import(distModule("runtime/x86/validate.js"));
    const rep = validateElf(readFileSync(bin));
    out.validator = { ok: rep.ok, instructions: rep.stats?.instructions, textBytes: rep.stats?.textBytes };
  } catch (e) {
    out.validator = { error: e.message };
  }
  const cases = [
    { name: "cpu.c sieve+mix+alu", phases: "sma", rounds: OPTS.cpuRounds, nativeReps: OPTS.nativeReps, emuReps: OPTS.emuReps },
    { name: "  sieve only (byte stores)", phases: "s", rounds: OPTS.cpuRounds, nativeReps: OPTS.nativeReps, emuReps: 1 },
    { name: "  mix only (load/ALU/store)", phases: "m", rounds: OPTS.cpuRounds, nativeReps: OPTS.nativeReps, emuReps: 1 },
    { name: "  alu only (registers)", phases: "a", rounds: OPTS.cpuRounds, nativeReps: OPTS.nativeReps, emuReps: 1 },
    { name: "  start only (0 rounds)", phases: "sma", rounds: 0, nativeReps: OPTS.nativeReps, emuReps: OPTS.emuReps },
  ];
  for (const c of cases) {
    if (cleaningUp) return;
    await waitIdle(`cpu ${c.name.trim()}`, result);
    const argv = ["cpu", String(c.rounds), c.phases];
    log(`cpu: ${c.name.trim()}: native ×${c.nativeReps}`);
    const m = await measured(async () => {
      const nat = nativeRuns(bin, argv.slice(1), c.nativeReps);
      log(`cpu: ${c.name.trim()}: native median ${nat.medianMs} ms; emulated ×${c.emuReps}`);
      const emu = await engineRuns({ program: bin, argv, reps: c.emuReps, programPath: "bin/cpu" }, "cpu");
      return { nat, emu };
    });
    const { nat, emu } = m.value;
    out.unicorn ??= emu.unicorn;
    const same = emu.runs.every((r) => r.stdout === nat.stdout && r.exitCode === 0);
    if (!same) result.notes.push(`cpu ${c.name.trim()}: emulated output ${JSON.stringify(emu.runs.map((r) => r.stdout || r.stop))} differs from native ${JSON.stringify(nat.stdout)}`);
    const row = {
      name: c.name,
      argv,
      ...nativeFields(nat, c.nativeReps),
      ...emulatedFields(emu),
      ...engineFields(emu),
      ratio: round(emu.medianMs / nat.medianMs, 2),
      sameOutput: same,
      output: nat.stdout.trim(),
      ...measureFields(m),
    };
    out.rows.push(row);
    log(`cpu: ${c.name.trim()}: native ${row.nativeMedianMs} ms, emulated ${row.emulatedMedianMs} ms → ×${row.ratio} (other CPU ${row.otherCpuPct}%)`);
  }
}

// ---------------------------------------------------------------- 2. grep

/** Deterministic text: lines of 4–15 words; one line in ~50 holds the pattern. Returns the match count. */
function writeGrepText(path, bytes) {
  const words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon phi chi psi omega lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt labore magna aliqua zero cell cellar zeroth".split(" ");
  let x = 2463534242;
  const rnd = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  const chunks = [];
  let n = 0;
  let hits = 0;
  while (n < bytes) {
    const k = 4 + (rnd() % 12);
    const ws = [];
    for (let i = 0; i < k; i++) ws.push(words[rnd() % words.length]);
    if (rnd() % 50 === 0) {
      ws.splice(rnd() % k, 0, GREP_PATTERN);
      hits++;
    }
    const line = ws.join(" ") + "\n";
    chunks.push(line);
    n += line.length;
  }
  writeFileSync(path, chunks.join(""));
  return { bytes: n, lines: chunks.length, hits };
}

async function runGrep(result) {
  if (!existsSync(BUSYBOX)) throw new Error(`${BUSYBOX} missing (apt-get install busybox-static)`);
  const dir = tempDir("zc-x86-grep-");
  const file = join(dir, "text.txt");
  const gen = writeGrepText(file, Math.round(OPTS.grepMb * 1e6));
  const version = spawnSync(BUSYBOX, [], { encoding: "utf8" }).stdout?.split("\n")[0]?.trim() ?? null;
  const out = { busybox: version, file: { ...gen, mb: round(gen.bytes / 1e6, 1) }, argv: ["grep", "-c", GREP_PATTERN, "FILE"], rows: [] };
  result.grep = out;
  const expect = `${gen.hits}\n`;
  await waitIdle("grep", result);
  log(`grep: ${out.file.mb} MB, ${gen.lines} lines, ${gen.hits} matches; native ×${OPTS.grepNativeReps}`);
  const m = await measured(async () => {
    const nat = nativeRuns(BUSYBOX, ["grep", "-c", GREP_PATTERN, file], OPTS.grepNativeReps, expect);
    log(`grep: native median ${nat.medianMs} ms; emulated ×${OPTS.grepEmuReps} (file in the /app image)`);
    const emu = await engineRuns({ program: BUSYBOX, argv: ["grep", "-c", GREP_PATTERN, "/app/data/text.txt"], reps: OPTS.grepEmuReps, programPath: "bin/busybox", files: { "data/text.txt": file } }, "busybox grep");
    return { nat, emu };
  });
  const { nat, emu } = m.value;
  const same = emu.runs.every((r) => r.stdout === expect && r.exitCode === 0);
  if (!same) result.notes.push(`grep: emulated output ${JSON.stringify(emu.runs.map((r) => r.stdout || `${r.stop} ${r.stderr}`))} differs from the expected ${JSON.stringify(expect)}`);
  out.unicorn = emu.unicorn;
  out.rows.push({
    name: `busybox grep -c, ${out.file.mb} MB file`,
    ...nativeFields(nat, OPTS.grepNativeReps),
    nativeMbPerS: round(out.file.mb / (nat.medianMs / 1000), 1),
    ...emulatedFields(emu),
    emulatedMbPerS: round(out.file.mb / (emu.medianMs / 1000), 2),
    ...engineFields(emu),
    ratio: round(emu.medianMs / nat.medianMs, 1),
    sameOutput: same,
    output: nat.stdout.trim(),
    ...measureFields(m),
  });
  log(`grep: native ${nat.medianMs} ms, emulated ${emu.medianMs} ms → ×${out.rows[0].ratio}`);
}

// ---------------------------------------------------------------- 3. http

/** One autocannon run: req/s (2xx only), exact p50/p99 of 2xx latency (ms), errors, load average, other CPU. */
function load({ url, connections, duration, host, timeoutS = 10 }) {
  const accounting = () => {
    const la0 = loads();
    const snap0 = cpuSnapshot();
    return () => {
      const cpu = otherCpu(snap0, cpuSnapshot());
      return { loadavgBefore: la0, loadavgAfter: loads(), ...cpu };
    };
  };
  return autocannonLoad({ url, connections, duration, host, timeoutS, accounting });
}

async function measureTarget(result, target, base, warm = true) {
  if (warm) {
    log(`${target}: warmup ${OPTS.warmup}s`);
    await load({ ...base, connections: 8, duration: OPTS.warmup });
  }
  for (const c of CONCURRENCIES) {
    if (cleaningUp) return;
    log(`${target}: c=${c} for ${OPTS.duration}s`);
    const r = await load({ ...base, connections: c, duration: OPTS.duration });
    result.http.runs.push({ target, ...r });
    log(`${target}: c=${c}: ${r.rps} req/s, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms, non2xx ${r.non2xx}, errors ${r.errors + r.timeouts}, other CPU ${r.otherCpuPct}%`);
  }
}

/** Sequential keep-alive requests: server-timing p50/p99/max, load average and other CPU around them. */
async function serverTiming(url, host, n) {
  const snap = cpuSnapshot();
  const la0 = loads();
  const s = await serverTimingSamples(url, host, n);
  const stat = (xs) => latencyStat(xs, true);
  return { samples: s.run.length, failed: s.failed, withoutReady: s.withoutReady, readyMs: stat(s.ready), acquireMs: stat(s.acquire), runMs: stat(s.run), totalMs: stat(s.total), clientRoundTripMs: stat(s.client), loadavgBefore: la0, loadavgAfter: loads(), ...otherCpu(snap, cpuSnapshot()) };
}

/** The CGI program (examples/x86-cgi/src/app.c) built once; the bundle and the native server use the same binary. */
function buildCgi(dir) {
  const bundle = join(dir, "bundle");
  mkdirSync(join(bundle, "bin"), { recursive: true });
  mkdirSync(join(bundle, "src"), { recursive: true });
  copyFileSync(join(CGI_EXAMPLE, "src", "app.c"), join(bundle, "src", "app.c"));
  musl(join(bundle, "bin", "app"), join(bundle, "src", "app.c"), ["-I", INCLUDE]);
  const toml = readFileSync(join(CGI_EXAMPLE, "zerocell.toml"), "utf8");
  if (!toml.includes(`host = "${CGI_HOST}"`)) throw new Error(`examples/x86-cgi/zerocell.toml has no route for ${CGI_HOST}`);
  // The example's manifest, with the route's mode written out (snapshot is also the default).
  writeFileSync(join(bundle, "zerocell.toml"), toml.replace(/(\[\[routes\]\][^[]*?path\s*=\s*"\/")/, `$1\nmode = "snapshot"`));
  if (!readFileSync(join(bundle, "zerocell.toml"), "utf8").includes('mode = "snapshot"')) throw new Error("could not set the route mode in the bundle's zerocell.toml");
  return { bundle, binary: join(bundle, "bin", "app") };
}

async function runHono(result) {
  const { child, url } = await startHono();
  try {
    await measureTarget(result, "hono", { url });
  } finally {
    await stopChild(child);
  }
}

/** fcgiwrap, installed with apt-get when missing (root only; Debian's service start blocked). */
function ensureFcgiwrap(notes) {
  const bin = "/usr/sbin/fcgiwrap";
  if (existsSync(bin)) return bin;
  if (!OPTS.install) {
    notes.push("native CGI: fcgiwrap not installed and --no-install given");
    return undefined;
  }
  if (process.getuid?.() !== 0) {
    notes.push("native CGI: fcgiwrap not installed and not root (apt-get install -y fcgiwrap)");
    return undefined;
  }
  log("native CGI: installing fcgiwrap with apt-get (one-time)");
  const err = aptInstall(["fcgiwrap"]);
  if (err !== null) notes.push(`native CGI: apt-get install fcgiwrap failed: ${err}`);
  return existsSync(bin) ? bin : undefined;
}

/** nginx (2 workers, keep-alive) → fcgiwrap (2 preforked workers, unix socket) → fork/exec of the CGI binary per request. */
async function runNativeCgi(result, binary) {
  const nginx = existsSync("/usr/sbin/nginx") ? "/usr/sbin/nginx" : undefined;
  const fcgiwrap = ensureFcgiwrap(result.notes);
  if (!nginx || !fcgiwrap) {
    result.notes.push(`native CGI: SKIPPED (${!nginx ? "no /usr/sbin/nginx" : "no fcgiwrap"})`);
    return;
  }
  const dir = tempDir("zc-x86-native-");
  chmodSync(dir, 0o755);
  const script = join(dir, "cgi-bin", "app");
  mkdirSync(join(dir, "cgi-bin"));
  copyFileSync(binary, script);
  chmodSync(script, 0o755);
  const sock = join(dir, "fcgiwrap.sock");
  const port = await freePort();
  writeNginxConf(dir, `  server {
    listen 127.0.0.1:${port};
    location / {
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME ${script};
      fastcgi_pass unix:${sock};
    }
  }
`);
  const fLog = openSync(join(dir, "fcgiwrap.out"), "a");
  const fw = startChild("fcgiwrap", fcgiwrap, ["-c", "2", "-s", `unix:${sock}`], { stdio: ["ignore", fLog, fLog] });
  closeSync(fLog);
  const procs = [fw];
  try {
    for (const end = Date.now() + 10_000; !existsSync(sock);) {
      if (fw.exited) throw new Error(`fcgiwrap exited: ${readFileSync(join(dir, "fcgiwrap.out"), "utf8").slice(-400)}`);
      if (Date.now() > end) throw new Error("fcgiwrap: no socket within 10 s");
      await sleep(50);
    }
    const ng = startNginx(nginx, dir);
    procs.push(ng);
    const url = `http://127.0.0.1:${port}/?${CGI_QUERY}`;
    const first = await waitFor200(url, {}, 10_000, ng);
    if (!first.body.includes(CGI_EXPECT)) throw new Error(`native CGI answered ${JSON.stringify(first.body.slice(0, 200))}`);
    result.http.native = { server: `nginx ${spawnSync(nginx, ["-v"], { encoding: "utf8" }).stderr.trim().replace(/^nginx version: nginx\//, "")} (2 workers, keep-alive) + fcgiwrap (-c 2, unix socket), fork+exec of the CGI binary per request`, sampleBody: first.body.trim() };
    await measureTarget(result, "native CGI", { url });
  } finally {
    for (const p of procs.reverse()) await stopChild(p);
  }
}

async function runZerocellHttp(result, bundle) {
  const { child: server, dataDir, logPath, listening } = startZerocell({ dataPrefix: "zc-x86-data-", args: ["--idle-ttl-ms", "1800000"] });
  try {
    const urls = await listening();
    const t0 = performance.now();
    const dep = await zerocellCli(dataDir, ["deploy", bundle, "--app", "x86cgi"], BUILD);
    if (dep.code !== 0) throw new Error(`deploy of examples/x86-cgi failed (${dep.code}):\n${dep.out}`);
    const url = `${urls.http}/?${CGI_QUERY}`;
    const first = await waitFor200(url, { host: CGI_HOST }, 60_000, server);
    const z = { deployToFirst200Ms: round(performance.now() - t0, 1), firstRequestServerTiming: parseServerTiming(first.headers["server-timing"]), sampleBody: first.body.trim(), instanceHeader: first.headers["x-zerocell-instance"] ?? null };
    result.http.zerocell = z;
    if (!first.body.includes(CGI_EXPECT)) throw new Error(`zerocell answered ${JSON.stringify(first.body.slice(0, 200))}`);
    log(`zerocell: deployed examples/x86-cgi, first 200 after ${z.deployToFirst200Ms} ms; ${OPTS.timingSamples} sequential requests for server-timing`);
    log(`zerocell x86-cgi: warmup ${OPTS.warmup}s at c=8 (both instances up)`);
    await load({ url, host: CGI_HOST, connections: 8, duration: OPTS.warmup });
    z.serverTiming = await serverTiming(url, CGI_HOST, OPTS.timingSamples);
    log(`zerocell: ready p50 ${z.serverTiming.readyMs.p50} ms, p99 ${z.serverTiming.readyMs.p99} ms (run p50 ${z.serverTiming.runMs.p50} ms)`);
    await measureTarget(result, "zerocell x86-cgi", { url, host: CGI_HOST }, false);
    try {
      const token = readFileSync(join(dataDir, "admin-token"), "utf8").trim();
      log("zerocell x86-cgi: CPU per request by part, c=8");
      result.breakdown = [await measureBreakdown({ child: server, urls, token, build: { label: "this" } }, "x86", { host: CGI_HOST, app: "x86cgi", path: `/?${CGI_QUERY}`, duration: OPTS.duration, samples: OPTS.quick ? 100 : 300 })];
      const r = await fetch(urls.admin + "/v1/pool", { headers: { authorization: `Bearer ${token}` } });
      z.pool = await r.json();
    } catch {
      // no pool stats
    }
  } finally {
    await stopChild(server, 15_000);
    try {
      const lines = readFileSync(logPath, "utf8").split("\n");
      const failures = lines.filter((l) => /"level":"(error|warn)"|request failed/.test(l)).slice(0, 20).map((l) => l.slice(0, 500));
      const fiveXX = lines.filter((l) => /"msg":"request"/.test(l) && /"status":5\d\d/.test(l)).length;
      if (failures.length || fiveXX) {
        result.http.zerocellLog = { fiveXX, failures };
        result.notes.push(`zerocell server log: ${fiveXX} 5xx answers; ${failures.length} warn/error lines (first: ${(failures[0] ?? "-").slice(0, 200)})`);
      }
    } catch {
      // no log
    }
  }
}

async function runHttp(result) {
  result.http = { concurrencies: CONCURRENCIES, query: `?${CGI_QUERY}`, runs: [] };
  const dir = tempDir("zc-x86-cgi-");
  const { bundle, binary } = buildCgi(dir);
  const parts = [["hono", () => runHono(result)], ["native CGI", () => runNativeCgi(result, binary)], ["zerocell", () => runZerocellHttp(result, bundle)]];
  for (const [name, fn] of parts) {
    if (cleaningUp) return;
    await waitIdle(`http ${name}`, result);
    try {
      await fn();
    } catch (e) {
      result.failed = true;
      result.notes.push(`http ${name}: FAILED: ${String(e.message).split("\n").slice(0, 6).join(" | ").slice(0, 600)}`);
      if (!cleaningUp) log(`http ${name} failed: ${e.stack ?? e}`);
    }
  }
}

// ---------------------------------------------------------------- 4. validator

async function runValidate(result) {
  await waitIdle("validate", result);
  const { out } = await runChild("x86-validate", process.execPath, [join(ROOT, "bench", "x86-validate.mjs"), "--json", "--iterations", String(OPTS.validateIterations)]);
  const j = JSON.parse(out.slice(out.indexOf("{")));
  result.validate = { iterations: j.iterations, targetMbPerS: j.targetMbPerS, rows: j.rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === "number" ? round(v, 2) : v]))) };
}

// ---------------------------------------------------------------- report

function report(result) {
  const lines = [];
  const e = result.env;
  const other = (x) => (x === null || x === undefined ? "?" : `${x}%`);
  const la = (a, b) => `${a?.[0] ?? "?"}→${b?.[0] ?? "?"}`;
  const ms = (x) => (x === null || x === undefined || !Number.isFinite(x) ? "-" : x >= 10_000 ? `${round(x / 1000, 1)} s` : x >= 100 ? `${Math.round(x)} ms` : `${round(x, 1)} ms`);
  const unicorn = result.cpu?.unicorn ?? result.grep?.unicorn ?? result.env.unicorn;
  lines.push(`Zerocell x86 bench  ${result.startedAt}  ${OPTS.quick ? "quick  " : ""}${e.cpus} CPUs (${e.cpuModel})  node ${e.node}  commit ${e.gitCommit ?? "?"}${e.gitDirty ? " (src dirty)" : ""}  libunicorn ${unicorn ? `${unicorn.version} (${unicorn.library})` : "?"}`);
  lines.push(`lock ${LOCK} held: ${e.lockHeld === null ? "?" : e.lockHeld ? "yes" : "NO (not run under flock)"}; load average ${e.loadavgBefore.join(" ")} → ${e.loadavgAfter?.join(" ") ?? "?"}`);
  lines.push("");
  const head = ["measure", "zerocell", "native", "ratio", "hono", "zc/hono", "load 1m", "other CPU"];
  const rows = [head];
  const nat = result.cpu?.rows ?? [];
  if (result.cpu) {
    rows.push([`[cpu] cpu.c, ${result.cpu.rounds} rounds: wall median (emu n=${OPTS.emuReps}, native n=${OPTS.nativeReps})`, "", "", "", "", "", "", ""]);
    for (const r of nat) rows.push([r.name, `${ms(r.emulatedMedianMs)}${r.emulatedRuns.length === 1 ? " (n=1)" : ""}`, ms(r.nativeMedianMs), r.ratio === null ? "-" : `×${r.ratio}`, "", "", la(r.loadavgBefore, r.loadavgAfter), other(r.otherCpuPct)]);
  }
  if (result.grep) {
    rows.push([`[grep] busybox ${result.grep.busybox?.match(/v([\d.]+)/)?.[1] ?? ""} grep -c: wall median (emu n=${OPTS.grepEmuReps}, native n=${OPTS.grepNativeReps})`, "", "", "", "", "", "", ""]);
    for (const r of result.grep.rows) {
      rows.push([r.name, ms(r.emulatedMedianMs), ms(r.nativeMedianMs), `×${r.ratio}`, "", "", la(r.loadavgBefore, r.loadavgAfter), other(r.otherCpuPct)]);
      rows.push(["  throughput, MB/s", r.emulatedMbPerS, r.nativeMbPerS, "", "", "", "", ""]);
    }
  }
  if (result.http) {
    const h = result.http;
    rows.push([`[http] examples/x86-cgi, GET /?${CGI_QUERY}, ${OPTS.duration} s/run`, "", "", "", "", "", "", ""]);
    const st = h.zerocell?.serverTiming;
    if (st) {
      rows.push([`ready (server-timing) p50 / p99 ms, n=${st.samples}`, `${st.readyMs.p50} / ${st.readyMs.p99}`, "", "", "", "", la(st.loadavgBefore, st.loadavgAfter), other(st.otherCpuPct)]);
      rows.push(["  run in host, p50 / p99 ms", `${st.runMs.p50} / ${st.runMs.p99}`, "", "", "", "", "", ""]);
      rows.push(["  client round trip, p50 / p99 ms", `${st.clientRoundTripMs.p50} / ${st.clientRoundTripMs.p99}`, "", "", "", "", "", ""]);
    }
    const find = (t, c) => h.runs.find((r) => r.target === t && r.connections === c);
    const ratio = (a, b, d = 3) => (a && b ? round(a / b, d) : "-");
    for (const c of CONCURRENCIES) {
      const z = find("zerocell x86-cgi", c);
      const n = find("native CGI", c);
      const o = find("hono", c);
      const errs = (r) => (r && (r.non2xx || r.errors || r.timeouts) ? ` (${r.non2xx} non2xx, ${r.errors + r.timeouts} err)` : "");
      rows.push([`c=${c} req/s`, `${z?.rps ?? "-"}${errs(z)}`, `${n?.rps ?? "-"}${errs(n)}`, ratio(z?.rps, n?.rps), `${o?.rps ?? "-"}${errs(o)}`, ratio(z?.rps, o?.rps), la(z?.loadavgBefore, z?.loadavgAfter), `${other(z?.otherCpuPct)} / ${other(n?.otherCpuPct)} / ${other(o?.otherCpuPct)}`]);
      rows.push([`c=${c} latency p50 / p99 ms`, z ? `${z.p50Ms} / ${z.p99Ms}` : "-", n ? `${n.p50Ms} / ${n.p99Ms}` : "-", ratio(z?.p50Ms, n?.p50Ms, 2), o ? `${o.p50Ms} / ${o.p99Ms}` : "-", ratio(z?.p50Ms, o?.p50Ms, 2), "", ""]);
    }
  }
  if (result.validate) {
    rows.push([`[validate] x86-validate.mjs, ${result.validate.iterations} iterations`, "", "", "", "", "", "", ""]);
    for (const r of result.validate.rows) {
      rows.push([`${r.program} (${r.textBytes >= 1e5 ? `${round(r.textBytes / 1e6, 2)} MB` : `${round(r.textBytes / 1e3, 1)} KB`} code): warm median MB/s`, r.warmMedianMbPerS, r.objdumpMbPerS === null ? "-" : `${r.objdumpMbPerS} (objdump -d)`, "", "", "", la(result.validate.loadavgBefore, result.validate.loadavgAfter), other(result.validate.otherCpuPct)]);
      rows.push([`  best / CPU time / iced only / cold MB/s`, `${r.warmBestMbPerS} / ${r.warmCpuMedianMbPerS} / ${r.icedOnlyMedianMbPerS} / ${r.coldMbPerS}`, "", "", "", "", "", ""]);
    }
  }
  lines.push(renderTable(rows));
  lines.push("");
  lines.push(`build under test: ${result.env.build ? `private copy of dist/ made at start (newest file ${result.env.build.distNewestFile})` : "dist/ in place"}; the validator part runs bench/x86-validate.mjs on dist/ in place`);
  if (result.http?.native) lines.push(`native CGI: ${result.http.native.server}`);
  const st = result.http?.zerocell?.serverTiming;
  if (st) {
    const met = st.readyMs.p50 !== null && st.readyMs.p99 !== null && st.readyMs.p50 <= READY_TARGET.p50 && st.readyMs.p99 <= READY_TARGET.p99;
    result.http.zerocell.readyTargetMet = met;
    lines.push(`sandbox-ready target (ready p50 ≤ ${READY_TARGET.p50} ms, p99 ≤ ${READY_TARGET.p99} ms): ${met ? "MET" : "NOT MET"} (p50 ${st.readyMs.p50}, p99 ${st.readyMs.p99}, max ${st.readyMs.max}; ${st.failed} failed, ${st.withoutReady} without ready)`);
  }
  if (result.breakdown?.length) {
    lines.push("CPU per request by part, x86-cgi snapshot mode, c=8 (µs; bench/breakdown.mjs: host = guest + glue + reset + ipc+loop)");
    lines.push(renderBreakdown(summarize(result.breakdown)));
  }
  if (result.http?.zerocell) lines.push(`zerocell: deploy → first 200 ${result.http.zerocell.deployToFirst200Ms} ms; first request server-timing ${JSON.stringify(result.http.zerocell.firstRequestServerTiming)}`);
  const byCpu = [...(result.cpu?.rows ?? []), ...(result.grep?.rows ?? [])].filter((r) => r.nativeCpuMsPerRun >= 20);
  if (byCpu.length) lines.push(`by CPU time (emulator process user+sys / native child user+sys, 10 ms resolution): ${byCpu.map((r) => `${r.name.trim().replace(/ \(.*\)$/, "")} ×${round(r.emulatedCpuMedianMs / r.nativeCpuMsPerRun, 1)}`).join(", ")}`);
  if (result.cpu?.validator) lines.push(`cpu.c validator: ${result.cpu.validator.ok ? "OK" : `NOT OK ${result.cpu.validator.error ?? ""}`} (${result.cpu.validator.instructions ?? "?"} instructions); outputs equal native: cpu ${nat.every((r) => r.sameOutput) ? "yes" : "NO"}${result.grep ? `, grep ${result.grep.rows.every((r) => r.sameOutput) ? "yes" : "NO"} (${result.grep.file.hits} matches, ${result.grep.file.lines} lines)` : ""}`);
  lines.push("ratio: [cpu]/[grep] emulated time / native time (the slowdown); [http] req/s zerocell / native CGI (nginx + fcgiwrap), latency rows p50 / p50; zc/hono the same against the bare Hono handler");
  lines.push("emulated = Zerocell's x86 engine (runProgram(), dist/, Unicorn via koffi, meter: blocks) called directly in a child node process, timed around the call (engine start, ELF load and the run); native = spawnSync wall time (fork/exec included)");
  lines.push("load 1m: 1-minute load average before→after; other CPU: share of all CPUs used by processes that are not this bench or its children during the measure (>5% = noisy; http: zerocell / native / hono); the JSON also has unaccountedCpuPct (busy minus ours: adds softirq, steal and fcgiwrap's auto-reaped CGI processes)");
  for (const n of result.notes) lines.push(`note: ${n}`);
  return lines.join("\n");
}

// ---------------------------------------------------------------- main

async function main() {
  const t0 = Date.now();
  const result = {
    startedAt: new Date().toISOString(),
    options: { quick: OPTS.quick, duration: OPTS.duration, warmup: OPTS.warmup, only: [...OPTS.only], cpuRounds: OPTS.cpuRounds, nativeReps: OPTS.nativeReps, emuReps: OPTS.emuReps, grepMb: OPTS.grepMb, grepNativeReps: OPTS.grepNativeReps, grepEmuReps: OPTS.grepEmuReps, timingSamples: OPTS.timingSamples, concurrencies: CONCURRENCIES, validateIterations: OPTS.validateIterations, waitIdle: OPTS.waitIdle, buildCopy: OPTS.buildCopy },
    env: { ...machineEnv(), lockHeld: lockHeld(), libunicornEnv: process.env.ZEROCELL_LIBUNICORN ?? null },
    notes: [],
  };
  if (result.env.lockHeld === false) {
    result.notes.push(`not run under flock ${LOCK}: other benchmarks may have overlapped`);
    log(`warning: ${LOCK} is not held; run as: flock ${LOCK} node bench/x86.mjs ...`);
  }
  Object.assign(result.env, gitInfo());
  if (existsSync(CLI)) {
    if (distOlderThanSrc()) result.notes.push("dist/ is older than some file in src/: the measured code may not match the source");
  } else throw new Error(`${CLI} missing: build first (npx tsc -p tsconfig.json)`);
  const busy = await measured(() => sleep(1000));
  result.env.otherCpuBefore = busy.otherCpuPct;
  if (busy.otherCpuPct > 15) {
    result.notes.push(`machine not idle before start (${busy.otherCpuPct}% CPU used by others); top: ${topForeignProcesses().slice(0, 3).join(" || ")}`);
    log(`warning: other processes use ${busy.otherCpuPct}% of the CPUs; numbers will be noisy`);
  }
  if (OPTS.buildCopy && (OPTS.only.has("cpu") || OPTS.only.has("grep") || OPTS.only.has("http"))) await makeBuildCopy(result, "zc-x86-build-", log);
  const parts = [["cpu", runCpu], ["grep", runGrep], ["http", runHttp], ["validate", runValidate]];
  for (const [name, fn] of parts) {
    if (cleaningUp || !OPTS.only.has(name)) continue;
    const la0 = loads();
    const snap = cpuSnapshot();
    const t = performance.now();
    try {
      await fn(result);
    } catch (e) {
      result.failed = true;
      result.notes.push(`${name}: FAILED: ${String(e.message).split("\n").slice(0, 6).join(" | ").slice(0, 600)}`);
      if (!cleaningUp) log(`${name} failed: ${e.stack ?? e}`);
    }
    const part = result[name];
    if (part && typeof part === "object") Object.assign(part, { loadavgBefore: la0, loadavgAfter: loads(), ...otherCpu(snap, cpuSnapshot()), elapsedS: round((performance.now() - t) / 1000, 1) });
  }
  if (cleaningUp) return 130;
  if (result.cpu?.unicorn === undefined && result.grep?.unicorn === undefined) {
    try {
      const u = await import(distModule("runtime/x86/unicorn.js"));
      result.env.unicorn = { version: u.unicornVersion(), library: u.unicornLibrary() };
    } catch (e) {
      result.notes.push(`libunicorn version: ${e.message}`);
    }
  }
  finishRun(result, t0, report, "x86-");
  return result.failed ? 1 : 0;
}

runMain(main, log);
