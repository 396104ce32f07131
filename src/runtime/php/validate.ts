/**
 * PHP bundle checks and php.ini, without loading php-wasm (the gateway runs these at deploy).
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import type { Manifest, BundleImage } from "../../bundle/index.js";
// Not re-exported by src/bundle/index.ts yet: the one php.ini grammar, shared with the manifest parser.
import { phpIniLine } from "./manifest.js";
import { BundleError } from "../../errors.js";

export const APP_ROOT = "/app";
export const TMP_DIR = "/tmp";
/** Per-key storage of keyed routes (writable, committed by the gateway after a success). */
export const DATA_DIR = "/data";

/**
 * Functions that reach processes or listening sockets; refused even though the glue below also
 * refuses. Outbound connects (fsockopen, pfsockopen, stream_socket_client, curl_exec,
 * curl_multi_exec) are not listed: the engine refuses socket() itself (wasm-imports.ts), so they
 * fail the way PHP code expects a network failure to look — a warning and false, curl's error —
 * instead of an "undefined function" Error that aborts the page (issue 15: a guest failure stays
 * a guest failure).
 */
const DISABLED_FUNCTIONS = [
  "exec", "shell_exec", "system", "passthru", "proc_open", "popen", "proc_nice", "proc_terminate",
  "proc_close", "proc_get_status", "pcntl_exec", "pcntl_fork", "mail", "mb_send_mail", "dl", "putenv",
  "stream_socket_server", "stream_socket_pair",
  "socket_create", "socket_create_pair", "socket_create_listen", "socket_connect", "socket_bind",
  "ftp_connect", "ftp_ssl_connect", "ini_get_all", "posix_kill",
  "posix_mkfifo", "posix_setuid", "posix_setgid", "link", "symlink",
];

/**
 * The settings that keep guest code in the sandbox, as [key, the value ini_get() must return].
 * Written last in php.ini (so no earlier line overrides them) and read back from the running
 * engine before it serves anything (see PhpEngine.instantiate).
 */
export function phpIniWalls(manifest: Manifest): Array<[string, string]> {
  return [
    ["memory_limit", `${manifest.limits.memoryMb}M`],
    ["max_execution_time", "0"],
    ["disable_functions", DISABLED_FUNCTIONS.join(",")],
    ["allow_url_fopen", "0"],
    ["allow_url_include", "0"],
    ["enable_dl", "0"],
    // Nothing is loaded from it (the engine refuses dlopen); a directory that does not exist.
    ["extension_dir", "/nonexistent"],
    ["open_basedir", `${APP_ROOT}:${TMP_DIR}:${DATA_DIR}`],
    ["upload_tmp_dir", TMP_DIR],
    ["sys_temp_dir", TMP_DIR],
    ["auto_prepend_file", ""],
    ["auto_append_file", ""],
    ["sendmail_path", "/nonexistent"],
  ];
}

/**
 * Opcache for one deployment: shared memory sized for the app, not for hello world. The compiled
 * scripts live in linear memory (emscripten's mmap is malloc), so they are part of the snapshot
 * and of the heap cap; the size is bounded by limits.memory_mb so the host's memory ceiling
 * (src/pool/spawn.ts hostMemoryCeiling: 3 × memory_mb + …) still covers an instance.
 */
export interface OpcacheSizing {
  /** opcache.memory_consumption, MiB (interned strings included). */
  memoryMb: number;
  /** opcache.interned_strings_buffer, MiB. */
  internedMb: number;
  /** opcache.max_accelerated_files (PHP rounds it up to a prime). */
  maxFiles: number;
}

/** How opcache is sized from a bundle's PHP source (see opcacheSizing). */
export const OPCACHE_SIZING = Object.freeze({
  /** Smallest shared memory, MiB (a one-page app; today's hello-world snapshot size). */
  minMb: 8,
  /** Largest shared memory the automatic sizing picks, MiB ([php] opcache_mb may go up to memory_mb). */
  maxAutoMb: 256,
  /**
   * Shared memory per MiB of PHP source. Measured: WordPress 6.5 + the SQLite plugin (14.6 MiB
   * of PHP) uses ~37 MiB of opcache with every file compiled; 5 leaves room for what the app
   * compiles at run time.
   */
  mbPerSourceMb: 5,
  /** Added to the estimate, MiB (opcache's own tables); the sum is rounded up to 8 MiB. */
  headroomMb: 4,
  /** Interned strings per MiB of PHP source, MiB (WordPress: ~5 MiB used). */
  internedPerSourceMb: 0.5,
  minInternedMb: 2,
  maxInternedMb: 64,
  minFiles: 4000,
  maxFiles: 100_000,
});

/** Files opcache compiles ahead (PhpInstance.precompile) and counts toward its size. */
export function isPhpSource(path: string): boolean {
  return /\.(php|phtml|inc)$/i.test(path);
}

/**
 * Opcache sizing for a deployment: [php] opcache_mb when the manifest sets it, else derived from
 * the bundle's PHP source bytes with headroom; never above limits.memory_mb.
 */
