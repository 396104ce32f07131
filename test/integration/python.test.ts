import { describe, it, expect, beforeAll, afterAll, vi } from "vitest";
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
    if path == "/flood":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        def forever():
            chunk = b"x" * (1 << 20)
            while True:
                yield chunk
        return forever()
    if path == "/flood-write":
        write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
        while True:
            write(b"y" * (1 << 20))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hostile-ok"]
`;

/** A keyed app whose tenant broke the Python walls and keeps state in the realm's JS heap. */
const KEYED_JS_APP = `
import importlib.machinery, importlib.util

def js_object():
    spec = importlib.machinery.BuiltinImporter.find_spec("_pyodide_core")
    return importlib.util.module_from_spec(spec).to_js({})

def application(environ, start_response):
    query = environ["QUERY_STRING"]
    o = js_object()
    if query.startswith("store="):
        o.constructor.prototype.zcSecret = query[6:]
        body = b"stored"
    else:
        try:
            body = ("seen " + str(o.zcSecret)).encode()
        except AttributeError:
            body = b"nothing"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
`;

describe("Python WSGI apps through the platform", () => {
  let server: TestServer;
  beforeAll(async () => {
    // One instance per deployment: every request of a deployment (keys included) meets the same host.
    server = await startServer(["--max-instances", "1"]);
    await server.cli(["deploy", join(ROOT, "examples", "wsgi-hello"), "--app", "wsgi-hello"]);
    await server.cli(["deploy", writeBundle({ "zerocell.toml": `runtime = "python"\n[python]\napp = "app:application"\n[[routes]]\nhost = "pyesc.localhost"\n`, "app.py": ESCAPE_APP }), "--app", "pyesc"]);
    await server.cli(["deploy", writeBundle({ "zerocell.toml": `runtime = "python"\n[python]\napp = "app:application"\n[limits]\ntimeout_ms = 3000\nmemory_mb = 64\n[[routes]]\nhost = "pyhostile.localhost"\n`, "app.py": HOSTILE_APP }), "--app", "pyhostile"]);
    // The same app with room to allocate: at load 18 a 64 MB bomb took longer than 3 s to reach the cap.
    await server.cli(["deploy", writeBundle({ "zerocell.toml": `runtime = "python"\n[python]\napp = "app:application"\n[limits]\ntimeout_ms = 60000\nmemory_mb = 64\n[[routes]]\nhost = "pybomb.localhost"\n`, "app.py": HOSTILE_APP }), "--app", "pybomb"]);
    await server.cli(["deploy", writeBundle({ "zerocell.toml": `runtime = "python"\n[python]\napp = "app:application"\n[limits]\ntimeout_ms = 30000\n[[routes]]\nhost = "pykeys.localhost"\npath = "/k/:id"\nkey = "id"\n`, "app.py": KEYED_JS_APP }), "--app", "pykeys"]);
  }, 180_000);
  afterAll(async () => {
    const pids = server.hostPids();
    expect(await server.stop()).toBe(0);
    for (const pid of pids) await vi.waitFor(() => expect(isAlive(pid)).toBe(false), { timeout: 10_000, interval: 100 });
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
    expect(ms).toBeGreaterThanOrEqual(2900);
    expect(ms).toBeLessThan(12_000);
    // A memory bomb ends in a clear 500 under the heap cap (MemoryError), not a dead server
    // (in an app whose timeout_ms is 60 s, so a loaded machine's slow allocation is not taken for a loop).
    const bomb = await fetchApp(server, "pybomb.localhost", "/bomb");
    expect(bomb.status).toBe(500);
    // The apps are served again (by a new or reset host), and so is everyone else.
    expect((await fetchApp(server, "pybomb.localhost", "/")).text).toBe("hostile-ok");
    expect((await fetchApp(server, "pyhostile.localhost", "/")).text).toBe("hostile-ok");
    expect((await fetchApp(server, "wsgi-hello.localhost", "/")).status).toBe(200);
  }, 120_000);

  it("an endless response (iterable or write()) is cut at the response limit: 502, and the app answers again", async () => {
    for (const path of ["/flood", "/flood-write"]) {
      // 502, not 504: the driver stops the app at the limit, well within timeout_ms (3 s).
      const r = await fetchApp(server, "pyhostile.localhost", path);
      expect(r.status).toBe(502);
      expect((await fetchApp(server, "pyhostile.localhost", "/")).text).toBe("hostile-ok");
    }
  }, 120_000);

  it("on a keyed route, what alice leaves in the sandbox realm's JavaScript heap is not seen by bob", async () => {
    for (let i = 0; i < 2; i++) {
      const stored = await fetchApp(server, "pykeys.localhost", `/k/alice?store=alice-secret-${i}`);
      expect(stored.text).toBe("stored");
      const read = await fetchApp(server, "pykeys.localhost", "/k/bob?read");
      expect(read.status).toBe(200);
      expect(read.text).toBe("nothing");
    }
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
