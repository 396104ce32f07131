/**
 * Which file of a bundle is the x86 program: the manifest's `[x86] program`, read by the project's
 * manifest parser and held to one path rule, for deploy (`programEntry`, over the bundle image)
 * and for `zerocell validate DIR` (`readProgram`, over a directory on the user's disk).
 */
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { MANIFEST_FILE, MAX_MANIFEST_BYTES, type BundleImage, type Manifest } from "../../bundle/index.js";
import { BundleError } from "../../errors.js";
import { DEFAULT_ELF_LIMITS } from "./elf.js";

/** The [x86] table of the manifest. */
export interface X86ManifestSection {
  program: string;
}

export function x86Section(manifest: Manifest): X86ManifestSection | undefined {
  const x = (manifest as unknown as { x86?: { program?: unknown } }).x86;
  if (x === undefined || typeof x.program !== "string") return undefined;
  return { program: x.program };
}

/** The program's path inside the bundle ("bin/app"): relative, no "..", no empty segment. */
export function resolveProgramPath(manifest: Manifest): string {
  if ((manifest.runtime as string) !== "x86") throw new BundleError("manifest_invalid", `manifest: runtime: the x86 engine cannot run "${manifest.runtime}"`);
  const sec = x86Section(manifest);
  if (sec === undefined) throw new BundleError("manifest_invalid", "manifest: x86.program: is required (the bundle path of a static x86-64 ELF)", { details: { field: "x86.program" } });
  const path = sec.program.replace(/^\.\//, "");
  if (path === "" || path.startsWith("/") || path.split("/").some((s) => s === ".." || s === "")) {
    throw new BundleError("manifest_invalid", `manifest: x86.program: ${JSON.stringify(sec.program)} must be a relative path inside the bundle`, { details: { field: "x86.program" } });
  }
  return path;
}

/** The program's bytes in a deployed bundle. */
export function programEntry(manifest: Manifest, image: BundleImage): { path: string; bytes: Buffer } {
  const path = resolveProgramPath(manifest);
  const entry = image.entries.find((e) => e.path === path);
  if (entry === undefined || entry.kind !== "file" || entry.data === undefined) {
    throw new BundleError("manifest_invalid", `manifest: x86.program: ${JSON.stringify(path)} is not a file in the bundle`, { details: { field: "x86.program" } });
  }
  return { path, bytes: entry.data };
}

/**
 * The program `zerocell validate PATH` means: PATH itself, or, for a bundle directory, the file
 * its zerocell.toml names in `[x86] program` (parsed by `parse`, the parser deploy uses:
 * src/runtime/manifest.ts parseManifest; default "bin/app"). The sizes are checked before the
 * files are read.
 */
export function readProgram(path: string, parse: (text: string) => Manifest, maxFileBytes = DEFAULT_ELF_LIMITS.maxFileBytes): { path: string; bytes: Uint8Array } {
  let file = path;
  if (statSync(path).isDirectory()) {
    const manifestPath = join(path, MANIFEST_FILE);
    let text: string;
    try {
      if (statSync(manifestPath).size > MAX_MANIFEST_BYTES) throw new Error(`larger than ${MAX_MANIFEST_BYTES} bytes`);
      text = readFileSync(manifestPath, "utf8");
    } catch (e) {
      throw new BundleError("x86_program_missing", `x86.validate: ${path} is a directory without a readable ${MANIFEST_FILE} (${(e as Error).message})`, { cause: e });
    }
    try {
      file = join(path, resolveProgramPath(parse(text)));
    } catch (e) {
      if (e instanceof BundleError) throw new BundleError(e.code, `x86.validate: ${manifestPath}: ${e.message}`, { cause: e, details: e.details });
      throw e;
    }
  }
  const st = statSync(file);
  if (!st.isFile()) throw new BundleError("x86_program_missing", `x86.validate: ${file} is not a file`);
  if (st.size > maxFileBytes) throw new BundleError("x86_elf_invalid", `x86.elf: ${file} is ${st.size} bytes, over the limit of ${maxFileBytes}`);
  return { path: file, bytes: readFileSync(file) };
}
