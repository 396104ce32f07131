/**
 * Admin API: app deletion and API tokens (list, revoke). Registered by createAdminApi through
 * its `endpoint()` (scope checked first); the entries of LIFECYCLE_ENDPOINTS join ADMIN_ENDPOINTS.
 * Must never: let an account token see, revoke or delete another account's token or app, or tell
 * it that one exists (the same 404 as for a name or id nobody has).
 */
import type { Context } from "hono";
import type { Platform } from "../../platform/index.js";
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
  endpoint: (key: Endpoint, handler: (c: Context, token: TokenInfo) => Response | Promise<Response>) => void;
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
  endpoint("DELETE /v1/apps/:app", (c, token) => {
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
  endpoint("GET /v1/tokens", (c, token) => {
    const own = ownAccount(token);
    return c.json({ tokens: store.listTokens(own).map((t) => ({ ...t, current: t.id === token.id })) });
  });

  endpoint("DELETE /v1/tokens/:id", (c, token) => {
    const id = c.req.param("id") ?? "";
    const own = ownAccount(token);
    const holder = store.tokenAccount(id);
    if (holder === undefined || (own !== undefined && holder !== own)) throw tokenNotFound(id);
    const revoked = store.revokeToken(id);
    log.info("token revoked", { token: id, already: !revoked });
    return c.json({ revoked: id, alreadyRevoked: !revoked });
  });
}
