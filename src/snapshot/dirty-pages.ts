/**
 * Which pages of a WebAssembly linear memory were written since its snapshot, told by the kernel
 * (ADR 002), so a reset costs O(pages the request wrote) instead of a compare of the whole image.
 *
 * How: the memory's pages [0, trackedBytes) are replaced in place by a MAP_PRIVATE mapping of a
 * sealed memfd that holds the snapshot's bytes (koffi: the address is the ArrayBuffer passed to a
 * `void *` parameter). A page nobody wrote stays a page-cache page of that file; the first write
 * by anyone — guest code, Emscripten's JS glue, the kernel filling a read() buffer — makes it a
 * private anonymous copy. /proc/self/pagemap tells the two apart (8 bytes a page: ~10k entries for
 * a PHP image, one pread). Pages that were never touched have no page-table entry at all, which
 * keeps the kernel's walk short: the mapping is not pre-faulted (measured: a fully populated
 * range costs 2–5× more to read). PAGEMAP_SCAN (Linux ≥ 6.7) gives the same answer as ranges,
 * no faster here; uffd write-protect was slower (ADR 002). The caller compares those pages with
 * the image and copies back what differs; pages stay private afterwards (no fault on the next
 * request), and when too many are private they are dropped with MADV_DONTNEED (they refault
 * from the memfd, i.e. from the snapshot).
 *
 * Runs only in a sandbox host (koffi is loaded on first use, never at import). Anything missing
 * (no koffi or --allow-addons, no memfd, no pagemap, a self-check that fails) gives `undefined`
 * and the caller keeps comparing the whole image (ZEROCELL_RESET=compare forces that).
 * Must never: be reachable from guest code or the Python realm (only host JS holds this module),
 * report a written page as clean (every doubt counts as written), or write to the memfd after it
 * is mapped (it is sealed: the snapshot's bytes for every later MADV_DONTNEED).
 */
import { createRequire } from "node:module";

export const PAGE_BYTES = 4096;

/** Limits of the dirty-page reset. */
export interface DirtyPageLimits {
  /**
   * Private (once written) pages above which a reset drops them all with MADV_DONTNEED instead of
   * comparing them, pages. Kept private, a page costs a 4 KiB compare per reset; dropped, it
   * costs a copy-on-write fault when written again (~20–50 µs each in this VM, where a new page
   * also faults in the hypervisor). Pages a request writes tend to be written by the next one, so
   * the default only bounds memory (each private page is a second copy of a snapshot page).
   */
  trimAbovePages: number;
}

export const DEFAULT_DIRTY_PAGE_LIMITS: DirtyPageLimits = { trimAbovePages: 16384 };

/** Which reset the environment asks for: ZEROCELL_RESET=compare forces the full compare. */
export function resetModeFromEnv(env: NodeJS.ProcessEnv = process.env): "auto" | "compare" {
  return env.ZEROCELL_RESET === "compare" ? "compare" : "auto";
}

// ---- the few libc calls, through koffi ------------------------------------------------------

type Fn = (...args: unknown[]) => unknown;
interface Libc {
  koffi: typeof import("koffi");
  /** Address of an ArrayBuffer / typed array (memmove(p, p, 0) returns p). */
  addressOf: (buf: ArrayBuffer | ArrayBufferView) => number;
  memfdCreate: Fn;
  close: Fn;
  fcntl: Fn;
  mmap: Fn;
  /** mmap returning a pointer (for koffi.view) and its undoing. */
  mmapPointer: Fn;
  munmap: Fn;
  madvise: Fn;
  pread: Fn;
  pwrite: Fn;
  ftruncate: Fn;
  lseek: Fn;
  open: Fn;
  /** /proc/self/pagemap, opened once per process (never closed). */
  pagemapFd: number;
}

