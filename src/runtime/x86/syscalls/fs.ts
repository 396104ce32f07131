/**
 * The guest's file tree: the bundle image under /app (read-only), /dev, a private /tmp and a
 * key's /data (writable mounts with byte and inode quotas), the descriptor table, and the copies
 * snapshots make of them.
 *
 * Quota rule: a node of a writable mount is charged (bytes and inode) while it is in the tree or
 * while a descriptor refers to it; an unlinked file still open stays charged until its last
 * descriptor closes, as on Linux (`unlinked`, `released`).
 *
 * Must never: hold a host path, or share a node between a snapshot and a live run.
 */
import { decodeImage, encodeImage, type BundleEntry, type BundleImage } from "../../../bundle/index.js";
import { E } from "./abi.js";

/** Descriptors per guest. */
export const MAX_FDS = 256;
/** Longest path a system call accepts (bytes). */
export const MAX_PATH = 4096;
const MAX_SYMLINKS = 40;
/** Files and directories per writable mount. */
export const MAX_FILES_PER_MOUNT = 10_000;

export interface Mount {
  name: "/tmp" | "/data";
  quota: number;
  used: number;
  files: number;
}

interface NodeBase {
  ino: number;
  mode: number;
  mtimeNs: bigint;
  /** Set on nodes of a writable mount (/tmp, /data). */
  mount: Mount | undefined;
}
export interface DirNode extends NodeBase {
  kind: "dir";
  children: Map<string, FsNode>;
  parent: DirNode;
  /** Removed (rmdir, renamed over) while a descriptor or the cwd still names it: nothing is created in it. */
  removed?: boolean;
}
export interface FileNode extends NodeBase {
  kind: "file";
  data: Buffer;
  size: number;
  /**
   * Out of the tree (unlinked or renamed over) while a descriptor still refers to it: its bytes
   * and its inode stay charged to the mount until the last such descriptor closes, as on Linux.
   */
  orphan?: boolean;
}
export interface LinkNode extends NodeBase {
  kind: "symlink";
  target: string;
}
export interface DevNode extends NodeBase {
  kind: "dev";
  dev: "null" | "zero" | "urandom";
}
export type FsNode = DirNode | FileNode | LinkNode | DevNode;

export type Stream = "stdin" | "stdout" | "stderr";

/** An open file description (shared by dup'ed descriptors, like POSIX). */
export interface OpenFile {
  node: FsNode | Stream;
  pos: number;
  flags: number;
  readable: boolean;
  writable: boolean;
  path: boolean;
}

export interface FdEntry {
  file: OpenFile;
  cloexec: boolean;
}

export interface FsSnapshot {
  tmp: DirNode;
  fds: Array<FdEntry | undefined>;
  cwd: string;
  nextIno: number;
  tmpUsed: number;
  tmpFiles: number;
}

export class GuestFs {
  readonly root: DirNode;
  readonly app: DirNode;
  tmp: DirNode;
  readonly tmpMount: Mount;
  dataMount: Mount | undefined;
  nextIno = 100;
  cwd: DirNode;
  fds: Array<FdEntry | undefined> = [];

  constructor(image: BundleImage, tmpQuota: number) {
    this.root = this.#dir(undefined, 0o555, undefined);
    this.app = this.#dir(this.root, 0o555, undefined);
    this.root.children.set("app", this.app);
    const dev = this.#dir(this.root, 0o555, undefined);
    this.root.children.set("dev", dev);
    for (const d of ["null", "zero", "urandom", "random"] as const) {
      dev.children.set(d, { kind: "dev", dev: d === "random" ? "urandom" : d, ino: this.nextIno++, mode: 0o666, mtimeNs: 0n, mount: undefined });
    }
    this.tmpMount = { name: "/tmp", quota: tmpQuota, used: 0, files: 0 };
    this.tmp = this.#dir(this.root, 0o1777, this.tmpMount);
    this.root.children.set("tmp", this.tmp);
    for (const e of image.entries) this.#addImageEntry(e);
    this.cwd = this.app;
    this.resetStreams();
  }

