/**
 * Health-gated deploys (issue 15): a deployment becomes active only after a host warmed it up and
 * its health paths answered with a non-5xx. A failed one is stored as failed with its error, the
 * old version keeps serving, the CLI exits non-zero with the error, and nothing starts it again.
 * A warm-up that failed is never snapshotted.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import Database from "better-sqlite3";
import { join } from "node:path";
import { createAccount, json, startServer, fetchApp, admin, writeBundle, phpBundle, type TestServer } from "../helpers/server.js";
import { packDirectory } from "../../src/bundle/index.js";

describe("health-gated deploys", () => {
  let server: TestServer;
  let token = "";
  const deploy = async (app: string, dir: string, t = token) => admin(server, "POST", `/v1/apps/${app}/deployments`, { token: t, body: await packDirectory(dir), contentType: "application/gzip" });

  beforeAll(async () => {
    server = await startServer(["--no-spare-hosts"]);
    token = await createAccount(server, "gated");
  });
  afterAll(async () => {
    expect(await server.stop()).toBe(0);
  });

  it("a PHP syntax error fails the deploy with file and line; the old version keeps serving; nothing retries it", async () => {
    const v1 = await deploy("gate", phpBundle("gate.gated.localhost", { "index.php": "<?php echo 'v1';" }));
    expect(v1.status).toBe(201);
    expect(v1.json.deployment).toMatchObject({ version: 1, status: "ready", active: true });
    expect((await fetchApp(server, "gate.gated.localhost", "/")).text).toBe("v1");

    const v2 = await deploy("gate", phpBundle("gate.gated.localhost", { "index.php": "<?php\necho 'v2';\nfunction broken( {\n" }));
    expect(v2.status).toBe(422);
    expect(v2.json.error.code).toBe("health_check_failed");
    expect(v2.json.error.message).toContain("v2 failed its health check");
    expect(v2.json.error.message).toContain("GET / answered 500");
    expect(v2.json.error.message).toMatch(/syntax error.*index\.php on line 3/s);
    const failedId = v2.json.error.details.deployment as string;

    // The old version serves on; the failed one is recorded with its error and is not active.
    expect((await fetchApp(server, "gate.gated.localhost", "/")).text).toBe("v1");
    const list = (await admin(server, "GET", "/v1/apps/gate/deployments", { token })).json.deployments as Array<{ id: string; version: number; status: string; active: boolean; error: string | null }>;
    expect(list.find((d) => d.version === 2)).toMatchObject({ id: failedId, status: "failed", active: false });
    expect(list.find((d) => d.version === 2)!.error).toContain("on line 3");
    expect(list.find((d) => d.version === 1)).toMatchObject({ status: "ready", active: true });

    // Nothing starts the failed deployment again: another deploy, and requests, leave it alone.
    expect((await deploy("gate-other", phpBundle("gate-other.gated.localhost", { "index.php": "<?php echo 'other';" }))).status).toBe(201);
    expect((await fetchApp(server, "gate.gated.localhost", "/")).text).toBe("v1");
    const pool = (await admin(server, "GET", "/v1/pool")).json.deployments as Array<{ deploymentId: string }>;
    expect(pool.some((p) => p.deploymentId === failedId)).toBe(false);
    // A rollback never picks a failed deployment.
    const rb = await admin(server, "POST", "/v1/apps/gate/rollback", { token, ...json({ version: 2 }) });
    expect(rb.status).toBe(409);
  });

  it("the CLI prints the error and exits non-zero", async () => {
    const dir = phpBundle("gate-cli.localhost", { "index.php": "<?php\n$x = ;\n" });
    const r = await server.cli(["deploy", dir, "--app", "gate-cli"], { allowFail: true });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("failed its health check");
    expect(r.stderr).toMatch(/index\.php on line 2/);
    expect(r.stderr).toContain("health_check_failed");
  });

  it("a Python app that does not import fails the deploy with its exception; no route serves it", async () => {
    const dir = writeBundle({
      "zerocell.toml": `runtime = "python"\n[python]\napp = "app:application"\n[limits]\ntimeout_ms = 30000\n[[routes]]\nhost = "gate-py.gated.localhost"\n`,
      "app.py": "import no_such_module_here\n\ndef application(environ, start_response):\n    start_response('200 OK', [])\n    return [b'never']\n",
    });
    const r = await deploy("gate-py", dir);
    expect(r.status).toBe(422);
    expect(r.json.error.message).toContain("no_such_module_here");
    expect((await fetchApp(server, "gate-py.gated.localhost", "/")).status).toBe(404);
  }, 120_000);

  it("health paths from the manifest must answer non-5xx; a warm-up that dies mid-request is never snapshotted", async () => {
    const top = (host: string, extra: string, files: Record<string, string>) =>
      writeBundle({ "zerocell.toml": `runtime = "php"\n${extra}\n[php]\ndocument_root = "public"\n[[routes]]\nhost = "${host}"\npath = "/"\n`, ...Object.fromEntries(Object.entries(files).map(([k, v]) => [`public/${k}`, v])) });
    const sick = top("gate-health.gated.localhost", `health = ["/health.php"]`, { "index.php": "<?php echo 'home';", "health.php": "<?php http_response_code(503); echo 'db down';" });
    const r = await deploy("gate-health", sick);
    expect(r.status).toBe(422);
    expect(r.json.error.message).toContain("GET /health.php answered 503");

    // The warm-up declares a function, then runs past its limit: the start fails (504 of the
    // warm-up), no snapshot is stored, and a later good deploy of the same app is not poisoned.
    const spin = top("gate-spin.gated.localhost", `warmup = ["/warm.php"]\n[limits]\ntimeout_ms = 500`, { "index.php": "<?php echo 'ok';", "warm.php": "<?php function declared_once() {}\nwhile (true) { $x = md5((string) mt_rand()); }" });
    const s = await deploy("gate-spin", spin);
    expect(s.status).toBe(422);
    expect(s.json.error.message).toContain("ms of CPU time");
    const db = new Database(join(server.dataDir, "zerocell.db"), { readonly: true });
    try {
      expect(db.prepare("SELECT count(*) AS n FROM snapshots WHERE deployment_id = ?").get(s.json.error.details.deployment)).toEqual({ n: 0 });
    } finally {
      db.close();
    }
    const pool = (await admin(server, "GET", "/v1/pool")).json.deployments as Array<{ app: string }>;
    expect(pool.some((p) => p.app === "gate-spin")).toBe(false);
    const good = await deploy("gate-spin", phpBundle("gate-spin.gated.localhost", { "index.php": "<?php function declared_once() {} echo 'fine';" }));
    expect(good.status).toBe(201);
    for (let i = 0; i < 3; i++) expect((await fetchApp(server, "gate-spin.gated.localhost", "/")).text).toBe("fine");
  }, 120_000);
});
