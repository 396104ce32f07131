/**
 * Environment variables and secrets (issue 15): `zerocell env set|list|unset`. Values reach PHP
 * (getenv, $_ENV, $_SERVER), Python (os.environ) and x86 (envp at init and at every request);
 * a change is a new deployment (rollback restores the old values); a secret never appears in
 * `env list`, API answers, logs, the database or the blob store; a hostile tenant can neither
 * read nor change another account's env nor pass bad names or oversize values.
 */
import { describe, it, expect, beforeAll, afterAll, vi } from "vitest";
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import Database from "better-sqlite3";
import { createAccount, json, startServer, fetchApp, admin, phpBundle, writeBundle, ROOT, type TestServer } from "../helpers/server.js";
import { packDirectory } from "../../src/bundle/index.js";
import { SecretBox } from "../../src/store/secret-box.js";

const SECRET = "s3cr3t-Hunter2-" + Math.random().toString(36).slice(2);

/** Every file under dir whose bytes contain needle, as stored or, for a gzip file, once gunzipped. */
function filesContaining(dir: string, needle: string): string[] {
  const hits: string[] = [];
  const gunzipped = (b: Buffer) => {
    try {
      return b[0] === 0x1f && b[1] === 0x8b ? gunzipSync(b) : undefined;
    } catch {
      return undefined;
    }
  };
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) {
        const b = readFileSync(p);
        if (b.includes(needle) || gunzipped(b)?.includes(needle) === true) hits.push(p);
      }
    }
  };
  walk(dir);
  return hits;
}

