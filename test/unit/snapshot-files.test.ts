/**
 * Snapshot images as files hosts map (src/snapshot/files.ts): written once per stored snapshot,
 * handed to one host's uid through a hard link in a directory only that uid can enter, bounded on
 * disk, and gone when the host is.
 */
import { describe, it, expect, afterEach } from "vitest";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, writeFileSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SnapshotFiles, removeOrphanRoots } from "../../src/snapshot/files.js";

const SHA_A = "a".repeat(64);
const SHA_B = "b".repeat(64);
const isRoot = process.getuid?.() === 0;
const setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].find((p) => existsSync(p));

/** Whether `uid` (no groups but its own gid) can read `path`. */
function canRead(uid: number, path: string): boolean {
  const r = spawnSync(setpriv!, [`--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", "cat", path], { stdio: ["ignore", "ignore", "ignore"] });
  return r.status === 0;
}

describe("snapshot files", () => {
  const made: SnapshotFiles[] = [];
  const parents: string[] = [];
  const files = (maxBytes = 1 << 20) => {
    const parent = mkdtempSync(join(tmpdir(), "zc-snapfiles-"));
    parents.push(parent);
    // As the system's temp dir is: hosts may pass through it (mkdtemp made it 0700).
    chmodSync(parent, 0o711);
    const f = new SnapshotFiles({ maxBytes }, parent);
    made.push(f);
    return f;
  };
  afterEach(() => {
    for (const f of made.splice(0)) f.close();
    for (const p of parents.splice(0)) rmSync(p, { recursive: true, force: true });
  });

  it("removes the plaintext images of a gateway that died without cleaning up, and only those", () => {
    const parent = mkdtempSync(join(tmpdir(), "zc-snapfiles-"));
    parents.push(parent);
    // A pid that ran and is gone: a child that exited.
    const dead = spawnSync(process.execPath, ["-e", "0"]).pid!;
    const orphan = join(parent, `zerocell-snapshots-${dead}-AbC123`);
    mkdirSync(join(orphan, "m"), { recursive: true });
    writeFileSync(join(orphan, "m", SHA_A), "tenant memory");
    // A running gateway's root (this process stands in for it), and names that are not roots.
    const live = join(parent, `zerocell-snapshots-${process.ppid}-XyZ789`);
    mkdirSync(live);
    const other = join(parent, "zerocell-snapshots-notapid");
    mkdirSync(other);
    const f = new SnapshotFiles({ maxBytes: 1 << 20 }, parent);
    made.push(f);
    expect(existsSync(orphan)).toBe(false);
    expect(existsSync(live)).toBe(true);
    expect(existsSync(other)).toBe(true);
    // Its own root is named after its pid, and is not removed by another gateway's sweep.
    expect(f.root).toMatch(new RegExp(`zerocell-snapshots-${process.pid}-[A-Za-z0-9]{6}$`));
    expect(removeOrphanRoots(parent)).toEqual([]);
    expect(existsSync(f.root)).toBe(true);
  });

  it("writes an image once, read-only, in a directory no host can enter", async () => {
    const f = files();
    const image = await f.put(SHA_A, Buffer.from("snapshot bytes"));
    expect(readFileSync(image.path, "utf8")).toBe("snapshot bytes");
    expect(image.bytes).toBe(14);
    expect(statSync(image.path).mode & 0o777).toBe(0o444);
    expect(statSync(join(f.root, "m")).mode & 0o777).toBe(0o700);
    expect(statSync(f.root).mode & 0o777).toBe(0o711);
    // Once: the same content address gives the same file.
    expect(await f.put(SHA_A, Buffer.from("other"))).toEqual(image);
    await expect(f.put("../x", Buffer.from("x"))).rejects.toThrow(/content address/);
  });

  it("hands an image to one host's uid only, and takes it back when the host is gone", async () => {
    const f = files();
    const image = await f.put(SHA_A, Buffer.from("tenant A's memory"));
    const path = f.link(image, 200_123);
    expect(path).toBe(join(f.root, "h200123", SHA_A));
    // A hard link: the same bytes, no copy.
    expect(statSync(path).ino).toBe(statSync(image.path).ino);
    const dir = statSync(join(f.root, "h200123"));
    expect(dir.mode & 0o777).toBe(isRoot ? 0o750 : 0o700);
    if (isRoot) {
      expect(dir.uid).toBe(0);
      expect(dir.gid).toBe(200_123);
    }
    if (isRoot && setpriv !== undefined) {
      expect(canRead(200_123, path)).toBe(true);
      // Another host's uid reaches neither the link nor the store.
      expect(canRead(200_124, path)).toBe(false);
      expect(canRead(200_123, image.path)).toBe(false);
    }
    f.release(200_123);
    expect(readdirSync(join(f.root, "h200123"))).toEqual([]);
    // The store's file stays for the next host.
    expect(existsSync(image.path)).toBe(true);
  });

  it("writes the image sparse: blocks of zeros are holes, the bytes read back equal", async () => {
    const f = files(64 << 20);
    // 8 MiB: 2 MiB of pattern, then zeros but one byte near the end (a tail past whole blocks too).
    const m = Buffer.alloc(8 * 1024 * 1024 + 100);
    for (let i = 0; i < 2 * 1024 * 1024; i += 3) m[i] = (i * 7) & 0xff || 1;
    m[m.length - 50] = 9;
    const image = await f.put(SHA_A, m);
    expect(image.bytes).toBe(m.length);
    expect(readFileSync(image.path).equals(m)).toBe(true);
    const st = statSync(image.path);
    expect(st.size).toBe(m.length);
    expect(st.mode & 0o777).toBe(0o444);
    // 512-byte blocks on disk: about the 2 MiB written and the last block, not 8 MiB.
    expect(st.blocks * 512).toBeLessThan(3 * 1024 * 1024);
    // Once per content address.
    expect(await f.put(SHA_A, Buffer.from("other"))).toEqual(image);
    expect(f.get(SHA_A)).toEqual(image);
    await expect(f.put("../x", Buffer.from("x"))).rejects.toThrow(/content address/);
    // No temp file is left behind.
    expect(readdirSync(join(f.root, "m"))).toEqual([SHA_A]);
  });

  it("writes an image from pieces of any size in order; too many or too few bytes leave no file", async () => {
    const f = files(64 << 20);
    const m = Buffer.alloc(3 * 1024 * 1024 + 777);
    for (let i = 1024 * 1024; i < m.length; i += 5) m[i] = (i * 13) & 0xff || 2;
    // Pieces that straddle the 64 KiB blocks and the 1 MiB runs.
    async function* pieces(b: Buffer, size: number) {
      for (let i = 0; i < b.length; i += size) yield b.subarray(i, Math.min(b.length, i + size));
    }
    await expect(f.write(SHA_B, m.length - 1, pieces(m, 10_007))).rejects.toThrow(/longer than/);
    await expect(f.write(SHA_B, m.length + 1, pieces(m, 10_007))).rejects.toThrow(/is \d+ bytes, not \d+/);
    expect(readdirSync(join(f.root, "m"))).toEqual([]);
    expect(f.get(SHA_B)).toBeUndefined();
    const image = await f.write(SHA_A, m.length, pieces(m, 10_007));
    expect(readFileSync(image.path).equals(m)).toBe(true);
    // The first MiB (zeros) is a hole; the disk budget counts what was written.
    expect(image.diskBytes).toBe(m.length - 1024 * 1024);
    expect(statSync(image.path).blocks * 512).toBeLessThan(m.length - 1024 * 1024 + 64 * 1024);
    expect(readdirSync(join(f.root, "m"))).toEqual([SHA_A]);
  });

  it("keeps at most maxBytes of images (least recently used go first)", async () => {
    const f = files(20);
    const a = await f.put(SHA_A, Buffer.alloc(12, 1));
    const b = await f.put(SHA_B, Buffer.alloc(12, 2));
    expect(existsSync(a.path)).toBe(false);
    expect(f.get(SHA_A)).toBeUndefined();
    expect(f.get(SHA_B)).toEqual(b);
    expect(f.stats()).toEqual({ files: 1, bytes: 12 });
  });
});
