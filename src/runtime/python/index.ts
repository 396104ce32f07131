/**
 * Python engine: WSGI (PEP 3333) apps on Pyodide, confined in a JavaScript realm of their own.
 *
 * Layers (docs/python-sandbox.md has the reasoning and the measurements):
 *  1. realm.ts/inner.ts: Pyodide runs in a node:vm context whose global holds only shims defined
 *     inside it (no process/require/fetch/WebSocket, eval and Function(string) off); the host
 *     crosses into it only through functions captured at boot, with primitives.
 *  2. driver.py: `js`, `pyodide_js`, the FFI functions and ctypes are removed from Python before
 *     the app is imported, and the JS objects Python-side proxies pointed at are swapped for
 *     empty ones.
 *  3. The host process (src/runtime/host) adds Node's permission model, an empty network
 *     namespace and --disallow-code-generation-from-strings.
 * Snapshots: the linear memory after the app import and warm-up (LinearMemorySnapshot, restored in
 * place after each request) plus the JS-side state a memory restore cannot bring back (Pyodide's
 * hiwire table and dedup map, the fd table, the file system's cwd, inode counter and attributes).
 * Any other JavaScript the guest made run (a wasm import outside the quiet set, inner.ts) marks
 * the realm, and reset() replaces a marked realm with a new one booted from the snapshot image.
 * Exported as Pyodide's own snapshot format's parts, imported by booting Pyodide from that image
 * (no interpreter start, no app import).
 * Must never: hand guest code a host object, let one request see another's /tmp, /data, memory
 * or JS heap in snapshot mode, or hold more of a response than the limit plus one chunk.
 */
import { promisify } from "node:util";
import { gunzip, gzip } from "node:zlib";
import type { Manifest } from "../../bundle/index.js";
import { changedData, mountData, type DataFs } from "../data-dir.js";
import { DEFAULT_MAX_RESPONSE_BYTES, type Engine, type EngineInstance, type EngineRequest, type EngineResponse, type EngineSpec, type InstanceMemoryInfo, type InstantiateOptions, type PortableSnapshot } from "../engine.js";
import { SandboxError, isZerocellError } from "../../errors.js";
import { LinearMemorySnapshot, preloadLibc, type RestoreMethod, type RestoreStats } from "../../snapshot/index.js";
import { PyRealm, pyodideFiles, type BootOptions, type LogSink, type SnapshotBlobSource } from "./realm.js";
import { driverInstallCode } from "./driver.js";
import { DATA_DIR, TMP_DIR, pythonEngineBuild, validatePythonBundle, type PythonSettings } from "./validate.js";
import { buildMeta } from "./environ.js";

export { pythonSettings, validatePythonBundle, pythonEngineBuild, DEFAULT_PYTHON_SETTINGS, type PythonSettings } from "./validate.js";
export { buildMeta, splitScriptName, decodePathLatin1 } from "./environ.js";

/** What Pyodide itself needs besides the app (interpreter, stdlib, Pyodide's Python side), MiB. */
export const RUNTIME_HEAP_MB = 64;

/** The wasm heap cap: the runtime's own share plus the app's memory_mb. */
export function heapCapBytes(memoryMb: number): number {
  return (memoryMb + RUNTIME_HEAP_MB) * 1024 * 1024;
}

export interface PythonEngineOptions {
  /** Where the app's stdout/stderr (and wsgi.errors) lines go; default: the host's stderr. */
  log?: LogSink;
  /**
   * Tests only: leave Pyodide's internals on the sandbox realm's global, to test what a guest that
   * broke through the Python-level walls could do. Never set in the host.
   */
  exposeInternalsForTests?: boolean;
}

interface PythonPrepared {
  spec: EngineSpec;
  /** spec.maxResponseBytes or the default: the largest response body, bytes. */
  maxResponseBytes: number;
  settings: PythonSettings;
  log: LogSink;
  exposeForTests: boolean;
  /** The runtime-only image a spare host built (preload), if any: cold boots start from it. */
  base: Promise<BaseImage | undefined> | undefined;
}

/**
 * Pyodide booted with an empty app image and the driver installed — nothing of any tenant — as
 * a snapshot: a new deployment's instance boots from it (its own files mounted at boot) instead
 * of starting the interpreter, then imports its app. Built once per spare host, in the background.
 */
