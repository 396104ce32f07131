/**
 * The engine contract. Every runtime (php now; python and x86 later) implements these ordered
 * steps, and they run inside a sandbox host process, never in the gateway:
 *
 *   validate    static checks of a bundle at deploy time; pure, usable alone
 *   prepare     load the runtime, mount the read-only app image, run initialisation
 *   instantiate a ready instance from what prepare produced
 *   snapshot    (on an instance, after warm-up) fix the state every reset returns to
 *   handle      one request at a time on an instance
 *   reset       return a used instance to its snapshot
 *   dispose     free it
 *
 * An engine must never give guest code access to host files, processes, network, or the host's
 * JavaScript realm; see docs/architecture.md for how each engine closes those doors.
 */
import type { Manifest, BundleImage } from "../bundle/index.js";

/** A request as the sandbox sees it (built by the gateway, trusted). */
export interface EngineRequest {
  method: string;
  /** Path and query exactly as received ("/a/b?x=1"). */
  url: string;
  /** Header pairs in arrival order; names lower-case. Repeated headers stay separate. */
  headers: Array<[string, string]>;
  body: Uint8Array;
  remoteAddr: string;
  remotePort: number;
  https: boolean;
  serverName: string;
  serverPort: number;
  /** The part of the path the route matched (SCRIPT_NAME for WSGI/CGI). */
  scriptName: string;
  /** Route parameters (":id" → id). */
  params: Record<string, string>;
  /**
   * Keyed routes: the key's committed /data tree (encodeImage of src/bundle), mounted writable at
   * /data for this request. Absent for other routes.
   */
  data?: Uint8Array;
  /** The gateway's request id: tags the host's log lines; never sent into the sandbox. */
  requestId?: string;
}

/** What guest code answered (untrusted: the gateway validates it). */
export interface EngineResponse {
  status: number;
  headers: Array<[string, string]>;
  body: Uint8Array;
  /** Keyed routes: the new /data tree when the request changed it (the gateway commits it on success). */
  data?: Uint8Array;
  /** What the engine counted of this request, where it counts at low cost (x86: guest instructions). */
  usage?: EngineUsage;
}

export interface EngineUsage {
  /** Guest instructions executed (x86; see RunResult.instructions for how they are counted). */
  instructions?: number;
  /**
   * CPU time (process.cpuUsage) inside the guest's entry point (PHP's request handler, the WSGI
   * call, the emulated program), ms; the rest of `handle` is the engine's glue. CPU, not wall
   * time: on a loaded machine a descheduled guest is not the guest's cost. Shown in server-timing
   * and summed per pool for the CPU breakdown; never billed.
   */
  guestMs?: number;
}

/** A snapshot in transit: linear memory, mutable globals, engine-specific extra state. */
export interface PortableSnapshot {
  /** The image (empty when `file` holds it). */
  memory: Buffer;
  globals: Array<number | bigint>;
  extra: unknown;
  /**
   * The image in a file instead (a sandbox host's import: src/snapshot/files.ts): mapped over the
   * memory (MAP_PRIVATE) rather than copied. Its path and the bytes of memory it covers.
   */
  file?: { path: string; bytes: number };
}

/** How an instance is made. */
export interface InstantiateOptions {
  /**
   * It will import a snapshot at once (no init, no warm-up): an engine may hand out the instance a
   * spare host made ahead (preinstantiate), which has never run a tenant's code.
   */
  forRestore?: boolean;
}

/** Largest response body (bytes) when the spec names none: the gateway's default (32 MiB). */
export const DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024;

export interface EngineSpec {
  deploymentId: string;
  manifest: Manifest;
  image: BundleImage;
  /**
   * The app's environment variables (names checked by src/platform/app-env.ts): in the guest's
   * process environment from instantiate on (PHP getenv/$_ENV/$_SERVER, Python os.environ, x86
   * envp), so init, warm-up and the snapshot see them. Request meta-variables win over none of
   * them: their names are reserved.
   */
  env?: Record<string, string>;
  /**
   * Largest response body a request may produce, bytes (default DEFAULT_MAX_RESPONSE_BYTES).
   * Engines enforce it *while the guest writes* (never buffer more than this plus one chunk) and
   * then fail the request with `SandboxError("response_too_large", 502, …)`.
   */
  maxResponseBytes?: number;
}

/**
 * Wear (EngineInstance.wear) past which the pool starts an instance's successor in the background.
 * PHP in daemon mode lasts ~1,800 requests (two descriptors per request, MAX_OPEN_STREAMS), ~7 s at
 * c=64 over two hosts (~250 req/s each), and a host takes 2–4 s to start on a loaded machine: half
 * the budget is the successor's head start.
 */
