/**
 * Stored snapshots: gzip'd, sealed (AES-256-GCM under the data dir's secrets key, bound to their
 * deployment and engine build: guest memory holds the app's secret env values, so a snapshot on
 * disk is as secret as they are), content-addressed in the blob store, one row per deployment and
 * engine build, cached decompressed in memory (lru-cache bounded by bytes). A snapshot whose
 * build differs from the running engine's is refused; a corrupt one (hash mismatch) is dropped
 * so the next instance rebuilds it.
 */
import { createGunzip, gunzip, type Gunzip } from "node:zlib";
import { promisify } from "node:util";
import { and, eq } from "drizzle-orm";
import { LRUCache } from "lru-cache";
import type { OpenedDb, BlobStore } from "../store/index.js";
import { snapshots } from "../store/schema.js";
import { ZerocellError } from "../errors.js";
import { PROTOCOL_LIMITS } from "../protocol/limits.js";
import type { SecretBox } from "../store/secret-box.js";
import type { SnapshotFile, SnapshotFiles } from "./files.js";
import { gzipPieces } from "./gzip.js";

const gunzipAsync = promisify(gunzip);

/** What an engine exports and imports (the PHP engine's shape; other engines fit it too). */
export interface SnapshotImage {
  engine: string;
  engineBuild: string;
  /** Mutable wasm globals, as decimal strings (they may be i64). */
  globals: string[];
  /** Engine-specific extra state (e.g. open device files), JSON. */
  extra: unknown;
  memory: Buffer;
  /** The memory as parts in order instead (`memory` empty): an image as it came from a host, not joined. */
  memoryParts?: readonly Buffer[];
  /** With memoryParts or memoryGzip: the memory's length, bytes. */
  memoryBytes?: number;
  /**
   * The memory gzip'd instead (`memory` empty), as a host sent it: stored as it is after a gzip
   * member of the header. Untrusted until loaded: load() inflates at most the largest image and
   * refuses one whose length is not the header's memoryBytes.
   */
  memoryGzip?: readonly Buffer[];
  /**
   * Where the memory is on disk, decompressed (a host maps it; files.ts). When set, `memory` is
   * empty: the bytes are only in the file.
   */
  file?: SnapshotFile;
}

export class SnapshotMismatchError extends ZerocellError {
  constructor(message: string) {
    super("snapshot_mismatch", 500, message);
  }
}

const MAGIC = "zerocell-snapshot/1";
/** Largest header we accept when reading a snapshot back. */
const MAX_HEADER = 1024 * 1024;
/**
 * Largest image inflated when reading a snapshot back: the largest a host may send, plus its
 * header (a stored gzip the host made that inflates further is refused, not inflated).
 */
const MAX_STORED_IMAGE_BYTES = PROTOCOL_LIMITS.maxSnapshotBytes + MAX_HEADER + 64;

/** A stored image before gzip: its two parts (prefix + header, then the memory itself), without copying the memory. */
function encodeSnapshotParts(img: SnapshotImage): Buffer[] {
  const header = Buffer.from(
    // No hash of the memory here: the blob store's sha256 of the stored bytes already covers it,
    // and hashing 40 MB on the gateway's event loop would stall every request for ~100 ms.
    JSON.stringify({ magic: MAGIC, engine: img.engine, engineBuild: img.engineBuild, globals: img.globals, extra: img.extra, memoryBytes: imageBytes(img) }),
  );
  const len = Buffer.alloc(4);
  len.writeUInt32BE(header.length);
  return [Buffer.concat([len, header]), ...(img.memoryParts ?? [img.memory])];
}

/** The image's memory length, bytes (in parts or in one buffer). */
export function imageBytes(img: SnapshotImage): number {
  if (img.memoryGzip !== undefined) return img.memoryBytes ?? 0;
  return img.memoryParts === undefined ? img.memory.length : (img.memoryBytes ?? img.memoryParts.reduce((n, p) => n + p.length, 0));
}

export function decodeSnapshot(raw: Buffer): SnapshotImage {
  const h = takeHeader(raw);
  if (h === undefined) throw new SnapshotMismatchError(raw.length < 4 ? "snapshot: truncated" : "snapshot: bad header length");
  const memory = h.rest;
  if (memory.length !== h.memoryBytes) throw new SnapshotMismatchError(`snapshot: memory is ${memory.length} bytes, header says ${h.memoryBytes}`);
  return { engine: h.engine, engineBuild: h.engineBuild, globals: h.globals, extra: h.extra, memory };
}

