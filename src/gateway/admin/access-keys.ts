/**
 * Admin API: S3 access keys (src/objects/access-keys.ts). An account token (scope "deploy")
 * manages its own account's keys only; an admin token names the account (default: "default").
 * Another account's key answers exactly like a missing one. The secret is in the create
 * response only.
 */
import { z } from "@hono/zod-openapi";
import { PageQuerySchema, paginate } from "./openapi.js";
import { AccessKeySchema, pageOf } from "./schemas.js";
import type { AdminRoutes } from "./kit.js";
import type { AccessKeyScope } from "../../objects/access-keys.js";
import { ZerocellError } from "../../errors.js";
import { log } from "../../log.js";

export function registerAccessKeyRoutes({ endpoint, platform, ownAccount }: AdminRoutes<"POST /v1/access-keys" | "GET /v1/access-keys" | "DELETE /v1/access-keys/:id">): void {
  const store = platform.store;
  const accountNotFound = (name: string) => new ZerocellError("account_not_found", 404, `no account named "${name.slice(0, 80)}"`);
  /** The account a request acts on: an account token's own (naming another is a 404), or the named one for admins. */
  const targetAccount = (own: string | undefined, asked: string | undefined): { id: string; name: string } => {
    const a = store.accountByName(asked ?? "default");
    if (own !== undefined) {
      if (asked !== undefined && (a === undefined || a.id !== own)) throw accountNotFound(asked);
      const mine = store.listAccounts().find((x) => x.id === own);
      if (mine === undefined) throw accountNotFound(asked ?? "");
      return { id: mine.id, name: mine.name };
    }
    if (a === undefined) throw accountNotFound(asked ?? "default");
    return a;
  };

  const createSpec = {
    tag: "objects",
    summary: "Create an S3 access key (the secret is in this answer only)",
    body: z.object({ account: z.string().max(63).optional(), scopes: z.array(z.enum(["read", "write"])).min(1).max(2).optional() }).strict(),
    responses: { 201: { description: "The key and its secret", schema: z.object({ accessKeyId: z.string(), secretAccessKey: z.string(), account: z.string(), scopes: z.array(z.enum(["read", "write"])) }) } },
  };
  endpoint("POST /v1/access-keys", createSpec, async (c, token, io) => {
    const body = await io.body();
    const account = targetAccount(ownAccount(token), body.account);
    const scopes = [...new Set<AccessKeyScope>(body.scopes ?? ["read", "write"])];
    const key = platform.accessKeys.create(account.id, scopes);
    log.info("access key created", { account: account.name, accessKeyId: key.accessKeyId, scopes });
    return c.json({ accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey, account: account.name, scopes }, 201);
  });

  const listSpec = {
    tag: "objects",
    summary: "List S3 access keys (no secrets)",
    query: PageQuerySchema.extend({ account: z.string().max(63).optional() }),
    responses: { 200: { description: "A page of access keys", schema: pageOf("accessKeys", AccessKeySchema) } },
  };
  endpoint("GET /v1/access-keys", listSpec, (c, token, io) => {
    const q = io.query();
    const own = ownAccount(token);
    const accountId = own === undefined && q.account === undefined ? undefined : targetAccount(own, q.account).id;
    const { items, next_cursor } = paginate(platform.accessKeys.list(accountId), (k) => k.accessKeyId, q);
    return c.json({ accessKeys: items, next_cursor });
  });

  endpoint("DELETE /v1/access-keys/:id", { tag: "objects", summary: "Revoke an S3 access key", responses: { 200: { description: "Revoked", schema: z.object({ revoked: z.literal(true), accessKeyId: z.string() }) } } }, (c, token) => {
    const id = c.req.param("id") ?? "";
    if (!platform.accessKeys.revoke(id, ownAccount(token))) throw new ZerocellError("access_key_not_found", 404, `no access key ${id.slice(0, 40)}`);
    log.info("access key revoked", { accessKeyId: id });
    return c.json({ revoked: true, accessKeyId: id });
  });
}
