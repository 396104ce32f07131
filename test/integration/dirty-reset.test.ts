/**
 * The dirty-page reset (ADR 002) inside a process started exactly as a sandbox host is (the node
 * flags of src/pool/spawn.ts, --allow-addons for koffi, and on root machines every OS layer: its
 * own uid, PID and network namespaces, a memory cgroup): PHP and Python instances reset by the
 * kernel's written-page list, a guest write and the engine glue's writes (request body copied into
 * the heap) are undone, the same process without --allow-addons falls back to the full compare,
 * and guest code cannot reach koffi (PHP: no dl/FFI; Python: the realm holds no host module).
 */
import { describe, it, expect, afterAll } from "vitest";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { ROOT, writeBundle } from "../helpers/server.js";
import * as spawnMod from "../../src/pool/spawn.js";
import { packDirectory } from "../../src/bundle/index.js";

const DIST = join(ROOT, "dist", "src");

const PHP_APP = `<?php
$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
if ($path === '/write') {
  // Guest writes over ~1 MB of heap; the glue copied the 200 KB body in. The test checks that
  // every page of the snapshot's range comes back, whoever wrote it.
  $s = str_repeat(file_get_contents('php://input'), 4);
  echo strlen($s);
} elseif ($path === '/escape') {
  $out = [];
  $out['dl'] = function_exists('dl') ? @dl('${join(ROOT, "node_modules", "koffi", "build", "koffi.node")}') : 'no dl';
  $out['ffi'] = class_exists('FFI', false);
  $out['koffi_file'] = @file_exists('${join(ROOT, "node_modules", "koffi")}');
  $out['maps'] = @file_get_contents('/proc/self/maps');
  echo json_encode($out);
} else {
  echo 'hello';
}
`;

const PY_APP = `
import json
counter = [0]
def application(environ, start_response):
    path = environ["PATH_INFO"]
    out = b"hello"
    if path == "/write":
        n = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(n)
        counter[0] += 1
        out = json.dumps({"counter": counter[0], "len": len(body)}).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [out]
`;

/** What the host-like process does: snapshot, a writing request with a body, reset, report. */
function hostScript(runtime: "php" | "python", archiveB64: string, manifestToml: string): string {
  const engineImport = runtime === "php" ? `new (await import(${JSON.stringify(join(DIST, "runtime", "php", "index.js"))})).PhpEngine()` : `new (await import(${JSON.stringify(join(DIST, "runtime", "python", "index.js"))})).PythonEngine({ log: () => {}, exposeInternalsForTests: true })`;
  return String.raw`
    // As src/runtime/host/main.ts does: Emscripten's NODEFS asks process.binding for fs constants.
    const fsConstants = (await import("node:fs")).constants;
    process.binding = (name) => { if (name === "constants") return { fs: fsConstants }; throw new Error("no binding " + name); };
    const { readBundleArchive } = await import(${JSON.stringify(join(DIST, "bundle", "index.js"))});
    const { parseManifest } = await import(${JSON.stringify(join(DIST, "runtime", "manifest.js"))});
    const image = readBundleArchive(Buffer.from(${JSON.stringify(archiveB64)}, "base64"));
    const manifest = parseManifest(${JSON.stringify(manifestToml)});
    const engine = ${engineImport};
    const inst = await engine.instantiate(await engine.prepare({ deploymentId: "dirty", manifest, image }));
    const req = (url, body = "") => ({ method: body ? "POST" : "GET", url, headers: [["host", "dirty.localhost"], ["content-length", String(body.length)]], body: Buffer.from(body), remoteAddr: "127.0.0.1", remotePort: 1, https: true, serverName: "dirty.localhost", serverPort: 443, scriptName: "", params: {} });
    const text = (r) => Buffer.from(r.body).toString();
    const out = { uid: process.getuid() };
    out.hello = text(await inst.handle(req("/")));
    inst.snapshot();
    out.method = inst.resetMethod;
    const answers = [];
    for (let i = 0; i < 3; i++) {
      answers.push(text(await inst.handle(req("/write", "x".repeat(200000)))));
      if (i === 0) out.differingBeforeReset = inst.snapshotDifferingPages();
      await inst.reset();
      out.restore = inst.lastRestore;
      out.differingAfterReset = inst.snapshotDifferingPages();
    }
    out.answers = answers;
    if (${JSON.stringify(runtime)} === "php") {
      out.escape = JSON.parse(text(await inst.handle(req("/escape"))));
      await inst.reset();
    } else {
      // A guest that broke every Python wall holds the realm: what is on its global, and the
      // classic route from any object to the host's Function.
      const vm = await import("node:vm");
      const ctx = inst.realm.context;
      out.realmGlobals = vm.runInContext("Object.getOwnPropertyNames(globalThis).filter((n) => /koffi|dlopen|ffi/i.test(n) || ['require', 'process', 'module', 'Buffer', 'global'].includes(n))", ctx);
      out.realmFunction = vm.runInContext("(() => { try { return String(__zcInternals.Module.constructor.constructor('return typeof process')()); } catch (e) { return e.name; } })()", ctx);
    }
    inst.dispose();
    process.stdout.write("\n" + JSON.stringify(out) + "\n");
  `;
}

