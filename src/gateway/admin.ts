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
import { InputError, PayloadTooLargeError, UnauthorizedError, ZerocellError } from "../errors.js";
import { checkHostPattern } from "../router/index.js";
import type { TokenInfo } from "../store/index.js";
import { randomUUID } from "node:crypto";
import { log } from "../log.js";

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
    return c.json({ deployments: platform.pool.stats().filter((s) => visibleApps.has(s.app)) });
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

  app.get("/v1/apps/:app/keys/:key/export", (c) => {
    const a = visibleApp(c.get("token"), c.req.param("app"));
    const key = c.req.param("key");
    const data = platform.keys.load(a.id, key);
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
