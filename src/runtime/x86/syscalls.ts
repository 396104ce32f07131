/**
 * The narrow Linux system call interface of an x86 guest, over an in-memory file tree.
 *
 * Nothing here reaches a host file, socket, process or clock other than through the values it
 * computes: the file tree is built from the bundle image (read-only) plus a private /tmp (and a
 * key's /data), stdin is the request body, stdout and stderr are collected, the clock is virtual,
 * entropy comes from the host CSPRNG. Every guest pointer and length is checked against guest
 * memory (Machine.view) before use; a bad one is EFAULT, never a host error.
 *
 *   nr        name                   behaviour
 *   0         read                   stdin = request body; files; /dev/zero, /dev/urandom; dir → EISDIR
 *   1         write                  stdout = the response (a write past the response limit stops the
 *                                    run: response_too_large), stderr (kept up to 64 KiB, logged; the
 *                                    rest dropped), files under /tmp and /data, /dev/null
 *   2, 257    open, openat           /app (bundle, read-only: EROFS for writes), /tmp, /data, /dev/{null,
 *                                    zero,random,urandom}; anything else ENOENT (there is no /etc, /proc)
 *   3         close                  the last descriptor of an unlinked file credits its bytes back
 *   4, 6, 5   stat, lstat, fstat
 *   262       newfstatat             AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW
 *   8         lseek                  files and directories; pipes (std streams) ESPIPE
 *   9         mmap                   anonymous, or a private copy of a file, inside the arena (the memory
 *                                    limit); PROT_EXEC → EPERM (W^X); MAP_SHARED of a file → ENODEV;
 *                                    prot bits other than READ/WRITE/EXEC/SEM → EINVAL
 *   10        mprotect               PROT_EXEC → EPERM; only mapped ranges; unknown prot bits → EINVAL
 *   11        munmap                 arena only (EINVAL elsewhere)
 *   12        brk                    heap at the arena's bottom, up to the mmap regions
 *   13, 14    rt_sigaction,          0: old action reported as SIG_DFL, old mask as empty; no signal is
 *             rt_sigprocmask         ever delivered (faults end the program)
 *   16        ioctl                  ENOTTY (there are no terminals; isatty() is false)
 *   17, 18    pread64, pwrite64
 *   19, 20    readv, writev          up to 1024 iovecs
 *   21, 269,  access, faccessat,     existence; W_OK only under /tmp and /data
 *   439       faccessat2
 *   24        sched_yield            0
 *   28        madvise                MADV_DONTNEED zeroes arena pages (as Linux); other advice 0
 *   32,33,292 dup, dup2, dup3
 *   35, 230   nanosleep,             advance the virtual clock, return at once
 *             clock_nanosleep
 *   39,110,186 getpid, getppid, gettid   1, 0, 1
 *   60, 231   exit, exit_group       end the program with the status
 *   62,200,234 kill, tkill, tgkill   to itself: signal 0 → 0, otherwise the program ends with that signal
 *   63        uname                  Linux 5.15.0 x86_64, node "zerocell"
 *   72        fcntl                  F_DUPFD(_CLOEXEC), F_GETFD/SETFD, F_GETFL/SETFL; others EINVAL
 *   74, 75    fsync, fdatasync       0
 *   77        ftruncate              writable files (shrinking also shrinks the host buffer)
 *   79, 80    getcwd, chdir          cwd starts at /app
 *   82,264,316 rename, renameat(2)   within /tmp or within /data
 *   83, 258   mkdir, mkdirat         under /tmp and /data
 *   84        rmdir
 *   87, 263   unlink, unlinkat       (AT_REMOVEDIR); an open file stays charged to the quota until its
 *                                    last descriptor closes (also when renamed over)
 *   89, 267   readlink, readlinkat   symlinks of the bundle
 *   96, 201,  gettimeofday, time,    the virtual clock: wall time at request start + the guest's own
 *   228, 229  clock_gettime/getres   run time and sleeps (µs resolution); CPU-time clocks = run time
 *   97, 302   getrlimit, prlimit64   reports stack/memory/files limits; setting one → EPERM
 *   102,104,107,108 getuid, getgid, geteuid, getegid   1000
 *   105,106,113,114,117,119 setuid, setgid, setre*id, setres*id   0 when every id is 1000 (or -1), else EPERM
 *   158       arch_prctl             ARCH_SET_FS, ARCH_GET_FS; others EINVAL
 *   217       getdents64
 *   218       set_tid_address        1
 *   318       getrandom              host CSPRNG, fresh on every call (so fresh after every reset)
 *   0x5a0ce11 zerocell_ready         the snapshot point (include/zerocell.h): rdi = &environ. At
 *                                    init the program parks there and the snapshot is taken; a request
 *                                    resumes it with rax = 0 and *rdi pointing at the request's CGI
 *                                    environment. Called again during a request: the request is done.
 *   anything else (fork, execve, socket, ptrace, futex, set_robust_list, rseq, …)   ENOSYS
 */
import { randomFillSync } from "node:crypto";
import { decodeImage, encodeImage, type BundleEntry, type BundleImage } from "../../bundle/index.js";
import { PROT_EXEC, PROT_READ, PROT_WRITE, X86_REG } from "./unicorn.js";
import { guestProt, type Machine } from "./machine.js";

export const SYS_ZEROCELL_READY = 0x5a0ce11;

export const E = {
  PERM: 1, NOENT: 2, SRCH: 3, IO: 5, BADF: 9, NOMEM: 12, ACCES: 13, FAULT: 14, EXIST: 17, XDEV: 18,
  NODEV: 19, NOTDIR: 20, ISDIR: 21, INVAL: 22, MFILE: 24, NOTTY: 25, FBIG: 27, NOSPC: 28, SPIPE: 29,
  ROFS: 30, RANGE: 34, NAMETOOLONG: 36, NOSYS: 38, NOTEMPTY: 39, LOOP: 40, OPNOTSUPP: 95,
} as const;

