"""The smallest WSGI app: answers every path with a greeting and what the request looked like."""
import html
import sys


def application(environ, start_response):
    rows = [
        ("method", environ["REQUEST_METHOD"]),
        ("script name", environ["SCRIPT_NAME"] or "(empty)"),
        ("path info", environ["PATH_INFO"]),
        ("query", environ["QUERY_STRING"] or "(none)"),
        ("scheme", environ["wsgi.url_scheme"]),
        ("server", "%s:%s" % (environ["SERVER_NAME"], environ["SERVER_PORT"])),
        ("client", environ.get("REMOTE_ADDR", "")),
        ("python", sys.version.split()[0]),
    ]
    if environ["PATH_INFO"] == "/favicon.ico":
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return [b"not found\n"]
    table = "".join("<tr><th>%s</th><td>%s</td></tr>" % (html.escape(k), html.escape(v)) for k, v in rows)
    body = ("<!doctype html><title>Hello from WSGI</title><h1>Hello from WSGI</h1><table>%s</table>\n" % table).encode()
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]
