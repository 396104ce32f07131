/**
 * Guest failures stay guest failures (issue 15): whatever a guest tries through the runtime's
 * glue (database drivers, SOAP, raw sockets, HTTP clients, DNS) ends as the language's own error
 * the page can print — false and a warning, mysqli_connect_error, PDOException, SoapFault,
 * OSError — never an engine exception that aborts the request. And an instance whose request
 * was aborted for any reason is discarded: the next request gets a new one.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { startServer, fetchApp, phpBundle, writeBundle, type TestServer } from "../helpers/server.js";

const PHP_PAGE = `<?php
header('content-type: text/plain');
mysqli_report(MYSQLI_REPORT_OFF);
$out = [];
$try = function (string $name, callable $f) use (&$out) {
  set_error_handler(function ($no, $msg) use (&$w) { $w = $msg; return true; });
  $w = null;
  try { $v = $f(); $out[] = "$name=" . var_export($v, true) . ($w === null ? '' : " warning=$w"); }
  catch (Throwable $e) { $out[] = "$name=" . get_class($e) . ': ' . $e->getMessage(); }
  finally { restore_error_handler(); }
};
$try('mysqli', function () { $c = mysqli_connect('db.example.com', 'u', 'p', 'd'); return $c === false ? 'false ' . mysqli_connect_error() : 'connected'; });
$try('mysqli_ip', function () { $c = mysqli_connect('127.0.0.1', 'u', 'p', 'd', 3306); return $c === false ? 'false ' . mysqli_connect_error() : 'connected'; });
$try('pdo', fn() => new PDO('mysql:host=db.example.com;dbname=x', 'u', 'p'));
$try('soap_wsdl', fn() => new SoapClient('http://example.com/service?wsdl'));
$try('soap_call', fn() => (new SoapClient(null, ['location' => 'http://127.0.0.1:9/x', 'uri' => 'urn:x']))->__soapCall('f', []));
$try('fsockopen', fn() => fsockopen('db.example.com', 3306, $errno, $errstr, 2));
$try('stream_socket_client', fn() => stream_socket_client('tcp://127.0.0.1:6379', $errno, $errstr, 2));
$try('file_get_contents', fn() => file_get_contents('http://example.com/'));
$try('curl', function () { $c = curl_init('http://example.com/'); curl_setopt($c, CURLOPT_RETURNTRANSFER, true); $r = curl_exec($c); return ($r === false ? 'false' : 'data') . ' ' . curl_error($c); });
echo implode("\\n", $out), "\\nDONE";
`;

const PY_APP = `
import socket, urllib.request

def attempt(f):
    try:
        return "ok " + repr(f())[:60]
    except OSError as e:
        return "%s: %s" % (type(e).__name__, e)

def application(environ, start_response):
    out = [
        "create_connection=" + attempt(lambda: socket.create_connection(("127.0.0.1", 5432), timeout=2)),
        "create_connection_name=" + attempt(lambda: socket.create_connection(("db.example.com", 5432), timeout=2)),
        "urlopen=" + attempt(lambda: urllib.request.urlopen("http://example.com/", timeout=2)),
        "getaddrinfo=" + attempt(lambda: socket.getaddrinfo("db.example.com", 5432)),
        "localhost=" + attempt(lambda: socket.getaddrinfo("localhost", 80)[0][4][0]),
    ]
    start_response("200 OK", [("content-type", "text/plain")])
    return ["\\n".join(out + ["DONE"]).encode()]
`;

describe("guest failures stay guest failures", () => {
  let server: TestServer;

  beforeAll(async () => {
    // A small response limit, so a request can be aborted on purpose (response_too_large).
    server = await startServer(["--no-spare-hosts", "--max-response-bytes", "200000"]);
    await server.cli(["deploy", phpBundle("gf-php.localhost", { "index.php": PHP_PAGE, "big.php": "<?php echo str_repeat('x', 300000);" }), "--app", "gf-php"]);
    await server.cli(["deploy", writeBundle({ "zerocell.toml": `runtime = "python"\n[python]\napp = "app:application"\n[[routes]]\nhost = "gf-py.localhost"\n`, "app.py": PY_APP }), "--app", "gf-py"]);
    await server.cli([
      "deploy",
      writeBundle({
        "zerocell.toml": `runtime = "python"\n[python]\napp = "app:application"\n[[routes]]\nhost = "gf-pybig.localhost"\n`,
        "app.py": `def application(environ, start_response):\n    start_response("200 OK", [("content-type", "text/plain")])\n    n = 300000 if environ.get("PATH_INFO") == "/big" else 2\n    return [b"x" * n]\n`,
      }),
      "--app",
      "gf-pybig",
    ]);
  }, 300_000);
  afterAll(async () => {
    expect(await server.stop()).toBe(0);
  });

  it("PHP: database drivers, SOAP, sockets, URL streams and curl fail as PHP errors; the page answers 200 with what it printed", async () => {
    const r = await fetchApp(server, "gf-php.localhost", "/");
    expect(r.status, r.text).toBe(200);
    const lines = Object.fromEntries(r.text.split("\n").map((l) => [l.split("=")[0], l.slice(l.indexOf("=") + 1)]));
    expect(r.text).toMatch(/\nDONE$/);
    expect(lines.mysqli).toMatch(/^'false .+'/);
    expect(lines.mysqli_ip).toMatch(/^'false .+'/);
    expect(lines.pdo).toMatch(/^PDOException: SQLSTATE\[HY000\] \[2002\]/);
    expect(lines.soap_wsdl).toMatch(/^SoapFault: SOAP-ERROR: Parsing WSDL/);
    expect(lines.soap_call).toMatch(/^SoapFault: /);
    expect(lines.fsockopen).toMatch(/^false warning=fsockopen\(\): Unable to connect/);
    expect(lines.stream_socket_client).toMatch(/^false warning=stream_socket_client\(\): Unable to connect/);
    expect(lines.file_get_contents).toMatch(/^false warning=file_get_contents\(http:\/\/example.com\/\): Failed to open stream/);
    expect(lines.curl).toBe("'false Couldn\\'t resolve host \\'example.com\\''");
    expect(r.text).not.toContain("ErrnoError");
    // The instance is fine afterwards.
    const again = await fetchApp(server, "gf-php.localhost", "/");
    expect(again.text).toBe(r.text);
  }, 60_000);

  it("Python: socket.create_connection, urlopen and getaddrinfo of a name raise OSError; localhost still resolves", async () => {
    const r = await fetchApp(server, "gf-py.localhost", "/");
    expect(r.status, r.text).toBe(200);
    const lines = Object.fromEntries(r.text.split("\n").map((l) => [l.split("=")[0], l.slice(l.indexOf("=") + 1)]));
    expect(lines.create_connection).toMatch(/^OSError: \[Errno \d+\]/);
    expect(lines.create_connection_name).toBe("gaierror: [Errno -2] Name or service not known");
    expect(lines.urlopen).toMatch(/^URLError: <urlopen error \[Errno -2\] Name or service not known>/);
    expect(lines.getaddrinfo).toBe("gaierror: [Errno -2] Name or service not known");
    // Emscripten's resolver table answers for local names (an address in 172.29/16).
    expect(lines.localhost).toMatch(/^ok '[\d.]+'$/);
  }, 60_000);

  it("an instance whose request was aborted is discarded, never reset and reused (PHP and Python)", async () => {
    for (const [host, big] of [["gf-php.localhost", "/big.php"], ["gf-pybig.localhost", "/big"]] as const) {
      // A normal request, then one more on the same (reset) instance.
      await fetchApp(server, host, "/");
      const reused = await fetchApp(server, host, "/");
      expect(reused.headers["x-zerocell-instance"], host).toBe("snapshot; reused");
      // Aborted by the engine at the response limit.
      const aborted = await fetchApp(server, host, big);
      expect(aborted.status, `${host} ${aborted.text}`).toBe(502);
      expect(aborted.text).toContain("response_too_large");
      // The next request gets a new instance (from the stored snapshot), not the aborted one.
      const next = await fetchApp(server, host, "/");
      expect(next.status).toBe(200);
      expect(next.headers["x-zerocell-instance"], host).toBe("snapshot; new");
    }
  }, 120_000);
});
