/**
 * Numbers of the Linux x86-64 ABI the guest speaks besides the system call numbers (table.ts):
 * errno values and the flag bits of open, *at and stat. Values are Linux's; nothing else here.
 */

export const E = {
  PERM: 1, NOENT: 2, SRCH: 3, IO: 5, BADF: 9, NOMEM: 12, ACCES: 13, FAULT: 14, EXIST: 17, XDEV: 18,
  NODEV: 19, NOTDIR: 20, ISDIR: 21, INVAL: 22, MFILE: 24, NOTTY: 25, FBIG: 27, NOSPC: 28, SPIPE: 29,
  ROFS: 30, RANGE: 34, NAMETOOLONG: 36, NOSYS: 38, NOTEMPTY: 39, LOOP: 40, OPNOTSUPP: 95,
} as const;

export const AT_FDCWD = -100;
export const AT_SYMLINK_NOFOLLOW = 0x100;
export const AT_REMOVEDIR = 0x200;
export const AT_EMPTY_PATH = 0x1000;
export const O_ACCMODE = 3;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_TRUNC = 0o1000;
export const O_APPEND = 0o2000;
export const O_DIRECTORY = 0o200000;
export const O_NOFOLLOW = 0o400000;
export const O_PATH = 0o10000000;
export const O_TMPFILE = 0o20000000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;
