/**
 * Domains an account proves it controls (`zerocell domains add HOST`): an ACME order (RFC 8555,
 * through the `acme-client` library) for HOST, its HTTP-01 challenge answered by the gateway's
 * HTTP listener (challengeResponse), and on success HOST is the account's (a host_claims row,
 * source "acme") and the issued certificate is served for SNI. A background check renews every
 * certificate a third of its lifetime before it expires.
 * Must never: give a name to an account that did not complete a challenge for it (or that
 * another account holds, or a name above it); answer a challenge token on any host but the one
 * its order is for; tell a tenant whether another account holds a name.
 */
import { generateKeyPairSync, randomUUID, X509Certificate } from "node:crypto";
import { existsSync, readFileSync, writeFileSync, chmodSync, renameSync } from "node:fs";
import https from "node:https";
import tls from "node:tls";
import * as acme from "acme-client";
import { and, eq, inArray } from "drizzle-orm";
import type { OpenedDb, Store } from "../store/index.js";
import { domains } from "../store/schema.js";
import type { CertificateStore } from "../gateway/tls.js";
import { checkHostPattern } from "../router/index.js";
import { ConflictError, InputError, NotFoundError, ZerocellError } from "../errors.js";
import { log } from "../log.js";

export interface AcmeConfig {
  /** The ACME directory URL (RFC 8555 §7.1.1), `serve --acme-directory`. Unset: `domains add` is refused. */
  directoryUrl?: string;
  /** Extra CA certificates (PEM) trusted for the directory's HTTPS (a test CA such as pebble's), `--acme-ca-file`. */
  caPem?: string;
  /** The ACME account's private key (PEM), created on first use, mode 0600 (DATA/acme-account.key). */
  accountKeyFile: string;
}

export interface DomainLimits {
  /** Domains one account may have, any status. */
  maxPerAccount: number;
  /** Orders one account may run at the same time. */
  maxPendingPerAccount: number;
  /** Orders the whole platform runs at the same time (each holds a challenge token in memory). */
  maxPending: number;
  /** Longest one order (account, challenge, finalize, download) may take, ms. */
  orderTimeoutMs: number;
  /** How often certificates are checked for renewal, ms (`serve --acme-renew-check-ms`). */
  renewCheckMs: number;
}

export const DEFAULT_DOMAIN_LIMITS: DomainLimits = {
  maxPerAccount: 100,
  maxPendingPerAccount: 3,
  maxPending: 64,
  orderTimeoutMs: 120_000,
  renewCheckMs: 3_600_000,
};

export interface DomainInfo {
  host: string;
  accountId: string;
  status: "pending" | "active" | "failed";
  error: string | null;
  certNotAfter: string | null;
  renewAt: string | null;
  createdAt: string;
  updatedAt: string;
}

/** The longest error kept with a domain, characters. */
const MAX_ERROR_CHARS = 2000;
/** An ACME HTTP-01 token: base64url, 128 bits or more (RFC 8555 §8.3); bounded here. */
const TOKEN = /^[A-Za-z0-9_-]{16,256}$/;

export class AcmeNotConfiguredError extends ZerocellError {
  constructor() {
    super("acme_not_configured", 409, "domains: this server has no ACME directory (start it with serve --acme-directory URL)");
  }
}

export class Domains {
  readonly #db: OpenedDb;
  readonly #store: Store;
  readonly #certs: CertificateStore;
  readonly #config: AcmeConfig | undefined;
  readonly #limits: DomainLimits;
  /** HTTP-01 answers of running orders: token → the host it is for and its key authorization. */
  readonly #challenges = new Map<string, { host: string; keyAuthorization: string }>();
  /** Orders running, by host (one per host at a time, whichever account asked). */
  readonly #orders = new Map<string, Promise<void>>();
  #client: acme.Client | undefined;
  #timer: NodeJS.Timeout | undefined;
  #renewing = false;

  constructor(init: { db: OpenedDb; store: Store; certs: CertificateStore; acme?: AcmeConfig; limits?: Partial<DomainLimits> }) {
    this.#db = init.db;
    this.#store = init.store;
    this.#certs = init.certs;
    this.#config = init.acme?.directoryUrl === undefined ? undefined : init.acme;
    this.#limits = { ...DEFAULT_DOMAIN_LIMITS, ...init.limits };
    // Orders a previous process did not finish: nobody waits for them, and they would count
    // against the account's running orders forever.
    this.#db.db.update(domains).set({ status: "failed", error: "domains: the server stopped while the order ran; add it again", updatedAt: Date.now() }).where(eq(domains.status, "pending")).run();
    if (this.#config !== undefined) {
      this.#timer = setInterval(() => void this.renewDue(), this.#limits.renewCheckMs);
      this.#timer.unref();
    }
  }

