/**
 * A body received in full before any byte goes to the remote store: in memory up to a bound,
 * else in a 0600 temp file, hashed (MD5, SHA-256) and checked against what the request declared.
 * The remote then gets one PUT with a known length and Content-MD5, so it stores the whole body
 * or nothing: a failed or lying upload never half-replaces an object.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { assertBodyMatches, tooLarge, type PutOptions } from "../store.js";

export interface Spooled {
  size: number;
  sha256: string;
  md5: Buffer;
  /** A fresh stream of the bytes (each call starts over: the SDK may retry). */
  body(): Buffer | Readable;
  /** Frees the temp file, if any. */
  release(): Promise<void>;
}

export async function spool(body: AsyncIterable<Uint8Array>, o: { limit: number; what: string; memoryBytes: number; tmpDir: string; check: Pick<PutOptions, "contentLength" | "expectedSha256" | "expectedMd5Base64"> }): Promise<Spooled> {
  const declared = o.check.contentLength;
  if (declared !== undefined && declared > o.limit) throw tooLarge(o.what, declared, o.limit);
  const sha = createHash("sha256");
  const md5 = createHash("md5");
  const mem: Buffer[] = [];
  let size = 0;
  let file: { path: string; fh: Awaited<ReturnType<typeof open>> } | undefined;
  try {
    for await (const chunk of body) {
      size += chunk.byteLength;
      if (size > o.limit) throw tooLarge(o.what, size, o.limit);
      sha.update(chunk);
      md5.update(chunk);
      if (file === undefined && size <= o.memoryBytes) {
        mem.push(Buffer.from(chunk));
        continue;
      }
      if (file === undefined) {
        const path = join(o.tmpDir, randomBytes(12).toString("hex"));
        file = { path, fh: await open(path, "wx", 0o600) };
        for (const m of mem.splice(0)) await file.fh.write(m);
      }
      await file.fh.write(chunk);
    }
    if (file !== undefined) await file.fh.close();
  } catch (e) {
    if (file !== undefined) {
      await file.fh.close().catch(() => {});
      await rm(file.path, { force: true });
    }
    throw e;
  }
  const got = { size, sha256: sha.digest("hex"), md5: md5.digest() };
  const path = file?.path;
  const release = async () => {
    if (path !== undefined) await rm(path, { force: true });
  };
  try {
    assertBodyMatches(got, o.check);
  } catch (e) {
    await release();
    throw e;
  }
  const buf = path === undefined ? Buffer.concat(mem) : undefined;
  return { ...got, body: () => buf ?? createReadStream(path!), release };
}
