import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDb, Store, DEFAULT_ACCOUNT, type OpenedDb, type DeploymentInfo } from "../../src/store/index.js";
import { ConflictError, NotFoundError } from "../../src/errors.js";
import type { RouteSpec } from "../../src/router/index.js";

let dir: string;
let db: OpenedDb;
let store: Store;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "zerocell-store-"));
  db = openDb(join(dir, "zerocell.db"));
  // Names under .localhost are ordinary domains here (first-come for admin tokens, held by accounts);
  // the base-domain policy is tested in "Store: base domain" below.
  store = new Store(db, { baseDomain: "platform.test" });
});

afterEach(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

const r = (host: string, path = "/", key?: string): RouteSpec => ({ host, path, mode: "snapshot", ...(key === undefined ? {} : { key }) });

let bundleN = 0;
/**
 * Deploys as an admin token would (privileged unless told otherwise): first-come claims of names
 * outside the base domain's account namespaces. What an ordinary account may route (only
 * ACCOUNT.localhost names and held domains) is tested with `privileged: false`.
 */
function deploy(appName: string, accountId: string, routes: RouteSpec[], extra: { privileged?: boolean; manifest?: unknown } = {}): DeploymentInfo {
  bundleN++;
  return store.createDeployment({
    appName,
    accountId,
    runtime: "php",
    bundleSha256: createHash("sha256").update(`bundle ${bundleN}`).digest("hex"),
    bundleBytes: 1000 + bundleN,
    manifest: extra.manifest ?? { runtime: "php", n: bundleN },
    routes,
    privileged: extra.privileged ?? true,
  });
}

/** Runs `fn`, which must throw; returns what it threw. */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error("expected a throw");
}

const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));
const claims = () => store.listHostClaims().map((c) => `${c.host}=${c.account}/${c.source}`);

describe("Store: accounts", () => {
  it("creates the default account once", () => {
    const id = store.ensureDefaultAccount();
    expect(id).toMatch(/^acct_[0-9a-f]{20}$/);
    expect(store.ensureDefaultAccount()).toBe(id);
    expect(store.accountByName(DEFAULT_ACCOUNT)).toEqual({ id, name: "default" });
  });

  it("creates named accounts, refuses a second of the same name, lists them by name", () => {
    const b = store.createAccount("bravo", "plan_x");
    const a = store.createAccount("alpha", null);
    const e = thrown(() => store.createAccount("alpha", null));
    expect(e).toBeInstanceOf(ConflictError);
    expect(e).toMatchObject({ code: "account_exists", status: 409, message: 'accounts: an account named "alpha" exists' });
    expect(store.listAccounts().map((x) => [x.name, x.id, x.planId])).toEqual([
      ["alpha", a.id, null],
      ["bravo", b.id, "plan_x"],
    ]);
    expect(store.accountByName("charlie")).toBeUndefined();
  });
});

