/**
 * One x86-64 guest: its address space (host memory mapped into Unicorn), a static ELF loaded
 * with W^X page protections, the Linux process entry stack, the drop to CPL 3, the memory
 * system calls' bookkeeping (brk/mmap/munmap/mprotect), metered runs, and snapshots that a
 * reset restores in place.
 *
 * Guest address space (all below 2^47, so plain JS numbers):
 *
 *   0x0000_0001_0000 …           image: the ELF's PT_LOAD pages (ET_EXEC at their addresses,
 *                                 ET_DYN at 0x40_0000); nothing below 64 KiB is ever mapped
 *   0x0010_0000_0000 + limit      arena: brk heap growing up from its base, mmap regions
 *                                 growing down from its top; its size IS the memory limit
 *   0x7ffd_0000_0000 - stack      stack (8 MiB by default, read/write, never executable)
 *   0x7ffe_0000_0000 + 1 MiB      request block: the CGI environment of a resumed request
 *   0x7fff_0000_0000              host-only: page 0 = GDT + iretq frame (read-only),
 *                                 page 1 = the iretq stub (read+exec), both mapped only for the
 *                                 one iretq of enterUserMode() and unmapped before any guest code
 *                                 runs: a guest load, store or jump there is a segmentation
 *                                 fault. Never part of a snapshot; the guest cannot map anything
 *                                 there (mmap is confined to the arena).
 *
 * CPL 3: Unicorn starts at CPL 0 with no paging and no descriptor tables. enterUserMode() loads
 * a GDT with a user data (0x2b) and a 64-bit user code (0x33) descriptor, both with DPL 3 and
 * their accessed bits preset (so the CPU never writes the read-only GDT), sets CR4.TSD (rdtsc
 * faults at CPL 3: the guest's clock is the virtual one), and runs one `iretq` from the stub
 * page to the ELF entry. From then on privileged instructions (hlt, cli, in/out, mov cr, wrmsr,
 * lgdt, …) raise #GP, which the interrupt hook turns into a fault; `syscall` is hooked and
 * never reaches an MSR-defined kernel entry; `int n` reaches the interrupt hook too.
 *
 * W^X: no page is ever writable and executable. The loader refuses such segments (and pages
 * shared by a writable and an executable segment); mmap/mprotect with PROT_EXEC are refused
 * by the syscall layer, and only the loader maps executable pages.
 */
import { randomFillSync } from "node:crypto";
import {
  HostMemory,
  METER_BUDGET,
  METER_DEADLINE,
  PAGE,
  PROT_EXEC,
  PROT_READ,
  PROT_WRITE,
  UC_MEM,
  Unicorn,
  X86_REG,
  rdtsc,
  tscTicksPerMs,
  ucErrName,
  type MeterKind,
  type UcContext,
} from "./unicorn.js";
import { instructionTable, type InstructionTable } from "./validate.js";
import { ElfLoadError, PF_R, PF_W, PF_X, parseStaticElf, type StaticElf } from "./elf-load.js";

export { ElfLoadError, IMAGE_END, IMAGE_MIN, parseStaticElf, type LoadSegment, type StaticElf } from "./elf-load.js";

export const ARENA_BASE = 0x10_0000_0000;
export const STACK_TOP = 0x7ffd_0000_0000;
export const REQUEST_BASE = 0x7ffe_0000_0000;
export const REQUEST_BYTES = 1024 * 1024;
export const HOST_BASE = 0x7fff_0000_0000;
const USER_CS = 0x33;
const USER_SS = 0x2b;
const CR4_TSD = 1 << 2;
const CR4_OSFXSR = 1 << 9;
const CR4_OSXMMEXCPT = 1 << 10;
const MAX_ARENA_BYTES = 4 * 1024 * 1024 * 1024;
/** Protection value of PROT_NONE mappings in our books: reserved address space, not in Unicorn. */
const RESERVED = 8;
/** Linux's PROT_SEM (x86: accepted and meaningless). Any other bit above PROT_EXEC is EINVAL. */
const PROT_SEM = 8;

/**
 * The protection a guest's mmap/mprotect asks for, as PROT_READ|WRITE|EXEC bits, or undefined
 * for bits Linux does not define here (EINVAL). PROT_GROWSDOWN/GROWSUP are refused too: no
 * mapping of the sandbox grows (Linux answers EINVAL for them on such a mapping). Unicorn
 * refuses unknown permission bits with UC_ERR_ARG, so nothing unchecked may reach it.
 */
export function guestProt(prot: number): number | undefined {
  if (!Number.isInteger(prot) || (prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM)) !== 0) return undefined;
  return prot & (PROT_READ | PROT_WRITE | PROT_EXEC);
}



// ---------------------------------------------------------------------------------------------
// Regions

/** A contiguous guest range backed by one host block, with a protection byte per page (0 = unmapped). */
class Region {
  readonly name: string;
  readonly base: number;
  readonly size: number;
  readonly pages: number;
  readonly mem: HostMemory;
  readonly prot: Uint8Array;
  /** The region's memory as a Buffer (for memcmp-speed compares without allocations). */
  readonly buf: Buffer;
  /**
   * Page runs [start, end) whose mapping or protection changed since the last capture/restore:
   * their content may differ from the snapshot even where the snapshot had them read-only.
   */
  touched: number[] = [];
  /** Image only: pages whose content may differ from the ELF file (written or remapped since load). */
  readonly modified: Uint8Array | undefined;

