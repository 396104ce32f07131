/**
 * The file system calls: descriptors, read/write on streams, devices and files, paths, stat,
 * directories. They work on the guest's GuestFs (fs.ts) and charge writes to its mounts' quotas;
 * guest memory only through guest.ts.
 */
import { randomFillSync } from "node:crypto";
import {
  AT_EMPTY_PATH, AT_FDCWD, AT_REMOVEDIR, AT_SYMLINK_NOFOLLOW, E, O_ACCMODE, O_APPEND, O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_PATH, O_TMPFILE,
  O_TRUNC, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG,
} from "./abi.js";
import { MAX_FDS, MAX_FILES_PER_MOUNT, MAX_PATH, type DirNode, type FdEntry, type FileNode, type FsNode, type OpenFile, type Stream } from "./fs.js";
import { EBADF, EINVAL, encoder, ERR, guestIn, guestOut, guestView, i32, num, readPath, s64, type Guest } from "./guest.js";

// ---- descriptors --------------------------------------------------------------------------

export function entry(k: Guest, fd: bigint): FdEntry | undefined {
  const n = BigInt.asIntN(32, fd);
  if (n < 0n || n >= BigInt(MAX_FDS)) return undefined;
  return k.fs.fds[Number(n)];
}

export function file(k: Guest, fd: bigint): OpenFile | undefined {
  return entry(k, fd)?.file;
}

export function alloc(k: Guest, file: OpenFile, cloexec: boolean, min = 0): bigint {
  for (let i = min; i < MAX_FDS; i++) {
    if (k.fs.fds[i] === undefined) {
      k.fs.fds[i] = { file, cloexec };
      return BigInt(i);
    }
  }
  return ERR(E.MFILE);
}

export function close(k: Guest, fd: bigint): bigint {
  const e = entry(k, fd);
  if (e === undefined) return EBADF;
  k.fs.fds[i32(fd)] = undefined;
  k.fs.released(e.file);
  return 0n;
}

export function dup(k: Guest, oldfd: bigint, newfd: bigint, dup3: boolean, flags: number): bigint {
  const e = entry(k, oldfd);
  if (e === undefined) return EBADF;
  if (newfd === -1n) return alloc(k, e.file, false);
  if (dup3 && (oldfd === newfd || (flags & ~0o2000000) !== 0)) return EINVAL;
  const n = s64(newfd);
  if (n < 0n || n >= BigInt(MAX_FDS)) return EBADF;
  const old = k.fs.fds[Number(n)];
  k.fs.fds[Number(n)] = { file: e.file, cloexec: (flags & 0o2000000) !== 0 };
  if (old !== undefined) k.fs.released(old.file); // dup2 closes what newfd held
  return n;
}

