import { X509Certificate as NodeX509Certificate, webcrypto } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import https from "node:https";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import type tls from "node:tls";
import * as x509 from "@peculiar/x509";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { CertificateStore, normalizeServername, type CertificateStoreOptions } from "../../src/gateway/tls.js";
import { makeUnconstrainedCa, signLeaf } from "../helpers/certs.js";

const cryptoImpl = webcrypto as unknown as Parameters<typeof x509.X509CertificateGenerator.create>[1];
const EC = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGN = { name: "ECDSA", hash: "SHA-256" } as const;

let root: string;
const servers: https.Server[] = [];

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), "zc-tls-test-"));
});
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

let dirCounter = 0;
function freshDir(): string {
  return path.join(root, `store-${++dirCounter}`, "certs");
}

const mintLocalhost = (name: string): boolean => name === "localhost" || name.endsWith(".localhost");

async function openStore(dir: string, extra: Partial<CertificateStoreOptions> = {}) {
  const warnings: string[] = [];
  const store = await CertificateStore.open({
    dir,
    mayMint: mintLocalhost,
    onWarning: (m) => warnings.push(m),
    ...extra,
  });
  return { store, warnings };
}

async function startServer(store: CertificateStore): Promise<number> {
  const server = https.createServer({ ...store.defaultCredentials(), SNICallback: store.sniCallback }, (_req, res) => {
    res.end("ok");
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as AddressInfo).port;
}

type Fetched =
  | { ok: true; body: string; san: string | undefined; serial: string; issuer: string }
  | { ok: false; code: string | undefined; message: string };

function fetchTls(port: number, servername: string | undefined, ca: string): Promise<Fetched> {
  return new Promise((resolve) => {
    const req = https.request(
      {
        host: "127.0.0.1",
        port,
        path: "/",
        ca,
        agent: false,
        ...(servername === undefined ? {} : { servername, headers: { host: servername } }),
      },
      (res) => {
        const cert = (res.socket as tls.TLSSocket).getPeerCertificate();
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (body += chunk));
        res.on("end", () =>
          resolve({ ok: true, body, san: cert.subjectaltname, serial: cert.serialNumber, issuer: String(cert.issuer.CN ?? "") }),
        );
      },
    );
    req.on("error", (e: NodeJS.ErrnoException) => resolve({ ok: false, code: e.code, message: e.message }));
    req.end();
  });
}

/** Calls the SNI callback and returns the context it delivered; `calls` counts every invocation. */
function sni(store: CertificateStore, name: string, calls = { n: 0 }): Promise<tls.SecureContext | undefined> {
  return new Promise((resolve, reject) => {
    store.sniCallback(name, (err, ctx) => {
      calls.n++;
      if (err !== null) reject(err);
      else resolve(ctx);
    });
  });
}

async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    out.push(path.relative(dir, path.join(entry.parentPath, entry.name)));
  }
  return out.sort();
}

function pem(der: ArrayBuffer, label: string): string {
  return x509.PemConverter.encode(der, label);
}

interface TestCa {
  pem: string;
  keys: webcrypto.CryptoKeyPair;
  cert: x509.X509Certificate;
}

async function makeTestCa(): Promise<TestCa> {
  const keys = await webcrypto.subtle.generateKey(EC, true, ["sign", "verify"]);
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      name: "CN=Test User CA",
      keys,
      signingAlgorithm: SIGN,
      notBefore: new Date(Date.now() - 3600_000),
      notAfter: new Date(Date.now() + 365 * 86400_000),
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, cryptoImpl),
      ],
    },
    cryptoImpl,
  );
  return { pem: cert.toString("pem"), keys, cert };
}

async function makeUserCert(ca: TestCa, dnsNames: string[], opts: { notAfter?: Date; notBefore?: Date } = {}) {
  const keys = await webcrypto.subtle.generateKey(EC, true, ["sign", "verify"]);
  const cert = await x509.X509CertificateGenerator.create(
    {
      subject: `CN=${dnsNames[0] ?? "nobody"}`,
      issuer: ca.cert.subjectName,
      publicKey: keys.publicKey,
      signingKey: ca.keys.privateKey,
      signingAlgorithm: SIGN,
      notBefore: opts.notBefore ?? new Date(Date.now() - 3600_000),
      notAfter: opts.notAfter ?? new Date(Date.now() + 90 * 86400_000),
      extensions: [
        new x509.BasicConstraintsExtension(false),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension(dnsNames.map((value) => ({ type: "dns" as const, value }))),
      ],
    },
    cryptoImpl,
  );
  const keyPem = pem(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey), "PRIVATE KEY");
  return { certPem: `${cert.toString("pem")}\n${ca.pem}\n`, keyPem, serial: cert.serialNumber };
}

