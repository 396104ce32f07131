/**
 * The x86 engine's ELF loader view: the few fields it maps (PT_LOAD segments, entry, program
 * headers), with the refusals that make mapping safe (W^X, the image area, static only). Pure: no
 * Unicorn, no koffi, so the gateway can run it at deploy without loading a native addon.
 * (The validator's thorough reader is elf.ts; both must refuse what the other refuses.)
 */

/** Guest page size (Unicorn's, unicorn.ts PAGE). */
const PAGE = 4096;
/** Where a program's PT_LOAD pages may lie (below the arena; machine.ts lays out the rest). */
export const IMAGE_MIN = 0x10000;
export const IMAGE_END = 0x10_0000_0000;
/** Load address of a position-independent (ET_DYN) static program. */
const ET_DYN_BASE = 0x40_0000;

export class ElfLoadError extends Error {
  constructor(message: string) {
    super(`x86 loader: ${message}`);
    this.name = "ElfLoadError";
  }
}

// ---------------------------------------------------------------------------------------------
// Minimal static ELF reader (the deploy-time validator does the thorough checks; this one only
// makes sure what it maps is what the file says, and refuses anything it cannot load safely).

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

const PT_LOAD = 1;
const PT_INTERP = 3;
const PT_PHDR = 6;
export const PF_X = 1;
export const PF_W = 2;
export const PF_R = 4;

export function parseStaticElf(bytes: Uint8Array): StaticElf {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < 64 || b.readUInt32BE(0) !== 0x7f454c46) throw new ElfLoadError("not an ELF file");
  if (b[4] !== 2 || b[5] !== 1) throw new ElfLoadError("not a 64-bit little-endian ELF");
  const type = b.readUInt16LE(16);
  if (type !== 2 && type !== 3) throw new ElfLoadError(`ELF type ${type} is not an executable`);
  if (b.readUInt16LE(18) !== 62) throw new ElfLoadError("not an x86-64 program");
  const entry = Number(b.readBigUInt64LE(24));
  const phoff = Number(b.readBigUInt64LE(32));
  const phentsize = b.readUInt16LE(54);
  const phnum = b.readUInt16LE(56);
  if (phentsize !== 56 || phnum === 0 || phnum > 64 || phoff + phnum * 56 > b.length) throw new ElfLoadError("bad program header table");
  const bias = type === 3 ? ET_DYN_BASE : 0;
  const segments: LoadSegment[] = [];
  let phdrAddr = 0;
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * 56;
    const ptype = b.readUInt32LE(o);
    const flags = b.readUInt32LE(o + 4);
    const offset = Number(b.readBigUInt64LE(o + 8));
    const vaddr = Number(b.readBigUInt64LE(o + 16));
    const filesz = Number(b.readBigUInt64LE(o + 32));
    const memsz = Number(b.readBigUInt64LE(o + 40));
    if (ptype === PT_INTERP) throw new ElfLoadError("the program asks for an interpreter (dynamically linked); only static programs run");
    if (ptype === PT_PHDR) phdrAddr = vaddr + bias;
    if (ptype !== PT_LOAD || memsz === 0) continue;
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(vaddr) || !Number.isSafeInteger(filesz) || !Number.isSafeInteger(memsz)) {
      throw new ElfLoadError(`segment ${i}: values out of range`);
    }
    if (filesz > memsz || offset + filesz > b.length) throw new ElfLoadError(`segment ${i}: file range outside the file`);
    if ((flags & PF_W) !== 0 && (flags & PF_X) !== 0) throw new ElfLoadError(`segment ${i} is writable and executable (W^X)`);
    const start = vaddr + bias;
    if (start < IMAGE_MIN || start + memsz > IMAGE_END) throw new ElfLoadError(`segment ${i} at 0x${start.toString(16)} is outside the image area`);
    if (offset % PAGE !== vaddr % PAGE) throw new ElfLoadError(`segment ${i}: offset and address disagree modulo the page size`);
    segments.push({ vaddr: start, memsz, offset, filesz, flags });
  }
  if (segments.length === 0) throw new ElfLoadError("no loadable segment");
  const e = entry + bias;
  if (!segments.some((s) => (s.flags & PF_X) !== 0 && e >= s.vaddr && e < s.vaddr + s.memsz)) {
    throw new ElfLoadError(`entry point 0x${e.toString(16)} is not inside an executable segment`);
  }
  if (phdrAddr === 0) {
    const s = segments.find((x) => phoff >= x.offset && phoff + phnum * 56 <= x.offset + x.filesz);
    if (s !== undefined) phdrAddr = s.vaddr + (phoff - s.offset);
  }
  return { type: type === 2 ? "exec" : "dyn", entry: e, phoff, phnum, phentsize, phdrAddr, segments, bias };
}