const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const AT_REMOVEDIR = 0x200;
const AT_EMPTY_PATH = 0x1000;
const O_ACCMODE = 3;
const O_CREAT = 0o100;
const O_EXCL = 0o200;
const O_TRUNC = 0o1000;
const O_APPEND = 0o2000;
const O_DIRECTORY = 0o200000;
const O_NOFOLLOW = 0o400000;
const O_PATH = 0o10000000;
const O_TMPFILE = 0o20000000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const S_IFIFO = 0o010000;
const MAX_FDS = 256;
const MAX_PATH = 4096;
const MAX_SYMLINKS = 40;
const MAX_STDERR = 64 * 1024;
/** Distinct unknown system call numbers logged per process (then one last line). */
const MAX_WARNED_SYSCALLS = 16;
const MAX_FILES_PER_MOUNT = 10_000;

// ---------------------------------------------------------------------------------------------
// File tree

interface Mount {
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

type Stream = "stdin" | "stdout" | "stderr";

/** An open file description (shared by dup'ed descriptors, like POSIX). */
interface OpenFile {
  node: FsNode | Stream;
  pos: number;
  flags: number;
  readable: boolean;
  writable: boolean;
  path: boolean;
}

interface FdEntry {
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

const encoder = new TextEncoder();

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

// ---------------------------------------------------------------------------------------------
// Per-request I/O and clock

export interface GuestIo {
  stdin: Uint8Array;
  stdinPos: number;
  /** The response as written so far; a write past its limit stops the run ("limit"). */
  stdout: OutputBuffer;
  /** Kept for the log up to MAX_STDERR bytes; later bytes are accepted and dropped. */
  stderr: OutputBuffer;
}

export function newIo(stdin: Uint8Array, stdoutLimit: number): GuestIo {
  return { stdin, stdinPos: 0, stdout: new OutputBuffer(stdoutLimit), stderr: new OutputBuffer(MAX_STDERR) };
}

/**
 * Bytes a guest writes to a stream, in one buffer grown by doubling and never beyond `limit`:
 * host memory stays within 1.5 × limit whatever the guest does (one host object per write
 * system call would cost ~130 bytes of heap per 1-byte write: 16 MiB of them, 2 GiB).
 */
export class OutputBuffer {
  readonly limit: number;
  #buf: Buffer = Buffer.alloc(0);
  #length = 0;

  constructor(limit: number) {
    if (!Number.isSafeInteger(limit) || limit < 0) throw new RangeError(`x86: output limit ${limit} is not a byte count`);
    this.limit = limit;
  }

  get length(): number {
    return this.#length;
  }

