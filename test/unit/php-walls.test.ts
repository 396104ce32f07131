/**
 * The PHP engine's own walls, checked where php.ini's walls are absent: a runtime from
 * startPhpRuntime (the one PhpEngine builds on) with a php.ini that allows dl(), puts
 * extension_dir in /tmp and disables no function, as a php.ini injection would leave it. Guest
 * code tries to load a hostile side module, start host processes (also through ImageMagick's
 * delegates), open sockets, chmod/chown outside /tmp, flood the output and hold /tmp bytes with
 * unlinked open files. Then the php.ini walls themselves: a hand-built manifest with hostile
 * values and a php.ini that PHP stops reading early are both refused.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { startCountingServer, type CountingServer } from "../helpers/counting-server.js";
import { existsSync, rmSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { startPhpRuntime, PHP_INI_PATH, type PhpRuntime } from "../../src/runtime/php/runtime.js";
import { limitDirs, lockFileSystem } from "../../src/runtime/php/fs-walls.js";
import { PhpEngine } from "../../src/runtime/php/index.js";
import { buildPhpIni } from "../../src/runtime/php/validate.js";
import type { Manifest } from "../../src/bundle/index.js";
import { parseManifest } from "../../src/runtime/manifest.js";
import { hostileSideModule } from "../helpers/wasm-side-module.js";

const RUN_ID = randomBytes(6).toString("hex");
const PROBE = `zerocellProbe_${RUN_ID}`;
const MARKER = `/tmp/zc-walls-${RUN_ID}`;
const probe = () => (globalThis as Record<string, unknown>)[PROBE];

/** php.ini as an injection would leave it: none of the platform's walls. */
const NO_WALLS_INI = ["display_errors = 0", "log_errors = 0", "html_errors = 0", "enable_dl = 1", "extension_dir = /tmp", "extension = startup-evil.so", ""].join("\n");

const RUNNER = `<?php
$GLOBALS['r'] = [];
function t($name, $f) {
  error_clear_last();
  try { $v = $f(); $GLOBALS['r'][$name] = ['value' => is_resource($v) ? 'resource' : (is_object($v) ? get_class($v) : $v), 'warning' => error_get_last()['message'] ?? null]; }
  catch (\\Throwable $e) { $GLOBALS['r'][$name] = ['throw' => get_class($e) . ': ' . $e->getMessage()]; }
}
require $_SERVER['ZC_CODE'];
echo json_encode($GLOBALS['r'], JSON_INVALID_UTF8_SUBSTITUTE);
`;

type Outcome = { value?: unknown; warning?: string | null; throw?: string };

async function loader(): Promise<unknown> {
  return (await import("@php-wasm/node-8-3")).getPHPLoaderModule();
}

async function walledRuntime(maxResponseBytes = 32 << 20): Promise<PhpRuntime> {
  const rt = await startPhpRuntime(await loader(), { heapCapBytes: 512 << 20, maxResponseBytes });
  rt.php.writeFile(PHP_INI_PATH, NO_WALLS_INI);
  rt.php.mkdirTree("/tmp");
  rt.php.mkdirTree("/data");
  rt.php.mkdirTree("/app");
  rt.php.writeFile("/app/index.php", "<?php echo 'app';");
  // Loaded by PHP's start-up (extension = in php.ini), at the first request.
  rt.php.writeFile("/tmp/startup-evil.so", hostileSideModule(`globalThis.${PROBE} = 'startup'`));
  rt.php.writeFile("/tmp/runner.php", RUNNER);
  lockFileSystem(rt.module.FS, ["/tmp", "/data"]);
  limitDirs(rt.module.FS, [{ dir: "/tmp", bytes: 8 << 20 }, { dir: "/data", bytes: 4 << 20 }]);
  return rt;
}

let attempts = 0;

