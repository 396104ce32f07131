#!/usr/bin/env node
/**
 * x86 validator speed: MB/s of executable code validated (the target is ≥ 50 MB/s).
 *
 *   node bench/x86-validate.mjs [--iterations N] [--json]
 *
 * For Debian's busybox-static (1.5 MB of glibc code) and the musl hello fixture (4.7 KB):
 *   1. cold: a fresh `node` process imports the validator and validates once (what
 *      `zerocell validate` pays): import time and the first validation;
 *   2. warm: N validations in this process (what a long-running gateway pays per deploy):
 *      median and best by wall clock, median by this process's CPU time (steadier on a busy
 *      machine), with the JavaScript fast path (the default) and, as the baseline in the same
 *      run, iced-x86 decoding every instruction (`fastPath: false`);
 *   3. a native reference: `objdump -d` over the same file (C; it also formats every
 *      instruction, so it does more work per byte).
 * Uses dist/ (built with `npx tsc -p tsconfig.json` when missing) and builds the fixtures with
 * scripts/build-x86-fixtures.sh. Prints the load average: on a shared machine it moves the
 * numbers more than anything else.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { loadavg, cpus } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const VALIDATOR = join(ROOT, "dist", "src", "runtime", "x86", "validate.js");
const FIXTURES = join(ROOT, "test", "fixtures", "build", "x86");
const TARGET_MB_S = 50;

const args = process.argv.slice(2);
const json = args.includes("--json");
const iterArg = args.indexOf("--iterations");
const iterations = iterArg >= 0 ? Number(args[iterArg + 1]) : 25;

if (!existsSync(VALIDATOR)) execFileSync("npx", ["tsc", "-p", "tsconfig.json"], { cwd: ROOT, stdio: "inherit" });
execFileSync(join(ROOT, "scripts", "build-x86-fixtures.sh"), { stdio: ["ignore", "inherit", "inherit"] });

const programs = ["busybox", "hello"].filter((p) => existsSync(join(FIXTURES, p)));
const { validateElf } = await import(pathToFileURL(VALIDATOR).href);

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const mbps = (bytes, ms) => bytes / 1e6 / (ms / 1000);

/** One validation in a fresh process: import cost and the first run. */
function cold(path) {
  const script = `
    const t0 = performance.now();
    const { validateElf } = await import(${JSON.stringify(pathToFileURL(VALIDATOR).href)});
    const t1 = performance.now();
    const { readFileSync } = await import("node:fs");
    const r = validateElf(readFileSync(${JSON.stringify(path)}));
    const t2 = performance.now();
    process.stdout.write(JSON.stringify({ importMs: t1 - t0, firstMs: t2 - t1, ok: r.ok }));`;
  const res = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
  if (res.status !== 0) throw new Error(`cold run failed: ${res.stderr}`);
  return JSON.parse(res.stdout);
}

/** n validations: wall-clock ms and this process's CPU ms (user + system) of each. */
function warm(bytes, fastPath, n) {
  const ms = [];
  const cpu = [];
  let report;
  for (let i = 0; i < n; i++) {
    const c = process.cpuUsage();
    const t = performance.now();
    report = validateElf(bytes, { fastPath });
    ms.push(performance.now() - t);
    const d = process.cpuUsage(c);
    cpu.push((d.user + d.system) / 1000);
  }
  return { ms, cpu, report };
}

function objdump(path, textBytes) {
  if (spawnSync("objdump", ["--version"]).status !== 0) return null;
  const runs = [];
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    const r = spawnSync("objdump", ["-d", "--no-show-raw-insn", path], { maxBuffer: 1 << 30 });
    if (r.status !== 0) return null;
    runs.push(performance.now() - t);
  }
  const best = Math.min(...runs);
  return { ms: best, mbPerS: mbps(textBytes, best) };
}

const rows = [];
for (const name of programs) {
  const path = join(FIXTURES, name);
  const bytes = readFileSync(path);
  const c = cold(path);
  const n = name === "busybox" ? iterations : iterations * 8;
  // warm up both paths once, then measure
  warm(bytes, true, 2);
  warm(bytes, false, 1);
  const fast = warm(bytes, true, n);
  const iced = warm(bytes, false, Math.max(3, Math.floor(n / 3)));
  const text = fast.report.stats.textBytes;
  const od = objdump(path, text);
  rows.push({
    program: name,
    ok: fast.report.ok,
    textBytes: text,
    instructions: fast.report.stats.instructions,
    coldImportMs: c.importMs,
    coldFirstMs: c.firstMs,
    coldMbPerS: mbps(text, c.firstMs),
    warmMedianMs: median(fast.ms),
    warmMedianMbPerS: mbps(text, median(fast.ms)),
    warmBestMbPerS: mbps(text, Math.min(...fast.ms)),
    warmCpuMedianMbPerS: mbps(text, median(fast.cpu)),
    icedOnlyMedianMbPerS: mbps(text, median(iced.ms)),
    fastOverIced: median(iced.ms) / median(fast.ms),
    objdumpMbPerS: od?.mbPerS ?? null,
  });
}

const f1 = (x) => (x === null ? "-" : x.toFixed(1));
const load = loadavg().map((l) => l.toFixed(2)).join(" ");
if (json) {
  process.stdout.write(JSON.stringify({ node: process.version, cpus: cpus().length, loadavg: loadavg(), iterations, targetMbPerS: TARGET_MB_S, rows }, null, 2) + "\n");
} else {
  console.log(`x86 validator (node ${process.version}, ${cpus().length} CPUs, load ${load}, ${iterations} iterations)`);
  console.log("");
  const header = ["program", "code bytes", "instructions", "cold import ms", "cold 1st ms", "warm median ms", "warm MB/s", "best MB/s", "CPU-time MB/s", "iced only MB/s", "fast/iced", "objdump -d MB/s"];
  const table = [header, ...rows.map((r) => [r.program, String(r.textBytes), String(r.instructions), f1(r.coldImportMs), f1(r.coldFirstMs), f1(r.warmMedianMs), f1(r.warmMedianMbPerS), f1(r.warmBestMbPerS), f1(r.warmCpuMedianMbPerS), f1(r.icedOnlyMedianMbPerS), `${r.fastOverIced.toFixed(1)}x`, f1(r.objdumpMbPerS)])];
  const widths = header.map((_, i) => Math.max(...table.map((row) => row[i].length)));
  for (const row of table) console.log(row.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  "));
  console.log("");
  for (const r of rows) {
    const verdict = r.warmMedianMbPerS >= TARGET_MB_S ? "meets" : "BELOW";
    console.log(`${r.program}: ${f1(r.warmMedianMbPerS)} MB/s warm median (wall clock) ${verdict} the ${TARGET_MB_S} MB/s target; best ${f1(r.warmBestMbPerS)}, by CPU time ${f1(r.warmCpuMedianMbPerS)}, cold first run ${f1(r.coldMbPerS)}`);
  }
}
