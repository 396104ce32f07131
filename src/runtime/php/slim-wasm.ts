/**
 * php.wasm as V8 keeps it, without what is dead weight once the module is compiled: V8 holds a
 * module's whole wire bytes for the life of the process, and every PHP host process compiles its
 * own. Of php_8_3.wasm's 23.5 MB, the `name` section (1.8 MB, function names for stack traces)
 * and the data section (77,797 active segments, 6.6 MB, plus V8's metadata per segment) are used
 * at most once, at instantiation: the slim module leaves both out (−9.8 MB PSS per process,
 * measured in one process after compiling; docs/memory.md), and `writeDataSegments` puts the
 * segments into the memory right after instantiation — before any of the module's code runs —
 * read again from the file. The memory's contents are then the same as the module's own
 * instantiation would give.
 *
 * A module this does not understand (segments that are not active `i32.const` ones, a memory
 * that is imported, code that refers to segments: bulk memory's memory.init/data.drop need the
 * data count section) keeps its data: `slimWasm` then only leaves out the name section, or
 * nothing. The wasm files are the engine's own (node_modules), not input from a tenant.
 */
import { closeSync, openSync, readSync } from "node:fs";

/** Where the data section's contents are in the file, and how many segments it has. */
export interface DataSection {
  /** Byte offset of the section's contents (after its id and size) in the file. */
  offset: number;
  length: number;
  segments: number;
  /** The end of the highest segment in the memory: the memory must be at least this large. */
  end: number;
}

interface Section {
  id: number;
  name: string;
  /** [start, end) of the whole section (id and size included), and where its contents start. */
  start: number;
  end: number;
  body: number;
}

class Reader {
  at: number;
  constructor(
    readonly bytes: Uint8Array,
    at: number,
  ) {
    this.at = at;
  }
  u32(): number {
    let result = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      if (this.at >= this.bytes.length) throw new Error("wasm: truncated LEB128");
      const b = this.bytes[this.at++]!;
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
    }
    throw new Error("wasm: LEB128 too long");
  }
  /** An i32.const offset expression (`41 <sleb> 0b`), as an unsigned address. */
  constOffset(): number {
    if (this.bytes[this.at++] !== 0x41) throw new Error("wasm: data segment offset is not i32.const");
    let result = 0;
    let shift = 0;
    let b: number;
    do {
      if (this.at >= this.bytes.length || shift > 28) throw new Error("wasm: bad i32.const");
      b = this.bytes[this.at++]!;
      result |= (b & 0x7f) << shift;
      shift += 7;
    } while ((b & 0x80) !== 0);
    if (shift < 32 && (b & 0x40) !== 0) result |= -1 << shift;
    if (this.bytes[this.at++] !== 0x0b) throw new Error("wasm: data segment offset is not a constant");
    return result >>> 0;
  }
}

function sections(bytes: Uint8Array): Section[] {
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) throw new Error("wasm: not a wasm module");
  const r = new Reader(bytes, 8);
  const out: Section[] = [];
  while (r.at < bytes.length) {
    const start = r.at;
    const id = bytes[r.at++]!;
    const size = r.u32();
    const body = r.at;
    const end = body + size;
    if (end > bytes.length) throw new Error("wasm: section past the end of the file");
    let name = "";
    if (id === 0) {
      const n = r.u32();
      name = Buffer.from(bytes.buffer, bytes.byteOffset + r.at, Math.min(n, end - r.at)).toString("latin1");
    }
    out.push({ id, name, start, end, body });
    r.at = end;
  }
  return out;
}

