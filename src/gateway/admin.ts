/**
 * Admin API (its own listener, loopback by default): deploy, list, roll back, inspect.
 * Every /v1 endpoint needs a bearer token (compared by hash in constant time) carrying the scope
 * ADMIN_ENDPOINTS names for it. An account token only ever sees its own account: another
 * account's app, key, invoice or account answers exactly like one that does not exist.
 */
import { Hono, type Context } from "hono";
import { z } from "zod";
import type { Platform } from "../platform/index.js";
import { errorToResponse } from "./respond.js";
import { readStreamLimited } from "./body.js";
import { DEFAULT_BUNDLE_LIMITS, decodeImage, imageToTar } from "../bundle/index.js";
import { deployBundle, deploymentUrl } from "./deploy.js";
import { currentPeriod } from "../billing/index.js";
import { ConflictError, InputError, PayloadTooLargeError, UnauthorizedError, ZerocellError } from "../errors.js";
import type { AppInfo, Scope, TokenInfo } from "../store/index.js";
import { randomUUID } from "node:crypto";
import { checkHostPattern } from "../router/index.js";
import { log } from "../log.js";
import { dashboardResponse } from "./dashboard.js";
import { logsResponse } from "./admin-logs.js";
import { registerAccessKeyRoutes } from "./admin/access-keys.js";
import { DOMAIN_ENDPOINTS, registerDomainRoutes } from "./admin/domains.js";
import { registerBindingRoutes } from "./admin/bindings.js";
import { registerProgramRunRoutes } from "./admin/program-runs.js";
import { statsResponse } from "./admin-stats.js";
import { LIFECYCLE_ENDPOINTS, registerLifecycleRoutes } from "./admin/lifecycle.js";

const APP_NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const MAX_JSON_BYTES = 1024 * 1024;

type Env = { Variables: { token: TokenInfo; requestId: string } };

function assertAppName(name: string): void {
  if (!APP_NAME.test(name)) throw new InputError(`app name "${name.slice(0, 80)}" must be 1-63 characters of a-z, 0-9 and "-"`, { code: "bad_app_name" });
}

async function readLimited(c: Context, limit: number): Promise<Buffer> {
  const declared = c.req.header("content-length");
  if (declared !== undefined && Number(declared) > limit) throw new PayloadTooLargeError(`admin: body of ${declared} bytes exceeds the limit of ${limit} bytes`);
  const body = c.req.raw.body;
  if (body === null) return Buffer.alloc(0);
  return readStreamLimited(body, limit, () => new PayloadTooLargeError(`admin: body exceeds the limit of ${limit} bytes`));
}

async function readJson<T>(c: Context, schema: z.ZodType<T>): Promise<T> {
  const raw = await readLimited(c, MAX_JSON_BYTES);
  let data: unknown = {};
  if (raw.length > 0) {
    try {
      data = JSON.parse(raw.toString("utf8"));
    } catch {
      throw new InputError("admin: body is not valid JSON");
    }
  }
  const parsed = schema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new InputError(`admin: ${issue?.path.join(".") || "body"}: ${issue?.message ?? "invalid"}`);
  }
  return parsed.data;
}

/**
 * Every /v1 endpoint and the scopes that may call it (any one of them; an admin token may call
 * every endpoint). The one table: routes are registered only through `endpoint()`, which checks
 * the scope before anything else runs (so a 403 says nothing about the resource), and
 * createAdminApi refuses to build an API whose routes differ from this table.
 */
