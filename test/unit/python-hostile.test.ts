/**
 * The Python engine against a hostile tenant (red-team findings): output floods are stopped while
 * the app produces them; /tmp and /data quotas count unlinked files that are still open (and
 * every other way a file grows); nothing a request leaves in the sandbox realm's JavaScript heap
 * or in the file system's JS state reaches the next request (another key's) after a reset; and an
 * app that replaces the stdlib functions the driver uses still gets correct responses.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import type { BundleImage, Manifest } from "../../src/bundle/index.js";
import { encodeImage } from "../../src/bundle/index.js";
import type { EngineRequest, EngineResponse } from "../../src/runtime/engine.js";
import { PythonEngine, PythonInstance, heapCapBytes } from "../../src/runtime/python/index.js";

const MEMORY_MB = 32;
const DATA_MB = 8;

const APP = String.raw`
import errno
import os
import random
import shutil
import sys


def text(start_response, body, status="200 OK"):
    data = body if isinstance(body, bytes) else body.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]


class Liar(bytes):
    """A bytes subclass that lies about its length."""

    def __len__(self):
        return 0


def js_object():
    # The documented wall-breaker: _pyodide_core rebuilt from the builtin table gives to_js back.
    import importlib.machinery, importlib.util
    spec = importlib.machinery.BuiltinImporter.find_spec("_pyodide_core")
    core = importlib.util.module_from_spec(spec)
    return core.to_js({})


def fill(dir, size, count):
    held = []
    try:
        for i in range(count):
            f = open("%s/held%d" % (dir, i), "wb")
            f.write(b"q" * size)
            f.flush()
            os.unlink("%s/held%d" % (dir, i))
            held.append(f)
        return "kept %d" % len(held)
    except OSError as e:
        return "stopped after %d: %s" % (len(held), errno.errorcode.get(e.errno, e.errno))


def attempt(fn):
    try:
        return "ok " + repr(fn())
    except OSError as e:
        return "refused " + errno.errorcode.get(e.errno, str(e.errno))


def application(environ, start_response):
    path = environ["PATH_INFO"]
    query = environ["QUERY_STRING"]
    # 1. output floods
    if path == "/flood-iter":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        def forever():
            chunk = b"x" * (1 << 20)
            while True:
                yield chunk
        return forever()
    if path == "/flood-write":
        write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
        chunk = b"y" * (1 << 20)
        while True:
            write(chunk)
    if path == "/flood-write-swallowed":
        # Catching the error from write() does not let a response through.
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        caught = 0
        for _ in range(100):
            try:
                write(b"w" * (1 << 20))
            except BaseException:
                caught += 1
                if caught == 3:
                    break
        return [b"small"]
    if path == "/flood-liar":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        def lies():
            while True:
                yield Liar(b"z" * (1 << 20))
        return lies()
    if path == "/exactly":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        n = int(query)
        return [b"e" * (n // 2), b"e" * (n - n // 2)]
    # 2. quotas
    if path == "/unlink-open":
        return text(start_response, fill("/tmp", 4 << 20, 40))
    if path == "/unlink-open-data":
        return text(start_response, fill("/data", 1 << 20, 40))
    if path == "/truncate":
        fd = os.open("/tmp/sparse", os.O_RDWR | os.O_CREAT)
        out = [attempt(lambda: os.ftruncate(fd, 1 << 30)), attempt(lambda: os.truncate("/tmp/sparse", 1 << 30))]
        try:
            out.append(attempt(lambda: os.posix_fallocate(fd, 0, 1 << 30)))
        except AttributeError:
            out.append("no posix_fallocate")
        out.append(attempt(lambda: os.ftruncate(fd, 1 << 20)))
        return text(start_response, " | ".join(out))
    if path == "/rename-across":
        with open("/tmp/moved", "wb") as f:
            f.write(b"m" * (3 << 20))
        renamed = attempt(lambda: os.rename("/tmp/moved", "/data/moved"))
        return text(start_response, renamed + " | " + attempt(lambda: shutil.move("/tmp/moved", "/data/moved")))
    # 3. state that outlives a request
    if path == "/js-store":
        o = js_object()
        o.constructor.prototype.zcSecret = query
        o.constructor.zcStatic = query
        return text(start_response, "stored")
    if path == "/js-read":
        o = js_object()
        found = []
        for name in ("zcSecret", "zcStatic"):
            try:
                found.append(str(getattr(o if name == "zcSecret" else o.constructor, name)))
            except AttributeError:
                found.append("-")
        return text(start_response, ",".join(found))
    if path == "/fs-store":
        out = []
        os.chdir("/dev")
        for i in range(int(query)):
            open("/tmp/n%d" % i, "w").close()
        import fcntl
        out.append(attempt(lambda: fcntl.fcntl(1, fcntl.F_SETFL, os.O_APPEND | os.O_NONBLOCK)))
        out.append(attempt(lambda: os.chmod("/tmp", 0o700)))
        out.append(attempt(lambda: os.utime("/tmp", (1, 1))))
        out.append(attempt(lambda: os.utime("/app/app.py", (2, 2))))
        out.append(attempt(lambda: os.utime("/dev/null", (3, 3))))
        out.append(attempt(lambda: os.chmod("/tmp/n0", 0o600) if int(query) else None))
        return text(start_response, " | ".join(out))
    if path == "/fs-read":
        import fcntl
        tmp = os.stat("/tmp")
        app = os.stat("/app/app.py")
        null = os.stat("/dev/null")
        open("/tmp/probe", "w").close()
        probe = os.stat("/tmp/probe")
        vfs = os.statvfs("/tmp")
        return text(start_response, repr((os.getcwd(), probe.st_ino, vfs.f_ffree, tmp.st_mode, tmp.st_mtime, app.st_mtime, null.st_mtime, fcntl.fcntl(1, fcntl.F_GETFL))))
    if path == "/dns-store":
        import socket
        return text(start_response, attempt(lambda: socket.gethostbyname(query)))
    if path == "/dns-read":
        import socket
        return text(start_response, attempt(lambda: socket.gethostbyaddr("172.29.1.0")[0]))
    if path == "/dns-ordinary":
        # Lookups that add nothing to Emscripten's DNS table: the host's own name, localhost, literals.
        import email.utils, socket, uuid
        return text(start_response, repr((str(uuid.uuid1())[14:], email.utils.make_msgid()[-12:], socket.getfqdn(), socket.gethostbyname("127.0.0.1"), socket.getaddrinfo("localhost", 80)[0][4][1])))
    if path == "/sleep":
        import time
        t0 = time.monotonic()
        time.sleep(0.02)
        return text(start_response, "slept" if time.monotonic() - t0 >= 0.02 else "too short")
    if path == "/rand":
        return text(start_response, repr(random.random()))
    return text(start_response, "hello")
`;

/** An app that replaces, at import and at request time, the stdlib the driver used to look up. */
const PATCHING_APP = String.raw`
import base64
import builtins
import gc
import io
import json
import random
import sys
import traceback
import wsgiref.util

_len, _isinstance = builtins.len, builtins.isinstance
_real_stdout, _real_stderr = sys.stdout, sys.stderr


def patch():
    json.dumps = lambda *a, **k: "not json"
    json.loads = lambda *a, **k: {"forged": True}
    json._default_decoder = None
    json.encoder.c_make_encoder = None
    builtins.len = lambda o: _len(o) + 7
    builtins.isinstance = lambda o, t: False if t is bytes else _isinstance(o, t)
    sys.stdout = io.StringIO()
    sys.stderr = io.StringIO()
    io.BytesIO = lambda *a: io.StringIO("forged input")
    random.seed = lambda *a, **k: None
    random.Random.seed = lambda self, *a, **k: None
    traceback.format_exc = lambda *a, **k: "forged traceback"
    gc.collect = lambda *a: 0
    base64.b64encode = lambda *a: b"forged"
    wsgiref.util.FileWrapper = None


patch()  # at import: in the snapshot every request starts from


def application(environ, start_response):
    patch()  # and again while the request runs
    path = environ["PATH_INFO"]
    if path == "/raise":
        raise ValueError("raised after patching")
    if path == "/dns-ordinary":
        # Lookups that add nothing to Emscripten's DNS table: the host's own name, localhost, literals.
        import email.utils, socket, uuid
        return text(start_response, repr((str(uuid.uuid1())[14:], email.utils.make_msgid()[-12:], socket.getfqdn(), socket.gethostbyname("127.0.0.1"), socket.getaddrinfo("localhost", 80)[0][4][1])))
    if path == "/rand":
        body = repr(random.random()).encode()
    else:
        body = b"input=" + environ["wsgi.input"].read() + b" errors-is-stderr=" + str(environ["wsgi.errors"] is _real_stderr).encode()
        body += b" wrapper=" + str(environ["wsgi.file_wrapper"] is not None).encode()
    start_response("201 Created", [("Content-Type", "text/plain"), ("X-Len", str(_len(body)))])
    return [body]
`;

