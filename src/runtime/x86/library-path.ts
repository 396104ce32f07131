/**
 * Which libunicorn the x86 engine loads. Kept apart from unicorn.ts (koffi) so the runtime
 * registry can name the directory in the x86 hosts' read permissions without loading the FFI.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";

/** Debian's Unicorn 2.1.1 (trixie's libunicorn2t64), unpacked by scripts/install-unicorn.sh. */
export const UNICORN_21_DIR = "/opt/zerocell/unicorn-2.1.1";
export const UNICORN_21_PATH = join(UNICORN_21_DIR, "libunicorn.so.2");
/** Debian bookworm's libunicorn2 (2.0.1): the fallback. */
export const UNICORN_20_PATH = "/usr/lib/x86_64-linux-gnu/libunicorn.so.2";

/** $ZEROCELL_LIBUNICORN, else 2.1.1 when setup installed it, else 2.0.1. */
export function defaultUnicornLibrary(): string {
  const fromEnv = process.env.ZEROCELL_LIBUNICORN;
  if (fromEnv !== undefined && fromEnv !== "") return fromEnv;
  return readable(UNICORN_21_PATH) ? UNICORN_21_PATH : UNICORN_20_PATH;
}

/**
 * Whether the file exists and this process may read it. Under Node's permission model (sandbox
 * hosts of other runtimes cannot read the 2.1.1 directory) existsSync throws instead of
 * answering false.
 */
function readable(path: string): boolean {
  try {
    return existsSync(path);
  } catch {
    return false;
  }
}

/** Names the library snapshots are made with (part of the x86 engine's build id). */
export function unicornBuildTag(path = defaultUnicornLibrary()): string {
  if (path === UNICORN_21_PATH) return "libunicorn2t64-2.1.1";
  if (path === UNICORN_20_PATH) return "libunicorn2-2.0.1.post1";
  return `libunicorn:${path}`;
}
