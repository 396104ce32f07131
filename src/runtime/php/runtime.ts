/**
 * One php-wasm runtime with the engine's walls that do not depend on php.ini: the refusing wasm
 * imports (no dynamic loading, processes or sockets; the heap capped), the output limit, no
 * WebSocket, a spawn handler that refuses, an environment without the host's, ImageMagick's
 * delegates off by policy. PhpEngine builds every instance on it; tests use it to check that these
 * walls hold even where php.ini's would not.
 * Must never: hand guest code anything that reaches Node.
 */
import { loadPHPRuntime, PHP, __private__dont__use } from "@php-wasm/universal";
import { createSpawnHandler } from "@php-wasm/util";
import { SandboxError } from "../../errors.js";
import { OutputGuard } from "./output.js";
import { walledInstantiate, type HeapCap, type RefusedImports } from "./wasm-imports.js";
import type { WalledFs } from "./fs-walls.js";
import { AsyncifyData } from "./asyncify-data.js";

/** php-wasm's ini location (see @php-wasm/universal PHP_INI_PATH). */
export const PHP_INI_PATH = "/internal/shared/php.ini";

/**
 * ImageMagick (the imagick extension) reads policy.xml and delegates.xml from its compiled-in
 * configure path. Its built-in delegates run Ghostscript, ffmpeg, … through system(); the engine
 * refuses system() anyway, and this policy makes ImageMagick refuse before it tries (a clean
 * ImagickException "not authorized") and leaves no magick-* temporary files for a delegate.
 * delegates.xml holds one inert entry so the built-in list is never loaded.
 */
const MAGICK_CONFIG_DIR = "/root/install/etc/ImageMagick-7";
const MAGICK_POLICY = `<?xml version="1.0" encoding="UTF-8"?>
<!-- written by zerocell: no external programs, no network coders -->
<policymap>
  <policy domain="delegate" rights="none" pattern="*" />
  <policy domain="coder" rights="none" pattern="{PS,PS2,PS3,EPS,EPS2,EPS3,EPSF,EPSI,EPI,EPT,EPT2,EPT3,PDF,PDFA,EPDF,AI,PCL,XPS,GS,DCRAW,HTTP,HTTPS,FTP,URL,MSL,MVG,TEXT,SHOW,WIN,X,VID}" />
  <policy domain="path" rights="none" pattern="@*" />
</policymap>
`;
const MAGICK_DELEGATES = `<?xml version="1.0" encoding="UTF-8"?>
<delegatemap>
  <delegate decode="zerocell-none" command="false" />
</delegatemap>
`;

/** The parts of php-wasm's Emscripten module the engine touches (not in its typings). */
export interface EmscriptenModule {
  wasmExports: Record<string, unknown> & { emscripten_get_sbrk_ptr: () => number; __stack_pointer: WebAssembly.Global; memory: WebAssembly.Memory };
  HEAPU32: Uint32Array;
  FS: Omit<WalledFs, "streams"> & {
    streams: Array<FsStreamEntry | null>;
    close(stream: unknown): void;
    open(path: string, flags: number): FsStreamEntry;
    dupStream(stream: FsStreamEntry, fd: number): FsStreamEntry;
    makedev(major: number, minor: number): number;
    getDevice(dev: number): { stream_ops: { write: (stream: unknown, buffer: Uint8Array, offset: number, length: number, position?: number) => number } } | undefined;
    mkdirTree(path: string): void;
    writeFile(path: string, data: string | Uint8Array): void;
    chdir(path: string): void;
    rmdir(path: string): void;
    unlink(path: string): void;
  };
  ccall(name: string, returns: string | null, args: string[], values: unknown[], opts?: { async?: boolean }): unknown;
  _malloc(bytes: number): number;
  _free(ptr: number): void;
}

export interface FsStreamEntry {
  fd: number;
  path: string;
  flags: number;
  position: number;
}

export interface PhpRuntime {
  php: PHP;
  module: EmscriptenModule;
  output: OutputGuard;
  refused: RefusedImports;
  /** The wasm heap's cap (the deployment's; settable until the instance serves). */
  heapCap: HeapCap;
  /** Set when php-wasm's spawn handler was reached (it should not be: the imports refuse first). */
  spawn: { attempted: boolean };
  /** Where Asyncify's buffer lives (part of the snapshot: asyncify-data.ts). */
  asyncify: AsyncifyData;
}

