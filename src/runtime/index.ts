/**
 * Runtimes by name: the deploy-time checks and build ids the gateway needs (light: no engine is
 * loaded), and the engine a sandbox host loads. One place to add a runtime.
 */
import type { BundleImage, Manifest } from "../bundle/index.js";
import type { Engine } from "./engine.js";
import { phpEngineBuild, validatePhpBundle } from "./php/validate.js";
import { pythonEngineBuild, validatePythonBundle } from "./python/validate.js";

export type { Engine, EngineInstance, EngineRequest, EngineResponse, EngineSpec, PortableSnapshot } from "./engine.js";

/** Static checks at deploy (throws BundleError). */
export function validateBundle(manifest: Manifest, image: BundleImage): void {
  switch (manifest.runtime) {
    case "php":
      validatePhpBundle(manifest, image);
      return;
    case "python":
      validatePythonBundle(manifest, image);
      return;
  }
}

/** What a stored snapshot of this deployment depends on besides the deployment itself. */
export function engineBuildId(manifest: Manifest): string {
  switch (manifest.runtime) {
    case "php":
      return phpEngineBuild(manifest);
    case "python":
      return pythonEngineBuild(manifest);
  }
}

/** Extra Node flags for a runtime's sandbox host. */
export function hostFlags(runtime: Manifest["runtime"]): string[] {
  switch (runtime) {
    case "php":
      return [];
    case "python":
      // Pyodide runs in a vm realm without code generation from strings; the process-wide flag
      // is a second wall (docs/python-sandbox.md).
      return ["--disallow-code-generation-from-strings"];
  }
}

/** The engine a sandbox host runs (loaded lazily: each pulls a large runtime). */
export async function loadEngine(runtime: Manifest["runtime"]): Promise<Engine> {
  switch (runtime) {
    case "php":
      return new (await import("./php/index.js")).PhpEngine();
    case "python":
      return new (await import("./python/index.js")).PythonEngine();
  }
}
