/**
 * The PHP runtime as the registry lists it: [php] table (manifest.ts), deploy-time checks and
 * build id (validate.ts), host flags, and the engine (index.ts) loaded lazily.
 */
import type { RuntimeDescriptor } from "../descriptor.js";
import { phpManifest } from "./manifest.js";
import { phpEngineBuild, validatePhpBundle } from "./validate.js";

export const phpRuntime: RuntimeDescriptor = {
  name: "php",
  manifest: phpManifest,
  validate: validatePhpBundle,
  buildId: phpEngineBuild,
  // koffi (libc's memfd_create, mmap, pread of /proc/self/pagemap) for the dirty-page reset;
  // host JS only: guest PHP runs in wasm with dl() and FFI off (docs/threat-model.md). Without
  // it the reset compares the whole image.
  hostFlags: ["--allow-addons"],
  // PHP instances are ready before the warm-up request.
  warmupBootAllowanceMs: 2_000,
  load: async () => new (await import("./index.js")).PhpEngine(),
};
