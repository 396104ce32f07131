/**
 * php.wasm's imports that reach outside the sandbox, replaced before the module is instantiated
 * (php-wasm passes one object as both `env` and `wasi_snapshot_preview1`, so one replacement
 * covers both): the heap is capped, dynamic loading, processes and sockets fail the way the C
 * side expects a failure to look (a NULL handle with dlerror set, -1 with errno, a negative errno
 * from a syscall), so PHP reports an ordinary warning or exception and the instance lives on.
 * Must never: call the original of a refused import, or let a JS exception from one of them
 * unwind through PHP (that crashes the runtime and costs the host).
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import type { AsyncifyData } from "./asyncify-data.js";
import { slimWasm, writeDataSegments, type DataSection } from "./slim-wasm.js";

/** Emscripten's errno numbers (its ERRNO_CODES table, not Linux's). */
const EACCES = 2;
const ENOSYS = 52;
const ENOTSOCK = 57;
/** musl's getaddrinfo error: the name does not resolve. */
const EAI_NONAME = -2;
/** Longest host name read from guest memory (DNS allows 253 bytes). */
const MAX_HOST_NAME_BYTES = 1024;

/** The imports this file replaces; instantiate refuses a php-wasm build that lacks one. */
const REFUSED_SOCKET_SYSCALLS = [
  "__syscall_connect",
  "__syscall_bind",
  "__syscall_listen",
  "__syscall_accept4",
  "__syscall_sendto",
  "__syscall_recvfrom",
  "__syscall_getsockopt",
  "__syscall_getpeername",
  "__syscall_getsockname",
] as const;

/** The wasm exports the refusals need to set errno / dlerror (see the safety note below). */
interface RawExports {
  memory: WebAssembly.Memory;
  __errno_location(): number;
  __dl_seterr(fmt: number, arg: number): void;
  emscripten_stack_get_current(): number;
  _emscripten_stack_alloc(size: number): number;
  _emscripten_stack_restore(sp: number): void;
}

/** What the refusals report, for logs and tests. */
export interface RefusedImports {
  /** Calls of a refused import since the instance started, by kind. */
  counts: { dlopen: number; system: number; process: number; socket: number; dns: number };
}

type Fn = (...args: number[]) => number;

/**
 * The wasm heap's cap, bytes: read at every growth, so a runtime a spare host started before its
 * deployment was known takes the deployment's cap at handoff.
 */
export interface HeapCap {
  bytes: number;
}

/**
 * A Module.instantiateWasm for php-wasm: compiles (once per process) and instantiates
 * `wasmPath` with the refusing imports. `capBytes` caps heap growth (memory_limit is only
 * php.ini, and ImageMagick's malloc is not counted by it). `asyncify` places Asyncify's buffer
 * (asyncify-data.ts: it must be part of the snapshot).
 */
