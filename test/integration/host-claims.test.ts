/**
 * A host, with every path under it, belongs to one account (src/router/hosts.ts). The red team's
 * takeover, replayed against the real server: an attacker account declares paths on a host
 * another account serves (/login, /:anything, a keyed /cart/:user, /admin before the owner),
 * wildcards over it, "*", "*.localhost" and public suffixes — every one refused, and the victim's
 * login POSTs and keys keep reaching the victim.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { startServer, fetchApp, admin, writeBundle, type TestServer } from "../helpers/server.js";
import { packDirectory } from "../../src/bundle/index.js";

const json = (o: unknown) => ({ body: JSON.stringify(o), contentType: "application/json" });

function bundle(who: string, routes: Array<{ host: string; path: string; key?: string }>): string {
  const toml = routes.map((r) => `[[routes]]\nhost = "${r.host}"\npath = "${r.path}"\n${r.key === undefined ? "" : `key = "${r.key}"\n`}`).join("");
  return writeBundle({
    "zerocell.toml": `runtime = "php"\n[php]\ndocument_root = "public"\nfront_controller = "index.php"\n${toml}`,
    "public/index.php": `<?php echo '${who}:' . $_SERVER['REQUEST_METHOD'] . ':' . file_get_contents('php://input');`,
  });
}

async function deploy(server: TestServer, token: string, app: string, dir: string, hosts: string[] = []) {
  const q = hosts.length === 0 ? "" : "?" + hosts.map((h) => `host=${encodeURIComponent(h)}`).join("&");
  return admin(server, "POST", `/v1/apps/${app}/deployments${q}`, { token, body: await packDirectory(dir), contentType: "application/gzip" });
}

describe("hosts belong to one account: no path takeover, no wildcard or public-suffix grabs", () => {
  let server: TestServer;
  let victim = "";
  let attacker = "";

  beforeAll(async () => {
    server = await startServer(["--no-spare-hosts"]);
    victim = (await admin(server, "POST", "/v1/accounts", json({ name: "victim" }))).json.token;
    attacker = (await admin(server, "POST", "/v1/accounts", json({ name: "attacker" }))).json.token;
    const r = await deploy(server, victim, "vshop", bundle("victim", [{ host: "vshop.localhost", path: "/" }]));
    expect(r.status).toBe(201);
  });
  afterAll(async () => {
    expect(await server.stop()).toBe(0);
  });

  it("refuses every route of another account on a host the victim holds, and the victim keeps its traffic", async () => {
    const attempts: Array<Array<{ host: string; path: string; key?: string }>> = [
      [{ host: "vshop.localhost", path: "/login" }],
      [{ host: "vshop.localhost", path: "/:anything" }],
      [{ host: "vshop.localhost", path: "/cart/:user", key: "user" }],
      [{ host: "vshop.localhost", path: "/admin" }],
      [{ host: "*.vshop.localhost", path: "/" }],
      [{ host: "evil.vshop.localhost", path: "/" }],
      [{ host: "a.b.vshop.localhost", path: "/" }],
    ];
    for (const [i, routes] of attempts.entries()) {
      const r = await deploy(server, attacker, `grab${i}`, bundle("attacker", routes));
      expect(r.status, JSON.stringify(routes)).toBe(409);
      expect(r.json.error.code).toBe("host_unavailable");
      // Nothing names the victim's account or app.
      expect(JSON.stringify(r.json)).not.toMatch(/victim|vshop"/);
    }
    // Through --host too.
    const viaFlag = await deploy(server, attacker, "grabflag", bundle("attacker", [{ host: "attacker-own.localhost", path: "/" }]), ["vshop.localhost"]);
    expect(viaFlag.status).toBe(409);
    // The victim's login POST and every path still reach the victim's app.
    const login = await fetchApp(server, "vshop.localhost", "/login", { method: "POST", body: "password=hunter2" });
    expect(login.text).toBe("victim:POST:password=hunter2");
    expect((await fetchApp(server, "vshop.localhost", "/cart/alice")).text).toBe("victim:GET:");
    // The owner adds /admin later without a conflict.
    const more = await deploy(server, victim, "vshop", bundle("victim", [{ host: "vshop.localhost", path: "/" }, { host: "vshop.localhost", path: "/admin" }]));
    expect(more.status).toBe(201);
  });

  it("refuses the catch-all, wildcards over the platform's domain and public suffixes to tenants", async () => {
    const cases: Array<[string, string]> = [
      ["*", "host_reserved"],
      ["*.localhost", "host_reserved"],
      ["localhost", "host_reserved"],
      ["*.com", "host_reserved"],
      ["com", "host_reserved"],
      ["*.co.uk", "host_reserved"],
      ["github.io", "host_reserved"],
      ["*.github.io", "host_reserved"],
    ];
    for (const [host, code] of cases) {
      const r = await deploy(server, attacker, "wild", bundle("attacker", [{ host, path: "/" }]));
      expect(r.status, host).toBe(409);
      expect(r.json.error.code, host).toBe(code);
    }
    // Nothing of it was claimed or routed.
    const routes = (await admin(server, "GET", "/v1/routes")).json.routes as Array<{ host: string }>;
    expect(routes.map((r) => r.host)).not.toContain("*");
    expect((await fetchApp(server, "unrouted.localhost", "/")).status).toBe(404);
  });

  it("lets an account route its own hosts, wildcards under them and subdomains, and lists what it holds", async () => {
    const r = await deploy(server, attacker, "mine", bundle("attacker", [{ host: "mine.localhost", path: "/" }, { host: "*.mine.localhost", path: "/" }, { host: "api.mine.localhost", path: "/v1" }]));
    expect(r.status).toBe(201);
    expect((await fetchApp(server, "x.mine.localhost", "/")).text).toBe("attacker:GET:");
    const held = await admin(server, "GET", "/v1/hosts", { token: attacker });
    expect(held.status).toBe(200);
    expect(held.json.hosts.map((h: { host: string }) => h.host).sort()).toEqual(["api.mine.localhost", "mine.localhost"]);
    // A tenant sees only its own.
    expect(JSON.stringify(held.json)).not.toContain("vshop");
  });

  it("an admin assigns a free host to an account; a host another account routes is not moved", async () => {
    const a = await admin(server, "PUT", "/v1/hosts/assigned.localhost", json({ account: "victim" }));
    expect(a.status).toBe(200);
    expect((await deploy(server, attacker, "takeassigned", bundle("attacker", [{ host: "assigned.localhost", path: "/" }]))).status).toBe(409);
    expect((await deploy(server, victim, "vassigned", bundle("victim", [{ host: "assigned.localhost", path: "/" }]))).status).toBe(201);
    const busy = await admin(server, "PUT", "/v1/hosts/vshop.localhost", json({ account: "attacker" }));
    expect(busy.status).toBe(409);
    expect(busy.json.error.code).toBe("host_in_use");
    // Tenants cannot assign.
    expect((await admin(server, "PUT", "/v1/hosts/free.localhost", { token: attacker, ...json({ account: "attacker" }) })).status).toBe(403);
  });

  it("an admin token may still route the catch-all for the platform's own account", async () => {
    const r = await deploy(server, server.token, "catchall", bundle("platform", [{ host: "*", path: "/" }]));
    expect(r.status).toBe(201);
    expect((await fetchApp(server, "anything-else.localhost", "/")).text).toBe("platform:GET:");
    // Hosts held by accounts still go to them, not to the catch-all.
    expect((await fetchApp(server, "vshop.localhost", "/")).text).toBe("victim:GET:");
  });
});
