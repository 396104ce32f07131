/**
 * Snapshots: the pre-initialised state of an engine instance, and the fast way back to it.
 *
 * Today: an in-memory image of a WebAssembly linear memory (up to the allocator's top) plus the
 * values of the module's mutable globals, taken after init and warm-up, restored in place after
 * every request. Where the kernel allows (dirty-pages.ts, ADR 002) the memory is re-mapped from a
 * memfd of the image and the kernel lists the pages anyone wrote since: only those are compared
 * and copied back — a hello-world request writes a few dozen pages of ~30 MB. Otherwise (no
 * koffi, old kernel, ZEROCELL_RESET=compare) restoring compares the whole memory with the image
 * in 64 KiB blocks (native memcmp) and copies back the 4 KiB pages that differ. Either way it
 * zeroes whatever the allocator grabbed beyond the snapshot's top. Blocks of zeros (~40%) are
 * not kept; they are compared with one shared zero block.
 * Snapshots also travel: an instance exports its image, the gateway stores it (store.ts:
 * gzip, content-addressed, per deployment and engine build) and later instances — pool growth,
 * a restart — load it instead of running init and warm-up.
 * Must never: restore into a memory of another module build, or leave a page of the previous request.
 */

import { DirtyPageTracker, readSnapshotFile, readSnapshotFileInto, resetModeFromEnv, lastTrackerError, type DirtyPageLimits, DEFAULT_DIRTY_PAGE_LIMITS } from "./dirty-pages.js";

/** The fallback was reported in this process (once: every snapshot of a host falls back alike). */
let fallbackReported = false;

const BLOCK = 64 * 1024;
const PAGE = 4 * 1024;

/** How a snapshot finds what to put back: the kernel's written-page list, or a full compare. */
export type RestoreMethod = "dirty-pages" | "compare";

export interface SnapshotOptions {
  /** "compare" forces the full compare (default: dirty pages where the kernel allows, ZEROCELL_RESET=compare in the environment also forces it). */
  reset?: "auto" | "compare";
  limits?: DirtyPageLimits;
  /**
   * take(): instances of this process whose images are the same but for a few pages (Python
   * instances booted from one snapshot file) share one memfd: the first makes it, the others map
   * it and keep only their differing pages (DirtyPageTracker.create). The key names the image
   * (the file's path); never one that another account's instance could use (a host holds one account).
   */
  shareKey?: string;
}

export interface RestoreStats {
  method: RestoreMethod;
  /** Bytes copied back from the image. */
  copiedBytes: number;
  /** Bytes zeroed above the snapshot's allocator top. */
  zeroedBytes: number;
  /** Pages the kernel reported written (dirty-pages method), or 0. */
  writtenPages: number;
  /** Pages dropped back to the snapshot file (MADV_DONTNEED) instead of compared. */
  droppedPages: number;
  /** Time spent asking the kernel for the written pages (dirty-pages method), ms. */
  scanMs: number;
  ms: number;
}

/**
 * Unmaps a snapshot's read-only view of its memfd once the snapshot is collected (its blocks are
 * views of it and go with it; the memory's own mapping keeps the memfd).
 */
const closeWhenCollected = new FinalizationRegistry<DirtyPageTracker>((tracker) => tracker.close());

/** A block of zeros the size of a comparison block (read-only use: compared with, never written). */
const ZERO_BLOCK = Buffer.alloc(BLOCK);

/**
 * Zeroes [lo, hi) of `live`, writing only 64 KiB blocks that are not zero already: memory just
 * grown to fit a snapshot (WordPress: ~84 MB above the image) reads as zeros without pages of its
 * own, and writing zeros over it would give every page a private copy.
 */
function zeroFill(live: Uint8Array, lo: number, hi: number): void {
  for (let at = lo; at < hi; ) {
    const end = Math.min(hi, (Math.floor(at / BLOCK) + 1) * BLOCK);
    const block = Buffer.from(live.buffer, live.byteOffset + at, end - at);
    if (!block.equals(ZERO_BLOCK.subarray(0, end - at))) block.fill(0);
    at = end;
  }
}

export class LinearMemorySnapshot {
  /** Bytes of memory the image covers. */
  readonly #size: number;
  /**
   * The image in 64 KiB blocks; null for a block of zeros (~40% of a PHP or Python image): those
   * are not kept (less memory per instance) and are compared with one shared zero block, which
   * stays in cache (half the memory traffic of comparing two copies).
   */
  readonly #imageBlocks: Array<Buffer | null>;
  readonly #memory: WebAssembly.Memory;
  readonly #globals: Array<[WebAssembly.Global, number | bigint]>;
  #views: { buffer: ArrayBuffer; blocks: Buffer[] } | undefined;
  /** Bytes of the image copied into JS (the rest are views of the memfd's shared mapping). */
  readonly #heldBytes: number;
  /** The kernel's list of written pages of [0, tracker.trackedBytes); undefined: compare all. */
  #tracker: DirtyPageTracker | undefined;

