/**
 * Admin API: what each account stores in the object store and its quota (bytes, objects).
 * `GET /v1/objects/usage` answers an account token for its own account (naming another answers
 * like a missing one) and an admin for any (`?account=`, default "default");
 * `PUT /v1/accounts/:name/object-quota` (admin only) sets or clears an account's own quota.
 * Must never: let an account token read another account's usage or change any quota.
 */
import { z } from "@hono/zod-openapi";
import type { AdminRoutes } from "./kit.js";
import type { Scope } from "../../store/index.js";
import type { ObjectUsage } from "../../objects/index.js";
import { ZerocellError } from "../../errors.js";
import { log } from "../../log.js";

export const OBJECT_QUOTA_ENDPOINTS = {
  "GET /v1/objects/usage": ["deploy", "read-usage"],
  "PUT /v1/accounts/:name/object-quota": ["admin"],
} as const satisfies Record<string, readonly [Scope, ...Scope[]]>;

type Endpoint = keyof typeof OBJECT_QUOTA_ENDPOINTS;

const UsageSchema = z.object({
  account: z.string(),
  bytes: z.number().int(),
  objects: z.number().int(),
  quota: z.object({ bytes: z.number().int(), objects: z.number().int() }),
  override: z.object({ bytes: z.number().int().nullable(), objects: z.number().int().nullable() }),
});

/** A quota value: a whole number ≥ 0, or null for the server's default. */
const QuotaValue = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).nullable().optional();

export function registerObjectQuotaRoutes({ endpoint, platform, ownAccount }: AdminRoutes<Endpoint>): void {
  const store = platform.store;
  const accountNotFound = (name: string) => new ZerocellError("account_not_found", 404, `no account named "${name.slice(0, 80)}"`);
  const answer = (name: string, u: ObjectUsage) => ({ account: name, ...u });

  endpoint(
    "GET /v1/objects/usage",
    { tag: "objects", summary: "Bytes and objects an account stores, and its quota", query: z.object({ account: z.string().max(63).optional() }), responses: { 200: { description: "Usage and quota", schema: UsageSchema } } },
    (c, token, io) => {
      const asked = io.query().account;
      const own = ownAccount(token);
      let account: { id: string; name: string } | undefined;
      if (own !== undefined) {
        account = store.listAccounts().find((a) => a.id === own);
        if (account === undefined || (asked !== undefined && asked !== account.name)) throw accountNotFound(asked ?? "");
      } else {
        account = store.accountByName(asked ?? "default");
        if (account === undefined) throw accountNotFound(asked ?? "default");
      }
      return c.json(answer(account.name, platform.objects.usage(account.id)));
    },
  );

  endpoint(
    "PUT /v1/accounts/:name/object-quota",
    {
      tag: "objects",
      summary: "Set an account's object store quota (null: back to the server's default)",
      body: z.object({ bytes: QuotaValue, objects: QuotaValue }).strict(),
      responses: { 200: { description: "Usage and the new quota", schema: UsageSchema } },
    },
    async (c, _token, io) => {
      const name = c.req.param("name") ?? "";
      const account = store.accountByName(name);
      if (account === undefined) throw accountNotFound(name);
      const body = await io.body();
      const u = platform.objects.setQuota(account.id, { ...(body.bytes === undefined ? {} : { bytes: body.bytes }), ...(body.objects === undefined ? {} : { objects: body.objects }) });
      log.info("object quota set", { account: account.name, bytes: u.override.bytes, objects: u.override.objects });
      return c.json(answer(account.name, u));
    },
  );
}
