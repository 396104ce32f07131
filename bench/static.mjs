/**
 * Static files served by the gateway (src/gateway/static.ts) against the same bytes through the
 * PHP sandbox (a script that readfile()s them), measured in the same run on the same server:
 * sequential requests over HTTPS with keep-alive, alternating, median and p90 latency, and the
 * ratio. Also the deploy's health check: the time `zerocell deploy` takes.
 * Usage: node bench/static.mjs [--n 300]
 */
import https from "node:https";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { installCleanup, logger, median, percentile, request, round, runMain, startZerocell, stopChild, tempDir, zerocellCli } from "./lib.mjs";

const log = logger("static");
installCleanup(log);

runMain(async () => {
  const n = Number(process.argv[process.argv.indexOf("--n") + 1] || 300) || 300;
  const server = startZerocell({ dataPrefix: "zc-bench-static-", args: ["--no-spare-hosts"] });
  const urls = await server.listening();
  const app = tempDir("zc-bench-static-app-");
  mkdirSync(join(app, "public"), { recursive: true });
  writeFileSync(join(app, "zerocell.toml"), 'runtime = "php"\n[php]\ndocument_root = "public"\n[[routes]]\nhost = "bench-static.localhost"\npath = "/"\n');
  writeFileSync(join(app, "public", "app.css"), "body { color: #123456; margin: 0 auto; }\n".repeat(500));
  writeFileSync(join(app, "public", "css.php"), "<?php header('content-type: text/css'); readfile(__DIR__ . '/app.css');");
  writeFileSync(join(app, "public", "index.php"), "<?php echo 'ok';");
  const t0 = performance.now();
  const dep = await zerocellCli(server.dataDir, ["deploy", app, "--app", "bench-static"]);
  const deployMs = performance.now() - t0;
  if (dep.code !== 0) throw new Error(`deploy failed: ${dep.out}`);
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  const one = async (path) => {
    const s = performance.now();
    const r = await request(urls.https + path, { host: "bench-static.localhost", agent, headers: { "accept-encoding": "identity" } });
    if (r.status !== 200) throw new Error(`${path}: ${r.status}`);
    return { ms: performance.now() - s, instance: r.headers["x-zerocell-instance"] };
  };
  for (let i = 0; i < 20; i++) await Promise.all([one("/app.css"), one("/css.php")].map((p) => p));
  const stat = [];
  const php = [];
  for (let i = 0; i < n; i++) {
    const a = await one("/app.css");
    if (a.instance !== "static") throw new Error(`/app.css was not served statically (${a.instance})`);
    stat.push(a.ms);
    php.push((await one("/css.php")).ms);
  }
  stat.sort((x, y) => x - y);
  php.sort((x, y) => x - y);
  const s50 = median(stat);
  const p50 = median(php);
  log(`deploy (pack, upload, health check, activate): ${round(deployMs, 0)} ms`);
  log(`20 KB css, ${n} sequential requests each, keep-alive, identity encoding:`);
  log(`  gateway static: p50 ${round(s50, 3)} ms  p90 ${round(percentile(stat, 90), 3)} ms`);
  log(`  PHP readfile:   p50 ${round(p50, 3)} ms  p90 ${round(percentile(php, 90), 3)} ms`);
  log(`  ratio PHP/static p50: ${round(p50 / s50, 2)}x`);
  agent.destroy();
  await stopChild(server.child);
}, log);