const O_RDONLY = 0;
const SEEK_END = 2;
const O_CLOEXEC = 0x80000;
const MFD_CLOEXEC = 1;
const MFD_ALLOW_SEALING = 2;
const F_ADD_SEALS = 1033;
const F_SEAL_SEAL = 1;
const F_SEAL_SHRINK = 2;
const F_SEAL_GROW = 4;
const F_SEAL_WRITE = 8;
const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 0x01;
const MAP_PRIVATE = 0x02;
const MAP_FIXED = 0x10;
const MADV_DONTNEED = 4;
const MADV_NOHUGEPAGE = 15;
/** The unit create() looks for zeros in (LinearMemorySnapshot's block). */
const ZERO_RUN_BYTES = 64 * 1024;
const ZERO_RUN = Buffer.alloc(ZERO_RUN_BYTES);

let libc: Libc | null | undefined;
let libcError = "";

function loadLibc(): Libc | null {
  if (libc !== undefined) return libc;
  try {
    // Loaded here, on first use, never at import: the gateway imports the snapshot module, and a
    // sandbox host without --allow-addons must still run (with the compare reset).
    const koffi = createRequire(import.meta.url)("koffi") as typeof import("koffi");
    const c = koffi.load("libc.so.6");
    const memmove = c.func("uintptr_t memmove(void *dst, void *src, size_t n)") as Fn;
    const open = c.func("int open(const char *path, int flags)") as Fn;
    const pagemapFd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC) as number;
    if (pagemapFd < 0) throw new Error(`open /proc/self/pagemap: errno ${koffi.errno()}`);
    libc = {
      koffi,
      addressOf: (buf) => Number(memmove(buf, buf, 0)),
      memfdCreate: c.func("int memfd_create(const char *name, unsigned int flags)") as Fn,
      close: c.func("int close(int fd)") as Fn,
      fcntl: c.func("int fcntl(int fd, int cmd, int arg)") as Fn,
      mmap: c.func("uintptr_t mmap(uintptr_t addr, size_t length, int prot, int flags, int fd, int64_t offset)") as Fn,
      mmapPointer: c.func("void *mmap(uintptr_t addr, size_t length, int prot, int flags, int fd, int64_t offset)") as Fn,
      munmap: c.func("int munmap(void *addr, size_t length)") as Fn,
      madvise: c.func("int madvise(uintptr_t addr, size_t length, int advice)") as Fn,
      pread: c.func("intptr_t pread(int fd, void *buf, size_t n, int64_t offset)") as Fn,
      pwrite: c.func("intptr_t pwrite(int fd, void *buf, size_t n, int64_t offset)") as Fn,
      ftruncate: c.func("int ftruncate(int fd, int64_t length)") as Fn,
      lseek: c.func("int64_t lseek(int fd, int64_t offset, int whence)") as Fn,
      open,
      pagemapFd,
    };
  } catch (e) {
    libcError = (e as Error).message;
    libc = null;
  }
  return libc;
}

/**
 * Reads the image file at `path` ([0, bytes) of a snapshot's memory) into a new buffer, through
 * libc (the file is outside what Node's permission model lets the host read). For engines that
 * load a snapshot through their own loader (Pyodide) rather than mapping it.
 */
export function readSnapshotFile(path: string, bytes: number): Buffer {
  const out = Buffer.allocUnsafe(bytes);
  readSnapshotFileInto(path, bytes, out);
  return out;
}

/** Reads the first `bytes` of a snapshot file into `dst` (at least that long) with pread. */
export function readSnapshotFileInto(path: string, bytes: number, dst: Uint8Array): void {
  if (!Number.isSafeInteger(bytes) || bytes < 0 || dst.byteLength < bytes) throw new Error("snapshot file: bad length");
  const c = loadLibc();
  if (c === null) throw new Error(`snapshot file: libc unavailable (${libcError})`);
  const fd = c.open(path, O_RDONLY | O_CLOEXEC) as number;
  if (fd < 0) throw new Error(`snapshot file: open: errno ${c.koffi.errno()}`);
  try {
    for (let at = 0; at < bytes; ) {
      const len = Math.min(bytes - at, 64 << 20);
      // The kernel writes at most `len` bytes into the view of that length.
      const n = Number(c.pread(fd, dst.subarray(at, at + len), len, at));
      if (n <= 0) throw new Error(`snapshot file: read at ${at}: errno ${c.koffi.errno()}`);
      at += n;
    }
  } finally {
    c.close(fd);
  }
}