describe("normalizeServername", () => {
  it("accepts DNS names, lower-cases, drops a trailing dot", () => {
    expect(normalizeServername("Blog.LocalHost.")).toBe("blog.localhost");
    expect(normalizeServername("a-b.c1.example")).toBe("a-b.c1.example");
    expect(normalizeServername("x".repeat(63) + ".com")).toBe("x".repeat(63) + ".com");
  });
  it("rejects everything else", () => {
    for (const bad of [
      "",
      ".",
      "a..b",
      "../../etc",
      "..",
      "a/b",
      "a\\b",
      "a\0b",
      "*.example.com",
      "-a.com",
      "a-.com",
      "a_b.com",
      "é.com",
      "x".repeat(64) + ".com",
      ("a".repeat(50) + ".").repeat(5) + "com", // 258 chars
      "127.0.0.1",
      "::1",
      "a b",
      undefined,
      42,
    ]) {
      expect(normalizeServername(bad), String(bad)).toBeUndefined();
    }
  });
});

describe("CertificateStore: CA and default certificate", () => {
  it("creates ca.pem and ca-key.pem (0600) and the CA has the required shape", async () => {
    const dir = freshDir();
    const { store } = await openStore(dir);
    const files = await readdir(dir);
    expect(files).toEqual(expect.arrayContaining(["ca.pem", "ca-key.pem", "localhost.pem", "localhost-key.pem", "hosts"]));
    expect((await stat(path.join(dir, "ca-key.pem"))).mode & 0o777).toBe(0o600);
    expect((await stat(path.join(dir, "localhost-key.pem"))).mode & 0o777).toBe(0o600);
    expect(await readFile(path.join(dir, "ca.pem"), "utf8")).toBe(store.caPem);

    const ca = new x509.X509Certificate(store.caPem);
    expect(ca.subject).toMatch(/CN=Zerocell Local CA \([0-9a-f]+\)/);
    const bc = ca.getExtension(x509.BasicConstraintsExtension);
    expect(bc?.ca).toBe(true);
    expect(bc?.critical).toBe(true);
    const ku = ca.getExtension(x509.KeyUsagesExtension);
    expect(ku?.usages).toBe(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    const years = (ca.notAfter.getTime() - ca.notBefore.getTime()) / (365.25 * 86400_000);
    expect(years).toBeGreaterThan(9.9);
    expect(years).toBeLessThan(10.1);
    // Name Constraints, critical, permitting only localhost (and *.localhost), 127.0.0.1/32, ::1/128
    // (DER written out by hand: SEQUENCE { [0] { {dNSName}, {iPAddress}, {iPAddress} } }).
    const nc = ca.getExtension("2.5.29.30");
    expect(nc?.critical).toBe(true);
    expect(Buffer.from(nc!.value).toString("hex")).toBe(
      "303fa03d" + "300b8209" + Buffer.from("localhost").toString("hex") + "300a8708" + "7f000001" + "ffffffff" + "30228720" + "00".repeat(15) + "01" + "ff".repeat(16),
    );
    const alg = ca.publicKey.algorithm as { name: string; namedCurve?: string };
    expect(alg).toMatchObject({ name: "ECDSA", namedCurve: "P-256" });
    expect(store.stats.minted).toBe(2); // CA + default
  });

  it("re-opening the same dir yields the same CA and default certificate", async () => {
    const dir = freshDir();
    const { store: a } = await openStore(dir);
    const { store: b, warnings } = await openStore(dir);
    expect(b.caPem).toBe(a.caPem);
    expect(b.defaultCredentials()).toEqual(a.defaultCredentials());
    expect(b.stats.minted).toBe(0);
    expect(warnings).toEqual([]);
  });

  it("the default certificate covers localhost, 127.0.0.1 and ::1 and chains to the CA", async () => {
    const { store } = await openStore(freshDir());
    const { cert } = store.defaultCredentials();
    const blocks = cert.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
    expect(blocks).toHaveLength(2);
    const leaf = new NodeX509Certificate(blocks[0]!);
    expect(leaf.subjectAltName).toBe("DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1");
    expect(leaf.checkIssued(new NodeX509Certificate(store.caPem))).toBe(true);
    expect(new NodeX509Certificate(blocks[1]!).toString()).toBe(store.caPem);

    // No SNI (IP literal): the default certificate verifies by its IP SAN.
    const port = await startServer(store);
    const r = await fetchTls(port, undefined, store.caPem);
    expect(r).toMatchObject({ ok: true, body: "ok" });
    const viaName = await fetchTls(port, "localhost", store.caPem);
    expect(viaName).toMatchObject({ ok: true, san: expect.stringContaining("DNS:localhost") });
  });

  it("a corrupt or incomplete CA is an error naming the file", async () => {
    const dir = freshDir();
    await openStore(dir);
    const caPath = path.join(dir, "ca.pem");
    const keyPath = path.join(dir, "ca-key.pem");
    const goodCa = await readFile(caPath, "utf8");
    const goodKey = await readFile(keyPath, "utf8");

    await writeFile(caPath, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    await expect(openStore(dir)).rejects.toThrow(/ca\.pem is not a valid PEM certificate/);
    await writeFile(caPath, "garbage");
    await expect(openStore(dir)).rejects.toThrow(/ca\.pem/);

    await writeFile(caPath, goodCa);
    await writeFile(keyPath, "not a key", { mode: 0o600 });
    await expect(openStore(dir)).rejects.toThrow(/ca-key\.pem is not a valid unencrypted PEM private key/);

    const other = await webcrypto.subtle.generateKey(EC, true, ["sign", "verify"]);
    await writeFile(keyPath, pem(await webcrypto.subtle.exportKey("pkcs8", other.privateKey), "PRIVATE KEY"));
    await expect(openStore(dir)).rejects.toThrow(/ca-key\.pem does not match the certificate .*ca\.pem/);

    await rm(keyPath);
    await expect(openStore(dir)).rejects.toThrow(/ca-key\.pem is missing/);

    await writeFile(keyPath, goodKey, { mode: 0o644 });
    const { store, warnings } = await openStore(dir);
    expect(store.caPem).toBe(goodCa);
    expect((await stat(keyPath)).mode & 0o777).toBe(0o600);
    expect(warnings.join("\n")).toMatch(/readable by others/);
  });

  it("validates options", async () => {
    await expect(CertificateStore.open({ dir: freshDir(), mayMint: () => true, maxCached: 0 })).rejects.toThrow(/maxCached/);
  });
});

describe("CertificateStore: SNI minting over real TLS", () => {
  it("mints a verifiable certificate for a mintable name and refuses others", async () => {
    const dir = freshDir();
    const { store } = await openStore(dir);
    const port = await startServer(store);

    const ok = await fetchTls(port, "blog.localhost", store.caPem);
    expect(ok).toMatchObject({ ok: true, body: "ok", san: "DNS:blog.localhost" });

    const leafPem = await readFile(path.join(dir, "hosts", "blog.localhost.pem"), "utf8");
    expect((await stat(path.join(dir, "hosts", "blog.localhost.key"))).mode & 0o777).toBe(0o600);
    const leaf = new x509.X509Certificate(leafPem);
    expect(leaf.subject).toBe("CN=blog.localhost");
    expect(leaf.getExtension(x509.BasicConstraintsExtension)?.ca).toBe(false);
    expect(leaf.getExtension(x509.KeyUsagesExtension)?.usages).toBe(x509.KeyUsageFlags.digitalSignature);
    expect(leaf.getExtension(x509.ExtendedKeyUsageExtension)?.usages).toEqual([x509.ExtendedKeyUsage.serverAuth]);
    expect(leaf.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId).toBe(
      new x509.X509Certificate(store.caPem).getExtension(x509.SubjectKeyIdentifierExtension)?.keyId,
    );
    const days = (leaf.notAfter.getTime() - leaf.notBefore.getTime()) / 86400_000;
    expect(days).toBe(397);
    expect((leaf.publicKey.algorithm as { namedCurve?: string }).namedCurve).toBe("P-256");
    expect(await leaf.verify({ publicKey: new x509.X509Certificate(store.caPem).publicKey }, cryptoImpl)).toBe(true);

    const refused = await fetchTls(port, "evil.example.com", store.caPem);
    expect(refused).toMatchObject({ ok: false, code: "ERR_TLS_CERT_ALTNAME_INVALID" });
    expect(await readdir(path.join(dir, "hosts"))).toEqual(["blog.localhost.key", "blog.localhost.pem"]);

    const other = await fetchTls(port, "blog.localhost", (await openStore(freshDir())).store.caPem);
    expect(other).toMatchObject({ ok: false });
  });

  it("two concurrent connects for a new name mint once", async () => {
    const dir = freshDir();
    const { store } = await openStore(dir);
    const port = await startServer(store);
    const before = store.stats.minted;
    const [a, b] = await Promise.all([
      fetchTls(port, "new.localhost", store.caPem),
      fetchTls(port, "new.localhost", store.caPem),
    ]);
    expect(a).toMatchObject({ ok: true, san: "DNS:new.localhost" });
    expect(b).toMatchObject({ ok: true, san: "DNS:new.localhost" });
    if (!a.ok || !b.ok) throw new Error("unreachable");
    expect(a.serial).toBe(b.serial);
    expect(store.stats.minted - before).toBe(1);
    expect((await readdir(path.join(dir, "hosts"))).filter((f) => f.startsWith("new.localhost"))).toHaveLength(2);

    // Many concurrent lookups through the callback itself: still one mint, one context.
    const ctxs = await Promise.all(Array.from({ length: 20 }, () => sni(store, "burst.localhost")));
    expect(new Set(ctxs).size).toBe(1);
    expect(store.stats.minted - before).toBe(2);
    const again = await sni(store, "burst.localhost");
    expect(again).toBe(ctxs[0]);
    expect(store.stats.cacheHits).toBeGreaterThan(0);
  });

  it("reuses minted certificates from disk after a restart and when evicted from the cache", async () => {
    const dir = freshDir();
    const { store } = await openStore(dir, { maxCached: 1 });
    const port = await startServer(store);
    const first = await fetchTls(port, "one.localhost", store.caPem);
    await fetchTls(port, "two.localhost", store.caPem); // evicts one.localhost
    const again = await fetchTls(port, "one.localhost", store.caPem);
    expect(again).toMatchObject({ ok: true });
    expect(first.ok && again.ok && first.serial === again.serial).toBe(true);
    expect(store.stats.loadedFromDisk).toBe(1);

    const { store: reopened } = await openStore(dir);
    const port2 = await startServer(reopened);
    const afterRestart = await fetchTls(port2, "two.localhost", reopened.caPem);
    expect(afterRestart).toMatchObject({ ok: true, san: "DNS:two.localhost" });
    expect(reopened.stats).toMatchObject({ minted: 0, loadedFromDisk: 1 });
  });

  it("ignores a corrupt minted certificate on disk and mints a new one", async () => {
    const dir = freshDir();
    const { store } = await openStore(dir);
    await sni(store, "broken.localhost");
    await writeFile(path.join(dir, "hosts", "broken.localhost.pem"), "junk");
    await writeFile(path.join(dir, "hosts", "mismatch.localhost.pem"), store.defaultCredentials().cert);
    await writeFile(path.join(dir, "hosts", "mismatch.localhost.key"), (await openStore(freshDir())).store.defaultCredentials().key);

    const { store: reopened, warnings } = await openStore(dir);
    const port = await startServer(reopened);
    expect(await fetchTls(port, "broken.localhost", reopened.caPem)).toMatchObject({ ok: true, san: "DNS:broken.localhost" });
    expect(await fetchTls(port, "mismatch.localhost", reopened.caPem)).toMatchObject({ ok: true, san: "DNS:mismatch.localhost" });
    expect(reopened.stats.minted).toBe(2);
    expect(warnings.join("\n")).toMatch(/broken\.localhost\.pem/);
    const pemNow = await readFile(path.join(dir, "hosts", "broken.localhost.pem"), "utf8");
    expect(new NodeX509Certificate(pemNow).subjectAltName).toBe("DNS:broken.localhost");
  });

  it("hostile servernames never throw, never mint outside the dir, and get the default context", async () => {
    const base = path.join(root, `hostile-${++dirCounter}`);
    const dir = path.join(base, "certs");
    const seen: string[] = [];
    const { store } = await openStore(dir, {
      mayMint: (name) => {
        seen.push(name);
        return true; // worst case: the gateway would allow anything
      },
    });
    const defaultCtx = await sni(store, "");
    expect(defaultCtx).toBeDefined();
    const hostile = [
      "../../etc",
      "../../../../tmp/pwned",
      "..",
      ".",
      "/etc/passwd",
      "a/b",
      "a\\b",
      "a..b",
      "a".repeat(300),
      ("a".repeat(60) + ".").repeat(5) + "com",
      "a\0b.localhost",
      "*.localhost",
      "_wildcard.localhost",
      "-x.localhost",
      "127.0.0.1",
      "::1",
      "é.localhost",
      "\u0130.localhost",
      " x.localhost",
      "x.localhost\n",
    ];
    for (const name of hostile) {
      const calls = { n: 0 };
      let pending: Promise<tls.SecureContext | undefined> | undefined;
      expect(() => {
        pending = sni(store, name, calls);
      }, JSON.stringify(name)).not.toThrow();
      expect(await pending, JSON.stringify(name)).toBe(defaultCtx);
      await new Promise((r) => setTimeout(r, 5));
      expect(calls.n, JSON.stringify(name)).toBe(1);
    }
    // Non-strings from a misbehaving caller.
    for (const junk of [undefined, null, 42, {}]) {
      expect(() => store.sniCallback(junk as unknown as string, () => undefined)).not.toThrow();
    }
    expect(seen).toEqual([]);

    // Upper case is lower-cased, a trailing dot dropped, then minted under the normal name.
    const upper = await sni(store, "UPPER.LOCALHOST.");
    expect(upper).not.toBe(defaultCtx);
    expect(await sni(store, "upper.localhost")).toBe(upper);
    expect(seen).toContain("upper.localhost");

    // A 253-character name is valid; its file name is hashed (under .localhost: the CA's name
    // constraints allow nothing else).
    const long = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(51), "localhost"].join(".");
    expect(long).toHaveLength(253);
    expect(await sni(store, long)).not.toBe(defaultCtx);

    expect(await readdir(base)).toEqual(["certs"]);
    const hosts = await readdir(path.join(dir, "hosts"));
    expect(hosts.filter((f) => !f.startsWith("_long."))).toEqual(["upper.localhost.key", "upper.localhost.pem"]);
    expect(hosts.filter((f) => f.startsWith("_long."))).toHaveLength(2);
    expect((await listTree(dir)).every((f) => !f.includes(".."))).toBe(true);

    // Over a real connection too (the client accepts these as servername).
    const port = await startServer(store);
    for (const name of ["a..b", "../../etc", "x".repeat(200)]) {
      const r = await fetchTls(port, name, store.caPem);
      expect(r.ok, name).toBe(false);
    }
    // The long name's certificate (no subject CN, critical SAN) verifies.
    expect(await fetchTls(port, long, store.caPem)).toMatchObject({ ok: true, san: `DNS:${long}` });
    expect(await readdir(base)).toEqual(["certs"]);
  });

  it("mayMint throwing falls back to the default context", async () => {
    const { store, warnings } = await openStore(freshDir(), {
      mayMint: () => {
        throw new Error("boom");
      },
    });
    const def = await sni(store, "");
    expect(await sni(store, "x.localhost")).toBe(def);
    expect(warnings.join("\n")).toMatch(/boom/);
  });
});

/** An HTTPS server presenting exactly this chain and key, whatever the SNI name. */
async function serveChain(chain: { certPem: string; keyPem: string }): Promise<number> {
  const server = https.createServer({ cert: chain.certPem, key: chain.keyPem }, (_req, res) => res.end("ok"));
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as AddressInfo).port;
}

