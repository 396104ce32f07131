/**
 * A request's standard streams: stdin is the request body, stdout the response (bounded while
 * the guest writes), stderr the log (its first 64 KiB kept).
 */

/** stderr bytes kept for the log; later ones are accepted and dropped. */
const MAX_STDERR = 64 * 1024;

export interface GuestIo {
  stdin: Uint8Array;
  stdinPos: number;
  /** The response as written so far; a write past its limit stops the run ("limit"). */
  stdout: OutputBuffer;
  /** Kept for the log up to MAX_STDERR bytes; later bytes are accepted and dropped. */
  stderr: OutputBuffer;
}

export function newIo(stdin: Uint8Array, stdoutLimit: number): GuestIo {
  return { stdin, stdinPos: 0, stdout: new OutputBuffer(stdoutLimit), stderr: new OutputBuffer(MAX_STDERR) };
}

/**
 * Bytes a guest writes to a stream, in one buffer grown by doubling and never beyond `limit`:
 * host memory stays within 1.5 × limit whatever the guest does (one host object per write
 * system call would cost ~130 bytes of heap per 1-byte write: 16 MiB of them, 2 GiB).
 */
export class OutputBuffer {
  readonly limit: number;
  #buf: Buffer = Buffer.alloc(0);
  #length = 0;

  constructor(limit: number) {
    if (!Number.isSafeInteger(limit) || limit < 0) throw new RangeError(`x86: output limit ${limit} is not a byte count`);
    this.limit = limit;
  }

  get length(): number {
    return this.#length;
  }

  /** Appends all of `data`, or nothing and false when that would pass the limit. */
  append(data: Uint8Array): boolean {
    if (data.length > this.limit - this.#length) return false;
    this.#put(data);
    return true;
  }

  /** Appends what fits under the limit; returns the bytes kept. */
  appendSome(data: Uint8Array): number {
    const n = Math.min(data.length, this.limit - this.#length);
    if (n > 0) this.#put(data.subarray(0, n));
    return n;
  }

  #put(data: Uint8Array): void {
    const end = this.#length + data.length;
    if (end > this.#buf.length) {
      const bigger = Buffer.allocUnsafe(Math.min(this.limit, Math.max(end, 2 * this.#buf.length, 64 * 1024)));
      this.#buf.copy(bigger, 0, 0, this.#length);
      this.#buf = bigger;
    }
    this.#buf.set(data, this.#length);
    this.#length = end;
  }

  /** The bytes written (a view, no copy). */
  bytes(): Buffer {
    return this.#buf.subarray(0, this.#length);
  }
}
