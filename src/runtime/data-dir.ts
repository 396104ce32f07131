/**
 * /data of keyed routes, the same for every engine: put a key's committed tree in place before a
 * request, and afterwards tell whether the request changed it (content compared byte for byte;
 * timestamps are too coarse) and encode the new tree. The gateway commits it only on success.
 */
import { decodeImage, encodeImage, type BundleEntry } from "../bundle/index.js";

/** The few file operations on an engine's in-memory file system this needs. */
export interface DataFs {
  /** Removes everything below `dir`, keeping `dir`. */
  wipe(dir: string): void;
  mkdirs(path: string): void;
  writeFile(path: string, data: Uint8Array): void;
  readFile(path: string): Uint8Array;
  /** Every entry below `dir` as [relative path, kind], parents before children. */
  listTree(dir: string): Array<[string, "dir" | "file"]>;
}

/** Replaces `dir` with a key's committed tree; returns its files for changedData(). */
export function mountData(fs: DataFs, dir: string, encoded: Uint8Array): Map<string, Buffer> {
  fs.wipe(dir);
  const files = new Map<string, Buffer>();
  for (const e of decodeImage(Buffer.from(encoded.buffer, encoded.byteOffset, encoded.byteLength)).entries) {
    const path = `${dir}/${e.path}`;
    if (e.kind === "dir") fs.mkdirs(path);
    else if (e.kind === "file") {
      const data = e.data ?? Buffer.alloc(0);
      fs.writeFile(path, data);
      files.set(e.path, Buffer.from(data));
    }
  }
  return files;
}

/** The new tree as an encoded image if anything differs from `before`, else undefined. */
export function changedData(fs: DataFs, dir: string, before: Map<string, Buffer>): Uint8Array | undefined {
  const entries: BundleEntry[] = [];
  let changed = false;
  let same = 0;
  let totalBytes = 0;
  for (const [rel, kind] of fs.listTree(dir)) {
    if (kind === "dir") {
      entries.push({ path: rel, kind: "dir", mode: 0o755 });
      continue;
    }
    const data = Buffer.from(fs.readFile(`${dir}/${rel}`));
    totalBytes += data.length;
    entries.push({ path: rel, kind: "file", mode: 0o644, data });
    const old = before.get(rel);
    if (old === undefined || !old.equals(data)) changed = true;
    else same++;
  }
  if (!changed && same === before.size) return undefined;
  entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return encodeImage({ entries, totalBytes });
}
