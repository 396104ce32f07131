/**
 * Admin API: S3 access keys (src/objects/access-keys.ts). An account token (scope "deploy")
 * manages its own account's keys only; an admin token names the account (default: "default").
 * Another account's key answers exactly like a missing one. The secret is in the create
 * response only.
 */
import { z } from "zod";
import type { AdminRoutes } from "./kit.js";
import type { AccessKeyScope } from "../../objects/access-keys.js";
import { ZerocellError } from "../../errors.js";
import { log } from "../../log.js";

export function registerAccessKeyRoutes({ endpoint, platform, ownAccount, readJson }: AdminRoutes<"POST /v1/access-keys" | "GET /v1/access-keys" | "DELETE /v1/access-keys/:id">): void {
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

  endpoint("POST /v1/access-keys", async (c, token) => {
    const body = await readJson(c, z.object({ account: z.string().max(63).optional(), scopes: z.array(z.enum(["read", "write"])).min(1).max(2).optional() }).strict());
    const account = targetAccount(ownAccount(token), body.account);
    const scopes = [...new Set<AccessKeyScope>(body.scopes ?? ["read", "write"])];
    const key = platform.accessKeys.create(account.id, scopes);
    log.info("access key created", { account: account.name, accessKeyId: key.accessKeyId, scopes });
    return c.json({ accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey, account: account.name, scopes }, 201);
  });

  endpoint("GET /v1/access-keys", (c, token) => {
    const own = ownAccount(token);
    const asked = c.req.query("account");
    const accountId = own === undefined && asked === undefined ? undefined : targetAccount(own, asked).id;
    return c.json({ accessKeys: platform.accessKeys.list(accountId) });
  });

  endpoint("DELETE /v1/access-keys/:id", (c, token) => {
    const id = c.req.param("id") ?? "";
    if (!platform.accessKeys.revoke(id, ownAccount(token))) throw new ZerocellError("access_key_not_found", 404, `no access key ${id.slice(0, 40)}`);
    log.info("access key revoked", { accessKeyId: id });
    return c.json({ revoked: true, accessKeyId: id });
  });
}
