/**
 * Gateway: the platform's front door. Serves apps over HTTP and HTTPS (SNI, per-host
 * certificates from a local CA or the user's), and the admin API on a separate listener
 * (loopback by default); builds the platform's services (src/platform) and hands app requests
 * to app-handler.ts. Only this part maps errors to HTTP statuses.
 * Must never: run guest code in this process, or die because a sandbox did.
 */
import { tuneGatewayMalloc } from "../malloc.js";
import { mkdirSync, writeFileSync, readFileSync, existsSync, renameSync, chmodSync } from "node:fs";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import type { AddressInfo } from "node:net";
import http from "node:http";
import https from "node:https";
import { Hono } from "hono";
import { getRequestListener, type HttpBindings } from "@hono/node-server";
import { Store, openDb, BlobStore } from "../store/index.js";
import { detectHostIsolation, type PoolLimits } from "../pool/index.js";
import type { ObjectLimits } from "../objects/index.js";
import { Platform } from "../platform/index.js";
import type { ObjectBackendChoice } from "../objects/index.js";
import { CertificateStore } from "./tls.js";
import { errorToResponse } from "./respond.js";
import { createAdminApi } from "./admin.js";
import { AppHandler } from "./app-handler.js";
import { createS3Handler } from "./s3.js";
import { InputError } from "../errors.js";
import { checkHostPattern, normalizeHost } from "../router/index.js";
import { DEFAULT_BASE_DOMAIN } from "../router/hosts.js";
import { log } from "../log.js";
import { jobsOf } from "../platform/jobs.js";

export { Platform } from "../platform/index.js";

