/**
 * ELF64 reader and static-program checks for the x86 runtime.
 *
 * The input is hostile: every offset, size and count comes from the file and is checked against
 * the file (and against the limits below) before anything is read at it. Structural corruption
 * throws ElfFormatError; policy findings (an interpreter, a W+X segment, an entry point outside
 * the code) are returned as failed checks so the validator can report all of them at once.
 *
 * What this module must never do: read outside `bytes`, trust a count before bounding it, or
 * call a region "code" that the loader would not map executable exactly as described.
 */
import { BundleError } from "../../errors.js";

/** Limits on what the reader accepts; counts are entries, sizes are bytes. */
export interface ElfLimits {
  /** Largest program file accepted (bytes). */
  maxFileBytes: number;
  /** Most program headers (PT_* entries). Static musl programs have ~6, busybox-static 10. */
  maxProgramHeaders: number;
  /** Most section headers. Binaries with debug info have ~40. */
  maxSectionHeaders: number;
  /** Symbols read from .symtab for naming addresses in reports; the rest are ignored. */
  maxSymbols: number;
  /** Sum of the PT_LOAD memory sizes (bytes): the guest image before brk/mmap. */
  maxImageBytes: number;
  /**
   * Sum of the executable segments' file sizes (bytes): what gets decoded. Segments may share
   * file bytes, so this is bounded on its own, not by the file size.
   */
  maxCodeBytes: number;
}

export const DEFAULT_ELF_LIMITS: Readonly<ElfLimits> = Object.freeze({
  maxFileBytes: 64 * 1024 * 1024,
  maxProgramHeaders: 64,
  maxSectionHeaders: 4096,
  maxSymbols: 200_000,
  maxImageBytes: 1024 * 1024 * 1024,
  maxCodeBytes: 64 * 1024 * 1024,
});

/** Lowest address a segment may use: the first 64 KiB stay unmapped so null pointers fault (Linux's mmap_min_addr). */
export const MIN_SEGMENT_ADDRESS = 0x10000;
/** End of the canonical lower half: x86-64 user space. */
export const USER_ADDRESS_END = 2 ** 47;
export const PAGE_SIZE = 4096;

export const ET_EXEC = 2;
export const ET_DYN = 3;
export const EM_X86_64 = 62;
export const PT_LOAD = 1;
export const PT_DYNAMIC = 2;
export const PT_INTERP = 3;
export const PT_TLS = 7;
export const PT_GNU_STACK = 0x6474e551;
export const PF_X = 1;
export const PF_W = 2;
export const PF_R = 4;
export const SHT_NULL = 0;
export const SHT_SYMTAB = 2;
export const SHT_NOBITS = 8;
export const SHF_WRITE = 1;
export const SHF_ALLOC = 2;
export const SHF_EXECINSTR = 4;
const DT_NULL = 0;
const DT_NEEDED = 1;
const ELF_HEADER_SIZE = 64;
const PHDR_SIZE = 56;
const SHDR_SIZE = 64;
const SYM_SIZE = 24;
const DYN_SIZE = 16;
const MAX_NAME_BYTES = 256;
const MAX_NAME_SCAN = 4096;
const MAX_DYNAMIC_ENTRIES = 65536;
const UTF8 = new TextDecoder("utf-8", { fatal: false });

const SEGMENT_TYPES: Record<number, string> = {
  0: "NULL", 1: "LOAD", 2: "DYNAMIC", 3: "INTERP", 4: "NOTE", 5: "SHLIB", 6: "PHDR", 7: "TLS",
  0x6474e550: "GNU_EH_FRAME", 0x6474e551: "GNU_STACK", 0x6474e552: "GNU_RELRO", 0x6474e553: "GNU_PROPERTY",
};

/** A program file the reader cannot make sense of (not ELF, or offsets outside the file). */
export class ElfFormatError extends BundleError {
  constructor(message: string) {
    super("x86_elf_invalid", `x86.elf: ${message}`);
  }
}

export interface ElfHeader {
  /** EI_OSABI: 0 (System V) or 3 (GNU/Linux) for Linux programs. */
  osabi: number;
  /** e_type: 2 ET_EXEC, 3 ET_DYN. */
  type: number;
  machine: number;
  entry: number;
  phoff: number;
  shoff: number;
  phnum: number;
  shnum: number;
  shstrndx: number;
}