export const ADMIN_ENDPOINTS = {
  "POST /v1/apps/:app/deployments": ["deploy"],
  "GET /v1/apps": ["deploy", "read-usage"],
  "GET /v1/apps/:app/deployments": ["deploy"],
  "POST /v1/apps/:app/rollback": ["deploy"],
  "GET /v1/routes": ["deploy"],
  "GET /v1/pool": ["deploy"],
  "GET /v1/apps/:app/keys": ["deploy"],
  "GET /v1/apps/:app/keys/:key/export": ["deploy"],
  "DELETE /v1/apps/:app/keys/:key": ["deploy"],
  "GET /v1/apps/:app/logs": ["deploy"],
  "GET /v1/apps/:app/stats": ["deploy"],
  "POST /v1/accounts": ["admin"],
  "GET /v1/accounts": ["admin"],
  "POST /v1/tokens": ["admin"],
  "GET /v1/plans": ["deploy", "read-usage"],
  "POST /v1/plans": ["admin"],
  "GET /v1/usage": ["read-usage"],
  "GET /v1/invoices": ["read-usage"],
  "GET /v1/invoices/:id": ["read-usage"],
  "POST /v1/invoices/close": ["admin"],
  "POST /v1/invoices/:id/sync": ["admin"],
  "PUT /v1/certificates/:host": ["admin"],
  "GET /v1/hosts": ["deploy"],
  "PUT /v1/hosts/:host": ["admin"],
  "POST /v1/access-keys": ["deploy"],
  "GET /v1/access-keys": ["deploy"],
  "DELETE /v1/access-keys/:id": ["deploy"],
  "POST /v1/bindings": ["deploy"],
  "GET /v1/bindings": ["deploy"],
  "DELETE /v1/bindings/:id": ["deploy"],
  "POST /v1/objects/run": ["deploy"],
  ...LIFECYCLE_ENDPOINTS,
  ...DOMAIN_ENDPOINTS,
} as const satisfies Record<string, readonly [Scope, ...Scope[]]>;

export type AdminEndpoint = keyof typeof ADMIN_ENDPOINTS;
type PathOf<K extends string> = K extends `${string} ${infer P}` ? P : never;

function isAdmin(token: TokenInfo): boolean {
  return token.scopes.includes("admin");
}

function assertScope(token: TokenInfo, endpoint: AdminEndpoint): void {
  const needed: readonly Scope[] = ADMIN_ENDPOINTS[endpoint];
  if (isAdmin(token) || needed.some((s) => token.scopes.includes(s))) return;
  throw new ZerocellError("forbidden", 403, `admin: ${endpoint} needs the ${needed.map((s) => `"${s}"`).join(" or ")} scope`);
}

function appNotFound(name: string): ZerocellError {
  return new ZerocellError("app_not_found", 404, `no app named "${name.slice(0, 80)}"`);
}

function accountNotFound(name: string): ZerocellError {
  return new ZerocellError("account_not_found", 404, `no account named "${name.slice(0, 80)}"`);
}

function invoiceNotFound(id: string): ZerocellError {
  return new ZerocellError("invoice_not_found", 404, `no invoice ${id.slice(0, 80)}`);
}

/** Drops host process ids (pid, pids) at any depth: operators see them, tenants do not. */
function withoutPids(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutPids);
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(Object.entries(value).filter(([k]) => k !== "pid" && k !== "pids").map(([k, v]) => [k, withoutPids(v)]));
}

