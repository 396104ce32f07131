/**
 * TLS material for the gateway: a local CA minted at first start, one leaf certificate per served
 * host name (minted on first use through SNI, signed by that CA), and certificates users install
 * for their own hosts. A user trusts one file, `<dir>/ca.pem`.
 *
 * The CA carries critical Name Constraints: it can only vouch for `localhost`, `*.localhost`,
 * 127.0.0.1 and ::1 (CA_PERMITTED_DNS, CA_PERMITTED_IPS). Clients enforce that, so trusting
 * ca.pem never lets this CA (or anyone holding ca-key.pem) impersonate another site; the store
 * mints only names inside those constraints. A CA without them (made by an older version) is
 * replaced at open, and the leaves it minted are deleted.
 *
 * Layout of `dir` (created if missing):
 *   ca.pem, ca-key.pem (0600)            the local CA (ECDSA P-256, 10 years, name-constrained)
 *   localhost.pem, localhost-key.pem     the default certificate (localhost, 127.0.0.1, ::1)
 *   hosts/<name>.pem, hosts/<name>.key   minted or user-installed (chain, key 0600);
 *                                        "*.example.com" is stored as "_wildcard.example.com",
 *                                        minted names too long for a file name as "_long.<sha256>"
 *
 * Lookup for an SNI name, first match wins: user certificate for the exact name, user wildcard
 * certificate for the parent domain, "localhost" → default, outside the CA's name constraints →
 * default, mayMint refuses → default, cached
 * minted context, minted certificate on disk, newly minted certificate. The SNI callback never
 * throws and falls back to the default context on any error.
 *
 * One process per directory: open() removes stale temporary files left by a crash.
 */
import {
  X509Certificate as NodeX509Certificate,
  createHash,
  createPrivateKey,
  randomBytes,
  webcrypto,
  type KeyObject,
} from "node:crypto";
import { chmod, mkdir, open as openFile, readFile, readdir, rename, stat, unlink } from "node:fs/promises";
import path from "node:path";
import tls from "node:tls";
import * as x509 from "@peculiar/x509";
import { LRUCache } from "lru-cache";
import { InputError, ZerocellError } from "../errors.js";

export interface CertificateStoreOptions {
  /** Directory for ca.pem, ca-key.pem (mode 0600) and hosts/<name>.pem/.key (keys 0600). Created if missing. */
  dir: string;
  /**
   * Decides whether a name from SNI may get a minted certificate (the gateway passes "is this host
   * routed, or localhost/*.localhost"). Receives the normalised (lower-case, validated) name, and
   * only names inside the CA's name constraints (isPermittedByLocalCa): others are never minted.
   * Names refused here (or if it throws) get the default (localhost) certificate.
   */
  mayMint: (hostname: string) => boolean;
  /** Max minted contexts kept in memory (lru-cache), default 1000. */
  maxCached?: number;
  /**
   * Extra options for every SecureContext this store creates (ciphers, minVersion, ecdhCurve...).
   * A context returned from SNICallback replaces the server's own, so server-level settings of
   * this kind do not apply to SNI connections unless they are given here too.
   */
  secureContextOptions?: Omit<tls.SecureContextOptions, "key" | "cert" | "ca" | "pfx" | "passphrase">;
  /** Receives non-fatal problems (corrupt files ignored, mint failures). Default: console.warn. */
  onWarning?: (message: string) => void;
}

export interface CertificateStoreStats {
  /** Certificates minted by this process (including the default one, if it had to be minted). */
  minted: number;
  /** Minted certificates loaded from hosts/ instead of minted again. */
  loadedFromDisk: number;
  /** SNI lookups answered from the in-memory cache. */
  cacheHits: number;
  /** SNI lookups answered with the default context (invalid name, refused, or an error). */
  defaulted: number;
  /** User-installed certificates currently served. */
  userCertificates: number;
}

const DAY_MS = 24 * 60 * 60 * 1000;
const LEAF_VALIDITY_MS = 397 * DAY_MS;
const CA_VALIDITY_YEARS = 10;
/** Minted certificates this close to expiry are minted again. */
const RENEW_BEFORE_MS = 30 * DAY_MS;
/** notBefore is set this far in the past to tolerate clients with a slow clock. */
const BACKDATE_MS = 60 * 60 * 1000;
/** Longest host name stored under its own name (file names are limited to 255 bytes). */
const MAX_PLAIN_FILE_NAME = 240;
/** installCertificate: upper bound for the certificate chain and key texts. */
const MAX_INPUT_CHARS = 256 * 1024;
const MAX_CHAIN_CERTS = 10;

const EC_KEY_ALG = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGN_ALG = { name: "ECDSA", hash: "SHA-256" } as const;
const subtle = webcrypto.subtle;
/** @peculiar/x509's `Crypto` is the DOM type; Node's webcrypto implements it. */
const cryptoImpl = webcrypto as unknown as Parameters<typeof x509.X509CertificateGenerator.create>[1];

/**
 * The DNS names the local CA may vouch for, as permitted subtrees of its Name Constraints
 * (RFC 5280 §4.2.1.10): "localhost" permits localhost and any name ending in ".localhost".
 * The platform serves no other domain of its own; names outside get the default certificate
 * (users install their own certificate for them with certs-add).
 */
