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
  body: Buffer;
}

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
      const whole = this.#take(4 + len);
      const hlen = whole.readUInt32BE(4);
      if (hlen > len - 4 || hlen > MAX_HEADER_BYTES) throw new ZerocellError("frame_malformed", 502, "sandbox: malformed message header length");
      let header: unknown;
      try {
        header = JSON.parse(whole.subarray(8, 8 + hlen).toString("utf8"));
      } catch (cause) {
        throw new ZerocellError("frame_malformed", 502, "sandbox: message header is not JSON", { cause });
      }
      if (typeof header !== "object" || header === null || Array.isArray(header)) {
        throw new ZerocellError("frame_malformed", 502, "sandbox: message header is not an object");
      }
      frames.push({ header: header as Record<string, unknown>, body: whole.subarray(8 + hlen) });
    }
    return frames;
  }

  #peek(n: number): Buffer {
    if (this.#chunks[0]!.length >= n) return this.#chunks[0]!.subarray(0, n);
    return Buffer.concat(this.#chunks).subarray(0, n);
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
