/**
 * PHP engine: php-wasm (Emscripten) loaded through its low-level loader, with none of the Node
 * glue that reaches outside. Walls, inside out: the wasm imports that would load code, start
 * processes or open sockets fail as C expects (wasm-imports.ts); the output of a request is
 * limited while it is written (output.ts); the app image is copied into the in-memory FS, mode
 * and owner changes are refused outside /tmp and /data, / is read-only, /tmp and /data have
 * quotas (fs-walls.ts); php.ini's disable_functions / open_basedir / enable_dl / … come last in
 * php.ini and are read back from the running engine before any tenant file exists in it.
 * Must never: mount a host directory, hand guest code anything that reaches Node, or serve from
 * an instance whose php.ini walls are not in force.
 */
import type { Manifest, BundleImage } from "../../bundle/index.js";
import { createManifestParser } from "../../bundle/index.js";
import { phpManifest } from "./manifest.js";
import { DEFAULT_MAX_RESPONSE_BYTES, WORN_AT, type Engine, type EngineInstance, type EngineRequest, type EngineResponse, type EngineSpec, type InstanceMemoryInfo, type InstantiateOptions, type PortableSnapshot } from "../engine.js";
import { APP_ROOT, DATA_DIR, TMP_DIR, buildPhpIni, isPhpSource, opcacheSizing, phpEngineBuild, phpIniWalls, validatePhpBundle, type OpcacheSizing } from "./validate.js";
import { changedData, mountData, type DataFs } from "../data-dir.js";
import { dispatch, mimeTypeOf } from "./dispatch.js";
import { isZerocellError } from "../../errors.js";
import { LinearMemorySnapshot, preloadLibc, type RestoreMethod, type RestoreStats } from "../../snapshot/index.js";
import { assertIniWalls, PHP_INI_PATH, startPhpRuntime, type EmscriptenModule, type PhpRuntime } from "./runtime.js";
import { compiledModule } from "./wasm-imports.js";
import { PhpRequestRunner, type PhpRequestResult, type RequestModule } from "./request.js";
import { limitDirs, lockFileSystem } from "./fs-walls.js";
import { PHPExecutionFailureError, type PHP } from "@php-wasm/universal";

export { APP_ROOT, validatePhpBundle } from "./validate.js";

interface PhpPrepared {
  spec: EngineSpec;
  loader: unknown;
  phpIni: string;
  /** [key, value] of every php.ini wall, checked in the running engine. */
  walls: Array<[string, string]>;
  documentRoot: string;
  opcache: OpcacheSizing;
  /** Absolute paths of the bundle's PHP files, compiled into opcache before the snapshot. */
  sources: string[];
}

type PhpVersion = Manifest["php"]["version"];

/** The manifest's default (src/bundle/manifest.ts), the version spare hosts preload. */
const DEFAULT_PHP_VERSION: PhpVersion = "8.3";

async function importLoader(version: PhpVersion): Promise<unknown> {
  switch (version) {
    case "8.3":
      return (await import("@php-wasm/node-8-3")).getPHPLoaderModule();
    case "8.4":
      return (await import("@php-wasm/node-8-4")).getPHPLoaderModule();
  }
}

function writeImage(php: PHP, image: BundleImage): void {
  php.mkdirTree(APP_ROOT);
  const dirs: string[] = [APP_ROOT];
  for (const e of image.entries) {
    const path = `${APP_ROOT}/${e.path}`;
    if (e.kind === "dir") {
      php.mkdirTree(path);
      dirs.push(path);
    } else if (e.kind === "file") {
      php.writeFile(path, e.data ?? new Uint8Array(0));
      php.chmod(path, (e.mode & 0o555) | 0o444);
    } else if (e.kind === "symlink" && e.target !== undefined) {
      php.symlink(e.target, path);
    }
  }
  // Read-only image: no write bits anywhere under /app.
  for (const d of dirs.reverse()) php.chmod(d, 0o555);
}

/**
 * memory_limit is only php.ini (ini_set() can raise it) and malloc outside the Zend allocator
 * (ImageMagick) is not counted, so cap the wasm heap itself: growth past the cap fails and PHP
 * stops with "Out of memory". php-wasm would otherwise grow to 2 GiB per host.
 */
function heapCapBytes(memoryMb: number, opcacheMb: number): number {
  return (memoryMb * 2 + opcacheMb + 192) * 1024 * 1024;
}