export const CA_PERMITTED_DNS: readonly string[] = ["localhost"];
/** The IP addresses the local CA may vouch for (the default certificate's IP SANs), as address/mask bytes. */
const CA_PERMITTED_IPS: ReadonlyArray<{ address: number[]; mask: number[] }> = [
  { address: [127, 0, 0, 1], mask: [255, 255, 255, 255] },
  { address: [...Array<number>(15).fill(0), 1], mask: Array<number>(16).fill(255) },
];
const NAME_CONSTRAINTS_OID = "2.5.29.30";

const HOST_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;
const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/**
 * Normalises and validates a DNS host name: lower case, no trailing dot, labels [a-z0-9-] of 1–63
 * characters not starting or ending with "-", at most 253 characters, and not an IPv4 address
 * (last label all digits). Returns undefined for anything else. Never throws.
 */
export function normalizeServername(raw: unknown): string | undefined {
  if (typeof raw !== "string" || raw.length === 0 || raw.length > 254) return undefined;
  let name = raw.toLowerCase();
  if (name.endsWith(".")) name = name.slice(0, -1);
  if (name.length === 0 || name.length > 253) return undefined;
  const labels = name.split(".");
  for (const label of labels) {
    if (!HOST_LABEL.test(label)) return undefined;
  }
  if (/^[0-9]+$/.test(labels[labels.length - 1] ?? "")) return undefined;
  return name;
}

/** Whether the local CA's name constraints permit a (normalised) DNS name, i.e. whether it may be minted. */
export function isPermittedByLocalCa(name: string): boolean {
  return CA_PERMITTED_DNS.some((base) => name === base || name.endsWith(`.${base}`));
}

interface CaMaterial {
  /** Normalised PEM (what caPem returns and what is appended to every chain). */
  pem: string;
  cert: NodeX509Certificate;
  name: x509.Name;
  keyId: string;
  signingKey: webcrypto.CryptoKey;
  notAfter: number;
}

interface Served {
  ctx: tls.SecureContext;
  notAfter: number;
}

interface Minted {
  leafPem: string;
  keyPem: string;
  notAfter: number;
}

interface UserEntry extends Served {
  host: string;
}

/** A validated host argument of installCertificate. */
interface HostSpec {
  /** "blog.example.com" or "*.example.com". */
  host: string;
  /** The name without "*.". */
  base: string;
  wildcard: boolean;
}

export class CertificateStore {
  readonly #dir: string;
  readonly #hostsDir: string;
  readonly #mayMint: (hostname: string) => boolean;
  readonly #ca: CaMaterial;
  readonly #default: { key: string; cert: string };
  readonly #defaultCtx: tls.SecureContext;
  readonly #ctxOptions: CertificateStoreOptions["secureContextOptions"];
  readonly #warn: (message: string) => void;
  /** User certificates by exact name or "*.base". */
  readonly #user = new Map<string, UserEntry>();
  readonly #cache: LRUCache<string, Served>;
  readonly #inflight = new Map<string, Promise<Served>>();
  readonly #locks = new Map<string, Promise<void>>();
  readonly #stats = { minted: 0, loadedFromDisk: 0, cacheHits: 0, defaulted: 0 };

  private constructor(init: {
    dir: string;
    options: CertificateStoreOptions;
    ca: CaMaterial;
    defaultCreds: { key: string; cert: string };
    warn: (message: string) => void;
    mintedAtOpen: number;
  }) {
    this.#dir = init.dir;
    this.#hostsDir = path.join(init.dir, "hosts");
    this.#mayMint = init.options.mayMint;
    this.#ca = init.ca;
    this.#default = init.defaultCreds;
    this.#ctxOptions = init.options.secureContextOptions;
    this.#warn = init.warn;
    this.#defaultCtx = this.#context(init.defaultCreds.key, init.defaultCreds.cert);
    this.#cache = new LRUCache<string, Served>({ max: init.options.maxCached ?? 1000 });
    this.#stats.minted = init.mintedAtOpen;
  }

  static async open(options: CertificateStoreOptions): Promise<CertificateStore> {
    if (typeof options.dir !== "string" || options.dir === "") throw new TypeError("tls: options.dir is required");
    if (typeof options.mayMint !== "function") throw new TypeError("tls: options.mayMint must be a function");
    const maxCached = options.maxCached ?? 1000;
    if (!Number.isInteger(maxCached) || maxCached < 1) {
      throw new TypeError(`tls: options.maxCached must be a positive integer, got ${String(options.maxCached)}`);
    }
    const warn = options.onWarning ?? ((message: string) => console.warn(message));
    const dir = path.resolve(options.dir);
    const hostsDir = path.join(dir, "hosts");
    await mkdir(dir, { recursive: true });
    await mkdir(hostsDir, { recursive: true, mode: 0o700 });
    await removeStaleTempFiles(dir);
    await removeStaleTempFiles(hostsDir);

    const ca = await loadOrCreateCa(dir, warn);
    let mintedAtOpen = ca.created ? 1 : 0;
    const def = await loadOrMintDefault(dir, ca.material, options.secureContextOptions, warn);
    if (def.minted) mintedAtOpen++;

    const store = new CertificateStore({ dir, options, ca: ca.material, defaultCreds: def.creds, warn, mintedAtOpen });
    await store.#loadUserCertificates();
    return store;
  }

