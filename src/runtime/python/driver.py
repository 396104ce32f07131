# The Python side of the engine: module `__zerocell__`, installed once per cold boot and carried
# by the snapshot. It seals Pyodide's JavaScript bridge away from guest code (first wall; the
# realm is the real boundary), imports the app, and runs one WSGI request per `begin`/`run` pair.
#
# The host talks to it only through entry(name, a, b) with str/int arguments and a str/int
# result: no JS object crosses, so no PyProxy or JsProxy is created per request. Request bodies
# are written by the host straight into a fresh bytes object (begin returns its data address),
# response bodies are read straight out of one (run returns address and length).
# Must never: hand guest code a JsProxy, or keep a reference to a request past the next begin.
#
# Not imported as a file: driver.ts reads this text (next to driver.js in dist/, copied there by
# scripts/copy-assets.mjs) and installs it with exec() into a module of its own, compiled as
# '<zerocell>' (guest tracebacks name no host path). Runs under Pyodide's CPython only.

# Everything the driver uses per request is captured here, before any app code runs: the app may
# replace json.dumps, builtins.len, sys.stderr, io.BytesIO ... at import or request time, and the
# driver must not notice. Builtins come from the module's own copy of the builtins dict (made by
# driverInstallCode), stdlib functions are bound below, JSON goes through _json's C scanner and
# encoder (json.loads/dumps look up module globals at call time).
import _json
import _random
import gc as _gc
import io as _io
import os as _os
import random as _random_mod
import sys as _sys
import traceback as _traceback
from wsgiref.util import FileWrapper as _FileWrapper
from pyodide.ffi import JsProxy as _JsProxy

_modules = _sys.modules
_meta_path = _sys.meta_path
_stdout = _sys.stdout
_stderr = _sys.stderr
_BytesIO = _io.BytesIO
_gc_collect = _gc.collect
_gc_freeze = _gc.freeze
_gc_get_objects = _gc.get_objects
_format_exc = _traceback.format_exc
_exc_info = _sys.exc_info
_urandom = _os.urandom
_chdir = _os.chdir
_environ_pop = _os.environ.pop
_environ_set = _os.environ.__setitem__
_c_seed = _random.Random.seed
_Random = _random_mod.Random
_SystemRandom = _random_mod.SystemRandom
_random_inst = _random_mod._inst
# bytes.__getitem__ on a full slice copies a bytes subclass's real data (no __len__/__bytes__ of the app).
_bytes_slice = bytes.__getitem__
_ALL = slice(None)
_bytes_join = b"".join
_str_join = "".join


class _JsonContext:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = None


_json_scan = _json.make_scanner(_JsonContext())


def _json_default(o):
    raise TypeError("not JSON serializable: %s" % type(o).__name__)


_json_encode = _json.make_encoder(None, _json_default, _json.encode_basestring_ascii, None, ":", ",", False, False, True)
del _JsonContext


def _loads(text):
    obj, end = _json_scan(text, 0)
    if end != len(text):
        raise ValueError("trailing data in driver JSON")
    return obj


def _dumps(obj):
    return _str_join(_json_encode(obj, 0))


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
# Largest response body (bytes); the host sends its limit with every request.
_max_response = 32 * 1024 * 1024

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
    # Pyodide's time.sleep goes through the FFI removed below (run_sync): put CPython's back.
    wl = _modules.get("pyodide.webloop")
    orig_sleep = getattr(wl, "_orig_sleep", None) if wl is not None else None
    if orig_sleep is not None:
        import time
        time.sleep = orig_sleep
    for name in ("js", "pyodide_js", "pyodide_js._api"):
        _modules.pop(name, None)
    try:
        import _pyodide._importhook as ih
        jf = getattr(ih, "jsfinder", None)
        if jf is not None and isinstance(getattr(jf, "jsproxies", None), dict):
            jf.jsproxies.clear()
        _meta_path[:] = [f for f in _meta_path if f is not jf and type(f).__name__ not in ("JsFinder",)]
    except Exception:
        pass
    if _Blocker not in _meta_path:
        _meta_path.insert(0, _Blocker)
    for name in ("ctypes", "_ctypes", "js", "pyodide_js"):
        _modules[name] = None
    for mname, mod in list(_modules.items()):
        if mod is None or mname.partition(".")[0] not in ("pyodide", "_pyodide", "_pyodide_core"):
            continue
        d = getattr(mod, "__dict__", None)
        if not isinstance(d, dict):
            continue
        for k, v in list(d.items()):
            if k in _FFI_NAMES or isinstance(v, _JsProxy):
                del d[k]
    _gc_collect()


