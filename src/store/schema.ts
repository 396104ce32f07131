/**
 * The relational model. Portable on purpose: only text and integer columns (timestamps are
 * integer milliseconds since the epoch), so the same model runs on Postgres later.
 */
import { sqliteTable, text, integer, index, uniqueIndex } from "drizzle-orm/sqlite-core";

export const accounts = sqliteTable("accounts", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  createdAt: integer("created_at").notNull(),
  /** Price plan (price_plans.id); the default plan when null. */
  planId: text("plan_id"),
  /** Stripe customer, created once at the first sync. */
  stripeCustomerId: text("stripe_customer_id"),
  /**
   * Set while an admin has disabled the account (`zerocell accounts disable`): its tokens and S3
   * access keys are refused and its apps leave the route table (404, instances stopped).
   */
  disabledAt: integer("disabled_at"),
}, (t) => [uniqueIndex("accounts_name_uq").on(t.name)]);

/** API tokens: only the SHA-256 of the secret is stored; `prefix` is shown to people. */
export const apiTokens = sqliteTable("api_tokens", {
  id: text("id").primaryKey(),
  accountId: text("account_id").references(() => accounts.id),
  tokenHash: text("token_hash").notNull(),
  prefix: text("prefix").notNull(),
  /** Comma-separated scopes: "admin", "deploy", "read-usage". */
  scopes: text("scopes").notNull(),
  createdAt: integer("created_at").notNull(),
  revokedAt: integer("revoked_at"),
}, (t) => [uniqueIndex("api_tokens_hash_uq").on(t.tokenHash)]);

export const apps = sqliteTable("apps", {
  id: text("id").primaryKey(),
  accountId: text("account_id").notNull().references(() => accounts.id),
  name: text("name").notNull(),
  /** The deployment that serves traffic; null until the first deploy. */
  activeDeploymentId: text("active_deployment_id"),
  createdAt: integer("created_at").notNull(),
}, (t) => [uniqueIndex("apps_name_uq").on(t.name)]);

/** Immutable once written: a deployment is a bundle (by hash) plus its parsed manifest. */
export const deployments = sqliteTable("deployments", {
  id: text("id").primaryKey(),
  appId: text("app_id").notNull().references(() => apps.id),
  version: integer("version").notNull(),
  runtime: text("runtime").notNull(),
  bundleSha256: text("bundle_sha256").notNull(),
  bundleBytes: integer("bundle_bytes").notNull(),
  /** The manifest after validation and defaults, as JSON. */
  manifest: text("manifest").notNull(),
  createdAt: integer("created_at").notNull(),
  /**
   * "checking" while its health check runs, "ready" once it passed (only a ready deployment is
   * ever active), "failed" with `error` when it did not (never retried, never activated).
   */
  status: text("status").notNull().default("ready"),
  /** Why the health check failed (the request, its status, the runtime's last log lines). */
  error: text("error"),
  /**
   * The app's environment variables for this deployment, JSON `[{name, secret, enc}]`, every
   * value AES-256-GCM-encrypted (src/platform/app-env.ts); null: none. Part of what a deployment
   * is: an env change is a new deployment of the same bundle, and rollback restores the old values.
   */
  env: text("env"),
}, (t) => [uniqueIndex("deployments_app_version_uq").on(t.appId, t.version)]);

export const routes = sqliteTable("routes", {
  id: integer("id").primaryKey({ autoIncrement: true }),
  deploymentId: text("deployment_id").notNull().references(() => deployments.id),
  host: text("host").notNull(),
  path: text("path").notNull(),
  /** Canonical path ("/posts/:" for "/posts/:id"), to find two apps claiming the same route. */
  canonicalPath: text("canonical_path").notNull(),
  mode: text("mode").notNull(),
  keyParam: text("key_param"),
  position: integer("position").notNull(),
}, (t) => [index("routes_deployment_idx").on(t.deploymentId), index("routes_host_path_idx").on(t.host, t.canonicalPath)]);