/** How a runtime is started, as far as a later instance can tell (php.ini, output limit, version). */
function blankKey(prepared: PhpPrepared): string {
  return JSON.stringify([prepared.phpIni, prepared.spec.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES, prepared.spec.manifest.php.version]);
}

/** Descriptor slots an instance may use before it asks to be replaced (Emscripten allows 4096). */
const MAX_OPEN_STREAMS = 3600;

/** php-wasm's `code` option runs /internal/eval.php, outside open_basedir: prime from /tmp. */
const PRIME_SCRIPT = `${TMP_DIR}/.zerocell-prime.php`;

/** What precompile() writes and runs (in /tmp: php-wasm's own eval entry is outside open_basedir). */
const PRECOMPILE_SCRIPT = `${TMP_DIR}/.zerocell-precompile.php`;
const PRECOMPILE_LIST = `${TMP_DIR}/.zerocell-precompile.list`;

/** Bounds of the precompile step (PhpInstance.precompile). */
export const PRECOMPILE_LIMITS = Object.freeze({
  /** Files compiled at most (bundles hold at most 10,000 files). */
  maxFiles: 20_000,
  /** Share of limits.timeout_ms the step may take, wall time (the gateway bounds its CPU time by timeout_ms). */
  timeShare: 0.8,
  /** Scripts that stop PHP while compiling skipped before the step gives up. */
  maxFatal: 50,
  /** Passes over the files still not cached (each starts with an empty function table). */
  maxRuns: 8,
});

/**
 * Compiles the listed files from line `from` on that are not cached yet, until the list, the
 * deadline or a full cache ends it; ends with "D <files still not cached>". Prints each index
 * before its file, so when a file stops PHP outright the caller knows which one. A file that
 * redeclares a function another compiled file declared (WordPress: wp-admin/includes/noop.php)
 * fails here but compiles in the next run, which starts with an empty function table.
 */
const PRECOMPILE_PHP = `<?php
$list = file('${PRECOMPILE_LIST}', FILE_IGNORE_NEW_LINES);
$from = (int) array_shift($list);
$deadline = hrtime(true) + (int) array_shift($list) * 1000000;
$n = count($list);
for ($i = $from; $i < $n; $i++) {
  if (($i - $from) % 16 === 0) {
    if (hrtime(true) > $deadline) { echo "T $i\\n"; return; }
    if (opcache_get_status(false)['cache_full'] ?? false) { echo "F $i\\n"; return; }
  }
  if (opcache_is_script_cached($list[$i])) continue;
  echo $i, "\\n";
  try {
    @opcache_compile_file($list[$i]);
  } catch (\\Throwable $e) {
  }
}
$left = 0;
foreach ($list as $f) if (!opcache_is_script_cached($f)) $left++;
echo "D $left\\n";
`;

/** What PhpInstance.precompile did. */
export interface PrecompileReport {
  /** PHP files of the bundle. */
  files: number;
  /** Scripts in opcache afterwards (the warm-up's, the precompiled ones, the step's own). */
  cached: number;
  /** Files still not cached at the end (syntax errors, the step's bounds). */
  failed: number;
  /** Why the step ended: every file done, the time share, a full cache, too many fatal errors. */
  end: "done" | "time" | "cache_full" | "fatal";
  ms: number;
  /** opcache shared memory in use / free, bytes. */
  usedBytes: number;
  freeBytes: number;
  internedUsedBytes: number;
}

/** An open file of the snapshot's instance that its memory may refer to by number. */
export interface SnapshotFd {
  fd: number;
  path: string;
  flags: number;
  position: number;
}

function isSnapshotFds(v: unknown): v is SnapshotFd[] {
  return Array.isArray(v) && v.length <= 64 && v.every((f) => typeof f === "object" && f !== null && Number.isInteger(f.fd) && f.fd > 2 && f.fd < 4096 && typeof f.path === "string" && f.path.startsWith("/dev/") && Number.isInteger(f.flags) && Number.isFinite(f.position));
}

const PLAIN: Array<[string, string]> = [["content-type", "text/plain; charset=utf-8"]];

function textResponse(status: number, text: string, extra: Array<[string, string]> = []): EngineResponse {
  return { status, headers: [...PLAIN, ...extra], body: Buffer.from(text) };
}