describe("Store: API tokens", () => {
  it("returns the secret once and stores only its SHA-256 (not in any row, nor in the database files)", () => {
    const acct = store.createAccount("acme", null);
    const { id, token } = store.createToken(acct.id, ["deploy", "read-usage"]);
    expect(token).toMatch(/^zc_[A-Za-z0-9_-]{43}$/);
    const row = db.sqlite.prepare("SELECT * FROM api_tokens WHERE id = ?").get(id) as Record<string, unknown>;
    const hash = createHash("sha256").update(token).digest("hex");
    expect(row).toMatchObject({ account_id: acct.id, token_hash: hash, prefix: token.slice(0, 10), scopes: "deploy,read-usage", revoked_at: null });
    expect(JSON.stringify(row)).not.toContain(token.slice(10));
    // The bytes on disk: the hash is there (the scan works), the secret nowhere.
    db.sqlite.pragma("wal_checkpoint(PASSIVE)");
    const files = ["zerocell.db", "zerocell.db-wal"].map((f) => join(dir, f)).filter((f) => existsSync(f));
    const bytes = Buffer.concat(files.map((f) => readFileSync(f)));
    expect(bytes.includes(hash)).toBe(true);
    expect(bytes.includes(token.slice(10))).toBe(false);
  });

  it("verifies a token: its id, account and scopes; an admin token has no account", () => {
    const acct = store.createAccount("acme", null);
    const t = store.createToken(acct.id, ["read-usage"]);
    const admin = store.createToken(null, ["admin"]);
    expect(store.verifyToken(t.token)).toEqual({ id: t.id, accountId: acct.id, scopes: ["read-usage"] });
    expect(store.verifyToken(admin.token)).toEqual({ id: admin.id, accountId: null, scopes: ["admin"] });
  });

  it("refuses unknown, altered, truncated, too short, too long tokens, and the stored hash itself", () => {
    const acct = store.createAccount("acme", null);
    const { id, token } = store.createToken(acct.id, ["deploy"]);
    const last = token.at(-1)!;
    const altered = token.slice(0, -1) + (last === "A" ? "B" : "A");
    const hash = (db.sqlite.prepare("SELECT token_hash FROM api_tokens WHERE id = ?").get(id) as { token_hash: string }).token_hash;
    for (const bad of ["", "zc_", "zc_short", altered, token.slice(0, -1), token + "x", " " + token, token.toUpperCase(), hash, "zc_" + "a".repeat(198), "x".repeat(10_000)]) {
      expect(store.verifyToken(bad), JSON.stringify(bad.slice(0, 20))).toBeUndefined();
    }
    expect(store.verifyToken(token)?.id).toBe(id);
  });

  it("refuses a revoked token and keeps accepting the others", () => {
    // The Store has no revoke method: revocation is the revoked_at column (set here directly).
    const acct = store.createAccount("acme", null);
    const a = store.createToken(acct.id, ["deploy"]);
    const b = store.createToken(acct.id, ["deploy"]);
    db.sqlite.prepare("UPDATE api_tokens SET revoked_at = ? WHERE id = ?").run(Date.now(), a.id);
    expect(store.verifyToken(a.token)).toBeUndefined();
    expect(store.verifyToken(b.token)?.id).toBe(b.id);
  });

  it("answers for a token of any length inside the bounds with the same path (hash, one indexed lookup)", () => {
    // The constant-time property: the secret is never compared in clear; only SHA-256 hashes are,
    // and the final comparison is timingSafeEqual. Observable here: the boundary lengths are
    // hashed and looked up, not refused early by a different rule.
    const acct = store.createAccount("acme", null);
    const insert = db.sqlite.prepare("INSERT INTO api_tokens (id, account_id, token_hash, prefix, scopes, created_at) VALUES (?, ?, ?, ?, ?, ?)");
    for (const len of [10, 200]) {
      const secret = "s".repeat(len);
      insert.run(`tok_len${len}`, acct.id, createHash("sha256").update(secret).digest("hex"), secret.slice(0, 10), "deploy", Date.now());
      expect(store.verifyToken(secret)).toEqual({ id: `tok_len${len}`, accountId: acct.id, scopes: ["deploy"] });
    }
    for (const len of [9, 201]) {
      const secret = "s".repeat(len);
      insert.run(`tok_len${len}`, acct.id, createHash("sha256").update(secret).digest("hex"), secret.slice(0, 10), "deploy", Date.now());
      expect(store.verifyToken(secret)).toBeUndefined();
    }
  });
});