/** One row per request served (written in batches off the request path). */
export const usageRecords = sqliteTable("usage_records", {
  id: integer("id").primaryKey({ autoIncrement: true }),
  requestId: text("request_id").notNull(),
  accountId: text("account_id").notNull(),
  appId: text("app_id").notNull(),
  deploymentId: text("deployment_id").notNull(),
  routeKey: text("route_key"),
  startedAt: integer("started_at").notNull(),
  wallUs: integer("wall_us").notNull(),
  cpuUs: integer("cpu_us"),
  instructions: integer("instructions"),
  memoryMb: integer("memory_mb").notNull(),
  status: integer("status").notNull(),
  bytesIn: integer("bytes_in").notNull(),
  bytesOut: integer("bytes_out").notNull(),
  mode: text("mode").notNull(),
}, (t) => [uniqueIndex("usage_request_uq").on(t.requestId), index("usage_account_time_idx").on(t.accountId, t.startedAt), index("usage_app_time_idx").on(t.appId, t.startedAt)]);

/**
 * Snapshots of prepared instances, one per deployment and engine build. The bytes live in the
 * blob store (content-addressed); a row whose build differs from the running engine's is never
 * loaded.
 */
export const snapshots = sqliteTable("snapshots", {
  id: integer("id").primaryKey({ autoIncrement: true }),
  deploymentId: text("deployment_id").notNull().references(() => deployments.id),
  engine: text("engine").notNull(),
  engineBuild: text("engine_build").notNull(),
  sha256: text("sha256").notNull(),
  bytes: integer("bytes").notNull(),
  /** Uncompressed memory image size. */
  memoryBytes: integer("memory_bytes").notNull(),
  createdAt: integer("created_at").notNull(),
}, (t) => [uniqueIndex("snapshots_deployment_build_uq").on(t.deploymentId, t.engineBuild)]);

/** Per-key storage of keyed routes: one row per (app, key); the bytes are a file per key. */
export const appKeys = sqliteTable("app_keys", {
  appId: text("app_id").notNull().references(() => apps.id),
  key: text("key").notNull(),
  /** Size of the committed /data image, bytes. */
  bytes: integer("bytes").notNull(),
  /** Commits so far (each successful request that changed /data). */
  version: integer("version").notNull(),
  updatedAt: integer("updated_at").notNull(),
  lastAccessAt: integer("last_access_at").notNull(),
}, (t) => [uniqueIndex("app_keys_pk").on(t.appId, t.key)]);

/**
 * Price plans. Prices are integers in micro minor units (1/1,000,000 of a cent for USD) per
 * unit, so tiny per-request prices stay exact; totals are rounded to minor units once per line.
 */
export const pricePlans = sqliteTable("price_plans", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  currency: text("currency").notNull(),
  /** Per request. */
  requestPriceMicros: integer("request_price_micros").notNull(),
  /** Per GB-second (wall time × billed memory). */
  gbSecondPriceMicros: integer("gb_second_price_micros").notNull(),
  /** Per billion guest instructions (x86). */
  gigaInstructionPriceMicros: integer("giga_instruction_price_micros").notNull(),
  freeRequests: integer("free_requests").notNull(),
  /** Free GB-seconds per period. */
  freeGbSeconds: integer("free_gb_seconds").notNull(),
  /** Free billions of instructions per period. */
  freeGigaInstructions: integer("free_giga_instructions").notNull(),
  createdAt: integer("created_at").notNull(),
}, (t) => [uniqueIndex("price_plans_name_uq").on(t.name)]);

/** Usage per account, app and UTC day, kept up to date in the same transaction as the records. */
export const usageDaily = sqliteTable("usage_daily", {
  accountId: text("account_id").notNull(),
  appId: text("app_id").notNull(),
  day: text("day").notNull(),
  requests: integer("requests").notNull(),
  errors: integer("errors").notNull(),
  /** Sum over requests of ceil(wall ms) × billed MB: GB-seconds = mbMs / 1024 / 1000. */
  mbMs: integer("mb_ms").notNull(),
  wallUs: integer("wall_us").notNull(),
  instructions: integer("instructions").notNull(),
  bytesIn: integer("bytes_in").notNull(),
  bytesOut: integer("bytes_out").notNull(),
}, (t) => [uniqueIndex("usage_daily_pk").on(t.accountId, t.appId, t.day)]);

