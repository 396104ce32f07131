/**
 * The JavaScript that runs INSIDE the Python sandbox realm (a node:vm context with nothing of the
 * host in it). It is written here as one self-contained function, type-checked with the rest of
 * src/, and never called in the host: realm.ts compiles its source text
 * (`Function.prototype.toString`, INNER_SOURCE) with vm.Script into that context — as it did when
 * it was a string — so every object and function it creates belongs to the sandbox realm.
 * (vm.Script compiles under --disallow-code-generation-from-strings; eval/Function would not.)
 *
 * It receives one host object, `bridge`, and keeps only the bridge's functions in closures (the
 * object itself is never stored where sandbox code could find it). Every bridge call goes
 * through call(): primitives or sandbox-realm typed arrays in, primitives out, and a host
 * exception becomes a new sandbox-realm Error carrying only the message.
 *
 * It returns the "kit": the only sandbox functions the host calls after boot. The host captures
 * them once (before any guest code runs) and calls them with primitive arguments only; results
 * that are not primitives are copied with host builtins. See docs/python-sandbox.md.
 *
 * Must never: store a bridge function or any host value on an object reachable from the
 * sandbox's global, pass a host error through, or create a sloppy-mode function. Nothing from
 * outside the function may be used in it but globals every realm has (its own, there) and
 * types: this module holds no other value and imports nothing.
 */

/** What the kit returns to the host (sandbox-realm values; the host only calls these functions). */
export interface InnerKit {
  /** Starts loading Pyodide (cold, or from a snapshot blob) and the app image; returns "started". */
  boot(options: string, snapshot: Uint8Array | null): string;
  /**
   * Starts loading Pyodide for a snapshot not known yet (a spare's realm): the module is made and
   * linked, then the boot parks ("parked") until go(). Returns "started".
   */
  preboot(options: string): string;
  /** Goes on with a parked boot: the deployment's options and snapshot blob (as for boot). */
  go(options: string, snapshot: Uint8Array): string;
  /** "pending" | "parked" | "ok" | "error: …" (the host polls this; it never awaits a sandbox promise). */
  bootState(): string;
  /** A fresh sandbox Uint8Array of n bytes (the host fills it with host builtins). */
  alloc(n: number): Uint8Array;
  /** Runs Python source at boot (driver install); returns a string. */
  runPython(code: string): string;
  /** Captures the driver's entry points (after the driver module is installed). */
  bindDriver(): string;
  /** Calls a driver entry point: "begin" | "run" | "load" | "presnap" | "seal"; primitives only. */
  call(name: string, a: string | number, b: string | number): string | number;
  /** The allocator's top (sbrk), 0 before boot. */
  sbrkTop(): number | undefined;
  /** null before boot. */
  memory(): WebAssembly.Memory | null;
  /** null before boot. */
  stackPointer(): WebAssembly.Global | null;
  memoryBytes(): number;
  /** Caps the wasm heap (bytes); growth past it fails (Python MemoryError). */
  setHeapCap(bytes: number): void;
  /** Makes the file tree read-only outside /tmp and /data, installs quotas; after boot. */
  lockFs(tmpQuota: number, dataQuota: number): void;
  /** Points the JS objects Python could reach (js, pyodide_js, API, scheduler) at empty objects. */
  neuter(): string;
  /** Records the JS-side state a memory restore cannot bring back (hiwire table, dedup map, fd table). */
  recordState(): string;
  /** Puts that JS-side state back after the linear memory was restored. */
  restoreState(): string;
  /** Removes everything under a directory ("/tmp" or "/data"). */
  wipe(dir: string): void;
  /** Closes streams opened after recordState() (files the request left open). */
  closeExtraStreams(): number;
  mkdirs(path: string): void;
  writeFile(path: string, data: Uint8Array): void;
  /** JSON [[relPath, "dir"|"file", size]...] of a tree. */
  listTree(dir: string): string;
  readFile(path: string): Uint8Array;
  /** JSON of the snapshot metadata Pyodide needs to load a memory image (hiwire keys, interned strings). */
  exportConfig(): string;
  /** Pyodide's BUILD_ID (a snapshot of another build is refused). */
  buildId(): string;
  /** Runs JS-free self checks used by tests: returns JSON facts about the realm. */
  facts(): string;
  /** From now on any wasm import outside the quiet set marks the realm (after boot, before the app runs). */
  armWatch(): string;
  /** "" while no guest-reachable JavaScript ran since armWatch(), else "touched: <import>". */
  touched(): string;
}

/**
 * The host functions the realm may call (realm.ts builds them). They take primitives or
 * sandbox-realm typed arrays, checked on the host side, and return primitives.
 */
export interface RealmBridge {
  log(stream: unknown, text: unknown): void;
  /** Bytes of a Pyodide file or of the app image's i-th file ("image:<i>"); -1 if none. */
  fileSize(name: unknown): number;
  /** Copies that file into a sandbox Uint8Array of exactly its size. */
  fileInto(name: unknown, dst: unknown): void;
  /** Pyodide's lock file (the only text file the loader reads), else undefined. */
  fileText(name: unknown): string | undefined;
  random(dst: unknown): void;
  now(): number;
  timeOrigin(): number;
  /** decode(0, label, ...) checks a label and returns its encoding name ("" if unknown). */
  decode(view: unknown, label: unknown, fatal: unknown, ignoreBOM: unknown): string;
  utf8Length(s: unknown): number;
  encodeInto(s: unknown, dst: unknown): number;
  /** Runs a sandbox callback later, once (boot-time timers only). */
  timer(fn: unknown, ms: unknown): void;
  /**
   * Puts the snapshot's memory (the file the host was handed) over the wasm memory, where
   * Pyodide's restoreSnapshot would have copied it from the blob; once per boot, "mapped" or "read".
   */
  mapSnapshot(): string;
}

