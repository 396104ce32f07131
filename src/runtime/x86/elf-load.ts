/**
 * The x86 engine's ELF loader view: the few fields it maps (PT_LOAD segments, entry, program
 * headers), with the refusals that make mapping safe (W^X, the image area, static only). Pure: no
 * Unicorn, no koffi, so the gateway can run it at deploy without loading a native addon.
 *
 * The header and the program headers are read by elf.ts's `readElfHeaders`, the same code the
 * validator's `readElf` starts with: a file the reader finds corrupt is refused by both. The
 * checks below are the loader's own (what it can map); the validator's `checkElf` makes the same
 * ones or stricter, except for what only loading needs (the image area, the entry in memsz).
 */
import { ElfFormatError, EM_X86_64, ET_DYN, ET_EXEC, PAGE_SIZE, PF_W, PF_X, PT_INTERP, PT_LOAD, readElfHeaders } from "./elf.js";

export { PF_R, PF_W, PF_X } from "./elf.js";

/** Where a program's PT_LOAD pages may lie (below the arena; machine.ts lays out the rest). */
export const IMAGE_MIN = 0x10000;
export const IMAGE_END = 0x10_0000_0000;
/** Load address of a position-independent (ET_DYN) static program. */
const ET_DYN_BASE = 0x40_0000;
const PT_PHDR = 6;
const PHDR_SIZE = 56;

export class ElfLoadError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`x86 loader: ${message}`, options);
    this.name = "ElfLoadError";
  }
}

export interface LoadSegment {
  vaddr: number;
  memsz: number;
  offset: number;
  filesz: number;
  flags: number;
}

export interface StaticElf {
  type: "exec" | "dyn";
  entry: number;
  phoff: number;
  phnum: number;
  phentsize: number;
  /** Address the program headers are visible at, 0 if not loaded. */
  phdrAddr: number;
  segments: LoadSegment[];
  bias: number;
}

export function parseStaticElf(bytes: Uint8Array): StaticElf {
  // 1. the header and program headers, bounds-checked against the file (elf.ts)
  let elf;
  try {
    elf = readElfHeaders(bytes);
  } catch (e) {
    if (e instanceof ElfFormatError) throw new ElfLoadError(e.message.replace(/^x86\.elf: /, ""), { cause: e });
    throw e;
  }
  const { header: h } = elf;
  // 2. what this loader runs: a static x86-64 executable (ET_EXEC, or ET_DYN at a fixed base)
  if (h.type !== ET_EXEC && h.type !== ET_DYN) throw new ElfLoadError(`ELF type ${h.type} is not an executable`);
  if (h.machine !== EM_X86_64) throw new ElfLoadError("not an x86-64 program");
  if (h.phnum === 0) throw new ElfLoadError("bad program header table");
  // 3. the segments it maps: inside the file and the image area, W^X, page-congruent
  const bias = h.type === ET_DYN ? ET_DYN_BASE : 0;
  const segments: LoadSegment[] = [];
  let phdrAddr = 0;
  for (const s of elf.segments) {
    const i = s.index;
    if (s.type === PT_INTERP) throw new ElfLoadError("the program asks for an interpreter (dynamically linked); only static programs run");
    if (s.type === PT_PHDR) phdrAddr = s.vaddr + bias;
    if (s.type !== PT_LOAD || s.memsz === 0) continue;
    if (s.filesz > s.memsz || s.offset + s.filesz > bytes.byteLength) throw new ElfLoadError(`segment ${i}: file range outside the file`);
    if ((s.flags & PF_W) !== 0 && (s.flags & PF_X) !== 0) throw new ElfLoadError(`segment ${i} is writable and executable (W^X)`);
    const start = s.vaddr + bias;
    if (start < IMAGE_MIN || start + s.memsz > IMAGE_END) throw new ElfLoadError(`segment ${i} at 0x${start.toString(16)} is outside the image area`);
    if (s.offset % PAGE_SIZE !== s.vaddr % PAGE_SIZE) throw new ElfLoadError(`segment ${i}: offset and address disagree modulo the page size`);
    segments.push({ vaddr: start, memsz: s.memsz, offset: s.offset, filesz: s.filesz, flags: s.flags });
  }
  if (segments.length === 0) throw new ElfLoadError("no loadable segment");
  // 4. the entry point inside an executable segment
  const e = h.entry + bias;
  if (!segments.some((s) => (s.flags & PF_X) !== 0 && e >= s.vaddr && e < s.vaddr + s.memsz)) {
    throw new ElfLoadError(`entry point 0x${e.toString(16)} is not inside an executable segment`);
  }
  if (phdrAddr === 0) {
    const s = segments.find((x) => h.phoff >= x.offset && h.phoff + h.phnum * PHDR_SIZE <= x.offset + x.filesz);
    if (s !== undefined) phdrAddr = s.vaddr + (h.phoff - s.offset);
  }
  return { type: h.type === ET_EXEC ? "exec" : "dyn", entry: e, phoff: h.phoff, phnum: h.phnum, phentsize: PHDR_SIZE, phdrAddr, segments, bias };
}
