/**
 * Unicorn 2.0.1 (Debian's libunicorn2) through koffi, plus the few libc calls the x86 engine
 * needs for guest memory (mmap/madvise/munmap). Only what the engine uses is bound; constants
 * were taken from the 2.0.1 headers (libunicorn-dev 2.0.1.post1) by compiling a program that
 * prints them, not from memory.
 *
 * Facts and pitfalls of this library version that shape the API:
 *  - Guest memory is host memory we own (anonymous mmap, page-aligned, lazily committed) mapped
 *    with uc_mem_map_ptr. The engine writes it directly through an ArrayBuffer view; Unicorn's TLB
 *    keeps host addresses, so the mapping must outlive the engine (free() only after close()).
 *  - uc_emu_start's `timeout` starts and joins a polling thread on every call: ~270 µs per start
 *    measured here, too much per request. Its `count` runs a C callback after every instruction
 *    (~3.5–5.6x slower on a tight loop). Both are avoided: a 112-byte native callback (METER_CODE,
 *    source in the comment there) counts blocks or instructions, stops at a budget, and checks a
 *    TSC deadline every 1024 events. It is plain machine code in a host page mapped R+X after
 *    being written (never writable and executable at once); no guest byte ever reaches it.
 *  - A timed-out run returns UC_ERR_OK (check queryTimedOut()); `hlt` at CPL 0 ends emulation
 *    silently (the engine runs guests at CPL 3, where hlt faults); after uc_emu_stop from a hook
 *    the current block finishes, so hooks that stop must record why before they return.
 *  - uc_ctl_flush_tlb in the 2.0.1 header is really UC_CTL_TB_FLUSH (flushTranslationCache()).
 *  - Hooks are koffi "registered" callbacks (at most 8192 per process): close() unregisters them.
 *    A JS exception inside a hook cannot cross the native frames: every hook body catches.
 */
import koffi, { type TypeObject } from "koffi";
import { defaultUnicornLibrary, UNICORN_20_PATH } from "./library-path.js";

/** Debian bookworm's libunicorn2 (2.0.1). */
export const LIBUNICORN_PATH = UNICORN_20_PATH;

let libraryPath = defaultUnicornLibrary();

/**
 * Chooses the libunicorn to load (before the first engine is created): e.g. Debian trixie's
 * libunicorn2t64 2.1.1, which runs guest stores ~50x faster than 2.0.1 (see the bench notes).
 * Default: $ZEROCELL_LIBUNICORN, else 2.1.1 where scripts/install-unicorn.sh put it, else 2.0.1.
 */
export function setUnicornLibrary(path: string): void {
  if (native !== undefined && path !== libraryPath) throw new Error("unicorn: the library is already loaded");
  libraryPath = path;
}

export function unicornLibrary(): string {
  return libraryPath;
}

/** The loaded library's version, "2.0.1". */
export function unicornVersion(): string {
  const v = load().version;
  return `${v >>> 24}.${(v >> 16) & 0xff}.${(v >> 8) & 0xff}`;
}

export const UC_ARCH_X86 = 4;
export const UC_MODE_64 = 8;

export const PROT_NONE = 0;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const PROT_EXEC = 4;

export const UC_HOOK_INTR = 1 << 0;
export const UC_HOOK_INSN = 1 << 1;
export const UC_HOOK_CODE = 1 << 2;
export const UC_HOOK_BLOCK = 1 << 3;
export const UC_HOOK_MEM_READ_UNMAPPED = 1 << 4;
export const UC_HOOK_MEM_WRITE_UNMAPPED = 1 << 5;
export const UC_HOOK_MEM_FETCH_UNMAPPED = 1 << 6;
export const UC_HOOK_MEM_READ_PROT = 1 << 7;
export const UC_HOOK_MEM_WRITE_PROT = 1 << 8;
export const UC_HOOK_MEM_FETCH_PROT = 1 << 9;
export const UC_HOOK_MEM_INVALID = (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 9);
export const UC_HOOK_INSN_INVALID = 1 << 14;

/** uc_mem_type values passed to memory hooks. */
export const UC_MEM = {
  READ: 16,
  WRITE: 17,
  FETCH: 18,
  READ_UNMAPPED: 19,
  WRITE_UNMAPPED: 20,
  FETCH_UNMAPPED: 21,
  WRITE_PROT: 22,
  READ_PROT: 23,
  FETCH_PROT: 24,
} as const;

