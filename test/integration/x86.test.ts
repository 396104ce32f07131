import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { packDirectory } from "../../src/bundle/index.js";
import { startServer, fetchApp, admin, writeBundle, isAlive, ROOT, type TestServer } from "../helpers/server.js";

describe("native x86-64 CGI apps through the platform", () => {
  let server: TestServer;
  beforeAll(async () => {
    // The example's binary and the hostile fixtures are built from source (musl-gcc -static).
    execFileSync("node", [join(ROOT, "scripts", "build-examples.mjs")], { stdio: "ignore" });
    execFileSync(join(ROOT, "scripts", "build-x86-exec-fixtures.sh"), { stdio: "ignore" });
    server = await startServer();
  }, 120_000);
  afterAll(async () => {
    const pids = server.hostPids();
    expect(await server.stop()).toBe(0);
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
  });

  it("deploys examples/x86-cgi (validated at deploy) and serves it over HTTPS in snapshot mode", async () => {
    server.cli(["deploy", join(ROOT, "examples", "x86-cgi"), "--app", "x86-cgi"]);
    for (const n of [12, 999]) {
      const r = await fetchApp(server, "x86.localhost", `/sq?${n}`);
      expect(r.status).toBe(200);
      expect(r.text).toBe(`Hello from native x86-64 on Zerocell\nmethod=GET path=/sq n=${n} n^2=${n * n}\n`);
      expect(r.headers["x-zerocell-instance"]).toMatch(/^snapshot; /);
    }
  });

  it("refuses a program with a privileged instruction at deploy, with the validator's report", async () => {
    const dir = writeBundle({
      "zerocell.toml": `runtime = "x86"\n[x86]\nprogram = "bin/app"\n[[routes]]\nhost = "evil-x86.localhost"\n`,
      "bin/app": readFileSync(join(ROOT, "test", "fixtures", "build", "x86-exec", "privileged")),
    });
    const r = await admin(server, "POST", "/v1/apps/evil-x86/deployments", { body: await packDirectory(dir), contentType: "application/gzip" });
    expect(r.status).toBe(400);
    expect(JSON.stringify(r.json.error)).toMatch(/x86|privileged|rejected/i);
    expect((await admin(server, "GET", "/v1/apps/evil-x86/deployments")).status).toBe(404);
  });
});
