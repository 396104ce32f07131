/**
 * Snapshot images as files a sandbox host maps (gateway side): a stored snapshot's memory is
 * decompressed once into a file (per snapshot blob, content-addressed), and a host that restores
 * it maps that file over its wasm memory (MAP_PRIVATE: the clean pages are the page cache's,
 * shared by every host of the deployment) instead of receiving 30+ MB through its pipe.
 *
 * Who may read what (hosts run as a uid of their own, HOST_UID_BASE + n, no groups; the mapping
 * is done with libc's open(), which Node's permission model does not see, so Unix permissions are
 * the wall):
 *   ROOT/            0711, the gateway's (a temp dir: disk-backed page cache, gone at exit)
 *   ROOT/m/<sha>     0700 directory / 0444 files: every decompressed image; no host can enter
 *   ROOT/h<uid>/     root:<uid> 0750: only the host running as that uid can enter (and not
 *                    write: it is not the owner); holds hard links to the images handed to it
 * A hard link is made when a host of a deployment is handed that deployment's snapshot (after
 * the spare is taken, so a spare never holds any tenant's bytes), and the host's directory is
 * emptied when it exits and before its uid is used again.
 * The root is named after the gateway's pid (`zerocell-snapshots-<pid>-XXXXXX`): images are
 * guest memory in plaintext (decrypted from the sealed store), so a gateway that starts removes
 * the roots of gateways that died without cleaning up (kill -9, a crash, a power cut on a
 * disk-backed temp dir) — any whose pid no longer runs.
 * Must never: link an image into the directory of a host of another deployment, or leave a
 * host's directory readable by any other uid.
 */
import { chmodSync, chownSync, existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statfsSync, unlinkSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LRUCache } from "lru-cache";

/** A decompressed snapshot image on disk: what a host maps. */
export interface SnapshotFile {
  /** The image's path in the gateway's store (never sent to a host). */
  path: string;
  /** Bytes of linear memory the image covers. */
  bytes: number;
  /** Content address of the stored (gzip'd) snapshot it was made from. */
  sha256: string;
  /** Bytes written to disk (blocks of zeros are holes): what it takes of the disk budget. */
  diskBytes?: number;
}

export interface SnapshotFileLimits {
  /** Disk the decompressed images may take (written bytes: holes are free); the least recently used are unlinked past it, bytes. */
  maxBytes: number;
}

const GiB = 1024 * 1024 * 1024;

/**
 * The disk the gateway's images may take: a quarter of what is free in `parent` when the gateway
 * starts, between 1 and 32 GiB (4 GiB where that cannot be read). A fixed 4 GiB held ~190 hello
 * images (~22 MB written each): with 1,000 apps deployed, the first apps' images were gone before
 * their first restore (bench/density.mjs: 2.5 s of `s-snapfetch` per cold start).
 */
export function defaultSnapshotFileLimits(parent = tmpdir()): SnapshotFileLimits {
  try {
    const st = statfsSync(parent);
    return { maxBytes: Math.min(32 * GiB, Math.max(1 * GiB, Math.floor((st.bavail * st.bsize) / 4))) };
  } catch {
    return { maxBytes: 4 * GiB };
  }
}

const SHA = /^[0-9a-f]{64}$/;

export class SnapshotFiles {
  readonly root: string;
  readonly #images: string;
  readonly #lru: LRUCache<string, SnapshotFile>;
  /** Whether hosts run as uids of their own (root only): per-host directories are chown'd. */
  readonly #isRoot = process.getuid?.() === 0;

  readonly limits: SnapshotFileLimits;

