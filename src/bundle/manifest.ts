/**
 * zerocell.toml: parsed with smol-toml, shape-checked with zod (unknown keys rejected), then the
 * semantic rules (routes, php.ini policy, paths). Every error is a BundleError whose message starts
 * with "manifest: <field path>: ".
 */
import { parse as parseToml, TomlError } from "smol-toml";
import { z } from "zod";
import { BundleError } from "../errors.js";
import { canonicalPath, checkHostPattern, checkPathPattern, type RouteMode } from "../router/index.js";
import { q } from "./errors.js";
import { checkRelativePath } from "./paths.js";

export interface ManifestRoute {
  /** Lower-cased host pattern: exact host, "*.example.com" or "*". */
  host: string;
  path: string;
  mode: RouteMode;
  /** Name of a :param of `path` that selects a per-key instance. */
  key?: string;
}

export interface Manifest {
  runtime: "php" | "python" | "x86";
  /** Python (WSGI) settings; defaults when the table is absent. */
  python: { app: string; path: string[] };
  /** Native x86-64 settings: the static ELF program (relative to the bundle root). */
  x86: { program: string };
  php: {
    version: "8.3" | "8.4";
    /** Normalised relative directory, "." for the bundle root. */
    documentRoot: string;
    /** php.ini overrides, values as strings (booleans as "1"/"0"). */
    ini: Record<string, string>;
    /**
     * File relative to documentRoot that serves paths that are no file, or null for none.
     * parseManifest leaves null when the key is absent; loadBundle fills in "index.php" when
     * that file exists in the document root.
     */
    frontController: string | null;
  };
  routes: ManifestRoute[];
  limits: { timeoutMs: number; memoryMb: number; maxBodyBytes: number; dataMb: number };
  warmup: string[];
}

export const MAX_MANIFEST_BYTES = 64 * 1024;
export const MANIFEST_FILE = "zerocell.toml";

const SUPPORTED_RUNTIMES = ["php", "python", "x86"] as const;
const UNAVAILABLE_RUNTIMES = new Set<string>();
const MAX_ROUTES = 64;
const MAX_WARMUP = 16;
const MAX_WARMUP_PATH = 2048;
const MANIFEST_PATH_RULES = { maxPathLength: 1024, maxDepth: 32 };

/** php.ini keys a bundle may not set: the platform owns sandboxing, limits, paths and extensions. */
const FORBIDDEN_INI_KEYS = new Set([
  "disable_functions",
  "disable_classes",
  "open_basedir",
  "allow_url_fopen",
  "allow_url_include",
  "extension",
  "zend_extension",
  "extension_dir",
  "memory_limit",
  "max_execution_time",
  "auto_prepend_file",
  "auto_append_file",
  "sendmail_path",
  "mail.log",
  "error_log",
  "session.save_path",
  "upload_tmp_dir",
  "sys_temp_dir",
  // Not in the original list but just as dangerous: loading code / FFI, and the hard time limit.
  "enable_dl",
  "hard_timeout",
]);
const FORBIDDEN_INI_PREFIXES = ["opcache.", "ffi."];
const INI_KEY = /^[a-z0-9_.]+$/;
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

function intBetween(lo: number, hi: number) {
  const msg = `must be an integer between ${lo} and ${hi}`;
  return z.number({ error: msg }).int({ error: msg }).min(lo, { error: msg }).max(hi, { error: msg });
}

const str = () => z.string({ error: (iss) => (iss.input === undefined ? "is required" : "must be a string") });

const PhpSchema = z.strictObject({
  version: z.enum(["8.3", "8.4"], { error: 'must be "8.3" or "8.4" (a string)' }).default("8.3"),
  document_root: str().default("."),
  ini: z
    .record(
      z.string(),
      z.union([z.string(), z.number(), z.boolean()], { error: "must be a string, number or boolean" }),
      { error: "must be a table of php.ini settings" },
    )
    .default({}),
  front_controller: str().optional(),
}, { error: "must be a table" });

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

const PythonSchema = z.strictObject(
  {
    app: str().default("app:application"),
    path: z.array(str(), { error: "must be an array of strings" }).max(16, { error: "must have at most 16 entries" }).default([]),
  },
  { error: "must be a table" },
);

const X86Schema = z.strictObject({ program: str().default("bin/app") }, { error: "must be a table" });

const ManifestSchema = z.strictObject({
  runtime: z.enum(SUPPORTED_RUNTIMES, {
    error: (iss) =>
      iss.input === undefined ? "is required" : `must be one of ${SUPPORTED_RUNTIMES.map((r) => `"${r}"`).join(", ")}`,
  }),
  php: z.optional(PhpSchema),
  python: z.optional(PythonSchema),
  x86: z.optional(X86Schema),
  routes: z
    .array(RouteSchema, { error: "must be an array of tables ([[routes]])" })
    .max(MAX_ROUTES, { error: `must have at most ${MAX_ROUTES} entries` })
    .default([]),
  limits: z.optional(LimitsSchema),
  warmup: z
    .array(str(), { error: "must be an array of strings" })
    .max(MAX_WARMUP, { error: `must have at most ${MAX_WARMUP} entries` })
    .default([]),
});

const ALLOWED_KEYS: Record<string, string[]> = {
  "": Object.keys(ManifestSchema.shape),
  php: Object.keys(PhpSchema.shape),
  python: Object.keys(PythonSchema.shape),
  x86: Object.keys(X86Schema.shape),
  routes: Object.keys(RouteSchema.shape),
  limits: Object.keys(LimitsSchema.shape),
};

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

function invalid(path: ReadonlyArray<PropertyKey>, message: string): BundleError {
  const field = formatFieldPath(path);
  return new BundleError("manifest_invalid", `manifest: ${field === "" ? "" : field + ": "}${message}`, {
    details: { field },
  });
}

