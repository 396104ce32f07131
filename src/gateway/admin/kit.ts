/**
 * What admin.ts lends a file of admin routes (src/gateway/admin/*.ts): `endpoint` registers one
 * of the file's ADMIN_ENDPOINTS entries (scope checked before the handler runs). Kept apart from
 * admin.ts so route files never import it (no import cycle).
 */
import type { Context } from "hono";
import type { z } from "zod";
import type { Platform } from "../../platform/index.js";
import type { TokenInfo } from "../../store/index.js";

export interface AdminRoutes<K extends string> {
  endpoint: (key: K, handler: (c: Context, token: TokenInfo) => Response | Promise<Response>) => void;
  platform: Platform;
  /** The account a token is limited to: undefined (all) for admin tokens. */
  ownAccount: (token: TokenInfo) => string | undefined;
  readJson: <T>(c: Context, schema: z.ZodType<T>) => Promise<T>;
}
