/**
 * The runtime registry (src/runtime/registry.ts): the one list of runtimes, and the gateway's
 * promise that deploy-time checks never load an engine — above all never koffi, the native
 * addon only x86 sandbox hosts may load.
 */
import { describe, it, expect } from "vitest";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { ROOT } from "../helpers/server.js";
import { RUNTIMES, findRuntime } from "../../src/runtime/registry.js";

describe("runtime registry", () => {
  it("lists every runtime once, under its own name, with a lazy engine of that runtime", async () => {
    expect(Object.keys(RUNTIMES).sort()).toEqual(["php", "python", "x86"]);
    for (const [name, d] of Object.entries(RUNTIMES)) {
      expect(d.name).toBe(name);
      expect(d.warmupBootAllowanceMs).toBeGreaterThan(0);
    }
    // php's engine is cheap to import in a test process (python boots Pyodide lazily, x86 loads koffi).
    expect((await RUNTIMES.php.load()).runtime).toBe("php");
  });

  it("finds runtimes by untrusted name without reaching the prototype", () => {
    expect(findRuntime("x86")?.name).toBe("x86");
    for (const bad of ["__proto__", "toString", "constructor", "PHP", "", undefined]) expect(findRuntime(bad)).toBeUndefined();
  });

  it("the gateway's module graph loads no engine; deploy-time checks load iced-x86 for x86 only, never koffi or an engine", () => {
    // A child process records every module it loads: ES modules through a resolve hook
    // (module.register), CommonJS through require.cache, native addons through /proc/self/maps.
    const hook = `data:text/javascript,${encodeURIComponent(`
      let port;
      export async function initialize(data) { port = data.port; }
      export async function resolve(specifier, context, next) {
        const r = await next(specifier, context);
        port.postMessage(r.url);
        return r;
      }
    `)}`;
    const script = `
      import { register, createRequire } from "node:module";
      import { MessageChannel } from "node:worker_threads";
      import { readFileSync } from "node:fs";
      const { port1, port2 } = new MessageChannel();
      const seen = new Set();
      port1.on("message", (url) => seen.add(url));
      register(${JSON.stringify(hook)}, import.meta.url, { data: { port: port2 }, transferList: [port2] });
      const ENGINES = /koffi|iced-x86|@php-wasm|pyodide|\\/runtime\\/(php|python|x86)\\/index\\.js|\\/runtime\\/load\\.js/;
      async function loaded() {
        // The hook thread's messages arrive asynchronously: wait for a marker module's own.
        const marker = "data:text/javascript,export default " + Math.random();
        await import(marker);
        while (!seen.has(marker)) await new Promise((r) => setTimeout(r, 5));
        const cjs = Object.keys(createRequire(import.meta.url).cache);
        const maps = readFileSync("/proc/self/maps", "utf8").split("\\n").map((l) => l.split(/\\s+/)[5] ?? "");
        return [...seen, ...cjs, ...maps].filter((u) => ENGINES.test(u)).map((u) => u.replace(/^.*node_modules\\//, "").replace(/^.*\\/dist\\/src\\//, "src/"));
      }
      const out = {};
      await import(${JSON.stringify(join(ROOT, "dist/src/platform/index.js"))});
      await import(${JSON.stringify(join(ROOT, "dist/src/gateway/index.js"))});
      const { loadBundle, validateBundle, engineBuildId } = await import(${JSON.stringify(join(ROOT, "dist/src/runtime/index.js"))});
      const { packDirectory } = await import(${JSON.stringify(join(ROOT, "dist/src/bundle/index.js"))});
      out.atStart = await loaded();
      for (const [name, dir] of [["php", "examples/php-hello"], ["python", "examples/wsgi-hello"], ["x86", "examples/x86-cgi"]]) {
        const { image, manifest } = loadBundle(await packDirectory(${JSON.stringify(ROOT)} + "/" + dir));
        await validateBundle(manifest, image);
        out[name] = { id: engineBuildId(manifest), loaded: await loaded() };
      }
      console.log(JSON.stringify(out));
      process.exit(0);
    `;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split("\n").pop()!) as Record<string, { id: string; loaded: string[] }> & { atStart: string[] };
    // The composition root and the gateway, with the registry, import no engine and no checker.
    expect(out.atStart).toEqual([]);
    // PHP and Python deploys check the bundle without their engines.
    expect(out.php!.loaded).toEqual([]);
    expect(out.python!.loaded).toEqual([]);
    // An x86 deploy loads the validator (iced-x86, WebAssembly), never Unicorn's FFI or the engine.
    expect(out.x86!.loaded.length).toBeGreaterThan(0);
    expect(out.x86!.loaded.every((m) => /iced-x86/.test(m)), out.x86!.loaded.join(", ")).toBe(true);
    expect(out.x86!.id).toMatch(/^x86-[0-9a-f]{24}$/);
  });
});