export const UC_QUERY_TIMEOUT = 4;
/** UC_CTL_WRITE(UC_CTL_TB_FLUSH, 0) */
const UC_CTL_TB_FLUSH_W = 0x4000000a;

export const X86_REG = {
  CS: 11,
  DS: 17,
  EFLAGS: 25,
  ES: 28,
  FS: 32,
  GS: 33,
  RAX: 35,
  RBP: 36,
  RBX: 37,
  RCX: 38,
  RDI: 39,
  RDX: 40,
  RIP: 41,
  RSI: 43,
  RSP: 44,
  SS: 49,
  CR0: 50,
  CR4: 54,
  R8: 106,
  R9: 107,
  R10: 108,
  R11: 109,
  R12: 110,
  R13: 111,
  R14: 112,
  R15: 113,
  IDTR: 242,
  GDTR: 243,
  LDTR: 244,
  TR: 245,
  MXCSR: 249,
  FS_BASE: 250,
  GS_BASE: 251,
  RFLAGS: 253,
} as const;

export const X86_INS = { IN: 218, OUT: 500, SYSCALL: 699, SYSENTER: 700 } as const;

export const UC_ERR_NAMES = [
  "UC_ERR_OK", "UC_ERR_NOMEM", "UC_ERR_ARCH", "UC_ERR_HANDLE", "UC_ERR_MODE", "UC_ERR_VERSION",
  "UC_ERR_READ_UNMAPPED", "UC_ERR_WRITE_UNMAPPED", "UC_ERR_FETCH_UNMAPPED", "UC_ERR_HOOK",
  "UC_ERR_INSN_INVALID", "UC_ERR_MAP", "UC_ERR_WRITE_PROT", "UC_ERR_READ_PROT", "UC_ERR_FETCH_PROT",
  "UC_ERR_ARG", "UC_ERR_READ_UNALIGNED", "UC_ERR_WRITE_UNALIGNED", "UC_ERR_FETCH_UNALIGNED",
  "UC_ERR_HOOK_EXIST", "UC_ERR_RESOURCE", "UC_ERR_EXCEPTION",
] as const;

export function ucErrName(code: number): string {
  return UC_ERR_NAMES[code] ?? `UC_ERR_${code}`;
}

export class UnicornError extends Error {
  readonly ucErr: number;
  constructor(op: string, code: number) {
    super(`unicorn: ${op} failed: ${ucErrName(code)}`);
    this.name = "UnicornError";
    this.ucErr = code;
  }
}

// ---------------------------------------------------------------------------------------------
// Native bindings (loaded once per process, on first use)

type Fn = (...args: unknown[]) => unknown;

interface Native {
  uc_open: Fn;
  uc_close: Fn;
  uc_version: Fn;
  uc_mem_map_ptr: Fn;
  uc_mem_unmap: Fn;
  uc_mem_protect: Fn;
  uc_reg_read: Fn;
  uc_reg_write: Fn;
  uc_reg_read_batch: Fn;
  uc_reg_write_batch: Fn;
  uc_emu_start: Fn;
  uc_emu_stop: Fn;
  uc_hook_add: Fn;
  uc_hook_del: Fn;
  uc_query: Fn;
  uc_ctl: Fn;
  uc_context_alloc: Fn;
  uc_context_save: Fn;
  uc_context_restore: Fn;
  uc_context_size: Fn;
  uc_context_free: Fn;
  mmap: Fn;
  munmap: Fn;
  madvise: Fn;
  mprotect: Fn;
  dlopen: Fn;
  dlsym: Fn;
  SyscallCb: TypeObject;
  IntrCb: TypeObject;
  InCb: TypeObject;
  OutCb: TypeObject;
  MemCb: TypeObject;
  InsnInvalidCb: TypeObject;
  version: number;
  /** Address of uc_emu_stop, for the native meter's tail call. */
  emuStopAddr: bigint;
  meterCode: bigint;
  rdtsc: Fn;
}

let native: Native | undefined;