  /** PEM of the CA certificate (what users pass to curl --cacert). */
  get caPem(): string {
    return this.#ca.pem;
  }

  /** The directory the store lives in (absolute). */
  get dir(): string {
    return this.#dir;
  }

  get stats(): CertificateStoreStats {
    return { ...this.#stats, userCertificates: this.#user.size };
  }

  /**
   * Key and certificate chain (leaf PEM + CA PEM) for "localhost" (SANs: DNS:localhost,
   * IP:127.0.0.1, IP:::1): the server's default context.
   */
  defaultCredentials(): { key: string; cert: string } {
    return { key: this.#default.key, cert: this.#default.cert };
  }

  /**
   * For tls.createServer({ SNICallback }). Never throws; on any error calls back with the
   * default context. Calls back synchronously when the answer is known (user certificate, cached,
   * refused), otherwise after loading or minting; concurrent calls for one name mint once.
   */
  readonly sniCallback = (servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void): void => {
    let result: tls.SecureContext | Promise<tls.SecureContext>;
    try {
      result = this.#resolve(servername);
    } catch (e) {
      this.#warn(`tls: SNI lookup failed, serving the default certificate: ${describe(e)}`);
      this.#stats.defaulted++;
      result = this.#defaultCtx;
    }
    if (result instanceof Promise) {
      result.then(
        (ctx) => this.#deliver(cb, ctx),
        (e: unknown) => {
          this.#warn(`tls: could not provide a certificate, serving the default certificate: ${describe(e)}`);
          this.#stats.defaulted++;
          this.#deliver(cb, this.#defaultCtx);
        },
      );
    } else {
      this.#deliver(cb, result);
    }
  };

  /**
   * Installs a user-supplied certificate chain (leaf first) and private key for a host, exact
   * ("blog.example.com") or wildcard ("*.example.com", serves any single-label subdomain).
   * Validates the key matches, the leaf covers the host by a subjectAltName (the subject CN is not
   * accepted: browsers ignore it), the leaf is currently valid and OpenSSL accepts the pair.
   * Persists it and serves it from now on, before any minted certificate.
   * Throws InputError (code "bad_certificate", an Error) with a clear message otherwise.
   */
  async installCertificate(host: string, certPem: string, keyPem: string): Promise<void> {
    const spec = parseHostSpec(host);
    const files = this.#files(spec);
    if (files.hashed) {
      throw badCertificate(`tls: host name ${quote(spec.host)} is too long to install a certificate for (max ${MAX_PLAIN_FILE_NAME} characters)`);
    }
    const validated = validateUserPair(spec, certPem, keyPem, this.#ctxOptions, false);
    await this.#withLock(files.base, async () => {
      await writeAtomic(files.key, validated.keyPem, 0o600);
      await writeAtomic(files.cert, validated.chainPem, 0o644);
      this.#user.set(spec.host, { host: spec.host, ctx: validated.ctx, notAfter: validated.notAfter });
      if (!spec.wildcard) this.#cache.delete(spec.host);
    });
  }

  /** Stops serving a user certificate (a domain removed) and deletes its files; false if there was none. */
  async removeCertificate(host: string): Promise<boolean> {
    const spec = parseHostSpec(host);
    const files = this.#files(spec);
    return this.#withLock(files.base, async () => {
      const had = this.#user.delete(spec.host);
      for (const f of [files.cert, files.key]) await unlink(f).catch(() => undefined);
      this.#cache.delete(spec.host);
      return had;
    });
  }

  // ---- SNI resolution ---------------------------------------------------------------------------

  #resolve(servername: string): tls.SecureContext | Promise<tls.SecureContext> {
    const name = normalizeServername(servername);
    if (name === undefined) return this.#fallback();
    const user = this.#lookupUser(name);
    if (user !== undefined) return user.ctx;
    if (name === "localhost") return this.#defaultCtx;
    // A leaf for any other name would not verify against ca.pem (name constraints): never mint one.
    if (!isPermittedByLocalCa(name)) return this.#fallback();
    let allowed = false;
    try {
      allowed = this.#mayMint(name) === true;
    } catch (e) {
      this.#warn(`tls: mayMint(${quote(name)}) threw, serving the default certificate: ${describe(e)}`);
    }
    if (!allowed) return this.#fallback();
    const hit = this.#cache.get(name);
    if (hit !== undefined && hit.notAfter - Date.now() > RENEW_BEFORE_MS) {
      this.#stats.cacheHits++;
      return hit.ctx;
    }
    let pending = this.#inflight.get(name);
    if (pending === undefined) {
      pending = this.#obtain(name).finally(() => this.#inflight.delete(name));
      this.#inflight.set(name, pending);
    }
    return pending.then((served) => served.ctx);
  }

  #fallback(): tls.SecureContext {
    this.#stats.defaulted++;
    return this.#defaultCtx;
  }

  #lookupUser(name: string): UserEntry | undefined {
    const exact = this.#user.get(name);
    if (exact !== undefined) return exact;
    const dot = name.indexOf(".");
    if (dot === -1) return undefined;
    return this.#user.get(`*.${name.slice(dot + 1)}`);
  }

  #deliver(cb: (err: Error | null, ctx?: tls.SecureContext) => void, ctx: tls.SecureContext): void {
    try {
      cb(null, ctx);
    } catch (e) {
      this.#warn(`tls: SNICallback's callback threw: ${describe(e)}`);
    }
  }

  /** Loads the minted certificate for `name` from disk, or mints (and persists) a new one. */
  async #obtain(name: string): Promise<Served> {
    const spec: HostSpec = { host: name, base: name, wildcard: false };
    const files = this.#files(spec);
    const onDisk = await readPair(files.cert, files.key).catch((e: unknown) => {
      this.#warn(`tls: could not read ${files.cert}: ${describe(e)}; minting a new certificate`);
      return undefined;
    });
    if (onDisk !== undefined) {
      const checked = checkMinted(this.#ca, onDisk.cert, onDisk.key, (c) => c.checkHost(name, { subject: "never" }) !== undefined);
      if (checked.ok) {
        const served = { ctx: this.#context(onDisk.key, checked.leafPem + this.#ca.pem), notAfter: checked.notAfter };
        this.#stats.loadedFromDisk++;
        this.#cache.set(name, served);
        return served;
      }
      if (!checked.renew) this.#warn(`tls: ignoring ${files.cert}: ${checked.reason}; minting a new certificate`);
    }

    const minted = await mintLeaf(this.#ca, [{ type: "dns", value: name }], name.length <= 64 ? name : undefined);
    this.#stats.minted++;
    const served = { ctx: this.#context(minted.keyPem, minted.leafPem + this.#ca.pem), notAfter: minted.notAfter };
    try {
      await this.#withLock(files.base, async () => {
        // A user certificate installed meanwhile owns the file now.
        if (this.#user.has(name)) return;
        await writeAtomic(files.key, minted.keyPem, 0o600);
        await writeAtomic(files.cert, minted.leafPem + this.#ca.pem, 0o644);
      });
    } catch (e) {
      this.#warn(`tls: could not save the certificate for ${quote(name)} to ${files.cert}: ${describe(e)}`);
    }
    this.#cache.set(name, served);
    return served;
  }

  #context(key: string, cert: string): tls.SecureContext {
    return tls.createSecureContext({ ...this.#ctxOptions, key, cert });
  }

  #files(spec: HostSpec): { base: string; cert: string; key: string; hashed: boolean } {
    let base = spec.wildcard ? `_wildcard.${spec.base}` : spec.base;
    let hashed = false;
    if (base.length > MAX_PLAIN_FILE_NAME) {
      base = `_long.${createHash("sha256").update(spec.host).digest("hex")}`;
      hashed = true;
    }
    return {
      base,
      cert: path.join(this.#hostsDir, `${base}.pem`),
      key: path.join(this.#hostsDir, `${base}.key`),
      hashed,
    };
  }

  /** Runs fn after every earlier fn for the same key (writes of one host's files never interleave). */
  async #withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(key) ?? Promise.resolve();
    const run = previous.then(fn);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.#locks.set(key, tail);
    try {
      return await run;
    } finally {
      if (this.#locks.get(key) === tail) this.#locks.delete(key);
    }
  }

  /** open(): every hosts/*.pem not issued by our CA is a user certificate; validate and serve it. */
  async #loadUserCertificates(): Promise<void> {
    let entries: string[];
    try {
      entries = await readdir(this.#hostsDir);
    } catch (e) {
      throw new ZerocellError("tls_store_unreadable", 500, `tls: cannot read ${this.#hostsDir}: ${describe(e)}`, { cause: e });
    }
    for (const entry of entries.sort()) {
      if (!entry.endsWith(".pem") || entry.startsWith(".") || entry.startsWith("_long.")) continue;
      const base = entry.slice(0, -4);
      const wildcard = base.startsWith("_wildcard.");
      const name = wildcard ? base.slice("_wildcard.".length) : base;
      if (normalizeServername(name) !== name) continue; // not a file this store writes
      const spec: HostSpec = { host: wildcard ? `*.${name}` : name, base: name, wildcard };
      const files = this.#files(spec);
      let pair: { cert: string; key: string } | undefined;
      try {
        pair = await readPair(files.cert, files.key);
      } catch (e) {
        this.#warn(`tls: ignoring ${files.cert}: ${describe(e)}`);
        continue;
      }
      if (pair === undefined) {
        this.#warn(`tls: ignoring ${files.cert}: ${files.key} is missing`);
        continue;
      }
      if (!wildcard && issuedByCa(this.#ca, firstCertificate(pair.cert))) continue; // minted: loaded on use
      try {
        const validated = validateUserPair(spec, pair.cert, pair.key, this.#ctxOptions, true);
        if (validated.notAfter < Date.now()) {
          this.#warn(`tls: the installed certificate for ${quote(spec.host)} (${files.cert}) expired on ${new Date(validated.notAfter).toISOString()}; serving it anyway, install a new one`);
        }
        this.#user.set(spec.host, { host: spec.host, ctx: validated.ctx, notAfter: validated.notAfter });
      } catch (e) {
        this.#warn(`tls: ignoring ${files.cert}: ${describe(e)}`);
      }
    }
  }
}

// ---- CA -----------------------------------------------------------------------------------------

function caError(message: string, cause?: unknown): ZerocellError {
  return new ZerocellError("tls_ca_invalid", 500, message, cause === undefined ? {} : { cause });
}

async function loadOrCreateCa(dir: string, warn: (m: string) => void): Promise<{ material: CaMaterial; created: boolean }> {
  const certPath = path.join(dir, "ca.pem");
  const keyPath = path.join(dir, "ca-key.pem");
  const [certText, keyText] = await Promise.all([readOptional(certPath), readOptional(keyPath)]).catch((e: unknown) => {
    throw caError(`tls: cannot read the local CA in ${dir}: ${describe(e)}`, e);
  });

  if (certText === undefined) {
    if (keyText !== undefined) {
      warn(`tls: ${keyPath} exists without ${certPath} (interrupted first start?); minting a new local CA`);
    }
    return { material: await createAndWriteCa(certPath, keyPath), created: true };
  }
  const recreate = `delete ${certPath} and ${keyPath} to mint a new local CA (clients must then trust the new ca.pem)`;
  if (keyText === undefined) {
    throw caError(`tls: ${certPath} exists but its key ${keyPath} is missing; restore the key or ${recreate}`);
  }

  let cert: NodeX509Certificate;
  try {
    cert = new NodeX509Certificate(firstCertificate(certText) ?? certText);
  } catch (e) {
    throw caError(`tls: ${certPath} is not a valid PEM certificate (${describe(e)}); ${recreate}`, e);
  }
  if (!cert.ca) throw caError(`tls: ${certPath} is not a CA certificate (basicConstraints CA:false); ${recreate}`);
  const notAfter = Date.parse(cert.validTo);
  if (!(notAfter > Date.now())) throw caError(`tls: the local CA ${certPath} expired on ${cert.validTo}; ${recreate}`);

  let key: KeyObject;
  try {
    key = createPrivateKey({ key: keyText, format: "pem" });
  } catch (e) {
    throw caError(`tls: ${keyPath} is not a valid unencrypted PEM private key (${describe(e)}); ${recreate}`, e);
  }
  if (key.asymmetricKeyType !== "ec" || key.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
    throw caError(`tls: ${keyPath} must be an ECDSA P-256 key; ${recreate}`);
  }
  if (!cert.checkPrivateKey(key)) {
    throw caError(`tls: ${keyPath} does not match the certificate ${certPath}; ${recreate}`);
  }

  try {
    const mode = (await stat(keyPath)).mode & 0o777;
    if ((mode & 0o077) !== 0) {
      await chmod(keyPath, 0o600);
      warn(`tls: ${keyPath} was readable by others (mode ${mode.toString(8)}); changed to 0600`);
    }
  } catch (e) {
    warn(`tls: could not check the mode of ${keyPath}: ${describe(e)}`);
  }

  let signingKey: webcrypto.CryptoKey;
  let peculiar: x509.X509Certificate;
  try {
    const der = key.export({ format: "der", type: "pkcs8" });
    signingKey = await subtle.importKey("pkcs8", der, EC_KEY_ALG, false, ["sign"]);
    peculiar = new x509.X509Certificate(cert.raw);
  } catch (e) {
    throw caError(`tls: cannot use the local CA in ${certPath}: ${describe(e)}; ${recreate}`, e);
  }
  if (!hasPlatformNameConstraints(peculiar)) {
    // An older CA that can vouch for any name: every client trusting it would accept a leaf for
    // any site. Replace it (and drop what it signed) rather than keep serving under it.
    warn(
      `tls: the local CA ${certPath} has no name constraints (it could vouch for any host name); replacing it with a new CA ` +
        `limited to ${describeConstraints()} and deleting the certificates the old one minted; clients must trust the new ca.pem`,
    );
    await discardMinted(dir, cert, warn);
    return { material: await createAndWriteCa(certPath, keyPath), created: true };
  }
  const ski = peculiar.getExtension(x509.SubjectKeyIdentifierExtension);
  const keyId =
    ski?.keyId ?? (await x509.SubjectKeyIdentifierExtension.create(peculiar.publicKey, false, cryptoImpl)).keyId;
  return {
    material: { pem: cert.toString(), cert, name: peculiar.subjectName, keyId, signingKey, notAfter },
    created: false,
  };
}

async function createAndWriteCa(certPath: string, keyPath: string): Promise<CaMaterial> {
  const material = await createCa();
  await writeAtomic(keyPath, material.keyPem, 0o600);
  await writeAtomic(certPath, material.ca.pem, 0o644);
  return material.ca;
}

/** DER of the CA's NameConstraints value: permitted subtrees only (CA_PERMITTED_DNS, CA_PERMITTED_IPS). */
function encodeNameConstraints(): Buffer {
  const tlv = (tag: number, body: Buffer): Buffer => {
    const n = body.length;
    const len = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff]);
    return Buffer.concat([Buffer.from([tag]), len, body]);
  };
  const subtrees = [
    // GeneralSubtree ::= SEQUENCE { base GeneralName } ; dNSName [2] IA5String, iPAddress [7] OCTET STRING
    ...CA_PERMITTED_DNS.map((d) => tlv(0x30, tlv(0x82, Buffer.from(d, "ascii")))),
    ...CA_PERMITTED_IPS.map((ip) => tlv(0x30, tlv(0x87, Buffer.from([...ip.address, ...ip.mask])))),
  ];
  // NameConstraints ::= SEQUENCE { permittedSubtrees [0] GeneralSubtrees }
  return tlv(0x30, tlv(0xa0, Buffer.concat(subtrees)));
}

function describeConstraints(): string {
  return [...CA_PERMITTED_DNS.flatMap((d) => [d, `*.${d}`]), "127.0.0.1", "::1"].join(", ");
}

/** Whether a CA certificate carries exactly the platform's name constraints, marked critical. */
function hasPlatformNameConstraints(cert: x509.X509Certificate): boolean {
  const ext = cert.getExtension(NAME_CONSTRAINTS_OID);
  return ext !== null && ext.critical && Buffer.from(ext.value).equals(encodeNameConstraints());
}

/**
 * Deletes the default certificate and every hosts/ certificate issued by `oldCa` (with its key),
 * before that CA is replaced: left in place, they would look like user-installed certificates.
 * User certificates (issued by anyone else) stay. Throws if one cannot be deleted.
 */
async function discardMinted(dir: string, oldCa: NodeX509Certificate, warn: (m: string) => void): Promise<void> {
  const pairs: Array<[string, string]> = [[path.join(dir, "localhost.pem"), path.join(dir, "localhost-key.pem")]];
  const hostsDir = path.join(dir, "hosts");
  for (const entry of await readdir(hostsDir)) {
    if (entry.endsWith(".pem") && !entry.startsWith(".")) pairs.push([path.join(hostsDir, entry), path.join(hostsDir, `${entry.slice(0, -4)}.key`)]);
  }
  let discarded = 0;
  for (const [certFile, keyFile] of pairs) {
    const text = await readOptional(certFile).catch(() => undefined);
    const first = text === undefined ? undefined : firstCertificate(text);
    let mintedByOld = false;
    try {
      const cert = first === undefined ? undefined : new NodeX509Certificate(first);
      mintedByOld = cert !== undefined && cert.checkIssued(oldCa) && cert.verify(oldCa.publicKey);
    } catch {
      mintedByOld = false;
    }
    if (!mintedByOld) continue;
    try {
      await unlink(keyFile).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== "ENOENT") throw e;
      });
      await unlink(certFile);
    } catch (e) {
      throw caError(`tls: cannot delete ${certFile}, minted by the local CA being replaced: ${describe(e)}`, e);
    }
    discarded++;
  }
  if (discarded > 0) warn(`tls: deleted ${discarded} certificate(s) minted by the old local CA`);
}

async function createCa(): Promise<{ ca: CaMaterial; keyPem: string }> {
  const keys = await subtle.generateKey(EC_KEY_ALG, true, ["sign", "verify"]);
  const notBefore = new Date(Date.now() - BACKDATE_MS);
  const notAfter = new Date(notBefore);
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + CA_VALIDITY_YEARS);
  const ski = await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, cryptoImpl);
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      name: [{ O: ["Zerocell"] }, { CN: [`Zerocell Local CA (${randomBytes(6).toString("hex")})`] }],
      keys,
      notBefore,
      notAfter,
      signingAlgorithm: SIGN_ALG,
      extensions: [
        // pathLen 0: this CA signs leaf certificates only.
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        ski,
        // Critical, so a client that cannot enforce the constraints rejects the CA instead of ignoring them.
        new x509.Extension(NAME_CONSTRAINTS_OID, true, new Uint8Array(encodeNameConstraints())),
      ],
    },
    cryptoImpl,
  );
  const nodeCert = new NodeX509Certificate(Buffer.from(cert.rawData));
  const signingKey = keys.privateKey;
  const keyPem = toPem(await subtle.exportKey("pkcs8", signingKey), "PRIVATE KEY");
  return {
    ca: {
      pem: nodeCert.toString(),
      cert: nodeCert,
      name: cert.subjectName,
      keyId: ski.keyId,
      signingKey,
      notAfter: notAfter.getTime(),
    },
    keyPem,
  };
}