export interface ElfSegment {
  index: number;
  type: number;
  /** "LOAD", "TLS", … or the number in hex. */
  typeName: string;
  /** PF_R | PF_W | PF_X bits. */
  flags: number;
  offset: number;
  vaddr: number;
  filesz: number;
  memsz: number;
  align: number;
}

export interface ElfSection {
  index: number;
  name: string;
  type: number;
  flags: number;
  address: number;
  offset: number;
  size: number;
  link: number;
}

export interface ElfSymbol {
  name: string;
  address: number;
  size: number;
}

export interface ElfFile {
  bytes: Uint8Array;
  header: ElfHeader;
  segments: ElfSegment[];
  /** Empty when the file has no section headers (stripped with sstrip): code is then found per segment. */
  sections: ElfSection[];
  /** Function and label symbols from .symtab, sorted by address (empty when stripped). */
  symbols: ElfSymbol[];
  /** DT_NEEDED entries of PT_DYNAMIC (shared libraries the program asks for). */
  needed: string[];
}

/** "R-X" style permissions of a segment. */
export function formatFlags(flags: number): string {
  return `${flags & PF_R ? "R" : "-"}${flags & PF_W ? "W" : "-"}${flags & PF_X ? "X" : "-"}`;
}

export function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/**
 * Bounds-checked little-endian reads. Every read goes through `need`, which compares the range
 * with the file length, so a hostile offset can only produce an ElfFormatError.
 */
class ByteReader {
  readonly #view: DataView;
  readonly length: number;

  constructor(bytes: Uint8Array) {
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.length = bytes.byteLength;
  }

