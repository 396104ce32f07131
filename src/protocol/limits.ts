/**
 * The sizes both ends of the gateway↔host pipe agree on, in one place (each side derives its
 * checks from these). Bytes unless the name says otherwise.
 */
export const PROTOCOL_LIMITS = {
  /** A frame's JSON header. */
  maxHeaderBytes: 1024 * 1024,
  /**
   * Largest frame the gateway sends (trusted): an init's image plus a snapshot, a keyed request's
   * body (max_body_bytes ≤ 100 MiB) plus its /data (data_mb ≤ 1 GiB). Only stops a corrupt length.
   */
  maxGatewayFrameBytes: 2 ** 31,
  /** Largest snapshot a host may send back (a PHP heap is capped well below this). */
  maxSnapshotBytes: 768 * 1024 * 1024,
  /** Response headers per reply, and the longest name and value. */
  maxResponseHeaders: 200,
  maxHeaderNameBytes: 256,
  maxHeaderValueBytes: 16 * 1024,
  /** A failure's code and message as the gateway keeps them. */
  maxFailCodeChars: 64,
  maxFailMessageChars: 2000,
  /** Warm-up requests a host announces (the manifest allows far fewer). */
  maxWarmupIndex: 1000,
  /** Snapshot globals (wasm mutable globals as decimal strings). */
  maxSnapshotGlobals: 16,
  maxEngineBuildChars: 256,
  /**
   * Instances (slots) one host process may carry (`serve --instances-per-host` is bounded by
   * it); slot numbers are 0 … maxSlotsPerHost − 1.
   */
  maxSlotsPerHost: 64,
  /** More guest instructions than one request can execute in its time limit at any speed. */
  maxInstructions: 2 ** 52,
} as const;

/** Largest frame a host may send: a response (or a snapshot) plus room for its header. */
export function maxHostFrameBytes(maxResponseBytes: number): number {
  return Math.max(maxResponseBytes, PROTOCOL_LIMITS.maxSnapshotBytes) + PROTOCOL_LIMITS.maxHeaderBytes;
}
