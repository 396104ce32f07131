#!/usr/bin/env node
/**
 * Child of bench/x86.mjs: runs one static x86-64 program in Zerocell's x86 engine (dist/, the
 * executor's runProgram(): Unicorn via koffi, CPL 3, the syscall layer over an in-memory file
 * tree) a number of times and prints one JSON line with the timings. No gateway, no HTTP, no
 * sandbox host process: the engine is called directly, as the tests do.
 *
 *   node bench/x86/engine-run.mjs JOB_JSON
 *
 * JOB_JSON: { root?: DIR (the build to load dist/ from; default this checkout),
 *   program: PATH, argv: [...], reps: N, programPath?: "bin/app" (where the program
 *   appears under /app), files?: { "data/x.txt": HOST_PATH } (added to the read-only /app image),
 *   stdinFile?: HOST_PATH, timeoutMs?, memoryMb?, meter?: "block" | "instruction" }
 *
 * It is a separate process (started in its own process group by the bench) only so that the
 * bench can stop it at once on SIGINT: a run is one synchronous native call that can last
 * minutes, and neither a signal handler nor a worker thread can interrupt it.
 * Set ZEROCELL_LIBUNICORN to run another libunicorn (the engine reads it).
 */
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const job = JSON.parse(process.argv[2]);
const ROOT = job.root ?? resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const { runProgram } = await import(pathToFileURL(join(ROOT, "dist", "src", "runtime", "x86", "index.js")).href);
const { unicornVersion, unicornLibrary } = await import(pathToFileURL(join(ROOT, "dist", "src", "runtime", "x86", "unicorn.js")).href);

const program = readFileSync(job.program);
const programPath = job.programPath ?? "prog";
const files = { [programPath]: program };
for (const [path, host] of Object.entries(job.files ?? {})) files[path] = readFileSync(host);
// A bundle image (what a deploy hands the engine): every parent directory as a "dir" entry.
const entries = new Map();
let totalBytes = 0;
for (const [path, data] of Object.entries(files)) {
  const parts = path.split("/");
  for (let i = 1; i < parts.length; i++) {
    const dir = parts.slice(0, i).join("/");
    entries.set(dir, { path: dir, kind: "dir", mode: 0o755 });
  }
  entries.set(path, { path, kind: "file", mode: 0o755, data });
  totalBytes += data.length;
}
const image = { entries: [...entries.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)), totalBytes };
const stdin = job.stdinFile ? readFileSync(job.stdinFile) : new Uint8Array(0);

const runs = [];
for (let i = 0; i < (job.reps ?? 1); i++) {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const r = runProgram(program, job.argv, stdin, {
    image,
    programPath,
    timeoutMs: job.timeoutMs ?? 30 * 60_000,
    memoryMb: job.memoryMb ?? 256,
    meter: job.meter ?? "block",
    // no budget cut-off below the timeout: the meter's default per-run budget is 50e9 blocks
    log: (line) => process.stderr.write(line + "\n"),
  });
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  runs.push({
    ms,
    cpuMs: (cpu.user + cpu.system) / 1000,
    emulatorMs: r.usage.ms,
    exitCode: r.exitCode,
    stop: r.stop.kind === "exit" ? `exit ${r.stop.code}` : `${r.stop.kind}${r.stop.message ? `: ${r.stop.message}` : ""}`,
    stdout: r.stdout.toString("utf8", 0, Math.min(r.stdout.length, 4096)),
    stderr: r.stderr.toString("utf8", 0, Math.min(r.stderr.length, 2048)),
    events: String(r.usage.events),
    meter: r.usage.meter,
    codeBytes: String(r.usage.codeBytes),
    syscalls: r.usage.syscalls,
  });
}
process.stdout.write(JSON.stringify({ unicorn: { version: unicornVersion(), library: unicornLibrary() }, runs }) + "\n");
