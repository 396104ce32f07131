/**
 * Packs a directory into a reproducible .tar.gz for the CLI: entries sorted by path, mtime 0,
 * no uid/gid/uname/gname, modes normalised to 0755 (dirs, executables, symlinks 0777) / 0644,
 * symlinks stored as links (never followed), pax headers only for long or non-ASCII names.
 * Leaves out `.git`, `node_modules`, every dotfile and dot-directory, and what `.zerocellignore`
 * (gitignore syntax, read with the `ignore` library; `!` re-includes) names; reports what it left
 * out. Must never: leave out zerocell.toml, or follow a symlink.
 */
import { lstat, readdir, readFile, readlink } from "node:fs/promises";
import ignore, { type Ignore } from "ignore";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { Header, Pax } from "tar";
import { BundleError } from "../errors.js";
import { q } from "./errors.js";
import { MANIFEST_FILE } from "./manifest.js";
import type { BundleEntry } from "./archive.js";

const EPOCH = new Date(0);
const GZIP_OS_UNIX = 3;

interface PackItem {
  /** Relative posix path, no trailing slash. */
  path: string;
  kind: "file" | "dir" | "symlink";
  mode: number;
  abs: string;
}

/** What the packer leaves out unless .zerocellignore re-includes it ("!.well-known/"). */
export const DEFAULT_PACK_IGNORES = [".*", "node_modules/", ".git/"];
export const IGNORE_FILE = ".zerocellignore";
/** Largest .zerocellignore read, bytes. */
const MAX_IGNORE_FILE_BYTES = 64 * 1024;

async function walk(root: string, rel: string, out: PackItem[], ig: Ignore, skipped: string[]): Promise<void> {
  const abs = rel === "" ? root : join(root, ...rel.split("/"));
  const names = await readdir(abs);
  for (const name of names) {
    const path = rel === "" ? name : `${rel}/${name}`;
    const childAbs = join(abs, name);
    const st = await lstat(childAbs);
    if (path !== MANIFEST_FILE && ig.ignores(st.isDirectory() ? `${path}/` : path)) {
      skipped.push(st.isDirectory() ? `${path}/` : path);
      continue;
    }
    if (st.isDirectory()) {
      out.push({ path, kind: "dir", mode: 0o755, abs: childAbs });
      await walk(root, path, out, ig, skipped);
    } else if (st.isFile()) {
      out.push({ path, kind: "file", mode: st.mode & 0o111 ? 0o755 : 0o644, abs: childAbs });
    } else if (st.isSymbolicLink()) {
      out.push({ path, kind: "symlink", mode: 0o777, abs: childAbs });
    } else {
      throw new BundleError("bundle_bad_entry", `pack: ${q(path)} is not a regular file, directory or symlink`, {
        details: { entry: path },
      });
    }
  }
}

function headerBlocks(fields: {
  path: string;
  type: "File" | "Directory" | "SymbolicLink";
  mode: number;
  size: number;
  linkpath?: string;
}): Buffer[] {
  const header = new Header({
    path: fields.path,
    type: fields.type,
    mode: fields.mode,
    size: fields.size,
    mtime: EPOCH,
    linkpath: fields.linkpath ?? "",
  });
  const block = Buffer.alloc(512);
  const needPax = header.encode(block, 0);
  if (!needPax) return [block];
  const pax = new Pax({
    path: fields.path,
    linkpath: fields.linkpath,
    size: fields.size,
    mtime: EPOCH,
  });
  return [pax.encode(), block];
}

/** An uncompressed tar of entries in the given order (mtime 0, no owners): bundles, key exports. */
export function imageToTar(entries: readonly BundleEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    if (e.kind === "dir") {
      blocks.push(...headerBlocks({ path: e.path + "/", type: "Directory", mode: e.mode, size: 0 }));
    } else if (e.kind === "symlink") {
      blocks.push(...headerBlocks({ path: e.path, type: "SymbolicLink", mode: e.mode, size: 0, linkpath: e.target ?? "" }));
    } else {
      const data = e.data ?? Buffer.alloc(0);
      blocks.push(...headerBlocks({ path: e.path, type: "File", mode: e.mode, size: data.length }));
      blocks.push(data);
      const pad = (512 - (data.length % 512)) % 512;
      if (pad > 0) blocks.push(Buffer.alloc(pad));
    }
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

/** Packs a directory into a reproducible .tar.gz. Refuses if the dir has no zerocell.toml. */
export async function packDirectory(dir: string): Promise<Buffer> {
  return (await packDirectoryReport(dir)).archive;
}

/** packDirectory, and the paths it left out (directories once, with a trailing "/"), sorted. */
export async function packDirectoryReport(dir: string): Promise<{ archive: Buffer; skipped: string[] }> {
  const rootStat = await lstat(dir).catch(() => undefined);
  if (rootStat === undefined || !rootStat.isDirectory()) {
    throw new BundleError("bundle_bad_entry", `pack: ${q(dir)} is not a directory`);
  }
  const manifestStat = await lstat(join(dir, MANIFEST_FILE)).catch(() => undefined);
  if (manifestStat === undefined || !manifestStat.isFile()) {
    throw new BundleError("manifest_missing", `pack: ${q(dir)} has no ${MANIFEST_FILE} (it must be a regular file at the top of the directory)`);
  }
  const ig = ignore().add(DEFAULT_PACK_IGNORES);
  const ignoreStat = await lstat(join(dir, IGNORE_FILE)).catch(() => undefined);
  if (ignoreStat?.isFile() === true) {
    if (ignoreStat.size > MAX_IGNORE_FILE_BYTES) throw new BundleError("bundle_bad_entry", `pack: ${IGNORE_FILE} is ${ignoreStat.size} bytes, exceeds the limit of ${MAX_IGNORE_FILE_BYTES} bytes`);
    ig.add(await readFile(join(dir, IGNORE_FILE), "utf8"));
  }
  const items: PackItem[] = [];
  const skipped: string[] = [];
  await walk(dir, "", items, ig, skipped);
  skipped.sort();
  items.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));

  const entries: BundleEntry[] = [];
  for (const item of items) {
    if (item.kind === "dir") entries.push({ path: item.path, kind: "dir", mode: item.mode });
    else if (item.kind === "symlink") entries.push({ path: item.path, kind: "symlink", mode: item.mode, target: await readlink(item.abs) });
    else entries.push({ path: item.path, kind: "file", mode: item.mode, data: await readFile(item.abs) });
  }
  const gz = gzipSync(imageToTar(entries), { level: 9 });
  // The gzip header carries the OS byte of the zlib build; pin it so the output is the same everywhere.
  gz[9] = GZIP_OS_UNIX;
  return { archive: gz, skipped };
}
