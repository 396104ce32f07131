/**
 * Admin API: domains an account verified through ACME (src/platform/domains.ts). An account token
 * adds, lists and removes its own; an admin token names the account (default: "default").
 * Must never: tell an account token whether another account holds or has ordered a domain (one
 * answer for every refusal, the same 404 for another account's domain as for none).
 */
import { z } from "@hono/zod-openapi";
import { PageQuerySchema, paginate } from "./openapi.js";
import { pageOf } from "./schemas.js";
import type { AdminRoutes } from "./kit.js";
import type { Scope } from "../../store/index.js";
import type { DomainInfo } from "../../platform/domains.js";
import { httpsPortSuffix } from "../deploy.js";
import { ZerocellError } from "../../errors.js";
import { log } from "../../log.js";

export const DOMAIN_ENDPOINTS = {
  "POST /v1/domains": ["deploy"],
  "GET /v1/domains": ["deploy"],
  "DELETE /v1/domains/:host": ["deploy"],
} as const satisfies Record<string, readonly [Scope, ...Scope[]]>;

const iso = z.string().openapi({ description: "ISO 8601 time" });

/** A domain as an account token sees it; admin tokens also get `account` (its name). */
export const DomainSchema = z
  .object({
    host: z.string(),
    account: z.string().nullable().optional().openapi({ description: "The owning account's name (admin tokens only)" }),
    status: z.enum(["pending", "active", "failed"]),
    error: z.string().nullable(),
    certNotAfter: iso.nullable(),
    renewAt: iso.nullable(),
    createdAt: iso,
    updatedAt: iso,
  })
  .openapi("Domain");

const accountQuery = z.object({ account: z.string().max(63).optional().openapi({ description: "The account (admin tokens; an account token may name only its own)" }) });

export function registerDomainRoutes({ endpoint, platform, ownAccount, httpsUrl }: AdminRoutes<keyof typeof DOMAIN_ENDPOINTS> & { httpsUrl: () => string | undefined }): void {
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
  const view = (own: string | undefined) => (d: DomainInfo) => {
    const { accountId, ...rest } = d;
    return own === undefined ? { ...rest, account: store.accountName(accountId) ?? null } : rest;
  };

  const addSpec = {
    tag: "domains",
    summary: "Prove control of a domain (ACME HTTP-01 answered by the gateway) and get its certificate",
    description: "Runs the ACME order and answers when it is done: the domain is then the account's to route (with the names under it) and its certificate is served. 503 acme_not_configured when the server has no ACME directory.",
    body: z.object({ host: z.string().min(1).max(253), account: z.string().max(63).optional() }).strict(),
    responses: { 201: { description: "Verified; url: where an app routed at the domain answers", schema: z.object({ domain: DomainSchema, url: z.string() }) } },
  };
  endpoint("POST /v1/domains", addSpec, async (c, token, io) => {
    const body = await io.body();
    const own = ownAccount(token);
    const accountId = target(own, body.account);
    const domain = await platform.domains.add(accountId, body.host);
    log.info("domain added", { host: domain.host, account: accountId });
    const base = httpsUrl();
    return c.json({ domain: view(own)(domain), url: `https://${domain.host}${base === undefined ? "" : httpsPortSuffix(base)}/` }, 201);
  });

  const listSpec = {
    tag: "domains",
    summary: "Domains of the token's account (admin tokens: every account's, or the named one's)",
    query: PageQuerySchema.extend(accountQuery.shape),
    responses: { 200: { description: "A page of domains", schema: pageOf("domains", DomainSchema) } },
  };
  endpoint("GET /v1/domains", listSpec, (c, token, io) => {
    const q = io.query();
    const own = ownAccount(token);
    const accountId = own === undefined && q.account === undefined ? undefined : target(own, q.account);
    const { items, next_cursor } = paginate(platform.domains.list(accountId), (d) => `${d.accountId} ${d.host}`, q);
    return c.json({ domains: items.map(view(own)), next_cursor });
  });

  const removeSpec = {
    tag: "domains",
    summary: "Give up a domain: its routes stop being the account's to claim and its certificate is removed",
    query: accountQuery,
    responses: { 200: { description: "Removed", schema: z.object({ removed: z.string() }) } },
  };
  endpoint("DELETE /v1/domains/:host", removeSpec, async (c, token, io) => {
    const host = (c.req.param("host") ?? "").toLowerCase();
    const accountId = target(ownAccount(token), io.query().account);
    await platform.domains.remove(accountId, host);
    return c.json({ removed: host });
  });
}
