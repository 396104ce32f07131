/**
 * Admin API: disabling and enabling accounts (admin tokens only). A disabled account's API
 * tokens and S3 access keys are refused from the next request on (both are checked per request),
 * and its apps leave the route table: visitors get the 404 of a host nobody deployed, and its
 * instances are retired. Its data (deployments, per-key data, objects, usage, invoices) and the
 * hosts it holds stay, so `accounts enable` brings everything back and nobody else can claim
 * its hosts meanwhile.
 * Must never: let a non-admin token disable or enable any account.
 */
import type { Context } from "hono";
import { z } from "@hono/zod-openapi";
import type { EndpointFn } from "./kit.js";
import type { Platform } from "../../platform/index.js";
import type { Scope } from "../../store/index.js";
import { ZerocellError } from "../../errors.js";
import { log } from "../../log.js";

export const ACCOUNT_ENDPOINTS = {
  "POST /v1/accounts/:name/disable": ["admin"],
  "POST /v1/accounts/:name/enable": ["admin"],
} as const satisfies Record<string, readonly [Scope, ...Scope[]]>;

type Endpoint = keyof typeof ACCOUNT_ENDPOINTS;

export interface AccountRouteDeps {
  platform: Platform;
  endpoint: EndpointFn<Endpoint>;
}

export function registerAccountRoutes({ platform, endpoint }: AccountRouteDeps): void {
  const store = platform.store;
  const toggle = (c: Context, disabled: boolean) => {
    const name = c.req.param("name") ?? "";
    const account = store.accountByName(name);
    if (account === undefined) throw new ZerocellError("account_not_found", 404, `no account named "${name.slice(0, 80)}"`);
    const changed = store.setAccountDisabled(account.id, disabled);
    // Its routes leave (or rejoin) the table; a retired deployment's hosts stop after in-flight requests.
    platform.reloadRoutes();
    log.info(disabled ? "account disabled" : "account enabled", { account: account.name, changed });
    const now = store.listAccounts().find((a) => a.id === account.id);
    return c.json({ account: account.name, disabled, disabledAt: now?.disabledAt ?? null, changed });
  };
  const answer = z.object({ account: z.string(), disabled: z.boolean(), disabledAt: z.string().nullable(), changed: z.boolean() });
  endpoint("POST /v1/accounts/:name/disable", { tag: "accounts", summary: "Disable an account: its tokens and access keys are refused, its apps leave the route table", responses: { 200: { description: "Disabled", schema: answer } } }, (c) => toggle(c, true));
  endpoint("POST /v1/accounts/:name/enable", { tag: "accounts", summary: "Enable a disabled account again", responses: { 200: { description: "Enabled", schema: answer } } }, (c) => toggle(c, false));
}