interface StoredHeader {
  magic?: string;
  engine: string;
  engineBuild: string;
  globals: string[];
  extra: unknown;
  memoryBytes: number;
}

/** A stored image's header (after its 4-byte length), checked. */
function parseHeader(json: Buffer): StoredHeader {
  let h: StoredHeader;
  try {
    h = JSON.parse(json.toString("utf8")) as StoredHeader;
  } catch {
    throw new SnapshotMismatchError("snapshot: the header is not JSON");
  }
  if (h === null || typeof h !== "object" || h.magic !== MAGIC) throw new SnapshotMismatchError("snapshot: unknown format");
  if (!Number.isSafeInteger(h.memoryBytes) || h.memoryBytes < 0 || h.memoryBytes > PROTOCOL_LIMITS.maxSnapshotBytes) {
    throw new SnapshotMismatchError(`snapshot: bad memory length ${String(h.memoryBytes)}`);
  }
  return h;
}

/** A gunzip's output chunks; its errors (not gzip, truncated) are a corrupt snapshot's. */
async function* inflated(z: Gunzip): AsyncGenerator<Buffer> {
  try {
    for await (const c of z) yield c as Buffer;
  } catch (e) {
    throw new SnapshotMismatchError(`snapshot: ${(e as Error).message}`);
  }
}

/**
 * The header at the front of a stored image's bytes (its 4-byte length, then the JSON) and `rest`,
 * what follows it; undefined while `buf` does not hold all of it yet.
 */
function takeHeader(buf: Buffer): (StoredHeader & { rest: Buffer }) | undefined {
  if (buf.length < 4) return undefined;
  const hlen = buf.readUInt32BE(0);
  if (hlen > MAX_HEADER) throw new SnapshotMismatchError("snapshot: bad header length");
  if (buf.length < 4 + hlen) return undefined;
  return { ...parseHeader(buf.subarray(4, 4 + hlen)), rest: buf.subarray(4 + hlen) };
}

/** Reads the header off the front of an inflating stored image; `rest` is what followed it in the last chunk. */
async function readHeader(it: AsyncIterator<Buffer>): Promise<StoredHeader & { rest: Buffer }> {
  let head: Buffer = Buffer.alloc(0);
  for (;;) {
    const h = takeHeader(head);
    if (h !== undefined) return h;
    const r = await it.next();
    if (r.done === true) throw new SnapshotMismatchError("snapshot: truncated");
    head = head.length === 0 ? r.value : Buffer.concat([head, r.value]);
  }
}

/** The memory after the header: exactly `bytes` of it, or a corrupt snapshot (a gzip that inflates further is not inflated). */
async function* memoryChunks(first: Buffer, it: AsyncIterator<Buffer>, bytes: number): AsyncGenerator<Buffer> {
  let seen = 0;
  for (let c: Buffer | undefined = first; ; ) {
    if (c !== undefined && c.length > 0) {
      seen += c.length;
      if (seen > bytes) throw new SnapshotMismatchError(`snapshot: memory is more than the ${bytes} bytes the header says`);
      yield c;
    }
    const r = await it.next();
    if (r.done === true) break;
    c = r.value;
  }
  if (seen !== bytes) throw new SnapshotMismatchError(`snapshot: memory is ${seen} bytes, header says ${bytes}`);
}

export class SnapshotStore {
  readonly #db: OpenedDb;
  readonly #blobs: BlobStore;
  /**
   * gzip'd snapshots by deployment/build (a few MB each). Decoded images (~30 MB) are not kept:
   * a gateway with many deployments would hold hundreds of MB; gunzip runs off the event loop.
   */
  readonly #cache: LRUCache<string, Buffer>;
  /** Deployments whose snapshot is being written, so two hosts do not both store one. */
  readonly #writing = new Set<string>();

  /** Seals blobs at rest; without one (tests of the store alone) they are stored as gzip. */
  readonly #box: SecretBox | undefined;

  constructor(db: OpenedDb, blobs: BlobStore, maxCacheBytes = 64 * 1024 * 1024, box?: SecretBox) {
    this.#db = db;
    this.#blobs = blobs;
    this.#box = box;
    this.#cache = new LRUCache<string, Buffer>({ maxSize: maxCacheBytes, sizeCalculation: (v) => Math.max(1, v.length) });
  }

