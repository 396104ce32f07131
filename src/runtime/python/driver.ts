/**
 * The Python side of the engine: module `__zerocell__`, installed once per cold boot and carried
 * by the snapshot. It seals Pyodide's JavaScript bridge away from guest code (first wall; the
 * realm is the real boundary), imports the app, and runs one WSGI request per `begin`/`run` pair.
 *
 * The host talks to it only through entry(name, a, b) with str/int arguments and a str/int
 * result: no JS object crosses, so no PyProxy or JsProxy is created per request. Request bodies
 * are written by the host straight into a fresh bytes object (begin returns its data address),
 * response bodies are read straight out of one (run returns address and length).
 * Must never: hand guest code a JsProxy, or keep a reference to a request past the next begin.
 */
export const DRIVER_SOURCE = String.raw`
import gc
import io
import json
import os
import random
import sys
import traceback

# Data of a bytes object starts at bytes.__basicsize__ - 1 (PyBytesObject.ob_sval); checked at setup.
_OFF = bytes.__basicsize__ - 1
_app = None
_settings = {}
_req = None
_body = None
_resp = None
_randoms = []
_probe_obj = None
_memory_mb = 0

# Modules guest code may not import: the JS bridge, FFI, native code loading.
_BLOCKED_TOP = frozenset({"js", "pyodide_js", "ctypes", "_ctypes", "micropip", "pyodide", "_pyodide", "_pyodide_core"})
# FFI entry points removed from the Pyodide modules that must stay loaded.
_FFI_NAMES = frozenset({
    "to_js", "create_proxy", "create_once_callable", "destroy_proxies", "run_sync", "can_run_sync",
    "raw_call", "js2py_as_py_json", "js2py_deep", "js2py_default", "js2py_default_call_result",
    "js2py_promise", "py2js_as_js_json", "py2js_deep", "py2js_default", "create_promise_converter",
    "register_js_module", "unregister_js_module", "run_js", "eval_js", "trigger_fatal_error",
    "jsproxy_typedict", "js_flags", "JsFuncSignature", "Js2PyConverter", "Py2JsConverter",
    "pyimport", "setInterruptBuffer", "loadPackage", "loadPackagesFromImports", "install",
})


class _Blocker:
    """Refuses imports of the JS bridge and native-code modules that are not already loaded."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        top = name.partition(".")[0]
        if top in _BLOCKED_TOP:
            raise ImportError("No module named %r (not available in the zerocell sandbox)" % name, name=name)
        return None

    @staticmethod
    def invalidate_caches():
        pass


def _seal():
    from pyodide.ffi import JsProxy
    for name in ("js", "pyodide_js", "pyodide_js._api"):
        sys.modules.pop(name, None)
    try:
        import _pyodide._importhook as ih
        jf = getattr(ih, "jsfinder", None)
        if jf is not None and isinstance(getattr(jf, "jsproxies", None), dict):
            jf.jsproxies.clear()
        sys.meta_path[:] = [f for f in sys.meta_path if f is not jf and type(f).__name__ not in ("JsFinder",)]
    except Exception:
        pass
    if _Blocker not in sys.meta_path:
        sys.meta_path.insert(0, _Blocker)
    for name in ("ctypes", "_ctypes", "js", "pyodide_js"):
        sys.modules[name] = None
    for mname, mod in list(sys.modules.items()):
        if mod is None or mname.partition(".")[0] not in ("pyodide", "_pyodide", "_pyodide_core"):
            continue
        d = getattr(mod, "__dict__", None)
        if not isinstance(d, dict):
            continue
        for k, v in list(d.items()):
            if k in _FFI_NAMES or isinstance(v, JsProxy):
                del d[k]
    del JsProxy
    gc.collect()


def _setup(opts_json):
    global _settings, _memory_mb, _probe_obj
    o = json.loads(opts_json)
    _settings = o
    _memory_mb = int(o.get("memoryMb", 0))
    std = [p for p in sys.path if isinstance(p, str) and p.startswith("/lib/")]
    sys.path[:] = ["/app"] + ["/app/" + p for p in o.get("path", [])] + std
    sys.path_importer_cache.clear()
    sys.dont_write_bytecode = True
    os.chdir("/app")
    for k in ("LD_LIBRARY_PATH",):
        os.environ.pop(k, None)
    _seal()
    _probe_obj = b"\x01zerocell-probe\x02" + os.urandom(8)
    return json.dumps({"addr": id(_probe_obj) + _OFF, "hex": _probe_obj.hex()})


def _load(spec):
    global _app
    import importlib
    mod_name, _, attr = spec.partition(":")
    try:
        obj = importlib.import_module(mod_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
        if not callable(obj):
            raise TypeError("%s is not callable" % spec)
        _app = obj
        return "ok"
    except BaseException:
        return "error: " + traceback.format_exc(limit=20)


def _reseed():
    # A restored snapshot repeats its PRNG state: reseed from the host CSPRNG on every request.
    random.seed()
    for r in _randoms:
        try:
            r.seed()
        except Exception:
            pass
    tf = sys.modules.get("tempfile")
    if tf is not None:
        tf._name_sequence = None


def _presnap():
    global _req, _body, _resp, _randoms
    _req = _body = _resp = None
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    gc.collect()
    # Frozen objects (an imported snapshot's) are not in gc.get_objects(): add, never replace.
    known = set(map(id, _randoms))
    _randoms = _randoms + [o for o in gc.get_objects() if isinstance(o, random.Random) and o is not random._inst and not isinstance(o, random.SystemRandom) and id(o) not in known]
    gc.collect()
    # Objects of the snapshot stay out of later collections: fewer pages dirtied per request.
    gc.freeze()
    return str(len(_randoms))


def _begin(meta_json, body_len):
    global _req, _body, _resp
    _req = _resp = _body = None
    _reseed()
    _req = json.loads(meta_json)
    if body_len >= 2:
        # bytes(0) and bytes(1) are shared singletons; small bodies travel in the JSON instead.
        _body = bytes(body_len)
        return id(_body) + _OFF
    _body = _req.pop("b", "").encode("latin-1")
    return 0


class _Response:
    __slots__ = ("status", "headers", "chunks", "sent")

    def __init__(self):
        self.status = None
        self.headers = None
        self.chunks = []
        self.sent = False

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response called a second time without exc_info")
        if type(status) is not str:
            raise TypeError("status must be a str, not %s" % type(status).__name__)
        if len(status) < 4 or not status[:3].isdigit() or status[3] != " ":
            raise ValueError("status must look like '200 OK', got %r" % status[:64])
        if type(headers) is not list:
            raise TypeError("response headers must be a list, not %s" % type(headers).__name__)
        for h in headers:
            if type(h) is not tuple or len(h) != 2 or type(h[0]) is not str or type(h[1]) is not str:
                raise TypeError("each response header must be a (str, str) tuple, got %r" % (h,))
        self.status = status
        self.headers = headers
        return self.write

    def write(self, data):
        if self.status is None:
            raise AssertionError("write() before start_response")
        if not isinstance(data, bytes):
            raise TypeError("write() takes bytes, not %s" % type(data).__name__)
        if data:
            self.sent = True
            self.chunks.append(data)


def _environ(r, body):
    from wsgiref.util import FileWrapper
    env = {
        "REQUEST_METHOD": r["method"],
        "SCRIPT_NAME": r["script"],
        "PATH_INFO": r["path"],
        "QUERY_STRING": r["query"],
        "SERVER_NAME": r["serverName"],
        "SERVER_PORT": r["serverPort"],
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_SOFTWARE": "zerocell",
        "GATEWAY_INTERFACE": "CGI/1.1",
        "REMOTE_ADDR": r["remoteAddr"],
        "REMOTE_PORT": r["remotePort"],
        "REQUEST_URI": r["uri"],
        "RAW_URI": r["uri"],
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https" if r["https"] else "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "wsgi.file_wrapper": FileWrapper,
        "zerocell.params": dict(r["params"]),
    }
    if r["https"]:
        env["HTTPS"] = "on"
    for k, v in r["cgi"]:
        env[k] = v
    return env


def _error_response(message):
    body = b"Internal Server Error\n"
    return 500, [["content-type", "text/plain; charset=utf-8"], ["content-length", str(len(body))]], body


def _log(text):
    try:
        sys.stderr.write(text if text.endswith("\n") else text + "\n")
        sys.stderr.flush()
    except Exception:
        pass


def _call_app(env):
    resp = _Response()
    result = _app(env, resp.start_response)
    try:
        for chunk in result:
            if not isinstance(chunk, bytes):
                raise TypeError("the WSGI app yielded %s, not bytes" % type(chunk).__name__)
            if chunk:
                if resp.status is None:
                    raise AssertionError("the WSGI app yielded body data before calling start_response")
                resp.sent = True
                resp.chunks.append(chunk)
    finally:
        close = getattr(result, "close", None)
        del result
        if close is not None:
            close()
    if resp.status is None:
        raise AssertionError("the WSGI app returned without calling start_response")
    return resp


def _run():
    global _req, _body, _resp
    r = _req
    body = _body
    _body = None
    failed = False
    if _app is None:
        status, headers, data = _error_response("no app")
        failed = True
    else:
        env = _environ(r, body)
        del body
        try:
            resp = _call_app(env)
            status = int(resp.status[:3])
            headers = [[k.lower(), v] for k, v in resp.headers]
            data = b"".join(resp.chunks)
            del resp
        except MemoryError:
            env = None
            gc.collect()
            _log("zerocell: MemoryError: the app exceeded its memory limit (%d MiB)" % _memory_mb)
            status, headers, data = _error_response("memory")
            failed = True
        except BaseException:
            _log("zerocell: the WSGI app failed:\n" + traceback.format_exc(limit=50))
            status, headers, data = _error_response("app")
            failed = True
        env = None
    if type(data) is not bytes:
        data = bytes(data)
    if r["method"] == "HEAD":
        data = b""
    _resp = data
    _req = None
    return json.dumps({"status": status, "headers": headers, "addr": id(data) + _OFF, "len": len(data), "failed": failed}, ensure_ascii=True)


def entry(name, a, b):
    if name == "begin":
        return _begin(a, b)
    if name == "run":
        return _run()
    if name == "setup":
        return _setup(a)
    if name == "load":
        return _load(a)
    if name == "presnap":
        return _presnap()
    if name == "reseal":
        _seal()
        return "ok"
    if name == "end":
        global _resp
        _resp = None
        return 0
    raise ValueError("unknown driver entry %r" % (name,))
`;

/**
 * Installs `__zerocell__` from DRIVER_SOURCE (run through runPython; leaves nothing in __main__).
 */
export function driverInstallCode(): string {
  return [
    "import sys as _zs, types as _zt",
    "_zm = _zt.ModuleType('__zerocell__')",
    `exec(compile(${JSON.stringify(DRIVER_SOURCE)}, '<zerocell>', 'exec'), _zm.__dict__)`,
    "_zs.modules['__zerocell__'] = _zm",
    "del _zs, _zt, _zm",
    "'ok'",
  ].join("\n");
}