function zodError(issues: ReadonlyArray<z.core.$ZodIssue>): BundleError {
  const unknown = issues.find((i) => i.code === "unrecognized_keys");
  const issue = unknown ?? issues[0];
  if (issue === undefined) return invalid([], "invalid manifest");
  if (issue.code === "unrecognized_keys") {
    const key = issue.keys[0] ?? "";
    const context = [...issue.path].reverse().find((s) => typeof s === "string") ?? "";
    const allowed = ALLOWED_KEYS[typeof context === "string" ? context : ""];
    return invalid([...issue.path, key], `unknown key${allowed === undefined ? "" : ` (allowed: ${allowed.join(", ")})`}`);
  }
  return invalid(issue.path, issue.message);
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

/** Parses zerocell.toml text; the error names the field path. */
export function parseManifest(text: string): Manifest {
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
  const runtime = (doc as Record<string, unknown>).runtime;
  if (typeof runtime === "string" && UNAVAILABLE_RUNTIMES.has(runtime)) {
    throw new BundleError(
      "runtime_unavailable",
      `manifest: runtime ${q(runtime)} is not available in this build (supported: ${SUPPORTED_RUNTIMES.join(", ")})`,
      { details: { field: "runtime", runtime } },
    );
  }
  // zod would silently drop a "__proto__" key from a record (assignment sets the prototype).
  const rawIni = ((doc as Record<string, unknown>).php as Record<string, unknown> | undefined)?.ini;
  if (typeof rawIni === "object" && rawIni !== null && Object.hasOwn(rawIni, "__proto__")) {
    throw invalid(["php", "ini", "__proto__"], '"__proto__" is not a php.ini key');
  }
  const result = ManifestSchema.safeParse(doc);
  if (!result.success) throw zodError(result.error.issues);
  const raw = result.data;
  const php = raw.php ?? PhpSchema.parse({});
  const limits = raw.limits ?? LimitsSchema.parse({});

  // php.document_root / php.front_controller
  const root = checkRelativePath(php.document_root, MANIFEST_PATH_RULES);
  if (!root.ok) throw invalid(["php", "document_root"], `${q(php.document_root)} ${root.reason}`);
  let frontController: string | null = null;
  if (php.front_controller !== undefined) {
    const fc = checkRelativePath(php.front_controller, MANIFEST_PATH_RULES);
    if (!fc.ok) throw invalid(["php", "front_controller"], `${q(php.front_controller)} ${fc.reason}`);
    if (fc.path === "") throw invalid(["php", "front_controller"], "must name a file inside php.document_root");
    frontController = fc.path;
  }

  // php.ini
  const ini: Record<string, string> = {};
  for (const [key, value] of Object.entries(php.ini)) {
    const at = ["php", "ini", key];
    if (!INI_KEY.test(key)) throw invalid(at, `${q(key)} is not a php.ini key (a-z, 0-9, "_" and "." only)`);
    if (FORBIDDEN_INI_KEYS.has(key) || FORBIDDEN_INI_PREFIXES.some((p) => key.startsWith(p))) {
      throw invalid(at, `${q(key)} cannot be set by a bundle (the platform controls it)`);
    }
    if (typeof value === "number" && !Number.isFinite(value)) throw invalid(at, "must be a finite number");
    const text = typeof value === "boolean" ? (value ? "1" : "0") : String(value);
    if (CONTROL_CHARS.test(text)) throw invalid(at, "must not contain control characters (newlines, NUL, …)");
    ini[key] = text;
  }

  // routes
  const routes: ManifestRoute[] = [];
  const seen = new Map<string, number>();
  raw.routes.forEach((r, i) => {
    const host = r.host.toLowerCase();
    const hostError = checkHostPattern(host);
    if (hostError !== undefined) throw invalid(["routes", i, "host"], `${q(r.host)}: ${hostError}`);
    const pathError = checkPathPattern(r.path);
    if (pathError !== undefined) throw invalid(["routes", i, "path"], `${q(r.path)}: ${pathError}`);
    const route: ManifestRoute = { host, path: r.path, mode: r.mode };
    if (r.key !== undefined) {
      const params = r.path.split("/").filter((s) => s.startsWith(":")).map((s) => s.slice(1));
      if (!params.includes(r.key)) {
        throw invalid(["routes", i, "key"], `${q(r.key)} is not a :param of path ${q(r.path)}`);
      }
      route.key = r.key;
    }
    const id = `${host} ${canonicalPath(r.path)}`;
    const earlier = seen.get(id);
    if (earlier !== undefined) throw invalid(["routes", i], `has the same host and path as routes[${earlier}]`);
    seen.set(id, i);
    routes.push(route);
  });

  // warmup
  raw.warmup.forEach((p, i) => {
    if (!p.startsWith("/") || p.length > MAX_WARMUP_PATH || /[\s\u0000-\u001f\u007f]/.test(p)) {
      throw invalid(["warmup", i], `${q(p)} must be a request path starting with "/" (no spaces or control characters)`);
    }
  });

  const python = raw.python ?? PythonSchema.parse({});
  return {
    runtime: raw.runtime,
    python: { app: python.app, path: [...python.path] },
    x86: { program: (raw.x86 ?? X86Schema.parse({})).program },
    php: {
      version: php.version,
      documentRoot: root.path === "" ? "." : root.path,
      ini,
      frontController,
    },
    routes,
    limits: { timeoutMs: limits.timeout_ms, memoryMb: limits.memory_mb, maxBodyBytes: limits.max_body_bytes, dataMb: limits.data_mb },
    warmup: [...raw.warmup],
  };
}
