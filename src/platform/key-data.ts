/**
 * Per-key storage of keyed routes: one request per (app, key) at a time, the key's committed
 * /data sent with it, and the new /data committed durably before the response leaves — only
 * for a success, only bytes that decode as an image, never over the app's data_mb.
 * Must never: commit /data of a failed request, or of another app.
 */
import { encodeImage, decodeImage, type Manifest } from "../bundle/index.js";
import { MAX_KEY_LENGTH, type KeyStore } from "../store/keys.js";
import type { KeyQueue } from "../pool/key-queue.js";
import type { Pool, PoolRunResult } from "../pool/index.js";
import type { RouteEntry, RouteMode } from "../router/index.js";
import type { EngineRequest } from "../runtime/engine.js";
import { InputError, ZerocellError } from "../errors.js";

const EMPTY_DATA = encodeImage({ entries: [], totalBytes: 0 });

/** The key of a keyed route: the path parameter, percent-decoded, bounded. */
export function decodeKey(raw: string): string {
  let key: string;
  try {
    key = decodeURIComponent(raw);
  } catch {
    throw new InputError("router: the key in the path is not valid percent-encoding", { code: "bad_key" });
  }
  if (key.length === 0 || key.length > MAX_KEY_LENGTH) throw new InputError(`router: the key must be 1 to ${MAX_KEY_LENGTH} characters`, { code: "bad_key" });
  return key;
}

export class KeyedRuns {
  readonly #queue: KeyQueue;
  readonly #keys: KeyStore;
  readonly #pool: Pool;

  constructor(queue: KeyQueue, keys: KeyStore, pool: Pool) {
    this.#queue = queue;
    this.#keys = keys;
    this.#pool = pool;
  }

  /**
   * A keyed request: waits its turn for the key, runs with the key's committed /data, and commits
   * the new /data durably (fsync) before the response leaves when the request succeeded
   * (status < 500). A failure (5xx, timeout, crash) commits nothing.
   */
  async run(target: RouteEntry["target"], mode: RouteMode, key: string, req: EngineRequest, manifest: Manifest) {
    return this.#queue.run<PoolRunResult>(`${target.appId}\u0000${key}`, () => `key "${key.slice(0, 80)}" of ${target.appName}`, async () => {
      const data = (await this.#keys.load(target.appId, key)) ?? EMPTY_DATA;
      const res = await this.#pool.run(target.deploymentId, mode, { ...req, data }, manifest.limits.timeoutMs, mode === "daemon" ? key : undefined);
      if (res.data !== undefined && res.status < 500) {
        const limit = manifest.limits.dataMb * 1024 * 1024;
        if (res.data.byteLength > limit) {
          throw new ZerocellError("key_data_too_large", 507, `keys: /data of key "${key.slice(0, 80)}" would be ${res.data.byteLength} bytes, over the limit of ${limit} bytes (limits.data_mb); nothing was saved`);
        }
        // Untrusted bytes from the host: only store what decodes as an image.
        decodeImage(Buffer.from(res.data.buffer, res.data.byteOffset, res.data.byteLength));
        await this.#keys.commit(target.appId, key, res.data);
      }
      return res;
    });
  }
}
