/**
 * The Python (WSGI on Pyodide) engine: PEP 3333 environ and responses (also under
 * wsgiref.validate), files (/app read-only, /tmp, /data, sqlite), snapshots and randomness, and
 * the confinement: every escape a guest could try, from Python and from inside the sandbox's
 * JavaScript realm, plus a run of the engine under the host process's Node flags.
 */
import { describe, it, expect, beforeAll, afterAll, vi } from "vitest";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir, hostname } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { types } from "node:util";
import vm from "node:vm";
import Database from "better-sqlite3";
import type { BundleImage, Manifest } from "../../src/bundle/index.js";
import { decodeImage, encodeImage, packDirectory, readBundleArchive } from "../../src/bundle/index.js";
import { parse as parseToml } from "smol-toml";
import type { EngineRequest, EngineResponse } from "../../src/runtime/engine.js";
import { PythonEngine, PythonInstance, buildMeta, splitScriptName, decodePathLatin1, heapCapBytes, pythonSettings } from "../../src/runtime/python/index.js";
import { rewriteModule } from "../../src/runtime/python/realm.js";
import { driverInstallCode, readDriverSource } from "../../src/runtime/python/driver.js";
import * as innerModule from "../../src/runtime/python/inner.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url)).replace(/\/$/, "");

const APP = String.raw`
import gc
import hashlib
import json
import os
import random
import sys
import uuid
import warnings
from urllib.parse import parse_qs
from wsgiref.validate import validator, WSGIWarning

import tinylib  # from vendor/ (python.path)

warnings.simplefilter("error", WSGIWarning)
RNG = random.Random()  # made at import: in the snapshot, reseeded per request by the engine
CLOSED = []


def text(start_response, body, status="200 OK", extra=()):
    data = body if isinstance(body, bytes) else body.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))] + list(extra))
    return [data]


def as_json(start_response, obj, status="200 OK"):
    data = json.dumps(obj).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


class Closing:
    def __init__(self, chunks):
        self.chunks = chunks

    def __iter__(self):
        return iter(self.chunks)

    def close(self):
        CLOSED.append(1)


def attempt(fn):
    try:
        return {"ok": True, "value": repr(fn())[:400]}
    except BaseException as e:
        return {"ok": False, "error": type(e).__name__ + ": " + str(e)[:400]}


def esc_import_js():
    import js
    return js.process

def esc_js_proxy_constructor():
    import js
    return js.Object.constructor.constructor("return process")()

def esc_pyodide_js():
    import pyodide_js
    return pyodide_js._api

def esc_ffi():
    from pyodide.ffi import to_js
    return to_js({}).constructor.constructor("return process")()

def esc_ffi_create_proxy():
    from pyodide.ffi import create_proxy
    return create_proxy(len)

def esc_gc_scan():
    found = []
    for o in gc.get_objects():
        for r in gc.get_referents(o):
            if "JsProxy" in [t.__name__ for t in type(r).__mro__]:
                found.append(r)
    for r in found:
        return r.constructor.constructor("return process")()
    return "no JsProxy reachable"

def esc_rebuild_core():
    # Defeat the Python walls: rebuild _pyodide_core from the builtin table, bypassing sys.modules
    # and the import blocker, then try the classic JS escape on what it returns.
    import importlib.machinery, importlib.util
    spec = importlib.machinery.BuiltinImporter.find_spec("_pyodide_core")
    core = importlib.util.module_from_spec(spec)
    obj = core.to_js({})
    return obj.constructor.constructor("return process")()

def esc_pyodide_internals():
    import _pyodide._base as b
    return [k for k in dir(b) if "js" in k.lower()]

def esc_passwd():
    return open("/etc/passwd").read()

def esc_host_file():
    err = None
    for p in ("/etc/hostname", "/proc/self/environ", "/proc/1/cmdline", "/usr/bin/env", "/root/.bashrc"):
        try:
            return open(p, "rb").read()
        except OSError as e:
            err = e
    raise err

def esc_listdir():
    return sorted(os.listdir("/"))

def esc_subprocess():
    import subprocess
    return subprocess.run(["id"], capture_output=True)

def esc_system():
    r = os.system("id")
    if r != 0:
        raise OSError("os.system returned %r" % r)
    return r

def esc_fork():
    return os.fork()

def esc_ctypes():
    import ctypes
    return ctypes.CDLL(None)

def esc_socket(port):
    import socket
    s = socket.socket()
    s.settimeout(2)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    return s.recv(100)

def esc_mount_nodefs():
    import pyodide_js
    return pyodide_js.mountNodeFS("/host", "/")

def esc_write_app():
    with open("/app/app.py", "a") as f:
        f.write("# changed")

def esc_chmod_app():
    os.chmod("/app/app.py", 0o777)

def esc_replace_app_dir():
    os.rename("/app", "/app2")

def esc_write_stdlib():
    with open("/lib/python3.14/site-packages/evil.py", "w") as f:
        f.write("x = 1")


ESCAPES = {
    "import-js": esc_import_js, "js-constructor": esc_js_proxy_constructor, "pyodide-js": esc_pyodide_js,
    "ffi": esc_ffi, "ffi-create-proxy": esc_ffi_create_proxy, "gc-scan": esc_gc_scan, "rebuild-core": esc_rebuild_core,
    "pyodide-internals": esc_pyodide_internals, "passwd": esc_passwd, "host-file": esc_host_file, "listdir": esc_listdir,
    "subprocess": esc_subprocess, "system": esc_system, "fork": esc_fork, "ctypes": esc_ctypes,
    "mount-nodefs": esc_mount_nodefs, "write-app": esc_write_app, "chmod-app": esc_chmod_app,
    "replace-app": esc_replace_app_dir, "write-stdlib": esc_write_stdlib,
}


def app(environ, start_response):
    path = environ["PATH_INFO"]
    method = environ["REQUEST_METHOD"]
    if path == "/environ":
        cgi = {k: v for k, v in environ.items() if "." not in k}
        wsgi = {k: repr(v) if k in ("wsgi.version", "wsgi.url_scheme", "wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once") else type(v).__name__ for k, v in environ.items() if "." in k}
        wsgi["zerocell.params"] = environ["zerocell.params"]
        return as_json(start_response, {"cgi": cgi, "wsgi": wsgi, "types": sorted({type(v).__name__ for v in cgi.values()})})
    if path == "/echo":
        n = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(n)
        return text(start_response, body, extra=[("X-Method", method), ("X-Content-Type", environ.get("CONTENT_TYPE", "-"))])
    if path == "/form":
        n = int(environ.get("CONTENT_LENGTH") or 0)
        form = parse_qs(environ["wsgi.input"].read(n).decode())
        return as_json(start_response, {k: v for k, v in form.items()})
    if path == "/json":
        n = int(environ.get("CONTENT_LENGTH") or 0)
        doc = json.loads(environ["wsgi.input"].read(n))
        return as_json(start_response, {"sum": sum(doc["numbers"]), "type": environ["CONTENT_TYPE"]})
    if path == "/big":
        n = int(environ.get("CONTENT_LENGTH") or 0)
        data = environ["wsgi.input"].read(n)
        return as_json(start_response, {"len": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    if path == "/big-response":
        data = b"z" * (3 * 1024 * 1024)
        return text(start_response, data)
    if path == "/lines":
        lines = environ["wsgi.input"].readlines()
        return as_json(start_response, {"lines": len(lines)})
    if path == "/cookies":
        return text(start_response, environ.get("HTTP_COOKIE", ""))
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"one,")
        write(b"two,")
        return Closing([b"three"])
    if path == "/closed":
        return text(start_response, str(len(CLOSED)))
    if path == "/exc-info":
        try:
            raise ValueError("handled")
        except ValueError:
            data = b"sorry"
            start_response("200 OK", [("Content-Type", "text/plain")])
            start_response("500 Internal Server Error", [("Content-Type", "text/plain"), ("Content-Length", "5")], sys.exc_info())
            return [data]
    if path == "/exc-info-late":
        def gen():
            yield b"partial"
            try:
                raise ValueError("too late")
            except ValueError:
                start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
            yield b"never"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return gen()
    if path == "/repeat":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Vary", "Accept"), ("Vary", "Cookie")])
        return [b"ok"]
    if path.startswith("/status/"):
        code = int(path[8:])
        reason = {204: "No Content", 304: "Not Modified", 404: "Not Found", 418: "I'm a teapot"}[code]
        if code in (204, 304):
            start_response("%d %s" % (code, reason), [])
            return []
        return text(start_response, reason, status="%d %s" % (code, reason))
    if path == "/raise":
        raise ValueError("boom")
    if path == "/str-body":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ["not bytes"]
    if path == "/sqlite":
        import sqlite3
        con = sqlite3.connect("file:/app/data/app.sqlite?mode=ro", uri=True)
        rows = con.execute("select name, n from items order by n").fetchall()
        con.close()
        con2 = sqlite3.connect("/app/data/app.sqlite")
        count = con2.execute("select count(*) from items").fetchone()[0]
        try:
            con2.execute("insert into items values ('x', 9)")
            con2.commit()
            wrote = "yes"
        except sqlite3.OperationalError as e:
            wrote = str(e)
        con2.close()
        return as_json(start_response, {"rows": rows, "count": count, "write": wrote})
    if path == "/vendored":
        return text(start_response, tinylib.greet("wsgi") + " from " + tinylib.__file__)
    if path == "/tmp-quota":
        try:
            with open("/tmp/big", "wb") as f:
                for _ in range(64):
                    f.write(b"q" * (1024 * 1024))
            return text(start_response, "wrote all")
        except OSError as e:
            return text(start_response, "stopped: " + type(e).__name__ + " errno " + str(e.errno))
    if path == "/data":
        n = 0
        try:
            with open("/data/count") as f:
                n = int(f.read())
        except FileNotFoundError:
            pass
        if method == "POST":
            os.makedirs("/data/sub", exist_ok=True)
            with open("/data/count", "w") as f:
                f.write(str(n + 1))
            with open("/data/sub/note", "w") as f:
                f.write("note %d" % (n + 1))
        return text(start_response, str(n))
    if path == "/data-fail":
        with open("/data/count", "w") as f:
            f.write("999")
        raise RuntimeError("failed after writing /data")
    if path == "/rand":
        return as_json(start_response, {"urandom": os.urandom(16).hex(), "random": random.random(), "module_rng": RNG.random(), "uuid": str(uuid.uuid4())})
    if path == "/memory-bomb":
        hog = []
        while True:
            hog.append(bytearray(1 << 20))
    if path == "/memory-ok":
        blob = bytearray(16 * 1024 * 1024)
        return text(start_response, str(len(blob)))
    if path == "/osenv":
        return as_json(start_response, dict(os.environ))
    if path == "/stdout":
        print("hello on stdout")
        print("hello on stderr", file=sys.stderr)
        environ["wsgi.errors"].write("hello on wsgi.errors\n")
        return text(start_response, "printed")
    if path.startswith("/escape/"):
        name = path[8:]
        if name == "socket":
            return as_json(start_response, attempt(lambda: esc_socket(int(environ["QUERY_STRING"]))))
        return as_json(start_response, attempt(ESCAPES[name]))
    return text(start_response, "hello")


VALIDATED = validator(app)


def application(environ, start_response):
    if environ["SCRIPT_NAME"] == "/v":
        return VALIDATED(environ, start_response)
    return app(environ, start_response)
`;

