/**
 * App and token lifecycle (issue 15): `apps delete` (routes, instances, snapshots, unshared
 * blobs; per-key data only when asked), `tokens list|revoke` (a revoked token stops at once),
 * `invoices close` refuses an open or future period, `--version`. A hostile tenant cannot delete,
 * list or revoke another account's apps or tokens, nor learn that they exist.
 */
import { describe, it, expect, beforeAll, afterAll, vi } from "vitest";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { queryDb, createAccount, json, startServer, fetchApp, admin, phpBundle, writeBundle, isAlive, ROOT, type TestServer } from "../helpers/server.js";
import { packDirectory } from "../../src/bundle/index.js";

describe("app and token lifecycle", () => {
  let server: TestServer;
  let alice = "";
  let mallory = "";
  const deploy = async (token: string, app: string, dir: string) => admin(server, "POST", `/v1/apps/${app}/deployments`, { token, body: await packDirectory(dir), contentType: "application/gzip" });
  const blobPath = (sha: string) => join(server.dataDir, "blobs", "sha256", sha.slice(0, 2), sha.slice(2));
  const query = <T>(sql: string, ...args: unknown[]): T[] => queryDb<T>(server, sql, ...args);

  beforeAll(async () => {
    server = await startServer(["--no-spare-hosts"]);
    alice = await createAccount(server, "alice");
    mallory = await createAccount(server, "mallory");
  });
  afterAll(async () => {
    expect(await server.stop()).toBe(0);
  });

  it("zerocell --version prints the package version", async () => {
    const version = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
    expect((await server.cli(["--version"])).stdout.trim()).toBe(version);
  });

  it("deletes an app: it stops serving, its instances stop, its rows and unshared blobs go; another account cannot", async () => {
    const shared = phpBundle("shared-a.alice.localhost", { "index.php": "<?php echo 'shared';" });
    const d1 = await deploy(alice, "doomed", phpBundle("doomed.alice.localhost", { "index.php": "<?php echo 'doomed v1';" }));
    const d2 = await deploy(alice, "doomed", phpBundle("doomed.alice.localhost", { "index.php": "<?php echo 'doomed v2';" }));
    expect(d1.status).toBe(201);
    expect(d2.status).toBe(201);
    expect((await fetchApp(server, "doomed.alice.localhost", "/")).text).toBe("doomed v2");
    expect((await deploy(alice, "keeper", shared)).status).toBe(201);
    // The snapshot of v2 is stored (after its first request).
    await vi.waitFor(() => expect(query("SELECT 1 FROM snapshots WHERE deployment_id = ?", d2.json.deployment.id)).toHaveLength(1), { timeout: 20_000, interval: 100 });
    const snapSha = query<{ sha256: string }>("SELECT sha256 FROM snapshots WHERE deployment_id = ?", d2.json.deployment.id)[0]!.sha256;
    const pids = ((await admin(server, "GET", "/v1/pool")).json.deployments as Array<{ app: string; pids: number[] }>).filter((p) => p.app === "doomed").flatMap((p) => p.pids);
    expect(pids.length).toBeGreaterThan(0);

    // Mallory: the same 404 as for an app nobody has; nothing changes.
    const probe = await admin(server, "DELETE", "/v1/apps/doomed", { token: mallory });
    const nobody = await admin(server, "DELETE", "/v1/apps/no-such-app", { token: mallory });
    expect(probe.status).toBe(404);
    expect(probe.json.error.code).toBe(nobody.json.error.code);
    expect(probe.json.error.message).toBe(nobody.json.error.message.replace("no-such-app", "doomed"));
    expect((await fetchApp(server, "doomed.alice.localhost", "/")).text).toBe("doomed v2");

    const r = await admin(server, "DELETE", "/v1/apps/doomed", { token: alice });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ deleted: "doomed", deployments: 2, keysRemoved: 0 });
    expect((await fetchApp(server, "doomed.alice.localhost", "/")).status).toBe(404);
    expect((await admin(server, "GET", "/v1/apps", { token: alice })).json.apps.map((a: { name: string }) => a.name)).toEqual(["keeper"]);
    expect(query("SELECT 1 FROM deployments d JOIN apps a ON a.id = d.app_id WHERE a.name = 'doomed'")).toHaveLength(0);
    for (const d of [d1, d2]) expect(existsSync(blobPath(d.json.deployment.bundleSha256))).toBe(false);
    expect(existsSync(blobPath(snapSha))).toBe(false);
    await vi.waitFor(() => expect(pids.filter(isAlive)).toEqual([]), { timeout: 20_000, interval: 100 });
    // Another app's bundle stays; the name is free again (for anyone).
    const keeper = (await admin(server, "GET", "/v1/apps/keeper/deployments", { token: alice })).json.deployments[0];
    expect(existsSync(blobPath(keeper.bundleSha256))).toBe(true);
    expect((await fetchApp(server, "shared-a.alice.localhost", "/")).text).toBe("shared");
  }, 180_000);

  it("keeps per-key data unless --delete-data is given", async () => {
    const dir = writeBundle({
      "zerocell.toml": `runtime = "php"\n[php]\ndocument_root = "public"\nfront_controller = "index.php"\n[[routes]]\nhost = "notes.alice.localhost"\npath = "/k/:id"\nkey = "id"\n`,
      "public/index.php": "<?php if ($_SERVER['REQUEST_METHOD'] === 'POST') file_put_contents('/data/n', 'kept'); echo @file_get_contents('/data/n') ?: 'none';",
    });
    expect((await deploy(alice, "notes", dir)).status).toBe(201);
    expect((await fetchApp(server, "notes.alice.localhost", "/k/one", { method: "POST", body: "" })).text).toBe("kept");
    const refused = await server.cli(["apps", "delete", "notes"], { allowFail: true });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain("app_has_data");
    expect((await fetchApp(server, "notes.alice.localhost", "/k/one")).text).toBe("kept");
    const ok = await server.cli(["apps", "delete", "notes", "--delete-data"]);
    expect(ok.stdout).toContain("deleted app notes");
    expect(ok.stdout).toContain("1 key(s) of data");
    expect(query("SELECT 1 FROM app_keys")).toHaveLength(0);
    // Redeployed under the same name: no data from before.
    expect((await deploy(alice, "notes", dir)).status).toBe(201);
    expect((await fetchApp(server, "notes.alice.localhost", "/k/one")).text).toBe("none");
  }, 120_000);

  it("lists an account's tokens (never their secret) and revokes one at once; not another account's", async () => {
    const created = await admin(server, "POST", "/v1/tokens", json({ account: "alice", scopes: ["deploy"] }));
    expect(created.status).toBe(201);
    const second = created.json.token as string;
    const list = await admin(server, "GET", "/v1/tokens", { token: alice });
    expect(list.status).toBe(200);
    const tokens = list.json.tokens as Array<{ id: string; prefix: string; account: string; revokedAt: string | null; current: boolean }>;
    expect(tokens.map((t) => t.account)).toEqual(["alice", "alice"]);
    expect(JSON.stringify(list.json)).not.toContain(second);
    expect(tokens.find((t) => t.id === created.json.id)).toMatchObject({ prefix: second.slice(0, 10), revokedAt: null, current: false });
    // Mallory sees only hers, and cannot revoke (or learn of) alice's.
    const mine = (await admin(server, "GET", "/v1/tokens", { token: mallory })).json.tokens as Array<{ account: string }>;
    expect(mine.map((t) => t.account)).toEqual(["mallory"]);
    const theirs = await admin(server, "DELETE", `/v1/tokens/${created.json.id}`, { token: mallory });
    const unknown = await admin(server, "DELETE", "/v1/tokens/tok_nosuchtoken000000000", { token: mallory });
    expect(theirs.status).toBe(404);
    expect(theirs.json.error.code).toBe(unknown.json.error.code);
    expect((await admin(server, "GET", "/v1/apps", { token: second })).status).toBe(200);

    // Revoked through the CLI (admin): the next request with it is refused.
    const out = await server.cli(["tokens", "revoke", created.json.id]);
    expect(out.stdout).toContain("stops working now");
    expect((await admin(server, "GET", "/v1/apps", { token: second })).status).toBe(401);
    expect((await server.cli(["tokens", "list"])).stdout).toMatch(new RegExp(`${created.json.id}.*alice.*deploy.*\\d{4}-\\d\\d-\\d\\dT.*\\d{4}-\\d\\d-\\d\\dT`));
    // An account token may revoke itself.
    const own = (await admin(server, "GET", "/v1/tokens", { token: mallory })).json.tokens[0].id as string;
    expect((await admin(server, "DELETE", `/v1/tokens/${own}`, { token: mallory })).status).toBe(200);
    expect((await admin(server, "GET", "/v1/apps", { token: mallory })).status).toBe(401);
  });

  it("invoices close refuses the current and a future period", async () => {
    const now = new Date();
    const current = now.toISOString().slice(0, 7);
    const next = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)).toISOString().slice(0, 7);
    for (const period of [current, next]) {
      const r = await admin(server, "POST", "/v1/invoices/close", json({ period }));
      expect(r.status, period).toBe(409);
      expect(r.json.error.code).toBe("period_open");
    }
    const cli = await server.cli(["invoices", "close", "--period", current], { allowFail: true });
    expect(cli.code).not.toBe(0);
    expect(cli.stderr).toContain("still open");
  });
});
