/**
 * The x86 runtime as the gateway sees it at deploy: the manifest's [x86] table, the bundle checks
 * (the ELF loads, the static validator accepts it) and the build id snapshots depend on. Imports
 * iced-x86 (WebAssembly) but never Unicorn or koffi: no native addon in the gateway.
 */
import { createHash } from "node:crypto";
import type { BundleImage, Manifest } from "../../bundle/index.js";
import { BundleError } from "../../errors.js";
import { ElfLoadError, parseStaticElf } from "./elf-load.js";
import { programEntry, x86Section } from "./program.js";
import { assertValidProgram } from "./validate.js";
import { unicornBuildTag } from "./library-path.js";

export { programEntry, x86Section, type X86ManifestSection } from "./program.js";

/** Bump when anything that shapes a snapshot changes (layout, stack, syscall state). */
export const ENGINE_REVISION = "x86-1";

/** Deploy-time checks: the program is a file of the bundle, loads as a static ELF, validates. */
export function validateX86Bundle(manifest: Manifest, image: BundleImage): void {
  const { path, bytes } = programEntry(manifest, image);
  try {
    parseStaticElf(bytes);
  } catch (e) {
    if (e instanceof ElfLoadError) throw new BundleError("x86_program_invalid", `x86: ${path}: ${e.message}`, { cause: e, details: { field: "x86.program" } });
    throw e;
  }
  assertValidProgram(bytes, { path });
}

/** What a snapshot depends on besides the deployment (options: the engine's meter and stack). */
export function x86EngineBuild(manifest: Manifest, options: { meter: string; stackBytes: number } = { meter: "block", stackBytes: 8 * 1024 * 1024 }): string {
  const h = createHash("sha256");
  // The Unicorn build snapshots are made with (2.1.1 where setup installed it, else 2.0.1).
  h.update(JSON.stringify([ENGINE_REVISION, unicornBuildTag(), options.meter, options.stackBytes, manifest.limits.memoryMb, x86Section(manifest)?.program ?? null]));
  return `x86-${h.digest("hex").slice(0, 24)}`;
}