// ---- leaf certificates --------------------------------------------------------------------------

async function mintLeaf(ca: CaMaterial, altNames: x509.JsonGeneralNames, commonName: string | undefined): Promise<Minted> {
  const keys = await subtle.generateKey(EC_KEY_ALG, true, ["sign", "verify"]);
  const notBefore = new Date(Date.now() - BACKDATE_MS);
  const notAfter = new Date(Math.min(notBefore.getTime() + LEAF_VALIDITY_MS, ca.notAfter));
  const cert = await x509.X509CertificateGenerator.create(
    {
      // CN is limited to 64 characters; without a subject the SAN extension must be critical.
      subject: commonName === undefined ? [] : [{ CN: [commonName] }],
      issuer: ca.name,
      publicKey: keys.publicKey,
      signingKey: ca.signingKey,
      notBefore,
      notAfter,
      signingAlgorithm: SIGN_ALG,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
        new x509.SubjectAlternativeNameExtension(altNames, commonName === undefined),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, cryptoImpl),
        new x509.AuthorityKeyIdentifierExtension(ca.keyId, false),
      ],
    },
    cryptoImpl,
  );
  return {
    leafPem: toPem(cert.rawData, "CERTIFICATE"),
    keyPem: toPem(await subtle.exportKey("pkcs8", keys.privateKey), "PRIVATE KEY"),
    notAfter: notAfter.getTime(),
  };
}