/** An invoice per account and period (YYYY-MM); immutable once open. */
export const invoices = sqliteTable("invoices", {
  id: text("id").primaryKey(),
  accountId: text("account_id").notNull().references(() => accounts.id),
  period: text("period").notNull(),
  status: text("status").notNull(),
  currency: text("currency").notNull(),
  /** Minor units; always the sum of the lines. */
  total: integer("total").notNull(),
  planId: text("plan_id").notNull(),
  createdAt: integer("created_at").notNull(),
  stripeInvoiceId: text("stripe_invoice_id"),
  /** none | pending | synced | failed */
  syncStatus: text("sync_status").notNull(),
  syncError: text("sync_error"),
  syncAttempts: integer("sync_attempts").notNull(),
}, (t) => [uniqueIndex("invoices_account_period_uq").on(t.accountId, t.period)]);

export const invoiceLines = sqliteTable("invoice_lines", {
  id: text("id").primaryKey(),
  invoiceId: text("invoice_id").notNull().references(() => invoices.id),
  position: integer("position").notNull(),
  metric: text("metric").notNull(),
  description: text("description").notNull(),
  /** Billable quantity as a decimal string (GB-seconds are fractional). */
  quantity: text("quantity").notNull(),
  unitPriceMicros: integer("unit_price_micros").notNull(),
  /** Minor units. */
  amount: integer("amount").notNull(),
  stripeItemId: text("stripe_item_id"),
}, (t) => [index("invoice_lines_invoice_idx").on(t.invoiceId)]);

/**
 * Host names and the account that holds each (src/router/hosts.ts): routes on a host, or on any
 * name under it that nobody else holds, belong to that account only.
 */
export const hostClaims = sqliteTable("host_claims", {
  host: text("host").primaryKey(),
  accountId: text("account_id").notNull().references(() => accounts.id),
  /** "deploy" (an admin token routed it first), "admin" (assigned) or "acme" (verified, domains add). */
  source: text("source").notNull(),
  createdAt: integer("created_at").notNull(),
}, (t) => [index("host_claims_account_idx").on(t.accountId)]);

/**
 * Domains an account added with `domains add` (src/platform/domains.ts): an ACME order proves
 * control through HTTP-01, then the name is the account's (a host_claims row, source "acme") and
 * its certificate is served for SNI; renewed before `cert_not_after`.
 */
export const domains = sqliteTable("domains", {
  id: text("id").primaryKey(),
  accountId: text("account_id").notNull().references(() => accounts.id),
  host: text("host").notNull(),
  /** "pending" (order running), "active" (verified, certificate installed) or "failed". */
  status: text("status").notNull(),
  /** Why the last order failed (status "failed", or a renewal that failed while still active). */
  error: text("error"),
  /** Expiry of the installed certificate, ms since the epoch. */
  certNotAfter: integer("cert_not_after"),
  /** When the renewal check orders a new certificate: a third of its lifetime before expiry, ms. */
  renewAt: integer("renew_at"),
  createdAt: integer("created_at").notNull(),
  updatedAt: integer("updated_at").notNull(),
}, (t) => [uniqueIndex("domains_account_host_uq").on(t.accountId, t.host), index("domains_host_idx").on(t.host)]);

/**
 * What an app's sandboxes wrote to their logs (PHP's error log, Python's stderr and wsgi.errors,
 * x86 stderr), one row per line, with the request it belongs to. Bounded per app and by age
 * (src/platform/app-logs.ts prunes).
 */
export const appLogs = sqliteTable("app_logs", {
  id: integer("id").primaryKey({ autoIncrement: true }),
  appId: text("app_id").notNull(),
  deploymentId: text("deployment_id").notNull(),
  /** The gateway's request id; null for lines written outside a request (start, warm-up). */
  requestId: text("request_id"),
  /** Milliseconds since the epoch. */
  at: integer("at").notNull(),
  line: text("line").notNull(),
}, (t) => [index("app_logs_app_idx").on(t.appId, t.id), index("app_logs_at_idx").on(t.at)]);

/**
 * Object store buckets (src/objects). Names are per account, like app keys: another account's
 * bucket of the same name is a different bucket, so no request can learn that it exists.
 */
export const buckets = sqliteTable("buckets", {
  id: text("id").primaryKey(),
  accountId: text("account_id").notNull().references(() => accounts.id),
  name: text("name").notNull(),
  createdAt: integer("created_at").notNull(),
}, (t) => [uniqueIndex("buckets_account_name_uq").on(t.accountId, t.name)]);

