/**
 * Gateway: the platform's front door. Serves apps over HTTP and HTTPS (SNI, per-host
 * certificates from a local CA or the user's), and the admin API on a separate listener
 * (loopback by default). For each app request: 1. route, 2. read the body under its limit,
 * 3. run it in the pool, 4. answer, log and meter. Only this part maps errors to HTTP statuses.
 * Must never: run guest code in this process, or die because a sandbox did.
 */
import { mkdirSync, writeFileSync, readFileSync, existsSync, renameSync, chmodSync } from "node:fs";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import type { AddressInfo } from "node:net";
import http from "node:http";
import https from "node:https";
import { Hono } from "hono";
import { getRequestListener, type HttpBindings } from "@hono/node-server";
import { LRUCache } from "lru-cache";
import { Store, openDb, BlobStore, type OpenedDb } from "../store/index.js";
import { RouteTable, normalizeHost, type RouteEntry, type RouteMatch, type RouteMode } from "../router/index.js";
import { Pool, closeHostIsolation, detectHostIsolation, type DeploymentSource, type HostIsolation, type PoolLimits, type WarmupUsage } from "../pool/index.js";
import { readBundleArchive, encodeImage, decodeImage, type Manifest } from "../bundle/index.js";
import { KeyStore, MAX_KEY_LENGTH } from "../store/keys.js";
import { KeyQueue } from "../pool/key-queue.js";
import { CertificateStore } from "./tls.js";
import { errorToResponse } from "./respond.js";
import { createAdminApi } from "./admin.js";
import { UsageRecorder, Billing, StripeSync, type StripeSyncOptions } from "../billing/index.js";
import { SnapshotStore } from "../snapshot/store.js";
import { engineBuildId } from "../runtime/index.js";
import { InputError, PayloadTooLargeError, RouteNotFoundError, SandboxError, ZerocellError } from "../errors.js";
import type { EngineRequest } from "../runtime/engine.js";
import { log } from "../log.js";

export interface GatewayConfig {
  dataDir: string;
  /** 0 picks a free port. */
  httpPort: number;
  httpsPort: number;
  adminPort: number;
  /** Address for the app listeners. */
  host: string;
  /** Address for the admin API; loopback unless you mean it. */
  adminHost: string;
  pool?: Partial<PoolLimits>;
  /** Node's limits for slow or oversized requests. */
  http?: Partial<HttpLimits>;
  /** Usage records: on by default, flushed every 100 ms. */
  metering?: { enabled: boolean; flushIntervalMs: number };
}

export interface HttpLimits {
  /** Time to receive the request headers, ms (slow clients). */
  headersTimeoutMs: number;
  /** Time to receive the whole request, ms. */
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  /** Request header bytes (larger: 431). */
  maxHeaderBytes: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 60_000,
  keepAliveTimeoutMs: 5_000,
  maxHeaderBytes: 16 * 1024,
};

const HOP_BY_HOP = new Set(["connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection", "te", "trailer", "content-length", "x-powered-by"]);

export interface RunningServer {
  urls: { http: string; https: string; admin: string };
  platform: Platform;
  /** Stops listening, lets in-flight requests finish, stops every sandbox. */
  close(): Promise<void>;
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
  readonly keyQueue = new KeyQueue(64);
  readonly #db: OpenedDb;
  readonly #isolation: HostIsolation;
  #table: RouteTable = new RouteTable([]);
  readonly #manifests = new Map<string, Manifest>();
  readonly #images: LRUCache<string, Buffer>;

  constructor(init: { db: OpenedDb; store: Store; blobs: BlobStore; keysDir: string; certs: CertificateStore; isolation: HostIsolation; pool?: Partial<PoolLimits>; stripe?: StripeSyncOptions; metering?: { enabled: boolean; flushIntervalMs: number } }) {
    this.#db = init.db;
    this.#isolation = init.isolation;
    this.store = init.store;
    this.blobs = init.blobs;
    this.certs = init.certs;
    this.#images = new LRUCache<string, Buffer>({ maxSize: 128 * 1024 * 1024, sizeCalculation: (b) => Math.max(1, b.length) });
    this.usage = new UsageRecorder(init.db, { flushIntervalMs: init.metering?.flushIntervalMs ?? 100, enabled: init.metering?.enabled ?? true });
    this.snapshots = new SnapshotStore(init.db, init.blobs, 256 * 1024 * 1024);
    this.keys = new KeyStore(init.keysDir, init.db);
    this.billing = new Billing(init.db);
    this.stripe = init.stripe === undefined ? undefined : new StripeSync(this.billing, init.stripe);
    this.pool = new Pool({
      isolation: init.isolation,
      ...(init.pool === undefined ? {} : { limits: init.pool }),
      load: (id) => this.#loadDeployment(id),
      onLog: (deploymentId, line) => log.info("app log", { deploymentId, line }),
      onWarmup: (deploymentId, u) => this.#recordWarmup(deploymentId, u),
    });
  }