def _no_dns():
    """The sandbox has no network and no resolver: Emscripten's would hand out made-up addresses
    (172.29.x.y) for any name. Names other than localhost, this host's name and numeric addresses
    fail as a resolver failure does (socket.gaierror, an OSError), so create_connection() and
    urlopen() report "Name or service not known" instead of connecting to a fake address."""
    import socket as s
    local = {"localhost", "localhost.localdomain", s.gethostname().lower()}

    def resolvable(host):
        if host is None:
            return True
        if isinstance(host, (bytes, bytearray)):
            host = bytes(host).decode("ascii", "replace")
        h = str(host).rstrip(".").lower()
        if h == "" or h in local:
            return True
        for fam, text in ((s.AF_INET, h), (s.AF_INET6, h.strip("[]").split("%")[0])):
            try:
                s.inet_pton(fam, text)
                return True
            except (OSError, ValueError):
                pass
        return False

    def refuse(host):
        if not resolvable(host):
            raise s.gaierror(s.EAI_NONAME, "Name or service not known")

    real_gai, real_ghbn, real_ghbn_ex = s.getaddrinfo, s.gethostbyname, s.gethostbyname_ex

    def getaddrinfo(host, port, *a, **k):
        refuse(host)
        return real_gai(host, port, *a, **k)

    def gethostbyname(host):
        refuse(host)
        return real_ghbn(host)

    def gethostbyname_ex(host):
        refuse(host)
        return real_ghbn_ex(host)

    s.getaddrinfo, s.gethostbyname, s.gethostbyname_ex = getaddrinfo, gethostbyname, gethostbyname_ex


def _setup(opts_json):
    global _settings, _memory_mb, _probe_obj
    o = _loads(opts_json)
    # The app's environment variables (zerocell env set): os.environ (and C's environ through
    # putenv), before the app is imported, so the snapshot carries them.
    for k, v in o.pop("env", {}).items():
        _environ_set(k, v)
    _settings = o
    _memory_mb = int(o.get("memoryMb", 0))
    std = [p for p in _sys.path if isinstance(p, str) and p.startswith("/lib/")]
    _sys.path[:] = ["/app"] + ["/app/" + p for p in o.get("path", [])] + std
    _sys.path_importer_cache.clear()
    _sys.dont_write_bytecode = True
    _chdir("/app")
    for k in ("LD_LIBRARY_PATH",):
        _environ_pop(k, None)
    _no_dns()
    _seal()
    # Names every realm resolves before guest code runs (Emscripten's DNS table is JS state; see
    # inner.ts): later lookups of them change nothing, so uuid1() or getfqdn() stay cheap.
    try:
        import socket
        for name in (socket.gethostname(), "localhost"):
            socket.getaddrinfo(name, None)
    except Exception:
        pass
    _probe_obj = b"\x01zerocell-probe\x02" + _urandom(8)
    return _dumps({"addr": id(_probe_obj) + _OFF, "hex": _probe_obj.hex()})


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
        return "error: " + _traceback_text()


def _reseed(r):
    # The C seed (os.urandom-based) and the Python-level cache of Random.seed; never the app's seed().
    _c_seed(r, None)
    try:
        r.gauss_next = None
    except Exception:
        pass


def _reseed_all():
    # A restored snapshot repeats its PRNG state: reseed from the host CSPRNG on every request.
    _reseed(_random_inst)
    for r in _randoms:
        _reseed(r)
    tf = _modules.get("tempfile")
    if tf is not None:
        try:
            tf._name_sequence = None
        except Exception:
            pass


def _presnap():
    global _req, _body, _resp, _randoms
    _req = _body = _resp = None
    for s in (_stdout, _stderr):
        try:
            s.flush()
        except Exception:
            pass
    _gc_collect()
    # Frozen objects (an imported snapshot's) are not in gc.get_objects(): add, never replace.
    known = set(map(id, _randoms))
    _randoms = _randoms + [o for o in _gc_get_objects() if isinstance(o, _Random) and o is not _random_inst and not isinstance(o, _SystemRandom) and id(o) not in known]
    _gc_collect()
    # Objects of the snapshot stay out of later collections: fewer pages dirtied per request.
    _gc_freeze()
    return str(len(_randoms))


def _begin(meta_json, body_len):
    global _req, _body, _resp
    _req = _resp = _body = None
    _reseed_all()
    _req = _loads(meta_json)
    if body_len >= 2:
        # bytes(0) and bytes(1) are shared singletons; small bodies travel in the JSON instead.
        _body = bytes(body_len)
        return id(_body) + _OFF
    _body = _req.pop("b", "").encode("latin-1")
    return 0


class ResponseTooLarge(BaseException):
    """The app produced more body bytes than the platform's response limit (raised by write() and
    for an over-long iterable; sticky: catching it does not let the response through)."""


