/**
 * Per-key storage for keyed routes ("/posts/:id" with key = "id"): each (app, key) owns a /data
 * tree, kept as one file `DIR/keys/<app id>/<sha256(key)>.img` = sha256 of the rest + an encoded
 * image (src/bundle encodeImage). A commit writes a temp file, fsyncs it, renames it over the old
 * one and fsyncs the directory, so a reader (or a crash) sees the old tree or the new one, never
 * a mix. It belongs to the app, not the deployment: a new deployment sees the same data.
 * All file I/O is asynchronous: an fsync (ms on this disk) never stalls the gateway's event loop.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, rmSync, existsSync } from "node:fs";
import { mkdir, open, readFile, rename } from "node:fs/promises";
import { join } from "node:path";
import { and, desc, eq, sql } from "drizzle-orm";
import type { OpenedDb } from "./db.js";
import { appKeys } from "./schema.js";
import { ZerocellError } from "../errors.js";

export interface KeyInfo {
  key: string;
  bytes: number;
  version: number;
  updatedAt: string;
  lastAccessAt: string;
}

export class KeyStorageError extends ZerocellError {
  constructor(code: string, status: number, message: string) {
    super(code, status, message);
  }
}

/** How often a key's last_access_at is written at most, ms. */
const TOUCH_EVERY_MS = 5000;

/** Longest key value (the path parameter), characters. */
export const MAX_KEY_LENGTH = 512;

function sha256(data: Uint8Array | string): Buffer {
  return createHash("sha256").update(data).digest();
}

export class KeyStore {
  readonly #dir: string;
  readonly #db: OpenedDb;
  readonly #touch;

  constructor(dir: string, db: OpenedDb) {
    this.#dir = dir;
    this.#db = db;
    mkdirSync(dir, { recursive: true });
    this.#touch = db.sqlite.prepare("UPDATE app_keys SET last_access_at = ? WHERE app_id = ? AND key = ?");
  }

  #fileOf(appId: string, key: string): { dir: string; file: string } {
    if (!/^[A-Za-z0-9_]+$/.test(appId)) throw new KeyStorageError("bad_app", 500, "keys: bad app id");
    const dir = join(this.#dir, appId);
    return { dir, file: join(dir, `${sha256(key).toString("hex")}.img`) };
  }

  /** The committed /data image of a key (an empty image for a new key: undefined). */
  async load(appId: string, key: string): Promise<Buffer | undefined> {
    const { file } = this.#fileOf(appId, key);
    let raw: Buffer;
    try {
      raw = await readFile(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw e;
    }
    const image = raw.subarray(32);
    if (raw.length < 32 || !sha256(image).equals(raw.subarray(0, 32))) {
      throw new KeyStorageError("key_data_corrupt", 500, `keys: stored data of key "${key.slice(0, 80)}" is corrupt (hash mismatch)`);
    }
    this.#touched(appId, key);
    return image;
  }

  /** last_access_at, written at most once per key and TOUCH_EVERY_MS (not a write per request). */
  #touched(appId: string, key: string): void {
    const k = `${appId}\u0000${key}`;
    const now = Date.now();
    const last = this.#lastTouch.get(k);
    if (last !== undefined && now - last < TOUCH_EVERY_MS) return;
    if (this.#lastTouch.size > 100_000) this.#lastTouch.clear();
    this.#lastTouch.set(k, now);
    this.#touch.run(now, appId, key);
  }

  readonly #lastTouch = new Map<string, number>();

  /** Durably replaces a key's /data with `image`, before the response is sent. */
  async commit(appId: string, key: string, image: Uint8Array): Promise<void> {
    const { dir, file } = this.#fileOf(appId, key);
    await mkdir(dir, { recursive: true });
    const tmp = `${file}.${randomBytes(6).toString("hex")}.tmp`;
    const fh = await open(tmp, "w", 0o600);
    try {
      await fh.writev([sha256(image), image]);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
    const dh = await open(dir, "r");
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
    const now = Date.now();
    this.#db.db
      .insert(appKeys)
      .values({ appId, key, bytes: image.byteLength, version: 1, updatedAt: now, lastAccessAt: now })
      .onConflictDoUpdate({ target: [appKeys.appId, appKeys.key], set: { bytes: image.byteLength, version: sql`${appKeys.version} + 1`, updatedAt: now, lastAccessAt: now } })
      .run();
  }

  list(appId: string): KeyInfo[] {
    return this.#db.db.select().from(appKeys).where(eq(appKeys.appId, appId)).orderBy(desc(appKeys.lastAccessAt)).all().map((r) => ({
      key: r.key,
      bytes: r.bytes,
      version: r.version,
      updatedAt: new Date(r.updatedAt).toISOString(),
      lastAccessAt: new Date(r.lastAccessAt).toISOString(),
    }));
  }

  exists(appId: string, key: string): boolean {
    return existsSync(this.#fileOf(appId, key).file);
  }

  /** Deletes a key's data (explicit admin action). */
  delete(appId: string, key: string): boolean {
    const { file } = this.#fileOf(appId, key);
    const had = existsSync(file);
    rmSync(file, { force: true });
    const r = this.#db.db.delete(appKeys).where(and(eq(appKeys.appId, appId), eq(appKeys.key, key))).run();
    return had || r.changes > 0;
  }
}