  constructor(name: string, base: number, size: number, image: boolean) {
    this.name = name;
    this.base = base;
    this.size = size;
    this.pages = size / PAGE;
    this.mem = new HostMemory(size);
    this.prot = new Uint8Array(this.pages);
    this.buf = Buffer.from(this.mem.bytes.buffer, this.mem.bytes.byteOffset, size);
    this.modified = image ? new Uint8Array(this.pages) : undefined;
  }

  contains(addr: number, len: number): boolean {
    return addr >= this.base && addr + len <= this.base + this.size;
  }
}

// ---------------------------------------------------------------------------------------------
// Run results

export type StopReason =
  | { kind: "exit"; code: number }
  | { kind: "ready" }
  | { kind: "signal"; signal: number; message: string }
  | { kind: "fault"; message: string }
  | { kind: "budget" }
  | { kind: "timeout" }
  | { kind: "limit"; message: string }
  | { kind: "error"; message: string };

export interface RunLimits {
  /** Meter events (blocks or instructions, per the machine's meter kind) before the run stops. */
  budget: bigint;
  /** Wall-clock milliseconds before the run stops. */
  timeoutMs: number;
}

export interface RunResult {
  stop: StopReason;
  /** Meter events counted (see MachineOptions.meter). */
  events: bigint;
  /** Guest code bytes executed (sum of block or instruction sizes). */
  codeBytes: bigint;
  /**
   * Guest instructions executed: per block, the instruction starts of the validator's linear
   * decoding inside it (exact for code that runs on that decoding, i.e. compiled code; a block
   * left early by a fault or stop still counts whole). 0 when the program has no table.
   */
  instructions: bigint;
  /** Wall time inside the emulator, ms. */
  ms: number;
}

export interface MachineOptions {
  /** The arena (brk + mmap) size in bytes: the guest's memory limit. */
  memoryBytes: number;
  /** Stack size in bytes (default 8 MiB). */
  stackBytes?: number;
  /** What the meter counts: translated blocks executed (default, cheap) or instructions (exact). */
  meter?: MeterKind;
  /** Count instructions with the program's instruction-start table (default true). */
  countInstructions?: boolean;
}

/** Instruction tables per program (the bytes a host's engine keeps for its life). */
const TABLES = new WeakMap<Uint8Array, InstructionTable | null>();

function tableOf(program: Uint8Array): InstructionTable | undefined {
  let t = TABLES.get(program);
  if (t === undefined) {
    try {
      t = instructionTable(program) ?? null;
    } catch {
      t = null; // a file the loader accepts but the ELF reader does not: count blocks only
    }
    TABLES.set(program, t);
  }
  return t ?? undefined;
}

/** Called for every `syscall`; returns rax, or undefined when it stopped the machine. */
export type SyscallHandler = (nr: number, args: BigUint64Array) => bigint | undefined;

const EXCEPTIONS: Record<number, [string, number]> = {
  0: ["divide error (#DE)", 8],
  1: ["debug trap (#DB)", 5],
  3: ["breakpoint (int3)", 5],
  4: ["overflow (#OF)", 11],
  5: ["bound range exceeded (#BR)", 11],
  6: ["invalid opcode (#UD)", 4],
  7: ["device not available (#NM)", 11],
  8: ["double fault (#DF)", 11],
  10: ["invalid TSS (#TS)", 11],
  11: ["segment not present (#NP)", 11],
  12: ["stack-segment fault (#SS)", 11],
  13: ["general protection fault (#GP): privileged or forbidden instruction", 11],
  14: ["page fault (#PF)", 11],
  16: ["x87 floating-point error (#MF)", 8],
  17: ["alignment check (#AC)", 7],
  19: ["SIMD floating-point exception (#XM)", 8],
};

export interface MachineSnapshotRegion {
  prot: Uint8Array;
  /** Page indices (ascending) whose content is stored in `data` (non-zero pages only). */
  pages: Int32Array;
  data: Buffer;
  /** page → index in `pages`, or -1. */
  slot: Int32Array;
  /** Runs [start, end) of pages writable in the snapshot and zero there: zeroed by every restore. */
  zeroRuns: Int32Array;
}

/** CPU + memory state that restore() returns to. */
export interface MachineSnapshot {
  context: UcContext;
  regions: MachineSnapshotRegion[];
  brk: number;
  mmapLow: number;
}

export interface ExportedMachine {
  memory: Buffer;
  meta: {
    layout: string;
    cpu: string;
    brk: number;
    mmapLow: number;
    regions: Array<{ prot: string; pages: string }>;
  };
}

const ZERO_PAGE = Buffer.alloc(PAGE);
const ZERO_CHUNK = Buffer.alloc(16 * PAGE);

/** slot and zeroRuns of a snapshot region from its protections and stored pages. */
function indexSnapshotRegion(prot: Uint8Array, pages: Int32Array, data: Buffer): MachineSnapshotRegion {
  const slot = new Int32Array(prot.length).fill(-1);
  pages.forEach((p, i) => (slot[p] = i));
  const runs: number[] = [];
  let start = -1;
  for (let p = 0; p <= prot.length; p++) {
    const zero = p < prot.length && (prot[p]! & PROT_WRITE) !== 0 && prot[p] !== RESERVED && slot[p]! < 0;
    if (zero && start < 0) start = p;
    else if (!zero && start >= 0) {
      runs.push(start, p);
      start = -1;
    }
  }
  return { prot, pages, data, slot, zeroRuns: Int32Array.from(runs) };
}

