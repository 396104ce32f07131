/**
 * The admin API's contract: each /v1 endpoint is declared once (an `EndpointSpec` of zod schemas)
 * and that declaration is both the OpenAPI document (@hono/zod-openapi, served at /openapi.json)
 * and the validation its handler runs (`parseInput`), so the two cannot drift. One error body
 * everywhere (src/gateway/respond.ts): a validation error's `details.fields` lists every invalid
 * field with its path, not only the first. Lists are paginated with `limit` + an opaque `cursor`.
 * Must never: trust a cursor (it is client input: bounded, decoded defensively, a bad one is 400).
 */
import { z } from "@hono/zod-openapi";
import type { OpenAPIHono } from "@hono/zod-openapi";
import type { ZodType } from "zod";
import { InputError } from "../../errors.js";

// --- one error body ---

export const ErrorBodySchema = z
  .object({
    error: z.object({
      code: z.string().openapi({ description: "Stable machine-readable code, e.g. app_not_found, bad_input, payload_too_large" }),
      message: z.string(),
      requestId: z.string(),
      details: z
        .object({
          fields: z
            .array(z.object({ path: z.string().openapi({ description: 'Dotted path of the field ("" for the whole body)' }), code: z.string(), message: z.string() }))
            .optional()
            .openapi({ description: "Every invalid field of a validation error (code bad_input)" }),
        })
        .catchall(z.unknown())
        .optional(),
    }),
  })
  .openapi("Error");

/** Issues kept in one error (a hostile body can have millions of invalid fields). */
const MAX_REPORTED_ISSUES = 100;

export interface FieldIssue {
  path: string;
  code: string;
  message: string;
}

/** zod issues → the error body's `details.fields` (every one, bounded). */
export function fieldIssues(issues: ReadonlyArray<{ path: ReadonlyArray<PropertyKey>; code: string; message: string; keys?: readonly string[] }>): FieldIssue[] {
  const out: FieldIssue[] = [];
  for (const i of issues.slice(0, MAX_REPORTED_ISSUES)) {
    const base = i.path.map(String).join(".").slice(0, 200);
    // An unknown key is reported at the key itself, so a client sees which field to drop.
    if (i.code === "unrecognized_keys" && i.keys !== undefined) {
      for (const k of i.keys.slice(0, MAX_REPORTED_ISSUES)) out.push({ path: (base === "" ? k : `${base}.${k}`).slice(0, 200), code: "unrecognized_key", message: `unknown field "${k.slice(0, 80)}"` });
    } else out.push({ path: base, code: i.code, message: i.message.slice(0, 300) });
  }
  return out;
}

/**
 * Validates client input (a parsed JSON body, the query) against its declared schema; a
 * failure is one 400 bad_input naming every invalid field.
 */
export function parseInput<T>(schema: ZodType<T>, data: unknown, where: string): T {
  const parsed = schema.safeParse(data);
  if (parsed.success) return parsed.data;
  const fields = fieldIssues(parsed.error.issues as never);
  const summary = fields.map((f) => `${f.path || where}: ${f.message}`).join("; ");
  throw new InputError(`admin: invalid ${where}: ${summary.slice(0, 1000)}`, { details: { fields } });
}

// --- pagination ---

export const PAGE_LIMITS = {
  /** Items a page holds when the client names no limit. */
  defaultLimit: 100,
  /** Items a page holds at most. */
  maxLimit: 1000,
  /** Longest cursor accepted, characters. */
  maxCursorChars: 512,
} as const;

export const PageQuerySchema = z.object({
  limit: z.coerce
    .number()
    .int()
    .min(1)
    .max(PAGE_LIMITS.maxLimit)
    .optional()
    .openapi({ description: `Items per page (1 to ${PAGE_LIMITS.maxLimit}; default ${PAGE_LIMITS.defaultLimit})`, type: "integer" }),
  cursor: z.string().max(PAGE_LIMITS.maxCursorChars).optional().openapi({ description: "The next_cursor of the previous page (opaque)" }),
});

export const nextCursorSchema = z.string().nullable().openapi({ description: "Pass as ?cursor= for the next page; null on the last page" });

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

/**
 * One page of a list in its store order. The cursor carries the last item's key and position:
 * the next page starts after that key (found again if items before it were removed), or at the
 * position if that item itself is gone.
 */
export function paginate<T>(items: readonly T[], keyOf: (item: T) => string, query: { limit?: number | undefined; cursor?: string | undefined }): Page<T> {
  const limit = query.limit ?? PAGE_LIMITS.defaultLimit;
  let start = 0;
  if (query.cursor !== undefined && query.cursor !== "") {
    const c = decodeCursor(query.cursor);
    const at = items[c.i - 1] !== undefined && keyOf(items[c.i - 1]!) === c.k ? c.i : items.findIndex((x) => keyOf(x) === c.k) + 1;
    start = at > 0 ? at : Math.min(c.i, items.length);
  }
  const page = items.slice(start, start + limit);
  const end = start + page.length;
  return { items: page, next_cursor: end < items.length && page.length > 0 ? encodeCursor({ k: keyOf(page[page.length - 1]!), i: end }) : null };
}