/**
 * Loads koffi and libc now (a spare host, before it is taken: ~50–100 ms a restore would pay).
 * Returns whether they are usable.
 */
export function preloadLibc(): boolean {
  return loadLibc() !== null;
}

/** Why the last tracker could not be made (for logs and tests); "" when it could. */
export function lastTrackerError(): string {
  return libcError;
}

// ---- the tracker ----------------------------------------------------------------------------

/**
 * memfds that instances of this process share (`create(…, shareKey)`): an instance whose image is
 * the same as one already made, but for a few pages, maps that memfd and keeps only those pages
 * of its own. Kept while a tracker maps it; the fd stays open for the next instance.
 */
interface SharedMemfd {
  readonly key: string;
  readonly fd: number;
  readonly trackedBytes: number;
  readonly zeroBlocks: Uint8Array;
  users: number;
}
const sharedMemfds = new Map<string, SharedMemfd>();
/**
 * Most pages an image may differ from a shared memfd by, pages (1 MiB): its own pages are private
 * from the start, so every reset compares them; past this the image gets a memfd of its own.
 * (Two Python instances booted from one snapshot file differ by ~8 pages.)
 */
const SHARE_MAX_OWN_PAGES = 256;

/**
 * Written pages of one memory's [0, trackedBytes), page-aligned byte ranges relative to the
 * memory's start.
 */
export class DirtyPageTracker {
  readonly #c: Libc;
  readonly #memory: WebAssembly.Memory;
  readonly #base: number;
  readonly #limits: DirtyPageLimits;
  /** Bytes of memory backed by the memfd (whole pages from 0). */
  readonly trackedBytes: number;
  /** Pagemap entries of the tracked range (the read fallback), reused. */
  readonly #entries: Uint32Array;

  /**
   * The snapshot's bytes [0, trackedBytes) as a read-only MAP_SHARED mapping of the memfd: the
   * same page-cache pages the memory's clean pages are, so the image costs no second copy.
   * Writing to it faults (PROT_READ; the memfd is sealed against writes anyway). Undefined once
   * closed; only this module and LinearMemorySnapshot hold it.
   */
  #image: { pointer: unknown; buffer: ArrayBuffer } | undefined;

  /** The process-wide memfd this tracker maps (create with a share key), released at close(). */
  #shared: SharedMemfd | undefined;
  /**
   * Pages of this instance's image that differ from the shared memfd it maps (written over the
   * mapping: private from the start), as page-aligned [lo, hi) ranges; empty when the memfd is its own.
   */
  readonly ownRanges: ReadonlyArray<readonly [number, number]>;

  private constructor(c: Libc, memory: WebAssembly.Memory, base: number, trackedBytes: number, limits: DirtyPageLimits, image: { pointer: unknown; buffer: ArrayBuffer } | undefined, zeroBlocks?: Uint8Array, shared?: { memfd: SharedMemfd; ownRanges: Array<[number, number]> }) {
    this.#shared = shared?.memfd;
    this.ownRanges = shared?.ownRanges ?? [];
    this.#image = image;
    this.#zeroBlocks = zeroBlocks;
    this.#c = c;
    this.#memory = memory;
    this.#base = base;
    this.trackedBytes = trackedBytes;
    this.#limits = limits;
    this.#entries = new Uint32Array((trackedBytes / PAGE_BYTES) * 2);
  }

