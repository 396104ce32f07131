/**
 * The PHP engine's walls through the real server (real HTTPS, the built CLI, sandbox host
 * processes with Node's permission model), attacked as a tenant would: php.ini injection at
 * deploy, dynamic loading of a side module written to /tmp, chmod/chown of the platform's files,
 * an output flood, /tmp bytes held by unlinked open files, ImageMagick's delegates, header names
 * with "_", and database / SOAP / socket clients. Each ends in an ordinary PHP-level failure or a
 * platform error, never in host JavaScript or a host process, and the app's next request works.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import tls from "node:tls";
import { startCountingServer, type CountingServer } from "../helpers/counting-server.js";
import { readFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { startServer, writeBundle, fetchApp, isAlive, cleanup, type TestServer, type Res } from "../helpers/server.js";
import { RUNNER, runnerManifest, runnerJson, type Outcome } from "../helpers/php-runner.js";
import { hostileSideModule } from "../helpers/wasm-side-module.js";
import { parseManifest } from "../../src/runtime/manifest.js";
import { phpIniWalls } from "../../src/runtime/php/validate.js";

const RUN_ID = randomBytes(6).toString("hex");
const PWNED = `ZC-PWNED-${RUN_ID}`;

const WALLS = "walls.localhost";
const DAEMON = "daemon.localhost";
const SMALL = "small.localhost";

/** Allowed settings with the most awkward values the grammar admits. */
const ADVERSARIAL_INI = `[php.ini]
"date.timezone" = "America/Argentina/Buenos_Aires"
error_reporting = "E_ALL & ~E_DEPRECATED & ~E_STRICT | E_USER_NOTICE"
display_errors = "stderr"
include_path = "/tmp:/app:.:/internal/shared"
user_agent = "Mozilla/5.0 (X11; Linux) [x] <b> a:b,c/d?e#f&g|h~i!j%k*l+m@n"
"arg_separator.input" = ";&"
"arg_separator.output" = "&amp;"
variables_order = "EGPCS"
default_charset = "ISO-8859-1"
"mbstring.detect_order" = "UTF-8, ASCII"
precision = -1
"zend.assertions" = -1
output_buffering = true
"session.name" = "Z"
"session.cookie_path" = "/a/b~c"
"pcre.jit" = false
short_open_tag = "Off"
`;

