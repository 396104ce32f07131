import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { join } from "node:path";
import { startServer, fetchApp, writeBundle, isAlive, ROOT, type TestServer } from "../helpers/server.js";

const ESCAPE_APP = `
import json, os, random
def application(environ, start_response):
    out = {}
    try:
        import js
        out["js"] = repr(js.process)
    except BaseException as e:
        out["js"] = type(e).__name__
    try:
        out["passwd"] = open("/etc/passwd").read()[:20]
    except BaseException as e:
        out["passwd"] = type(e).__name__
    out["root"] = sorted(os.listdir("/"))
    out["rand"] = random.random()
    body = json.dumps(out).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
`;

describe("Python WSGI apps through the platform", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
    server.cli(["deploy", join(ROOT, "examples", "wsgi-hello"), "--app", "wsgi-hello"]);
    server.cli(["deploy", writeBundle({ "zerocell.toml": `runtime = "python"\n[python]\napp = "app:application"\n[[routes]]\nhost = "pyesc.localhost"\n`, "app.py": ESCAPE_APP }), "--app", "pyesc"]);
  }, 180_000);
  afterAll(async () => {
    const pids = server.hostPids();
    expect(await server.stop()).toBe(0);
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
  });

  it("deploys examples/wsgi-hello and serves it over HTTPS with a truthful environ", async () => {
    const r = await fetchApp(server, "wsgi-hello.localhost", "/some/path?x=1");
    expect(r.status).toBe(200);
    expect(r.text).toContain("Hello from WSGI");
    expect(r.text).toContain("<th>query</th><td>x=1</td>");
    expect(r.text).toContain("<th>scheme</th><td>https</td>");
    expect(r.headers["x-zerocell-instance"]).toMatch(/^snapshot; /);
  }, 120_000);

  it("keeps the host realm, host files and state of earlier requests out of reach", async () => {
    const seen = new Set<number>();
    for (let i = 0; i < 4; i++) {
      const r = await fetchApp(server, "pyesc.localhost", "/");
      expect(r.status).toBe(200);
      const j = JSON.parse(r.text);
      expect(j.js).toMatch(/Error/);
      expect(j.passwd).toMatch(/Error/);
      expect(j.root).not.toContain("etc");
      expect(j.root).toContain("app");
      expect(seen.has(j.rand)).toBe(false);
      seen.add(j.rand);
    }
  }, 120_000);
});