describe("dirty-page reset in a sandbox host", () => {
  const isolation = spawnMod.detectHostIsolation();
  afterAll(() => spawnMod.closeHostIsolation(isolation));

  async function runHostLike(runtime: "php" | "python", withAddons: boolean): Promise<Record<string, any>> {
    const files: Record<string, string> = runtime === "php" ? { "public/index.php": PHP_APP } : { "app.py": PY_APP };
    const toml = runtime === "php" ? `runtime = "php"\n[php]\ndocument_root = "public"\nfront_controller = "index.php"\n[limits]\nmemory_mb = 64\n` : `runtime = "python"\n[python]\napp = "app:application"\n[limits]\nmemory_mb = 64\ntimeout_ms = 60000\n`;
    const archive = await packDirectory(writeBundle({ "zerocell.toml": toml, ...files }));
    // The host's own flags, up to its script: the script here plays the host's part.
    let flags = spawnMod.hostNodeArgs(runtime);
    flags = flags.slice(0, flags.findIndex((a) => !a.startsWith("-")));
    expect(flags).toContain("--experimental-permission");
    expect(flags.includes("--allow-addons")).toBe(true);
    if (!withAddons) flags = flags.filter((f) => f !== "--allow-addons");
    const cg = spawnMod.createHostCgroup(isolation, 1024 * 1024 * 1024);
    const argv = spawnMod.isolatedCommand(isolation, [process.execPath, ...flags, "--input-type=module", "-e", hostScript(runtime, Buffer.from(archive).toString("base64"), toml)], cg === undefined ? undefined : join(cg.dir, "cgroup.procs"));
    const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", env: {}, cwd: "/", timeout: 180_000 });
    expect(r.status, r.stderr).toBe(0);
    return JSON.parse(r.stdout.trim().split("\n").pop() ?? "{}") as Record<string, any>;
  }

  for (const runtime of ["php", "python"] as const) {
    it(`${runtime}: resets by dirty pages; a guest write and the glue's writes are undone; guest code cannot reach koffi`, async () => {
      const out = await runHostLike(runtime, true);
      if (isolation.missing.length === 0) expect(out.uid).not.toBe(0);
      expect(out.hello).toBe("hello");
      expect(out.method).toBe("dirty-pages");
      expect(out.differingBeforeReset).toBeGreaterThan(0);
      expect(out.restore.method).toBe("dirty-pages");
      expect(out.restore.writtenPages).toBeGreaterThan(0);
      expect(out.differingAfterReset).toBe(0);
      if (runtime === "php") {
        expect(out.answers).toEqual(["800000", "800000", "800000"]);
        expect(out.escape).toEqual({ dl: "no dl", ffi: false, koffi_file: false, maps: false });
      } else {
        // Module state written by the guest is back to the snapshot's each time.
        expect(out.answers.map((a: string) => JSON.parse(a))).toEqual([1, 1, 1].map((counter) => ({ counter, len: 200000 })));
        expect(out.realmGlobals).toEqual([]);
        expect(out.realmFunction).toBe("EvalError");
      }
    }, 240_000);
  }

  it("php: the same host without --allow-addons falls back to the full compare and still restores every page", async () => {
    const out = await runHostLike("php", false);
    expect(out.method).toBe("compare");
    expect(out.restore.method).toBe("compare");
    expect(out.differingBeforeReset).toBeGreaterThan(0);
    expect(out.differingAfterReset).toBe(0);
    expect(out.answers).toEqual(["800000", "800000", "800000"]);
  }, 240_000);
});
