/**
 * What admin.ts lends a file of admin routes (src/gateway/admin/*.ts): `endpoint` registers one
 * of the file's ADMIN_ENDPOINTS entries with its declaration (src/gateway/admin/openapi.ts: the
 * OpenAPI document and the validation `io` runs); the scope is checked before the handler runs.
 * Kept apart from admin.ts so route files never import it (no import cycle).
 */
import type { Context } from "hono";
import type { Platform } from "../../platform/index.js";
import type { TokenInfo } from "../../store/index.js";
import type { EndpointIo, EndpointSpec } from "./openapi.js";

export type EndpointFn<K extends string> = <Spec extends EndpointSpec>(key: K, spec: Spec, handler: (c: Context, token: TokenInfo, io: EndpointIo<Spec>) => Response | Promise<Response>) => void;

export interface AdminRoutes<K extends string> {
  endpoint: EndpointFn<K>;
  platform: Platform;
  /** The account a token is limited to: undefined (all) for admin tokens. */
  ownAccount: (token: TokenInfo) => string | undefined;
}