  #dir(parent: DirNode | undefined, mode: number, mount: Mount | undefined): DirNode {
    const d = { kind: "dir", children: new Map(), ino: this.nextIno++, mode, mtimeNs: 0n, mount } as unknown as DirNode;
    d.parent = parent ?? d;
    return d;
  }

  #addImageEntry(e: BundleEntry): void {
    const parts = e.path.split("/").filter((p) => p !== "");
    if (parts.length === 0) return;
    let d = this.app;
    for (const p of parts.slice(0, -1)) {
      let next = d.children.get(p);
      if (next === undefined) {
        next = this.#dir(d, 0o555, undefined);
        d.children.set(p, next);
      }
      if (next.kind !== "dir") return;
      d = next;
    }
    const name = parts[parts.length - 1]!;
    if (e.kind === "dir") {
      if (!d.children.has(name)) d.children.set(name, this.#dir(d, 0o555, undefined));
    } else if (e.kind === "file") {
      const data = e.data ?? Buffer.alloc(0);
      d.children.set(name, { kind: "file", data, size: data.length, ino: this.nextIno++, mode: (e.mode & 0o555) | 0o444, mtimeNs: 0n, mount: undefined });
    } else if (e.kind === "symlink" && e.target !== undefined) {
      d.children.set(name, { kind: "symlink", target: e.target, ino: this.nextIno++, mode: 0o777, mtimeNs: 0n, mount: undefined });
    }
  }

  /** The program file of the bundle (path relative to the bundle root). */
  lookupImageFile(path: string): FileNode | undefined {
    const r = this.resolve(`/app/${path}`, true);
    return typeof r !== "number" && r.node?.kind === "file" ? r.node : undefined;
  }

  resetStreams(): void {
    const mk = (node: Stream, readable: boolean): FdEntry => ({ file: { node, pos: 0, flags: readable ? 0 : 1, readable, writable: !readable, path: false }, cloexec: false });
    this.fds = [mk("stdin", true), mk("stdout", false), mk("stderr", false)];
  }

  pathOf(d: DirNode): string {
    const names: string[] = [];
    let cur = d;
    while (cur !== this.root) {
      const parent = cur.parent;
      let found: string | undefined;
      for (const [n, c] of parent.children) if (c === cur) found = n;
      if (found === undefined) return "/";
      names.unshift(found);
      cur = parent;
    }
    return "/" + names.join("/");
  }

  /**
   * Resolves a path. Returns an errno, or the parent directory, the last name and the node
   * (undefined when only the last component is missing: the caller may create it).
   */
  resolve(path: string, followLast: boolean, base: DirNode = this.cwd): number | { parent: DirNode; name: string; node: FsNode | undefined } {
    if (path.length === 0) return E.NOENT;
    if (path.length > MAX_PATH) return E.NAMETOOLONG;
    let hops = 0;
    let dir = path.startsWith("/") ? this.root : base;
    let parts = path.split("/").filter((p) => p !== "" && p !== ".");
    if (parts.length === 0) return { parent: dir.parent, name: ".", node: dir };
    for (let i = 0; i < parts.length; i++) {
      const name = parts[i]!;
      const last = i === parts.length - 1;
      if (name.length > 255) return E.NAMETOOLONG;
      if (name === "..") {
        dir = dir.parent;
        if (last) return { parent: dir.parent, name: ".", node: dir };
        continue;
      }
      const node = dir.children.get(name);
      if (node === undefined) return last ? { parent: dir, name, node: undefined } : E.NOENT;
      if (node.kind === "symlink" && (!last || followLast)) {
        if (++hops > MAX_SYMLINKS) return E.LOOP;
        const rest = parts.slice(i + 1);
        const target = node.target.split("/").filter((p) => p !== "" && p !== ".");
        if (node.target.startsWith("/")) dir = this.root;
        parts = [...target, ...rest];
        i = -1;
        if (parts.length === 0) return { parent: dir.parent, name: ".", node: dir };
        continue;
      }
      if (last) return { parent: dir, name, node };
      if (node.kind !== "dir") return E.NOTDIR;
      dir = node;
    }
    return E.NOENT;
  }

  // ---- /data (keyed routes) -----------------------------------------------------------------

  mountData(encoded: Uint8Array, quota: number): Map<string, Buffer> {
    this.unmountData();
    const mount: Mount = { name: "/data", quota, used: 0, files: 0 };
    this.dataMount = mount;
    const data = this.#dir(this.root, 0o777, mount);
    this.root.children.set("data", data);
    const files = new Map<string, Buffer>();
    for (const e of decodeImage(Buffer.from(encoded.buffer, encoded.byteOffset, encoded.byteLength)).entries) {
      const parts = e.path.split("/").filter((p) => p !== "");
      let d = data;
      for (const p of parts.slice(0, -1)) {
        let next = d.children.get(p);
        if (next === undefined) {
          next = this.#dir(d, 0o777, mount);
          d.children.set(p, next);
        }
        if (next.kind !== "dir") break;
        d = next;
      }
      const name = parts[parts.length - 1];
      if (name === undefined) continue;
      if (e.kind === "dir" && !d.children.has(name)) d.children.set(name, this.#dir(d, 0o777, mount));
      else if (e.kind === "file") {
        const buf = Buffer.from(e.data ?? Buffer.alloc(0));
        d.children.set(name, { kind: "file", data: buf, size: buf.length, ino: this.nextIno++, mode: 0o666, mtimeNs: 0n, mount });
        mount.used += buf.length;
        mount.files++;
        files.set(e.path, buf);
      }
    }
    return files;
  }

  /** The /data tree as an encoded image when it differs from `before`, else undefined. */
  changedData(before: Map<string, Buffer>): Uint8Array | undefined {
    const data = this.root.children.get("data");
    if (data === undefined || data.kind !== "dir") return undefined;
    const entries: BundleEntry[] = [];
    let changed = false;
    let same = 0;
    let totalBytes = 0;
    const walk = (d: DirNode, rel: string) => {
      for (const [name, node] of [...d.children].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
        const path = rel === "" ? name : `${rel}/${name}`;
        if (node.kind === "dir") {
          entries.push({ path, kind: "dir", mode: 0o755 });
          walk(node, path);
        } else if (node.kind === "file") {
          const buf = Buffer.from(node.data.subarray(0, node.size));
          totalBytes += buf.length;
          entries.push({ path, kind: "file", mode: 0o644, data: buf });
          const old = before.get(path);
          if (old === undefined || !old.equals(buf)) changed = true;
          else same++;
        }
      }
    };
    walk(data, "");
    if (!changed && same === before.size) return undefined;
    return encodeImage({ entries, totalBytes });
  }

  unmountData(): void {
    const mount = this.dataMount;
    this.root.children.delete("data");
    this.dataMount = undefined;
    if (mount === undefined) return;
    // The key's tree ends with its request: descriptors into it are closed (their bytes were
    // charged to this mount only; a later request gets a fresh quota), and a working directory
    // inside it moves back to /app.
    this.fds = this.fds.map((e) => (e !== undefined && typeof e.file.node !== "string" && e.file.node.mount === mount ? undefined : e));
    if (this.cwd.mount === mount) this.cwd = this.app;
  }

  // ---- accounting of writable mounts ---------------------------------------------------------

  /** Whether a descriptor refers to the node. */
  isOpen(node: FsNode): boolean {
    return this.fds.some((e) => e !== undefined && e.file.node === node);
  }

  /**
   * A node of a writable mount left the tree (unlink, rmdir, rename over it): its inode and bytes
   * are credited back now, or, for a file still open, when its last descriptor closes.
   */
  unlinked(n: FsNode): void {
    const mount = n.mount!;
    if (n.kind === "dir") n.removed = true; // only empty directories leave the tree
    if (n.kind === "file" && this.isOpen(n)) {
      n.orphan = true;
      return;
    }
    mount.files--;
    if (n.kind === "file") mount.used -= n.size;
  }

  /** A descriptor of `file` was dropped: an orphan nobody refers to any more is credited back. */
  released(file: OpenFile): void {
    const n = file.node;
    if (typeof n === "string" || n.kind !== "file" || n.orphan !== true || this.isOpen(n)) return;
    n.orphan = false;
    n.mount!.files--;
    n.mount!.used -= n.size;
  }

  // ---- snapshots ----------------------------------------------------------------------------

  snapshot(): FsSnapshot {
    const map = new Map<FsNode, FsNode>();
    const tmp = cloneDir(this.tmp, this.root, map);
    // Orphans (open, unlinked) are copied too: tmpUsed includes their bytes.
    const fds = cloneFds(this.fds, map);
    return { tmp, fds, cwd: this.pathOf(this.cwd), nextIno: this.nextIno, tmpUsed: this.tmpMount.used, tmpFiles: this.tmpMount.files };
  }

  /** Restores /tmp and the descriptor table (keepTmp: descriptors only, /tmp as it is). */
  restore(s: FsSnapshot, keepTmp = false): void {
    const map = new Map<FsNode, FsNode>();
    if (!keepTmp) {
      this.tmp = cloneDir(s.tmp, this.root, map);
      this.root.children.set("tmp", this.tmp);
      this.tmpMount.used = s.tmpUsed;
      this.tmpMount.files = s.tmpFiles;
      this.nextIno = s.nextIno;
    } else {
      // The finished run's descriptors all close: the orphans they held are credited back.
      const old = this.fds;
      this.fds = [];
      for (const e of old) if (e !== undefined) this.released(e.file);
    }
    // Descriptors of the snapshot point at copies of snapshot nodes; with keepTmp those copies
    // are out of the live tree: orphans, charged until closed, like a file unlinked while open.
    this.fds = cloneFds(s.fds, map);
    if (keepTmp) {
      for (const n of new Set(this.fds.map((e) => e?.file.node))) {
        if (n === undefined || typeof n === "string" || n.kind !== "file" || n.mount === undefined) continue;
        n.orphan = true;
        n.mount.files++;
        n.mount.used += n.size;
      }
    }
    const cwd = this.resolve(s.cwd, true, this.root);
    this.cwd = typeof cwd !== "number" && cwd.node?.kind === "dir" ? cwd.node : this.app;
    this.unmountData();
  }

  /** JSON-safe form of a snapshot (file contents base64). */
  exportSnapshot(s: FsSnapshot): unknown {
    const ids = new Map<FsNode, number>();
    let next = 0;
    const enc = (n: FsNode): unknown => {
      ids.set(n, next++);
      switch (n.kind) {
        case "dir":
          return { k: "d", m: n.mode, c: [...n.children].map(([name, c]) => [name, enc(c)]) };
        case "file":
          return { k: "f", m: n.mode, d: n.data.subarray(0, n.size).toString("base64"), t: n.mtimeNs.toString() };
        case "symlink":
          return { k: "l", t: n.target };
        case "dev":
          return { k: "v" };
      }
    };
    const tree = enc(s.tmp);
    // Open files out of the tree (unlinked while open) follow it, numbered on.
    const orphans: unknown[] = [];
    for (const e of s.fds) {
      const n = e?.file.node;
      if (n !== undefined && typeof n !== "string" && n.kind === "file" && n.mount !== undefined && !ids.has(n)) orphans.push(enc(n));
    }
    const fds = s.fds.map((e) => {
      if (e === undefined) return null;
      const f = e.file;
      const node = typeof f.node === "string" ? f.node : (this.#stablePath(f.node) ?? ids.get(f.node) ?? null);
      return { n: node, p: f.pos, f: f.flags, r: f.readable, w: f.writable, x: f.path, c: e.cloexec };
    });
    return { tree, orphans, fds, cwd: s.cwd, nextIno: s.nextIno };
  }

  /** Image and device nodes are named by path in an exported descriptor table. */
  #stablePath(n: FsNode): string | undefined {
    if (n.mount !== undefined) return undefined;
    const walk = (d: DirNode, prefix: string): string | undefined => {
      for (const [name, c] of d.children) {
        if (c === n) return `${prefix}/${name}`;
        if (c.kind === "dir" && c.mount === undefined) {
          const r = walk(c, `${prefix}/${name}`);
          if (r !== undefined) return r;
        }
      }
      return undefined;
    };
    return n === this.root ? "/" : walk(this.root, "");
  }

  importSnapshot(raw: unknown): FsSnapshot {
    const o = raw as { tree?: unknown; orphans?: unknown; fds?: unknown; cwd?: unknown; nextIno?: unknown } | null;
    if (o === null || typeof o !== "object" || !Array.isArray(o.fds) || o.fds.length > MAX_FDS || typeof o.cwd !== "string" || !Number.isSafeInteger(o.nextIno)) {
      throw new Error("x86 snapshot: bad file system state");
    }
    const mount = this.tmpMount;
    const byId: FsNode[] = [];
    let used = 0;
    let files = 0;
    const dec = (v: unknown, parent: DirNode | undefined, depth: number): FsNode => {
      const x = v as { k?: unknown; m?: unknown; c?: unknown; d?: unknown; t?: unknown };
      if (depth > 64 || x === null || typeof x !== "object") throw new Error("x86 snapshot: bad /tmp tree");
      const mode = Number.isInteger(x.m) ? (x.m as number) & 0o7777 : 0o644;
      if (x.k === "d") {
        const d = this.#dir(parent, mode, mount);
        byId.push(d);
        if (!Array.isArray(x.c)) throw new Error("x86 snapshot: bad /tmp directory");
        for (const pair of x.c as unknown[]) {
          if (!Array.isArray(pair) || typeof pair[0] !== "string" || pair[0] === "" || pair[0].includes("/") || pair[0] === "." || pair[0] === "..") throw new Error("x86 snapshot: bad /tmp name");
          d.children.set(pair[0], dec(pair[1], d, depth + 1));
        }
        return d;
      }
      if (x.k === "f" && typeof x.d === "string") {
        const data = Buffer.from(x.d, "base64");
        used += data.length;
        files++;
        const f: FileNode = { kind: "file", data, size: data.length, ino: this.nextIno++, mode, mtimeNs: typeof x.t === "string" && /^\d{1,25}$/.test(x.t) ? BigInt(x.t) : 0n, mount };
        byId.push(f);
        return f;
      }
      if (x.k === "l" && typeof x.t === "string") {
        const l: LinkNode = { kind: "symlink", target: x.t, ino: this.nextIno++, mode: 0o777, mtimeNs: 0n, mount };
        byId.push(l);
        return l;
      }
      throw new Error("x86 snapshot: bad /tmp node");
    };
    const tmp = dec(o.tree, this.root, 0);
    if (o.orphans !== undefined && (!Array.isArray(o.orphans) || o.orphans.length > MAX_FDS)) throw new Error("x86 snapshot: bad orphan list");
    for (const v of (o.orphans ?? []) as unknown[]) {
      const n = dec(v, undefined, 64);
      if (n.kind !== "file") throw new Error("x86 snapshot: an orphan is not a file");
      n.orphan = true;
    }
    if (tmp.kind !== "dir") throw new Error("x86 snapshot: /tmp is not a directory");
    if (used > mount.quota || files > MAX_FILES_PER_MOUNT) throw new Error("x86 snapshot: /tmp exceeds its quota");
    const fds = (o.fds as unknown[]).map((v): FdEntry | undefined => {
      if (v === null) return undefined;
      const e = v as { n?: unknown; p?: unknown; f?: unknown; r?: unknown; w?: unknown; x?: unknown; c?: unknown };
      let node: FsNode | Stream | undefined;
      if (e.n === "stdin" || e.n === "stdout" || e.n === "stderr") node = e.n;
      else if (typeof e.n === "number") node = byId[e.n];
      else if (typeof e.n === "string") {
        const r = this.resolve(e.n, false, this.root);
        node = typeof r === "number" || r.node?.mount !== undefined ? undefined : r.node;
      }
      if (node === undefined || !Number.isSafeInteger(e.p) || (e.p as number) < 0 || !Number.isInteger(e.f)) throw new Error("x86 snapshot: bad descriptor");
      const writable = e.w === true && (typeof node === "string" ? node !== "stdin" : node.mount !== undefined || node.kind === "dev");
      return { cloexec: e.c === true, file: { node, pos: e.p as number, flags: e.f as number, readable: e.r === true, writable, path: e.x === true } };
    });
    return { tmp, fds, cwd: o.cwd, nextIno: Math.max(this.nextIno, o.nextIno as number), tmpUsed: used, tmpFiles: files };
  }
}