  /** Appends all of `data`, or nothing and false when that would pass the limit. */
  append(data: Uint8Array): boolean {
    if (data.length > this.limit - this.#length) return false;
    this.#put(data);
    return true;
  }

  /** Appends what fits under the limit; returns the bytes kept. */
  appendSome(data: Uint8Array): number {
    const n = Math.min(data.length, this.limit - this.#length);
    if (n > 0) this.#put(data.subarray(0, n));
    return n;
  }

  #put(data: Uint8Array): void {
    const end = this.#length + data.length;
    if (end > this.#buf.length) {
      const bigger = Buffer.allocUnsafe(Math.min(this.limit, Math.max(end, 2 * this.#buf.length, 64 * 1024)));
      this.#buf.copy(bigger, 0, 0, this.#length);
      this.#buf = bigger;
    }
    this.#buf.set(data, this.#length);
    this.#length = end;
  }

  /** The bytes written (a view, no copy). */
  bytes(): Buffer {
    return this.#buf.subarray(0, this.#length);
  }
}

/**
 * The guest's clock: the host's wall clock sampled when the request started, advanced by the
 * guest's own run time (host monotonic clock) and by its sleeps, which return at once.
 */
export class VirtualClock {
  #wallStartNs = 0n;
  #perfStart = 0;
  #slept = 0n;
  readonly #epoch = performance.now();

  startRequest(): void {
    this.#wallStartNs = BigInt(Date.now()) * 1_000_000n;
    this.#perfStart = performance.now();
    this.#slept = 0n;
  }

  sleep(ns: bigint): void {
    if (ns > 0n) this.#slept += ns;
  }

  #elapsedNs(): bigint {
    return BigInt(Math.floor((performance.now() - this.#perfStart) * 1000)) * 1000n;
  }

  now(clock: number): bigint | undefined {
    switch (clock) {
      case 0: // REALTIME
      case 5: // REALTIME_COARSE
      case 8: // REALTIME_ALARM
      case 11: // TAI
        return this.#wallStartNs + this.#elapsedNs() + this.#slept;
      case 1: // MONOTONIC
      case 4: // MONOTONIC_RAW
      case 6: // MONOTONIC_COARSE
      case 7: // BOOTTIME
      case 9: // BOOTTIME_ALARM
        return 1_000_000_000n + BigInt(Math.floor((this.#perfStart - this.#epoch) * 1000)) * 1000n + this.#elapsedNs() + this.#slept;
      case 2: // PROCESS_CPUTIME_ID
      case 3: // THREAD_CPUTIME_ID
        return this.#elapsedNs();
      default:
        return undefined;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The dispatcher

export interface SyscallHost {
  /** The ready trap (rdi = &environ). Returns rax, or undefined after stopping the machine. */
  ready(environPtr: number): bigint | undefined;
  /** A message for the engine's log (unknown syscalls, stderr is separate). */
  log(message: string): void;
}

const ERR = (e: number): bigint => BigInt(-e);
const EFAULT = ERR(E.FAULT);
const EBADF = ERR(E.BADF);
const EINVAL = ERR(E.INVAL);
const ENOSYS = ERR(E.NOSYS);

/** Signed 64-bit value of a register. */
function s64(v: bigint): bigint {
  return BigInt.asIntN(64, v);
}

/** The low 32 bits of a register as a signed int (the kernel's view of an `int` argument). */
function i32(v: bigint): number {
  return Number(BigInt.asIntN(32, v));
}

/** A guest address or length as a JS number (undefined when above 2^53). */
function num(v: bigint): number {
  return v > 0x1f_ffff_ffff_ffffn ? Number.MAX_SAFE_INTEGER : Number(v);
}

export class LinuxSyscalls {
  readonly m: Machine;
  readonly fs: GuestFs;
  readonly clock = new VirtualClock();
  io: GuestIo = newIo(new Uint8Array(0), 0);
  readonly host: SyscallHost;
  readonly #warned = new Set<number>();
  /** Syscalls handled in the current run. */
  count = 0;

  constructor(machine: Machine, fs: GuestFs, host: SyscallHost) {
    this.m = machine;
    this.fs = fs;
    this.host = host;
  }

  handle(nr: number, a: BigUint64Array): bigint | undefined {
    this.count++;
    try {
      return this.#dispatch(nr, a[1]!, a[2]!, a[3]!, a[4]!, a[5]!, a[6]!);
    } catch (e) {
      if (e instanceof GuestFault) return EFAULT;
      throw e;
    }
  }

  #dispatch(nr: number, a0: bigint, a1: bigint, a2: bigint, a3: bigint, a4: bigint, _a5: bigint): bigint | undefined {
    switch (nr) {
      case 0: return this.#read(a0, num(a1), num(a2), undefined);
      case 1: return this.#write(a0, num(a1), num(a2), undefined);
      case 2: return this.#openat(BigInt(AT_FDCWD), a0, a1, a2);
      case 3: return this.#close(a0);
      case 4: return this.#statPath(BigInt(AT_FDCWD), a0, a1, 0);
      case 5: return this.#fstat(a0, a1);
      case 6: return this.#statPath(BigInt(AT_FDCWD), a0, a1, AT_SYMLINK_NOFOLLOW);
      case 8: return this.#lseek(a0, s64(a1), i32(a2));
      case 9: return this.#mmap(num(a0), num(a1), i32(a2), i32(a3), BigInt(i32(a4)), _a5);
      case 10: return BigInt(this.m.mprotect(num(a0), num(a1), i32(a2)));
      case 11: return BigInt(this.m.munmap(num(a0), num(a1)));
      case 12: return BigInt(this.m.setBrk(num(a0)));
      case 13: return this.#zeroOut(a2, 32);
      case 14: return this.#zeroOut(a2, 8);
      case 16: return ERR(E.NOTTY);
      case 17: return this.#read(a0, num(a1), num(a2), s64(a3));
      case 18: return this.#write(a0, num(a1), num(a2), s64(a3));
      case 19: return this.#readv(a0, num(a1), num(a2));
      case 20: return this.#writev(a0, num(a1), num(a2));
      case 21: return this.#access(BigInt(AT_FDCWD), a0, i32(a1) & 7);
      case 24: return 0n;
      case 28: return this.#madvise(num(a0), num(a1), i32(a2));
      case 32: return this.#dup(a0, -1n, false, 0);
      case 33: return a0 === a1 ? (this.#entry(a0) === undefined ? EBADF : a0) : this.#dup(a0, a1, false, 0);
      case 35: return this.#nanosleep(a0);
      case 39: return 1n;
      case 60:
      case 231:
        this.m.stop({ kind: "exit", code: i32(a0) & 0xff });
        return undefined;
      case 62: return this.#kill(s64(a0), i32(a1));
      case 63: return this.#uname(a0);
      case 72: return this.#fcntl(a0, i32(a1), a2);
      case 74:
      case 75: return this.#entry(a0) === undefined ? EBADF : 0n;
      case 77: return this.#ftruncate(a0, s64(a1));
      case 79: return this.#getcwd(a0, num(a1));
      case 80: return this.#chdir(a0);
      case 82: return this.#rename(BigInt(AT_FDCWD), a0, BigInt(AT_FDCWD), a1);
      case 83: return this.#mkdirat(BigInt(AT_FDCWD), a0, i32(a1));
      case 84: return this.#unlinkat(BigInt(AT_FDCWD), a0, AT_REMOVEDIR);
      case 87: return this.#unlinkat(BigInt(AT_FDCWD), a0, 0);
      case 89: return this.#readlinkat(BigInt(AT_FDCWD), a0, a1, num(a2));
      case 96: return this.#gettimeofday(a0);
      case 97: return this.#getrlimit(i32(a0), a1);
      case 102:
      case 104:
      case 107:
      case 108: return 1000n;
      case 105: // setuid
      case 106: // setgid
        return i32(a0) === 1000 ? 0n : ERR(E.PERM);
      case 110: return 0n;
      case 113: // setreuid
      case 114: // setregid
      case 117: // setresuid
      case 119: // setresgid
        return [a0, a1, nr >= 117 ? a2 : 0xffff_ffffn].every((v) => i32(v) === 1000 || i32(v) === -1) ? 0n : ERR(E.PERM);
      case 158: return this.#archPrctl(i32(a0), a1);
      case 186: return 1n;
      case 200: return this.#kill(1n, i32(a1));
      case 201: return this.#time(a0);
      case 217: return this.#getdents64(a0, num(a1), num(a2));
      case 218: return 1n;
      case 228: return this.#clockGettime(i32(a0), a1);
      case 229: return this.#clockGetres(i32(a0), a1);
      case 230: return this.#clockNanosleep(i32(a1), a2);
      case 234: return this.#kill(1n, i32(a2));
      case 257: return this.#openat(a0, a1, a2, a3);
      case 258: return this.#mkdirat(a0, a1, i32(a2));
      case 262: return this.#statPath(a0, a1, a2, i32(a3));
      case 263: return this.#unlinkat(a0, a1, i32(a2));
      case 264: return this.#rename(a0, a1, a2, a3);
      case 267: return this.#readlinkat(a0, a1, a2, num(a3));
      case 269: return this.#access(a0, a1, i32(a2) & 7);
      case 292: return this.#dup(a0, a1, true, i32(a2));
      case 302: return this.#prlimit(s64(a0), i32(a1), a2, a3);
      case 316: return i32(a4) === 0 ? this.#rename(a0, a1, a2, a3) : EINVAL;
      case 318: return this.#getrandom(num(a0), num(a1));
      case 439: return this.#access(a0, a1, i32(a2) & 7);
      case SYS_ZEROCELL_READY: return this.host.ready(num(a0));
      default:
        // One log line per system call number, for the first few numbers only: the guest
        // chooses the numbers, and log lines are host work and storage.
        if (this.#warned.size <= MAX_WARNED_SYSCALLS && !this.#warned.has(nr)) {
          this.#warned.add(nr);
          this.host.log(this.#warned.size > MAX_WARNED_SYSCALLS ? `syscall ${nr} is not available (ENOSYS); further unknown system calls are not logged` : `syscall ${nr} is not available (ENOSYS)`);
        }
        return ENOSYS;
    }
  }

  // ---- memory helpers -----------------------------------------------------------------------

  #out(addr: number, len: number): Uint8Array {
    const v = this.m.view(addr, len, PROT_WRITE);
    if (v === undefined) throw new GuestFault();
    return v;
  }

  #in(addr: number, len: number): Uint8Array {
    const v = this.m.view(addr, len, PROT_READ);
    if (v === undefined) throw new GuestFault();
    return v;
  }

  #dv(addr: number, len: number, write: boolean): DataView {
    const v = write ? this.#out(addr, len) : this.#in(addr, len);
    return new DataView(v.buffer, v.byteOffset, v.byteLength);
  }

  #path(addr: bigint): string | bigint {
    const raw = this.m.readCString(num(addr), MAX_PATH);
    if (raw === undefined) return EFAULT;
    return raw.toString("latin1");
  }

  #zeroOut(addr: bigint, len: number): bigint {
    if (addr !== 0n) this.#out(num(addr), len).fill(0);
    return 0n;
  }

  // ---- descriptors --------------------------------------------------------------------------

  #entry(fd: bigint): FdEntry | undefined {
    const n = BigInt.asIntN(32, fd);
    if (n < 0n || n >= BigInt(MAX_FDS)) return undefined;
    return this.fs.fds[Number(n)];
  }

  #file(fd: bigint): OpenFile | undefined {
    return this.#entry(fd)?.file;
  }

  #alloc(file: OpenFile, cloexec: boolean, min = 0): bigint {
    for (let i = min; i < MAX_FDS; i++) {
      if (this.fs.fds[i] === undefined) {
        this.fs.fds[i] = { file, cloexec };
        return BigInt(i);
      }
    }
    return ERR(E.MFILE);
  }

  #close(fd: bigint): bigint {
    const e = this.#entry(fd);
    if (e === undefined) return EBADF;
    this.fs.fds[i32(fd)] = undefined;
    this.fs.released(e.file);
    return 0n;
  }

  #dup(oldfd: bigint, newfd: bigint, dup3: boolean, flags: number): bigint {
    const e = this.#entry(oldfd);
    if (e === undefined) return EBADF;
    if (newfd === -1n) return this.#alloc(e.file, false);
    if (dup3 && (oldfd === newfd || (flags & ~0o2000000) !== 0)) return EINVAL;
    const n = s64(newfd);
    if (n < 0n || n >= BigInt(MAX_FDS)) return EBADF;
    const old = this.fs.fds[Number(n)];
    this.fs.fds[Number(n)] = { file: e.file, cloexec: (flags & 0o2000000) !== 0 };
    if (old !== undefined) this.fs.released(old.file); // dup2 closes what newfd held
    return n;
  }

  #fcntl(fd: bigint, cmd: number, arg: bigint): bigint {
    const e = this.#entry(fd);
    if (e === undefined) return EBADF;
    switch (cmd) {
      case 0: // F_DUPFD
      case 1030: // F_DUPFD_CLOEXEC
        return this.#alloc(e.file, cmd === 1030, Math.min(MAX_FDS, num(arg)));
      case 1: return e.cloexec ? 1n : 0n; // F_GETFD
      case 2: // F_SETFD
        e.cloexec = (arg & 1n) !== 0n;
        return 0n;
      case 3: return BigInt(e.file.flags); // F_GETFL
      case 4: // F_SETFL: only O_APPEND and O_NONBLOCK may change
        e.file.flags = (e.file.flags & ~(O_APPEND | 0o4000)) | (Number(arg & 0xffffffffn) & (O_APPEND | 0o4000));
        return 0n;
      default:
        return EINVAL;
    }
  }

  // ---- read / write -------------------------------------------------------------------------

  #read(fd: bigint, buf: number, count: number, at: bigint | undefined): bigint {
    const f = this.#file(fd);
    if (f === undefined || !f.readable || f.path) return EBADF;
    const n = f.node;
    if (n === "stdin") {
      if (at !== undefined) return ERR(E.SPIPE);
      const io = this.io;
      const len = Math.min(count, io.stdin.length - io.stdinPos);
      if (len <= 0) return 0n;
      this.#out(buf, len).set(io.stdin.subarray(io.stdinPos, io.stdinPos + len));
      io.stdinPos += len;
      return BigInt(len);
    }
    if (typeof n === "string") return EBADF;
    switch (n.kind) {
      case "dir": return ERR(E.ISDIR);
      case "dev": {
        if (n.dev === "null") return 0n;
        const len = Math.min(count, 1 << 20);
        const out = this.#out(buf, len);
        if (n.dev === "zero") out.fill(0);
        else randomFillSync(out);
        return BigInt(len);
      }
      case "file": {
        const pos = at ?? BigInt(f.pos);
        if (pos < 0n) return EINVAL;
        if (pos >= BigInt(n.size)) return 0n;
        const p = Number(pos);
        const len = Math.min(count, n.size - p);
        this.#out(buf, len).set(n.data.subarray(p, p + len));
        if (at === undefined) f.pos = p + len;
        return BigInt(len);
      }
      default: return EINVAL;
    }
  }

  #write(fd: bigint, buf: number, count: number, at: bigint | undefined): bigint | undefined {
    const f = this.#file(fd);
    if (f === undefined || !f.writable || f.path) return EBADF;
    const n = f.node;
    if (count === 0) return 0n;
    if (n === "stdout" || n === "stderr") {
      if (at !== undefined) return ERR(E.SPIPE);
      const data = this.#in(buf, Math.min(count, 1 << 24));
      const io = this.io;
      // The response is checked while the guest writes: the write that would pass the limit
      // stops the run before its bytes are copied.
      if (n === "stdout" && !io.stdout.append(data)) {
        this.m.stop({ kind: "limit", message: `the program wrote more than ${io.stdout.limit} bytes to stdout (the output limit)` });
        return undefined;
      }
      if (n === "stderr") io.stderr.appendSome(data);
      return BigInt(data.length);
    }
    if (typeof n === "string") return EBADF;
    if (n.kind === "dev") {
      this.#in(buf, Math.min(count, 1 << 24));
      return BigInt(count);
    }
    if (n.kind !== "file") return EBADF;
    const data = this.#in(buf, Math.min(count, 1 << 24));
    const pos = at !== undefined ? at : (f.flags & O_APPEND) !== 0 ? BigInt(n.size) : BigInt(f.pos);
    if (pos < 0n) return EINVAL;
    const p = Number(pos);
    const r = this.#writeFile(n, p, data);
    if (r < 0) return ERR(-r);
    if (at === undefined) f.pos = p + data.length;
    return BigInt(data.length);
  }