/** Walks the data section's segments; throws where one is not an active i32.const one of memory 0. */
function eachSegment(section: Uint8Array, visit: (dest: number, from: number, length: number) => void): number {
  const r = new Reader(section, 0);
  const count = r.u32();
  for (let i = 0; i < count; i++) {
    const flags = r.u32();
    if (flags !== 0) throw new Error(`wasm: data segment ${i} is not active in memory 0 (flags ${flags})`);
    const dest = r.constOffset();
    const length = r.u32();
    if (r.at + length > section.length) throw new Error("wasm: data segment past the end of its section");
    visit(dest, r.at, length);
    r.at += length;
  }
  if (r.at !== section.length) throw new Error("wasm: bytes after the last data segment");
  return count;
}

/**
 * The module's bytes without its name section and, where it can be put back after
 * instantiation, its data; `data` says where the data is in the original file (undefined: the
 * slim bytes kept it, nothing to write).
 */
export function slimWasm(file: Uint8Array): { bytes: Uint8Array<ArrayBuffer>; data: DataSection | undefined } {
  const all = sections(file);
  const dropName = (s: Section) => !(s.id === 0 && s.name === "name");
  const dataSection = all.find((s) => s.id === 11);
  let data: DataSection | undefined;
  // A module that imports its memory, or has segments other than active i32.const ones, keeps
  // its data (as does one whose code refers to segments: compiledModule's fallback).
  if (dataSection !== undefined) {
    try {
      if (all.some((s) => s.id === 2 && importsAMemory(file.subarray(s.body, s.end)))) throw new Error("wasm: the memory is imported");
      let end = 0;
      const segments = eachSegment(file.subarray(dataSection.body, dataSection.end), (dest, _from, length) => {
        end = Math.max(end, dest + length);
      });
      data = { offset: dataSection.body, length: dataSection.end - dataSection.body, segments, end };
    } catch {
      data = undefined;
    }
  }
  const keep = all.filter((s) => dropName(s) && (data === undefined || (s.id !== 11 && s.id !== 12)));
  const parts: Uint8Array[] = [file.subarray(0, 8), ...keep.map((s) => file.subarray(s.start, s.end))];
  // Buffer.concat allocates a plain (not shared) ArrayBuffer.
  return { bytes: Buffer.concat(parts) as Uint8Array as Uint8Array<ArrayBuffer>, data };
}

/** Whether an import section imports a memory (import kind 2). */
function importsAMemory(section: Uint8Array): boolean {
  const r = new Reader(section, 0);
  const count = r.u32();
  for (let i = 0; i < count; i++) {
    for (let name = 0; name < 2; name++) {
      const length = r.u32(); // module name, then field name
      r.at += length;
    }
    const kind = section[r.at++];
    if (kind === 0) r.u32();
    else if (kind === 1) {
      r.at++; // reftype
      const limits = r.u32();
      r.u32();
      if ((limits & 1) !== 0) r.u32();
    } else if (kind === 2) return true;
    else if (kind === 3) r.at += 2;
    else if (kind === 4) {
      r.at++;
      r.u32();
    } else throw new Error(`wasm: unknown import kind ${kind}`);
  }
  return false;
}

/**
 * Writes the data segments of `path`'s data section into `memory` (what instantiating the
 * original module does first). Throws if the file changed since `slimWasm` read it or the memory
 * is too small (where the original module's instantiation would have failed too).
 */
export function writeDataSegments(path: string, data: DataSection, memory: WebAssembly.Memory): void {
  if (memory.buffer.byteLength < data.end) throw new Error(`wasm: memory of ${memory.buffer.byteLength} bytes is smaller than the data segments' end ${data.end}`);
  const section = Buffer.allocUnsafe(data.length);
  const fd = openSync(path, "r");
  try {
    for (let at = 0; at < data.length; ) {
      const n = readSync(fd, section, at, data.length - at, data.offset + at);
      if (n === 0) throw new Error("wasm: the module file got shorter");
      at += n;
    }
  } finally {
    closeSync(fd);
  }
  const live = new Uint8Array(memory.buffer);
  const count = eachSegment(section, (dest, from, length) => {
    live.set(section.subarray(from, from + length), dest);
  });
  if (count !== data.segments) throw new Error("wasm: the module file changed");
}
