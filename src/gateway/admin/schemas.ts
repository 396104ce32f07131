/**
 * Shapes of the admin API's answers, as named OpenAPI components (src/gateway/admin/openapi.ts).
 * They describe what the store and services return today (src/store, src/billing, src/objects);
 * test/integration/openapi.test.ts validates real responses against them.
 */
import { z } from "@hono/zod-openapi";
import { nextCursorSchema } from "./openapi.js";

const iso = z.string().openapi({ description: "ISO 8601 time" });
const scope = z.enum(["admin", "deploy", "read-usage"]);

export const RouteSpecSchema = z
  .object({ host: z.string(), path: z.string(), mode: z.string(), key: z.string().nullable().optional() })
  .openapi("RouteSpec");

export const AppSchema = z
  .object({ id: z.string(), name: z.string(), accountId: z.string(), activeVersion: z.number().int().nullable(), activeDeploymentId: z.string().nullable(), createdAt: iso })
  .openapi("App");

export const DeploymentSchema = z
  .object({
    id: z.string(),
    app: z.string(),
    appId: z.string(),
    accountId: z.string(),
    version: z.number().int(),
    runtime: z.string(),
    bundleSha256: z.string(),
    bundleBytes: z.number().int(),
    manifest: z.unknown(),
    createdAt: iso,
    active: z.boolean(),
    status: z.enum(["checking", "ready", "failed"]),
    error: z.string().nullable(),
    routes: z.array(RouteSpecSchema),
  })
  .openapi("Deployment");

export const TokenSchema = z
  .object({ id: z.string(), prefix: z.string(), accountId: z.string().nullable(), account: z.string().nullable(), scopes: z.array(scope), createdAt: iso, revokedAt: z.string().nullable(), current: z.boolean() })
  .openapi("Token");

export const AccountSchema = z.object({ id: z.string(), name: z.string(), planId: z.string().nullable(), createdAt: iso }).openapi("Account");

export const PlanSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    currency: z.string(),
    requestPriceMicros: z.number().int(),
    gbSecondPriceMicros: z.number().int(),
    gigaInstructionPriceMicros: z.number().int(),
    freeRequests: z.number().int(),
    freeGbSeconds: z.number().int(),
    freeGigaInstructions: z.number().int(),
  })
  .openapi("Plan");

export const UsageRowSchema = z
  .object({
    day: z.string(),
    accountId: z.string(),
    account: z.string(),
    app: z.string(),
    requests: z.number().int(),
    errors: z.number().int(),
    gbSeconds: z.number(),
    wallMs: z.number(),
    instructions: z.number(),
    bytesIn: z.number().int(),
    bytesOut: z.number().int(),
  })
  .openapi("UsageRow");

const invoiceFields = {
  id: z.string(),
  accountId: z.string(),
  account: z.string(),
  period: z.string(),
  status: z.enum(["draft", "open"]),
  currency: z.string(),
  total: z.number().int(),
  plan: z.string(),
  createdAt: iso,
  syncStatus: z.string(),
  syncError: z.string().nullable(),
  stripeInvoiceId: z.string().nullable(),
};

export const InvoiceLineSchema = z
  .object({ id: z.string(), position: z.number().int(), stripeItemId: z.string().nullable(), metric: z.enum(["requests", "compute", "instructions"]), description: z.string(), quantity: z.string(), unitPriceMicros: z.number().int(), amount: z.number().int() })
  .openapi("InvoiceLine");

export const InvoiceSummarySchema = z.object({ ...invoiceFields, lineCount: z.number().int() }).openapi("InvoiceSummary");
export const InvoiceSchema = z.object({ ...invoiceFields, lines: z.array(InvoiceLineSchema) }).openapi("Invoice");

export const AccessKeySchema = z.object({ accessKeyId: z.string(), accountId: z.string(), scopes: z.array(z.enum(["read", "write"])), createdAt: iso }).openapi("AccessKey");

export const BindingSchema = z
  .object({ id: z.string(), bucket: z.string(), prefix: z.string(), app: z.string(), appId: z.string(), accountId: z.string(), createdAt: iso })
  .openapi("Binding");

export const KeyDataSchema = z.object({ key: z.string(), bytes: z.number().int(), version: z.number().int(), updatedAt: iso, lastAccessAt: iso }).openapi("KeyData");

export const HostClaimSchema = z
  .object({ host: z.string(), accountId: z.string().optional().openapi({ description: "Admin tokens only" }), account: z.string(), source: z.string(), createdAt: iso })
  .openapi("HostClaim");

export const RouteEntrySchema = z
  .object({ host: z.string(), path: z.string(), mode: z.string(), key: z.string().nullable(), app: z.string(), deploymentId: z.string() })
  .openapi("Route");

export const LogLineSchema = z
  .object({ id: z.number().int(), at: z.number().int().openapi({ description: "ms since the epoch" }), deploymentId: z.string(), requestId: z.string().nullable(), line: z.string() })
  .openapi("LogLine");

export const StatsSchema = z
  .object({
    app: z.string(),
    bucket: z.enum(["minute", "hour"]),
    bucketMs: z.number().int(),
    from: z.number().int(),
    to: z.number().int(),
    truncated: z.boolean(),
    buckets: z.array(
      z.object({ start: z.number().int(), requests: z.number().int(), errors: z.number().int(), p50WallUs: z.number().nullable(), p99WallUs: z.number().nullable(), cpuUs: z.number() }),
    ),
  })
  .openapi("Stats");

/** Pool state per deployment: counters the pool keeps (src/pool); host pids for admin tokens only. */
export const PoolDeploymentSchema = z
  .object({ deploymentId: z.string(), app: z.string(), mode: z.string(), key: z.string().nullable() })
  .catchall(z.unknown())
  .openapi("PoolDeployment");

export const ProgramRunSchema = z
  .object({
    program: z.string(),
    validation: z.enum(["cached", "validated"]),
    results: z.array(
      z.object({ key: z.string(), status: z.number().int().optional(), output: z.string().optional(), encoding: z.enum(["utf8", "base64"]).optional(), error: z.object({ code: z.string(), message: z.string() }).optional() }),
    ),
  })
  .openapi("ProgramRun");

/** `{ <name>: T[], next_cursor }`: a page of a list. */
export function pageOf<N extends string>(name: N, item: z.ZodType) {
  return z.object({ [name]: z.array(item), next_cursor: nextCursorSchema } as { [K in N]: z.ZodArray<z.ZodType> } & { next_cursor: typeof nextCursorSchema });
}