  /**
   * Maps the image file at `path` (the memory's bytes [0, bytes) of a snapshot; src/snapshot/files.ts)
   * over the memory in place, MAP_PRIVATE: the memory then reads the snapshot without a byte
   * copied, its clean pages are the file's page-cache pages (shared by every host mapping it) and
   * a page becomes private when written. The part past the last whole page is read into the
   * memory (< 4 KiB). The memory must be at least `bytes` long. Undefined when anything is
   * missing; `error` then says whether the memory may be half-written (the caller must not use it).
   * Must never: map a file the gateway did not hand this host (the path comes from the gateway's
   * init message; the host's directory holds only its deployment's images).
   */
  static mapFile(memory: WebAssembly.Memory, path: string, bytes: number, limits: DirtyPageLimits = DEFAULT_DIRTY_PAGE_LIMITS): DirtyPageTracker | undefined {
    const buffer = memory.buffer;
    if (bytes > buffer.byteLength) return fail(`image of ${bytes} bytes does not fit a memory of ${buffer.byteLength} bytes`);
    const trackedBytes = Math.floor(bytes / PAGE_BYTES) * PAGE_BYTES;
    const c = loadLibc();
    if (c === null) return undefined;
    const base = c.addressOf(buffer);
    if (base === 0 || base % PAGE_BYTES !== 0) return fail(`memory at ${base} is not page-aligned`);
    const fd = c.open(path, O_RDONLY | O_CLOEXEC) as number;
    if (fd < 0) return fail(`open snapshot file: errno ${c.koffi.errno()}`);
    let image: { pointer: unknown; buffer: ArrayBuffer } | undefined;
    try {
      // A mapping past the file's end would SIGBUS the host at the first read there.
      const size = Number(c.lseek(fd, 0, SEEK_END));
      if (size < bytes) return fail(`snapshot file holds ${size} bytes, the image ${bytes}`);
      // 1. The tail past the whole pages, read into the memory (the kernel writes at most its length).
      const tail = bytes - trackedBytes;
      if (tail > 0 && Number(c.pread(fd, new Uint8Array(buffer, trackedBytes, tail), tail, trackedBytes)) !== tail) return fail(`read snapshot file tail: errno ${c.koffi.errno()}`);
      if (trackedBytes === 0) return undefined;
      // 2–3. The whole pages over the memory, and the read-only view.
      const mapped = mapImage(c, base, trackedBytes, fd);
      if (typeof mapped === "string") return fail(mapped);
      image = mapped.image;
    } finally {
      c.close(fd);
    }
    c.madvise(base, trackedBytes, MADV_NOHUGEPAGE);
    const tracker = new DirtyPageTracker(c, memory, base, trackedBytes, limits, image);
    const before = tracker.writtenRanges();
    if (before === undefined || before.length !== 0) return tracker.#failed(`self-check: ${before === undefined ? "pagemap unreadable" : `${before.length} ranges written right after mapping`}`);
    libcError = "";
    return tracker;
  }