type MintedCheck = { ok: true; leafPem: string; notAfter: number } | { ok: false; renew: boolean; reason: string };

/** Validates a minted certificate + key read from disk: parses, matches, issued by our CA, covers, not expiring. */
function checkMinted(
  ca: CaMaterial,
  certText: string,
  keyText: string,
  covers: (cert: NodeX509Certificate) => boolean,
): MintedCheck {
  let cert: NodeX509Certificate;
  let key: KeyObject;
  try {
    const first = firstCertificate(certText);
    if (first === undefined) return { ok: false, renew: false, reason: "no PEM certificate in the file" };
    cert = new NodeX509Certificate(first);
    key = createPrivateKey({ key: keyText, format: "pem" });
  } catch (e) {
    return { ok: false, renew: false, reason: `unreadable certificate or key (${describe(e)})` };
  }
  if (!cert.checkPrivateKey(key)) return { ok: false, renew: false, reason: "the key does not match the certificate" };
  if (!issuedByCaCert(ca, cert)) return { ok: false, renew: true, reason: "not issued by the current local CA" };
  if (!covers(cert)) return { ok: false, renew: false, reason: "the certificate does not cover the name" };
  const notAfter = Date.parse(cert.validTo);
  const notBefore = Date.parse(cert.validFrom);
  const now = Date.now();
  if (!(notAfter - now > RENEW_BEFORE_MS)) return { ok: false, renew: true, reason: "expires soon" };
  if (!(notBefore <= now + DAY_MS)) return { ok: false, renew: false, reason: "not valid yet" };
  return { ok: true, leafPem: cert.toString(), notAfter };
}

