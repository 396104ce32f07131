import { describe, it, expect, beforeAll, afterAll, vi } from "vitest";
import { statSync, readFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { startServer, phpBundle, fetchApp, admin, isAlive, type TestServer } from "../helpers/server.js";

/** The usage records of these request ids (x-request-id of each response). */
function usageRecordsOf(dataDir: string, requestIds: string[]): Array<Record<string, unknown>> {
  const db = new Database(join(dataDir, "zerocell.db"), { readonly: true });
  try {
    return db.prepare(`SELECT * FROM usage_records WHERE request_id IN (${requestIds.map(() => "?").join(", ")}) ORDER BY id`).all(...requestIds) as Array<Record<string, unknown>>;
  } finally {
    db.close();
  }
}

describe("walking skeleton: deploy a PHP bundle and serve it over HTTPS", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("creates the data dir: server.json, admin token 0600, CA", () => {
    const info = JSON.parse(readFileSync(join(server.dataDir, "run", "server.json"), "utf8"));
    expect(info.pid).toBe(server.proc.pid);
    expect(info.https).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(info.http).toMatch(/^http:\/\//);
    expect(info.admin).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(statSync(join(server.dataDir, "admin-token")).mode & 0o777).toBe(0o600);
    expect(server.ca).toContain("BEGIN CERTIFICATE");
    expect(server.output()).toMatch(/zerocell listening: http .* https .* admin /);
  });

  it("deploys with the CLI and serves the app at its host right after, verified against the CA", async () => {
    const dir = phpBundle("skel.localhost", {
      "index.php": `<?php
header('Content-Type: application/json');
setcookie('a', '1'); setcookie('b', '2');
echo json_encode([
  'uri' => $_SERVER['REQUEST_URI'], 'https' => $_SERVER['HTTPS'] ?? null, 'remote' => $_SERVER['REMOTE_ADDR'],
  'name' => $_SERVER['SERVER_NAME'], 'method' => $_SERVER['REQUEST_METHOD'], 'get' => $_GET, 'post' => $_POST,
  'cookie' => $_COOKIE, 'ua' => $_SERVER['HTTP_USER_AGENT'] ?? null, 'raw' => file_get_contents('php://input'),
]);`,
    });
    const out = await server.cli(["deploy", dir, "--app", "skel", "--host", "skel2.localhost"]);
    expect(out.stdout).toMatch(/deployed skel v1 \(dep_/);
    expect(out.stdout).toContain("skel.localhost/");
    const res = await fetchApp(server, "skel.localhost", "/index.php?x=1&y=two", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", cookie: "c=3; d=4", "user-agent": "zc-test" },
      body: "p=hello&q=world",
    });
    // Reachable right after deploy (first request waits for the first instance); how long that
    // takes is measured by bench/run.mjs, not here.
    expect(res.status).toBe(200);
    const j = JSON.parse(res.text);
    expect(j).toMatchObject({ uri: "/index.php?x=1&y=two", https: "on", remote: "127.0.0.1", name: "skel.localhost", method: "POST", get: { x: "1", y: "two" }, post: { p: "hello", q: "world" }, cookie: { c: "3", d: "4" }, ua: "zc-test" });
    // Repeated Set-Cookie headers stay separate.
    expect(res.headers["set-cookie"]).toEqual(["a=1", "b=2"]);
    expect(res.headers["x-zerocell-instance"]).toMatch(/^snapshot; /);
    expect(res.headers["server-timing"]).toMatch(/acquire;dur=[\d.]+, run;dur=[\d.]+, (?:[a-z]+;dur=[\d.]+, )*total;dur=[\d.]+/);
    // The --host route serves the same app; plain HTTP says HTTPS is off.
    const plain = await fetchApp(server, "skel2.localhost", "/", { scheme: "http" });
    expect(plain.status).toBe(200);
    expect(JSON.parse(plain.text).https).not.toBe("on");
  });

  it("frames responses itself: an app's Content-Length and hop-by-hop headers are dropped, HEAD has no body", async () => {
    await server.cli(["deploy", phpBundle("framing.localhost", { "index.php": "<?php header('Content-Length: 3'); header('Connection: upgrade'); header('X-Zerocell-Instance: forged'); header('X-App: yes'); echo 'hello world';" }), "--app", "framing"]);
    const get = await fetchApp(server, "framing.localhost", "/");
    expect(get.status).toBe(200);
    expect(get.text).toBe("hello world");
    expect(get.headers["content-length"]).toBe("11");
    expect(get.headers["x-app"]).toBe("yes");
    expect(get.headers["x-zerocell-instance"]).toMatch(/^snapshot; /);
    const head = await fetchApp(server, "framing.localhost", "/", { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.body.length).toBe(0);
    expect(head.headers["x-app"]).toBe("yes");
  });

  it("writes a usage record per request, durably (in batches)", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await fetchApp(server, "skel.localhost", "/index.php");
      expect(res.status).toBe(200);
      ids.push(String(res.headers["x-request-id"]));
    }
    expect(new Set(ids).size).toBe(5);
    await expect.poll(() => usageRecordsOf(server.dataDir, ids).length, { timeout: 15_000, interval: 50 }).toBe(5);
    const rows = usageRecordsOf(server.dataDir, ids);
    expect(rows.map((r) => r.request_id)).toEqual(ids);
    const row = rows[4]!;
    expect(row).toMatchObject({ status: 200, memory_mb: 128, mode: "snapshot", bytes_in: 0 });
    expect(row.wall_us as number).toBeGreaterThan(0);
    expect(row.bytes_out as number).toBeGreaterThan(0);
  });

  it("answers an unknown host with a short 404 page, not a stack trace", async () => {
    const res = await fetchApp(server, "nobody.localhost", "/x");
    expect(res.status).toBe(404);
    expect(res.headers["content-type"]).toMatch(/text\/html/);
    expect(res.text).toContain("no app is deployed at nobody.localhost/x");
    expect(res.text).not.toMatch(/at .*\.js:\d+/);
  });

  it("lists apps, deployments and routes, and rolls back", async () => {
    const v2 = phpBundle("skel.localhost", { "index.php": "<?php echo 'version two';" });
    await server.cli(["deploy", v2, "--app", "skel"]);
    expect((await fetchApp(server, "skel.localhost", "/")).text).toBe("version two");
    // v2 has no --host route: skel2.localhost is gone.
    expect((await fetchApp(server, "skel2.localhost", "/")).status).toBe(404);

    const apps = JSON.parse((await server.cli(["apps", "--json"])).stdout);
    expect(apps.apps.find((a: { name: string }) => a.name === "skel").activeVersion).toBe(2);
    const deps = JSON.parse((await server.cli(["deployments", "skel", "--json"])).stdout);
    expect(deps.deployments.map((d: { version: number; active: boolean }) => [d.version, d.active])).toEqual([[2, true], [1, false]]);
    const routes = JSON.parse((await server.cli(["routes", "--json"])).stdout);
    expect(routes.routes).toContainEqual(expect.objectContaining({ host: "skel.localhost", path: "/", app: "skel" }));
    expect((await server.cli(["routes"])).stdout).toMatch(/HOST\s+PATH\s+APP/);

    const rb = await server.cli(["rollback", "skel"]);
    expect(rb.stdout).toContain("rolled back skel to v1");
    const res = await fetchApp(server, "skel.localhost", "/index.php");
    expect(JSON.parse(res.text).uri).toBe("/index.php");
    await server.cli(["rollback", "skel", "v2"]);
    expect((await fetchApp(server, "skel.localhost", "/")).text).toBe("version two");
    const bad = await server.cli(["rollback", "skel", "9"], { allowFail: true });
    expect(bad.code).toBe(3); // not found (src/cli/errors.ts)
    expect(bad.stderr).toContain('app "skel" has no version 9');
  });

  it("refuses a second app that claims the same host and path", async () => {
    const dir = phpBundle("skel.localhost", { "index.php": "<?php echo 'intruder';" });
    const r = await server.cli(["deploy", dir, "--app", "intruder"], { allowFail: true });
    expect(r.code).toBe(6); // conflict
    expect(r.stderr).toContain('route skel.localhost/ of app "intruder" is already served by app "skel"');
    expect((await fetchApp(server, "skel.localhost", "/")).text).toBe("version two");
  });

  it("rejects admin calls without a valid token with 401", async () => {
    for (const token of [null, "zc_wrong-token-value-xxxxxxxxxxxxxxxxxxxxxxxx", ""]) {
      const r = await admin(server, "GET", "/v1/apps", { token });
      expect(r.status).toBe(401);
      expect(r.json.error.code).toBe("unauthorized");
    }
    const ok = await admin(server, "GET", "/v1/apps");
    expect(ok.status).toBe(200);
  });

  it("drains on SIGTERM, exits 0 and leaves no sandbox process behind", async () => {
    const slow = phpBundle("slow.localhost", { "index.php": "<?php usleep(1000000); echo 'done';" });
    await server.cli(["deploy", slow, "--app", "slow"]);
    expect((await fetchApp(server, "slow.localhost", "/")).text).toBe("done");
    const hosts = server.hostPids();
    expect(hosts.length).toBeGreaterThan(0);
    const inflight = fetchApp(server, "slow.localhost", "/");
    // SIGTERM only once the request is running in its host.
    await vi.waitFor(async () => {
      const pool = (await admin(server, "GET", "/v1/pool")).json.deployments as Array<{ app: string; busy: number }>;
      expect(pool.find((d) => d.app === "slow")?.busy).toBe(1);
    }, { timeout: 15_000, interval: 20 });
    const code = await server.stop();
    expect(code).toBe(0);
    const res = await inflight;
    expect(res.status).toBe(200);
    expect(res.text).toBe("done");
    const { execFileSync } = await import("node:child_process");
    for (const pid of hosts) if (isAlive(pid)) console.log("ALIVE", pid, execFileSync("ps", ["-o", "pid,ppid,stat,cmd", "-p", String(pid)], { encoding: "utf8" }));
    for (const pid of hosts) await vi.waitFor(() => expect(isAlive(pid)).toBe(false), { timeout: 10_000, interval: 100 });
  });
});