export interface PhpRuntimeOptions {
  /** Largest wasm heap, bytes. */
  heapCapBytes: number;
  /** Largest response body, bytes (EngineSpec.maxResponseBytes). */
  maxResponseBytes: number;
  /** The app's environment variables (EngineSpec.env): C's environ, so getenv(), $_ENV, $_SERVER. */
  env?: Record<string, string>;
}

/** A PHP runtime with the sandbox's wiring; php.ini, the image and the FS walls come after. */
export async function startPhpRuntime(loader: unknown, options: PhpRuntimeOptions): Promise<PhpRuntime> {
  const refused: RefusedImports = { counts: { dlopen: 0, system: 0, process: 0, socket: 0, dns: 0 } };
  const output = new OutputGuard(options.maxResponseBytes);
  const spawn = { attempted: false };
  const asyncify = new AsyncifyData();
  const heapCap: HeapCap = { bytes: options.heapCapBytes };
  const runtimeId = await loadPHPRuntime(loader as Parameters<typeof loadPHPRuntime>[0], {
    processId: 1,
    // Emscripten's socket layer would open a WebSocket to the requested address (the "ws"
    // package, if present): never reached (socket() is refused), and would fail anyway.
    websocket: {
      decorator: () => {
        throw new Error("zerocell: network is not available in the sandbox");
      },
    },
    print: () => {},
    // fd 2 of the guest (fwrite(STDERR, …)): the host's log, within the request's log budget.
    printErr: (line: string) => {
      if (output.takeLog(line.length + 6)) process.stderr.write(`php: ${line}\n`);
    },
    // Emscripten's default environment has "_" = the host script's path; drop it. The app's
    // variables join the defaults (USER, PATH, HOME, LANG…: their names are reserved for apps).
    ENV: { ...options.env, _: undefined } as unknown as Record<string, string>,
    instantiateWasm: walledInstantiate((loader as { dependencyFilename: string }).dependencyFilename, heapCap, refused, asyncify),
  });
  const php = new PHP(runtimeId);
  const module = (php as unknown as Record<symbol, EmscriptenModule>)[__private__dont__use]!;
  output.install(module.FS);
  await php.setSpawnHandler(
    createSpawnHandler((_argv: string[], proc: { stderr(s: string): void; exit(code: number): void }) => {
      spawn.attempted = true;
      proc.stderr("zerocell: processes are not available in the sandbox\n");
      proc.exit(127);
    }),
  );
  // Opcache keeps compiled scripts in linear memory, so a snapshot taken after warm-up
  // carries a warm opcache; it needs a server SAPI name.
  await php.setSapiName("fpm-fcgi");
  module.FS.mkdirTree(MAGICK_CONFIG_DIR);
  module.FS.writeFile(`${MAGICK_CONFIG_DIR}/policy.xml`, MAGICK_POLICY);
  module.FS.writeFile(`${MAGICK_CONFIG_DIR}/delegates.xml`, MAGICK_DELEGATES);
  return { php, module, output, refused, spawn, asyncify, heapCap };
}

/**
 * Reads every wall's current value from PHP's ini table in C (zend_ini_string; no PHP code runs,
 * so nothing a tenant wrote can answer instead) and throws if one differs from what zerocell
 * wrote. A php.ini that PHP stopped reading early (a syntax error in an earlier line) shows here.
 * Call after the first request (PHP reads php.ini at its start-up).
 */
export function assertIniWalls(module: EmscriptenModule, walls: ReadonlyArray<[string, string]>, step: string): void {
  const wrong: string[] = [];
  for (const [key, want] of walls) {
    const have = module.ccall("zend_ini_string", "string", ["string", "number", "number"], [key, Buffer.byteLength(key), 0]);
    if (have !== want) wrong.push(`${key} is ${JSON.stringify(have)} (expected ${JSON.stringify(want)})`);
  }
  if (wrong.length > 0) {
    throw new SandboxError("php_ini_walls", 500, `php.${step}: php.ini walls not in force: ${wrong.join("; ")}; the instance is refused`);
  }
}
