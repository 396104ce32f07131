#!/usr/bin/env node
/**
 * Several engine instances in one Node process (issue 13, "host slots"): what an added instance
 * of a running deployment costs when it shares the process — one V8 heap, one compiled wasm
 * module, one Emscripten/Pyodide JS source — with the instances already there.
 *
 * Per runtime, in a child process started with the host's memory flags: one instance is made
 * cold (init + warm-up) and its snapshot exported to a file (as the gateway's snapshot files do),
 * then disposed; then instances are restored from that file one by one the way a host restores
 * (instantiate + importSnapshot({ file })), each answers a few requests (snapshot mode: reset
 * after each), and the process's PSS (smaps_rollup) is read after 1 and after N instances.
 * Marginal = (PSS(N) − PSS(1)) / (N − 1). Then a second app (another example) is started cold in
 * the same process: what a new deployment of the same account costs on a shared host runtime. The baseline in the same run is a 2nd *process*
 * (bench/memory.mjs measured ~178 MB PHP, ~194 MB Python): the ratio printed is against the
 * 1-instance process's PSS, which is what a 2nd host process costs at least.
 *
 *   node bench/multi-instance.mjs [--runtimes php,python] [--n 5] [--requests 3]
 *
 * Not a test; the figures vary with the machine's load and when V8 last collected.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ROOT } from "./lib.mjs";
import { HOST_MALLOC_ENV } from "../dist/src/pool/spawn.js";

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? dflt : args[i + 1];
};
const N = Number(opt("n", 5));
const REQUESTS = Number(opt("requests", 3));
const EXAMPLES = { php: "php-hello", python: "wsgi-hello" };
/** A second app of the same account, for "a new deployment on a shared host runtime". */
const OTHER_EXAMPLES = { php: "php-blog", python: "wsgi-vendored" };
const dist = (p) => join(ROOT, "dist", "src", p);

function rollupKb() {
  const text = readFileSync("/proc/self/smaps_rollup", "utf8");
  const kb = (k) => Number(text.match(new RegExp(`^${k}:\\s+(\\d+) kB`, "m"))?.[1] ?? 0);
  return { rss: kb("Rss"), pss: kb("Pss"), uss: kb("Private_Clean") + kb("Private_Dirty") };
}

async function child(runtime) {
  const bundle = await import(dist("bundle/index.js"));
  const { loadEngine } = await import(dist("runtime/load.js"));
  const { parseManifest } = await import(dist("runtime/manifest.js"));
  const image = bundle.readBundleArchive(await bundle.packDirectory(join(ROOT, "examples", EXAMPLES[runtime])));
  const manifest = parseManifest(image.entries.find((e) => e.path === "zerocell.toml").data.toString());
  const engine = await loadEngine(runtime);
  const req = () => ({ method: "GET", url: "/", headers: [["host", "localhost"], ["user-agent", "bench"]], body: new Uint8Array(0), remoteAddr: "127.0.0.1", remotePort: 40000, https: false, serverName: "localhost", serverPort: 80, scriptName: "", params: {} });
  const prepared = await engine.prepare({ deploymentId: "bench", manifest, image });
  // 1. the deployment's snapshot, made once (a host's first start) and written to a file
  const first = await engine.instantiate(prepared);
  for (let i = 0; i < 3; i++) await first.handle(req());
  first.snapshot();
  const snap = first.exportSnapshot();
  const dir = mkdtempSync(join(tmpdir(), "zerocell-multi-"));
  const path = join(dir, "memory");
  writeFileSync(path, snap.memory, { mode: 0o444 });
  const portable = { globals: snap.globals, extra: snap.extra, bytes: snap.memory.length };
  first.dispose();
  // As a host does (src/malloc.ts): a full collection, then glibc's free pages back.
  const { trimMalloc } = await import(dist("malloc.js"));
  const gc = () => {
    globalThis.gc?.();
    trimMalloc();
  };
  gc();
  // 2. instances restored from the file, one after the other, each answering requests
  const instances = [];
  const rows = [];
  const t0 = performance.now();
  for (let k = 1; k <= N; k++) {
    const a = performance.now();
    const inst = await engine.instantiate(prepared, { forRestore: true });
    await inst.importSnapshot({ memory: Buffer.alloc(0), globals: portable.globals, extra: portable.extra, file: { path, bytes: portable.bytes } });
    const restoreMs = performance.now() - a;
    let status = 0;
    for (let i = 0; i < REQUESTS; i++) {
      status = (await inst.handle(req())).status;
      await inst.reset();
    }
    instances.push(inst);
    gc();
    await new Promise((r) => setTimeout(r, 200));
    gc();
    rows.push({ instances: k, restoreMs: Math.round(restoreMs), status, ...rollupKb(), heapMb: Math.round(process.memoryUsage().heapTotal / 1048576) });
  }
  const wallMs = performance.now() - t0;
  // 3. a new deployment of the same account in the same process (another example app): it
  //    starts cold (init + warm-up + snapshot, like a host's first start) on the shared runtime.
  const otherDir = join(ROOT, "examples", OTHER_EXAMPLES[runtime]);
  const otherImage = bundle.readBundleArchive(await bundle.packDirectory(otherDir));
  const otherManifest = parseManifest(otherImage.entries.find((e) => e.path === "zerocell.toml").data.toString());
  const beforeOther = rollupKb();
  const otherPrepared = await engine.prepare({ deploymentId: "bench-other", manifest: otherManifest, image: otherImage });
  const other = await engine.instantiate(otherPrepared);
  for (let i = 0; i < 3; i++) await other.handle(req());
  other.snapshot();
  await other.reset();
  gc();
  await new Promise((r) => setTimeout(r, 200));
  gc();
  const afterOther = rollupKb();
  instances.push(other);
  const newDeployment = { app: OTHER_EXAMPLES[runtime], pssBefore: beforeOther.pss, pssAfter: afterOther.pss };
  // 4. isolation smoke check: every instance still answers
  for (const inst of instances) if ((await inst.handle(req())).status !== 200) throw new Error("an instance stopped answering");
  for (const inst of instances) inst.dispose();
  rmSync(dir, { recursive: true, force: true });
  process.stdout.write(JSON.stringify({ runtime, rows, wallMs, newDeployment }) + "\n");
  process.exit(0);
}