export function opcacheSizing(manifest: Manifest, image: BundleImage): OpcacheSizing {
  const S = OPCACHE_SIZING;
  let bytes = 0;
  let files = 0;
  for (const e of image.entries) {
    if (e.kind !== "file" || !isPhpSource(e.path)) continue;
    bytes += e.data?.length ?? 0;
    files++;
  }
  const sourceMb = bytes / (1024 * 1024);
  const cap = Math.min(manifest.limits.memoryMb, S.maxAutoMb);
  const auto = Math.max(S.minMb, Math.min(cap, Math.ceil((sourceMb * S.mbPerSourceMb + S.headroomMb) / 8) * 8));
  const memoryMb = manifest.php.opcacheMb ?? auto;
  // Interned strings are carved out of memory_consumption: keep at most a quarter of it.
  const internedMb = Math.max(S.minInternedMb, Math.min(S.maxInternedMb, Math.floor(memoryMb / 4), Math.ceil(sourceMb * S.internedPerSourceMb) + S.minInternedMb));
  const maxFiles = Math.max(S.minFiles, Math.min(S.maxFiles, files * 2));
  return { memoryMb, internedMb, maxFiles };
}

/**
 * php.ini of a deployment. `opcache` from opcacheSizing (the host has the image); without it (the
 * build id, computed from the manifest alone) the sizing lines name the manifest's setting or
 * "auto": the automatic size is a function of the deployment's image, which a snapshot is keyed
 * by already, and of OPCACHE_SIZING, whose changes bump ENGINE_REVISION.
 */
export function buildPhpIni(manifest: Manifest, opcache?: OpcacheSizing): string {
  const body = manifest.limits.maxBodyBytes;
  const lines = [
    "; written by zerocell; user settings from zerocell.toml [php.ini] come last",
    "display_errors = 0",
    "display_startup_errors = 0",
    "log_errors = 1",
    "html_errors = 0",
    "error_reporting = E_ALL",
    "expose_php = 0",
    "output_buffering = 4096",
    "implicit_flush = 0",
    "max_input_time = -1",
    `post_max_size = ${body}`,
    `upload_max_filesize = ${body}`,
    "session.save_path = /tmp",
    "session.use_strict_mode = 1",
    // Compiled scripts stay in linear memory and so in the snapshot; the image never changes.
    "opcache.enable = 1",
    "opcache.enable_cli = 1",
    "opcache.jit = 0",
    ...(opcache === undefined
      ? [`; opcache sized ${manifest.php.opcacheMb === undefined ? "auto" : `${manifest.php.opcacheMb} MiB`}`]
      : [
          `opcache.memory_consumption = ${opcache.memoryMb}`,
          `opcache.interned_strings_buffer = ${opcache.internedMb}`,
          `opcache.max_accelerated_files = ${opcache.maxFiles}`,
        ]),
    // A full cache stays full (scripts past it are compiled per request) instead of restarting,
    // which would empty it in the middle of an instance's life.
    "opcache.max_wasted_percentage = 50",
    "opcache.validate_timestamps = 0",
    "opcache.file_update_protection = 0",
  ];
  // Checked again (a Manifest may be built by hand): a value that breaks PHP's ini parser would
  // make it stop reading before the walls.
  for (const [k, v] of Object.entries(manifest.php.ini)) lines.push(phpIniLine(k, v));
  // The walls come after the user's settings so nothing can override them.
  lines.push("; walls (zerocell)");
  for (const [k, v] of phpIniWalls(manifest)) lines.push(`${k} = ${v === "" ? '""' : v}`);
  return lines.join("\n") + "\n";
}

/** Static checks at deploy: the document root exists, ini values are writable. */
export function validatePhpBundle(manifest: Manifest, image: BundleImage): void {
  const root = manifest.php.documentRoot;
  if (root !== "." && !image.entries.some((e) => e.kind === "dir" && e.path === root)) {
    throw new BundleError("manifest_invalid", `manifest: php.document_root: "${root}" is not a directory in the bundle`);
  }
  buildPhpIni(manifest, opcacheSizing(manifest, image));
}

/** Bump when the engine's init changes in a way that makes old snapshots wrong. */
// 5: snapshots carry the address of Asyncify's buffer (asyncify-data.ts); older ones lack it.
const ENGINE_REVISION = 5;
const require = createRequire(import.meta.url);

function packageVersion(name: string): string {
  return (JSON.parse(readFileSync(require.resolve(`${name}/package.json`), "utf8")) as { version: string }).version;
}

/**
 * Identifies everything a snapshot's memory depends on besides the deployment itself: the
 * php-wasm build, the PHP version, this engine's revision and the php.ini it writes. Gateway and
 * host compute it the same way; a stored snapshot with another id is never loaded.
 */
export function phpEngineBuild(manifest: Manifest): string {
  const pkg = manifest.php.version === "8.4" ? "@php-wasm/node-8-4" : "@php-wasm/node-8-3";
  const ini = createHash("sha256").update(buildPhpIni(manifest)).digest("hex").slice(0, 12);
  return `php-wasm-${packageVersion("@php-wasm/universal")}/${pkg.slice(10)}-${packageVersion(pkg)}/engine-${ENGINE_REVISION}/ini-${ini}`;
}
