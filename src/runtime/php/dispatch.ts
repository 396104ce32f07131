/**
 * Maps a request path to what serves it, like nginx + php-fpm with
 * `try_files $uri $uri/ /index.php`: a PHP script (with PATH_INFO), a static file, a directory
 * index, a redirect to the directory with a trailing slash, the front controller, or 404.
 * Works on decoded paths and refuses dot segments, so nothing outside the document root is
 * reachable by URL (the rest of the image, e.g. data/ or zerocell.toml, stays private).
 * Must never: serve or run a hidden file or anything under a hidden directory (.env, .git/,
 * .htpasswd; only /.well-known/ is public), or the manifest when the document root is the bundle
 * root: such paths are 404 whether or not they exist.
 */

export type Dispatch =
  | { kind: "script"; file: string; scriptName: string; pathInfo: string | undefined }
  | { kind: "static"; file: string }
  | { kind: "redirect"; location: string }
  | { kind: "not-found" }
  | { kind: "bad-request"; reason: string };

export interface DispatchFs {
  isFile(path: string): boolean;
  isDir(path: string): boolean;
}

const INDEX_FILES = ["index.php", "index.html"];

/** Splits the raw URL into its decoded path segments; undefined when a segment is hostile. */
export function decodePathSegments(rawPath: string): string[] | undefined {
  const out: string[] = [];
  for (const raw of rawPath.split("/")) {
    if (raw.length === 0) continue;
    let seg: string;
    try {
      seg = decodeURIComponent(raw);
    } catch {
      return undefined;
    }
    if (seg === "." || seg === ".." || seg.includes("\0") || seg.includes("/") || seg.includes("\\")) return undefined;
    out.push(seg);
  }
  return out;
}

/** Whether a URL's decoded segments name a file the platform never serves (see the module comment). */
export function isPrivatePath(segments: readonly string[], docRootIsBundleRoot: boolean): boolean {
  if (segments.some((s, i) => s.startsWith(".") && !(i === 0 && s === ".well-known" && segments.length > 1))) return true;
  return docRootIsBundleRoot && segments.length === 1 && segments[0]!.toLowerCase() === "zerocell.toml";
}

export function dispatch(fs: DispatchFs, docRoot: string, rawPath: string, query: string, frontController: string | null, docRootIsBundleRoot = false): Dispatch {
  const segments = decodePathSegments(rawPath);
  if (segments === undefined) return { kind: "bad-request", reason: "invalid path (dot segments, NUL or bad percent-encoding)" };
  if (isPrivatePath(segments, docRootIsBundleRoot)) return { kind: "not-found" };
  const path = "/" + segments.join("/");
  const full = docRoot + (path === "/" ? "" : path);

  if (fs.isDir(full)) {
    if (!rawPath.endsWith("/")) return { kind: "redirect", location: `${rawPath}/${query}` };
    for (const index of INDEX_FILES) {
      const file = `${full}/${index}`.replace("//", "/");
      if (fs.isFile(file)) {
        const scriptName = (path === "/" ? "" : path) + "/" + index;
        return index.endsWith(".php") ? { kind: "script", file, scriptName, pathInfo: undefined } : { kind: "static", file };
      }
    }
  } else if (fs.isFile(full)) {
    return full.endsWith(".php") ? { kind: "script", file: full, scriptName: path, pathInfo: undefined } : { kind: "static", file: full };
  } else {
    // /app.php/extra/path → app.php with PATH_INFO=/extra/path
    for (let i = segments.length - 1; i >= 1; i--) {
      const head = segments.slice(0, i);
      if (!head[head.length - 1]!.endsWith(".php")) continue;
      const file = `${docRoot}/${head.join("/")}`;
      if (fs.isFile(file)) return { kind: "script", file, scriptName: "/" + head.join("/"), pathInfo: "/" + segments.slice(i).join("/") };
    }
  }
  if (frontController !== null) {
    const file = `${docRoot}/${frontController}`;
    if (fs.isFile(file)) return { kind: "script", file, scriptName: `/${frontController}`, pathInfo: undefined };
  }
  return { kind: "not-found" };
}

const MIME: Record<string, string> = {
  html: "text/html; charset=utf-8",
  htm: "text/html; charset=utf-8",
  css: "text/css; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  mjs: "text/javascript; charset=utf-8",
  json: "application/json",
  txt: "text/plain; charset=utf-8",
  xml: "application/xml",
  svg: "image/svg+xml",
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  gif: "image/gif",
  webp: "image/webp",
  ico: "image/x-icon",
  woff: "font/woff",
  woff2: "font/woff2",
  wasm: "application/wasm",
  pdf: "application/pdf",
  map: "application/json",
};

export function mimeTypeOf(file: string): string {
  const dot = file.lastIndexOf(".");
  return (dot === -1 ? undefined : MIME[file.slice(dot + 1).toLowerCase()]) ?? "application/octet-stream";
}
