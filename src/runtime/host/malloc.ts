/**
 * glibc's heap in a sandbox host: one arena (the pool starts hosts with MALLOC_ARENA_MAX=1,
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
let trimFn: TrimFn | null | undefined;
let trims = 0;

function load(): TrimFn | null {
  if (trimFn !== undefined) return trimFn;
  try {
    // koffi is a native addon: only hosts started with --allow-addons have it (every runtime's
    // host does); without it there is no trim, and nothing else changes.
    const koffi = createRequire(import.meta.url)("koffi") as typeof import("koffi");
    trimFn = koffi.load("libc.so.6").func("int malloc_trim(size_t pad)") as TrimFn;
  } catch {
    trimFn = null;
  }
  return trimFn;
}

/** Hands glibc's free heap pages back to the kernel now (no-op without koffi). */
export function trimMalloc(): void {
  const f = load();
  if (f === null) return;
  f(0);
  trims++;
}

/** How many trims ran (diagnostics: the host's memory report). */
export function mallocTrims(): number {
  return trims;
}