export function walledInstantiate(wasmPath: string, cap: HeapCap, refused: RefusedImports, asyncify: AsyncifyData) {
  return (imports: WebAssembly.Imports, done: (instance: WebAssembly.Instance, module: WebAssembly.Module) => void): void => {
    const env = imports.env as Record<string, unknown> | undefined;
    if (env === undefined) throw new Error("zerocell: php-wasm passed no env imports; cannot wall the module");
    const original = (name: string): Fn => {
      const f = env[name];
      if (typeof f !== "function") throw new Error(`zerocell: php-wasm has no import ${name}; cannot wall the module`);
      return f as Fn;
    };
    let raw: RawExports | undefined;

    const grow = original("emscripten_resize_heap");
    env.emscripten_resize_heap = (size: number) => (size >>> 0 > cap.bytes ? 0 : grow(size));

    // Safety of the memory accesses below: `raw` is the instance's own exports, set before any
    // guest code runs; errno and the exit-code byte are addresses the C caller handed us, written
    // only when inside the memory; the dlerror text is copied onto the C stack with the
    // runtime's own allocator and freed before returning.
    const setErrno = (errno: number) => {
      if (raw === undefined) return;
      const at = raw.__errno_location() >>> 0;
      if (at + 4 <= raw.memory.buffer.byteLength) new DataView(raw.memory.buffer).setInt32(at, errno, true);
    };
    const setDlError = (message: string) => {
      if (raw === undefined) return;
      const bytes = Buffer.from(message + "\0", "utf8");
      const sp = raw.emscripten_stack_get_current();
      try {
        const at = raw._emscripten_stack_alloc(bytes.length) >>> 0;
        new Uint8Array(raw.memory.buffer, at, bytes.length).set(bytes);
        raw.__dl_seterr(at, 0);
      } finally {
        raw._emscripten_stack_restore(sp);
      }
    };

    // 1. Dynamic loading: Emscripten's loader eval()s a side module's EM_JS / EM_ASM strings in
    //    the host realm, so no library is ever loaded (dl(), extension= in php.ini, dlopen from
    //    any C library). dlsym stays for the main module (handle 0), the only one that exists.
    original("_dlopen_js");
    env._dlopen_js = () => {
      refused.counts.dlopen++;
      setDlError("zerocell: dynamic loading is not available in the sandbox");
      return 0;
    };
    const dlsym = original("_dlsym_js");
    env._dlsym_js = (handle: number, symbol: number, index: number) => {
      if (handle === 0) return dlsym(handle, symbol, index);
      setDlError("zerocell: dynamic loading is not available in the sandbox");
      return 0;
    };

    // 2. Processes: Emscripten's system() calls child_process.spawnSync(cmd, {shell: true})
    //    itself (ImageMagick's delegates use it); popen() and proc_open() go through php-wasm's
    //    spawnProcess. None of them reaches Node.
    original("_emscripten_system");
    env._emscripten_system = (command: number) => {
      // system(NULL) asks whether a shell exists: no.
      if (command === 0) return 0;
      refused.counts.system++;
      setErrno(ENOSYS);
      return -1;
    };
    original("js_open_process");
    env.js_open_process = () => {
      refused.counts.process++;
      setErrno(ENOSYS);
      return -1;
    };
    original("js_popen_to_file");
    // wasm_popen() fopen()s the returned path: NULL makes that fail (ENOENT), so popen() is NULL.
    env.js_popen_to_file = (_command: number, _mode: number, exitCodePtr: number) => {
      refused.counts.process++;
      if (raw !== undefined && exitCodePtr !== 0 && exitCodePtr >>> 0 < raw.memory.buffer.byteLength) new Uint8Array(raw.memory.buffer)[exitCodePtr >>> 0] = 127;
      setErrno(ENOSYS);
      return 0;
    };

    // 3. Sockets: Emscripten's would open a WebSocket, and its synchronous connect() throws
    //    past the syscall's error handling (a JS exception out of PHP). No socket is created, so
    //    the other socket calls only ever see descriptors that are not sockets.
    original("__syscall_socket");
    env.__syscall_socket = () => {
      refused.counts.socket++;
      return -EACCES;
    };
    for (const name of REFUSED_SOCKET_SYSCALLS) {
      original(name);
      env[name] = () => -ENOTSOCK;
    }

    // 4. DNS: Emscripten answers every name with a made-up address (172.29.x.x, for a WebSocket
    //    proxy). There is no network, so getaddrinfo fails as on a machine without a resolver
    //    (PHP: "php_network_getaddresses: getaddrinfo for NAME failed", mysqli/PDO/curl errors
    //    name the host); IP literals and localhost still parse (their connect is refused above).
    //    gethostbyname() keeps Emscripten's made-up address: its C side has no failure path.
    const getaddrinfo = original("getaddrinfo");
    env.getaddrinfo = (node: number, service: number, hint: number, out: number) => {
      if (node !== 0 && raw !== undefined) {
        const mem = new Uint8Array(raw.memory.buffer);
        const at = node >>> 0;
        const end = mem.subarray(at, Math.min(mem.length, at + MAX_HOST_NAME_BYTES)).indexOf(0);
        const name = end === -1 ? undefined : Buffer.from(mem.subarray(at, at + end)).toString("latin1");
        if (name === undefined || (isIP(name) === 0 && name.toLowerCase() !== "localhost")) {
          refused.counts.dns++;
          return EAI_NONAME;
        }
      }
      return getaddrinfo(node, service, hint, out);
    };

    compiledModule(wasmPath)
      .then(async ({ module, data }) => {
        const instance = await WebAssembly.instantiate(module, imports);
        const exports = instance.exports as unknown as RawExports;
        for (const name of ["memory", "__errno_location", "__dl_seterr", "emscripten_stack_get_current", "_emscripten_stack_alloc", "_emscripten_stack_restore"] as const) {
          if (exports[name] === undefined) throw new Error(`zerocell: php.wasm exports no ${name}; cannot report refusals`);
        }
        // The slim module's data segments, before any of its code runs (slim-wasm.ts).
        if (data !== undefined) writeDataSegments(wasmPath, data, exports.memory);
        raw = exports;
        // Emscripten reads only `exports` of the instance it is handed (receiveInstance).
        done({ exports: asyncify.wrapExports(instance.exports) } as WebAssembly.Instance, module);
      })
      // Emscripten's instantiateWasm has no failure path (the loader would wait forever): a
      // build this engine cannot wall ends the host.
      .catch((e: unknown) => setImmediate(() => {
        throw e;
      }));
  };
}

/** A compiled php.wasm, and where its data segments are if the module left them out (slim-wasm.ts). */
export interface CompiledPhpModule {
  module: WebAssembly.Module;
  data: DataSection | undefined;
}

/**
 * php.wasm compiled once per process (a spare host compiles it before it has a tenant), slim:
 * without its name section and data segments, which V8 would keep for the process's life. A
 * slim module that does not compile (code that refers to segments) falls back to the file as is.
 */
const compiled = new Map<string, Promise<CompiledPhpModule>>();

export function compiledModule(wasmPath: string): Promise<CompiledPhpModule> {
  let m = compiled.get(wasmPath);
  if (m === undefined) {
    m = compileSlim(wasmPath);
    compiled.set(wasmPath, m);
  }
  return m;
}

async function compileSlim(wasmPath: string): Promise<CompiledPhpModule> {
  const slim = slimWasm(readFileSync(wasmPath));
  try {
    return { module: await WebAssembly.compile(slim.bytes), data: slim.data };
  } catch (e) {
    process.stderr.write(`php: the slim module of ${wasmPath} does not compile (${(e as Error).message}); compiling the file as is\n`);
    return { module: await WebAssembly.compile(readFileSync(wasmPath)), data: undefined };
  }
}