function manifest(): Manifest {
  return {
    runtime: "python",
    python: { app: "app:application", path: [] },
    routes: [],
    limits: { timeoutMs: 10_000, memoryMb: MEMORY_MB, maxBodyBytes: 16 * 1024 * 1024, dataMb: DATA_MB },
    warmup: [],
  } as unknown as Manifest;
}

function image(source: string): BundleImage {
  const data = Buffer.from(source);
  return { entries: [{ path: "app.py", kind: "file", mode: 0o644, data }], totalBytes: data.length };
}

function req(url: string, init: Partial<EngineRequest> = {}): EngineRequest {
  return { method: "GET", url, headers: [["host", "py.localhost"]], body: new Uint8Array(0), remoteAddr: "203.0.113.7", remotePort: 51234, https: true, serverName: "py.localhost", serverPort: 8443, scriptName: "", params: {}, ...init };
}

const text = (r: EngineResponse) => Buffer.from(r.body).toString("utf8");

/** A key's /data tree holding one file (what the gateway sends on a keyed route). */
function keyData(owner: string): Uint8Array {
  const data = Buffer.from(owner);
  return encodeImage({ entries: [{ path: "owner", kind: "file", mode: 0o644, data }], totalBytes: data.length });
}

async function start(engine: PythonEngine, source: string, maxResponseBytes?: number): Promise<PythonInstance> {
  const prepared = await engine.prepare({ deploymentId: "py-hostile", manifest: manifest(), image: image(source), ...(maxResponseBytes === undefined ? {} : { maxResponseBytes }) });
  const inst = await engine.instantiate(prepared);
  expect((await inst.handle(req("/"))).status).toBeLessThan(300);
  inst.snapshot();
  return inst;
}

