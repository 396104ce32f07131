/**
 * The memory, process and time calls: mmap/madvise over the machine's arena (W^X: PROT_EXEC is
 * EPERM), signals to itself, uname, arch_prctl (the FS base, the only segment the guest sets),
 * getrandom from the host CSPRNG, the virtual clock (clock.ts) and resource limits.
 */
import { randomFillSync } from "node:crypto";
import { E } from "./abi.js";
import { MAX_FDS, type FileNode } from "./fs.js";
import { file } from "./files.js";
import { EINVAL, encoder, ERR, EBADF, guestOut, guestView, num, type Guest } from "./guest.js";
import { PROT_EXEC, PROT_WRITE, X86_REG } from "../unicorn.js";
import { guestProt } from "../machine.js";

// ---- memory -------------------------------------------------------------------------------

export function mmap(k: Guest, addr: number, len: number, protAsked: number, flags: number, fd: bigint, off: bigint): bigint {
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
    const f = file(k, fd);
    if (f === undefined || f.path) return EBADF;
    if (typeof f.node === "string" || f.node.kind !== "file") return ERR(E.NODEV);
    if (type === MAP_SHARED && (prot & 2) !== 0) return ERR(E.NODEV);
    if (off < 0n || off % 4096n !== 0n) return EINVAL;
    source = f.node;
  }
  // Map writable first to copy file bytes in, then apply the asked protection.
  const r = k.m.mmap(addr, len, source === undefined ? prot : 3, fixed, (flags & MAP_FIXED_NOREPLACE) !== 0);
  if (r < 0) return BigInt(r);
  if (source !== undefined) {
    const o = Number(off);
    const n = Math.max(0, Math.min(len, source.size - o));
    if (n > 0) k.m.view(r, n, PROT_WRITE)!.set(source.data.subarray(o, o + n));
    if (prot !== 3) {
      const p = k.m.mprotect(r, len, prot);
      if (p < 0) {
        k.m.munmap(r, len);
        return BigInt(p);
      }
    }
  }
  return BigInt(r);
}

export function madvise(k: Guest, addr: number, len: number, advice: number): bigint {
  const MADV_DONTNEED = 4;
  if (addr % 4096 !== 0) return EINVAL;
  if (advice === MADV_DONTNEED && len > 0) {
    const v = k.m.view(addr, Math.ceil(len / 4096) * 4096, PROT_WRITE);
    if (v === undefined) return ERR(E.NOMEM);
    v.fill(0);
  }
  return 0n;
}

// ---- process, time, misc ------------------------------------------------------------------

export function kill(k: Guest, pid: bigint, sig: number): bigint | undefined {
  if (pid !== 1n && pid !== 0n && pid !== -1n) return ERR(E.SRCH);
  if (sig === 0) return 0n;
  if (sig < 0 || sig > 64) return EINVAL;
  k.m.stop({ kind: "signal", signal: sig, message: `the program raised signal ${sig}${sig === 6 ? " (abort)" : ""}` });
  return undefined;
}

export function uname(k: Guest, addr: bigint): bigint {
  const out = guestOut(k, num(addr), 65 * 6);
  out.fill(0);
  ["Linux", "zerocell", "5.15.0", "#1 zerocell", "x86_64", "(none)"].forEach((s, i) => out.set(encoder.encode(s), i * 65));
  return 0n;
}

export function archPrctl(k: Guest, code: number, addr: bigint): bigint {
  const ARCH_SET_FS = 0x1002;
  const ARCH_GET_FS = 0x1003;
  if (code === ARCH_SET_FS) {
    if (addr >= 0x8000_0000_0000n) return ERR(E.PERM);
    k.m.uc.regWrite(X86_REG.FS_BASE, addr);
    return 0n;
  }
  if (code === ARCH_GET_FS) {
    const dv = guestView(k, num(addr), 8, true);
    dv.setBigUint64(0, k.m.uc.regRead(X86_REG.FS_BASE), true);
    return 0n;
  }
  return EINVAL;
}

