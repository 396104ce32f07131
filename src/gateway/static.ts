/**
 * Static files of PHP deployments, served by the gateway itself: no sandbox starts, nothing is
 * billed as execution time. A path is served here only when the PHP engine's own dispatch
 * (src/runtime/php/dispatch.ts), run over the bundle's regular files and directories, says
 * "static"; everything else (scripts, redirects, front controller, symlinks, 404) goes to the
 * sandbox as before, so both give the same answer for the same path.
 * HTTP: ETag (content hash) and Last-Modified (the deployment's time) with If-None-Match /
 * If-Modified-Since → 304, one byte Range (If-Range) → 206 / 416, Cache-Control, and gzip or
 * brotli for text types (chosen by Accept-Encoding, made once per file and kept).
 * Must never: serve a file outside the document root, a hidden file or directory (except
 * /.well-known/), or the manifest (dispatch refuses them); hold more than STATIC_LIMITS bytes.
 */
import { createHash } from "node:crypto";
import { promisify } from "node:util";
import { brotliCompress, gzip, constants as zlib } from "node:zlib";
import { LRUCache } from "lru-cache";
import Negotiator from "negotiator";
import parseRange from "range-parser";
import type { BundleImage, Manifest } from "../bundle/index.js";
import { dispatch, mimeTypeOf } from "../runtime/php/dispatch.js";

export interface StaticLimits {
  /** Bundle bytes of all deployments whose files are indexed at once (LRU), bytes. */
  maxIndexedBytes: number;
  /** Files larger than this are not compressed, bytes. */
  maxCompressBytes: number;
  /** Files smaller than this are not compressed (no gain), bytes. */
  minCompressBytes: number;
}

export const STATIC_LIMITS: StaticLimits = {
  maxIndexedBytes: 128 * 1024 * 1024,
  maxCompressBytes: 4 * 1024 * 1024,
  minCompressBytes: 256,
};

/** Every static answer: revalidate with the ETag (a deploy changes files under the same URL). */
const CACHE_CONTROL = "public, max-age=0, must-revalidate";
const brotliAsync = promisify(brotliCompress);
const gzipAsync = promisify(gzip);

/** The root the image's paths are placed under for dispatch (any absolute path works). */
const ROOT = "/app";

interface StaticFile {
  data: Buffer;
  /** Content hash, computed at the file's first request (not for every file of a bundle). */
  etag?: string;
  type: string;
  compressible: boolean;
  /** Compressed once, off the event loop (zlib's thread pool), then kept. */
  gzip?: Promise<Buffer>;
  br?: Promise<Buffer>;
}

interface StaticIndex {
  files: Map<string, StaticFile>;
  dirs: Set<string>;
  docRoot: string;
  docRootIsBundleRoot: boolean;
  frontController: string | null;
  lastModified: string;
  bytes: number;
}

function isText(type: string): boolean {
  return type.startsWith("text/") || /^(application\/(json|javascript|xml|wasm|manifest\+json)|image\/svg\+xml)/.test(type);
}

function buildIndex(image: BundleImage, manifest: Manifest, createdAt: Date): StaticIndex {
  const files = new Map<string, StaticFile>();
  const dirs = new Set<string>([ROOT]);
  let bytes = 0;
  for (const e of image.entries) {
    const abs = `${ROOT}/${e.path}`;
    if (e.kind === "dir") dirs.add(abs);
    else if (e.kind === "file" && e.data !== undefined) {
      const type = mimeTypeOf(e.path);
      files.set(abs, { data: e.data, type, compressible: isText(type) });
      bytes += e.data.length;
    }
    // Symlinks are left to the sandbox (its file system resolves them).
  }
  const root = manifest.php.documentRoot;
  return {
    files,
    dirs,
    docRoot: root === "." ? ROOT : `${ROOT}/${root}`,
    docRootIsBundleRoot: root === ".",
    frontController: manifest.php.frontController,
    lastModified: new Date(Math.floor(createdAt.getTime() / 1000) * 1000).toUTCString(),
    bytes,
  };
}

/** A deployment's files, manifest and creation time (DeploymentCatalog.bundle). */
export type LoadBundle = (deploymentId: string) => { image: BundleImage; manifest: Manifest; createdAt: Date } | undefined;

export class StaticFiles {
  readonly #load: LoadBundle;
  readonly #limits: StaticLimits;
  readonly #indexes: LRUCache<string, StaticIndex>;

  constructor(load: LoadBundle, limits: Partial<StaticLimits> = {}) {
    this.#load = load;
    this.#limits = { ...STATIC_LIMITS, ...limits };
    // Compressed copies are at most as large as their file: twice the bundle bytes bound both.
    this.#indexes = new LRUCache({ maxSize: this.#limits.maxIndexedBytes, sizeCalculation: (i) => Math.max(1, i.bytes * 2) });
  }

