/**
 * Content-addressed blob store on local disk: blobs/sha256/ab/cdef…, written atomically
 * (temp file + fsync + rename), read back with a hash check so a corrupt file is never used.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, openSync, writeSync, fsyncSync, closeSync, renameSync, readFileSync, existsSync, unlinkSync } from "node:fs";
import { open, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { ZerocellError } from "../errors.js";

const HEX64 = /^[0-9a-f]{64}$/;

export function sha256Hex(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

export class BlobStore {
  readonly #dir: string;

  constructor(dir: string) {
    this.#dir = dir;
    mkdirSync(join(dir, "sha256"), { recursive: true });
  }

  #pathOf(hash: string): string {
    if (!HEX64.test(hash)) throw new ZerocellError("blob_bad_hash", 400, `blobs: "${hash}" is not a sha256 hex digest`);
    return join(this.#dir, "sha256", hash.slice(0, 2), hash.slice(2));
  }

  /** Stores bytes and returns their sha256; storing the same bytes twice is a no-op. */
  put(data: Buffer): string {
    const hash = sha256Hex(data);
    const path = this.#pathOf(hash);
    if (existsSync(path)) return hash;
    mkdirSync(join(this.#dir, "sha256", hash.slice(0, 2)), { recursive: true });
    const tmp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
    const fd = openSync(tmp, "w", 0o600);
    try {
      writeSync(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    return hash;
  }

  /**
   * put() of the bytes of `parts` in order, without joining them and off the event loop (written
   * with writev, fsync'd and renamed on libuv's threads): for multi-MB blobs, where a joined copy
   * costs more than the write (fresh pages fault slowly in this VM) and a synchronous fsync
   * stalls every request.
   */
  async putParts(parts: readonly Uint8Array[]): Promise<string> {
    const h = createHash("sha256");
    for (const p of parts) h.update(p);
    const hash = h.digest("hex");
    const path = this.#pathOf(hash);
    if (existsSync(path)) return hash;
    mkdirSync(join(this.#dir, "sha256", hash.slice(0, 2)), { recursive: true });
    const tmp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
    const fh = await open(tmp, "w", 0o600);
    try {
      await fh.writev(parts as Uint8Array[]);
      await fh.sync();
    } catch (e) {
      await fh.close().catch(() => {});
      await unlink(tmp).catch(() => {});
      throw e;
    }
    await fh.close();
    await rename(tmp, path);
    return hash;
  }

  /** Removes a blob (the caller checked nothing references it); false when it was not there. */
  delete(hash: string): boolean {
    try {
      unlinkSync(this.#pathOf(hash));
      return true;
    } catch {
      return false;
    }
  }

  /** Reads a blob and verifies its hash. */
  get(hash: string): Buffer {
    const path = this.#pathOf(hash);
    let data: Buffer;
    try {
      data = readFileSync(path);
    } catch (cause) {
      throw new ZerocellError("blob_missing", 500, `blobs: blob ${hash} is missing`, { cause });
    }
    if (sha256Hex(data) !== hash) throw new ZerocellError("blob_corrupt", 500, `blobs: blob ${hash} is corrupt (hash mismatch)`);
    return data;
  }
}
