/**
 * Router: (host, path) → route of an active deployment. The table is compiled once per change
 * (deploy, rollback) into host buckets and segment tries, then swapped atomically by the caller;
 * matching never allocates more than the split path and never throws on hostile input.
 *
 * Specificity, most specific first:
 *   1. host: exact host, then wildcards ("*.example.com") with the longest suffix first, then "*";
 *   2. path: a static segment beats a :param at the same position, and a longer match beats a
 *      shorter one (routes are prefixes at segment boundaries: "/api" serves "/api/x" too).
 * A route must never do: match across hosts, or match "/apix" for the route "/api".
 */

export type RouteMode = "snapshot" | "fresh" | "daemon";

/** One route as stored: what a deployment's manifest (and --host flags) declared. */
export interface RouteSpec {
  host: string;
  path: string;
  mode: RouteMode;
  /** Name of the path parameter that selects a per-key instance (issue: per-key instances). */
  key?: string | undefined;
}

/** What a route points at. The router does not care what is inside, only carries it. */
export interface RouteTarget {
  appId: string;
  appName: string;
  accountId: string;
  deploymentId: string;
}

export interface RouteEntry extends RouteSpec {
  target: RouteTarget;
}

export interface RouteMatch {
  route: RouteEntry;
  /** Values of the :params in the matched pattern. */
  params: Record<string, string>;
  /** The part of the request path the pattern matched ("" for "/"), for SCRIPT_NAME. */
  matchedPrefix: string;
  /** The rest of the path after the matched prefix ("/..."), for PATH_INFO. */
  rest: string;
}

const MAX_PATH_SEGMENTS = 128;

interface TrieNode {
  statics: Map<string, TrieNode>;
  param: { name: string; node: TrieNode } | undefined;
  route: RouteEntry | undefined;
}

function createNode(): TrieNode {
  return { statics: new Map(), param: undefined, route: undefined };
}

/** Normalises a Host header value: lower case, no port, no trailing dot. */
export function normalizeHost(raw: string): string {
  let host = raw.trim().toLowerCase();
  if (host.startsWith("[")) {
    const end = host.indexOf("]");
    return end === -1 ? host : host.slice(0, end + 1);
  }
  const colon = host.indexOf(":");
  if (colon !== -1) host = host.slice(0, colon);
  if (host.endsWith(".")) host = host.slice(0, -1);
  return host;
}

const HOST_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** Checks a route's host pattern: "*", "*.suffix", or an exact host name. Returns an error text or undefined. */
export function checkHostPattern(pattern: string): string | undefined {
  if (pattern === "*") return undefined;
  const name = pattern.startsWith("*.") ? pattern.slice(2) : pattern;
  if (name.length === 0 || name.length > 253) return "host must be 1 to 253 characters";
  for (const label of name.split(".")) {
    if (!HOST_LABEL.test(label)) return `host label "${label}" is not a valid DNS label (a-z, 0-9, -)`;
  }
  return undefined;
}