describe("Store: apps and deployments", () => {
  let acct: string;
  beforeEach(() => {
    acct = store.createAccount("acme", null).id;
  });

  it("records immutable, numbered deployments; the newest is active", async () => {
    const v1 = deploy("blog", acct, [r("blog.localhost"), r("blog.localhost", "/posts/:id", "id")], { manifest: { runtime: "php", memory_mb: 128 } });
    expect(v1).toMatchObject({ app: "blog", accountId: acct, version: 1, runtime: "php", active: true, manifest: { runtime: "php", memory_mb: 128 } });
    expect(v1.id).toMatch(/^dep_[0-9a-f]{20}$/);
    expect(v1.routes).toEqual([
      { host: "blog.localhost", path: "/", mode: "snapshot" },
      { host: "blog.localhost", path: "/posts/:id", mode: "snapshot", key: "id" },
    ]);
    await sleep(2);
    const v2 = deploy("blog", acct, [r("blog.localhost", "/v2")]);
    const v3 = deploy("blog", acct, [r("blog.localhost", "/v3")]);
    expect([v2.version, v3.version]).toEqual([2, 3]);
    expect(v2.appId).toBe(v1.appId);
    // v1 is unchanged but for its active flag.
    expect(store.getDeployment(v1.id)).toEqual({ ...v1, active: false });
    expect(store.listDeployments("blog").map((d) => [d.version, d.active])).toEqual([
      [3, true],
      [2, false],
      [1, false],
    ]);
    expect(store.listApps()).toEqual([
      { id: v1.appId, name: "blog", accountId: acct, activeVersion: 3, activeDeploymentId: v3.id, createdAt: expect.any(String) as unknown },
    ]);
    expect(store.appAccount("blog")).toBe(acct);
    expect(store.appAccount("nope")).toBeUndefined();
    expect(store.getDeployment("dep_nope")).toBeUndefined();
  });

  it("keeps deployments immutable in the database: a rollback writes no new version", () => {
    deploy("blog", acct, [r("blog.localhost")]);
    deploy("blog", acct, [r("blog.localhost", "/x")]);
    const before = db.sqlite.prepare("SELECT * FROM deployments ORDER BY version").all();
    const routesBefore = db.sqlite.prepare("SELECT * FROM routes ORDER BY id").all();
    store.rollback("blog");
    store.rollback("blog", 2);
    expect(db.sqlite.prepare("SELECT * FROM deployments ORDER BY version").all()).toEqual(before);
    expect(db.sqlite.prepare("SELECT * FROM routes ORDER BY id").all()).toEqual(routesBefore);
  });

  it("rolls back to the previous version, then further, then to a named version", () => {
    const v1 = deploy("blog", acct, [r("blog.localhost", "/one")]);
    const v2 = deploy("blog", acct, [r("blog.localhost", "/two")]);
    const v3 = deploy("blog", acct, [r("blog.localhost", "/three")]);
    const back = store.rollback("blog");
    expect(back).toMatchObject({ id: v2.id, version: 2, active: true });
    expect(store.rollback("blog")).toMatchObject({ id: v1.id, version: 1, active: true });
    const e = thrown(() => store.rollback("blog"));
    expect(e).toBeInstanceOf(NotFoundError);
    expect(e).toMatchObject({ code: "deployment_not_found", status: 404, message: 'rollback: app "blog" has no version older than v1' });
    expect(store.rollback("blog", 3)).toMatchObject({ id: v3.id, active: true });
    expect(store.rollback("blog", 1).routes).toEqual([r("blog.localhost", "/one")]);
    expect(store.activeRouteEntries().map((x) => x.path)).toEqual(["/one"]);
    // A deploy after a rollback gets the next number, not the rolled-back one + 1.
    expect(deploy("blog", acct, [r("blog.localhost")]).version).toBe(4);
  });

  it("answers not found for unknown apps and versions", () => {
    deploy("blog", acct, [r("blog.localhost")]);
    expect(thrown(() => store.rollback("blog", 7))).toMatchObject({ code: "deployment_not_found", status: 404, message: 'rollback: app "blog" has no version 7' });
    expect(thrown(() => store.rollback("nope"))).toMatchObject({ code: "app_not_found", status: 404, message: 'no app named "nope"' });
    expect(thrown(() => store.listDeployments("nope"))).toMatchObject({ code: "app_not_found" });
  });

  it("another account deploying to an app name it does not own gets the same answer as for a missing app", () => {
    deploy("blog", acct, [r("blog.localhost")]);
    const other = store.createAccount("other", null).id;
    const e = thrown(() => deploy("blog", other, [r("other.localhost")]));
    expect(e).toBeInstanceOf(NotFoundError);
    expect(e).toMatchObject({ code: "app_not_found", status: 404, message: 'no app named "blog"' });
    // Nothing of the refused deploy stays: no claim, no deployment.
    expect(store.hostOwner("other.localhost")).toBeUndefined();
    expect(store.listDeployments("blog")).toHaveLength(1);
    expect(store.listApps(other)).toEqual([]);
  });

  it("lists apps per account; an account's list never shows another's", () => {
    const other = store.createAccount("other", null).id;
    deploy("b-app", acct, [r("b.localhost")]);
    deploy("a-app", other, [r("a.localhost")]);
    expect(store.listApps().map((a) => a.name)).toEqual(["a-app", "b-app"]);
    expect(store.listApps(acct).map((a) => a.name)).toEqual(["b-app"]);
    expect(store.listApps(other).map((a) => a.name)).toEqual(["a-app"]);
  });
});

