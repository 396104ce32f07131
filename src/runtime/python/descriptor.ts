/**
 * The Python (WSGI) runtime as the registry lists it: the [python] table, deploy-time checks and
 * build id (validate.ts), host flags, and the engine (index.ts, Pyodide) loaded lazily.
 */
import { z } from "zod";
import { defineManifestSection, str } from "../../bundle/manifest.js";
import type { RuntimeDescriptor } from "../descriptor.js";
import { pythonEngineBuild, validatePythonBundle } from "./validate.js";

/** The [python] table as a Manifest holds it. */
export interface PythonManifestSection {
  /** "module:callable" of the WSGI application. */
  app: string;
  /** Bundle directories added to sys.path. */
  path: string[];
}

declare module "../../bundle/manifest.js" {
  interface RuntimeSections {
    python: PythonManifestSection;
  }
}

export const pythonManifest = defineManifestSection({
  schema: z.strictObject(
    {
      app: str().default("app:application"),
      path: z.array(str(), { error: "must be an array of strings" }).max(16, { error: "must have at most 16 entries" }).default([]),
    },
    { error: "must be a table" },
  ),
  resolve: (t): PythonManifestSection => ({ app: t.app, path: [...t.path] }),
});

export const pythonRuntime: RuntimeDescriptor = {
  name: "python",
  manifest: pythonManifest,
  validate: (manifest, image) => {
    validatePythonBundle(manifest, image);
  },
  buildId: pythonEngineBuild,
  // Pyodide runs in a vm realm without code generation from strings; the process-wide flag
  // (every host has it, src/pool/spawn.ts) is a second wall (docs/python-sandbox.md).
  // koffi for the dirty-page reset, as for PHP: the realm holds no reference to host modules.
  hostFlags: ["--allow-addons"],
  // Pyodide boots (0.5–1 s from a spare's base image, 2–5 s cold, more on a loaded machine)
  // and imports the app inside the first warm-up request.
  warmupBootAllowanceMs: 15_000,
  load: async () => new (await import("./index.js")).PythonEngine(),
};