class PhpInstance implements EngineInstance {
  readonly #php: PHP;
  readonly #module: EmscriptenModule;
  readonly #docRoot: string;
  readonly #frontController: string | null;
  #snapshot: LinearMemorySnapshot | undefined;
  /** Open stream slots at snapshot time; later ones are leaks of the request to close. */
  #streamsAtSnapshot = 0;
  readonly #runtime: PhpRuntime;
  readonly #walls: ReadonlyArray<[string, string]>;
  readonly #maxResponseBytes: number;
  readonly #prepared: PhpPrepared;
  readonly #runner: PhpRequestRunner;
  /** What the last reset put back (benchmarks, tests). */
  lastRestore: RestoreStats | undefined;

  /** Made ahead by a spare host (PhpEngine.preinstantiate), not started for this deployment. */
  readonly spareEngine: boolean;

  constructor(runtime: PhpRuntime, prepared: PhpPrepared, spareEngine = false) {
    this.spareEngine = spareEngine;
    this.#prepared = prepared;
    this.#runtime = runtime;
    this.#runner = new PhpRequestRunner(runtime.module as unknown as RequestModule);
    this.#php = runtime.php;
    this.#module = runtime.module;
    this.#docRoot = prepared.documentRoot;
    this.#frontController = prepared.spec.manifest.php.frontController;
    this.#walls = prepared.walls;
    this.#maxResponseBytes = prepared.spec.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
  }

  /**
   * php-wasm's C side opens two descriptors per request (/request/stdout, /request/stderr) and
   * never closes them; only a reset (snapshot mode) puts the table back. Closing them from JS is
   * not safe: the C side closes its old numbers later and would hit files that reuse them. So an
   * instance that serves without resets (daemon mode) asks to be replaced before the table fills
   * (~1,800 requests), as php-fpm's pm.max_requests recycles workers; past WORN_AT of it the pool
   * has already started its successor (wear()).
   */
  exhausted(): boolean {
    return this.#stopped || this.#module.FS.streams.length > MAX_OPEN_STREAMS;
  }

  /**
   * The descriptor table's share of MAX_OPEN_STREAMS. Daemon mode: grows by two per request
   * (/request/stdout and /request/stderr, opened by php-wasm's C side and never closed).
   */
  wear(): number {
    return this.#module.FS.streams.length / MAX_OPEN_STREAMS;
  }

  /**
   * Daemon mode: past WORN_AT of the descriptor table the host resets the instance to its
   * snapshot (which closes the request pipes: reset()) instead of having it replaced — unless a
   * script was stopped mid-call or a spawn was attempted (then only a new instance is safe).
   */
  recycleDue(): boolean {
    return !this.#stopped && !this.#runtime.spawn.attempted && this.#snapshot !== undefined && this.wear() >= WORN_AT;
  }

  /**
   * The output limit stops a script by throwing inside php-wasm's write path: the runtime is left
   * mid-call and is not used again (the host replaces it).
   */
  #stopped = false;

  async handle(request: EngineRequest): Promise<EngineResponse> {
    return this.#handle(request);
  }

