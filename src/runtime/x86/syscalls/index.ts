/**
 * The narrow Linux system call interface of an x86 guest, over an in-memory file tree.
 *
 * Nothing here reaches a host file, socket, process or clock other than through the values it
 * computes: the file tree is built from the bundle image (read-only) plus a private /tmp (and a
 * key's /data), stdin is the request body, stdout and stderr are collected, the clock is virtual,
 * entropy comes from the host CSPRNG. Every guest pointer and length is checked against guest
 * memory (Machine.view) before use; a bad one is EFAULT, never a host error.
 *
 *   table.ts    numbers (SYS) → handlers; the table of what each call does
 *   files.ts    file calls over fs.ts (GuestFs: the tree, descriptors, quotas, snapshots)
 *   process.ts  memory, process, time (clock.ts: VirtualClock) and limits calls
 *   io.ts       the request's streams; guest.ts: guest memory access; abi.ts: errno and flags
 */
import type { Machine } from "../machine.js";
import { VirtualClock } from "./clock.js";
import type { GuestFs } from "./fs.js";
import { EFAULT, ENOSYS, GuestFault, type SyscallHost } from "./guest.js";
import { newIo, type GuestIo } from "./io.js";
import { SYS, SYSCALLS } from "./table.js";

export { E } from "./abi.js";
export { VirtualClock } from "./clock.js";
export { GuestFs, type DevNode, type DirNode, type FileNode, type FsNode, type FsSnapshot, type LinkNode } from "./fs.js";
export type { SyscallHost } from "./guest.js";
export { newIo, OutputBuffer, type GuestIo } from "./io.js";
export { SYS, SYSCALLS, type SyscallHandler, type SyscallName } from "./table.js";

export const SYS_ZEROCELL_READY = SYS.zerocell_ready;

/** Distinct unknown system call numbers logged per process (then one last line). */
const MAX_WARNED_SYSCALLS = 16;

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

  /** Answers system call `nr` with the registers `a` (a[1..6] = rdi, rsi, rdx, r10, r8, r9): rax, or undefined after stopping the machine. */
  handle(nr: number, a: BigUint64Array): bigint | undefined {
    this.count++;
    const handler = SYSCALLS.get(nr);
    if (handler === undefined) return this.#unknown(nr);
    try {
      return handler(this, a[1]!, a[2]!, a[3]!, a[4]!, a[5]!, a[6]!);
    } catch (e) {
      if (e instanceof GuestFault) return EFAULT;
      throw e;
    }
  }

  #unknown(nr: number): bigint {
    // One log line per system call number, for the first few numbers only: the guest
    // chooses the numbers, and log lines are host work and storage.
    if (this.#warned.size <= MAX_WARNED_SYSCALLS && !this.#warned.has(nr)) {
      this.#warned.add(nr);
      this.host.log(this.#warned.size > MAX_WARNED_SYSCALLS ? `syscall ${nr} is not available (ENOSYS); further unknown system calls are not logged` : `syscall ${nr} is not available (ENOSYS)`);
    }
    return ENOSYS;
  }
}
