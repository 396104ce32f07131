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

  it("the gateway validates an x86 bundle without loading koffi (no native addon in the gateway)", () => {
    const script = `
      const { readBundleArchive, packDirectory, loadBundle } = await import(${JSON.stringify(join(ROOT, "dist/src/bundle/index.js"))});
      await import(${JSON.stringify(join(ROOT, "dist/src/gateway/index.js"))});
      const { validateBundle, engineBuildId } = await import(${JSON.stringify(join(ROOT, "dist/src/runtime/index.js"))});
      const { image, manifest } = loadBundle(await packDirectory(${JSON.stringify(join(ROOT, "examples/x86-cgi"))}));
      validateBundle(manifest, image);
      const id = engineBuildId(manifest);
      const maps = (await import("node:fs")).readFileSync("/proc/self/maps", "utf8");
      console.log(JSON.stringify({ id, koffi: /koffi/.test(maps) }));
    `;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split("\n").pop()!) as { id: string; koffi: boolean };
    expect(out.id).toMatch(/^x86-[0-9a-f]{24}$/);
    expect(out.koffi).toBe(false);
  });
});