function load(): Native {
  if (native !== undefined) return native;
  const uc = koffi.load(libraryPath);
  const libc = koffi.load("libc.so.6");
  koffi.opaque("uc_engine");
  koffi.opaque("uc_context");
  const n: Partial<Native> = {
    uc_open: uc.func("int uc_open(int arch, int mode, _Out_ uc_engine **uc)"),
    uc_close: uc.func("int uc_close(uc_engine *uc)"),
    uc_version: uc.func("unsigned int uc_version(void *major, void *minor)"),
    uc_mem_map_ptr: uc.func("int uc_mem_map_ptr(uc_engine *uc, uint64_t address, size_t size, uint32_t perms, void *ptr)"),
    uc_mem_unmap: uc.func("int uc_mem_unmap(uc_engine *uc, uint64_t address, size_t size)"),
    uc_mem_protect: uc.func("int uc_mem_protect(uc_engine *uc, uint64_t address, size_t size, uint32_t perms)"),
    uc_reg_read: uc.func("int uc_reg_read(uc_engine *uc, int regid, void *value)"),
    uc_reg_write: uc.func("int uc_reg_write(uc_engine *uc, int regid, void *value)"),
    uc_reg_read_batch: uc.func("int uc_reg_read_batch(uc_engine *uc, void *regs, void *vals, int count)"),
    uc_reg_write_batch: uc.func("int uc_reg_write_batch(uc_engine *uc, void *regs, void *vals, int count)"),
    uc_emu_start: uc.func("int uc_emu_start(uc_engine *uc, uint64_t begin, uint64_t until, uint64_t timeout, size_t count)"),
    uc_emu_stop: uc.func("int uc_emu_stop(uc_engine *uc)"),
    uc_hook_add: uc.func("int uc_hook_add(uc_engine *uc, _Out_ size_t *hh, int type, void *callback, void *user_data, uint64_t begin, uint64_t end, ...)"),
    uc_hook_del: uc.func("int uc_hook_del(uc_engine *uc, size_t hh)"),
    uc_query: uc.func("int uc_query(uc_engine *uc, int type, _Out_ size_t *result)"),
    uc_ctl: uc.func("int uc_ctl(uc_engine *uc, uint32_t control, ...)"),
    uc_context_alloc: uc.func("int uc_context_alloc(uc_engine *uc, _Out_ uc_context **context)"),
    uc_context_save: uc.func("int uc_context_save(uc_engine *uc, uc_context *context)"),
    uc_context_restore: uc.func("int uc_context_restore(uc_engine *uc, uc_context *context)"),
    uc_context_size: uc.func("size_t uc_context_size(uc_engine *uc)"),
    uc_context_free: uc.func("int uc_context_free(uc_context *context)"),
    mmap: libc.func("void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)"),
    munmap: libc.func("int munmap(void *addr, size_t length)"),
    madvise: libc.func("int madvise(void *addr, size_t length, int advice)"),
    mprotect: libc.func("int mprotect(void *addr, size_t length, int prot)"),
    dlopen: libc.func("void *dlopen(const char *file, int flags)"),
    dlsym: libc.func("void *dlsym(void *handle, const char *name)"),
    SyscallCb: koffi.proto("void ZcSyscallCb(uc_engine *uc, void *user)"),
    IntrCb: koffi.proto("void ZcIntrCb(uc_engine *uc, uint32_t intno, void *user)"),
    InCb: koffi.proto("uint32_t ZcInCb(uc_engine *uc, uint32_t port, int size, void *user)"),
    OutCb: koffi.proto("void ZcOutCb(uc_engine *uc, uint32_t port, int size, uint32_t value, void *user)"),
    MemCb: koffi.proto("bool ZcMemCb(uc_engine *uc, int type, uint64_t address, int size, int64_t value, void *user)"),
    InsnInvalidCb: koffi.proto("bool ZcInsnInvalidCb(uc_engine *uc, void *user)"),
  };
  // (major << 24) | (minor << 16) | (patch << 8) | extra: 0x020001ff for 2.0.1.
  const version = (n.uc_version as Fn)(null, null) as number;
  if (version >>> 24 !== 2) throw new Error(`unicorn: ${libraryPath} is version ${version >>> 24}.${(version >> 16) & 0xff}.${(version >> 8) & 0xff}, the x86 engine needs 2.x`);
  const RTLD_NOW = 2;
  const RTLD_NOLOAD = 4;
  const handle = (n.dlopen as Fn)(libraryPath, RTLD_NOW | RTLD_NOLOAD);
  if (handle === null) throw new Error("unicorn: dlopen(libunicorn.so.2) failed");
  const stop = (n.dlsym as Fn)(handle, "uc_emu_stop");
  if (stop === null) throw new Error("unicorn: uc_emu_stop not found");
  n.emuStopAddr = koffi.address(stop);
  n.version = version;
  // The meter code and an rdtsc helper, in a page written once and then made R+X.
  const page = mapHostPages(n as Native, PAGE);
  new Uint8Array(koffi.view(page, PAGE)).set(METER_CODE, 0);
  if (((n.mprotect as Fn)(page, PAGE, PROT_READ | PROT_EXEC) as number) !== 0) throw new Error("unicorn: mprotect of the meter page failed");
  n.meterCode = koffi.address(page);
  n.rdtsc = koffi.decode(n.meterCode + BigInt(RDTSC_OFFSET), koffi.proto("uint64_t ZcRdtsc(void)")) as Fn;
  native = n as Native;
  return native;
}

