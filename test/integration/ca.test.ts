/**
 * The local CA users are told to trust can only vouch for localhost names: a tenant routing a
 * real site's host name gets no certificate for it that verifies against ca.pem, and a data dir
 * with an older, unconstrained CA gets a new one at start.
 */
import { describe, it, expect, afterEach } from "vitest";
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, readdirSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { startServer, fetchApp, admin, phpBundle, cleanup, type TestServer } from "../helpers/server.js";
import { makeUnconstrainedCa, signLeaf } from "../helpers/certs.js";

const FOREIGN = "login.microsoftonline.com";

/** TLS handshake with SNI `servername`, verifying against `ca`; the presented leaf's SANs either way. */
function handshake(server: TestServer, servername: string, ca: string): Promise<{ authorized: boolean; error: string | null; san: string | undefined }> {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: "127.0.0.1", port: server.httpsPort, servername, ca, rejectUnauthorized: false }, () => {
      const cert = sock.getPeerCertificate();
      // Chain (authorizationError) and name: what an HTTPS client checks before it sends anything.
      const nameError = tls.checkServerIdentity(servername, cert);
      const error = sock.authorized ? (nameError === undefined ? null : nameError.message) : String(sock.authorizationError);
      resolve({ authorized: sock.authorized && nameError === undefined, error, san: cert.subjectaltname });
      sock.end();
    });
    sock.once("error", reject);
  });
}

async function packed(dir: string): Promise<Buffer> {
  const { packDirectory } = await import("../../src/bundle/index.js");
  return packDirectory(dir);
}

describe("local CA: only localhost names", () => {
  const servers: TestServer[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) {
      expect(await s.stop()).toBe(0);
      cleanup(s.dataDir);
    }
  });

  it("a tenant routing login.microsoftonline.com gets no certificate for it that verifies against ca.pem", async () => {
    const server = await startServer(["--no-spare-hosts"]);
    servers.push(server);
    const tenant = (await admin(server, "POST", "/v1/accounts", { body: JSON.stringify({ name: "mallory" }), contentType: "application/json" })).json.token;
    // A tenant routes a foreign name only once it holds it (here: assigned by an admin, as if verified).
    expect((await admin(server, "PUT", `/v1/hosts/${FOREIGN}`, { body: JSON.stringify({ account: "mallory" }), contentType: "application/json" })).status).toBe(200);
    const up = await admin(server, "POST", `/v1/apps/phish/deployments?host=${FOREIGN}`, { token: tenant, body: await packed(phpBundle("phish.mallory.localhost", { "index.php": "<?php echo 'phish';" })), contentType: "application/gzip" });
    expect(up.status).toBe(201);
    // The route is live (over plain HTTP), so the gateway would mint for it if the CA allowed it.
    expect((await fetchApp(server, FOREIGN, "/", { scheme: "http" })).text).toBe("phish");

    const r = await handshake(server, FOREIGN, server.ca);
    expect(r.authorized).toBe(false);
    expect(r.san).toBe("DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1");
    await expect(fetchApp(server, FOREIGN, "/")).rejects.toMatchObject({ code: "ERR_TLS_CERT_ALTNAME_INVALID" });
    expect(existsSync(join(server.dataDir, "certs", "hosts", `${FOREIGN}.pem`))).toBe(false);

    // Even a leaf signed with the server's own CA key for that name does not verify (name constraints).
    const forged = await signLeaf(server.ca, readFileSync(join(server.dataDir, "certs", "ca-key.pem"), "utf8"), [{ type: "dns", value: FOREIGN }]);
    const forgedServer = tls.createServer({ cert: forged.certPem, key: forged.keyPem }, (s) => s.end());
    await new Promise<void>((res) => forgedServer.listen(0, "127.0.0.1", res));
    try {
      const port = (forgedServer.address() as { port: number }).port;
      const err = await new Promise<Error & { code?: string }>((resolve) => {
        const sock = tls.connect({ host: "127.0.0.1", port, servername: FOREIGN, ca: server.ca }, () => resolve(Object.assign(new Error("verified"), { code: "VERIFIED" })));
        sock.once("error", resolve);
      });
      expect(err.message).toBe("permitted subtree violation");
    } finally {
      forgedServer.close();
    }

    // localhost names still verify, over HTTPS, end to end.
    const own = await handshake(server, "phish.mallory.localhost", server.ca);
    expect(own).toMatchObject({ authorized: true, san: "DNS:phish.mallory.localhost" });
    expect((await fetchApp(server, "phish.mallory.localhost", "/")).text).toBe("phish");
  });

  it("a data dir with an unconstrained CA gets a new constrained one at start; what the old one minted is gone", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "zc-test-"));
    const hosts = join(dataDir, "certs", "hosts");
    mkdirSync(hosts, { recursive: true });
    const old = await makeUnconstrainedCa();
    writeFileSync(join(dataDir, "certs", "ca.pem"), old.certPem);
    writeFileSync(join(dataDir, "certs", "ca-key.pem"), old.keyPem, { mode: 0o600 });
    const leaf = await signLeaf(old.certPem, old.keyPem, [{ type: "dns", value: FOREIGN }]);
    writeFileSync(join(hosts, `${FOREIGN}.pem`), leaf.certPem);
    writeFileSync(join(hosts, `${FOREIGN}.key`), leaf.keyPem, { mode: 0o600 });

    const server = await startServer(["--no-spare-hosts"], { dataDir });
    servers.push(server);
    expect(server.output()).toMatch(/has no name constraints .*replacing it with a new CA limited to localhost/);
    expect(server.ca).not.toBe(old.certPem);
    expect(readdirSync(hosts)).toEqual([]);
    expect((await admin(server, "POST", `/v1/apps/phish/deployments?host=${FOREIGN}`, { body: await packed(phpBundle("phish.localhost", { "index.php": "<?php echo 'phish';" })), contentType: "application/gzip" })).status).toBe(201);
    for (const ca of [server.ca, old.certPem]) {
      const r = await handshake(server, FOREIGN, ca);
      expect(r.authorized).toBe(false);
      expect(r.san).not.toContain(FOREIGN);
    }
    expect(await handshake(server, "phish.localhost", server.ca)).toMatchObject({ authorized: true });
  });
});
