/**
 * Binary transport form of a BundleImage (for worker threads / child processes):
 *
 *   "ZCIMG\0\0\1"  8 bytes magic + version
 *   u32 BE         length H of the JSON header
 *   H bytes        UTF-8 JSON {"totalBytes":n,"entries":[{"path","kind","mode","size"?,"target"?}]}
 *   …              file contents concatenated in entry order (sum of the sizes, nothing after)
 *
 * decodeImage trusts nothing: every length, kind, mode, path and the exact byte count are checked.
 */
import { BundleError } from "../errors.js";
import type { BundleEntry, BundleImage } from "./archive.js";
import { q } from "./errors.js";
import { ancestorsOf, checkRelativePath, newResolveBudget, parentOf, PathTree } from "./paths.js";

const MAGIC = Buffer.from("ZCIMG\0\0\x01", "latin1");
const PREFIX_BYTES = MAGIC.length + 4;
/** Decoded paths get the default archive rules' generous cousins: the image was validated once already. */
const DECODE_PATH_RULES = { maxPathLength: 4096, maxDepth: 256 };

interface WireEntry {
  path: string;
  kind: BundleEntry["kind"];
  mode: number;
  size?: number;
  target?: string;
}

/** Encodes an image for sending to another process; decodeImage reverses it. */
export function encodeImage(image: BundleImage): Buffer {
  const wire: WireEntry[] = [];
  const blobs: Buffer[] = [];
  let sum = 0;
  for (const e of image.entries) {
    const w: WireEntry = { path: e.path, kind: e.kind, mode: e.mode };
    if (e.kind === "file") {
      const data = e.data ?? Buffer.alloc(0);
      w.size = data.length;
      sum += data.length;
      blobs.push(data);
    } else if (e.kind === "symlink") {
      w.target = e.target ?? "";
    }
    wire.push(w);
  }
  const header = Buffer.from(JSON.stringify({ totalBytes: image.totalBytes, entries: wire }), "utf8");
  const prefix = Buffer.alloc(PREFIX_BYTES);
  MAGIC.copy(prefix, 0);
  prefix.writeUInt32BE(header.length, MAGIC.length);
  return Buffer.concat([prefix, header, ...blobs], PREFIX_BYTES + header.length + sum);
}

function bad(message: string): BundleError {
  return new BundleError("image_corrupt", `image: ${message}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Decodes encodeImage output. File data are views into `buf` (no copy): do not reuse `buf` while
 * the image is alive. Rejects malformed input with BundleError code "image_corrupt".
 */
export function decodeImage(buf: Buffer): BundleImage {
  if (!Buffer.isBuffer(buf)) throw bad("input is not a Buffer");
  if (buf.length < PREFIX_BYTES) throw bad(`truncated: ${buf.length} bytes is shorter than the ${PREFIX_BYTES}-byte prefix`);
  if (!buf.subarray(0, MAGIC.length).equals(MAGIC)) throw bad("bad magic (not an encoded bundle image, or another version)");
  const headerLength = buf.readUInt32BE(MAGIC.length);
  if (headerLength > buf.length - PREFIX_BYTES) {
    throw bad(`truncated: header length ${headerLength} exceeds the ${buf.length - PREFIX_BYTES} bytes available`);
  }
  let parsed: unknown;
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(buf.subarray(PREFIX_BYTES, PREFIX_BYTES + headerLength));
    parsed = JSON.parse(text);
  } catch {
    throw bad("header is not valid UTF-8 JSON");
  }
  if (!isObject(parsed) || !Array.isArray(parsed.entries)) throw bad("header has no entries array");
  const totalBytes = parsed.totalBytes;
  if (typeof totalBytes !== "number" || !Number.isSafeInteger(totalBytes) || totalBytes < 0) {
    throw bad("header totalBytes is not a non-negative integer");
  }
  const rawEntries: unknown[] = parsed.entries;
  let offset = PREFIX_BYTES + headerLength;
  const seen = new Map<string, BundleEntry["kind"]>();
  const entries: BundleEntry[] = [];
  for (let i = 0; i < rawEntries.length; i++) {
    const w = rawEntries[i];
    if (!isObject(w)) throw bad(`entries[${i}] is not an object`);
    const { path, kind, mode, size, target } = w;
    if (typeof path !== "string") throw bad(`entries[${i}].path is not a string`);
    const checked = checkRelativePath(path, DECODE_PATH_RULES);
    if (!checked.ok || checked.path !== path || path === "") throw bad(`entries[${i}].path ${q(path)} is not a normalised relative path`);
    if (seen.has(path)) throw bad(`entries[${i}].path ${q(path)} appears twice`);
    if (typeof mode !== "number" || !Number.isInteger(mode) || mode < 0 || mode > 0o777) {
      throw bad(`entries[${i}].mode is not a permission mode`);
    }
    if (kind === "file") {
      if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) throw bad(`entries[${i}].size is not a valid size`);
      if (target !== undefined) throw bad(`entries[${i}] is a file with a target`);
      if (size > buf.length - offset) {
        throw bad(`truncated: entries[${i}] (${q(path)}) needs ${size} bytes, only ${buf.length - offset} remain`);
      }
      entries.push({ path, kind, mode, data: buf.subarray(offset, offset + size) });
      offset += size;
    } else if (kind === "dir") {
      if (size !== undefined || target !== undefined) throw bad(`entries[${i}] is a dir with a size or target`);
      entries.push({ path, kind, mode });
    } else if (kind === "symlink") {
      if (size !== undefined) throw bad(`entries[${i}] is a symlink with a size`);
      if (typeof target !== "string" || target.length === 0 || target.includes("\0") || target.startsWith("/")) {
        throw bad(`entries[${i}].target is not a relative link target`);
      }
      entries.push({ path, kind, mode, target });
    } else {
      throw bad(`entries[${i}].kind is not "file", "dir" or "symlink"`);
    }
    seen.set(path, kind);
  }
  if (offset !== buf.length) throw bad(`${buf.length - offset} trailing bytes after the last file`);
  if (offset - PREFIX_BYTES - headerLength !== totalBytes) throw bad("totalBytes does not match the file sizes");
  for (const e of entries) {
    for (const dir of ancestorsOf(e.path)) {
      if (seen.get(dir) !== "dir") throw bad(`${q(e.path)} has no parent directory entry ${q(dir)}`);
    }
  }
  const tree = new PathTree(entries);
  const budget = newResolveBudget();
  for (const e of entries) {
    if (e.kind === "symlink" && !tree.resolve(parentOf(e.path), e.target ?? "", budget).ok) {
      throw bad(`symlink ${q(e.path)} does not stay inside the root`);
    }
  }
  return { entries, totalBytes };
}
