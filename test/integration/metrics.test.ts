/**
 * Operations endpoints of the admin listener, scraped from the real server: /metrics
 * (Prometheus text, admin token only) counts what the gateway and the pool did; /readyz says
 * whether app requests can be served.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import http from "node:http";
import { createAccount, startServer, fetchApp, writeBundle, type TestServer } from "../helpers/server.js";

function get(server: TestServer, path: string, token?: string): Promise<{ status: number; text: string; type: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(server.urls.admin + path, { agent: false, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (d: Buffer) => chunks.push(d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8"), type: String(res.headers["content-type"] ?? "") }));
    });
    req.on("error", reject);
    req.end();
  });
}

/** The value of one sample line (`name{labels} value`), or undefined when absent. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    if (line.slice(0, at) === series) return Number(line.slice(at + 1));
  }
  return undefined;
}

describe("operations: /metrics and /readyz", () => {
  let server: TestServer;
  let tenant = "";
  beforeAll(async () => {
    server = await startServer(["--no-spare-hosts"]);
    tenant = await createAccount(server, "watcher");
    await server.cli(["deploy", writeBundle({ "zerocell.toml": `runtime = "php"\n[[routes]]\nhost = "m.localhost"\npath = "/"\n`, "index.php": "<?php echo 'metered';" }), "--app", "m"]);
  }, 120_000);
  afterAll(async () => {
    expect(await server.stop()).toBe(0);
  });

  it("/readyz answers 200 with its checks while the server can serve", async () => {
    const r = await get(server, "/readyz");
    expect(r.status).toBe(200);
    expect(JSON.parse(r.text)).toEqual({ ready: true, checks: { pool: { ok: true }, database: { ok: true } } });
  });

  it("/metrics needs an admin token: 401 without one, 403 for a tenant's", async () => {
    expect((await get(server, "/metrics")).status).toBe(401);
    expect((await get(server, "/metrics", "zc_not_a_token")).status).toBe(401);
    expect((await get(server, "/metrics", tenant)).status).toBe(403);
  });

  it("counts requests by app and status, their latencies, host starts and resets", async () => {
    for (let i = 0; i < 3; i++) expect((await fetchApp(server, "m.localhost", `/?i=${i}`)).text).toBe("metered");
    expect((await fetchApp(server, "nowhere.localhost", "/")).status).toBe(404);
    const r = await get(server, "/metrics", server.token);
    expect(r.status).toBe(200);
    expect(r.type).toContain("text/plain");
    const t = r.text;
    expect(sample(t, 'zerocell_requests_total{app="m",status="200"}')).toBe(3);
    expect(sample(t, 'zerocell_requests_total{app="-",status="404"}')).toBe(1);
    expect(sample(t, 'zerocell_request_duration_seconds_count{app="m"}')).toBe(3);
    expect(sample(t, 'zerocell_request_duration_seconds_bucket{le="+Inf",app="m"}')).toBe(3);
    expect(sample(t, "zerocell_sandbox_ready_seconds_count")).toBe(3);
    expect(sample(t, "zerocell_pool_acquire_seconds_count")).toBe(3);
    // One host served all three (snapshot mode: a reset after each request).
    expect(sample(t, "zerocell_host_starts_total")).toBe(1);
    expect(sample(t, "zerocell_host_start_failures_total")).toBe(0);
    expect(sample(t, "zerocell_resets_total")).toBeGreaterThanOrEqual(2);
    expect(sample(t, 'zerocell_pool_instances{state="idle"}')).toBe(1);
    expect(sample(t, 'zerocell_pool_instances{state="busy"}')).toBe(0);
    expect(sample(t, "zerocell_pool_queued_requests")).toBe(0);
    expect(sample(t, "zerocell_usage_flush_lag_seconds")).toBeGreaterThanOrEqual(0);
    expect(sample(t, "zerocell_gateway_process_resident_memory_bytes")).toBeGreaterThan(0);
    // Usage records reach the database (3 requests + the warm-up).
    await expect.poll(async () => sample((await get(server, "/metrics", server.token)).text, "zerocell_usage_records_written_total"), { timeout: 10_000 }).toBe(4);
  });

  it("counts a failed host start (a deploy whose warm-up never ends fails its health check)", async () => {
    const bad = await server.cli(["deploy", writeBundle({ "zerocell.toml": `runtime = "php"\nwarmup = ["/w.php"]\n[limits]\ntimeout_ms = 500\n[[routes]]\nhost = "bad.localhost"\npath = "/"\n`, "w.php": "<?php while (true) {}", "index.php": "<?php echo 1;" }), "--app", "bad"], { allowFail: true });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain("health_check_failed");
    const t = (await get(server, "/metrics", server.token)).text;
    expect(sample(t, "zerocell_host_start_failures_total")).toBeGreaterThanOrEqual(1);
    // The failed deployment is not kept as a failing pool, and no route serves it.
    expect(sample(t, "zerocell_pool_deployments_failing")).toBe(0);
    expect((await fetchApp(server, "bad.localhost", "/")).status).toBe(404);
  }, 60_000);
});