  /**
   * A host start that ran the app's warm-up (tenant code) is billed like a request of mode
   * "warmup": its wall time from the first warm-up request to ready (or to the kill at its limit).
   */
  #recordWarmup(deploymentId: string, u: WarmupUsage): void {
    const d = this.store.getDeployment(deploymentId);
    if (d === undefined) return;
    const manifest = this.#manifests.get(deploymentId);
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
      memoryMb: manifest?.limits.memoryMb ?? 0,
      status: u.status,
      bytesIn: 0,
      bytesOut: 0,
      mode: "warmup",
    });
  }

  get table(): RouteTable {
    return this.#table;
  }

  #loadDeployment(id: string): DeploymentSource {
    const d = this.store.getDeployment(id);
    if (d === undefined) throw new SandboxError("deployment_missing", 500, `pool: deployment ${id} not found`);
    let image = this.#images.get(d.bundleSha256);
    if (image === undefined) {
      image = encodeImage(readBundleArchive(this.blobs.get(d.bundleSha256)));
      this.#images.set(d.bundleSha256, image);
    }
    const manifest = d.manifest as Manifest;
    const build = engineBuildId(manifest);
    return {
      deploymentId: d.id,
      appName: d.app,
      manifest,
      image,
      loadSnapshot: () => this.snapshots.load(d.id, build),
      hasSnapshot: () => this.snapshots.has(d.id, build),
      saveSnapshot: (img) => {
        if (img.engineBuild !== build) {
          log.warn("snapshot refused", { deploymentId: d.id, got: img.engineBuild.slice(0, 256), want: build });
          return;
        }
        this.snapshots.save(d.id, img).then(
          (r) => log.info("snapshot stored", { deploymentId: d.id, app: d.app, bytes: r.bytes, memoryBytes: img.memory.length, sha256: r.sha256 }),
          (e: unknown) => log.error("snapshot store failed", { deploymentId: d.id, err: (e as Error).message }),
        );
      },
    };
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
      if (!this.#manifests.has(e.target.deploymentId)) {
        const d = this.store.getDeployment(e.target.deploymentId);
        if (d !== undefined) this.#manifests.set(d.id, d.manifest as Manifest);
      }
    }
    this.#table = new RouteTable(entries);
    for (const id of this.#manifests.keys()) if (!active.has(id)) this.#manifests.delete(id);
    this.pool.retireExcept(active);
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

  /** App requests being served now (a shutdown waits for them before it stops the pool). */
  activeRequests = 0;

  /** Serves one app request. */
  async handleApp(req: Request, incoming: http.IncomingMessage, isHttps: boolean, localPort: number): Promise<Response> {
    this.activeRequests++;
    try {
      return await this.#handleApp(req, incoming, isHttps, localPort);
    } finally {
      this.activeRequests--;
    }
  }

  async #handleApp(req: Request, incoming: http.IncomingMessage, isHttps: boolean, localPort: number): Promise<Response> {
    const requestId = randomUUID();
    const t0 = performance.now();
    const arrivedAt = performance.timeOrigin + t0;
    const startedAt = Date.now();
    // The URL's authority is the Host header for origin-form requests and the target's for
    // absolute-form ones (RFC 9112 §3.2.2: the target wins).
    const url = new URL(req.url);
    const host = normalizeHost(url.host);
    let match: RouteMatch | undefined;
    let status = 500;
    let bytesIn = 0;
    let bytesOut = 0;
    let wallUs = 0;
    let usage: { cpuUs: number | null; instructions: number | null } | undefined;
    try {
      // 1. route
      match = this.#table.match(host, url.pathname);
      if (match === undefined) throw new RouteNotFoundError(host, url.pathname);
      const target = match.route.target;
      const manifest = this.#manifests.get(target.deploymentId);
      if (manifest === undefined) throw new RouteNotFoundError(host, url.pathname);
      // 2. read the body under the app's limit
      const body = await readBody(req, incoming, manifest.limits.maxBodyBytes);
      bytesIn = body.length;
      const headers: Array<[string, string]> = [];
      for (let i = 0; i < incoming.rawHeaders.length; i += 2) headers.push([incoming.rawHeaders[i]!.toLowerCase(), incoming.rawHeaders[i + 1]!]);
      const engineReq: EngineRequest = {
        method: req.method,
        url: url.pathname + url.search,
        headers,
        body,
        remoteAddr: incoming.socket.remoteAddress ?? "",
        remotePort: incoming.socket.remotePort ?? 0,
        https: isHttps,
        serverName: host,
        serverPort: localPort,
        scriptName: match.matchedPrefix,
        params: match.params,
      };
      // 3. run in the pool (keyed routes: one request per key at a time, with the key's /data)
      const sandboxStart = performance.now();
      const keyParam = match.route.key;
      const res =
        keyParam === undefined
          ? await this.pool.run(target.deploymentId, match.route.mode, engineReq, manifest.limits.timeoutMs)
          : await this.#runKeyed(target, match.route.mode, decodeKey(match.params[keyParam] ?? ""), engineReq, manifest);
      wallUs = Math.round((performance.now() - sandboxStart) * 1000);
      usage = { cpuUs: res.cpuUs ?? null, instructions: res.usage?.instructions ?? null };
      // 4. answer
      // A plain object (repeated headers as arrays) goes straight to writeHead: no Headers object.
      const out: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>;
      for (const [rawName, value] of res.headers) {
        const name = rawName.toLowerCase();
        if (HOP_BY_HOP.has(name) || name.startsWith("x-zerocell-") || name === "x-request-id" || name === "server-timing") continue;
        try {
          http.validateHeaderName(name);
          http.validateHeaderValue(name, value);
        } catch {
          throw new SandboxError("bad_response", 502, `sandbox: the app sent an invalid header "${rawName.slice(0, 64)}"`);
        }
        const prev = out[name];
        out[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
      }
      const totalMs = performance.now() - t0;
      out["x-request-id"] = requestId;
      out["x-zerocell-instance"] = `${match.route.mode}; ${res.reused ? "reused" : "new"}`;
      // ready = request arrival → guest code starting in its sandbox (clamped: two processes' clocks).
      const readyMs = res.startedAt === undefined ? undefined : Math.max(0, res.startedAt - arrivedAt);
      out["server-timing"] = `${readyMs === undefined ? "" : `ready;dur=${readyMs.toFixed(3)}, `}acquire;dur=${res.acquireMs.toFixed(3)}, run;dur=${res.runMs.toFixed(3)}, total;dur=${totalMs.toFixed(3)}`;
      status = res.status;
      if (status < 200 || status > 599) throw new SandboxError("bad_response", 502, `sandbox: the app answered with status ${status}`);
      bytesOut = res.body.byteLength;
      const noBody = req.method === "HEAD" || status === 204 || status === 304;
      if (!noBody) return new Response(res.body as Uint8Array<ArrayBuffer>, { status, headers: out as unknown as HeadersInit });
      // Without a body the response is built the slow way (a Headers object): keep repeats apart.
      const bodyless = new Headers();
      for (const [name, v] of Object.entries(out)) for (const one of Array.isArray(v) ? v : [v]) bodyless.append(name, one);
      return new Response(null, { status, headers: bodyless });
    } catch (e) {
      const r = errorToResponse(e, requestId, "page");
      status = r.status;
      return r;
    } finally {
      const ms = performance.now() - t0;
      const target = match?.route.target;
      log.info("request", { id: requestId, host, path: url.pathname, app: target?.appName ?? null, deployment: target?.deploymentId ?? null, status, ms: Math.round(ms * 1000) / 1000 });
      if (target !== undefined && wallUs > 0) {
        const manifest = this.#manifests.get(target.deploymentId);
        this.usage.record({
          requestId,
          accountId: target.accountId,
          appId: target.appId,
          deploymentId: target.deploymentId,
          routeKey: match?.route.key === undefined ? null : (match.params[match.route.key] ?? null),
          startedAt,
          wallUs,
          cpuUs: usage?.cpuUs ?? null,
          instructions: usage?.instructions ?? null,
          memoryMb: manifest?.limits.memoryMb ?? 0,
          status,
          bytesIn,
          bytesOut,
          mode: match!.route.mode,
        });
      }
    }
  }

  /**
   * A keyed request: waits its turn for the key, runs with the key's committed /data, and commits
   * the new /data durably (fsync) before the response leaves when the request succeeded
   * (status < 500). A failure (5xx, timeout, crash) commits nothing.
   */
  async #runKeyed(target: RouteEntry["target"], mode: RouteMode, key: string, req: EngineRequest, manifest: Manifest) {
    return this.keyQueue.run(`${target.appId}\u0000${key}`, () => `key "${key.slice(0, 80)}" of ${target.appName}`, async () => {
      const data = (await this.keys.load(target.appId, key)) ?? EMPTY_DATA;
      const res = await this.pool.run(target.deploymentId, mode, { ...req, data }, manifest.limits.timeoutMs, mode === "daemon" ? key : undefined);
      if (res.data !== undefined && res.status < 500) {
        const limit = manifest.limits.dataMb * 1024 * 1024;
        if (res.data.byteLength > limit) {
          throw new ZerocellError("key_data_too_large", 507, `keys: /data of key "${key.slice(0, 80)}" would be ${res.data.byteLength} bytes, over the limit of ${limit} bytes (limits.data_mb); nothing was saved`);
        }
        // Untrusted bytes from the host: only store what decodes as an image.
        decodeImage(Buffer.from(res.data.buffer, res.data.byteOffset, res.data.byteLength));
        await this.keys.commit(target.appId, key, res.data);
      }
      return res;
    });
  }

  async close(): Promise<void> {
    await this.pool.close();
    closeHostIsolation(this.#isolation);
    this.usage.close();
    this.#db.close();
  }
}

