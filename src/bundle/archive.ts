/**
 * Reads an untrusted .tar.gz / .tar held in memory into a BundleImage. Everything is synchronous
 * and bounded: the gzip layer by maxOutputLength (size and ratio limits), the tar layer by checking
 * declared sizes before any body byte is kept, paths and link targets by the rules in paths.ts.
 */
import { constants as bufferConstants } from "node:buffer";
import { gunzipSync } from "node:zlib";
import { Parser, type ReadEntry } from "tar";
import { BundleError, ZerocellError } from "../errors.js";
import { BundleTooLargeError, corrupt, q } from "./errors.js";
import { ancestorsOf, checkRelativePath, newResolveBudget, parentOf, PathTree, staysInside, type PathRules } from "./paths.js";

export interface BundleLimits {
  /** Compressed archive size, bytes. Default 64 MiB. */
  maxArchiveBytes: number;
  /** Sum of uncompressed file sizes, bytes. Default 256 MiB. */
  maxBytes: number;
  /** Entries (files+dirs+symlinks). Default 10000. */
  maxFiles: number;
  /** One file, bytes. Default 64 MiB. */
  maxFileBytes: number;
  /** Uncompressed tar bytes / compressed bytes, checked once the tar exceeds 1 MiB. Default 200. */
  maxRatio: number;
  /** Path length, chars. Default 1024. */
  maxPathLength: number;
  /** Directory depth. Default 32. */
  maxDepth: number;
}

const MiB = 1024 * 1024;

export const DEFAULT_BUNDLE_LIMITS: BundleLimits = Object.freeze({
  maxArchiveBytes: 64 * MiB,
  maxBytes: 256 * MiB,
  maxFiles: 10_000,
  maxFileBytes: 64 * MiB,
  maxRatio: 200,
  maxPathLength: 1024,
  maxDepth: 32,
});

export interface BundleEntry {
  /** Normalised posix path relative to the bundle root, no leading "./", no trailing "/". */
  path: string;
  kind: "file" | "dir" | "symlink";
  /** Permission bits only (masked with 0o777). */
  mode: number;
  /** File contents (kind "file" only). Hard-link copies share the Buffer of their target. */
  data?: Buffer;
  /** Link target as written in the archive (kind "symlink" only); verified to stay inside the root. */
  target?: string;
}

export interface BundleImage {
  /** Sorted by path; every file's parent directory is present as a "dir" entry. */
  entries: BundleEntry[];
  /** Sum of file sizes (hard-link copies counted again). */
  totalBytes: number;
}

/** Tar bytes allowed beyond maxBytes: headers, padding, pax/long-name records, end blocks. */
const TAR_OVERHEAD_BYTES = 16 * MiB;
const TAR_OVERHEAD_PER_ENTRY = 1536;
/** Below this many uncompressed bytes the compression ratio is not checked. */
const RATIO_FREE_BYTES = 1 * MiB;
const MAX_META_ENTRY_BYTES = 64 * 1024;

const GZIP_MAGIC = [0x1f, 0x8b] as const;
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd] as const;

export function resolveLimits(partial: Partial<BundleLimits> | undefined): BundleLimits {
  const limits: BundleLimits = { ...DEFAULT_BUNDLE_LIMITS };
  if (partial !== undefined) {
    for (const key of Object.keys(DEFAULT_BUNDLE_LIMITS) as Array<keyof BundleLimits>) {
      const value = partial[key];
      if (value === undefined) continue;
      if (typeof value !== "number" || !(value >= 0) || (key !== "maxRatio" && !Number.isSafeInteger(value))) {
        throw new TypeError(`bundle: limit ${key} must be a non-negative integer, got ${String(value)}`);
      }
      limits[key] = value;
    }
  }
  return limits;
}

function startsWith(buf: Buffer, magic: readonly number[]): boolean {
  return buf.length >= magic.length && magic.every((b, i) => buf[i] === b);
}

/** Maximum size of the uncompressed tar stream for these limits. */
function tarSizeLimit(limits: BundleLimits): number {
  return Math.min(
    limits.maxBytes + TAR_OVERHEAD_BYTES + TAR_OVERHEAD_PER_ENTRY * limits.maxFiles,
    bufferConstants.MAX_LENGTH,
  );
}