const SEGMENT = /^[A-Za-z0-9._~!$&'()*+,;=@%-]+$/;
const PARAM = /^:[A-Za-z_][A-Za-z0-9_]{0,63}$/;

/** Checks a route's path pattern ("/", "/api", "/posts/:id"). Returns an error text or undefined. */
export function checkPathPattern(pattern: string): string | undefined {
  if (!pattern.startsWith("/")) return 'path must start with "/"';
  if (pattern.length > 1024) return "path must be at most 1024 characters";
  const segments = splitPath(pattern);
  const seen = new Set<string>();
  for (const s of segments) {
    if (s.startsWith(":")) {
      if (!PARAM.test(s)) return `path parameter "${s}" must look like :name`;
      if (seen.has(s)) return `path parameter "${s}" appears twice`;
      seen.add(s);
    } else if (!SEGMENT.test(s) || s === "." || s === "..") {
      return `path segment "${s}" contains characters that are not allowed`;
    }
  }
  return undefined;
}

/** Canonical form of a path pattern, used to compare routes of different apps. */
export function canonicalPath(pattern: string): string {
  return "/" + splitPath(pattern).map((s) => (s.startsWith(":") ? ":" : s)).join("/");
}

function splitPath(path: string): string[] {
  const out: string[] = [];
  for (const s of path.split("/")) if (s.length > 0) out.push(s);
  return out;
}

class PathTable {
  readonly root = createNode();

  add(entry: RouteEntry): void {
    let node = this.root;
    for (const seg of splitPath(entry.path)) {
      if (seg.startsWith(":")) {
        const name = seg.slice(1);
        if (node.param === undefined) node.param = { name, node: createNode() };
        // Two patterns with differently named params at the same position share a node; the
        // conflict check at deploy refuses that across apps, and within one app the first wins.
        node = node.param.node;
      } else {
        let next = node.statics.get(seg);
        if (next === undefined) {
          next = createNode();
          node.statics.set(seg, next);
        }
        node = next;
      }
    }
    if (node.route === undefined) node.route = entry;
  }

  match(segments: string[]): { route: RouteEntry; params: Record<string, string>; depth: number } | undefined {
    const params: Array<[string, string]> = [];
    const found = walk(this.root, segments, 0, params);
    if (found === undefined) return undefined;
    return { route: found.route, params: Object.fromEntries(found.params), depth: found.depth };
  }
}

function walk(
  node: TrieNode,
  segments: string[],
  i: number,
  params: Array<[string, string]>,
): { route: RouteEntry; params: Array<[string, string]>; depth: number } | undefined {
  const seg = segments[i];
  if (seg !== undefined) {
    const child = node.statics.get(seg);
    if (child !== undefined) {
      const deeper = walk(child, segments, i + 1, params);
      if (deeper !== undefined) return deeper;
    }
    if (node.param !== undefined) {
      params.push([node.param.name, seg]);
      const deeper = walk(node.param.node, segments, i + 1, params);
      if (deeper !== undefined) return deeper;
      params.pop();
    }
  }
  if (node.route !== undefined) return { route: node.route, params: [...params], depth: i };
  return undefined;
}

/** An immutable, compiled route table. Build a new one on every change and swap the reference. */
export class RouteTable {
  readonly #exact = new Map<string, PathTable>();
  /** Wildcard suffixes (".example.com"), longest first. */
  readonly #wildcards: Array<{ suffix: string; table: PathTable }> = [];
  #any: PathTable | undefined;
  readonly entries: readonly RouteEntry[];

  constructor(entries: RouteEntry[]) {
    this.entries = entries;
    const wild = new Map<string, PathTable>();
    for (const e of entries) {
      const host = e.host.toLowerCase();
      let table: PathTable | undefined;
      if (host === "*") {
        table = this.#any ??= new PathTable();
      } else if (host.startsWith("*.")) {
        const suffix = host.slice(1);
        table = wild.get(suffix);
        if (table === undefined) wild.set(suffix, (table = new PathTable()));
      } else {
        table = this.#exact.get(host);
        if (table === undefined) this.#exact.set(host, (table = new PathTable()));
      }
      table.add(e);
    }
    for (const [suffix, table] of wild) this.#wildcards.push({ suffix, table });
    this.#wildcards.sort((a, b) => b.suffix.length - a.suffix.length);
  }

  /**
   * Finds the most specific route for a request. `rawHost` is the Host header (or SNI name);
   * `path` is the URL path without query, percent-encoded as received.
   */
  match(rawHost: string, path: string): RouteMatch | undefined {
    const host = normalizeHost(rawHost);
    const segments = splitPath(path);
    if (segments.length > MAX_PATH_SEGMENTS) return undefined;
    const tables: PathTable[] = [];
    const exact = this.#exact.get(host);
    if (exact !== undefined) tables.push(exact);
    for (const w of this.#wildcards) {
      if (host.length > w.suffix.length && host.endsWith(w.suffix)) tables.push(w.table);
    }
    if (this.#any !== undefined) tables.push(this.#any);
    for (const table of tables) {
      const m = table.match(segments);
      if (m === undefined) continue;
      const matched = segments.slice(0, m.depth);
      const matchedPrefix = matched.length === 0 ? "" : "/" + matched.join("/");
      const restSegments = segments.slice(m.depth);
      let rest = restSegments.length === 0 ? "" : "/" + restSegments.join("/");
      if (path.endsWith("/") && (rest !== "" || matchedPrefix !== "")) rest += "/";
      if (rest === "" && matchedPrefix === "") rest = "/";
      return { route: m.route, params: m.params, matchedPrefix, rest };
    }
    return undefined;
  }

  /** Host names that have an exact route (the gateway mints certificates for these). */
  exactHosts(): string[] {
    return [...this.#exact.keys()];
  }
}
