/**
 * zerocell.toml: parsed with smol-toml, shape-checked with zod (unknown keys rejected), then the
 * semantic rules (routes, paths). Every error is a BundleError whose message starts with
 * "manifest: <field path>: ".
 *
 * This file knows the tables every deployment has ([[routes]], [limits], warmup, health) and no
 * runtime: each runtime's table ([php], [python], [x86], …) is a ManifestSection in its runtime
 * folder (src/runtime/<name>/descriptor.ts), and the runtime registry composes the parser
 * (createManifestParser, src/runtime/manifest.ts). A section adds its table to the Manifest type
 * by augmenting RuntimeSections.
 */
import { parse as parseToml, TomlError } from "smol-toml";
import { z } from "zod";
import { BundleError } from "../errors.js";
import { canonicalPath, checkHostPattern, checkPathPattern, type RouteMode } from "../router/index.js";
import type { BundleImage } from "./archive.js";
import { q } from "./errors.js";

export interface ManifestRoute {
  /** Lower-cased host pattern: exact host, "*.example.com" or "*". */
  host: string;
  path: string;
  mode: RouteMode;
  /** Name of a :param of `path` that selects a per-key instance. */
  key?: string;
}

/** [limits] of a manifest. */
export interface ManifestLimits {
  timeoutMs: number;
  memoryMb: number;
  maxBodyBytes: number;
  dataMb: number;
}

/**
 * Each runtime's table, by runtime name: empty here, filled by each runtime's descriptor with
 * `declare module "../../bundle/manifest.js" { interface RuntimeSections { <name>: <Table> } }`.
 * Every table is present in a parsed Manifest (with its defaults when the file has none), whatever
 * the runtime: stored manifests have always had all of them.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface RuntimeSections {}

/** A runtime's name: a key of RuntimeSections (the registry lists one descriptor per name). */
export type RuntimeName = keyof RuntimeSections & string;

export type Manifest = {
  runtime: RuntimeName;
  routes: ManifestRoute[];
  limits: ManifestLimits;
  warmup: string[];
  /**
   * Paths a new deployment must answer with a non-5xx before it becomes active (after the
   * warm-up requests). Default ["/"]; [] checks only that an instance starts. Deployments stored
   * before this field existed read it as undefined: ["/"].
   */
  health: string[];
} & RuntimeSections;

/** What a section's checks get besides its own table. */
export interface SectionContext {
  readonly limits: ManifestLimits;
  /** A manifest_invalid error for a field of this section: fail(["opcache_mb"], "…") → "manifest: php.opcache_mb: …". */
  fail(path: ReadonlyArray<PropertyKey>, message: string): BundleError;
}

/**
 * One runtime's manifest table: its zod shape (a strictObject whose every field has a default, so
 * an absent table parses from {}), the semantic checks that turn it into the Manifest's value, and
 * optionally the checks against the bundle's files (loadBundle).
 */
export interface ManifestSection<S extends z.ZodObject = z.ZodObject, T = unknown> {
  readonly schema: S;
  resolve(table: z.output<S>, ctx: SectionContext): T;
  /** Checks against the bundle's files; may fill in values that depend on them. */
  checkImage?(value: T, image: BundleImage, ctx: SectionContext): T;
}

/** A ManifestSection with its types inferred. */
export function defineManifestSection<S extends z.ZodObject, T>(section: ManifestSection<S, T>): ManifestSection<S, T> {
  return section;
}

/** Health paths of a manifest (older stored manifests have none: "/"). */
export function healthPaths(m: Partial<Pick<Manifest, "health">>): string[] {
  return m.health ?? ["/"];
}

export const MAX_MANIFEST_BYTES = 64 * 1024;
export const MANIFEST_FILE = "zerocell.toml";

const MAX_ROUTES = 64;
const MAX_WARMUP = 16;
const MAX_WARMUP_PATH = 2048;
/** Path rules of paths a manifest names (document roots, programs, …). */
export const MANIFEST_PATH_RULES = { maxPathLength: 1024, maxDepth: 32 };

/** zod number rule with one message naming the bounds. */
export function intBetween(lo: number, hi: number) {
  const msg = `must be an integer between ${lo} and ${hi}`;
  return z.number({ error: msg }).int({ error: msg }).min(lo, { error: msg }).max(hi, { error: msg });
}

/** zod string rule: "is required" when absent, "must be a string" otherwise. */
export const str = () => z.string({ error: (iss) => (iss.input === undefined ? "is required" : "must be a string") });

const RouteSchema = z.strictObject(
  {
    host: str(),
    path: str().default("/"),
    mode: z.enum(["snapshot", "fresh", "daemon"], { error: 'must be "snapshot", "fresh" or "daemon"' }).default("snapshot"),
    key: str().optional(),
  },
  { error: "must be a table" },
);