/** OpenSSL's X509_V_ERR_PERMITTED_VIOLATION, as Node reports it (code "UNSPECIFIED", OpenSSL's text). */
const NAME_CONSTRAINT_VIOLATION = { ok: false, message: "permitted subtree violation" } as const;

describe("CertificateStore: the CA can only vouch for localhost names", () => {
  it("OpenSSL refuses a leaf the CA's own key signs for another name (name constraints)", async () => {
    const dir = freshDir();
    const { store } = await openStore(dir);
    const caKeyPem = await readFile(path.join(dir, "ca-key.pem"), "utf8");

    const forged = await signLeaf(store.caPem, caKeyPem, [{ type: "dns", value: "login.microsoftonline.com" }]);
    const r = await fetchTls(await serveChain(forged), "login.microsoftonline.com", store.caPem);
    expect(r).toMatchObject(NAME_CONSTRAINT_VIOLATION);
    // An IP outside 127.0.0.1 / ::1 is refused the same way.
    const ip = await signLeaf(store.caPem, caKeyPem, [{ type: "ip", value: "10.0.0.1" }]);
    expect(await fetchTls(await serveChain(ip), undefined, store.caPem)).toMatchObject(NAME_CONSTRAINT_VIOLATION);
    // A name outside, hidden next to a permitted one, still fails the whole certificate.
    const mixed = await signLeaf(store.caPem, caKeyPem, [{ type: "dns", value: "x.localhost" }, { type: "dns", value: "bank.example" }]);
    expect(await fetchTls(await serveChain(mixed), "x.localhost", store.caPem)).toMatchObject(NAME_CONSTRAINT_VIOLATION);

    // The same forging, for names inside the constraints, verifies: the refusal above is the constraints'.
    for (const [sans, servername] of [
      [[{ type: "dns", value: "evil.localhost" }], "evil.localhost"],
      [[{ type: "dns", value: "localhost" }], "localhost"],
      [[{ type: "ip", value: "127.0.0.1" }], undefined],
    ] as Array<[x509.JsonGeneralNames, string | undefined]>) {
      const ok = await signLeaf(store.caPem, caKeyPem, sans);
      expect(await fetchTls(await serveChain(ok), servername, store.caPem), JSON.stringify(sans)).toMatchObject({ ok: true, body: "ok" });
    }
  });

  it("never mints a name outside the constraints, even when mayMint allows it: the default certificate answers", async () => {
    const dir = freshDir();
    const { store } = await openStore(dir, { mayMint: () => true });
    const def = await sni(store, "");
    const minted = store.stats.minted;
    for (const name of ["login.microsoftonline.com", "localhost.evil.com", "xlocalhost", "www.google.com"]) {
      expect(await sni(store, name), name).toBe(def);
    }
    expect(store.stats.minted).toBe(minted);
    expect(await readdir(path.join(dir, "hosts"))).toEqual([]);
    const port = await startServer(store);
    const r = await fetchTls(port, "login.microsoftonline.com", store.caPem);
    expect(r).toMatchObject({ ok: false, code: "ERR_TLS_CERT_ALTNAME_INVALID" });
    expect(await fetchTls(port, "app.localhost", store.caPem)).toMatchObject({ ok: true, san: "DNS:app.localhost" });
  });

  it("replaces a CA without name constraints at open, deletes what it minted, keeps user certificates", async () => {
    const dir = freshDir();
    const hosts = path.join(dir, "hosts");
    await mkdir(hosts, { recursive: true });
    // A data dir of an older version: an unconstrained CA, leaves it minted (one for a name it
    // should never have signed), and a user certificate from another CA.
    const old = await makeUnconstrainedCa();
    await writeFile(path.join(dir, "ca.pem"), old.certPem);
    await writeFile(path.join(dir, "ca-key.pem"), old.keyPem, { mode: 0o600 });
    const oldMinted: Array<[string, x509.JsonGeneralNames]> = [
      ["localhost", [{ type: "dns", value: "localhost" }, { type: "ip", value: "127.0.0.1" }]],
      ["hosts/login.microsoftonline.com", [{ type: "dns", value: "login.microsoftonline.com" }]],
      ["hosts/blog.localhost", [{ type: "dns", value: "blog.localhost" }]],
    ];
    for (const [base, sans] of oldMinted) {
      const leaf = await signLeaf(old.certPem, old.keyPem, sans);
      await writeFile(path.join(dir, `${base}.pem`), leaf.certPem);
      await writeFile(path.join(dir, base === "localhost" ? "localhost-key.pem" : `${base}.key`), leaf.keyPem, { mode: 0o600 });
    }
    const testCa = await makeTestCa();
    const user = await makeUserCert(testCa, ["app.example.com"]);
    await writeFile(path.join(hosts, "app.example.com.pem"), user.certPem);
    await writeFile(path.join(hosts, "app.example.com.key"), user.keyPem, { mode: 0o600 });
    // Before: the old CA vouches for the forged name.
    expect(await fetchTls(await serveChain({ certPem: await readFile(path.join(hosts, "login.microsoftonline.com.pem"), "utf8"), keyPem: await readFile(path.join(hosts, "login.microsoftonline.com.key"), "utf8") }), "login.microsoftonline.com", old.certPem)).toMatchObject({ ok: true });

    const { store, warnings } = await openStore(dir, { mayMint: () => true });
    expect(warnings.join("\n")).toMatch(/ca\.pem has no name constraints .*replacing it with a new CA limited to localhost, \*\.localhost, 127\.0\.0\.1, ::1/);
    expect(warnings.join("\n")).toMatch(/deleted 3 certificate\(s\) minted by the old local CA/);
    expect(store.caPem).not.toBe(new NodeX509Certificate(old.certPem).toString());
    expect(await readFile(path.join(dir, "ca.pem"), "utf8")).toBe(store.caPem);
    expect(new x509.X509Certificate(store.caPem).getExtension("2.5.29.30")?.critical).toBe(true);
    const caKey = await readFile(path.join(dir, "ca-key.pem"), "utf8");
    expect(caKey).not.toBe(old.keyPem);
    expect((await stat(path.join(dir, "ca-key.pem"))).mode & 0o777).toBe(0o600);
    expect(await readdir(hosts)).toEqual(["app.example.com.key", "app.example.com.pem"]);
    expect(store.stats.userCertificates).toBe(1);

    const port = await startServer(store);
    // The user certificate is served as before.
    expect(await fetchTls(port, "app.example.com", testCa.pem)).toMatchObject({ ok: true, san: "DNS:app.example.com", issuer: "Test User CA" });
    // The forged name gets the default certificate: verifies neither by name nor under the old CA.
    expect(await fetchTls(port, "login.microsoftonline.com", store.caPem)).toMatchObject({ ok: false, code: "ERR_TLS_CERT_ALTNAME_INVALID" });
    expect(await fetchTls(port, "login.microsoftonline.com", old.certPem)).toMatchObject({ ok: false });
    // Localhost names work under the new CA (and no longer under the old one).
    expect(await fetchTls(port, "blog.localhost", store.caPem)).toMatchObject({ ok: true, san: "DNS:blog.localhost" });
    expect(await fetchTls(port, "blog.localhost", old.certPem)).toMatchObject({ ok: false });
    expect(await fetchTls(port, undefined, store.caPem)).toMatchObject({ ok: true });

    // Re-opening keeps the new CA: no second replacement.
    const { store: again, warnings: w2 } = await openStore(dir);
    expect(again.caPem).toBe(store.caPem);
    expect(w2).toEqual([]);
  });
});