function encodeCursor(c: { k: string; i: number }): string {
  return Buffer.from(JSON.stringify(c), "utf8").toString("base64url");
}

function decodeCursor(cursor: string): { k: string; i: number } {
  const bad = () => new InputError(`admin: cursor "${cursor.slice(0, 40)}" is not one this API returned`, { code: "bad_cursor", details: { fields: [{ path: "cursor", code: "bad_cursor", message: "not a cursor this API returned" }] } });
  if (cursor.length > PAGE_LIMITS.maxCursorChars || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw bad();
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    throw bad();
  }
  const o = v as { k?: unknown; i?: unknown };
  if (v === null || typeof v !== "object" || typeof o.k !== "string" || typeof o.i !== "number" || !Number.isSafeInteger(o.i) || o.i < 0) throw bad();
  return { k: o.k, i: o.i };
}

// --- endpoint declarations ---

type AnyObject = z.ZodObject<z.ZodRawShape>;

export interface ResponseSpec {
  description: string;
  /** JSON body schema; omit for a body of another content type. */
  schema?: ZodType;
  /** Content type of a non-JSON body (with its schema shown as a string/binary). */
  contentType?: string;
}

/** What one /v1 endpoint takes and answers: the document and the handler's validation. */
export interface EndpointSpec<Q extends AnyObject | undefined = AnyObject | undefined, B extends ZodType | undefined = ZodType | undefined> {
  summary: string;
  tag: string;
  description?: string;
  query?: Q;
  /** JSON body (validated by the handler through readJson), or a raw body of the given content types. */
  body?: B;
  rawBody?: { contentTypes: string[]; description: string };
  responses: Record<number, ResponseSpec>;
}

const ERROR_STATUSES: Record<number, string> = {
  400: "Invalid input (details.fields lists every invalid field)",
  401: "Missing or invalid token",
  403: "The token lacks the scope",
  404: "Not found (another account's resource answers the same)",
  409: "Conflict",
  413: "Body over its limit",
  503: "Busy; retry after Retry-After seconds",
};

function contentOf(r: ResponseSpec): Record<string, { schema: ZodType }> | undefined {
  if (r.contentType !== undefined) return { [r.contentType]: { schema: r.schema ?? z.string().openapi({ format: "binary" }) } };
  if (r.schema === undefined) return undefined;
  return { "application/json": { schema: r.schema } };
}

/** Adds one endpoint ("GET /v1/apps/:app") to the OpenAPI document of `app`. */
export function declareEndpoint(app: OpenAPIHono<never> | OpenAPIHono<any>, key: string, scopes: readonly string[], spec: EndpointSpec): void {
  const [method, path] = key.split(" ") as [string, string];
  const names = [...path.matchAll(/:([A-Za-z_]+)/g)].map((m) => m[1]!);
  const params = names.length === 0 ? undefined : z.object(Object.fromEntries(names.map((n) => [n, z.string().max(253)])));
  const responses: Record<string, { description: string; content?: Record<string, { schema: ZodType }> }> = {};
  for (const [status, r] of Object.entries(spec.responses)) {
    const content = contentOf(r);
    responses[status] = { description: r.description, ...(content === undefined ? {} : { content }) };
  }
  for (const [status, description] of Object.entries(ERROR_STATUSES)) responses[status] ??= { description, content: { "application/json": { schema: ErrorBodySchema } } };
  responses.default = { description: "Any other error", content: { "application/json": { schema: ErrorBodySchema } } };
  const body =
    spec.body !== undefined
      ? { content: { "application/json": { schema: spec.body } }, required: true }
      : spec.rawBody !== undefined
        ? { description: spec.rawBody.description, content: Object.fromEntries(spec.rawBody.contentTypes.map((t) => [t, { schema: z.string().openapi({ format: "binary" }) }])), required: true }
        : undefined;
  app.openAPIRegistry.registerPath({
    method: method.toLowerCase() as "get",
    path: path.replace(/:([A-Za-z_]+)/g, "{$1}"),
    operationId: operationId(method, path),
    summary: spec.summary,
    description: `${spec.description ?? ""}${spec.description === undefined ? "" : "\n\n"}Scopes: ${scopes.join(" or ")} (an admin token may call every endpoint).`,
    tags: [spec.tag],
    security: [{ bearerAuth: [] }],
    request: {
      ...(params === undefined ? {} : { params }),
      ...(spec.query === undefined ? {} : { query: spec.query }),
      ...(body === undefined ? {} : { body }),
    },
    responses,
  });
}

/** "GET /v1/apps/:app/deployments" → "getAppsAppDeployments". */
function operationId(method: string, path: string): string {
  const words = path
    .replace(/^\/v1\//, "")
    .split(/[/:_-]+/)
    .filter((w) => w !== "");
  return method.toLowerCase() + words.map((w) => w[0]!.toUpperCase() + w.slice(1)).join("");
}

/** Input of one endpoint, validated against its declaration when the handler asks for it. */
export interface EndpointIo<Spec extends EndpointSpec> {
  query: () => Spec["query"] extends ZodType ? z.output<Spec["query"]> : Record<string, never>;
  body: () => Promise<Spec["body"] extends ZodType ? z.output<Spec["body"]> : undefined>;
}