function decompress(archive: Buffer, limits: BundleLimits): Buffer {
  const sizeCap = tarSizeLimit(limits);
  if (!startsWith(archive, GZIP_MAGIC)) {
    if (archive.length > sizeCap) {
      throw new BundleTooLargeError(`bundle: tar archive is ${archive.length} bytes, exceeds limit of ${sizeCap} bytes`);
    }
    return archive;
  }
  const ratioCap = Math.max(RATIO_FREE_BYTES, Math.floor(archive.length * limits.maxRatio));
  const cap = Math.min(sizeCap, ratioCap);
  let tar: Buffer;
  try {
    tar = gunzipSync(archive, { maxOutputLength: cap });
  } catch (e) {
    if ((e as { code?: unknown }).code === "ERR_BUFFER_TOO_LARGE") {
      if (ratioCap < sizeCap) {
        throw new BundleError(
          "compression_bomb",
          `bundle: archive expands to more than ${limits.maxRatio} times its compressed size of ${archive.length} bytes ` +
            `(compression ratio limit of ${limits.maxRatio})`,
        );
      }
      throw new BundleTooLargeError(`bundle: uncompressed archive exceeds limit of ${sizeCap} bytes`);
    }
    throw corrupt(`bundle: gzip stream is corrupt (${(e as Error).message})`, e);
  }
  if (tar.length > RATIO_FREE_BYTES && tar.length / archive.length > limits.maxRatio) {
    throw new BundleError(
      "compression_bomb",
      `bundle: archive expands ${(tar.length / archive.length).toFixed(0)} times (compression ratio limit of ${limits.maxRatio})`,
    );
  }
  if (startsWith(tar, GZIP_MAGIC) || startsWith(tar, ZSTD_MAGIC)) {
    throw corrupt("bundle: archive is compressed twice; send a .tar.gz or a plain .tar");
  }
  return tar;
}

type RawKind = "file" | "dir" | "symlink" | "link";

const KINDS: Record<string, RawKind> = {
  File: "file",
  OldFile: "file",
  ContiguousFile: "file",
  Directory: "dir",
  SymbolicLink: "symlink",
  Link: "link",
};

const DEFAULT_MODE: Record<BundleEntry["kind"], number> = { file: 0o644, dir: 0o755, symlink: 0o777 };

/** Parses a .tar.gz (or plain .tar) held in memory. Throws BundleError/PayloadTooLargeError. */
export function readBundleArchive(archive: Buffer, limits?: Partial<BundleLimits>): BundleImage {
  if (!Buffer.isBuffer(archive)) throw new TypeError("bundle: archive must be a Buffer");
  const lim = resolveLimits(limits);
  if (archive.length > lim.maxArchiveBytes) {
    throw new BundleTooLargeError(`bundle: archive is ${archive.length} bytes, exceeds limit of ${lim.maxArchiveBytes} bytes`);
  }
  if (archive.length === 0) throw corrupt("bundle: archive is empty");
  const tar = decompress(archive, lim);
  return parseTar(tar, lim);
}