  private constructor(memory: WebAssembly.Memory, image: Uint8Array, globals: Array<[WebAssembly.Global, number | bigint]>, options: SnapshotOptions, mapped?: DirtyPageTracker) {
    this.#memory = memory;
    this.#size = image.length;
    this.#globals = globals;
    // 1. The memory holds the image now (take: it is the image; load: it was just written, or
    // `mapped` from the image's file): map it from a memfd where the kernel allows.
    const mode = options.reset ?? resetModeFromEnv();
    this.#tracker = mapped ?? (mode === "compare" ? undefined : DirtyPageTracker.create(memory, this.#size, options.limits ?? DEFAULT_DIRTY_PAGE_LIMITS, options.shareKey));
    if (mode !== "compare" && this.#tracker === undefined && !fallbackReported) {
      fallbackReported = true;
      process.stderr.write(`snapshot: dirty-page reset unavailable (${lastTrackerError() || "image smaller than a page"}); resets compare the whole image\n`);
    }
    // 2. The image's blocks: views of the memfd's read-only shared mapping where there is one
    // (the snapshot's bytes live once, in the memfd), else one compact JS copy of the non-zero
    // blocks. A block past the mapping's whole pages is copied (< 64 KiB).
    const shared = this.#tracker?.image;
    if (shared !== undefined) closeWhenCollected.register(this, this.#tracker!);
    const blocks: Array<Uint8Array | null> = [];
    const fromMapping: boolean[] = [];
    let keep = 0;
    for (let lo = 0; lo < image.length; lo += BLOCK) {
      const hi = Math.min(image.length, lo + BLOCK);
      // A block with pages of this instance's own (a shared memfd's differing pages) is copied.
      if (shared !== undefined && hi <= shared.byteLength && !this.#tracker!.ownsPageIn(lo, hi)) {
        // A block of zeros is a hole of the memfd: compared with the shared zero block instead.
        blocks.push(this.#tracker!.isZeroRange(lo, hi) ? null : new Uint8Array(shared, lo, hi - lo));
        fromMapping.push(true);
        continue;
      }
      const block = image.subarray(lo, hi);
      const zero = Buffer.from(block.buffer, block.byteOffset, block.length).equals(ZERO_BLOCK.subarray(0, block.length));
      blocks.push(zero ? null : block);
      fromMapping.push(false);
      if (!zero) keep += block.length;
    }
    const store = Buffer.allocUnsafe(keep);
    let at = 0;
    this.#imageBlocks = blocks.map((b, i) => {
      if (b === null) return null;
      if (fromMapping[i]) return Buffer.from(b.buffer, b.byteOffset, b.length);
      store.set(b, at);
      const saved = store.subarray(at, at + b.length);
      at += b.length;
      return saved;
    });
    this.#heldBytes = keep;
  }

  /** How restore() finds what to put back. */
  get method(): RestoreMethod {
    return this.#tracker === undefined ? "compare" : "dirty-pages";
  }

  /** Copies memory [0, top) and the current values of `globals`. */
  static take(memory: WebAssembly.Memory, top: number, globals: WebAssembly.Global[], options: SnapshotOptions = {}): LinearMemorySnapshot {
    const size = Math.min(top, memory.buffer.byteLength);
    return new LinearMemorySnapshot(memory, new Uint8Array(memory.buffer, 0, size), globals.map((g) => [g, g.value as number | bigint]), options);
  }

  get bytes(): number {
    return this.#size;
  }

  /** Bytes of the image this snapshot holds in JS buffers (not the memfd's pages). */
  get heldBytes(): number {
    return this.#heldBytes;
  }

  /** Bytes the snapshot keeps in memory (zero blocks are not kept). */
  get keptBytes(): number {
    return this.#imageBlocks.reduce((n, b) => n + (b?.length ?? 0), 0);
  }

