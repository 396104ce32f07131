/**
 * Admin API: an app's environment variables and secrets (src/platform/app-env.ts). A change
 * (`POST /v1/apps/:app/env`, `DELETE /v1/apps/:app/env/:name`) is a new deployment of the app's
 * active bundle with the new env, health-checked like any deploy (a failed check leaves the old
 * version and its values serving); `GET` lists names, and values of non-secrets only.
 * Must never: show a secret's value in any answer or log line; let an account token read or
 * change another account's app, or tell it that one exists (the 404 of a missing app).
 */
import type { Context } from "hono";
import { z } from "@hono/zod-openapi";
import type { EndpointFn } from "./kit.js";
import type { Platform } from "../../platform/index.js";
import type { AppInfo, Scope, TokenInfo } from "../../store/index.js";
import { ENV_LIMITS, type EnvChange } from "../../platform/app-env.js";
import { deployRevision } from "../deploy.js";
import { InputError, ZerocellError } from "../../errors.js";
import { log } from "../../log.js";

export const ENV_ENDPOINTS = {
  "GET /v1/apps/:app/env": ["deploy"],
  "POST /v1/apps/:app/env": ["deploy"],
  "DELETE /v1/apps/:app/env/:name": ["deploy"],
} as const satisfies Record<string, readonly [Scope, ...Scope[]]>;

type Endpoint = keyof typeof ENV_ENDPOINTS;

export interface EnvRouteDeps {
  platform: Platform;
  endpoint: EndpointFn<Endpoint>;
  /** The app a token may manage, or the 404 of an app that does not exist. */
  visibleApp: (token: TokenInfo, appName: string) => AppInfo;
  /** Admin tokens deploy with the admin's host rights (the env revision keeps the routes). */
  isAdmin: (token: TokenInfo) => boolean;
}

/** Names and values are checked by AppEnv.apply (grammar, reserved names, sizes); these only bound the JSON. */
const changeSchema = z
  .object({
    set: z.array(z.object({ name: z.string().max(ENV_LIMITS.maxNameBytes + 1), value: z.string().max(ENV_LIMITS.maxValueBytes + 1), secret: z.boolean().optional() }).strict()).max(ENV_LIMITS.maxVars).optional(),
    unset: z.array(z.string().max(ENV_LIMITS.maxNameBytes + 1)).max(ENV_LIMITS.maxVars).optional(),
  })
  .strict();

const EnvViewSchema = z.array(z.looseObject({ name: z.string(), secret: z.boolean() }));

export function registerEnvRoutes({ platform, endpoint, visibleApp, isAdmin }: EnvRouteDeps): void {
  const store = platform.store;

  const base = (token: TokenInfo, appName: string) => {
    const a = visibleApp(token, appName);
    const b = store.envBase(a.name);
    if (b === undefined) throw new ZerocellError("app_not_found", 404, `no app named "${appName.slice(0, 80)}"`);
    return { app: a, ...b };
  };

  /** 1. the new env, 2. a new deployment of the base bundle with it (health-gated), 3. the answer. */
  const change = async (c: Context, token: TokenInfo, appName: string, ch: EnvChange): Promise<Response> => {
    const b = base(token, appName);
    const env = platform.env.apply(b.appId, b.env, ch);
    const d = b.deployment;
    if (d === undefined) throw new ZerocellError("app_not_deployed", 409, `env: ${b.app.name} has no deployment to give the new values to; deploy it first`);
    const deployment = await deployRevision(platform, {
      appName: b.app.name,
      accountId: b.accountId,
      runtime: d.runtime,
      bundleSha256: d.bundleSha256,
      bundleBytes: d.bundleBytes,
      manifest: d.manifest,
      routes: d.routes,
      privileged: isAdmin(token),
      env,
    });
    // Names only: values never reach a log line.
    log.info("env changed", { app: b.app.name, version: deployment.version, set: ch.set.map((s) => s.name), unset: ch.unset });
    return c.json({ app: b.app.name, deployment, env: platform.env.view(b.appId, env) }, 201);
  };

  const changed = { 201: { description: "The new deployment revision with the new values (secrets' values are never shown)", schema: z.looseObject({ app: z.string(), deployment: z.looseObject({ id: z.string(), version: z.number().int() }), env: EnvViewSchema }) } };
  endpoint("GET /v1/apps/:app/env", { tag: "apps", summary: "An app's environment variables (secrets' values are never shown)", responses: { 200: { description: "Names, and values of non-secrets", schema: z.object({ app: z.string(), version: z.number().int().nullable(), env: EnvViewSchema }) } } }, (c, token) => {
    const b = base(token, c.req.param("app") ?? "");
    return c.json({ app: b.app.name, version: b.deployment?.version ?? null, env: platform.env.view(b.appId, b.env) });
  });

  endpoint("POST /v1/apps/:app/env", { tag: "apps", summary: "Set or unset environment variables: a new health-checked deployment revision", body: changeSchema, responses: changed }, async (c, token, io) => {
    const body = (await io.body())!;
    const ch: EnvChange = { set: (body.set ?? []).map((s) => ({ name: s.name, value: s.value, secret: s.secret === true })), unset: body.unset ?? [] };
    // Visibility first (another account's app is a 404 whatever the body), then the body.
    base(token, c.req.param("app") ?? "");
    if (ch.set.length === 0 && ch.unset.length === 0) throw new InputError("env: nothing to change (give set or unset)", { code: "env_empty_change" });
    return change(c, token, c.req.param("app") ?? "", ch);
  });

  endpoint("DELETE /v1/apps/:app/env/:name", { tag: "apps", summary: "Unset one environment variable: a new deployment revision", responses: changed }, (c, token) => change(c, token, c.req.param("app") ?? "", { set: [], unset: [c.req.param("name") ?? ""] }));
}
