/**
 * Snapshots: the pre-initialised state of an engine instance, and the fast way back to it.
 *
 * Today: an in-memory image of a WebAssembly linear memory (up to the allocator's top) plus the
 * values of the module's mutable globals, taken after init and warm-up, restored in place after
 * every request. Restoring compares the memory with the image in 64 KiB blocks (native memcmp)
 * and copies back only the 4 KiB pages that differ — a PHP request dirties ~20 pages of ~30 MB —
 * and zeroes whatever the allocator grabbed beyond the snapshot's top. Blocks of zeros (~40%)
 * are not kept; they are compared with one shared zero block.
 * Snapshots also travel: an instance exports its image, the gateway stores it (store.ts:
 * gzip, content-addressed, per deployment and engine build) and later instances — pool growth,
 * a restart — load it instead of running init and warm-up.
 * Must never: restore into a memory of another module build, or leave a page of the previous request.
 */

const BLOCK = 64 * 1024;
const PAGE = 4 * 1024;

export interface RestoreStats {
  /** Bytes copied back from the image. */
  copiedBytes: number;
  /** Bytes zeroed above the snapshot's allocator top. */
  zeroedBytes: number;
  ms: number;
}

/** A block of zeros the size of a comparison block (read-only use: compared with, never written). */
const ZERO_BLOCK = Buffer.alloc(BLOCK);

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

  private constructor(memory: WebAssembly.Memory, image: Uint8Array, globals: Array<[WebAssembly.Global, number | bigint]>) {
    this.#memory = memory;
    this.#size = image.length;
    this.#globals = globals;
    const blocks: Array<Uint8Array | null> = [];
    let keep = 0;
    for (let lo = 0; lo < image.length; lo += BLOCK) {
      const block = image.subarray(lo, Math.min(image.length, lo + BLOCK));
      const zero = Buffer.from(block.buffer, block.byteOffset, block.length).equals(ZERO_BLOCK.subarray(0, block.length));
      blocks.push(zero ? null : block);
      if (!zero) keep += block.length;
    }
    // One compact copy of the non-zero blocks.
    const store = Buffer.allocUnsafe(keep);
    let at = 0;
    this.#imageBlocks = blocks.map((b) => {
      if (b === null) return null;
      store.set(b, at);
      const saved = store.subarray(at, at + b.length);
      at += b.length;
      return saved;
    });
  }

  /** Copies memory [0, top) and the current values of `globals`. */
  static take(memory: WebAssembly.Memory, top: number, globals: WebAssembly.Global[]): LinearMemorySnapshot {
    const size = Math.min(top, memory.buffer.byteLength);
    return new LinearMemorySnapshot(memory, new Uint8Array(memory.buffer, 0, size), globals.map((g) => [g, g.value as number | bigint]));
  }

  get bytes(): number {
    return this.#size;
  }

  /** Bytes the snapshot keeps in memory (zero blocks are not kept). */
  get keptBytes(): number {
    return this.#imageBlocks.reduce((n, b) => n + (b?.length ?? 0), 0);
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
  static load(memory: WebAssembly.Memory, image: { memory: Buffer; globals: Array<number | bigint> }, globals: WebAssembly.Global[], currentTop: number): LinearMemorySnapshot {
    if (memory.buffer.byteLength < image.memory.length) throw new Error(`snapshot: image of ${image.memory.length} bytes does not fit a memory of ${memory.buffer.byteLength} bytes`);
    if (globals.length !== image.globals.length) throw new Error("snapshot: global count mismatch");
    const live = new Uint8Array(memory.buffer);
    live.set(image.memory, 0);
    if (currentTop > image.memory.length) live.fill(0, image.memory.length, Math.min(currentTop, live.length));
    globals.forEach((g, i) => (g.value = image.globals[i]!));
    return new LinearMemorySnapshot(memory, image.memory, globals.map((g, i) => [g, image.globals[i]!]));
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
    const blocks = this.#views.blocks;
    let copied = 0;
    for (let i = 0; i < blocks.length; i++) {
      const live = blocks[i]!;
      const kept = this.#imageBlocks[i]!;
      const saved = kept ?? (live.length === BLOCK ? ZERO_BLOCK : ZERO_BLOCK.subarray(0, live.length));
      if (live.equals(saved)) continue;
      for (let o = 0; o < live.length; o += PAGE) {
        const e = Math.min(live.length, o + PAGE);
        const a = live.subarray(o, e);
        const b = saved.subarray(o, e);
        if (!a.equals(b)) {
          if (kept === null) a.fill(0);
          else a.set(b);
          copied += e - o;
        }
      }
    }
    let zeroed = 0;
    const end = Math.min(currentTop, buffer.byteLength);
    if (end > this.#size) {
      new Uint8Array(buffer, this.#size, end - this.#size).fill(0);
      zeroed = end - this.#size;
    }
    for (const [g, v] of this.#globals) g.value = v;
    return { copiedBytes: copied, zeroedBytes: zeroed, ms: performance.now() - t0 };
  }
}

export { SnapshotStore, SnapshotMismatchError, encodeSnapshot, decodeSnapshot, type SnapshotImage } from "./store.js";