/** Boot options, as JSON into the sandbox. */
export interface BootOptions {
  heapCap: number;
  /** Memory size to grow to before Emscripten builds its views (snapshot loads). */
  memoryBytes?: number;
  env: Record<string, string>;
  /** Tests only: put Pyodide's internals on the sandbox global (a guest that broke in). */
  exposeForTests?: boolean;
  /** [relPath, kind, mode, size | symlink target, image index] */
  files: Array<[string, string, number, number | string, number]>;
  /**
   * The snapshot blob holds the header only: its memory is put in place by bridge.mapSnapshot()
   * at the moment Pyodide restores it (mapped from a file instead of copied twice). The value is
   * the length of the whole blob it stands for (Pyodide sizes the initial memory by it).
   */
  mapSnapshot?: number;
}

// ---- the shapes of Emscripten's and Pyodide's objects, as far as the realm code uses them ----

interface FsNode {
  mode: number;
  atime: number;
  mtime: number;
  ctime: number;
  usedBytes?: number;
  contents: Record<string, FsNode>;
}
interface FsStream {
  fd: number;
  node: FsNode;
  position: number;
  flags: number;
}
interface FsStat {
  mode: number;
  size: number;
}
type WriteOp = (this: unknown, stream: FsStream, buffer: unknown, offset: number, length: number, position: number | undefined, canOwn: boolean) => number;
type SetattrOp = (this: unknown, node: FsNode, attr: unknown) => void;
type RenameOp = (this: unknown, oldNode: FsNode, newDir: FsNode, newName: string) => void;
type ResizeOp = (this: unknown, node: FsNode, newSize: number) => void;
interface MemfsOps {
  node: { setattr: SetattrOp; rename: RenameOp };
  stream: { write: WriteOp };
}
/** Emscripten's FS (Pyodide's Module.FS). */
interface EmFs {
  ErrnoError: new (errno: number) => Error;
  filesystems: {
    MEMFS: {
      ops_table: { dir: MemfsOps; file: MemfsOps; link: MemfsOps; chrdev: MemfsOps };
      stream_ops: { write: WriteOp };
      node_ops: { setattr: SetattrOp };
      resizeFileStorage: ResizeOp;
    };
  };
  streams: Array<FsStream | null>;
  currentPath: string;
  nextInode: number;
  readdir(path: string): string[];
  lstat(path: string): FsStat;
  isDir(mode: number): boolean;
  isFile(mode: number): boolean;
  isLink(mode: number): boolean;
  getPath(node: FsNode): string;
  lookupPath(path: string): { node: FsNode };
  mkdirTree(path: string): void;
  writeFile(path: string, data: Uint8Array, opts: { canOwn: boolean }): void;
  readFile(path: string): Uint8Array;
  symlink(target: string, path: string): void;
  chmod(path: string, mode: number): void;
  rmdir(path: string): void;
  unlink(path: string): void;
  close(stream: FsStream): void;
}
/** Pyodide's Emscripten module. */
interface PyModule {
  FS: EmFs;
  __hiwire_get(i: number): unknown;
  __hiwire_set(i: number, v: unknown): void;
  __hiwire_immortal_get(i: number): unknown;
  /** Pyodide's wasm loader (Emscripten's Module.instantiateWasm): used once, at boot. */
  instantiateWasm?: unknown;
}
interface PyApi {
  config: { BUILD_ID: string; _loadSnapshot?: Uint8Array };
}
/** What loadPyodide resolves to. */
interface Pyodide {
  _module: PyModule;
  _api: PyApi;
  runPython(code: string): unknown;
}
interface PyodideConfig {
  indexURL: string;
  createPyodideModule: (settings: unknown) => unknown;
  jsglobals: object;
  env: Record<string, string>;
  args: string[];
  stdin: () => null;
  stdout: (s: unknown) => void;
  stderr: (s: unknown) => void;
  checkAPIVersion: boolean;
  fsInit: (fs: EmFs) => Promise<void>;
  _loadSnapshot?: Uint8Array;
}
/** A wasm import as Emscripten builds them (`sig` is read by its dynamic linking). */
type WasmImport = ((...args: number[]) => unknown) & { sig?: string };
interface WasmExports {
  memory: WebAssembly.Memory;
  __stack_pointer: WebAssembly.Global;
  emscripten_get_sbrk_ptr: () => number;
}
type Instantiate = (src: unknown, imports?: { env?: Record<string, WasmImport> }) => Promise<{ instance: { exports: WasmExports } }>;
/** The realm's WebAssembly namespace, writable where the realm code replaces or deletes things. */
interface RealmWasm {
  instantiate: Instantiate;
  compileStreaming?: unknown;
  instantiateStreaming?: unknown;
  Memory: typeof WebAssembly.Memory;
  Global: typeof WebAssembly.Global;
  Table: typeof WebAssembly.Table;
}
/** The realm's global object: the shims it defines, and Pyodide's loader while it boots. */
interface RealmGlobal {
  [name: string]: unknown;
  __zcCreate(settings: unknown): unknown;
  loadPyodide(config: PyodideConfig): Promise<Pyodide>;
}
/** The driver's dispatcher (a PyProxy of `__zerocell__.entry`). */
type DriverEntry = (name: string, a: string | number, b: string | number) => unknown;
interface SavedState {
  table: unknown[];
  dedup: Map<unknown, unknown> | null;
  dedupEntries: Array<[unknown, unknown]>;
  immortalCount: number;
  streams: Array<[number, FsStream, number, number]>;
  streamCount: number;
  cwd: string;
  nextInode: number;
  attrs: Array<[FsNode, number, number, number, number]>;
}
interface Quota {
  dir: string;
  quota: number;
  bound: number;
}

/**
 * Never called in the host (it would install the shims on the host's global): only its source
 * text leaves this module, INNER_SOURCE below. Types, `as` and `!` are erased by the compiler,
 * so they change nothing in what runs in the realm.
 */
