/**
 * The x86 runtime as the gateway sees it at deploy: the manifest's [x86] table, the bundle checks
 * (the ELF loads, the static validator accepts it) and the build id snapshots depend on. The
 * validator (iced-x86, WebAssembly) is imported on the first x86 deploy, Unicorn and koffi never:
 * no native addon in the gateway, and no x86 code at all until an x86 bundle arrives.
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import type { BundleImage, Manifest } from "../../bundle/index.js";
import { defineManifestSection, str } from "../../bundle/manifest.js";
import { BundleError } from "../../errors.js";
import { ElfLoadError, parseStaticElf } from "./elf-load.js";
import { argsProblem, programEntry, X86_ARGS_LIMITS, x86Section, type X86ManifestSection } from "./program.js";
import { unicornBuildTag } from "./library-path.js";

export { argsProblem, programEntry, X86_ARGS_LIMITS, x86Section, type X86Io, type X86ManifestSection } from "./program.js";

declare module "../../bundle/manifest.js" {
  interface RuntimeSections {
    x86: X86ManifestSection;
  }
}

/** Bump when anything that shapes a snapshot changes (layout, stack, syscall state). */
export const ENGINE_REVISION = "x86-1";

export const x86Manifest = defineManifestSection({
  schema: z.strictObject(
    {
      program: str().default("bin/app"),
      io: z.enum(["cgi", "stdio"], { error: 'must be "cgi" or "stdio"' }).default("cgi"),
      args: z.array(str(), { error: "must be an array of strings" }).max(X86_ARGS_LIMITS.maxArgs, { error: `at most ${X86_ARGS_LIMITS.maxArgs} arguments` }).default([]),
    },
    { error: "must be a table" },
  ),
  resolve: (t, ctx): X86ManifestSection => {
    const problem = argsProblem(t.args);
    if (problem !== undefined) throw ctx.fail(["args"], problem);
    if (t.args.length > 0 && t.io !== "stdio") throw ctx.fail(["args"], 'needs io = "stdio" (a CGI program gets no arguments)');
    return t.io === "stdio" ? { program: t.program, io: t.io, args: t.args } : { program: t.program };
  },
});

/** The bundle's program, checked to be a file of the bundle that loads as a static ELF. */
export function loadableProgram(manifest: Manifest, image: BundleImage): { path: string; bytes: Buffer } {
  const { path, bytes } = programEntry(manifest, image);
  try {
    parseStaticElf(bytes);
  } catch (e) {
    if (e instanceof ElfLoadError) throw new BundleError("x86_program_invalid", `x86: ${path}: ${e.message}`, { cause: e, details: { field: "x86.program" } });
    throw e;
  }
  return { path, bytes };
}

/** Deploy-time checks: the program loads as a static ELF, and the static validator accepts it. */
export async function validateX86Bundle(manifest: Manifest, image: BundleImage): Promise<void> {
  const { path, bytes } = loadableProgram(manifest, image);
  const { assertValidProgram } = await import("./validate.js");
  assertValidProgram(bytes, { path });
}

/** What a snapshot depends on besides the deployment (options: the engine's meter and stack). */
export function x86EngineBuild(manifest: Manifest, options: { meter: string; stackBytes: number } = { meter: "block", stackBytes: 8 * 1024 * 1024 }): string {
  const h = createHash("sha256");
  // The Unicorn build snapshots are made with (2.1.1 where setup installed it, else 2.0.1).
  const sec = x86Section(manifest);
  const parts: unknown[] = [ENGINE_REVISION, unicornBuildTag(), options.meter, options.stackBytes, manifest.limits.memoryMb, sec?.program ?? null];
  // A stdio program's entry snapshot holds its argv (CGI builds hash as before: their stored snapshots stay valid).
  if (sec?.io === "stdio") parts.push("stdio", sec.args);
  h.update(JSON.stringify(parts));
  return `x86-${h.digest("hex").slice(0, 24)}`;
}

