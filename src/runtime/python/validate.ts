/**
 * Python (WSGI) bundle checks, the `[python]` settings and the engine build id, without loading
 * Pyodide (the gateway runs these at deploy).
 *
 * The manifest parser reads the `[python]` table (descriptor.ts: `app`, default
 * "app:application"; `path`, default []); pythonSettings() checks it again here, since a Manifest
 * may be built by hand or read back from the store, and falls back to the same defaults.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import type { BundleImage, Manifest } from "../../bundle/index.js";
import { lookupEntry } from "../../bundle/archive.js";
import { checkRelativePath } from "../../bundle/paths.js";
import { BundleError } from "../../errors.js";

export const APP_ROOT = "/app";
export const TMP_DIR = "/tmp";
export const DATA_DIR = "/data";

export interface PythonSettings {
  /** "module:callable" (PEP 3333 application object). */
  app: string;
  /** Bundle-relative directories added to sys.path after the bundle root, in order. */
  path: string[];
}

export const DEFAULT_PYTHON_SETTINGS: PythonSettings = Object.freeze({ app: "app:application", path: [] as string[] }) as PythonSettings;

const APP_SPEC = /^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$/;
const MAX_PATHS = 16;
const PATH_RULES = { maxPathLength: 1024, maxDepth: 32 };
/** Top-level names a bundle may not shadow or use as its app module: the sandbox's own plumbing. */
const RESERVED_MODULES = new Set(["__zerocell__", "js", "pyodide", "pyodide_js", "_pyodide", "_pyodide_core", "micropip"]);

function invalid(field: string, message: string): BundleError {
  return new BundleError("manifest_invalid", `manifest: ${field}: ${message}`, { details: { field } });
}

/** Reads and shape-checks the `[python]` settings; throws BundleError naming the field. */
export function pythonSettings(manifest: Manifest): PythonSettings {
  const raw: unknown = (manifest as unknown as { python?: unknown }).python ?? DEFAULT_PYTHON_SETTINGS;
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw invalid("python", "must be a table");
  const r = raw as Record<string, unknown>;
  for (const key of Object.keys(r)) {
    if (key !== "app" && key !== "path") throw invalid(`python.${key}`, "unknown key (allowed: app, path)");
  }
  const app = r.app ?? DEFAULT_PYTHON_SETTINGS.app;
  if (typeof app !== "string") throw invalid("python.app", "must be a string");
  if (!APP_SPEC.test(app) || app.length > 512) throw invalid("python.app", `${JSON.stringify(app.slice(0, 200))} must look like "module:callable" (dotted names)`);
  const top = app.split(/[.:]/)[0]!;
  if (RESERVED_MODULES.has(top)) throw invalid("python.app", `module ${JSON.stringify(top)} is reserved by the sandbox`);
  const rawPath = r.path ?? [];
  if (!Array.isArray(rawPath) || rawPath.some((p) => typeof p !== "string")) throw invalid("python.path", "must be an array of strings");
  if (rawPath.length > MAX_PATHS) throw invalid("python.path", `must have at most ${MAX_PATHS} entries`);
  const path: string[] = [];
  (rawPath as string[]).forEach((p, i) => {
    const c = checkRelativePath(p, PATH_RULES);
    if (!c.ok) throw invalid(`python.path[${i}]`, `${JSON.stringify(p.slice(0, 200))} ${c.reason}`);
    if (c.path === "") throw invalid(`python.path[${i}]`, "the bundle root is always on sys.path; name a subdirectory");
    if (!path.includes(c.path)) path.push(c.path);
  });
  return { app, path };
}

/** Static checks at deploy: settings, the path directories exist, the app module is in the bundle. */
export function validatePythonBundle(manifest: Manifest, image: BundleImage): PythonSettings {
  const runtime = (manifest as unknown as { runtime?: unknown }).runtime;
  if (runtime !== "python") throw invalid("runtime", `must be "python" for the Python engine (got ${JSON.stringify(runtime)})`);
  const settings = pythonSettings(manifest);
  settings.path.forEach((p, i) => {
    const e = lookupEntry(image, p);
    if (e === undefined || e.kind !== "dir") throw invalid(`python.path[${i}]`, `${JSON.stringify(p)} is not a directory in the bundle`);
  });
  const module = settings.app.split(":")[0]!;
  const rel = module.split(".").join("/");
  const roots = ["", ...settings.path];
  const found = roots.some((root) => {
    const base = root === "" ? rel : `${root}/${rel}`;
    return lookupEntry(image, `${base}.py`)?.kind === "file" || lookupEntry(image, `${base}/__init__.py`)?.kind === "file" || lookupEntry(image, base)?.kind === "dir";
  });
  if (!found) {
    throw invalid("python.app", `module ${JSON.stringify(module)} is not in the bundle (looked for ${rel}.py and ${rel}/__init__.py in the bundle root${settings.path.length > 0 ? ` and ${settings.path.join(", ")}` : ""})`);
  }
  return settings;
}

/** Bump when the engine's boot changes in a way that makes old snapshots wrong. */
export const PYTHON_ENGINE_REVISION = 1;
const require = createRequire(import.meta.url);
let pyodideVersion: string | undefined;

function pyodidePackageVersion(): string {
  pyodideVersion ??= (JSON.parse(readFileSync(require.resolve("pyodide/package.json"), "utf8")) as { version: string }).version;
  return pyodideVersion;
}

/**
 * Everything a snapshot's memory depends on besides the deployment: the Pyodide build, this
 * engine's revision, the settings that shape the boot (sys.path, app module) and the memory cap.
 * Gateway and host compute it the same way; a stored snapshot with another id is never loaded.
 */
export function pythonEngineBuild(manifest: Manifest): string {
  const s = pythonSettings(manifest);
  const h = createHash("sha256").update(JSON.stringify({ app: s.app, path: s.path, memoryMb: manifest.limits.memoryMb })).digest("hex").slice(0, 12);
  return `pyodide-${pyodidePackageVersion()}/engine-${PYTHON_ENGINE_REVISION}/cfg-${h}`;
}
