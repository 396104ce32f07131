/**
 * Store: the platform's records (accounts, tokens, apps, deployments, routes) behind one class.
 * Deployments are immutable; activating one (deploy or rollback) is a single transaction that
 * also checks that no other app claims the same host and path. Never stores a token in clear.
 */
import { createHash, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { and, desc, eq, inArray, isNotNull, isNull, max, ne } from "drizzle-orm";
import { accounts, apiTokens, appKeys, apps, deployments, hostClaims, routes, snapshots } from "./schema.js";
import type { OpenedDb } from "./db.js";
import { ConflictError, NotFoundError } from "../errors.js";
import { canonicalPath, type RouteEntry, type RouteMode, type RouteSpec } from "../router/index.js";
import { baseDomainZone, claimedName, DEFAULT_BASE_DOMAIN, ownableAncestors, reservedHostError } from "../router/hosts.js";

export { openDb, type OpenedDb } from "./db.js";
export { BlobStore, sha256Hex } from "./blobs.js";

export type Scope = "admin" | "deploy" | "read-usage";

export interface TokenInfo {
  id: string;
  accountId: string | null;
  scopes: Scope[];
}

export interface DeploymentInfo {
  id: string;
  app: string;
  appId: string;
  accountId: string;
  version: number;
  runtime: string;
  bundleSha256: string;
  bundleBytes: number;
  manifest: unknown;
  createdAt: string;
  active: boolean;
  /** "checking" (health check running), "ready" (passed; may be active) or "failed". */
  status: DeploymentStatus;
  /** Why the health check failed (status "failed" only). */
  error: string | null;
  routes: RouteSpec[];
}

export type DeploymentStatus = "checking" | "ready" | "failed";

/** Longest health-check error kept with a failed deployment, characters. */
const MAX_DEPLOYMENT_ERROR_CHARS = 4000;

export interface AppInfo {
  id: string;
  name: string;
  accountId: string;
  activeVersion: number | null;
  activeDeploymentId: string | null;
  createdAt: string;
}

function hashToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

function newId(prefix: string): string {
  return `${prefix}_${randomUUID().replace(/-/g, "").slice(0, 20)}`;
}

export const DEFAULT_ACCOUNT = "default";

export interface StoreOptions {
  /** The platform's base domain: APP.ACCOUNT.BASE names belong to ACCOUNT (src/router/hosts.ts). */
  baseDomain?: string;
}

export class Store {
  readonly #o: OpenedDb;
  readonly baseDomain: string;

  constructor(opened: OpenedDb, options: StoreOptions = {}) {
    this.#o = opened;
    this.baseDomain = options.baseDomain ?? DEFAULT_BASE_DOMAIN;
  }

  get #db() {
    return this.#o.db;
  }

  /** Creates the default account on first start; returns its id. */
  ensureDefaultAccount(): string {
    const found = this.#db.select().from(accounts).where(eq(accounts.name, DEFAULT_ACCOUNT)).get();
    if (found !== undefined) return found.id;
    const id = newId("acct");
    this.#db.insert(accounts).values({ id, name: DEFAULT_ACCOUNT, createdAt: Date.now() }).run();
    return id;
  }

  createAccount(name: string, planId: string | null): { id: string; name: string } {
    if (this.#db.select().from(accounts).where(eq(accounts.name, name)).get() !== undefined) {
      throw new ConflictError("account_exists", `accounts: an account named "${name}" exists`);
    }
    // NAME.BASE's subdomains become the new account's: refused while someone else holds or routes one.
    const zone = `.${name}.${this.baseDomain}`;
    const used = [...this.#db.select({ h: hostClaims.host }).from(hostClaims).all().map((r) => r.h), ...this.#db.select({ h: routes.host }).from(routes).innerJoin(apps, eq(apps.activeDeploymentId, routes.deploymentId)).all().map((r) => r.h)];
    if (used.some((h) => h.endsWith(zone) || h === `*${zone}`)) {
      throw new ConflictError("account_name_in_use", `accounts: names under "${name}.${this.baseDomain}" are already routed; choose another account name`);
    }
    const id = newId("acct");
    this.#db.insert(accounts).values({ id, name, createdAt: Date.now(), planId }).run();
    return { id, name };
  }

  listAccounts(): Array<{ id: string; name: string; planId: string | null; createdAt: string; disabledAt: string | null }> {
    return this.#db.select().from(accounts).orderBy(accounts.name).all().map((a) => ({ id: a.id, name: a.name, planId: a.planId, createdAt: new Date(a.createdAt).toISOString(), disabledAt: a.disabledAt === null ? null : new Date(a.disabledAt).toISOString() }));
  }

  /**
   * Disables (or enables again) an account: false when it was already in that state. Tokens and
   * access keys are checked against it on every request, and the caller reloads the routes.
   */
  setAccountDisabled(accountId: string, disabled: boolean): boolean {
    const cond = disabled ? isNull(accounts.disabledAt) : isNotNull(accounts.disabledAt);
    return this.#db.update(accounts).set({ disabledAt: disabled ? Date.now() : null }).where(and(eq(accounts.id, accountId), cond)).run().changes > 0;
  }

  /** Whether an account exists and is not disabled. */
  isAccountActive(accountId: string): boolean {
    const a = this.#db.select({ d: accounts.disabledAt }).from(accounts).where(eq(accounts.id, accountId)).get();
    return a !== undefined && a.d === null;
  }

  accountByName(name: string): { id: string; name: string } | undefined {
    const a = this.#db.select().from(accounts).where(eq(accounts.name, name)).get();
    return a === undefined ? undefined : { id: a.id, name: a.name };
  }

  /** Creates a token and returns its secret (shown once, stored only as a hash). */
  createToken(accountId: string | null, scopes: Scope[]): { id: string; token: string } {
    const token = "zc_" + randomBytes(32).toString("base64url");
    const id = newId("tok");
    this.#db.insert(apiTokens).values({
      id,
      accountId,
      tokenHash: hashToken(token),
      prefix: token.slice(0, 10),
      scopes: scopes.join(","),
      createdAt: Date.now(),
    }).run();
    return { id, token };
  }

  /** Checks a presented token; the final comparison is constant-time. */
  verifyToken(token: string): TokenInfo | undefined {
    if (token.length < 10 || token.length > 200) return undefined;
    const hash = hashToken(token);
    const row = this.#db.select().from(apiTokens).where(and(eq(apiTokens.tokenHash, hash), isNull(apiTokens.revokedAt))).get();
    if (row === undefined) return undefined;
    if (!timingSafeEqual(Buffer.from(row.tokenHash, "hex"), Buffer.from(hash, "hex"))) return undefined;
    // A disabled account's tokens stop at once (checked per request, like revocation).
    if (row.accountId !== null && !this.isAccountActive(row.accountId)) return undefined;
    return { id: row.id, accountId: row.accountId, scopes: row.scopes.split(",") as Scope[] };
  }

  /** Tokens of one account (or all), newest first; never their secret or hash. */
  listTokens(accountId?: string): Array<{ id: string; prefix: string; accountId: string | null; account: string | null; scopes: Scope[]; createdAt: string; revokedAt: string | null }> {
    const q = this.#db
      .select({ t: apiTokens, account: accounts.name })
      .from(apiTokens)
      .leftJoin(accounts, eq(accounts.id, apiTokens.accountId));
    const rows = (accountId === undefined ? q : q.where(eq(apiTokens.accountId, accountId))).orderBy(desc(apiTokens.createdAt)).all();
    return rows.map(({ t, account }) => ({
      id: t.id,
      prefix: t.prefix,
      accountId: t.accountId,
      account,
      scopes: t.scopes.split(",") as Scope[],
      createdAt: new Date(t.createdAt).toISOString(),
      revokedAt: t.revokedAt === null ? null : new Date(t.revokedAt).toISOString(),
    }));
  }

  /** The account a token belongs to (undefined: no such token; null: an account-less admin token). */
  tokenAccount(id: string): string | null | undefined {
    const row = this.#db.select({ a: apiTokens.accountId }).from(apiTokens).where(eq(apiTokens.id, id)).get();
    return row === undefined ? undefined : row.a;
  }

  /** Revokes a token: every later request with it is refused (tokens are checked per request). */
  revokeToken(id: string): boolean {
    return this.#db.update(apiTokens).set({ revokedAt: Date.now() }).where(and(eq(apiTokens.id, id), isNull(apiTokens.revokedAt))).run().changes > 0;
  }

  /**
   * Deletes an app with its deployments, routes and snapshot rows in one transaction, and its
   * per-key rows when `withKeyData` (else refused while it has any). Returns what the caller must
   * still remove outside the database: blobs no other deployment or snapshot references, and the
   * keys whose files go.
   */
  deleteApp(appName: string, withKeyData: boolean): { appId: string; deployments: number; blobs: string[]; keys: string[] } {
    const sqlite = this.#o.sqlite;
    return sqlite.transaction(() => {
      const app = this.#requireApp(appName);
      const keys = this.#db.select({ key: appKeys.key }).from(appKeys).where(eq(appKeys.appId, app.id)).all().map((k) => k.key);
      if (keys.length > 0 && !withKeyData) {
        throw new ConflictError("app_has_data", `apps: "${appName}" has stored data for ${keys.length} key(s); delete it too with --delete-data (or export it first: zerocell keys ${appName} --export KEY)`, { keys: keys.length });
      }
      const deps = this.#db.select({ id: deployments.id, sha: deployments.bundleSha256 }).from(deployments).where(eq(deployments.appId, app.id)).all();
      const ids = deps.map((d) => d.id);
      const snaps = ids.length === 0 ? [] : this.#db.select({ sha: snapshots.sha256 }).from(snapshots).where(inArray(snapshots.deploymentId, ids)).all();
      this.#db.update(apps).set({ activeDeploymentId: null }).where(eq(apps.id, app.id)).run();
      if (ids.length > 0) {
        this.#db.delete(routes).where(inArray(routes.deploymentId, ids)).run();
        this.#db.delete(snapshots).where(inArray(snapshots.deploymentId, ids)).run();
        this.#db.delete(deployments).where(inArray(deployments.id, ids)).run();
      }
      this.#db.delete(appKeys).where(eq(appKeys.appId, app.id)).run();
      this.#db.delete(apps).where(eq(apps.id, app.id)).run();
      // Content-addressed: a blob another app's deployment or snapshot uses stays.
      const candidates = [...new Set([...deps.map((d) => d.sha), ...snaps.map((s) => s.sha)])];
      const blobs = candidates.filter(
        (sha) =>
          this.#db.select({ id: deployments.id }).from(deployments).where(eq(deployments.bundleSha256, sha)).get() === undefined &&
          this.#db.select({ id: snapshots.id }).from(snapshots).where(eq(snapshots.sha256, sha)).get() === undefined,
      );
      return { appId: app.id, deployments: ids.length, blobs, keys };
    }).immediate();
  }

  /**
   * Records a new immutable deployment of `appName` (creating the app on first deploy). With
   * `checking` (the deploy pipeline) it is not active yet: its health check runs next, then
   * activateDeployment or failDeployment; hosts and routes are checked now, before any guest code
   * runs, and again at activation (both may change meanwhile). Without it the deployment is
   * "ready" and active at once, in the same transaction.
   */
  createDeployment(input: {
    appName: string;
    accountId: string;
    runtime: string;
    bundleSha256: string;
    bundleBytes: number;
    manifest: unknown;
    routes: RouteSpec[];
    /** An admin token deploys: "*" and public suffixes are allowed (never another account's hosts). */
    privileged?: boolean;
    /** Record it as "checking" (not active) for the health check. */
    checking?: boolean;
    /** The env (deployments.env JSON, values encrypted); undefined: the app's current one (see appEnv). */
    env?: string | null;
  }): DeploymentInfo {
    const sqlite = this.#o.sqlite;
    const checking = input.checking === true;
    const run = sqlite.transaction(() => {
      let app = this.#db.select().from(apps).where(eq(apps.name, input.appName)).get();
      if (app !== undefined && app.accountId !== input.accountId) {
        // The same answer as for an app that does not exist: names of other accounts stay unknown.
        throw new NotFoundError("app_not_found", `no app named "${input.appName}"`);
      }
      this.#claimHosts(input.accountId, input.appName, input.routes, input.privileged === true, checking);
      if (app === undefined) {
        const id = newId("app");
        this.#db.insert(apps).values({ id, accountId: input.accountId, name: input.appName, createdAt: Date.now() }).run();
        app = this.#db.select().from(apps).where(eq(apps.id, id)).get()!;
      }
      this.#assertNoRouteConflict(app.id, input.appName, input.routes);
      const last = this.#db.select({ v: max(deployments.version) }).from(deployments).where(eq(deployments.appId, app.id)).get();
      const version = (last?.v ?? 0) + 1;
      const id = newId("dep");
      const env = input.env !== undefined ? input.env : this.#currentEnv(app.id);
      this.#db.insert(deployments).values({
        id,
        appId: app.id,
        version,
        runtime: input.runtime,
        bundleSha256: input.bundleSha256,
        bundleBytes: input.bundleBytes,
        manifest: JSON.stringify(input.manifest),
        createdAt: Date.now(),
        status: checking ? "checking" : "ready",
        env,
      }).run();
      input.routes.forEach((r, position) => {
        this.#db.insert(routes).values({
          deploymentId: id,
          host: r.host,
          path: r.path,
          canonicalPath: canonicalPath(r.path),
          mode: r.mode,
          keyParam: r.key ?? null,
          position,
        }).run();
      });
      if (!checking) this.#db.update(apps).set({ activeDeploymentId: id }).where(eq(apps.id, app.id)).run();
      return id;
    });
    const id = run.immediate();
    return this.getDeployment(id)!;
  }

  /**
   * A deployment that passed its health check becomes "ready" and the app's active one, in one
   * transaction that claims its hosts and checks its routes again.
   */
  activateDeployment(id: string, privileged = false): DeploymentInfo {
    const sqlite = this.#o.sqlite;
    sqlite.transaction(() => {
      const row = this.#db.select({ d: deployments, app: apps }).from(deployments).innerJoin(apps, eq(apps.id, deployments.appId)).where(eq(deployments.id, id)).get();
      if (row === undefined) throw new NotFoundError("deployment_not_found", `deploy: deployment ${id} not found`);
      if (row.d.status === "failed") throw new ConflictError("deployment_failed", `deploy: ${row.app.name} v${row.d.version} failed its health check and cannot be activated`);
      const specs = this.#routesOf(id);
      this.#claimHosts(row.app.accountId, row.app.name, specs, privileged);
      this.#assertNoRouteConflict(row.app.id, row.app.name, specs);
      this.#db.update(deployments).set({ status: "ready", error: null }).where(eq(deployments.id, id)).run();
      this.#db.update(apps).set({ activeDeploymentId: id }).where(eq(apps.id, row.app.id)).run();
    }).immediate();
    return this.getDeployment(id)!;
  }

  /** Records that a deployment failed its health check (it is never activated or retried). */
  failDeployment(id: string, error: string): DeploymentInfo | undefined {
    this.#db.update(deployments).set({ status: "failed", error: error.slice(0, MAX_DEPLOYMENT_ERROR_CHARS) }).where(eq(deployments.id, id)).run();
    return this.getDeployment(id);
  }

  /** At start-up: checks a previous process did not finish are failed (nobody waits for them). */
  failInterruptedDeployments(): number {
    return this.#db.update(deployments).set({ status: "failed", error: "deploy: the server stopped while the health check ran; deploy again" }).where(eq(deployments.status, "checking")).run().changes;
  }

  /**
   * Makes sure `accountId` may route every host its routes use (inside the caller's transaction):
   * - "*" and public suffixes: admin tokens only (host_reserved);
   * - names under ACCOUNT.BASE ("x.acme.BASE", "*.acme.BASE"): that account only, derived from
   *   its name, never stored;
   * - BASE, "*.BASE" and "L.BASE": the platform's (admin tokens), and APP.BASE for the default
   *   account's own app APP;
   * - any other name: the nearest of it and the names above it that an account holds (an admin
   *   assigned it, the account verified it with `domains add`, or an admin token claimed it
   *   first) decides; a name nobody holds is claimed by admin tokens only.
   * A tenant gets one answer (host_unavailable, one message) whether another account holds the
   * name or nobody does, so it learns nothing about other accounts' hosts.
   */
  #claimHosts(accountId: string, appName: string, specs: RouteSpec[], privileged: boolean, checkOnly = false): void {
    for (const pattern of new Set(specs.map((s) => s.host))) {
      const reserved = reservedHostError(pattern, privileged);
      if (reserved !== undefined) throw new ConflictError("host_reserved", `deploy: host "${pattern}": ${reserved}`, { host: pattern });
      const name = claimedName(pattern);
      if (name === undefined) continue;
      const unavailable = () =>
        new ConflictError(
          "host_unavailable",
          `deploy: host "${pattern}" is not available to this account: route names under ${this.#accountZone(accountId)} or a domain the account verified (zerocell domains add HOST)`,
          { host: pattern },
        );
      const zone = baseDomainZone(pattern, this.baseDomain);
      if (zone.kind === "account") {
        const zoneAccount = this.accountByName(zone.label)?.id;
        if (zoneAccount === accountId) continue;
        // An admin token may use a namespace no account has (createAccount then refuses the name).
        if (zoneAccount !== undefined || !privileged) throw unavailable();
      }
      if (zone.kind === "platform") {
        const ownAppHost = pattern === `${appName}.${this.baseDomain}` && accountId === this.#defaultAccountId();
        if (!privileged && !ownAppHost) throw unavailable();
      }
      // The nearest held name (the name itself, then the names above it) decides.
      let holder: string | undefined;
      for (const n of [name, ...ownableAncestors(name)]) {
        holder = this.hostOwner(n);
        if (holder !== undefined) break;
      }
      if (holder === accountId) continue;
      if (holder !== undefined) throw unavailable();
      // A free name: admin tokens claim it, and a default-account token its own APP.BASE (checked above).
      if (!privileged && zone.kind !== "platform") throw unavailable();
      if (!checkOnly) this.#db.insert(hostClaims).values({ host: name, accountId, source: "deploy", createdAt: Date.now() }).run();
    }
  }

  /** "*.acme.BASE" for an account's own names (or "APP.BASE" for the default account's apps). */
  #accountZone(accountId: string): string {
    const a = this.#db.select({ name: accounts.name }).from(accounts).where(eq(accounts.id, accountId)).get();
    if (a === undefined) return `*.${this.baseDomain}`;
    return accountId === this.#defaultAccountId() ? `APP.${this.baseDomain}` : `*.${a.name}.${this.baseDomain}`;
  }

  #defaultAccountId(): string | undefined {
    return this.#db.select({ id: accounts.id }).from(accounts).where(eq(accounts.name, DEFAULT_ACCOUNT)).get()?.id;
  }

  /** Account name by id. */
  accountName(id: string): string | undefined {
    return this.#db.select({ name: accounts.name }).from(accounts).where(eq(accounts.id, id)).get()?.name;
  }

  /**
   * Why `accountId` may not hold `name` as a domain of its own (verify it with ACME, or be
   * assigned it), or undefined. A tenant's answer is one message for every reason that involves
   * another account (held by it, or a name above it held by it).
   */
  domainUnavailable(name: string, accountId: string): string | undefined {
    const refusal = this.domainRefusal(name);
    const reserved = reservedHostError(name, false);
    if (reserved !== undefined) return refusal;
    if (baseDomainZone(name, this.baseDomain).kind !== "outside") return refusal;
    for (const n of [name, ...ownableAncestors(name)]) {
      const holder = this.hostOwner(n);
      if (holder !== undefined) return holder === accountId ? undefined : refusal;
    }
    return undefined;
  }

  /** The one message a tenant gets for a domain it may not add, whatever the reason. */
  domainRefusal(name: string): string {
    return `"${name.slice(0, 253)}" cannot be added to this account: it must be a domain outside ${this.baseDomain} that no other account holds (nor a name above it)`;
  }

  /**
   * Records that `accountId` proved control of `name` (ACME): it holds the name from now on.
   * Checked again inside the transaction (another account may have got it meanwhile).
   */
  grantVerifiedHost(name: string, accountId: string): void {
    this.#o.sqlite.transaction(() => {
      const why = this.domainUnavailable(name, accountId);
      if (why !== undefined) throw new ConflictError("domain_unavailable", `domains: ${why}`, { host: name });
      this.#db.insert(hostClaims).values({ host: name, accountId, source: "acme", createdAt: Date.now() })
        .onConflictDoUpdate({ target: hostClaims.host, set: { accountId, source: "acme" } })
        .run();
    }).immediate();
  }

  /** Gives up a held name (domains remove); refused while the account's active routes use it. */
  releaseHost(name: string, accountId: string): boolean {
    return this.#o.sqlite.transaction(() => {
      if (this.hostOwner(name) !== accountId) return false;
      const users = this.#db
        .select({ host: routes.host, app: apps.name })
        .from(routes)
        .innerJoin(apps, eq(apps.activeDeploymentId, routes.deploymentId))
        .where(eq(apps.accountId, accountId))
        .all()
        .filter((r) => { const n = claimedName(r.host); return n === name || (n !== undefined && n.endsWith(`.${name}`)); });
      if (users.length > 0) throw new ConflictError("host_in_use", `domains: "${name}" is routed by app "${users[0]!.app}"; deploy it without that host (or delete the app) first`, { host: name, app: users[0]!.app });
      this.#db.delete(hostClaims).where(and(eq(hostClaims.host, name), eq(hostClaims.accountId, accountId))).run();
      return true;
    }).immediate();
  }

  /** The account that holds a host name, if any. */
  hostOwner(name: string): string | undefined {
    return this.#db.select({ a: hostClaims.accountId }).from(hostClaims).where(eq(hostClaims.host, name)).get()?.a;
  }

  /** Host names held, by one account or all. */
  listHostClaims(accountId?: string): Array<{ host: string; accountId: string; account: string; source: string; createdAt: string }> {
    const q = this.#db
      .select({ host: hostClaims.host, accountId: hostClaims.accountId, account: accounts.name, source: hostClaims.source, createdAt: hostClaims.createdAt })
      .from(hostClaims)
      .innerJoin(accounts, eq(accounts.id, hostClaims.accountId));
    const rows = accountId === undefined ? q.orderBy(hostClaims.host).all() : q.where(eq(hostClaims.accountId, accountId)).orderBy(hostClaims.host).all();
    return rows.map((r) => ({ ...r, createdAt: new Date(r.createdAt).toISOString() }));
  }

  /**
   * An admin gives a host name to an account. Refused while another account's active routes
   * use the name (or a name under it that the other account does not itself hold).
   */
  assignHost(name: string, accountId: string): void {
    const zone = baseDomainZone(name, this.baseDomain);
    if (zone.kind === "account") throw new ConflictError("host_in_use", `hosts: "${name}" is under ${zone.label}.${this.baseDomain}, which belongs to the account "${zone.label}" by its name`, { host: name });
    const sqlite = this.#o.sqlite;
    sqlite.transaction(() => {
      const users = this.#db
        .select({ host: routes.host, accountId: apps.accountId, app: apps.name })
        .from(routes)
        .innerJoin(apps, eq(apps.activeDeploymentId, routes.deploymentId))
        .all()
        .filter((r) => r.accountId !== accountId)
        .filter((r) => {
          const n = claimedName(r.host);
          return n === name || (n !== undefined && n.endsWith(`.${name}`) && this.hostOwner(n) !== r.accountId);
        });
      if (users.length > 0) throw new ConflictError("host_in_use", `hosts: "${name}" is routed by app "${users[0]!.app}" of another account; move or roll back its routes first`, { host: name, app: users[0]!.app });
      this.#db.insert(hostClaims).values({ host: name, accountId, source: "admin", createdAt: Date.now() })
        .onConflictDoUpdate({ target: hostClaims.host, set: { accountId, source: "admin", createdAt: Date.now() } })
        .run();
    }).immediate();
  }

  /**
   * Data dirs from before host claims: every host an active route uses is claimed for its app's
   * account, oldest deployment first (a host two accounts shared goes to the earlier one).
   */
  backfillHostClaims(): number {
    const rows = this.#db
      .select({ host: routes.host, accountId: apps.accountId, createdAt: deployments.createdAt })
      .from(routes)
      .innerJoin(apps, eq(apps.activeDeploymentId, routes.deploymentId))
      .innerJoin(deployments, eq(deployments.id, routes.deploymentId))
      .orderBy(deployments.createdAt)
      .all();
    let added = 0;
    for (const r of rows) {
      const name = claimedName(r.host);
      if (name === undefined || reservedHostError(r.host, false) !== undefined || baseDomainZone(r.host, this.baseDomain).kind === "account" || this.hostOwner(name) !== undefined) continue;
      this.#db.insert(hostClaims).values({ host: name, accountId: r.accountId, source: "deploy", createdAt: Date.now() }).run();
      added++;
    }
    return added;
  }

  #assertNoRouteConflict(appId: string, appName: string, specs: RouteSpec[]): void {
    if (specs.length === 0) return;
    const hosts = [...new Set(specs.map((s) => s.host))];
    const taken = this.#db
      .select({ host: routes.host, canonical: routes.canonicalPath, path: routes.path, app: apps.name })
      .from(routes)
      .innerJoin(apps, eq(apps.activeDeploymentId, routes.deploymentId))
      .where(and(inArray(routes.host, hosts), ne(apps.id, appId)))
      .all();
    for (const s of specs) {
      const c = canonicalPath(s.path);
      const clash = taken.find((t) => t.host === s.host && t.canonical === c);
      if (clash !== undefined) {
        throw new ConflictError(
          "route_conflict",
          `deploy: route ${s.host}${s.path} of app "${appName}" is already served by app "${clash.app}" (${clash.host}${clash.path})`,
          { host: s.host, path: s.path, app: clash.app },
        );
      }
    }
  }

  /** Re-activates an older deployment (the previous one when `version` is undefined). */
  rollback(appName: string, version?: number, privileged = false): DeploymentInfo {
    const sqlite = this.#o.sqlite;
    const run = sqlite.transaction(() => {
      const app = this.#requireApp(appName);
      const current = app.activeDeploymentId === null ? undefined : this.#db.select().from(deployments).where(eq(deployments.id, app.activeDeploymentId)).get();
      let target;
      if (version !== undefined) {
        target = this.#db.select().from(deployments).where(and(eq(deployments.appId, app.id), eq(deployments.version, version))).get();
        if (target === undefined) throw new NotFoundError("deployment_not_found", `rollback: app "${appName}" has no version ${version}`);
        if (target.status !== "ready") throw new ConflictError("deployment_failed", `rollback: ${appName} v${version} ${target.status === "failed" ? "failed its health check" : "is still being checked"}; only a deployment that passed can serve`);
      } else {
        const older = this.#db.select().from(deployments).where(and(eq(deployments.appId, app.id), eq(deployments.status, "ready"))).orderBy(desc(deployments.version)).all()
          .filter((d) => current === undefined || d.version < current.version);
        target = older[0];
        if (target === undefined) throw new NotFoundError("deployment_not_found", `rollback: app "${appName}" has no version older than v${current?.version ?? 0}`);
      }
      this.#claimHosts(app.accountId, appName, this.#routesOf(target.id), privileged);
      this.#assertNoRouteConflict(app.id, appName, this.#routesOf(target.id));
      this.#db.update(apps).set({ activeDeploymentId: target.id }).where(eq(apps.id, app.id)).run();
      return target.id;
    });
    return this.getDeployment(run.immediate())!;
  }

  /**
   * The env a new deployment of an app starts from: its active deployment's, else its newest
   * deployment's (a first deploy that failed for want of a variable), else none.
   */
  #currentEnv(appId: string): string | null {
    const app = this.#db.select().from(apps).where(eq(apps.id, appId)).get();
    if (app?.activeDeploymentId != null) {
      const d = this.#db.select({ env: deployments.env }).from(deployments).where(eq(deployments.id, app.activeDeploymentId)).get();
      if (d !== undefined) return d.env;
    }
    return this.#db.select({ env: deployments.env }).from(deployments).where(eq(deployments.appId, appId)).orderBy(desc(deployments.version)).get()?.env ?? null;
  }

  /**
   * What an env change builds on: the app, its env now, and the deployment whose bundle, manifest
   * and routes the new revision reuses (the active one, else the newest). Undefined: no such app.
   */
  envBase(appName: string): { appId: string; accountId: string; env: string | null; deployment: DeploymentInfo | undefined } | undefined {
    const app = this.#db.select().from(apps).where(eq(apps.name, appName)).get();
    if (app === undefined) return undefined;
    const baseId = app.activeDeploymentId ?? this.#db.select({ id: deployments.id }).from(deployments).where(eq(deployments.appId, app.id)).orderBy(desc(deployments.version)).get()?.id;
    return { appId: app.id, accountId: app.accountId, env: this.#currentEnv(app.id), deployment: baseId === undefined ? undefined : this.getDeployment(baseId) };
  }

  /** A deployment's env as stored (values encrypted), for its sandbox hosts. */
  deploymentEnv(id: string): string | null {
    return this.#db.select({ env: deployments.env }).from(deployments).where(eq(deployments.id, id)).get()?.env ?? null;
  }

  #requireApp(name: string) {
    const app = this.#db.select().from(apps).where(eq(apps.name, name)).get();
    if (app === undefined) throw new NotFoundError("app_not_found", `no app named "${name}"`);
    return app;
  }

  #routesOf(deploymentId: string): RouteSpec[] {
    return this.#db.select().from(routes).where(eq(routes.deploymentId, deploymentId)).orderBy(routes.position).all()
      .map((r) => ({ host: r.host, path: r.path, mode: r.mode as RouteMode, ...(r.keyParam === null ? {} : { key: r.keyParam }) }));
  }

  getDeployment(id: string): DeploymentInfo | undefined {
    const row = this.#db
      .select({ d: deployments, app: apps })
      .from(deployments)
      .innerJoin(apps, eq(apps.id, deployments.appId))
      .where(eq(deployments.id, id))
      .get();
    if (row === undefined) return undefined;
    return this.#toInfo(row.d, row.app);
  }

  #toInfo(d: typeof deployments.$inferSelect, app: typeof apps.$inferSelect): DeploymentInfo {
    return {
      id: d.id,
      app: app.name,
      appId: app.id,
      accountId: app.accountId,
      version: d.version,
      runtime: d.runtime,
      bundleSha256: d.bundleSha256,
      bundleBytes: d.bundleBytes,
      manifest: JSON.parse(d.manifest) as unknown,
      createdAt: new Date(d.createdAt).toISOString(),
      active: app.activeDeploymentId === d.id,
      status: d.status as DeploymentStatus,
      error: d.error,
      routes: this.#routesOf(d.id),
    };
  }

  listApps(accountId?: string): AppInfo[] {
    const rows = this.#db
      .select({ app: apps, version: deployments.version })
      .from(apps)
      .leftJoin(deployments, eq(deployments.id, apps.activeDeploymentId))
      .where(accountId === undefined ? undefined : eq(apps.accountId, accountId))
      .orderBy(apps.name)
      .all();
    return rows.map(({ app, version }) => ({
      id: app.id,
      name: app.name,
      accountId: app.accountId,
      activeVersion: version ?? null,
      activeDeploymentId: app.activeDeploymentId,
      createdAt: new Date(app.createdAt).toISOString(),
    }));
  }

  listDeployments(appName: string): DeploymentInfo[] {
    const app = this.#requireApp(appName);
    return this.#db.select().from(deployments).where(eq(deployments.appId, app.id)).orderBy(desc(deployments.version)).all()
      .map((d) => this.#toInfo(d, app));
  }

  appAccount(appName: string): string | undefined {
    return this.#db.select({ a: apps.accountId }).from(apps).where(eq(apps.name, appName)).get()?.a;
  }

  /** Every route of every active deployment, in declaration order, for the router. */
  activeRouteEntries(): RouteEntry[] {
    const rows = this.#db
      .select({ r: routes, app: apps })
      .from(routes)
      .innerJoin(apps, eq(apps.activeDeploymentId, routes.deploymentId))
      .innerJoin(accounts, eq(accounts.id, apps.accountId))
      // A disabled account's apps leave the table: 404 like an app nobody deployed, instances retire.
      .where(and(isNotNull(apps.activeDeploymentId), isNull(accounts.disabledAt)))
      .orderBy(apps.name, routes.position)
      .all();
    return rows.map(({ r, app }) => ({
      host: r.host,
      path: r.path,
      mode: r.mode as RouteMode,
      ...(r.keyParam === null ? {} : { key: r.keyParam }),
      target: { appId: app.id, appName: app.name, accountId: app.accountId, deploymentId: r.deploymentId },
    }));
  }
}
