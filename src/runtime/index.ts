/**
 * Runtimes as the gateway uses them: deploy-time checks, build ids and host flags, all from the
 * registry (registry.ts, the one place that lists runtimes). The engine a sandbox host runs is
 * loaded lazily (load.ts); nothing here imports an engine.
 */
import type { BundleImage, Manifest } from "../bundle/index.js";
import { RUNTIMES } from "./registry.js";

export type { Engine, EngineInstance, EngineRequest, EngineResponse, EngineSpec, PortableSnapshot } from "./engine.js";
export { RUNTIMES, findRuntime, type RuntimeDescriptor, type RuntimeName } from "./registry.js";
export { MANIFEST, loadBundle, parseManifest } from "./manifest.js";

/** Static checks at deploy (rejects with a BundleError). */
export async function validateBundle(manifest: Manifest, image: BundleImage): Promise<void> {
  await RUNTIMES[manifest.runtime].validate(manifest, image);
}

/** What a stored snapshot of this deployment depends on besides the deployment itself. */
export function engineBuildId(manifest: Manifest): string {
  return RUNTIMES[manifest.runtime].buildId(manifest);
}

/** Extra Node flags for a runtime's sandbox host. */
export function hostFlags(runtime: Manifest["runtime"]): string[] {
  return [...RUNTIMES[runtime].hostFlags];
}

/** Boot allowance of a runtime's first warm-up request, ms (registry.ts). */
export function warmupBootAllowanceMs(runtime: Manifest["runtime"]): number {
  return RUNTIMES[runtime].warmupBootAllowanceMs;
}
