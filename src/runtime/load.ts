/**
 * The engine a sandbox host runs, imported lazily through the registry: each pulls a large
 * runtime, and the x86 one a native addon (koffi) that only hosts started with --allow-addons
 * may load.
 */
import type { Manifest } from "../bundle/index.js";
import type { Engine } from "./engine.js";
import { RUNTIMES } from "./registry.js";

export async function loadEngine(runtime: Manifest["runtime"]): Promise<Engine> {
  return RUNTIMES[runtime].load();
}
