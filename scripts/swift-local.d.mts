/** Types of swift-local.mjs (a real OpenStack Swift on loopback for tests and benchmarks). */
export interface SwiftServer {
  /** The proxy's base URL (S3 API at /, Swift API at /v1, tempauth at /auth/v1.0). */
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  dir: string;
  /** The servers' combined output (for failure messages). */
  output(): string;
  stop(): Promise<void>;
}

/** Why Swift cannot start here (a missing Debian package), or undefined. */
export function swiftMissing(): string | undefined;
/** Starts Swift (proxy with s3api + tempauth, account, container, object servers, memcached) in a temp dir on free ports; resolves when it answers. */
export function startSwift(opts?: { timeoutMs?: number }): Promise<SwiftServer>;