  async #handle(request: EngineRequest): Promise<EngineResponse> {
    const q = request.url.indexOf("?");
    const rawPath = q === -1 ? request.url : request.url.slice(0, q);
    const query = q === -1 ? "" : request.url.slice(q);
    const d = dispatch(this.#php, this.#docRoot, rawPath, query, this.#frontController, this.#docRoot === APP_ROOT);
    switch (d.kind) {
      case "bad-request":
        return textResponse(400, `bad request: ${d.reason}\n`);
      case "redirect":
        return textResponse(301, `moved to ${d.location}\n`, [["location", d.location]]);
      case "not-found":
        return textResponse(404, "not found\n");
      case "static": {
        const body = this.#php.readFileAsBuffer(d.file);
        return { status: 200, headers: [["content-type", mimeTypeOf(d.file)]], body };
      }
      case "script":
        break;
    }
    const before = request.data === undefined ? undefined : mountData(this.#dataFs(), DATA_DIR, request.data);
    const headers: Record<string, string> = {};
    for (const [k, v] of request.headers) {
      // PHP maps "-" and "_" both to "_" in HTTP_* names: an "X_Forwarded_For" header would
      // override X-Forwarded-For. Names with "_" are dropped, as nginx and the Python engine do.
      if (k.includes("_")) continue;
      headers[k] = k in headers ? (k === "cookie" ? `${headers[k]}; ${v}` : `${headers[k]}, ${v}`) : v;
    }
    const server: Record<string, string> = {
      REMOTE_ADDR: request.remoteAddr,
      REMOTE_PORT: String(request.remotePort),
      SERVER_NAME: request.serverName,
      SERVER_PORT: String(request.serverPort),
      SERVER_SOFTWARE: "zerocell",
      SERVER_PROTOCOL: "HTTP/1.1",
      GATEWAY_INTERFACE: "CGI/1.1",
      REQUEST_SCHEME: request.https ? "https" : "http",
      DOCUMENT_ROOT: this.#docRoot,
      SCRIPT_NAME: d.scriptName,
      SCRIPT_FILENAME: d.file,
      PHP_SELF: d.scriptName + (d.pathInfo ?? ""),
      REQUEST_URI: request.url,
      QUERY_STRING: query.slice(1),
    };
    if (request.https) server.HTTPS = "on";
    if (d.pathInfo !== undefined) server.PATH_INFO = d.pathInfo;
    let res: PhpRequestResult;
    this.#runtime.output.begin(this.#maxResponseBytes);
    try {
      res = await this.#runner.run({ scriptPath: d.file, uri: request.url, method: request.method, https: request.https, headers, body: request.body, $_SERVER: server });
    } catch (e) {
      if (isZerocellError(e) && e.code === "response_too_large") this.#stopped = true;
      throw e;
    }
    if (res.errors.length > 0) process.stderr.write(res.errors.endsWith("\n") ? res.errors : res.errors + "\n");
    // A fatal error (uncaught exception, memory limit) ends the script with exit code 255, carrying
    // what PHP had answered so far. That is the app's 500; its /data changes are never committed.
    const usage = { guestMs: res.guestMs };
    if (res.exitCode !== 0) return { status: res.status >= 400 ? res.status : 500, headers: res.headers, body: res.body, usage };
    const data = before === undefined ? undefined : changedData(this.#dataFs(), DATA_DIR, before);
    return { status: res.status, headers: res.headers, body: res.body, usage, ...(data === undefined ? {} : { data }) };
  }

  /** /data as the shared keyed-storage code sees it (data-dir.ts). */
  #dataFs(): DataFs {
    const php = this.#php;
    return {
      wipe: (dir) => this.#wipe(dir),
      mkdirs: (path) => php.mkdirTree(path),
      writeFile: (path, data) => php.writeFile(path, data),
      readFile: (path) => php.readFileAsBuffer(path),
      listTree: (dir) => {
        const out: Array<[string, "dir" | "file"]> = [];
        const walk = (rel: string) => {
          for (const name of php.listFiles(rel === "" ? dir : `${dir}/${rel}`)) {
            const childRel = rel === "" ? name : `${rel}/${name}`;
            const full = `${dir}/${childRel}`;
            if (php.isDir(full)) {
              out.push([childRel, "dir"]);
              walk(childRel);
            } else if (php.isFile(full)) out.push([childRel, "file"]);
          }
        };
        walk("");
        return out;
      },
    };
  }

  /**
   * Compiles every PHP file of the bundle that the warm-up did not reach into opcache, so that no
   * request of an instance restored from the snapshot compiles a script of the bundle (opcache
   * keeps them in linear memory). Runs after the warm-up, before snapshot(); bounded by
   * PRECOMPILE_LIMITS. Compiling runs no tenant code (opcache_compile_file only compiles), but
   * the sources are the tenant's: a file that stops PHP is skipped, a slow one ends the step.
   */
  async precompile(): Promise<PrecompileReport> {
    const t0 = performance.now();
    const php = this.#php;
    const sources = this.#prepared.sources.slice(0, PRECOMPILE_LIMITS.maxFiles);
    const budgetMs = Math.max(1, Math.floor(this.#prepared.spec.manifest.limits.timeoutMs * PRECOMPILE_LIMITS.timeShare));
    const deadline = t0 + budgetMs;
    php.writeFile(PRECOMPILE_SCRIPT, PRECOMPILE_PHP);
    let from = 0;
    let left = sources.length;
    let fatal = 0;
    let end: PrecompileReport["end"] = "done";
    try {
      for (let run = 0; run < PRECOMPILE_LIMITS.maxRuns && left > 0; run++) {
        if (performance.now() > deadline) {
          end = "time";
          break;
        }
        php.writeFile(PRECOMPILE_LIST, `${from}\n${Math.max(1, Math.floor(deadline - performance.now()))}\n${sources.join("\n")}\n`);
        let text: string;
        this.#runtime.output.begin(this.#maxResponseBytes);
        try {
          text = (await php.run({ scriptPath: PRECOMPILE_SCRIPT })).text;
        } catch (e) {
          if (!(e instanceof PHPExecutionFailureError)) throw e;
          // Compile errors opcache caught still end the script with status 255.
          text = e.response.text;
        }
        const last = text.trim().split("\n").pop() ?? "";
        const [kind, count] = last.split(" ");
        if (kind === "D") {
          const now = Number(count);
          // No progress: what is left does not compile.
          if (!(now < left)) {
            left = now;
            break;
          }
          left = now;
          from = 0;
        } else if (kind === "T" || kind === "F") {
          end = kind === "T" ? "time" : "cache_full";
          break;
        } else {
          // A file stopped PHP outright: go on after it.
          const at = Number(last);
          if (++fatal > PRECOMPILE_LIMITS.maxFatal || !Number.isInteger(at) || at < from) {
            end = "fatal";
            break;
          }
          from = at + 1;
          run--;
        }
      }
    } finally {
      php.unlink(PRECOMPILE_LIST);
      php.unlink(PRECOMPILE_SCRIPT);
    }
    const failed = left;
    const status = await this.#opcacheStatus();
    return { files: sources.length, failed, end, ms: performance.now() - t0, ...status };
  }

  /** opcache's counters, read by a script in /tmp (opcache_get_status is PHP's only reader). */
  async #opcacheStatus(): Promise<{ cached: number; usedBytes: number; freeBytes: number; internedUsedBytes: number }> {
    const path = `${TMP_DIR}/.zerocell-opcache-status.php`;
    this.#php.writeFile(path, "<?php $s = opcache_get_status(false); echo json_encode([$s['opcache_statistics']['num_cached_scripts'] ?? 0, $s['memory_usage']['used_memory'] ?? 0, $s['memory_usage']['free_memory'] ?? 0, $s['interned_strings_usage']['used_memory'] ?? 0]);");
    try {
      this.#runtime.output.begin(this.#maxResponseBytes);
      const [cached, usedBytes, freeBytes, internedUsedBytes] = JSON.parse((await this.#php.run({ scriptPath: path })).text) as number[];
      return { cached: cached ?? 0, usedBytes: usedBytes ?? 0, freeBytes: freeBytes ?? 0, internedUsedBytes: internedUsedBytes ?? 0 };
    } finally {
      this.#php.unlink(path);
    }
  }

  #sbrkTop(): number {
    const ex = this.#module.wasmExports;
    return this.#module.HEAPU32[ex.emscripten_get_sbrk_ptr() >> 2]!;
  }

  /** Takes the snapshot that every later reset returns to (after init and warm-up). */
  snapshot(): void {
    // Warm-up ran tenant code: the state about to become every request's start must still
    // have the walls.
    assertIniWalls(this.#module, this.#walls, "snapshot");
    this.#wipeTmp();
    const ex = this.#module.wasmExports;
    this.#streamsAtSnapshot = this.#module.FS.streams.length;
    // Asyncify's buffer must be allocated in the image (asyncify-data.ts).
    this.#runtime.asyncify.reserve();
    this.#snapshot = LinearMemorySnapshot.take(ex.memory, this.#sbrkTop(), [ex.__stack_pointer]);
  }

  memoryInfo(): InstanceMemoryInfo {
    return { linearBytes: this.#module.wasmExports.memory.buffer.byteLength, snapshotBytes: this.#snapshot?.bytes ?? 0, snapshotHeldBytes: this.#snapshot?.heldBytes ?? 0 };
  }

  exportSnapshot(): PortableSnapshot {
    if (this.#snapshot === undefined) throw new Error("php: no snapshot taken");
    return { ...this.#snapshot.export(), extra: this.#snapshotExtra() };
  }

  /** exportSnapshot's image as the snapshot's own blocks, not a copy (the host sends them as they are). */
  exportSnapshotChunks(): PortableSnapshot & { chunks: Uint8Array[]; keep: object } {
    if (this.#snapshot === undefined) throw new Error("php: no snapshot taken");
    const snapshot = this.#snapshot;
    const { chunks, globals } = snapshot.exportChunks();
    return { memory: Buffer.alloc(0), globals, chunks, keep: snapshot, extra: this.#snapshotExtra() };
  }

  #snapshotExtra(): { fds: SnapshotFd[]; asyncifyData: number } {
    // Files PHP keeps open between requests (e.g. /dev/urandom for random_bytes) are numbers in
    // linear memory; the importing instance must have the same files at the same numbers.
    const fds: SnapshotFd[] = [];
    this.#module.FS.streams.forEach((st, fd) => {
      if (st !== null && st !== undefined && fd > 2 && typeof st.path === "string" && st.path.startsWith("/dev/")) {
        fds.push({ fd, path: st.path, flags: st.flags, position: st.position });
      }
    });
    return { fds, asyncifyData: this.#runtime.asyncify.block };
  }

  /**
   * Becomes an instance restored from another instance's snapshot (same deployment, same
   * engine build) without running the app's warm-up.
   */
  async importSnapshot(image: PortableSnapshot): Promise<void> {
    const fds = (image.extra as { fds?: unknown } | null)?.fds ?? [];
    if (!isSnapshotFds(fds)) throw new Error("php: snapshot has a malformed fd table");
    const asyncifyData = (image.extra as { asyncifyData?: unknown } | null)?.asyncifyData;
    // Before anything is written: a refused image leaves this instance as it was. (A snapshot
    // mapped from a file carries no bytes in `memory`: its size is the file's.)
    const imageBytes = image.file?.bytes ?? image.memory.length;
    this.#runtime.asyncify.adopt(typeof asyncifyData === "number" ? asyncifyData : NaN, imageBytes);
    // instantiate() already ran the priming request that sets up php-wasm's JS side.
    const ex = this.#module.wasmExports;
    this.#wipeTmp();
    this.#growTo(imageBytes);
    this.#snapshot = LinearMemorySnapshot.load(ex.memory, image, [ex.__stack_pointer], this.#sbrkTop());
    const fs = this.#module.FS;
    for (const want of fds) {
      if (!want.path.startsWith("/dev/")) continue;
      const have = fs.streams[want.fd];
      if (have?.path === want.path) continue;
      if (have !== null && have !== undefined) fs.close(have);
      const opened = fs.open(want.path, want.flags);
      const placed = fs.dupStream(opened, want.fd);
      placed.position = want.position;
      fs.close(opened);
    }
    this.#streamsAtSnapshot = fs.streams.length;
    // The image came from a host (untrusted, though of the same deployment).
    assertIniWalls(this.#module, this.#walls, "importSnapshot");
  }

  /**
   * A snapshot taken after a warm-up and precompile that grew the heap (WordPress: 84 MiB) is
   * larger than a new instance's memory. Grow it through the guest's allocator, so Emscripten
   * updates its views of the memory (a bare memory.grow() from here would leave them on the old
   * buffer); loading the image then overwrites the allocator's state. Past the heap cap malloc
   * fails and the import with it (the host starts cold).
   */
  #growTo(bytes: number): void {
    const have = this.#module.wasmExports.memory.buffer.byteLength;
    if (have >= bytes) return;
    // A block of `bytes` cannot fit in a smaller memory: the allocator moves its break past
    // `bytes`, growing the memory at least that far.
    const ptr = this.#module._malloc(bytes);
    if (ptr === 0 || this.#module.wasmExports.memory.buffer.byteLength < bytes) throw new Error(`php: cannot grow the memory to the snapshot's ${bytes} bytes`);
    this.#module._free(ptr);
  }

  async reset(): Promise<void> {
    // A refused spawn (sendmail through error_log(…, 1), …) leaves php-wasm's process plumbing out
    // of step with the restored memory: later requests on this instance crash (out-of-bounds
    // access, null function). Fail the reset so the host is replaced.
    if (this.#runtime.spawn.attempted) throw new Error("a process spawn was attempted; the instance is retired");
    this.#wipeTmp();
    if (this.#snapshot === undefined) return;
    // php-wasm leaves the request's stdout/stderr pipes open; close them so the fd table matches
    // the snapshot (restoring memory does not touch the JS side of the file system).
    const fs = this.#module.FS;
    for (let fd = this.#streamsAtSnapshot; fd < fs.streams.length; fd++) {
      const stream = fs.streams[fd];
      if (stream !== null && stream !== undefined) {
        try {
          fs.close(stream);
        } catch {
          fs.streams[fd] = null;
        }
      }
    }
    // Every slot above the snapshot's is free now (closed or nulled just above): the table as long
    // as at the snapshot again (daemon mode grew it by two per request), which wear() counts.
    if (fs.streams.length > this.#streamsAtSnapshot) fs.streams.length = this.#streamsAtSnapshot;
    this.lastRestore = this.#snapshot.restore(this.#sbrkTop());
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


  #wipeTmp(): void {
    // The working directory is JS state of the FS, not restored with memory: a chdir() into
    // /tmp would outlive the request (and make its directory busy).
    this.#module.FS.chdir(this.#docRoot);
    this.#wipe(TMP_DIR);
    this.#wipe(DATA_DIR);
  }

  /**
   * Empties `dir` whatever the request left there: directories without write or search bits
   * (made writable first; chmod is allowed inside the scratch directories), files still open
   * (unlinked; their descriptors are closed by the reset or counted by the quota until then).
   */
  #wipe(dir: string): void {
    const FS = this.#module.FS;
    for (const name of FS.readdir(dir)) {
      if (name === "." || name === "..") continue;
      const p = `${dir}/${name}`;
      if (FS.isDir(FS.lookupPath(p, { follow: false }).node.mode)) {
        FS.chmod(p, 0o777);
        this.#wipe(p);
        FS.rmdir(p);
      } else {
        FS.unlink(p);
      }
    }
  }

  dispose(): void {
    try {
      this.#php.exit(0);
    } catch {
      // already gone
    }
  }
}

export class PhpEngine implements Engine<PhpPrepared> {
  readonly runtime = "php";

  validate(manifest: Manifest, image: BundleImage): void {
    validatePhpBundle(manifest, image);
  }

  buildId(manifest: Manifest): string {
    return phpEngineBuild(manifest);
  }

  /**
   * Imports php-wasm for the default PHP version, compiles its module, and runs a throwaway
   * instance of a built-in one-page app through one request: V8 compiles wasm functions lazily,
   * on their first call, and optimises the JS glue as it runs, so this moves ~250 ms out of the
   * first real instantiate. Nothing of any tenant is involved; the throwaway is discarded.
   */
  async preload(): Promise<void> {
    const loader = await importLoader(DEFAULT_PHP_VERSION);
    await compiledModule((loader as { dependencyFilename: string }).dependencyFilename);
    const page = Buffer.from("<?php echo 'ok';");
    const image: BundleImage = { entries: [{ path: "index.php", kind: "file", mode: 0o644, data: page }], totalBytes: page.length };
    // The [php] table alone (no registry: this module is the engine the registry loads lazily).
    const prepared = await this.prepare({ deploymentId: "preload", manifest: createManifestParser({ php: phpManifest }).parse(`runtime = "php"\n`), image });
    const inst = await this.instantiate(prepared);
    try {
      await inst.handle({ method: "GET", url: "/", headers: [["host", "localhost"]], body: new Uint8Array(0), remoteAddr: "127.0.0.1", remotePort: 0, https: false, serverName: "localhost", serverPort: 80, scriptName: "", params: {} });
    } finally {
      inst.dispose();
    }
  }

  async prepare(spec: EngineSpec): Promise<PhpPrepared> {
    this.validate(spec.manifest, spec.image);
    const loader = await importLoader(spec.manifest.php.version);
    const root = spec.manifest.php.documentRoot;
    const opcache = opcacheSizing(spec.manifest, spec.image);
    return {
      spec,
      loader,
      opcache,
      sources: spec.image.entries.filter((e) => e.kind === "file" && isPhpSource(e.path)).map((e) => `${APP_ROOT}/${e.path}`),
      phpIni: buildPhpIni(spec.manifest, opcache),
      walls: phpIniWalls(spec.manifest),
      documentRoot: root === "." ? APP_ROOT : `${APP_ROOT}/${root}`,
    };
  }

  /** The blank instance a spare host made ahead (preinstantiate); taken once. */
  #blank: Promise<PhpRuntime | undefined> | undefined;
  /** What the blank was started with (php.ini, output limit, version): a cold start with the same may take it. */
  #blankKey: string | undefined;

  /**
   * A spare host's blank instance: the default PHP version's runtime started and primed with the
   * built-in php.ini of a manifest with no settings (its walls checked), no image, no
   * environment — nothing of any tenant. A deployment's restore takes it (instantiate with
   * forRestore): the snapshot's memory replaces all of PHP's state, so only what lives in JS
   * (the FS, the heap cap, the output limit) is set for the deployment at handoff.
   */
  async preinstantiate(): Promise<void> {
    this.#blank ??= (async () => {
      const loader = await importLoader(DEFAULT_PHP_VERSION);
      const manifest = createManifestParser({ php: phpManifest }).parse(`runtime = "php"\n`);
      const page = Buffer.from("<?php echo 'ok';");
      // prepare() checks a bundle; the blank never gets this one (only php.ini and walls are used).
      const prepared = await this.prepare({ deploymentId: "blank", manifest, image: { entries: [{ path: "index.php", kind: "file", mode: 0o644, data: page }], totalBytes: page.length } });
      this.#blankKey = blankKey(prepared);
      const runtime = await this.#startPrimed({ ...prepared, loader });
      // The libc calls the snapshot's mapping needs, loaded now rather than at the restore.
      preloadLibc();
      return runtime;
    })().catch((e: unknown) => {
      process.stderr.write(`php: no blank instance for restores: ${(e as Error).message}\n`);
      return undefined;
    });
    await this.#blank;
  }

  /** The runtime with its walls, php.ini written and primed by one empty request, walls read back. */
  async #startPrimed(prepared: PhpPrepared): Promise<PhpRuntime> {
    const limits = prepared.spec.manifest.limits;
    // 1. the runtime with its import and output walls
    const runtime = await startPhpRuntime(prepared.loader, {
      heapCapBytes: heapCapBytes(limits.memoryMb, prepared.opcache.memoryMb),
      maxResponseBytes: prepared.spec.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES,
      env: prepared.spec.env ?? {},
    });
    const { php, module } = runtime;
    // 2. php.ini, then one empty request: it sets up php-wasm's JS side (its "initialised" flag,
    //    request pipes) and PHP's first-request state, so a snapshot taken after it restores
    //    cleanly (one taken before any request crashed every second request). PHP reads php.ini
    //    here, before any file of the tenant exists in the FS.
    php.writeFile(PHP_INI_PATH, prepared.phpIni);
    php.mkdirTree(TMP_DIR);
    php.mkdirTree(DATA_DIR);
    php.writeFile(PRIME_SCRIPT, "<?php ");
    await php.run({ scriptPath: PRIME_SCRIPT });
    php.unlink(PRIME_SCRIPT);
    // 3. the walls php.ini promised, read back from PHP itself
    assertIniWalls(module, prepared.walls, "instantiate");
    return runtime;
  }

  /** The blank instance, if one was made, is unused and fits `prepared` (taken: never twice). */
  async #takeBlank(prepared: PhpPrepared): Promise<PhpRuntime | undefined> {
    const blank = this.#blank;
    if (blank === undefined || prepared.spec.manifest.php.version !== DEFAULT_PHP_VERSION) return undefined;
    this.#blank = undefined;
    return blank;
  }

  async instantiate(prepared: PhpPrepared, options: InstantiateOptions = {}): Promise<EngineInstance> {
    const limits = prepared.spec.manifest.limits;
    // A restore takes the blank whatever the deployment's settings (the snapshot's memory brings
    // them). A cold start (a deploy's first instance) takes it only when the blank was started
    // exactly as #startPrimed would start this one: the same php.ini (so the same walls and
    // opcache size, read at PHP's start), output limit and version, and no environment (environ
    // is set at the runtime's start) — a whole php-wasm start saved (200–650 ms here).
    const coldFit = options.forRestore !== true && this.#blank !== undefined && this.#blankKey !== undefined && this.#blankKey === blankKey(prepared) && Object.keys(prepared.spec.env ?? {}).length === 0;
    const blank = options.forRestore === true || coldFit ? await this.#takeBlank(prepared) : undefined;
    if (blank !== undefined && options.forRestore !== true) assertIniWalls(blank.module, prepared.walls, "instantiate");
    let runtime: PhpRuntime;
    if (blank !== undefined) {
      // Becomes this deployment's: its heap cap, and its php.ini in the FS (PHP read the blank's at
      // its start; the snapshot's memory brings the deployment's parsed settings, and
      // importSnapshot reads the walls back from it).
      runtime = blank;
      runtime.heapCap.bytes = heapCapBytes(limits.memoryMb, prepared.opcache.memoryMb);
      runtime.php.writeFile(PHP_INI_PATH, prepared.phpIni);
    } else runtime = await this.#startPrimed(prepared);
    const { php, module } = runtime;
    // 4. the image, then the FS walls
    writeImage(php, prepared.spec.image);
    lockFileSystem(module.FS, [TMP_DIR, DATA_DIR]);
    limitDirs(module.FS, [
      { dir: TMP_DIR, bytes: limits.memoryMb * 1024 * 1024 },
      { dir: DATA_DIR, bytes: limits.dataMb * 1024 * 1024 },
    ]);
    php.chdir(prepared.documentRoot);
    return new PhpInstance(runtime, prepared, blank !== undefined);
  }
}
