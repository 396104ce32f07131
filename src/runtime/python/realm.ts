/**
 * The Python sandbox realm: Pyodide loaded into a node:vm context whose global object holds
 * nothing of the host (no process, require, fetch, Buffer, timers of the host; code generation
 * from strings off), talking to the host only through a handful of primitive-only functions.
 *
 * Rules this file keeps (docs/python-sandbox.md explains each):
 *  - The context's global is backed by a null-prototype object: with `{}` (vm's default),
 *    `globalThis.constructor.constructor("return process")()` reaches the host.
 *  - Pyodide's sources are rewritten once: `import(` → a sandbox function that rejects (Node's
 *    dynamic-import error is a host object), `import.meta.url` → a string, strict mode on.
 *  - The host never calls a sandbox Proxy (an apply trap receives a host-realm arguments array),
 *    never awaits a sandbox promise (its "then" would get host resolve functions; boot is polled)
 *    and never looks up a method on a sandbox object: it calls the kit functions it captured at
 *    creation, with primitives, and copies bytes with host builtins (Uint8Array.prototype.set,
 *    the TypedArray/Memory getters) applied to sandbox objects.
 *  - Bridge functions the sandbox may call take primitives or sandbox typed arrays and return
 *    primitives; inner.ts wraps every call so a host exception never crosses.
 * Must never: put a host object (function, array, error, Buffer) where sandbox code can read it.
 */
import vm from "node:vm";
import { randomFillSync } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { types } from "node:util";
import { putSnapshotFile } from "../../snapshot/index.js";
import { INNER_SOURCE, type BootOptions, type InnerKit, type RealmBridge } from "./inner.js";

export type { BootOptions } from "./inner.js";

/**
 * What bridge.mapSnapshot() maps (boot sets `file`), and how it finds the realm's memory; where
 * the bridge reads the app image and writes the log (a parked realm gets its deployment's later).
 */
interface PendingMap {
  imageFile: (index: number) => Uint8Array | undefined;
  log: LogSink;
  file?: { path: string; bytes: number };
  how?: "mapped" | "read";
  memory?: () => WebAssembly.Memory;
}

/**
 * A Pyodide snapshot blob: its header (magic, build id, JSON metadata, padded) and its memory
 * image — bytes, or a file (src/snapshot/files.ts), which is mapped over the wasm memory at the
 * moment Pyodide restores the snapshot instead of being read into the blob and copied again.
 */
export interface SnapshotBlobSource {
  header: Uint8Array;
  memory: Uint8Array | { path: string; bytes: number };
}

const require = createRequire(import.meta.url);

/** Host builtins used on sandbox objects (never the sandbox's own methods). */
const memoryBuffer = Object.getOwnPropertyDescriptor(WebAssembly.Memory.prototype, "buffer")!.get!;
const typedArrayProto = Object.getPrototypeOf(Uint8Array.prototype) as object;
const taLength = Object.getOwnPropertyDescriptor(typedArrayProto, "length")!.get!;
const taBuffer = Object.getOwnPropertyDescriptor(typedArrayProto, "buffer")!.get!;
const taByteOffset = Object.getOwnPropertyDescriptor(typedArrayProto, "byteOffset")!.get!;
const u8Set = Uint8Array.prototype.set;
const decoders = new Map<string, TextDecoder | undefined>();
function decoderFor(label: string, fatal: boolean, ignoreBOM: boolean): TextDecoder | undefined {
  const key = `${label.slice(0, 64)}\0${fatal ? 1 : 0}${ignoreBOM ? 1 : 0}`;
  if (!decoders.has(key)) {
    let d: TextDecoder | undefined;
    try {
      d = new TextDecoder(label, { fatal, ignoreBOM });
    } catch {
      d = undefined;
    }
    if (decoders.size < 256) decoders.set(key, d);
    return d;
  }
  return decoders.get(key);
}
const utf8Encoder = new TextEncoder();

/** Pyodide's own files, read once per process from node_modules/pyodide. */
export interface PyodideFiles {
  dir: string;
  version: string;
  asmScript: vm.Script;
  loaderScript: vm.Script;
  innerScript: vm.Script;
  /**
   * Pyodide's binary files (its wasm, 9.6 MB; the stdlib zip, 2.5 MB) by the name the sandbox
   * asks for: their paths, read from disk into the realm at each boot. Not kept in the process:
   * a host boots one realm and would otherwise carry both for its life.
   */
  blobs: Map<string, { path: string; size: number }>;
  lockText: string;
}

