/**
 * Runtimes by name: the one place that lists them. Each descriptor (src/runtime/<name>/
 * descriptor.ts, the RuntimeDescriptor interface in descriptor.ts) holds its manifest table, what
 * the gateway needs at deploy (bundle checks, the build id a snapshot depends on) without loading
 * the engine, the sandbox host's flags and boot allowance, and a lazy loader for the engine
 * itself (each pulls a large runtime). koffi, the one native addon, is loaded in sandbox hosts
 * only: x86 for Unicorn, PHP and Python for the dirty-page reset (src/snapshot/dirty-pages.ts,
 * ADR 002).
 * Adding a runtime: its folder and one line below (docs/architecture.md, "Adding a runtime").
 * Must never: import an engine (or koffi) at module load; the gateway imports this file.
 */
import type { ManifestSections } from "../bundle/index.js";
import type { RuntimeDescriptor, RuntimeName } from "./descriptor.js";
import { phpRuntime } from "./php/descriptor.js";
import { pythonRuntime } from "./python/descriptor.js";
import { x86Runtime } from "./x86/descriptor.js";

export type { RuntimeDescriptor, RuntimeName } from "./descriptor.js";

export const RUNTIMES: Readonly<Record<RuntimeName, RuntimeDescriptor>> = {
  php: phpRuntime,
  python: pythonRuntime,
  x86: x86Runtime,
};

/** The manifest tables of a set of runtimes, by runtime name (createManifestParser's input). */
export function manifestSectionsOf(runtimes: Readonly<Record<string, Pick<RuntimeDescriptor, "manifest">>>): ManifestSections {
  return Object.fromEntries(Object.entries(runtimes).map(([name, d]) => [name, d.manifest]));
}

/** The descriptor of a runtime named by untrusted text (a host's argv), or undefined. */
export function findRuntime(name: string | undefined): RuntimeDescriptor | undefined {
  return name !== undefined && Object.hasOwn(RUNTIMES, name) ? RUNTIMES[name as RuntimeName] : undefined;
}