const LimitsSchema = z.strictObject(
  {
    timeout_ms: intBetween(1, 300_000).default(10_000),
    memory_mb: intBetween(16, 2048).default(128),
    max_body_bytes: intBetween(0, 104_857_600).default(10 * 1024 * 1024),
    /** Per-key storage (/data of keyed routes), MiB. */
    data_mb: intBetween(1, 1024).default(16),
  },
  { error: "must be a table" },
);

/** "routes[0].host", 'php.ini["opcache.enable"]'. */
export function formatFieldPath(path: ReadonlyArray<PropertyKey>): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else if (typeof seg === "string" && /^[A-Za-z_][A-Za-z0-9_]*$/.test(seg)) out += (out === "" ? "" : ".") + seg;
    else out += `[${JSON.stringify(String(seg))}]`;
  }
  return out;
}

/** A manifest_invalid error naming the field: "manifest: <field>: <message>". */
export function manifestError(path: ReadonlyArray<PropertyKey>, message: string): BundleError {
  const field = formatFieldPath(path);
  return new BundleError("manifest_invalid", `manifest: ${field === "" ? "" : field + ": "}${message}`, {
    details: { field },
  });
}

function zodError(issues: ReadonlyArray<z.core.$ZodIssue>, allowedKeys: Readonly<Record<string, string[]>>): BundleError {
  const unknown = issues.find((i) => i.code === "unrecognized_keys");
  const issue = unknown ?? issues[0];
  if (issue === undefined) return manifestError([], "invalid manifest");
  if (issue.code === "unrecognized_keys") {
    const key = issue.keys[0] ?? "";
    const context = [...issue.path].reverse().find((s) => typeof s === "string") ?? "";
    const allowed = Object.hasOwn(allowedKeys, context as string) ? allowedKeys[context as string] : undefined;
    return manifestError([...issue.path, key], `unknown key${allowed === undefined ? "" : ` (allowed: ${allowed.join(", ")})`}`);
  }
  return manifestError(issue.path, issue.message);
}

function tomlError(e: unknown): BundleError {
  if (e instanceof TomlError) {
    const first = (e.message.split("\n")[0] ?? "").replace(/^Invalid TOML document:\s*/, "");
    return new BundleError("manifest_invalid", `manifest: invalid TOML at line ${e.line}, column ${e.column}: ${first}`, {
      cause: e,
      details: { line: e.line, column: e.column },
    });
  }
  return new BundleError("manifest_invalid", `manifest: invalid TOML (${e instanceof Error ? e.message : String(e)})`, { cause: e });
}

/** Sections by runtime name (the registry's composition, src/runtime/manifest.ts). */
export type ManifestSections = Readonly<Record<string, ManifestSection<z.ZodObject, unknown>>>;

/** zerocell.toml → Manifest, and the manifest-vs-files checks of loadBundle. */
export interface ManifestParser {
  /** The runtime names this parser accepts. */
  readonly runtimes: readonly string[];
  /** Parses zerocell.toml text; the error names the field path. */
  parse(text: string): Manifest;
  /** Each section's checks against the bundle's files (and the values they fill in). */
  checkImage(manifest: Manifest, image: BundleImage): Manifest;
}

/** The first own "__proto__" key in a parsed TOML document (zod would drop it silently), as a path. */
function findProtoKey(value: unknown, path: PropertyKey[] = [], depth = 0): PropertyKey[] | undefined {
  if (typeof value !== "object" || value === null || depth > 8) return undefined;
  if (!Array.isArray(value) && Object.hasOwn(value, "__proto__")) return [...path, "__proto__"];
  for (const [k, v] of Object.entries(value)) {
    const found = findProtoKey(v, [...path, Array.isArray(value) ? Number(k) : k], depth + 1);
    if (found !== undefined) return found;
  }
  return undefined;
}

/**
 * The parser for a set of runtime sections. Names no runtime: the runtimes are the keys of
 * `sections`, each one's table the key's name.
 */
