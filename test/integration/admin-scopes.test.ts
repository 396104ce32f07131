/**
 * Admin API scopes and account isolation, against the real server: every endpoint of the one
 * table (ADMIN_ENDPOINTS) is called with a token lacking its scope and with one having it; a
 * tenant's answers about another account's resources are those of resources that do not exist;
 * tenants never see host pids.
 */
import { describe, it, expect, beforeAll, afterAll, vi } from "vitest";
import Database from "better-sqlite3";
import { createHash, randomBytes } from "node:crypto";
import { join } from "node:path";
import { createAccount, json, startServer, fetchApp, admin, writeBundle, type TestServer } from "../helpers/server.js";
import { ADMIN_ENDPOINTS, type AdminEndpoint } from "../../src/gateway/admin.js";

/** A keyed PHP app: /k/:id writes a secret into that key's /data. */
function keyedBundle(host: string, secret: string): string {
  return writeBundle({
    "zerocell.toml": `runtime = "php"\n[php]\ndocument_root = "public"\nfront_controller = "index.php"\n[[routes]]\nhost = "${host}"\npath = "/"\n[[routes]]\nhost = "${host}"\npath = "/k/:id"\nkey = "id"\n`,
    "public/index.php": `<?php if (str_starts_with($_SERVER['REQUEST_URI'], '/k/')) file_put_contents('/data/secret.txt', '${secret}'); echo 'ok';`,
  });
}

async function packed(dir: string): Promise<Buffer> {
  const { packDirectory } = await import("../../src/bundle/index.js");
  return packDirectory(dir);
}

async function deploy(server: TestServer, token: string, app: string, bundleDir: string, query = "") {
  return admin(server, "POST", `/v1/apps/${app}/deployments${query}`, { token, body: await packed(bundleDir), contentType: "application/gzip" });
}

/** Calls one table endpoint with its path parameters filled in. */
function call(server: TestServer, endpoint: AdminEndpoint, token: string, params: Record<string, string>) {
  const [method, pattern] = endpoint.split(" ") as [string, string];
  const path = pattern.replace(/:([a-z]+)/g, (_, name: string) => {
    const v = params[name];
    if (v === undefined) throw new Error(`no value for :${name} of ${endpoint}`);
    return encodeURIComponent(v);
  });
  return admin(server, method, path, { token, ...(method === "GET" || method === "DELETE" ? {} : json({})) });
}

/** Comparable shape of an error answer: the name it is about replaced by a placeholder. */
function shape(r: { status: number; json: any }, name: string) {
  return { status: r.status, code: r.json?.error?.code, message: String(r.json?.error?.message ?? JSON.stringify(r.json)).split(name).join("<name>") };
}