  need(offset: number, size: number, what: string): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(size) || offset < 0 || size < 0 || offset + size > this.length) {
      throw new ElfFormatError(`${what} at file offset ${hex(offset)} (+${size} bytes) lies outside the ${this.length}-byte file`);
    }
  }

  u8(offset: number, what: string): number {
    this.need(offset, 1, what);
    return this.#view.getUint8(offset);
  }

  u16(offset: number, what: string): number {
    this.need(offset, 2, what);
    return this.#view.getUint16(offset, true);
  }

  u32(offset: number, what: string): number {
    this.need(offset, 4, what);
    return this.#view.getUint32(offset, true);
  }

  /** A 64-bit field as a number; values above 2^53 are refused (no user-space address or size is that large). */
  u64(offset: number, what: string): number {
    this.need(offset, 8, what);
    const v = this.#view.getBigUint64(offset, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ElfFormatError(`${what} is ${hex(Number(v >> 32n))}_${(v & 0xffffffffn).toString(16).padStart(8, "0")}, beyond any user-space value`);
    return Number(v);
  }

  /**
   * A NUL-terminated name inside [tableStart, tableEnd) (checked against the file first); at most
   * MAX_NAME_BYTES are kept and at most MAX_NAME_SCAN read, so a table without NULs costs little.
   */
  cString(tableStart: number, tableEnd: number, index: number, what: string): string {
    this.need(tableStart, tableEnd - tableStart, `${what}: the string table`);
    const start = tableStart + index;
    if (index < 0 || start >= tableEnd) throw new ElfFormatError(`${what}: name offset ${index} is outside its string table`);
    const stop = Math.min(tableEnd, start + MAX_NAME_SCAN);
    let end = start;
    while (end < stop && this.#view.getUint8(end) !== 0) end++;
    if (end >= tableEnd) throw new ElfFormatError(`${what}: name at offset ${index} is not NUL-terminated inside its string table`);
    const bytes = new Uint8Array(this.#view.buffer, this.#view.byteOffset + start, Math.min(end - start, MAX_NAME_BYTES));
    return UTF8.decode(bytes);
  }
}

/** Steps 1 and 2 of readElf: the file size, the ELF header, the program headers. */
function readHeaders(r: ByteReader, bytes: Uint8Array, limits: ElfLimits): { header: ElfHeader; segments: ElfSegment[]; shentsize: number } {
  if (bytes.byteLength > limits.maxFileBytes) {
    throw new ElfFormatError(`the file is ${bytes.byteLength} bytes, over the limit of ${limits.maxFileBytes}`);
  }
  // 1. identification: magic, ELFCLASS64, ELFDATA2LSB, EV_CURRENT
  if (bytes.byteLength < ELF_HEADER_SIZE) throw new ElfFormatError(`the file is ${bytes.byteLength} bytes, shorter than an ELF64 header (64)`);
  if (bytes[0] !== 0x7f || bytes[1] !== 0x45 || bytes[2] !== 0x4c || bytes[3] !== 0x46) throw new ElfFormatError("not an ELF file (bad magic)");
  if (bytes[4] !== 2) throw new ElfFormatError(`not a 64-bit ELF file (EI_CLASS ${bytes[4]}; x86-64 programs are ELFCLASS64)`);
  if (bytes[5] !== 1) throw new ElfFormatError(`not a little-endian ELF file (EI_DATA ${bytes[5]})`);
  if (bytes[6] !== 1) throw new ElfFormatError(`unknown ELF version ${bytes[6]}`);
  const header: ElfHeader = {
    osabi: r.u8(7, "EI_OSABI"),
    type: r.u16(16, "e_type"),
    machine: r.u16(18, "e_machine"),
    entry: r.u64(24, "e_entry"),
    phoff: r.u64(32, "e_phoff"),
    shoff: r.u64(40, "e_shoff"),
    phnum: r.u16(56, "e_phnum"),
    shnum: r.u16(60, "e_shnum"),
    shstrndx: r.u16(62, "e_shstrndx"),
  };
  const phentsize = r.u16(54, "e_phentsize");
  const shentsize = r.u16(58, "e_shentsize");
  if (r.u32(20, "e_version") !== 1) throw new ElfFormatError("e_version is not 1");
  if (r.u16(52, "e_ehsize") !== ELF_HEADER_SIZE) throw new ElfFormatError("e_ehsize is not 64");

  // 2. program headers: counted, sized and inside the file
  if (header.phnum === 0xffff) throw new ElfFormatError("extended program header numbering (PN_XNUM) is not supported");
  if (header.phnum > limits.maxProgramHeaders) throw new ElfFormatError(`${header.phnum} program headers, over the limit of ${limits.maxProgramHeaders}`);
  if (header.phnum > 0 && phentsize !== PHDR_SIZE) throw new ElfFormatError(`e_phentsize is ${phentsize}, not 56`);
  r.need(header.phoff, header.phnum * PHDR_SIZE, "the program header table");
  const segments: ElfSegment[] = [];
  for (let i = 0; i < header.phnum; i++) {
    const o = header.phoff + i * PHDR_SIZE;
    const what = `program header ${i}`;
    const type = r.u32(o, what);
    segments.push({
      index: i,
      type,
      typeName: SEGMENT_TYPES[type] ?? hex(type),
      flags: r.u32(o + 4, what),
      offset: r.u64(o + 8, `${what} p_offset`),
      vaddr: r.u64(o + 16, `${what} p_vaddr`),
      filesz: r.u64(o + 32, `${what} p_filesz`),
      memsz: r.u64(o + 40, `${what} p_memsz`),
      align: r.u64(o + 48, `${what} p_align`),
    });
  }
  return { header, segments, shentsize };
}

/** The ELF header and the program headers: what a loader needs (ElfFile without sections). */
export interface ElfHeaders {
  bytes: Uint8Array;
  header: ElfHeader;
  segments: ElfSegment[];
}

/**
 * Reads the ELF header and the program headers, and nothing else: the loader's view
 * (elf-load.ts) and the first part of readElf, so both read them with the same code. Throws
 * ElfFormatError when the file is not a little-endian ELF64 or the table lies outside the file.
 */
export function readElfHeaders(bytes: Uint8Array, limits: ElfLimits = DEFAULT_ELF_LIMITS): ElfHeaders {
  const { header, segments } = readHeaders(new ByteReader(bytes), bytes, limits);
  return { bytes, header, segments };
}

/**
 * Reads the ELF header, program headers, section headers (with names), the symbol table and
 * DT_NEEDED. Throws ElfFormatError when the file is not a little-endian ELF64 or any table lies
 * outside the file. Machine, type and segment policy are left to checkElf.
 */
export function readElf(bytes: Uint8Array, limits: ElfLimits = DEFAULT_ELF_LIMITS): ElfFile {
  const r = new ByteReader(bytes);
  const { header, segments, shentsize } = readHeaders(r, bytes, limits);

  // 3. section headers and their names (SHN_XINDEX / extended numbering refused)
  const sections: ElfSection[] = [];
  if (header.shnum === 0 && header.shoff !== 0) throw new ElfFormatError("extended section numbering (e_shnum 0 with a section table) is not supported");
  if (header.shnum > limits.maxSectionHeaders) throw new ElfFormatError(`${header.shnum} section headers, over the limit of ${limits.maxSectionHeaders}`);
  if (header.shnum > 0) {
    if (shentsize !== SHDR_SIZE) throw new ElfFormatError(`e_shentsize is ${shentsize}, not 64`);
    r.need(header.shoff, header.shnum * SHDR_SIZE, "the section header table");
    if (header.shstrndx >= header.shnum) throw new ElfFormatError(`e_shstrndx ${header.shstrndx} is not a section (there are ${header.shnum})`);
    const raw: Array<ElfSection & { nameIndex: number }> = [];
    for (let i = 0; i < header.shnum; i++) {
      const o = header.shoff + i * SHDR_SIZE;
      const what = `section header ${i}`;
      const s = {
        index: i,
        name: "",
        nameIndex: r.u32(o, what),
        type: r.u32(o + 4, what),
        flags: r.u64(o + 8, `${what} sh_flags`),
        address: r.u64(o + 16, `${what} sh_addr`),
        offset: r.u64(o + 24, `${what} sh_offset`),
        size: r.u64(o + 32, `${what} sh_size`),
        link: r.u32(o + 40, what),
      };
      if (s.type !== SHT_NULL && s.type !== SHT_NOBITS) r.need(s.offset, s.size, `section ${i}'s contents`);
      raw.push(s);
    }
    const strtab = raw[header.shstrndx];
    if (strtab === undefined || strtab.type === SHT_NOBITS) throw new ElfFormatError("the section name table has no contents");
    for (const s of raw) {
      const { nameIndex, ...section } = s;
      section.name = nameIndex === 0 ? "" : r.cString(strtab.offset, strtab.offset + strtab.size, nameIndex, `section ${s.index}`);
      sections.push(section);
    }
  }

  return { bytes, header, segments, sections, symbols: readSymbols(r, sections, limits), needed: readNeeded(r, segments, sections) };
}

/** Function and label symbols of .symtab, for naming addresses; unnamed and undefined ones are skipped. */
function readSymbols(r: ByteReader, sections: ElfSection[], limits: ElfLimits): ElfSymbol[] {
  const symtab = sections.find((s) => s.type === SHT_SYMTAB);
  if (symtab === undefined) return [];
  const strtab = sections[symtab.link];
  if (strtab === undefined || strtab.type === SHT_NOBITS) throw new ElfFormatError(".symtab links to a missing string table");
  const count = Math.min(Math.floor(symtab.size / SYM_SIZE), limits.maxSymbols);
  const out: ElfSymbol[] = [];
  for (let i = 1; i < count; i++) {
    const o = symtab.offset + i * SYM_SIZE;
    const info = r.u8(o + 4, "symbol st_info");
    const kind = info & 0xf;
    // STT_NOTYPE (assembly labels) and STT_FUNC only; sections, files and objects name no code.
    if (kind !== 0 && kind !== 2) continue;
    const shndx = r.u16(o + 6, "symbol st_shndx");
    if (shndx === 0 || shndx >= 0xff00) continue;
    const nameIndex = r.u32(o, "symbol st_name");
    if (nameIndex === 0) continue;
    const name = r.cString(strtab.offset, strtab.offset + strtab.size, nameIndex, `symbol ${i}`);
    if (name === "" || name.startsWith("$")) continue;
    out.push({ name, address: r.u64(o + 8, "symbol st_value"), size: r.u64(o + 16, "symbol st_size") });
  }
  // Prefer functions over labels at the same address, then by name for a stable order.
  out.sort((a, b) => a.address - b.address || b.size - a.size || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return out;
}

/** DT_NEEDED names from PT_DYNAMIC (the string table is found through the section headers when present). */
function readNeeded(r: ByteReader, segments: ElfSegment[], sections: ElfSection[]): string[] {
  const dyn = segments.find((s) => s.type === PT_DYNAMIC);
  if (dyn === undefined) return [];
  r.need(dyn.offset, dyn.filesz, "PT_DYNAMIC");
  const dynstr = sections.find((s) => s.name === ".dynstr" && s.type !== SHT_NOBITS);
  const needed: string[] = [];
  const count = Math.min(Math.floor(dyn.filesz / DYN_SIZE), MAX_DYNAMIC_ENTRIES);
  for (let i = 0; i < count; i++) {
    const o = dyn.offset + i * DYN_SIZE;
    const tag = r.u64(o, "dynamic tag");
    if (tag === DT_NULL) break;
    if (tag !== DT_NEEDED) continue;
    const value = r.u64(o + 8, "DT_NEEDED");
    needed.push(dynstr === undefined ? `(string ${value})` : r.cString(dynstr.offset, dynstr.offset + dynstr.size, value, "DT_NEEDED"));
  }
  return needed;
}

/** One named check of the program file, as shown in the report. */
export interface ElfCheck {
  check: string;
  ok: boolean;
  detail: string;
}

/** A range of the file that will be mapped executable, decoded as one instruction stream. */
export interface CodeRegion {
  /** Section name, or "[segment N]" when the file has no section headers. */
  name: string;
  address: number;
  offset: number;
  size: number;
}

/** Bytes of an executable segment outside every code region (alignment between sections). */
export interface PaddingRange {
  address: number;
  offset: number;
  size: number;
}

export interface ElfCheckOptions {
  /** Accept ET_DYN static-pie programs (no interpreter, no DT_NEEDED). Off: the executor loads ET_EXEC only. */
  allowStaticPie: boolean;
  limits: ElfLimits;
}

export interface ElfPlan {
  /** "exec" (ET_EXEC), "static-pie" (ET_DYN without interpreter or libraries), or what it is instead. */
  kind: "exec" | "static-pie" | "dynamic" | "shared-object" | "other";
  checks: ElfCheck[];
  /** Executable segments to decode, inside the file (empty when over maxCodeBytes). */
  executable: ElfSegment[];
  /** Code to decode: every executable section, or every executable segment when there are no sections. */
  code: CodeRegion[];
  padding: PaddingRange[];
}

function overlaps(a0: number, a1: number, b0: number, b1: number): boolean {
  return a0 < b1 && b0 < a1;
}

/**
 * The static-program checks (what the loader will map, and where code is), each reported by
 * name. The validator then decodes `code` and checks that `padding` holds only padding bytes,
 * so every byte the executor maps executable has been looked at.
 */
export function checkElf(elf: ElfFile, options: ElfCheckOptions): ElfPlan {
  const checks: ElfCheck[] = [];
  const add = (check: string, problems: string[], okDetail: string) => {
    checks.push({ check, ok: problems.length === 0, detail: problems.length === 0 ? okDetail : problems.join("; ") });
  };
  const h = elf.header;
  const loads = elf.segments.filter((s) => s.type === PT_LOAD);
  const interp = elf.segments.find((s) => s.type === PT_INTERP);
  const dynamic = elf.segments.find((s) => s.type === PT_DYNAMIC);

  // 1. machine and ABI
  add("x86-64", h.machine === EM_X86_64 ? [] : [`e_machine is ${h.machine}, not 62 (EM_X86_64)`], "ELF64 little-endian, EM_X86_64");
  add("linux-abi", h.osabi === 0 || h.osabi === 3 ? [] : [`EI_OSABI is ${h.osabi}, not System V (0) or GNU/Linux (3)`], h.osabi === 3 ? "GNU/Linux" : "System V");

  // 2. type and static linking
  let kind: ElfPlan["kind"];
  if (h.type === ET_EXEC) kind = interp === undefined && elf.needed.length === 0 ? "exec" : "dynamic";
  else if (h.type === ET_DYN) kind = interp !== undefined || elf.needed.length > 0 ? "dynamic" : dynamic !== undefined ? "static-pie" : "shared-object";
  else kind = "other";
  const typeProblems: string[] = [];
  if (h.type !== ET_EXEC && h.type !== ET_DYN) typeProblems.push(`e_type is ${h.type}, not an executable (ET_EXEC)`);
  else if (kind === "static-pie" && !options.allowStaticPie) typeProblems.push("static-pie (ET_DYN) programs are not supported yet: link with -static (-no-pie)");
  else if (kind === "shared-object") typeProblems.push("ET_DYN without PT_DYNAMIC is a shared object or a broken static-pie, not a program");
  else if (kind === "dynamic") typeProblems.push("dynamically linked: link with -static");
  add("static-executable", typeProblems, kind === "static-pie" ? "ET_DYN static-pie" : h.type === ET_EXEC ? "ET_EXEC" : `e_type ${h.type}`);
  add("no-interpreter", interp === undefined ? [] : ["PT_INTERP asks for a dynamic loader: link with -static"], "no PT_INTERP");
  add("no-shared-libraries", elf.needed.length === 0 ? [] : [`PT_DYNAMIC needs ${elf.needed.join(", ")}: link with -static`], dynamic === undefined ? "no PT_DYNAMIC" : "PT_DYNAMIC without DT_NEEDED");

  // 3. segments: inside the file, sane sizes, in user space, not overlapping
  const segProblems: string[] = [];
  let image = 0;
  if (loads.length === 0) segProblems.push("no PT_LOAD segment");
  for (const s of loads) {
    const name = `segment ${s.index} (${formatFlags(s.flags)} at ${hex(s.vaddr)})`;
    if (s.offset + s.filesz > elf.bytes.byteLength) segProblems.push(`${name}: file range ${hex(s.offset)}+${hex(s.filesz)} is outside the ${elf.bytes.byteLength}-byte file`);
    if (s.filesz > s.memsz) segProblems.push(`${name}: p_filesz ${s.filesz} is larger than p_memsz ${s.memsz}`);
    if (s.align > 1 && !Number.isInteger(Math.log2(s.align))) segProblems.push(`${name}: p_align ${s.align} is not a power of two`);
    if (s.vaddr % PAGE_SIZE !== s.offset % PAGE_SIZE) segProblems.push(`${name}: address and file offset are not congruent modulo the page size`);
    // ET_DYN is linked at 0 and moved by the loader; an ET_EXEC stays where it is linked.
    const lowest = h.type === ET_DYN ? 0 : MIN_SEGMENT_ADDRESS;
    if (s.vaddr < lowest || s.vaddr + s.memsz > USER_ADDRESS_END) segProblems.push(`${name}: ${hex(s.vaddr)}–${hex(s.vaddr + s.memsz)} is outside user space [${hex(lowest)}, ${hex(USER_ADDRESS_END)})`);
    image += s.memsz;
  }
  if (image > options.limits.maxImageBytes) segProblems.push(`the segments need ${image} bytes of memory, over the limit of ${options.limits.maxImageBytes}`);
  for (let i = 0; i < loads.length; i++) {
    for (let j = i + 1; j < loads.length; j++) {
      const a = loads[i]!;
      const b = loads[j]!;
      if (overlaps(a.vaddr, a.vaddr + a.memsz, b.vaddr, b.vaddr + b.memsz)) segProblems.push(`segments ${a.index} and ${b.index} overlap`);
    }
  }
  add("segments", segProblems, `${loads.length} PT_LOAD segments inside the file and user space`);

  // 4. W^X: no segment writable and executable, no page shared by a writable and an executable
  //    segment (the executor maps pages, so a shared page would have to be both), no executable stack.
  const wxProblems: string[] = [];
  for (const s of loads) {
    if (s.flags & PF_W && s.flags & PF_X) wxProblems.push(`segment ${s.index} at ${hex(s.vaddr)} is both writable and executable`);
  }
  const pageRange = (s: ElfSegment) => [Math.floor(s.vaddr / PAGE_SIZE), Math.ceil((s.vaddr + s.memsz) / PAGE_SIZE)] as const;
  for (const x of loads.filter((s) => s.flags & PF_X && !(s.flags & PF_W))) {
    for (const w of loads.filter((s) => s.flags & PF_W && !(s.flags & PF_X))) {
      const [x0, x1] = pageRange(x);
      const [w0, w1] = pageRange(w);
      if (overlaps(x0, x1, w0, w1)) wxProblems.push(`executable segment ${x.index} and writable segment ${w.index} share the page at ${hex(Math.max(x0, w0) * PAGE_SIZE)}`);
    }
  }
  const stack = elf.segments.find((s) => s.type === PT_GNU_STACK);
  if (stack !== undefined && stack.flags & PF_X) wxProblems.push("PT_GNU_STACK asks for an executable stack");
  add("w-xor-x", wxProblems, "no segment or page is both writable and executable");

  // 5. where the code is: executable sections inside executable segments, at the file offsets the
  //    loader will copy; without section headers, each executable segment is one region.
  const inFile = (s: ElfSegment) => s.offset + s.filesz <= elf.bytes.byteLength;
  let execLoads = loads.filter((s) => s.flags & PF_X && inFile(s));
  const code: CodeRegion[] = [];
  const secProblems: string[] = [];
  const codeBytes = execLoads.reduce((a, s) => a + s.filesz, 0);
  const tooLarge = codeBytes > options.limits.maxCodeBytes;
  if (tooLarge) {
    secProblems.push(`the executable segments hold ${codeBytes} bytes, over the limit of ${options.limits.maxCodeBytes}: not decoded`);
    execLoads = [];
  } else if (elf.sections.length === 0) {
    for (const s of execLoads) code.push({ name: `[segment ${s.index}]`, address: s.vaddr, offset: s.offset, size: s.filesz });
  } else {
    for (const sec of elf.sections) {
      if (!(sec.flags & SHF_EXECINSTR) || !(sec.flags & SHF_ALLOC) || sec.size === 0) continue;
      const seg = execLoads.find((s) => sec.address >= s.vaddr && sec.address + sec.size <= s.vaddr + s.memsz);
      if (seg === undefined) {
        secProblems.push(`section ${sec.name} (${hex(sec.address)}, ${sec.size} bytes) is executable but not inside an executable segment`);
        continue;
      }
      if (sec.type === SHT_NOBITS) {
        if (sec.address < seg.vaddr + seg.filesz) secProblems.push(`section ${sec.name} has no file contents but lies in the file part of segment ${seg.index}`);
        continue; // zero-filled memory: nothing to decode that padding checks would not cover
      }
      if (sec.offset - seg.offset !== sec.address - seg.vaddr || sec.address + sec.size > seg.vaddr + seg.filesz) {
        secProblems.push(`section ${sec.name}: file offset ${hex(sec.offset)} does not match what segment ${seg.index} maps at ${hex(sec.address)}`);
        continue;
      }
      code.push({ name: sec.name, address: sec.address, offset: sec.offset, size: sec.size });
    }
    code.sort((a, b) => a.address - b.address);
    for (let i = 1; i < code.length; i++) {
      const prev = code[i - 1]!;
      const cur = code[i]!;
      if (cur.address < prev.address + prev.size) secProblems.push(`sections ${prev.name} and ${cur.name} overlap`);
    }
  }
  if (code.length === 0 && execLoads.length > 0) secProblems.push("no executable section with contents");
  add("code-sections", secProblems, `${code.length} code ${code.length === 1 ? "region" : "regions"}: ${code.map((c) => c.name).join(", ")}`);

  // 6. the bytes of executable segments outside the code regions (checked for padding by the validator)
  const padding: PaddingRange[] = [];
  for (const s of execLoads) {
    let cursor = s.vaddr;
    const end = s.vaddr + s.filesz;
    for (const c of code) {
      if (c.address + c.size <= cursor || c.address >= end) continue;
      if (c.address > cursor) padding.push({ address: cursor, offset: s.offset + (cursor - s.vaddr), size: c.address - cursor });
      cursor = Math.max(cursor, c.address + c.size);
    }
    if (cursor < end) padding.push({ address: cursor, offset: s.offset + (cursor - s.vaddr), size: end - cursor });
  }

  // 7. entry point: in the file part of an executable segment and inside a code region
  //    (the validator adds: at an instruction boundary)
  const entryProblems: string[] = [];
  const entrySeg = execLoads.find((s) => h.entry >= s.vaddr && h.entry < s.vaddr + s.filesz);
  if (entrySeg === undefined) entryProblems.push(`entry point ${hex(h.entry)} is not inside an executable segment`);
  else if (!code.some((c) => h.entry >= c.address && h.entry < c.address + c.size)) entryProblems.push(`entry point ${hex(h.entry)} is not inside an executable section`);
  add("entry", entryProblems, `entry point ${hex(h.entry)} in ${code.find((c) => h.entry >= c.address && h.entry < c.address + c.size)?.name ?? "?"}`);

  return { kind, checks, executable: execLoads, code, padding };
}

/** The symbol at or before `address` as "name+0x12", or undefined when none covers it. */
export function nameAddress(symbols: readonly ElfSymbol[], address: number): string | undefined {
  let lo = 0;
  let hi = symbols.length - 1;
  let best = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (symbols[mid]!.address <= address) {
      best = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  if (best < 0) return undefined;
  // Several symbols may share the address; sorting put the sized one (a function) first.
  let sym = symbols[best]!;
  while (best > 0 && symbols[best - 1]!.address === sym.address) sym = symbols[--best]!;
  if (sym.size > 0 && address >= sym.address + sym.size) return undefined;
  if (address - sym.address > 0x100000) return undefined;
  return address === sym.address ? sym.name : `${sym.name}+${hex(address - sym.address)}`;
}