  /**
   * Writes into a file of a writable mount within its quota; returns 0 or -errno. Host memory
   * per file stays below 2 × its size + 16 MiB (growth doubles, truncation shrinks).
   */
  #writeFile(n: FileNode, pos: number, data: Uint8Array): number {
    const mount = n.mount;
    if (mount === undefined) return -E.ROFS;
    const end = pos + data.length;
    if (end > n.size) {
      const growth = end - n.size;
      if (mount.used + growth > mount.quota) return -E.NOSPC;
      if (end > n.data.length) {
        const bigger = Buffer.alloc(Math.max(end, Math.min(n.data.length * 2, n.data.length + (16 << 20)), 256));
        n.data.copy(bigger, 0, 0, n.size);
        n.data = bigger;
      }
      n.data.fill(0, n.size, pos > n.size ? pos : n.size);
      mount.used += growth;
      n.size = end;
    }
    n.data.set(data, pos);
    n.mtimeNs = this.clock.now(0) ?? 0n;
    return 0;
  }

  #iovecs(iov: number, cnt: number): Array<[number, number]> | bigint {
    if (cnt < 0 || cnt > 1024) return EINVAL;
    const dv = this.#dv(iov, cnt * 16, false);
    const out: Array<[number, number]> = [];
    for (let i = 0; i < cnt; i++) out.push([num(dv.getBigUint64(i * 16, true)), num(dv.getBigUint64(i * 16 + 8, true))]);
    return out;
  }