/**
 * Objects of the disk backend: the bytes are a content-addressed blob (sha256) under
 * DIR/objects/blobs; one blob may back several objects. Keys compare as bytes (UTF-8), which is
 * S3's list order (on Postgres the column needs COLLATE "C").
 */
export const objects = sqliteTable("objects", {
  bucketId: text("bucket_id").notNull().references(() => buckets.id),
  key: text("key").notNull(),
  sha256: text("sha256").notNull(),
  /** Bytes. */
  size: integer("size").notNull(),
  /** S3 ETag without quotes: MD5 hex, or MD5-of-part-MD5s "-N" for multipart objects. */
  etag: text("etag").notNull(),
  contentType: text("content_type").notNull(),
  /** User metadata (x-amz-meta-*) as a JSON object of lower-case names → values. */
  metadata: text("metadata").notNull(),
  lastModified: integer("last_modified").notNull(),
}, (t) => [uniqueIndex("objects_bucket_key_uq").on(t.bucketId, t.key), index("objects_sha256_idx").on(t.sha256)]);

/**
 * Per account: what the object store holds (bytes, objects), kept in the same transaction as
 * every `objects` row written or deleted, so a quota check reads exact figures; and the quota an
 * admin set for the account (null: the server's default).
 */
export const objectUsage = sqliteTable("object_usage", {
  accountId: text("account_id").primaryKey().references(() => accounts.id),
  bytes: integer("bytes").notNull().default(0),
  objects: integer("objects").notNull().default(0),
  quotaBytes: integer("quota_bytes"),
  quotaObjects: integer("quota_objects"),
});

/** Multipart uploads in progress; parts are files under DIR/objects/uploads/<id>/. */
export const objectUploads = sqliteTable("object_uploads", {
  id: text("id").primaryKey(),
  bucketId: text("bucket_id").notNull().references(() => buckets.id),
  key: text("key").notNull(),
  contentType: text("content_type").notNull(),
  metadata: text("metadata").notNull(),
  createdAt: integer("created_at").notNull(),
}, (t) => [index("object_uploads_bucket_idx").on(t.bucketId)]);

export const objectUploadParts = sqliteTable("object_upload_parts", {
  uploadId: text("upload_id").notNull().references(() => objectUploads.id),
  partNumber: integer("part_number").notNull(),
  size: integer("size").notNull(),
  /** MD5 hex of the part, no quotes. */
  etag: text("etag").notNull(),
  createdAt: integer("created_at").notNull(),
}, (t) => [uniqueIndex("object_upload_parts_pk").on(t.uploadId, t.partNumber)]);

/**
 * S3 access keys (SigV4). SigV4 needs the secret itself to verify a signature, so it is kept
 * encrypted (AES-256-GCM) with a key file in the data dir (DIR/access-keys.key, 0600), never in
 * clear. `scopes`: "read" and/or "write", comma-separated.
 */
export const accessKeys = sqliteTable("access_keys", {
  id: text("id").primaryKey(),
  accountId: text("account_id").notNull().references(() => accounts.id),
  /** base64url(iv | tag | ciphertext). */
  secretEnc: text("secret_enc").notNull(),
  scopes: text("scopes").notNull(),
  createdAt: integer("created_at").notNull(),
  revokedAt: integer("revoked_at"),
}, (t) => [index("access_keys_account_idx").on(t.accountId)]);

/**
 * Code next to the data: a GET of an object under `prefix` of a bucket runs the app's handler
 * with the object as its input and answers with its output. Bucket and app belong to one
 * account; the longest matching prefix wins.
 */
export const bucketBindings = sqliteTable("bucket_bindings", {
  id: text("id").primaryKey(),
  bucketId: text("bucket_id").notNull().references(() => buckets.id),
  prefix: text("prefix").notNull(),
  appId: text("app_id").notNull().references(() => apps.id),
  createdAt: integer("created_at").notNull(),
}, (t) => [uniqueIndex("bucket_bindings_bucket_prefix_uq").on(t.bucketId, t.prefix)]);

