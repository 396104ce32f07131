#!/usr/bin/env node
/**
 * The reset variants of ADR 002, side by side on a bare 32 MiB WebAssembly.Memory in one process:
 * each round writes 40 scattered pages (a hello-world request writes 50–200), then puts them back.
 *
 *   node bench/reset-variants.mjs [--rounds 200]
 *
 *   A  compare        today's fallback: memcmp of 64 KiB blocks, copy of differing 4 KiB pages
 *   B  uffd-wp        userfaultfd WP_ASYNC on the plain memory; PAGEMAP_SCAN lists written pages,
 *                     copy back, re-arm with PAGEMAP_SCAN|WP_MATCHING (the next writes fault again)
 *   C1 memfd + read   memfd MAP_PRIVATE over the memory; pread /proc/self/pagemap, "present and
 *                     not file" = written; compare and copy back (pages stay private) — chosen
 *   C2 memfd + scan   the same with PAGEMAP_SCAN (category: not file, present or swapped)
 *   D1 memfd + madvise   MADV_DONTNEED per written range (the next request COW-faults again)
 *   D2 memfd + process_madvise   one call with all ranges (Linux ≥ 6.16 batches the TLB flush)
 * For C1/C2 also with every page table entry present (after a full read of the memory), the
 * state a long-lived instance drifts to. Prints p50/p99 µs, the cost the next request pays in
 * write faults, and ratios against A.
 */
import { createRequire } from "node:module";
import { loadavg } from "node:os";

const koffi = createRequire(import.meta.url)("koffi");
const args = process.argv.slice(2);
const ROUNDS = Number(args[args.indexOf("--rounds") + 1] ?? 200) || 200;
const libc = koffi.load("libc.so.6");
const sys1 = libc.func("long syscall(long nr, long a)");
const sys2 = libc.func("long syscall(long nr, long a, long b)");
const sysMadv = libc.func("long syscall(long nr, long pidfd, void *iov, long n, long advice, long flags)");
const ioctl = libc.func("int ioctl(int fd, unsigned long req, void *arg)");
const open = libc.func("int open(const char *path, int flags)");
const memfdCreate = libc.func("int memfd_create(const char *name, unsigned int flags)");
const write = libc.func("intptr_t write(int fd, void *buf, size_t n)");
const mmap = libc.func("uintptr_t mmap(uintptr_t addr, size_t len, int prot, int flags, int fd, int64_t off)");
const madvise = libc.func("int madvise(uintptr_t addr, size_t len, int advice)");
const pread = libc.func("intptr_t pread(int fd, void *buf, size_t n, int64_t off)");
const memmove = libc.func("uintptr_t memmove(void *d, void *s, size_t n)");
const getpid = libc.func("int getpid(void)");
const addr = (b) => Number(memmove(b, b, 0));

const SIZE = 32 << 20;
const PAGE = 4096;
const WRITTEN = Array.from({ length: 40 }, (_, k) => (k * 197) % (SIZE / PAGE));
const pagemap = open("/proc/self/pagemap", 0);

function makeMemory() {
  const memory = new WebAssembly.Memory({ initial: SIZE >> 16, maximum: (SIZE >> 16) * 2 });
  const u8 = new Uint8Array(memory.buffer);
  for (let i = 0; i < SIZE; i += PAGE) if ((i / PAGE) % 3 !== 0) u8[i] = 1 + ((i / PAGE) & 0x7f);
  return { u8, live: Buffer.from(memory.buffer), image: Buffer.from(u8), base: addr(memory.buffer) };
}
function writeRequest(u8, round) {
  for (const p of WRITTEN) u8[p * PAGE + 8 + (round & 7)] ^= 0x55;
}
function copyBack(live, image, lo, hi) {
  for (let o = lo; o < hi; o += PAGE) {
    const a = live.subarray(o, o + PAGE);
    const b = image.subarray(o, o + PAGE);
    if (!a.equals(b)) a.set(b);
  }
}
function mapMemfd(m) {
  const fd = memfdCreate("bench", 1);
  write(fd, m.image, SIZE);
  if (mmap(m.base, SIZE, 3, 0x12, fd, 0) !== m.base) throw new Error("mmap failed");
  madvise(m.base, SIZE, 15); // MADV_NOHUGEPAGE
}
function readWritten(m, entries) {
  pread(pagemap, entries, entries.byteLength, (m.base / PAGE) * 8);
  const out = [];
  for (let i = 1; i < entries.length; i += 2) {
    const h = entries[i];
    if ((h & 0x80000000) === 0 ? (h & 0x40000000) === 0 : (h & 0x20000000) !== 0) continue;
    const lo = (i >> 1) * PAGE;
    const last = out[out.length - 1];
    if (last && last[1] === lo) last[1] += PAGE;
    else out.push([lo, lo + PAGE]);
  }
  return out;
}
/** PAGEMAP_SCAN over the memory; flags 0 or WP_MATCHING|CHECK_WPASYNC; categories as the kernel defines them. */
function scanner(m, { flags, inverted, mask, anyof, ret }) {
  const regions = Buffer.alloc(1024 * 24);
  const words = new BigUint64Array(regions.buffer, regions.byteOffset, 1024 * 3);
  const arg = new BigUint64Array(12);
  return () => {
    arg.set([96n, BigInt(flags), BigInt(m.base), BigInt(m.base + SIZE), 0n, BigInt(addr(regions)), 1024n, 0n, inverted, mask, anyof, ret]);
    const n = ioctl(pagemap, 0xc0606610n, arg);
    if (n < 0) throw new Error(`PAGEMAP_SCAN: errno ${koffi.errno()}`);
    const out = [];
    for (let i = 0; i < n; i++) out.push([Number(words[3 * i]) - m.base, Number(words[3 * i + 1]) - m.base]);
    return out;
  };
}
const FILE = 1n << 2n, PRESENT = 1n << 3n, SWAPPED = 1n << 4n, WRITTEN_CAT = 1n << 1n;

