/**
 * Loads the Python side of the engine, module `__zerocell__` (driver.py, next to this file): it
 * seals Pyodide's JavaScript bridge away from guest code, imports the app and runs one WSGI
 * request per `begin`/`run` pair (driver.py's own header says how the host talks to it).
 *
 * driver.py is a real source file, read at run time from the installed package: in src/ under the
 * tests, in dist/ for hosts (`npm run build` and scripts/setup.sh copy it after tsc:
 * scripts/copy-assets.mjs). Hosts may read dist/ under Node's permission model, so that is where
 * it must be. It is read once per process.
 * Must never: read the driver from anywhere but next to this module.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** driver.py beside this module (src/runtime/python/ or dist/src/runtime/python/). */
const DRIVER_URL = new URL("./driver.py", import.meta.url);

let driverSource: string | undefined;

/** The driver's Python source (read once per process). */
export function readDriverSource(): string {
  if (driverSource === undefined) {
    try {
      driverSource = readFileSync(DRIVER_URL, "utf8");
    } catch (e) {
      throw new Error(`python: cannot read the driver ${fileURLToPath(DRIVER_URL)} (the build copies it next to driver.js: scripts/copy-assets.mjs)`, { cause: e });
    }
  }
  return driverSource;
}

/**
 * Installs `__zerocell__` from driver.py (run through runPython; leaves nothing in __main__). The
 * source travels as a string literal and is compiled as '<zerocell>': no host path in tracebacks.
 */
export function driverInstallCode(): string {
  return [
    "import builtins as _zb, sys as _zs, types as _zt",
    "_zm = _zt.ModuleType('__zerocell__')",
    // The driver's own copy of the builtins: an app that replaces builtins.len or isinstance
    // changes the builtins module, not this dict.
    "_zm.__dict__['__builtins__'] = dict(_zb.__dict__)",
    `exec(compile(${JSON.stringify(readDriverSource())}, '<zerocell>', 'exec'), _zm.__dict__)`,
    "_zs.modules['__zerocell__'] = _zm",
    "del _zb, _zs, _zt, _zm",
    "'ok'",
  ].join("\n");
}