describe("Store: route conflicts", () => {
  let acct: string;
  beforeEach(() => {
    acct = store.createAccount("acme", null).id;
  });

  it("refuses a route another app serves (same host and canonical path), whatever the param names", () => {
    deploy("one", acct, [r("a.localhost", "/api"), r("a.localhost", "/u/:id", "id")]);
    const e = thrown(() => deploy("two", acct, [r("a.localhost", "/other"), r("a.localhost", "/api")]));
    expect(e).toBeInstanceOf(ConflictError);
    expect(e).toMatchObject({
      code: "route_conflict",
      status: 409,
      message: 'deploy: route a.localhost/api of app "two" is already served by app "one" (a.localhost/api)',
      details: { host: "a.localhost", path: "/api", app: "one" },
    });
    expect(thrown(() => deploy("two", acct, [r("a.localhost", "/u/:name")]))).toMatchObject({ code: "route_conflict", details: { path: "/u/:name", app: "one" } });
    // Other paths and other hosts are fine; so is the same app redeploying its own routes.
    deploy("two", acct, [r("a.localhost", "/api/v2"), r("a.localhost", "/u/:id/x"), r("b.localhost", "/api")]);
    expect(deploy("one", acct, [r("a.localhost", "/api")]).version).toBe(2);
  });

  it("leaves nothing behind when a deploy is refused: no app, no claim of its other hosts", () => {
    deploy("one", acct, [r("a.localhost", "/api")]);
    expect(() => deploy("two", acct, [r("fresh.localhost"), r("a.localhost", "/api")])).toThrow(ConflictError);
    expect(store.hostOwner("fresh.localhost")).toBeUndefined();
    expect(store.listApps().map((a) => a.name)).toEqual(["one"]);
  });

  it("counts only active deployments, and checks again on rollback", () => {
    deploy("one", acct, [r("a.localhost", "/api")]);
    deploy("one", acct, [r("a.localhost", "/v2")]);
    // /api is free again: one's v1 is no longer active.
    deploy("two", acct, [r("a.localhost", "/api")]);
    const e = thrown(() => store.rollback("one"));
    expect(e).toMatchObject({ code: "route_conflict", message: 'deploy: route a.localhost/api of app "one" is already served by app "two" (a.localhost/api)' });
    // The refused rollback changed nothing.
    expect(store.listApps().map((a) => [a.name, a.activeVersion])).toEqual([
      ["one", 2],
      ["two", 1],
    ]);
  });
});

