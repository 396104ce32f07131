/**
 * The x86 runtime as the registry lists it: the [x86] table, deploy-time checks and build id
 * (checks.ts), host flags, and the engine (index.ts, Unicorn through koffi) loaded lazily.
 */
import type { RuntimeDescriptor } from "../descriptor.js";
import { validateX86Bundle, x86EngineBuild, x86Manifest } from "./checks.js";
import { UNICORN_21_DIR } from "./library-path.js";

export const x86Runtime: RuntimeDescriptor = {
  name: "x86",
  manifest: x86Manifest,
  // The static validator (iced-x86) refuses the bundle with its report.
  validate: validateX86Bundle,
  buildId: (manifest) => x86EngineBuild(manifest),
  // koffi (the FFI to Debian's libunicorn2) is a native addon.
  // The 2.1.1 library directory is readable so the engine can choose it (library-path.ts).
  hostFlags: ["--allow-addons", `--allow-fs-read=${UNICORN_21_DIR}`],
  warmupBootAllowanceMs: 2_000,
  load: async () => new (await import("./index.js")).X86Engine(),
};