export const PAGE = 4096;

const MAP_PRIVATE = 0x02;
const MAP_ANONYMOUS = 0x20;
const MAP_NORESERVE = 0x4000;
const MADV_DONTNEED = 4;

function mapHostPages(n: Native, size: number): bigint {
  const p = n.mmap(null, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0) as bigint | null;
  if (p === null || p === 0n || p === 0xffffffffffffffffn) throw new Error(`unicorn: mmap of ${size} bytes failed`);
  return koffi.address(p);
}

/**
 * The native meter, installed as a UC_HOOK_BLOCK (or UC_HOOK_CODE) callback with a pointer to
 * MeterState as its user data (assembled with GNU as from this source, bytes from objdump):
 *
 *   // void meter(uc_engine *uc, uint64_t addr, uint32_t size, struct meter *m)
 *   inc  qword [rcx]            ; m->events++
 *   mov  edx, edx
 *   add  [rcx+24], rdx          ; m->bytes += size
 *   mov  rax, rsi
 *   sub  rax, [rcx+48]          ; off = addr - m->textBase
 *   cmp  rax, [rcx+56]
 *   jae  1f                     ; off >= m->textLen (unsigned): not in the table
 *   lea  r8, [rax+rdx]
 *   cmp  r8, [rcx+56]
 *   ja   1f                     ; off + size > m->textLen
 *   mov  r9, [rcx+64]           ; m->table (uint32 instruction-start prefix counts)
 *   mov  r10d, [r9+r8*4]
 *   sub  r10d, [r9+rax*4]
 *   add  [rcx+72], r10          ; m->instructions += table[off+size] - table[off]
 * 1:
 *   mov  rax, [rcx]
 *   cmp  rax, [rcx+8]
 *   jae  budget                 ; m->events >= m->limit
 *   test eax, 0x3ff
 *   jnz  done                   ; every 1024 events:
 *   rdtsc
 *   shl  rdx, 32
 *   or   rax, rdx
 *   cmp  rax, [rcx+32]
 *   jae  deadline               ;   tsc >= m->deadline
 * done: ret
 * budget:   mov qword [rcx+40], 1 ; jmp [rcx+16]   ; m->reason = 1; tail-call uc_emu_stop(uc)
 * deadline: mov qword [rcx+40], 2 ; jmp [rcx+16]   ; m->reason = 2; tail-call uc_emu_stop(uc)
 * rdtsc_fn: rdtsc ; shl rdx, 32 ; or rax, rdx ; ret
 *
 * With textLen 0 (no table) the instruction count stays 0.
 */
const METER_CODE = Uint8Array.from([
  0x48, 0xff, 0x01, 0x89, 0xd2, 0x48, 0x01, 0x51, 0x18, 0x48, 0x89, 0xf0,
  0x48, 0x2b, 0x41, 0x30, 0x48, 0x3b, 0x41, 0x38, 0x73, 0x1a, 0x4c, 0x8d,
  0x04, 0x10, 0x4c, 0x3b, 0x41, 0x38, 0x77, 0x10, 0x4c, 0x8b, 0x49, 0x40,
  0x47, 0x8b, 0x14, 0x81, 0x45, 0x2b, 0x14, 0x81, 0x4c, 0x01, 0x51, 0x48,
  0x48, 0x8b, 0x01, 0x48, 0x3b, 0x41, 0x08, 0x73, 0x17, 0xa9, 0xff, 0x03,
  0x00, 0x00, 0x75, 0x0f, 0x0f, 0x31, 0x48, 0xc1, 0xe2, 0x20, 0x48, 0x09,
  0xd0, 0x48, 0x3b, 0x41, 0x20, 0x73, 0x0c, 0xc3, 0x48, 0xc7, 0x41, 0x28,
  0x01, 0x00, 0x00, 0x00, 0xff, 0x61, 0x10, 0x48, 0xc7, 0x41, 0x28, 0x02,
  0x00, 0x00, 0x00, 0xff, 0x61, 0x10, 0x0f, 0x31, 0x48, 0xc1, 0xe2, 0x20,
  0x48, 0x09, 0xd0, 0xc3,
]);
const RDTSC_OFFSET = 0x66;