interface BaseImage {
  /**
   * The image gzip'd (level 1: ~27 MB → ~7 MB). The host keeps it for its life — for cold boots
   * of its account's later deployments in its free slots — where it would otherwise hold ~16 MB
   * of pages for what may never come; inflating it costs a boot that uses it ~0.2 s.
   */
  gz: Buffer;
  bytes: number;
  extra: SnapshotExtra;
}

/** The interpreter's environment (the same for every app). */
const PY_ENV = { HOME: "/app", LANG: "C.UTF-8", TZ: "UTC", PYTHONDONTWRITEBYTECODE: "1", PYTHONHASHSEED: "random" };

/** Heap cap while the base image is built: the smallest an app can get (memory_mb ≥ 16). */
const BASE_HEAP_CAP = heapCapBytes(16);

async function buildBaseImage(log: LogSink): Promise<BaseImage> {
  const realm = PyRealm.create(() => undefined, log);
  await realm.boot({ heapCap: BASE_HEAP_CAP, env: PY_ENV, files: [] });
  realm.runPython(driverInstallCode());
  realm.bindDriver();
  realm.call("presnap");
  const snap = LinearMemorySnapshot.take(realm.memory, realm.sbrkTop(), [realm.stackPointer]);
  realm.recordState();
  const config = JSON.parse(realm.exportConfig()) as SnapshotExtra["config"];
  const memory = snap.export().memory;
  // On libuv's threads: the spare's event loop stays free for a restore handed to it meanwhile.
  const gz = await gzipAsync(memory, { level: 1 });
  return { gz, bytes: memory.length, extra: { format: SNAPSHOT_FORMAT, buildId: realm.buildId(), memoryBytes: realm.memoryBytes(), config } };
}

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

const SNAPSHOT_FORMAT = "zerocell-pyodide-1";
const PYODIDE_SNAPSHOT_MAGIC = 0x706e7300;
const PYODIDE_SNAPSHOT_HEADER = 48;

interface SnapshotExtra {
  format: typeof SNAPSHOT_FORMAT;
  /** Pyodide's BUILD_ID (64 hex digits). */
  buildId: string;
  /** Size of the linear memory at snapshot time (the loader grows to it before restoring). */
  memoryBytes: number;
  /** Pyodide's snapshot metadata: hiwire table keys past the fixed ones, interned strings. */
  config: { hiwireKeys: null[]; immortalKeys: string[] };
}

function isSnapshotExtra(v: unknown, memoryLength: number, cap: number): v is SnapshotExtra {
  if (typeof v !== "object" || v === null) return false;
  const e = v as Record<string, unknown>;
  const c = e.config as Record<string, unknown> | undefined;
  return (
    e.format === SNAPSHOT_FORMAT &&
    typeof e.buildId === "string" &&
    /^[0-9a-f]{64}$/.test(e.buildId) &&
    typeof e.memoryBytes === "number" &&
    Number.isSafeInteger(e.memoryBytes) &&
    e.memoryBytes >= memoryLength &&
    e.memoryBytes <= cap &&
    typeof c === "object" &&
    c !== null &&
    Array.isArray(c.hiwireKeys) &&
    c.hiwireKeys.length <= 4096 &&
    c.hiwireKeys.every((k) => k === null) &&
    Array.isArray(c.immortalKeys) &&
    c.immortalKeys.length <= 65536 &&
    c.immortalKeys.every((k) => typeof k === "string" && k.length <= 4096)
  );
}

/**
 * Pyodide's snapshot blob (header, JSON metadata, the memory image; see pyodide src/js/snapshot.ts)
 * as its header and its memory: the realm writes both into the buffer it hands Pyodide, or maps
 * a memory file in place when Pyodide restores it.
 */
function pyodideSnapshotBlob(extra: SnapshotExtra, memory: Buffer | { path: string; bytes: number }): SnapshotBlobSource {
  const json = Buffer.from(JSON.stringify(extra.config), "utf8");
  const offset = Math.ceil((PYODIDE_SNAPSHOT_HEADER + json.length) / 16) * 16;
  const header = Buffer.alloc(offset);
  header.writeUInt32LE(PYODIDE_SNAPSHOT_MAGIC, 0);
  header.writeUInt32LE(offset, 4);
  header.writeUInt32LE(json.length, 8);
  header.writeUInt32LE(0, 12);
  for (let i = 0; i < 8; i++) header.writeUInt32LE(parseInt(extra.buildId.slice(i * 8, i * 8 + 8), 16), 16 + i * 4);
  json.copy(header, PYODIDE_SNAPSHOT_HEADER);
  return { header, memory };
}