  #index(deploymentId: string): StaticIndex | undefined {
    let idx = this.#indexes.get(deploymentId);
    if (idx === undefined) {
      const b = this.#load(deploymentId);
      if (b === undefined || b.manifest.runtime !== "php") return undefined;
      idx = buildIndex(b.image, b.manifest, b.createdAt);
      if (idx.bytes * 2 <= this.#limits.maxIndexedBytes) this.#indexes.set(deploymentId, idx);
    }
    return idx;
  }

  /**
   * The response for a static file of the deployment, or undefined when the sandbox must answer
   * (not PHP, not GET/HEAD, not a regular file of the document root).
   */
  async serve(deploymentId: string, method: string, rawPath: string, headers: Headers): Promise<Response | undefined> {
    if (method !== "GET" && method !== "HEAD") return undefined;
    const idx = this.#index(deploymentId);
    if (idx === undefined) return undefined;
    const fs = { isFile: (p: string) => idx.files.has(p), isDir: (p: string) => idx.dirs.has(p) };
    const d = dispatch(fs, idx.docRoot, rawPath, "", idx.frontController, idx.docRootIsBundleRoot);
    if (d.kind !== "static") return undefined;
    const file = idx.files.get(d.file);
    if (file === undefined) return undefined;
    return this.#respond(file, idx.lastModified, method, headers);
  }

  async #respond(file: StaticFile, lastModified: string, method: string, req: Headers): Promise<Response> {
    file.etag ??= `"${createHash("sha256").update(file.data).digest("base64url").slice(0, 22)}"`;
    const out = new Headers({ etag: file.etag, "last-modified": lastModified, "cache-control": CACHE_CONTROL, "accept-ranges": "bytes", "content-type": file.type });
    if (file.compressible) out.set("vary", "accept-encoding");
    // 1. conditional: If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2)
    const inm = req.get("if-none-match");
    const ims = req.get("if-modified-since");
    const notModified = inm !== null ? inm.split(",").some((t) => t.trim().replace(/^W\//, "") === file.etag || t.trim() === "*") : ims !== null && Date.parse(ims) >= Date.parse(lastModified);
    if (notModified) return new Response(null, { status: 304, headers: out });
    // 2. range (identity bytes only; If-Range must name the current ETag or date)
    const range = req.get("range");
    const ifRange = req.get("if-range");
    const rangeApplies = range !== null && (ifRange === null || ifRange === file.etag || ifRange === lastModified);
    if (rangeApplies) {
      const r = parseRange(file.data.length, range, { combine: true });
      if (r === -1) {
        out.set("content-range", `bytes */${file.data.length}`);
        return new Response(null, { status: 416, headers: out });
      }
      // Several ranges (multipart) are not offered: the whole file instead (allowed by RFC 9110).
      if (r !== -2 && r.type === "bytes" && r.length === 1) {
        const { start, end } = r[0]!;
        out.set("content-range", `bytes ${start}-${end}/${file.data.length}`);
        out.set("content-length", String(end - start + 1));
        return new Response(method === "HEAD" ? null : (file.data.subarray(start, end + 1) as Uint8Array<ArrayBuffer>), { status: 206, headers: out });
      }
    }
    // 3. whole file, compressed for text when the client takes it
    let body = file.data;
    const size = file.data.length;
    if (file.compressible && size >= this.#limits.minCompressBytes && size <= this.#limits.maxCompressBytes) {
      // Equal q-values: the server's preference (brotli) breaks the tie. (@types/negotiator lacks
      // the options argument of negotiator 1.x.)
      const negotiator = new Negotiator({ headers: { "accept-encoding": req.get("accept-encoding") ?? "" } }) as unknown as { encoding(available: string[], opts: { preferred: string[] }): string | undefined };
      const enc = negotiator.encoding(["br", "gzip", "identity"], { preferred: ["br", "gzip", "identity"] });
      if (enc === "br") {
        file.br ??= brotliAsync(file.data, { params: { [zlib.BROTLI_PARAM_QUALITY]: 9, [zlib.BROTLI_PARAM_SIZE_HINT]: size } });
        body = await file.br;
        out.set("content-encoding", "br");
      } else if (enc === "gzip") {
        file.gzip ??= gzipAsync(file.data, { level: 9 });
        body = await file.gzip;
        out.set("content-encoding", "gzip");
      }
    }
    out.set("content-length", String(body.length));
    return new Response(method === "HEAD" ? null : (body as Uint8Array<ArrayBuffer>), { status: 200, headers: out });
  }
}
