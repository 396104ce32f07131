/**
 * The dirty-page reset (src/snapshot/dirty-pages.ts, ADR 002) on a bare WebAssembly.Memory: the
 * kernel's list of written pages catches writes from JS (Emscripten's glue writes like this), from
 * the kernel (a read() into the heap) and from wasm code; grown memory is cleared; globals come
 * back; and a forced fallback restores the same state by comparing everything.
 */
import { describe, it, expect } from "vitest";
import { openSync, readSync, closeSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LinearMemorySnapshot } from "../../src/snapshot/index.js";
import { lastTrackerError } from "../../src/snapshot/dirty-pages.js";

const WASM_PAGE = 65536;

/** A module exporting its memory, a mutable global, and store(addr, byte). */
function makeModule(pages: number): { memory: WebAssembly.Memory; sp: WebAssembly.Global; store: (addr: number, v: number) => void } {
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages * 4 });
  const sp = new WebAssembly.Global({ value: "i32", mutable: true }, 1234);
  // (module (import "e" "m" (memory 1)) (func (export "store") (param i32 i32) local.get 0 local.get 1 i32.store8))
  const bytes = new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x06, 0x01, 0x60, 0x02, 0x7f, 0x7f, 0x00, 0x02, 0x08, 0x01, 0x01, 0x65, 0x01,
    0x6d, 0x02, 0x00, 0x01, 0x03, 0x02, 0x01, 0x00, 0x07, 0x09, 0x01, 0x05, 0x73, 0x74, 0x6f, 0x72, 0x65, 0x00, 0x00, 0x0a, 0x0b, 0x01,
    0x09, 0x00, 0x20, 0x00, 0x20, 0x01, 0x3a, 0x00, 0x00, 0x0b,
  ]);
  const inst = new WebAssembly.Instance(new WebAssembly.Module(bytes), { e: { m: memory } });
  const store = inst.exports.store as (addr: number, v: number) => void;
  const u8 = new Uint8Array(memory.buffer);
  // A recognisable image: every page starts with its number, some blocks stay zero.
  for (let p = 0; p < u8.length / 4096; p++) if (p % 7 !== 0) u8[p * 4096] = 1 + (p % 200);
  return { memory, sp, store };
}