function run(name, m, reset, { populate = false } = {}) {
  if (populate) {
    let x = 0;
    for (let i = 0; i < SIZE; i += PAGE) x += m.u8[i];
    if (x < 0) console.log(x);
  }
  const times = [];
  const faults = [];
  for (let r = 0; r < ROUNDS + 10; r++) {
    const t0 = performance.now();
    writeRequest(m.u8, r);
    const t1 = performance.now();
    reset();
    const t2 = performance.now();
    if (r >= 10) {
      times.push((t2 - t1) * 1000);
      faults.push((t1 - t0) * 1000);
    }
  }
  if (!m.live.equals(m.image)) throw new Error(`${name}: memory differs from the image after reset`);
  return { name, p50: pct(times, 50), p99: pct(times, 99), writeP50: pct(faults, 50) };
}
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

const rows = [];
{
  const m = makeMemory();
  rows.push(run("A compare", m, () => {
    for (let o = 0; o < SIZE; o += 65536) if (!m.live.subarray(o, o + 65536).equals(m.image.subarray(o, o + 65536))) copyBack(m.live, m.image, o, o + 65536);
  }));
}
{
  const m = makeMemory();
  const uffd = Number(sys1(323, 0x80000 | 0x800 | 1)); // userfaultfd(O_CLOEXEC|O_NONBLOCK|UFFD_USER_MODE_ONLY)
  if (uffd < 0) throw new Error(`userfaultfd: errno ${koffi.errno()}`);
  if (ioctl(uffd, 0xc018aa3fn, new BigUint64Array([0xaan, (1n << 15n) | (1n << 13n), 0n])) !== 0) throw new Error("UFFDIO_API (WP_ASYNC|WP_UNPOPULATED) refused");
  if (ioctl(uffd, 0xc020aa00n, new BigUint64Array([BigInt(m.base), BigInt(SIZE), 2n, 0n])) !== 0) throw new Error("UFFDIO_REGISTER (WP) refused");
  ioctl(uffd, 0xc018aa06n, new BigUint64Array([BigInt(m.base), BigInt(SIZE), 1n])); // write-protect all
  const list = scanner(m, { flags: 0, inverted: 0n, mask: WRITTEN_CAT, anyof: 0n, ret: WRITTEN_CAT });
  const rearm = scanner(m, { flags: 3, inverted: 0n, mask: WRITTEN_CAT, anyof: 0n, ret: WRITTEN_CAT });
  rows.push(run("B uffd-wp + scan", m, () => {
    for (const [lo, hi] of list()) copyBack(m.live, m.image, lo, hi);
    rearm();
  }));
}
for (const populate of [false, true]) {
  const m = makeMemory();
  mapMemfd(m);
  const entries = new Uint32Array((SIZE / PAGE) * 2);
  rows.push(run(`C1 memfd + read${populate ? " (all PTEs)" : ""}`, m, () => {
    for (const [lo, hi] of readWritten(m, entries)) copyBack(m.live, m.image, lo, hi);
  }, { populate }));
}
for (const populate of [false, true]) {
  const m = makeMemory();
  mapMemfd(m);
  const scan = scanner(m, { flags: 0, inverted: FILE, mask: FILE, anyof: PRESENT | SWAPPED, ret: PRESENT | SWAPPED | FILE });
  rows.push(run(`C2 memfd + scan${populate ? " (all PTEs)" : ""}`, m, () => {
    for (const [lo, hi] of scan()) copyBack(m.live, m.image, lo, hi);
  }, { populate }));
}
{
  const m = makeMemory();
  mapMemfd(m);
  const entries = new Uint32Array((SIZE / PAGE) * 2);
  rows.push(run("D1 memfd + madvise", m, () => {
    for (const [lo, hi] of readWritten(m, entries)) madvise(m.base + lo, hi - lo, 4);
  }));
}
{
  const m = makeMemory();
  mapMemfd(m);
  const entries = new Uint32Array((SIZE / PAGE) * 2);
  const pidfd = Number(sys2(434, getpid(), 0));
  const iov = new BigUint64Array(2 * 4096);
  rows.push(run("D2 memfd + process_madvise", m, () => {
    const ranges = readWritten(m, entries);
    ranges.forEach(([lo, hi], i) => iov.set([BigInt(m.base + lo), BigInt(hi - lo)], 2 * i));
    if (Number(sysMadv(440, pidfd, iov, ranges.length, 4, 0)) < 0) throw new Error(`process_madvise: errno ${koffi.errno()}`);
  }));
}

const base = rows[0];
console.log(`reset of 40 written pages in a 32 MiB memory, ${ROUNDS} rounds, µs (load ${loadavg()[0].toFixed(2)})`);
console.log(["variant".padEnd(30), "p50".padStart(8), "p99".padStart(8), "×A p50".padStart(8), "next writes p50".padStart(16)].join(" "));
for (const r of rows) console.log([r.name.padEnd(30), r.p50.toFixed(0).padStart(8), r.p99.toFixed(0).padStart(8), (base.p50 / r.p50).toFixed(1).padStart(8), r.writeP50.toFixed(0).padStart(16)].join(" "));
