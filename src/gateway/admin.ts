/**
 * Admin API (its own listener, loopback by default): deploy, list, roll back, inspect.
 * Every /v1 endpoint needs a bearer token (compared by hash in constant time) carrying the scope
 * ADMIN_ENDPOINTS names for it. An account token only ever sees its own account: another
 * account's app, key, invoice or account answers exactly like one that does not exist.
 */
import type { Context } from "hono";
import { OpenAPIHono, z } from "@hono/zod-openapi";
import type { ZodType } from "zod";
import type { Platform } from "../platform/index.js";
import { errorToResponse } from "./respond.js";
import { readStreamLimited } from "./body.js";
import { DEFAULT_BUNDLE_LIMITS, decodeImage, imageToTar } from "../bundle/index.js";
import { deployBundle, deploymentUrl, httpsPortSuffix } from "./deploy.js";
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
import { registerJobRoutes } from "./admin/jobs.js";
import { statsResponse } from "./admin-stats.js";
import { LIFECYCLE_ENDPOINTS, registerLifecycleRoutes } from "./admin/lifecycle.js";
import { MEMORY_ENDPOINTS, registerMemoryRoutes } from "./admin/memory.js";
import { ENV_ENDPOINTS, registerEnvRoutes } from "./admin/env.js";
import { ACCOUNT_ENDPOINTS, registerAccountRoutes } from "./admin/accounts.js";
import { OBJECT_QUOTA_ENDPOINTS, registerObjectQuotaRoutes } from "./admin/object-quotas.js";
import { JOB_EVENT_ENDPOINTS, registerJobEventRoutes } from "./admin/job-events.js";
import { declareEndpoint, ErrorBodySchema, paginate, parseInput, PageQuerySchema, type EndpointIo, type EndpointSpec } from "./admin/openapi.js";
import { declareDocument } from "./admin/document.js";
import * as S from "./admin/schemas.js";

const APP_NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const MAX_JSON_BYTES = 1024 * 1024;

type Env = { Variables: { token: TokenInfo; requestId: string; /** When the request reached the API (performance.timeOrigin based ms): server-timing's origin. */ arrivedAt: number } };

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

