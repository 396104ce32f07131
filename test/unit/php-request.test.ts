/**
 * The PHP engine's request entry (src/runtime/php/request.ts) calls php-wasm's C entry points
 * itself instead of `PHP.run()`. The same requests go through both on one runtime and must give
 * PHP the same request ($_SERVER, $_GET, $_COOKIE, php://input) and come back the same (status,
 * headers, body bytes, stderr, exit code), including binary bodies, output larger than the
 * runner's first buffer, fatal errors and exit().
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { startPhpRuntime, PHP_INI_PATH, type PhpRuntime } from "../../src/runtime/php/runtime.js";
import { PhpRequestRunner, type PhpRequestSpec, type RequestModule } from "../../src/runtime/php/request.js";
import { PHPExecutionFailureError, type PHPResponse } from "@php-wasm/universal";

const APP = `<?php
$w = $_GET['w'] ?? '';
if ($w === 'big') { for ($i = 0; $i < 3000; $i++) echo str_pad((string) $i, 99, '.') , "\\n"; return; }
if ($w === 'fatal') { header('x-before: 1'); echo 'partial'; throw new RuntimeException('boom'); }
if ($w === 'exit') { http_response_code(418); echo 'bye'; exit(3); }
if ($w === 'stderr') { fwrite(fopen('php://stderr', 'w'), "to the log\\n"); error_log('logged'); echo 'ok'; return; }
http_response_code(201);
header('x-one: a');
header('x-multi: 1', false);
header('x-multi: 2', false);
setcookie('c', 'v');
$keep = ['REQUEST_METHOD', 'REQUEST_URI', 'QUERY_STRING', 'SCRIPT_NAME', 'SCRIPT_FILENAME', 'PHP_SELF', 'DOCUMENT_ROOT', 'HTTPS', 'SERVER_NAME', 'SERVER_PORT', 'REMOTE_ADDR', 'CONTENT_TYPE', 'CONTENT_LENGTH', 'HTTP_HOST', 'HTTP_X_CUSTOM', 'HTTP_COOKIE', 'PATH_INFO', 'PATH_TRANSLATED', 'ZC_EXTRA'];
$s = [];
foreach ($keep as $k) $s[$k] = $_SERVER[$k] ?? null;
$in = file_get_contents('php://input');
echo json_encode(['server' => $s, 'get' => $_GET, 'cookie' => $_COOKIE, 'post' => $_POST, 'input' => base64_encode($in), 'len' => strlen($in)]);
`;

type Result = { status: number; headers: Array<[string, string]>; body: Buffer; errors: string; exitCode: number };

function normalize(headers: Array<[string, string]>): Array<[string, string]> {
  return headers.filter(([k]) => k !== "date" && k !== "expires").sort((a, b) => (a[0] + a[1]).localeCompare(b[0] + b[1]));
}

describe("PHP request entry without PHP.run()", () => {
  let rt: PhpRuntime;
  let runner: PhpRequestRunner;

  beforeAll(async () => {
    const loader = await (await import("@php-wasm/node-8-3")).getPHPLoaderModule();
    rt = await startPhpRuntime(loader, { heapCapBytes: 256 << 20, maxResponseBytes: 32 << 20 });
    rt.php.writeFile(PHP_INI_PATH, "display_errors = 0\nlog_errors = 1\nhtml_errors = 0\n");
    rt.php.mkdirTree("/app/public");
    rt.php.writeFile("/app/public/index.php", APP);
    // php-wasm's JS side is set up by one run() (as the engine's priming request does).
    await rt.php.run({ code: "<?php " });
    runner = new PhpRequestRunner(rt.module as unknown as RequestModule);
  }, 60_000);

  afterAll(() => {
    try {
      rt.php.exit(0);
    } catch {
      // gone
    }
  });

  function spec(over: Partial<PhpRequestSpec> = {}): PhpRequestSpec {
    return {
      scriptPath: "/app/public/index.php",
      uri: "/index.php/extra?a=1&b[]=2&b[]=3",
      method: "POST",
      https: false,
      headers: { host: "example.test:8080", "x-custom": "yes", cookie: "k=v; k2=v2", "content-type": "application/x-www-form-urlencoded" },
      body: Buffer.from("f=1&g=two"),
      $_SERVER: { DOCUMENT_ROOT: "/app/public", SCRIPT_NAME: "/index.php", SCRIPT_FILENAME: "/app/public/index.php", PHP_SELF: "/index.php/extra", PATH_INFO: "/extra", SERVER_NAME: "example.test", SERVER_PORT: "8080", REMOTE_ADDR: "203.0.113.9", REQUEST_URI: "/index.php/extra?a=1&b[]=2&b[]=3", QUERY_STRING: "a=1&b[]=2&b[]=3", ZC_EXTRA: "z" },
      ...over,
    };
  }

  async function viaPhpWasm(s: PhpRequestSpec): Promise<Result> {
    rt.output.begin();
    let r: PHPResponse;
    try {
      r = await rt.php.run({ scriptPath: s.scriptPath, relativeUri: s.uri, protocol: s.https ? "https" : "http", method: s.method as "POST", headers: s.headers, ...(s.body.byteLength > 0 ? { body: s.body } : {}), $_SERVER: s.$_SERVER });
    } catch (e) {
      if (!(e instanceof PHPExecutionFailureError)) throw e;
      r = e.response;
    }
    const headers: Array<[string, string]> = [];
    for (const [k, vs] of Object.entries(r.headers)) for (const v of vs) headers.push([k, v]);
    return { status: r.httpStatusCode, headers, body: Buffer.from(r.bytes), errors: r.errors, exitCode: r.exitCode };
  }

  async function viaRunner(s: PhpRequestSpec): Promise<Result> {
    rt.output.begin();
    const r = await runner.run(s);
    return { status: r.status, headers: r.headers, body: r.body, errors: r.errors, exitCode: r.exitCode };
  }

  async function expectSame(s: PhpRequestSpec): Promise<Result> {
    const a = await viaPhpWasm(s);
    const b = await viaRunner(s);
    expect(b.status).toBe(a.status);
    expect(normalize(b.headers)).toEqual(normalize(a.headers));
    expect(b.body.toString("latin1")).toBe(a.body.toString("latin1"));
    expect(b.errors).toBe(a.errors);
    expect(b.exitCode).toBe(a.exitCode);
    return b;
  }

  it("gives PHP the same request and returns the same response as PHP.run() (POST form, query, cookies, PATH_INFO)", async () => {
    const r = await expectSame(spec());
    expect(r.status).toBe(201);
    const j = JSON.parse(r.body.toString()) as { server: Record<string, string | null>; get: unknown; cookie: unknown; post: unknown; len: number };
    expect(j.server.HTTPS).toBe("off");
    expect(j.server.HTTP_X_CUSTOM).toBe("yes");
    expect(j.server.CONTENT_TYPE).toBe("application/x-www-form-urlencoded");
    expect(j.server.ZC_EXTRA).toBe("z");
    expect(j.get).toEqual({ a: "1", b: ["2", "3"] });
    expect(j.cookie).toEqual({ k: "v", k2: "v2" });
    expect(j.post).toEqual({ f: "1", g: "two" });
    expect(r.headers.filter(([k]) => k === "x-multi").map(([, v]) => v)).toEqual(["1", "2"]);
  });

  it("the same over HTTPS, and for a GET without a body", async () => {
    const r = await expectSame(spec({ https: true, $_SERVER: { ...spec().$_SERVER, HTTPS: "on" } }));
    expect((JSON.parse(r.body.toString()) as { server: { HTTPS: string } }).server.HTTPS).toBe("on");
    const g = await expectSame(spec({ method: "GET", body: new Uint8Array(0), headers: { host: "example.test" } }));
    expect((JSON.parse(g.body.toString()) as { len: number }).len).toBe(0);
  });

  it("binary request bodies (NUL bytes) arrive byte for byte", async () => {
    const body = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 31) & 0xff));
    const r = await expectSame(spec({ body, headers: { host: "h", "content-type": "application/octet-stream" } }));
    const j = JSON.parse(r.body.toString()) as { input: string; len: number };
    expect(j.len).toBe(body.length);
    expect(Buffer.from(j.input, "base64").equals(body)).toBe(true);
  });

  it("output larger than the first buffer, fatal errors, exit() and stderr come back the same", async () => {
    const big = await expectSame(spec({ uri: "/?w=big", method: "GET", body: new Uint8Array(0) }));
    expect(big.body.length).toBe(300_000);
    const fatal = await expectSame(spec({ uri: "/?w=fatal", method: "GET", body: new Uint8Array(0) }));
    expect(fatal.exitCode).not.toBe(0);
    expect(fatal.body.toString()).toContain("partial");
    const exit = await expectSame(spec({ uri: "/?w=exit", method: "GET", body: new Uint8Array(0) }));
    expect(exit.status).toBe(418);
    const err = await expectSame(spec({ uri: "/?w=stderr", method: "GET", body: new Uint8Array(0) }));
    expect(err.errors).toContain("to the log");
  });

  it("a response after a large one holds only its own bytes (buffers are reused, not leaked into the next)", async () => {
    await viaRunner(spec({ uri: "/?w=big", method: "GET", body: new Uint8Array(0) }));
    const small = await viaRunner(spec({ uri: "/?w=stderr", method: "GET", body: new Uint8Array(0) }));
    expect(small.body.toString()).toBe("ok");
  });
});
