/**
 * Runtimes by name: the one place that lists them. Each descriptor holds what the gateway needs
 * at deploy (bundle checks, the build id a snapshot depends on) without loading the engine, the
 * sandbox host's flags and boot allowance, and a lazy loader for the engine itself (each pulls a
 * large runtime). koffi, the one native addon, is loaded in sandbox hosts only: x86 for Unicorn,
 * PHP and Python for the dirty-page reset (src/snapshot/dirty-pages.ts, ADR 002).
 * Adding a runtime: a descriptor here, its engine folder, its manifest table.
 * Must never: import an engine (or koffi) at module load; the gateway imports this file.
 */
import type { BundleImage, Manifest } from "../bundle/index.js";
import type { Engine } from "./engine.js";
import { phpEngineBuild, validatePhpBundle } from "./php/validate.js";
import { pythonEngineBuild, validatePythonBundle } from "./python/validate.js";
import { validateX86Bundle, x86EngineBuild } from "./x86/descriptor.js";
import { UNICORN_21_DIR } from "./x86/library-path.js";

export type RuntimeName = Manifest["runtime"];

export interface RuntimeDescriptor {
  readonly name: RuntimeName;
  /** Static checks at deploy (throws BundleError); pure, no engine loaded. */
  validate(manifest: Manifest, image: BundleImage): void;
  /** What a stored snapshot of a deployment depends on besides the deployment itself. */
  buildId(manifest: Manifest): string;
  /** Extra Node flags for this runtime's sandbox hosts (src/pool/spawn.ts adds the common ones). */
  readonly hostFlags: readonly string[];
  /**
   * How long the runtime may take to boot inside the first warm-up request, on top of the app's
   * own timeout_ms, ms.
   */
  readonly warmupBootAllowanceMs: number;
  /** The engine, imported on first use (in a sandbox host only). */
  load(): Promise<Engine>;
}

export const RUNTIMES: Readonly<Record<RuntimeName, RuntimeDescriptor>> = {
  php: {
    name: "php",
    validate: validatePhpBundle,
    buildId: phpEngineBuild,
    // koffi (libc's memfd_create, mmap, pread of /proc/self/pagemap) for the dirty-page reset;
    // host JS only: guest PHP runs in wasm with dl() and FFI off (docs/threat-model.md). Without
    // it the reset compares the whole image.
    hostFlags: ["--allow-addons"],
    // PHP instances are ready before the warm-up request.
    warmupBootAllowanceMs: 2_000,
    load: async () => new (await import("./php/index.js")).PhpEngine(),
  },
  python: {
    name: "python",
    validate: validatePythonBundle,
    buildId: pythonEngineBuild,
    // Pyodide runs in a vm realm without code generation from strings; the process-wide flag
    // (every host has it, src/pool/spawn.ts) is a second wall (docs/python-sandbox.md).
    // koffi for the dirty-page reset, as for PHP: the realm holds no reference to host modules.
    hostFlags: ["--allow-addons"],
    // Pyodide boots (0.5–1 s from a spare's base image, 2–5 s cold, more on a loaded machine)
    // and imports the app inside the first warm-up request.
    warmupBootAllowanceMs: 15_000,
    load: async () => new (await import("./python/index.js")).PythonEngine(),
  },
  x86: {
    name: "x86",
    // The static validator (iced-x86) refuses the bundle with its report.
    validate: validateX86Bundle,
    buildId: (manifest) => x86EngineBuild(manifest),
    // koffi (the FFI to Debian's libunicorn2) is a native addon.
    // The 2.1.1 library directory is readable so the engine can choose it (library-path.ts).
    hostFlags: ["--allow-addons", `--allow-fs-read=${UNICORN_21_DIR}`],
    warmupBootAllowanceMs: 2_000,
    load: async () => new (await import("./x86/index.js")).X86Engine(),
  },
};

/** The descriptor of a runtime named by untrusted text (a host's argv), or undefined. */
export function findRuntime(name: string | undefined): RuntimeDescriptor | undefined {
  return name !== undefined && Object.hasOwn(RUNTIMES, name) ? RUNTIMES[name as RuntimeName] : undefined;
}
