/**
 * PHP engine: php-wasm (Emscripten) loaded through its low-level loader, with none of the Node
 * glue that reaches outside: no spawn (a handler that refuses), no socket proxy (the WebSocket
 * constructor throws), the app image copied into the in-memory FS and made read-only, and
 * php.ini's disable_functions / allow_url_fopen / open_basedir as a second wall.
 * Must never: mount a host directory, or hand guest code anything that reaches Node.
 */
import { loadPHPRuntime, PHP, PHPRequestHandler, type PHPRequest } from "@php-wasm/universal";
import { createSpawnHandler } from "@php-wasm/util";
import type { Manifest, BundleImage } from "../../bundle/index.js";
import type { Engine, EngineInstance, EngineRequest, EngineResponse, EngineSpec } from "../engine.js";
import { APP_ROOT, TMP_DIR, buildPhpIni, validatePhpBundle } from "./validate.js";

export { APP_ROOT, validatePhpBundle } from "./validate.js";

interface PhpPrepared {
  spec: EngineSpec;
  loader: unknown;
  phpIni: string;
  documentRoot: string;
}

type PhpVersion = Manifest["php"]["version"];

async function importLoader(version: PhpVersion): Promise<unknown> {
  switch (version) {
    case "8.3":
      return (await import("@php-wasm/node-8-3")).getPHPLoaderModule();
    case "8.4":
      return (await import("@php-wasm/node-8-4")).getPHPLoaderModule();
  }
}

/** php-wasm's ini location (see @php-wasm/universal PHP_INI_PATH). */
const PHP_INI_PATH = "/internal/shared/php.ini";

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

/** Per-request $_SERVER values php-wasm does not know (client address, TLS, server name). */
interface RequestContext {
  current: EngineRequest | undefined;
}

type ServerEntriesFn = (...args: unknown[]) => Record<string, string>;

/**
 * php-wasm computes $_SERVER in PHPRequestHandler.prepare_$_SERVER_superglobal (private in its
 * typings, public at runtime); wrap it to add what a real web server sets.
 */
function patchServerEntries(handler: PHPRequestHandler, ctx: RequestContext): void {
  const target = handler as unknown as { prepare_$_SERVER_superglobal: ServerEntriesFn };
  const original = target.prepare_$_SERVER_superglobal.bind(handler);
  target.prepare_$_SERVER_superglobal = (...args: unknown[]) => {
    const base = original(...args);
    const r = ctx.current;
    if (r === undefined) return base;
    base.REMOTE_ADDR = r.remoteAddr;
    base.REMOTE_PORT = String(r.remotePort);
    base.SERVER_NAME = r.serverName;
    base.SERVER_PORT = String(r.serverPort);
    base.SERVER_SOFTWARE = "zerocell";
    base.SERVER_PROTOCOL = "HTTP/1.1";
    base.GATEWAY_INTERFACE = "CGI/1.1";
    if (r.https) base.HTTPS = "on";
    else delete base.HTTPS;
    base.REQUEST_SCHEME = r.https ? "https" : "http";
    return base;
  };
}

function hasDotSegment(url: string): boolean {
  const q = url.indexOf("?");
  const path = q === -1 ? url : url.slice(0, q);
  for (const raw of path.split("/")) {
    let seg: string;
    try {
      seg = decodeURIComponent(raw);
    } catch {
      return true;
    }
    if (seg === "." || seg === ".." || seg.includes("\0") || seg.includes("/") || seg.includes("\\")) return true;
  }
  return false;
}

const PLAIN = [["content-type", "text/plain; charset=utf-8"]] as Array<[string, string]>;

class PhpInstance implements EngineInstance {
  readonly #php: PHP;
  readonly #handler: PHPRequestHandler;
  readonly #ctx: RequestContext;

  constructor(php: PHP, handler: PHPRequestHandler, ctx: RequestContext) {
    this.#php = php;
    this.#handler = handler;
    this.#ctx = ctx;
  }

  async handle(request: EngineRequest): Promise<EngineResponse> {
    // Encoded dot segments would let a URL walk out of the document root to the rest of /app.
    if (hasDotSegment(request.url)) {
      return { status: 400, headers: PLAIN, body: Buffer.from("bad request: dot segments in path\n") };
    }
    const headers: Record<string, string> = {};
    for (const [k, v] of request.headers) headers[k] = k in headers ? `${headers[k]}, ${v}` : v;
    this.#ctx.current = request;
    const req: PHPRequest = {
      method: request.method as PHPRequest["method"],
      url: request.url,
      headers,
      body: request.body,
    };
    try {
      const res = await this.#handler.request(req);
      const out: Array<[string, string]> = [];
      for (const [name, values] of Object.entries(res.headers)) for (const v of values) out.push([name, v]);
      return { status: res.httpStatusCode, headers: out, body: res.bytes };
    } finally {
      this.#ctx.current = undefined;
    }
  }

  async reset(): Promise<void> {
    // Until memory snapshots land, a reset wipes the scratch directory (uploads, sessions,
    // files the app wrote); PHP itself starts every request with fresh globals and statics.
    for (const name of this.#php.listFiles(TMP_DIR)) {
      const p = `${TMP_DIR}/${name}`;
      if (this.#php.isDir(p)) this.#php.rmdir(p, { recursive: true });
      else this.#php.unlink(p);
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

  async prepare(spec: EngineSpec): Promise<PhpPrepared> {
    this.validate(spec.manifest, spec.image);
    const loader = await importLoader(spec.manifest.php.version);
    const root = spec.manifest.php.documentRoot;
    return {
      spec,
      loader,
      phpIni: buildPhpIni(spec.manifest),
      documentRoot: root === "." ? APP_ROOT : `${APP_ROOT}/${root}`,
    };
  }

  async instantiate(prepared: PhpPrepared): Promise<EngineInstance> {
    const runtimeId = await loadPHPRuntime(prepared.loader as Parameters<typeof loadPHPRuntime>[0], {
      processId: 1,
      // Emscripten's socket layer would open a WebSocket to the requested address (the "ws"
      // package, if present): make every attempt fail.
      websocket: {
        decorator: () => {
          throw new Error("zerocell: network is not available in the sandbox");
        },
      },
      print: () => {},
      printErr: (line: string) => process.stderr.write(`php: ${line}\n`),
    });
    const php = new PHP(runtimeId);
    await php.setSpawnHandler(
      createSpawnHandler((_argv: string[], proc: { stderr(s: string): void; exit(code: number): void }) => {
        proc.stderr("zerocell: processes are not available in the sandbox\n");
        proc.exit(127);
      }),
    );
    php.writeFile(PHP_INI_PATH, prepared.phpIni);
    writeImage(php, prepared.spec.image);
    php.mkdirTree(TMP_DIR);
    php.chdir(prepared.documentRoot);
    const front = prepared.spec.manifest.php.frontController;
    const handler = new PHPRequestHandler({
      php,
      documentRoot: prepared.documentRoot,
      absoluteUrl: "http://localhost",
      cookieStore: false,
      getFileNotFoundAction: () => (front === null ? { type: "404" } : { type: "internal-redirect", uri: `/${front}` }),
    });
    const ctx: RequestContext = { current: undefined };
    patchServerEntries(handler, ctx);
    return new PhpInstance(php, handler, ctx);
  }
}