const EMPTY_DATA = encodeImage({ entries: [], totalBytes: 0 });
const EMPTY_BODY = Buffer.alloc(0);
/** Longest a shutdown waits for open connections' requests before cutting them. */
const DRAIN_TIMEOUT_MS = 30_000;
/** How long a shutdown lets connections opened just before it send their request. */
const DRAIN_GRACE_MS = 500;

/** The key of a keyed route: the path parameter, percent-decoded, bounded. */
function decodeKey(raw: string): string {
  let key: string;
  try {
    key = decodeURIComponent(raw);
  } catch {
    throw new InputError("router: the key in the path is not valid percent-encoding", { code: "bad_key" });
  }
  if (key.length === 0 || key.length > MAX_KEY_LENGTH) throw new InputError(`router: the key must be 1 to ${MAX_KEY_LENGTH} characters`, { code: "bad_key" });
  return key;
}

/**
 * The request body under the app's limit. A request that declares no body (no Content-Length or
 * 0, no Transfer-Encoding: most GETs) is answered from the Node request's headers without
 * building the Web Request and its stream.
 */
async function readBody(req: Request, incoming: http.IncomingMessage, limit: number): Promise<Buffer> {
  const declared = incoming.headers["content-length"];
  if (declared !== undefined && Number(declared) > limit) {
    throw new PayloadTooLargeError(`gateway: request body of ${declared} bytes exceeds the app's limit of ${limit} bytes`);
  }
  if ((declared === undefined || declared === "0") && incoming.headers["transfer-encoding"] === undefined) return EMPTY_BODY;
  if (req.body === null) return EMPTY_BODY;
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = req.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel().catch(() => {});
      throw new PayloadTooLargeError(`gateway: request body exceeds the app's limit of ${limit} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}

function writeFileAtomic(path: string, data: string, mode: number): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, data, { mode });
  chmodSync(tmp, mode);
  renameSync(tmp, path);
}

/** Returns the admin token, creating it (and DIR/admin-token, mode 0600) on first start. */
function ensureAdminToken(store: Store, dataDir: string): string {
  const file = join(dataDir, "admin-token");
  if (existsSync(file)) {
    const token = readFileSync(file, "utf8").trim();
    if (store.verifyToken(token)?.scopes.includes("admin")) return token;
  }
  const { token } = store.createToken(null, ["admin"]);
  writeFileAtomic(file, token + "\n", 0o600);
  return token;
}

function listen(server: http.Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function applyLimits(server: http.Server, limits: HttpLimits): void {
  server.headersTimeout = limits.headersTimeoutMs;
  server.requestTimeout = limits.requestTimeoutMs;
  server.keepAliveTimeout = limits.keepAliveTimeoutMs;
  server.maxHeadersCount = 200;
}

function urlHost(host: string): string {
  if (host === "0.0.0.0" || host === "::") return "127.0.0.1";
  return host.includes(":") ? `[${host}]` : host;
}

/** Starts the platform: database, certificates, pool, and the three listeners. */
export async function startGateway(config: GatewayConfig): Promise<RunningServer> {
  const dataDir = config.dataDir;
  for (const d of ["", "blobs", "certs", "run"]) mkdirSync(join(dataDir, d), { recursive: true });
  const db = openDb(join(dataDir, "zerocell.db"));
  const store = new Store(db);
  store.ensureDefaultAccount();
  const claimed = store.backfillHostClaims();
  if (claimed > 0) log.info("host claims recorded for routes of an older data dir", { hosts: claimed });
  ensureAdminToken(store, dataDir);
  const blobs = new BlobStore(join(dataDir, "blobs"));
  let platform: Platform | undefined;
  const certs = await CertificateStore.open({
    dir: join(dataDir, "certs"),
    mayMint: (name) => platform?.mayMint(name) ?? false,
    onWarning: (message) => log.warn("tls", { message }),
  });
  const stripeKey = process.env.STRIPE_API_KEY;
  const isolation = detectHostIsolation();
  if (isolation.missing.length > 0) log.warn("sandbox hosts start without some OS layers", { missing: isolation.missing });
  platform = new Platform({
    db,
    store,
    blobs,
    keysDir: join(dataDir, "keys"),
    certs,
    ...(stripeKey === undefined || stripeKey === "" ? {} : { stripe: { apiKey: stripeKey, ...(process.env.STRIPE_API_BASE === undefined ? {} : { apiBase: process.env.STRIPE_API_BASE }) } }), isolation, ...(config.pool === undefined ? {} : { pool: config.pool }), ...(config.metering === undefined ? {} : { metering: config.metering }) });
  const p = platform;
  const limits = { ...DEFAULT_HTTP_LIMITS, ...config.http };

  const appFor = (isHttps: boolean) => {
    const app = new Hono<{ Bindings: HttpBindings }>();
    app.all("*", (c) => p.handleApp(c.req.raw, c.env.incoming, isHttps, (c.env.incoming.socket.localPort ?? 0)));
    return app;
  };
  // Node checks headersTimeout/requestTimeout only every connectionsCheckingInterval (30 s by
  // default), which would let a slow client hold a connection far past the limit.
  const serverOptions = {
    maxHeaderSize: limits.maxHeaderBytes,
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(limits.headersTimeoutMs / 2))),
  };
  // Requests that cannot even become a Request (no Host on HTTP/1.0, an unparsable Host) still
  // get the platform's own error page, with a request id.
  const listenerOptions = {
    hostname: "no-host.invalid",
    errorHandler: (e: unknown) => errorToResponse(new InputError(`gateway: malformed request (${(e as Error)?.message ?? "unknown"})`), randomUUID(), "page"),
  };
  const httpServer = http.createServer(serverOptions, getRequestListener(appFor(false).fetch, listenerOptions));
  const httpsServer = https.createServer(
    { ...serverOptions, ...certs.defaultCredentials(), SNICallback: certs.sniCallback },
    getRequestListener(appFor(true).fetch, listenerOptions),
  );
  const adminServer = http.createServer(serverOptions, getRequestListener(createAdminApi(p).fetch, listenerOptions));
  for (const s of [httpServer, httpsServer, adminServer]) applyLimits(s, limits);

  p.reloadRoutes();
  // Invoices whose Stripe sync a crash or an outage interrupted continue now.
  void p.stripe?.resumeAll();
  const httpPort = await listen(httpServer, config.httpPort, config.host);
  const httpsPort = await listen(httpsServer, config.httpsPort, config.host);
  const adminPort = await listen(adminServer, config.adminPort, config.adminHost);
  const urls = {
    http: `http://${urlHost(config.host)}:${httpPort}`,
    https: `https://${urlHost(config.host)}:${httpsPort}`,
    admin: `http://${urlHost(config.adminHost)}:${adminPort}`,
  };
  writeFileAtomic(join(dataDir, "run", "server.json"), JSON.stringify({ pid: process.pid, ...urls }, null, 2) + "\n", 0o644);

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      // Drain: stop accepting connections; requests on connections already open (a TLS
      // handshake in progress, a keep-alive request just sent) are still served by the pool.
      // Connections are closed as they become idle; after DRAIN_TIMEOUT_MS the rest are cut.
      const servers = [httpServer, httpsServer, adminServer];
      const stopped = Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
      let done = false;
      void stopped.then(() => (done = true));
      const t0 = Date.now();
      for (;;) {
        for (const s of servers) s.closeIdleConnections();
        const elapsed = Date.now() - t0;
        // Done when every connection is gone, or when no app request is running and a client
        // that had just connected has had DRAIN_GRACE_MS to send its request, or at the limit.
        if (done || (p.activeRequests === 0 && elapsed >= DRAIN_GRACE_MS) || elapsed >= DRAIN_TIMEOUT_MS) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      for (const s of servers) s.closeAllConnections();
      await p.close();
      await stopped;
    })());
  return { urls, platform: p, close };
}