export function getrandom(k: Guest, buf: number, len: number): bigint {
  const n = Math.min(len, 32 * 1024 * 1024);
  if (n === 0) return 0n;
  randomFillSync(guestOut(k, buf, n));
  return BigInt(n);
}

export function writeTime(k: Guest, addr: bigint, ns: bigint, usec: boolean): void {
  const dv = guestView(k, num(addr), 16, true);
  dv.setBigInt64(0, ns / 1_000_000_000n, true);
  dv.setBigInt64(8, usec ? (ns % 1_000_000_000n) / 1000n : ns % 1_000_000_000n, true);
}

export function clockGettime(k: Guest, clock: number, addr: bigint): bigint {
  const ns = k.clock.now(clock);
  if (ns === undefined) return EINVAL;
  writeTime(k, addr, ns, false);
  return 0n;
}

export function clockGetres(k: Guest, clock: number, addr: bigint): bigint {
  if (k.clock.now(clock) === undefined) return EINVAL;
  if (addr !== 0n) writeTime(k, addr, 1000n, false);
  return 0n;
}

export function gettimeofday(k: Guest, addr: bigint): bigint {
  if (addr !== 0n) writeTime(k, addr, k.clock.now(0)!, true);
  return 0n;
}

export function time(k: Guest, addr: bigint): bigint {
  const s = k.clock.now(0)! / 1_000_000_000n;
  if (addr !== 0n) guestView(k, num(addr), 8, true).setBigInt64(0, s, true);
  return s;
}

export function readTimespec(k: Guest, addr: bigint): bigint | undefined {
  const dv = guestView(k, num(addr), 16, false);
  const s = dv.getBigInt64(0, true);
  const ns = dv.getBigInt64(8, true);
  if (s < 0n || ns < 0n || ns >= 1_000_000_000n) return undefined;
  return s * 1_000_000_000n + ns;
}

export function nanosleep(k: Guest, req: bigint): bigint {
  const ns = readTimespec(k, req);
  if (ns === undefined) return EINVAL;
  k.clock.sleep(ns);
  return 0n;
}

export function clockNanosleep(k: Guest, flags: number, req: bigint): bigint {
  const ns = readTimespec(k, req);
  if (ns === undefined) return EINVAL;
  if ((flags & 1) !== 0) {
    // TIMER_ABSTIME on the realtime clock: sleep until then.
    const now = k.clock.now(0)!;
    if (ns > now) k.clock.sleep(ns - now);
  } else k.clock.sleep(ns);
  return 0n;
}

export function limits(k: Guest, resource: number): [bigint, bigint] | undefined {
  const inf = 0xffff_ffff_ffff_ffffn;
  switch (resource) {
    case 3: return [BigInt(k.m.stack.size), BigInt(k.m.stack.size)]; // STACK
    case 2: // DATA
    case 9: // AS
      return [BigInt(k.m.memoryLimit), BigInt(k.m.memoryLimit)];
    case 7: return [BigInt(MAX_FDS), BigInt(MAX_FDS)]; // NOFILE
    case 4: return [0n, 0n]; // CORE
    case 6: return [1n, 1n]; // NPROC
    default: return resource >= 0 && resource < 16 ? [inf, inf] : undefined;
  }
}

export function getrlimit(k: Guest, resource: number, addr: bigint): bigint {
  const l = limits(k, resource);
  if (l === undefined) return EINVAL;
  const dv = guestView(k, num(addr), 16, true);
  dv.setBigUint64(0, l[0], true);
  dv.setBigUint64(8, l[1], true);
  return 0n;
}

export function prlimit(k: Guest, pid: bigint, resource: number, newPtr: bigint, oldPtr: bigint): bigint {
  if (pid !== 0n && pid !== 1n) return ERR(E.SRCH);
  if (newPtr !== 0n) return ERR(E.PERM);
  if (oldPtr === 0n) return limits(k, resource) === undefined ? EINVAL : 0n;
  return getrlimit(k, resource, oldPtr);
}