// ---------------------------------------------------------------------------------------------
// Host memory

/**
 * Page-aligned anonymous host memory (MAP_NORESERVE: untouched pages cost nothing), with a
 * Uint8Array over it. zero() gives pages back to the kernel (MADV_DONTNEED: the next read sees
 * zeros), which is how a reset clears memory a request touched without reading it.
 */
export class HostMemory {
  readonly address: bigint;
  readonly size: number;
  readonly bytes: Uint8Array;
  #freed = false;

  constructor(size: number) {
    if (!Number.isSafeInteger(size) || size <= 0 || size % PAGE !== 0) throw new RangeError(`HostMemory: size ${size} is not a positive multiple of ${PAGE}`);
    const n = load();
    this.address = mapHostPages(n, size);
    this.size = size;
    this.bytes = new Uint8Array(koffi.view(this.address, size));
  }

  /** Zeroes [offset, offset+length) (page-aligned) by dropping the pages. */
  zero(offset: number, length: number): void {
    if (length <= 0) return;
    if (offset % PAGE !== 0 || length % PAGE !== 0 || offset < 0 || offset + length > this.size) {
      throw new RangeError(`HostMemory.zero: bad range ${offset}+${length}`);
    }
    const r = load().madvise(this.address + BigInt(offset), length, MADV_DONTNEED) as number;
    if (r !== 0) this.bytes.fill(0, offset, offset + length);
  }

  pointer(offset = 0): unknown {
    return this.address + BigInt(offset);
  }

  /** Only after the Unicorn engine that maps it is closed. */
  free(): void {
    if (this.#freed) return;
    this.#freed = true;
    load().munmap(this.address, this.size);
  }
}

// ---------------------------------------------------------------------------------------------
// TSC clock for the meter's deadline

let tscPerMs: number | undefined;

/** Host TSC ticks per millisecond (calibrated once against performance.now(), ~5 ms). */
export function tscTicksPerMs(): number {
  if (tscPerMs !== undefined) return tscPerMs;
  const t0 = performance.now();
  const c0 = rdtsc();
  let t1 = t0;
  while (t1 - t0 < 5) t1 = performance.now();
  const c1 = rdtsc();
  tscPerMs = Number(c1 - c0) / (t1 - t0);
  if (!(tscPerMs > 1000)) throw new Error("unicorn: the host TSC does not advance; cannot enforce deadlines");
  return tscPerMs;
}

export function rdtsc(): bigint {
  // koffi returns a number when the value is a safe integer, a BigInt otherwise.
  return BigInt(load().rdtsc() as number | bigint);
}

// ---------------------------------------------------------------------------------------------
// The engine

export type MeterKind = "block" | "instruction";

/** Why the meter stopped the guest. */
export const METER_BUDGET = 1;
export const METER_DEADLINE = 2;

export interface Hooks {
  /** `syscall` executed; RIP already points after it when the hook returns. */
  syscall(): void;
  /** A CPU exception or `int n` (intno); execution would continue after the instruction: stop. */
  interrupt(intno: number): void;
  /** in/out instruction. */
  io(kind: "in" | "out", port: number): void;
  /** Access to unmapped or protected memory; return false to stop (always, here). */
  memory(type: number, address: bigint, size: number): void;
  /** An instruction Unicorn cannot emulate. */
  invalidInstruction(): void;
}

/** The meter's state, shared with the native callback (see METER_CODE): 10 u64 fields. */
export class Meter {
  static readonly BYTES = 80;
  readonly #view: BigUint64Array;
  readonly pointer: bigint;
  constructor(mem: HostMemory, offset: number) {
    this.#view = new BigUint64Array(mem.bytes.buffer, mem.bytes.byteOffset + offset, 10);
    this.pointer = mem.address + BigInt(offset);
    this.#view[2] = load().emuStopAddr;
  }
  get events(): bigint {
    return this.#view[0]!;
  }
  get bytes(): bigint {
    return this.#view[3]!;
  }
  get reason(): number {
    return Number(this.#view[5]!);
  }
  /** Instructions executed in code the table covers (0 without a table). */
  get instructions(): bigint {
    return this.#view[9]!;
  }
  /**
   * The instruction-start table the meter counts instructions with: `table` holds `length + 1`
   * uint32 prefix counts for guest addresses [base, base + length]. The memory must outlive the meter.
   */
  setTable(table: HostMemory, base: number, length: number): void {
    if (table.size < (length + 1) * 4) throw new RangeError("Meter.setTable: table smaller than its length");
    this.#view[6] = BigInt(base);
    this.#view[7] = BigInt(length);
    this.#view[8] = table.address;
  }
  /** Starts a metered run: counters at zero, stop after `limit` events or at TSC `deadline`. */
  arm(limit: bigint, deadline: bigint): void {
    this.#view[0] = 0n;
    this.#view[1] = limit;
    this.#view[3] = 0n;
    this.#view[4] = deadline;
    this.#view[5] = 0n;
    this.#view[9] = 0n;
  }
}

const SYSCALL_REGS = [X86_REG.RAX, X86_REG.RDI, X86_REG.RSI, X86_REG.RDX, X86_REG.R10, X86_REG.R8, X86_REG.R9];

export class Unicorn {
  readonly handle: bigint;
  /** Scratch native page: [0,256) register values, [256,512) value pointers, [512,768) ids, [1024,1104) meter. */
  readonly #scratch: HostMemory;
  readonly #u64: BigUint64Array;
  readonly #syscallArgs: BigUint64Array;
  readonly #callbacks: unknown[] = [];
  readonly #hooks: bigint[] = [];
  readonly meter: Meter;
  #closed = false;