  /**
   * Maps a memfd holding `image` (the memory's current bytes [0, image.length), page-aligned
   * length) over the memory in place. Undefined (and the memory as it was or unchanged in
   * content) when anything is missing.
   */
  static create(memory: WebAssembly.Memory, imageBytes: number, limits: DirtyPageLimits = DEFAULT_DIRTY_PAGE_LIMITS, shareKey?: string): DirtyPageTracker | undefined {
    const trackedBytes = Math.floor(Math.min(imageBytes, memory.buffer.byteLength) / PAGE_BYTES) * PAGE_BYTES;
    if (trackedBytes === 0) return undefined;
    const c = loadLibc();
    if (c === null) return undefined;
    const buffer = memory.buffer;
    const base = c.addressOf(buffer);
    if (base === 0 || base % PAGE_BYTES !== 0) return fail(`memory at ${base} is not page-aligned`);
    if (shareKey !== undefined) {
      const existing = sharedMemfds.get(shareKey);
      if (existing !== undefined && existing.trackedBytes === trackedBytes) {
        const t = DirtyPageTracker.#mapShared(c, memory, base, existing, limits);
        if (t !== undefined) return t;
      }
    }
    // 1. A sealed memfd with the memory's bytes as they are now.
    const fd = c.memfdCreate("zerocell-snapshot", MFD_CLOEXEC | MFD_ALLOW_SEALING) as number;
    if (fd < 0) return fail(`memfd_create: errno ${c.koffi.errno()}`);
    let image: { pointer: unknown; buffer: ArrayBuffer } | undefined;
    let memfd: SharedMemfd | undefined;
    // Blocks of zeros are not written: they stay holes of the memfd (no page of memory until
    // something reads them), ~40% of a PHP or Python image, and the copy's page faults with them.
    const zeroBlocks = new Uint8Array(Math.ceil(trackedBytes / ZERO_RUN_BYTES));
    try {
      const live = new Uint8Array(buffer, 0, trackedBytes);
      if ((c.ftruncate(fd, trackedBytes) as number) !== 0) return fail(`ftruncate memfd: errno ${c.koffi.errno()}`);
      const isZero = (i: number) => {
        const lo = i * ZERO_RUN_BYTES;
        const n = Math.min(trackedBytes, lo + ZERO_RUN_BYTES) - lo;
        return Buffer.from(buffer, lo, n).equals(ZERO_RUN.subarray(0, n));
      };
      for (let i = 0; i < zeroBlocks.length; ) {
        if (isZero(i)) {
          zeroBlocks[i++] = 1;
          continue;
        }
        // One pwrite per run of blocks that are not zero (at most 64 MiB each).
        let j = i + 1;
        let zeroAtJ = false;
        while (j < zeroBlocks.length && j - i < 1024 && !(zeroAtJ = isZero(j))) j++;
        const lo = i * ZERO_RUN_BYTES;
        const hi = Math.min(trackedBytes, j * ZERO_RUN_BYTES);
        for (let at = lo; at < hi; ) {
          const n = Number(c.pwrite(fd, live.subarray(at, hi), hi - at, at));
          if (n <= 0) return fail(`write to memfd: errno ${c.koffi.errno()}`);
          at += n;
        }
        if (zeroAtJ) zeroBlocks[j++] = 1;
        i = j;
      }
      if ((c.fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) as number) !== 0) return fail(`seal memfd: errno ${c.koffi.errno()}`);
      // 2–3. Over the memory, in place (same bytes), and the read-only view.
      const mapped = mapImage(c, base, trackedBytes, fd);
      if (typeof mapped === "string") return fail(mapped);
      image = mapped.image;
    } finally {
      // The mapping keeps the file alive; a shared one keeps its fd for the next instance.
      if (image === undefined || shareKey === undefined || sharedMemfds.has(shareKey)) c.close(fd);
      else sharedMemfds.set(shareKey, (memfd = { key: shareKey, fd, trackedBytes, zeroBlocks, users: 0 }));
    }
    // Transparent huge pages would make a 2 MiB "page" of one written byte. Not pre-faulted:
    // pages nobody reads stay without a page-table entry, which the pagemap read skips quickly.
    c.madvise(base, trackedBytes, MADV_NOHUGEPAGE);
    if (memfd !== undefined) memfd.users++;
    const tracker = new DirtyPageTracker(c, memory, base, trackedBytes, limits, image, zeroBlocks, memfd === undefined ? undefined : { memfd, ownRanges: [] });
    // 3. Self-check: nothing is written yet; rewriting one byte with its own value is seen.
    const before = tracker.writtenRanges();
    if (before === undefined || before.length !== 0) return tracker.#failed(`self-check: ${before === undefined ? "pagemap unreadable" : `${before.length} ranges written right after mapping`}`);
    const probe = new Uint8Array(buffer, 0, 1);
    probe[0] = probe[0]!;
    const after = tracker.writtenRanges();
    if (after === undefined || after.length !== 1 || after[0]![0] !== 0 || after[0]![1] !== PAGE_BYTES) return tracker.#failed("self-check: a written page was not reported");
    libcError = "";
    return tracker;
  }

  /**
   * create() for an image that another instance of this process already put in a shared memfd
   * (same share key): the pages where the memory differs from that memfd are copied aside, the
   * memfd is mapped over the memory (MAP_PRIVATE) and those pages are written back — so the
   * memory's bytes are exactly what they were, the common pages are the memfd's (one copy for all
   * the instances), and only the differing pages are this instance's (its `ownRanges`). Undefined
   * (the memory untouched) when more than SHARE_MAX_OWN_PAGES pages differ or a step fails
   * before the mapping.
   */
  static #mapShared(c: Libc, memory: WebAssembly.Memory, base: number, memfd: SharedMemfd, limits: DirtyPageLimits): DirtyPageTracker | undefined {
    const { trackedBytes, fd } = memfd;
    const image = mapReadOnlyView(c, trackedBytes, fd);
    if (image === undefined) return undefined;
    const view = Buffer.from(image.buffer);
    const live = Buffer.from(memory.buffer, 0, trackedBytes);
    // 1. Which pages differ. A zero block of the memfd is a hole: compared with zeros, not read
    // through the view (that would give the hole a page).
    const own: Array<[number, number]> = [];
    const limit = SHARE_MAX_OWN_PAGES;
    let pages = 0;
    for (let lo = 0; lo < trackedBytes && pages <= limit; lo += PAGE_BYTES) {
      const zero = memfd.zeroBlocks[Math.floor(lo / ZERO_RUN_BYTES)] === 1;
      const a = live.subarray(lo, lo + PAGE_BYTES);
      if (a.equals(zero ? ZERO_RUN.subarray(0, PAGE_BYTES) : view.subarray(lo, lo + PAGE_BYTES))) continue;
      pages++;
      const last = own[own.length - 1];
      if (last !== undefined && last[1] === lo) last[1] = lo + PAGE_BYTES;
      else own.push([lo, lo + PAGE_BYTES]);
    }
    if (pages > limit) {
      c.munmap(image.pointer, trackedBytes);
      return undefined;
    }
    // 2. Those pages aside, the memfd over the memory, the pages back.
    const aside = Buffer.allocUnsafe(pages * PAGE_BYTES);
    let at = 0;
    for (const [lo, hi] of own) at += live.copy(aside, at, lo, hi);
    const failed = mapPrivateOver(c, base, trackedBytes, fd);
    if (failed !== undefined) {
      c.munmap(image.pointer, trackedBytes);
      // MAP_FIXED fails before it replaces the range for every error but running out of memory
      // (as create()'s own mapping).
      return fail(`shared memfd: ${failed}`);
    }
    at = 0;
    for (const [lo, hi] of own) at += aside.copy(live, lo, at, at + (hi - lo));
    c.madvise(base, trackedBytes, MADV_NOHUGEPAGE);
    memfd.users++;
    const tracker = new DirtyPageTracker(c, memory, base, trackedBytes, limits, image, memfd.zeroBlocks, { memfd, ownRanges: own });
    // 3. Self-check: the pages written are exactly this instance's own.
    const written = tracker.writtenRanges();
    const same = written !== undefined && written.length === own.length && written.every(([lo, hi], i) => lo === own[i]![0] && hi === own[i]![1]);
    if (!same) return tracker.#failed(`self-check: ${written === undefined ? "pagemap unreadable" : `${written.length} written ranges after mapping a shared memfd, ${own.length} expected`}`);
    libcError = "";
    return tracker;
  }

  #failed(why: string): undefined {
    this.close();
    return fail(why);
  }

  /** Whether [lo, hi) holds a page of this instance's own (not the shared memfd's). */
  ownsPageIn(lo: number, hi: number): boolean {
    for (const [a, b] of this.ownRanges) if (a < hi && lo < b) return true;
    return false;
  }

  /** create(): which ZERO_RUN_BYTES blocks of the image were zeros (holes of the memfd). */
  readonly #zeroBlocks: Uint8Array | undefined;

  /**
   * Whether bytes [lo, hi) of the image are known to be zeros: holes of the memfd, which its
   * owner reads as its own zero block rather than through the mapping (a read there would give
   * the hole a page). False when unknown (an image mapped from a file) or only partly zeros.
   */
  isZeroRange(lo: number, hi: number): boolean {
    const z = this.#zeroBlocks;
    if (z === undefined || hi <= lo || this.ownsPageIn(lo, hi)) return false;
    for (let i = Math.floor(lo / ZERO_RUN_BYTES); i * ZERO_RUN_BYTES < hi; i++) if (z[i] !== 1) return false;
    return true;
  }

  /**
   * The snapshot's bytes [0, trackedBytes), read-only, shared with the memfd's page cache
   * (undefined where the second mapping failed, or once closed). Valid until close().
   */
  get image(): ArrayBuffer | undefined {
    return this.#image?.buffer;
  }

  /**
   * Unmaps the image view. Only when nothing can read it any more (its snapshot was collected):
   * a view read after this faults.
   */
  close(): void {
    const image = this.#image;
    this.#image = undefined;
    if (image !== undefined) this.#c.munmap(image.pointer, this.trackedBytes);
    const shared = this.#shared;
    this.#shared = undefined;
    if (shared !== undefined && --shared.users === 0 && sharedMemfds.get(shared.key) === shared) {
      // The last instance that maps it is gone: the next one of this image makes its own again.
      sharedMemfds.delete(shared.key);
      this.#c.close(shared.fd);
    }
  }

  /** The memory still lives at the address that was mapped (a moved buffer is not tracked). */
  isInPlace(): boolean {
    return this.#c.addressOf(this.#memory.buffer) === this.#base;
  }

  /**
   * Page-aligned [lo, hi) byte ranges of [0, trackedBytes) that were written (or may have been),
   * in order; undefined when the kernel would not say. Reads the 8-byte pagemap entries: bit 63
   * present, 62 swapped, 61 file page (or shared anon). Written = present and not file, or
   * swapped (only private pages are swapped; a migrating page also reads as swapped: counted).
   */
  writtenRanges(): Array<[number, number]> | undefined {
    const c = this.#c;
    const e = this.#entries;
    // The kernel fills at most e.byteLength bytes of e; a short read is refused below.
    const n = Number(c.pread(c.pagemapFd, e, e.byteLength, (this.#base / PAGE_BYTES) * 8));
    if (n !== e.byteLength) return undefined;
    const out: Array<[number, number]> = [];
    for (let i = 1; i < e.length; i += 2) {
      const hi = e[i]!;
      if ((hi & 0x80000000) === 0 ? (hi & 0x40000000) === 0 : (hi & 0x20000000) !== 0) continue;
      const lo = (i >> 1) * PAGE_BYTES;
      const last = out[out.length - 1];
      if (last !== undefined && last[1] === lo) last[1] = lo + PAGE_BYTES;
      else out.push([lo, lo + PAGE_BYTES]);
    }
    return out;
  }

  /** Whether the written set is large enough to drop rather than compare. */
  shouldDrop(pages: number): boolean {
    return pages > this.#limits.trimAbovePages;
  }

  /** Drops the pages of `ranges`: they read the snapshot's bytes again (from the memfd). */
  drop(ranges: ReadonlyArray<readonly [number, number]>): boolean {
    for (const [lo, hi] of ranges) {
      if ((this.#c.madvise(this.#base + lo, hi - lo, MADV_DONTNEED) as number) !== 0) return false;
    }
    return true;
  }
}

/**
 * 2. `fd`'s first `trackedBytes` over the memory at `base`, in place and private (same address:
 * V8 keeps its view and can grow past it; a written page becomes this process's copy). 3. The same
 * bytes read-only and shared (no copy): what restore() compares with (undefined when that second
 * mapping failed; see `image`). A message when step 2 failed.
 */
function mapImage(c: Libc, base: number, trackedBytes: number, fd: number): { image: { pointer: unknown; buffer: ArrayBuffer } | undefined } | string {
  const failed = mapPrivateOver(c, base, trackedBytes, fd);
  if (failed !== undefined) return failed;
  return { image: mapReadOnlyView(c, trackedBytes, fd) };
}

/** `fd`'s first `trackedBytes` over the memory at `base`, MAP_FIXED | MAP_PRIVATE; a message if it failed. */
function mapPrivateOver(c: Libc, base: number, trackedBytes: number, fd: number): string | undefined {
  const at = c.mmap(base, trackedBytes, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE, fd, 0) as number;
  return at === base ? undefined : `mmap over the memory: errno ${c.koffi.errno()}`;
}

/** `fd`'s first `trackedBytes` read-only and shared (no copy), or undefined when mmap failed. */
function mapReadOnlyView(c: Libc, trackedBytes: number, fd: number): { pointer: unknown; buffer: ArrayBuffer } | undefined {
  const pointer = c.mmapPointer(0, trackedBytes, PROT_READ, MAP_SHARED, fd, 0);
  const address = c.koffi.address(pointer) as bigint;
  return address !== 0n && address !== 2n ** 64n - 1n ? { pointer, buffer: c.koffi.view(pointer, trackedBytes) } : undefined;
}

function fail(why: string): undefined {
  libcError = why;
  return undefined;
}
