/**
 * Walls of php-wasm's in-memory file system (Emscripten MEMFS), which lives in the host's JS
 * heap and checks mode bits but lets anyone change them: mode and owner changes only inside the
 * writable scratch directories, `/` read-only, and a byte quota per scratch directory that counts
 * every file still held, by the tree or by an open descriptor.
 * Must never: let guest code make the image or the platform's files writable, or hold more
 * bytes in the host than its quotas.
 */

/** Emscripten's errno numbers (its ERRNO_CODES table). */
const EPERM = 63;
const ENOSPC = 51;
const O_APPEND = 0o2000;

export interface FsNode {
  mode: number;
  usedBytes?: number;
}

export interface FsStream {
  path?: string;
  flags?: number;
  position: number;
  node?: FsNode;
}

/** The parts of Emscripten's FS object these walls use (not in php-wasm's typings). */
export interface WalledFs {
  streams: Array<FsStream | null | undefined>;
  doChmod(stream: unknown, node: FsNode, mode: number, dontFollow: boolean): void;
  doChown(stream: unknown, node: FsNode, dontFollow: boolean): void;
  doTruncate(stream: unknown, node: FsNode, len: number): void;
  write(stream: FsStream, buffer: Uint8Array, offset: number, length: number, position?: number, canOwn?: boolean): number;
  chmod(path: string, mode: number): void;
  getPath(node: FsNode): string;
  readdir(path: string): string[];
  lookupPath(path: string, opts: { follow: boolean }): { node: FsNode };
  isDir(mode: number): boolean;
  isFile(mode: number): boolean;
  ErrnoError: new (errno: number) => Error;
}

function isUnder(path: string, dirs: readonly string[]): boolean {
  return dirs.some((d) => path.startsWith(`${d}/`));
}

/**
 * chmod, lchmod, fchmod, chown, lchown, fchown and their *at forms all end in FS.doChmod /
 * FS.doChown: refuse both (EPERM) for anything that is not strictly inside `writable` (the
 * directories themselves included: a /tmp of mode 0 would outlive the request). Then make `/`
 * read-only so /app cannot be renamed away and replaced. Call after the image is in place.
 */
export function lockFileSystem(FS: WalledFs, writable: readonly string[]): void {
  if (typeof FS.doChmod !== "function" || typeof FS.doChown !== "function") throw new Error("zerocell: php-wasm FS has no doChmod/doChown; cannot lock it");
  FS.chmod("/", 0o555);
  const doChmod = FS.doChmod.bind(FS);
  const doChown = FS.doChown.bind(FS);
  FS.doChmod = (stream, node, mode, dontFollow) => {
    if (!isUnder(FS.getPath(node), writable)) throw new FS.ErrnoError(EPERM);
    doChmod(stream, node, mode, dontFollow);
  };
  FS.doChown = (stream, node, dontFollow) => {
    if (!isUnder(FS.getPath(node), writable)) throw new FS.ErrnoError(EPERM);
    doChown(stream, node, dontFollow);
  };
}

/** A scratch directory and its quota, bytes. */
export interface DirQuota {
  dir: string;
  bytes: number;
}

/**
 * Caps the bytes each directory holds in the host: writes, truncates and allocations that would
 * grow a file past its directory's quota fail with ENOSPC. A file counts from its first byte
 * until it is gone from the tree *and* its last descriptor is closed (an unlinked file that is
 * still open keeps its bytes). The exact total is only computed when a cheap running upper
 * bound passes the quota.
 */
export function limitDirs(FS: WalledFs, quotas: readonly DirQuota[]): void {
  const bound = new Map<string, number>(quotas.map((q) => [q.dir, 0]));
  const quotaOf = (node: FsNode): DirQuota | undefined => {
    const path = FS.getPath(node);
    return quotas.find((q) => path.startsWith(`${q.dir}/`));
  };

  /** Bytes of distinct files under `dir`: those in the tree plus those open there. */
  const exact = (dir: string): number => {
    const seen = new Set<FsNode>();
    const walk = (path: string) => {
      for (const name of FS.readdir(path)) {
        if (name === "." || name === "..") continue;
        const child = `${path}/${name}`;
        const node = FS.lookupPath(child, { follow: false }).node;
        if (FS.isDir(node.mode)) walk(child);
        else seen.add(node);
      }
    };
    walk(dir);
    for (const stream of FS.streams) {
      const node = stream?.node;
      if (node !== undefined && FS.isFile(node.mode) && FS.getPath(node).startsWith(`${dir}/`)) seen.add(node);
    }
    let total = 0;
    for (const node of seen) total += node.usedBytes ?? 0;
    return total;
  };

  /** Throws ENOSPC unless `node` may grow to `size` bytes. */
  const charge = (node: FsNode | undefined, size: number) => {
    if (node === undefined || !FS.isFile(node.mode)) return;
    const growth = size - (node.usedBytes ?? 0);
    if (growth <= 0) return;
    const q = quotaOf(node);
    if (q === undefined) return;
    let b = bound.get(q.dir)! + growth;
    if (b > q.bytes) {
      b = exact(q.dir) + growth;
      if (b > q.bytes) {
        bound.set(q.dir, b - growth);
        throw new FS.ErrnoError(ENOSPC);
      }
    }
    bound.set(q.dir, b);
  };

  const write = FS.write.bind(FS);
  FS.write = (stream, buffer, offset, length, position, canOwn) => {
    // O_APPEND writes at the end whatever the position says (another descriptor may have grown it).
    const at = (stream.flags ?? 0) & O_APPEND ? (stream.node?.usedBytes ?? 0) : (position ?? stream.position);
    charge(stream.node, at + length);
    return write(stream, buffer, offset, length, position, canOwn);
  };
  // ftruncate()/truncate() to a larger size allocate the whole new size at once.
  const doTruncate = FS.doTruncate.bind(FS);
  FS.doTruncate = (stream, node, len) => {
    charge(node, len);
    doTruncate(stream, node, len);
  };
}
