/**
 * Admin API: app deletion and API tokens (list, revoke). Registered by createAdminApi through
 * its `endpoint()` (scope checked first); the entries of LIFECYCLE_ENDPOINTS join ADMIN_ENDPOINTS.
 * Must never: let an account token see, revoke or delete another account's token or app, or tell
 * it that one exists (the same 404 as for a name or id nobody has).
 */
import { z } from "@hono/zod-openapi";
import type { Platform } from "../../platform/index.js";
import type { EndpointFn } from "./kit.js";
import { PageQuerySchema, paginate } from "./openapi.js";
import { TokenSchema, pageOf } from "./schemas.js";
import type { AppInfo, Scope, TokenInfo } from "../../store/index.js";
import { ZerocellError } from "../../errors.js";
import { log } from "../../log.js";

export const LIFECYCLE_ENDPOINTS = {
  "DELETE /v1/apps/:app": ["deploy"],
  "GET /v1/tokens": ["deploy", "read-usage"],
  "DELETE /v1/tokens/:id": ["deploy", "read-usage"],
} as const satisfies Record<string, readonly [Scope, ...Scope[]]>;

type Endpoint = keyof typeof LIFECYCLE_ENDPOINTS;

export interface LifecycleDeps {
  platform: Platform;
  endpoint: EndpointFn<Endpoint>;
  /** The account a token is limited to (undefined: an admin token, every account). */
  ownAccount: (token: TokenInfo) => string | undefined;
  /** The app a token may manage, or the 404 of an app that does not exist. */
  visibleApp: (token: TokenInfo, appName: string) => AppInfo;
}

function tokenNotFound(id: string): ZerocellError {
  return new ZerocellError("token_not_found", 404, `no token ${id.slice(0, 80)}`);
}

export function registerLifecycleRoutes({ platform, endpoint, ownAccount, visibleApp }: LifecycleDeps): void {
  const store = platform.store;

  // 1. apps delete: routes and instances first (it stops serving), then rows, blobs, key files.
  const deleteSpec = {
    tag: "apps",
    summary: "Delete an app: it stops serving, then its deployments, blobs (and with delete_data=1 its keys' /data) go",
    query: z.object({ delete_data: z.string().optional().openapi({ description: "1 or true: delete the keys' stored /data too" }) }),
    responses: { 200: { description: "Deleted", schema: z.object({ deleted: z.string(), deployments: z.number().int(), blobsRemoved: z.number().int(), keysRemoved: z.number().int() }) } },
  };
  endpoint("DELETE /v1/apps/:app", deleteSpec, (c, token) => {
    const a = visibleApp(token, c.req.param("app") ?? "");
    const withKeyData = c.req.query("delete_data") === "1" || c.req.query("delete_data") === "true";
    const r = store.deleteApp(a.name, withKeyData);
    platform.reloadRoutes();
    for (const sha of r.blobs) platform.blobs.delete(sha);
    for (const key of r.keys) platform.keys.delete(r.appId, key);
    log.info("app deleted", { app: a.name, deployments: r.deployments, blobs: r.blobs.length, keys: r.keys.length });
    return c.json({ deleted: a.name, deployments: r.deployments, blobsRemoved: r.blobs.length, keysRemoved: r.keys.length });
  });

  // 2. tokens: an account token sees and revokes its own account's tokens; admins every token.
  endpoint("GET /v1/tokens", { tag: "accounts", summary: "List API tokens (never their secrets)", query: PageQuerySchema, responses: { 200: { description: "A page of tokens", schema: pageOf("tokens", TokenSchema) } } }, (c, token, io) => {
    const own = ownAccount(token);
    const { items, next_cursor } = paginate(store.listTokens(own), (t) => t.id, io.query());
    return c.json({ tokens: items.map((t) => ({ ...t, current: t.id === token.id })), next_cursor });
  });

  endpoint("DELETE /v1/tokens/:id", { tag: "accounts", summary: "Revoke a token", responses: { 200: { description: "Revoked (alreadyRevoked: it was before)", schema: z.object({ revoked: z.string(), alreadyRevoked: z.boolean() }) } } }, (c, token) => {
    const id = c.req.param("id") ?? "";
    const own = ownAccount(token);
    const holder = store.tokenAccount(id);
    if (holder === undefined || (own !== undefined && holder !== own)) throw tokenNotFound(id);
    const revoked = store.revokeToken(id);
    log.info("token revoked", { token: id, already: !revoked });
    return c.json({ revoked: id, alreadyRevoked: !revoked });
  });
}
