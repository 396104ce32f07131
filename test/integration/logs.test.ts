/**
 * Per-app logs through the real server: what an app writes to its log (PHP's error_log, Python's
 * stderr and tracebacks) reaches `zerocell logs APP` with the id of the request that wrote it;
 * `--follow` streams new lines (SSE); a tenant sees only its own apps' logs.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { spawn } from "node:child_process";
import { createAccount, startServer, fetchApp, admin, writeBundle, CLI, type TestServer } from "../helpers/server.js";

interface Line {
  id: number;
  at: number;
  requestId: string | null;
  line: string;
}

describe("per-app logs", () => {
  let server: TestServer;
  let tenant = "";
  const logs = async (app: string, ...args: string[]) => (JSON.parse((await server.cli(["logs", app, "--json", ...args])).stdout) as { logs: Line[] }).logs;

  beforeAll(async () => {
    server = await startServer(["--no-spare-hosts"]);
    tenant = await createAccount(server, "stranger");
    await server.cli(["deploy", writeBundle({ "zerocell.toml": `runtime = "php"\n[[routes]]\nhost = "plog.localhost"\npath = "/"\n`, "index.php": "<?php error_log('php-said ' . ($_GET['m'] ?? '-')); if (isset($_GET['fail'])) undefined_function(); echo 'ok';" }), "--app", "plog"]);
    await server.cli(["deploy", writeBundle({ "zerocell.toml": `runtime = "python"\n[python]\napp = "app:application"\n[limits]\ntimeout_ms = 30000\n[[routes]]\nhost = "pylog.localhost"\npath = "/"\n`, "app.py": "import sys\ndef application(environ, start_response):\n    print('py-said', environ.get('QUERY_STRING'), file=sys.stderr)\n    if 'fail' in environ.get('QUERY_STRING', ''):\n        raise ValueError('py-broke')\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'ok']\n" }), "--app", "pylog"]);
  }, 180_000);
  afterAll(async () => {
    expect(await server.stop()).toBe(0);
  });

  it("PHP: error_log lines and a fatal error carry the request id the client saw", async () => {
    const r = await fetchApp(server, "plog.localhost", "/?m=hello-1");
    expect(r.text).toBe("ok");
    const id = String(r.headers["x-request-id"]);
    const failed = await fetchApp(server, "plog.localhost", "/?m=hello-2&fail=1");
    expect(failed.status).toBe(500);
    const failedId = String(failed.headers["x-request-id"]);
    await expect.poll(async () => (await logs("plog")).some((l) => l.requestId === failedId && /undefined_function/.test(l.line)), { timeout: 15_000 }).toBe(true);
    const lines = await logs("plog");
    expect(lines.filter((l) => l.line.includes("php-said hello-1")).map((l) => l.requestId)).toEqual([id]);
    expect(lines.filter((l) => l.line.includes("php-said hello-2")).map((l) => l.requestId)).toEqual([failedId]);
    // The text form names the request too.
    expect((await server.cli(["logs", "plog"])).stdout).toContain(`[${id.slice(0, 8)}] `);
  });

  it("Python: stderr and the traceback of a failed request carry its request id", async () => {
    const r = await fetchApp(server, "pylog.localhost", "/?fail=1");
    expect(r.status).toBe(500);
    const id = String(r.headers["x-request-id"]);
    await expect.poll(async () => (await logs("pylog")).some((l) => l.requestId === id && l.line.includes("ValueError: py-broke")), { timeout: 15_000 }).toBe(true);
    expect((await logs("pylog")).some((l) => l.requestId === id && l.line.includes("py-said fail=1"))).toBe(true);
  }, 60_000);

  it("--since and --limit narrow the answer", async () => {
    expect(await logs("plog", "--since", new Date(Date.now() + 3_600_000).toISOString())).toEqual([]);
    expect(await logs("plog", "--limit", "1")).toHaveLength(1);
    const bad = await server.cli(["logs", "plog", "--since", "yesterday-ish"], { allowFail: true });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain("bad_since");
  });

  it("--follow streams lines as the app writes them", async () => {
    const child = spawn(process.execPath, [CLI, "logs", "plog", "--follow", "--json", "--limit", "0", "--data", server.dataDir], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ZEROCELL_URL: "", ZEROCELL_TOKEN: "" } });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    try {
      // Requests until the follower (which connects asynchronously) has seen one of them.
      let id = "";
      await expect
        .poll(
          async () => {
            if (id !== "" && out.includes(id)) return true;
            const r = await fetchApp(server, "plog.localhost", `/?m=followed`);
            id = String(r.headers["x-request-id"]);
            return false;
          },
          { timeout: 20_000, interval: 300 },
        )
        .toBe(true);
      const seen = out.trim().split("\n").map((l) => JSON.parse(l) as Line);
      expect(seen.some((l) => l.requestId === id && l.line.includes("php-said followed"))).toBe(true);
    } finally {
      child.kill();
    }
  }, 30_000);

  it("a tenant cannot read another account's app logs (the app does not exist for it)", async () => {
    const r = await admin(server, "GET", "/v1/apps/plog/logs", { token: tenant });
    expect(r.status).toBe(404);
    expect(r.json.error.code).toBe("app_not_found");
    expect(JSON.stringify(r.json)).not.toContain("php-said");
  });
});
