/**
 * What a runtime tells the rest of the platform, without loading its engine: the manifest table,
 * the deploy-time checks, the build id snapshots depend on, the sandbox host's flags and boot
 * allowance, and a lazy loader for the engine itself. One per runtime, in
 * src/runtime/<name>/descriptor.ts; listed once in registry.ts.
 * Must never: import an engine (or koffi) at module load; the gateway imports every descriptor.
 */
import type { BundleImage, Manifest, ManifestSection, RuntimeName } from "../bundle/index.js";
import type { Engine } from "./engine.js";

export type { RuntimeName } from "../bundle/index.js";

export interface RuntimeDescriptor {
  readonly name: RuntimeName;
  /** The manifest's table named after the runtime ([php], [python], …). */
  readonly manifest: ManifestSection;
  /**
   * Static checks at deploy (throws BundleError); no engine loaded. May load a checker on first
   * use (x86: iced-x86), never an engine.
   */
  validate(manifest: Manifest, image: BundleImage): void | Promise<void>;
  /** What a stored snapshot of a deployment depends on besides the deployment itself. */
  buildId(manifest: Manifest): string;
  /** Extra Node flags for this runtime's sandbox hosts (src/pool/spawn.ts adds the common ones). */
  readonly hostFlags: readonly string[];
  /**
   * How long the runtime may take to boot inside the first warm-up request, on top of the app's
   * own timeout_ms, ms.
   */
  readonly warmupBootAllowanceMs: number;
  /** The engine, imported on first use (in a sandbox host only). */
  load(): Promise<Engine>;
}