  /** What the in-memory cache of gzip'd snapshots holds now (diagnostics). */
  cacheStats(): { entries: number; bytes: number } {
    return { entries: this.#cache.size, bytes: this.#cache.calculatedSize };
  }

  /** The stored snapshot of a deployment for this engine build, or undefined (then: rebuild). */
  async load(deploymentId: string, engineBuild: string): Promise<SnapshotImage | undefined> {
    const key = `${deploymentId}/${engineBuild}`;
    const row = this.#row(deploymentId, engineBuild);
    if (row === undefined) return undefined;
    try {
      const packed = this.#cache.get(key) ?? this.#unseal(key, this.#blobs.get(row.sha256));
      const img = decodeSnapshot(await gunzipAsync(packed, { maxOutputLength: MAX_STORED_IMAGE_BYTES }));
      if (img.engineBuild !== engineBuild) throw new SnapshotMismatchError(`snapshot: built by ${img.engineBuild}, engine is ${engineBuild}`);
      this.#cache.set(key, packed);
      return img;
    } catch (e) {
      // Corrupt or foreign: forget it; the next instance takes a new one.
      this.#forget(deploymentId, engineBuild);
      throw e;
    }
  }

  /** Which row is a deployment's snapshot for an engine build. */
  #of(deploymentId: string, engineBuild: string) {
    return and(eq(snapshots.deploymentId, deploymentId), eq(snapshots.engineBuild, engineBuild));
  }

