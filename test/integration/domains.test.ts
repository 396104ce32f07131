/**
 * Domains through ACME, end to end against Debian's pebble on loopback (issue 15): `domains add`
 * runs a real HTTP-01 order — pebble resolves the name through a test DNS responder (every name
 * → 127.0.0.1, except names starting "elsewhere." → 127.0.0.2, where nothing listens) and fetches
 * the challenge from the gateway's HTTP listener. On success the domain is the account's, its
 * certificate (chained to pebble's root) is served for SNI, and the background check renews it
 * before it expires (pebble issues 30-second certificates here). Another account can neither add
 * nor route it, nor a name under it, and gets the answer a name nobody holds gets.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import tls from "node:tls";
import { X509Certificate } from "node:crypto";
import { createAccount, json, startServer, fetchApp, admin, phpBundle, type TestServer } from "../helpers/server.js";
import { preparePebble, startDnsResponder, type Pebble } from "../helpers/pebble.js";
import { packDirectory } from "../../src/bundle/index.js";
import { DomainSchema } from "../../src/gateway/admin/domains.js";

/** The certificate the gateway serves for `servername`, verified against `ca`. */
function servedCertificate(server: TestServer, servername: string, ca: string): Promise<{ authorized: boolean; error?: string; serial: string; validTo: string }> {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: "127.0.0.1", port: server.httpsPort, servername, ca, rejectUnauthorized: false }, () => {
      const raw = sock.getPeerCertificate().raw;
      const cert = new X509Certificate(raw);
      resolve({ authorized: sock.authorized, ...(sock.authorizationError === null ? {} : { error: String(sock.authorizationError) }), serial: cert.serialNumber, validTo: cert.validTo });
      sock.end();
    });
    sock.on("error", reject);
  });
}

