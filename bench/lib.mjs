/**
 * What the benchmarks share: the project's paths, child processes started in their own process
 * group and stopped (with every grandchild) on exit or a signal, temporary directories removed
 * on exit, percentiles, the "other CPU" accounting, and the CLI. Each script keeps its own
 * cleanup() (it also stops its load generator) on top of `children` and `tempDirs`.
 */
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

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

export function zerocellCli(dataDir, args) {
  const env = { ...process.env, ZEROCELL_URL: "", ZEROCELL_TOKEN: "" };
  return new Promise((res) => {
    const c = startChild("zerocell cli", process.execPath, [CLI, ...args, "--data", dataDir], { stdio: ["ignore", "pipe", "pipe"], env });
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