describe("Store: host claims", () => {
  let a: string;
  let b: string;
  beforeEach(() => {
    a = store.createAccount("alice", null).id;
    b = store.createAccount("bob", null).id;
  });

  const unavailable = (host: string) => ({
    code: "host_unavailable",
    status: 409,
    // One message whoever holds the name (or nobody): it names only the asking account's own zone.
    message: expect.stringMatching(new RegExp(`^deploy: host "${host.replace(/[.*]/g, "\\$&")}" is not available to this account: route names under (\\*\\.(alice|bob)|APP)\\.platform\\.test or a domain the account verified`)),
    details: { host },
  });

  it("the first account to route a host holds it; another account is refused on any path", () => {
    deploy("shop", a, [r("shop.localhost"), r("shop.localhost", "/api")]);
    expect(store.hostOwner("shop.localhost")).toBe(a);
    expect(claims()).toEqual(["shop.localhost=alice/deploy"]);
    for (const path of ["/login", "/:anything", "/api/x", "/"]) {
      const e = thrown(() => deploy("grab", b, [r("shop.localhost", path)]));
      expect(e).toBeInstanceOf(ConflictError);
      expect(e).toMatchObject(unavailable("shop.localhost"));
    }
    // The holder adds paths and apps of its own freely.
    deploy("shop-admin", a, [r("shop.localhost", "/admin")]);
    expect(store.listApps(b)).toEqual([]);
  });

  it("refuses names under another account's name, and wildcards over it", () => {
    deploy("shop", a, [r("shop.localhost")]);
    for (const host of ["evil.shop.localhost", "a.b.shop.localhost", "*.shop.localhost", "*.x.shop.localhost"]) {
      expect(thrown(() => deploy("grab", b, [r(host)])), host).toMatchObject(unavailable(host));
    }
    // The holder may use them.
    deploy("sub", a, [r("api.shop.localhost"), r("*.shop.localhost")]);
    // Names under a held name need no claim of their own.
    expect(claims()).toEqual(["shop.localhost=alice/deploy"]);
  });

  it("a wildcard claims its domain: the name itself and names under it are the holder's", () => {
    deploy("wild", a, [r("*.w.localhost")]);
    expect(store.hostOwner("w.localhost")).toBe(a);
    expect(thrown(() => deploy("grab", b, [r("w.localhost")]))).toMatchObject(unavailable("w.localhost"));
    expect(thrown(() => deploy("grab", b, [r("x.w.localhost")]))).toMatchObject(unavailable("x.w.localhost"));
    deploy("exact", a, [r("x.w.localhost")]);
  });

  it("does not stop an account from claiming a parent of another account's name; the nearest held name decides", () => {
    // bob's api.p.localhost stays his, and alice's wildcard over p.localhost cannot take its
    // traffic (the router prefers exact hosts); names under api.p.localhost stay bob's to add.
    deploy("api", b, [r("api.p.localhost")]);
    deploy("parent", a, [r("p.localhost"), r("*.p.localhost")]);
    expect(claims()).toEqual(["api.p.localhost=bob/deploy", "p.localhost=alice/deploy"]);
    expect(deploy("api2", b, [r("v2.api.p.localhost")]).version).toBe(1);
    expect(thrown(() => deploy("grab", a, [r("x.api.p.localhost")]))).toMatchObject(unavailable("x.api.p.localhost"));
  });

  it("reserves '*', public suffixes and single labels for admin tokens", () => {
    const reserved: Array<[string, string]> = [
      ["*", 'the catch-all host "*" is reserved for the platform'],
      ["localhost", '"localhost" is a public suffix (no account can hold it)'],
      ["*.localhost", '"localhost" is a public suffix (a wildcard over it would take every site under it)'],
      ["com", '"com" is a public suffix (no account can hold it)'],
      ["*.co.uk", '"co.uk" is a public suffix (a wildcard over it would take every site under it)'],
      ["github.io", '"github.io" is a public suffix (no account can hold it)'],
      ["intranet", '"intranet" is a public suffix (no account can hold it)'],
    ];
    for (const [host, why] of reserved) {
      const e = thrown(() => deploy("grab", a, [r(host)], { privileged: false }));
      expect(e, host).toBeInstanceOf(ConflictError);
      expect(e, host).toMatchObject({ code: "host_reserved", status: 409, message: `deploy: host "${host}": ${why}`, details: { host } });
    }
    expect(store.listHostClaims()).toEqual([]);
    // Ordinary names under them are fine.
    deploy("ok", a, [r("shop.co.uk"), r("me.github.io")]);
    expect(claims()).toEqual(["me.github.io=alice/deploy", "shop.co.uk=alice/deploy"]);
  });

  it("lets an admin deploy '*' (claims nothing) and public suffixes (claimed like any name)", () => {
    const admin = store.ensureDefaultAccount();
    deploy("catchall", admin, [r("*"), r("*.localhost", "/status")], { privileged: true });
    expect(claims()).toEqual(["localhost=default/deploy"]);
    // A tenant's own name under "localhost" is still its to take.
    deploy("shop", a, [r("shop.localhost")]);
    expect(store.hostOwner("shop.localhost")).toBe(a);
    // The admin flag does not override another account's claim.
    expect(thrown(() => deploy("grab", admin, [r("shop.localhost", "/x")], { privileged: true }))).toMatchObject(unavailable("shop.localhost"));
  });

  it("assignHost gives a free or unused name to an account; refused while another account routes it", () => {
    store.assignHost("free.localhost", b);
    expect(claims()).toEqual(["free.localhost=bob/admin"]);
    expect(thrown(() => deploy("grab", a, [r("free.localhost")]))).toMatchObject(unavailable("free.localhost"));
    deploy("shop", a, [r("shop.localhost")]);
    const e = thrown(() => store.assignHost("shop.localhost", b));
    expect(e).toBeInstanceOf(ConflictError);
    expect(e).toMatchObject({
      code: "host_in_use",
      status: 409,
      message: 'hosts: "shop.localhost" is routed by app "shop" of another account; move or roll back its routes first',
      details: { host: "shop.localhost", app: "shop" },
    });
    // A wildcard route over the name counts as routing the name.
    deploy("wild", a, [r("*.w.localhost")]);
    expect(thrown(() => store.assignHost("w.localhost", b))).toMatchObject({ code: "host_in_use", details: { app: "wild" } });
    // Assigning to the account that routes it just records the admin as the source.
    store.assignHost("shop.localhost", a);
    expect(store.listHostClaims(a).map((c) => `${c.host}/${c.source}`)).toEqual(["shop.localhost/admin", "w.localhost/deploy"]);
  });

  it("assignHost of a parent is allowed when the other account holds the names it routes under it", () => {
    deploy("api", a, [r("api.q.localhost")]);
    store.assignHost("q.localhost", b);
    expect(claims()).toEqual(["api.q.localhost=alice/deploy", "q.localhost=bob/admin"]);
  });

  // An admin's assignment is authority: the account holds the name and routes it, even under a
  // name another account holds (#claimHosts honours names the account already holds).
  it("an account can route a name an admin assigned to it, even under another account's name", () => {
    deploy("shop", a, [r("shop.localhost")]);
    store.assignHost("x.shop.localhost", b);
    expect(store.hostOwner("x.shop.localhost")).toBe(b);
    // Today: host_unavailable for bob's own name.
    expect(deploy("x", b, [r("x.shop.localhost")]).version).toBe(1);
  });

  it("assignHost moves a name that is no longer routed; the old holder's rollback to it is then refused", () => {
    deploy("site", a, [r("old.localhost")]);
    deploy("site", a, [r("new.localhost")]);
    store.assignHost("old.localhost", b);
    expect(store.hostOwner("old.localhost")).toBe(b);
    expect(thrown(() => store.rollback("site"))).toMatchObject(unavailable("old.localhost"));
    expect(store.listApps(a)[0]!.activeVersion).toBe(2);
  });

  it("backfillHostClaims claims the hosts of active routes for their accounts, the oldest deployment first", async () => {
    const admin = store.ensureDefaultAccount();
    deploy("first", a, [r("shared.localhost", "/a"), r("*.wild.localhost")]);
    await sleep(5);
    // A data dir from before host claims: two accounts route one host.
    db.sqlite.exec("DELETE FROM host_claims");
    deploy("second", b, [r("shared.localhost", "/b"), r("bob.localhost")]);
    deploy("catchall", admin, [r("*"), r("localhost", "/health")], { privileged: true });
    deploy("gone", b, [r("gone.localhost")]);
    deploy("gone", b, [r("bob.localhost", "/gone")]);
    db.sqlite.exec("DELETE FROM host_claims");

    // "*" claims nothing, "localhost" is reserved, gone.localhost is not routed by an active deployment.
    expect(store.backfillHostClaims()).toBe(3);
    expect(claims()).toEqual(["bob.localhost=bob/deploy", "shared.localhost=alice/deploy", "wild.localhost=alice/deploy"]);
    expect(store.backfillHostClaims()).toBe(0);
  });
});

