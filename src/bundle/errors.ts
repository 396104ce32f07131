import { BundleError, PayloadTooLargeError } from "../errors.js";

/**
 * A bundle that exceeds a size limit (archive, uncompressed bytes, one file, entry count): HTTP 413
 * like every PayloadTooLargeError, but with the bundle-specific code "bundle_too_large".
 */
export class BundleTooLargeError extends PayloadTooLargeError {
  override readonly code: string = "bundle_too_large";
}

/** Quotes a name from untrusted input for an error message: JSON-escaped and shortened. */
export function q(value: string, max = 200): string {
  const s = value.length > max ? value.slice(0, max) + "…" : value;
  return JSON.stringify(s);
}

export function corrupt(message: string, cause?: unknown): BundleError {
  return new BundleError("bundle_corrupt", message, cause === undefined ? {} : { cause });
}