  #readv(fd: bigint, iov: number, cnt: number): bigint {
    const vecs = this.#iovecs(iov, cnt);
    if (typeof vecs === "bigint") return vecs;
    let total = 0n;
    for (const [base, len] of vecs) {
      if (len === 0) continue;
      const r = this.#read(fd, base, len, undefined);
      if (r < 0n) return total > 0n ? total : r;
      total += r;
      if (r < BigInt(len)) break;
    }
    return total;
  }

  #writev(fd: bigint, iov: number, cnt: number): bigint | undefined {
    const vecs = this.#iovecs(iov, cnt);
    if (typeof vecs === "bigint") return vecs;
    let total = 0n;
    for (const [base, len] of vecs) {
      if (len === 0) continue;
      const r = this.#write(fd, base, len, undefined);
      if (r === undefined) return undefined;
      if (r < 0n) return total > 0n ? total : r;
      total += r;
    }
    return total;
  }

  #lseek(fd: bigint, off: bigint, whence: number): bigint {
    const f = this.#file(fd);
    if (f === undefined) return EBADF;
    if (typeof f.node === "string") return ERR(E.SPIPE);
    const size = f.node.kind === "file" ? f.node.size : 0;
    const base = whence === 0 ? 0n : whence === 1 ? BigInt(f.pos) : whence === 2 ? BigInt(size) : -1n;
    if (base < 0n) return EINVAL;
    const next = base + off;
    if (next < 0n || next > BigInt(Number.MAX_SAFE_INTEGER)) return EINVAL;
    f.pos = Number(next);
    return next;
  }

  #ftruncate(fd: bigint, len: bigint): bigint {
    const f = this.#file(fd);
    if (f === undefined || typeof f.node === "string") return EBADF;
    if (f.node.kind !== "file" || !f.writable) return EINVAL;
    return this.#truncate(f.node, len);
  }

  #truncate(n: FileNode, len: bigint): bigint {
    if (len < 0n || len > BigInt(Number.MAX_SAFE_INTEGER)) return EINVAL;
    const mount = n.mount;
    if (mount === undefined) return ERR(E.ROFS);
    const want = Number(len);
    if (want > n.size) {
      const r = this.#writeFile(n, want, new Uint8Array(0));
      if (r < 0) return ERR(r === -E.NOSPC ? E.FBIG : -r);
    } else {
      mount.used -= n.size - want;
      n.size = want;
      // The quota charges sizes, so capacity must follow: a file truncated to 0 must not keep
      // its 16 MiB buffer (48 of them held 900 MB of host memory under a 64 MiB quota).
      if (n.data.length > Math.max(2 * want, 64 * 1024)) n.data = Buffer.from(n.data.subarray(0, want));
    }
    return 0n;
  }

  // ---- paths --------------------------------------------------------------------------------

  /** Base directory of an *at() call. */
  #base(dirfd: bigint, path: string): DirNode | bigint {
    if (path.startsWith("/") || s64(dirfd) === BigInt(AT_FDCWD)) return this.fs.cwd;
    const f = this.#file(dirfd);
    if (f === undefined) return EBADF;
    if (typeof f.node === "string" || f.node.kind !== "dir") return ERR(E.NOTDIR);
    return f.node;
  }

  #lookup(dirfd: bigint, pathPtr: bigint, follow: boolean): { parent: DirNode; name: string; node: FsNode | undefined; path: string } | bigint {
    const path = this.#path(pathPtr);
    if (typeof path !== "string") return path;
    const base = this.#base(dirfd, path);
    if (typeof base === "bigint") return base;
    const r = this.fs.resolve(path, follow, base);
    if (typeof r === "number") return ERR(r);
    return { ...r, path };
  }

  #openat(dirfd: bigint, pathPtr: bigint, flagsRaw: bigint, modeRaw: bigint): bigint {
    const flags = Number(flagsRaw & 0xffffffffn);
    if ((flags & O_TMPFILE) === O_TMPFILE) return ERR(E.OPNOTSUPP);
    const r = this.#lookup(dirfd, pathPtr, (flags & O_NOFOLLOW) === 0);
    if (typeof r === "bigint") return r;
    const acc = flags & O_ACCMODE;
    const wantWrite = acc === 1 || acc === 2 || (flags & O_TRUNC) !== 0;
    let node = r.node;
    if (node === undefined) {
      if ((flags & O_CREAT) === 0) return ERR(E.NOENT);
      if (r.path.endsWith("/")) return ERR(E.ISDIR);
      const mount = r.parent.mount;
      if (mount === undefined) return ERR(r.parent === this.fs.root || r.parent === this.fs.app || this.#inApp(r.parent) ? E.ROFS : E.ACCES);
      if (r.parent.removed === true) return ERR(E.NOENT); // a file there would be charged and unreachable
      if (mount.files >= MAX_FILES_PER_MOUNT) return ERR(E.NOSPC);
      node = { kind: "file", data: Buffer.alloc(0), size: 0, ino: this.fs.nextIno++, mode: Number(modeRaw) & 0o777, mtimeNs: this.clock.now(0) ?? 0n, mount };
      r.parent.children.set(r.name, node);
      mount.files++;
    } else {
      if ((flags & O_CREAT) !== 0 && (flags & O_EXCL) !== 0) return ERR(E.EXIST);
      if (node.kind === "symlink") return ERR(E.LOOP);
      if ((flags & O_DIRECTORY) !== 0 && node.kind !== "dir") return ERR(E.NOTDIR);
      if (node.kind === "dir" && wantWrite) return ERR(E.ISDIR);
      if (wantWrite && node.kind !== "dev" && node.mount === undefined) return ERR(E.ROFS);
      if ((flags & O_TRUNC) !== 0 && node.kind === "file" && (flags & O_PATH) === 0) {
        const t = this.#truncate(node, 0n);
        if (t < 0n) return t;
      }
    }
    const path = (flags & O_PATH) !== 0;
    return this.#alloc({ node, pos: 0, flags: flags & ~(O_CREAT | O_EXCL | O_TRUNC | 0o2000000), readable: !path && acc !== 1, writable: !path && (acc === 1 || acc === 2), path }, (flags & 0o2000000) !== 0);
  }

  #inApp(d: DirNode): boolean {
    let cur = d;
    for (let i = 0; i < 300 && cur !== this.fs.root; i++) {
      if (cur === this.fs.app) return true;
      cur = cur.parent;
    }
    return false;
  }

  #writeStat(n: FsNode | Stream, addr: bigint): bigint {
    const dv = this.#dv(num(addr), 144, true);
    new Uint8Array(dv.buffer, dv.byteOffset, 144).fill(0);
    let mode: number;
    let size = 0;
    let ino = 1;
    let mtime = 0n;
    let nlink = 1;
    let blksize = 4096;
    let dev = 1;
    if (typeof n === "string") {
      mode = S_IFIFO | 0o600;
      ino = n === "stdin" ? 3 : n === "stdout" ? 4 : 5;
      blksize = 65536;
      dev = 9;
    } else {
      ino = n.ino;
      mtime = n.mtimeNs;
      dev = n.mount === undefined ? 1 : n.mount.name === "/tmp" ? 2 : 3;
      switch (n.kind) {
        case "dir":
          mode = S_IFDIR | n.mode;
          nlink = 2;
          size = 4096;
          break;
        case "file":
          mode = S_IFREG | n.mode;
          size = n.size;
          break;
        case "symlink":
          mode = S_IFLNK | 0o777;
          size = n.target.length;
          break;
        case "dev":
          mode = S_IFCHR | 0o666;
          break;
      }
    }
    dv.setBigUint64(0, BigInt(dev), true);
    dv.setBigUint64(8, BigInt(ino), true);
    dv.setBigUint64(16, BigInt(nlink), true);
    dv.setUint32(24, mode, true);
    dv.setUint32(28, 1000, true);
    dv.setUint32(32, 1000, true);
    dv.setBigInt64(48, BigInt(size), true);
    dv.setBigInt64(56, BigInt(blksize), true);
    dv.setBigInt64(64, BigInt(Math.ceil(size / 512)), true);
    for (const off of [72, 88, 104]) {
      dv.setBigInt64(off, mtime / 1_000_000_000n, true);
      dv.setBigInt64(off + 8, mtime % 1_000_000_000n, true);
    }
    return 0n;
  }

  #fstat(fd: bigint, addr: bigint): bigint {
    const f = this.#file(fd);
    if (f === undefined) return EBADF;
    return this.#writeStat(f.node, addr);
  }

  #statPath(dirfd: bigint, pathPtr: bigint, addr: bigint, flags: number): bigint {
    if ((flags & AT_EMPTY_PATH) !== 0) {
      const p = this.m.readCString(num(pathPtr), MAX_PATH);
      if (p !== undefined && p.length === 0) {
        if (s64(dirfd) === BigInt(AT_FDCWD)) return this.#writeStat(this.fs.cwd, addr);
        return this.#fstat(dirfd, addr);
      }
    }
    const r = this.#lookup(dirfd, pathPtr, (flags & AT_SYMLINK_NOFOLLOW) === 0);
    if (typeof r === "bigint") return r;
    if (r.node === undefined) return ERR(E.NOENT);
    return this.#writeStat(r.node, addr);
  }

  #access(dirfd: bigint, pathPtr: bigint, mode: number): bigint {
    const r = this.#lookup(dirfd, pathPtr, true);
    if (typeof r === "bigint") return r;
    if (r.node === undefined) return ERR(E.NOENT);
    if ((mode & 2) !== 0 && r.node.mount === undefined && r.node.kind !== "dev") return ERR(E.ROFS);
    if ((mode & 1) !== 0 && r.node.kind === "file" && (r.node.mode & 0o111) === 0) return ERR(E.ACCES);
    return 0n;
  }

  #readlinkat(dirfd: bigint, pathPtr: bigint, buf: bigint, size: number): bigint {
    const r = this.#lookup(dirfd, pathPtr, false);
    if (typeof r === "bigint") return r;
    if (r.node === undefined) return ERR(E.NOENT);
    if (r.node.kind !== "symlink") return EINVAL;
    const t = encoder.encode(r.node.target);
    const n = Math.min(size, t.length);
    this.#out(num(buf), n).set(t.subarray(0, n));
    return BigInt(n);
  }

  #getdents64(fd: bigint, buf: number, count: number): bigint {
    const f = this.#file(fd);
    if (f === undefined || f.path) return EBADF;
    if (typeof f.node === "string" || f.node.kind !== "dir") return ERR(E.NOTDIR);
    const d = f.node;
    const names: Array<[string, FsNode]> = [[".", d], ["..", d.parent], ...d.children];
    let written = 0;
    while (f.pos < names.length) {
      const [name, node] = names[f.pos]!;
      const nameBytes = encoder.encode(name);
      const reclen = (19 + nameBytes.length + 1 + 7) & ~7;
      if (written + reclen > count) {
        if (written === 0) return EINVAL;
        break;
      }
      const out = this.#out(buf + written, reclen);
      out.fill(0);
      const dv = new DataView(out.buffer, out.byteOffset, reclen);
      dv.setBigUint64(0, BigInt(node.ino), true);
      dv.setBigInt64(8, BigInt(f.pos + 1), true);
      dv.setUint16(16, reclen, true);
      out[18] = node.kind === "dir" ? 4 : node.kind === "file" ? 8 : node.kind === "symlink" ? 10 : 2;
      out.set(nameBytes, 19);
      written += reclen;
      f.pos++;
    }
    return BigInt(written);
  }

  #mkdirat(dirfd: bigint, pathPtr: bigint, mode: number): bigint {
    const r = this.#lookup(dirfd, pathPtr, false);
    if (typeof r === "bigint") return r;
    if (r.node !== undefined) return ERR(E.EXIST);
    const mount = r.parent.mount;
    if (mount === undefined) return ERR(E.ROFS);
    if (r.parent.removed === true) return ERR(E.NOENT);
    if (mount.files >= MAX_FILES_PER_MOUNT) return ERR(E.NOSPC);
    const d: DirNode = { kind: "dir", children: new Map(), ino: this.fs.nextIno++, mode: mode & 0o7777, mtimeNs: this.clock.now(0) ?? 0n, mount, parent: r.parent };
    r.parent.children.set(r.name, d);
    mount.files++;
    return 0n;
  }

  #unlinkat(dirfd: bigint, pathPtr: bigint, flags: number): bigint {
    const r = this.#lookup(dirfd, pathPtr, false);
    if (typeof r === "bigint") return r;
    const n = r.node;
    if (n === undefined) return ERR(E.NOENT);
    if (n.mount === undefined || r.parent.mount === undefined || r.name === ".") return ERR(r.name === "." ? E.INVAL : E.ROFS);
    if ((flags & AT_REMOVEDIR) !== 0) {
      if (n.kind !== "dir") return ERR(E.NOTDIR);
      if (n.children.size > 0) return ERR(E.NOTEMPTY);
    } else if (n.kind === "dir") return ERR(E.ISDIR);
    if (n === this.fs.tmp || n === this.fs.root.children.get("data")) return ERR(E.PERM);
    r.parent.children.delete(r.name);
    this.fs.unlinked(n);
    return 0n;
  }

  #rename(olddir: bigint, oldPtr: bigint, newdir: bigint, newPtr: bigint): bigint {
    const a = this.#lookup(olddir, oldPtr, false);
    if (typeof a === "bigint") return a;
    const b = this.#lookup(newdir, newPtr, false);
    if (typeof b === "bigint") return b;
    if (a.node === undefined) return ERR(E.NOENT);
    if (a.node.mount === undefined || a.parent.mount === undefined || b.parent.mount === undefined) return ERR(E.ROFS);
    if (a.parent.mount !== b.parent.mount) return ERR(E.XDEV);
    if (b.parent.removed === true) return ERR(E.NOENT);
    if (a.node === this.fs.tmp || a.name === "." || b.name === ".") return ERR(E.INVAL);
    // A directory cannot move into itself.
    for (let d: DirNode = b.parent, i = 0; i < 300; i++) {
      if (d === a.node) return EINVAL;
      if (d === d.parent) break;
      d = d.parent;
    }
    const existing = b.node;
    if (existing !== undefined) {
      if (existing === a.node) return 0n;
      if (existing.kind === "dir" && (a.node.kind !== "dir" || existing.children.size > 0)) return ERR(existing.kind === "dir" && a.node.kind === "dir" ? E.NOTEMPTY : E.ISDIR);
      if (existing.kind !== "dir" && a.node.kind === "dir") return ERR(E.NOTDIR);
    }
    a.parent.children.delete(a.name);
    b.parent.children.set(b.name, a.node);
    if (existing !== undefined) this.fs.unlinked(existing);
    if (a.node.kind === "dir") a.node.parent = b.parent;
    return 0n;
  }

  #getcwd(buf: bigint, size: number): bigint {
    const p = encoder.encode(this.fs.pathOf(this.fs.cwd) + "\0");
    if (size < p.length) return ERR(E.RANGE);
    this.#out(num(buf), p.length).set(p);
    return BigInt(p.length);
  }

  #chdir(pathPtr: bigint): bigint {
    const r = this.#lookup(BigInt(AT_FDCWD), pathPtr, true);
    if (typeof r === "bigint") return r;
    if (r.node === undefined) return ERR(E.NOENT);
    if (r.node.kind !== "dir") return ERR(E.NOTDIR);
    this.fs.cwd = r.node;
    return 0n;
  }

  // ---- memory -------------------------------------------------------------------------------

  #mmap(addr: number, len: number, protAsked: number, flags: number, fd: bigint, off: bigint): bigint {
    const prot = guestProt(protAsked);
    if (prot === undefined) return EINVAL;
    if ((prot & PROT_EXEC) !== 0) return ERR(E.PERM); // W^X
    const MAP_SHARED = 1;
    const MAP_PRIVATE = 2;
    const MAP_FIXED = 0x10;
    const MAP_ANONYMOUS = 0x20;
    const MAP_FIXED_NOREPLACE = 0x100000;
    const type = flags & 3;
    if (type !== MAP_PRIVATE && type !== MAP_SHARED) return EINVAL;
    const fixed = (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) !== 0;
    let source: FileNode | undefined;
    if ((flags & MAP_ANONYMOUS) === 0) {
      const f = this.#file(fd);
      if (f === undefined || f.path) return EBADF;
      if (typeof f.node === "string" || f.node.kind !== "file") return ERR(E.NODEV);
      if (type === MAP_SHARED && (prot & 2) !== 0) return ERR(E.NODEV);
      if (off < 0n || off % 4096n !== 0n) return EINVAL;
      source = f.node;
    }
    // Map writable first to copy file bytes in, then apply the asked protection.
    const r = this.m.mmap(addr, len, source === undefined ? prot : 3, fixed, (flags & MAP_FIXED_NOREPLACE) !== 0);
    if (r < 0) return BigInt(r);
    if (source !== undefined) {
      const o = Number(off);
      const n = Math.max(0, Math.min(len, source.size - o));
      if (n > 0) this.m.view(r, n, PROT_WRITE)!.set(source.data.subarray(o, o + n));
      if (prot !== 3) {
        const p = this.m.mprotect(r, len, prot);
        if (p < 0) {
          this.m.munmap(r, len);
          return BigInt(p);
        }
      }
    }
    return BigInt(r);
  }

  #madvise(addr: number, len: number, advice: number): bigint {
    const MADV_DONTNEED = 4;
    if (addr % 4096 !== 0) return EINVAL;
    if (advice === MADV_DONTNEED && len > 0) {
      const v = this.m.view(addr, Math.ceil(len / 4096) * 4096, PROT_WRITE);
      if (v === undefined) return ERR(E.NOMEM);
      v.fill(0);
    }
    return 0n;
  }

  // ---- process, time, misc ------------------------------------------------------------------

  #kill(pid: bigint, sig: number): bigint | undefined {
    if (pid !== 1n && pid !== 0n && pid !== -1n) return ERR(E.SRCH);
    if (sig === 0) return 0n;
    if (sig < 0 || sig > 64) return EINVAL;
    this.m.stop({ kind: "signal", signal: sig, message: `the program raised signal ${sig}${sig === 6 ? " (abort)" : ""}` });
    return undefined;
  }

  #uname(addr: bigint): bigint {
    const out = this.#out(num(addr), 65 * 6);
    out.fill(0);
    ["Linux", "zerocell", "5.15.0", "#1 zerocell", "x86_64", "(none)"].forEach((s, i) => out.set(encoder.encode(s), i * 65));
    return 0n;
  }

  #archPrctl(code: number, addr: bigint): bigint {
    const ARCH_SET_FS = 0x1002;
    const ARCH_GET_FS = 0x1003;
    if (code === ARCH_SET_FS) {
      if (addr >= 0x8000_0000_0000n) return ERR(E.PERM);
      this.m.uc.regWrite(X86_REG.FS_BASE, addr);
      return 0n;
    }
    if (code === ARCH_GET_FS) {
      const dv = this.#dv(num(addr), 8, true);
      dv.setBigUint64(0, this.m.uc.regRead(X86_REG.FS_BASE), true);
      return 0n;
    }
    return EINVAL;
  }

  #getrandom(buf: number, len: number): bigint {
    const n = Math.min(len, 32 * 1024 * 1024);
    if (n === 0) return 0n;
    randomFillSync(this.#out(buf, n));
    return BigInt(n);
  }

  #writeTime(addr: bigint, ns: bigint, usec: boolean): void {
    const dv = this.#dv(num(addr), 16, true);
    dv.setBigInt64(0, ns / 1_000_000_000n, true);
    dv.setBigInt64(8, usec ? (ns % 1_000_000_000n) / 1000n : ns % 1_000_000_000n, true);
  }

  #clockGettime(clock: number, addr: bigint): bigint {
    const ns = this.clock.now(clock);
    if (ns === undefined) return EINVAL;
    this.#writeTime(addr, ns, false);
    return 0n;
  }

  #clockGetres(clock: number, addr: bigint): bigint {
    if (this.clock.now(clock) === undefined) return EINVAL;
    if (addr !== 0n) this.#writeTime(addr, 1000n, false);
    return 0n;
  }

  #gettimeofday(addr: bigint): bigint {
    if (addr !== 0n) this.#writeTime(addr, this.clock.now(0)!, true);
    return 0n;
  }

  #time(addr: bigint): bigint {
    const s = this.clock.now(0)! / 1_000_000_000n;
    if (addr !== 0n) this.#dv(num(addr), 8, true).setBigInt64(0, s, true);
    return s;
  }

  #readTimespec(addr: bigint): bigint | undefined {
    const dv = this.#dv(num(addr), 16, false);
    const s = dv.getBigInt64(0, true);
    const ns = dv.getBigInt64(8, true);
    if (s < 0n || ns < 0n || ns >= 1_000_000_000n) return undefined;
    return s * 1_000_000_000n + ns;
  }

  #nanosleep(req: bigint): bigint {
    const ns = this.#readTimespec(req);
    if (ns === undefined) return EINVAL;
    this.clock.sleep(ns);
    return 0n;
  }

  #clockNanosleep(flags: number, req: bigint): bigint {
    const ns = this.#readTimespec(req);
    if (ns === undefined) return EINVAL;
    if ((flags & 1) !== 0) {
      // TIMER_ABSTIME on the realtime clock: sleep until then.
      const now = this.clock.now(0)!;
      if (ns > now) this.clock.sleep(ns - now);
    } else this.clock.sleep(ns);
    return 0n;
  }

  #limits(resource: number): [bigint, bigint] | undefined {
    const inf = 0xffff_ffff_ffff_ffffn;
    switch (resource) {
      case 3: return [BigInt(this.m.stack.size), BigInt(this.m.stack.size)]; // STACK
      case 2: // DATA
      case 9: // AS
        return [BigInt(this.m.memoryLimit), BigInt(this.m.memoryLimit)];
      case 7: return [BigInt(MAX_FDS), BigInt(MAX_FDS)]; // NOFILE
      case 4: return [0n, 0n]; // CORE
      case 6: return [1n, 1n]; // NPROC
      default: return resource >= 0 && resource < 16 ? [inf, inf] : undefined;
    }
  }

  #getrlimit(resource: number, addr: bigint): bigint {
    const l = this.#limits(resource);
    if (l === undefined) return EINVAL;
    const dv = this.#dv(num(addr), 16, true);
    dv.setBigUint64(0, l[0], true);
    dv.setBigUint64(8, l[1], true);
    return 0n;
  }

  #prlimit(pid: bigint, resource: number, newPtr: bigint, oldPtr: bigint): bigint {
    if (pid !== 0n && pid !== 1n) return ERR(E.SRCH);
    if (newPtr !== 0n) return ERR(E.PERM);
    if (oldPtr === 0n) return this.#limits(resource) === undefined ? EINVAL : 0n;
    return this.#getrlimit(resource, oldPtr);
  }
}

class GuestFault extends Error {}