/**
 * Jobs (src/platform/jobs.ts): a deployed app or a POSTed x86 program run once per object of a
 * bucket prefix, each output written to an output bucket prefix. Both buckets belong to the
 * job's account. `programSha256` names the program in the blob store (a POSTed program);
 * `appId` the app otherwise (its active deployment runs each item).
 * status: "running" | "done" | "cancelled".
 */
export const jobs = sqliteTable("jobs", {
  id: text("id").primaryKey(),
  accountId: text("account_id").notNull().references(() => accounts.id),
  appId: text("app_id"),
  programSha256: text("program_sha256"),
  inputBucket: text("input_bucket").notNull(),
  inputPrefix: text("input_prefix").notNull(),
  outputBucket: text("output_bucket").notNull(),
  outputPrefix: text("output_prefix").notNull(),
  /** Items of this job run at the same time, at most. */
  concurrency: integer("concurrency").notNull(),
  status: text("status").notNull(),
  total: integer("total").notNull(),
  createdAt: integer("created_at").notNull(),
  finishedAt: integer("finished_at"),
  /** How a POSTed program meets each object: "cgi" or "stdio" (null: cgi, or the app's own). */
  io: text("io"),
  /** The program's arguments (stdio mode), a JSON array of strings; null: none / the app's own. */
  args: text("args"),
  /** Exit codes of a stdio program that count as ok, a JSON array; null: [0]. */
  okExitCodes: text("ok_exit_codes"),
  /** A POSTed program's file name (argv[0] is /app/bin/<name>: busybox picks its applet by it); null: "app". */
  programName: text("program_name"),
  /** The cost estimate made before the job started (JSON of JobEstimate, src/platform/job-costs.ts). */
  estimate: text("estimate"),
}, (t) => [index("jobs_account_idx").on(t.accountId, t.createdAt), index("jobs_status_idx").on(t.status)]);

/**
 * One row per input object of a job. status: "pending" (not run, or cut by a restart: run
 * again), "ok" (output written as `output_key`), "failed" (error_code, error_message).
 */
export const jobItems = sqliteTable("job_items", {
  jobId: text("job_id").notNull().references(() => jobs.id),
  /** Position in the job (list order), from 0. */
  seq: integer("seq").notNull(),
  key: text("key").notNull(),
  status: text("status").notNull(),
  outputKey: text("output_key"),
  errorCode: text("error_code"),
  errorMessage: text("error_message"),
  /** The program's HTTP status (CGI Status, PHP/Python response), when it answered. */
  httpStatus: integer("http_status"),
  bytesIn: integer("bytes_in"),
  bytesOut: integer("bytes_out"),
  wallUs: integer("wall_us"),
  finishedAt: integer("finished_at"),
  /** A stdio program's exit code. */
  exitCode: integer("exit_code"),
  /** The order items finished in, per job, from 1 (the progress stream's event id); null while pending. */
  finishNo: integer("finish_no"),
}, (t) => [uniqueIndex("job_items_pk").on(t.jobId, t.seq), index("job_items_status_idx").on(t.jobId, t.status, t.seq), index("job_items_finish_idx").on(t.jobId, t.finishNo)]);

/**
 * A job's reduce step (src/platform/job-reduce.ts): once every item finished, one run of this
 * program (`app_id`, or `program_sha256` in the blob store) in stdio mode with `args`, the ok
 * items' outputs concatenated in key order on stdin. status: "pending" (not run, or cut by a
 * restart: run again), "ok" (stdout stored as `output_key`, its head in `output_head`, base64),
 * "failed" (error_code, error_message). A job is done only after its reduce finished.
 */
export const jobReduces = sqliteTable("job_reduces", {
  jobId: text("job_id").primaryKey().references(() => jobs.id),
  appId: text("app_id"),
  programSha256: text("program_sha256"),
  programName: text("program_name"),
  args: text("args").notNull(),
  status: text("status").notNull(),
  outputKey: text("output_key"),
  outputHead: text("output_head"),
  outputBytes: integer("output_bytes"),
  exitCode: integer("exit_code"),
  errorCode: text("error_code"),
  errorMessage: text("error_message"),
  bytesIn: integer("bytes_in"),
  wallUs: integer("wall_us"),
  finishedAt: integer("finished_at"),
});
