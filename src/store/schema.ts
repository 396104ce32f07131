/**
 * The relational model. Portable on purpose: only text and integer columns (timestamps are
 * integer milliseconds since the epoch), so the same model runs on Postgres later.
 */
import { sqliteTable, text, integer, index, uniqueIndex } from "drizzle-orm/sqlite-core";

export const accounts = sqliteTable("accounts", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  createdAt: integer("created_at").notNull(),
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
}, (t) => [uniqueIndex("usage_request_uq").on(t.requestId), index("usage_account_time_idx").on(t.accountId, t.startedAt)]);

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
