/**
 * The engine a sandbox host runs, imported lazily: each pulls a large runtime, and the x86 one a
 * native addon (koffi) that only hosts started with --allow-addons may load.
 */
import type { Manifest } from "../bundle/index.js";
import type { Engine } from "./engine.js";

export async function loadEngine(runtime: Manifest["runtime"]): Promise<Engine> {
  switch (runtime) {
    case "php":
      return new (await import("./php/index.js")).PhpEngine();
    case "python":
      return new (await import("./python/index.js")).PythonEngine();
    case "x86":
      return new (await import("./x86/index.js")).X86Engine();
  }
}
