import { describe, it, expect, beforeAll, afterAll } from "vitest";
import Database from "better-sqlite3";
import { join } from "node:path";
import { json, startServer, phpBundle, fetchApp, admin, type TestServer } from "../helpers/server.js";

const PERIOD = new Date().toISOString().slice(0, 7);

/** Waits until the app's usage counts `requests` requests (records are written in batches). */
async function waitUsage(server: TestServer, token: string, app: string, requests: number): Promise<void> {
  await expect
    .poll(async () => {
      const r = await admin(server, "GET", `/v1/usage?app=${app}`, { token });
      return (r.json.usage ?? []).reduce((s: number, u: { requests: number }) => s + u.requests, 0);
    }, { message: `usage of ${app}`, timeout: 15_000, interval: 50 })
    .toBeGreaterThanOrEqual(requests);
}

describe("billing: accounts, usage, invoices", () => {
  let server: TestServer;
  let aliceToken: string;
  let bobToken: string;

  beforeAll(async () => {
    // The test closes the current month (refused by default: the period is still open).
    server = await startServer(["--allow-closing-open-periods"]);
    // A plan with prices large enough to see: 1 cent per request, $3.60 per GB-second, no free tier.
    const plan = await admin(server, "POST", "/v1/plans", json({ name: "test", currency: "usd", requestPriceMicros: 1_000_000, gbSecondPriceMicros: 360_000_000, gigaInstructionPriceMicros: 0 }));
    expect(plan.status).toBe(201);
    const alice = await admin(server, "POST", "/v1/accounts", json({ name: "alice", plan: "test" }));
    expect(alice.status).toBe(201);
    aliceToken = alice.json.token;
    const bob = await server.cli(["accounts", "create", "bob", "--json"]);
    bobToken = JSON.parse(bob.stdout).token;
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("an account's token deploys into its own account and cannot see or touch another's apps", async () => {
    const up = await admin(server, "POST", "/v1/apps/alice-app/deployments", { token: aliceToken, body: await packed(phpBundle("app.alice.localhost", { "index.php": "<?php usleep(20000); echo 'alice';" })), contentType: "application/gzip" });
    expect(up.status).toBe(201);
    const bobDeploy = await admin(server, "POST", "/v1/apps/bob-app/deployments", { token: bobToken, body: await packed(phpBundle("app.bob.localhost", { "index.php": "<?php echo 'bob';" })), contentType: "application/gzip" });
    expect(bobDeploy.status).toBe(201);
    // Bob sees only his app, cannot deploy over alice's, cannot list its deployments or keys.
    const apps = await admin(server, "GET", "/v1/apps", { token: bobToken });
    expect(apps.json.apps.map((a: { name: string }) => a.name)).toEqual(["bob-app"]);
    const steal = await admin(server, "POST", "/v1/apps/alice-app/deployments", { token: bobToken, body: await packed(phpBundle("x.bob.localhost", { "index.php": "<?php echo 'x';" })), contentType: "application/gzip" });
    expect(steal.status).toBe(404); // the answer for an app that does not exist
    expect(steal.json.error.code).toBe("app_not_found");
    expect((await admin(server, "GET", "/v1/apps/alice-app/deployments", { token: bobToken })).status).toBe(404);
    expect((await admin(server, "GET", "/v1/apps/alice-app/keys", { token: bobToken })).status).toBe(404);
    expect((await admin(server, "GET", "/v1/usage?account=alice", { token: bobToken })).status).toBe(404);
    expect((await admin(server, "POST", "/v1/accounts", { token: bobToken, ...json({ name: "mallory" }) })).status).toBe(403);
    // A read-usage-only token cannot deploy.
    const ro = await admin(server, "POST", "/v1/tokens", json({ account: "bob", scopes: ["read-usage"] }));
    const denied = await admin(server, "POST", "/v1/apps/bob-app/deployments", { token: ro.json.token, body: await packed(phpBundle("app.bob.localhost", { "index.php": "<?php echo 'bob2';" })), contentType: "application/gzip" });
    expect(denied.status).toBe(403);
  });

  it("meters every request into usage (written in batches), per account", async () => {
    for (let i = 0; i < 7; i++) expect((await fetchApp(server, "app.alice.localhost", "/")).text).toBe("alice");
    for (let i = 0; i < 3; i++) expect((await fetchApp(server, "app.bob.localhost", "/")).text).toBe("bob");
    await waitUsage(server, aliceToken, "alice-app", 7);
    await waitUsage(server, bobToken, "bob-app", 3);
    const aliceUsage = await admin(server, "GET", "/v1/usage", { token: aliceToken });
    expect(aliceUsage.json.usage.map((u: { app: string }) => u.app)).toEqual(["alice-app"]);
    const cli = await server.cli(["usage", "--account", "alice"]);
    expect(cli.stdout).toMatch(/alice\s+alice-app\s+7\s+0\s/);
  });

  it("closes a period into invoices whose totals equal their lines and a hand calculation; closing again is a no-op", async () => {
    const close = await server.cli(["invoices", "close", "--period", PERIOD, "--json"]);
    const closed = JSON.parse(close.stdout);
    expect(closed.created.length).toBeGreaterThanOrEqual(2);
    const again = JSON.parse((await server.cli(["invoices", "close", "--period", PERIOD, "--json"])).stdout);
    expect(again.created).toEqual([]);
    expect(again.existing).toBe(closed.created.length);

    const list = await admin(server, "GET", "/v1/invoices", { token: aliceToken });
    expect(list.json.invoices.length).toBe(1);
    const inv = (await admin(server, "GET", `/v1/invoices/${list.json.invoices[0].id}`, { token: aliceToken })).json.invoice;
    expect(inv.status).toBe("open");
    expect(inv.total).toBe(inv.lines.reduce((s: number, l: { amount: number }) => s + l.amount, 0));

    // Hand calculation from the raw usage records: 1 cent per request; compute = Σ ceil(wall ms) × 128 MB
    // → GB-s = Σ / 1024 / 1000, at 360,000,000 micro-cents (= 360 cents) per GB-s.
    const db = new Database(join(server.dataDir, "zerocell.db"), { readonly: true });
    const rows = db.prepare("SELECT wall_us, memory_mb, cpu_us, instructions, mode FROM usage_records u JOIN apps a ON a.id = u.app_id WHERE a.name = 'alice-app'").all() as Array<{ wall_us: number; memory_mb: number; cpu_us: number | null; instructions: number | null; mode: string }>;
    db.close();
    // 7 requests, and the warm-up of each host start that ran the app's code (billed for its time).
    expect(rows.filter((r) => r.mode !== "warmup").length).toBe(7);
    expect(rows.filter((r) => r.mode === "warmup").length).toBeGreaterThanOrEqual(1);
    // PHP: the host's CPU time per request is recorded; instructions are counted for x86 only.
    for (const r of rows) {
      expect(r.cpu_us).toBeGreaterThan(0);
      expect(r.instructions).toBeNull();
    }
    const mbMs = rows.reduce((s, r) => s + Math.ceil(r.wall_us / 1000) * r.memory_mb, 0);
    const requestsLine = inv.lines.find((l: { metric: string }) => l.metric === "requests");
    const computeLine = inv.lines.find((l: { metric: string }) => l.metric === "compute");
    expect(requestsLine.quantity).toBe("7");
    expect(requestsLine.amount).toBe(7);
    expect(computeLine.quantity).toBe((mbMs / 1024 / 1000).toFixed(6));
    expect(computeLine.amount).toBe(Math.round((mbMs * 360) / 1024 / 1000));
    expect(inv.total).toBe(7 + Math.round((mbMs * 360) / 1024 / 1000));

    // The CLI shows the same invoice; other accounts' invoices stay invisible to alice.
    const shown = await server.cli(["invoice", inv.id]);
    expect(shown.stdout).toContain(`total $${(inv.total / 100).toFixed(2)}`);
    const bobs = await admin(server, "GET", "/v1/invoices", { token: bobToken });
    expect((await admin(server, "GET", `/v1/invoices/${inv.id}`, { token: bobToken })).status).toBe(404);
    expect(bobs.json.invoices.every((i: { account: string }) => i.account === "bob")).toBe(true);
  });
});

async function packed(dir: string): Promise<Buffer> {
  const { packDirectory } = await import("../../src/bundle/index.js");
  return packDirectory(dir);
}