  /** The HTTP-01 key authorization for `token` if an order for `host` waits for it, else undefined. */
  challengeResponse(host: string, token: string): string | undefined {
    if (!TOKEN.test(token)) return undefined;
    const c = this.#challenges.get(token);
    return c !== undefined && c.host === host ? c.keyAuthorization : undefined;
  }

  list(accountId?: string): DomainInfo[] {
    const q = this.#db.db.select().from(domains);
    const rows = (accountId === undefined ? q : q.where(eq(domains.accountId, accountId))).orderBy(domains.host).all();
    return rows.map((r) => toInfo(r));
  }

  /**
   * Starts an ACME order for `rawHost` on behalf of `accountId` and waits for it (bounded by
   * orderTimeoutMs). On success the host is the account's and its certificate is served.
   */
  async add(accountId: string, rawHost: string): Promise<DomainInfo> {
    const host = rawHost.toLowerCase();
    if (host.startsWith("*")) throw new InputError("domains: wildcard domains need DNS-01, which this server does not do; add each name (wildcard routes inside a verified domain need no certificate of their own to route)", { code: "bad_host" });
    const bad = checkHostPattern(host);
    if (bad !== undefined) throw new InputError(`domains: "${host.slice(0, 80)}": ${bad}`, { code: "bad_host" });
    // One answer for a public suffix, a name under the base domain and a name another account holds.
    const why = this.#store.domainUnavailable(host, accountId);
    if (why !== undefined) throw new ConflictError("domain_unavailable", `domains: ${why}`, { host });
    if (this.#config === undefined) throw new AcmeNotConfiguredError();
    const mine = this.list(accountId);
    const existing = mine.find((d) => d.host === host);
    if (existing?.status === "active") return existing;
    if (existing === undefined && mine.length >= this.#limits.maxPerAccount) throw new ConflictError("domain_limit", `domains: this account has ${mine.length} domains (limit ${this.#limits.maxPerAccount}); remove one first`);
    if (mine.filter((d) => d.status === "pending").length >= this.#limits.maxPendingPerAccount || this.#orders.size >= this.#limits.maxPending) {
      throw new ZerocellError("domain_orders_busy", 429, `domains: too many orders running (at most ${this.#limits.maxPendingPerAccount} per account, ${this.#limits.maxPending} in all); try again when one finished`);
    }
    // Another order for this host (by this or another account) is running: the same answer as a
    // name that is not available, so a tenant cannot watch other accounts' orders.
    if (this.#orders.has(host)) throw new ConflictError("domain_unavailable", `domains: ${this.#store.domainRefusal(host)}`, { host });
    const now = Date.now();
    if (existing === undefined) {
      this.#db.db.insert(domains).values({ id: `dom_${randomUUID().replace(/-/g, "").slice(0, 20)}`, accountId, host, status: "pending", createdAt: now, updatedAt: now }).run();
    } else {
      this.#setRow(accountId, host, { status: "pending", error: null });
    }
    try {
      await this.#order(accountId, host);
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      this.#setRow(accountId, host, { status: "failed", error: message.slice(0, MAX_ERROR_CHARS) });
      log.warn("domain order failed", { host, account: accountId, error: message.slice(0, 500) });
      if (e instanceof ZerocellError) throw e;
      throw new ZerocellError("domain_order_failed", 502, `domains: the ACME order for "${host}" failed: ${message.slice(0, 500)}`, { cause: e });
    }
    return this.list(accountId).find((d) => d.host === host)!;
  }

  /** Removes a domain: the account no longer holds it and its certificate is no longer served. */
  async remove(accountId: string, rawHost: string): Promise<void> {
    const host = rawHost.toLowerCase();
    const row = this.#db.db.select().from(domains).where(and(eq(domains.accountId, accountId), eq(domains.host, host))).get();
    // The same 404 whether another account has it or nobody does.
    if (row === undefined) throw new NotFoundError("domain_not_found", `domains: this account has no domain "${host.slice(0, 253)}"`);
    if (this.#orders.has(host) && row.status === "pending") throw new ConflictError("domain_order_running", `domains: the order for "${host}" is still running; remove it when it finished`);
    this.#store.releaseHost(host, accountId);
    this.#db.db.delete(domains).where(eq(domains.id, row.id)).run();
    if (row.status === "active" || row.certNotAfter !== null) await this.#certs.removeCertificate(host);
    log.info("domain removed", { host, account: accountId });
  }

  /** Orders new certificates for active domains whose renewal time has come (the background check). */
  async renewDue(now = Date.now()): Promise<number> {
    // One pass at a time: a slow pass must not start the orders of the next one twice.
    if (this.#config === undefined || this.#renewing) return 0;
    this.#renewing = true;
    try {
      return await this.#renewPass(now);
    } finally {
      this.#renewing = false;
    }
  }

  async #renewPass(now: number): Promise<number> {
    const due = this.#db.db.select().from(domains).where(inArray(domains.status, ["active"])).all()
      .filter((d) => d.renewAt !== null && d.renewAt <= now && !this.#orders.has(d.host));
    for (const d of due) {
      try {
        await this.#order(d.accountId, d.host);
        log.info("certificate renewed", { host: d.host });
      } catch (e) {
        // The old certificate keeps serving until it expires; the next check tries again.
        const message = e instanceof Error ? e.message : String(e);
        this.#setRow(d.accountId, d.host, { error: `renewal failed: ${message}`.slice(0, MAX_ERROR_CHARS) });
        log.warn("certificate renewal failed", { host: d.host, error: message.slice(0, 500) });
      }
    }
    return due.length;
  }

  close(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
  }

  async #order(accountId: string, host: string): Promise<void> {
    let done!: () => void;
    const slot = new Promise<void>((r) => (done = r));
    this.#orders.set(host, slot);
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new ZerocellError("domain_order_timeout", 504, `domains: the ACME order for "${host}" took longer than ${this.#limits.orderTimeoutMs} ms`)), this.#limits.orderTimeoutMs);
      });
      const { cert, keyPem } = await Promise.race([this.#issue(host), timeout]);
      // 3. the name is the account's (checked again: another account may have got it meanwhile)
      this.#store.grantVerifiedHost(host, accountId);
      // 4. serve the certificate for SNI from now on
      await this.#certs.installCertificate(host, cert, keyPem);
      const leaf = new X509Certificate(cert);
      const notBefore = Date.parse(leaf.validFrom);
      const notAfter = Date.parse(leaf.validTo);
      const renewAt = notAfter - Math.floor((notAfter - notBefore) / 3);
      this.#setRow(accountId, host, { status: "active", error: null, certNotAfter: notAfter, renewAt });
      log.info("domain verified, certificate installed", { host, account: accountId, notAfter: new Date(notAfter).toISOString() });
    } finally {
      clearTimeout(timer);
      this.#orders.delete(host);
      done();
    }
  }

  /** 1. order, 2. answer HTTP-01 on the gateway's HTTP listener, finalize, download the chain. */
  async #issue(host: string): Promise<{ cert: string; keyPem: string }> {
    const client = this.#acmeClient();
    const key = await acme.crypto.createPrivateEcdsaKey();
    const [, csr] = await acme.crypto.createCsr({ altNames: [host] }, key);
    const tokens: string[] = [];
    try {
      const cert = await client.auto({
        csr,
        termsOfServiceAgreed: true,
        challengePriority: ["http-01"],
        // The CA checks the challenge itself; a self-check would need this host's port 80.
        skipChallengeVerification: true,
        challengeCreateFn: async (_authz, challenge, keyAuthorization) => {
          if (challenge.type !== "http-01" || !TOKEN.test(challenge.token)) throw new Error(`unexpected challenge ${challenge.type}`);
          tokens.push(challenge.token);
          this.#challenges.set(challenge.token, { host, keyAuthorization });
        },
        challengeRemoveFn: async (_authz, challenge) => {
          this.#challenges.delete(challenge.token);
        },
      });
      return { cert, keyPem: key.toString() };
    } finally {
      for (const t of tokens) this.#challenges.delete(t);
    }
  }

  #acmeClient(): acme.Client {
    if (this.#client !== undefined) return this.#client;
    const config = this.#config;
    if (config === undefined) throw new AcmeNotConfiguredError();
    if (config.caPem !== undefined) {
      // acme-client talks through its own axios instance: trust the extra CA there only.
      acme.axios.defaults.httpsAgent = new https.Agent({ ca: [...tls.rootCertificates, config.caPem] });
    }
    this.#client = new acme.Client({ directoryUrl: config.directoryUrl!, accountKey: readOrCreateAccountKey(config.accountKeyFile) });
    return this.#client;
  }

  #setRow(accountId: string, host: string, set: Partial<{ status: string; error: string | null; certNotAfter: number; renewAt: number }>): void {
    this.#db.db.update(domains).set({ ...set, updatedAt: Date.now() }).where(and(eq(domains.accountId, accountId), eq(domains.host, host))).run();
  }
}

function toInfo(r: typeof domains.$inferSelect): DomainInfo {
  const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
  return {
    host: r.host,
    accountId: r.accountId,
    status: r.status as DomainInfo["status"],
    error: r.error,
    certNotAfter: iso(r.certNotAfter),
    renewAt: iso(r.renewAt),
    createdAt: new Date(r.createdAt).toISOString(),
    updatedAt: new Date(r.updatedAt).toISOString(),
  };
}

/** The ACME account key (ECDSA P-256, PKCS#8 PEM), created once; the file is 0600. */
function readOrCreateAccountKey(file: string): string {
  if (existsSync(file)) return readFileSync(file, "utf8");
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const pem = privateKey.export({ format: "pem", type: "pkcs8" }).toString();
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, pem, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
  return pem;
}