export function createAdminApi(platform: Platform): Hono<Env> {
  const app = new Hono<Env>();
  const store = platform.store;

  app.onError((err, c) => errorToResponse(err, c.get("requestId") ?? randomUUID(), "json"));
  app.notFound((c) => errorToResponse(new ZerocellError("not_found", 404, `admin: no endpoint ${c.req.method} ${c.req.path}`), c.get("requestId") ?? randomUUID(), "json"));

  app.use("*", async (c, next) => {
    c.set("requestId", randomUUID());
    await next();
  });

  app.get("/healthz", (c) => c.json({ ok: true }));
  // Ready to serve app requests (load balancers, orchestrators): 200 or 503, no token.
  app.get("/readyz", (c) => {
    const r = platform.readiness();
    return c.json(r, r.ready ? 200 : 503);
  });
  // Prometheus metrics name every app, so they need an admin token (Prometheus: authorization.credentials).
  app.get("/metrics", async (c) => {
    const m = /^Bearer\s+(\S+)$/i.exec(c.req.header("authorization") ?? "");
    const token = m?.[1] === undefined ? undefined : store.verifyToken(m[1]);
    if (token === undefined) throw new UnauthorizedError();
    if (!isAdmin(token)) throw new ZerocellError("forbidden", 403, "admin: /metrics needs the \"admin\" scope");
    const { body, contentType } = await platform.metrics.text();
    return c.body(body, 200, { "content-type": contentType });
  });
  app.get("/dashboard/:page?", (c) => dashboardResponse(c.req.param("page")));

  app.use("/v1/*", async (c, next) => {
    const auth = c.req.header("authorization") ?? "";
    const m = /^Bearer\s+(\S+)$/i.exec(auth);
    const token = m?.[1] === undefined ? undefined : store.verifyToken(m[1]);
    if (token === undefined) throw new UnauthorizedError();
    c.set("token", token);
    await next();
  });

  /** Registers a /v1 endpoint of ADMIN_ENDPOINTS; its scope is checked before the handler runs. */
  const endpoint = <K extends AdminEndpoint>(key: K, handler: (c: Context<Env, PathOf<K>>, token: TokenInfo) => Response | Promise<Response>): void => {
    const [method, path] = key.split(" ") as [string, PathOf<K>];
    app.on(method, path, async (c) => {
      const token = c.get("token");
      assertScope(token, key);
      return handler(c as unknown as Context<Env, PathOf<K>>, token);
    });
  };

  /** The account a token's reads are limited to: undefined (all) for admin tokens, else its own. */
  const ownAccount = (token: TokenInfo): string | undefined => {
    if (isAdmin(token)) return undefined;
    if (token.accountId === null) throw new ZerocellError("forbidden", 403, "admin: this token belongs to no account");
    return token.accountId;
  };
  /** The account new apps of a token go to: its own, or the default account for admin tokens. */
  const deployAccount = (token: TokenInfo): string => ownAccount(token) ?? store.ensureDefaultAccount();
  /**
   * The app a token may manage, or the 404 a missing app gets: another account's app answers
   * exactly the same (status, code, message), so app names of other accounts do not leak.
   */
  const visibleApp = (token: TokenInfo, appName: string): AppInfo => {
    const owner = store.appAccount(appName);
    const own = ownAccount(token);
    const found = owner === undefined || (own !== undefined && owner !== own) ? undefined : store.listApps(owner).find((a) => a.name === appName);
    if (found === undefined) throw appNotFound(appName);
    return found;
  };
  /**
   * Store conflicts that would name another account's app become answers about the token's own
   * request only (the host is taken; by whom is not said).
   */
  const hideForeign = (token: TokenInfo, appName: string, e: unknown): unknown => {
    if (isAdmin(token) || !(e instanceof ZerocellError)) return e;
    if (e.code === "app_owned_elsewhere") return appNotFound(appName);
    if (e.code === "route_conflict") {
      const other = typeof e.details?.app === "string" ? e.details.app : undefined;
      if (other !== undefined && store.appAccount(other) === ownAccount(token)) return e;
      const host = typeof e.details?.host === "string" ? e.details.host : "";
      const path = typeof e.details?.path === "string" ? e.details.path : "";
      return new ConflictError("route_conflict", `deploy: route ${host.slice(0, 253)}${path.slice(0, 200)} of app "${appName.slice(0, 80)}" is already served by another account`, { host, path });
    }
    return e;
  };

  // --- apps, deployments, routes, pool, keys (deploy) ---

  endpoint("POST /v1/apps/:app/deployments", async (c, token) => {
    const appName = c.req.param("app");
    assertAppName(appName);
    const owner = store.appAccount(appName);
    if (owner !== undefined) visibleApp(token, appName);
    const hosts = c.req.queries("host") ?? [];
    if (hosts.length > 32) throw new InputError("deploy: at most 32 --host values");
    const archive = await readLimited(c, DEFAULT_BUNDLE_LIMITS.maxArchiveBytes);
    try {
      const deployment = await deployBundle(platform, { appName, archive, hosts, accountId: owner ?? deployAccount(token), privileged: isAdmin(token) });
      return c.json({ deployment: { ...deployment, url: deploymentUrl(platform, deployment) ?? null } }, 201);
    } catch (e) {
      throw hideForeign(token, appName, e);
    }
  });

  endpoint("GET /v1/apps", (c, token) => c.json({ apps: store.listApps(ownAccount(token)) }));

  endpoint("GET /v1/apps/:app/deployments", (c, token) => {
    const a = visibleApp(token, c.req.param("app"));
    return c.json({ deployments: store.listDeployments(a.name) });
  });

  endpoint("POST /v1/apps/:app/rollback", async (c, token) => {
    const a = visibleApp(token, c.req.param("app"));
    const body = await readJson(c, z.object({ version: z.number().int().positive().optional() }).strict());
    let deployment;
    try {
      deployment = store.rollback(a.name, body.version, isAdmin(token));
    } catch (e) {
      throw hideForeign(token, a.name, e);
    }
    platform.reloadRoutes();
    log.info("rolled back", { app: a.name, version: deployment.version });
    return c.json({ deployment });
  });

  endpoint("GET /v1/routes", (c, token) => {
    const own = ownAccount(token);
    const routes = platform.table.entries
      .filter((e) => own === undefined || e.target.accountId === own)
      .map((e) => ({ host: e.host, path: e.path, mode: e.mode, key: e.key ?? null, app: e.target.appName, deploymentId: e.target.deploymentId }));
    return c.json({ routes });
  });

  endpoint("GET /v1/pool", (c, token) => {
    const own = ownAccount(token);
    const visibleApps = new Set(store.listApps(own).map((a) => a.name));
    const deployments = platform.pool.stats().filter((s) => visibleApps.has(s.app));
    // Host pids are for operators (kill, inspect); a tenant has no use for them.
    if (own !== undefined) return c.json({ deployments: withoutPids(deployments) });
    return c.json({ deployments, spares: platform.pool.spares() });
  });

  endpoint("GET /v1/apps/:app/logs", (c, token) => logsResponse(c, platform, visibleApp(token, c.req.param("app")).id));
  endpoint("GET /v1/apps/:app/stats", (c, token) => statsResponse(c, platform, visibleApp(token, c.req.param("app"))));

  endpoint("GET /v1/apps/:app/keys", (c, token) => {
    const a = visibleApp(token, c.req.param("app"));
    return c.json({ keys: platform.keys.list(a.id) });
  });

  endpoint("GET /v1/apps/:app/keys/:key/export", async (c, token) => {
    const a = visibleApp(token, c.req.param("app"));
    const key = c.req.param("key");
    const data = await platform.keys.load(a.id, key);
    if (data === undefined) throw new ZerocellError("key_not_found", 404, `app "${a.name}" has no data for key "${key.slice(0, 80)}"`);
    const tar = imageToTar(decodeImage(Buffer.from(data)).entries);
    return new Response(new Uint8Array(tar), { headers: { "content-type": "application/x-tar", "content-disposition": `attachment; filename="${a.name}-key.tar"` } });
  });

  endpoint("DELETE /v1/apps/:app/keys/:key", (c, token) => {
    const a = visibleApp(token, c.req.param("app"));
    const key = c.req.param("key");
    if (!platform.keys.delete(a.id, key)) throw new ZerocellError("key_not_found", 404, `app "${a.name}" has no data for key "${key.slice(0, 80)}"`);
    log.info("key deleted", { app: a.name, key: key.slice(0, 80) });
    return c.json({ deleted: true, key });
  });

  // --- accounts, tokens, plans (admin; plans are readable by every token) ---
  const accountName = z.string().regex(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/, "must be 1-63 characters of a-z, 0-9 and -");
  const scopes = z.array(z.enum(["deploy", "read-usage"])).min(1).max(2);

  endpoint("POST /v1/accounts", async (c) => {
    const body = await readJson(c, z.object({ name: accountName, plan: z.string().max(64).optional(), scopes: scopes.optional() }).strict());
    const plan = body.plan === undefined ? null : platform.billing.planByName(body.plan).id;
    const account = store.createAccount(body.name, plan);
    const { token } = store.createToken(account.id, body.scopes ?? ["deploy", "read-usage"]);
    log.info("account created", { account: account.name });
    return c.json({ account, token }, 201);
  });

  endpoint("GET /v1/accounts", (c) => c.json({ accounts: store.listAccounts() }));

  endpoint("POST /v1/tokens", async (c) => {
    const body = await readJson(c, z.object({ account: accountName, scopes }).strict());
    const account = store.accountByName(body.account);
    if (account === undefined) throw accountNotFound(body.account);
    const { id, token } = store.createToken(account.id, body.scopes);
    return c.json({ id, token, account: account.name, scopes: body.scopes }, 201);
  });

  endpoint("GET /v1/plans", (c) => c.json({ plans: platform.billing.listPlans() }));

  endpoint("POST /v1/plans", async (c) => {
    const money = z.number().int().min(0).max(1_000_000_000_000);
    const body = await readJson(
      c,
      z
        .object({
          name: accountName,
          currency: z.string().regex(/^[a-z]{3}$/, "must be an ISO 4217 code like usd"),
          requestPriceMicros: money,
          gbSecondPriceMicros: money,
          gigaInstructionPriceMicros: money,
          freeRequests: money.default(0),
          freeGbSeconds: money.default(0),
          freeGigaInstructions: money.default(0),
        })
        .strict(),
    );
    return c.json({ plan: platform.billing.createPlan(body) }, 201);
  });

  // --- usage and invoices (read-usage; an account token sees its own account only) ---
  /**
   * The account a read is limited to: the token's own, or any (or the asked one) for admins. An
   * account token asking for another account gets the 404 of an account that does not exist.
   */
  const readAccount = (token: TokenInfo, asked: string | undefined): string | undefined => {
    const own = ownAccount(token);
    if (asked === undefined) return own;
    const a = store.accountByName(asked);
    if (a === undefined || (own !== undefined && a.id !== own)) throw accountNotFound(asked);
    return a.id;
  };
  const day = z.string().regex(/^\d{4}-\d{2}-\d{2}$/, "must look like 2026-11-26");

  endpoint("GET /v1/usage", (c, token) => {
    const q = z.object({ account: z.string().optional(), app: z.string().optional(), from: day.optional(), to: day.optional() }).safeParse(c.req.query());
    if (!q.success) throw new InputError(`usage: ${q.error.issues[0]?.path.join(".")}: ${q.error.issues[0]?.message}`);
    const accountId = readAccount(token, q.data.account);
    return c.json({ usage: platform.billing.usage({ ...(accountId === undefined ? {} : { accountId }), ...(q.data.app === undefined ? {} : { app: q.data.app }), ...(q.data.from === undefined ? {} : { from: q.data.from }), ...(q.data.to === undefined ? {} : { to: q.data.to }) }) });
  });

  endpoint("GET /v1/invoices", (c, token) => {
    const accountId = readAccount(token, c.req.query("account"));
    const list = platform.billing.listInvoices(accountId);
    if (c.req.query("drafts") !== undefined) {
      // The current period, not closed yet, as a draft per account with usage.
      const period = currentPeriod();
      const accountsWithUsage = new Set(platform.billing.usage({ ...(accountId === undefined ? {} : { accountId }), from: `${period}-01`, to: `${period}-31` }).map((u) => u.accountId));
      for (const a of accountsWithUsage) if (!list.some((i) => i.accountId === a && i.period === period)) list.unshift(platform.billing.draft(a, period));
    }
    return c.json({ invoices: list.map(({ lines, ...i }) => ({ ...i, lineCount: lines.length })) });
  });

  endpoint("GET /v1/invoices/:id", (c, token) => {
    const id = c.req.param("id");
    const own = ownAccount(token);
    const m = /^draft_(acct_[A-Za-z0-9]+)_(\d{4}-\d{2})$/.exec(id);
    // Ownership first: a draft of another (or no) account is the same 404 as an unknown id.
    if (m !== null && own !== undefined && m[1] !== own) throw invoiceNotFound(id);
    const inv = m === null ? platform.billing.invoice(id) : platform.billing.draft(m[1]!, m[2]!);
    if (inv === undefined || (own !== undefined && inv.accountId !== own)) throw invoiceNotFound(id);
    return c.json({ invoice: inv });
  });

  endpoint("POST /v1/invoices/close", async (c) => {
    const body = await readJson(c, z.object({ period: z.string().max(16) }).strict());
    const r = platform.billing.closePeriod(body.period, platform.stripe !== undefined);
    log.info("period closed", { period: body.period, created: r.created.length, existing: r.existing });
    for (const inv of r.created) void platform.stripe?.sync(inv.id);
    return c.json({ period: body.period, created: r.created.map(({ lines, ...i }) => ({ ...i, lineCount: lines.length })), existing: r.existing });
  });

  endpoint("POST /v1/invoices/:id/sync", (c) => {
    if (platform.stripe === undefined) throw new ZerocellError("stripe_not_configured", 409, "billing: set STRIPE_API_KEY to sync invoices to Stripe");
    const inv = platform.billing.invoice(c.req.param("id"));
    if (inv === undefined) throw invoiceNotFound(c.req.param("id"));
    void platform.stripe.sync(inv.id);
    return c.json({ invoice: inv.id, syncing: true }, 202);
  });

  endpoint("PUT /v1/certificates/:host", async (c) => {
    const body = await readJson(c, z.object({ cert: z.string().max(256 * 1024), key: z.string().max(256 * 1024) }).strict());
    try {
      await platform.certs.installCertificate(c.req.param("host"), body.cert, body.key);
    } catch (e) {
      if (e instanceof ZerocellError) throw e;
      throw new InputError(`certificates: ${(e as Error).message}`, { cause: e });
    }
    return c.json({ ok: true, host: c.req.param("host") });
  });

  // --- host names held by accounts (src/router/hosts.ts) ---
  endpoint("GET /v1/hosts", (c, token) => {
    const own = ownAccount(token);
    return c.json({ hosts: store.listHostClaims(own).map(({ accountId, ...h }) => (own === undefined ? { ...h, accountId } : h)) });
  });

  endpoint("PUT /v1/hosts/:host", async (c) => {
    const host = c.req.param("host").toLowerCase();
    const body = await readJson(c, z.object({ account: z.string().max(63) }).strict());
    const err = host.startsWith("*") ? "assign the name itself; wildcards under it follow" : checkHostPattern(host);
    if (err !== undefined) throw new InputError(`hosts: "${host.slice(0, 80)}": ${err}`, { code: "bad_host" });
    const account = store.accountByName(body.account);
    if (account === undefined) throw accountNotFound(body.account);
    store.assignHost(host, account.id);
    log.info("host assigned", { host, account: account.name });
    return c.json({ host, account: account.name });
  });

  registerAccessKeyRoutes({ endpoint, platform, ownAccount, readJson });
  registerBindingRoutes({ endpoint, platform, ownAccount, readJson });
  registerProgramRunRoutes({ endpoint, platform, ownAccount, readJson });
  registerDomainRoutes({ endpoint, platform, ownAccount, readJson });
  registerLifecycleRoutes({ platform, endpoint: endpoint as never, ownAccount, visibleApp });

  assertRoutesMatchTable(app);
  return app;
}

/** Every /v1 route is an ADMIN_ENDPOINTS entry and every entry is served; else the API does not start. */
function assertRoutesMatchTable(app: Hono<Env>): void {
  const served = new Set(app.routes.filter((r) => r.path.startsWith("/v1/") && r.method !== "ALL").map((r) => `${r.method} ${r.path}`));
  const table = new Set<string>(Object.keys(ADMIN_ENDPOINTS));
  const unlisted = [...served].filter((k) => !table.has(k));
  const missing = [...table].filter((k) => !served.has(k));
  if (unlisted.length > 0 || missing.length > 0) {
    throw new Error(`admin: routes and ADMIN_ENDPOINTS differ (not in the table: ${unlisted.join(", ") || "none"}; not served: ${missing.join(", ") || "none"})`);
  }
}
