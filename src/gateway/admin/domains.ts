/**
 * Admin API: domains an account verified through ACME (src/platform/domains.ts). An account token
 * adds, lists and removes its own; an admin token names the account (default: "default").
 * Must never: tell an account token whether another account holds or has ordered a domain (one
 * answer for every refusal, the same 404 for another account's domain as for none).
 */
import { z } from "zod";
import type { AdminRoutes } from "./kit.js";
import type { Scope } from "../../store/index.js";
import { ZerocellError } from "../../errors.js";
import { log } from "../../log.js";

export const DOMAIN_ENDPOINTS = {
  "POST /v1/domains": ["deploy"],
  "GET /v1/domains": ["deploy"],
  "DELETE /v1/domains/:host": ["deploy"],
} as const satisfies Record<string, readonly [Scope, ...Scope[]]>;

export function registerDomainRoutes({ endpoint, platform, ownAccount, readJson }: AdminRoutes<keyof typeof DOMAIN_ENDPOINTS>): void {
  const store = platform.store;
  const accountNotFound = (name: string) => new ZerocellError("account_not_found", 404, `no account named "${name.slice(0, 80)}"`);
  /** The account acted on: a tenant's own (naming another is the 404 of a missing account), or the named one for admins. */
  const target = (own: string | undefined, asked: string | undefined): string => {
    if (own !== undefined) {
      if (asked !== undefined && store.accountByName(asked)?.id !== own) throw accountNotFound(asked);
      return own;
    }
    const a = store.accountByName(asked ?? "default");
    if (a === undefined) throw accountNotFound(asked ?? "default");
    return a.id;
  };
  const view = (own: string | undefined) => (d: ReturnType<typeof platform.domains.list>[number]) => {
    const { accountId, ...rest } = d;
    return own === undefined ? { ...rest, account: store.accountName(accountId) ?? null } : rest;
  };

  endpoint("POST /v1/domains", async (c, token) => {
    const body = await readJson(c, z.object({ host: z.string().min(1).max(253), account: z.string().max(63).optional() }).strict());
    const own = ownAccount(token);
    const accountId = target(own, body.account);
    const domain = await platform.domains.add(accountId, body.host);
    log.info("domain added", { host: domain.host, account: accountId });
    return c.json({ domain: view(own)(domain), url: `https://${domain.host}${platform.httpsPort === undefined || platform.httpsPort === 443 ? "" : `:${platform.httpsPort}`}/` }, 201);
  });

  endpoint("GET /v1/domains", (c, token) => {
    const own = ownAccount(token);
    const asked = c.req.query("account");
    const accountId = own === undefined && asked === undefined ? undefined : target(own, asked);
    return c.json({ domains: platform.domains.list(accountId).map(view(own)) });
  });

  endpoint("DELETE /v1/domains/:host", async (c, token) => {
    const host = (c.req.param("host") ?? "").toLowerCase();
    const accountId = target(ownAccount(token), c.req.query("account"));
    await platform.domains.remove(accountId, host);
    return c.json({ removed: host });
  });
}
