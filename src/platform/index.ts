/**
 * The platform's services, built once and handed to the gateway (the composition root): the
 * store and blobs, the pool of sandbox hosts, deployments (deployments.ts), per-key storage
 * (key-data.ts), snapshots, metering and billing, certificates, and the route table swapped on
 * every deploy or rollback. HTTP lives in src/gateway; nothing here speaks it.
 * Must never: run guest code in this process.
 */
import { Store, BlobStore, type OpenedDb } from "../store/index.js";
import { RouteTable, type RouteMode } from "../router/index.js";
import { Pool, closeHostIsolation, type HostIsolation, type PoolLimits, type WarmupUsage } from "../pool/index.js";
import { KeyStore } from "../store/keys.js";
import { SecretBox } from "../store/secret-box.js";
import { KeyQueue } from "../pool/key-queue.js";
import type { CertificateStore } from "../gateway/tls.js";
import { UsageRecorder, Billing, StripeSync, type StripeSyncOptions } from "../billing/index.js";
import { SnapshotStore } from "../snapshot/store.js";
import { log } from "../log.js";
import { randomUUID } from "node:crypto";
import { DeploymentCatalog } from "./deployments.js";
import { KeyedRuns } from "./key-data.js";
import { openObjectStore, type ObjectBackendChoice, type ObjectLimits, type ObjectStore } from "../objects/index.js";
import { AccessKeys } from "../objects/access-keys.js";
import { AppEnv } from "./app-env.js";
import { Bindings } from "../objects/bindings.js";
import { JobStore } from "../store/jobs.js";
import { PlatformMetrics } from "./metrics.js";
import { AppLogs } from "./app-logs.js";
import { LRUCache } from "lru-cache";
import { Domains, type AcmeConfig, type DomainLimits } from "./domains.js";

export { decodeKey } from "./key-data.js";

export interface PlatformInit {
  db: OpenedDb;
  store: Store;
  blobs: BlobStore;
  keysDir: string;
  /** The object store's directory (DIR/objects: disk blobs, or the S3 backend's spool). */
  objectsDir: string;
  /** Where objects live (default: local disk). */
  objectsBackend?: ObjectBackendChoice;
  /** The key that encrypts S3 secret access keys at rest (DIR/access-keys.key, 0600). */
  accessKeyFile: string;
  /** The key that encrypts apps' environment variables at rest (DIR/secrets.key, 0600). */
  secretsKeyFile: string;
  certs: CertificateStore;
  isolation: HostIsolation;
  pool?: Partial<PoolLimits>;
  /** Object store limits over DEFAULT_OBJECT_LIMITS (e.g. the default per-account quotas). */
  objectLimits?: Partial<ObjectLimits>;
  stripe?: StripeSyncOptions;
  metering?: { enabled: boolean; flushIntervalMs: number; allowClosingOpenPeriods?: boolean };
  /** ACME for `domains add` (src/platform/domains.ts); without a directory URL it is refused. */
  acme?: AcmeConfig;
  domainLimits?: Partial<DomainLimits>;
}

export class Platform {
  readonly store: Store;
  readonly blobs: BlobStore;
  readonly pool: Pool;
  readonly certs: CertificateStore;
  readonly usage: UsageRecorder;
  readonly snapshots: SnapshotStore;
  readonly keys: KeyStore;
  readonly billing: Billing;
  /** Set when STRIPE_API_KEY is configured. */
  readonly stripe: StripeSync | undefined;
  readonly deployments: DeploymentCatalog;
  readonly keyed: KeyedRuns;
  readonly metrics: PlatformMetrics;
  readonly logs: AppLogs;
  /** Buckets and objects per account (src/objects), served by the S3 API. */
  readonly objects: ObjectStore;
  readonly accessKeys: AccessKeys;
  /** Apps' environment variables and secrets, encrypted at rest (app-env.ts). */
  readonly env: AppEnv;
  /** Bucket prefixes bound to apps (a GET there runs the app on the object). */
  readonly bindings: Bindings;
  /** Jobs over many objects and their items (run by src/platform/jobs.ts). */
  readonly jobStore: JobStore;
  /** Domains accounts verified through ACME, their certificates and renewals. */
  readonly domains: Domains;
  readonly #db: OpenedDb;
  readonly #isolation: HostIsolation;
  #table: RouteTable = new RouteTable([]);
  #activeDeployments = new Set<string>();