export function fcntl(k: Guest, fd: bigint, cmd: number, arg: bigint): bigint {
  const e = entry(k, fd);
  if (e === undefined) return EBADF;
  switch (cmd) {
    case 0: // F_DUPFD
    case 1030: // F_DUPFD_CLOEXEC
      return alloc(k, e.file, cmd === 1030, Math.min(MAX_FDS, num(arg)));
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

export function read(k: Guest, fd: bigint, buf: number, count: number, at: bigint | undefined): bigint {
  const f = file(k, fd);
  if (f === undefined || !f.readable || f.path) return EBADF;
  const n = f.node;
  if (n === "stdin") {
    if (at !== undefined) return ERR(E.SPIPE);
    const io = k.io;
    const len = Math.min(count, io.stdin.length - io.stdinPos);
    if (len <= 0) return 0n;
    guestOut(k, buf, len).set(io.stdin.subarray(io.stdinPos, io.stdinPos + len));
    io.stdinPos += len;
    return BigInt(len);
  }
  if (typeof n === "string") return EBADF;
  switch (n.kind) {
    case "dir": return ERR(E.ISDIR);
    case "dev": {
      if (n.dev === "null") return 0n;
      const len = Math.min(count, 1 << 20);
      const out = guestOut(k, buf, len);
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
      guestOut(k, buf, len).set(n.data.subarray(p, p + len));
      if (at === undefined) f.pos = p + len;
      return BigInt(len);
    }
    default: return EINVAL;
  }
}

export function write(k: Guest, fd: bigint, buf: number, count: number, at: bigint | undefined): bigint | undefined {
  const f = file(k, fd);
  if (f === undefined || !f.writable || f.path) return EBADF;
  const n = f.node;
  if (count === 0) return 0n;
  if (n === "stdout" || n === "stderr") {
    if (at !== undefined) return ERR(E.SPIPE);
    const data = guestIn(k, buf, Math.min(count, 1 << 24));
    const io = k.io;
    // The response is checked while the guest writes: the write that would pass the limit
    // stops the run before its bytes are copied.
    if (n === "stdout" && !io.stdout.append(data)) {
      k.m.stop({ kind: "limit", message: `the program wrote more than ${io.stdout.limit} bytes to stdout (the output limit)` });
      return undefined;
    }
    if (n === "stderr") io.stderr.appendSome(data);
    return BigInt(data.length);
  }
  if (typeof n === "string") return EBADF;
  if (n.kind === "dev") {
    guestIn(k, buf, Math.min(count, 1 << 24));
    return BigInt(count);
  }
  if (n.kind !== "file") return EBADF;
  const data = guestIn(k, buf, Math.min(count, 1 << 24));
  const pos = at !== undefined ? at : (f.flags & O_APPEND) !== 0 ? BigInt(n.size) : BigInt(f.pos);
  if (pos < 0n) return EINVAL;
  const p = Number(pos);
  const r = writeFile(k, n, p, data);
  if (r < 0) return ERR(-r);
  if (at === undefined) f.pos = p + data.length;
  return BigInt(data.length);
}

/**
 * Writes into a file of a writable mount within its quota; returns 0 or -errno. Host memory
 * per file stays below 2 × its size + 16 MiB (growth doubles, truncation shrinks).
 */
export function writeFile(k: Guest, n: FileNode, pos: number, data: Uint8Array): number {
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
  n.mtimeNs = k.clock.now(0) ?? 0n;
  return 0;
}

export function iovecs(k: Guest, iov: number, cnt: number): Array<[number, number]> | bigint {
  if (cnt < 0 || cnt > 1024) return EINVAL;
  const dv = guestView(k, iov, cnt * 16, false);
  const out: Array<[number, number]> = [];
  for (let i = 0; i < cnt; i++) out.push([num(dv.getBigUint64(i * 16, true)), num(dv.getBigUint64(i * 16 + 8, true))]);
  return out;
}

export function readv(k: Guest, fd: bigint, iov: number, cnt: number): bigint {
  const vecs = iovecs(k, iov, cnt);
  if (typeof vecs === "bigint") return vecs;
  let total = 0n;
  for (const [base, len] of vecs) {
    if (len === 0) continue;
    const r = read(k, fd, base, len, undefined);
    if (r < 0n) return total > 0n ? total : r;
    total += r;
    if (r < BigInt(len)) break;
  }
  return total;
}

export function writev(k: Guest, fd: bigint, iov: number, cnt: number): bigint | undefined {
  const vecs = iovecs(k, iov, cnt);
  if (typeof vecs === "bigint") return vecs;
  let total = 0n;
  for (const [base, len] of vecs) {
    if (len === 0) continue;
    const r = write(k, fd, base, len, undefined);
    if (r === undefined) return undefined;
    if (r < 0n) return total > 0n ? total : r;
    total += r;
  }
  return total;
}

export function lseek(k: Guest, fd: bigint, off: bigint, whence: number): bigint {
  const f = file(k, fd);
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

export function ftruncate(k: Guest, fd: bigint, len: bigint): bigint {
  const f = file(k, fd);
  if (f === undefined || typeof f.node === "string") return EBADF;
  if (f.node.kind !== "file" || !f.writable) return EINVAL;
  return truncate(k, f.node, len);
}

export function truncate(k: Guest, n: FileNode, len: bigint): bigint {
  if (len < 0n || len > BigInt(Number.MAX_SAFE_INTEGER)) return EINVAL;
  const mount = n.mount;
  if (mount === undefined) return ERR(E.ROFS);
  const want = Number(len);
  if (want > n.size) {
    const r = writeFile(k, n, want, new Uint8Array(0));
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
export function baseDir(k: Guest, dirfd: bigint, path: string): DirNode | bigint {
  if (path.startsWith("/") || s64(dirfd) === BigInt(AT_FDCWD)) return k.fs.cwd;
  const f = file(k, dirfd);
  if (f === undefined) return EBADF;
  if (typeof f.node === "string" || f.node.kind !== "dir") return ERR(E.NOTDIR);
  return f.node;
}

export function lookup(k: Guest, dirfd: bigint, pathPtr: bigint, follow: boolean): { parent: DirNode; name: string; node: FsNode | undefined; path: string } | bigint {
  const path = readPath(k, pathPtr);
  if (typeof path !== "string") return path;
  const base = baseDir(k, dirfd, path);
  if (typeof base === "bigint") return base;
  const r = k.fs.resolve(path, follow, base);
  if (typeof r === "number") return ERR(r);
  return { ...r, path };
}

export function openat(k: Guest, dirfd: bigint, pathPtr: bigint, flagsRaw: bigint, modeRaw: bigint): bigint {
  const flags = Number(flagsRaw & 0xffffffffn);
  if ((flags & O_TMPFILE) === O_TMPFILE) return ERR(E.OPNOTSUPP);
  const r = lookup(k, dirfd, pathPtr, (flags & O_NOFOLLOW) === 0);
  if (typeof r === "bigint") return r;
  const acc = flags & O_ACCMODE;
  const wantWrite = acc === 1 || acc === 2 || (flags & O_TRUNC) !== 0;
  let node = r.node;
  if (node === undefined) {
    if ((flags & O_CREAT) === 0) return ERR(E.NOENT);
    if (r.path.endsWith("/")) return ERR(E.ISDIR);
    const mount = r.parent.mount;
    if (mount === undefined) return ERR(r.parent === k.fs.root || r.parent === k.fs.app || inApp(k, r.parent) ? E.ROFS : E.ACCES);
    if (r.parent.removed === true) return ERR(E.NOENT); // a file there would be charged and unreachable
    if (mount.files >= MAX_FILES_PER_MOUNT) return ERR(E.NOSPC);
    node = { kind: "file", data: Buffer.alloc(0), size: 0, ino: k.fs.nextIno++, mode: Number(modeRaw) & 0o777, mtimeNs: k.clock.now(0) ?? 0n, mount };
    r.parent.children.set(r.name, node);
    mount.files++;
  } else {
    if ((flags & O_CREAT) !== 0 && (flags & O_EXCL) !== 0) return ERR(E.EXIST);
    if (node.kind === "symlink") return ERR(E.LOOP);
    if ((flags & O_DIRECTORY) !== 0 && node.kind !== "dir") return ERR(E.NOTDIR);
    if (node.kind === "dir" && wantWrite) return ERR(E.ISDIR);
    if (wantWrite && node.kind !== "dev" && node.mount === undefined) return ERR(E.ROFS);
    if ((flags & O_TRUNC) !== 0 && node.kind === "file" && (flags & O_PATH) === 0) {
      const t = truncate(k, node, 0n);
      if (t < 0n) return t;
    }
  }
  const path = (flags & O_PATH) !== 0;
  return alloc(k, { node, pos: 0, flags: flags & ~(O_CREAT | O_EXCL | O_TRUNC | 0o2000000), readable: !path && acc !== 1, writable: !path && (acc === 1 || acc === 2), path }, (flags & 0o2000000) !== 0);
}

export function inApp(k: Guest, d: DirNode): boolean {
  let cur = d;
  for (let i = 0; i < 300 && cur !== k.fs.root; i++) {
    if (cur === k.fs.app) return true;
    cur = cur.parent;
  }
  return false;
}

export function writeStat(k: Guest, n: FsNode | Stream, addr: bigint): bigint {
  const dv = guestView(k, num(addr), 144, true);
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

export function fstat(k: Guest, fd: bigint, addr: bigint): bigint {
  const f = file(k, fd);
  if (f === undefined) return EBADF;
  return writeStat(k, f.node, addr);
}

export function statPath(k: Guest, dirfd: bigint, pathPtr: bigint, addr: bigint, flags: number): bigint {
  if ((flags & AT_EMPTY_PATH) !== 0) {
    const p = k.m.readCString(num(pathPtr), MAX_PATH);
    if (p !== undefined && p.length === 0) {
      if (s64(dirfd) === BigInt(AT_FDCWD)) return writeStat(k, k.fs.cwd, addr);
      return fstat(k, dirfd, addr);
    }
  }
  const r = lookup(k, dirfd, pathPtr, (flags & AT_SYMLINK_NOFOLLOW) === 0);
  if (typeof r === "bigint") return r;
  if (r.node === undefined) return ERR(E.NOENT);
  return writeStat(k, r.node, addr);
}

export function access(k: Guest, dirfd: bigint, pathPtr: bigint, mode: number): bigint {
  const r = lookup(k, dirfd, pathPtr, true);
  if (typeof r === "bigint") return r;
  if (r.node === undefined) return ERR(E.NOENT);
  if ((mode & 2) !== 0 && r.node.mount === undefined && r.node.kind !== "dev") return ERR(E.ROFS);
  if ((mode & 1) !== 0 && r.node.kind === "file" && (r.node.mode & 0o111) === 0) return ERR(E.ACCES);
  return 0n;
}

export function readlinkat(k: Guest, dirfd: bigint, pathPtr: bigint, buf: bigint, size: number): bigint {
  const r = lookup(k, dirfd, pathPtr, false);
  if (typeof r === "bigint") return r;
  if (r.node === undefined) return ERR(E.NOENT);
  if (r.node.kind !== "symlink") return EINVAL;
  const t = encoder.encode(r.node.target);
  const n = Math.min(size, t.length);
  guestOut(k, num(buf), n).set(t.subarray(0, n));
  return BigInt(n);
}

export function getdents64(k: Guest, fd: bigint, buf: number, count: number): bigint {
  const f = file(k, fd);
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
    const out = guestOut(k, buf + written, reclen);
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

export function mkdirat(k: Guest, dirfd: bigint, pathPtr: bigint, mode: number): bigint {
  const r = lookup(k, dirfd, pathPtr, false);
  if (typeof r === "bigint") return r;
  if (r.node !== undefined) return ERR(E.EXIST);
  const mount = r.parent.mount;
  if (mount === undefined) return ERR(E.ROFS);
  if (r.parent.removed === true) return ERR(E.NOENT);
  if (mount.files >= MAX_FILES_PER_MOUNT) return ERR(E.NOSPC);
  const d: DirNode = { kind: "dir", children: new Map(), ino: k.fs.nextIno++, mode: mode & 0o7777, mtimeNs: k.clock.now(0) ?? 0n, mount, parent: r.parent };
  r.parent.children.set(r.name, d);
  mount.files++;
  return 0n;
}

export function unlinkat(k: Guest, dirfd: bigint, pathPtr: bigint, flags: number): bigint {
  const r = lookup(k, dirfd, pathPtr, false);
  if (typeof r === "bigint") return r;
  const n = r.node;
  if (n === undefined) return ERR(E.NOENT);
  if (n.mount === undefined || r.parent.mount === undefined || r.name === ".") return ERR(r.name === "." ? E.INVAL : E.ROFS);
  if ((flags & AT_REMOVEDIR) !== 0) {
    if (n.kind !== "dir") return ERR(E.NOTDIR);
    if (n.children.size > 0) return ERR(E.NOTEMPTY);
  } else if (n.kind === "dir") return ERR(E.ISDIR);
  if (n === k.fs.tmp || n === k.fs.root.children.get("data")) return ERR(E.PERM);
  r.parent.children.delete(r.name);
  k.fs.unlinked(n);
  return 0n;
}

export function rename(k: Guest, olddir: bigint, oldPtr: bigint, newdir: bigint, newPtr: bigint): bigint {
  const a = lookup(k, olddir, oldPtr, false);
  if (typeof a === "bigint") return a;
  const b = lookup(k, newdir, newPtr, false);
  if (typeof b === "bigint") return b;
  if (a.node === undefined) return ERR(E.NOENT);
  if (a.node.mount === undefined || a.parent.mount === undefined || b.parent.mount === undefined) return ERR(E.ROFS);
  if (a.parent.mount !== b.parent.mount) return ERR(E.XDEV);
  if (b.parent.removed === true) return ERR(E.NOENT);
  if (a.node === k.fs.tmp || a.name === "." || b.name === ".") return ERR(E.INVAL);
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
  if (existing !== undefined) k.fs.unlinked(existing);
  if (a.node.kind === "dir") a.node.parent = b.parent;
  return 0n;
}

export function getcwd(k: Guest, buf: bigint, size: number): bigint {
  const p = encoder.encode(k.fs.pathOf(k.fs.cwd) + "\0");
  if (size < p.length) return ERR(E.RANGE);
  guestOut(k, num(buf), p.length).set(p);
  return BigInt(p.length);
}

export function chdir(k: Guest, pathPtr: bigint): bigint {
  const r = lookup(k, BigInt(AT_FDCWD), pathPtr, true);
  if (typeof r === "bigint") return r;
  if (r.node === undefined) return ERR(E.NOENT);
  if (r.node.kind !== "dir") return ERR(E.NOTDIR);
  k.fs.cwd = r.node;
  return 0n;
}