const TINYLIB = `"""A tiny vendored pure-Python dependency."""

def greet(name):
    return "hello, %s" % name
`;

const MEMORY_MB = 32;

function makeManifest(python: { app: string; path: string[] } = { app: "app:application", path: ["vendor"] }): Manifest {
  return {
    runtime: "python",
    python,
    routes: [],
    limits: { timeoutMs: 10_000, memoryMb: MEMORY_MB, maxBodyBytes: 16 * 1024 * 1024, dataMb: 4 },
    warmup: [],
  } as unknown as Manifest;
}

function sqliteFixture(): Buffer {
  const dir = mkdtempSync(join(tmpdir(), "zc-py-sqlite-"));
  try {
    const db = new Database(join(dir, "app.sqlite"));
    db.exec("create table items (name text, n integer); insert into items values ('alpha', 1), ('beta', 2), ('gamma', 3);");
    db.close();
    return readFileSync(join(dir, "app.sqlite"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function makeImage(files: Record<string, Buffer | string>): BundleImage {
  const dirs = new Set<string>();
  const entries: BundleImage["entries"] = [];
  for (const path of Object.keys(files)) {
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join("/"));
  }
  for (const d of dirs) entries.push({ path: d, kind: "dir", mode: 0o755 });
  for (const [path, data] of Object.entries(files)) entries.push({ path, kind: "file", mode: 0o644, data: Buffer.from(data) });
  entries.sort((a, b) => (a.path < b.path ? -1 : 1));
  return { entries, totalBytes: entries.reduce((n, e) => n + (e.data?.length ?? 0), 0) };
}

function req(url: string, init: Partial<EngineRequest> = {}): EngineRequest {
  return {
    method: "GET",
    url,
    headers: [["host", "py.localhost"]],
    body: new Uint8Array(0),
    remoteAddr: "203.0.113.7",
    remotePort: 51234,
    https: true,
    serverName: "py.localhost",
    serverPort: 8443,
    scriptName: "",
    params: {},
    ...init,
  };
}

const text = (r: EngineResponse) => Buffer.from(r.body).toString("utf8");
const json = (r: EngineResponse) => JSON.parse(text(r)) as Record<string, unknown>;

/** Strings that would show that something of the host process leaked into a response. */
const HOST_MARKERS = [process.version, `"pid"`, "execPath", "/work/main", ROOT, hostname(), "child_process", "[object process]", "process.binding"];

function assertNoHostLeak(body: string): void {
  for (const m of HOST_MARKERS) expect(body, `response leaks ${m}`).not.toContain(m);
}

/** Whether an object's prototype chain ends in this (host) realm's Object.prototype. */
function isHostObject(v: unknown): boolean {
  let p: unknown = v;
  let root: unknown = v;
  for (let i = 0; i < 64 && p !== null; i++) {
    root = p;
    p = types.isProxy(p) ? null : Reflect.getPrototypeOf(p as object);
  }
  return root === Object.prototype || root === Function.prototype;
}

/** Breadth-first walk over properties (values, getters, setters) and prototypes, without calling getters. */
function reachableHostObjects(roots: unknown[], plant?: (root: unknown) => void): { visited: number; leaks: string[] } {
  if (plant !== undefined) for (const r of roots) plant(r);
  const seen = new Set<unknown>();
  const queue: unknown[] = [];
  const leaks: string[] = [];
  const push = (v: unknown, where: string) => {
    if ((typeof v !== "object" && typeof v !== "function") || v === null || seen.has(v)) return;
    seen.add(v);
    if (isHostObject(v)) leaks.push(where);
    else queue.push(v);
  };
  for (const r of roots) push(r, "root");
  let visited = 0;
  while (queue.length > 0 && visited < 400_000) {
    const o = queue.shift() as object;
    visited++;
    if (types.isProxy(o) || types.isTypedArray(o) || types.isArrayBuffer(o) || types.isDataView(o)) continue;
    push(Reflect.getPrototypeOf(o), "proto");
    for (const key of Reflect.ownKeys(o)) {
      const d = Reflect.getOwnPropertyDescriptor(o, key);
      if (d === undefined) continue;
      const where = `.${String(key)}`;
      if ("value" in d) push(d.value, where);
      if (d.get !== undefined) push(d.get, `${where}(get)`);
      if (d.set !== undefined) push(d.set, `${where}(set)`);
    }
  }
  return { visited, leaks };
}

describe("python engine", () => {
  const logs: string[] = [];
  const engine = new PythonEngine({ log: (stream, line) => logs.push(`${stream}: ${line}`) });
  let image: BundleImage;
  let inst: PythonInstance;

  beforeAll(async () => {
    image = makeImage({ "app.py": APP, "vendor/tinylib.py": TINYLIB, "data/app.sqlite": sqliteFixture(), "static/hello.txt": "hi" });
    const prepared = await engine.prepare({ deploymentId: "py-unit", manifest: makeManifest(), image });
    inst = await engine.instantiate(prepared);
    expect((await inst.handle(req("/"))).status).toBe(200);
    inst.snapshot();
  });
  afterAll(() => inst?.dispose());

  async function run(url: string, init: Partial<EngineRequest> = {}): Promise<EngineResponse> {
    const r = await inst.handle(req(url, init));
    await inst.reset();
    return r;
  }

  describe("manifest settings and static checks", () => {
    it("reads [python] app and path, with defaults", () => {
      expect(pythonSettings(makeManifest())).toEqual({ app: "app:application", path: ["vendor"] });
      expect(pythonSettings({ ...makeManifest(), python: undefined } as unknown as Manifest)).toEqual({ app: "app:application", path: [] });
    });

    it("refuses bad settings and bundles with a BundleError naming the field", () => {
      const bad: Array<[unknown, string]> = [
        [{ app: "app" }, "python.app"],
        [{ app: "app:application;x" }, "python.app"],
        [{ app: "js:x" }, "python.app"],
        [{ app: "app:application", path: ["../up"] }, "python.path[0]"],
        [{ app: "app:application", path: [""] }, "python.path[0]"],
        [{ app: "app:application", extra: 1 }, "python.extra"],
        [{ app: "app:application", path: ["missing"] }, "python.path[0]"],
        [{ app: "nothere:app", path: [] }, "python.app"],
      ];
      for (const [python, field] of bad) {
        let err: unknown;
        try {
          engine.validate({ ...makeManifest(), python } as unknown as Manifest, image);
        } catch (e) {
          err = e;
        }
        expect(err, JSON.stringify(python)).toMatchObject({ status: 400, code: "manifest_invalid" });
        expect((err as Error).message).toContain(field);
      }
      // A module found only in a vendored path is fine.
      expect(() => engine.validate(makeManifest({ app: "tinylib:greet", path: ["vendor"] }), image)).not.toThrow();
      expect(() => engine.validate({ ...makeManifest(), runtime: "php" } as unknown as Manifest, image)).toThrow(/runtime/);
    });

    it("the build id changes with the settings, not with the deployment", () => {
      const a = engine.buildId(makeManifest());
      expect(a).toMatch(/^pyodide-314\.0\.7\/engine-\d+\/cfg-[0-9a-f]{12}$/);
      expect(engine.buildId(makeManifest())).toBe(a);
      expect(engine.buildId(makeManifest({ app: "app:application", path: [] }))).not.toBe(a);
    });
  });

  describe("environ (PEP 3333)", () => {
    it("splits SCRIPT_NAME / PATH_INFO by the route prefix and percent-decodes to latin-1", () => {
      expect(splitScriptName("/api/users/7", "/api")).toEqual({ script: "/api", path: "/users/7" });
      expect(splitScriptName("/api", "/api")).toEqual({ script: "/api", path: "" });
      expect(splitScriptName("//api//x", "/api")).toEqual({ script: "//api", path: "//x" });
      expect(splitScriptName("/other", "/api")).toEqual({ script: "", path: "/other" });
      expect(splitScriptName("/", "")).toEqual({ script: "", path: "/" });
      expect(decodePathLatin1("/caf%C3%A9/%2F%zz")).toBe("/caf\u00c3\u00a9//%zz");
      const meta = buildMeta(req("/p?q=1", { headers: [["x_smuggle", "1"], ["x-a", "1"], ["X-A", "2"], ["cookie", "a=1"], ["cookie", "b=2"], ["content-length", "0"]] }));
      expect(meta.cgi).toEqual([["CONTENT_LENGTH", "0"], ["HTTP_X_A", "1, 2"], ["HTTP_COOKIE", "a=1; b=2"]]);
    });

    it("is complete and truthful", async () => {
      const r = await run("/shop/environ?a=1&b=%20", {
        method: "POST",
        scriptName: "/shop",
        params: { id: "7" },
        body: Buffer.from("x=1"),
        headers: [["host", "py.localhost"], ["content-type", "application/x-www-form-urlencoded"], ["content-length", "3"], ["accept", "text/html"], ["accept", "application/json"], ["x-forwarded-for", "10.0.0.1"], ["x_underscore", "dropped"]],
      });
      expect(r.status).toBe(200);
      const { cgi, wsgi, types: valueTypes } = json(r) as { cgi: Record<string, string>; wsgi: Record<string, unknown>; types: string[] };
      expect(cgi).toMatchObject({
        REQUEST_METHOD: "POST",
        SCRIPT_NAME: "/shop",
        PATH_INFO: "/environ",
        QUERY_STRING: "a=1&b=%20",
        CONTENT_TYPE: "application/x-www-form-urlencoded",
        CONTENT_LENGTH: "3",
        SERVER_NAME: "py.localhost",
        SERVER_PORT: "8443",
        SERVER_PROTOCOL: "HTTP/1.1",
        REMOTE_ADDR: "203.0.113.7",
        REMOTE_PORT: "51234",
        REQUEST_URI: "/shop/environ?a=1&b=%20",
        HTTPS: "on",
        HTTP_HOST: "py.localhost",
        HTTP_ACCEPT: "text/html, application/json",
        HTTP_X_FORWARDED_FOR: "10.0.0.1",
      });
      expect(cgi).not.toHaveProperty("HTTP_CONTENT_TYPE");
      expect(cgi).not.toHaveProperty("HTTP_CONTENT_LENGTH");
      expect(cgi).not.toHaveProperty("HTTP_X_UNDERSCORE");
      expect(valueTypes).toEqual(["str"]);
      expect(wsgi).toMatchObject({
        "wsgi.version": "(1, 0)",
        "wsgi.url_scheme": "'https'",
        "wsgi.multithread": "False",
        "wsgi.multiprocess": "True",
        "wsgi.run_once": "False",
        "wsgi.input": "BytesIO",
        "wsgi.errors": "TextIOWrapper",
        "zerocell.params": { id: "7" },
      });
      const plain = json(await run("/environ", { https: false, serverPort: 8080 })) as { cgi: Record<string, string>; wsgi: Record<string, unknown> };
      expect(plain.wsgi["wsgi.url_scheme"]).toBe("'http'");
      expect(plain.cgi).not.toHaveProperty("HTTPS");
      expect(plain.cgi).not.toHaveProperty("CONTENT_LENGTH");
      expect(plain.cgi.PATH_INFO).toBe("/environ");
      expect(plain.cgi.SCRIPT_NAME).toBe("");
    });

    it("bodies: echo, form, JSON, 5 MiB upload, readlines, tiny bodies", async () => {
      const echo = await run("/echo", { method: "PUT", body: Buffer.from("ping body"), headers: [["content-type", "text/plain"]] });
      expect(text(echo)).toBe("ping body");
      expect(echo.headers).toContainEqual(["x-method", "PUT"]);
      expect(echo.headers).toContainEqual(["x-content-type", "text/plain"]);
      expect(text(await run("/echo", { method: "POST", body: Buffer.from("x") }))).toBe("x");
      expect(text(await run("/echo", { method: "POST", body: Buffer.from([0xff, 0x00]) }))).toBe(Buffer.from([0xff, 0x00]).toString());
      expect(json(await run("/form", { method: "POST", body: Buffer.from("a=1&a=2&b=%C3%A9") }))).toEqual({ a: ["1", "2"], b: ["é"] });
      expect(json(await run("/json", { method: "POST", body: Buffer.from(JSON.stringify({ numbers: [1, 2, 3.5] })), headers: [["content-type", "application/json"]] }))).toEqual({ sum: 6.5, type: "application/json" });
      const big = Buffer.alloc(5 * 1024 * 1024);
      for (let i = 0; i < big.length; i++) big[i] = (i * 7 + 3) & 0xff;
      const { createHash } = await import("node:crypto");
      expect(json(await run("/big", { method: "POST", body: big }))).toEqual({ len: big.length, sha256: createHash("sha256").update(big).digest("hex") });
      expect(json(await run("/lines", { method: "POST", body: Buffer.from("a\nb\nc") }))).toEqual({ lines: 3 });
      const bigRes = await run("/big-response");
      expect(bigRes.body.byteLength).toBe(3 * 1024 * 1024);
    });

    it("responses: repeated headers, write(), close(), exc_info, statuses, HEAD, errors", async () => {
      const rep = await run("/repeat");
      expect(rep.headers.filter(([k]) => k === "set-cookie")).toEqual([["set-cookie", "a=1"], ["set-cookie", "b=2"]]);
      expect(rep.headers.filter(([k]) => k === "vary")).toEqual([["vary", "Accept"], ["vary", "Cookie"]]);
      // write() and the iterable are concatenated; close() is called (seen by the next request, daemon-style).
      const w = await inst.handle(req("/write"));
      expect(text(w)).toBe("one,two,three");
      expect(text(await inst.handle(req("/closed")))).toBe("1");
      await inst.reset();
      expect(text(await run("/closed"))).toBe("0");
      // exc_info before any body: the new status replaces the old one.
      const exc = await run("/exc-info");
      expect(exc.status).toBe(500);
      expect(text(exc)).toBe("sorry");
      // exc_info after body data: start_response re-raises, the engine answers 500 and logs it.
      const late = await run("/exc-info-late");
      expect(late.status).toBe(500);
      expect(text(late)).toBe("Internal Server Error\n");
      expect((await run("/status/404")).status).toBe(404);
      const nc = await run("/status/204");
      expect(nc.status).toBe(204);
      expect(nc.body.byteLength).toBe(0);
      expect((await run("/status/304")).status).toBe(304);
      const head = await run("/", { method: "HEAD" });
      expect(head.status).toBe(200);
      expect(head.body.byteLength).toBe(0);
      expect(head.headers).toContainEqual(["content-length", "5"]);
      logs.length = 0;
      const boom = await run("/raise");
      expect(boom.status).toBe(500);
      expect(text(boom)).toBe("Internal Server Error\n");
      expect(logs.join("\n")).toContain("ValueError: boom");
      const strBody = await run("/str-body");
      expect(strBody.status).toBe(500);
      expect(logs.join("\n")).toContain("yielded str, not bytes");
      expect(text(await run("/cookies", { headers: [["cookie", "a=1"], ["cookie", "b=2"]] }))).toBe("a=1; b=2");
    });

    it("stdout, stderr and wsgi.errors go to the app's log", async () => {
      logs.length = 0;
      expect(text(await run("/stdout"))).toBe("printed");
      const all = logs.join("\n");
      expect(all).toContain("stdout: hello on stdout");
      expect(all).toContain("stderr: hello on stderr");
      expect(all).toContain("stderr: hello on wsgi.errors");
    });
  });

  describe("wsgiref.validate.validator", () => {
    it("a validated app runs a varied set of requests without a single validator error or warning", async () => {
      logs.length = 0;
      const v = (url: string, init: Partial<EngineRequest> = {}) => run(`/v${url}`, { scriptName: "/v", ...init });
      const cases: Array<[string, Partial<EngineRequest>, number]> = [
        ["/", {}, 200],
        ["/environ?x=1", {}, 200],
        ["/", { method: "HEAD" }, 200],
        ["/echo", { method: "POST", body: Buffer.from("hello"), headers: [["content-type", "text/plain"], ["content-length", "5"]] }, 200],
        ["/form", { method: "POST", body: Buffer.from("a=1&b=2"), headers: [["content-type", "application/x-www-form-urlencoded"]] }, 200],
        ["/json", { method: "POST", body: Buffer.from('{"numbers":[1,2]}'), headers: [["content-type", "application/json"]] }, 200],
        ["/big", { method: "POST", body: Buffer.alloc(3 * 1024 * 1024, 7), headers: [["content-type", "application/octet-stream"]] }, 200],
        ["/lines", { method: "POST", body: Buffer.from("1\n2\n"), headers: [["content-type", "text/plain"]] }, 200],
        ["/cookies", { headers: [["cookie", "session=abc"], ["cookie", "theme=dark"]] }, 200],
        ["/write", {}, 200],
        ["/repeat", {}, 200],
        ["/exc-info", {}, 500],
        ["/status/404", {}, 404],
        ["/status/418", { method: "DELETE" }, 418],
        ["/status/204", { method: "OPTIONS" }, 204],
        ["/status/304", {}, 304],
        ["/sqlite", {}, 200],
        ["/environ", { https: false, method: "PATCH", body: Buffer.from("{}"), headers: [["content-type", "application/json"]] }, 200],
      ];
      for (const [url, init, status] of cases) {
        const r = await v(url, init);
        expect(r.status, `${init.method ?? "GET"} ${url}: ${text(r)}`).toBe(status);
      }
      const out = logs.join("\n");
      expect(out).not.toContain("wsgiref/validate.py");
      expect(out).not.toContain("WSGIWarning");
      expect(out).not.toContain("AssertionError");
      expect(out).not.toContain("Exception ignored");
      // An app error inside the validator: a 500 from the engine, and still no validator complaint.
      logs.length = 0;
      expect((await v("/raise")).status).toBe(500);
      const failed = logs.join("\n");
      expect(failed).toContain("ValueError: boom");
      expect(failed).not.toContain("AssertionError");
      expect(failed).not.toContain("WSGIWarning");
    });
  });

  describe("files", () => {
    it("stdlib sqlite3 reads a read-only database shipped in the bundle, and cannot write it", async () => {
      const r = json(await run("/sqlite"));
      expect(r.rows).toEqual([["alpha", 1], ["beta", 2], ["gamma", 3]]);
      expect(r.count).toBe(3);
      expect(String(r.write)).toMatch(/readonly|read-only/i);
    });

    it("vendored pure-Python dependencies (python.path) are importable", async () => {
      expect(text(await run("/vendored"))).toBe("hello, wsgi from /app/vendor/tinylib.py");
    });

    it("the app image is read-only; / shows only /app /tmp /data and Pyodide's /lib /dev /proc", async () => {
      for (const name of ["write-app", "chmod-app", "replace-app", "write-stdlib"]) {
        const r = json(await run(`/escape/${name}`));
        expect(r.ok, `${name}: ${JSON.stringify(r)}`).toBe(false);
        expect(String(r.error)).toMatch(/PermissionError|OSError/);
      }
      const ls = json(await run("/escape/listdir"));
      expect(ls.value).toBe("['app', 'data', 'dev', 'lib', 'proc', 'tmp']");
      // The app still imports its own files unchanged.
      expect(text(await run("/"))).toBe("hello");
    });

    it("/tmp is capped at memory_mb (ENOSPC) and wiped by reset", async () => {
      expect(text(await run("/tmp-quota"))).toBe("stopped: OSError errno 51");
      expect(inst.realm.listTree("/tmp")).toEqual([]);
    });

    it("/data: a key's tree comes in with the request, changes go back, failures and reads send nothing", async () => {
      const none = await run("/data");
      expect(text(none)).toBe("0");
      expect(none.data).toBeUndefined();
      const start = encodeImage({ entries: [{ path: "count", kind: "file", mode: 0o644, data: Buffer.from("41") }], totalBytes: 2 });
      const read = await run("/data", { data: start });
      expect(text(read)).toBe("41");
      expect(read.data).toBeUndefined();
      const wrote = await run("/data", { method: "POST", data: start });
      expect(text(wrote)).toBe("41");
      const tree = decodeImage(Buffer.from(wrote.data!));
      const files = Object.fromEntries(tree.entries.filter((e) => e.kind === "file").map((e) => [e.path, e.data!.toString()]));
      expect(files).toEqual({ count: "42", "sub/note": "note 42" });
      const failed = await run("/data-fail", { data: start });
      expect(failed.status).toBe(500);
      expect(failed.data).toBeUndefined();
      // Nothing of the key stays after reset.
      expect(text(await run("/data"))).toBe("0");
    });
  });

  describe("snapshots, reset and randomness", () => {
    it("two requests never see the same random values (random, os.urandom, uuid4, module-level Random)", async () => {
      const seen = new Set<string>();
      for (let i = 0; i < 6; i++) {
        const r = json(await run("/rand"));
        for (const k of ["urandom", "random", "module_rng", "uuid"]) {
          const v = `${k}=${String(r[k])}`;
          expect(seen.has(v), v).toBe(false);
          seen.add(v);
        }
      }
    });

    it("a memory bomb ends in MemoryError (500) under the heap cap; reset recovers; exhausted() asks for a new instance", async () => {
      logs.length = 0;
      const r = await inst.handle(req("/memory-bomb"));
      expect(r.status).toBe(500);
      expect(logs.join("\n")).toContain(`MemoryError: the app exceeded its memory limit (${MEMORY_MB} MiB)`);
      expect(inst.realm.memoryBytes()).toBeLessThanOrEqual(heapCapBytes(MEMORY_MB));
      expect(inst.exhausted()).toBe(true);
      await inst.reset();
      expect(text(await run("/"))).toBe("hello");
      expect(text(await run("/memory-ok"))).toBe(String(16 * 1024 * 1024));
    });

    /** servesVendoredWithFreshRandomness, and the escapes the driver halts are halted. */
    async function servesBehindEveryWall(other: PythonInstance): Promise<void> {
      await servesVendoredWithFreshRandomness(other);
      for (const [name, expected] of [["import-js", /import of js halted/], ["pyodide-js", /import of pyodide_js halted/], ["ctypes", /import of ctypes halted/]] as const) {
        const out = json(await other.handle(req(`/escape/${name}`)));
        await other.reset();
        expect(out.ok).toBe(false);
        expect(out.error).toMatch(expected);
      }
      expect(json(await other.handle(req("/escape/gc-scan")))).toEqual({ ok: true, value: "'no JsProxy reachable'" });
      await other.reset();
    }

    /** The vendored module imports, and two requests after resets never share random values. */
    async function servesVendoredWithFreshRandomness(other: PythonInstance): Promise<void> {
      expect(text(await other.handle(req("/vendored")))).toBe("hello, wsgi from /app/vendor/tinylib.py");
      await other.reset();
      const r1 = json(await other.handle(req("/rand")));
      await other.reset();
      const r2 = json(await other.handle(req("/rand")));
      await other.reset();
      expect(r1.random).not.toBe(r2.random);
      expect(r1.module_rng).not.toBe(r2.module_rng);
    }

    it("exports a snapshot another instance boots from (no interpreter start, no app import) and serves identically", async () => {
      const snap = inst.exportSnapshot();
      expect(snap.memory.length).toBe(inst.snapshotBytes);
      const other = await engine.instantiate(await engine.prepare({ deploymentId: "py-unit", manifest: makeManifest(), image }));
      try {
        await other.importSnapshot(snap);
        expect(other.stats.restoredFromSnapshot).toBe(true);
        await servesVendoredWithFreshRandomness(other);
        expect(json(await other.handle(req("/escape/import-js"))).ok).toBe(false);
        await other.reset();
        // A corrupt or foreign snapshot is refused before anything is loaded.
        const third = await engine.instantiate(await engine.prepare({ deploymentId: "py-unit", manifest: makeManifest(), image }));
        await expect(third.importSnapshot({ ...snap, extra: { ...(snap.extra as object), buildId: "0".repeat(63) } })).rejects.toThrow(/malformed/);
        third.dispose();
      } finally {
        other.dispose();
      }
    });

    it("a snapshot in a file is mapped over the memory where Pyodide restores it (not copied), serves identically, and a short file is refused", async () => {
      const snap = inst.exportSnapshot();
      const dir = mkdtempSync(join(tmpdir(), "zc-pyfile-"));
      const path = join(dir, "image");
      writeFileSync(path, snap.memory, { mode: 0o444 });
      const fromFile = { memory: Buffer.alloc(0), globals: snap.globals, extra: snap.extra, file: { path, bytes: snap.memory.length } };
      const prepare = async () => engine.instantiate(await engine.prepare({ deploymentId: "py-unit", manifest: makeManifest(), image }));
      const other = await prepare();
      try {
        await other.importSnapshot(fromFile);
        expect(other.stats.restoredFromSnapshot).toBe(true);
        expect(other.stats.snapshotMemory).toBe("mapped");
        await servesVendoredWithFreshRandomness(other);
        expect(json(await other.handle(req("/escape/import-js"))).ok).toBe(false);
        await other.reset();
        // What the guest wrote stayed in its memory: the file is as it was.
        expect(readFileSync(path).equals(snap.memory)).toBe(true);
        // A file shorter than its image is refused (a mapping past the end would SIGBUS the host).
        const short = join(dir, "short");
        writeFileSync(short, snap.memory.subarray(0, snap.memory.length - 65536), { mode: 0o444 });
        const third = await prepare();
        await expect(third.importSnapshot({ ...fromFile, file: { path: short, bytes: snap.memory.length } })).rejects.toThrow(/snapshot file/);
        third.dispose();
      } finally {
        other.dispose();
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it("a spare's realm made ahead (preinstantiate: Pyodide linked with no tenant, parked) takes a snapshot from a file or bytes and serves behind every wall", async () => {
      const snap = inst.exportSnapshot();
      const dir = mkdtempSync(join(tmpdir(), "zc-pypark-"));
      const path = join(dir, "image");
      writeFileSync(path, snap.memory, { mode: 0o444 });
      const prepared = await engine.prepare({ deploymentId: "py-unit", manifest: makeManifest(), image });
      const spare = new PythonEngine({ log: (stream, line) => logs.push(`${stream}: ${line}`) });
      try {
        // A cold instance never takes the parked realm (it boots from no snapshot).
        await spare.preinstantiate();
        const cold = await spare.instantiate(prepared);
        expect(cold.spareEngine).toBe(false);
        cold.dispose();
        const other = await spare.instantiate(prepared, { forRestore: true });
        expect(other.spareEngine).toBe(true);
        expect(other.realm.parked).toBe(true);
        try {
          await other.importSnapshot({ memory: Buffer.alloc(0), globals: snap.globals, extra: snap.extra, file: { path, bytes: snap.memory.length } });
          expect(other.realm.parked).toBe(false);
          expect(other.stats.snapshotMemory).toBe("mapped");
          // The deployment's heap cap and image came with it.
          expect(other.realm.memoryBytes()).toBe((snap.extra as { memoryBytes: number }).memoryBytes);
          await servesBehindEveryWall(other);
          // The deployment's heap cap, not the spare's: 16 MiB fit, a bomb stops under the cap.
          expect(text(await other.handle(req("/memory-ok")))).toBe(String(16 * 1024 * 1024));
          await other.reset();
          expect((await other.handle(req("/memory-bomb"))).status).toBe(500);
          expect(other.realm.memoryBytes()).toBeLessThanOrEqual(heapCapBytes(MEMORY_MB));
          expect(other.realm.memoryBytes()).toBeGreaterThan(heapCapBytes(16));
          expect(other.exhausted()).toBe(true);
          await other.reset();
          // Its own snapshot exports and boots another instance like any other.
          const third = await engine.instantiate(prepared);
          await third.importSnapshot(other.exportSnapshot());
          expect(text(await third.handle(req("/vendored")))).toBe("hello, wsgi from /app/vendor/tinylib.py");
          third.dispose();
        } finally {
          other.dispose();
        }
        // Taken once: the next restore boots a realm of its own, unless another is made ahead.
        const plain = await spare.instantiate(prepared, { forRestore: true });
        expect(plain.spareEngine).toBe(false);
        plain.dispose();
        // The snapshot's bytes (no file) on a parked realm: copied where Pyodide restores them.
        await spare.preinstantiate();
        const fromBytes = await spare.instantiate(prepared, { forRestore: true });
        expect(fromBytes.spareEngine).toBe(true);
        await fromBytes.importSnapshot(snap);
        expect(fromBytes.stats.snapshotMemory).toBe("copied");
        await servesVendoredWithFreshRandomness(fromBytes);
        fromBytes.dispose();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it("a spare's base image (Pyodide booted with no app, preload) boots an app's instance that serves it behind every wall", async () => {
      const spare = new PythonEngine({ log: (stream, line) => logs.push(`${stream}: ${line}`) });
      await spare.preload();
      // As a spare host: the base image, then a realm parked ahead, which this cold boot takes.
      await spare.preinstantiate();
      const other = await spare.instantiate(await spare.prepare({ deploymentId: "py-base", manifest: makeManifest(), image }));
      try {
        expect(other.spareEngine).toBe(true);
        expect(text(await other.handle(req("/")))).toBe("hello");
        expect(other.stats.fromBaseImage).toBe(true);
        other.snapshot();
        await servesBehindEveryWall(other);
        // Its own snapshot exports and boots another instance like any other.
        const third = await engine.instantiate(await engine.prepare({ deploymentId: "py-base", manifest: makeManifest(), image }));
        await third.importSnapshot(other.exportSnapshot());
        expect(text(await third.handle(req("/vendored")))).toBe("hello, wsgi from /app/vendor/tinylib.py");
        third.dispose();
      } finally {
        other.dispose();
      }
    });

    // How fast a cycle is, bench/ measures.
    it("many request/reset cycles stay correct", async () => {
      for (let i = 0; i < 100; i++) {
        const r = await inst.handle(req("/"));
        expect(text(r)).toBe("hello");
        await inst.reset();
      }
    });
  });

  // Infinite loops are not an engine test: handle() runs the app synchronously and the pool kills
  // the sandbox host at timeout_ms (504), as for PHP (docs/python-sandbox.md).
  describe("confinement: guest Python cannot reach the host", () => {
    const python: Array<[string, RegExp]> = [
      ["import-js", /ModuleNotFoundError: import of js halted/],
      ["js-constructor", /ModuleNotFoundError: import of js halted/],
      ["pyodide-js", /ModuleNotFoundError: import of pyodide_js halted/],
      ["ffi", /ImportError/],
      ["ffi-create-proxy", /ImportError/],
      ["mount-nodefs", /ModuleNotFoundError: import of pyodide_js halted/],
      ["ctypes", /ModuleNotFoundError: import of ctypes halted/],
      ["passwd", /FileNotFoundError/],
      ["host-file", /FileNotFoundError/],
      ["subprocess", /OSError: \[Errno 138\]|not support processes/],
      ["system", /OSError: os.system returned -1/],
      ["fork", /OSError: \[Errno 52\] Function not implemented|AttributeError/],
      // The Python walls defeated: what it gets is a JS object of the sandbox realm, whose
      // Function constructor refuses to compile strings.
      ["rebuild-core", /EvalError: Code generation from strings disallowed/],
    ];
    for (const [name, expected] of python) {
      it(`${name}: fails, and nothing of the host appears in the response`, async () => {
        const r = await run(`/escape/${name}`);
        const body = text(r);
        const out = JSON.parse(body) as { ok: boolean; error?: string };
        expect(out.ok, body).toBe(false);
        expect(out.error).toMatch(expected);
        assertNoHostLeak(body);
      });
    }

    it("gc.get_objects() finds no JsProxy to start from", async () => {
      const r = json(await run("/escape/gc-scan"));
      expect(r).toEqual({ ok: true, value: "'no JsProxy reachable'" });
    });

    it("_pyodide internals expose nothing that reaches JavaScript objects", async () => {
      const r = json(await run("/escape/pyodide-internals"));
      expect(r.ok).toBe(true);
      // Names may remain, but no JsProxy values (the gc scan above) and no FFI functions.
      expect(String(r.value)).not.toMatch(/to_js|create_proxy/);
    });

    it("the environment holds nothing of the host's", async () => {
      const r = await run("/osenv");
      assertNoHostLeak(text(r));
      const env = json(r) as Record<string, string>;
      expect(env.HOME).toBe("/app");
      // Emscripten's defaults plus what the engine sets; nothing inherited from the host.
      const allowed = ["USER", "LOGNAME", "PATH", "PWD", "HOME", "LANG", "_", "TZ", "PYTHONDONTWRITEBYTECODE", "PYTHONHASHSEED", "PYTHONINSPECT"];
      expect(Object.keys(env).filter((k) => !allowed.includes(k))).toEqual([]);
      for (const [k, v] of Object.entries(env)) if (!["HOME", "LANG", "TZ", "PYTHONDONTWRITEBYTECODE", "PYTHONHASHSEED", "_"].includes(k) && process.env[k] !== undefined) expect(v, k).not.toBe(process.env[k]);
    });

    it("socket.connect to a real local server makes no connection", async () => {
      let connections = 0;
      const server = net.createServer((s) => {
        connections++;
        s.end("HTTP/1.0 200 OK\r\n\r\nleak");
      });
      await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
      try {
        const port = (server.address() as net.AddressInfo).port;
        const r = await run(`/escape/socket?${port}`);
        const out = json(r);
        expect(out.ok).toBe(false);
        expect(String(out.error)).toMatch(/OSError|unreachable/i);
        await new Promise((ok) => setTimeout(ok, 300));
        expect(connections).toBe(0);
      } finally {
        server.close();
      }
    });
  });

  describe("confinement: a guest holding every object of the sandbox realm still cannot reach the host", () => {
    let breached: PythonInstance;
    let ctx: vm.Context;
    const inRealm = (src: string): unknown => vm.runInContext(src, ctx);

    beforeAll(async () => {
      // A second instance, booted from the first one's snapshot, with Pyodide's internals left
      // on the sandbox global: the position of a guest that broke every Python-level wall.
      const e = new PythonEngine({ log: () => {}, exposeInternalsForTests: true });
      breached = await e.instantiate(await e.prepare({ deploymentId: "py-unit", manifest: makeManifest(), image }));
      await breached.importSnapshot(inst.exportSnapshot());
      ctx = breached.realm.context;
    });
    afterAll(() => breached?.dispose());

    it("the realm has no host globals and compiles no strings", () => {
      const f = breached.realm.facts();
      expect(f).toMatchObject({ evalBlocked: true, fnBlocked: true, process: "undefined", require: "undefined", fetch: "undefined", WebSocket: "undefined", streaming: "undefined" });
      for (const g of ["process", "require", "Buffer", "fetch", "global", "module", "setImmediate", "structuredClone", "loadPyodide", "_createPyodideModule", "read", "readbuffer"]) {
        expect(f.globals.includes(g) ? `${g}=${String(inRealm(`typeof globalThis[${JSON.stringify(g)}]`))}` : "absent").toMatch(/absent|undefined/);
      }
      expect(inRealm(`(() => { try { return globalThis.constructor.constructor("return typeof process")(); } catch (e) { return e.name; } })()`)).toBe("EvalError");
      expect(inRealm(`(() => { try { return __zcInternals.py.constructor.constructor("return process")(); } catch (e) { return e.name; } })()`)).toBe("EvalError");
      expect(inRealm(`(() => { try { return __zcInternals.Module.constructor.constructor("return process")(); } catch (e) { return e.name; } })()`)).toBe("EvalError");
    });

    it("a guest that calls Pyodide's restoreSnapshot again after a mapped restore on a parked realm maps nothing: the host's map works once per boot", async () => {
      const snap = inst.exportSnapshot();
      const dir = mkdtempSync(join(tmpdir(), "zc-pyremap-"));
      const path = join(dir, "image");
      writeFileSync(path, snap.memory, { mode: 0o444 });
      const e = new PythonEngine({ log: () => {}, exposeInternalsForTests: true });
      try {
        await e.preinstantiate();
        const mapped = await e.instantiate(await e.prepare({ deploymentId: "py-unit", manifest: makeManifest(), image }), { forRestore: true });
        expect(mapped.spareEngine).toBe(true);
        await mapped.importSnapshot({ memory: Buffer.alloc(0), globals: snap.globals, extra: snap.extra, file: { path, bytes: snap.memory.length } });
        expect(mapped.stats.snapshotMemory).toBe("mapped");
        // A valid header (this build's id, empty metadata, no memory), as a guest could make one.
        const again = vm.runInContext(
          `(() => { const api = __zcInternals.API, id = api.config.BUILD_ID, u = new Uint8Array(64), w = new Uint32Array(u.buffer);
            w[0] = 0x706e7300; w[1] = 64; w[2] = 2; for (let i = 0; i < 8; i++) w[4 + i] = parseInt(id.slice(i * 8, i * 8 + 8), 16); u.set([123, 125], 48);
            try { api.restoreSnapshot(u); return "restored"; } catch (err) { return String(err && err.message); } })()`,
          mapped.realm.context,
        );
        expect(again).toMatch(/no snapshot file to map/);
        // Nothing moved: the instance serves as before, and the file is as it was.
        expect(text(await mapped.handle(req("/vendored")))).toBe("hello, wsgi from /app/vendor/tinylib.py");
        await mapped.reset();
        expect(text(await mapped.handle(req("/")))).toBe("hello");
        expect(readFileSync(path).equals(snap.memory)).toBe(true);
        mapped.dispose();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it("keeps no copy of Pyodide's wasm binary once booted (its loader, which holds the bytes, is dropped)", () => {
      expect(inRealm("typeof __zcInternals.Module.instantiateWasm")).toBe("undefined");
    });

    it("import() and WebAssembly streaming (whose errors would be host objects) are gone", async () => {
      inRealm(`globalThis.__r = undefined; __zcImport("node:fs").then(null, (e) => { globalThis.__r = [e instanceof Error, e.message]; });`);
      await new Promise((ok) => setTimeout(ok, 20));
      expect(inRealm("JSON.stringify(__r)")).toBe(JSON.stringify([true, "import() is not available in the sandbox"]));
      expect(inRealm("typeof WebAssembly.instantiateStreaming + typeof WebAssembly.compileStreaming")).toBe("undefinedundefined");
    });

    it("mountNodeFS and Pyodide's package loader cannot touch host files", async () => {
      expect(inRealm(`(() => { try { __zcInternals.py.mountNodeFS("/host", "/etc"); return "mounted"; } catch (e) { return e instanceof Error ? "refused: " + e.message : "?"; } })()`)).toMatch(/^refused: .*(Node|node)/);
      inRealm(`globalThis.__r = undefined; Promise.resolve().then(() => __zcInternals.py.loadPackage("numpy", { messageCallback() {}, errorCallback() {} })).then((v) => { globalThis.__r = "loaded " + JSON.stringify(Array.from(v, (p) => p.name)); }, (e) => { globalThis.__r = "refused: " + (e instanceof Error); });`);
      await vi.waitFor(() => expect(inRealm("__r")).toBeDefined(), { timeout: 10_000 });
      // The loader finds no package (no repository, no network) and loads nothing.
      expect(String(inRealm("__r"))).toBe("loaded []");
      expect(inRealm(`__zcInternals.FS.readdir("/lib/python3.14/site-packages").join(",")`)).toBe(".,..");
      expect(breached.realm.listTree("/tmp")).toEqual([]);
    });

    it("no object reachable from the realm (global, Pyodide's module, API, FS) belongs to the host realm", () => {
      const roots = Array.from(inRealm("[globalThis, __zcInternals.py, __zcInternals.Module, __zcInternals.API, __zcInternals.FS, __zcInternals.memory]") as unknown[]);
      const walk = reachableHostObjects(roots);
      expect(walk.visited).toBeGreaterThan(5_000);
      expect(walk.leaks).toEqual([]);
      // The detector itself: a host object planted two levels down is found.
      const planted = reachableHostObjects([inRealm("({ a: { b: null } })")], (o) => Reflect.set((o as { a: object }).a, "b", { host: true }));
      expect(planted.leaks).toEqual([".b"]);
    });

    it("sandbox code that hooks the realm's builtins sees no host object while the host serves, resets and exports", async () => {
      // Wrap the prototype methods host code could end up calling and record every object they
      // receive (as `this` or an argument), then run a full request cycle.
      inRealm(String.raw`(() => {
        "use strict";
        const apply = Reflect.apply, add = Set.prototype.add, define = Object.defineProperty, getDesc = Object.getOwnPropertyDescriptor;
        const seen = new Set(), undo = [];
        globalThis.__seen = seen;
        globalThis.__undo = undo;
        const keep = (v) => { if ((typeof v === "object" || typeof v === "function") && v !== null && seen.size < 200000) apply(add, seen, [v]); };
        const record = (t, args) => { keep(t); for (let i = 0; i < args.length; i++) keep(args[i]); };
        const TA = Object.getPrototypeOf(Uint8Array.prototype);
        const targets = [[Array.prototype, ["push", "map", "forEach", "join", "slice", "indexOf", "includes", "filter", "concat", "reduce", "some", "every"]], [Function.prototype, ["call", "apply", "bind"]], [Promise.prototype, ["then", "catch", "finally"]], [Map.prototype, ["get", "set", "has", "forEach", "clear"]], [Set.prototype, ["add", "has"]], [TA, ["set", "subarray", "slice", "fill"]], [Object, ["keys", "entries", "assign", "freeze", "defineProperty", "getPrototypeOf"]], [JSON, ["parse", "stringify"]], [Reflect, ["apply", "construct", "get", "set", "ownKeys"]]];
        for (const [obj, names] of targets) for (const n of names) {
          const orig = obj[n];
          if (typeof orig !== "function") continue;
          const wrapped = { [n](...args) { record(this, args); return apply(orig, this, args); } }[n];
          undo.push([obj, n, orig, false]);
          obj[n] = wrapped;
        }
        for (const key of ["then", "constructor", "valueOf", "toString", "toJSON", Symbol.toPrimitive, Symbol.iterator]) {
          const d = getDesc(Object.prototype, key);
          undo.push([Object.prototype, key, d, true]);
          const value = d ? d.value : undefined;
          define(Object.prototype, key, { configurable: true, get() { keep(this); return value; }, set(v) { define(this, key, { value: v, writable: true, enumerable: true, configurable: true }); } });
        }
      })()`);
      try {
        const data = encodeImage({ entries: [{ path: "count", kind: "file", mode: 0o644, data: Buffer.from("1") }], totalBytes: 1 });
        for (const url of ["/", "/echo", "/big", "/data"]) {
          const r = await breached.handle(req(url, { method: "POST", body: Buffer.alloc(url === "/big" ? 100_000 : 5, 65), data }));
          expect(r.status, url).toBe(200);
          await breached.reset();
        }
        breached.exportSnapshot();
        const seen = Array.from(inRealm("[...__seen]") as unknown[]);
        expect(seen.length).toBeGreaterThan(100);
        expect(seen.filter(isHostObject).map((o) => Object.prototype.toString.call(o))).toEqual([]);
        // The detector itself: a host array handed to sandbox code that calls a hooked method is seen.
        (inRealm("(a) => Object.keys(a)") as (a: number[]) => string[])([1, 2]);
        expect(Array.from(inRealm("[...__seen]") as unknown[]).filter(isHostObject).length).toBe(1);
      } finally {
        inRealm(`for (const [obj, n, orig, isDesc] of __undo.reverse()) { if (isDesc) { if (orig) Object.defineProperty(obj, n, orig); else delete obj[n]; } else Object.defineProperty(obj, n, { value: orig, writable: true, configurable: true, enumerable: false }); }`);
      }
    });

    it("stack-trace hooks in the realm see no host function or receiver", () => {
      const probe = inRealm(String.raw`(function probe() {
        Error.prepareStackTrace = (e, frames) => frames;
        const frames = new Error("x").stack;
        delete Error.prepareStackTrace;
        let foreign = 0;
        for (const f of frames) {
          const fn = f.getFunction(), self = f.getThis();
          if (fn !== undefined && !(fn instanceof Function)) foreign++;
          if (self !== undefined && self !== null && typeof self === "object" && !(self instanceof Object) && self !== globalThis) foreign++;
        }
        return foreign + "/" + frames.length;
      })`) as () => string;
      const [foreign, total] = probe().split("/").map(Number);
      expect(total).toBeGreaterThan(1);
      expect(foreign).toBe(0);
    });
  });

  describe("the host process flags", () => {
    it("the engine serves and confines under --experimental-permission and --disallow-code-generation-from-strings", async () => {
      let connections = 0;
      const server = net.createServer((s) => {
        connections++;
        s.end();
      });
      await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
      const port = (server.address() as net.AddressInfo).port;
      const script = String.raw`
        const { PythonEngine } = await import(${JSON.stringify(join(ROOT, "dist", "src", "runtime", "python", "index.js"))});
        const app = ${JSON.stringify(APP.replace("import tinylib  # from vendor/ (python.path)", "tinylib = None"))};
        const image = { entries: [{ path: "app.py", kind: "file", mode: 0o644, data: Buffer.from(app) }], totalBytes: app.length };
        const manifest = { runtime: "python", python: { app: "app:application", path: [] }, routes: [], limits: { timeoutMs: 10000, memoryMb: 32, maxBodyBytes: 1048576, dataMb: 4 }, warmup: [] };
        const engine = new PythonEngine({ log: () => {} });
        const inst = await engine.instantiate(await engine.prepare({ deploymentId: "perm", manifest, image }));
        const req = (url) => ({ method: "GET", url, headers: [], body: new Uint8Array(0), remoteAddr: "127.0.0.1", remotePort: 1, https: false, serverName: "x", serverPort: 80, scriptName: "", params: {} });
        const out = {};
        out.hello = Buffer.from((await inst.handle(req("/"))).body).toString();
        inst.snapshot();
        for (const name of ["import-js", "rebuild-core", "subprocess", "host-file", "socket?${port}"]) {
          out[name] = JSON.parse(Buffer.from((await inst.handle(req("/escape/" + name))).body).toString());
          await inst.reset();
        }
        let fn = "allowed";
        try { new Function("return 1"); } catch (e) { fn = e.name; }
        out.hostFunction = fn;
        let fsRead = "allowed";
        try { (await import("node:fs")).readFileSync("/etc/hostname"); } catch (e) { fsRead = e.code; }
        out.hostFsRead = fsRead;
        process.stdout.write(JSON.stringify(out));
      `;
      const args = [
        "--experimental-permission",
        `--allow-fs-read=${join(ROOT, "dist")}`,
        `--allow-fs-read=${join(ROOT, "node_modules")}`,
        `--allow-fs-read=${join(ROOT, "package.json")}`,
        "--disallow-code-generation-from-strings",
        "--no-warnings",
        "--max-old-space-size=256",
        "--input-type=module",
        "-e",
        script,
      ];
      const child = spawn(process.execPath, args, { env: {}, stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      const code = await new Promise<number | null>((ok) => child.on("exit", ok));
      server.close();
      expect(code, stderr).toBe(0);
      const out = JSON.parse(stdout) as Record<string, { ok: boolean; error: string } | string>;
      expect(out.hello).toBe("hello");
      expect(out.hostFunction).toBe("EvalError");
      expect(out.hostFsRead).toBe("ERR_ACCESS_DENIED");
      for (const [name, r] of Object.entries(out)) {
        if (typeof r === "object") expect(r.ok, `${name}: ${JSON.stringify(r)}`).toBe(false);
      }
      expect((out["rebuild-core"] as { error: string }).error).toMatch(/EvalError/);
      expect(connections).toBe(0);
      assertNoHostLeak(stdout);
    }, 120_000);
  });

  describe("examples", () => {
    /** The manifest the parser will produce once it knows [python] (parsed here with smol-toml). */
    async function loadExample(name: string): Promise<{ manifest: Manifest; image: BundleImage }> {
      const dir = join(ROOT, "examples", name);
      const toml = parseToml(readFileSync(join(dir, "zerocell.toml"), "utf8")) as Record<string, unknown>;
      const manifest = { runtime: toml.runtime, python: toml.python, routes: toml.routes ?? [], warmup: toml.warmup ?? [], limits: { timeoutMs: 10_000, memoryMb: 128, maxBodyBytes: 10 * 1024 * 1024, dataMb: 16 } } as unknown as Manifest;
      return { manifest, image: readBundleArchive(await packDirectory(dir)) };
    }

    it("examples/wsgi-hello and examples/wsgi-vendored validate, warm up and serve", async () => {
      const e = new PythonEngine({ log: () => {} });
      const hello = await loadExample("wsgi-hello");
      expect(pythonSettings(hello.manifest)).toEqual({ app: "app:application", path: [] });
      const h = await e.instantiate(await e.prepare({ deploymentId: "ex-hello", manifest: hello.manifest, image: hello.image }));
      try {
        const page = await h.handle(req("/some/path?x=1"));
        expect(page.status).toBe(200);
        expect(text(page)).toContain("<h1>Hello from WSGI</h1>");
        expect(text(page)).toContain("/some/path");
        h.snapshot();
        expect((await h.handle(req("/favicon.ico"))).status).toBe(404);
        await h.reset();
      } finally {
        h.dispose();
      }
      const vendored = await loadExample("wsgi-vendored");
      expect(pythonSettings(vendored.manifest)).toEqual({ app: "app:application", path: ["vendor"] });
      const v = await e.instantiate(await e.prepare({ deploymentId: "ex-vendored", manifest: vendored.manifest, image: vendored.image }));
      try {
        for (const url of vendored.manifest.warmup) await v.handle(req(url));
        v.snapshot();
        expect(text(await v.handle(req("/")))).toMatch(/^tinyweb 0\.1 on zerocell/);
        await v.reset();
        expect(json(await v.handle(req("/api/hello/ada?shout=1")))).toEqual({ hello: "ada", shout: true });
        await v.reset();
        const sum = await v.handle(req("/api/sum", { method: "POST", body: Buffer.from('{"numbers":[1,2,3]}'), headers: [["content-type", "application/json"]] }));
        expect(sum.status).toBe(201);
        expect(json(sum)).toEqual({ sum: 6 });
        await v.reset();
        expect((await v.handle(req("/api/sum", { method: "POST", body: Buffer.from("nope") }))).status).toBe(400);
        await v.reset();
        expect((await v.handle(req("/api/sum"))).status).toBe(405);
        await v.reset();
        expect((await v.handle(req("/missing"))).status).toBe(404);
        await v.reset();
      } finally {
        v.dispose();
      }
    }, 120_000);
  });

  describe("an app that fails to import", () => {
    it("fails the first request and snapshot() with the import traceback, and asks to be replaced", async () => {
      const e = new PythonEngine({ log: () => {} });
      const img = makeImage({ "app.py": "import json\nvalue = 1 / 0\ndef application(environ, start_response):\n    pass\n" });
      const bad = await e.instantiate(await e.prepare({ deploymentId: "bad", manifest: makeManifest({ app: "app:application", path: [] }), image: img }));
      try {
        await expect(bad.handle(req("/"))).rejects.toThrow(/importing the app app:application failed: .*ZeroDivisionError: division by zero/s);
        expect(() => bad.snapshot()).toThrow(/ZeroDivisionError/);
        expect(bad.exhausted()).toBe(true);
      } finally {
        bad.dispose();
      }
    }, 120_000);
  });

  describe("the driver (driver.py)", () => {
    it("compiles with python3, warnings as errors, and is what the engine installs", () => {
      const path = join(ROOT, "src", "runtime", "python", "driver.py");
      // compile() only: py_compile would write a .pyc next to the source.
      const check = "import sys\nwith open(sys.argv[1], encoding='utf-8') as f:\n    compile(f.read(), sys.argv[1], 'exec')\nprint('ok')";
      expect(execFileSync("python3", ["-W", "error", "-c", check, path], { encoding: "utf8" }).trim()).toBe("ok");
      const source = readFileSync(path, "utf8");
      expect(readDriverSource()).toBe(source);
      expect(driverInstallCode()).toContain(`exec(compile(${JSON.stringify(source)}, '<zerocell>', 'exec'), _zm.__dict__)`);
    });
  });

  describe("the realm code (inner.ts)", () => {
    it("reaches the realm as the source of one strict function, compiled there by vm.Script into a realm function", () => {
      // The module holds nothing else the function could close over (it runs in another realm).
      expect(Object.keys(innerModule)).toEqual(["INNER_SOURCE"]);
      const source = innerModule.INNER_SOURCE;
      expect(source).toMatch(/^\(function zerocellPythonRealm\(bridge\) \{\s*"use strict";/);
      const context = vm.createContext(Object.create(null) as object, { codeGeneration: { strings: false, wasm: true } });
      const fn: unknown = new vm.Script(source).runInContext(context);
      expect(typeof fn).toBe("function");
      expect(fn instanceof Function).toBe(false);
      expect(Object.getPrototypeOf(fn)).toBe(vm.runInContext("Function.prototype", context));
    });
  });

  describe("rewriting Pyodide's modules for the realm", () => {
    it("removes import() and import.meta, keeps the code otherwise, and refuses unknown shapes", () => {
      const out = rewriteModule(`async function _createPyodideModule(){const x=await import("node:fs");const u=import.meta.url;o.pyimport("a");return x}export default _createPyodideModule;`, "pyodide.asm.mjs");
      expect(out).toContain('__zcImport("node:fs")');
      expect(out).toContain('o.pyimport("a")');
      expect(out).not.toContain("import.meta");
      expect(out.startsWith('"use strict";')).toBe(true);
      expect(() => rewriteModule("export const x = 1;", "pyodide.asm.mjs")).toThrow(/default export/);
    });
  });
});
