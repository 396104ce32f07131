/**
 * glibc's heap, in the gateway and in the sandbox hosts.
 *
 * The gateway (`tuneGatewayMalloc`, once at start): its large buffers (a snapshot's blob read
 * and unsealed, a bundle, an x86 image: MBs each) are always their own mmap, given back when freed.
 * glibc's default raises the mmap threshold to the size of the largest mmapped chunk freed (up to
 * 32 MiB), after which buffers that size come from the heap's arenas and stay there; a fixed
 * threshold turns that off. Measured: bench/density.mjs's gateway PSS (docs/memory.md).
 *
 * A sandbox host: one arena (the pool starts hosts with MALLOC_ARENA_MAX=1,
 * `HOST_MALLOC_ENV` in src/pool/spawn.ts) and its free pages handed back to the kernel
 * (malloc_trim) once the host has booted and whenever it goes idle after serving (main.ts).
 *
 * Why (docs/memory.md, "malloc arenas"): V8 decodes and compiles php.wasm / Pyodide and collects
 * on background threads, and glibc gives every such thread an arena of its own (64 MiB-aligned)
 * whose freed chunks it keeps. In one PHP hello instance that was ~70 MB of anonymous memory out
 * of ~140 MB PSS; with one arena and a trim the process is ~80 MB.
 * Must never: run a trim during a request (it walks the heap: 5–20 ms on the host's one thread).
 */
import { createRequire } from "node:module";

type TrimFn = (pad: number) => number;
type MalloptFn = (param: number, value: number) => number;
let libc: { trim: TrimFn; mallopt: MalloptFn } | null | undefined;
let trims = 0;

function load(): typeof libc {
  if (libc !== undefined) return libc;
  try {
    // koffi is a native addon: only hosts started with --allow-addons have it (every runtime's
    // host does); without it there is no trim, and nothing else changes.
    const koffi = createRequire(import.meta.url)("koffi") as typeof import("koffi");
    const lib = koffi.load("libc.so.6");
    libc = { trim: lib.func("int malloc_trim(size_t pad)") as TrimFn, mallopt: lib.func("int mallopt(int param, int value)") as MalloptFn };
  } catch {
    libc = null;
  }
  return libc;
}

/** glibc's mallopt parameter: the size from which malloc maps a chunk of its own. */
const M_MMAP_THRESHOLD = -3;
/** The gateway's fixed mmap threshold, bytes (glibc's initial one is 128 KiB). */
const GATEWAY_MMAP_THRESHOLD = 256 * 1024;

let gatewayTuned = false;
/** Fixes the gateway's mmap threshold (above); once per process, no-op without koffi. */
export function tuneGatewayMalloc(): void {
  if (gatewayTuned) return;
  gatewayTuned = true;
  load()?.mallopt(M_MMAP_THRESHOLD, GATEWAY_MMAP_THRESHOLD);
}

/** Hands glibc's free heap pages back to the kernel now (no-op without koffi). */
export function trimMalloc(): void {
  const f = load();
  if (f == null) return;
  f.trim(0);
  trims++;
}

/** How many trims ran (diagnostics: the host's memory report). */
export function mallocTrims(): number {
  return trims;
}
