#!/usr/bin/env node
/**
 * Cost of a job's `cost` (src/billing/job-usage.ts `usageOfRequests`: the sum of its items' usage
 * records, a range scan of the request-id index) and of an estimate's history fit
 * (`usageHistory`: the newest 10,000 runs of one program). A real database file (openDb:
 * migrations, WAL) holds a job of N items (request ids `job-<id>-<seq>`), a job of 1,000 items
 * and 2N other records interleaved. Baseline in the same run: the same sums over
 * `request_id LIKE 'job-<id>-%'` (what the query would be without the range: a table scan).
 * Prints ms per query (median of 7) and the ratio to the baseline. Run after `npm run build`:
 *
 *   node bench/job-cost.mjs [--items 100000]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDb } from "../dist/src/store/db.js";
import { usageHistory, usageOfRequests } from "../dist/src/billing/job-usage.js";

const arg = (name, dflt) => { const i = process.argv.indexOf(name); return i < 0 ? dflt : Number(process.argv[i + 1]); };
const N = arg("--items", 100_000);
const BIG = "job_aaaaaaaaaaaaaaaaaaaa";
const SMALL = "job_bbbbbbbbbbbbbbbbbbbb";
const dir = mkdtempSync(join(tmpdir(), "zc-bench-job-cost-"));
try {
  const db = openDb(join(dir, "zerocell.db"));
  const insert = db.sqlite.prepare(`INSERT INTO usage_records (request_id, account_id, app_id, deployment_id, route_key, started_at, wall_us, cpu_us, instructions, memory_mb, status, bytes_in, bytes_out, mode)
    VALUES (?, 'acct', ?, 'dep', NULL, ?, ?, ?, ?, 64, 200, ?, 10, ?)`);
  const t0 = Date.now() - 3_600_000;
  db.sqlite.transaction(() => {
    for (let i = 0; i < N; i++) {
      const bytes = 200 + (i % 5000);
      insert.run(`job-${BIG}-${i}`, "program:abc", t0 + i, 1000 + bytes, 800 + bytes, 50_000 + 20 * bytes, bytes, "job");
      insert.run(`req-${2 * i}`, "app_web", t0 + i, 3000, 2000, null, 100, "snapshot");
      insert.run(`req-${2 * i + 1}`, "app_web", t0 + i, 3000, 2000, null, 100, "snapshot");
      if (i < 1000) insert.run(`job-${SMALL}-${i}`, "program:def", t0 + i, 1000, 800, 60_000, 300, "job");
    }
  })();
  const median = (f) => {
    const t = [];
    for (let k = 0; k < 7; k++) {
      const s = performance.now();
      f();
      t.push(performance.now() - s);
    }
    return t.sort((a, b) => a - b)[3];
  };
  const like = db.sqlite.prepare(`SELECT COUNT(*) AS records, SUM(((wall_us + 999) / 1000) * memory_mb) AS mbMs, SUM(cpu_us) AS cpuUs, SUM(instructions) AS instructions, SUM(bytes_in) AS bytesIn
    FROM usage_records WHERE request_id LIKE ? AND account_id = ?`);
  const rows = [];
  for (const [job, n] of [[BIG, N], [SMALL, 1000]]) {
    const ours = median(() => usageOfRequests(db.sqlite, "acct", `job-${job}-`));
    const base = median(() => like.get(`job-${job}-%`, "acct"));
    const a = usageOfRequests(db.sqlite, "acct", `job-${job}-`);
    const b = like.get(`job-${job}-%`, "acct");
    if (a.records !== n || a.records !== b.records || a.instructions !== b.instructions || a.bytesIn !== b.bytesIn) throw new Error(`sums differ: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
    rows.push({ query: `cost of a job of ${n} items`, ms: ours, baselineMs: base, ratio: ours / base });
  }
  const fit = median(() => usageHistory(db.sqlite, "acct", "program:abc", 10_000));
  rows.push({ query: "estimate history (newest 10,000 runs)", ms: fit, baselineMs: null, ratio: null });
  console.log(`usage_records: ${3 * N + 1000}`);
  for (const r of rows) console.log(`${r.query.padEnd(40)} ${r.ms.toFixed(2).padStart(9)} ms${r.baselineMs === null ? "" : `   LIKE scan ${r.baselineMs.toFixed(2).padStart(9)} ms   ratio ${r.ratio.toFixed(3)}`}`);
  db.sqlite.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
