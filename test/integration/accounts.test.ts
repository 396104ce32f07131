/**
 * Account lifecycle (issue 15): `accounts disable|enable` (admin only; a disabled account's
 * tokens stop at once, its apps answer 404 and their instances stop; enable brings them back)
 * and `plans list|create` through the CLI, against the real server.
 */
import { describe, it, expect, beforeAll, afterAll, vi } from "vitest";
import { createAccount, startServer, fetchApp, admin, phpBundle, isAlive, type TestServer } from "../helpers/server.js";
import { packDirectory } from "../../src/bundle/index.js";

describe("account lifecycle", () => {
  let server: TestServer;
  let alice = "";
  let mallory = "";

  beforeAll(async () => {
    server = await startServer(["--no-spare-hosts"]);
    alice = await createAccount(server, "alice");
    mallory = await createAccount(server, "mallory");
  }, 60_000);
  afterAll(async () => {
    expect(await server.stop()).toBe(0);
  });

  it("disable: tokens stop at once, apps answer 404 and their instances stop; enable brings them back; only admins may", async () => {
    const d = await admin(server, "POST", "/v1/apps/shop/deployments", { token: alice, body: await packDirectory(phpBundle("shop.alice.localhost", { "index.php": "<?php echo 'open';" })), contentType: "application/gzip" });
    expect(d.status).toBe(201);
    await admin(server, "POST", "/v1/apps/other/deployments", { token: mallory, body: await packDirectory(phpBundle("other.mallory.localhost", { "index.php": "<?php echo 'other';" })), contentType: "application/gzip" });
    expect((await fetchApp(server, "shop.alice.localhost", "/")).text).toBe("open");
    const pids = ((await admin(server, "GET", "/v1/pool")).json.deployments as Array<{ app: string; pids: number[] }>).filter((p) => p.app === "shop").flatMap((p) => p.pids);
    expect(pids.length).toBeGreaterThan(0);

    // Account tokens may not disable anyone, themselves included.
    for (const token of [alice, mallory]) {
      const r = await admin(server, "POST", "/v1/accounts/alice/disable", { token });
      expect(r.status).toBe(403);
    }
    expect((await admin(server, "POST", "/v1/accounts/nobody/disable")).status).toBe(404);

    const off = await server.cli(["accounts", "disable", "alice"]);
    expect(off.stdout).toContain("alice is now disabled");
    expect((await admin(server, "GET", "/v1/apps", { token: alice })).status).toBe(401);
    expect((await admin(server, "GET", "/v1/tokens", { token: alice })).status).toBe(401);
    const gone = await fetchApp(server, "shop.alice.localhost", "/");
    expect(gone.status).toBe(404);
    expect(gone.text).toContain("route_not_found");
    await vi.waitFor(() => expect(pids.filter(isAlive)).toEqual([]), { timeout: 30_000, interval: 200 });
    // Another account is untouched, and nobody can take the disabled account's host meanwhile.
    expect((await fetchApp(server, "other.mallory.localhost", "/")).text).toBe("other");
    const grab = await admin(server, "POST", "/v1/apps/grab/deployments", { token: mallory, body: await packDirectory(phpBundle("shop.alice.localhost", { "index.php": "<?php echo 'stolen';" })), contentType: "application/gzip" });
    expect(grab.status).toBeGreaterThanOrEqual(400);
    expect((await server.cli(["accounts", "list"])).stdout).toMatch(/alice\s+\S+\s+\S+\s+\S+\s+\d{4}-/);
    expect((await server.cli(["accounts", "disable", "alice"])).stdout).toContain("alice was already disabled");

    expect((await server.cli(["accounts", "enable", "alice"])).stdout).toContain("alice is now enabled");
    expect((await admin(server, "GET", "/v1/apps", { token: alice })).status).toBe(200);
    await vi.waitFor(async () => expect((await fetchApp(server, "shop.alice.localhost", "/")).text).toBe("open"), { timeout: 60_000, interval: 500 });
  }, 180_000);

  it("plans: list and create through the CLI; creating is for admins, listing for every token", async () => {
    const created = await server.cli(["plans", "create", "gold", "--currency", "eur", "--request-price-micros", "150000", "--gb-second-price-micros", "10000", "--giga-instruction-price-micros", "900000", "--free-requests", "5000"]);
    expect(created.stdout).toMatch(/created plan gold/);
    const list = (await server.cli(["plans", "list"])).stdout;
    expect(list).toMatch(/gold\s+eur\s+150000\s+10000\s+900000\s+5000\s+0\s+0/);
    const json = JSON.parse((await server.cli(["plans", "list", "--json"])).stdout) as { plans: Array<{ name: string }> };
    expect(json.plans.map((p) => p.name)).toContain("gold");
    expect((await admin(server, "GET", "/v1/plans", { token: mallory })).json.plans.map((p: { name: string }) => p.name)).toContain("gold");
    const denied = await admin(server, "POST", "/v1/plans", { token: mallory, body: JSON.stringify({ name: "free4me", currency: "usd", requestPriceMicros: 0, gbSecondPriceMicros: 0, gigaInstructionPriceMicros: 0 }), contentType: "application/json" });
    expect(denied.status).toBe(403);
    const bad = await server.cli(["plans", "create", "x", "--request-price-micros", "-1", "--gb-second-price-micros", "0", "--giga-instruction-price-micros", "0"], { allowFail: true });
    expect(bad.code).not.toBe(0);
    expect((await server.cli(["accounts", "create", "carol", "--plan", "gold"])).stdout).toContain("created account carol");
  }, 60_000);
});