/** A new sandbox realm for an instance, reading the app image's files from the spec. */
function createRealm(prepared: PythonPrepared): PyRealm {
  return PyRealm.create(imageFiles(prepared), prepared.log);
}

/** The app image's i-th file's bytes, as the realm pulls them at boot. */
function imageFiles(prepared: PythonPrepared): (index: number) => Uint8Array | undefined {
  const entries = prepared.spec.image.entries;
  return (i) => {
    const e = entries[i];
    return e?.kind === "file" ? (e.data ?? new Uint8Array(0)) : undefined;
  };
}

const defaultLog: LogSink = (_stream, text) => {
  process.stderr.write(`python: ${text.endsWith("\n") ? text : text + "\n"}`);
};

export class PythonInstance implements EngineInstance {
  readonly #prepared: PythonPrepared;
  #realm: PyRealm;
  #state: "new" | "booting" | "ready" | "broken" = "new";
  #bootPromise: Promise<void> | undefined;
  /** Why the interpreter could not start (an app import error, a bad snapshot), for later calls. */
  #bootError: string | undefined;
  #snapshot: LinearMemorySnapshot | undefined;
  #extra: SnapshotExtra | undefined;
  #extraError: string | undefined;
  /** Wasm memory size when the snapshot was taken. */
  #snapshotMemoryBytes = 0;
  /** snapshot() found a touched realm: rebuild it before the next request. */
  #rebuildPending = false;
  /** Timings and sizes, for benchmarks and tests. */
  /** What the last reset put back (benchmarks, tests). */
  lastRestore: RestoreStats | undefined;
  /** snapshotMemory: how an imported snapshot's memory got in place ("mapped" from its file, "read" from it, "copied" from bytes). */
  readonly stats = { bootMs: 0, restoredFromSnapshot: false, snapshotMemory: "" as "" | "mapped" | "read" | "copied", fromBaseImage: false, lastResetMs: 0, lastRestoreCopiedBytes: 0, lastJsFixes: 0, realmRebuilds: 0, lastRebuildReason: "" };

  /** Its realm was made and parked ahead by a spare host (PythonEngine.preinstantiate). */
  readonly spareEngine: boolean;

  constructor(prepared: PythonPrepared, realm: PyRealm, spareEngine = false) {
    this.#prepared = prepared;
    this.#realm = realm;
    this.spareEngine = spareEngine;
  }

  /** The realm (tests use it to play a guest that broke into the sandbox's JavaScript). */
  get realm(): PyRealm {
    return this.#realm;
  }

  #bootOptions(memoryBytes?: number): BootOptions {
    const spec = this.#prepared.spec;
    const files: BootOptions["files"] = [];
    spec.image.entries.forEach((e, i) => {
      if (e.kind === "dir") files.push([e.path, "dir", e.mode, 0, i]);
      else if (e.kind === "file") files.push([e.path, "file", e.mode, e.data?.length ?? 0, i]);
      else if (e.kind === "symlink" && e.target !== undefined) files.push([e.path, "symlink", e.mode, e.target, i]);
    });
    return {
      heapCap: heapCapBytes(spec.manifest.limits.memoryMb),
      ...(memoryBytes === undefined ? {} : { memoryBytes }),
      env: PY_ENV,
      files,
      ...(this.#prepared.exposeForTests ? { exposeForTests: true } : {}),
    };
  }

