/**
 * The CLI against the real server: distinct exit codes (usage 2, not found 3, auth 4, server
 * unreachable 5, conflict 6), --json errors in the admin API's error shape, examples and exit
 * codes in --help, deploy printing the app's full https URL, and list commands following the
 * API's pagination to the end.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { execFile } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServer, fetchApp, admin, phpBundle, CLI, type TestServer } from "../helpers/server.js";

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe("zerocell CLI: exit codes, --json errors, help, deploy URLs", () => {
  let server: TestServer;
  /** Runs the built CLI; `env` replaces ZEROCELL_URL/ZEROCELL_TOKEN (unset by default). */
  // Asynchronous: a deploy under load can take longer than vitest's 60 s worker RPC timeout,
  // which a synchronous spawn would block.
  const run = (args: string[], env: Record<string, string> = {}): Promise<Run> =>
    new Promise((resolveRun) => {
      const child = execFile(process.execPath, [CLI, ...args], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024, timeout: 120_000, env: { ...process.env, ZEROCELL_URL: "", ZEROCELL_TOKEN: "", ...env } }, (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof (err as { code?: unknown }).code === "number" ? ((err as { code: number }).code) : null;
        resolveRun({ code, stdout, stderr });
      });
      child.stdin?.end();
    });
  const data = () => ["--data", server.dataDir];

  beforeAll(async () => {
    server = await startServer();
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
  });

  it("deploy prints the app's full https URL (and --json carries it)", async () => {
    const dir = phpBundle("cli.localhost", { "index.php": "<?php echo 'hi from cli';" });
    const r = await run(["deploy", dir, "--app", "cli", ...data()]);
    expect(r.code, r.stderr).toBe(0);
    const url = `https://cli.localhost:${server.httpsPort}/`;
    expect(r.stdout).toContain(url);
    expect((await fetchApp(server, "cli.localhost", "/")).text).toBe("hi from cli");
    const j = await run(["deploy", dir, "--app", "cli", "--host", "cli2.localhost", "--json", ...data()]);
    expect(j.code, j.stderr).toBe(0);
    const out = JSON.parse(j.stdout) as { deployment: { version: number }; urls: string[] };
    expect(out.deployment.version).toBe(2);
    expect(out.urls).toEqual([url, `https://cli2.localhost:${server.httpsPort}/`]);
  }, 180_000);

  it("exits 3 for a missing resource; --json prints the API's error shape on stdout", async () => {
    const r = await run(["deployments", "nope", ...data()]);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('no app named "nope"');
    const j = await run(["deployments", "nope", "--json", ...data()]);
    expect(j.code).toBe(3);
    const body = JSON.parse(j.stdout) as { error: { code: string; message: string; requestId: string } };
    expect(body.error.code).toBe("app_not_found");
    expect(body.error.message).toContain("nope");
    expect(body.error.requestId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("exits 4 for a bad token, 4 for a missing scope", async () => {
    const env = { ZEROCELL_URL: server.urls.admin, ZEROCELL_TOKEN: "zc_wrong" };
    const r = await run(["apps", "--json"], env);
    expect(r.code).toBe(4);
    expect(JSON.parse(r.stdout).error.code).toBe("unauthorized");
    const acct = await admin(server, "POST", "/v1/accounts", { body: JSON.stringify({ name: "reader", scopes: ["read-usage"] }), contentType: "application/json" });
    expect(acct.status).toBe(201);
    const denied = await run(["pool"], { ZEROCELL_URL: server.urls.admin, ZEROCELL_TOKEN: acct.json.token });
    expect(denied.code).toBe(4);
    expect(denied.stderr).toContain("forbidden");
  });

  it("exits 5 when no server can be reached", async () => {
    const empty = mkdtempSync(join(tmpdir(), "zc-cli-none-"));
    const r = await run(["apps", "--data", empty, "--json"]);
    expect(r.code).toBe(5);
    expect(JSON.parse(r.stdout).error.code).toBe("server_unreachable");
    // A server.json-less URL on a closed port (port 9 on loopback: discard, not listening).
    const closed = await run(["apps"], { ZEROCELL_URL: "http://127.0.0.1:9", ZEROCELL_TOKEN: "x" });
    expect(closed.code).toBe(5);
    expect(closed.stderr).toContain("cannot reach");
  });

  it("exits 6 on a conflict", async () => {
    expect((await run(["accounts", "create", "twice", ...data()])).code).toBe(0);
    const r = await run(["accounts", "create", "twice", "--json", ...data()]);
    expect(r.code).toBe(6);
    expect(JSON.parse(r.stdout).error.code).toBe("account_exists");
  });

  it("exits 2 on usage errors (commander's and its own), in JSON with --json", async () => {
    const unknown = await run(["apps", "--bogus", ...data()]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown option");
    const j = await run(["apps", "--bogus", "--json", ...data()]);
    expect(j.code).toBe(2);
    expect(JSON.parse(j.stdout).error).toMatchObject({ code: "usage" });
    expect((await run(["rollback", "cli", "vx", ...data()])).code).toBe(2);
    expect((await run(["deploy", "/nonexistent-dir", ...data()])).code).toBe(2); // --app missing
    // Input the server refuses as invalid: 2 too, with every invalid field in details.
    const bad = await run(["accounts", "create", "Not Valid", "--json", ...data()]);
    expect(bad.code).toBe(2);
    expect(JSON.parse(bad.stdout).error.details.fields[0].path).toBe("name");
  });

  it("shows examples and exit codes in --help", async () => {
    for (const cmd of [[], ["deploy"], ["logs"], ["rollback"], ["apps"]]) {
      const r = await run([...cmd, "--help"]);
      expect(r.code, cmd.join(" ")).toBe(0);
      expect(r.stdout).toContain("Examples:");
      expect(r.stdout).toContain("Exit codes:");
    }
    expect((await run(["deploy", "--help"])).stdout).toContain("$ zerocell deploy ./myapp --app myapp");
    expect((await run(["--version"])).code).toBe(0);
  });

  it("lists follow the API's pages to the end", async () => {
    for (let i = 0; i < 105; i++) expect((await admin(server, "POST", "/v1/accounts", { body: JSON.stringify({ name: `many-${i}` }), contentType: "application/json" })).status).toBe(201);
    const firstPage = await admin(server, "GET", "/v1/accounts");
    expect(firstPage.json.accounts).toHaveLength(100);
    expect(typeof firstPage.json.next_cursor).toBe("string");
    const r = await run(["accounts", "list", "--json", ...data()]);
    expect(r.code, r.stderr).toBe(0);
    const names = (JSON.parse(r.stdout) as { accounts: Array<{ name: string }> }).accounts.map((a) => a.name);
    expect(new Set(names).size).toBe(names.length);
    for (let i = 0; i < 105; i++) expect(names).toContain(`many-${i}`);
  }, 120_000);
});
