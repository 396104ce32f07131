/**
 * The hostile tenant (issue 15): a host, with every path under it, belongs to one account
 * (src/router/hosts.ts). An ordinary account routes only names under ACCOUNT.BASE (here
 * ACCOUNT.localhost) and domains it verified or an admin assigned it. The attacker tries to
 * claim, shadow (a longer path on a foreign host, a wildcard over it, a subdomain of it) and
 * probe (error text differences) the victim's hosts and apps: every attempt fails with exactly
 * the answer a name nobody has gets, and the victim's traffic keeps reaching the victim.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { createAccount, json, startServer, fetchApp, admin, writeBundle, type TestServer } from "../helpers/server.js";
import { packDirectory } from "../../src/bundle/index.js";

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

/** An error answer with the asked name blanked out, to compare answers about different names. */
function answer(r: { status: number; json: any }, name: string): { status: number; code: unknown; message: string } {
  return { status: r.status, code: r.json?.error?.code, message: String(r.json?.error?.message).split(name).join("NAME") };
}

describe("hostile tenant: no claim, shadow or probe of another account's hosts and apps", { timeout: 180_000 }, () => {
  let server: TestServer;
  let victim = "";
  let attacker = "";

  beforeAll(async () => {
    server = await startServer(["--no-spare-hosts"]);
    victim = await createAccount(server, "victim");
    attacker = await createAccount(server, "attacker");
    // The victim's app on its own base name (no routes: APP.ACCOUNT.BASE) ...
    const first = await deploy(server, victim, "vshop", bundle("victim", []));
    expect(first.status, JSON.stringify(first.json)).toBe(201);
    expect(first.json.deployment.routes.map((r: { host: string }) => r.host)).toEqual(["vshop.victim.localhost"]);
    expect(first.json.url).toBe(`https://vshop.victim.localhost:${server.httpsPort}/`);
    // ... and on a domain an admin assigned it (the same standing as one it verified with ACME).
    expect((await admin(server, "PUT", "/v1/hosts/victim-shop.example", json({ account: "victim" }))).status).toBe(200);
    const v2 = await deploy(server, victim, "vshop", bundle("victim", [{ host: "vshop.victim.localhost", path: "/" }, { host: "victim-shop.example", path: "/" }, { host: "*.victim-shop.example", path: "/" }]));
    expect(v2.status, JSON.stringify(v2.json)).toBe(201);
  });
  afterAll(async () => {
    expect(await server.stop()).toBe(0);
  });

  it("claims and shadows of the victim's hosts get the answer of a name nobody holds", async () => {
    const nobody = answer(await deploy(server, attacker, "grab", bundle("attacker", [{ host: "nobody-has-this.example", path: "/" }])), "nobody-has-this.example");
    expect(nobody).toMatchObject({ status: 409, code: "host_unavailable" });
    const attempts: Array<{ host: string; path: string; key?: string }> = [
      { host: "vshop.victim.localhost", path: "/login" },
      { host: "vshop.victim.localhost", path: "/:anything" },
      { host: "vshop.victim.localhost", path: "/cart/:user", key: "user" },
      { host: "vshop.victim.localhost", path: "/" },
      { host: "*.victim.localhost", path: "/" },
      { host: "evil.vshop.victim.localhost", path: "/" },
      { host: "a.b.victim.localhost", path: "/" },
      { host: "ghost.victim.localhost", path: "/" },
      { host: "victim-shop.example", path: "/admin" },
      { host: "*.victim-shop.example", path: "/" },
      { host: "api.victim-shop.example", path: "/" },
      { host: "vshop.localhost", path: "/" },
      { host: "victim.localhost", path: "/" },
      { host: "x.no-such-account.localhost", path: "/" },
    ];
    for (const route of attempts) {
      const r = await deploy(server, attacker, "grab", bundle("attacker", [route]));
      expect(answer(r, route.host), JSON.stringify(route)).toEqual(nobody);
      expect(JSON.stringify(r.json)).not.toMatch(/victim"|vshop"|account "victim/);
    }
    // Through --host too.
    for (const h of ["vshop.victim.localhost", "victim-shop.example", "nobody-has-this.example"]) {
      expect(answer(await deploy(server, attacker, "grabflag", bundle("attacker", [{ host: "grabflag.attacker.localhost", path: "/" }]), [h]), h)).toEqual(nobody);
    }
    // The victim's login POST and every path still reach the victim's app.
    expect((await fetchApp(server, "vshop.victim.localhost", "/login", { method: "POST", body: "password=hunter2" })).text).toBe("victim:POST:password=hunter2");
    expect((await fetchApp(server, "vshop.victim.localhost", "/cart/alice")).text).toBe("victim:GET:");
    expect((await fetchApp(server, "api.victim-shop.example", "/", { scheme: "http" })).text).toBe("victim:GET:");
    // Nothing of it was routed.
    const routes = (await admin(server, "GET", "/v1/routes")).json.routes as Array<{ app: string }>;
    expect(routes.map((r) => r.app)).not.toContain("grab");
  });

  it("refuses the catch-all, wildcards over the platform's domain and public suffixes", async () => {
    for (const host of ["*", "*.localhost", "localhost", "*.com", "com", "*.co.uk", "github.io", "*.github.io"]) {
      const r = await deploy(server, attacker, "wild", bundle("attacker", [{ host, path: "/" }]));
      expect(r.status, host).toBe(409);
      expect(r.json.error.code, host).toBe("host_reserved");
    }
    expect((await fetchApp(server, "unrouted.localhost", "/")).status).toBe(404);
  });

  it("probing another account's apps answers like an app that does not exist", async () => {
    const probes: Array<[string, string, string?]> = [
      ["GET", "/v1/apps/NAME/deployments"],
      ["POST", "/v1/apps/NAME/rollback", "{}"],
      ["GET", "/v1/apps/NAME/logs"],
      ["GET", "/v1/apps/NAME/stats"],
      ["GET", "/v1/apps/NAME/keys"],
      ["DELETE", "/v1/apps/NAME"],
    ];
    for (const [method, path, body] of probes) {
      const call = (name: string) => admin(server, method, path.replace("NAME", name), { token: attacker, ...(body === undefined ? {} : json({})) });
      expect(answer(await call("vshop"), "vshop"), `${method} ${path}`).toEqual(answer(await call("no-such-app"), "no-such-app"));
    }
    // Deploying under the victim's app name never reaches the victim's app.
    const take = await deploy(server, attacker, "vshop", bundle("attacker", [{ host: "vshop.attacker.localhost", path: "/" }]));
    expect(take.status).toBe(404);
    expect(answer(take, "vshop")).toEqual(answer(await admin(server, "GET", "/v1/apps/no-such-app/deployments", { token: attacker }), "no-such-app"));
    expect((await fetchApp(server, "vshop.victim.localhost", "/")).text).toBe("victim:GET:");
    // Domains: another account's domain answers like a name that cannot be added at all.
    const dom = (host: string) => admin(server, "POST", "/v1/domains", { token: attacker, ...json({ host }) });
    // No --acme-directory on this server: every add is refused, but ownership is checked first.
    expect(answer(await dom("victim-shop.example"), "victim-shop.example")).toEqual(answer(await dom("x.victim.localhost"), "x.victim.localhost"));
    expect(answer(await dom("api.victim-shop.example"), "api.victim-shop.example")).toEqual(answer(await dom("x.victim.localhost"), "x.victim.localhost"));
    // Listings show only the attacker's own.
    for (const path of ["/v1/hosts", "/v1/routes", "/v1/domains", "/v1/apps"]) {
      expect(JSON.stringify((await admin(server, "GET", path, { token: attacker })).json), path).not.toMatch(/victim|vshop/);
    }
  });

  it("an account routes its own names: APP.ACCOUNT.BASE, wildcards and subdomains under it", async () => {
    const r = await deploy(server, attacker, "mine", bundle("attacker", [{ host: "mine.attacker.localhost", path: "/" }, { host: "*.attacker.localhost", path: "/" }, { host: "api.mine.attacker.localhost", path: "/v1" }]));
    expect(r.status, JSON.stringify(r.json)).toBe(201);
    expect((await fetchApp(server, "x.attacker.localhost", "/")).text).toBe("attacker:GET:");
    expect((await fetchApp(server, "api.mine.attacker.localhost", "/v1")).text).toBe("attacker:GET:");
    // The wildcard covers only the attacker's names: the victim's stay the victim's.
    expect((await fetchApp(server, "vshop.victim.localhost", "/")).text).toBe("victim:GET:");
    // A CLI deploy prints the app's URL.
    const cli = await server.cli(["deploy", bundle("platform", []), "--app", "plain"]);
    expect(cli.stdout).toContain(`https://plain.localhost:${server.httpsPort}/`);
  });

  it("an admin assigns a free domain; never a name in an account's namespace; account names cannot take a used namespace", async () => {
    expect((await admin(server, "PUT", "/v1/hosts/assigned.example", json({ account: "victim" }))).status).toBe(200);
    expect((await deploy(server, attacker, "takeassigned", bundle("attacker", [{ host: "assigned.example", path: "/" }]))).status).toBe(409);
    const vassigned = await deploy(server, victim, "vassigned", bundle("victim", [{ host: "assigned.example", path: "/" }]));
    expect(vassigned.status, JSON.stringify(vassigned.json)).toBe(201);
    const busy = await admin(server, "PUT", "/v1/hosts/victim-shop.example", json({ account: "attacker" }));
    expect(busy.status).toBe(409);
    expect(busy.json.error.code).toBe("host_in_use");
    const zone = await admin(server, "PUT", "/v1/hosts/x.victim.localhost", json({ account: "attacker" }));
    expect(zone.status).toBe(409);
    // Tenants cannot assign.
    expect((await admin(server, "PUT", "/v1/hosts/free.example", { token: attacker, ...json({ account: "attacker" }) })).status).toBe(403);
    // The admin's default account routes api.later.localhost; an account named "later" would
    // inherit it, so it cannot be created.
    expect((await deploy(server, server.token, "later-app", bundle("platform", [{ host: "api.later.localhost", path: "/" }]))).status).toBe(201);
    const later = await admin(server, "POST", "/v1/accounts", json({ name: "later" }));
    expect(later.status).toBe(409);
    expect(later.json.error.code).toBe("account_name_in_use");
  });

  it("an admin token may still route the catch-all for the platform's own account", async () => {
    const r = await deploy(server, server.token, "catchall", bundle("platform", [{ host: "*", path: "/" }]));
    expect(r.status).toBe(201);
    expect((await fetchApp(server, "anything-else.localhost", "/")).text).toBe("platform:GET:");
    // Hosts held by accounts still go to them, not to the catch-all.
    expect((await fetchApp(server, "vshop.victim.localhost", "/")).text).toBe("victim:GET:");
  });
});