describe("Store: activeRouteEntries", () => {
  it("lists the routes of active deployments only, by app name then declaration order, with their targets", () => {
    const acct = store.createAccount("acme", null).id;
    const z1 = deploy("zeta", acct, [r("z.localhost", "/old")]);
    const z2 = deploy("zeta", acct, [r("z.localhost", "/b"), r("z.localhost", "/a"), r("z.localhost", "/k/:user", "user")]);
    const al = deploy("alpha", acct, [r("a.localhost")]);
    const target = (d: DeploymentInfo) => ({ appId: d.appId, appName: d.app, accountId: acct, deploymentId: d.id });
    expect(store.activeRouteEntries()).toEqual([
      { host: "a.localhost", path: "/", mode: "snapshot", target: target(al) },
      { host: "z.localhost", path: "/b", mode: "snapshot", target: target(z2) },
      { host: "z.localhost", path: "/a", mode: "snapshot", target: target(z2) },
      { host: "z.localhost", path: "/k/:user", mode: "snapshot", key: "user", target: target(z2) },
    ]);
    store.rollback("zeta");
    expect(store.activeRouteEntries().filter((e) => e.target.appName === "zeta")).toEqual([{ host: "z.localhost", path: "/old", mode: "snapshot", target: target(z1) }]);
  });

  it("is empty on a new database", () => {
    expect(store.activeRouteEntries()).toEqual([]);
  });
});