  /** After Pyodide is up (cold or from a snapshot): seal, lock the file tree, check the memory probe. */
  #afterBoot(): void {
    const limits = this.#prepared.spec.manifest.limits;
    const probe = JSON.parse(String(this.#realm.call("setup", JSON.stringify({ path: this.#prepared.settings.path, memoryMb: limits.memoryMb, env: this.#prepared.spec.env ?? {} })))) as { addr: number; hex: string };
    // The request/response path reads and writes bytes objects in place; check the layout once.
    if (this.#realm.readMemory(probe.addr, probe.hex.length / 2).toString("hex") !== probe.hex) throw new Error("python: bytes object layout check failed (unsupported Pyodide build)");
    this.#realm.neuter();
    this.#realm.lockFs(limits.memoryMb * 1024 * 1024, limits.dataMb * 1024 * 1024);
  }

  async #bootCold(): Promise<void> {
    const t0 = performance.now();
    const base = this.#prepared.base === undefined ? undefined : await this.#prepared.base;
    const cap = heapCapBytes(this.#prepared.spec.manifest.limits.memoryMb);
    // A base image that does not inflate (it is the host's own: never expected) means a cold boot.
    const memory = base === undefined ? undefined : await gunzipAsync(base.gz).catch(() => undefined);
    if (base !== undefined && memory !== undefined && memory.length === base.bytes && isSnapshotExtra(base.extra, memory.length, cap)) {
      // The interpreter and driver from the spare's base image; this app's files mounted at boot.
      await this.#realm.boot(this.#bootOptions(base.extra.memoryBytes), pyodideSnapshotBlob(base.extra, memory));
      this.stats.fromBaseImage = true;
    } else {
      // A parked realm goes on from a snapshot only: a realm of its own for a boot from nothing.
      if (this.#realm.parked) this.#realm = createRealm(this.#prepared);
      await this.#realm.boot(this.#bootOptions());
      // From here on guest code may run: only primitive calls into the realm.
      this.#realm.runPython(driverInstallCode());
    }
    this.#realm.bindDriver();
    this.#afterBoot();
    // From the app's import on, JavaScript the guest makes run marks the realm (rebuilt at reset).
    this.#realm.armWatch();
    const r = String(this.#realm.call("load", this.#prepared.settings.app));
    if (r !== "ok") throw new Error(`python: importing the app ${this.#prepared.settings.app} failed: ${r.replace(/^error: /, "")}`);
    this.stats.bootMs = performance.now() - t0;
  }

  #track(boot: Promise<void>): Promise<void> {
    this.#state = "booting";
    this.#bootPromise = boot.then(
      () => {
        this.#state = "ready";
      },
      (e: unknown) => {
        this.#state = "broken";
        this.#bootError = (e as Error).message;
        throw e;
      },
    );
    return this.#bootPromise;
  }

  async #ready(): Promise<void> {
    if (this.#state === "ready") return;
    if (this.#state === "broken") throw new Error(this.#bootError ?? "python: the instance is broken");
    await (this.#bootPromise ?? this.#track(this.#bootCold()));
  }

  /** Starts the interpreter and imports the app now (otherwise the first request does). */
  async boot(): Promise<void> {
    await this.#ready();
  }

  async handle(request: EngineRequest): Promise<EngineResponse> {
    await this.#ready();
    if (this.#rebuildPending) {
      this.#rebuildPending = false;
      await this.#rebuildIfTouched();
    }
    try {
      return this.#handle(request);
    } catch (e) {
      // The app's own limit errors leave the instance sound; anything else (the interpreter
      // aborted, the realm misbehaved) retires it.
      if (!(isZerocellError(e) && e.code === "response_too_large")) this.#state = "broken";
      throw e;
    }
  }

  #handle(request: EngineRequest): EngineResponse {
    const realm = this.#realm;
    const before = request.data === undefined ? undefined : mountData(this.#dataFs(), DATA_DIR, request.data);
    const body = request.body;
    const meta = buildMeta(request, body.byteLength < 2 ? Buffer.from(body).toString("latin1") : undefined);
    const limit = this.#prepared.maxResponseBytes;
    const addr = realm.call("begin", JSON.stringify({ ...meta, max: limit }), body.byteLength);
    if (typeof addr !== "number") throw new Error("python: begin returned a non-number");
    if (body.byteLength >= 2) realm.writeMemory(addr, body);
    const c0 = process.cpuUsage();
    const out = realm.call("run");
    const c = process.cpuUsage(c0);
    const guestMs = (c.user + c.system) / 1000;
    if (typeof out !== "string") throw new Error("python: run returned a non-string");
    const res = JSON.parse(out) as { status: number; headers: Array<[string, string]>; addr: number; len: number; failed: boolean; tooLarge?: boolean };
    // The driver counts body bytes as the app produces them and stops past the limit; the length
    // is checked here again (a guest that tampered with the driver) before anything is copied out.
    if (res.tooLarge === true || !(typeof res.len === "number" && res.len <= limit)) {
      realm.call("end");
      throw new SandboxError("response_too_large", 502, `python: the app's response body exceeds the limit of ${limit} bytes`);
    }
    // The driver keeps the body alive until the next "begin" (or the reset) drops it: no "end"
    // call, one Python↔JS crossing less per request.
    const resBody = res.len === 0 ? Buffer.alloc(0) : realm.readMemory(res.addr, res.len);
    const headers: Array<[string, string]> = [];
    for (const h of res.headers) if (Array.isArray(h) && typeof h[0] === "string" && typeof h[1] === "string") headers.push([h[0], h[1]]);
    // A crashed app's /data changes are never sent back (the gateway commits only below 500).
    const data = before === undefined || res.failed ? undefined : changedData(this.#dataFs(), DATA_DIR, before);
    return { status: res.status, headers, body: resBody, usage: { guestMs }, ...(data === undefined ? {} : { data }) };
  }

  /** /data as the shared keyed-storage code sees it (data-dir.ts). */
  #dataFs(): DataFs {
    const realm = this.#realm;
    return {
      wipe: () => realm.wipe(DATA_DIR),
      mkdirs: (path) => realm.mkdirs(path),
      writeFile: (path, data) => realm.writeFile(path, data),
      readFile: (path) => realm.readFile(path),
      listTree: () => realm.listTree(DATA_DIR).map(([rel, kind]) => [rel, kind] as [string, "dir" | "file"]),
    };
  }

  snapshot(): void {
    if (this.#state === "broken" && this.#bootError !== undefined) throw new Error(this.#bootError);
    if (this.#state !== "ready") throw new Error("python: snapshot() before the instance started (handle a request first)");
    this.#realm.call("presnap");
    this.#realm.wipe(TMP_DIR);
    this.#realm.wipe(DATA_DIR);
    this.#take();
    // The app's import or warm-up made JavaScript run: the first request already starts in a
    // rebuilt realm (handle() does it; this method is synchronous).
    const why = this.#realm.touched();
    if (why !== "") {
      if (this.#extra === undefined) throw new Error(`python: the app ran JavaScript in the sandbox realm (${why}) and keeps a reference to it; its snapshot cannot start a clean realm: ${this.#extraError ?? "unknown reason"}`);
      this.#rebuildPending = true;
    }
  }

  /**
   * Requests must all start from the snapshot, the JS heap included. A realm whose guest made
   * JavaScript run (touched() says which import) may hold state there that no memory restore
   * undoes, so it is dropped and a new one boots from the snapshot image. Returns false when the
   * realm is untouched.
   */
  async #rebuildIfTouched(): Promise<boolean> {
    const why = this.#realm.touched();
    if (why === "") return false;
    if (this.#snapshot === undefined || this.#extra === undefined) {
      this.#state = "broken";
      throw new Error(`python: the app ran JavaScript in the sandbox realm (${why}) and the realm cannot be rebuilt: ${this.#extraError ?? "no snapshot"}`);
    }
    const t0 = performance.now();
    const { memory } = this.#snapshot.export();
    const extra = this.#extra;
    this.#snapshot = undefined;
    this.#realm = createRealm(this.#prepared);
    try {
      await this.#bootFromImage(memory, extra);
    } catch (e) {
      this.#state = "broken";
      throw e;
    }
    this.stats.realmRebuilds++;
    this.stats.lastRebuildReason = why;
    this.stats.lastResetMs = performance.now() - t0;
    return true;
  }

  /**
   * A new realm booted from a Pyodide memory image: seal, lock, watch, take the snapshot.
   * `shareKey`: the image's file, when it came from one (the instances of this process booted from
   * the same file then share their snapshot's memfd but for the few pages where they differ).
   */
  async #bootFromImage(memory: Buffer | { path: string; bytes: number }, extra: SnapshotExtra, shareKey?: string): Promise<void> {
    await this.#realm.boot(this.#bootOptions(extra.memoryBytes), pyodideSnapshotBlob(extra, memory));
    this.#realm.bindDriver();
    this.#afterBoot();
    this.#realm.armWatch();
    this.#realm.call("presnap");
    this.#take(shareKey);
  }

  #take(shareKey?: string): void {
    const realm = this.#realm;
    this.#snapshot = LinearMemorySnapshot.take(realm.memory, realm.sbrkTop(), [realm.stackPointer], shareKey === undefined ? {} : { shareKey });
    this.#snapshotMemoryBytes = realm.memoryBytes();
    realm.recordState();
    try {
      const config = JSON.parse(realm.exportConfig()) as SnapshotExtra["config"];
      this.#extra = { format: SNAPSHOT_FORMAT, buildId: realm.buildId(), memoryBytes: this.#snapshotMemoryBytes, config };
      this.#extraError = undefined;
    } catch (e) {
      this.#extra = undefined;
      this.#extraError = (e as Error).message;
    }
  }

  /** How resets find what to put back (undefined before the snapshot). */
  get resetMethod(): RestoreMethod | undefined {
    return this.#snapshot?.method;
  }

  /**
   * 4 KiB pages of the snapshot's range that differ from it now: a full compare, for tests and
   * checks only (it reads every page, which also makes the next pagemap read longer).
   */
  snapshotDifferingPages(): number {
    if (this.#snapshot === undefined) throw new Error("no snapshot taken");
    return this.#snapshot.differingPages();
  }


  /** Bytes of the snapshot image (linear memory up to the allocator top). */
  get snapshotBytes(): number {
    return this.#snapshot?.bytes ?? 0;
  }

  async reset(): Promise<void> {
    if (this.#state !== "ready") return;
    // Nothing else runs in a realm the guest made JavaScript run in: it is replaced.
    if (this.#snapshot !== undefined && (await this.#rebuildIfTouched())) return;
    const t0 = performance.now();
    const realm = this.#realm;
    realm.wipe(TMP_DIR);
    realm.wipe(DATA_DIR);
    if (this.#snapshot === undefined) return;
    realm.closeExtraStreams();
    const stats = this.#snapshot.restore(realm.sbrkTop());
    this.lastRestore = stats;
    this.stats.lastJsFixes = realm.restoreState();
    this.stats.lastRestoreCopiedBytes = stats.copiedBytes;
    this.stats.lastResetMs = performance.now() - t0;
  }

  memoryInfo(): InstanceMemoryInfo {
    return { linearBytes: this.#realm.memory.buffer.byteLength, snapshotBytes: this.#snapshot?.bytes ?? 0, snapshotHeldBytes: this.#snapshot?.heldBytes ?? 0 };
  }

  exportSnapshot(): PortableSnapshot {
    if (this.#snapshot === undefined) throw new Error("python: no snapshot taken");
    if (this.#extra === undefined) throw new Error(`python: this snapshot cannot be exported: ${this.#extraError ?? "unknown reason"}`);
    const { memory, globals } = this.#snapshot.export();
    return { memory, globals, extra: this.#extra };
  }

  async importSnapshot(snapshot: PortableSnapshot): Promise<void> {
    if (this.#state !== "new") throw new Error("python: importSnapshot() needs a fresh instance");
    const cap = heapCapBytes(this.#prepared.spec.manifest.limits.memoryMb);
    // A file the host was handed (src/snapshot/files.ts): mapped over the memory where Pyodide
    // restores it (realm.ts), not read and copied.
    const memory = snapshot.file !== undefined ? { path: snapshot.file.path, bytes: snapshot.file.bytes } : Buffer.isBuffer(snapshot.memory) ? snapshot.memory : Buffer.from(snapshot.memory);
    if (!isSnapshotExtra(snapshot.extra, Buffer.isBuffer(memory) ? memory.length : memory.bytes, cap)) throw new Error("python: snapshot metadata is malformed");
    const extra = snapshot.extra;
    const t0 = performance.now();
    await this.#track(this.#bootFromImage(memory, extra, snapshot.file === undefined ? undefined : `${snapshot.file.path}:${snapshot.file.bytes}`));
    this.stats.bootMs = performance.now() - t0;
    this.stats.restoredFromSnapshot = true;
    this.stats.snapshotMemory = snapshot.file === undefined ? "copied" : (this.#realm.snapshotMemory ?? "read");
  }

  /**
   * Asks to be replaced when the wasm memory has grown to 90% of its cap (a leaking app in daemon
   * mode, or after a memory bomb: linear memory never shrinks, so only a new instance gives the
   * pages back) or when the interpreter is broken.
   */
  exhausted(): boolean {
    if (this.#state === "broken") return true;
    if (this.#state !== "ready") return false;
    return this.#realm.memoryBytes() >= 0.9 * heapCapBytes(this.#prepared.spec.manifest.limits.memoryMb);
  }

  dispose(): void {
    this.#state = "broken";
    this.#snapshot = undefined;
  }
}

export class PythonEngine implements Engine<PythonPrepared> {
  readonly runtime = "python";
  readonly #log: LogSink;
  readonly #exposeForTests: boolean;
  #base: Promise<BaseImage | undefined> | undefined;

  constructor(options: PythonEngineOptions = {}) {
    this.#log = options.log ?? defaultLog;
    this.#exposeForTests = options.exposeInternalsForTests === true;
  }

  validate(manifest: Manifest, image: EngineSpec["image"]): void {
    validatePythonBundle(manifest, image);
  }

  buildId(manifest: Manifest): string {
    return pythonEngineBuild(manifest);
  }

  /**
   * Reads Pyodide's files and starts building the base image (~3 s of CPU, in the background:
   * a deployment with a stored snapshot does not wait for it; a cold boot does, as it would
   * otherwise do the same work itself).
   */
  async preload(): Promise<void> {
    pyodideFiles();
    this.#base ??= buildBaseImage(this.#log).catch((e: unknown) => {
      this.#log("stderr", `python: base image not built, apps boot cold: ${(e as Error).message}`);
      return undefined;
    });
  }

  async prepare(spec: EngineSpec): Promise<PythonPrepared> {
    const settings = validatePythonBundle(spec.manifest, spec.image);
    pyodideFiles();
    const maxResponseBytes = spec.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    return { spec, settings, maxResponseBytes, log: this.#log, exposeForTests: this.#exposeForTests, base: this.#exposeForTests ? undefined : this.#base };
  }

  /** A parked realm costs ~35 MB while it waits: spare hosts make one, hosts with a free slot do not. */
  readonly blankAheadInSlots = false;

  /** The realm a spare host made and parked ahead (preinstantiate); taken once. */
  #blank: Promise<PyRealm | undefined> | undefined;

  /**
   * A spare host's realm ahead: Pyodide's module made and linked (its scripts run, its wasm
   * compiled and instantiated, Emscripten's dynamic linking done) with no image, the base heap
   * cap and the interpreter's fixed environment — nothing of any tenant — parked where a snapshot
   * is restored. A deployment's restore takes it (instantiate with forRestore): the heap is grown
   * to its snapshot's size, its image written, its snapshot mapped in and the boot goes on.
   * First it waits for the base image (preload builds it in the background; the build holds the
   * host's event loop for seconds, so a restore handed to a spare still building it waits
   * anyway). A spare says it is preloaded (GET /v1/pool) after this.
   */
  async preinstantiate(): Promise<void> {
    await this.#base;
    this.#blank ??= (async () => {
      const realm = PyRealm.create(() => undefined, this.#log);
      await realm.preboot({ heapCap: BASE_HEAP_CAP, env: PY_ENV, files: [] });
      // The libc calls the snapshot's mapping needs, loaded now rather than at the restore.
      preloadLibc();
      return realm;
    })().catch((e: unknown) => {
      this.#log("stderr", `python: no realm ahead for restores: ${(e as Error).message}`);
      return undefined;
    });
    await this.#blank;
  }

  async instantiate(prepared: PythonPrepared, options: InstantiateOptions = {}): Promise<PythonInstance> {
    // A restore, or a cold boot from the spare's base image (a snapshot too): the parked realm.
    const base = options.forRestore === true || this.#blank === undefined || prepared.base === undefined ? undefined : await prepared.base;
    const blank = options.forRestore === true || base !== undefined ? this.#blank : undefined;
    if (blank !== undefined) {
      this.#blank = undefined;
      const realm = await blank;
      if (realm !== undefined) {
        realm.adopt(imageFiles(prepared), prepared.log);
        return new PythonInstance(prepared, realm, true);
      }
    }
    return new PythonInstance(prepared, createRealm(prepared));
  }
}
