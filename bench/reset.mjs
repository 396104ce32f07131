#!/usr/bin/env node
/**
 * Reset micro-benchmark (ADR 002): the time to put an engine instance back to its snapshot after
 * one hello-world request, new (dirty pages: the kernel lists written pages) against old (compare
 * the whole image), PHP and Python, in one process, one run. Prints p50/p99 in µs and the ratio
 * old/new; writes bench/results/reset-<timestamp>.json.
 *
 *   npm run build && node bench/reset.mjs [--requests 300] [--no-python]
 *
 * Measured per request: `instance.reset()` as the host calls it (wipe /tmp, close the request's
 * streams, restore memory and globals; Python also re-fetches its JS-side state) — "reset" — and
 * inside it the memory restore alone — "restore". Both instances of an engine are prepared the
 * same way; the old one's snapshot is taken with ZEROCELL_RESET=compare. Requests alternate
 * between the two instances so machine load hits both alike. Runs the engines in this process
 * (no permission model: the sandbox host's flags are not what is measured here).
 */
import { writeFileSync, mkdirSync, readFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { loadavg } from "node:os";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const DIST = join(ROOT, "dist", "src");
const args = process.argv.slice(2);
const REQUESTS = Number(args[args.indexOf("--requests") + 1] ?? 300) || 300;
const PYTHON = !args.includes("--no-python");

const { packDirectory, readBundleArchive } = await import(join(DIST, "bundle", "index.js"));
const { parseManifest } = await import(join(DIST, "runtime", "manifest.js"));

function request(url) {
  return { method: "GET", url, headers: [["host", "bench.localhost"]], body: new Uint8Array(0), remoteAddr: "127.0.0.1", remotePort: 1, https: true, serverName: "bench.localhost", serverPort: 443, scriptName: "", params: {} };
}

async function loadApp(dir) {
  const image = readBundleArchive(await packDirectory(dir));
  const manifest = parseManifest(readFileSync(join(dir, "zerocell.toml"), "utf8"));
  return { image, manifest };
}

/** An instance after a warm-up request and its snapshot; `compare` forces the old reset. */
async function makeInstance(engine, spec, compare) {
  const prepared = await engine.prepare(spec);
  const inst = await engine.instantiate(prepared);
  await inst.handle(request("/"));
  const before = process.env.ZEROCELL_RESET;
  if (compare) process.env.ZEROCELL_RESET = "compare";
  else delete process.env.ZEROCELL_RESET;
  try {
    inst.snapshot();
  } finally {
    if (before === undefined) delete process.env.ZEROCELL_RESET;
    else process.env.ZEROCELL_RESET = before;
  }
  const method = inst.resetMethod;
  if (method !== (compare ? "compare" : "dirty-pages")) throw new Error(`bench: expected the ${compare ? "compare" : "dirty-pages"} reset, got ${method}`);
  return inst;
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

async function measure(name, engine, app) {
  const spec = { deploymentId: `bench-${name}`, manifest: app.manifest, image: app.image };
  const insts = { new: await makeInstance(engine, spec, false), old: await makeInstance(engine, spec, true) };
  const samples = { new: { reset: [], restore: [], scan: [], written: [], copied: [] }, old: { reset: [], restore: [], scan: [], written: [], copied: [] } };
  // Warm both (first resets fault pages in), then measure alternately.
  for (let i = 0; i < REQUESTS + 20; i++) {
    for (const kind of i % 2 === 0 ? ["new", "old"] : ["old", "new"]) {
      const inst = insts[kind];
      const res = await inst.handle(request("/"));
      if (res.status !== 200) throw new Error(`bench: ${name} answered ${res.status}`);
      const t0 = performance.now();
      await inst.reset();
      const dt = performance.now() - t0;
      if (i < 20) continue;
      const s = samples[kind];
      s.reset.push(dt * 1000);
      s.restore.push(inst.lastRestore.ms * 1000);
      s.scan.push(inst.lastRestore.scanMs * 1000);
      s.written.push(inst.lastRestore.writtenPages);
      s.copied.push(inst.lastRestore.copiedBytes / 4096);
    }
  }
  // After the timing: a full compare makes every page table entry present (longer pagemap reads).
  const differing = insts.new.snapshotDifferingPages();
  if (differing !== 0) throw new Error(`bench: ${name} new reset left ${differing} pages differing`);
  for (const inst of Object.values(insts)) inst.dispose();
  const row = (kind) => ({
    resetP50Us: Math.round(pct(samples[kind].reset, 50)),
    resetP99Us: Math.round(pct(samples[kind].reset, 99)),
    restoreP50Us: Math.round(pct(samples[kind].restore, 50)),
    restoreP99Us: Math.round(pct(samples[kind].restore, 99)),
    scanP50Us: Math.round(pct(samples[kind].scan, 50)),
    writtenPagesP50: pct(samples[kind].written, 50),
    copiedPagesP50: pct(samples[kind].copied, 50),
  });
  return { engine: name, new: row("new"), old: row("old") };
}

const results = [];
const php = new (await import(join(DIST, "runtime", "php", "index.js"))).PhpEngine();
results.push(await measure("php", php, await loadApp(join(ROOT, "examples", "php-hello"))));
if (PYTHON) {
  const py = new (await import(join(DIST, "runtime", "python", "index.js"))).PythonEngine();
  results.push(await measure("python", py, await loadApp(join(ROOT, "examples", "wsgi-hello"))));
}

const line = (cells) => cells.map((c, i) => String(c).padStart(i === 0 ? 8 : 14)).join(" ");
console.log(`reset after one hello-world request, ${REQUESTS} requests per instance, µs (load ${loadavg()[0].toFixed(2)})`);
console.log(line(["engine", "reset p50", "reset p99", "restore p50", "restore p99", "scan p50", "written pg", "copied pg", "method"]));
for (const r of results) {
  for (const kind of ["new", "old"]) {
    const x = r[kind];
    console.log(line([r.engine, x.resetP50Us, x.resetP99Us, x.restoreP50Us, x.restoreP99Us, kind === "new" ? x.scanP50Us : "-", kind === "new" ? x.writtenPagesP50 : "-", x.copiedPagesP50, kind === "new" ? "dirty-pages" : "compare"]));
  }
  console.log(line([r.engine, `×${(r.old.resetP50Us / r.new.resetP50Us).toFixed(1)}`, `×${(r.old.resetP99Us / r.new.resetP99Us).toFixed(1)}`, `×${(r.old.restoreP50Us / r.new.restoreP50Us).toFixed(1)}`, `×${(r.old.restoreP99Us / r.new.restoreP99Us).toFixed(1)}`, "", "", "", "old/new"]));
}
const target = results.every((r) => r.new.resetP50Us <= 200);
console.log(`target reset p50 ≤ 200 µs: ${target ? "met" : "missed"} (${results.map((r) => `${r.engine} ${r.new.resetP50Us} µs`).join(", ")})`);
mkdirSync(join(ROOT, "bench", "results"), { recursive: true });
const file = join(ROOT, "bench", "results", `reset-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
writeFileSync(file, JSON.stringify({ at: new Date().toISOString(), requests: REQUESTS, load: loadavg(), results }, null, 2));
console.log(`wrote ${file}`);
