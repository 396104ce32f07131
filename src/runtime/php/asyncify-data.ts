/**
 * The one block of linear memory that php-wasm's Asyncify runtime keeps for itself, made part of
 * the snapshot.
 *
 * Why: when PHP waits on something asynchronous (usleep → emscripten_sleep, and every other
 * import that calls Asyncify.handleSleep), Emscripten's JS glue unwinds the wasm stack into a
 * buffer of `12 + Asyncify.StackSize` bytes. It `_malloc`s that buffer at the first sleep of the
 * runtime's life and caches the pointer in a JS variable for ever (`Asyncify._cachedData`). The
 * snapshot restores the allocator's state, not that JS variable. So when the first sleep came
 * after the snapshot (a request on an instance that imported a snapshot — every host after a
 * restart — or on the instance that took it, if its warm-up never slept), the block was malloc'd
 * in a request, freed by the next reset (the allocator's state went back to before it) and still
 * used by Asyncify: later allocations (a request body, PHP's own data) were handed the same bytes,
 * and every sleep wrote 4 KiB of unwound stack over them (corrupt bodies, "memory access out of
 * bounds"). An instance that imported a snapshot had a second way to get it wrong: a block it
 * malloc'd before the import is a free (or someone else's) address in the imported heap.
 *
 * Fix: the engine decides where that block is. The glue's `_malloc` is the module's `malloc`
 * export, which instantiateWasm hands it: it gets a wasm trampoline to `allocate` below, which
 * recognises the glue's allocateData call and answers with the engine's block — reserved (a real
 * malloc) before the snapshot is taken, so the image holds it allocated, and on import the block
 * the image holds (the exporting instance's), so the JS pointer and the restored heap agree.
 * Must never: hand Asyncify a block that the restored heap does not hold allocated, or let the
 * snapshot's (untrusted) address point outside its image.
 */

/** `12 + Asyncify.StackSize` (php-wasm 3.1.x: 4096): the size allocateData asks for. */
export const ASYNCIFY_DATA_BYTES = 12 + 4096;

/**
 * A wasm module that exports `m: (i32) -> i32` calling the imported JS function `e.f`. Emscripten
 * puts every function export into its function table (updateGOT → addFunction), which takes
 * wasm functions only: a plain JS `malloc` would not do.
 */
const TRAMPOLINE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  // type: (i32) -> i32
  0x01, 0x06, 0x01, 0x60, 0x01, 0x7f, 0x01, 0x7f,
  // import "e" "f" func type 0
  0x02, 0x07, 0x01, 0x01, 0x65, 0x01, 0x66, 0x00, 0x00,
  // one function of type 0
  0x03, 0x02, 0x01, 0x00,
  // export "m" = function 1
  0x07, 0x05, 0x01, 0x01, 0x6d, 0x00, 0x01,
  // body: local.get 0; call 0; end
  0x0a, 0x08, 0x01, 0x06, 0x00, 0x20, 0x00, 0x10, 0x00, 0x0b,
]);
let trampolineModule: WebAssembly.Module | undefined;

/** Whether this `_malloc` call comes from Asyncify's allocateData (checked only for its size). */
function calledByAllocateData(): boolean {
  const stack = new Error().stack ?? "";
  return stack.includes("allocateData");
}

/** Where one runtime's Asyncify buffer lives. */
export class AsyncifyData {
  /** The block Asyncify uses (or will be given), 0 while none. */
  #block = 0;
  /** Asyncify asked for its block: its JS side holds #block from now on and never asks again. */
  #handedOut = false;
  #malloc: ((n: number) => number) | undefined;

  /**
   * The exports to give Emscripten: the instance's, with `malloc` replaced by a trampoline that
   * serves Asyncify's block and passes every other call to the real malloc.
   */
  wrapExports(exports: WebAssembly.Exports): WebAssembly.Exports {
    const malloc = exports.malloc;
    if (typeof malloc !== "function") throw new Error("zerocell: php.wasm exports no malloc; cannot place Asyncify's buffer");
    this.#malloc = malloc as (n: number) => number;
    trampolineModule ??= new WebAssembly.Module(TRAMPOLINE);
    const tramp = new WebAssembly.Instance(trampolineModule, { e: { f: (n: number) => this.#allocate(n) } });
    return { ...exports, malloc: tramp.exports.m! };
  }

  #allocate(n: number): number {
    const malloc = this.#malloc!;
    if (n !== ASYNCIFY_DATA_BYTES || !calledByAllocateData()) return malloc(n);
    if (this.#block === 0) this.#block = malloc(n);
    this.#handedOut = true;
    return this.#block;
  }

  /** The block's address (0: none yet), for the snapshot's metadata. */
  get block(): number {
    return this.#block;
  }

  /**
   * Before a snapshot is taken: makes sure the block exists in the heap about to be imaged (an
   * instance whose warm-up never slept has none yet; its first sleep would otherwise malloc it
   * inside a request, and every reset would free it again).
   */
  reserve(): number {
    if (this.#block === 0) {
      const p = this.#malloc!(ASYNCIFY_DATA_BYTES);
      if (p === 0) throw new Error("php: cannot allocate Asyncify's buffer");
      this.#block = p;
    }
    return this.#block;
  }

  /**
   * After an image was loaded: Asyncify must use the block the image holds allocated. Throws
   * when this runtime already gave Asyncify another block (it cannot be moved: the JS glue keeps
   * the pointer) or when the image's address is not a block inside it.
   */
  adopt(block: number, imageBytes: number): void {
    // The image comes from another host of the same deployment: untrusted, checked.
    if (!Number.isSafeInteger(block) || block <= 0 || block % 4 !== 0 || block + ASYNCIFY_DATA_BYTES > imageBytes) {
      throw new Error(`php: snapshot has no valid Asyncify buffer (${block})`);
    }
    if (this.#handedOut && this.#block !== block) {
      throw new Error(`php: Asyncify already uses the buffer at ${this.#block}, the snapshot's is at ${block}`);
    }
    this.#block = block;
  }
}