let filesCache: PyodideFiles | undefined;

/**
 * Rewrites an ES module of Pyodide into a classic script for the sandbox: strict mode, no
 * import(), no import.meta, the default export assigned to a sandbox global. Throws if the source
 * is not the shape this was written for (a Pyodide upgrade must be looked at, not guessed).
 */
export function rewriteModule(src: string, name: string): string {
  let out = src;
  let exportFound = false;
  out = out.replace(/export default _createPyodideModule;\s*$/, () => {
    exportFound = true;
    return "globalThis.__zcCreate = _createPyodideModule;\n";
  });
  if (name === "pyodide.asm.mjs" && !exportFound) throw new Error(`python: ${name}: default export not found (unsupported Pyodide build)`);
  out = out.replace(/import\.meta\.url/g, JSON.stringify(`file:///pyodide/${name}`));
  out = out.replace(/(?<![\w$.])import\(/g, "__zcImport(");
  if (/(?<![\w$.])import\s*\(|import\.meta|^\s*(?:import|export)\s[^(]/m.test(out)) throw new Error(`python: ${name}: module syntax left after rewrite`);
  return `"use strict";\n${out}`;
}

export function pyodideFiles(): PyodideFiles {
  if (filesCache !== undefined) return filesCache;
  const dir = dirname(require.resolve("pyodide/package.json"));
  const version = (JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { version: string }).version;
  const asm = rewriteModule(readFileSync(join(dir, "pyodide.asm.mjs"), "utf8"), "pyodide.asm.mjs");
  const loader = rewriteModule(readFileSync(join(dir, "pyodide.js"), "utf8"), "pyodide.js");
  const blobs = new Map(["pyodide.asm.wasm", "python_stdlib.zip"].map((f) => [`/pyodide/${f}`, { path: join(dir, f), size: statSync(join(dir, f)).size }]));
  filesCache = {
    dir,
    version,
    asmScript: new vm.Script(asm, { filename: "pyodide.asm.js" }),
    loaderScript: new vm.Script(loader, { filename: "pyodide.js" }),
    innerScript: new vm.Script(INNER_SOURCE, { filename: "zerocell-python-realm.js" }),
    blobs,
    lockText: readFileSync(join(dir, "pyodide-lock.json"), "utf8"),
  };
  return filesCache;
}

export type LogSink = (stream: "stdout" | "stderr", text: string) => void;

/** A host Error for anything the realm threw (never keeps the sandbox object). */
function hostError(e: unknown): Error {
  let message = "error in the Python realm";
  try {
    if (typeof e === "object" && e !== null) {
      const m = (e as { message?: unknown }).message;
      const errno = (e as { errno?: unknown }).errno;
      if (typeof m === "string" && m.length > 0) message = m;
      else if (typeof errno === "number") message = `file system error (errno ${errno})`;
    } else if (typeof e === "string") message = e;
  } catch {
    // a throwing getter: keep the generic message
  }
  return new Error(`python: ${message.slice(0, 4000)}`);
}

/**
 * One sandbox realm with one Pyodide in it. Created per instance (a host process holds one).
 */
export class PyRealm {
  readonly context: vm.Context;
  // Kit functions captured at creation: later calls never look them up on the kit again.
  readonly #k: { [K in keyof InnerKit]: InnerKit[K] };
  #memory: WebAssembly.Memory | undefined;
  #sp: WebAssembly.Global | undefined;

  /** The snapshot file the sandbox's bridge.mapSnapshot() puts in place (set by boot, used once). */
  readonly #pendingMap: PendingMap;

  private constructor(context: vm.Context, kit: InnerKit, pendingMap: PendingMap) {
    this.context = context;
    this.#pendingMap = pendingMap;
    const k = {} as Record<string, unknown>;
    for (const name of Object.keys(kit) as Array<keyof InnerKit>) {
      const f = kit[name] as unknown;
      if (typeof f !== "function") throw new Error(`python: realm kit.${name} is not a function`);
      k[name] = (...args: unknown[]): unknown => {
        let r: unknown;
        try {
          r = Reflect.apply(f as (...a: unknown[]) => unknown, undefined, args);
        } catch (e) {
          throw hostError(e);
        }
        return r;
      };
    }
    this.#k = k as { [K in keyof InnerKit]: InnerKit[K] };
    pendingMap.memory = (): WebAssembly.Memory => {
      const m = this.#k.memory();
      if (!(typeof m === "object" && m !== null)) throw new Error("python: wasm memory not found");
      Reflect.apply(memoryBuffer, m, []); // a host brand check: a real Memory, or it throws
      return m as WebAssembly.Memory;
    };
  }

  /**
   * Creates the context, evaluates the realm shims and Pyodide's scripts in it. `imageFile(i)`
   * gives the bytes of the app image's i-th file (pulled by the sandbox during boot).
   */
  static create(imageFile: (index: number) => Uint8Array | undefined, log: LogSink): PyRealm {
    const files = pyodideFiles();
    const context = vm.createContext(Object.create(null) as object, {
      name: "zerocell-python",
      codeGeneration: { strings: false, wasm: true },
    });
    const pendingMap: PendingMap = { imageFile, log };
    const image = (name: string): Uint8Array | undefined => (name.startsWith("image:") ? pendingMap.imageFile(Number(name.slice(6))) : undefined);
    // The bridge: host functions the sandbox may call. Arguments are primitives or sandbox typed
    // arrays (checked with host builtins); results are primitives. inner.ts wraps each call.
    const bridge: RealmBridge = {
      log: (stream: unknown, text: unknown): void => {
        pendingMap.log(stream === "stdout" ? "stdout" : "stderr", typeof text === "string" ? text : "");
      },
      fileSize: (name: unknown): number => (typeof name !== "string" ? -1 : (files.blobs.get(name)?.size ?? image(name)?.byteLength ?? -1)),
      fileInto: (name: unknown, dst: unknown): void => {
        // A Pyodide file is read from disk into a host buffer first: the copy into the sandbox's
        // array stays a host builtin's (nothing of the sandbox's runs in between).
        const blob = typeof name === "string" ? files.blobs.get(name) : undefined;
        const src = blob !== undefined ? readFileSync(blob.path) : typeof name === "string" ? image(name) : undefined;
        if (src === undefined || !types.isUint8Array(dst) || Reflect.apply(taLength, dst, []) !== src.byteLength) throw new Error("fileInto: bad arguments");
        Reflect.apply(u8Set, dst, [src]);
      },
      fileText: (name: unknown): string | undefined => (name === "/pyodide/pyodide-lock.json" ? files.lockText : undefined),
      random: (dst: unknown): void => {
        if (!types.isArrayBufferView(dst)) throw new Error("random: not a typed array");
        randomFillSync(dst);
      },
      now: (): number => performance.now(),
      timeOrigin: (): number => performance.timeOrigin,
      // decode(0, label, ...) checks a label and returns its encoding name ("" if unknown).
      decode: (view: unknown, label: unknown, fatal: unknown, ignoreBOM: unknown): string => {
        const d = decoderFor(typeof label === "string" ? label : "utf-8", fatal === true, ignoreBOM === true);
        if (view === 0) return d?.encoding ?? "";
        if (d === undefined || !types.isUint8Array(view)) throw new Error("decode: bad arguments");
        return d.decode(view);
      },
      utf8Length: (s: unknown): number => (typeof s === "string" ? Buffer.byteLength(s, "utf8") : 0),
      encodeInto: (s: unknown, dst: unknown): number => {
        if (typeof s !== "string" || !types.isUint8Array(dst)) throw new Error("encodeInto: bad arguments");
        return utf8Encoder.encodeInto(s, dst).written;
      },
      // Once per boot, the file boot() was given, over the memory the sandbox's wasm instance
      // exports (brand-checked with the host's getter): the sandbox names neither.
      mapSnapshot: (): string => {
        const file = pendingMap.file;
        pendingMap.file = undefined;
        const memory = pendingMap.memory?.();
        if (file === undefined || memory === undefined) throw new Error("mapSnapshot: no snapshot file to map");
        return (pendingMap.how = putSnapshotFile(memory, file));
      },
      timer: (fn: unknown, ms: unknown): void => {
        if (typeof fn !== "function") return;
        setTimeout(() => {
          try {
            (fn as () => void)();
          } catch {
            // a sandbox error in a boot-time callback: nothing to report to
          }
        }, typeof ms === "number" ? ms : 0).unref();
      },
    };
    const makeKit = files.innerScript.runInContext(context) as (b: RealmBridge) => InnerKit;
    const kit = makeKit(bridge);
    files.asmScript.runInContext(context);
    files.loaderScript.runInContext(context);
    return new PyRealm(context, kit, pendingMap);
  }

  #parked = false;

  /** Parked by preboot(): the next boot() goes on from there (a snapshot boot only). */
  get parked(): boolean {
    return this.#parked;
  }

  /**
   * Makes and links Pyodide's module with no deployment (a spare's realm, nothing of any tenant:
   * no image, the base heap cap), up to where a snapshot would be restored, and parks there.
   */
  async preboot(opts: BootOptions): Promise<void> {
    if (this.#k.preboot(JSON.stringify(opts)) !== "started") throw new Error("python: preboot did not start");
    const state = await this.#poll("pending");
    if (state !== "parked") throw new Error(`python: ${state === "ok" ? "preboot did not park" : state.replace(/^error: /, "preboot failed: ")}`);
    this.#parked = true;
  }

  /** A parked realm takes its deployment: where its image is read from and its log goes. */
  adopt(imageFile: (index: number) => Uint8Array | undefined, log: LogSink): void {
    this.#pendingMap.imageFile = imageFile;
    this.#pendingMap.log = log;
  }

  /** Polls the sandbox's boot state until it is not `while` any more. */
  async #poll(while_: string): Promise<string> {
    let state = while_;
    for (let polls = 0; state === while_; polls++) {
      await new Promise<void>((ok) => (polls < 1000 ? setImmediate(ok) : setTimeout(ok, 1)));
      const s: unknown = this.#k.bootState();
      state = typeof s === "string" ? s : "error: bad state";
    }
    return state;
  }

  /**
   * Loads Pyodide (cold, or from a Pyodide-format snapshot blob); a parked realm goes on with the
   * snapshot from where it parked. Awaited before any guest code runs.
   */
  async boot(opts: BootOptions, snapshot?: SnapshotBlobSource): Promise<void> {
    if (this.#parked && snapshot === undefined) throw new Error("python: a parked realm boots from a snapshot only");
    let blob: Uint8Array | null = null;
    if (snapshot !== undefined) {
      const { header, memory } = snapshot;
      const inFile = !(memory instanceof Uint8Array);
      const bytes = header.byteLength + (inFile ? 0 : memory.byteLength);
      blob = this.#k.alloc(bytes);
      // The host writes through a view of its own over the sandbox's buffer (host getters, host
      // constructor): no sandbox method runs, and the view never reaches the sandbox.
      if (!types.isUint8Array(blob) || Reflect.apply(taLength, blob, []) !== bytes) throw new Error("python: snapshot buffer not allocated");
      const view = new Uint8Array(Reflect.apply(taBuffer, blob, []) as ArrayBuffer, Reflect.apply(taByteOffset, blob, []) as number, bytes);
      view.set(header, 0);
      if (inFile) {
        this.#pendingMap.file = memory;
        this.#pendingMap.how = undefined;
        opts = { ...opts, mapSnapshot: header.byteLength + memory.bytes };
      } else view.set(memory, header.byteLength);
    }
    // Never await a sandbox promise: that hands host resolve functions to the sandbox's "then",
    // and a snapshot boot runs the snapshot's Python code. Poll a string instead.
    const wasParked = this.#parked;
    this.#parked = false;
    if ((wasParked ? this.#k.go(JSON.stringify(opts), blob!) : this.#k.boot(JSON.stringify(opts), blob)) !== "started") throw new Error("python: boot did not start");
    const state = await this.#poll("pending");
    const unmapped = this.#pendingMap.file !== undefined;
    this.#pendingMap.file = undefined;
    if (state !== "ok") throw new Error(`python: ${state.replace(/^error: /, "boot failed: ")}`);
    if (unmapped) throw new Error("python: boot finished without restoring the snapshot's memory");
    const memory = this.#k.memory();
    const sp = this.#k.stackPointer();
    if (!(typeof memory === "object" && memory !== null) || !(typeof sp === "object" && sp !== null)) throw new Error("python: wasm memory not found");
    // Brand checks with host builtins (a sandbox object that is not a real Memory throws).
    Reflect.apply(memoryBuffer, memory, []);
    this.#memory = memory;
    this.#sp = sp;
  }

  /** How the last boot put a snapshot file's memory in place (undefined: no file). */
  get snapshotMemory(): "mapped" | "read" | undefined {
    return this.#pendingMap.how;
  }

  get memory(): WebAssembly.Memory {
    if (this.#memory === undefined) throw new Error("python: not booted");
    return this.#memory;
  }

  get stackPointer(): WebAssembly.Global {
    if (this.#sp === undefined) throw new Error("python: not booted");
    return this.#sp;
  }

  #buffer(): ArrayBuffer {
    return Reflect.apply(memoryBuffer, this.memory, []) as ArrayBuffer;
  }

  memoryBytes(): number {
    return this.#buffer().byteLength;
  }

  /** Copies [addr, addr+len) of linear memory into a new host Buffer. */
  readMemory(addr: number, len: number): Buffer {
    const buf = this.#buffer();
    if (!Number.isSafeInteger(addr) || !Number.isSafeInteger(len) || addr < 0 || len < 0 || addr + len > buf.byteLength) throw new Error("python: memory range out of bounds");
    return Buffer.from(new Uint8Array(buf, addr, len));
  }

  writeMemory(addr: number, data: Uint8Array): void {
    const buf = this.#buffer();
    if (!Number.isSafeInteger(addr) || addr <= 0 || addr + data.byteLength > buf.byteLength) throw new Error("python: memory range out of bounds");
    new Uint8Array(buf, addr, data.byteLength).set(data);
  }

  sbrkTop(): number {
    return this.#num(this.#k.sbrkTop());
  }

  #num(v: unknown): number {
    if (typeof v !== "number" || !Number.isFinite(v)) throw new Error("python: realm returned a non-number");
    return v;
  }

  #str(v: unknown): string {
    if (typeof v !== "string") throw new Error("python: realm returned a non-string");
    return v;
  }

  runPython(code: string): string {
    return this.#str(this.#k.runPython(code));
  }

  bindDriver(): void {
    this.#str(this.#k.bindDriver());
  }

  /** Calls the Python driver's dispatcher (primitives in, a primitive out). */
  call(name: string, a: string | number = 0, b: string | number = 0): string | number {
    const r: unknown = this.#k.call(name, a, b);
    if (typeof r === "string" || typeof r === "number") return r;
    throw new Error("python: driver returned a non-primitive");
  }

  setHeapCap(bytes: number): void {
    this.#k.setHeapCap(bytes);
  }

  lockFs(tmpQuota: number, dataQuota: number): void {
    this.#k.lockFs(tmpQuota, dataQuota);
  }

  neuter(): number {
    return Number(this.#str(this.#k.neuter()));
  }

  recordState(): string {
    return this.#str(this.#k.recordState());
  }

  restoreState(): number {
    const r = this.#str(this.#k.restoreState());
    return r === "none" ? 0 : Number(r);
  }

  closeExtraStreams(): number {
    return this.#num(this.#k.closeExtraStreams());
  }

  wipe(dir: "/tmp" | "/data"): void {
    this.#k.wipe(dir);
  }

  mkdirs(path: string): void {
    this.#k.mkdirs(path);
  }

  writeFile(path: string, data: Uint8Array): void {
    const inner = this.#k.alloc(data.byteLength);
    Reflect.apply(u8Set, inner, [data]);
    this.#k.writeFile(path, inner);
  }

  listTree(dir: "/tmp" | "/data"): Array<[string, "dir" | "file", number]> {
    const parsed: unknown = JSON.parse(this.#str(this.#k.listTree(dir)));
    if (!Array.isArray(parsed)) throw new Error("python: bad tree listing");
    return parsed.filter((e): e is [string, "dir" | "file", number] => Array.isArray(e) && typeof e[0] === "string" && (e[1] === "dir" || e[1] === "file") && typeof e[2] === "number");
  }

  readFile(path: string): Buffer {
    const inner: unknown = this.#k.readFile(path);
    if (!types.isUint8Array(inner)) throw new Error("python: readFile returned a non-Uint8Array");
    const n = Reflect.apply(taLength, inner, []) as number;
    const out = Buffer.allocUnsafe(n);
    Reflect.apply(u8Set, out, [inner]);
    return out;
  }

  /** Starts watching for JavaScript the guest makes run (after boot, before the app is imported). */
  armWatch(): void {
    this.#str(this.#k.armWatch());
  }

  /** Why this realm's JS heap may hold guest state ("" when it cannot). */
  touched(): string {
    return this.#str(this.#k.touched());
  }

  exportConfig(): string {
    return this.#str(this.#k.exportConfig());
  }

  buildId(): string {
    return this.#str(this.#k.buildId());
  }

  facts(): { evalBlocked: boolean; fnBlocked: boolean; process: string; require: string; fetch: string; WebSocket: string; streaming: string; globals: string[] } {
    return JSON.parse(this.#str(this.#k.facts())) as ReturnType<PyRealm["facts"]>;
  }
}