function issuedByCa(ca: CaMaterial, pem: string | undefined): boolean {
  if (pem === undefined) return false;
  try {
    return issuedByCaCert(ca, new NodeX509Certificate(pem));
  } catch {
    return false;
  }
}

function issuedByCaCert(ca: CaMaterial, cert: NodeX509Certificate): boolean {
  try {
    return cert.checkIssued(ca.cert) && cert.verify(ca.cert.publicKey);
  } catch {
    return false;
  }
}

async function loadOrMintDefault(
  dir: string,
  ca: CaMaterial,
  ctxOptions: CertificateStoreOptions["secureContextOptions"],
  warn: (m: string) => void,
): Promise<{ creds: { key: string; cert: string }; minted: boolean }> {
  const certPath = path.join(dir, "localhost.pem");
  const keyPath = path.join(dir, "localhost-key.pem");
  const pair = await readPair(certPath, keyPath).catch((e: unknown) => {
    warn(`tls: could not read ${certPath}: ${describe(e)}; minting a new default certificate`);
    return undefined;
  });
  if (pair !== undefined) {
    const checked = checkMinted(
      ca,
      pair.cert,
      pair.key,
      (c) => c.checkHost("localhost", { subject: "never" }) !== undefined && c.checkIP("127.0.0.1") !== undefined,
    );
    if (checked.ok) {
      const creds = { key: pair.key, cert: checked.leafPem + ca.pem };
      try {
        tls.createSecureContext({ ...ctxOptions, ...creds });
        return { creds, minted: false };
      } catch (e) {
        warn(`tls: ignoring ${certPath}: ${describe(e)}; minting a new default certificate`);
      }
    } else if (!checked.renew) {
      warn(`tls: ignoring ${certPath}: ${checked.reason}; minting a new default certificate`);
    }
  }
  const minted = await mintLeaf(
    ca,
    [
      { type: "dns", value: "localhost" },
      { type: "ip", value: "127.0.0.1" },
      { type: "ip", value: "::1" },
    ],
    "localhost",
  );
  await writeAtomic(keyPath, minted.keyPem, 0o600);
  await writeAtomic(certPath, minted.leafPem + ca.pem, 0o644);
  return { creds: { key: minted.keyPem, cert: minted.leafPem + ca.pem }, minted: true };
}

