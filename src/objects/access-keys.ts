/**
 * S3 access keys (SigV4), one set per account. SigV4 verification needs the secret itself, so
 * a secret cannot be stored as a hash like API tokens: it is encrypted with AES-256-GCM under a
 * key kept in the data dir (DIR/access-keys.key, mode 0600, created at first start), with the
 * access key id as associated data (a ciphertext moved to another id's row does not decrypt).
 * Scopes: "read" (GET/HEAD/list) and "write" (PUT/POST/DELETE).
 * Must never: return or log a secret except once, to its creator; store one in clear.
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { and, desc, eq, isNull } from "drizzle-orm";
import type { OpenedDb } from "../store/index.js";
import { accessKeys } from "../store/schema.js";
import { ZerocellError } from "../errors.js";

export type AccessKeyScope = "read" | "write";
export const ACCESS_KEY_SCOPES: readonly AccessKeyScope[] = ["read", "write"];

export interface AccessKeyInfo {
  accessKeyId: string;
  accountId: string;
  scopes: AccessKeyScope[];
  createdAt: string;
}

export interface ResolvedAccessKey {
  accessKeyId: string;
  accountId: string;
  scopes: AccessKeyScope[];
  secretAccessKey: string;
}

/** AWS-shaped: 20 characters of A-Z2-7 starting with "ZC". */
const ACCESS_KEY_ID = /^ZC[A-Z2-7]{18}$/;
const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

function newAccessKeyId(): string {
  const bytes = randomBytes(18);
  let id = "ZC";
  for (const b of bytes) id += BASE32[b & 31];
  return id;
}

/** Reads the encryption key, creating it (32 random bytes, 0600, atomically) on first use. */
function loadKey(file: string): Buffer {
  if (!existsSync(file)) {
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, randomBytes(32).toString("base64") + "\n", { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, file);
  }
  const key = Buffer.from(readFileSync(file, "utf8").trim(), "base64");
  if (key.length !== 32) throw new ZerocellError("access_key_file_bad", 500, `objects: ${file} does not hold a 32-byte key`);
  return key;
}

export class AccessKeys {
  readonly #o: OpenedDb;
  readonly #key: Buffer;

  constructor(db: OpenedDb, keyFile: string) {
    this.#o = db;
    this.#key = loadKey(keyFile);
  }

  #encrypt(id: string, secret: string): string {
    const iv = randomBytes(12);
    const c = createCipheriv("aes-256-gcm", this.#key, iv);
    c.setAAD(Buffer.from(id));
    const ct = Buffer.concat([c.update(secret, "utf8"), c.final()]);
    return Buffer.concat([iv, c.getAuthTag(), ct]).toString("base64url");
  }

  #decrypt(id: string, enc: string): string | undefined {
    try {
      const raw = Buffer.from(enc, "base64url");
      const d = createDecipheriv("aes-256-gcm", this.#key, raw.subarray(0, 12));
      d.setAAD(Buffer.from(id));
      d.setAuthTag(raw.subarray(12, 28));
      return Buffer.concat([d.update(raw.subarray(28)), d.final()]).toString("utf8");
    } catch {
      return undefined;
    }
  }

  /** Creates a key pair; the secret is returned here and never again. */
  create(accountId: string, scopes: AccessKeyScope[]): { accessKeyId: string; secretAccessKey: string; scopes: AccessKeyScope[] } {
    const accessKeyId = newAccessKeyId();
    const secretAccessKey = randomBytes(30).toString("base64url");
    this.#o.db.insert(accessKeys).values({ id: accessKeyId, accountId, secretEnc: this.#encrypt(accessKeyId, secretAccessKey), scopes: scopes.join(","), createdAt: Date.now() }).run();
    return { accessKeyId, secretAccessKey, scopes };
  }

  /** The live key with this id (secret decrypted), or undefined. */
  resolve(accessKeyId: string): ResolvedAccessKey | undefined {
    if (!ACCESS_KEY_ID.test(accessKeyId)) return undefined;
    const row = this.#o.db.select().from(accessKeys).where(and(eq(accessKeys.id, accessKeyId), isNull(accessKeys.revokedAt))).get();
    if (row === undefined) return undefined;
    const secretAccessKey = this.#decrypt(row.id, row.secretEnc);
    if (secretAccessKey === undefined) return undefined;
    return { accessKeyId: row.id, accountId: row.accountId, scopes: row.scopes.split(",") as AccessKeyScope[], secretAccessKey };
  }

  /** Live keys of one account, or of all accounts (undefined). */
  list(accountId: string | undefined): AccessKeyInfo[] {
    const q = this.#o.db.select().from(accessKeys);
    const rows = (accountId === undefined ? q.where(isNull(accessKeys.revokedAt)) : q.where(and(eq(accessKeys.accountId, accountId), isNull(accessKeys.revokedAt)))).orderBy(desc(accessKeys.createdAt)).all();
    return rows.map((r) => ({ accessKeyId: r.id, accountId: r.accountId, scopes: r.scopes.split(",") as AccessKeyScope[], createdAt: new Date(r.createdAt).toISOString() }));
  }

  /** Revokes a key of the account (any account's when undefined); false when there is none. */
  revoke(accessKeyId: string, accountId: string | undefined): boolean {
    const key = this.resolve(accessKeyId);
    if (key === undefined || (accountId !== undefined && key.accountId !== accountId)) return false;
    this.#o.db.update(accessKeys).set({ revokedAt: Date.now() }).where(eq(accessKeys.id, accessKeyId)).run();
    return true;
  }
}