describe("Store: base domain (APP.ACCOUNT.BASE) and verified domains", () => {
  let base: Store;
  let a: string;
  let b: string;
  let n = 0;
  const tenantDeploy = (app: string, account: string, hosts: string[]) =>
    base.createDeployment({ appName: app, accountId: account, runtime: "php", bundleSha256: createHash("sha256").update(`b${++n}`).digest("hex"), bundleBytes: 1, manifest: {}, routes: hosts.map((h) => r(h)) });
  beforeEach(() => {
    base = new Store(db);
    a = base.createAccount("alice", null).id;
    b = base.createAccount("bob", null).id;
  });

  it("an ordinary account routes only names under ACCOUNT.BASE, with no claim stored", () => {
    expect(tenantDeploy("blog", a, ["blog.alice.localhost", "*.alice.localhost", "a.b.alice.localhost"]).version).toBe(1);
    expect(base.listHostClaims()).toEqual([]);
    for (const host of ["x.bob.localhost", "*.bob.localhost", "alice.localhost", "blog.localhost", "x.nobody.localhost", "shop.example", "*.shop.example"]) {
      expect(thrown(() => tenantDeploy("grab", a, [host])), host).toMatchObject({ code: "host_unavailable", details: { host } });
    }
    expect(thrown(() => tenantDeploy("grab", a, ["*.localhost"]))).toMatchObject({ code: "host_reserved" });
  });

  it("the default account's token routes APP.BASE for its own app only", () => {
    const d = base.ensureDefaultAccount();
    expect(tenantDeploy("blog", d, ["blog.localhost"]).version).toBe(1);
    expect(thrown(() => tenantDeploy("wiki", d, ["other.localhost"]))).toMatchObject({ code: "host_unavailable" });
  });

  it("a verified domain is the account's: the name, names under it and wildcards in it; never another account's", () => {
    expect(base.domainUnavailable("shop.example", a)).toBeUndefined();
    base.grantVerifiedHost("shop.example", a);
    expect(tenantDeploy("shop", a, ["shop.example", "api.shop.example", "*.shop.example"]).version).toBe(1);
    const refusal = base.domainUnavailable("shop.example", b);
    expect(refusal).toBe(base.domainRefusal("shop.example"));
    expect(base.domainUnavailable("api.shop.example", b)).toBe(base.domainRefusal("api.shop.example"));
    expect(base.domainUnavailable("x.alice.localhost", a)).toBe(base.domainRefusal("x.alice.localhost"));
    expect(base.domainUnavailable("co.uk", a)).toBe(base.domainRefusal("co.uk"));
    expect(() => base.grantVerifiedHost("shop.example", b)).toThrow(ConflictError);
    for (const host of ["shop.example", "api.shop.example", "*.shop.example"]) {
      expect(thrown(() => tenantDeploy("grab", b, [host])), host).toMatchObject({ code: "host_unavailable" });
    }
    // Released only when no route uses it.
    expect(() => base.releaseHost("shop.example", a)).toThrow(ConflictError);
    expect(base.releaseHost("shop.example", b)).toBe(false);
  });

  it("an account name whose namespace is already routed cannot be created", () => {
    const d = base.ensureDefaultAccount();
    base.createDeployment({ appName: "x", accountId: d, runtime: "php", bundleSha256: "0".repeat(64), bundleBytes: 1, manifest: {}, routes: [r("api.later.localhost")], privileged: true });
    expect(() => base.createAccount("later", null)).toThrow(/already routed/);
    expect(thrown(() => base.assignHost("x.alice.localhost", b))).toMatchObject({ code: "host_in_use" });
  });
});
