#!/usr/bin/env node
/**
 * Cost of GET /v1/apps/:app/stats's query (src/billing/series.ts): a real database file (openDb:
 * migrations, WAL) holding N usage records of one app spread over the last 24 hours plus as many
 * of another app (interleaved, written in time order like the recorder does), then querySeries at minute buckets over 60 minutes and 1,440 minutes (the cap),
 * and hour buckets over 24 hours. Baseline in the same run: a plain COUNT(*) of the same window
 * through the same index (the least any per-window answer costs). Prints ms per query (median of
 * 7) and the ratio to the baseline. Run after `npm run build`:
 *
 *   node bench/stats-series.mjs [--records 200000]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDb } from "../dist/src/store/db.js";
import { querySeries } from "../dist/src/billing/series.js";

const arg = (name, dflt) => { const i = process.argv.indexOf(name); return i < 0 ? dflt : Number(process.argv[i + 1]); };
const N = arg("--records", 200_000);
const dir = mkdtempSync(join(tmpdir(), "zc-bench-series-"));
try {
  const db = openDb(join(dir, "zerocell.db"));
  const now = Date.now();
  const insert = db.sqlite.prepare(`INSERT INTO usage_records (request_id, account_id, app_id, deployment_id, route_key, started_at, wall_us, cpu_us, instructions, memory_mb, status, bytes_in, bytes_out, mode)
    VALUES (?, 'acct', ?, 'dep', NULL, ?, ?, ?, NULL, 128, ?, 100, 1000, 'snapshot')`);
  db.sqlite.transaction(() => {
    for (let i = 0; i < 2 * N; i++) {
      const app = i % 2 === 0 ? "app_a" : "app_b";
      // In time order, as the recorder writes them (rows of one window are neighbours on disk).
      insert.run(`r${i}`, app, now - 86_400_000 + Math.floor((i / (2 * N)) * 86_400_000), 200 + Math.floor(Math.random() * 5000), 100 + Math.floor(Math.random() * 3000), Math.random() < 0.02 ? 500 : 200);
    }
  })();
  const count = db.sqlite.prepare("SELECT COUNT(*) AS n FROM usage_records WHERE app_id = ? AND started_at >= ? AND started_at < ?");
  const median = (f) => { const t = []; for (let i = 0; i < 7; i++) { const s = performance.now(); f(); t.push(performance.now() - s); } t.sort((a, b) => a - b); return t[3]; };
  const cases = [
    { name: "minute x 60", bucketMs: 60_000, buckets: 60 },
    { name: "minute x 1440", bucketMs: 60_000, buckets: 1440 },
    { name: "hour x 24", bucketMs: 3_600_000, buckets: 24 },
  ];
  console.log(`records: ${N} of the app (+${N} of another) over 24 h`);
  console.log("case             rows-in-window  series-ms  count-ms  ratio");
  for (const c of cases) {
    const fromMs = (Math.floor(now / c.bucketMs) + 1 - c.buckets) * c.bucketMs;
    const to = fromMs + c.bucketMs * c.buckets;
    const rows = count.get("app_a", fromMs, to).n;
    let s;
    const seriesMs = median(() => (s = querySeries(db.sqlite, { appId: "app_a", fromMs, bucketMs: c.bucketMs, buckets: c.buckets })));
    const countMs = median(() => count.get("app_a", fromMs, to));
    console.log(`${c.name.padEnd(16)} ${String(rows).padStart(14)} ${seriesMs.toFixed(1).padStart(10)} ${countMs.toFixed(1).padStart(9)} ${(seriesMs / countMs).toFixed(1).padStart(6)}  truncated=${s.truncated}`);
  }
  db.sqlite.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