  /**
   * The image as the snapshot's own blocks, without copying it (a 30 MB copy costs ~200 ms of page
   * faults in this VM): views of the memfd's read-only mapping, the kept JS copies, and one shared
   * zero block for zero blocks. None is ever written again, so they may be written to a pipe
   * asynchronously — as long as the caller holds this snapshot (its collection unmaps the memfd).
   */
  exportChunks(): { chunks: Uint8Array[]; bytes: number; globals: Array<number | bigint> } {
    const chunks = this.#imageBlocks.map((b, i) => b ?? ZERO_BLOCK.subarray(0, Math.min(BLOCK, this.#size - i * BLOCK)));
    return { chunks, bytes: this.#size, globals: this.#globals.map(([, v]) => v) };
  }

  /** The image (a new buffer) and global values, to store or to load into another instance of the same build. */
  export(): { memory: Buffer; globals: Array<number | bigint> } {
    const memory = Buffer.alloc(this.#size);
    this.#imageBlocks.forEach((b, i) => {
      if (b !== null) memory.set(b, i * BLOCK);
    });
    return { memory, globals: this.#globals.map(([, v]) => v) };
  }

  /**
   * Writes an exported image into `memory` (which must be at least as large) and sets the
   * globals, then returns a snapshot of that state. Only for an instance of the same module
   * build, prepared the same way; the caller checks the build id.
   */
  static load(memory: WebAssembly.Memory, image: { memory: Buffer; globals: Array<number | bigint>; file?: { path: string; bytes: number } | undefined }, globals: WebAssembly.Global[], currentTop: number, options: SnapshotOptions = {}): LinearMemorySnapshot {
    if (image.file !== undefined) return LinearMemorySnapshot.#loadFile(memory, { ...image, file: image.file }, globals, currentTop, options);
    if (memory.buffer.byteLength < image.memory.length) throw new Error(`snapshot: image of ${image.memory.length} bytes does not fit a memory of ${memory.buffer.byteLength} bytes`);
    if (globals.length !== image.globals.length) throw new Error("snapshot: global count mismatch");
    const live = new Uint8Array(memory.buffer);
    live.set(image.memory, 0);
    if (currentTop > image.memory.length) zeroFill(live, image.memory.length, Math.min(currentTop, live.length));
    globals.forEach((g, i) => (g.value = image.globals[i]!));
    return new LinearMemorySnapshot(memory, image.memory, globals.map((g, i) => [g, image.globals[i]!]), options);
  }

  /**
   * load() of an image in a file (src/snapshot/files.ts): mapped over the memory, not copied
   * (the dirty-page reset then tracks it as it would a memfd of its own); where mapping is not
   * possible, read and copied as load() does.
   */
  static #loadFile(memory: WebAssembly.Memory, image: { globals: Array<number | bigint>; file: { path: string; bytes: number } }, globals: WebAssembly.Global[], currentTop: number, options: SnapshotOptions): LinearMemorySnapshot {
    const size = image.file.bytes;
    if (memory.buffer.byteLength < size) throw new Error(`snapshot: image of ${size} bytes does not fit a memory of ${memory.buffer.byteLength} bytes`);
    if (globals.length !== image.globals.length) throw new Error("snapshot: global count mismatch");
    const mode = options.reset ?? resetModeFromEnv();
    const tracker = mode === "compare" ? undefined : DirtyPageTracker.mapFile(memory, image.file.path, size, options.limits ?? DEFAULT_DIRTY_PAGE_LIMITS);
    if (tracker === undefined) return LinearMemorySnapshot.load(memory, { memory: readSnapshotFile(image.file.path, size), globals: image.globals }, globals, currentTop, options);
    const live = new Uint8Array(memory.buffer);
    if (currentTop > size) zeroFill(live, size, Math.min(currentTop, live.length));
    globals.forEach((g, i) => (g.value = image.globals[i]!));
    return new LinearMemorySnapshot(memory, new Uint8Array(memory.buffer, 0, size), globals.map((g, i) => [g, image.globals[i]!]), options, tracker);
  }

