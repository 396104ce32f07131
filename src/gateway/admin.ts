/**
 * Admin API (its own listener, loopback by default): deploy, list, roll back, inspect.
 * Every /v1 endpoint needs a bearer token; tokens are compared by hash in constant time.
 */
import { Hono, type Context } from "hono";
import { z } from "zod";
import type { Platform } from "./index.js";
import { errorToResponse } from "./respond.js";
import { DEFAULT_BUNDLE_LIMITS, decodeImage, imageToTar } from "../bundle/index.js";
import { deployBundle } from "./deploy.js";
import { currentPeriod } from "../billing/index.js";
import { InputError, PayloadTooLargeError, UnauthorizedError, ZerocellError } from "../errors.js";
import { checkHostPattern } from "../router/index.js";
import type { TokenInfo } from "../store/index.js";
import { randomUUID } from "node:crypto";
import { log } from "../log.js";
import { dashboardResponse } from "./dashboard.js";

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
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel().catch(() => {});
      throw new PayloadTooLargeError(`admin: body exceeds the limit of ${limit} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
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

function requireScope(token: TokenInfo, scope: "deploy" | "read-usage"): void {
  if (!token.scopes.includes("admin") && !token.scopes.includes(scope)) {
    throw new ZerocellError("forbidden", 403, `admin: this token lacks the "${scope}" scope`);
  }
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
  app.get("/dashboard", () => dashboardResponse());

  app.use("/v1/*", async (c, next) => {
    const auth = c.req.header("authorization") ?? "";
    const m = /^Bearer\s+(\S+)$/i.exec(auth);
    const token = m?.[1] === undefined ? undefined : store.verifyToken(m[1]);
    if (token === undefined) throw new UnauthorizedError();
    c.set("token", token);
    await next();
  });

  /** The account a token acts for: its own, or the default account for admin tokens. */
  const accountOf = (token: TokenInfo): string => token.accountId ?? store.ensureDefaultAccount();
  const visible = (token: TokenInfo, appAccount: string | undefined) => token.scopes.includes("admin") || appAccount === token.accountId;

  app.post("/v1/apps/:app/deployments", async (c) => {
    const token = c.get("token");
    requireScope(token, "deploy");
    const appName = c.req.param("app");
    assertAppName(appName);
    const owner = store.appAccount(appName);
    if (owner !== undefined && !visible(token, owner)) throw new ZerocellError("forbidden", 403, `deploy: app "${appName}" belongs to another account`);
    const hosts = c.req.queries("host") ?? [];
    if (hosts.length > 32) throw new InputError("deploy: at most 32 --host values");
    const archive = await readLimited(c, DEFAULT_BUNDLE_LIMITS.maxArchiveBytes);
    const deployment = deployBundle(platform, { appName, archive, hosts, accountId: owner ?? accountOf(token) });
    return c.json({ deployment }, 201);
  });

  app.get("/v1/apps", (c) => {
    const token = c.get("token");
    return c.json({ apps: store.listApps(token.scopes.includes("admin") ? undefined : (token.accountId ?? undefined)) });
  });

  app.get("/v1/apps/:app/deployments", (c) => {
    const token = c.get("token");
    const appName = c.req.param("app");
    if (!visible(token, store.appAccount(appName))) throw new ZerocellError("app_not_found", 404, `no app named "${appName}"`);
    return c.json({ deployments: store.listDeployments(appName) });
  });

  app.post("/v1/apps/:app/rollback", async (c) => {
    const token = c.get("token");
    requireScope(token, "deploy");
    const appName = c.req.param("app");
    if (!visible(token, store.appAccount(appName))) throw new ZerocellError("app_not_found", 404, `no app named "${appName}"`);
    const body = await readJson(c, z.object({ version: z.number().int().positive().optional() }).strict());
    const deployment = store.rollback(appName, body.version);
    platform.reloadRoutes();
    log.info("rolled back", { app: appName, version: deployment.version });
    return c.json({ deployment });
  });

  app.get("/v1/routes", (c) => {
    const token = c.get("token");
    const routes = platform.table.entries
      .filter((e) => visible(token, e.target.accountId))
      .map((e) => ({ host: e.host, path: e.path, mode: e.mode, key: e.key ?? null, app: e.target.appName, deploymentId: e.target.deploymentId }));
    return c.json({ routes });
  });

  app.get("/v1/pool", (c) => {
    const token = c.get("token");
    const visibleApps = new Set(store.listApps(token.scopes.includes("admin") ? undefined : (token.accountId ?? undefined)).map((a) => a.name));
    const admin = token.scopes.includes("admin");
    return c.json({ deployments: platform.pool.stats().filter((s) => visibleApps.has(s.app)), ...(admin ? { spares: platform.pool.spares() } : {}) });
  });

  /** The app a token may manage, or a 404 that reveals nothing about other accounts' apps. */
  const visibleApp = (token: TokenInfo, appName: string) => {
    const found = store.listApps().find((a) => a.name === appName);
    if (found === undefined || !visible(token, found.accountId)) throw new ZerocellError("app_not_found", 404, `no app named "${appName.slice(0, 80)}"`);
    return found;
  };

  app.get("/v1/apps/:app/keys", (c) => {
    const a = visibleApp(c.get("token"), c.req.param("app"));
    return c.json({ keys: platform.keys.list(a.id) });
  });

  app.get("/v1/apps/:app/keys/:key/export", async (c) => {
    const a = visibleApp(c.get("token"), c.req.param("app"));
    const key = c.req.param("key");
    const data = await platform.keys.load(a.id, key);
    if (data === undefined) throw new ZerocellError("key_not_found", 404, `app "${a.name}" has no data for key "${key.slice(0, 80)}"`);
    const tar = imageToTar(decodeImage(Buffer.from(data)).entries);
    return new Response(new Uint8Array(tar), { headers: { "content-type": "application/x-tar", "content-disposition": `attachment; filename="${a.name}-key.tar"` } });
  });

  app.delete("/v1/apps/:app/keys/:key", (c) => {
    const token = c.get("token");
    requireScope(token, "deploy");
    const a = visibleApp(token, c.req.param("app"));
    const key = c.req.param("key");
    if (!platform.keys.delete(a.id, key)) throw new ZerocellError("key_not_found", 404, `app "${a.name}" has no data for key "${key.slice(0, 80)}"`);
    log.info("key deleted", { app: a.name, key: key.slice(0, 80) });
    return c.json({ deleted: true, key });
  });

  // --- accounts, tokens, plans (admin) ---
  const requireAdmin = (token: TokenInfo, what: string) => {
    if (!token.scopes.includes("admin")) throw new ZerocellError("forbidden", 403, `admin: ${what} needs the admin scope`);
  };
  const accountName = z.string().regex(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/, "must be 1-63 characters of a-z, 0-9 and -");
  const scopes = z.array(z.enum(["deploy", "read-usage"])).min(1).max(2);

  app.post("/v1/accounts", async (c) => {
    requireAdmin(c.get("token"), "creating accounts");
    const body = await readJson(c, z.object({ name: accountName, plan: z.string().max(64).optional(), scopes: scopes.optional() }).strict());
    const plan = body.plan === undefined ? null : platform.billing.planByName(body.plan).id;
    const account = store.createAccount(body.name, plan);
    const { token } = store.createToken(account.id, body.scopes ?? ["deploy", "read-usage"]);
    log.info("account created", { account: account.name });
    return c.json({ account, token }, 201);
  });

  app.get("/v1/accounts", (c) => {
    requireAdmin(c.get("token"), "listing accounts");
    return c.json({ accounts: store.listAccounts() });
  });

  app.post("/v1/tokens", async (c) => {
    requireAdmin(c.get("token"), "creating tokens");
    const body = await readJson(c, z.object({ account: accountName, scopes }).strict());
    const account = store.accountByName(body.account);
    if (account === undefined) throw new ZerocellError("account_not_found", 404, `no account named "${body.account}"`);
    const { id, token } = store.createToken(account.id, body.scopes);
    return c.json({ id, token, account: account.name, scopes: body.scopes }, 201);
  });

  app.get("/v1/plans", (c) => c.json({ plans: platform.billing.listPlans() }));

  app.post("/v1/plans", async (c) => {
    requireAdmin(c.get("token"), "creating price plans");
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
  /** The account a read is limited to: the token's own, or any (or the asked one) for admins. */
  const readScope = (token: TokenInfo, asked: string | undefined): string | undefined => {
    requireScope(token, "read-usage");
    if (token.scopes.includes("admin")) {
      if (asked === undefined) return undefined;
      const a = store.accountByName(asked);
      if (a === undefined) throw new ZerocellError("account_not_found", 404, `no account named "${asked.slice(0, 80)}"`);
      return a.id;
    }
    const own = token.accountId ?? undefined;
    if (asked !== undefined && store.accountByName(asked)?.id !== own) throw new ZerocellError("forbidden", 403, "usage: a token can only read its own account");
    return own;
  };
  const day = z.string().regex(/^\d{4}-\d{2}-\d{2}$/, "must look like 2026-11-26");

  app.get("/v1/usage", (c) => {
    const q = z.object({ account: z.string().optional(), app: z.string().optional(), from: day.optional(), to: day.optional() }).safeParse(c.req.query());
    if (!q.success) throw new InputError(`usage: ${q.error.issues[0]?.path.join(".")}: ${q.error.issues[0]?.message}`);
    const accountId = readScope(c.get("token"), q.data.account);
    return c.json({ usage: platform.billing.usage({ ...(accountId === undefined ? {} : { accountId }), ...(q.data.app === undefined ? {} : { app: q.data.app }), ...(q.data.from === undefined ? {} : { from: q.data.from }), ...(q.data.to === undefined ? {} : { to: q.data.to }) }) });
  });

  app.get("/v1/invoices", (c) => {
    const accountId = readScope(c.get("token"), c.req.query("account"));
    const list = platform.billing.listInvoices(accountId);
    if (c.req.query("drafts") !== undefined) {
      // The current period, not closed yet, as a draft per account with usage.
      const period = currentPeriod();
      const accountsWithUsage = new Set(platform.billing.usage({ ...(accountId === undefined ? {} : { accountId }), from: `${period}-01`, to: `${period}-31` }).map((u) => u.accountId));
      for (const a of accountsWithUsage) if (!list.some((i) => i.accountId === a && i.period === period)) list.unshift(platform.billing.draft(a, period));
    }
    return c.json({ invoices: list.map(({ lines, ...i }) => ({ ...i, lineCount: lines.length })) });
  });

  app.get("/v1/invoices/:id", (c) => {
    const token = c.get("token");
    const id = c.req.param("id");
    const m = /^draft_(acct_[A-Za-z0-9]+)_(\d{4}-\d{2})$/.exec(id);
    const inv = m === null ? platform.billing.invoice(id) : platform.billing.draft(m[1]!, m[2]!);
    const own = inv === undefined ? undefined : readScope(token, undefined);
    if (inv === undefined || (own !== undefined && inv.accountId !== own)) throw new ZerocellError("invoice_not_found", 404, `no invoice ${id.slice(0, 80)}`);
    return c.json({ invoice: inv });
  });

  app.post("/v1/invoices/close", async (c) => {
    requireAdmin(c.get("token"), "closing a period");
    const body = await readJson(c, z.object({ period: z.string().max(16) }).strict());
    const r = platform.billing.closePeriod(body.period, platform.stripe !== undefined);
    log.info("period closed", { period: body.period, created: r.created.length, existing: r.existing });
    for (const inv of r.created) void platform.stripe?.sync(inv.id);
    return c.json({ period: body.period, created: r.created.map(({ lines, ...i }) => ({ ...i, lineCount: lines.length })), existing: r.existing });
  });

  app.post("/v1/invoices/:id/sync", (c) => {
    requireAdmin(c.get("token"), "syncing invoices");
    if (platform.stripe === undefined) throw new ZerocellError("stripe_not_configured", 409, "billing: set STRIPE_API_KEY to sync invoices to Stripe");
    const inv = platform.billing.invoice(c.req.param("id"));
    if (inv === undefined) throw new ZerocellError("invoice_not_found", 404, `no invoice ${c.req.param("id").slice(0, 80)}`);
    void platform.stripe.sync(inv.id);
    return c.json({ invoice: inv.id, syncing: true }, 202);
  });

  app.put("/v1/certificates/:host", async (c) => {
    const token = c.get("token");
    if (!token.scopes.includes("admin")) throw new ZerocellError("forbidden", 403, "admin: installing certificates needs the admin scope");
    const body = await readJson(c, z.object({ cert: z.string().max(256 * 1024), key: z.string().max(256 * 1024) }).strict());
    try {
      await platform.certs.installCertificate(c.req.param("host"), body.cert, body.key);
    } catch (e) {
      if (e instanceof ZerocellError) throw e;
      throw new InputError(`certificates: ${(e as Error).message}`, { cause: e });
    }
    return c.json({ ok: true, host: c.req.param("host") });
  });

  return app;
}