// ---- user certificates --------------------------------------------------------------------------

function badCertificate(message: string, cause?: unknown): InputError {
  return new InputError(message, cause === undefined ? { code: "bad_certificate" } : { code: "bad_certificate", cause });
}

function parseHostSpec(host: unknown): HostSpec {
  if (typeof host !== "string") throw badCertificate("tls: host must be a string");
  const lower = host.trim().toLowerCase();
  const wildcard = lower.startsWith("*.");
  const base = normalizeServername(wildcard ? lower.slice(2) : lower);
  if (base === undefined) {
    throw badCertificate(
      `tls: ${quote(host)} is not a valid host name (expected "name.example.com" or "*.example.com": labels of a-z, 0-9 and "-", at most 253 characters)`,
    );
  }
  return { host: wildcard ? `*.${base}` : base, base, wildcard };
}

/**
 * Validates a user certificate chain + key for `spec`; returns the normalised chain (PEM blocks
 * only), the key as PKCS#8 PEM, a SecureContext and the leaf's notAfter. Throws InputError.
 */
function validateUserPair(
  spec: HostSpec,
  certPem: unknown,
  keyPem: unknown,
  ctxOptions: CertificateStoreOptions["secureContextOptions"],
  allowExpired: boolean,
): { chainPem: string; keyPem: string; ctx: tls.SecureContext; notAfter: number } {
  if (typeof certPem !== "string" || typeof keyPem !== "string") {
    throw badCertificate("tls: the certificate and the key must be PEM text");
  }
  if (certPem.length > MAX_INPUT_CHARS || keyPem.length > MAX_INPUT_CHARS) {
    throw badCertificate(`tls: the certificate or key is larger than ${MAX_INPUT_CHARS / 1024} KiB`);
  }
  const blocks = certPem.match(CERT_BLOCK) ?? [];
  if (blocks.length === 0) throw badCertificate("tls: no PEM certificate (-----BEGIN CERTIFICATE-----) found");
  if (blocks.length > MAX_CHAIN_CERTS) throw badCertificate(`tls: the chain has more than ${MAX_CHAIN_CERTS} certificates`);
  const chain: NodeX509Certificate[] = [];
  for (const [i, block] of blocks.entries()) {
    try {
      chain.push(new NodeX509Certificate(block));
    } catch (e) {
      throw badCertificate(`tls: certificate #${i + 1} of the chain is not a valid certificate (${describe(e)})`, e);
    }
  }
  const leaf = chain[0];
  if (leaf === undefined) throw badCertificate("tls: no PEM certificate found");

  let key: KeyObject;
  try {
    key = createPrivateKey({ key: keyPem, format: "pem" });
  } catch (e) {
    const encrypted = /ENCRYPTED/.test(keyPem) ? " (encrypted keys are not supported: decrypt it first)" : "";
    throw badCertificate(`tls: the key is not a valid PEM private key${encrypted}: ${describe(e)}`, e);
  }
  if (!leaf.checkPrivateKey(key)) {
    throw badCertificate(`tls: the private key does not match the certificate for ${quote(spec.host)} (subject ${quote(leaf.subject)})`);
  }

  const sans = leaf.subjectAltName ?? "none";
  if (spec.wildcard) {
    // Two random labels are covered only by a wildcard for this very domain.
    for (let i = 0; i < 2; i++) {
      const probe = `zc${randomBytes(6).toString("hex")}.${spec.base}`;
      if (leaf.checkHost(probe, { subject: "never", wildcards: true, partialWildcards: false }) === undefined) {
        throw badCertificate(`tls: the certificate does not cover ${quote(spec.host)} (its subject alternative names: ${sans})`);
      }
    }
  } else if (leaf.checkHost(spec.host, { subject: "never" }) === undefined) {
    throw badCertificate(`tls: the certificate does not cover ${quote(spec.host)} (its subject alternative names: ${sans})`);
  }

  const now = Date.now();
  const notAfter = Date.parse(leaf.validTo);
  if (!allowExpired && !(notAfter > now)) throw badCertificate(`tls: the certificate expired on ${leaf.validTo}`);
  if (!(Date.parse(leaf.validFrom) <= now + DAY_MS)) {
    throw badCertificate(`tls: the certificate is not valid before ${leaf.validFrom}`);
  }

  const chainPem = chain.map((c) => c.toString()).join("");
  const normalizedKey = key.export({ format: "pem", type: "pkcs8" }).toString();
  let ctx: tls.SecureContext;
  try {
    ctx = tls.createSecureContext({ ...ctxOptions, cert: chainPem, key: normalizedKey });
  } catch (e) {
    throw badCertificate(`tls: OpenSSL rejected the certificate and key: ${describe(e)}`, e);
  }
  return { chainPem, keyPem: normalizedKey, ctx, notAfter };
}

