/**
 * One PHP request through php-wasm's C entry points, without its `PHP.run()` glue. `run()` builds
 * three web ReadableStreams (plus a TextDecoderStream per stream it reads as text), a semaphore,
 * a Promise.race against an error event and ~15 promises per request: ~1 ms of CPU for a
 * hello-world page whose PHP itself takes ~0.15 ms (docs/adr/003-lean-request-path.md). Here the
 * same C calls are made in the same order (`PHP.runStream`, @php-wasm/universal 3.1.54), and the
 * request devices' chunks are copied straight into one growing buffer per stream.
 * Must never: read past what the request devices handed over, or keep a view of the wasm heap
 * beyond one device write (the heap can grow and move).
 */
import type { EmscriptenModule } from "./runtime.js";

export interface PhpRequestSpec {
  scriptPath: string;
  /** Path and query as received. */
  uri: string;
  method: string;
  https: boolean;
  /** Lower-case names, repeats already joined. */
  headers: Record<string, string>;
  body: Uint8Array;
  $_SERVER: Record<string, string>;
}

export interface PhpRequestResult {
  /** 0 unless the script failed fatally (then 255) or the runtime exited. */
  exitCode: number;
  status: number;
  headers: Array<[string, string]>;
  body: Buffer;
  /** What PHP wrote to the request's stderr (its log). */
  errors: string;
  /** CPU time inside wasm_sapi_handle_request, ms. */
  guestMs: number;
}

/** The request-time parts of php-wasm's Emscripten module (not in its typings). */
export interface RequestModule {
  ccall: EmscriptenModule["ccall"];
  _malloc?: (n: number) => number;
  _free?: (p: number) => void;
  malloc?: (n: number) => number;
  free?: (p: number) => void;
  HEAPU8: Uint8Array;
  onHeaders?: (chunk: Uint8Array) => void;
  onStdout?: (chunk: Uint8Array) => void;
  onStderr?: (chunk: Uint8Array) => void;
}

/** A byte sink that keeps its storage between requests (one per request device). */
class Sink {
  #buf: Buffer;
  length = 0;

  constructor(initial: number) {
    this.#buf = Buffer.allocUnsafe(initial);
  }

  push(chunk: Uint8Array): void {
    const need = this.length + chunk.byteLength;
    if (need > this.#buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, this.#buf.length * 2));
      this.#buf.copy(grown, 0, 0, this.length);
      this.#buf = grown;
    }
    this.#buf.set(chunk, this.length);
    this.length = need;
  }

  /** The bytes written since the last take, as a buffer of their own. */
  take(): Buffer {
    const out = Buffer.allocUnsafe(this.length);
    this.#buf.copy(out, 0, 0, this.length);
    this.length = 0;
    return out;
  }

  text(): string {
    const s = this.#buf.toString("utf8", 0, this.length);
    this.length = 0;
    return s;
  }
}

/** Emscripten's exit(): an ExitStatus error carrying the code. */
function exitStatusOf(e: unknown): number | undefined {
  return e instanceof Error && e.name === "ExitStatus" && typeof (e as { status?: unknown }).status === "number" ? (e as unknown as { status: number }).status : undefined;
}

/** Parses the JSON PHP's SAPI writes to /request/headers ({ status, headers: ["Name: value"] }). */
function parseHeaders(text: string): { status: number; headers: Array<[string, string]> } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { status: 200, headers: [] };
  }
  const p = parsed as { status?: unknown; headers?: unknown };
  const headers: Array<[string, string]> = [];
  if (Array.isArray(p.headers)) {
    for (const line of p.headers) {
      if (typeof line !== "string") continue;
      const i = line.indexOf(": ");
      if (i === -1) continue;
      headers.push([line.slice(0, i).toLowerCase(), line.slice(i + 2)]);
    }
  }
  return { status: typeof p.status === "number" ? p.status : 200, headers };
}

/**
 * Runs PHP requests on one runtime. The runtime must have served one request through
 * `PHP.run()` first (php_wasm_init, php-wasm's JS side): the engine's priming request does that.
 */
