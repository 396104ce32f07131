/**
 * Objects: buckets and objects per account behind one interface (store.ts), the local-disk
 * backend (disk/), S3 access keys (access-keys.ts) and the S3-compatible API the gateway serves
 * (s3/). Code next to the data (bindings, POSTed programs, jobs) builds on this.
 * Must never: let one account's request reach another account's bucket, or say whether one exists.
 */
export * from "./store.js";
export { DiskObjectStore } from "./disk/index.js";
