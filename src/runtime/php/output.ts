/**
 * What a PHP request writes, counted as it is written: php-wasm's request devices
 * (/request/stdout, /request/headers, /request/stderr) hand every chunk to a stream that keeps it
 * until the script ends, so a script echoing 2 GiB held 2 GiB (and its copy) in the host. Past
 * the response limit the write throws SandboxError("response_too_large"), which stops the script
 * where it is (the runtime is then unusable, so the host is replaced). stderr is the log: past its
 * budget it is dropped, not fatal.
 * Must never: buffer more than the limit plus one chunk of a request's output.
 */
import { SandboxError } from "../../errors.js";

/** Largest headers block (PHP's JSON of status and header lines) of one response, bytes. */
const MAX_HEADER_BYTES = 1024 * 1024;
/** stderr (PHP's log) kept per request, bytes; the rest is dropped. */
const MAX_LOG_BYTES = 1024 * 1024;

/** php-wasm's device numbers (FS.makedev(64|63|62, 0)) for the request's stdout, stderr, headers. */
const STDOUT_MAJOR = 64;
const STDERR_MAJOR = 63;
const HEADERS_MAJOR = 62;

interface DeviceFs {
  makedev(major: number, minor: number): number;
  getDevice(dev: number): { stream_ops: { write: DeviceWrite } } | undefined;
}
type DeviceWrite = (stream: unknown, buffer: Uint8Array, offset: number, length: number, position?: number) => number;

export class OutputGuard {
  #limit: number;
  #stdout = 0;
  #headers = 0;
  #log = 0;

  constructor(limit: number) {
    this.#limit = limit;
  }

  /** A new request: nothing written yet. */
  begin(limit = this.#limit): void {
    this.#limit = limit;
    this.#stdout = 0;
    this.#headers = 0;
    this.#log = 0;
  }

  /** Bytes of host log (stderr, printErr) still allowed in this request; counts `n` of them. */
  takeLog(n: number): boolean {
    this.#log += n;
    return this.#log <= MAX_LOG_BYTES;
  }

  /** Wraps php-wasm's request devices; call once the runtime exists (they are registered at start). */
  install(fs: DeviceFs): void {
    const wrap = (major: number, check: (length: number) => boolean) => {
      const device = fs.getDevice(fs.makedev(major, 0));
      if (device === undefined) throw new Error(`zerocell: php-wasm has no request device ${major}; cannot limit its output`);
      const write = device.stream_ops.write;
      device.stream_ops.write = (stream, buffer, offset, length, position) => (check(length) ? write(stream, buffer, offset, length, position) : length);
    };
    wrap(STDOUT_MAJOR, (n) => {
      this.#stdout += n;
      if (this.#stdout > this.#limit) {
        throw new SandboxError("response_too_large", 502, `php: the script's response body exceeds the limit of ${this.#limit} bytes; it was stopped`);
      }
      return true;
    });
    wrap(HEADERS_MAJOR, (n) => {
      this.#headers += n;
      if (this.#headers > MAX_HEADER_BYTES) {
        throw new SandboxError("response_too_large", 502, `php: the script's response headers exceed ${MAX_HEADER_BYTES} bytes; it was stopped`);
      }
      return true;
    });
    wrap(STDERR_MAJOR, (n) => this.takeLog(n));
  }
}
