/**
 * Objects: buckets and objects per account behind one interface (store.ts), the local-disk
 * backend (disk/), S3 access keys (access-keys.ts) and the S3-compatible API the gateway serves
 * (s3/). Code next to the data (bindings, POSTed programs, jobs) builds on this.
 * Must never: let one account's request reach another account's bucket, or say whether one exists.
 */
export * from "./store.js";
export { DiskObjectStore } from "./disk/index.js";
export { S3ObjectStore, DEFAULT_S3_BACKEND, type S3BackendConfig } from "./s3/index.js";

import type { OpenedDb } from "../store/index.js";
import { join } from "node:path";
import { DiskObjectStore as Disk } from "./disk/index.js";
import { S3ObjectStore as S3, type S3BackendConfig as S3Config } from "./s3/index.js";
import type { ObjectStore as Store, ObjectLimits } from "./store.js";

/** Which backend holds the objects: local disk (default) or a remote S3 API (e.g. Swift's s3api). */
export type ObjectBackendChoice = { kind: "disk" } | { kind: "s3"; s3: S3Config };

/** Opens the chosen backend for a data dir (DIR/objects holds disk blobs or the S3 backend's spool). */
export function openObjectStore(choice: ObjectBackendChoice, init: { db: OpenedDb; dir: string; limits?: Partial<ObjectLimits> }): Store {
  if (choice.kind === "s3") return new S3({ db: init.db, tmpDir: join(init.dir, "s3-spool"), config: choice.s3, ...(init.limits === undefined ? {} : { limits: init.limits }) });
  return new Disk({ db: init.db, dir: init.dir, ...(init.limits === undefined ? {} : { limits: init.limits }) });
}