  private constructor(handle: bigint) {
    this.handle = handle;
    this.#scratch = new HostMemory(PAGE);
    const b = this.#scratch.bytes;
    this.#u64 = new BigUint64Array(b.buffer, b.byteOffset, PAGE / 8);
    // value slots 0..31 at [0,256); pointer array at [256,512); register ids at [512,640)
    for (let i = 0; i < 32; i++) this.#u64[32 + i] = this.#scratch.address + BigInt(i * 8);
    const ids = new Int32Array(b.buffer, b.byteOffset + 512, 32);
    SYSCALL_REGS.forEach((r, i) => (ids[i] = r));
    this.#syscallArgs = new BigUint64Array(b.buffer, b.byteOffset, SYSCALL_REGS.length);
    this.meter = new Meter(this.#scratch, 1024);
  }

  static open(): Unicorn {
    const n = load();
    const out: unknown[] = [null];
    const err = n.uc_open(UC_ARCH_X86, UC_MODE_64, out) as number;
    if (err !== 0) throw new UnicornError("uc_open", err);
    return new Unicorn(koffi.address(out[0]));
  }

  #check(op: string, err: unknown): void {
    if (err !== 0) throw new UnicornError(op, err as number);
  }

  get closed(): boolean {
    return this.#closed;
  }

  mapPtr(address: number, size: number, perms: number, mem: HostMemory, offset: number): void {
    if (offset < 0 || offset + size > mem.size) throw new RangeError("mapPtr: outside the host block");
    this.#check(`uc_mem_map_ptr(0x${address.toString(16)}, ${size})`, load().uc_mem_map_ptr(this.handle, BigInt(address), size, perms, mem.pointer(offset)));
  }

  unmap(address: number, size: number): void {
    this.#check(`uc_mem_unmap(0x${address.toString(16)}, ${size})`, load().uc_mem_unmap(this.handle, BigInt(address), size));
  }

  protect(address: number, size: number, perms: number): void {
    this.#check(`uc_mem_protect(0x${address.toString(16)}, ${size})`, load().uc_mem_protect(this.handle, BigInt(address), size, perms));
  }

  /** Registers narrower than 64 bits (segment selectors, eflags) fill only part of the slot: zero it first. */
  regRead(id: number): bigint {
    this.#u64[0] = 0n;
    this.#check("uc_reg_read", load().uc_reg_read(this.handle, id, this.#scratch.pointer(0)));
    return this.#u64[0]!;
  }

