/**
 * Buckets per account, kept in the platform's SQLite (table buckets) for every backend: a
 * bucket's name is the account's, its id (`bkt_` + 20 hex digits, never reused) is what backends
 * key their bytes by, and bucket bindings reference it.
 * Must never: answer for another account's bucket differently than for a missing one.
 */
import { randomUUID } from "node:crypto";
import { and, asc, count, eq } from "drizzle-orm";
import type { OpenedDb } from "../store/index.js";
import { bucketBindings, buckets } from "../store/schema.js";
import { ObjectStoreError, assertBucketName, noSuchBucket, type BucketInfo, type ObjectLimits } from "./store.js";

export type BucketRow = typeof buckets.$inferSelect;

export class BucketRegistry {
  readonly #o: OpenedDb;
  readonly #limits: ObjectLimits;

  constructor(db: OpenedDb, limits: ObjectLimits) {
    this.#o = db;
    this.#limits = limits;
  }

  /** The account's bucket of this name, or NoSuchBucket (also for another account's bucket). */
  row(accountId: string, name: string): BucketRow {
    const row = this.#o.db.select().from(buckets).where(and(eq(buckets.accountId, accountId), eq(buckets.name, name))).get();
    if (row === undefined) throw noSuchBucket(name);
    return row;
  }

  create(accountId: string, name: string): BucketInfo {
    assertBucketName(name);
    const db = this.#o.db;
    const existing = db.select().from(buckets).where(and(eq(buckets.accountId, accountId), eq(buckets.name, name))).get();
    if (existing !== undefined) throw new ObjectStoreError("BucketAlreadyOwnedByYou", "bucket_exists", 409, `objects: you already have a bucket named "${name}"`);
    const n = db.select({ n: count() }).from(buckets).where(eq(buckets.accountId, accountId)).get()?.n ?? 0;
    if (n >= this.#limits.maxBucketsPerAccount) throw new ObjectStoreError("TooManyBuckets", "too_many_buckets", 400, `objects: an account may have at most ${this.#limits.maxBucketsPerAccount} buckets`);
    const createdAt = Date.now();
    db.insert(buckets).values({ id: `bkt_${randomUUID().replace(/-/g, "").slice(0, 20)}`, accountId, name, createdAt }).run();
    return { name, createdAt: new Date(createdAt) };
  }

  /** Drops a bucket the backend found empty, with its bindings. */
  remove(bucketId: string): void {
    this.#o.sqlite.transaction(() => {
      this.#o.db.delete(bucketBindings).where(eq(bucketBindings.bucketId, bucketId)).run();
      this.#o.db.delete(buckets).where(eq(buckets.id, bucketId)).run();
    })();
  }

  head(accountId: string, name: string): BucketInfo {
    const b = this.row(accountId, name);
    return { name: b.name, createdAt: new Date(b.createdAt) };
  }

  list(accountId: string): BucketInfo[] {
    return this.#o.db.select().from(buckets).where(eq(buckets.accountId, accountId)).orderBy(asc(buckets.name)).all().map((b) => ({ name: b.name, createdAt: new Date(b.createdAt) }));
  }
}
