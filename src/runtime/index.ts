/**
 * Runtimes by name: the deploy-time checks, build ids and host flags the gateway needs. The
 * engine a sandbox host loads is in load.ts (kept apart: importing the x86 engine loads koffi, a
 * native addon that only x86 hosts may load). One place to add a runtime.
 */
import type { BundleImage, Manifest } from "../bundle/index.js";
import { phpEngineBuild, validatePhpBundle } from "./php/validate.js";
import { pythonEngineBuild, validatePythonBundle } from "./python/validate.js";
import { X86Engine } from "./x86/index.js";

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
    case "x86":
      // The static validator (iced-x86) refuses the bundle with its report.
      new X86Engine().validate(manifest, image);
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
    case "x86":
      return new X86Engine().buildId(manifest);
  }
}

/** Extra Node flags for a runtime's sandbox host. */
export function hostFlags(runtime: Manifest["runtime"]): string[] {
  switch (runtime) {
    case "php":
      return [];
    case "python":
      // Pyodide runs in a vm realm without code generation from strings; the process-wide flag
      // (src/pool/spawn.ts gives it to every host) is a second wall (docs/python-sandbox.md).
      return [];
    case "x86":
      // koffi (the FFI to Debian's libunicorn2) is a native addon.
      return ["--allow-addons"];
  }
}

/**
 * How long a runtime may take to boot inside the first warm-up request, on top of the app's own
 * timeout_ms, ms: Python boots Pyodide (0.5–1 s from a spare's base image, 2–5 s cold, more on a
 * loaded machine) and imports the app there; PHP and x86 instances are ready before it.
 */
export function warmupBootAllowanceMs(runtime: Manifest["runtime"]): number {
  switch (runtime) {
    case "php":
      return 2_000;
    case "python":
      return 15_000;
    case "x86":
      return 2_000;
  }
}
