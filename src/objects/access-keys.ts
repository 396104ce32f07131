/**
 * S3 access keys (SigV4), one set per account. SigV4 verification needs the secret itself, so
 * a secret cannot be stored as a hash like API tokens: it is encrypted with AES-256-GCM under a
 * key kept in the data dir (DIR/access-keys.key, mode 0600, created at first start), with the
 * access key id as associated data (a ciphertext moved to another id's row does not decrypt).
 * Scopes: "read" (GET/HEAD/list) and "write" (PUT/POST/DELETE).
 * Must never: return or log a secret except once, to its creator; store one in clear.
 */
import { randomBytes } from "node:crypto";
import { and, desc, eq, isNull } from "drizzle-orm";
import type { OpenedDb } from "../store/index.js";
import { accessKeys, accounts } from "../store/schema.js";
import { SecretBox } from "../store/secret-box.js";

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

export class AccessKeys {
  readonly #o: OpenedDb;
  readonly #box: SecretBox;

  constructor(db: OpenedDb, keyFile: string) {
    this.#o = db;
    this.#box = new SecretBox(keyFile);
  }

  #encrypt(id: string, secret: string): string {
    return this.#box.encrypt(id, secret);
  }

  #decrypt(id: string, enc: string): string | undefined {
    return this.#box.decrypt(id, enc);
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
    // A disabled account's keys are refused like revoked ones.
    const owner = this.#o.db.select({ d: accounts.disabledAt }).from(accounts).where(eq(accounts.id, row.accountId)).get();
    if (owner === undefined || owner.d !== null) return undefined;
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
