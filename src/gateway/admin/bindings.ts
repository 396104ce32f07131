/**
 * Admin API: bucket bindings (src/objects/bindings.ts) — a prefix of a bucket bound to an app of
 * the same account; a GET of an object there runs the app with the object as input. An account
 * token binds its own buckets to its own apps; another account's app or binding answers like a
 * missing one. Admin tokens bind within the app's account.
 */
import { z } from "@hono/zod-openapi";
import { PageQuerySchema, paginate } from "./openapi.js";
import { BindingSchema, pageOf } from "./schemas.js";
import type { AdminRoutes } from "./kit.js";
import { ZerocellError } from "../../errors.js";
import { log } from "../../log.js";

export function registerBindingRoutes({ endpoint, platform, ownAccount }: AdminRoutes<"POST /v1/bindings" | "GET /v1/bindings" | "DELETE /v1/bindings/:id">): void {
  const store = platform.store;
  const appNotFound = (name: string) => new ZerocellError("app_not_found", 404, `no app named "${name.slice(0, 80)}"`);

  const createSpec = {
    tag: "objects",
    summary: "Bind a bucket prefix to an app (a GET of an object there runs the app)",
    body: z.object({ bucket: z.string().min(1).max(63), prefix: z.string().max(1024).default(""), app: z.string().min(1).max(63) }).strict(),
    responses: { 201: { description: "The binding", schema: z.object({ binding: BindingSchema }) } },
  };
  endpoint("POST /v1/bindings", createSpec, async (c, token, io) => {
    const body = await io.body();
    const own = ownAccount(token);
    const owner = store.appAccount(body.app);
    if (owner === undefined || (own !== undefined && owner !== own)) throw appNotFound(body.app);
    const app = store.listApps(owner).find((a) => a.name === body.app);
    if (app === undefined) throw appNotFound(body.app);
    const binding = platform.bindings.create(owner, body.bucket, body.prefix, app.id);
    log.info("bucket bound", { bucket: body.bucket, prefix: body.prefix.slice(0, 200), app: app.name });
    return c.json({ binding }, 201);
  });

  endpoint("GET /v1/bindings", { tag: "objects", summary: "List bucket bindings", query: PageQuerySchema, responses: { 200: { description: "A page of bindings", schema: pageOf("bindings", BindingSchema) } } }, (c, token, io) => {
    const { items, next_cursor } = paginate(platform.bindings.list(ownAccount(token)), (b) => b.id, io.query());
    return c.json({ bindings: items, next_cursor });
  });

  endpoint("DELETE /v1/bindings/:id", { tag: "objects", summary: "Delete a bucket binding", responses: { 200: { description: "Deleted", schema: z.object({ deleted: z.literal(true), id: z.string() }) } } }, (c, token) => {
    const id = c.req.param("id") ?? "";
    if (!platform.bindings.delete(id, ownAccount(token))) throw new ZerocellError("binding_not_found", 404, `no binding ${id.slice(0, 40)}`);
    return c.json({ deleted: true, id });
  });
}
