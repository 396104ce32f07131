/**
 * Snapshots: the pre-initialised state of an engine instance, and the fast way back to it.
 *
 * Today: an in-memory image of a WebAssembly linear memory (up to the allocator's top) plus the
 * values of the module's mutable globals, taken after init and warm-up, restored in place after
 * every request. Restoring compares the memory with the image in 64 KiB blocks (native memcmp)
 * and copies back only the 4 KiB pages that differ — a PHP request dirties ~20 pages of ~20 MB —
 * and zeroes whatever the allocator grabbed beyond the snapshot's top.
 * Must never: restore into a memory of another module, or leave a page of the previous request.
 * Not yet: stored on disk content-addressed (restart re-runs init).
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

export class LinearMemorySnapshot {
  readonly #image: Buffer;
  readonly #imageBlocks: Buffer[];
  readonly #memory: WebAssembly.Memory;
  readonly #globals: Array<[WebAssembly.Global, number | bigint]>;
  #views: { buffer: ArrayBuffer; blocks: Buffer[] } | undefined;

  private constructor(memory: WebAssembly.Memory, image: Buffer, globals: Array<[WebAssembly.Global, number | bigint]>) {
    this.#memory = memory;
    this.#image = image;
    this.#globals = globals;
    this.#imageBlocks = [];
    for (let lo = 0; lo < image.length; lo += BLOCK) this.#imageBlocks.push(image.subarray(lo, Math.min(image.length, lo + BLOCK)));
  }

  /** Copies memory [0, top) and the current values of `globals`. */
  static take(memory: WebAssembly.Memory, top: number, globals: WebAssembly.Global[]): LinearMemorySnapshot {
    const size = Math.min(top, memory.buffer.byteLength);
    const image = Buffer.allocUnsafe(size);
    image.set(new Uint8Array(memory.buffer, 0, size));
    return new LinearMemorySnapshot(memory, image, globals.map((g) => [g, g.value as number | bigint]));
  }

  get bytes(): number {
    return this.#image.length;
  }

  /** Puts memory and globals back to the image. `currentTop` is the allocator's top now. */
  restore(currentTop: number): RestoreStats {
    const t0 = performance.now();
    const buffer = this.#memory.buffer as ArrayBuffer;
    if (this.#views?.buffer !== buffer) {
      // The memory grew (new ArrayBuffer): rebuild the block views once.
      const blocks: Buffer[] = [];
      for (let lo = 0; lo < this.#image.length; lo += BLOCK) blocks.push(Buffer.from(buffer, lo, Math.min(this.#image.length, lo + BLOCK) - lo));
      this.#views = { buffer, blocks };
    }
    const blocks = this.#views.blocks;
    let copied = 0;
    for (let i = 0; i < blocks.length; i++) {
      const live = blocks[i]!;
      const saved = this.#imageBlocks[i]!;
      if (live.equals(saved)) continue;
      for (let o = 0; o < live.length; o += PAGE) {
        const e = Math.min(live.length, o + PAGE);
        const a = live.subarray(o, e);
        const b = saved.subarray(o, e);
        if (!a.equals(b)) {
          a.set(b);
          copied += e - o;
        }
      }
    }
    let zeroed = 0;
    const end = Math.min(currentTop, buffer.byteLength);
    if (end > this.#image.length) {
      new Uint8Array(buffer, this.#image.length, end - this.#image.length).fill(0);
      zeroed = end - this.#image.length;
    }
    for (const [g, v] of this.#globals) g.value = v;
    return { copiedBytes: copied, zeroedBytes: zeroed, ms: performance.now() - t0 };
  }
}