export function createManifestParser(sections: ManifestSections): ManifestParser {
  const names = Object.keys(sections);
  if (names.length === 0) throw new Error("createManifestParser: no runtime sections");
  for (const reserved of ["runtime", "routes", "limits", "warmup", "health"]) {
    if (names.includes(reserved)) throw new Error(`createManifestParser: a runtime cannot be named ${q(reserved)}`);
  }
  const schema = z.strictObject({
    runtime: z.enum(names as [string, ...string[]], {
      error: (iss) => (iss.input === undefined ? "is required" : `must be one of ${names.map((r) => `"${r}"`).join(", ")}`),
    }),
    ...Object.fromEntries(names.map((n) => [n, z.optional(sections[n]!.schema)])),
    routes: z
      .array(RouteSchema, { error: "must be an array of tables ([[routes]])" })
      .max(MAX_ROUTES, { error: `must have at most ${MAX_ROUTES} entries` })
      .default([]),
    limits: z.optional(LimitsSchema),
    warmup: z
      .array(str(), { error: "must be an array of strings" })
      .max(MAX_WARMUP, { error: `must have at most ${MAX_WARMUP} entries` })
      .default([]),
    health: z
      .array(str(), { error: "must be an array of strings" })
      .max(MAX_WARMUP, { error: `must have at most ${MAX_WARMUP} entries` })
      .default(["/"]),
  });
  const allowedKeys: Record<string, string[]> = {
    "": Object.keys(schema.shape),
    ...Object.fromEntries(names.map((n) => [n, Object.keys(sections[n]!.schema.shape)])),
    routes: Object.keys(RouteSchema.shape),
    limits: Object.keys(LimitsSchema.shape),
  };
  const contextOf = (name: string, limits: ManifestLimits): SectionContext => ({
    limits,
    fail: (path, message) => manifestError([name, ...path], message),
  });

  function parse(text: string): Manifest {
    const bytes = Buffer.byteLength(text, "utf8");
    if (bytes > MAX_MANIFEST_BYTES) {
      throw new BundleError("manifest_invalid", `manifest: ${MANIFEST_FILE} is ${bytes} bytes, exceeds limit of ${MAX_MANIFEST_BYTES} bytes`);
    }
    let doc: unknown;
    try {
      doc = parseToml(text.startsWith("\uFEFF") ? text.slice(1) : text);
    } catch (e) {
      throw tomlError(e);
    }
    // zod would silently drop a "__proto__" key from a record (assignment sets the prototype).
    const proto = findProtoKey(doc);
    if (proto !== undefined) throw manifestError(proto, '"__proto__" is not a valid key');
    const result = schema.safeParse(doc);
    if (!result.success) throw zodError(result.error.issues, allowedKeys);
    const raw = result.data as Record<string, unknown> & z.output<typeof schema>;
    const lim = raw.limits ?? LimitsSchema.parse({});
    const limits: ManifestLimits = { timeoutMs: lim.timeout_ms, memoryMb: lim.memory_mb, maxBodyBytes: lim.max_body_bytes, dataMb: lim.data_mb };

    // each runtime's table (all of them, with defaults when absent)
    const tables: Record<string, unknown> = {};
    for (const name of names) {
      const section = sections[name]!;
      const table = (raw[name] ?? section.schema.parse({})) as z.output<typeof section.schema>;
      tables[name] = section.resolve(table, contextOf(name, limits));
    }

    // routes
    const routes: ManifestRoute[] = [];
    const seen = new Map<string, number>();
    raw.routes.forEach((r, i) => {
      const host = r.host.toLowerCase();
      const hostError = checkHostPattern(host);
      if (hostError !== undefined) throw manifestError(["routes", i, "host"], `${q(r.host)}: ${hostError}`);
      const pathError = checkPathPattern(r.path);
      if (pathError !== undefined) throw manifestError(["routes", i, "path"], `${q(r.path)}: ${pathError}`);
      const route: ManifestRoute = { host, path: r.path, mode: r.mode };
      if (r.key !== undefined) {
        const params = r.path.split("/").filter((s) => s.startsWith(":")).map((s) => s.slice(1));
        if (!params.includes(r.key)) {
          throw manifestError(["routes", i, "key"], `${q(r.key)} is not a :param of path ${q(r.path)}`);
        }
        route.key = r.key;
      }
      const id = `${host} ${canonicalPath(r.path)}`;
      const earlier = seen.get(id);
      if (earlier !== undefined) throw manifestError(["routes", i], `has the same host and path as routes[${earlier}]`);
      seen.set(id, i);
      routes.push(route);
    });

    // warmup and health paths
    for (const field of ["warmup", "health"] as const) {
      raw[field].forEach((p, i) => {
        if (!p.startsWith("/") || p.length > MAX_WARMUP_PATH || /[\s\u0000-\u001f\u007f]/.test(p)) {
          throw manifestError([field, i], `${q(p)} must be a request path starting with "/" (no spaces or control characters)`);
        }
      });
    }

    return {
      ...tables,
      runtime: raw.runtime as RuntimeName,
      routes,
      limits,
      warmup: [...raw.warmup],
      health: [...raw.health],
    } as Manifest;
  }

  function checkImage(manifest: Manifest, image: BundleImage): Manifest {
    const out: Record<string, unknown> = { ...(manifest as unknown as Record<string, unknown>) };
    for (const name of names) {
      const section = sections[name]!;
      if (section.checkImage === undefined) continue;
      out[name] = section.checkImage((manifest as unknown as Record<string, unknown>)[name], image, contextOf(name, manifest.limits));
    }
    return out as unknown as Manifest;
  }

  return { runtimes: names, parse, checkImage };
}
