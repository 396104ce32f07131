/**
 * The snapshot store with images as hosts send them: the memory gzip'd by the host (stored as it
 * came, after a gzip member of the header) or raw in parts (gzip'd here). Both load back to the
 * same bytes; a host's gzip that does not inflate to the memoryBytes it claimed, or that is not
 * gzip at all, is refused at load and forgotten (the next instance takes a new snapshot).
 */
import { describe, it, expect, beforeEach, afterEach, vi } from "vitest";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { BlobStore, openDb, Store, type OpenedDb } from "../../src/store/index.js";
import { SecretBox } from "../../src/store/secret-box.js";
import { SnapshotStore, type SnapshotImage } from "../../src/snapshot/index.js";
import { SnapshotFiles } from "../../src/snapshot/files.js";

let dir: string;
let db: OpenedDb;
let snapshots: SnapshotStore;
let deploymentId: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "zerocell-snapstore-"));
  db = openDb(join(dir, "zerocell.db"));
  deploymentId = newDeployment("snap");
  snapshots = new SnapshotStore(db, new BlobStore(join(dir, "blobs")), 64 * 1024 * 1024, new SecretBox(join(dir, "secrets.key")));
});

/** A PHP deployment of the default account in the test's database. */
function newDeployment(app: string): string {
  const store = new Store(db, { baseDomain: "platform.test" });
  return store.createDeployment({
    appName: app,
    accountId: store.ensureDefaultAccount(),
    runtime: "php",
    bundleSha256: createHash("sha256").update(`bundle ${app}`).digest("hex"),
    bundleBytes: 10,
    manifest: { runtime: "php" },
    routes: [{ host: `${app}.localhost`, path: "/", mode: "snapshot" }],
    privileged: true,
  }).id;
}