async function readJson<T>(c: Context, schema: ZodType<T>): Promise<T> {
  const raw = await readLimited(c, MAX_JSON_BYTES);
  let data: unknown = {};
  if (raw.length > 0) {
    try {
      data = JSON.parse(raw.toString("utf8"));
    } catch {
      throw new InputError("admin: body is not valid JSON");
    }
  }
  return parseInput(schema, data, "body");
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
  "POST /v1/jobs": ["deploy"],
  "GET /v1/jobs": ["deploy"],
  "GET /v1/jobs/:id": ["deploy"],
  "POST /v1/jobs/:id/cancel": ["deploy"],
  ...LIFECYCLE_ENDPOINTS,
  ...MEMORY_ENDPOINTS,
  ...ENV_ENDPOINTS,
  ...ACCOUNT_ENDPOINTS,
  ...DOMAIN_ENDPOINTS,
  ...OBJECT_QUOTA_ENDPOINTS,
  ...JOB_EVENT_ENDPOINTS,
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

export interface AdminApiOptions {
  /** The HTTPS listener's URL once it listens (deploy answers name the app's https URLs with its port). */
  httpsUrl?: () => string | undefined;
}

/** The https URLs a deployment's routes are reached at (wildcards shown as www). */
function routeUrls(routes: ReadonlyArray<{ host: string; path: string }>, httpsUrl: string | undefined): string[] {
  if (httpsUrl === undefined) return [];
  const port = httpsPortSuffix(httpsUrl);
  return routes.map((r) => `https://${r.host.replace("*", "www")}${port}${r.path}`);
}

export function createAdminApi(platform: Platform, options: AdminApiOptions = {}): OpenAPIHono<Env> {
  const app = new OpenAPIHono<Env>();
  const store = platform.store;

  app.onError((err, c) => errorToResponse(err, c.get("requestId") ?? randomUUID(), "json"));
  app.notFound((c) => errorToResponse(new ZerocellError("not_found", 404, `admin: no endpoint ${c.req.method} ${c.req.path}`), c.get("requestId") ?? randomUUID(), "json"));

  app.use("*", async (c, next) => {
    c.set("arrivedAt", performance.timeOrigin + performance.now());
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
  // The OpenAPI document of everything below (no token: it names no tenant's data).
  let document: string | undefined;
  app.get("/openapi.json", (c) => {
    document ??= JSON.stringify(declareDocument(app));
    return c.body(document, 200, { "content-type": "application/json" });
  });

  app.use("/v1/*", async (c, next) => {
    const auth = c.req.header("authorization") ?? "";
    const m = /^Bearer\s+(\S+)$/i.exec(auth);
    const token = m?.[1] === undefined ? undefined : store.verifyToken(m[1]);
    if (token === undefined) throw new UnauthorizedError();
    c.set("token", token);
    await next();
  });

  /**
   * Registers a /v1 endpoint of ADMIN_ENDPOINTS with its declaration (the OpenAPI document and
   * the validation `io` runs); its scope is checked before the handler runs, and input is
   * validated only when the handler asks (`io.query()`, `io.body()`), after its own checks (an
   * app the token cannot see is a 404 whatever the body).
   */
  const endpoint = <K extends AdminEndpoint, Spec extends EndpointSpec>(key: K, spec: Spec, handler: (c: Context<Env, PathOf<K>>, token: TokenInfo, io: EndpointIo<Spec>) => Response | Promise<Response>): void => {
    const [method, path] = key.split(" ") as [string, PathOf<K>];
    declareEndpoint(app, key, ADMIN_ENDPOINTS[key], spec);
    app.on(method, path, async (c) => {
      const token = c.get("token");
      assertScope(token, key);
      const io = {
        query: () => (spec.query === undefined ? {} : parseInput(spec.query, c.req.query(), "query")),
        body: () => (spec.body === undefined ? Promise.resolve(undefined) : readJson(c, spec.body)),
      } as EndpointIo<Spec>;
      return handler(c as unknown as Context<Env, PathOf<K>>, token, io);
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

  endpoint(
    "POST /v1/apps/:app/deployments",
    {
      tag: "apps",
      summary: "Deploy a bundle (a .tar.gz or .tar of the app directory) as the app's next version",
      description: "Creates the app on first deploy. The deployment passes its health check (warm-up and health paths) before it serves; a failure is 422 health_check_failed and the active deployment keeps serving.",
      query: z.object({ host: z.union([z.string().max(253), z.array(z.string().max(253)).max(32)]).optional().openapi({ description: "Extra host names to serve the app at (repeatable, at most 32)" }) }),
      rawBody: { contentTypes: ["application/gzip", "application/x-tar"], description: "The bundle archive" },
      responses: {
        201: {
          description: "Deployed and active; url: the app's own address (APP.ACCOUNT.BASE, else its first exact host); urls: where each of its routes answers over HTTPS",
          schema: z.object({ deployment: S.DeploymentSchema, url: z.string().nullable(), urls: z.array(z.string()) }),
        },
        422: { description: "The health check failed", schema: ErrorBodySchema },
      },
    },
    async (c, token) => {
      const appName = c.req.param("app");
      assertAppName(appName);
      const owner = store.appAccount(appName);
      if (owner !== undefined) visibleApp(token, appName);
      const hosts = c.req.queries("host") ?? [];
      if (hosts.length > 32) throw new InputError("deploy: at most 32 --host values");
      const archive = await readLimited(c, DEFAULT_BUNDLE_LIMITS.maxArchiveBytes);
      try {
        const deployment = await deployBundle(platform, { appName, archive, hosts, accountId: owner ?? deployAccount(token), privileged: isAdmin(token) });
        const httpsUrl = options.httpsUrl?.();
        return c.json({ deployment, url: deploymentUrl(platform, deployment, httpsUrl) ?? null, urls: routeUrls(deployment.routes, httpsUrl) }, 201);
      } catch (e) {
        throw hideForeign(token, appName, e);
      }
    },
  );

  endpoint("GET /v1/apps", { tag: "apps", summary: "List the apps the token may see", query: PageQuerySchema, responses: { 200: { description: "A page of apps", schema: S.pageOf("apps", S.AppSchema) } } }, (c, token, io) => {
    const { items, next_cursor } = paginate(store.listApps(ownAccount(token)), (a) => a.name, io.query());
    return c.json({ apps: items, next_cursor });
  });

  endpoint(
    "GET /v1/apps/:app/deployments",
    { tag: "apps", summary: "An app's deployments, newest first (failed ones too)", query: PageQuerySchema, responses: { 200: { description: "A page of deployments", schema: S.pageOf("deployments", S.DeploymentSchema) } } },
    (c, token, io) => {
      const a = visibleApp(token, c.req.param("app"));
      const { items, next_cursor } = paginate(store.listDeployments(a.name), (d) => d.id, io.query());
      return c.json({ deployments: items, next_cursor });
    },
  );

  endpoint(
    "POST /v1/apps/:app/rollback",
    {
      tag: "apps",
      summary: "Make an earlier ready deployment active (default: the one before the active one)",
      body: z.object({ version: z.number().int().positive().optional() }).strict(),
      responses: { 200: { description: "The deployment now active", schema: z.object({ deployment: S.DeploymentSchema }) } },
    },
    async (c, token, io) => {
      const a = visibleApp(token, c.req.param("app"));
      const body = await io.body();
      let deployment;
      try {
        deployment = store.rollback(a.name, body.version, isAdmin(token));
      } catch (e) {
        throw hideForeign(token, a.name, e);
      }
      platform.reloadRoutes();
      log.info("rolled back", { app: a.name, version: deployment.version });
      return c.json({ deployment });
    },
  );

  endpoint("GET /v1/routes", { tag: "apps", summary: "The routing table (host, path → app)", query: PageQuerySchema, responses: { 200: { description: "A page of routes", schema: S.pageOf("routes", S.RouteEntrySchema) } } }, (c, token, io) => {
    const own = ownAccount(token);
    const routes = platform.table.entries
      .filter((e) => own === undefined || e.target.accountId === own)
      .map((e) => ({ host: e.host, path: e.path, mode: e.mode, key: e.key ?? null, app: e.target.appName, deploymentId: e.target.deploymentId }));
    const { items, next_cursor } = paginate(routes, (r) => `${r.host}${r.path}`, io.query());
    return c.json({ routes: items, next_cursor });
  });

  endpoint(
    "GET /v1/pool",
    {
      tag: "operations",
      summary: "Instances per deployment (admin tokens also see host pids and spare hosts)",
      responses: {
        200: {
          description: "Pool state",
          schema: z.object({ deployments: z.array(S.PoolDeploymentSchema), spares: z.object({ ready: z.array(z.object({ runtime: z.string(), pid: z.number().int(), preloaded: z.boolean() })), taken: z.number().int(), restoredOnSpareEngine: z.number().int().openapi({ description: "Restores from a stored snapshot that used a spare host's pre-instantiated engine" }) }).optional(), memory: z.looseObject({ budgetBytes: z.number(), usedBytes: z.number() }).optional().openapi({ description: "The pool's memory budget and its use (admin tokens)" }) }),
        },
      },
    },
    (c, token) => {
      const own = ownAccount(token);
      const visibleApps = new Set(store.listApps(own).map((a) => a.name));
      const deployments = platform.pool.stats().filter((s) => visibleApps.has(s.app));
      // Host pids are for operators (kill, inspect); a tenant has no use for them.
      if (own !== undefined) return c.json({ deployments: withoutPids(deployments) });
      return c.json({ deployments, spares: platform.pool.spares(), memory: platform.pool.memory() });
    },
  );

  endpoint(
    "GET /v1/apps/:app/logs",
    {
      tag: "operations",
      summary: "An app's log lines (PHP errors, Python stderr and tracebacks, x86 stderr) with their request ids",
      description: "`follow=1` answers with server-sent events (event `log`, data a LogLine): the recent lines, then each new one.",
      query: z.object({
        limit: z.string().optional().openapi({ description: "Lines at most (0 to 1000; default 200)", type: "integer" }),
        after: z.string().optional().openapi({ description: "Only lines with a larger id", type: "integer" }),
        since: z.string().optional().openapi({ description: "A duration (30s, 10m, 2h, 7d), an ISO date or epoch ms" }),
        follow: z.string().optional().openapi({ description: "1 or true: stream as server-sent events" }),
      }),
      responses: { 200: { description: "Log lines (JSON), or an event stream with follow=1", schema: z.object({ logs: z.array(S.LogLineSchema) }) } },
    },
    (c, token) => logsResponse(c, platform, visibleApp(token, c.req.param("app")).id),
  );
  endpoint(
    "GET /v1/apps/:app/stats",
    {
      tag: "operations",
      summary: "An app's requests, errors, p50/p99 wall time and CPU per minute or hour",
      query: z.object({
        bucket: z.enum(["minute", "hour"]).optional(),
        window: z.string().optional().openapi({ description: "A duration: 30m, 6h, 7d (default 60 buckets)" }),
        to: z.string().optional().openapi({ description: "End of the window: epoch ms or an ISO date (default now)" }),
      }),
      responses: { 200: { description: "The series", schema: S.StatsSchema } },
    },
    (c, token) => statsResponse(c, platform, visibleApp(token, c.req.param("app"))),
  );

  endpoint("GET /v1/apps/:app/keys", { tag: "apps", summary: "Keys with stored /data of a keyed app", query: PageQuerySchema, responses: { 200: { description: "A page of keys", schema: S.pageOf("keys", S.KeyDataSchema) } } }, (c, token, io) => {
    const a = visibleApp(token, c.req.param("app"));
    const { items, next_cursor } = paginate(platform.keys.list(a.id), (k) => k.key, io.query());
    return c.json({ keys: items, next_cursor });
  });

  endpoint(
    "GET /v1/apps/:app/keys/:key/export",
    { tag: "apps", summary: "A key's /data as a tar archive", responses: { 200: { description: "The key's files", contentType: "application/x-tar" } } },
    async (c, token) => {
      const a = visibleApp(token, c.req.param("app"));
      const key = c.req.param("key");
      const data = await platform.keys.load(a.id, key);
      if (data === undefined) throw new ZerocellError("key_not_found", 404, `app "${a.name}" has no data for key "${key.slice(0, 80)}"`);
      const tar = imageToTar(decodeImage(Buffer.from(data)).entries);
      return new Response(new Uint8Array(tar), { headers: { "content-type": "application/x-tar", "content-disposition": `attachment; filename="${a.name}-key.tar"` } });
    },
  );

  endpoint(
    "DELETE /v1/apps/:app/keys/:key",
    { tag: "apps", summary: "Delete a key's stored /data", responses: { 200: { description: "Deleted", schema: z.object({ deleted: z.literal(true), key: z.string() }) } } },
    (c, token) => {
      const a = visibleApp(token, c.req.param("app"));
      const key = c.req.param("key");
      if (!platform.keys.delete(a.id, key)) throw new ZerocellError("key_not_found", 404, `app "${a.name}" has no data for key "${key.slice(0, 80)}"`);
      log.info("key deleted", { app: a.name, key: key.slice(0, 80) });
      return c.json({ deleted: true, key });
    },
  );

  // --- accounts, tokens, plans (admin; plans are readable by every token) ---
  const accountName = z.string().regex(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/, "must be 1-63 characters of a-z, 0-9 and -");
  const scopes = z.array(z.enum(["deploy", "read-usage"])).min(1).max(2);

  endpoint(
    "POST /v1/accounts",
    {
      tag: "accounts",
      summary: "Create an account and its first token",
      body: z.object({ name: accountName, plan: z.string().max(64).optional(), scopes: scopes.optional() }).strict(),
      responses: { 201: { description: "The account and its token (shown once)", schema: z.object({ account: z.object({ id: z.string(), name: z.string() }), token: z.string() }) } },
    },
    async (c, _token, io) => {
      const body = await io.body();
      const plan = body.plan === undefined ? null : platform.billing.planByName(body.plan).id;
      const account = store.createAccount(body.name, plan);
      const { token } = store.createToken(account.id, body.scopes ?? ["deploy", "read-usage"]);
      log.info("account created", { account: account.name });
      return c.json({ account, token }, 201);
    },
  );

  endpoint("GET /v1/accounts", { tag: "accounts", summary: "List accounts", query: PageQuerySchema, responses: { 200: { description: "A page of accounts", schema: S.pageOf("accounts", S.AccountSchema) } } }, (c, _token, io) => {
    const { items, next_cursor } = paginate(store.listAccounts(), (a) => a.id, io.query());
    return c.json({ accounts: items, next_cursor });
  });

  endpoint(
    "POST /v1/tokens",
    {
      tag: "accounts",
      summary: "Create a token for an account",
      body: z.object({ account: accountName, scopes }).strict(),
      responses: { 201: { description: "The token (shown once)", schema: z.object({ id: z.string(), token: z.string(), account: z.string(), scopes: z.array(z.string()) }) } },
    },
    async (c, _token, io) => {
      const body = await io.body();
      const account = store.accountByName(body.account);
      if (account === undefined) throw accountNotFound(body.account);
      const { id, token } = store.createToken(account.id, body.scopes);
      return c.json({ id, token, account: account.name, scopes: body.scopes }, 201);
    },
  );

  endpoint("GET /v1/plans", { tag: "billing", summary: "List price plans", query: PageQuerySchema, responses: { 200: { description: "A page of plans", schema: S.pageOf("plans", S.PlanSchema) } } }, (c, _token, io) => {
    const { items, next_cursor } = paginate(platform.billing.listPlans(), (p) => p.id, io.query());
    return c.json({ plans: items, next_cursor });
  });

  const money = z.number().int().min(0).max(1_000_000_000_000);
  endpoint(
    "POST /v1/plans",
    {
      tag: "billing",
      summary: "Create a price plan",
      body: z
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
      responses: { 201: { description: "The plan", schema: z.object({ plan: S.PlanSchema }) } },
    },
    async (c, _token, io) => c.json({ plan: platform.billing.createPlan(await io.body()) }, 201),
  );

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

  endpoint(
    "GET /v1/usage",
    {
      tag: "billing",
      summary: "Usage per day, account and app",
      query: PageQuerySchema.extend({ account: z.string().max(63).optional(), app: z.string().max(63).optional(), from: day.optional(), to: day.optional() }),
      responses: { 200: { description: "A page of usage rows", schema: S.pageOf("usage", S.UsageRowSchema) } },
    },
    (c, token, io) => {
      const q = io.query();
      const accountId = readAccount(token, q.account);
      const rows = platform.billing.usage({ ...(accountId === undefined ? {} : { accountId }), ...(q.app === undefined ? {} : { app: q.app }), ...(q.from === undefined ? {} : { from: q.from }), ...(q.to === undefined ? {} : { to: q.to }) });
      const { items, next_cursor } = paginate(rows, (u) => `${u.day}/${u.accountId}/${u.app}`, q);
      return c.json({ usage: items, next_cursor });
    },
  );

  endpoint(
    "GET /v1/invoices",
    {
      tag: "billing",
      summary: "List invoices (with drafts: the current period's draft per account with usage first)",
      query: PageQuerySchema.extend({ account: z.string().max(63).optional(), drafts: z.string().optional().openapi({ description: "Present: include drafts of the current period" }) }),
      responses: { 200: { description: "A page of invoices", schema: S.pageOf("invoices", S.InvoiceSummarySchema) } },
    },
    (c, token, io) => {
      const q = io.query();
      const accountId = readAccount(token, q.account);
      const list = platform.billing.listInvoices(accountId);
      if (q.drafts !== undefined) {
        // The current period, not closed yet, as a draft per account with usage.
        const period = currentPeriod();
        const accountsWithUsage = new Set(platform.billing.usage({ ...(accountId === undefined ? {} : { accountId }), from: `${period}-01`, to: `${period}-31` }).map((u) => u.accountId));
        for (const a of accountsWithUsage) if (!list.some((i) => i.accountId === a && i.period === period)) list.unshift(platform.billing.draft(a, period));
      }
      const { items, next_cursor } = paginate(list, (i) => i.id, q);
      return c.json({ invoices: items.map(({ lines, ...i }) => ({ ...i, lineCount: lines.length })), next_cursor });
    },
  );

  endpoint("GET /v1/invoices/:id", { tag: "billing", summary: "An invoice with its lines (or draft_<account id>_<YYYY-MM>)", responses: { 200: { description: "The invoice", schema: z.object({ invoice: S.InvoiceSchema }) } } }, (c, token) => {
    const id = c.req.param("id");
    const own = ownAccount(token);
    const m = /^draft_(acct_[A-Za-z0-9]+)_(\d{4}-\d{2})$/.exec(id);
    // Ownership first: a draft of another (or no) account is the same 404 as an unknown id.
    if (m !== null && own !== undefined && m[1] !== own) throw invoiceNotFound(id);
    const inv = m === null ? platform.billing.invoice(id) : platform.billing.draft(m[1]!, m[2]!);
    if (inv === undefined || (own !== undefined && inv.accountId !== own)) throw invoiceNotFound(id);
    return c.json({ invoice: inv });
  });

  endpoint(
    "POST /v1/invoices/close",
    {
      tag: "billing",
      summary: "Close a billing period: one invoice per account with usage",
      body: z.object({ period: z.string().max(16) }).strict(),
      responses: { 200: { description: "Invoices created", schema: z.object({ period: z.string(), created: z.array(S.InvoiceSummarySchema), existing: z.number().int() }) } },
    },
    async (c, _token, io) => {
      const body = await io.body();
      const r = platform.billing.closePeriod(body.period, platform.stripe !== undefined);
      log.info("period closed", { period: body.period, created: r.created.length, existing: r.existing });
      for (const inv of r.created) void platform.stripe?.sync(inv.id);
      return c.json({ period: body.period, created: r.created.map(({ lines, ...i }) => ({ ...i, lineCount: lines.length })), existing: r.existing });
    },
  );

  endpoint("POST /v1/invoices/:id/sync", { tag: "billing", summary: "Send an invoice to Stripe", responses: { 202: { description: "Syncing", schema: z.object({ invoice: z.string(), syncing: z.literal(true) }) } } }, (c) => {
    if (platform.stripe === undefined) throw new ZerocellError("stripe_not_configured", 409, "billing: set STRIPE_API_KEY to sync invoices to Stripe");
    const inv = platform.billing.invoice(c.req.param("id"));
    if (inv === undefined) throw invoiceNotFound(c.req.param("id"));
    void platform.stripe.sync(inv.id);
    return c.json({ invoice: inv.id, syncing: true }, 202);
  });

  endpoint(
    "PUT /v1/certificates/:host",
    {
      tag: "hosts",
      summary: "Install a certificate and key (PEM) for a host name",
      body: z.object({ cert: z.string().max(256 * 1024), key: z.string().max(256 * 1024) }).strict(),
      responses: { 200: { description: "Installed", schema: z.object({ ok: z.literal(true), host: z.string() }) } },
    },
    async (c, _token, io) => {
      const body = await io.body();
      try {
        await platform.certs.installCertificate(c.req.param("host"), body.cert, body.key);
      } catch (e) {
        if (e instanceof ZerocellError) throw e;
        throw new InputError(`certificates: ${(e as Error).message}`, { cause: e });
      }
      return c.json({ ok: true, host: c.req.param("host") });
    },
  );

  // --- host names held by accounts (src/router/hosts.ts) ---
  endpoint("GET /v1/hosts", { tag: "hosts", summary: "Host names held by accounts", query: PageQuerySchema, responses: { 200: { description: "A page of host claims", schema: S.pageOf("hosts", S.HostClaimSchema) } } }, (c, token, io) => {
    const own = ownAccount(token);
    const hosts = store.listHostClaims(own).map(({ accountId, ...h }) => (own === undefined ? { ...h, accountId } : h));
    const { items, next_cursor } = paginate(hosts, (h) => h.host, io.query());
    return c.json({ hosts: items, next_cursor });
  });

  endpoint(
    "PUT /v1/hosts/:host",
    { tag: "hosts", summary: "Assign a host name (and the wildcards under it) to an account", body: z.object({ account: z.string().max(63) }).strict(), responses: { 200: { description: "Assigned", schema: z.object({ host: z.string(), account: z.string() }) } } },
    async (c, _token, io) => {
      const host = c.req.param("host").toLowerCase();
      const body = await io.body();
      const err = host.startsWith("*") ? "assign the name itself; wildcards under it follow" : checkHostPattern(host);
      if (err !== undefined) throw new InputError(`hosts: "${host.slice(0, 80)}": ${err}`, { code: "bad_host" });
      const account = store.accountByName(body.account);
      if (account === undefined) throw accountNotFound(body.account);
      store.assignHost(host, account.id);
      log.info("host assigned", { host, account: account.name });
      return c.json({ host, account: account.name });
    },
  );

  registerAccessKeyRoutes({ endpoint, platform, ownAccount });
  registerBindingRoutes({ endpoint, platform, ownAccount });
  registerProgramRunRoutes({ endpoint, platform, ownAccount });
  registerLifecycleRoutes({ platform, endpoint, ownAccount, visibleApp });
  registerJobRoutes({ endpoint, platform, ownAccount });
  registerMemoryRoutes({ endpoint, platform, ownAccount });
  registerEnvRoutes({ platform, endpoint, visibleApp, isAdmin });
  registerAccountRoutes({ platform, endpoint });
  registerDomainRoutes({ endpoint, platform, ownAccount, httpsUrl: () => options.httpsUrl?.() });
  registerObjectQuotaRoutes({ endpoint, platform, ownAccount });
  registerJobEventRoutes({ endpoint, platform, ownAccount });

  assertRoutesMatchTable(app);
  return app;
}

/** Every /v1 route is an ADMIN_ENDPOINTS entry and every entry is served; else the API does not start. */
function assertRoutesMatchTable(app: OpenAPIHono<Env>): void {
  const served = new Set(app.routes.filter((r) => r.path.startsWith("/v1/") && r.method !== "ALL").map((r) => `${r.method} ${r.path}`));
  const table = new Set<string>(Object.keys(ADMIN_ENDPOINTS));
  const unlisted = [...served].filter((k) => !table.has(k));
  const missing = [...table].filter((k) => !served.has(k));
  if (unlisted.length > 0 || missing.length > 0) {
    throw new Error(`admin: routes and ADMIN_ENDPOINTS differ (not in the table: ${unlisted.join(", ") || "none"}; not served: ${missing.join(", ") || "none"})`);
  }
}