describe("CertificateStore: user certificates", () => {
  let testCa: TestCa;
  beforeAll(async () => {
    testCa = await makeTestCa();
  });

  it("installs a certificate for a host, serves it, and keeps it across restarts", async () => {
    const dir = freshDir();
    const { store } = await openStore(dir);
    const port = await startServer(store);
    const before = await fetchTls(port, "app.example.com", testCa.pem);
    expect(before).toMatchObject({ ok: false });

    const user = await makeUserCert(testCa, ["app.example.com"]);
    await store.installCertificate("App.Example.com", user.certPem, user.keyPem);
    const served = await fetchTls(port, "app.example.com", testCa.pem);
    expect(served).toMatchObject({ ok: true, san: "DNS:app.example.com", issuer: "Test User CA" });
    expect((await stat(path.join(dir, "hosts", "app.example.com.key"))).mode & 0o777).toBe(0o600);
    expect(store.stats.userCertificates).toBe(1);

    const { store: reopened, warnings } = await openStore(dir);
    expect(warnings).toEqual([]);
    expect(reopened.stats.userCertificates).toBe(1);
    const port2 = await startServer(reopened);
    expect(await fetchTls(port2, "app.example.com", testCa.pem)).toMatchObject({ ok: true, san: "DNS:app.example.com" });
  });

  it("takes precedence over a minted certificate", async () => {
    const dir = freshDir();
    const { store } = await openStore(dir);
    const port = await startServer(store);
    expect(await fetchTls(port, "shop.localhost", store.caPem)).toMatchObject({ ok: true, issuer: expect.stringMatching(/Zerocell/) });
    const user = await makeUserCert(testCa, ["shop.localhost"]);
    await store.installCertificate("shop.localhost", user.certPem, user.keyPem);
    expect(await fetchTls(port, "shop.localhost", testCa.pem)).toMatchObject({ ok: true, issuer: "Test User CA" });

    const { store: reopened } = await openStore(dir);
    const port2 = await startServer(reopened);
    expect(await fetchTls(port2, "shop.localhost", testCa.pem)).toMatchObject({ ok: true, issuer: "Test User CA" });
    expect(reopened.stats.minted).toBe(0);
  });

  it("serves a wildcard certificate for single-label subdomains only", async () => {
    const dir = freshDir();
    const { store } = await openStore(dir);
    const user = await makeUserCert(testCa, ["*.example.org"]);
    await store.installCertificate("*.example.org", user.certPem, user.keyPem);
    expect(await readdir(path.join(dir, "hosts"))).toEqual(["_wildcard.example.org.key", "_wildcard.example.org.pem"]);
    const port = await startServer(store);
    expect(await fetchTls(port, "x.example.org", testCa.pem)).toMatchObject({ ok: true, san: "DNS:*.example.org" });
    expect(await fetchTls(port, "a.b.example.org", testCa.pem)).toMatchObject({ ok: false });
    expect(await fetchTls(port, "example.org", testCa.pem)).toMatchObject({ ok: false });

    const { store: reopened } = await openStore(dir);
    const port2 = await startServer(reopened);
    expect(await fetchTls(port2, "y.example.org", testCa.pem)).toMatchObject({ ok: true, san: "DNS:*.example.org" });
  });

  it("rejects mismatched keys, certificates not covering the host, and junk", async () => {
    const dir = freshDir();
    const { store } = await openStore(dir);
    const a = await makeUserCert(testCa, ["a.example.com"]);
    const b = await makeUserCert(testCa, ["b.example.com"]);
    const wild = await makeUserCert(testCa, ["*.example.com"]);
    const expired = await makeUserCert(testCa, ["old.example.com"], {
      notBefore: new Date(Date.now() - 10 * 86400_000),
      notAfter: new Date(Date.now() - 86400_000),
    });

    await expect(store.installCertificate("a.example.com", a.certPem, b.keyPem)).rejects.toThrow(/private key does not match/);
    await expect(store.installCertificate("b.example.com", a.certPem, a.keyPem)).rejects.toThrow(/does not cover "b.example.com"/);
    await expect(store.installCertificate("*.example.com", a.certPem, a.keyPem)).rejects.toThrow(/does not cover "\*.example.com"/);
    await expect(store.installCertificate("*.other.com", wild.certPem, wild.keyPem)).rejects.toThrow(/does not cover/);
    await expect(store.installCertificate("x.y.example.com", wild.certPem, wild.keyPem)).rejects.toThrow(/does not cover/);
    await expect(store.installCertificate("old.example.com", expired.certPem, expired.keyPem)).rejects.toThrow(/expired/);
    await expect(store.installCertificate("a.example.com", "junk", a.keyPem)).rejects.toThrow(/no PEM certificate/);
    await expect(store.installCertificate("a.example.com", a.certPem, "junk")).rejects.toThrow(/not a valid PEM private key/);
    await expect(store.installCertificate("../../etc", a.certPem, a.keyPem)).rejects.toThrow(/not a valid host name/);
    await expect(store.installCertificate("a..example.com", a.certPem, a.keyPem)).rejects.toThrow(/not a valid host name/);
    const err = await store.installCertificate("b.example.com", a.certPem, a.keyPem).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).toMatchObject({ code: "bad_certificate", status: 400 });

    expect(await readdir(path.join(dir, "hosts"))).toEqual([]);
    // A wildcard certificate is fine for a single exact name it covers.
    await store.installCertificate("w.example.com", wild.certPem, wild.keyPem);
  });

  it("ignores a corrupt user certificate at open", async () => {
    const dir = freshDir();
    const { store } = await openStore(dir);
    const user = await makeUserCert(testCa, ["*.example.net"]);
    await store.installCertificate("*.example.net", user.certPem, user.keyPem);
    await writeFile(path.join(dir, "hosts", "_wildcard.example.net.pem"), "corrupt");
    const { store: reopened, warnings } = await openStore(dir);
    expect(reopened.stats.userCertificates).toBe(0);
    expect(warnings.join("\n")).toMatch(/_wildcard\.example\.net\.pem/);
  });
});

describe("CertificateStore: minting", () => {
  // Only that each name is minted once: how long a mint takes is not a test's claim (no bench
  // measures it yet).
  it("mints once per name, sequentially or in parallel; later lookups hit the cache", async () => {
    const { store } = await openStore(freshDir(), { mayMint: () => true });
    const n = 30;
    for (let i = 0; i < n; i++) await sni(store, `perf${i}.localhost`);
    await Promise.all(Array.from({ length: n }, (_, i) => sni(store, `par${i}.localhost`)));
    const minted = store.stats.minted;
    expect(minted).toBe(2 + 2 * n);
    for (let i = 0; i < 1000; i++) await sni(store, `perf${i % n}.localhost`);
    expect(store.stats.minted).toBe(minted);
  });
});