async function attempt(rt: PhpRuntime, code: string): Promise<Record<string, Outcome>> {
  // A new file each time: opcache would serve an earlier one of the same name.
  const file = `/tmp/code-${++attempts}.php`;
  rt.php.writeFile(file, `<?php ${code}`);
  rt.output.begin();
  const res = await rt.php.run({ scriptPath: "/tmp/runner.php", $_SERVER: { ZC_CODE: file } });
  try {
    return JSON.parse(res.text) as Record<string, Outcome>;
  } catch {
    throw new Error(`not JSON: ${res.text.slice(0, 2000)}\n${res.errors}`);
  }
}

describe("PHP engine walls without php.ini's walls", () => {
  let rt: PhpRuntime;
  // A TCP server on the host's loopback: any socket that gets out lands here.
  let counter: CountingServer | undefined;
  let counterPort = 0;

  beforeAll(async () => {
    counter = await startCountingServer();
    counterPort = counter.port;
    rt = await walledRuntime();
  }, 60_000);

  afterAll(async () => {
    rt?.php.exit(0);
    await counter?.close();
    for (const what of ["system", "delegate", "popen", "proc_open", "exec"]) rmSync(`${MARKER}-${what}`, { force: true });
  });

  it("dl() and extension= never load a side module: its EM_JS never runs in the host", async () => {
    const r = await attempt(rt, `
      t('ini', fn() => [ini_get('enable_dl'), ini_get('extension_dir'), function_exists('dl')]);
      t('write', fn() => file_put_contents('/tmp/evil.so', base64_decode('${hostileSideModule(`globalThis.${PROBE} = 'dl'`).toString("base64")}')));
      t('dl', fn() => dl('evil.so'));
      t('loaded', fn() => extension_loaded('evil'));
    `);
    expect(r.ini?.value).toEqual(["1", "/tmp", true]);
    expect(r.write?.value).toBeGreaterThan(0);
    expect(r.dl?.value).toBe(false);
    expect(r.dl?.warning).toContain("Unable to load dynamic library 'evil.so'");
    expect(r.dl?.warning).toContain("zerocell: dynamic loading is not available in the sandbox");
    expect(r.loaded?.value).toBe(false);
    expect(probe()).toBeUndefined();
    // extension = startup-evil.so (start-up) and dl('evil.so') (twice: with and without ".so").
    expect(rt.refused.counts.dlopen).toBeGreaterThanOrEqual(2);
  });

  it("system() (ImageMagick's delegates), popen(), exec() and proc_open() fail in PHP; nothing runs on the host", async () => {
    // A delegate of our own and the policy off (before ImageMagick reads them, at PHP's start-up):
    // ImageMagick calls C's system() with the command.
    const rt = await walledRuntime();
    const FS = rt.module.FS;
    FS.writeFile("/root/install/etc/ImageMagick-7/policy.xml", "<policymap></policymap>\n");
    FS.writeFile("/root/install/etc/ImageMagick-7/delegates.xml", `<delegatemap><delegate decode="zcprobe" command="touch ${MARKER}-delegate" /></delegatemap>\n`);
    try {
      const r = await attempt(rt, `
        t('popen', fn() => popen('touch ${MARKER}-popen', 'r'));
        t('exec', fn() => exec('touch ${MARKER}-exec'));
        t('system', fn() => system('touch ${MARKER}-system'));
        t('proc_open', fn() => proc_open(['touch', '${MARKER}-proc_open'], [], $pipes));
        t('delegate', function () { $i = new Imagick(); return $i->readImage('zcprobe:/tmp/x'); });
        t('label', function () { $i = new Imagick(); return $i->readImage('label:zerocell'); });
      `);
      for (const what of ["popen", "exec", "system", "proc_open", "delegate"]) expect(existsSync(`${MARKER}-${what}`), what).toBe(false);
      expect(r.popen?.value).toBe(false);
      expect(r.exec).toEqual({ value: false, warning: `exec(): Unable to fork [touch ${MARKER}-exec]` });
      expect(r.system).toEqual({ value: false, warning: `system(): Unable to fork [touch ${MARKER}-system]` });
      expect(r.proc_open).toEqual({ value: false, warning: "proc_open(): proc_open() failed - Function not implemented" });
      expect(r.delegate?.throw).toMatch(/^ImagickException: /);
      expect(r.label?.throw).toMatch(/^ImagickException: /);
      expect(rt.refused.counts.system, JSON.stringify(r)).toBeGreaterThanOrEqual(1);
      expect(rt.spawn.attempted).toBe(false);
    } finally {
      rt.php.exit(0);
    }
  }, 60_000);

  it("ImageMagick's policy refuses its delegates before it tries one (no system() call, no magick-* file)", async () => {
    rt.php.writeFile("/tmp/x.ps", "%!PS\n(zc) show showpage\n");
    const r = await attempt(rt, `
      t('label', function () { $i = new Imagick(); return $i->readImage('label:zerocell'); });
      t('ps', function () { $i = new Imagick(); return $i->readImage('ps:/tmp/x.ps'); });
      t('pdf_write', function () { $i = new Imagick(); $i->newImage(2, 2, 'white'); $i->setImageFormat('pdf'); return $i->getImageBlob(); });
      t('png', function () { $i = new Imagick(); $i->newImage(2, 2, 'white'); $i->setImageFormat('png'); return strlen($i->getImageBlob()) > 0; });
      t('magick_tmp', fn() => array_values(array_filter(scandir('/tmp'), fn($f) => str_starts_with($f, 'magick-'))));
    `);
    expect(r.label?.throw).toMatch(/^ImagickException: /);
    expect(r.ps?.throw).toMatch(/^ImagickException: NotAuthorized `PS'/);
    expect(r.pdf_write?.throw).toMatch(/^ImagickException: /);
    // ImageMagick itself still works.
    expect(r.png?.value).toBe(true);
    expect(r.magick_tmp?.value).toEqual([]);
    expect(rt.refused.counts.system).toBe(0);
  });

  it("sockets fail in PHP (fsockopen, stream_socket_client, mysqli, PDO, SoapClient) and nothing connects", async () => {
    const r = await attempt(rt, `
      t('fsockopen', fn() => fsockopen('127.0.0.1', ${counterPort}, $errno, $errstr, 2));
      t('stream_socket_client', fn() => stream_socket_client('tcp://127.0.0.1:${counterPort}', $errno, $errstr, 2));
      t('mysqli', fn() => mysqli_connect('127.0.0.1', 'u', 'p', 'x', ${counterPort}));
      t('pdo', fn() => new PDO('mysql:host=127.0.0.1;port=${counterPort}', 'u', 'p'));
      t('soap', fn() => (new SoapClient(null, ['location' => 'http://127.0.0.1:${counterPort}/', 'uri' => 'urn:x']))->__soapCall('f', []));
      t('still_running', fn() => 'yes');
    `);
    expect(r.fsockopen?.value).toBe(false);
    expect(r.fsockopen?.warning).toMatch(/^fsockopen\(\): Unable to connect to 127\.0\.0\.1:/);
    expect(r.stream_socket_client?.value).toBe(false);
    expect(r.mysqli?.throw).toMatch(/^mysqli_sql_exception: /);
    expect(r.pdo?.throw).toMatch(/^PDOException: /);
    expect(r.soap?.throw).toMatch(/^SoapFault: /);
    expect(r.still_running?.value).toBe("yes");
    expect(counter!.connections()).toBe(0);
    expect(rt.refused.counts.socket).toBeGreaterThanOrEqual(5);
  });

  it("a host name does not resolve (no made-up address): connects fail naming the host, IP literals still parse", async () => {
    const r = await attempt(rt, `
      t('fsockopen_name', fn() => fsockopen('db.example.com', 3306, $errno, $errstr, 2));
      t('mysqli_name', fn() => mysqli_connect('db.example.com', 'u', 'p', 'x', 3306));
      t('pdo_name', fn() => new PDO('mysql:host=db.example.com;port=3306', 'u', 'p'));
      t('literal', fn() => fsockopen('127.0.0.1', ${counterPort}, $errno, $errstr, 2));
    `);
    expect(r.fsockopen_name?.value).toBe(false);
    expect(r.fsockopen_name?.warning).toMatch(/getaddrinfo for db\.example\.com failed/);
    expect(r.mysqli_name?.throw).toMatch(/^mysqli_sql_exception: .*getaddrinfo for db\.example\.com failed/);
    expect(r.pdo_name?.throw).toMatch(/^PDOException: .*getaddrinfo for db\.example\.com failed/);
    // A literal is not a lookup: it reaches connect, which is refused.
    expect(r.literal?.warning).toMatch(/^fsockopen\(\): Unable to connect to 127\.0\.0\.1:/);
    expect(rt.refused.counts.dns).toBeGreaterThanOrEqual(3);
    expect(counter!.connections()).toBe(0);
  });

  it("chmod and chown are refused outside /tmp and /data (EPERM), allowed inside", async () => {
    const r = await attempt(rt, `
      foreach (['/', '/app', '/app/index.php', '${PHP_INI_PATH}', '/internal', '/tmp', '/data'] as $p) {
        t("chmod $p", fn() => chmod($p, 0777));
        t("chown $p", fn() => chown($p, 0));
        t("lchown $p", fn() => lchown($p, 0));
        t("chgrp $p", fn() => chgrp($p, 0));
      }
      t('fchmod_like', function () { $h = fopen('/app/index.php', 'r'); return chmod('/app/index.php', 0666); });
      file_put_contents('/tmp/mine', 'x');
      t('chmod_tmp', fn() => chmod('/tmp/mine', 0600));
      t('chown_tmp', fn() => chown('/tmp/mine', 0));
      clearstatcache();
      t('perms', fn() => sprintf('%o %o %o', fileperms('/'), fileperms('/app/index.php'), fileperms('/tmp/mine')));
    `);
    for (const p of ["/", "/app", "/app/index.php", PHP_INI_PATH, "/internal", "/tmp", "/data"]) {
      for (const op of ["chmod", "chown", "lchown", "chgrp"]) {
        expect(r[`${op} ${p}`], `${op} ${p}`).toEqual({ value: false, warning: `${op}(): Operation not permitted` });
      }
    }
    expect(r.fchmod_like?.value).toBe(false);
    expect(r.chmod_tmp?.value).toBe(true);
    expect(r.chown_tmp?.value).toBe(true);
    // As written (/ locked to 0555, /app/index.php 0666 by writeFile), not 0777.
    expect(r.perms?.value).toBe("40555 100666 100600");
  });

  it("/tmp keeps counting an unlinked file until its last descriptor closes; truncate cannot grow past the quota", async () => {
    const r = await attempt(rt, `
      t('held', function () {
        $held = []; $total = 0; $chunk = str_repeat('z', 1 << 20);
        for ($i = 0; $i < 20; $i++) {
          $h = fopen("/tmp/f$i", 'w');
          $n = 0;
          for ($j = 0; $j < 2; $j++) { $w = @fwrite($h, $chunk); if ($w === false || $w < strlen($chunk)) { $n += (int) $w; break 2; } $n += $w; }
          unlink("/tmp/f$i");
          $held[] = $h;
          $total += $n;
        }
        return [$total, count(scandir('/tmp'))];
      });
      t('truncate', function () { $h = fopen('/tmp/sparse', 'w'); return ftruncate($h, 1 << 30); });
      t('data', function () {
        $held = []; $total = 0; $chunk = str_repeat('d', 1 << 20);
        for ($i = 0; $i < 10; $i++) { $h = fopen("/data/f$i", 'w'); $w = @fwrite($h, $chunk); $total += (int) $w; unlink("/data/f$i"); $held[] = $h; if ($w !== strlen($chunk)) break; }
        return $total;
      });
      t('moved', function () {
        // Renamed from /tmp to /data while open: counted where it is now.
        $h = fopen('/tmp/mover', 'w'); rename('/tmp/mover', '/data/moved');
        $n = 0; for ($i = 0; $i < 10; $i++) { $w = @fwrite($h, str_repeat('m', 1 << 20)); $n += (int) $w; if ($w !== 1 << 20) break; }
        return $n;
      });
    `);
    const [total] = r.held?.value as [number, number];
    expect(total).toBeLessThanOrEqual(8 << 20);
    expect(total).toBeGreaterThanOrEqual(5 << 20);
    expect(r.truncate?.value).toBe(false);
    expect(r.data?.value).toBeLessThanOrEqual(4 << 20);
    expect(r.data?.value).toBeGreaterThanOrEqual(3 << 20);
    // Counted against /data's 4 MiB, not /tmp's 8 MiB (where it was opened).
    expect(r.moved?.value).toBeLessThanOrEqual(4 << 20);
    expect(r.moved?.value).toBeGreaterThanOrEqual(3 << 20);
  });

  it("output past the response limit stops the script with response_too_large", async () => {
    const small = await walledRuntime(1 << 20);
    try {
      small.php.writeFile("/tmp/flood.php", "<?php $c = str_repeat('x', 65536); for ($i = 0; $i < 100000; $i++) { echo $c; file_put_contents('/tmp/count', (string) $i); }");
      small.output.begin();
      const err = await small.php.run({ scriptPath: "/tmp/flood.php" }).then(() => undefined, (e: unknown) => e);
      expect(err).toMatchObject({ code: "response_too_large", status: 502 });
      // Stopped as soon as it crossed 1 MiB (16 chunks of 64 KiB), not at the end of the loop.
      expect(Number(small.php.readFileAsText("/tmp/count"))).toBeLessThanOrEqual(17);
    } finally {
      small.php.exit(0);
    }
  });
});

describe("php.ini walls", () => {
  const page = Buffer.from("<?php echo 'ok';");
  const image = { entries: [{ path: "index.php", kind: "file" as const, mode: 0o644, data: page }], totalBytes: page.length };

  it("buildPhpIni refuses hostile values of a hand-built manifest (the parser's checks bypassed)", () => {
    const base = parseManifest(`runtime = "php"\n`);
    const hostile: Array<[string, string, string]> = [
      ["date.timezone", "${", 'php.ini["date.timezone"]'],
      ["date.timezone", "UTC\\", 'php.ini["date.timezone"]'],
      ["user_agent", 'a" \nopen_basedir = "/', "php.ini.user_agent"],
      ["error_reporting", "E_ALL & (", "php.ini.error_reporting"],
      ["extension", "/tmp/evil.so", "php.ini.extension"],
      ["enable_dl", "1", "php.ini.enable_dl"],
      ["session.save_handler", "files", 'php.ini["session.save_handler"]'],
    ];
    for (const [key, value, field] of hostile) {
      const m: Manifest = { ...base, php: { ...base.php, ini: { [key]: value } } };
      expect(() => buildPhpIni(m), `${key} = ${value}`).toThrow(expect.objectContaining({ code: "manifest_invalid", message: expect.stringContaining(`manifest: ${field}: `) }));
    }
  });

  it("instantiate refuses an instance whose php.ini PHP stopped reading before the walls", async () => {
    const engine = new PhpEngine();
    const manifest = parseManifest(`runtime = "php"\n[limits]\nmemory_mb = 48\n`);
    const prepared = await engine.prepare({ deploymentId: "walls", manifest, image });
    expect(prepared.phpIni).toContain("enable_dl = 0");
    // A line that passed every check by mistake: PHP reports a syntax error and stops reading.
    const injected = { ...prepared, phpIni: prepared.phpIni.replace("; walls (zerocell)", 'date.timezone = "${"') };
    await expect(engine.instantiate(injected)).rejects.toMatchObject({ code: "php_ini_walls", message: expect.stringMatching(/^php\.instantiate: php\.ini walls not in force: .*disable_functions is "".*enable_dl is "1"/) });
    // One wall missing is enough.
    const lost = { ...prepared, phpIni: prepared.phpIni.replace("enable_dl = 0\n", "") };
    await expect(engine.instantiate(lost)).rejects.toMatchObject({ code: "php_ini_walls", message: expect.stringContaining('enable_dl is "1" (expected "0")') });
    // Untouched, it starts.
    const inst = await engine.instantiate(prepared);
    inst.dispose();
  }, 60_000);
});
