/**
 * The CGI part of the WSGI environ, computed on the host side (plain data; the driver adds the
 * wsgi.* objects). PEP 3333 "native strings": every value is a str whose code points are the
 * bytes received (latin-1), so PATH_INFO is percent-decoded into bytes and shown as latin-1.
 */
import type { EngineRequest } from "../engine.js";

/** What the driver receives as JSON for one request. */
export interface RequestMeta {
  method: string;
  script: string;
  path: string;
  query: string;
  uri: string;
  serverName: string;
  serverPort: string;
  remoteAddr: string;
  remotePort: string;
  https: boolean;
  params: Record<string, string>;
  /** [CGI name, value]: CONTENT_TYPE, CONTENT_LENGTH and HTTP_* (repeated headers joined). */
  cgi: Array<[string, string]>;
  /** Bodies under 2 bytes travel here (latin-1). */
  b?: string;
}

/** Percent-decodes a raw path to bytes and returns them as a latin-1 string (WSGI native string). */
export function decodePathLatin1(raw: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 0x25 && i + 2 < raw.length && /^[0-9A-Fa-f]{2}$/.test(raw.slice(i + 1, i + 3))) {
      bytes.push(parseInt(raw.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (c < 0x80) {
      bytes.push(c);
    } else {
      // Not expected from the gateway (WHATWG URLs percent-encode), but keep the bytes truthful.
      const cp = raw.codePointAt(i)!;
      if (cp > 0xffff) i++;
      for (const b of Buffer.from(String.fromCodePoint(cp), "utf8")) bytes.push(b);
    }
  }
  return Buffer.from(bytes).toString("latin1");
}

/**
 * Splits a raw URL path into SCRIPT_NAME and PATH_INFO by the route's matched prefix (the
 * gateway's scriptName: the matched segments joined with "/", empty segments dropped). The split
 * happens on the raw path, by segments, so "//api/x" with prefix "/api" gives ("//api", "/x").
 */
export function splitScriptName(rawPath: string, scriptName: string): { script: string; path: string } {
  const want = scriptName.split("/").filter((s) => s.length > 0);
  if (want.length === 0) return { script: "", path: rawPath === "" ? "/" : rawPath };
  let i = 0;
  let matched = 0;
  while (i < rawPath.length && matched < want.length) {
    if (rawPath[i] === "/") {
      i++;
      continue;
    }
    let j = rawPath.indexOf("/", i);
    if (j === -1) j = rawPath.length;
    if (rawPath.slice(i, j) !== want[matched]) return { script: "", path: rawPath === "" ? "/" : rawPath };
    matched++;
    i = j;
  }
  if (matched < want.length) return { script: "", path: rawPath === "" ? "/" : rawPath };
  return { script: rawPath.slice(0, i), path: rawPath.slice(i) };
}

/** Header names that would collide with another header's HTTP_ name are dropped ("x_a" vs "x-a"). */
const HEADER_NAME = /^[!#$%&'*+\-.^`|~0-9a-z]+$/;

export function buildMeta(request: EngineRequest, smallBody?: string): RequestMeta {
  const q = request.url.indexOf("?");
  const rawPath = q === -1 ? request.url : request.url.slice(0, q);
  const query = q === -1 ? "" : request.url.slice(q + 1);
  const split = splitScriptName(rawPath, request.scriptName);
  let script = decodePathLatin1(split.script);
  let path = decodePathLatin1(split.path);
  if (script === "/") {
    script = "";
    path = "/" + path.replace(/^\//, "");
  }
  const joined = new Map<string, string>();
  let contentType: string | undefined;
  let hasLength = false;
  for (const [rawName, value] of request.headers) {
    const name = rawName.toLowerCase();
    if (!HEADER_NAME.test(name) || name.includes("_")) continue;
    if (name === "content-type") {
      contentType = contentType === undefined ? value : contentType;
      continue;
    }
    if (name === "content-length") {
      hasLength = true;
      continue;
    }
    const key = `HTTP_${name.toUpperCase().replace(/-/g, "_")}`;
    const prev = joined.get(key);
    joined.set(key, prev === undefined ? value : `${prev}${name === "cookie" ? "; " : ", "}${value}`);
  }
  const cgi: Array<[string, string]> = [];
  if (contentType !== undefined) cgi.push(["CONTENT_TYPE", contentType]);
  // The body is complete here (the gateway read it): CONTENT_LENGTH is its true length.
  if (request.body.byteLength > 0 || hasLength) cgi.push(["CONTENT_LENGTH", String(request.body.byteLength)]);
  for (const [k, v] of joined) cgi.push([k, v]);
  const meta: RequestMeta = {
    method: request.method.toUpperCase(),
    script,
    path,
    query,
    uri: request.url,
    serverName: request.serverName,
    serverPort: String(request.serverPort),
    remoteAddr: request.remoteAddr,
    remotePort: String(request.remotePort),
    https: request.https,
    params: { ...request.params },
    cgi,
  };
  if (smallBody !== undefined) meta.b = smallBody;
  return meta;
}