describe("PHP walls through the platform", () => {
  let server: TestServer;
  const bundles: string[] = [];
  let wallsManifest = "";
  // Any connection that leaves the sandbox lands here.
  let counter: CountingServer | undefined;
  let counterPort = 0;

  async function deploy(files: Record<string, string | Buffer>, app: string): Promise<void> {
    const dir = writeBundle(files);
    bundles.push(dir);
    await server.cli(["deploy", dir, "--app", app]);
  }

  function run(host: string, code: string): Promise<Res> {
    return fetchApp(server, host, "/run.php", { method: "POST", body: code, headers: { "content-type": "application/octet-stream" } });
  }

  async function runJson(host: string, code: string): Promise<Record<string, Outcome>> {
    const res = await run(host, code);
    expect(res.status, `${res.text.slice(0, 3000)}\n--- server log:\n${server.output().slice(-3000)}`).toBe(200);
    return runnerJson(res.text);
  }

  beforeAll(async () => {
    counter = await startCountingServer();
    counterPort = counter.port;
    server = await startServer();
    wallsManifest = runnerManifest(WALLS, `${ADVERSARIAL_INI}\n[limits]\nmemory_mb = 64`);
    await deploy({ "zerocell.toml": wallsManifest, "public/run.php": RUNNER }, "walls");
    await deploy({ "zerocell.toml": runnerManifest(DAEMON, "", "one host, state kept in /tmp", "daemon"), "public/run.php": RUNNER }, "daemon");
    await deploy({ "zerocell.toml": runnerManifest(SMALL, "[limits]\nmemory_mb = 64"), "public/run.php": RUNNER }, "small");
  }, 120_000);

  afterAll(async () => {
    await server?.stop();
    await counter?.close();
    for (const d of bundles) cleanup(d);
    if (server !== undefined) cleanup(server.dataDir);
  });

  describe("php.ini", () => {
    const refused: Array<[string, string]> = [
      ['"date.timezone" = "${"', 'php.ini["date.timezone"]'],
      ['"date.timezone" = "UTC\\\\"', 'php.ini["date.timezone"]'],
      ['error_reporting = "E_ALL & ("', "php.ini.error_reporting"],
      ["user_agent = \"x'y\"", "php.ini.user_agent"],
      ['user_agent = "a=b"', "php.ini.user_agent"],
      ['precision = "14 ; comment"', "php.ini.precision"],
      ['extension = "/tmp/evil.so"', "php.ini.extension"],
      ['enable_dl = true', "php.ini.enable_dl"],
      ['"session.save_handler" = "files"', 'php.ini["session.save_handler"]'],
      ['"xdebug.mode" = "debug"', 'php.ini["xdebug.mode"]'],
    ];
    it.each(refused)("deploy refuses %s, naming the field", async (line, field) => {
      const dir = writeBundle({ "zerocell.toml": `runtime = "php"\n[php.ini]\n${line}\n[[routes]]\nhost = "refused.localhost"\n`, "index.php": "<?php echo 1;" });
      bundles.push(dir);
      const r = await server.cli(["deploy", dir, "--app", "refused"], { allowFail: true });
      expect(r.code).not.toBe(0);
      expect(`${r.stderr}${r.stdout}`).toContain(`manifest: ${field}: `);
    });

    it("allowed but adversarial settings take effect and every wall is still in force (ini_get from the app)", async () => {
      const walls = phpIniWalls(parseManifest(wallsManifest));
      expect(walls.map(([k]) => k)).toEqual(expect.arrayContaining(["disable_functions", "open_basedir", "allow_url_fopen", "enable_dl", "extension_dir", "auto_prepend_file"]));
      const r = await runJson(WALLS, `
        $walls = json_decode(${JSON.stringify(JSON.stringify(walls.map(([k]) => k)))}, true);
        foreach ($walls as $k) t("wall $k", fn() => ini_get($k));
        t('loaded_file', fn() => php_ini_loaded_file());
        t('tz', fn() => date_default_timezone_get());
        t('er', fn() => error_reporting() === (E_ALL & ~E_DEPRECATED & ~E_STRICT | E_USER_NOTICE));
        t('ua', fn() => ini_get('user_agent'));
        t('include_path', fn() => get_include_path());
        t('charset', fn() => ini_get('default_charset'));
        t('sep', fn() => [ini_get('arg_separator.input'), ini_get('arg_separator.output')]);
      `);
      for (const [k, v] of walls) expect(r[`wall ${k}`], k).toEqual({ value: v, warning: null });
      expect(r.loaded_file?.value).toBe("/internal/shared/php.ini");
      expect(r.tz?.value).toBe("America/Argentina/Buenos_Aires");
      expect(r.er?.value).toBe(true);
      expect(r.ua?.value).toBe("Mozilla/5.0 (X11; Linux) [x] <b> a:b,c/d?e#f&g|h~i!j%k*l+m@n");
      expect(r.include_path?.value).toBe("/tmp:/app:.:/internal/shared");
      expect(r.charset?.value).toBe("ISO-8859-1");
      expect(r.sep?.value).toEqual([";&", "&amp;"]);
    });
  });

  it("a side module written to /tmp cannot be loaded by any route; its EM_JS never runs in the host", async () => {
    const so = hostileSideModule(`process.stderr.write("${PWNED}\\n")`).toString("base64");
    const r = await runJson(WALLS, `
      t('write', fn() => file_put_contents('/tmp/evil.so', base64_decode('${so}')));
      t('dl', fn() => dl('evil.so'));
      t('dl_path', fn() => dl('/tmp/evil.so'));
      t('dl_fn', fn() => call_user_func('dl', 'evil.so'));
      t('enable_dl', fn() => ini_set('enable_dl', '1'));
      t('extension_dir', fn() => ini_set('extension_dir', '/tmp'));
      t('extension', fn() => ini_set('extension', '/tmp/evil.so'));
      t('zend_extension', fn() => ini_set('zend_extension', '/tmp/evil.so'));
      t('ffi', fn() => FFI::cdef('', '/tmp/evil.so'));
      t('after', fn() => [ini_get('enable_dl'), ini_get('extension_dir'), extension_loaded('evil')]);
    `);
    expect(r.write?.value).toBeGreaterThan(0);
    expect(r.dl).toEqual({ throw: "Error: Call to undefined function dl()" });
    expect(r.dl_path).toEqual({ throw: "Error: Call to undefined function dl()" });
    expect(r.dl_fn?.throw).toMatch(/^TypeError: call_user_func\(\): Argument #1 \(\$callback\) must be a valid callback, function "dl" not found/);
    for (const k of ["enable_dl", "extension_dir", "extension", "zend_extension"]) expect(r[k], k).toEqual({ value: false, warning: null });
    expect(r.ffi?.throw).toBe('Error: Class "FFI" not found');
    expect(r.after?.value).toEqual(["0", "/nonexistent", false]);
    expect(server.output()).not.toContain(PWNED);
  });

  it("chmod, chown, lchown and chgrp of /, /app, the image and php.ini fail with warnings; nothing changes", async () => {
    const targets = ["/", "/app", "/app/public", "/app/public/run.php", "/internal/shared/php.ini", "/nonexistent", "/app/public/../../internal/shared/php.ini"];
    const code = `
      $targets = json_decode(${JSON.stringify(JSON.stringify(targets))}, true);
      clearstatcache();
      t('before', fn() => sprintf('%o %o %o', fileperms('/app'), fileperms('/app/public'), fileperms('/app/public/run.php')));
      foreach ($targets as $p) {
        t("chmod $p", fn() => chmod($p, 0777));
        t("chown $p", fn() => chown($p, 0));
        t("lchown $p", fn() => lchown($p, 0));
        t("chgrp $p", fn() => chgrp($p, 0));
      }
      t('ext_dir', fn() => chmod(ini_get('extension_dir'), 0777));
      t('tmp_file', fn() => [file_put_contents('/tmp/mine', 'x'), chmod('/tmp/mine', 0600), chown('/tmp/mine', 0)]);
      t('tmp_dir', fn() => [chmod('/tmp', 0), chown('/tmp', 0)]);
      clearstatcache();
      t('after', fn() => sprintf('%o %o %o %o', fileperms('/app'), fileperms('/app/public'), fileperms('/app/public/run.php'), fileperms('/tmp')));
    `;
    const r = await runJson(WALLS, code);
    for (const p of targets) {
      for (const op of ["chmod", "chown", "lchown", "chgrp"]) {
        const o = r[`${op} ${p}`];
        expect(o?.value, `${op} ${p}`).toBe(false);
        // open_basedir answers first outside /app:/tmp:/data, the engine (EPERM) inside.
        expect(o?.warning, `${op} ${p}`).toMatch(/Operation not permitted|open_basedir restriction in effect|No such file or directory/);
      }
    }
    expect(r["chmod /app"]?.warning).toBe("chmod(): Operation not permitted");
    expect(r["chown /app/public/run.php"]?.warning).toBe("chown(): Operation not permitted");
    expect(r["lchown /app"]?.warning).toBe("lchown(): Operation not permitted");
    expect(r.ext_dir?.value).toBe(false);
    expect(r.tmp_file?.value).toEqual([1, true, true]);
    expect(r.tmp_dir?.value).toEqual([false, false]);
    expect(r.before?.value).toBe("40555 40555 100444");
    expect(r.after?.value).toBe("40555 40555 100444 40777");
  });

  it("an output flood (1 MiB echoes towards 2 GiB) ends in 502 at the response limit, the host's memory stays bounded, the app recovers", async () => {
    const LIMIT = 32 * 1024 * 1024;
    const rssOf = (pid: number): number => {
      try {
        return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) * 1024;
      } catch {
        return 0; // gone
      }
    };
    const baseline = Math.max(...server.hostPids().map(rssOf));
    const rss = new Map<number, number>();
    let sampling = true;
    const sample = async () => {
      while (sampling) {
        for (const pid of server.hostPids()) rss.set(pid, Math.max(rss.get(pid) ?? 0, rssOf(pid)));
        await new Promise((r) => setTimeout(r, 25));
      }
    };
    const sampler = sample();
    const t0 = Date.now();
    const res = await run(SMALL, "$c = str_repeat('x', 1 << 20); for ($i = 0; $i < 2048; $i++) { echo $c; }");
    const ms = Date.now() - t0;
    sampling = false;
    await sampler;
    expect(res.status, res.text.slice(0, 500)).toBe(502);
    // Stopped while it writes (the RSS bound below), not after buffering 2 GiB.
    expect(res.text).toContain("response_too_large");
    const peak = Math.max(...rss.values());
    expect(peak, `peak host RSS ${(peak / 2 ** 20).toFixed(0)} MiB`).toBeLessThan(LIMIT + 400 * 2 ** 20);
    console.log(`output flood: 502 after ${ms} ms; peak host RSS ${(peak / 2 ** 20).toFixed(0)} MiB over ${rss.size} hosts (largest before: ${(baseline / 2 ** 20).toFixed(0)} MiB)`);
    const next = await runJson(SMALL, "t('ok', fn() => 'still-here');");
    expect(next.ok).toEqual({ value: "still-here", warning: null });
  });

  it("files unlinked while open keep counting against the /tmp quota (memory_mb = 64): ENOSPC at the quota", async () => {
    const r = await runJson(SMALL, `
      t('game', function () {
        $held = []; $total = 0; $short = null; $chunk = str_repeat('q', 1 << 20);
        for ($i = 0; $i < 40 && $short === null; $i++) {
          $h = fopen("/tmp/f$i", 'w');
          for ($j = 0; $j < 15; $j++) {
            $w = @fwrite($h, $chunk);
            $total += (int) $w;
            if ($w === false || $w < strlen($chunk)) { $short = [$i, $j, $w, error_get_last()['message'] ?? null]; break; }
          }
          unlink("/tmp/f$i");
          $held[] = $h;
        }
        return ['total' => $total, 'short' => $short, 'listed' => count(scandir('/tmp')) - 2];
      });
    `);
    const game = r.game?.value as { total: number; short: [number, number, number | false, string | null] | null; listed: number };
    expect(game.short, JSON.stringify(game)).not.toBeNull();
    expect(game.total).toBeLessThanOrEqual(64 << 20);
    expect(game.total).toBeGreaterThan(48 << 20);
    expect(game.listed).toBe(0);
    const next = await runJson(SMALL, "t('tmp', fn() => scandir('/tmp')); t('w', fn() => file_put_contents('/tmp/a', str_repeat('x', 32 << 20)));");
    expect(next.tmp).toEqual({ value: [".", ".."], warning: null });
    expect(next.w).toEqual({ value: 32 << 20, warning: null });
  });

  it("ImageMagick's delegates (label:, ps:, pdf:, eps) and popen/proc_open are PHP-level failures; nothing of Node reaches the client; the next request works", async () => {
    const pdf = "%PDF-1.1\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj 3 0 obj<</Type/Page/MediaBox[0 0 3 3]/Parent 2 0 R>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n";
    const logBefore = server.output().length;
    for (let round = 0; round < 2; round++) {
      const res = await run(WALLS, `
        file_put_contents('/tmp/x.pdf', ${JSON.stringify(pdf)});
        file_put_contents('/tmp/x.ps', "%!PS\\n/Helvetica findfont 12 scalefont setfont 10 10 moveto (zc) show showpage\\n");
        t('label', function () { $i = new Imagick(); $i->readImage('label:zerocell'); return $i->getImageWidth(); });
        t('caption', function () { $i = new Imagick(); $i->readImage('caption:zerocell'); return $i->getImageWidth(); });
        t('pdf', function () { $i = new Imagick(); $i->readImage('/tmp/x.pdf'); return $i->getImageWidth(); });
        t('ps', function () { $i = new Imagick(); $i->readImage('ps:/tmp/x.ps'); return $i->getImageWidth(); });
        t('eps_write', function () { $i = new Imagick(); $i->newImage(2, 2, 'white'); $i->setImageFormat('eps'); return $i->writeImage('/tmp/out.eps'); });
        t('popen', fn() => popen('gs -v', 'r'));
        t('proc_open', fn() => proc_open(['gs', '-v'], [], $pipes));
        t('magick_tmp', fn() => array_values(array_filter(scandir('/tmp'), fn($f) => str_starts_with($f, 'magick-'))));
      `);
      expect(res.status, res.text.slice(0, 2000)).toBe(200);
      const r = runnerJson(res.text);
      for (const k of ["label", "caption", "pdf", "ps", "eps_write"]) expect(r[k]?.throw, `${k}: ${JSON.stringify(r[k])}`).toMatch(/^ImagickException: /);
      expect(r.popen).toEqual({ throw: "Error: Call to undefined function popen()" });
      expect(r.proc_open).toEqual({ throw: "Error: Call to undefined function proc_open()" });
      expect(r.magick_tmp?.value).toEqual([]);
      for (const leak of ["child_process", "spawnSync", "ERR_ACCESS_DENIED", "not found", "/bin/sh", "ErrnoError"]) expect(res.text).not.toContain(leak);
      const next = await runJson(WALLS, "t('tmp', fn() => scandir('/tmp'));");
      expect(next.tmp).toEqual({ value: [".", ".."], warning: null });
    }
    const log = server.output().slice(logBefore);
    expect(log).not.toContain("ERR_ACCESS_DENIED");
    expect(log).not.toContain("child_process");
  });

  it("a request that leaves /tmp hard to empty (locked directories, open files, cwd inside) does not break the reset", async () => {
    const pidsBefore = server.hostPids();
    for (let round = 0; round < 3; round++) {
      const r = await runJson(SMALL, `
        t('setup', function () {
          mkdir('/tmp/a/b/c', 0777, true);
          file_put_contents('/tmp/a/b/c/f', 'x');
          $GLOBALS['keep'] = fopen('/tmp/a/b/c/f', 'r');
          file_put_contents('/tmp/magick-leftover', 'x');
          chdir('/tmp/a/b');
          return [chmod('/tmp/a/b/c', 0), chmod('/tmp/a/b', 0500), chmod('/tmp/a', 0), getcwd()];
        });
      `);
      expect(r.setup?.value).toEqual([true, true, true, "/tmp/a/b"]);
      const res = await run(SMALL, "t('tmp', fn() => scandir('/tmp')); t('cwd', fn() => getcwd());");
      expect(res.status).toBe(200);
      expect(runnerJson(res.text)).toEqual({ tmp: { value: [".", ".."], warning: null }, cwd: { value: "/app/public", warning: null } });
    }
    // No reset failed: no host was replaced.
    for (const pid of pidsBefore) expect(isAlive(pid), `host ${pid}`).toBe(true);
    expect(server.output()).not.toContain("reset failed");
  });

  describe("header names with _", () => {
    /** One raw HTTPS request with the header lines exactly as given. */
    function raw(lines: string[]): Promise<Res> {
      return new Promise((resolve, reject) => {
        const body = "t('h', fn() => [$_SERVER['HTTP_X_FORWARDED_FOR'] ?? null, $_SERVER['HTTP_X_ONLY'] ?? null, $_SERVER['HTTP_X_REAL_USER'] ?? null]);";
        const sock = tls.connect({ host: "127.0.0.1", port: server.httpsPort, servername: WALLS, ca: server.ca }, () => {
          sock.write(`POST /run.php HTTP/1.1\r\nHost: ${WALLS}\r\n${lines.map((l) => `${l}\r\n`).join("")}Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
        });
        const chunks: Buffer[] = [];
        sock.on("data", (c: Buffer) => chunks.push(c));
        sock.on("error", reject);
        sock.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
          const at = text.indexOf("\r\n\r\n");
          resolve({ status, headers: {}, rawHeaders: [], body: Buffer.from(text.slice(at + 4)), text: text.slice(at + 4) });
        });
        sock.setTimeout(15_000, () => sock.destroy(new Error("timeout")));
      });
    }

    it.each([
      ["underscore after dash", ["X-Forwarded-For: 203.0.113.7", "X_Forwarded_For: 6.6.6.6", "X-Real-User: alice", "X_Real_User: mallory", "X_Only: 1"]],
      ["underscore before dash", ["X_Forwarded_For: 6.6.6.6", "X-Forwarded-For: 203.0.113.7", "X_Real_User: mallory", "X-Real-User: alice", "x_only: 1"]],
    ])("never reach PHP (%s): X_Forwarded_For cannot override X-Forwarded-For", async (_name, lines) => {
      const res = await raw(lines);
      expect(res.status, res.text).toBe(200);
      // Chunked transfer: take the runner's JSON from the body text.
      const json = /\{"h".*\}/.exec(res.text)?.[0];
      expect(JSON.parse(json ?? "null")).toEqual({ h: { value: ["203.0.113.7", null, "alice"], warning: null } });
    });
  });

  it("mysqli, PDO MySQL, SoapClient, file_get_contents(http) and fsockopen fail in PHP, the response is the app's, the host stays the same", async () => {
    const code = (what: string) => `
      $n = (int) @file_get_contents('/tmp/n') + 1; file_put_contents('/tmp/n', (string) $n);
      t('n', fn() => $n);
      ${what}
    `;
    const first = await runJson(DAEMON, code(""));
    const start = first.n?.value as number;
    const pidsBefore = server.hostPids();
    const attempts: Array<[string, string, (o: Outcome | undefined) => void]> = [
      ["mysqli", `t('x', function () { try { return mysqli_connect('127.0.0.1', 'u', 'p', 'x', ${counterPort}); } catch (mysqli_sql_exception $e) { return 'caught: ' . $e->getMessage(); } });`, (o) => expect(o?.value).toMatch(/^caught: /)],
      ["mysqli quiet", `t('x', function () { mysqli_report(MYSQLI_REPORT_OFF); $c = @mysqli_connect('127.0.0.1', 'u', 'p', 'x', ${counterPort}); return [$c, mysqli_connect_errno() !== 0]; });`, (o) => expect(o?.value).toEqual([false, true])],
      ["PDO", `t('x', function () { try { new PDO('mysql:host=127.0.0.1;port=${counterPort};dbname=x', 'u', 'p'); return 'CONNECTED'; } catch (PDOException $e) { return 'caught: ' . $e->getMessage(); } });`, (o) => expect(o?.value).toMatch(/^caught: SQLSTATE\[HY000\] \[2002\]/)],
      ["PDO by name", `t('x', function () { try { new PDO('mysql:host=db.example.com;dbname=x', 'u', 'p'); return 'CONNECTED'; } catch (PDOException $e) { return 'caught: ' . $e->getMessage(); } });`, (o) => expect(o?.value).toMatch(/^caught: /)],
      ["SoapClient", `t('x', function () { try { return (new SoapClient(null, ['location' => 'http://127.0.0.1:${counterPort}/', 'uri' => 'urn:x']))->__soapCall('f', []); } catch (SoapFault $e) { return 'caught: ' . $e->getMessage(); } });`, (o) => expect(o?.value).toMatch(/^caught: /)],
      ["SoapClient wsdl", `t('x', function () { try { return new SoapClient('http://127.0.0.1:${counterPort}/?wsdl'); } catch (SoapFault $e) { return 'caught: ' . $e->getMessage(); } });`, (o) => expect(o?.value).toMatch(/^caught: /)],
      ["file_get_contents http", `t('x', fn() => file_get_contents('http://127.0.0.1:${counterPort}/'));`, (o) => expect(o).toEqual({ value: false, warning: expect.stringMatching(/allow_url_fopen=0|no suitable wrapper/) })],
      ["fsockopen", `t('x', function () { try { return fsockopen('127.0.0.1', ${counterPort}); } catch (Error $e) { return 'caught: ' . $e->getMessage(); } });`, (o) => expect(o).toEqual({ value: false, warning: expect.stringMatching(/fsockopen|connect/i) })],
    ];
    let expected = start;
    for (const [name, what, check] of attempts) {
      const res = await run(DAEMON, code(what));
      expect(res.status, `${name}: ${res.text.slice(0, 1500)}`).toBe(200);
      expect(res.headers["x-zerocell-instance"], name).toBe("daemon; reused");
      const r = runnerJson(res.text);
      // The same instance answered: its /tmp counter went on.
      expect(r.n?.value, name).toBe(++expected);
      check(r.x);
      expect(res.text).not.toContain("ErrnoError");
      expect(res.text).not.toContain("sandbox:");
    }
    expect(counter!.connections()).toBe(0);
    for (const pid of pidsBefore) expect(isAlive(pid), `host ${pid}`).toBe(true);
  });
});