  constructor(limits: SnapshotFileLimits = defaultSnapshotFileLimits(), parent = tmpdir()) {
    this.limits = limits;
    removeOrphanRoots(parent);
    this.root = mkdtempSync(join(parent, `${ROOT_PREFIX}${process.pid}-`));
    chmodSync(this.root, 0o711);
    this.#images = join(this.root, "m");
    mkdirSync(this.#images, { mode: 0o700 });
    this.#lru = new LRUCache<string, SnapshotFile>({
      maxSize: limits.maxBytes,
      sizeCalculation: (f) => Math.max(1, f.diskBytes ?? f.bytes),
      // A host that maps it keeps the inode; only the name goes.
      dispose: (f) => tryUnlink(f.path),
    });
  }

  /** The image made from stored snapshot `sha256`, if it is on disk. */
  get(sha256: string): SnapshotFile | undefined {
    const f = this.#lru.get(sha256);
    if (f !== undefined && !existsSync(f.path)) {
      this.#lru.delete(sha256);
      return undefined;
    }
    return f;
  }

  /** Writes `memory` as the image of stored snapshot `sha256`: `write` with the bytes in one piece. */
  put(sha256: string, memory: Uint8Array): Promise<SnapshotFile> {
    return this.write(sha256, memory.length, [memory]);
  }

  /**
   * Writes the image of stored snapshot `sha256`, `bytes` long, from `chunks` in order (once;
   * temp file + rename): the only writer. Streamed: the image is never whole in this process
   * (a gunzip's output goes straight to disk in 1 MiB runs; a whole 28 MB image per write was
   * memory glibc kept in the gateway). Off the event loop (libuv's threads), sparse (64 KiB
   * blocks of zeros are holes: no disk, no page cache, and a mapping reads them as zeros),
   * fsync'd before the rename (not for durability — the images are a cache — so a host never
   * maps pages still being written back). Chunks that add up to more or fewer than `bytes`
   * leave no file and reject.
   */
  async write(sha256: string, bytes: number, chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<SnapshotFile> {
    if (!SHA.test(sha256)) throw new Error("snapshot files: bad content address");
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new Error("snapshot files: bad image length");
    const have = this.get(sha256);
    if (have !== undefined) return have;
    const path = join(this.#images, sha256);
    const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
    const fh = await open(tmp, "wx", 0o444);
    const out = new SparseWriter((buf, at) => writeAll(fh, buf, at));
    try {
      await fh.truncate(bytes);
      for await (const c of chunks) {
        if (out.offset + out.pending + c.length > bytes) throw new Error(`snapshot files: the image is longer than its ${bytes} bytes`);
        await out.push(c);
      }
      await out.end();
      if (out.offset !== bytes) throw new Error(`snapshot files: the image is ${out.offset} bytes, not ${bytes}`);
      await fh.sync();
    } catch (e) {
      await fh.close().catch(() => {});
      tryUnlink(tmp);
      throw e;
    }
    await fh.close();
    // Another write of the same image may have won meanwhile: the same bytes either way.
    renameSync(tmp, path);
    const file: SnapshotFile = { path, bytes, sha256, diskBytes: out.written };
    this.#lru.set(sha256, file);
    return file;
  }

  /** The directory of the host running as `uid` (made empty and private to that uid). */
  #hostDir(uid: number): string {
    if (!Number.isInteger(uid) || uid < 0) throw new Error("snapshot files: bad uid");
    return join(this.root, `h${uid}`);
  }

  /**
   * Hands `file` to the host running as `uid` (undefined: hosts run as the gateway's own uid):
   * a hard link in that host's private directory. Returns the path the host opens.
   */
  link(file: SnapshotFile, uid: number | undefined): string {
    const dir = this.#hostDir(uid ?? process.getuid?.() ?? 0);
    if (!existsSync(dir)) {
      mkdirSync(dir, { mode: 0o700 });
      if (this.#isRoot && uid !== undefined) {
        chownSync(dir, 0, uid);
        chmodSync(dir, 0o750);
      }
    }
    const target = join(dir, file.sha256);
    if (!existsSync(target)) linkSync(file.path, target);
    return target;
  }

  /** Empties the directory of the host that ran as `uid` (it exited, or its uid is reused). */
  release(uid: number | undefined): void {
    const dir = this.#hostDir(uid ?? process.getuid?.() ?? 0);
    try {
      for (const name of readdirSync(dir)) tryUnlink(join(dir, name));
    } catch {
      // never made
    }
  }

  /**
   * Whether an image of up to `bytes` fits beside the others without unlinking any: a file made
   * ahead of demand (SnapshotStore.prefetchFile) must not push out one that a start will want.
   */
  hasRoomFor(bytes: number): boolean {
    return this.#lru.calculatedSize + bytes <= this.limits.maxBytes;
  }

  /** Bytes of images on disk now (diagnostics). */
  stats(): { files: number; bytes: number } {
    return { files: this.#lru.size, bytes: this.#lru.calculatedSize };
  }

  /** Removes everything (gateway stop). */
  close(): void {
    this.#lru.clear();
    rmSync(this.root, { recursive: true, force: true });
  }
}

const ROOT_PREFIX = "zerocell-snapshots-";

/** Sparse files: blocks of this size that are all zeros are left as holes. */
const SPARSE_BLOCK = 64 * 1024;
/** Longest run of non-zero blocks written at once. */
const RUN_BYTES = 16 * SPARSE_BLOCK;
const ZEROS = Buffer.alloc(SPARSE_BLOCK);

async function writeAll(fh: FileHandle, buf: Buffer, at: number): Promise<void> {
  for (let done = 0; done < buf.length; ) done += (await fh.write(buf, done, buf.length - done, at + done)).bytesWritten;
}

/**
 * Bytes in order → writes at their offsets, skipping 64 KiB blocks of zeros (holes) and joining
 * the others into runs of up to 1 MiB (two fixed buffers, whatever the image's size).
 */
class SparseWriter {
  /** Bytes taken in whole blocks (those still in the partial block are `pending`). */
  offset = 0;
  /** Bytes written (not holes). */
  written = 0;
  readonly #block = Buffer.allocUnsafe(SPARSE_BLOCK);
  #fill = 0;
  readonly #run = Buffer.allocUnsafe(RUN_BYTES);
  #runLen = 0;
  #runAt = 0;
  readonly #write: (buf: Buffer, at: number) => Promise<void>;

  constructor(write: (buf: Buffer, at: number) => Promise<void>) {
    this.#write = write;
  }

  /** Bytes taken but not yet in a whole block. */
  get pending(): number {
    return this.#fill;
  }

  async push(c: Uint8Array): Promise<void> {
    for (let i = 0; i < c.length; ) {
      const n = Math.min(SPARSE_BLOCK - this.#fill, c.length - i);
      this.#block.set(c.subarray(i, i + n), this.#fill);
      this.#fill += n;
      i += n;
      if (this.#fill === SPARSE_BLOCK) await this.#takeBlock();
    }
  }

  /** The last, partial block; then everything is written. */
  async end(): Promise<void> {
    if (this.#fill > 0) await this.#takeBlock();
    await this.#flush();
  }

  async #takeBlock(): Promise<void> {
    const n = this.#fill;
    this.#fill = 0;
    if (this.#block.compare(ZEROS, 0, n, 0, n) === 0) {
      // A hole: the file was truncated to its length, so it reads as zeros.
      await this.#flush();
      this.offset += n;
      return;
    }
    if (this.#runLen + n > RUN_BYTES) await this.#flush();
    if (this.#runLen === 0) this.#runAt = this.offset;
    this.#block.copy(this.#run, this.#runLen, 0, n);
    this.#runLen += n;
    this.offset += n;
  }

  async #flush(): Promise<void> {
    if (this.#runLen === 0) return;
    const len = this.#runLen;
    this.#runLen = 0;
    await this.#write(this.#run.subarray(0, len), this.#runAt);
    this.written += len;
  }
}
const ROOT_NAME = /^zerocell-snapshots-(\d{1,10})-[A-Za-z0-9]{6}$/;

/** Whether a process with this pid exists (EPERM: it does, as another user). */
function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Removes the snapshot roots in `parent` left by gateways that are gone: named by a pid that no
 * longer runs. Roots of running gateways (other servers on the machine) are left alone; a pid
 * reused by another process only delays the removal to a later start.
 */
export function removeOrphanRoots(parent: string): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(parent);
  } catch {
    return removed;
  }
  for (const name of names) {
    const m = ROOT_NAME.exec(name);
    if (m === null) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || pidAlive(pid)) continue;
    try {
      rmSync(join(parent, name), { recursive: true, force: true });
      removed.push(name);
    } catch {
      // another gateway removed it first, or it is not ours to remove
    }
  }
  return removed;
}

function tryUnlink(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // gone already
  }
}

let shared: SnapshotFiles | null | undefined;

/**
 * The gateway process's snapshot files (made on first use; removed at exit), or undefined where
 * the temp dir cannot hold them (then snapshots travel through the pipe as before).
 */
export function snapshotFiles(): SnapshotFiles | undefined {
  if (shared !== undefined) return shared ?? undefined;
  try {
    const files = new SnapshotFiles();
    shared = files;
    process.once("exit", () => files.close());
    return files;
  } catch {
    shared = null;
    return undefined;
  }
}
