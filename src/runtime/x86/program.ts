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

/**
 * How a program meets a request: `cgi` (CGI/1.1: meta-variables in its environment, the body
 * on stdin, a CGI response on stdout) or `stdio` (a Unix tool: argv = [program, ...args], the
 * body on stdin, stdout is the response body as is, the exit code in `x-zerocell-exit-code`).
 */
export type X86Io = "cgi" | "stdio";

/** The [x86] table of the manifest (io and args only for a stdio program: a CGI one's table is as it always was). */
export interface X86ManifestSection {
  program: string;
  /** Absent: "cgi" (the default, and every manifest stored before the field existed). */
  io?: X86Io;
  /** argv after argv[0] (stdio mode only). */
  args?: string[];
}

/** Limits of a program's arguments (the manifest's `[x86] args`, a job's `args`). */
export const X86_ARGS_LIMITS = {
  /** Arguments after argv[0]. */
  maxArgs: 128,
  /** One argument, UTF-8 bytes. */
  maxArgBytes: 4096,
  /** All arguments together, UTF-8 bytes (plus one NUL each). */
  maxTotalBytes: 16 * 1024,
} as const;

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * Why these arguments are refused, or undefined when they are fine: too many, too long, a NUL
 * (it would cut the C string), or text that is not well-formed Unicode (a lone surrogate).
 */
export function argsProblem(args: readonly unknown[]): string | undefined {
  const l = X86_ARGS_LIMITS;
  if (args.length > l.maxArgs) return `at most ${l.maxArgs} arguments (got ${args.length})`;
  let total = 0;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (typeof a !== "string") return `argument ${i} must be a string`;
    if (a.includes("\0")) return `argument ${i} contains a NUL byte`;
    if (LONE_SURROGATE.test(a)) return `argument ${i} is not well-formed Unicode (a lone surrogate)`;
    const bytes = Buffer.byteLength(a);
    if (bytes > l.maxArgBytes) return `argument ${i} is ${bytes} bytes (limit ${l.maxArgBytes})`;
    total += bytes + 1;
  }
  if (total > l.maxTotalBytes) return `the arguments take ${total} bytes (limit ${l.maxTotalBytes})`;
  return undefined;
}

export function x86Section(manifest: Manifest): Required<X86ManifestSection> | undefined {
  const x = (manifest as unknown as { x86?: { program?: unknown; io?: unknown; args?: unknown } }).x86;
  if (x === undefined || typeof x.program !== "string") return undefined;
  const io: X86Io = x.io === "stdio" ? "stdio" : "cgi";
  const args = io === "stdio" && Array.isArray(x.args) ? x.args.filter((a): a is string => typeof a === "string") : [];
  return { program: x.program, io, args };
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