describe("python engine against a hostile tenant", () => {
  const logs: string[] = [];
  const engine = new PythonEngine({ log: (stream, line) => logs.push(`${stream}: ${line}`) });
  let inst: PythonInstance;

  beforeAll(async () => {
    inst = await start(engine, APP, 4 * 1024 * 1024);
  }, 120_000);
  afterAll(() => inst?.dispose());

  async function run(url: string, init: Partial<EngineRequest> = {}): Promise<EngineResponse> {
    try {
      return await inst.handle(req(url, init));
    } finally {
      await inst.reset();
    }
  }

  describe("output floods stop at the response limit while the app writes", () => {
    const LIMIT = 4 * 1024 * 1024;
    for (const path of ["/flood-iter", "/flood-write", "/flood-write-swallowed", "/flood-liar"]) {
      it(`${path}: fails with response_too_large with bounded memory; the instance keeps serving`, async () => {
        const rss0 = process.memoryUsage().rss;
        await expect(run(path)).rejects.toMatchObject({ code: "response_too_large", status: 502 });
        // At most the limit plus a chunk was kept: far below the heap cap the app could fill.
        expect(inst.realm.memoryBytes()).toBeLessThan(heapCapBytes(MEMORY_MB));
        expect(process.memoryUsage().rss - rss0).toBeLessThan(64 * 1024 * 1024);
        expect(inst.exhausted()).toBe(false);
        expect(text(await run("/"))).toBe("hello");
      });
    }

    it("a body of exactly the limit passes, one byte more does not", async () => {
      expect((await run(`/exactly?${LIMIT}`)).body.byteLength).toBe(LIMIT);
      await expect(run(`/exactly?${LIMIT + 1}`)).rejects.toMatchObject({ code: "response_too_large" });
    });

    it("with the default limit (32 MiB) an endless 1 MiB generator is cut at 32 MiB", async () => {
      const other = await start(new PythonEngine({ log: () => {} }), APP);
      try {
        await expect(other.handle(req("/flood-iter"))).rejects.toMatchObject({ code: "response_too_large", status: 502 });
        expect(other.realm.memoryBytes()).toBeLessThan(heapCapBytes(MEMORY_MB));
        await other.reset();
        expect(text(await other.handle(req("/")))).toBe("hello");
      } finally {
        other.dispose();
      }
    }, 120_000);
  });

  describe("quotas count every byte a file holds until its last descriptor closes", () => {
    it("/tmp: files unlinked while open keep counting (ENOSPC at memory_mb), and count no more after reset", async () => {
      for (let round = 0; round < 2; round++) {
        const out = text(await run("/unlink-open"));
        expect(out).toMatch(/^stopped after \d+: ENOSPC$/);
        expect(Number(/after (\d+)/.exec(out)![1]) * 4).toBeLessThanOrEqual(MEMORY_MB);
      }
    });

    it("/data: the same game stops at data_mb", async () => {
      const out = text(await run("/unlink-open-data", { data: keyData("alice") }));
      expect(out).toMatch(/^stopped after \d+: ENOSPC$/);
      expect(Number(/after (\d+)/.exec(out)![1])).toBeLessThanOrEqual(DATA_MB);
    });

    it("truncate, ftruncate and posix_fallocate cannot grow a file past the quota", async () => {
      const out = text(await run("/truncate")).split(" | ");
      expect(out[0]).toBe("refused ENOSPC");
      expect(out[1]).toBe("refused ENOSPC");
      // Pyodide 314's os module has no posix_fallocate. A build that gains one must refuse it
      // with ENOSPC: this then fails, so the quota's answer to it gets checked.
      expect(out[2]).toBe("no posix_fallocate");
      expect(out[3]).toBe("ok None");
    });

    it("a file cannot move between /tmp and /data (EXDEV); shutil.move copies it under /data's quota", async () => {
      expect(text(await run("/rename-across", { data: keyData("alice") }))).toBe("refused EXDEV | ok '/data/moved'");
    });
  });

  describe("every request starts from the snapshot: JS heap and file-system state included", () => {
    it("a secret alice stores in the realm's JS heap (rebuilt _pyodide_core) is not seen by bob after a reset", async () => {
      expect(text(await run("/js-read", { data: keyData("bob") }))).toBe("-,-");
      const rebuilds = inst.stats.realmRebuilds;
      expect(text(await run("/js-store?alice-secret", { data: keyData("alice") }))).toBe("stored");
      expect(inst.stats.realmRebuilds).toBe(rebuilds + 1);
      expect(inst.stats.lastRebuildReason).toMatch(/^touched: /);
      expect(text(await run("/js-read", { data: keyData("bob") }))).toBe("-,-");
      // The rebuilt realm serves, confines and resets like the first one.
      expect(text(await run("/"))).toBe("hello");
      expect(inst.stats.realmRebuilds).toBe(rebuilds + 2);
    }, 60_000);

    it("ordinary requests never rebuild the realm", async () => {
      const rebuilds = inst.stats.realmRebuilds;
      for (const url of ["/", "/rand", "/fs-read", "/unlink-open", "/truncate", "/dns-ordinary"]) expect((await run(url)).status).toBe(200);
      // time.sleep is CPython's again (Pyodide's goes through the FFI the walls remove).
      expect(text(await run("/sleep"))).toBe("slept");
      await run("/rename-across", { data: keyData("carol") });
      expect(inst.stats.realmRebuilds).toBe(rebuilds);
    });

    it("cwd, inode numbers, /tmp's mode and times, file times and stdout's flags do not carry over", async () => {
      const before = text(await run("/fs-read"));
      const stored = text(await run("/fs-store?25")).split(" | ");
      // Attribute changes outside the contents of /tmp and /data are refused.
      expect(stored.slice(1, 5)).toEqual(["refused EPERM", "refused EPERM", "refused EPERM", "refused EPERM"]);
      expect(stored[5]).toBe("ok None");
      expect(text(await run("/fs-read"))).toBe(before);
    });

    it("names alice resolves (Emscripten's DNS table) are not visible to bob", async () => {
      expect(text(await run("/dns-store?alice-secret.example", { data: keyData("alice") }))).toMatch(/^refused -2/); // no DNS in the sandbox: nothing enters the table (docs/python-sandbox.md)
      expect(text(await run("/dns-read", { data: keyData("bob") }))).not.toContain("alice-secret");
    }, 60_000);
  });

  describe("an app that replaces the stdlib the driver uses", () => {
    let patched: PythonInstance;
    const plogs: string[] = [];
    beforeAll(async () => {
      patched = await start(new PythonEngine({ log: (stream, line) => plogs.push(`${stream}: ${line}`) }), PATCHING_APP);
    }, 120_000);
    afterAll(() => patched?.dispose());

    const expectServed = (r: EngineResponse, input: string) => {
      expect(r.status).toBe(201);
      const body = `input=${input} errors-is-stderr=True wrapper=True`;
      expect(text(r)).toBe(body);
      expect(r.headers).toEqual([["content-type", "text/plain"], ["x-len", String(body.length)]]);
    };

    it("still gets its exact response, the next request works, and randomness is still reseeded (snapshot mode)", async () => {
      for (let i = 0; i < 3; i++) {
        expectServed(await patched.handle(req("/", { method: "POST", body: Buffer.from(`body ${i}`) })), `body ${i}`);
        await patched.reset();
      }
      const r1 = text(await patched.handle(req("/rand")));
      await patched.reset();
      const r2 = text(await patched.handle(req("/rand")));
      await patched.reset();
      expect(r1).not.toBe(r2);
    });

    it("and without resets (daemon mode), including after an exception, logged with its real traceback", async () => {
      plogs.length = 0;
      expectServed(await patched.handle(req("/", { method: "POST", body: Buffer.from("one") })), "one");
      const failed = await patched.handle(req("/raise"));
      expect(failed.status).toBe(500);
      expect(text(failed)).toBe("Internal Server Error\n");
      expect(plogs.join("\n")).toContain("ValueError: raised after patching");
      expectServed(await patched.handle(req("/", { method: "POST", body: Buffer.from("two") })), "two");
      await patched.reset();
    });
  });
});
