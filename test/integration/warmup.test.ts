/**
 * Warm-up runs tenant code, so it is bounded like a request (timeout_ms of the host's CPU time per
 * warm-up request, the first plus the runtime's boot allowance, with a wall-clock backstop of three
 * times that plus 10 s for a warm-up that waits) and billed to the account (usage records of mode
 * "warmup"). The red team's case: a warm-up that never ends kept hosts at ~95% CPU until the
 * 30 s start timeout and recorded nothing.
 */
import { describe, it, expect, beforeAll, afterAll, vi } from "vitest";
import Database from "better-sqlite3";
import { join } from "node:path";
import { createAccount, startServer, fetchApp, admin, writeBundle, isAlive, type TestServer } from "../helpers/server.js";
import { packDirectory } from "../../src/bundle/index.js";

function app(host: string, warmupPhp: string, timeoutMs: number): string {
  return writeBundle({
    "zerocell.toml": `runtime = "php"\nwarmup = ["/warm.php"]\n[php]\ndocument_root = "public"\n[limits]\ntimeout_ms = ${timeoutMs}\n[[routes]]\nhost = "${host}"\npath = "/"\n`,
    "public/warm.php": warmupPhp,
    "public/index.php": "<?php echo 'served';",
  });
}

interface Row {
  account_id: string;
  status: number;
  wall_us: number;
  cpu_us: number | null;
  mode: string;
  app: string | null;
}

function warmupRows(server: TestServer): Row[] {
  const db = new Database(join(server.dataDir, "zerocell.db"), { readonly: true });
  try {
    return db.prepare("SELECT u.account_id, u.status, u.wall_us, u.cpu_us, u.mode, a.name AS app FROM usage_records u LEFT JOIN apps a ON a.id = u.app_id WHERE u.mode = 'warmup'").all() as Row[];
  } finally {
    db.close();
  }
}

/** Polls `f` until it gives a value (generous bound: the machine may be loaded). */
function waitFor<T>(what: string, f: () => T | undefined): Promise<T> {
  return vi.waitFor(
    () => {
      const v = f();
      if (v === undefined) throw new Error(`still waiting for ${what}`);
      return v;
    },
    { timeout: 20_000, interval: 100 },
  );
}

describe("warm-up is bounded by timeout_ms and billed", () => {
  let server: TestServer;
  let token = "";
  let accountId = "";
  beforeAll(async () => {
    server = await startServer(["--no-spare-hosts"]);
    token = await createAccount(server, "warmer");
    accountId = (await admin(server, "GET", "/v1/accounts")).json.accounts.find((a: { name: string }) => a.name === "warmer").id;
  });
  afterAll(async () => {
    // Hosts still warming up for nobody are killed at shutdown, not awaited.
    const t0 = Date.now();
    expect(await server.stop()).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it("a warm-up that never ends is killed at timeout_ms (+ PHP's 2 s boot allowance), fails the deploy, is billed with 504, and leaves no host spinning", async () => {
    const t0 = Date.now();
    const deployed = await admin(server, "POST", "/v1/apps/spinner/deployments", { token, body: await packDirectory(app("spinner.warmer.localhost", "<?php while (true) { $x = md5((string) mt_rand()); }", 1000)), contentType: "application/gzip" });
    const took = Date.now() - t0;
    // The deploy's health check ran the warm-up: the deployment is failed, never active.
    expect(deployed.status).toBe(422);
    expect(deployed.json.error.code).toBe("health_check_failed");
    // CPU time, or the wall-clock backstop when a loaded machine gives the host little CPU.
    expect(deployed.json.error.message).toMatch(/warm-up request 1 (used more than 3000 ms of CPU time|did not finish within 19000 ms)/);
    // 1 s + 2 s of CPU after the host starts (the rest is slack for a loaded machine).
    expect(took).toBeLessThan(30_000);
    expect((await fetchApp(server, "spinner.warmer.localhost", "/")).status).toBe(404);
    const row = await waitFor("the warm-up usage record", () => warmupRows(server).find((x) => x.status === 504));
    expect(row.account_id).toBe(accountId);
    expect(row.wall_us).toBeGreaterThanOrEqual(1_000_000);
    // The host that ran it is gone (no CPU burnt after the limit).
    await waitFor("the spinning host to be gone", () => (server.hostPids().every((p) => !isAlive(p)) ? true : undefined));
    // `zerocell deployments` shows it failed; deploying another app does not start it again.
    expect((await server.cli(["deployments", "spinner"])).stdout).toMatch(/v1 .* failed/);
    expect((await admin(server, "POST", "/v1/apps/other/deployments", { token, body: await packDirectory(app("other.warmer.localhost", "<?php usleep(200000); echo 'warm';", 5000)), contentType: "application/gzip" })).status).toBe(201);
    const after = JSON.parse((await server.cli(["pool", "spinner", "--json"])).stdout) as { deployments: unknown[] };
    expect(after.deployments).toHaveLength(0);
  });

  it("a warm-up that waits instead of computing is stopped by the wall-clock backstop and fails the deploy", async () => {
    const t0 = Date.now();
    const deployed = await admin(server, "POST", "/v1/apps/sleeper/deployments", { token, body: await packDirectory(app("sleeper.warmer.localhost", "<?php sleep(3600);", 500)), contentType: "application/gzip" });
    const took = Date.now() - t0;
    expect(deployed.status).toBe(422);
    expect(deployed.json.error.message).toContain("did not finish within 17500 ms");
    // (0.5 s + 2 s) × 3 + 10 s = 17.5 s after the warm-up began.
    expect(took).toBeGreaterThanOrEqual(17_000);
    expect(took).toBeLessThan(45_000);
  }, 60_000);

  it("a normal warm-up is billed as one record of mode warmup with its wall and CPU time", async () => {
    const deployed = await admin(server, "POST", "/v1/apps/calm/deployments", { token, body: await packDirectory(app("calm.warmer.localhost", "<?php usleep(200000); echo 'warm';", 5000)), contentType: "application/gzip" });
    expect(deployed.status).toBe(201);
    const r = await fetchApp(server, "calm.warmer.localhost", "/");
    expect(r.status).toBe(200);
    expect(r.text).toBe("served");
    // This app's record (an earlier test's "other" app was warmed up too).
    const row = await waitFor("the warm-up usage record", () => warmupRows(server).find((x) => x.status === 200 && x.app === "calm"));
    expect(row.account_id).toBe(accountId);
    expect(row.wall_us).toBeGreaterThanOrEqual(200_000);
    expect(row.cpu_us).not.toBeNull();
    // It shows in the account's usage like any request.
    const usage = await admin(server, "GET", "/v1/usage", { token });
    expect(usage.status).toBe(200);
    expect(JSON.stringify(usage.json)).toContain("calm");
  });
});