function parseTar(tar: Buffer, lim: BundleLimits): BundleImage {
  if (tar.length < 1024 || tar.length % 512 !== 0) {
    throw corrupt(`bundle: not a tar archive or truncated (${tar.length} bytes is not a whole number of 512-byte blocks)`);
  }
  const rules: PathRules = { maxPathLength: lim.maxPathLength, maxDepth: lim.maxDepth };
  const explicit = new Map<string, BundleEntry>();
  const unfinished = new Set<string>();
  let count = 0;
  let totalBytes = 0;
  let sawEof = false;
  let ended = false;

  const badPath = (raw: string, reason: string, what = "entry") =>
    new BundleError("bundle_bad_path", `bundle: ${what} ${q(raw)} ${reason}`, { details: { entry: raw.slice(0, 1024) } });
  const badEntry = (raw: string, message: string) =>
    new BundleError("bundle_bad_entry", `bundle: ${message}`, { details: { entry: raw.slice(0, 1024) } });

  const addBytes = (path: string, size: number) => {
    if (totalBytes + size > lim.maxBytes) {
      throw new BundleTooLargeError(
        `bundle: total uncompressed size exceeds limit of ${lim.maxBytes} bytes (at file ${q(path)}, ${size} bytes)`,
      );
    }
    totalBytes += size;
  };

  const onEntry = (e: ReadEntry) => {
    const raw = String(e.path);
    const kind = KINDS[e.type];
    if (kind === undefined || e.header.type !== e.type) {
      throw badEntry(raw, `entry ${q(raw)} has unsupported type ${String(e.type)} (only files, directories and symlinks are allowed)`);
    }
    const checked = checkRelativePath(raw, rules);
    if (!checked.ok) throw badPath(raw, checked.reason);
    const path = checked.path;
    const size = e.size;
    if (!Number.isSafeInteger(size) || size < 0) throw corrupt(`bundle: entry ${q(raw)} has an invalid size`);
    if (kind !== "file" && size !== 0) {
      throw badEntry(raw, `${kind === "dir" ? "directory" : "link"} ${q(raw)} carries ${size} bytes of data`);
    }
    if (path === "") {
      if (kind !== "dir") throw badPath(raw, "names the bundle root but is not a directory");
      e.resume();
      return;
    }
    if (++count > lim.maxFiles) throw new BundleTooLargeError(`bundle: file count exceeds limit of ${lim.maxFiles}`);
    if (explicit.has(path)) {
      throw new BundleError("bundle_duplicate", `bundle: entry ${q(path)} appears more than once in the archive`, {
        details: { entry: path },
      });
    }
    const rawMode = typeof e.mode === "number" && Number.isFinite(e.mode) ? e.mode : undefined;
    const maskMode = (k: BundleEntry["kind"]) => (rawMode === undefined ? DEFAULT_MODE[k] : rawMode & 0o777);

    if (kind === "file") {
      if (size > lim.maxFileBytes) {
        throw new BundleTooLargeError(`bundle: file ${q(path)} is ${size} bytes, exceeds the per-file limit of ${lim.maxFileBytes} bytes`);
      }
      addBytes(path, size);
      const entry: BundleEntry = { path, kind: "file", mode: maskMode("file") };
      explicit.set(path, entry);
      unfinished.add(path);
      const chunks: Buffer[] = [];
      let received = 0;
      e.on("data", (chunk: Buffer) => {
        received += chunk.length;
        if (received > size) throw corrupt(`bundle: entry ${q(path)} has more data than its declared ${size} bytes`);
        chunks.push(chunk);
      });
      e.on("end", () => {
        if (received !== size) throw corrupt(`bundle: entry ${q(path)} is truncated (${received} of ${size} bytes)`);
        // Copy out of the tar buffer so the image does not pin it.
        entry.data = Buffer.concat(chunks, size);
        unfinished.delete(path);
      });
    } else if (kind === "dir") {
      explicit.set(path, { path, kind: "dir", mode: maskMode("dir") });
    } else if (kind === "symlink") {
      const target = String(e.linkpath ?? "");
      checkSymlinkTarget(path, target, lim, badEntry);
      explicit.set(path, { path, kind: "symlink", mode: maskMode("symlink"), target });
    } else {
      const rawTarget = String(e.linkpath ?? "");
      const t = checkRelativePath(rawTarget, rules);
      if (!t.ok) throw badEntry(raw, `hard link ${q(path)} points outside the bundle (target ${q(rawTarget)} ${t.reason})`);
      const target = explicit.get(t.path);
      if (target === undefined || target.kind !== "file" || target.data === undefined) {
        throw badEntry(raw, `hard link ${q(path)} must point to an earlier regular file in the bundle (target ${q(rawTarget)})`);
      }
      addBytes(path, target.data.length);
      explicit.set(path, { path, kind: "file", mode: target.mode, data: target.data });
    }
    e.resume();
  };

  const parser = new Parser({ strict: true, brotli: false, zstd: false, maxMetaEntrySize: MAX_META_ENTRY_BYTES });
  parser.on("entry", onEntry);
  parser.on("ignoredEntry", (e: ReadEntry) => {
    const raw = String(e.path);
    if (e.meta) throw badEntry(raw, `extended header ${q(raw)} exceeds the limit of ${MAX_META_ENTRY_BYTES} bytes`);
    throw badEntry(raw, `entry ${q(raw)} has unsupported type ${String(e.type)} (only files, directories and symlinks are allowed)`);
  });
  parser.on("error", (err: unknown) => {
    throw tarError(err);
  });
  parser.on("eof", () => {
    sawEof = true;
  });
  parser.on("end", () => {
    ended = true;
  });
  try {
    parser.end(tar);
  } catch (err) {
    throw tarError(err);
  }
  if (!ended || unfinished.size > 0) throw corrupt("bundle: tar archive is truncated (entries were not fully read)");
  if (!sawEof) throw corrupt("bundle: tar archive is truncated (no end-of-archive marker)");

  return finishImage(explicit, totalBytes, lim, badEntry);
}

