/**
 * The system call table: Linux x86-64 numbers by name (`SYS`) and, for each, the handler that
 * answers it (`SYSCALLS`). A number not in the table is ENOSYS (index.ts logs the first few).
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
 */
import { AT_FDCWD, AT_REMOVEDIR, AT_SYMLINK_NOFOLLOW, E } from "./abi.js";
import { access, chdir, close, dup, entry, fcntl, fstat, ftruncate, getcwd, getdents64, lseek, mkdirat, openat, read, readlinkat, readv, rename, statPath, unlinkat, write, writev } from "./files.js";
import { EBADF, EINVAL, ERR, i32, num, s64, zeroOut, type Guest } from "./guest.js";
import { archPrctl, clockGetres, clockGettime, clockNanosleep, getrandom, getrlimit, gettimeofday, kill, madvise, mmap, nanosleep, prlimit, time, uname } from "./process.js";

/** Linux x86-64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl), and zerocell's own. */
export const SYS = {
  read: 0, write: 1, open: 2, close: 3, stat: 4, fstat: 5, lstat: 6, lseek: 8, mmap: 9, mprotect: 10,
  munmap: 11, brk: 12, rt_sigaction: 13, rt_sigprocmask: 14, ioctl: 16, pread64: 17, pwrite64: 18,
  readv: 19, writev: 20, access: 21, sched_yield: 24, madvise: 28, dup: 32, dup2: 33, nanosleep: 35,
  getpid: 39, exit: 60, kill: 62, uname: 63, fcntl: 72, fsync: 74, fdatasync: 75, ftruncate: 77,
  getcwd: 79, chdir: 80, rename: 82, mkdir: 83, rmdir: 84, unlink: 87, readlink: 89, gettimeofday: 96,
  getrlimit: 97, getuid: 102, getgid: 104, setuid: 105, setgid: 106, geteuid: 107, getegid: 108,
  getppid: 110, setreuid: 113, setregid: 114, setresuid: 117, setresgid: 119, arch_prctl: 158,
  gettid: 186, tkill: 200, time: 201, getdents64: 217, set_tid_address: 218, clock_gettime: 228,
  clock_getres: 229, clock_nanosleep: 230, exit_group: 231, tgkill: 234, openat: 257, mkdirat: 258,
  newfstatat: 262, unlinkat: 263, renameat: 264, readlinkat: 267, faccessat: 269, dup3: 292,
  prlimit64: 302, renameat2: 316, getrandom: 318, faccessat2: 439,
  /** The snapshot point (include/zerocell.h). */
  zerocell_ready: 0x5a0ce11,
} as const;

export type SyscallName = keyof typeof SYS;

/** Arguments are the raw registers rdi, rsi, rdx, r10, r8, r9. Returns rax, or undefined after stopping the machine. */
export type SyscallHandler = (k: Guest, a0: bigint, a1: bigint, a2: bigint, a3: bigint, a4: bigint, a5: bigint) => bigint | undefined;

const CWD = BigInt(AT_FDCWD);

function exit(k: Guest, status: bigint): undefined {
  k.m.stop({ kind: "exit", code: i32(status) & 0xff });
  return undefined;
}

/** setuid and friends succeed only when every id stays 1000 (-1: unchanged). */
function sameIds(...ids: bigint[]): bigint {
  return ids.every((v) => i32(v) === 1000 || i32(v) === -1) ? 0n : ERR(E.PERM);
}

