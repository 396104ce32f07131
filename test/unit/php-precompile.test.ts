/**
 * The PHP engine's precompile step and snapshots of apps bigger than a new instance: every PHP
 * file of the bundle is in opcache before snapshot() (also files that redeclare a function another
 * file declares, and past a file that does not compile), and a snapshot whose warm-up grew the
 * heap past a new instance's memory loads into one (it used to fail, and every host after the
 * first started cold: warm-up and precompile again).
 */
import { describe, it, expect } from "vitest";
import { PhpEngine } from "../../src/runtime/php/index.js";
import type { BundleImage } from "../../src/bundle/index.js";
import { parseManifest } from "../../src/runtime/manifest.js";
import type { EngineRequest } from "../../src/runtime/engine.js";

function image(files: Record<string, string>): BundleImage {
  const dirs = [...new Set(Object.keys(files).filter((p) => p.includes("/")).map((p) => p.slice(0, p.lastIndexOf("/"))))];
  const entries: BundleImage["entries"] = [
    ...dirs.map((path) => ({ path, kind: "dir" as const, mode: 0o755 })),
    ...Object.entries(files).map(([path, text]) => ({ path, kind: "file" as const, mode: 0o644, data: Buffer.from(text) })),
  ];
  return { entries, totalBytes: entries.reduce((n, e) => n + (e.data?.length ?? 0), 0) };
}

const req = (url: string): EngineRequest => ({ method: "GET", url, headers: [["host", "localhost"]], body: new Uint8Array(0), remoteAddr: "127.0.0.1", remotePort: 0, https: false, serverName: "localhost", serverPort: 80, scriptName: "", params: {} });
const text = (b: Uint8Array) => Buffer.from(b).toString();

const STATUS = `<?php $s = opcache_get_status(false)['opcache_statistics']; echo json_encode(['misses' => $s['misses'], 'cached' => $s['num_cached_scripts'], 'lib' => opcache_is_script_cached('/app/lib/b.php'), 'noop' => opcache_is_script_cached('/app/lib/noop.php'), 'bad' => opcache_is_script_cached('/app/lib/bad.php')]);`;

describe("php precompile", () => {
  it("compiles every file, redeclared functions and past a broken one; a grown snapshot imports into a new instance", async () => {
    const engine = new PhpEngine();
    const files = {
      "index.php": "<?php\n// warm-up: grows the heap well past a new instance's memory, then frees it\n$x = str_repeat('x', 48 * 1024 * 1024); unset($x); echo 'warm';",
      "status.php": STATUS,
      "lib/a.php": "<?php function shared_name() { return 'a'; }",
      // declares the same function as lib/a.php (WordPress: wp-admin/includes/noop.php)
      "lib/noop.php": "<?php function shared_name() { return 'noop'; }",
      "lib/bad.php": "<?php function ( {",
      "lib/b.php": "<?php function b_fn() { return 2; }",
    };
    const prepared = await engine.prepare({ deploymentId: "t", manifest: parseManifest(`runtime = "php"\n[limits]\nmemory_mb = 128\n`), image: image(files) });
    const a = await engine.instantiate(prepared);
    const fresh = await engine.instantiate(prepared);
    try {
      expect(text((await a.handle(req("/"))).body)).toBe("warm");
      const report = (await a.precompile!()) as { files: number; failed: number; end: string };
      expect(report).toMatchObject({ files: 6, failed: 1, end: "done" });
      a.snapshot();
      const snap = a.exportSnapshot();
      const st = JSON.parse(text((await a.handle(req("/status.php"))).body));
      expect(st).toMatchObject({ lib: true, noop: true, bad: false });
      // The snapshot is larger than a new instance's memory, and loads into it.
      expect(snap.memory.length).toBeGreaterThan(48 * 1024 * 1024);
      await fresh.importSnapshot(snap);
      for (let i = 0; i < 2; i++) {
        const again = JSON.parse(text((await fresh.handle(req("/status.php"))).body));
        expect(again).toEqual(st);
        await fresh.reset();
      }
    } finally {
      a.dispose();
      fresh.dispose();
    }
  }, 120_000);
});