function tarError(err: unknown): Error {
  if (err instanceof ZerocellError) return err;
  const text = (err instanceof Error ? err.message : String(err)).replace(/^TAR_[A-Z_]+: /, "");
  if (/truncated/i.test(text)) return corrupt(`bundle: tar archive is truncated (${text})`, err);
  return corrupt(`bundle: tar archive is corrupt (${text})`, err);
}

function checkSymlinkTarget(
  path: string,
  target: string,
  lim: BundleLimits,
  badEntry: (raw: string, message: string) => BundleError,
): void {
  if (target.includes("\0") || target.includes("\\")) {
    throw badEntry(path, `symlink ${q(path)} has a target with a NUL byte or backslash`);
  }
  if (target.length > lim.maxPathLength) {
    throw badEntry(path, `symlink ${q(path)} has a target longer than the path length limit of ${lim.maxPathLength}`);
  }
  if (target.startsWith("/")) {
    throw badEntry(path, `symlink ${q(path)} points to an absolute path (${q(target)}); only targets inside the bundle are allowed`);
  }
  if (!staysInside(parentOf(path), target)) throw badEntry(path, `symlink ${q(path)} points outside the bundle root (${q(target)})`);
}

function finishImage(
  explicit: Map<string, BundleEntry>,
  totalBytes: number,
  lim: BundleLimits,
  badEntry: (raw: string, message: string) => BundleError,
): BundleImage {
  const all = new Map(explicit);
  // Every ancestor must be a real directory: writing through a symlink or a file is refused.
  for (const entry of explicit.values()) {
    for (const dir of ancestorsOf(entry.path)) {
      const existing = all.get(dir);
      if (existing === undefined) {
        all.set(dir, { path: dir, kind: "dir", mode: 0o755 });
      } else if (existing.kind !== "dir") {
        throw badEntry(entry.path, `entry ${q(entry.path)} is inside ${q(dir)}, which is a ${existing.kind}, not a directory`);
      }
    }
  }
  if (all.size > lim.maxFiles) {
    throw new BundleTooLargeError(`bundle: file count exceeds limit of ${lim.maxFiles} (including implied directories)`);
  }
  // Symlinks that each stay inside can still escape together ("a/up" -> "..", "l" -> "a/up/../x").
  const tree = new PathTree(all.values());
  const budget = newResolveBudget();
  for (const e of all.values()) {
    if (e.kind !== "symlink") continue;
    const { path } = e;
    const target = e.target ?? "";
    const r = tree.resolve(parentOf(path), target, budget);
    if (!r.ok) {
      const why =
        r.reason === "loop" ? "is part of a symlink loop"
        : r.reason === "too_complex" ? "is part of a symlink chain too complex to verify"
        : "points outside the bundle root through other symlinks";
      throw badEntry(path, `symlink ${q(path)} ${why} (${q(target)})`);
    }
  }
  const entries = [...all.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { entries, totalBytes };
}

/**
 * Looks a path up in an image, following symlinks inside it. Returns the entry the path finally
 * names (never a symlink), a synthetic root dir for "", or undefined when missing or escaping.
 */
export function lookupEntry(image: BundleImage, path: string): BundleEntry | undefined {
  const r = new PathTree(image.entries).resolve("", path);
  if (!r.ok || !r.exists) return undefined;
  if (r.path === "") return { path: "", kind: "dir", mode: 0o755 };
  return image.entries.find((e) => e.path === r.path);
}