export class Machine {
  readonly uc: Unicorn;
  readonly elf: StaticElf;
  readonly #file: Uint8Array;
  readonly image: Region;
  readonly arena: Region;
  readonly stack: Region;
  readonly request: Region;
  readonly #host: Region;
  /** Regions a snapshot covers, in a fixed order (image, arena, stack, request). */
  readonly #regions: Region[];
  /** Native copy of the instruction-start table the meter reads (freed after the engine). */
  #table: HostMemory | undefined;
  readonly meterKind: MeterKind;
  brkBase: number;
  brk: number;
  /** Lowest address handed out by mmap (mmap grows down from the arena top). */
  mmapLow: number;
  syscallHandler: SyscallHandler | undefined;
  #stop: StopReason | undefined;
  #disposed = false;
  /** Whether the CPU is at CPL 3 (enterUserMode ran). */
  #user = false;

  constructor(program: Uint8Array, options: MachineOptions) {
    const memoryBytes = options.memoryBytes;
    if (!Number.isSafeInteger(memoryBytes) || memoryBytes < 16 * PAGE || memoryBytes > MAX_ARENA_BYTES || memoryBytes % PAGE !== 0) {
      throw new RangeError(`x86: memory limit ${memoryBytes} must be a multiple of 4 KiB between 64 KiB and 4 GiB`);
    }
    const stackBytes = options.stackBytes ?? 8 * 1024 * 1024;
    if (!Number.isSafeInteger(stackBytes) || stackBytes < 64 * 1024 || stackBytes > 256 * 1024 * 1024 || stackBytes % PAGE !== 0) {
      throw new RangeError(`x86: stack size ${stackBytes} must be a multiple of 4 KiB between 64 KiB and 256 MiB`);
    }
    this.elf = parseStaticElf(program);
    this.#file = program;
    this.meterKind = options.meter ?? "block";
    const low = Math.min(...this.elf.segments.map((s) => s.vaddr));
    const lo = low - (low % PAGE);
    const hi = Math.max(...this.elf.segments.map((s) => s.vaddr + s.memsz));
    const imageSize = Math.ceil((hi - lo) / PAGE) * PAGE;
    if (imageSize > 1024 * 1024 * 1024) throw new ElfLoadError("the image spans more than 1 GiB");

    this.uc = Unicorn.open();
    const made: Region[] = [];
    try {
      this.image = new Region("image", lo, imageSize, true);
      made.push(this.image);
      this.arena = new Region("arena", ARENA_BASE, memoryBytes, false);
      made.push(this.arena);
      this.stack = new Region("stack", STACK_TOP - stackBytes, stackBytes, false);
      made.push(this.stack);
      this.request = new Region("request", REQUEST_BASE, REQUEST_BYTES, false);
      made.push(this.request);
      this.#host = new Region("host", HOST_BASE, 2 * PAGE, false);
      made.push(this.#host);
    } catch (e) {
      this.uc.close();
      for (const r of made) r.mem.free();
      throw e;
    }
    this.#regions = [this.image, this.arena, this.stack, this.request];
    this.brkBase = ARENA_BASE;
    this.brk = ARENA_BASE;
    this.mmapLow = ARENA_BASE + memoryBytes;
    try {
      this.#loadImage();
      this.#setRange(this.stack, 0, this.stack.pages, PROT_READ | PROT_WRITE);
      this.#setRange(this.request, 0, this.request.pages, PROT_READ | PROT_WRITE);
      this.uc.installHooks(
        {
          syscall: () => this.#onSyscall(),
          interrupt: (intno) => this.#onInterrupt(intno),
          io: (kind, port) => this.#fault(`${kind} instruction (port 0x${port.toString(16)}) at ${this.#ripText()}`),
          memory: (type, address) => this.#onMemory(type, address),
          invalidInstruction: () => this.#fault(`invalid instruction at ${this.#ripText()}`),
        },
        (e) => this.#setStop({ kind: "error", message: `host error in a hook: ${e instanceof Error ? e.message : String(e)}` }),
      );
      this.uc.installMeter(this.meterKind);
      const table = options.countInstructions === false ? undefined : tableOf(program);
      if (table !== undefined) {
        const length = table.counts.length - 1;
        this.#table = new HostMemory(Math.ceil(table.counts.byteLength / PAGE) * PAGE);
        new Uint32Array(this.#table.bytes.buffer, this.#table.bytes.byteOffset, table.counts.length).set(table.counts);
        this.uc.meter.setTable(this.#table, table.base + this.elf.bias, length);
      }
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  // ---- loading ------------------------------------------------------------------------------

  #segmentProt(flags: number): number {
    return ((flags & PF_R) !== 0 ? PROT_READ : 0) | ((flags & PF_W) !== 0 ? PROT_WRITE : 0) | ((flags & PF_X) !== 0 ? PROT_EXEC : 0);
  }

  #loadImage(): void {
    const img = this.image;
    const want = new Uint8Array(img.pages);
    for (const s of this.elf.segments) {
      const prot = this.#segmentProt(s.flags) | PROT_READ;
      const first = Math.floor((s.vaddr - img.base) / PAGE);
      const last = Math.ceil((s.vaddr + s.memsz - img.base) / PAGE);
      for (let p = first; p < last; p++) {
        const merged = want[p]! | prot;
        if ((merged & PROT_WRITE) !== 0 && (merged & PROT_EXEC) !== 0) {
          throw new ElfLoadError(`page 0x${(img.base + p * PAGE).toString(16)} would be writable and executable (segments share it)`);
        }
        want[p] = merged;
      }
    }
    for (let p = 0; p < img.pages; p++) this.#reloadImagePage(p);
    // Map runs of equal protection.
    let p = 0;
    while (p < img.pages) {
      let q = p + 1;
      while (q < img.pages && want[q] === want[p]) q++;
      if (want[p] !== 0) this.#setRange(img, p, q - p, want[p]!);
      p = q;
    }
    img.modified!.fill(0);
  }

  /** Rewrites one image page from the ELF file (zero where no segment's file bytes cover it). */
  #reloadImagePage(page: number): void {
    const img = this.image;
    const pageStart = img.base + page * PAGE;
    const off = page * PAGE;
    img.mem.bytes.fill(0, off, off + PAGE);
    for (const s of this.elf.segments) {
      const from = Math.max(pageStart, s.vaddr);
      const to = Math.min(pageStart + PAGE, s.vaddr + s.filesz);
      if (to > from) img.mem.bytes.set(this.#file.subarray(s.offset + (from - s.vaddr), s.offset + (to - s.vaddr)), from - img.base);
    }
  }

  // ---- page bookkeeping ---------------------------------------------------------------------

  /**
   * Sets the protection of pages [first, first+count) of a region (0 = unmapped, RESERVED =
   * PROT_NONE), mirroring it into Unicorn run by run, and marks changed pages touched.
   */
  #setRange(r: Region, first: number, count: number, prot: number): void {
    if ((prot & PROT_WRITE) !== 0 && (prot & PROT_EXEC) !== 0) throw new Error("x86: W^X violation requested");
    if (prot !== RESERVED && (prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC)) !== 0) throw new Error(`x86: invalid page protection ${prot}`);
    const ucNew = prot === RESERVED ? 0 : prot;
    let p = first;
    const end = first + count;
    while (p < end) {
      const old = r.prot[p]!;
      let q = p + 1;
      while (q < end && r.prot[q] === old) q++;
      if (old !== prot) {
        const ucOld = old === RESERVED ? 0 : old;
        if (ucOld !== ucNew) {
          const addr = r.base + p * PAGE;
          const len = (q - p) * PAGE;
          if (ucOld === 0) this.uc.mapPtr(addr, len, ucNew, r.mem, p * PAGE);
          else if (ucNew === 0) this.uc.unmap(addr, len);
          else this.uc.protect(addr, len, ucNew);
        }
        r.prot.fill(prot, p, q);
        r.touched.push(p, q);
        r.modified?.fill(1, p, q);
      }
      p = q;
    }
  }

  #regionOf(addr: number, len: number): Region | undefined {
    for (const r of this.#regions) if (r.contains(addr, len)) return r;
    return undefined;
  }

  /**
   * A view of guest memory [addr, addr+len) if every page is mapped with `need` (PROT_READ,
   * PROT_WRITE), else undefined. Writes through the view are guest-visible at once.
   */
  view(addr: number, len: number, need: number): Uint8Array | undefined {
    if (!Number.isSafeInteger(addr) || !Number.isSafeInteger(len) || len < 0 || addr < 0) return undefined;
    if (len === 0) return new Uint8Array(0);
    const r = this.#regionOf(addr, len);
    if (r === undefined) return undefined;
    const off = addr - r.base;
    const lastPage = Math.floor((off + len - 1) / PAGE);
    for (let p = Math.floor(off / PAGE); p <= lastPage; p++) if ((r.prot[p]! & need) !== need) return undefined;
    return r.mem.bytes.subarray(off, off + len);
  }

  /** A NUL-terminated string at addr (at most max bytes before the NUL), or undefined if unreadable/too long. */
  readCString(addr: number, max: number): Buffer | undefined {
    let len = 0;
    while (len <= max) {
      const chunkEnd = Math.min(max + 1, len + (PAGE - ((addr + len) % PAGE)));
      const v = this.view(addr + len, chunkEnd - len, PROT_READ);
      if (v === undefined) return undefined;
      const z = v.indexOf(0);
      if (z !== -1) return Buffer.from(this.view(addr, len + z, PROT_READ)!);
      len = chunkEnd;
    }
    return undefined;
  }

  // ---- memory system calls (return a guest address or -errno) -------------------------------

  get memoryLimit(): number {
    return this.arena.size;
  }

  /** Bytes of the arena currently mapped (heap + mmap). */
  arenaMappedBytes(): number {
    let n = 0;
    for (let p = 0; p < this.arena.pages; p++) if (this.arena.prot[p] !== 0) n++;
    return n * PAGE;
  }

  setBrk(want: number): number {
    const a = this.arena;
    if (want === 0 || !Number.isSafeInteger(want) || want < this.brkBase) return this.brk;
    const oldTop = Math.ceil((this.brk - a.base) / PAGE);
    const newTop = Math.ceil((want - a.base) / PAGE);
    if (newTop > a.pages) return this.brk;
    if (newTop > oldTop) {
      for (let p = oldTop; p < newTop; p++) if (a.prot[p] !== 0) return this.brk; // would run into an mmap region
      this.#setRange(a, oldTop, newTop - oldTop, PROT_READ | PROT_WRITE);
    } else if (newTop < oldTop) {
      this.#setRange(a, newTop, oldTop - newTop, 0);
      a.mem.zero(newTop * PAGE, (oldTop - newTop) * PAGE);
    }
    this.brk = want;
    return this.brk;
  }

  /** Anonymous mapping in the arena (addr is only a hint unless `fixed`). */
  mmap(addr: number, len: number, protAsked: number, fixed: boolean, noReplace: boolean): number {
    const a = this.arena;
    const prot = guestProt(protAsked);
    if (prot === undefined || len <= 0 || !Number.isSafeInteger(len)) return -22; // EINVAL
    if ((prot & PROT_EXEC) !== 0) return -1; // EPERM: W^X
    const size = Math.ceil(len / PAGE) * PAGE;
    if (size > a.size) return -12; // ENOMEM
    const n = size / PAGE;
    const heapTop = Math.ceil((this.brk - a.base) / PAGE);
    let first: number;
    if (fixed) {
      if (addr % PAGE !== 0 || !a.contains(addr, size)) return noReplace ? -17 : -22; // only inside the arena
      first = (addr - a.base) / PAGE;
      if (first < heapTop) return -12;
      if (noReplace && !this.#free(first, n)) return -17; // EEXIST
      this.#setRange(a, first, n, 0);
      a.mem.zero(first * PAGE, size);
    } else {
      const low = (this.mmapLow - a.base) / PAGE;
      if (low - n >= heapTop && this.#free(low - n, n)) first = low - n;
      else {
        // First fit from the top, for holes that munmap left.
        first = -1;
        let run = 0;
        for (let p = a.pages - 1; p >= heapTop; p--) {
          if (a.prot[p] === 0) {
            if (++run === n) {
              first = p;
              break;
            }
          } else run = 0;
        }
        if (first < 0) return -12;
      }
    }
    this.#setRange(a, first, n, prot === 0 ? RESERVED : prot | PROT_READ);
    const at = a.base + first * PAGE;
    if (at < this.mmapLow) this.mmapLow = at;
    return at;
  }

  #free(first: number, n: number): boolean {
    for (let p = first; p < first + n; p++) if (this.arena.prot[p] !== 0) return false;
    return true;
  }

  munmap(addr: number, len: number): number {
    const a = this.arena;
    if (addr % PAGE !== 0 || len <= 0 || !Number.isSafeInteger(len)) return -22;
    const size = Math.ceil(len / PAGE) * PAGE;
    if (!a.contains(addr, size)) return -22;
    const first = (addr - a.base) / PAGE;
    const heapTop = Math.ceil((this.brk - a.base) / PAGE);
    if (first < heapTop) return -22;
    this.#setRange(a, first, size / PAGE, 0);
    a.mem.zero(first * PAGE, size);
    return 0;
  }

  mprotect(addr: number, len: number, protAsked: number): number {
    const prot = guestProt(protAsked);
    if (prot === undefined) return -22; // EINVAL
    if ((prot & PROT_EXEC) !== 0) return -1; // EPERM: W^X, nothing becomes executable after load
    if (addr % PAGE !== 0 || len < 0) return -22;
    if (len === 0) return 0;
    const size = Math.ceil(len / PAGE) * PAGE;
    const r = this.#regionOf(addr, size);
    if (r === undefined) return -12;
    const first = (addr - r.base) / PAGE;
    const n = size / PAGE;
    for (let p = first; p < first + n; p++) if (r.prot[p] === 0) return -12; // ENOMEM: not mapped
    this.#setRange(r, first, n, prot === 0 ? RESERVED : prot | PROT_READ);
    return 0;
  }

  // ---- process entry ------------------------------------------------------------------------

  /**
   * Writes the Linux entry stack (argc, argv, envp, auxv, strings, AT_RANDOM bytes) at the top
   * of the stack region and returns the initial RSP (16-byte aligned).
   */
  buildStack(argv: readonly Uint8Array[], envp: readonly Uint8Array[], execfn: Uint8Array): number {
    const s = this.stack;
    const top = s.base + s.size;
    const strings: Uint8Array[] = [...argv, ...envp, execfn, Buffer.from("x86_64")];
    let strBytes = 16; // AT_RANDOM
    for (const x of strings) strBytes += x.length + 1;
    const auxPairs = 18; // 17 entries + AT_NULL
    const words = 1 + argv.length + 1 + envp.length + 1 + auxPairs * 2;
    const total = strBytes + words * 8 + 64;
    if (total > Math.min(s.size / 4, 2 * 1024 * 1024)) throw new RangeError(`x86: arguments and environment (${total} bytes) do not fit on the stack`);
    const bytes = s.mem.bytes;
    // Strings from the top down.
    let at = top - 16;
    const random = at;
    randomFillSync(bytes, random - s.base, 16);
    const addrs: number[] = [];
    for (const x of strings) {
      at -= x.length + 1;
      bytes.set(x, at - s.base);
      bytes[at - s.base + x.length] = 0;
      addrs.push(at);
    }
    let sp = at - words * 8;
    sp -= sp % 16;
    const rsp = sp;
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const put = (v: number) => {
      dv.setBigUint64(sp - s.base, BigInt(v), true);
      sp += 8;
    };
    put(argv.length);
    for (let i = 0; i < argv.length; i++) put(addrs[i]!);
    put(0);
    for (let i = 0; i < envp.length; i++) put(addrs[argv.length + i]!);
    put(0);
    const execfnAddr = addrs[argv.length + envp.length]!;
    const platformAddr = addrs[argv.length + envp.length + 1]!;
    const aux: Array<[number, number]> = [
      [3, this.elf.phdrAddr], // AT_PHDR
      [4, 56], // AT_PHENT
      [5, this.elf.phnum], // AT_PHNUM
      [6, PAGE], // AT_PAGESZ
      [7, 0], // AT_BASE (no interpreter)
      [8, 0], // AT_FLAGS
      [9, this.elf.entry], // AT_ENTRY
      [11, 1000], // AT_UID
      [12, 1000], // AT_EUID
      [13, 1000], // AT_GID
      [14, 1000], // AT_EGID
      [15, platformAddr], // AT_PLATFORM
      [16, 0], // AT_HWCAP (libcs read CPUID themselves)
      [17, 100], // AT_CLKTCK
      [23, 0], // AT_SECURE
      [25, random], // AT_RANDOM
      [31, execfnAddr], // AT_EXECFN
    ];
    for (const [k, v] of aux) {
      put(k);
      put(v);
    }
    put(0); // AT_NULL
    put(0);
    if (sp > at) throw new Error("x86: entry stack layout overflow");
    return rsp;
  }

  /**
   * Drops to CPL 3 at `rip` with stack `rsp`: GDT and iretq frame in the host-only read-only
   * page, `iretq` in the host-only code page, run until the CPU arrives at `rip`. Both pages are
   * unmapped afterwards (the guest never sees them).
   */
  enterUserMode(rip: number, rsp: number): void {
    if (this.#user) throw new Error("x86: already in user mode");
    const h = this.#host;
    const dv = new DataView(h.mem.bytes.buffer, h.mem.bytes.byteOffset, h.size);
    // GDT: 5 = user data (DPL 3, writable, accessed), 6 = 64-bit user code (DPL 3, readable, accessed).
    dv.setBigUint64(5 * 8, 0x00cff3000000ffffn, true);
    dv.setBigUint64(6 * 8, 0x00affb000000ffffn, true);
    // iretq frame: RIP, CS, RFLAGS (IF, reserved bit 1), RSP, SS.
    const frame = 0x100;
    dv.setBigUint64(frame, BigInt(rip), true);
    dv.setBigUint64(frame + 8, BigInt(USER_CS), true);
    dv.setBigUint64(frame + 16, 0x202n, true);
    dv.setBigUint64(frame + 24, BigInt(rsp), true);
    dv.setBigUint64(frame + 32, BigInt(USER_SS), true);
    h.mem.bytes.set([0x48, 0xcf], PAGE); // iretq
    this.#setRange(h, 0, 1, PROT_READ);
    this.#setRange(h, 1, 1, PROT_READ | PROT_EXEC);
    this.uc.writeTableRegister(X86_REG.GDTR, HOST_BASE, 8 * 8 - 1);
    this.uc.writeTableRegister(X86_REG.IDTR, 0, 0);
    this.uc.regWrite(X86_REG.CR4, BigInt(CR4_TSD | CR4_OSFXSR | CR4_OSXMMEXCPT));
    this.uc.regWrite(X86_REG.RSP, BigInt(HOST_BASE + frame));
    this.uc.meter.arm(1000n, rdtsc() + BigInt(Math.ceil(tscTicksPerMs() * 1000)));
    this.#stop = undefined;
    const err = this.uc.emuStart(HOST_BASE + PAGE, rip);
    const [cs, ss, at] = this.uc.regReadBatch([X86_REG.CS, X86_REG.SS, X86_REG.RIP]);
    if (err !== 0 || this.#stop !== undefined || Number(at) !== rip || Number(cs) !== USER_CS || Number(ss) !== USER_SS) {
      throw new Error(`x86: could not enter user mode (${ucErrName(err)}, cs=0x${cs!.toString(16)}, rip=0x${at!.toString(16)})`);
    }
    // Both host pages leave the guest's address space: the CPU keeps the loaded descriptors in
    // its segment caches, and nothing at CPL 3 reads the GDT again here (syscall and interrupts
    // are hooked before any descriptor load; a computed jump to a segment load, far transfer,
    // iretq or lar/lsl faults on the unmapped GDT, which ends the request like any fault).
    this.#setRange(h, 0, 2, 0);
    this.#user = true;
  }

  /** True while the CPU is at CPL 3 with our selectors (checked after restoring a context). */
  checkUserMode(): boolean {
    const [cs, ss] = this.uc.regReadBatch([X86_REG.CS, X86_REG.SS]);
    return Number(cs) === USER_CS && Number(ss) === USER_SS;
  }

  // ---- running ------------------------------------------------------------------------------

  /** Stops the current run with a reason (called by the syscall layer: exit, ready, limits). */
  stop(reason: StopReason): void {
    this.#setStop(reason);
  }

  get stopped(): boolean {
    return this.#stop !== undefined;
  }

  #setStop(reason: StopReason): void {
    if (this.#stop === undefined) this.#stop = reason;
    this.uc.emuStop();
  }

  #fault(message: string): void {
    this.#setStop({ kind: "fault", message });
  }

  #rip(): number {
    try {
      return Number(this.uc.regRead(X86_REG.RIP));
    } catch {
      return 0;
    }
  }

  #ripText(): string {
    return `rip 0x${this.#rip().toString(16)}`;
  }