afterEach(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A 3 MiB image: zero blocks and patterned ones, as a wasm heap looks. */
function memory(): Buffer {
  const m = Buffer.alloc(3 * 1024 * 1024);
  for (let i = 0; i < m.length / 2; i += 7) m[i] = (i * 31) & 0xff;
  return m;
}

/** A SnapshotFiles in a temp dir of its own, for `fn`; removed after. */
async function withFiles(maxBytes: number, fn: (files: SnapshotFiles) => Promise<void>): Promise<void> {
  const parent = mkdtempSync(join(tmpdir(), "zerocell-snapfiles-"));
  const files = new SnapshotFiles({ maxBytes }, parent);
  try {
    await fn(files);
  } finally {
    vi.restoreAllMocks();
    files.close();
    rmSync(parent, { recursive: true, force: true });
  }
}

const base = (m: Partial<SnapshotImage>): SnapshotImage => ({ engine: "php", engineBuild: "build-1", globals: ["1", "-2"], extra: { fds: [] }, memory: Buffer.alloc(0), ...m });

describe("snapshot store: images as hosts send them", () => {
  it("stores a host's gzip as it came and loads it back byte for byte", async () => {
    const m = memory();
    const gz = gzipSync(m, { level: 1 });
    const saved = await snapshots.save(deploymentId, base({ memoryGzip: [gz.subarray(0, 1000), gz.subarray(1000)], memoryBytes: m.length }));
    expect(saved.bytes).toBeLessThan(gz.length + 1024);
    const img = await snapshots.load(deploymentId, "build-1");
    expect(img!.memory.equals(m)).toBe(true);
    expect(img!.globals).toEqual(["1", "-2"]);
    expect(img!.extra).toEqual({ fds: [] });
  });

  it("stores a raw image in parts and loads it back", async () => {
    const m = memory();
    await snapshots.save(deploymentId, base({ memoryParts: [m.subarray(0, 12345), m.subarray(12345)], memoryBytes: m.length }));
    expect((await snapshots.load(deploymentId, "build-1"))!.memory.equals(m)).toBe(true);
  });

  it("refuses, then forgets, a host's gzip that inflates to another length than it claimed", async () => {
    const m = memory();
    await snapshots.save(deploymentId, base({ memoryGzip: [gzipSync(m)], memoryBytes: m.length + 4096 }));
    await expect(snapshots.load(deploymentId, "build-1")).rejects.toThrow(/memory is \d+ bytes, header says/);
    expect(snapshots.has(deploymentId, "build-1")).toBe(false);
    expect(await snapshots.load(deploymentId, "build-1")).toBeUndefined();
  });

  it("refuses, then forgets, a host's 'gzip' that is not gzip", async () => {
    await snapshots.save(deploymentId, base({ memoryGzip: [Buffer.from("not gzip at all, just bytes")], memoryBytes: 27 }));
    await expect(snapshots.load(deploymentId, "build-1")).rejects.toThrow();
    expect(snapshots.has(deploymentId, "build-1")).toBe(false);
  });

  it("as files for hosts: decompressed once however many ask at once, and ahead of the first start by prefetchFile", async () => {
    await withFiles(64 << 20, async (files) => {
      const m = memory();
      await snapshots.save(deploymentId, base({ memoryParts: [m], memoryBytes: m.length }));
      // Three starts at once: one decompression, one file, and each gets it (no bytes through the pipe).
      const writes = vi.spyOn(files, "write");
      const got = await Promise.all([1, 2, 3].map(() => snapshots.loadForHost(deploymentId, "build-1", files)));
      expect(writes).toHaveBeenCalledTimes(1);
      writes.mockRestore();
      expect(files.stats().files).toBe(1);
      for (const g of got) {
        expect(g!.memory.length).toBe(0);
        expect(g!.file!.path).toBe(got[0]!.file!.path);
        expect(g!.globals).toEqual(["1", "-2"]);
      }
      expect(readFileSync(got[0]!.file!.path).equals(m)).toBe(true);
      // Written sparse: the half of zeros is holes, and the disk budget counts what was written.
      expect(got[0]!.file!.diskBytes).toBeLessThanOrEqual(m.length / 2 + 64 * 1024);
      // A deployment's snapshot just stored: prefetchFile makes its file in the background.
      const second = newDeployment("snap2");
      const m2 = Buffer.from(m);
      m2[0] = 0x5a;
      await snapshots.save(second, base({ memoryParts: [m2], memoryBytes: m2.length }));
      snapshots.prefetchFile(second, "build-1", files);
      await vi.waitFor(() => expect(files.stats().files).toBe(2), { timeout: 10_000 });
      // The next start finds the file: no decompression.
      const again = vi.spyOn(files, "write");
      const fromPrefetch = await snapshots.loadForHost(second, "build-1", files);
      expect(again).not.toHaveBeenCalled();
      again.mockRestore();
      expect(readFileSync(fromPrefetch!.file!.path).equals(m2)).toBe(true);
      // Without files (x86, or no temp dir) nothing is made and nothing fails.
      snapshots.prefetchFile(second, "build-1", undefined);
    });
  });

  it("as files: a file made ahead only takes free room, never an image a start may want", async () => {
    // Room for one 3 MiB image (about half of it written) and not two.
    await withFiles(2 << 20, async (files) => {
      const m = memory();
      await snapshots.save(deploymentId, base({ memoryParts: [m], memoryBytes: m.length }));
      const first = await snapshots.loadForHost(deploymentId, "build-1", files);
      const second = newDeployment("snap3");
      await snapshots.save(second, base({ memoryParts: [m], memoryBytes: m.length }));
      const writes = vi.spyOn(files, "write");
      snapshots.prefetchFile(second, "build-1", files);
      // The chain runs in order: a prefetch queued after it has run when this one resolves.
      await new Promise((r) => setTimeout(r, 200));
      expect(writes).not.toHaveBeenCalled();
      expect(files.get(first!.file!.sha256)).toBeDefined();
      // A start that wants it makes it (and that may unlink the least recently used).
      const got = await snapshots.loadForHost(second, "build-1", files);
      expect(readFileSync(got!.file!.path).equals(m)).toBe(true);
    });
  });

  it("as files: a stored image is inflated straight to disk, never whole in the gateway's memory", async () => {
    await withFiles(1 << 30, async (files) => {
      // 96 MiB of memory, one pattern byte per page: gzip makes it small, inflating it whole would
      // be a 96 MiB buffer.
      const m = Buffer.alloc(96 << 20);
      for (let i = 0; i < m.length; i += 4096) m[i] = (i >> 12) & 0xff || 1;
      await snapshots.save(deploymentId, base({ memoryGzip: [gzipSync(m, { level: 1 })], memoryBytes: m.length }));
      const sizes: number[] = [];
      const write = files.write.bind(files);
      vi.spyOn(files, "write").mockImplementation(async (sha, bytes, chunks) => {
        async function* seen() {
          for await (const c of chunks) {
            sizes.push(c.length);
            yield c;
          }
        }
        return write(sha, bytes, seen());
      });
      const got = await snapshots.loadForHost(deploymentId, "build-1", files);
      expect(readFileSync(got!.file!.path).equals(m)).toBe(true);
      // Many pieces, none larger than the inflater's 64 KiB chunk.
      expect(sizes.length).toBeGreaterThan(1000);
      expect(Math.max(...sizes)).toBeLessThanOrEqual(64 * 1024);
    });
  });

  it("as files: refuses, then forgets, a gzip that inflates past its length or is not gzip, and leaves no file", async () => {
    await withFiles(64 << 20, async (files) => {
      const m = memory();
      // Longer than it claims: the inflation stops at the claim (a bomb is not inflated whole).
      await snapshots.save(deploymentId, base({ memoryGzip: [gzipSync(Buffer.concat([m, Buffer.alloc(64 << 20, 1)]))], memoryBytes: m.length }));
      await expect(snapshots.loadForHost(deploymentId, "build-1", files)).rejects.toThrow(/memory is more than the \d+ bytes the header says/);
      expect(snapshots.has(deploymentId, "build-1")).toBe(false);
      // Shorter than it claims.
      await snapshots.save(deploymentId, base({ memoryGzip: [gzipSync(m)], memoryBytes: m.length + 4096 }));
      await expect(snapshots.loadForHost(deploymentId, "build-1", files)).rejects.toThrow(/memory is \d+ bytes, header says/);
      expect(snapshots.has(deploymentId, "build-1")).toBe(false);
      // Not gzip.
      await snapshots.save(deploymentId, base({ memoryGzip: [Buffer.from("not gzip at all, just bytes")], memoryBytes: 27 }));
      await expect(snapshots.loadForHost(deploymentId, "build-1", files)).rejects.toThrow(/snapshot: /);
      expect(snapshots.has(deploymentId, "build-1")).toBe(false);
      expect(await snapshots.loadForHost(deploymentId, "build-1", files)).toBeUndefined();
      // Nothing half-written is left, and nothing counts against the disk budget.
      expect(readdirSync(join(files.root, "m"))).toEqual([]);
      expect(files.stats().files).toBe(0);
    });
  });
});
