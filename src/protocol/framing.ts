/**
 * Framing between the gateway and a sandbox host process. Every message is
 *   u32be frameLength | u32be headerLength | header (JSON, UTF-8) | body bytes
 * and the reader enforces a maximum frame size before buffering anything, because what a host
 * sends is untrusted (a guest may one day escape into its host).
 */
import { ZerocellError } from "../errors.js";
import { PROTOCOL_LIMITS } from "./limits.js";

export interface Frame<H = Record<string, unknown>> {
  header: H;
  /** The body in one buffer (a large body is joined from `bodyChunks` on first use). */
  readonly body: Buffer;
  /** Its length, bytes (without joining it). */
  readonly bodyBytes: number;
  /**
   * A large body as it arrived, views of the read chunks in order: a consumer that can take parts
   * (a snapshot's gzip) never joins it into one 30–100 MB copy (~7 ms/MB of page faults here).
   */
  readonly bodyChunks?: readonly Buffer[];
}

/** A frame's header: a JSON object, or the frame is malformed. */
function parseHeader(bytes: Buffer): Record<string, unknown> {
  let header: unknown;
  try {
    header = JSON.parse(bytes.toString("utf8"));
  } catch (cause) {
    throw new ZerocellError("frame_malformed", 502, "sandbox: message header is not JSON", { cause });
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new ZerocellError("frame_malformed", 502, "sandbox: message header is not an object");
  }
  return header as Record<string, unknown>;
}

/** The first `n` bytes of a list of chunks, joined (only the chunks that hold them are read). */
function headBytes(chunks: readonly Buffer[], n: number): Buffer {
  const few: Buffer[] = [];
  for (let i = 0, got = 0; got < n && i < chunks.length; i++) {
    few.push(chunks[i]!);
    got += chunks[i]!.length;
  }
  return Buffer.concat(few).subarray(0, n);
}

/** Bodies from this size on are kept as their chunks (joined only if `body` is read). */
const LARGE_BODY_BYTES = 1 << 20;

export const MAX_HEADER_BYTES = PROTOCOL_LIMITS.maxHeaderBytes;

export function encodeFrame(header: unknown, body: Uint8Array = new Uint8Array(0)): Buffer {
  const h = Buffer.from(JSON.stringify(header), "utf8");
  const out = Buffer.allocUnsafe(8 + h.length + body.byteLength);
  out.writeUInt32BE(4 + h.length + body.byteLength, 0);
  out.writeUInt32BE(h.length, 4);
  h.copy(out, 8);
  out.set(body, 8 + h.length);
  return out;
}

/**
 * A frame whose body is a list of chunks, as buffers to write in order (the chunks themselves,
 * not copies): the length prefix and header, then each chunk. For large immutable bodies.
 */
export function encodeFrameChunks(header: unknown, chunks: readonly Uint8Array[]): Uint8Array[] {
  const h = Buffer.from(JSON.stringify(header), "utf8");
  const bodyBytes = chunks.reduce((n, c) => n + c.byteLength, 0);
  const head = Buffer.allocUnsafe(8 + h.length);
  head.writeUInt32BE(4 + h.length + bodyBytes, 0);
  head.writeUInt32BE(h.length, 4);
  h.copy(head, 8);
  return [head, ...chunks];
}

export class FrameTooLargeError extends ZerocellError {
  constructor(size: number, limit: number) {
    super("frame_too_large", 502, `sandbox: message of ${size} bytes exceeds the limit of ${limit} bytes`);
  }
}

/** Incremental decoder: push chunks, get whole frames. Throws on oversize or malformed frames. */
export class FrameDecoder {
  readonly #maxFrameBytes: number;
  #chunks: Buffer[] = [];
  #buffered = 0;

  constructor(maxFrameBytes: number) {
    this.#maxFrameBytes = maxFrameBytes;
  }

  push(chunk: Buffer): Frame[] {
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    const frames: Frame[] = [];
    for (;;) {
      if (this.#buffered < 4) break;
      const head = this.#peek(4);
      const len = head.readUInt32BE(0);
      if (len > this.#maxFrameBytes) throw new FrameTooLargeError(len, this.#maxFrameBytes);
      if (len < 4) throw new ZerocellError("frame_malformed", 502, "sandbox: malformed message (length < 4)");
      if (this.#buffered < 4 + len) break;
      if (len >= LARGE_BODY_BYTES && this.#chunks.length > 1) {
        frames.push(this.#takeLarge(4 + len));
        continue;
      }
      const whole = this.#take(4 + len);
      const hlen = whole.readUInt32BE(4);
      if (hlen > len - 4 || hlen > MAX_HEADER_BYTES) throw new ZerocellError("frame_malformed", 502, "sandbox: malformed message header length");
      const header = parseHeader(whole.subarray(8, 8 + hlen));
      const body = whole.subarray(8 + hlen);
      frames.push({ header: header as Record<string, unknown>, body, bodyBytes: body.length });
    }
    return frames;
  }

  /** A whole large frame of `n` bytes off the front, its body left as views of the chunks. */
  #takeLarge(n: number): Frame {
    // One pass and one splice (not a shift per chunk: a host writing tiny pieces must not make
    // this quadratic).
    const parts: Buffer[] = [];
    let need = n;
    let i = 0;
    let rest: Buffer | undefined;
    for (; need > 0; i++) {
      const c = this.#chunks[i]!;
      if (c.length <= need) {
        parts.push(c);
        need -= c.length;
      } else {
        parts.push(c.subarray(0, need));
        rest = c.subarray(need);
        need = 0;
      }
    }
    this.#chunks = rest === undefined ? this.#chunks.slice(i) : [rest, ...this.#chunks.slice(i)];
    this.#buffered -= n;
    // The prefix and header (≤ MAX_HEADER_BYTES) joined; the body stays in parts.
    const hlen = headBytes(parts, 8).readUInt32BE(4);
    if (hlen > n - 8 || hlen > MAX_HEADER_BYTES) throw new ZerocellError("frame_malformed", 502, "sandbox: malformed message header length");
    const header = parseHeader(headBytes(parts, 8 + hlen).subarray(8));
    const bodyChunks: Buffer[] = [];
    let skip = 8 + hlen;
    for (const p of parts) {
      if (skip >= p.length) {
        skip -= p.length;
        continue;
      }
      bodyChunks.push(skip > 0 ? p.subarray(skip) : p);
      skip = 0;
    }
    let joined: Buffer | undefined;
    return {
      header,
      bodyBytes: n - 8 - hlen,
      bodyChunks,
      get body(): Buffer {
        joined ??= Buffer.concat(bodyChunks, n - 8 - hlen);
        return joined;
      },
    };
  }

  #peek(n: number): Buffer {
    if (this.#chunks[0]!.length >= n) return this.#chunks[0]!.subarray(0, n);
    return headBytes(this.#chunks, n);
  }

  #take(n: number): Buffer {
    const all = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.#chunks = rest.length > 0 ? [rest] : [];
    this.#buffered = rest.length;
    return out;
  }
}
