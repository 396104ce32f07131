/**
 * gzip of byte pieces in order, as one stream on libuv's threads, returned as the stream's own
 * output pieces: neither the input nor the output is joined into one multi-MB buffer (fresh
 * pages cost ~7 ms/MB of faults in this VM). The sandbox host uses it for the snapshot it sends,
 * the snapshot store for a raw image and for a header.
 */
import { createGzip } from "node:zlib";

export function gzipPieces(parts: readonly Uint8Array[], level: number): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const z = createGzip({ level, chunkSize: 64 * 1024 });
    const out: Buffer[] = [];
    z.on("data", (c: Buffer) => out.push(c));
    z.once("error", reject);
    z.once("end", () => resolve(out));
    for (const p of parts) z.write(p);
    z.end();
  });
}