function zerocellPythonRealm(bridge: RealmBridge): Readonly<InnerKit> {
  "use strict";
  const G = globalThis as unknown as RealmGlobal;
  // Intrinsics captured before any other code of this realm runs.
  const ObjectC = Object, ErrorC = Error, TypeErrorC = TypeError, RangeErrorC = RangeError;
  const U8 = Uint8Array, MapC = Map, PromiseC = Promise, JSONC = JSON, ReflectC = Reflect;
  const freeze = Object.freeze, create = Object.create, defineProperty = Object.defineProperty;
  const isView = ArrayBuffer.isView;
  const WA = WebAssembly as unknown as RealmWasm;
  const origInstantiate = WebAssembly.instantiate as unknown as Instantiate;

  // Host functions, kept only in this closure.
  const hLog = bridge.log, hFileSize = bridge.fileSize, hFileInto = bridge.fileInto, hFileText = bridge.fileText;
  const hRandom = bridge.random, hNow = bridge.now, hTimeOrigin = bridge.timeOrigin;
  const hDecode = bridge.decode, hUtf8Length = bridge.utf8Length, hEncodeInto = bridge.encodeInto;
  const hTimer = bridge.timer, hMapSnapshot = bridge.mapSnapshot;
  bridge = undefined as never; // the object itself is not kept

  function messageOf(e: unknown): string {
    try {
      if (e !== null && typeof e === "object" && typeof (e as { message?: unknown }).message === "string") return (e as { message: string }).message;
    } catch (_) {}
    return "host call failed";
  }
  // Every host call: a host exception never crosses; results must be primitives.
  function call(f: (...args: never[]) => unknown, a?: unknown, b?: unknown, c?: unknown, d?: unknown): string | number | boolean | null | undefined {
    let r: unknown;
    try { r = (f as (...args: unknown[]) => unknown)(a, b, c, d); } catch (e) { throw new ErrorC(messageOf(e)); }
    const t = typeof r;
    if (r !== undefined && r !== null && t !== "string" && t !== "number" && t !== "boolean") throw new ErrorC("host returned a non-primitive");
    return r as string | number | boolean | null | undefined;
  }
  function text(v: unknown): string {
    if (typeof v === "string") return v;
    try {
      if (v instanceof ErrorC) return String(v.stack || v.message);
      return String(v);
    } catch (_) { return "?"; }
  }
  function logParts(stream: string, parts: unknown[]): void {
    let s = "";
    for (let i = 0; i < parts.length; i++) s += (i === 0 ? "" : " ") + text(parts[i]);
    call(hLog, stream, s);
  }

  // ---- the realm's globals: only what Emscripten and Pyodide need, all defined here ----
  const consoleObj = freeze({
    log: (...a: unknown[]) => logParts("stdout", a), info: (...a: unknown[]) => logParts("stdout", a),
    warn: (...a: unknown[]) => logParts("stderr", a), error: (...a: unknown[]) => logParts("stderr", a),
    debug: () => {}, trace: () => {},
  });
  defineProperty(G, "console", { value: consoleObj, writable: true, configurable: true });
  // Emscripten takes its web-worker code paths (crypto.getRandomValues, no node:fs, no child_process).
  G.WorkerGlobalScope = function WorkerGlobalScope() {};
  // Pyodide's loader takes its "shell" paths: read/readbuffer/load give it its own files only.
  G.read = function read(p: unknown): string {
    const s = call(hFileText, String(p));
    if (typeof s !== "string") throw new ErrorC("no such file: " + String(p));
    return s;
  };
  G.readbuffer = function readbuffer(p: unknown): ArrayBuffer {
    const n = call(hFileSize, String(p));
    if (typeof n !== "number" || n < 0) throw new ErrorC("no such file: " + String(p));
    const u = new U8(n);
    call(hFileInto, String(p), u);
    return u.buffer;
  };
  G.load = function load() { throw new ErrorC("load() is not available in the sandbox"); };
  // import() in Pyodide's sources is rewritten to this: a host error must never come back.
  G.__zcImport = function (_s: unknown) { return PromiseC.reject(new ErrorC("import() is not available in the sandbox")); };
  G.performance = freeze({ now: () => call(hNow), timeOrigin: call(hTimeOrigin) });
  G.crypto = freeze({
    getRandomValues(a: ArrayBufferView): ArrayBufferView {
      if (!isView(a)) throw new TypeErrorC("getRandomValues: not a typed array");
      if (a.byteLength > 65536) throw new RangeErrorC("getRandomValues: more than 65536 bytes");
      call(hRandom, a);
      return a;
    },
  });
  class TextEncoder {
    get encoding() { return "utf-8"; }
    encode(s?: unknown): Uint8Array {
      s = s === undefined ? "" : String(s);
      const out = new U8(call(hUtf8Length, s) as number);
      call(hEncodeInto, s, out);
      return out;
    }
    encodeInto(s: unknown, dst: Uint8Array): { read: number; written: number } {
      s = String(s);
      if (!(dst instanceof U8)) throw new TypeErrorC("encodeInto: not a Uint8Array");
      const all = this.encode(s);
      const n = Math.min(all.length, dst.length);
      dst.set(all.subarray(0, n));
      return { read: n === all.length ? (s as string).length : 0, written: n };
    }
  }
  class TextDecoder {
    #enc: string; #fatal: boolean; #bom: boolean;
    constructor(label?: unknown, opts?: { fatal?: boolean; ignoreBOM?: boolean }) {
      const l = label === undefined ? "utf-8" : String(label);
      this.#fatal = !!(opts && opts.fatal);
      this.#bom = !!(opts && opts.ignoreBOM);
      const enc = call(hDecode, 0, l, this.#fatal, this.#bom);
      if (typeof enc !== "string" || enc === "") throw new RangeErrorC("TextDecoder: unknown encoding " + l);
      this.#enc = enc;
    }
    get encoding() { return this.#enc; }
    get fatal() { return this.#fatal; }
    get ignoreBOM() { return this.#bom; }
    decode(input?: unknown): string {
      if (input === undefined) return "";
      let v: Uint8Array;
      if (input instanceof ArrayBuffer) v = new U8(input);
      else if (isView(input)) v = new U8(input.buffer, input.byteOffset, input.byteLength);
      else throw new TypeErrorC("TextDecoder.decode: not a buffer");
      return call(hDecode, v, this.#enc, this.#fatal, this.#bom) as string;
    }
  }
  G.TextEncoder = TextEncoder;
  G.TextDecoder = TextDecoder;
  // Timers fire only while Pyodide boots; afterwards guest code has no way to run outside a request.
  let timersOn = true, timerSeq = 1;
  G.setTimeout = function setTimeout(f: unknown, ms: unknown): number {
    const id = timerSeq++;
    if (timersOn && typeof f === "function") call(hTimer, () => { if (timersOn) f(); }, +(ms as number) || 0);
    return id;
  };
  G.clearTimeout = function clearTimeout() {};
  G.queueMicrotask = function queueMicrotask(f: () => void) { PromiseC.resolve().then(() => f()); };
  // Pyodide's PyProxy finalizer would Py_DecRef pointers after the memory was restored under it:
  // PyProxies are never finalized here (a memory restore reclaims what they hold).
  G.FinalizationRegistry = class FinalizationRegistry { register() {} unregister() { return false; } };
  // Node implements these with host-realm errors; the wasm is instantiated from bytes instead.
  delete WA.compileStreaming;
  delete WA.instantiateStreaming;

  // ---- state of this instance ----
  let heapCap = 0x7fffffff, wantBytes = 0;
  /** Emscripten's heap growth (capped above): grows the memory and rebuilds its HEAP views. */
  let resizeHeap: WasmImport | null = null;
  // Set when the wasm is instantiated and when boot ends; the host calls nothing but boot and
  // bootState before boot is "ok". (`null!`: typed as set, null before that, as ever.)
  let memoryObj: WebAssembly.Memory | null = null, spGlobal: WebAssembly.Global | null = null, sbrkPtrFn: (() => number) | null = null;
  let py: Pyodide = null!, M: PyModule = null!, API: PyApi = null!, FS: EmFs = null!, driver: DriverEntry = null!;
  let hiwireGet: PyModule["__hiwire_get"] = null!, hiwireSet: PyModule["__hiwire_set"] = null!, immortalGet: PyModule["__hiwire_immortal_get"] = null!;
  let saved: SavedState | null = null;

  // ---- JavaScript the guest made run (docs/python-sandbox.md, "Reset and the JS heap") ----
  // Guest code is wasm: it can change JavaScript state only by calling a wasm import. Imports a
  // normal request needs (WASI/syscalls, which only touch the file system whose JS state reset
  // restores; clocks; randomness; Pyodide's call trampoline; the conversions of the driver's
  // primitive arguments and result) stay unwrapped. Every other one marks the realm once armed
  // (after boot, before the app is imported): the host then discards the realm at reset and
  // boots a new one from the snapshot, so nothing a guest left in the JS heap reaches the next
  // request.
  const QUIET_IMPORTS = new Set([
    "environ_get", "environ_sizes_get", "clock_time_get", "clock_res_get", "random_get",
    "emscripten_date_now", "emscripten_get_now", "_emscripten_get_now_is_monotonic",
    "emscripten_resize_heap", "emscripten_notify_memory_growth",
    "_localtime_js", "_gmtime_js", "_mktime_js", "_timegm_js", "_tzset_js", "_try_fcntl64",
    "_PyEM_TrampolineCall_JS",
    "JsvArray_Get", "js2python_js", "JsvNum_fromInt", "JsvError_Check", "JsvNoValue_Check",
    "_python2js_ascii", "_python2js_ucs1", "_python2js_ucs2", "_python2js_ucs4",
    // select()/poll() ask whether SOCKFS has an async poll; reverse DNS only reads the table.
    "_maybe_poll_async", "getnameinfo",
  ]);
  // Emscripten's DNS table (name <-> fake 172.29.x.y address) is JS state that grows with every
  // new name resolved. Resolving an address literal, or a name resolved before the watch was
  // armed (the driver resolves the host's own name and localhost at setup, in every realm, in
  // the same order), changes nothing: uuid1(), getfqdn() and make_msgid() stay quiet.
  const DNS_IMPORTS = new Set(["getaddrinfo", "_emscripten_lookup_name"]);
  const knownNames = new Set<string>();
  const fromCharCode = String.fromCharCode;
  const dottedQuad = /^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$/;
  function cName(ptr: number): string | null {
    if (!memoryObj) return null;
    const mem = new U8(memoryObj.buffer);
    let out = "";
    for (let i = ptr; i < mem.length && i < ptr + 256; i++) {
      const c = mem[i]!;
      if (c === 0) return out;
      if (c > 127) return null;
      out += fromCharCode(c);
    }
    return null;
  }
  // true when this lookup may add an entry to the DNS table.
  function newDnsName(ptr: number): boolean {
    if (ptr === 0) return false;
    const name = cName(ptr);
    if (name === null) return true;
    if (!watchArmed) { knownNames.add(name); return false; }
    return !(knownNames.has(name) || dottedQuad.test(name));
  }
  // Syscalls that keep JS state outside the file tree: socket and pipe objects and their name
  // counters (SOCKFS/PIPEFS.nextname, visible in /proc/self/fd), device nodes.
  const LOUD_SYSCALLS = new Set([
    "__syscall_socket", "__syscall_bind", "__syscall_connect", "__syscall_listen", "__syscall_accept4",
    "__syscall_getsockname", "__syscall_getpeername", "__syscall_getsockopt", "__syscall_sendto",
    "__syscall_recvfrom", "__syscall_sendmsg", "__syscall_recvmsg", "__syscall_pipe", "__syscall_mknodat",
  ]);
  const isQuietImport = (name: string) => QUIET_IMPORTS.has(name) || ((name.startsWith("__syscall_") || name.startsWith("fd_")) && !LOUD_SYSCALLS.has(name));
  let watchArmed = false, jsTouched = false, firstTouch = "";
  function watchImports(env: Record<string, WasmImport>): void {
    for (const name of ObjectC.keys(env)) {
      const f = env[name]!;
      if (typeof f !== "function" || isQuietImport(name)) continue;
      const dns = DNS_IMPORTS.has(name);
      const w: WasmImport = function (this: unknown) {
        if (!jsTouched && (dns ? newDnsName(arguments[0] >>> 0) && watchArmed : watchArmed)) {
          jsTouched = true;
          firstTouch = name;
        }
        return ReflectC.apply(f, undefined, arguments as unknown as number[]);
      };
      if (f.sig !== undefined) w.sig = f.sig;
      env[name] = w;
    }
  }

  // The wasm instance: grow the memory before Emscripten builds its views (snapshot loads), and cap it.
  WA.instantiate = async function instantiate(src, imports) {
    const env = imports && imports.env;
    if (env) watchImports(env);
    if (env && typeof env.emscripten_resize_heap === "function") {
      const resize = env.emscripten_resize_heap;
      env.emscripten_resize_heap = function (size: number) { return (size >>> 0) > heapCap ? 0 : resize(size); };
      resizeHeap = env.emscripten_resize_heap;
    }
    const r = await origInstantiate(src, imports);
    const ex = r.instance.exports;
    const mem = ex.memory;
    if (wantBytes > mem.buffer.byteLength) mem.grow(Math.ceil((wantBytes - mem.buffer.byteLength) / 65536));
    const grow = WA.Memory.prototype.grow;
    defineProperty(mem, "grow", {
      value: function (pages: number) {
        if (mem.buffer.byteLength + (pages >>> 0) * 65536 > heapCap) throw new RangeErrorC("zerocell: wasm heap limit reached");
        return ReflectC.apply(grow, mem, [pages]);
      },
    });
    memoryObj = mem;
    spGlobal = ex.__stack_pointer;
    sbrkPtrFn = ex.emscripten_get_sbrk_ptr;
    return r;
  };

  function fsErr(errno: number): Error { return new FS.ErrnoError(errno); }
  function underDir(path: string, dir: string): boolean { return path === dir || path.startsWith(dir + "/"); }

  function walk(dir: string, fn: (path: string, st: FsStat) => void): void {
    for (const name of FS.readdir(dir)) {
      if (name === "." || name === "..") continue;
      const p = dir === "/" ? "/" + name : dir + "/" + name;
      const st = FS.lstat(p);
      fn(p, st);
      if (FS.isDir(st.mode) && !FS.isLink(st.mode) && p !== "/proc") walk(p, fn);
    }
  }
  // ---- /tmp and /data quotas ----
  // A quota counts the bytes of every file node of its directory: the ones linked there and the
  // ones unlinked but still open (their memory is only freed when the last descriptor closes).
  // Every way a MEMFS file grows goes through MEMFS's write (FS.write, msync) or
  // resizeFileStorage (truncate, ftruncate, posix_fallocate); both are wrapped. the bound is an
  // upper bound kept cheaply; only when it passes the quota is the exact sum computed.
  const quotas: Quota[] = [];
  function quotaOf(path: string): Quota | null {
    for (let i = 0; i < quotas.length; i++) if (underDir(path, quotas[i]!.dir)) return quotas[i]!;
    return null;
  }
  function eachFileNode(dirNode: FsNode, fn: (node: FsNode) => void): void {
    const names = ObjectC.keys(dirNode.contents);
    for (let i = 0; i < names.length; i++) {
      const n = dirNode.contents[names[i]!]!;
      if (FS.isDir(n.mode)) eachFileNode(n, fn);
      else if (FS.isFile(n.mode)) fn(n);
    }
  }
  function chargedBytes(q: Quota): number {
    const seen = new Set<FsNode>();
    let total = 0;
    const add = (n: FsNode) => { if (!seen.has(n)) { seen.add(n); total += n.usedBytes || 0; } };
    eachFileNode(FS.lookupPath(q.dir).node, add);
    for (let fd = 0; fd < FS.streams.length; fd++) {
      const st = FS.streams[fd];
      if (st && st.node && FS.isFile(st.node.mode) && quotaOf(FS.getPath(st.node)) === q) add(st.node);
    }
    return total;
  }
  function charge(node: FsNode, newSize: number): void {
    const growth = newSize - (node.usedBytes || 0);
    if (!(growth > 0)) return;
    const q = quotaOf(FS.getPath(node));
    if (q === null) return;
    q.bound += growth;
    if (q.bound > q.quota) {
      q.bound = chargedBytes(q) + growth;
      if (q.bound > q.quota) { q.bound -= growth; throw fsErr(51 /* ENOSPC */); }
    }
  }
  function installQuotas(tmpQuota: number, dataQuota: number): void {
    quotas.push({ dir: "/tmp", quota: tmpQuota, bound: 0 }, { dir: "/data", quota: dataQuota, bound: 0 });
    for (const q of quotas) q.bound = chargedBytes(q);
    const memfs = FS.filesystems.MEMFS;
    const fileOps = memfs.ops_table.file.stream;
    const write = memfs.stream_ops.write;
    if (fileOps.write !== write) throw new ErrorC("pyodide: unexpected MEMFS layout");
    const quotaWrite: WriteOp = function (stream, buffer, offset, length, position, canOwn) {
      const node = stream.node;
      if (length > 0) {
        const at = typeof position === "number" ? position : stream.position;
        charge(node, Math.max(node.usedBytes || 0, at + length));
      }
      return ReflectC.apply(write, this, [stream, buffer, offset, length, position, canOwn]);
    };
    memfs.stream_ops.write = quotaWrite;
    fileOps.write = quotaWrite;
    const resize = memfs.resizeFileStorage;
    memfs.resizeFileStorage = function (node, newSize) {
      charge(node, newSize);
      return ReflectC.apply(resize, this, [node, newSize]);
    };
  }
  function resetQuotaBounds(): void {
    for (const q of quotas) q.bound = chargedBytes(q);
  }

  function writeImage(files: BootOptions["files"]): void {
    // files: [[relPath, kind, mode, size|target, index]]; contents pulled from the host one by one.
    FS.mkdirTree("/app");
    for (const f of files) {
      const path = "/app/" + f[0];
      if (f[1] === "dir") FS.mkdirTree(path);
      else if (f[1] === "file") {
        const u = new U8(f[3] as number);
        call(hFileInto, "image:" + f[4], u);
        FS.writeFile(path, u, { canOwn: true });
      } else if (f[1] === "symlink") FS.symlink(String(f[3]), path);
    }
  }

  /**
   * Makes Pyodide's restoreSnapshot restore `blob` (instead of the blob loadPyodide was given, a
   * placeholder when parked) and, with `map`, put the memory in place right after it checked the
   * header (the blob then holds no memory: nothing is copied), before anything reads the heap.
   */
  function wrapRestore(api: { restoreSnapshot: (t: Uint8Array) => unknown }, blob: Uint8Array | null, map: boolean): void {
    const restore = api.restoreSnapshot;
    api.restoreSnapshot = function (t: Uint8Array) {
      const r = ReflectC.apply(restore, api, [blob || t]);
      if (map) {
        const how = call(hMapSnapshot);
        if (how !== "mapped" && how !== "read") throw new ErrorC("snapshot memory not put in place");
      }
      return r;
    };
  }

  /** A parked boot (kit.preboot) waits here for kit.go, which sets these. */
  let goResume: ((v: null) => void) | null = null;
  let goOptions: BootOptions | null = null, goBlob: Uint8Array | null = null;

  /**
   * Pyodide's module made and linked with no tenant's anything (a spare's realm), then parked
   * until kit.go hands it a deployment's options and snapshot header: the heap is grown to the
   * snapshot's size, the app image written, and the boot goes on from the snapshot restore.
   */
  function parkThenGo(settings: unknown, made: unknown): Promise<unknown> {
    return PromiseC.resolve(made).then((m) => new PromiseC<null>((res) => { goResume = res; bootState = "parked"; }).then(() => {
      const g = goOptions!;
      heapCap = g.heapCap;
      const want = g.memoryBytes || 0, have = memoryObj ? memoryObj.buffer.byteLength : 0;
      if (!memoryObj || typeof resizeHeap !== "function") throw new ErrorC("parked: wasm memory not captured");
      if (want < have) throw new ErrorC("parked: the heap is larger than the snapshot's");
      if (want > have) {
        // Exactly the snapshot's size (Emscripten's resize would over-grow), then Emscripten's
        // resize of what is there rebuilds its views (its growMemory of 0 pages).
        memoryObj.grow((want - have) / 65536);
        if (!resizeHeap(want)) throw new ErrorC("parked: heap views not rebuilt");
      }
      if (memoryObj.buffer.byteLength !== want) throw new ErrorC("parked: heap size is not the snapshot's");
      writeImage(g.files);
      wrapRestore((settings as { API: { restoreSnapshot: (t: Uint8Array) => unknown } }).API, goBlob, g.mapSnapshot !== undefined);
      goBlob = null;
      return m;
    }));
  }

  async function bootAsync(optionsJson: string, snapshot: Uint8Array | null, park: boolean): Promise<void> {
    const first = JSONC.parse(optionsJson) as BootOptions;
    heapCap = first.heapCap;
    wantBytes = first.memoryBytes || 0;
    const files = first.files;
    const jsglobals = freeze(create(null));
    const cfg: PyodideConfig = {
      indexURL: "/pyodide/",
      createPyodideModule: (settings) => {
        if (park) return parkThenGo(settings, G.__zcCreate(settings));
        if (first.mapSnapshot === undefined) return G.__zcCreate(settings);
        const made = G.__zcCreate(settings);
        return PromiseC.resolve(made).then((m) => {
          wrapRestore((settings as { API: { restoreSnapshot: (t: Uint8Array) => unknown } }).API, null, true);
          return m;
        });
      },
      jsglobals,
      env: first.env,
      args: [],
      stdin: () => null,
      stdout: (s) => call(hLog, "stdout", text(s)),
      stderr: (s) => call(hLog, "stderr", text(s)),
      checkAPIVersion: true,
      fsInit: async (fs) => {
        FS = fs;
        writeImage(files);
        fs.mkdirTree("/data");
      },
    };
    // Parked: a placeholder, so that Pyodide makes the module as for a snapshot (no main run)
    // and calls restoreSnapshot, which then restores the blob kit.go gives.
    if (park) cfg._loadSnapshot = new U8(16);
    else if (snapshot) cfg._loadSnapshot = snapshot;
    py = await G.loadPyodide(cfg);
    const o = park ? goOptions! : first;
    M = py._module;
    API = py._api;
    // The snapshot blob is loaded into memory now; do not keep a second copy alive.
    cfg._loadSnapshot = undefined;
    if (API.config) API.config._loadSnapshot = undefined;
    // Pyodide's instantiateWasm closes over a promise of the wasm binary's bytes (9.6 MB, one
    // copy per realm) for the realm's life; the instance exists now, so the bytes may go.
    M.instantiateWasm = undefined;
    FS = M.FS;
    hiwireGet = M.__hiwire_get;
    hiwireSet = M.__hiwire_set;
    immortalGet = M.__hiwire_immortal_get;
    if (typeof hiwireGet !== "function" || typeof hiwireSet !== "function" || typeof immortalGet !== "function") throw new ErrorC("pyodide: hiwire table functions not found");
    if (!memoryObj || typeof sbrkPtrFn !== "function" || !spGlobal) throw new ErrorC("pyodide: wasm exports not captured");
    // Boot is over: no timers, no loaders, nothing named on the global but the shims.
    timersOn = false;
    for (const name of ["loadPyodide", "__zcCreate", "_createPyodideModule", "read", "readbuffer", "load"]) {
      if (!ReflectC.deleteProperty(G, name)) G[name] = undefined;
    }
    WA.instantiate = origInstantiate;
    // Tests only: play a guest that already holds every object of this realm.
    if (o.exposeForTests === true) G.__zcInternals = freeze({ py, Module: M, API, FS, memory: memoryObj });
  }

  let bootState = "idle";
  function startBoot(optionsJson: string, snapshot: Uint8Array | null, park: boolean): string {
    if (bootState !== "idle") throw new ErrorC("boot: already started");
    bootState = "pending";
    bootAsync(optionsJson, snapshot, park).then(
      () => { bootState = "ok"; },
      (e) => { bootState = "error: " + (e instanceof ErrorC ? String(e.message) : text(e)); },
    );
    return "started";
  }
  const kit: InnerKit = {
    // The host never awaits a sandbox promise (that would hand host resolve functions to a
    // sandbox "then" — and a snapshot's Python code runs during a snapshot boot): it polls.
    boot(optionsJson, snapshot) {
      return startBoot(optionsJson, snapshot, false);
    },
    preboot(optionsJson) {
      return startBoot(optionsJson, null, true);
    },
    go(optionsJson, blob) {
      if (bootState !== "parked" || !goResume) throw new ErrorC("go: not parked");
      goOptions = JSONC.parse(optionsJson) as BootOptions;
      goBlob = blob;
      bootState = "pending";
      const resume = goResume;
      goResume = null;
      resume(null);
      return "started";
    },
    bootState() { return bootState; },
    alloc(n) { return new U8(n >>> 0); },
    runPython(code) {
      const r = py.runPython(String(code));
      return typeof r === "string" ? r : String(r);
    },
    bindDriver() {
      const z = py.runPython("import __zerocell__ as _z; _z.entry") as DriverEntry;
      driver = z;
      return "ok";
    },
    call(name, a, b) {
      // The driver's dispatcher takes and returns primitives only (see driver.py).
      const r = driver(String(name), a, b);
      if (typeof r !== "string" && typeof r !== "number") throw new ErrorC("driver returned a non-primitive");
      return r;
    },
    sbrkTop() { return memoryObj ? new Uint32Array(memoryObj.buffer)[sbrkPtrFn!() >>> 2] : 0; },
    memory() { return memoryObj; },
    stackPointer() { return spGlobal; },
    memoryBytes() { return memoryObj!.buffer.byteLength; },
    setHeapCap(bytes) { heapCap = bytes >>> 0 || heapCap; },
    lockFs(tmpQuota, dataQuota) {
      const writable = (p: string) => underDir(p, "/tmp") || underDir(p, "/data");
      // Nothing a request could use to carry data to a later one: /dev/shm, /home go away.
      for (const d of ["/dev/shm/tmp", "/dev/shm", "/home/web_user", "/home/pyodide", "/home"]) {
        try { FS.rmdir(d); } catch (_) {}
      }
      const dirs: string[] = [];
      walk("/", (p, st) => {
        if (writable(p) || underDir(p, "/proc") || underDir(p, "/dev")) return;
        if (FS.isDir(st.mode)) dirs.push(p);
        else if (FS.isFile(st.mode)) FS.chmod(p, (st.mode & 0o555) | 0o444);
      });
      for (const d of dirs.reverse()) FS.chmod(d, 0o555);
      FS.chmod("/dev", 0o555);
      FS.chmod("/proc", 0o555);
      FS.chmod("/tmp", 0o777);
      FS.chmod("/data", 0o777);
      FS.chmod("/", 0o555);
      // Emscripten checks mode bits but lets anyone chmod, utime or chown: no attribute changes
      // outside the contents of /tmp and /data (those of / , /app, /dev, /tmp itself would
      // outlive a reset).
      const inScratch = (p: string) => p.startsWith("/tmp/") || p.startsWith("/data/");
      const memfs = FS.filesystems.MEMFS;
      const setattr = memfs.node_ops.setattr;
      const guardedSetattr: SetattrOp = function (node, attr) {
        if (!inScratch(FS.getPath(node))) throw fsErr(63 /* EPERM */);
        return ReflectC.apply(setattr, this, [node, attr]);
      };
      memfs.node_ops.setattr = guardedSetattr;
      for (const kind of ["dir", "file", "link", "chrdev"] as const) {
        const ops = memfs.ops_table[kind].node;
        if (ops.setattr !== setattr) throw new ErrorC("pyodide: unexpected MEMFS layout");
        ops.setattr = guardedSetattr;
      }
      // A file keeps counting against the quota of the directory it was created in: no moves
      // between /tmp and /data (EXDEV, as between two file systems; shutil.move copies instead).
      const dirOps = memfs.ops_table.dir.node;
      const rename = dirOps.rename;
      dirOps.rename = function (oldNode, newDir, newName) {
        if (quotaOf(FS.getPath(oldNode)) !== quotaOf(FS.getPath(newDir) + "/" + newName)) throw fsErr(75 /* EXDEV */);
        return ReflectC.apply(rename, this, [oldNode, newDir, newName]);
      };
      installQuotas(tmpQuota, dataQuota);
    },
    neuter() {
      // Table slots 1..6 hold jsglobals, the public API, API, the scheduler and an empty object:
      // the JS objects Python-side JsProxies were made for. Point them at empty frozen objects.
      const emptyFn = freeze(function () { return undefined; });
      let n = 0;
      for (let i = 1; i <= 6; i++) {
        let v;
        try { v = hiwireGet(i); } catch (_) { break; }
        if (v === null || v === undefined) continue;
        hiwireSet(i, typeof v === "function" ? emptyFn : freeze(create(null)));
        n++;
      }
      return String(n);
    },
    recordState() {
      const table = [];
      for (let i = 0; ; i++) {
        let v;
        try { v = hiwireGet(i); } catch (_) { break; }
        table.push(v);
      }
      let immortalCount = 0, dedup = null;
      for (let i = 0; ; i++) {
        let v;
        try { v = immortalGet(i); } catch (_) { break; }
        if (dedup === null && v instanceof MapC) dedup = v;
        immortalCount++;
      }
      const streams: SavedState["streams"] = [];
      FS.streams.forEach((s, fd) => { if (s) streams.push([fd, s, s.position, s.flags]); });
      // File-system state in JS a request can change without touching anything else of JS: the
      // working directory, the inode counter (st_ino of new files would count another request's
      // files), and the attributes of /tmp, /data and the open devices (times, mode).
      const attrs: SavedState["attrs"] = [];
      const keepAttrs = (n: FsNode) => { if (n) attrs.push([n, n.mode, n.atime, n.mtime, n.ctime]); };
      keepAttrs(FS.lookupPath("/tmp").node);
      keepAttrs(FS.lookupPath("/data").node);
      for (const e of streams) keepAttrs(e[1].node);
      saved = { table, dedup, dedupEntries: dedup ? [...dedup] : [], immortalCount, streams, streamCount: FS.streams.length, cwd: FS.currentPath, nextInode: FS.nextInode, attrs };
      return JSONC.stringify({ table: table.length, immortals: immortalCount, streams: streams.length });
    },
    restoreState() {
      if (!saved) return "none";
      let fixed = 0;
      const t = saved.table;
      for (let i = 0; ; i++) {
        let v;
        try { v = hiwireGet(i); } catch (_) { break; }
        const want = i < t.length ? t[i] : null;
        if (v !== want) { hiwireSet(i, want); fixed++; }
      }
      const d = saved.dedup;
      if (d && (d.size !== saved.dedupEntries.length || fixed > 0)) {
        d.clear();
        for (const [k, v] of saved.dedupEntries) d.set(k, v);
      }
      for (const [fd, s, pos, flags] of saved.streams) {
        if (FS.streams[fd] !== s) FS.streams[fd] = s;
        if (s.fd !== fd) s.fd = fd;
        if (s.position !== pos) s.position = pos;
        if (s.flags !== flags) s.flags = flags;
      }
      FS.currentPath = saved.cwd;
      FS.nextInode = saved.nextInode;
      for (const [n, mode, atime, mtime, ctime] of saved.attrs) {
        n.mode = mode;
        n.atime = atime;
        n.mtime = mtime;
        n.ctime = ctime;
      }
      resetQuotaBounds();
      return String(fixed);
    },
    closeExtraStreams() {
      if (!saved) return 0;
      const keep = new Set(saved.streams.map((e) => e[0]));
      let n = 0;
      for (let fd = 0; fd < FS.streams.length; fd++) {
        const s = FS.streams[fd];
        if (s && !keep.has(fd)) {
          try { FS.close(s); } catch (_) { FS.streams[fd] = null; }
          n++;
        }
      }
      return n;
    },
    wipe(dir) {
      dir = String(dir);
      if (dir !== "/tmp" && dir !== "/data") throw new ErrorC("wipe: not a scratch directory");
      for (const name of FS.readdir(dir)) {
        if (name === "." || name === "..") continue;
        const p = dir + "/" + name;
        const rm = (q: string) => {
          const st = FS.lstat(q);
          if (FS.isDir(st.mode)) {
            FS.chmod(q, 0o777);
            for (const c of FS.readdir(q)) if (c !== "." && c !== "..") rm(q + "/" + c);
            FS.rmdir(q);
          } else FS.unlink(q);
        };
        rm(p);
      }
    },
    mkdirs(path) {
      path = String(path);
      if (!underDir(path, "/data")) throw new ErrorC("mkdirs: outside /data");
      FS.mkdirTree(path);
    },
    writeFile(path, data) {
      path = String(path);
      if (!underDir(path, "/data")) throw new ErrorC("writeFile: outside /data");
      if (!(data instanceof U8)) throw new TypeErrorC("writeFile: not a Uint8Array");
      FS.writeFile(path, data, { canOwn: true });
    },
    listTree(dir) {
      dir = String(dir);
      if (dir !== "/data" && dir !== "/tmp") throw new ErrorC("listTree: not a scratch directory");
      const out: Array<[string, "dir" | "file", number]> = [];
      walk(dir, (p, st) => {
        const rel = p.slice(dir.length + 1);
        if (FS.isDir(st.mode)) out.push([rel, "dir", 0]);
        else if (FS.isFile(st.mode)) out.push([rel, "file", st.size]);
      });
      return JSONC.stringify(out);
    },
    readFile(path) {
      path = String(path);
      if (!underDir(path, "/data") && !underDir(path, "/tmp")) throw new ErrorC("readFile: outside /data and /tmp");
      return FS.readFile(path);
    },
    exportConfig() {
      // Pyodide's snapshot loader refills table slots 0..6 itself; later slots must be empty.
      const keys = [];
      for (let i = 7; i < saved!.table.length; i++) {
        if (saved!.table[i] !== null && saved!.table[i] !== undefined) throw new ErrorC("snapshot: a JS object is referenced from Python (hiwire slot " + i + ")");
        keys.push(null);
      }
      const marker = immortalGet(6) as { noValueMarker?: unknown } | null | undefined;
      if (!marker || marker.noValueMarker !== 1) throw new ErrorC("snapshot: unexpected immortal table layout");
      const strings = [];
      for (let i = 7; i < saved!.immortalCount; i++) {
        const v = immortalGet(i);
        if (typeof v !== "string") throw new ErrorC("snapshot: unexpected immortal entry");
        strings.push(v);
      }
      return JSONC.stringify({ hiwireKeys: keys, immortalKeys: strings });
    },
    buildId() { return String(API.config.BUILD_ID); },
    armWatch() {
      watchArmed = true;
      return "ok";
    },
    // Plain string concatenation: no method of a realm object (the guest may have replaced them).
    touched() { return jsTouched ? "touched: " + firstTouch : ""; },
    facts() {
      let evalBlocked = false, fnBlocked = false;
      try { (0, eval)("1"); } catch (e) { evalBlocked = e instanceof EvalError; }
      try { Function("return 1"); } catch (e) { fnBlocked = e instanceof EvalError; }
      return JSONC.stringify({
        evalBlocked, fnBlocked,
        process: typeof G.process, require: typeof G.require, fetch: typeof G.fetch,
        WebSocket: typeof G.WebSocket, streaming: typeof WA.instantiateStreaming,
        globals: ObjectC.getOwnPropertyNames(G).sort(),
      });
    },
  };
  // The WebAssembly objects the host touches after boot (memory.buffer, global.value) keep their
  // original accessors even if sandbox code gets hold of these prototypes.
  freeze(WA.Memory.prototype);
  freeze(WA.Global.prototype);
  freeze(WA.Table.prototype);
  return freeze(kit);
}

/**
 * The realm code as a script whose completion value is the function: realm.ts compiles it with
 * vm.Script in the sandbox's context and calls the result with the bridge.
 */
export const INNER_SOURCE = `(${zerocellPythonRealm.toString()})`;