  constructor(init: PlatformInit) {
    this.#db = init.db;
    this.#isolation = init.isolation;
    this.store = init.store;
    this.blobs = init.blobs;
    this.certs = init.certs;
    this.usage = new UsageRecorder(init.db, { flushIntervalMs: init.metering?.flushIntervalMs ?? 100, enabled: init.metering?.enabled ?? true });
    this.snapshots = new SnapshotStore(init.db, init.blobs, 256 * 1024 * 1024, new SecretBox(init.secretsKeyFile));
    this.keys = new KeyStore(init.keysDir, init.db);
    this.billing = new Billing(init.db, { allowClosingOpenPeriods: init.metering?.allowClosingOpenPeriods === true });
    this.stripe = init.stripe === undefined ? undefined : new StripeSync(this.billing, init.stripe);
    this.env = new AppEnv(init.secretsKeyFile);
    this.deployments = new DeploymentCatalog(init.store, init.blobs, this.snapshots, this.env);
    this.pool = new Pool({
      isolation: init.isolation,
      ...(init.pool === undefined ? {} : { limits: init.pool }),
      load: (id) => this.deployments.source(id),
      onLog: (deploymentId, line, requestId) => this.#appLog(deploymentId, line, requestId),
      onWarmup: (deploymentId, u) => this.#recordWarmup(deploymentId, u),
    });
    this.keyed = new KeyedRuns(new KeyQueue(64), this.keys, this.pool);
    this.metrics = new PlatformMetrics(this.pool, this.usage);
    this.logs = new AppLogs(init.db);
    this.objects = openObjectStore(init.objectsBackend ?? { kind: "disk" }, { db: init.db, dir: init.objectsDir, ...(init.objectLimits === undefined ? {} : { limits: init.objectLimits }) });
    this.accessKeys = new AccessKeys(init.db, init.accessKeyFile);
    this.bindings = new Bindings(init.db);
    this.jobStore = new JobStore(init.db);
    this.domains = new Domains({ db: init.db, store: init.store, certs: init.certs, ...(init.acme === undefined ? {} : { acme: init.acme }), ...(init.domainLimits === undefined ? {} : { limits: init.domainLimits }) });
    // A POSTed program's in-memory deployment that leaves the catalog takes its hosts with it.
    this.deployments.onEphemeralGone = () => this.pool.retireExcept(new Set([...this.#activeDeployments, ...this.deployments.ephemeralIds()]));
  }

  /** deployment id → app id, for log lines (a deployment never changes app). */
  readonly #appOf = new LRUCache<string, string>({ max: 4096 });

  /** A line a sandbox host wrote: the server's own log, and the app's (zerocell logs APP). */
  #appLog(deploymentId: string, line: string, requestId: string | undefined): void {
    log.info("app log", { deploymentId, requestId: requestId ?? null, line });
    let appId = this.#appOf.get(deploymentId);
    if (appId === undefined) {
      // Spare hosts log as "spare:<runtime>": no app.
      appId = deploymentId.startsWith("spare:") ? undefined : this.store.getDeployment(deploymentId)?.appId;
      if (appId === undefined) return;
      this.#appOf.set(deploymentId, appId);
    }
    this.logs.append(appId, deploymentId, requestId, line);
  }

  /**
   * Whether this server can serve app requests now (/readyz): the pool takes work (not shutting
   * down) and the database answers.
   */
  readiness(): { ready: boolean; checks: Record<string, { ok: boolean; detail?: string }> } {
    const checks: Record<string, { ok: boolean; detail?: string }> = {};
    checks.pool = this.pool.closed ? { ok: false, detail: "shutting down" } : { ok: true };
    try {
      this.#db.sqlite.prepare("SELECT 1").get();
      checks.database = { ok: true };
    } catch (e) {
      checks.database = { ok: false, detail: (e as Error).message.slice(0, 200) };
    }
    return { ready: Object.values(checks).every((c) => c.ok), checks };
  }

  /**
   * A host start that ran the app's warm-up (tenant code) is billed like a request of mode
   * "warmup": its wall time from the first warm-up request to ready (or to the kill at its limit).
   */
  #recordWarmup(deploymentId: string, u: WarmupUsage): void {
    const d = this.store.getDeployment(deploymentId);
    if (d === undefined) return;
    this.usage.record({
      requestId: `warmup-${randomUUID()}`,
      accountId: d.accountId,
      appId: d.appId,
      deploymentId,
      routeKey: null,
      startedAt: u.startedAt,
      wallUs: Math.max(1, Math.round(u.wallMs * 1000)),
      cpuUs: u.cpuUs ?? null,
      instructions: null,
      // From the stored manifest: a deployment's health check runs before it is active.
      memoryMb: (d.manifest as { limits?: { memoryMb?: number } }).limits?.memoryMb ?? 0,
      status: u.status,
      bytesIn: 0,
      bytesOut: 0,
      mode: "warmup",
    });
  }

  get table(): RouteTable {
    return this.#table;
  }

  /** Rebuilds the route table from the store and swaps it in; frees retired deployments. */
  reloadRoutes(): void {
    const entries = this.store.activeRouteEntries();
    const active = new Set<string>();
    const warm = new Set<string>();
    for (const e of entries) {
      active.add(e.target.deploymentId);
      // Daemon-mode keyed routes get an instance per key on demand; the others share a pool.
      if (!(e.key !== undefined && e.mode === "daemon")) warm.add(`${e.target.deploymentId}/${e.mode}`);
    }
    this.deployments.retain(active);
    this.#table = new RouteTable(entries);
    this.#activeDeployments = active;
    this.pool.retireExcept(new Set([...active, ...this.deployments.ephemeralIds()]));
    for (const key of warm) {
      const [id, mode] = key.split("/") as [string, RouteMode];
      this.pool.prewarm(id, mode);
    }
  }

  /** Whether the gateway may mint a certificate for this SNI name. */
  mayMint(name: string): boolean {
    if (name === "localhost" || name.endsWith(".localhost")) return true;
    return this.#table.match(name, "/") !== undefined;
  }

  async close(): Promise<void> {
    this.domains.close();
    await this.pool.close();
    closeHostIsolation(this.#isolation);
    this.usage.close();
    this.logs.close();
    await this.objects.close();
    this.#db.close();
  }
}