export class PhpRequestRunner {
  readonly #m: RequestModule;
  readonly #stdout = new Sink(64 * 1024);
  readonly #headers = new Sink(4 * 1024);
  readonly #stderr = new Sink(1024);

  constructor(module: RequestModule) {
    this.#m = module;
  }

  async run(spec: PhpRequestSpec): Promise<PhpRequestResult> {
    const m = this.#m;
    const call = (name: string, types: string[], values: unknown[]) => m.ccall(name, null, types, values);
    // The request devices call these for every write (each chunk is a view of the heap: copied).
    m.onStdout = (c) => this.#stdout.push(c);
    m.onHeaders = (c) => this.#headers.push(c);
    m.onStderr = (c) => this.#stderr.push(c);
    this.#stdout.length = this.#headers.length = this.#stderr.length = 0;
    // 1. the request line, as PHP.runStream sets it
    const q = spec.uri.indexOf("?");
    call("wasm_set_request_uri", ["string"], [spec.uri]);
    call("wasm_set_query_string", ["string"], [q === -1 ? "" : spec.uri.slice(q + 1)]);
    call("wasm_set_request_method", ["string"], [spec.method]);
    const h = spec.headers;
    call("wasm_set_request_host", ["string"], [h.host ?? "example.com:443"]);
    // php-wasm takes the port from `new URL(host)`, which never has one for a bare host:port.
    call("wasm_set_request_port", ["number"], [spec.https ? 443 : 80]);
    if (h.cookie) call("wasm_set_cookies", ["string"], [h.cookie]);
    if (h["content-type"]) call("wasm_set_content_type", ["string"], [h["content-type"]]);
    if (h["content-length"]) call("wasm_set_content_length", ["number"], [parseInt(h["content-length"], 10)]);
    // 2. the body, in the heap for the request's length (freed below)
    const malloc = m._malloc ?? m.malloc!;
    const free = m._free ?? m.free!;
    let bodyPtr = 0;
    if (spec.body.byteLength > 0) {
      bodyPtr = malloc(spec.body.byteLength);
      if (!bodyPtr) throw new Error("php: could not allocate memory for the request body");
      m.HEAPU8.set(spec.body, bodyPtr);
      call("wasm_set_request_body", ["number"], [bodyPtr]);
      call("wasm_set_content_length", ["number"], [spec.body.byteLength]);
    }
    try {
      // 3. the script and $_SERVER (HTTP_* from the headers; HTTPS "on"/"off" as php-wasm sets it)
      call("wasm_set_path_translated", ["string"], [spec.scriptPath]);
      const server = spec.$_SERVER;
      for (const k in server) if (k !== "HTTPS") call("wasm_add_SERVER_entry", ["string", "string"], [k, server[k]]);
      call("wasm_add_SERVER_entry", ["string", "string"], ["HTTPS", server.HTTPS || spec.https ? "on" : "off"]);
      for (const k in h) {
        const name = k === "content-type" || k === "content-length" ? k.toUpperCase().replace(/-/g, "_") : `HTTP_${k.toUpperCase().replace(/-/g, "_")}`;
        call("wasm_add_SERVER_entry", ["string", "string"], [name, h[k]]);
      }
      // 4. run (async: Asyncify unwinds when PHP waits on an async import)
      let exitCode: number;
      const c0 = process.cpuUsage();
      try {
        exitCode = (await m.ccall("wasm_sapi_handle_request", "number", [], [], { async: true })) as number;
      } catch (e) {
        const code = exitStatusOf(e);
        if (code === undefined) throw e;
        exitCode = code;
      }
      const c = process.cpuUsage(c0);
      const guestMs = (c.user + c.system) / 1000;
      const { status, headers } = parseHeaders(this.#headers.text());
      return { exitCode, status, headers, body: this.#stdout.take(), errors: this.#stderr.text(), guestMs };
    } finally {
      if (bodyPtr !== 0) free(bodyPtr);
    }
  }
}
