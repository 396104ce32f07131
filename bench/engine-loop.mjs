#!/usr/bin/env node
/**
 * The engine alone, in this process: no gateway, no pipe, no host event loop. Loads one example
 * app into its engine (dist/), takes the snapshot, then runs `handle` + `reset` in a loop and
 * prints per request the wall and CPU time of each step. What this shows is the floor a sandbox
 * host can reach; bench/run.mjs, python.mjs and x86.mjs compare the served path with it.
 *
 *   node bench/engine-loop.mjs [php|python|x86] [--n 2000] [--json] [--daemon] [--dir APP_DIR]
 *
 * --dir runs another app directory of that runtime (bench/run.mjs passes its generated big page:
 * the "bare engine" ceiling its CPU-bound row is compared with).
 *   node --cpu-prof --cpu-prof-dir=/tmp/prof bench/engine-loop.mjs php   # where the time goes
 *
 * Not a test; the figures vary with the machine's load (it has 2 cores and other work).
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./lib.mjs";

const args = process.argv.slice(2);
const runtime = args.find((a, i) => !a.startsWith("--") && !(i > 0 && ["--n", "--dir"].includes(args[i - 1]))) ?? "php";
const flag = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? dflt : Number(args[i + 1]);
};
const N = flag("n", 2000);
const daemon = args.includes("--daemon");
const asJson = args.includes("--json");
const dirArg = args.includes("--dir") ? args[args.indexOf("--dir") + 1] : undefined;

const EXAMPLES = { php: "php-hello", python: "wsgi-hello", x86: "x86-cgi" };
const dist = (p) => join(ROOT, "dist", "src", p);

/** Runs `handle` (+ `reset`) N times; per request wall and CPU µs of each step. */
export async function engineLoop(runtimeName, n, { reset = true, dir = join(ROOT, "examples", EXAMPLES[runtimeName]) } = {}) {
  if (runtimeName === "x86" && !existsSync(join(dir, "bin", "app"))) execFileSync(process.execPath, [join(ROOT, "scripts", "build-examples.mjs")], { stdio: "inherit" });
  const bundle = await import(dist("bundle/index.js"));
  const { loadEngine } = await import(dist("runtime/load.js"));
  const image = bundle.readBundleArchive(await bundle.packDirectory(dir));
  const { parseManifest } = await import(dist("runtime/manifest.js"));
  const manifest = parseManifest(image.entries.find((e) => e.path === "zerocell.toml").data.toString());
  const engine = await loadEngine(manifest.runtime);
  const prepared = await engine.prepare({ deploymentId: "bench", manifest, image });
  const inst = await engine.instantiate(prepared);
  const req = () => ({ method: "GET", url: "/", headers: [["host", "localhost"], ["user-agent", "bench"], ["accept", "*/*"]], body: new Uint8Array(0), remoteAddr: "127.0.0.1", remotePort: 40000, https: false, serverName: "localhost", serverPort: 80, scriptName: "", params: {} });
  for (let i = 0; i < 20; i++) await inst.handle(req());
  inst.snapshot();
  const warm = Math.min(200, n);
  const sample = { handleUs: [], handleCpuUs: [], resetUs: [], resetCpuUs: [] };
  let status = 0;
  let bytes = 0;
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  for (let i = 0; i < n + warm; i++) {
    const a = performance.now();
    const ca = process.cpuUsage();
    const res = await inst.handle(req());
    const b = performance.now();
    const cb = process.cpuUsage(ca);
    status = res.status;
    bytes = res.body.byteLength;
    let rw = 0;
    let rc = 0;
    if (reset) {
      const cr = process.cpuUsage();
      await inst.reset();
      rw = performance.now() - b;
      const c = process.cpuUsage(cr);
      rc = c.user + c.system;
    }
    if (i < warm) continue;
    sample.handleUs.push((b - a) * 1000);
    sample.handleCpuUs.push(cb.user + cb.system);
    sample.resetUs.push(rw * 1000);
    sample.resetCpuUs.push(rc);
  }
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(c0);
  inst.dispose();
  const med = (xs) => {
    const s = [...xs].sort((x, y) => x - y);
    return s.length === 0 ? null : Math.round(s[Math.floor(s.length / 2)]);
  };
  const p99 = (xs) => {
    const s = [...xs].sort((x, y) => x - y);
    return s.length === 0 ? null : Math.round(s[Math.min(s.length - 1, Math.floor(s.length * 0.99))]);
  };
  return {
    runtime: runtimeName,
    app: dir,
    requests: n,
    status,
    bytes,
    reset,
    reqPerS: Math.round(((n + warm) / wallMs) * 1000),
    cpuUsPerReq: Math.round((cpu.user + cpu.system) / (n + warm)),
    handle: { p50Us: med(sample.handleUs), p99Us: p99(sample.handleUs), cpuP50Us: med(sample.handleCpuUs) },
    reset: reset ? { p50Us: med(sample.resetUs), p99Us: p99(sample.resetUs), cpuP50Us: med(sample.resetCpuUs) } : null,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await engineLoop(runtime, N, { reset: !daemon, ...(dirArg ? { dir: dirArg } : {}) });
  if (asJson) console.log(JSON.stringify(r));
  else {
    console.log(`${r.runtime} ${dirArg ?? EXAMPLES[r.runtime]} in-process, ${r.requests} requests (${daemon ? "daemon: no reset" : "handle + reset"}), status ${r.status}, ${r.bytes} B`);
    console.log(`  ${r.reqPerS} req/s on one core, ${r.cpuUsPerReq} µs CPU per request`);
    console.log(`  handle p50 ${r.handle.p50Us} µs (CPU ${r.handle.cpuP50Us}), p99 ${r.handle.p99Us} µs`);
    if (r.reset) console.log(`  reset  p50 ${r.reset.p50Us} µs (CPU ${r.reset.cpuP50Us}), p99 ${r.reset.p99Us} µs`);
  }
  process.exit(0);
}
