"""tinyweb: a very small pure-Python WSGI micro-framework, vendored into the example bundle.

    app = App()

    @app.route("GET", "/hello/<name>")
    def hello(request, name):
        return {"hello": name}            # dict → JSON, str → text/plain, bytes → octet-stream
"""
import json
import re
from urllib.parse import parse_qs

__all__ = ["App", "Request", "HTTPError"]
__version__ = "0.1"

_REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}


class HTTPError(Exception):
    def __init__(self, status, message=""):
        super().__init__(message)
        self.status = status
        self.message = message or _REASONS.get(status, "Error")


class Request:
    def __init__(self, environ):
        self.environ = environ
        self.method = environ["REQUEST_METHOD"]
        self.path = environ.get("PATH_INFO") or "/"
        self.query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        self._body = None

    @property
    def body(self):
        if self._body is None:
            n = int(self.environ.get("CONTENT_LENGTH") or 0)
            self._body = self.environ["wsgi.input"].read(n) if n > 0 else b""
        return self._body

    def json(self):
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            raise HTTPError(400, "body is not JSON")


class App:
    def __init__(self):
        self._routes = []

    def route(self, method, pattern):
        regex = re.compile("^" + re.sub(r"<(\w+)>", r"(?P<\1>[^/]+)", pattern) + "$")

        def register(fn):
            self._routes.append((method, regex, fn))
            return fn

        return register

    def _dispatch(self, request):
        allowed = False
        for method, regex, fn in self._routes:
            m = regex.match(request.path)
            if m is None:
                continue
            if method != request.method and not (method == "GET" and request.method == "HEAD"):
                allowed = True
                continue
            return fn(request, **m.groupdict())
        raise HTTPError(405 if allowed else 404)

    def __call__(self, environ, start_response):
        request = Request(environ)
        try:
            status, result = 200, self._dispatch(request)
            if isinstance(result, tuple):
                status, result = result
        except HTTPError as e:
            status, result = e.status, {"error": e.message}
        if isinstance(result, (dict, list)):
            body, ctype = json.dumps(result).encode(), "application/json"
        elif isinstance(result, str):
            body, ctype = result.encode(), "text/plain; charset=utf-8"
        else:
            body, ctype = bytes(result), "application/octet-stream"
        start_response("%d %s" % (status, _REASONS.get(status, "OK")), [("Content-Type", ctype), ("Content-Length", str(len(body)))])
        return [body]