describe("admin API: scopes, account isolation, no pids for tenants", () => {
  let server: TestServer;
  const tokens = {} as Record<"deployOnly" | "usageOnly" | "both" | "none" | "bob", string>;
  let bobAccountId = "";
  let bobInvoiceId = "";

  beforeAll(async () => {
    server = await startServer(["--allow-closing-open-periods"]);
    const alice = await admin(server, "POST", "/v1/accounts", json({ name: "alice" }));
    expect(alice.status).toBe(201);
    tokens.both = alice.json.token;
    tokens.deployOnly = (await admin(server, "POST", "/v1/tokens", json({ account: "alice", scopes: ["deploy"] }))).json.token;
    tokens.usageOnly = (await admin(server, "POST", "/v1/tokens", json({ account: "alice", scopes: ["read-usage"] }))).json.token;
    tokens.bob = await createAccount(server, "bob");
    bobAccountId = (await admin(server, "GET", "/v1/accounts")).json.accounts.find((a: { name: string }) => a.name === "bob").id;
    // A token with neither scope cannot be made through the API (it needs at least one); it is
    // what a token of a scope added later looks like to these endpoints.
    tokens.none = "zc_" + randomBytes(32).toString("base64url");
    const aliceId = (await admin(server, "GET", "/v1/accounts")).json.accounts.find((a: { name: string }) => a.name === "alice").id;
    const db = new Database(join(server.dataDir, "zerocell.db"));
    db.prepare("INSERT INTO api_tokens (id, account_id, token_hash, prefix, scopes, created_at) VALUES (?, ?, ?, ?, ?, ?)")
      .run("tok_test_noscope", aliceId, createHash("sha256").update(tokens.none).digest("hex"), tokens.none.slice(0, 10), "future-scope", Date.now());
    db.close();

    expect((await deploy(server, tokens.deployOnly, "alice-app", keyedBundle("app.alice.localhost", "alice-secret"))).status).toBe(201);
    expect((await deploy(server, tokens.bob, "bob-app", keyedBundle("app.bob.localhost", "bob-secret"))).status).toBe(201);
    expect((await fetchApp(server, "app.alice.localhost", "/k/1")).text).toBe("ok");
    expect((await fetchApp(server, "app.bob.localhost", "/k/1")).text).toBe("ok");
    // Usage for bob, then a closed invoice of bob's.
    await vi.waitFor(async () => expect((await admin(server, "GET", "/v1/usage?account=bob")).json.usage.length, "bob's usage").toBeGreaterThan(0), { timeout: 20_000, interval: 50 });
    const closed = await admin(server, "POST", "/v1/invoices/close", json({ period: new Date().toISOString().slice(0, 7) }));
    expect(closed.status).toBe(200);
    bobInvoiceId = closed.json.created.find((i: { accountId: string }) => i.accountId === bobAccountId).id;
  });
  afterAll(async () => {
    expect(await server?.stop()).toBe(0);
  });

  it("every endpoint in the table: 403 forbidden without its scope, not 403 with it", async () => {
    const params = { app: "alice-app", key: "no-such-key", id: `draft_${bobAccountId}_2000-01`, host: "c.localhost", name: "no-such-name" };
    const lacking = (needed: readonly string[]): string[] => {
      if (needed.includes("admin")) return [tokens.both, tokens.deployOnly, tokens.usageOnly, tokens.none];
      if (needed.length === 2) return [tokens.none];
      return needed[0] === "deploy" ? [tokens.usageOnly, tokens.none] : [tokens.deployOnly, tokens.none];
    };
    const having = (needed: readonly string[]): string[] => [
      server.token,
      ...(needed.includes("deploy") ? [tokens.deployOnly, tokens.both] : []),
      ...(needed.includes("read-usage") ? [tokens.usageOnly, tokens.both] : []),
    ];
    const endpoints = Object.entries(ADMIN_ENDPOINTS) as Array<[AdminEndpoint, readonly string[]]>;
    expect(endpoints.length).toBeGreaterThanOrEqual(20);
    for (const [endpoint, needed] of endpoints) {
      for (const token of lacking(needed)) {
        // The scope is checked first: the answer is the same for the token's own app, another
        // account's and a missing one.
        for (const app of ["alice-app", "bob-app", "missing-app"]) {
          const r = await call(server, endpoint, token, { ...params, app });
          expect(r.status, `${endpoint} (${app}) without ${needed.join("/")}`).toBe(403);
          expect(r.json.error.code, endpoint).toBe("forbidden");
          expect(r.json.error.message, endpoint).toContain(needed[0]);
        }
      }
      for (const token of having(needed)) {
        const r = await call(server, endpoint, token, params);
        expect(r.status, `${endpoint} with ${needed.join("/")}: ${JSON.stringify(r.json)}`).not.toBe(403);
      }
    }
  });

  it("a read-usage token cannot list keys, export a key's data or read deployments; a deploy token can", async () => {
    for (const path of ["/v1/apps/alice-app/keys", "/v1/apps/alice-app/keys/1/export", "/v1/apps/alice-app/deployments", "/v1/routes", "/v1/pool"]) {
      const denied = await admin(server, "GET", path, { token: tokens.usageOnly });
      expect(denied.status, path).toBe(403);
      expect(JSON.stringify(denied.json)).not.toContain("alice-secret");
    }
    expect((await admin(server, "DELETE", "/v1/apps/alice-app/keys/1", { token: tokens.usageOnly })).status).toBe(403);
    const keys = await admin(server, "GET", "/v1/apps/alice-app/keys", { token: tokens.deployOnly });
    expect(keys.status).toBe(200);
    expect(keys.json.keys.map((k: { key: string }) => k.key)).toEqual(["1"]);
    const tar = await admin(server, "GET", "/v1/apps/alice-app/keys/1/export", { token: tokens.deployOnly });
    expect(tar.status).toBe(200);
    expect(String(tar.json)).toContain("alice-secret");
    // Read-usage still reads usage and invoices, and the app list.
    expect((await admin(server, "GET", "/v1/usage", { token: tokens.usageOnly })).status).toBe(200);
    expect((await admin(server, "GET", "/v1/invoices", { token: tokens.usageOnly })).status).toBe(200);
    expect((await admin(server, "GET", "/v1/apps", { token: tokens.usageOnly })).json.apps.map((a: { name: string }) => a.name)).toEqual(["alice-app"]);
    // A deploy-only token reads no usage.
    expect((await admin(server, "GET", "/v1/usage", { token: tokens.deployOnly })).status).toBe(403);
  });

  it("another account's resources answer exactly like missing ones", async () => {
    const t = tokens.both;
    const bundle = keyedBundle("steal.alice.localhost", "x");
    // App-scoped endpoints: bob's app vs an app that does not exist.
    const perApp: Array<[string, (app: string) => Promise<{ status: number; json: any }>]> = [
      ["deployments", (a) => admin(server, "GET", `/v1/apps/${a}/deployments`, { token: t })],
      ["rollback", (a) => admin(server, "POST", `/v1/apps/${a}/rollback`, { token: t, ...json({}) })],
      ["rollback v1", (a) => admin(server, "POST", `/v1/apps/${a}/rollback`, { token: t, ...json({ version: 1 }) })],
      ["keys", (a) => admin(server, "GET", `/v1/apps/${a}/keys`, { token: t })],
      ["export", (a) => admin(server, "GET", `/v1/apps/${a}/keys/1/export`, { token: t })],
      ["delete key", (a) => admin(server, "DELETE", `/v1/apps/${a}/keys/1`, { token: t })],
    ];
    for (const [what, run] of perApp) {
      const foreign = await run("bob-app");
      const missing = await run("nobody-app");
      expect(foreign.status, what).toBe(404);
      expect(shape(foreign, "bob-app"), what).toEqual(shape(missing, "nobody-app"));
      expect(foreign.json.error.message, what).toContain("bob-app");
    }
    // Deploying over bob's app is refused with the same 404 the endpoints above give a missing
    // app (a missing app name is free, so deploying to it creates the app).
    const steal = await deploy(server, t, "bob-app", bundle);
    const missingApp = await admin(server, "GET", "/v1/apps/nobody-app/deployments", { token: t });
    expect(shape(steal, "bob-app")).toEqual(shape(missingApp, "nobody-app"));
    expect(JSON.stringify(steal.json)).not.toMatch(/another account|belongs/);
    // Bob's data stayed bob's.
    expect((await fetchApp(server, "app.bob.localhost", "/")).text).toBe("ok");
    expect((await admin(server, "GET", "/v1/apps/bob-app/keys/1/export", { token: tokens.bob })).json).toContain("bob-secret");

    // Usage and invoices of another account vs a missing one.
    for (const path of ["/v1/usage?account=", "/v1/invoices?account="]) {
      const foreign = await admin(server, "GET", `${path}bob`, { token: t });
      const missing = await admin(server, "GET", `${path}nobody`, { token: t });
      expect(foreign.status, path).toBe(404);
      expect(shape(foreign, "bob"), path).toEqual(shape(missing, "nobody"));
    }
    const usageForeign = await admin(server, "GET", "/v1/usage?app=bob-app", { token: t });
    const usageMissing = await admin(server, "GET", "/v1/usage?app=nobody-app", { token: t });
    expect(usageForeign).toEqual(usageMissing);
    expect(usageForeign).toEqual({ status: 200, json: { usage: [], next_cursor: null } });

    // An invoice of bob's (closed, and the current draft) vs ids that do not exist.
    const period = new Date().toISOString().slice(0, 7);
    const fakeInvoice = bobInvoiceId.replace(/.$/, (ch) => (ch === "0" ? "1" : "0"));
    const pairs: Array<[string, string]> = [
      [bobInvoiceId, fakeInvoice],
      [`draft_${bobAccountId}_${period}`, `draft_acct_doesnotexist0000000000_${period}`],
      [`draft_${bobAccountId}_2026-13`, "draft_acct_doesnotexist0000000000_2026-13"],
    ];
    for (const [foreignId, missingId] of pairs) {
      const foreign = await admin(server, "GET", `/v1/invoices/${foreignId}`, { token: t });
      const missing = await admin(server, "GET", `/v1/invoices/${missingId}`, { token: t });
      expect(foreign.status, foreignId).toBe(404);
      expect(shape(foreign, foreignId), foreignId).toEqual(shape(missing, missingId));
    }
    // The account's own invoice is readable (the 404s above are not a broken endpoint).
    expect((await admin(server, "GET", `/v1/invoices/${bobInvoiceId}`, { token: tokens.bob })).status).toBe(200);

    // A host bob serves: the conflict says the host is taken, never by which app.
    const clash = await deploy(server, t, "alice-two", bundle, "?host=app.bob.localhost");
    expect(clash.status).toBe(409);
    expect(JSON.stringify(clash.json)).not.toContain("bob-app");
  });

  it("GET /v1/pool shows tenants no host pids; admins keep them", async () => {
    expect((await fetchApp(server, "app.alice.localhost", "/")).text).toBe("ok");
    const tenant = await admin(server, "GET", "/v1/pool", { token: tokens.deployOnly });
    expect(tenant.status).toBe(200);
    expect(tenant.json.deployments.length).toBeGreaterThan(0);
    expect(tenant.json.deployments.every((d: { app: string }) => d.app === "alice-app")).toBe(true);
    expect(JSON.stringify(tenant.json)).not.toMatch(/"pids?"/);
    expect(tenant.json.spares).toBeUndefined();
    const op = await admin(server, "GET", "/v1/pool");
    const hostPids = server.hostPids();
    const alicePool = op.json.deployments.find((d: { app: string }) => d.app === "alice-app");
    expect(alicePool.pids.length).toBeGreaterThan(0);
    for (const pid of alicePool.pids) expect(hostPids).toContain(pid);
  });
});