// ---- files and helpers --------------------------------------------------------------------------

function toPem(der: ArrayBuffer | Uint8Array, label: string): string {
  const b64 = Buffer.from(der instanceof Uint8Array ? der : new Uint8Array(der)).toString("base64");
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

function firstCertificate(text: string): string | undefined {
  return text.match(CERT_BLOCK)?.[0];
}

async function readOptional(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
}

/** Both files' text, or undefined when either is missing; throws on other read errors. */
async function readPair(certPath: string, keyPath: string): Promise<{ cert: string; key: string } | undefined> {
  const [cert, key] = await Promise.all([readOptional(certPath), readOptional(keyPath)]);
  if (cert === undefined || key === undefined) return undefined;
  return { cert, key };
}

/** Writes a file atomically: a temporary file in the same directory (created with `mode`, narrowed by the umask, fsynced), then rename. */
async function writeAtomic(file: string, data: string, mode: number): Promise<void> {
  const tmp = path.join(path.dirname(file), `.tmp-${randomBytes(8).toString("hex")}`);
  const handle = await openFile(tmp, "wx", mode);
  try {
    try {
      await handle.writeFile(data, "utf8");
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, file);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}

async function removeStaleTempFiles(dir: string): Promise<void> {
  for (const entry of await readdir(dir)) {
    if (entry.startsWith(".tmp-")) await unlink(path.join(dir, entry)).catch(() => undefined);
  }
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Quotes untrusted text for a message, cut to a sane length. */
function quote(text: string): string {
  return JSON.stringify(text.length > 120 ? `${text.slice(0, 120)}…` : text);
}