  /** Puts memory and globals back to the image. `currentTop` is the allocator's top now. */
  restore(currentTop: number): RestoreStats {
    const t0 = performance.now();
    const buffer = this.#memory.buffer as ArrayBuffer;
    if (this.#views?.buffer !== buffer) {
      // The memory grew (new ArrayBuffer): rebuild the block views once.
      const blocks: Buffer[] = [];
      for (let lo = 0; lo < this.#size; lo += BLOCK) blocks.push(Buffer.from(buffer, lo, Math.min(this.#size, lo + BLOCK) - lo));
      this.#views = { buffer, blocks };
    }
    let copied = 0;
    let written = 0;
    let dropped = 0;
    let method: RestoreMethod = "compare";
    // 1. Pages the kernel saw written (dirty-pages), or every block (compare).
    const ranges = this.#tracker?.isInPlace() === true ? this.#tracker.writtenRanges() : undefined;
    const scanMs = performance.now() - t0;
    if (this.#tracker !== undefined && ranges === undefined) {
      // Moved or unreadable: never trust it again; the full compare is always right.
      this.#tracker = undefined;
    }
    if (ranges !== undefined && this.#tracker !== undefined) {
      method = "dirty-pages";
      const tracker = this.#tracker;
      for (const [lo, hi] of ranges) written += (hi - lo) / PAGE;
      if (tracker.shouldDrop(written) && tracker.drop(ranges)) {
        dropped = written;
        // Dropped pages read the memfd again: this instance's own pages of a shared one go back.
        for (const [lo, hi] of tracker.ownRanges) copied += this.#restoreRange(lo, hi);
      } else for (const [lo, hi] of ranges) copied += this.#restoreRange(lo, hi);
      // The partial page above the tracked pages (the image's length is not page-aligned).
      copied += this.#restoreRange(tracker.trackedBytes, this.#size);
    } else {
      copied = this.#restoreRange(0, this.#size);
    }
    // 2. Whatever the allocator grabbed beyond the snapshot's top (the memory may have grown).
    let zeroed = 0;
    const end = Math.min(currentTop, buffer.byteLength);
    if (end > this.#size) {
      new Uint8Array(buffer, this.#size, end - this.#size).fill(0);
      zeroed = end - this.#size;
    }
    // 3. Globals.
    for (const [g, v] of this.#globals) g.value = v;
    return { method, copiedBytes: copied, zeroedBytes: zeroed, writtenPages: written, droppedPages: dropped, scanMs, ms: performance.now() - t0 };
  }

  /**
   * Compares [lo, hi) of the memory (lo page-aligned, hi ≤ the image's size is clamped) with the
   * image, 64 KiB blocks then 4 KiB pages, and copies back the pages that differ. Returns bytes copied.
   */
  #restoreRange(lo: number, hi: number): number {
    const blocks = this.#views!.blocks;
    hi = Math.min(hi, this.#size);
    let copied = 0;
    while (lo < hi) {
      const i = Math.floor(lo / BLOCK);
      const live = blocks[i]!;
      const kept = this.#imageBlocks[i]!;
      const saved = kept ?? (live.length === BLOCK ? ZERO_BLOCK : ZERO_BLOCK.subarray(0, live.length));
      const from = lo - i * BLOCK;
      const to = Math.min(hi - i * BLOCK, live.length);
      if (from !== 0 || to !== live.length || !live.equals(saved)) {
        for (let o = from; o < to; o += PAGE) {
          const e = Math.min(to, o + PAGE);
          const a = live.subarray(o, e);
          const b = saved.subarray(o, e);
          if (!a.equals(b)) {
            if (kept === null) a.fill(0);
            else a.set(b);
            copied += e - o;
          }
        }
      }
      lo = i * BLOCK + to;
    }
    return copied;
  }

  /** 4 KiB pages of [0, size) that differ from the image now (a full compare; for tests and checks). */
  differingPages(): number {
    const live = Buffer.from(this.#memory.buffer, 0, this.#size);
    let n = 0;
    this.#imageBlocks.forEach((b, i) => {
      for (let o = i * BLOCK; o < Math.min(this.#size, (i + 1) * BLOCK); o += PAGE) {
        const e = Math.min(this.#size, o + PAGE);
        const saved = b === null ? ZERO_BLOCK.subarray(0, e - o) : b.subarray(o - i * BLOCK, e - i * BLOCK);
        if (!live.subarray(o, e).equals(saved)) n++;
      }
    });
    return n;
  }
}

export { readSnapshotFile, preloadLibc } from "./dirty-pages.js";

/**
 * An image file's bytes (src/snapshot/files.ts) put over memory [0, file.bytes): mapped
 * MAP_PRIVATE where the dirty-page machinery works (no byte copied; its clean pages are the
 * file's page-cache pages), else read into it. Says which. The memory must be long enough.
 * (A runtime whose loader restores memory itself — Pyodide — calls this where it would copy.)
 */
export function putSnapshotFile(memory: WebAssembly.Memory, file: { path: string; bytes: number }): "mapped" | "read" {
  if (!Number.isSafeInteger(file.bytes) || file.bytes < 0 || memory.buffer.byteLength < file.bytes) throw new Error(`snapshot: image of ${file.bytes} bytes does not fit a memory of ${memory.buffer.byteLength} bytes`);
  const tracker = resetModeFromEnv() === "compare" ? undefined : DirtyPageTracker.mapFile(memory, file.path, file.bytes);
  if (tracker !== undefined) {
    // Only the mapping over the memory is wanted: the tracker's read-only view goes.
    tracker.close();
    return "mapped";
  }
  readSnapshotFileInto(file.path, file.bytes, new Uint8Array(memory.buffer, 0, file.bytes));
  return "read";
}
export { SnapshotStore, SnapshotMismatchError, decodeSnapshot, type SnapshotImage } from "./store.js";