/** One handler per name of SYS (the type makes a missing or extra one a build error). */
const HANDLERS: { readonly [N in SyscallName]: SyscallHandler } = {
  read: (k, a0, a1, a2) => read(k, a0, num(a1), num(a2), undefined),
  write: (k, a0, a1, a2) => write(k, a0, num(a1), num(a2), undefined),
  open: (k, a0, a1, a2) => openat(k, CWD, a0, a1, a2),
  close: (k, a0) => close(k, a0),
  stat: (k, a0, a1) => statPath(k, CWD, a0, a1, 0),
  fstat: (k, a0, a1) => fstat(k, a0, a1),
  lstat: (k, a0, a1) => statPath(k, CWD, a0, a1, AT_SYMLINK_NOFOLLOW),
  lseek: (k, a0, a1, a2) => lseek(k, a0, s64(a1), i32(a2)),
  mmap: (k, a0, a1, a2, a3, a4, a5) => mmap(k, num(a0), num(a1), i32(a2), i32(a3), BigInt(i32(a4)), a5),
  mprotect: (k, a0, a1, a2) => BigInt(k.m.mprotect(num(a0), num(a1), i32(a2))),
  munmap: (k, a0, a1) => BigInt(k.m.munmap(num(a0), num(a1))),
  brk: (k, a0) => BigInt(k.m.setBrk(num(a0))),
  rt_sigaction: (k, _a0, _a1, a2) => zeroOut(k, a2, 32),
  rt_sigprocmask: (k, _a0, _a1, a2) => zeroOut(k, a2, 8),
  ioctl: () => ERR(E.NOTTY),
  pread64: (k, a0, a1, a2, a3) => read(k, a0, num(a1), num(a2), s64(a3)),
  pwrite64: (k, a0, a1, a2, a3) => write(k, a0, num(a1), num(a2), s64(a3)),
  readv: (k, a0, a1, a2) => readv(k, a0, num(a1), num(a2)),
  writev: (k, a0, a1, a2) => writev(k, a0, num(a1), num(a2)),
  access: (k, a0, a1) => access(k, CWD, a0, i32(a1) & 7),
  sched_yield: () => 0n,
  madvise: (k, a0, a1, a2) => madvise(k, num(a0), num(a1), i32(a2)),
  dup: (k, a0) => dup(k, a0, -1n, false, 0),
  dup2: (k, a0, a1) => (a0 === a1 ? (entry(k, a0) === undefined ? EBADF : a0) : dup(k, a0, a1, false, 0)),
  nanosleep: (k, a0) => nanosleep(k, a0),
  getpid: () => 1n,
  exit: (k, a0) => exit(k, a0),
  kill: (k, a0, a1) => kill(k, s64(a0), i32(a1)),
  uname: (k, a0) => uname(k, a0),
  fcntl: (k, a0, a1, a2) => fcntl(k, a0, i32(a1), a2),
  fsync: (k, a0) => (entry(k, a0) === undefined ? EBADF : 0n),
  fdatasync: (k, a0) => (entry(k, a0) === undefined ? EBADF : 0n),
  ftruncate: (k, a0, a1) => ftruncate(k, a0, s64(a1)),
  getcwd: (k, a0, a1) => getcwd(k, a0, num(a1)),
  chdir: (k, a0) => chdir(k, a0),
  rename: (k, a0, a1) => rename(k, CWD, a0, CWD, a1),
  mkdir: (k, a0, a1) => mkdirat(k, CWD, a0, i32(a1)),
  rmdir: (k, a0) => unlinkat(k, CWD, a0, AT_REMOVEDIR),
  unlink: (k, a0) => unlinkat(k, CWD, a0, 0),
  readlink: (k, a0, a1, a2) => readlinkat(k, CWD, a0, a1, num(a2)),
  gettimeofday: (k, a0) => gettimeofday(k, a0),
  getrlimit: (k, a0, a1) => getrlimit(k, i32(a0), a1),
  getuid: () => 1000n,
  getgid: () => 1000n,
  setuid: (_k, a0) => (i32(a0) === 1000 ? 0n : ERR(E.PERM)),
  setgid: (_k, a0) => (i32(a0) === 1000 ? 0n : ERR(E.PERM)),
  geteuid: () => 1000n,
  getegid: () => 1000n,
  getppid: () => 0n,
  setreuid: (_k, a0, a1) => sameIds(a0, a1),
  setregid: (_k, a0, a1) => sameIds(a0, a1),
  setresuid: (_k, a0, a1, a2) => sameIds(a0, a1, a2),
  setresgid: (_k, a0, a1, a2) => sameIds(a0, a1, a2),
  arch_prctl: (k, a0, a1) => archPrctl(k, i32(a0), a1),
  gettid: () => 1n,
  tkill: (k, _a0, a1) => kill(k, 1n, i32(a1)),
  time: (k, a0) => time(k, a0),
  getdents64: (k, a0, a1, a2) => getdents64(k, a0, num(a1), num(a2)),
  set_tid_address: () => 1n,
  clock_gettime: (k, a0, a1) => clockGettime(k, i32(a0), a1),
  clock_getres: (k, a0, a1) => clockGetres(k, i32(a0), a1),
  clock_nanosleep: (k, _a0, a1, a2) => clockNanosleep(k, i32(a1), a2),
  exit_group: (k, a0) => exit(k, a0),
  tgkill: (k, _a0, _a1, a2) => kill(k, 1n, i32(a2)),
  openat: (k, a0, a1, a2, a3) => openat(k, a0, a1, a2, a3),
  mkdirat: (k, a0, a1, a2) => mkdirat(k, a0, a1, i32(a2)),
  newfstatat: (k, a0, a1, a2, a3) => statPath(k, a0, a1, a2, i32(a3)),
  unlinkat: (k, a0, a1, a2) => unlinkat(k, a0, a1, i32(a2)),
  renameat: (k, a0, a1, a2, a3) => rename(k, a0, a1, a2, a3),
  readlinkat: (k, a0, a1, a2, a3) => readlinkat(k, a0, a1, a2, num(a3)),
  faccessat: (k, a0, a1, a2) => access(k, a0, a1, i32(a2) & 7),
  dup3: (k, a0, a1, a2) => dup(k, a0, a1, true, i32(a2)),
  prlimit64: (k, a0, a1, a2, a3) => prlimit(k, s64(a0), i32(a1), a2, a3),
  renameat2: (k, a0, a1, a2, a3, a4) => (i32(a4) === 0 ? rename(k, a0, a1, a2, a3) : EINVAL),
  getrandom: (k, a0, a1) => getrandom(k, num(a0), num(a1)),
  faccessat2: (k, a0, a1, a2) => access(k, a0, a1, i32(a2) & 7),
  zerocell_ready: (k, a0) => k.host.ready(num(a0)),
};

/** Number → handler. */
export const SYSCALLS: ReadonlyMap<number, SyscallHandler> = new Map(
  (Object.keys(SYS) as SyscallName[]).map((name) => [SYS[name], HANDLERS[name]]),
);
