/**
 * Warm-up runs tenant code, so it is bounded like a request (timeout_ms per warm-up request, the
 * first plus the runtime's boot allowance) and billed to the account (usage records of mode
 * "warmup"). The red team's case: a warm-up that never ends kept hosts at ~95% CPU until the
 * 30 s start timeout and recorded nothing.
 */
import { describe, it, expect, beforeAll, afterAll, vi } from "vitest";
import Database from "better-sqlite3";
import { join } from "node:path";
import { startServer, fetchApp, admin, writeBundle, isAlive, type TestServer } from "../helpers/server.js";
import { packDirectory } from "../../src/bundle/index.js";

const json = (o: unknown) => ({ body: JSON.stringify(o), contentType: "application/json" });

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
}

function warmupRows(server: TestServer): Row[] {
  const db = new Database(join(server.dataDir, "zerocell.db"), { readonly: true });
  try {
    return db.prepare("SELECT account_id, status, wall_us, cpu_us, mode FROM usage_records WHERE mode = 'warmup'").all() as Row[];
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
    token = (await admin(server, "POST", "/v1/accounts", json({ name: "warmer" }))).json.token;
    accountId = (await admin(server, "GET", "/v1/accounts")).json.accounts.find((a: { name: string }) => a.name === "warmer").id;
  });
  afterAll(async () => {
    expect(await server.stop()).toBe(0);
  });

  it("a warm-up that never ends is killed at timeout_ms (+ PHP's 2 s boot allowance) with 504, billed, and leaves no host spinning", async () => {
    const deployed = await admin(server, "POST", "/v1/apps/spinner/deployments", { token, body: await packDirectory(app("spinner.localhost", "<?php while (true) { $x = md5((string) mt_rand()); }", 1000)), contentType: "application/gzip" });
    expect(deployed.status).toBe(201);
    const t0 = Date.now();
    const r = await fetchApp(server, "spinner.localhost", "/");
    const took = Date.now() - t0;
    expect(r.status).toBe(504);
    expect(r.text).toContain("warm-up");
    // 1 s + 2 s allowance after the host starts: the warm-up limit fired, not the 30 s start
    // timeout (the rest is slack for host start on a loaded machine).
    expect(took).toBeLessThan(25_000);
    const row = await waitFor("the warm-up usage record", () => warmupRows(server).find((x) => x.status === 504));
    expect(row.account_id).toBe(accountId);
    expect(row.wall_us).toBeGreaterThanOrEqual(1_000_000);
    // The host that ran it is gone (no CPU burnt after the limit).
    await waitFor("the spinning host to be gone", () => (server.hostPids().every((p) => !isAlive(p)) ? true : undefined));
  });

  it("a normal warm-up is billed as one record of mode warmup with its wall and CPU time", async () => {
    const deployed = await admin(server, "POST", "/v1/apps/calm/deployments", { token, body: await packDirectory(app("calm.localhost", "<?php usleep(200000); echo 'warm';", 5000)), contentType: "application/gzip" });
    expect(deployed.status).toBe(201);
    const r = await fetchApp(server, "calm.localhost", "/");
    expect(r.status).toBe(200);
    expect(r.text).toBe("served");
    const row = await waitFor("the warm-up usage record", () => warmupRows(server).find((x) => x.status === 200));
    expect(row.account_id).toBe(accountId);
    expect(row.wall_us).toBeGreaterThanOrEqual(200_000);
    expect(row.cpu_us).not.toBeNull();
    // It shows in the account's usage like any request.
    const usage = await admin(server, "GET", "/v1/usage", { token });
    expect(usage.status).toBe(200);
    expect(JSON.stringify(usage.json)).toContain("calm");
  });
});
