/**
 * What a system call handler sees of its guest (`Guest`), and the only ways it touches guest
 * memory: every pointer and length goes through Machine.view with the access it needs, and a
 * range that is not mapped so throws GuestFault, which LinuxSyscalls.handle turns into EFAULT —
 * never a host error, never a read outside guest memory.
 */
import { E } from "./abi.js";
import type { VirtualClock } from "./clock.js";
import { MAX_PATH, type GuestFs } from "./fs.js";
import type { GuestIo } from "./io.js";
import { PROT_READ, PROT_WRITE } from "../unicorn.js";
import type { Machine } from "../machine.js";

/** The engine side of the two calls that are not Linux's. */
export interface SyscallHost {
  /** The ready trap (rdi = &environ). Returns rax, or undefined after stopping the machine. */
  ready(environPtr: number): bigint | undefined;
  /** A message for the engine's log (unknown syscalls, stderr is separate). */
  log(message: string): void;
}

/** The state a handler works on (LinuxSyscalls is one). */
export interface Guest {
  readonly m: Machine;
  readonly fs: GuestFs;
  readonly clock: VirtualClock;
  readonly io: GuestIo;
  readonly host: SyscallHost;
}

/** A guest range that is not mapped with the access asked: the call returns EFAULT. */
export class GuestFault extends Error {}

export const ERR = (e: number): bigint => BigInt(-e);
export const EFAULT = ERR(E.FAULT);
export const EBADF = ERR(E.BADF);
export const EINVAL = ERR(E.INVAL);
export const ENOSYS = ERR(E.NOSYS);

/** Signed 64-bit value of a register. */
export function s64(v: bigint): bigint {
  return BigInt.asIntN(64, v);
}

/** The low 32 bits of a register as a signed int (the kernel's view of an `int` argument). */
export function i32(v: bigint): number {
  return Number(BigInt.asIntN(32, v));
}

/** A guest address or length as a JS number (Number.MAX_SAFE_INTEGER when above 2^53: no guest range is that large, so a check against guest memory refuses it). */
export function num(v: bigint): number {
  return v > 0x1f_ffff_ffff_ffffn ? Number.MAX_SAFE_INTEGER : Number(v);
}

export const encoder = new TextEncoder();

export function guestOut(k: Guest, addr: number, len: number): Uint8Array {
  const v = k.m.view(addr, len, PROT_WRITE);
  if (v === undefined) throw new GuestFault();
  return v;
}

export function guestIn(k: Guest, addr: number, len: number): Uint8Array {
  const v = k.m.view(addr, len, PROT_READ);
  if (v === undefined) throw new GuestFault();
  return v;
}

export function guestView(k: Guest, addr: number, len: number, write: boolean): DataView {
  const v = write ? guestOut(k, addr, len) : guestIn(k, addr, len);
  return new DataView(v.buffer, v.byteOffset, v.byteLength);
}

export function readPath(k: Guest, addr: bigint): string | bigint {
  const raw = k.m.readCString(num(addr), MAX_PATH);
  if (raw === undefined) return EFAULT;
  return raw.toString("latin1");
}

export function zeroOut(k: Guest, addr: bigint, len: number): bigint {
  if (addr !== 0n) guestOut(k, num(addr), len).fill(0);
  return 0n;
}
