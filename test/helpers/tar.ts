/**
 * Raw tar construction for tests, so hostile archives (absolute paths, devices, links leaving the
 * root, lying sizes) can be expressed exactly; node-tar refuses to write most of them.
 */

export interface RawEntry {
  path: string;
  /** Tar typeflag: "0" file, "1" hard link, "2" symlink, "3" char dev, "5" dir, "6" FIFO, "x" pax… */
  type?: string;
  data?: string | Buffer;
  mode?: number;
  linkpath?: string;
  /** Declared size, when it should differ from the data length. */
  size?: number;
}

function octal(buf: Buffer, off: number, len: number, value: number): void {
  buf.write(value.toString(8).padStart(len - 1, "0") + "\0", off, len, "latin1");
}

export function rawHeader(e: RawEntry, size: number): Buffer {
  const b = Buffer.alloc(512);
  b.write(e.path, 0, 100, "utf8");
  octal(b, 100, 8, e.mode ?? (e.type === "5" ? 0o755 : 0o644));
  octal(b, 108, 8, 0);
  octal(b, 116, 8, 0);
  octal(b, 124, 12, size);
  octal(b, 136, 12, 0);
  b.fill(0x20, 148, 156);
  b.write(e.type ?? "0", 156, 1, "latin1");
  if (e.linkpath !== undefined) b.write(e.linkpath, 157, 100, "utf8");
  b.write("ustar\u000000", 257, 8, "latin1");
  let sum = 0;
  for (const byte of b) sum += byte;
  b.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, 8, "latin1");
  return b;
}

export function tar(entries: RawEntry[], { end = true }: { end?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = e.data === undefined ? Buffer.alloc(0) : Buffer.from(e.data);
    parts.push(rawHeader(e, e.size ?? data.length), data);
    const pad = (512 - (data.length % 512)) % 512;
    if (pad > 0) parts.push(Buffer.alloc(pad));
  }
  if (end) parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}
