/**
 * The admin listener's OpenAPI 3.1 document: the /v1 endpoints declared by `endpoint()` (see
 * src/gateway/admin/openapi.ts) plus the token-less probes. Built once, on the first GET
 * /openapi.json.
 */
import { z, type OpenAPIHono } from "@hono/zod-openapi";
import { ErrorBodySchema } from "./openapi.js";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../../paths.js";

export function declareDocument(app: OpenAPIHono<any>): unknown {
  const r = app.openAPIRegistry;
  r.registerComponent("securitySchemes", "bearerAuth", { type: "http", scheme: "bearer", description: "An API token: the admin token (data dir's admin-token) or an account token" });
  r.registerPath({ method: "get", path: "/healthz", operationId: "getHealthz", summary: "Liveness", tags: ["operations"], responses: { 200: { description: "Alive", content: { "application/json": { schema: z.object({ ok: z.literal(true) }) } } } } });
  const readiness = z.object({ ready: z.boolean() }).catchall(z.unknown()).openapi("Readiness");
  r.registerPath({
    method: "get",
    path: "/readyz",
    operationId: "getReadyz",
    summary: "Ready to serve app requests (the pool can serve)",
    tags: ["operations"],
    responses: { 200: { description: "Ready", content: { "application/json": { schema: readiness } } }, 503: { description: "Not ready", content: { "application/json": { schema: readiness } } } },
  });
  r.registerPath({
    method: "get",
    path: "/metrics",
    operationId: "getMetrics",
    summary: "Prometheus metrics (admin token)",
    tags: ["operations"],
    security: [{ bearerAuth: [] }],
    responses: {
      200: { description: "Prometheus text format", content: { "text/plain": { schema: z.string() } } },
      401: { description: "Missing or invalid token", content: { "application/json": { schema: ErrorBodySchema } } },
      403: { description: "Not an admin token", content: { "application/json": { schema: ErrorBodySchema } } },
    },
  });
  const version = (JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")) as { version: string }).version;
  return app.getOpenAPI31Document({
    openapi: "3.1.0",
    info: { title: "Zerocell admin API", version, description: "Deploy, roll back and inspect apps; accounts, tokens, usage and invoices. Errors are one JSON shape: { error: { code, message, requestId, details } }." },
  });
}