  #row(deploymentId: string, engineBuild: string) {
    return this.#db.db.select().from(snapshots).where(this.#of(deploymentId, engineBuild)).get();
  }

  /** Drops a corrupt or foreign snapshot (row and cached bytes): the next instance takes a new one. */
  #forget(deploymentId: string, engineBuild: string): void {
    this.#cache.delete(`${deploymentId}/${engineBuild}`);
    this.#db.db.delete(snapshots).where(this.#of(deploymentId, engineBuild)).run();
  }

  /** Headers (globals, extra) of the images in `files`, by content address. */
  readonly #headers = new LRUCache<string, Omit<SnapshotImage, "memory" | "file">>({ max: 4096 });

  /**
   * The stored snapshot as a file a host maps (decompressed once per snapshot, files.ts), or, when
   * `files` is undefined or cannot take it, as load() gives it.
   */
  async loadForHost(deploymentId: string, engineBuild: string, files: SnapshotFiles | undefined): Promise<SnapshotImage | undefined> {
    if (files === undefined) return this.load(deploymentId, engineBuild);
    const row = this.#row(deploymentId, engineBuild);
    if (row === undefined) return undefined;
    const header = this.#headers.get(row.sha256);
    const file = files.get(row.sha256);
    if (header !== undefined && file !== undefined && header.engineBuild === engineBuild) return { ...header, memory: Buffer.alloc(0), file };
    // One decompression per image, however many starts ask at once.
    const making = this.#making.get(row.sha256);
    if (making !== undefined) return making;
    const made = this.#makeFile(deploymentId, engineBuild, row.sha256, files);
    this.#making.set(row.sha256, made);
    try {
      return await made;
    } finally {
      this.#making.delete(row.sha256);
    }
  }

  /** Images being decompressed into their files, by content address. */
  readonly #making = new Map<string, Promise<SnapshotImage | undefined>>();

  /**
   * Decompresses the stored snapshot straight into its file (streamed: the image is never whole
   * in the gateway; a 28 MB buffer per image was memory glibc kept), the header read first. A
   * snapshot that is corrupt or foreign is forgotten as load() forgets it; a file that cannot be
   * written (disk full, no temp dir) falls back to load(): the bytes travel through the pipe.
   */
  async #makeFile(deploymentId: string, engineBuild: string, sha256: string, files: SnapshotFiles): Promise<SnapshotImage | undefined> {
    const key = `${deploymentId}/${engineBuild}`;
    let header: Omit<SnapshotImage, "memory" | "file"> | undefined;
    let made: SnapshotFile;
    let z: Gunzip | undefined;
    try {
      const packed = this.#cache.get(key) ?? this.#unseal(key, this.#blobs.get(sha256));
      z = createGunzip({ chunkSize: 64 * 1024 });
      z.end(packed);
      const it = inflated(z);
      const h = await readHeader(it);
      if (h.engineBuild !== engineBuild) throw new SnapshotMismatchError(`snapshot: built by ${h.engineBuild}, engine is ${engineBuild}`);
      header = { engine: h.engine, engineBuild: h.engineBuild, globals: h.globals, extra: h.extra };
      // Not kept in the cache of gzip'd snapshots: the file serves the next starts.
      made = await files.write(sha256, h.memoryBytes, memoryChunks(h.rest, it, h.memoryBytes));
    } catch (e) {
      z?.destroy();
      if (header !== undefined && !(e instanceof SnapshotMismatchError)) {
        // The bytes were good so far; the disk was not: the pipe instead.
        return this.load(deploymentId, engineBuild);
      }
      this.#forget(deploymentId, engineBuild);
      throw e;
    }
    this.#headers.set(sha256, header);
    return { ...header, memory: Buffer.alloc(0), file: made };
  }

  /**
   * Makes the file of a snapshot just stored, in the background, so the deployment's first cold
   * restore maps it instead of decompressing it first (~300 ms for a 30 MB image). Streamed like
   * any file (no whole image in memory). Failures are left to the restore, which tries again.
   */
  prefetchFile(deploymentId: string, engineBuild: string, files: SnapshotFiles | undefined): void {
    // One at a time, behind each other (a burst of deploys must not have every thread of the
    // pool inflating at once); past a queue of 32, left to the first restore.
    if (files === undefined || this.#prefetchQueued >= 32) return;
    this.#prefetchQueued++;
    this.#prefetchChain = this.#prefetchChain
      .then(() => {
        // Only into free room: made ahead, it must not unlink an image a start will want (an
        // older app's, least recently used). Its length bounds what it writes.
        const row = this.#row(deploymentId, engineBuild);
        if (row === undefined || !files.hasRoomFor(row.memoryBytes)) return;
        return this.loadForHost(deploymentId, engineBuild, files);
      })
      .catch(() => {})
      .finally(() => this.#prefetchQueued--);
  }

  #prefetchChain: Promise<unknown> = Promise.resolve();
  #prefetchQueued = 0;

  /** Whether a snapshot exists (or is being written) for this deployment and build. */
  has(deploymentId: string, engineBuild: string): boolean {
    if (this.#writing.has(`${deploymentId}/${engineBuild}`)) return true;
    return this.#db.db.select({ id: snapshots.id }).from(snapshots).where(this.#of(deploymentId, engineBuild)).get() !== undefined;
  }

  async save(deploymentId: string, img: SnapshotImage): Promise<{ sha256: string; bytes: number }> {
    const key = `${deploymentId}/${img.engineBuild}`;
    this.#writing.add(key);
    try {
      // gzip members in a row inflate as one stream: the header's member, then the host's own.
      // Kept in pieces through the seal and the write: a joined multi-MB copy costs more than
      // the write here (fresh pages fault slowly), and the first load fills the cache.
      const packed = img.memoryGzip !== undefined ? [...(await gzipPieces([encodeSnapshotParts(img)[0]!], 1)), ...img.memoryGzip] : await gzipPieces(encodeSnapshotParts(img), 1);
      const sha256 = await this.#blobs.putParts(this.#box === undefined ? packed : this.#box.sealParts(this.#aad(key), packed));
      const bytes = packed.reduce((n, p) => n + p.length, 0);
      this.#db.db
        .insert(snapshots)
        .values({ deploymentId, engine: img.engine, engineBuild: img.engineBuild, sha256, bytes, memoryBytes: imageBytes(img), createdAt: Date.now() })
        .onConflictDoNothing()
        .run();
      return { sha256, bytes };
    } finally {
      this.#writing.delete(key);
    }
  }

  #aad(key: string): string {
    return `snapshot\0${key}`;
  }

  /** The gzip'd snapshot inside a stored blob; a blob that does not open is refused like a corrupt one. */
  #unseal(key: string, stored: Buffer): Buffer {
    if (this.#box === undefined) return stored;
    const packed = this.#box.open(this.#aad(key), stored);
    if (packed === undefined) throw new SnapshotMismatchError("snapshot: the stored blob does not decrypt (another deployment's, or written without the secrets key)");
    return packed;
  }
}