describe("app environment variables and secrets", () => {
  let server: TestServer;
  let alice = "";
  let mallory = "";
  const deploy = async (token: string, app: string, dir: string) => admin(server, "POST", `/v1/apps/${app}/deployments`, { token, body: await packDirectory(dir), contentType: "application/gzip" });
  const setEnv = (token: string, app: string, set: Array<{ name: string; value: string; secret?: boolean }>) => admin(server, "POST", `/v1/apps/${app}/env`, { token, ...json({ set }) });

  beforeAll(async () => {
    server = await startServer(["--no-spare-hosts"]);
    alice = await createAccount(server, "alice");
    mallory = await createAccount(server, "mallory");
    execFileSync(join(ROOT, "scripts", "build-x86-exec-fixtures.sh"), { stdio: "ignore" });
  }, 120_000);
  afterAll(async () => {
    expect(await server.stop()).toBe(0);
  });

  it("PHP: getenv, $_ENV and $_SERVER see the values; a change is a new version; rollback restores the old values", async () => {
    const page = `<?php
      echo 'getenv=', var_export(getenv('GREETING'), true), ' env=', $_ENV['GREETING'] ?? '-', ' server=', $_SERVER['GREETING'] ?? '-';
      echo ' secret=', getenv('DB_PASSWORD') === false ? '-' : strlen(getenv('DB_PASSWORD')), ' script=', $_SERVER['SCRIPT_NAME'];`;
    const d1 = await deploy(alice, "envphp", phpBundle("envphp.alice.localhost", { "index.php": page }));
    expect(d1.status).toBe(201);
    expect((await fetchApp(server, "envphp.alice.localhost", "/")).text).toBe("getenv=false env=- server=- secret=- script=/index.php");

    const r = await setEnv(alice, "envphp", [{ name: "GREETING", value: "hello world" }, { name: "DB_PASSWORD", value: SECRET, secret: true }]);
    expect(r.status).toBe(201);
    expect(r.json.deployment.version).toBe(2);
    expect(r.json.env).toEqual([{ name: "DB_PASSWORD", secret: true, value: null }, { name: "GREETING", secret: false, value: "hello world" }]);
    const v2 = await fetchApp(server, "envphp.alice.localhost", "/");
    expect(v2.text).toBe(`getenv='hello world' env=hello world server=hello world secret=${SECRET.length} script=/index.php`);
    // Served again from a reset (snapshot mode): still there.
    expect((await fetchApp(server, "envphp.alice.localhost", "/")).text).toBe(v2.text);

    // A redeploy keeps the env (v3 = new bundle, same values).
    const d3 = await deploy(alice, "envphp", phpBundle("envphp.alice.localhost", { "index.php": page + " echo ' v3';" }));
    expect(d3.json.deployment.version).toBe(3);
    expect((await fetchApp(server, "envphp.alice.localhost", "/")).text).toBe(v2.text + " v3");

    // unset → v4 without GREETING; rollback to v1 → no values; to v2 → both again.
    const u = await admin(server, "DELETE", "/v1/apps/envphp/env/GREETING", { token: alice });
    expect(u.status).toBe(201);
    expect(u.json.deployment.version).toBe(4);
    expect((await fetchApp(server, "envphp.alice.localhost", "/")).text).toBe(`getenv=false env=- server=- secret=${SECRET.length} script=/index.php v3`);
    const rb = await admin(server, "POST", "/v1/apps/envphp/rollback", { token: alice, ...json({ version: 1 }) });
    expect(rb.status).toBe(200);
    expect((await fetchApp(server, "envphp.alice.localhost", "/")).text).toBe("getenv=false env=- server=- secret=- script=/index.php");
    expect((await admin(server, "GET", "/v1/apps/envphp/env", { token: alice })).json.env).toEqual([]);
    await admin(server, "POST", "/v1/apps/envphp/rollback", { token: alice, ...json({ version: 2 }) });
    expect((await fetchApp(server, "envphp.alice.localhost", "/")).text).toBe(v2.text);
    expect((await admin(server, "GET", "/v1/apps/envphp/env", { token: alice })).json.env.map((v: { name: string }) => v.name)).toEqual(["DB_PASSWORD", "GREETING"]);
  }, 180_000);

  it("Python: os.environ has the values (at import time and per request)", async () => {
    const app = [
      "import os",
      "AT_IMPORT = os.environ.get('GREETING', '-')",
      "def application(environ, start_response):",
      "    start_response('200 OK', [('content-type', 'text/plain')])",
      "    s = os.environ.get('DB_PASSWORD')",
      "    return [('import=%s now=%s secret=%s' % (AT_IMPORT, os.environ.get('GREETING', '-'), '-' if s is None else len(s))).encode()]",
      "",
    ].join("\n");
    const d = await deploy(alice, "envpy", writeBundle({ "zerocell.toml": `runtime = "python"\n[python]\napp = "app:application"\n[[routes]]\nhost = "envpy.alice.localhost"\n`, "app.py": app }));
    expect(d.status).toBe(201);
    expect((await fetchApp(server, "envpy.alice.localhost", "/")).text).toBe("import=- now=- secret=-");
    const r = await setEnv(alice, "envpy", [{ name: "GREETING", value: "héllo" }, { name: "DB_PASSWORD", value: SECRET, secret: true }]);
    expect(r.status).toBe(201);
    expect((await fetchApp(server, "envpy.alice.localhost", "/")).text).toBe(`import=héllo now=héllo secret=${SECRET.length}`);
    expect((await fetchApp(server, "envpy.alice.localhost", "/")).text).toBe(`import=héllo now=héllo secret=${SECRET.length}`);
  }, 180_000);

  it("x86: envp at init and the environment of every request carry the values", async () => {
    const prog = readFileSync(join(ROOT, "test", "fixtures", "build", "x86-exec", "env-echo"));
    const d = await deploy(alice, "envx86", writeBundle({ "zerocell.toml": `runtime = "x86"\n[x86]\nprogram = "bin/app"\n[[routes]]\nhost = "envx86.alice.localhost"\n`, "bin/app": prog }));
    expect(d.status).toBe(201);
    expect((await fetchApp(server, "envx86.alice.localhost", "/a")).text).toBe("init=(unset) request=(unset) secret=(unset) path=/a");
    const r = await setEnv(alice, "envx86", [{ name: "GREETING", value: "hi" }, { name: "DB_PASSWORD", value: SECRET, secret: true }]);
    expect(r.status).toBe(201);
    expect((await fetchApp(server, "envx86.alice.localhost", "/b")).text).toBe(`init=hi request=hi secret=${SECRET} path=/b`);
    expect((await fetchApp(server, "envx86.alice.localhost", "/c")).text).toBe(`init=hi request=hi secret=${SECRET} path=/c`);
  }, 180_000);

  it("a secret never shows again: not in env list (API or CLI), answers, logs, the database or the blob store", async () => {
    const list = await admin(server, "GET", "/v1/apps/envphp/env", { token: alice });
    expect(list.status).toBe(200);
    expect(JSON.stringify(list.json)).not.toContain(SECRET);
    expect(list.json.env.find((v: { name: string }) => v.name === "DB_PASSWORD")).toEqual({ name: "DB_PASSWORD", secret: true, value: null });
    const cli = await server.cli(["env", "list", "envphp"]);
    expect(cli.stdout).toMatch(/DB_PASSWORD\s+\(secret\)/);
    expect(cli.stdout).toMatch(/GREETING\s+hello world/);
    expect(cli.stdout).not.toContain(SECRET);
    for (const path of ["/v1/apps/envphp/deployments", "/v1/apps", "/v1/pool", "/v1/apps/envphp/logs"]) {
      expect(JSON.stringify((await admin(server, "GET", path, { token: alice })).json)).not.toContain(SECRET);
    }
    expect(server.output()).not.toContain(SECRET);
    // At rest: neither the SQLite files nor any blob holds it in clear. Snapshots are guest memory,
    // which holds the values (they are gzip'd: searched gunzipped too): wait until the secret's
    // deployments have theirs stored, then search.
    const db = new Database(join(server.dataDir, "zerocell.db"), { readonly: true });
    const withSecret = () => db.prepare(`SELECT count(*) AS n FROM snapshots s JOIN deployments d ON d.id = s.deployment_id WHERE d.env LIKE '%"secret":true%'`).get() as { n: number };
    let sealed: Array<{ sha256: string; deployment_id: string; engine_build: string }>;
    try {
      await vi.waitFor(() => expect(withSecret().n).toBeGreaterThanOrEqual(2), { timeout: 60_000, interval: 250 });
      sealed = db.prepare(`SELECT s.sha256, s.deployment_id, s.engine_build FROM snapshots s JOIN deployments d ON d.id = s.deployment_id WHERE d.env LIKE '%"secret":true%'`).all() as typeof sealed;
    } finally {
      db.close();
    }
    expect(filesContaining(server.dataDir, SECRET)).toEqual([]);
    // The search can fail: opened with the data dir's key, a snapshot does hold the value.
    const box = new SecretBox(join(server.dataDir, "secrets.key"));
    const opened = sealed.map((r) => box.open(`snapshot\0${r.deployment_id}/${r.engine_build}`, readFileSync(join(server.dataDir, "blobs", "sha256", r.sha256.slice(0, 2), r.sha256.slice(2)))));
    expect(opened.every((b) => b !== undefined)).toBe(true);
    expect(opened.some((b) => gunzipSync(b!).includes(SECRET))).toBe(true);
    const key = execFileSync("stat", ["-c", "%a", join(server.dataDir, "secrets.key")], { encoding: "utf8" }).trim();
    expect(key).toBe("600");
  });

  it("the CLI sets, lists and unsets; a value read from stdin for --secret", async () => {
    await server.cli(["deploy", phpBundle("envcli.localhost", { "index.php": "<?php echo getenv('A'), '|', getenv('TOKEN');" }), "--app", "envcli"]);
    expect((await server.cli(["env", "set", "envcli", "A=1=2"])).stdout).toMatch(/envcli v2 is live with 1 variable/);
    const out = execFileSync(process.execPath, [join(ROOT, "dist", "src", "cli", "main.js"), "env", "set", "envcli", "TOKEN", "--secret", "--data", server.dataDir], { input: "from-stdin\n", encoding: "utf8", env: { ...process.env, ZEROCELL_URL: "", ZEROCELL_TOKEN: "" } });
    expect(out).toMatch(/v3 is live with 2 variable/);
    return fetchApp(server, "envcli.localhost", "/").then(async (r) => {
      expect(r.text).toBe("1=2|from-stdin");
      const list = (await server.cli(["env", "list", "envcli"])).stdout;
      expect(list).toMatch(/TOKEN\s+\(secret\)/);
      expect(list).not.toContain("from-stdin");
      await server.cli(["env", "unset", "envcli", "A"]);
      expect((await fetchApp(server, "envcli.localhost", "/")).text).toBe("|from-stdin");
      const bad = await server.cli(["env", "set", "envcli", "HTTP_HOST=evil"], { allowFail: true });
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toContain("reserved");
    });
  }, 180_000);

  it("a hostile tenant: another account's app answers like a missing one; bad names, reserved names and oversize values are refused", async () => {
    const nobody = await admin(server, "GET", "/v1/apps/no-such-app/env", { token: mallory });
    expect(nobody.status).toBe(404);
    for (const [method, path, body] of [
      ["GET", "/v1/apps/envphp/env", undefined],
      ["POST", "/v1/apps/envphp/env", json({ set: [{ name: "GREETING", value: "pwned" }] })],
      ["DELETE", "/v1/apps/envphp/env/DB_PASSWORD", undefined],
    ] as const) {
      const r = await admin(server, method, path, { token: mallory, ...(body ?? {}) });
      expect(r.status, `${method} ${path}`).toBe(404);
      expect(r.json.error.code).toBe(nobody.json.error.code);
      expect(r.json.error.message).toBe(nobody.json.error.message.replace("no-such-app", "envphp"));
    }
    const before = (await admin(server, "GET", "/v1/apps/envphp/deployments", { token: alice })).json.deployments.length;
    for (const name of ["1ABC", "A-B", "A B", "", "É", "HTTP_HOST", "http_x", "PATH", "SCRIPT_FILENAME", "REMOTE_ADDR", "LD_PRELOAD", "PHP_VALUE", "PYTHONPATH", "ZEROCELL_X", "CONTENT_TYPE", "X".repeat(129)]) {
      const r = await setEnv(alice, "envphp", [{ name, value: "x" }]);
      expect(r.status, name).toBe(400);
      expect(r.json.error.code, name).toBe("bad_env_name");
    }
    const big = await setEnv(alice, "envphp", [{ name: "BIG", value: "x".repeat(8 * 1024 + 1) }]);
    expect(big.status).toBe(400);
    const nul = await setEnv(alice, "envphp", [{ name: "NUL", value: "a\0b" }]);
    expect(nul.status).toBe(400);
    expect(nul.json.error.code).toBe("bad_env_value");
    const many = await setEnv(alice, "envphp", Array.from({ length: 64 }, (_, i) => ({ name: `V${i}`, value: "x" })));
    expect(many.status).toBe(400);
    expect(many.json.error.code).toBe("env_too_large");
    const total = await setEnv(alice, "envphp", Array.from({ length: 5 }, (_, i) => ({ name: `T${i}`, value: "x".repeat(8000) })));
    expect(total.status).toBe(400);
    expect(total.json.error.code).toBe("env_too_large");
    const missing = await admin(server, "DELETE", "/v1/apps/envphp/env/NOT_SET", { token: alice });
    expect(missing.status).toBe(404);
    expect(missing.json.error.code).toBe("env_not_set");
    // Nothing of that made a deployment.
    expect((await admin(server, "GET", "/v1/apps/envphp/deployments", { token: alice })).json.deployments.length).toBe(before);
  }, 60_000);
});