  regWrite(id: number, value: bigint): void {
    this.#u64[0] = BigInt.asUintN(64, value);
    this.#check("uc_reg_write", load().uc_reg_write(this.handle, id, this.#scratch.pointer(0)));
  }

  /** Reads several 64-bit registers in one native call. */
  regReadBatch(ids: readonly number[]): bigint[] {
    if (ids.length > 32) throw new RangeError("regReadBatch: at most 32 registers");
    const idView = new Int32Array(this.#scratch.bytes.buffer, this.#scratch.bytes.byteOffset + 640, 32);
    ids.forEach((r, i) => (idView[i] = r));
    this.#u64.fill(0n, 0, ids.length);
    this.#check("uc_reg_read_batch", load().uc_reg_read_batch(this.handle, this.#scratch.pointer(640), this.#scratch.pointer(256), ids.length));
    return Array.from(this.#u64.subarray(0, ids.length));
  }

  regWriteBatch(ids: readonly number[], values: readonly bigint[]): void {
    if (ids.length > 32 || values.length !== ids.length) throw new RangeError("regWriteBatch: bad arguments");
    const idView = new Int32Array(this.#scratch.bytes.buffer, this.#scratch.bytes.byteOffset + 640, 32);
    ids.forEach((r, i) => {
      idView[i] = r;
      this.#u64[i] = BigInt.asUintN(64, values[i]!);
    });
    this.#check("uc_reg_write_batch", load().uc_reg_write_batch(this.handle, this.#scratch.pointer(640), this.#scratch.pointer(256), ids.length));
  }

  /** rax, rdi, rsi, rdx, r10, r8, r9 in one call; the returned view is overwritten by the next call. */
  syscallArgs(): BigUint64Array {
    load().uc_reg_read_batch(this.handle, this.#scratch.pointer(512), this.#scratch.pointer(256), SYSCALL_REGS.length);
    return this.#syscallArgs;
  }

  /** Writes a segment-table register (GDTR/IDTR): uc_x86_mmr { u16 selector; u64 base; u32 limit; u32 flags }. */
  writeTableRegister(id: number, base: number, limit: number): void {
    const b = Buffer.alloc(24);
    b.writeBigUInt64LE(BigInt(base), 8);
    b.writeUInt32LE(limit, 16);
    this.#check("uc_reg_write(mmr)", load().uc_reg_write(this.handle, id, b));
  }

  emuStart(begin: number, until = 0): number {
    return load().uc_emu_start(this.handle, BigInt(begin), BigInt(until), 0n, 0) as number;
  }

  emuStop(): void {
    load().uc_emu_stop(this.handle);
  }

  queryTimedOut(): boolean {
    const out = [0];
    load().uc_query(this.handle, UC_QUERY_TIMEOUT, out);
    return out[0] !== 0;
  }

  flushTranslationCache(): void {
    this.#check("uc_ctl(TB_FLUSH)", load().uc_ctl(this.handle, UC_CTL_TB_FLUSH_W));
  }

  #register(fn: unknown, proto: TypeObject): unknown {
    const cb = koffi.register(fn as (...a: unknown[]) => unknown, koffi.pointer(proto));
    this.#callbacks.push(cb);
    return cb;
  }

  #hookAdd(type: number, cb: unknown, user: unknown, ...variadic: unknown[]): void {
    const out = [0];
    this.#check(`uc_hook_add(${type})`, load().uc_hook_add(this.handle, out, type, cb, user, 1n, 0n, ...variadic));
    this.#hooks.push(BigInt(out[0] as number | bigint));
  }

  /** Installs every hook the engine needs; the handlers must not throw (they are wrapped anyway). */
  installHooks(h: Hooks, onHookError: (e: unknown) => void): void {
    const n = load();
    const guard = <A extends unknown[], R>(fn: (...a: A) => R, fallback: R) => (...a: A): R => {
      try {
        return fn(...a);
      } catch (e) {
        onHookError(e);
        this.emuStop();
        return fallback;
      }
    };
    this.#hookAdd(UC_HOOK_INSN, this.#register(guard(() => h.syscall(), undefined), n.SyscallCb), null, "int", X86_INS.SYSCALL);
    this.#hookAdd(UC_HOOK_INTR, this.#register(guard((_uc: unknown, intno: number) => h.interrupt(intno), undefined), n.IntrCb), null);
    this.#hookAdd(UC_HOOK_INSN, this.#register(guard((_uc: unknown, port: number) => (h.io("in", port), 0), 0), n.InCb), null, "int", X86_INS.IN);
    this.#hookAdd(UC_HOOK_INSN, this.#register(guard((_uc: unknown, port: number) => h.io("out", port), undefined), n.OutCb), null, "int", X86_INS.OUT);
    this.#hookAdd(
      UC_HOOK_MEM_INVALID,
      this.#register(guard((_uc: unknown, type: number, address: bigint) => (h.memory(type, BigInt(address), 0), false), false), n.MemCb),
      null,
    );
    this.#hookAdd(UC_HOOK_INSN_INVALID, this.#register(guard(() => (h.invalidInstruction(), false), false), n.InsnInvalidCb), null);
  }

  /** The native meter: counts blocks (UC_HOOK_BLOCK) or instructions (UC_HOOK_CODE). */
  installMeter(kind: MeterKind): void {
    const n = load();
    this.#hookAdd(kind === "block" ? UC_HOOK_BLOCK : UC_HOOK_CODE, n.meterCode, this.meter.pointer);
  }

  contextAlloc(): UcContext {
    const n = load();
    const out: unknown[] = [null];
    this.#check("uc_context_alloc", n.uc_context_alloc(this.handle, out));
    return new UcContext(this, koffi.address(out[0]), Number(n.uc_context_size(this.handle) as number | bigint));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const n = load();
    for (const h of this.#hooks) n.uc_hook_del(this.handle, h);
    n.uc_close(this.handle);
    for (const cb of this.#callbacks) koffi.unregister(cb as bigint);
    this.#callbacks.length = 0;
    this.#scratch.free();
  }
}

/**
 * A saved CPU context (uc_context_save/restore). A uc_context is a small header and the
 * CPUX86State prefix (context_size bytes): 2.0.1 { size_t context_size; uc_mode; uc_arch; data[] }
 * (16 bytes), 2.1.1 24 bytes; some builds append the host's jmp_buf after the CPU state. state()/loadState() move only the CPU state part, never the header or the
 * jmp_buf (host addresses), and only between engines of the same library build.
 */
export class UcContext {
  readonly #uc: Unicorn;
  readonly pointer: bigint;
  readonly size: number;
  readonly stateSize: number;
  readonly #header: number;
  readonly #view: Uint8Array;
  #freed = false;

  constructor(uc: Unicorn, pointer: bigint, size: number) {
    this.#uc = uc;
    this.pointer = pointer;
    this.size = size;
    this.#view = new Uint8Array(koffi.view(pointer, size));
    const dv = new DataView(this.#view.buffer, this.#view.byteOffset, 16);
    const contextSize = Number(dv.getBigUint64(0, true));
    // The header is what precedes the CPU state: 16 bytes in 2.0.1, 24 in 2.1.1; builds that
    // append the host jmp_buf record its size in the second word.
    let header = size - contextSize;
    if (!(header >= 16 && header <= 64)) {
      header = size - contextSize - Number(dv.getBigUint64(8, true));
      if (!(header >= 16 && header <= 128)) header = -1;
    }
    if (header < 0 || contextSize <= 0) throw new Error(`unicorn: unexpected uc_context layout (size ${size}, context ${contextSize})`);
    this.stateSize = contextSize;
    this.#header = header;
  }

  save(): void {
    const err = load().uc_context_save(this.#uc.handle, this.pointer) as number;
    if (err !== 0) throw new UnicornError("uc_context_save", err);
  }

  restore(): void {
    const err = load().uc_context_restore(this.#uc.handle, this.pointer) as number;
    if (err !== 0) throw new UnicornError("uc_context_restore", err);
  }

  /** A copy of the saved CPU state. */
  state(): Buffer {
    return Buffer.from(this.#view.subarray(this.#header, this.#header + this.stateSize));
  }

  /** Replaces the saved CPU state (then restore() applies it). */
  loadState(bytes: Uint8Array): void {
    if (bytes.length !== this.stateSize) throw new Error(`unicorn: CPU state of ${bytes.length} bytes, this build uses ${this.stateSize}`);
    this.#view.set(bytes, this.#header);
  }

  free(): void {
    if (this.#freed || this.#uc.closed) return;
    this.#freed = true;
    load().uc_context_free(this.pointer);
  }
}