  #onSyscall(): void {
    const args = this.uc.syscallArgs();
    const nr = Number(args[0]!);
    const h = this.syscallHandler;
    const ret = h === undefined ? -38n : h(nr, args);
    if (ret !== undefined) this.uc.regWrite(X86_REG.RAX, ret);
  }

  #onInterrupt(intno: number): void {
    const known = EXCEPTIONS[intno];
    const rip = this.#ripText();
    if (known !== undefined) this.#setStop({ kind: "signal", signal: known[1], message: `${known[0]} at ${rip}` });
    else this.#setStop({ kind: "signal", signal: 11, message: `interrupt 0x${intno.toString(16)} (int n is not a system call here) at ${rip}` });
  }

  #onMemory(type: number, address: bigint): void {
    const addr = Number(address);
    const what =
      type === UC_MEM.READ_UNMAPPED ? "read of unmapped memory"
      : type === UC_MEM.WRITE_UNMAPPED ? "write to unmapped memory"
      : type === UC_MEM.FETCH_UNMAPPED ? "jump to unmapped memory"
      : type === UC_MEM.WRITE_PROT ? "write to read-only memory"
      : type === UC_MEM.READ_PROT ? "read of protected memory"
      : type === UC_MEM.FETCH_PROT ? "execution of non-executable memory"
      : `memory fault (type ${type})`;
    const s = this.stack;
    const overflow = addr < s.base && addr >= s.base - 1024 * 1024 ? " (stack overflow)" : "";
    this.#setStop({ kind: "signal", signal: 11, message: `segmentation fault: ${what} at 0x${addr.toString(16)}${overflow}, ${this.#ripText()}` });
  }

  /** Runs from the current RIP until the guest stops (exit, ready trap, fault) or a limit. */
  run(limits: RunLimits): RunResult {
    if (this.#disposed) throw new Error("x86: machine disposed");
    if (!this.#user) throw new Error("x86: not in user mode");
    this.#stop = undefined;
    const rip = Number(this.uc.regRead(X86_REG.RIP));
    const ticks = BigInt(Math.ceil(tscTicksPerMs() * Math.max(1, limits.timeoutMs)));
    this.uc.meter.arm(limits.budget, rdtsc() + ticks);
    const t0 = performance.now();
    const err = this.uc.emuStart(rip, 0);
    const ms = performance.now() - t0;
    let stop = this.#stop as StopReason | undefined;
    const reason = this.uc.meter.reason;
    if (stop === undefined) {
      if (reason === METER_BUDGET) stop = { kind: "budget" };
      else if (reason === METER_DEADLINE) stop = { kind: "timeout" };
      else if (err !== 0) stop = { kind: "fault", message: `${ucErrName(err)} at ${this.#ripText()}` };
      else stop = { kind: "error", message: `emulation ended without a reason at ${this.#ripText()}` };
    }
    this.#stop = stop;
    return { stop, events: this.uc.meter.events, codeBytes: this.uc.meter.bytes, instructions: this.uc.meter.instructions, ms };
  }

  // ---- snapshots ----------------------------------------------------------------------------

  /** Records CPU and memory as they are now. */
  capture(): MachineSnapshot {
    const context = this.uc.contextAlloc();
    context.save();
    const regions = this.#regions.map((r) => {
      const keep: number[] = [];
      let p = 0;
      while (p < r.pages) {
        const prot = r.prot[p]!;
        // Image pages never written or remapped since load are restored from the file.
        if (prot === 0 || prot === RESERVED || (r.modified !== undefined && r.modified[p] === 0 && (prot & PROT_WRITE) === 0)) {
          p++;
          continue;
        }
        const off = p * PAGE;
        // Skip all-zero chunks of mapped pages at memcmp speed, then look page by page.
        if (p % 16 === 0 && p + 16 <= r.pages && r.prot.subarray(p, p + 16).every((v) => v === prot) && r.buf.compare(ZERO_CHUNK, 0, ZERO_CHUNK.length, off, off + ZERO_CHUNK.length) === 0) {
          if (r.modified !== undefined) for (let q = p; q < p + 16; q++) keep.push(q); // zero but not (necessarily) so in the file
          p += 16;
          continue;
        }
        if (r.modified !== undefined || r.buf.compare(ZERO_PAGE, 0, PAGE, off, off + PAGE) !== 0) keep.push(p);
        p++;
      }
      const pages = Int32Array.from(keep);
      const data = Buffer.allocUnsafe(pages.length * PAGE);
      pages.forEach((q, i) => r.buf.copy(data, i * PAGE, q * PAGE, q * PAGE + PAGE));
      return indexSnapshotRegion(r.prot.slice(), pages, data);
    });
    const snap: MachineSnapshot = { context, regions, brk: this.brk, mmapLow: this.mmapLow };
    for (const r of this.#regions) r.touched = [];
    return snap;
  }

  /**
   * Returns CPU and memory to a snapshot, in place: mappings that changed, then the stored pages
   * (compared, copied where they differ), the snapshot's zero writable runs (dropped: the kernel
   * hands back zero pages), pages whose mapping changed since, then the CPU context.
   */
  restore(snap: MachineSnapshot): void {
    this.#regions.forEach((r, i) => {
      const s = snap.regions[i]!;
      // 1. mappings
      if (Buffer.compare(r.prot, s.prot) !== 0) {
        let p = 0;
        while (p < r.pages) {
          if (r.prot[p] === s.prot[p]) {
            p++;
            continue;
          }
          let q = p + 1;
          while (q < r.pages && r.prot[q] !== s.prot[q] && s.prot[q] === s.prot[p]) q++;
          this.#setRange(r, p, q - p, s.prot[p]!);
          p = q;
        }
      }
      // 2. stored pages: compare runs of consecutive pages at once, copy the pages that differ
      const pages = s.pages;
      let k = 0;
      while (k < pages.length) {
        let n = 1;
        while (k + n < pages.length && n < 16 && pages[k + n] === pages[k]! + n) n++;
        const off = pages[k]! * PAGE;
        if (r.buf.compare(s.data, k * PAGE, (k + n) * PAGE, off, off + n * PAGE) !== 0) {
          for (let j = k; j < k + n; j++) {
            const o = pages[j]! * PAGE;
            if (r.buf.compare(s.data, j * PAGE, (j + 1) * PAGE, o, o + PAGE) !== 0) s.data.copy(r.buf, o, j * PAGE, (j + 1) * PAGE);
          }
        }
        k += n;
      }
      // 3. writable pages that were zero
      const z = s.zeroRuns;
      for (let j = 0; j < z.length; j += 2) r.mem.zero(z[j]! * PAGE, (z[j + 1]! - z[j]!) * PAGE);
      // 4. pages remapped or re-protected since the snapshot
      const t = r.touched;
      for (let j = 0; j < t.length; j += 2) {
        for (let x = t[j]!; x < t[j + 1]!; x++) {
          if (s.slot[x]! >= 0) continue; // restored in 2.
          if (r.modified !== undefined) {
            if (s.prot[x] !== 0 && s.prot[x] !== RESERVED) {
              this.#reloadImagePage(x);
              r.modified[x] = 0;
            } else r.buf.fill(0, x * PAGE, (x + 1) * PAGE);
          } else if ((s.prot[x]! & PROT_WRITE) === 0) r.mem.zero(x * PAGE, PAGE);
        }
      }
      r.touched = [];
    });
    this.brk = snap.brk;
    this.mmapLow = snap.mmapLow;
    snap.context.restore();
    this.#stop = undefined;
  }

  /** The snapshot as bytes (memory pages) + JSON metadata, for another machine of the same program and options. */
  exportSnapshot(snap: MachineSnapshot): ExportedMachine {
    const memory = Buffer.concat(snap.regions.map((r) => r.data));
    return {
      memory,
      meta: {
        layout: this.layoutId(),
        cpu: snap.context.state().toString("base64"),
        brk: snap.brk,
        mmapLow: snap.mmapLow,
        regions: snap.regions.map((r) => ({ prot: Buffer.from(r.prot).toString("base64"), pages: Buffer.from(r.pages.buffer, r.pages.byteOffset, r.pages.byteLength).toString("base64") })),
      },
    };
  }

  /** Builds a snapshot from exported bytes; everything is checked against this machine's layout. */
  importSnapshot(memory: Uint8Array, meta: unknown): MachineSnapshot {
    const m = meta as Partial<ExportedMachine["meta"]> | null;
    if (m === null || typeof m !== "object") throw new Error("x86 snapshot: no metadata");
    if (m.layout !== this.layoutId()) throw new Error("x86 snapshot: made for another program or memory layout");
    if (!Array.isArray(m.regions) || m.regions.length !== this.#regions.length) throw new Error("x86 snapshot: bad region list");
    const a = this.arena;
    if (!Number.isSafeInteger(m.brk) || m.brk! < this.brkBase || m.brk! > a.base + a.size) throw new Error("x86 snapshot: bad brk");
    if (!Number.isSafeInteger(m.mmapLow) || m.mmapLow! < a.base || m.mmapLow! > a.base + a.size) throw new Error("x86 snapshot: bad mmap mark");
    let offset = 0;
    const regions = this.#regions.map((r, i) => {
      const e = m.regions![i] as { prot?: unknown; pages?: unknown };
      if (typeof e?.prot !== "string" || typeof e.pages !== "string") throw new Error("x86 snapshot: bad region");
      const prot = new Uint8Array(Buffer.from(e.prot, "base64"));
      if (prot.length !== r.pages) throw new Error(`x86 snapshot: region ${r.name} has ${prot.length} pages, expected ${r.pages}`);
      for (let p = 0; p < prot.length; p++) {
        const v = prot[p]!;
        const ok = v === 0 || v === RESERVED || ((v & ~7) === 0 && (v & PROT_READ) !== 0 && !((v & PROT_WRITE) !== 0 && (v & PROT_EXEC) !== 0));
        // Nothing becomes executable after load: an executable page must be one the loader made.
        const execOk = (v & PROT_EXEC) === 0 || (r.prot[p]! & PROT_EXEC) !== 0;
        if (!ok || !execOk) {
          throw new Error(`x86 snapshot: region ${r.name} page ${p} has an invalid protection`);
        }
      }
      const raw = Buffer.from(e.pages, "base64");
      if (raw.length % 4 !== 0) throw new Error("x86 snapshot: bad page list");
      const pages = new Int32Array(raw.length / 4);
      for (let k = 0; k < pages.length; k++) pages[k] = raw.readInt32LE(k * 4);
      let last = -1;
      for (const p of pages) {
        if (!(p > last && p < r.pages) || prot[p] === 0 || prot[p] === RESERVED || (prot[p]! & PROT_EXEC) !== 0) throw new Error("x86 snapshot: bad page index");
        last = p;
      }
      const len = pages.length * PAGE;
      if (offset + len > memory.length) throw new Error("x86 snapshot: memory shorter than its page lists");
      const data = Buffer.from(memory.subarray(offset, offset + len));
      offset += len;
      return indexSnapshotRegion(prot, pages, data);
    });
    if (offset !== memory.length) throw new Error("x86 snapshot: memory longer than its page lists");
    const context = this.uc.contextAlloc();
    context.save();
    if (typeof m.cpu !== "string") throw new Error("x86 snapshot: no CPU state");
    context.loadState(Buffer.from(m.cpu, "base64"));
    return { context, regions, brk: m.brk!, mmapLow: m.mmapLow! };
  }

  /** Identifies what a snapshot's addresses mean: program bytes hash is added by the engine. */
  layoutId(): string {
    return ["v1", this.meterKind, ...this.#regions.map((r) => `${r.name}@${r.base.toString(16)}+${r.size.toString(16)}`)].join(",");
  }

  freeSnapshot(snap: MachineSnapshot): void {
    snap.context.free();
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.uc.close();
    for (const r of [...this.#regions, this.#host]) r.mem.free();
    this.#table?.free();
  }
}