def _as_bytes(data, what):
    if type(data) is bytes:
        return data
    if isinstance(data, bytes):
        return _bytes_slice(data, _ALL)
    raise TypeError("%s %s, not bytes" % (what, type(data).__name__))


class _Response:
    __slots__ = ("status", "headers", "chunks", "sent", "total", "limit", "over")

    def __init__(self, limit):
        self.status = None
        self.headers = None
        self.chunks = []
        self.sent = False
        self.total = 0
        self.limit = limit
        self.over = False

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
        copied = []
        for h in headers:
            if type(h) is not tuple or len(h) != 2 or type(h[0]) is not str or type(h[1]) is not str:
                raise TypeError("each response header must be a (str, str) tuple, got %r" % (h,))
            copied.append((h[0], h[1]))
        self.status = status
        self.headers = copied
        return self.write

    def add(self, data):
        # Counted as the app produces it: past the limit nothing more is kept and the request fails.
        if self.over:
            raise ResponseTooLarge("response body exceeds %d bytes" % self.limit)
        n = len(data)
        if self.total + n > self.limit:
            self.over = True
            self.chunks = []
            raise ResponseTooLarge("response body exceeds %d bytes" % self.limit)
        self.total += n
        self.sent = True
        self.chunks.append(data)

    def write(self, data):
        if self.status is None:
            raise AssertionError("write() before start_response")
        data = _as_bytes(data, "write() got")
        if data:
            self.add(data)


def _environ(r, body):
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
        "wsgi.input": _BytesIO(body),
        "wsgi.errors": _stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "wsgi.file_wrapper": _FileWrapper,
        "zerocell.params": dict(r["params"]),
    }
    if r["https"]:
        env["HTTPS"] = "on"
    for k, v in r["cgi"]:
        env[k] = v
    return env


def _error_response(message):
    # The gateway shows visitors its short error page with the request id for this marker; the
    # traceback went to the log (_log) only.
    body = b"Internal Server Error\n"
    return 500, [["content-type", "text/plain; charset=utf-8"], ["content-length", str(len(body))], ["x-zerocell-error", "app"]], body


def _log(text):
    try:
        _stderr.write(text if text.endswith("\n") else text + "\n")
        _stderr.flush()
    except BaseException:
        pass


def _traceback_text():
    e = _exc_info()[1]
    try:
        return _format_exc(limit=50)
    except BaseException:
        # The app broke the traceback module's own lookups (builtins.len...): the exception alone.
        try:
            return "%s: %s (traceback unavailable)" % (type(e).__name__, e)
        except BaseException:
            return "%s (traceback unavailable)" % type(e).__name__


def _call_app(env, limit):
    resp = _Response(limit)
    result = _app(env, resp.start_response)
    try:
        for chunk in result:
            chunk = _as_bytes(chunk, "the WSGI app yielded")
            if chunk:
                if resp.status is None:
                    raise AssertionError("the WSGI app yielded body data before calling start_response")
                resp.add(chunk)
    finally:
        close = getattr(result, "close", None)
        del result
        if close is not None:
            close()
    if resp.over:
        raise ResponseTooLarge("response body exceeds %d bytes" % limit)
    if resp.status is None:
        raise AssertionError("the WSGI app returned without calling start_response")
    return resp


def _run():
    global _req, _body, _resp
    r = _req
    body = _body
    _body = None
    failed = False
    limit = r.get("max", _max_response)
    if _app is None:
        status, headers, data = _error_response("no app")
        failed = True
    else:
        env = _environ(r, body)
        del body
        try:
            resp = _call_app(env, limit)
            status = int(resp.status[:3])
            headers = [[k.lower(), v] for k, v in resp.headers]
            data = _bytes_join(resp.chunks)
            del resp
        except ResponseTooLarge:
            env = None
            _req = None
            _gc_collect()
            _log("zerocell: the response body exceeded the limit of %d bytes" % limit)
            return _dumps({"tooLarge": True, "limit": limit})
        except MemoryError:
            env = None
            _gc_collect()
            _log("zerocell: MemoryError: the app exceeded its memory limit (%d MiB)" % _memory_mb)
            status, headers, data = _error_response("memory")
            failed = True
        except BaseException:
            _log("zerocell: the WSGI app failed:\n" + _traceback_text())
            status, headers, data = _error_response("app")
            failed = True
        env = None
    if type(data) is not bytes:
        data = _bytes_slice(data, _ALL)
    if r["method"] == "HEAD":
        data = b""
    _resp = data
    _req = None
    return _dumps({"status": status, "headers": headers, "addr": id(data) + _OFF, "len": len(data), "failed": failed})


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