describe("domains: ACME HTTP-01 against pebble, certificates installed and renewed", () => {
  let server: TestServer;
  let pebble: Pebble;
  let dns: Awaited<ReturnType<typeof startDnsResponder>>;
  let alice = "";
  let mallory = "";

  beforeAll(async () => {
    dns = await startDnsResponder((name) => (name.startsWith("elsewhere.") ? "127.0.0.2" : "127.0.0.1"));
    const prepared = await preparePebble();
    server = await startServer(["--no-spare-hosts", "--acme-directory", prepared.directoryUrl, "--acme-ca-file", prepared.tlsCaFile, "--acme-renew-check-ms", "1000"]);
    pebble = await prepared.start({ validationHttpPort: server.httpPort, dnsPort: dns.port, certValiditySeconds: 30 });
    alice = await createAccount(server, "alice");
    mallory = await createAccount(server, "mallory");
  }, 120_000);
  afterAll(async () => {
    expect(await server.stop()).toBe(0);
    await pebble?.stop();
    await dns?.close();
  });

  it("a tenant cannot route a domain it has not verified", async () => {
    const r = await admin(server, "POST", "/v1/apps/early/deployments?host=shop.test", { token: alice, body: await packDirectory(phpBundle("early.alice.localhost", { "index.php": "<?php echo 'early';" })), contentType: "application/gzip" });
    expect(r.status).toBe(409);
    expect(r.json.error.code).toBe("host_unavailable");
  });

  it("domains add proves control through the gateway's HTTP listener and installs the issued certificate", async () => {
    const added = await admin(server, "POST", "/v1/domains", { token: alice, ...json({ host: "shop.test" }) });
    expect(added.status, JSON.stringify(added.json) + pebble.output()).toBe(201);
    expect(added.json.domain).toMatchObject({ host: "shop.test", status: "active", error: null });
    expect(added.json.domain.account).toBeUndefined();
    // The answer is the shape the OpenAPI document declares (no field more or less).
    expect(DomainSchema.strict().safeParse(added.json.domain).error).toBeUndefined();
    expect(added.json.url).toBe(`https://shop.test:${server.httpsPort}/`);
    // Pebble really fetched the challenge from the gateway (no always-valid mode here).
    expect(pebble.output()).toMatch(/shop\.test/);
    // The certificate served for shop.test chains to pebble's root.
    const root = await pebble.root();
    const served = await servedCertificate(server, "shop.test", root);
    expect(served).toMatchObject({ authorized: true });
    // Now the account routes it, names under it and a wildcard inside it.
    const dir = phpBundle("shop.test", { "index.php": "<?php echo 'alice-shop:' . $_SERVER['HTTP_HOST'];" }, "");
    const up = await admin(server, "POST", "/v1/apps/shop/deployments?host=api.shop.test&host=*.shop.test", { token: alice, body: await packDirectory(dir), contentType: "application/gzip" });
    expect(up.status, JSON.stringify(up.json)).toBe(201);
    expect(up.json.url).toBe(`https://shop.test:${server.httpsPort}/`);
    expect((await fetchApp(server, "shop.test", "/", { scheme: "http" })).text).toBe("alice-shop:shop.test");
    expect((await fetchApp(server, "x.shop.test", "/", { scheme: "http" })).text).toBe("alice-shop:x.shop.test");
    const list = await admin(server, "GET", "/v1/domains", { token: alice });
    expect(list.json.domains.map((d: { host: string }) => d.host)).toEqual(["shop.test"]);
    expect(list.json.next_cursor).toBeNull();
    const asAdmin = (await admin(server, "GET", "/v1/domains?account=alice")).json.domains;
    expect(asAdmin).toMatchObject([{ host: "shop.test", account: "alice" }]);
    expect(DomainSchema.strict().safeParse(asAdmin[0]).error).toBeUndefined();
    expect((await admin(server, "GET", "/v1/domains", { token: mallory })).json.domains).toEqual([]);
  }, 120_000);

  it("another account can neither add nor route the domain or a name under it, and learns nothing", async () => {
    const refusal = async (host: string) => {
      const r = await admin(server, "POST", "/v1/domains", { token: mallory, ...json({ host }) });
      return { status: r.status, code: r.json.error?.code, message: String(r.json.error?.message).replace(host, "HOST") };
    };
    // A name nobody holds but under the base domain: the refusal every foreign name must match.
    const baseline = await refusal("x.alice.localhost");
    expect(baseline).toMatchObject({ status: 409, code: "domain_unavailable" });
    for (const host of ["shop.test", "api.shop.test", "deep.api.shop.test", "SHOP.TEST"]) expect(await refusal(host.toLowerCase()), host).toEqual(baseline);
    // Routes: the verified host, a longer path on it, a wildcard over it, a subdomain — all the
    // same host_unavailable a never-verified name gets.
    const deployAs = async (host: string, path = "/") => {
      const dir = phpBundle("m.mallory.localhost", { "index.php": "<?php echo 'mallory';" }, `[[routes]]\nhost = "${host}"\npath = "${path}"\n`);
      const r = await admin(server, "POST", `/v1/apps/mgrab/deployments`, { token: mallory, body: await packDirectory(dir), contentType: "application/gzip" });
      return { status: r.status, code: r.json.error?.code, message: String(r.json.error?.message).replace(`"${host}"`, '"HOST"') };
    };
    const unverified = await deployAs("never-verified.test");
    expect(unverified).toMatchObject({ status: 409, code: "host_unavailable" });
    for (const [host, path] of [["shop.test", "/login"], ["shop.test", "/"], ["*.shop.test", "/"], ["api.shop.test", "/"], ["new.shop.test", "/"], ["*.test", "/"]] as const) {
      const got = await deployAs(host, path);
      if (host === "*.test") expect(got.code).toBe("host_reserved");
      else expect(got, host).toEqual(unverified);
    }
    // Removing another account's domain is the 404 of a domain that does not exist.
    const del = await admin(server, "DELETE", "/v1/domains/shop.test", { token: mallory });
    const none = await admin(server, "DELETE", "/v1/domains/nothing.test", { token: mallory });
    expect(del.status).toBe(404);
    expect(del.json.error.message.replace("shop.test", "X")).toBe(none.json.error.message.replace("nothing.test", "X"));
    expect((await fetchApp(server, "shop.test", "/login", { scheme: "http" })).text).toBe("alice-shop:shop.test");
  });

  it("a domain whose DNS does not point at this server is never granted", async () => {
    const r = await admin(server, "POST", "/v1/domains", { token: mallory, ...json({ host: "elsewhere.example.test" }) });
    expect(r.status, JSON.stringify(r.json)).toBe(502);
    expect(r.json.error.code).toBe("domain_order_failed");
    const listed = (await admin(server, "GET", "/v1/domains", { token: mallory })).json.domains;
    expect(listed).toMatchObject([{ host: "elsewhere.example.test", status: "failed" }]);
    const dir = phpBundle("elsewhere.example.test", { "index.php": "<?php echo 'no';" });
    expect((await admin(server, "POST", "/v1/apps/else/deployments", { token: mallory, body: await packDirectory(dir), contentType: "application/gzip" })).status).toBe(409);
  }, 120_000);

  it("renews the certificate before it expires (30-second certificates, checked every second)", async () => {
    const root = await pebble.root();
    const first = await servedCertificate(server, "shop.test", root);
    const before = (await admin(server, "GET", "/v1/domains", { token: alice })).json.domains[0];
    await expect
      .poll(async () => (await admin(server, "GET", "/v1/domains", { token: alice })).json.domains[0].certNotAfter, { timeout: 90_000, interval: 1000 })
      .not.toBe(before.certNotAfter);
    const renewed = await servedCertificate(server, "shop.test", root);
    expect(renewed.authorized).toBe(true);
    expect(renewed.serial).not.toBe(first.serial);
    expect(Date.parse(renewed.validTo)).toBeGreaterThan(Date.parse(first.validTo));
  }, 120_000);

  it("domains remove: refused while routed; then the host is free and its certificate is gone", async () => {
    const busy = await admin(server, "DELETE", "/v1/domains/shop.test", { token: alice });
    expect(busy.status).toBe(409);
    expect(busy.json.error.code).toBe("host_in_use");
    expect((await admin(server, "DELETE", "/v1/apps/shop", { token: alice })).status).toBe(200);
    const gone = await admin(server, "DELETE", "/v1/domains/shop.test", { token: alice });
    expect(gone.status, JSON.stringify(gone.json)).toBe(200);
    expect((await admin(server, "GET", "/v1/domains", { token: alice })).json.domains).toEqual([]);
    const root = await pebble.root();
    expect((await servedCertificate(server, "shop.test", root)).authorized).toBe(false);
    // The CLI lists (empty) without error, and fails with the CLI's exit codes and --json shape.
    expect((await server.cli(["domains", "list"])).stdout).toContain("HOST");
    const missing = await server.cli(["domains", "remove", "nothing.test", "--json"], { allowFail: true });
    expect(missing.code).toBe(3);
    expect(JSON.parse(missing.stdout).error.code).toBe("domain_not_found");
    const taken = await server.cli(["domains", "add", "x.alice.localhost"], { allowFail: true });
    expect(taken.code).toBe(6);
    expect(taken.stderr).toContain("domain_unavailable");
  }, 120_000);
});
