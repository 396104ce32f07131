/**
 * Bucket bindings: (bucket, key prefix) → app of the same account. A GET of an object under a
 * bound prefix runs the app's handler with the object as its input (src/platform/object-runs.ts)
 * instead of returning the bytes. The longest matching prefix wins.
 * Must never: bind a bucket to another account's app, or match a bucket of another account.
 */
import { randomUUID } from "node:crypto";
import { and, eq } from "drizzle-orm";
import type { OpenedDb } from "../store/index.js";
import { apps, bucketBindings, buckets } from "../store/schema.js";
import { ObjectStoreError, noSuchBucket } from "./store.js";

export interface BindingInfo {
  id: string;
  bucket: string;
  prefix: string;
  app: string;
  appId: string;
  accountId: string;
  createdAt: string;
}

/** Bindings per bucket (a bucket with more is refused another). */
const MAX_BINDINGS_PER_BUCKET = 100;

export class Bindings {
  readonly #o: OpenedDb;
  /** bucket id → its bindings, longest prefix first; rebuilt on every change. */
  #cache = new Map<string, BindingInfo[]>();
  #loaded = false;

  constructor(db: OpenedDb) {
    this.#o = db;
  }

  #all(): BindingInfo[] {
    return this.#o.db
      .select({ id: bucketBindings.id, bucketId: bucketBindings.bucketId, bucket: buckets.name, prefix: bucketBindings.prefix, app: apps.name, appId: apps.id, accountId: buckets.accountId, createdAt: bucketBindings.createdAt })
      .from(bucketBindings)
      .innerJoin(buckets, eq(buckets.id, bucketBindings.bucketId))
      .innerJoin(apps, eq(apps.id, bucketBindings.appId))
      .all()
      .map((r) => ({ id: r.id, bucket: r.bucket, prefix: r.prefix, app: r.app, appId: r.appId, accountId: r.accountId, createdAt: new Date(r.createdAt).toISOString(), bucketId: r.bucketId }));
  }

  #reload(): void {
    const byBucket = new Map<string, BindingInfo[]>();
    for (const b of this.#all() as Array<BindingInfo & { bucketId: string }>) {
      const { bucketId, ...info } = b;
      const list = byBucket.get(bucketId) ?? [];
      list.push(info);
      byBucket.set(bucketId, list);
    }
    for (const list of byBucket.values()) list.sort((x, y) => y.prefix.length - x.prefix.length);
    this.#cache = byBucket;
    this.#loaded = true;
  }

  #bucketId(accountId: string, bucket: string): string {
    const row = this.#o.db.select({ id: buckets.id }).from(buckets).where(and(eq(buckets.accountId, accountId), eq(buckets.name, bucket))).get();
    if (row === undefined) throw noSuchBucket(bucket);
    return row.id;
  }

  /** Binds `prefix` of the account's bucket to an app of the same account (replacing a binding of that prefix). */
  create(accountId: string, bucket: string, prefix: string, appId: string): BindingInfo {
    const bucketId = this.#bucketId(accountId, bucket);
    const app = this.#o.db.select().from(apps).where(eq(apps.id, appId)).get();
    if (app === undefined || app.accountId !== accountId) throw new ObjectStoreError("InvalidArgument", "app_not_found", 404, "objects: no such app in this account");
    if (Buffer.byteLength(prefix) > 1024 || prefix.includes("\0")) throw new ObjectStoreError("InvalidArgument", "bad_prefix", 400, "objects: a binding's prefix is at most 1,024 bytes, without NUL");
    if (!this.#loaded) this.#reload();
    if ((this.#cache.get(bucketId)?.length ?? 0) >= MAX_BINDINGS_PER_BUCKET) throw new ObjectStoreError("TooManyBindings", "too_many_bindings", 400, `objects: a bucket may have at most ${MAX_BINDINGS_PER_BUCKET} bindings`);
    const id = `bnd_${randomUUID().replace(/-/g, "").slice(0, 20)}`;
    this.#o.db.insert(bucketBindings).values({ id, bucketId, prefix, appId, createdAt: Date.now() }).onConflictDoUpdate({ target: [bucketBindings.bucketId, bucketBindings.prefix], set: { id, appId, createdAt: Date.now() } }).run();
    this.#reload();
    return this.list(accountId).find((b) => b.id === id)!;
  }

  list(accountId: string | undefined): BindingInfo[] {
    this.#reload();
    const all = [...this.#cache.values()].flat();
    return all.filter((b) => accountId === undefined || b.accountId === accountId).sort((a, b) => (a.bucket + "\0" + a.prefix < b.bucket + "\0" + b.prefix ? -1 : 1));
  }

  /** Removes a binding of the account (any account's when undefined); false when there is none. */
  delete(id: string, accountId: string | undefined): boolean {
    const found = this.list(accountId).find((b) => b.id === id);
    if (found === undefined) return false;
    this.#o.db.delete(bucketBindings).where(eq(bucketBindings.id, id)).run();
    this.#reload();
    return true;
  }

  /** The binding that serves `key` of the account's bucket, if any (longest prefix). */
  match(accountId: string, bucket: string, key: string): BindingInfo | undefined {
    if (!this.#loaded) this.#reload();
    if (this.#cache.size === 0) return undefined;
    const row = this.#o.db.select({ id: buckets.id }).from(buckets).where(and(eq(buckets.accountId, accountId), eq(buckets.name, bucket))).get();
    return row === undefined ? undefined : this.#cache.get(row.id)?.find((b) => key.startsWith(b.prefix));
  }
}
