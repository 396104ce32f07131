/**
 * Values encrypted at rest: AES-256-GCM under a 32-byte key kept in a file of the data dir (mode
 * 0600, created atomically at first use). The associated data binds a ciphertext to the row it
 * belongs to (an access key id, an app and variable name): moved to another row it does not
 * decrypt. One seam for every secret the platform keeps (S3 secret keys, app secrets).
 * Must never: write a key file another user can read; return plaintext for a ciphertext whose
 * tag or associated data does not match.
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { ZerocellError } from "../errors.js";

/** Reads the encryption key, creating it (32 random bytes, 0600, atomically) on first use. */
function loadKey(file: string): Buffer {
  if (!existsSync(file)) {
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, randomBytes(32).toString("base64") + "\n", { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, file);
  }
  const key = Buffer.from(readFileSync(file, "utf8").trim(), "base64");
  if (key.length !== 32) throw new ZerocellError("secret_key_file_bad", 500, `store: ${file} does not hold a 32-byte key`);
  return key;
}

export class SecretBox {
  readonly #key: Buffer;

  constructor(keyFile: string) {
    this.#key = loadKey(keyFile);
  }

  /** base64url(iv ‖ tag ‖ ciphertext). */
  encrypt(aad: string, plaintext: string): string {
    return this.seal(aad, Buffer.from(plaintext, "utf8")).toString("base64url");
  }

  /** The plaintext, or undefined when the ciphertext, its tag or the associated data do not match. */
  decrypt(aad: string, enc: string): string | undefined {
    return this.open(aad, Buffer.from(enc, "base64url"))?.toString("utf8");
  }

  /** iv ‖ tag ‖ ciphertext of `plaintext` (bytes: snapshot blobs). */
  seal(aad: string, plaintext: Uint8Array): Buffer {
    return Buffer.concat(this.sealParts(aad, [plaintext]));
  }

  /**
   * seal() of the bytes of `parts` in order, as parts (iv, tag, then the ciphertext piece by
   * piece): no multi-MB buffer is allocated, so none faults in fresh pages.
   */
  sealParts(aad: string, parts: readonly Uint8Array[]): Buffer[] {
    const iv = randomBytes(12);
    const c = createCipheriv("aes-256-gcm", this.#key, iv);
    c.setAAD(Buffer.from(aad));
    const ct = parts.map((p) => c.update(p));
    ct.push(c.final());
    return [iv, c.getAuthTag(), ...ct];
  }

  /** The bytes `seal` was given, or undefined when the tag or the associated data do not match. */
  open(aad: string, raw: Uint8Array): Buffer | undefined {
    try {
      if (raw.length < 28) return undefined;
      const d = createDecipheriv("aes-256-gcm", this.#key, raw.subarray(0, 12));
      d.setAAD(Buffer.from(aad));
      d.setAuthTag(raw.subarray(12, 28));
      return Buffer.concat([d.update(raw.subarray(28)), d.final()]);
    } catch {
      return undefined;
    }
  }
}
