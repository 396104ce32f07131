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

const HOSTILE_APP = `
def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/loop":
        while True:
            pass
    if path == "/bomb":
        chunks = []
        while True:
            chunks.append(bytearray(8 << 20))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hostile-ok"]
`;

describe("Python WSGI apps through the platform", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
    server.cli(["deploy", join(ROOT, "examples", "wsgi-hello"), "--app", "wsgi-hello"]);
    server.cli(["deploy", writeBundle({ "zerocell.toml": `runtime = "python"\n[python]\napp = "app:application"\n[[routes]]\nhost = "pyesc.localhost"\n`, "app.py": ESCAPE_APP }), "--app", "pyesc"]);
    server.cli(["deploy", writeBundle({ "zerocell.toml": `runtime = "python"\n[python]\napp = "app:application"\n[limits]\ntimeout_ms = 1500\nmemory_mb = 64\n[[routes]]\nhost = "pyhostile.localhost"\n`, "app.py": HOSTILE_APP }), "--app", "pyhostile"]);
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

  it("an infinite loop gets 504 at timeout_ms while other apps keep answering; a memory bomb gets 500; the app recovers", async () => {
    expect((await fetchApp(server, "pyhostile.localhost", "/")).text).toBe("hostile-ok");
    const t0 = Date.now();
    const looping = fetchApp(server, "pyhostile.localhost", "/loop").then((res) => ({ res, ms: Date.now() - t0 }));
    await new Promise((r) => setTimeout(r, 200));
    // Another app answers while the loop burns a CPU in its own host.
    const other = await fetchApp(server, "wsgi-hello.localhost", "/");
    expect(other.status).toBe(200);
    const { res, ms } = await looping;
    expect(res.status).toBe(504);
    expect(ms).toBeGreaterThanOrEqual(1400);
    expect(ms).toBeLessThan(10_000);
    // A memory bomb ends in a clear 500 under the heap cap (MemoryError), not a dead server.
    const bomb = await fetchApp(server, "pyhostile.localhost", "/bomb");
    expect(bomb.status).toBe(500);
    // The app is served again (by a new or reset host), and so is everyone else.
    expect((await fetchApp(server, "pyhostile.localhost", "/")).text).toBe("hostile-ok");
    expect((await fetchApp(server, "wsgi-hello.localhost", "/")).status).toBe(200);
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