export interface GatewayConfig {
  dataDir: string;
  /** 0 picks a free port. */
  httpPort: number;
  httpsPort: number;
  adminPort: number;
  /** The S3 API's HTTPS port (0 picks a free port; default 0). */
  s3Port?: number;
  /** Address for the app listeners. */
  host: string;
  /** Address for the admin API; loopback unless you mean it. */
  adminHost: string;
  pool?: Partial<PoolLimits>;
  /** Object store limits (default per-account quotas: `--object-quota-bytes`, `--object-quota-objects`). */
  objectLimits?: Partial<ObjectLimits>;
  /** Node's limits for slow or oversized requests. */
  http?: Partial<HttpLimits>;
  /** Usage records: on by default, flushed every 100 ms. */
  /** allowClosingOpenPeriods: `invoices close` may close the current period (tests, demos; never by default). */
  metering?: { enabled: boolean; flushIntervalMs: number; allowClosingOpenPeriods?: boolean };
  /** The platform's base domain: apps get APP.ACCOUNT.BASE (default "localhost"). */
  baseDomain?: string;
  /** ACME for `domains add`: directory URL, an extra CA file (PEM) to trust for it, renewal check period (ms). */
  acme?: { directoryUrl?: string; caFile?: string; renewCheckMs?: number };
  /** Where objects live (default: local disk under DIR/objects). */
  objects?: ObjectBackendChoice;
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

export interface RunningServer {
  urls: { http: string; https: string; admin: string; s3: string };
  platform: Platform;
  /** Stops listening, lets in-flight requests finish, stops every sandbox. */
  close(): Promise<void>;
}


/** Longest a shutdown waits for open connections' requests before cutting them. */
const DRAIN_TIMEOUT_MS = 30_000;
/** How long a shutdown lets connections opened just before it send their request. */
const DRAIN_GRACE_MS = 500;

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

/** The key authorization for an HTTP-01 token of a running order for this request's host, or the app's response. */
async function acmeChallenge(p: Platform, req: Request, token: string, next: () => Promise<void>): Promise<Response | void> {
  const answer = p.domains.challengeResponse(normalizeHost(new URL(req.url).host), token);
  if (answer === undefined) return next();
  return new Response(answer, { headers: { "content-type": "application/octet-stream" } });
}

function urlHost(host: string): string {
  if (host === "0.0.0.0" || host === "::") return "127.0.0.1";
  return host.includes(":") ? `[${host}]` : host;
}

/** Starts the platform: database, certificates, pool, and the three listeners. */
export async function startGateway(config: GatewayConfig): Promise<RunningServer> {
  tuneGatewayMalloc();
  const dataDir = config.dataDir;
  for (const d of ["", "blobs", "certs", "run"]) mkdirSync(join(dataDir, d), { recursive: true });
  const baseDomain = (config.baseDomain ?? DEFAULT_BASE_DOMAIN).toLowerCase();
  const badBase = baseDomain.startsWith("*") ? "must be a domain name, not a wildcard" : checkHostPattern(baseDomain);
  if (badBase !== undefined) throw new InputError(`serve: --base-domain "${baseDomain.slice(0, 80)}": ${badBase}`);
  const db = openDb(join(dataDir, "zerocell.db"));
  const store = new Store(db, { baseDomain });
  store.ensureDefaultAccount();
  const claimed = store.backfillHostClaims();
  if (claimed > 0) log.info("host claims recorded for routes of an older data dir", { hosts: claimed });
  const interrupted = store.failInterruptedDeployments();
  if (interrupted > 0) log.warn("deployments whose health check a previous run did not finish are failed", { deployments: interrupted });
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
    objectsDir: join(dataDir, "objects"),
    ...(config.objects === undefined ? {} : { objectsBackend: config.objects }),
    accessKeyFile: join(dataDir, "access-keys.key"),
    secretsKeyFile: join(dataDir, "secrets.key"),
    certs,
    acme: {
      accountKeyFile: join(dataDir, "acme-account.key"),
      ...(config.acme?.directoryUrl === undefined ? {} : { directoryUrl: config.acme.directoryUrl }),
      ...(config.acme?.caFile === undefined ? {} : { caPem: readFileSync(config.acme.caFile, "utf8") }),
    },
    ...(config.acme?.renewCheckMs === undefined ? {} : { domainLimits: { renewCheckMs: config.acme.renewCheckMs } }),
    ...(stripeKey === undefined || stripeKey === "" ? {} : { stripe: { apiKey: stripeKey, ...(process.env.STRIPE_API_BASE === undefined ? {} : { apiBase: process.env.STRIPE_API_BASE }) } }), isolation, ...(config.pool === undefined ? {} : { pool: config.pool }), ...(config.metering === undefined ? {} : { metering: config.metering }), ...(config.objectLimits === undefined ? {} : { objectLimits: config.objectLimits }) });
  const p = platform;
  const apps = new AppHandler(p);
  const limits = { ...DEFAULT_HTTP_LIMITS, ...config.http };

  const appFor = (isHttps: boolean) => {
    const app = new Hono<{ Bindings: HttpBindings }>();
    // ACME HTTP-01 answers of running `domains add` orders, on the HTTP listener only (RFC 8555
    // §8.3); any other token falls through to the app routed there.
    if (!isHttps) app.get("/.well-known/acme-challenge/:token", (c, next) => acmeChallenge(p, c.req.raw, c.req.param("token"), next));
    app.all("*", (c) => apps.handle(c.req.raw, c.env.incoming, isHttps, (c.env.incoming.socket.localPort ?? 0)));
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
  let httpsUrl: string | undefined;
  const adminServer = http.createServer(serverOptions, getRequestListener(createAdminApi(p, { httpsUrl: () => httpsUrl }).fetch, listenerOptions));
  // The S3 API: large uploads take longer than an app request; a stalled client is cut by the idle timeout.
  const s3Server = https.createServer({ ...serverOptions, ...certs.defaultCredentials(), SNICallback: certs.sniCallback }, createS3Handler(p));
  for (const s of [httpServer, httpsServer, adminServer, s3Server]) applyLimits(s, limits);
  s3Server.requestTimeout = 0;
  s3Server.timeout = limits.requestTimeoutMs;

  p.reloadRoutes();
  // Invoices whose Stripe sync a crash or an outage interrupted continue now.
  void p.stripe?.resumeAll();
  // Jobs a previous process left running continue with their pending items.
  jobsOf(p).resumeAll();
  const httpPort = await listen(httpServer, config.httpPort, config.host);
  const httpsPort = await listen(httpsServer, config.httpsPort, config.host);
  const adminPort = await listen(adminServer, config.adminPort, config.adminHost);
  const s3Port = await listen(s3Server, config.s3Port ?? 0, config.host);
  const urls = {
    http: `http://${urlHost(config.host)}:${httpPort}`,
    https: `https://${urlHost(config.host)}:${httpsPort}`,
    admin: `http://${urlHost(config.adminHost)}:${adminPort}`,
    s3: `https://${urlHost(config.host)}:${s3Port}`,
  };
  httpsUrl = urls.https;
  writeFileAtomic(join(dataDir, "run", "server.json"), JSON.stringify({ pid: process.pid, ...urls }, null, 2) + "\n", 0o644);

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      // Drain: stop accepting connections; requests on connections already open (a TLS
      // handshake in progress, a keep-alive request just sent) are still served by the pool.
      // Connections are closed as they become idle; after DRAIN_TIMEOUT_MS the rest are cut.
      const servers = [httpServer, httpsServer, adminServer, s3Server];
      const stopped = Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
      let done = false;
      void stopped.then(() => (done = true));
      const t0 = Date.now();
      for (;;) {
        for (const s of servers) s.closeIdleConnections();
        const elapsed = Date.now() - t0;
        // Done when every connection is gone, or when no app request is running and a client
        // that had just connected has had DRAIN_GRACE_MS to send its request, or at the limit.
        if (done || (apps.activeRequests === 0 && elapsed >= DRAIN_GRACE_MS) || elapsed >= DRAIN_TIMEOUT_MS) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      for (const s of servers) s.closeAllConnections();
      await jobsOf(p).stop();
      await p.close();
      await stopped;
    })());
  return { urls, platform: p, close };
}