function cloneDir(d: DirNode, parent: DirNode, map: Map<FsNode, FsNode>): DirNode {
  const copy: DirNode = { kind: "dir", children: new Map(), ino: d.ino, mode: d.mode, mtimeNs: d.mtimeNs, mount: d.mount, parent };
  map.set(d, copy);
  for (const [name, c] of d.children) {
    let cc: FsNode;
    if (c.kind === "dir") cc = cloneDir(c, copy, map);
    else if (c.kind === "file") cc = { ...c, data: Buffer.from(c.data.subarray(0, c.size)) };
    else cc = { ...c };
    map.set(c, cc);
    copy.children.set(name, cc);
  }
  return copy;
}

/**
 * Copies a descriptor table onto the nodes of `map` (old → copy). Files of a writable mount
 * that are not in it (orphans, or all of them when the map is empty) are copied as well, so a
 * snapshot never shares a node a later run writes; dup'ed descriptors keep sharing one copy.
 */
function cloneFds(fds: Array<FdEntry | undefined>, map: Map<FsNode, FsNode>): Array<FdEntry | undefined> {
  const files = new Map<OpenFile, OpenFile>();
  return fds.map((e) => {
    if (e === undefined) return undefined;
    let file = files.get(e.file);
    if (file === undefined) {
      const f = e.file;
      let node: FsNode | Stream = f.node;
      if (typeof node !== "string") {
        let copy = map.get(node);
        if (copy === undefined && node.kind === "file" && node.mount !== undefined) {
          copy = { ...node, data: Buffer.from(node.data.subarray(0, node.size)) };
          map.set(node, copy);
        }
        node = copy ?? node;
      }
      file = { ...f, node };
      files.set(f, file);
    }
    return { cloexec: e.cloexec, file };
  });
}