describe("dirty-page reset", () => {
  it("maps the snapshot and reports the pages written by JS, by the kernel and by wasm; restore undoes all of them", () => {
    const { memory, sp, store } = makeModule(64); // 4 MiB
    const top = 3 * 1024 * 1024 + 100; // not page-aligned: the last partial page is compared directly
    const snap = LinearMemorySnapshot.take(memory, top, [sp], { reset: "auto" });
    expect(snap.method, lastTrackerError()).toBe("dirty-pages");
    expect(snap.differingPages()).toBe(0);
    const u8 = new Uint8Array(memory.buffer);
    // JS glue writes into the heap (as Emscripten's syscalls and string helpers do).
    u8[5 * 4096 + 17] = 0xee;
    // The kernel writes into the heap (a read() into a buffer view of the memory).
    const fd = openSync("/proc/self/stat", "r");
    const n = readSync(fd, u8, 40 * 4096, 64, 0);
    closeSync(fd);
    expect(n).toBeGreaterThan(0);
    // Guest code writes.
    store(100 * 4096 + 3, 0x42);
    // The partial page above the tracked ones.
    u8[top - 1] = 0x99;
    sp.value = 99;
    expect(snap.differingPages()).toBe(4);
    const stats = snap.restore(top);
    expect(stats.method).toBe("dirty-pages");
    // The probe page of the self-check may be among the written ones; nothing else.
    expect(stats.writtenPages).toBeGreaterThanOrEqual(3);
    expect(stats.writtenPages).toBeLessThanOrEqual(4);
    expect(snap.differingPages()).toBe(0);
    expect(sp.value).toBe(1234);
    // Pages stay private after a copy-back: a second request writing the same page is seen again.
    store(100 * 4096 + 5, 0x43);
    expect(snap.differingPages()).toBe(1);
    expect(snap.restore(top).copiedBytes).toBe(4096);
    expect(snap.differingPages()).toBe(0);
  });

  it("clears memory that grew during a request, and keeps tracking after the grow", () => {
    const { memory, sp, store } = makeModule(16);
    const top = 16 * WASM_PAGE;
    const snap = LinearMemorySnapshot.take(memory, top, [sp], { reset: "auto" });
    expect(snap.method).toBe("dirty-pages");
    memory.grow(8);
    const grownTop = 24 * WASM_PAGE;
    store(top + 10, 7);
    new Uint8Array(memory.buffer).fill(9, top + 4096, grownTop);
    store(20, 1);
    const stats = snap.restore(grownTop);
    expect(stats.method).toBe("dirty-pages");
    expect(stats.zeroedBytes).toBe(grownTop - top);
    expect(new Uint8Array(memory.buffer, top, grownTop - top).every((b) => b === 0)).toBe(true);
    expect(snap.differingPages()).toBe(0);
  });

  it("drops a large written set with MADV_DONTNEED (the pages read the snapshot again)", () => {
    const { memory, sp } = makeModule(32);
    const top = 32 * WASM_PAGE;
    const snap = LinearMemorySnapshot.take(memory, top, [sp], { reset: "auto", limits: { trimAbovePages: 8 } });
    expect(snap.method).toBe("dirty-pages");
    const u8 = new Uint8Array(memory.buffer);
    // 40 separate ranges.
    for (let p = 1; p < 80; p += 2) u8[p * 4096 + 1] = 0xff - u8[p * 4096 + 1]!;
    const stats = snap.restore(top);
    expect(stats.writtenPages).toBeGreaterThanOrEqual(40);
    expect(stats.droppedPages).toBe(stats.writtenPages);
    expect(stats.copiedBytes).toBe(0);
    expect(snap.differingPages()).toBe(0);
    // Dropped pages are file-backed again: the next restore sees only what is written next.
    u8[3 * 4096] = 1 + u8[3 * 4096]!;
    expect(snap.restore(top).writtenPages).toBe(1);
    expect(snap.differingPages()).toBe(0);
  });

  it("a snapshot loaded into another memory tracks it too", () => {
    const a = makeModule(16);
    const snapA = LinearMemorySnapshot.take(a.memory, 16 * WASM_PAGE, [a.sp], { reset: "compare" });
    const b = makeModule(16);
    new Uint8Array(b.memory.buffer).fill(3, 0, 4096 * 10);
    const snapB = LinearMemorySnapshot.load(b.memory, snapA.export(), [b.sp], 16 * WASM_PAGE, { reset: "auto" });
    expect(snapB.method).toBe("dirty-pages");
    expect(snapB.differingPages()).toBe(0);
    b.store(9 * 4096, 5);
    snapB.restore(16 * WASM_PAGE);
    expect(snapB.differingPages()).toBe(0);
    expect(new Uint8Array(b.memory.buffer)[9 * 4096]).toBe(new Uint8Array(a.memory.buffer)[9 * 4096]);
  });

  it("a snapshot loaded from an image file is mapped, not copied: same bytes, the tail read, above it zeroed, written pages tracked", () => {
    const a = makeModule(16);
    const size = 10 * WASM_PAGE + 1000; // a partial last page: read into the memory, not mapped
    const exported = LinearMemorySnapshot.take(a.memory, size, [a.sp], { reset: "compare" }).export();
    const dir = mkdtempSync(join(tmpdir(), "zc-dirty-file-"));
    try {
      const path = join(dir, "image");
      writeFileSync(path, exported.memory);
      const b = makeModule(16);
      new Uint8Array(b.memory.buffer).fill(3); // the blank's own state, everywhere
      b.sp.value = 1;
      const snap = LinearMemorySnapshot.load(b.memory, { memory: Buffer.alloc(0), globals: exported.globals, file: { path, bytes: size } }, [b.sp], 12 * WASM_PAGE, { reset: "auto" });
      expect(snap.method, lastTrackerError()).toBe("dirty-pages");
      // Mapped: the image's pages are the file's (nothing held in JS but the partial last block).
      expect(snap.heldBytes).toBeLessThan(WASM_PAGE);
      const live = new Uint8Array(b.memory.buffer);
      expect(Buffer.from(live.subarray(0, size)).equals(exported.memory)).toBe(true);
      expect(live.subarray(size, 12 * WASM_PAGE).every((x) => x === 0)).toBe(true);
      expect(b.sp.value).toBe(1234);
      b.store(3 * 4096 + 5, 77);
      live[size - 10] = 9;
      const stats = snap.restore(12 * WASM_PAGE);
      expect(stats.writtenPages).toBe(1);
      expect(snap.differingPages()).toBe(0);
      expect(Buffer.from(live.subarray(0, size)).equals(exported.memory)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("keeps the image once, in the memfd (no JS copy beyond the partial last block); the compare keeps a JS copy", () => {
    const a = makeModule(64);
    const top = 3 * 1024 * 1024 + 100;
    const shared = LinearMemorySnapshot.take(a.memory, top, [a.sp], { reset: "auto" });
    expect(shared.method, lastTrackerError()).toBe("dirty-pages");
    expect(shared.heldBytes).toBeLessThan(WASM_PAGE);
    // Its export still holds every byte.
    const exported = shared.export().memory;
    expect(exported.equals(Buffer.from(a.memory.buffer, 0, top))).toBe(true);
    const b = makeModule(64);
    const copied = LinearMemorySnapshot.take(b.memory, top, [b.sp], { reset: "compare" });
    expect(copied.heldBytes).toBeGreaterThan(top / 2);
  });

  it("leaves the image's zero blocks out of the memfd (holes), and restores writes into them, copied or dropped", () => {
    const withZeroBlocks = () => {
      const m = makeModule(32);
      // Blocks 4–9 (64 KiB each) all zeros: 6 of the image's 32 blocks.
      new Uint8Array(m.memory.buffer).fill(0, 4 * WASM_PAGE, 10 * WASM_PAGE);
      return m;
    };
    const top = 32 * WASM_PAGE;
    const memfdBytes = () => {
      let n = 0;
      for (const line of readFileSync("/proc/self/maps", "utf8").split("\n")) {
        if (!line.includes("/memfd:zerocell-snapshot") || !line.includes(" r--s ")) continue;
        n += statSync(`/proc/self/map_files/${line.split(" ")[0]}`).blocks * 512;
      }
      return n;
    };
    for (const trimAbovePages of [1000, 8]) {
      const { memory, sp, store } = withZeroBlocks();
      const u8 = new Uint8Array(memory.buffer);
      const before = memfdBytes();
      const snap = LinearMemorySnapshot.take(memory, top, [sp], { reset: "auto", limits: { trimAbovePages } });
      expect(snap.method, lastTrackerError()).toBe("dirty-pages");
      const held = memfdBytes() - before;
      expect(held).toBeGreaterThan(0);
      expect(held).toBeLessThanOrEqual(top - 6 * WASM_PAGE);
      // Its export still has them, as zeros.
      expect(snap.export().memory.equals(Buffer.from(memory.buffer, 0, top))).toBe(true);
      snap.restore(top);
      // Written by JS and by wasm inside the zero blocks (read elsewhere in them: no write).
      for (let p = 0; p < 16 * 6; p += 2) u8[4 * WASM_PAGE + p * 4096 + 5] = 0xaa;
      store(7 * WASM_PAGE + 4096 * 3, 200);
      expect(u8[9 * WASM_PAGE + 4096 + 77]).toBe(0);
      const stats = snap.restore(top);
      // 49 written; the page read may count too: a read of a hole maps the kernel's zero page,
      // which pagemap reports like a written one (compared, found equal, not copied).
      expect(stats.writtenPages).toBeGreaterThanOrEqual(49);
      expect(stats.writtenPages).toBeLessThanOrEqual(50);
      if (trimAbovePages === 8) expect(stats.droppedPages).toBe(stats.writtenPages);
      else expect(stats.copiedBytes).toBe(49 * 4096);
      expect(snap.differingPages()).toBe(0);
      expect(u8.subarray(4 * WASM_PAGE, 10 * WASM_PAGE).every((b) => b === 0)).toBe(true);
    }
  });

  it("shares one memfd between images of one share key: each keeps only its differing pages, and resets to its own image", () => {
    const top = 32 * WASM_PAGE;
    const memfdMappings = () => readFileSync("/proc/self/maps", "utf8").split("\n").filter((l) => l.includes("/memfd:zerocell-snapshot"));
    const inodes = () => new Set(memfdMappings().map((l) => l.trim().split(/\s+/)[4]));
    const before = inodes();
    // The first image makes the memfd; blocks 4–9 are zeros (holes of it).
    const a = makeModule(32);
    new Uint8Array(a.memory.buffer).fill(0, 4 * WASM_PAGE, 10 * WASM_PAGE);
    const snapA = LinearMemorySnapshot.take(a.memory, top, [a.sp], { reset: "auto", shareKey: "image-1" });
    expect(snapA.method, lastTrackerError()).toBe("dirty-pages");
    // The second: the same bytes but for 3 pages (one of them inside a zero block of the first).
    const b = makeModule(32);
    const ub = new Uint8Array(b.memory.buffer);
    ub.fill(0, 4 * WASM_PAGE, 10 * WASM_PAGE);
    ub[2 * 4096 + 9] = 0x77;
    ub[3 * 4096 + 9] = 0x78;
    ub[5 * WASM_PAGE + 4096 + 1] = 0x79;
    const imageB = Buffer.from(ub.subarray(0, top));
    const snapB = LinearMemorySnapshot.take(b.memory, top, [b.sp], { reset: "auto", shareKey: "image-1" });
    expect(snapB.method, lastTrackerError()).toBe("dirty-pages");
    // One memfd for both (a new inode only for the first), and B's memory reads its own bytes.
    const added = [...inodes()].filter((i) => !before.has(i));
    expect(added.length).toBe(1);
    expect(Buffer.from(ub.subarray(0, top)).equals(imageB)).toBe(true);
    expect(snapB.differingPages()).toBe(0);
    expect(snapB.export().memory.equals(imageB)).toBe(true);
    // B's own pages are the only ones it wrote; a reset keeps them as they are.
    let stats = snapB.restore(top);
    expect(stats.writtenPages).toBe(3);
    expect(stats.copiedBytes).toBe(0);
    // Writes in each memory stay in it, and each resets to its own image, copied or dropped.
    b.store(2 * 4096 + 9, 1);
    b.store(20 * 4096, 0xfe);
    a.store(20 * 4096, 0xfd);
    expect(new Uint8Array(a.memory.buffer)[2 * 4096 + 9]).not.toBe(1);
    stats = snapB.restore(top);
    expect(stats.copiedBytes).toBe(2 * 4096);
    expect(Buffer.from(ub.subarray(0, top)).equals(imageB)).toBe(true);
    snapA.restore(top);
    expect(snapA.differingPages()).toBe(0);
    const dropping = makeModule(32);
    const ud = new Uint8Array(dropping.memory.buffer);
    ud.fill(0, 4 * WASM_PAGE, 10 * WASM_PAGE);
    ud[3 * 4096 + 9] = 0x55;
    const imageD = Buffer.from(ud.subarray(0, top));
    const snapD = LinearMemorySnapshot.take(dropping.memory, top, [dropping.sp], { reset: "auto", shareKey: "image-1", limits: { trimAbovePages: 8 } });
    for (let p = 1; p < 60; p += 2) ud[p * 4096 + 1] = 0xff - ud[p * 4096 + 1]!;
    stats = snapD.restore(top);
    expect(stats.droppedPages).toBe(stats.writtenPages);
    // Dropped pages read the shared memfd again: the own page was put back from the image.
    expect(Buffer.from(ud.subarray(0, top)).equals(imageD)).toBe(true);
    // An image too different for sharing gets a memfd of its own.
    const c = makeModule(32);
    new Uint8Array(c.memory.buffer).fill(9, 0, 2 * 1024 * 1024);
    const snapC = LinearMemorySnapshot.take(c.memory, top, [c.sp], { reset: "auto", shareKey: "image-1" });
    expect(snapC.method).toBe("dirty-pages");
    expect([...inodes()].filter((i) => !before.has(i)).length).toBe(2);
    expect(snapC.differingPages()).toBe(0);
  });

  it("loading an image zeroes what lies above it up to the allocator's top", () => {
    const a = makeModule(16);
    const snapA = LinearMemorySnapshot.take(a.memory, 8 * WASM_PAGE, [a.sp], { reset: "compare" });
    const b = makeModule(16);
    const u8 = new Uint8Array(b.memory.buffer);
    u8[10 * WASM_PAGE + 5] = 7;
    u8[12 * WASM_PAGE - 1] = 9;
    LinearMemorySnapshot.load(b.memory, snapA.export(), [b.sp], 12 * WASM_PAGE, { reset: "auto" });
    expect(u8.subarray(8 * WASM_PAGE, 12 * WASM_PAGE).every((x) => x === 0)).toBe(true);
    // Above the top: untouched.
    expect(u8[12 * WASM_PAGE]).toBe(new Uint8Array(a.memory.buffer)[12 * WASM_PAGE]);
  });

  it("forced fallback (option or ZEROCELL_RESET=compare): the full compare restores the same state", () => {
    for (const force of ["option", "env"] as const) {
      const { memory, sp, store } = makeModule(16);
      const top = 16 * WASM_PAGE;
      const before = process.env.ZEROCELL_RESET;
      if (force === "env") process.env.ZEROCELL_RESET = "compare";
      let snap: LinearMemorySnapshot;
      try {
        snap = LinearMemorySnapshot.take(memory, top, [sp], force === "option" ? { reset: "compare" } : {});
      } finally {
        if (before === undefined) delete process.env.ZEROCELL_RESET;
        else process.env.ZEROCELL_RESET = before;
      }
      expect(snap.method).toBe("compare");
      new Uint8Array(memory.buffer)[4096 * 3] = 0x55;
      store(4096 * 9 + 1, 0x66);
      sp.value = 5;
      const stats = snap.restore(top);
      expect(stats.method).toBe("compare");
      expect(stats.copiedBytes).toBe(2 * 4096);
      expect(snap.differingPages()).toBe(0);
      expect(sp.value).toBe(1234);
    }
  });
});
