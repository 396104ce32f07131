#!/usr/bin/env node
/**
 * PHP hello in daemon mode under sustained load (c=64): php-wasm leaks two descriptors per
 * request without a reset, so each host wears out after ~1,800 requests and is replaced. Before
 * proactive replacement (the pool starts a worn host's successor while it serves, src/pool
 * index.ts #replaceAhead) throughput collapsed once hosts ran out (issue 12: 66 req/s, p99 1.7 s).
 *
 *   node bench/daemon-wear.mjs [--windows 8] [--window-s 5] [--connections 64]
 *
 * Prints req/s and p99 per window and the ratio of each window to the first (the baseline, same
 * run: before any host wore out), with the deployment's instance starts so far.
 */
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT, installCleanup, load, logger, poolInfo, runMain, startZerocell, stopZerocell, tempDir, waitFor200, zerocellCli } from "./lib.mjs";

const log = logger("daemon-wear");
const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i === -1 ? dflt : Number(process.argv[i + 1]);
};
const WINDOWS = arg("--windows", 8);
const WINDOW_S = arg("--window-s", 5);
const CONNECTIONS = arg("--connections", 64);
const HOST = "daemon.localhost";

async function main() {
  installCleanup(log);
  const dir = tempDir("zc-bench-wear-");
  cpSync(join(ROOT, "examples", "php-hello", "public"), join(dir, "public"), { recursive: true });
  writeFileSync(join(dir, "zerocell.toml"), `runtime = "php"\n[php]\ndocument_root = "public"\n[[routes]]\nhost = "${HOST}"\npath = "/"\nmode = "daemon"\n`);
  const { child: server, dataDir, listening } = startZerocell({ dataPrefix: "zc-bench-wear-data-", args: ["--idle-ttl-ms", "1800000"] });
  try {
    const urls = await listening();
    const token = readFileSync(join(dataDir, "admin-token"), "utf8").trim();
    const dep = await zerocellCli(dataDir, ["deploy", dir, "--app", "wear"]);
    if (dep.code !== 0) throw new Error(`deploy failed (${dep.code}):\n${dep.out}`);
    await waitFor200(urls.http + "/", { host: HOST }, 60_000, server);
    // Warm-up (not measured): the hosts' JIT, the pool's growth to c.
    await load({ url: urls.http + "/", connections: CONNECTIONS, duration: 2, host: HOST });
    const rows = [];
    for (let w = 0; w < WINDOWS; w++) {
      const r = await load({ url: urls.http + "/", connections: CONNECTIONS, duration: WINDOW_S, host: HOST });
      const info = await poolInfo(urls, token);
      const d = (info?.deployments ?? []).find((x) => x.app === "wear");
      rows.push({ window: w + 1, rps: r.rps, p99Ms: r.p99Ms, non2xx: r.non2xx, instances: d?.instances, hostStarts: d?.instanceStartMs?.count });
      log(`window ${w + 1}: ${r.rps} req/s, p99 ${r.p99Ms} ms, non-2xx ${r.non2xx}, instances ${d?.instances}, host starts ${d?.instanceStartMs?.count}`);
    }
    const base = rows[0];
    console.log(`\nPHP hello, daemon mode, c=${CONNECTIONS}, ${WINDOWS} × ${WINDOW_S} s (baseline: window 1, before any host wore out)`);
    console.log("window  req/s  ratio  p99 ms  p99 ratio  non-2xx  instances  host starts");
    for (const r of rows) {
      console.log(`${String(r.window).padStart(6)} ${String(r.rps).padStart(6)} ${(r.rps / base.rps).toFixed(2).padStart(6)} ${String(r.p99Ms).padStart(7)} ${(r.p99Ms / base.p99Ms).toFixed(2).padStart(10)} ${String(r.non2xx).padStart(8)} ${String(r.instances).padStart(10)} ${String(r.hostStarts).padStart(12)}`);
    }
  } finally {
    await stopZerocell(server, { notes: [] });
  }
}

runMain(main, log);