async function main() {
  const runtimes = opt("runtimes", "php,python").split(",");
  const results = [];
  for (const runtime of runtimes) {
    const out = await new Promise((resolve, reject) => {
      // The host's memory flags and malloc environment (src/pool/spawn.ts hostNodeArgs,
      // HOST_MALLOC_ENV), plus gc for stable readings.
      const c = spawn(process.execPath, ["--max-semi-space-size=4", "--max-old-space-size=2048", "--expose-gc", fileURLToPath(import.meta.url), "--child", runtime, "--n", String(N), "--requests", String(REQUESTS)], { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ...HOST_MALLOC_ENV } });
      let s = "";
      c.stdout.on("data", (d) => (s += d));
      c.on("exit", (code) => (code === 0 ? resolve(s) : reject(new Error(`${runtime} child exited ${code}: ${s.slice(-500)}`))));
    });
    const line = out.trim().split("\n").filter((l) => l.startsWith("{")).pop();
    results.push(JSON.parse(line));
  }
  const mb = (kb) => (kb / 1024).toFixed(1);
  for (const r of results) {
    console.log(`\n${r.runtime}: instances restored from one snapshot file in one process`);
    console.log("instances | PSS MB | RSS MB | USS MB | V8 heap MB | restore ms");
    for (const row of r.rows) console.log(`${row.instances} | ${mb(row.pss)} | ${mb(row.rss)} | ${mb(row.uss)} | ${row.heapMb} | ${row.restoreMs}`);
    const one = r.rows[0];
    const last = r.rows[r.rows.length - 1];
    const marginal = (last.pss - one.pss) / Math.max(1, r.rows.length - 1);
    console.log(`marginal PSS per added instance: ${mb(marginal)} MB; 1-instance process ${mb(one.pss)} MB (a 2nd process costs about that): ratio ${(marginal / one.pss).toFixed(3)}`);
    const second = r.rows[1];
    if (second !== undefined && r.rows.length > 2) console.log(`  1→2: ${mb(second.pss - one.pss)} MB; steady (2→${r.rows.length}): ${mb((last.pss - second.pss) / (r.rows.length - 2))} MB per instance`);
    const nd = r.newDeployment;
    if (nd !== undefined) console.log(`a new deployment (${nd.app}, cold: init + warm-up + snapshot) in the same process: +${mb(nd.pssAfter - nd.pssBefore)} MB PSS`);
  }
  console.log("\nJSON " + JSON.stringify(results));
}

if (args[0] === "--child") await child(args[1]);
else await main();