export const WORN_AT = 0.5;

export interface EngineInstance {
  handle(request: EngineRequest): Promise<EngineResponse>;
  /**
   * Runs after the warm-up, before snapshot(), where the snapshot will be reused (not in fresh
   * mode): work that makes every request of a restored instance cheaper (PHP compiles the rest of
   * the bundle into opcache). Bounded by the engine; returns a summary for the host's log.
   */
  precompile?(): Promise<object>;
  /** Records the current state (after init and warm-up) as the one reset() returns to. */
  snapshot(): void;
  /** Returns the instance to its snapshot (snapshot mode; called between requests). */
  reset(): Promise<void>;
  /** True when the instance should be replaced after this request (e.g. resources that only a reset frees). */
  exhausted?(): boolean;
  /**
   * How much of what only a new instance frees is used up, 0–1 (exhausted() at 1). The host tells
   * the pool once it passes WORN_AT, and the pool starts the instance's
   * successor while this one serves on.
   */
  wear?(): number;
  /**
   * Daemon mode (no reset between requests): true when what the instance used up is what a reset
   * gives back (PHP: its descriptor table), and nothing else is wrong with it. The host then
   * returns it to its snapshot after the request — as php-fpm's pm.max_requests recycles a
   * worker, state kept between requests starts over — instead of the pool starting a new host.
   * False for an instance that must be replaced (stopped mid-call, memory that never shrinks).
   */
  recycleDue?(): boolean;
  /** The snapshot as bytes, to store and load into other instances of the same build. */
  exportSnapshot(): PortableSnapshot;
  /**
   * The same snapshot with its image as the snapshot's own immutable chunks, in order (`memory`
   * empty): the host writes them to the gateway without a copy. `keep` must stay referenced until
   * they are written (it owns the mapping they view). Optional: exportSnapshot otherwise.
   */
  exportSnapshotChunks?(): PortableSnapshot & { chunks: Uint8Array[]; keep: object };
  /** Becomes an instance in the exported state, without running init or warm-up again. */
  importSnapshot(snapshot: PortableSnapshot): Promise<void>;
  /** Where this instance's memory goes, bytes (diagnostics: bench/memory.mjs); optional. */
  memoryInfo?(): InstanceMemoryInfo;
  /** Made ahead by a spare host (preinstantiate) and handed this deployment at instantiate. */
  readonly spareEngine?: boolean;
  dispose(): void;
}

/** An instance's memory by kind, bytes (what the engine knows; the host adds V8's numbers). */
export interface InstanceMemoryInfo {
  /** The wasm linear memory's length (PHP, Python) or the guest's mapped memory (x86). */
  linearBytes?: number;
  /** Bytes of the snapshot image (linear memory up to the allocator's top). */
  snapshotBytes?: number;
  /** Snapshot bytes held in JS buffers (a copy next to the memfd, or the whole image without one). */
  snapshotHeldBytes?: number;
  /** Other large buffers the engine keeps (a base image, a decoded bundle), bytes. */
  otherHeldBytes?: number;
}

export interface Engine<P = unknown> {
  readonly runtime: string;
  /** Static checks; throws BundleError. */
  validate(manifest: Manifest, image: BundleImage): void;
  prepare(spec: EngineSpec): Promise<P>;
  /** Everything a snapshot depends on besides the deployment (runtime build, engine revision, config). */
  buildId(manifest: Manifest): string;
  instantiate(prepared: P, options?: InstantiateOptions): Promise<EngineInstance>;
  /**
   * Loads and compiles what every deployment of this runtime needs, before any bundle is known:
   * a spare host does it ahead so a deploy or a scale-up does not wait for it. Touches nothing
   * of any tenant; optional.
   */
  preload?(): Promise<void>;
  /**
   * After preload, in a spare host: makes one blank instance ahead (runtime started, nothing of
   * any tenant: built-in settings only), which the next instantiate(…, { forRestore: true }) of a
   * compatible deployment takes, so a restore is "map the snapshot, run". Optional.
   */
  preinstantiate?(): Promise<void>;
  /**
   * Whether a host with a free slot makes a blank instance ahead when idle (InitMessage.blankAhead)
   * — it holds the blank's memory while it waits. Default true where preinstantiate exists;
   * Python's (~35 MB, a parked Pyodide) is made in spare hosts only.
   */
  readonly blankAheadInSlots?: boolean;
}
