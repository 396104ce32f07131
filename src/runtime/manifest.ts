/**
 * The manifest of this build: src/bundle/manifest.ts's parser composed with every registered
 * runtime's table (registry.ts), and loadBundle with each table's checks against the files.
 */
import { createManifestParser, readBundleWithManifest, type BundleImage, type BundleLimits, type Manifest } from "../bundle/index.js";
import { manifestSectionsOf, RUNTIMES } from "./registry.js";

export const MANIFEST = createManifestParser(manifestSectionsOf(RUNTIMES));

/** zerocell.toml text → Manifest (defaults filled); the error names the field path. */
export function parseManifest(text: string): Manifest {
  return MANIFEST.parse(text);
}

/** readBundleArchive + find and parse zerocell.toml at the root + check the manifest against the files. */
export function loadBundle(archive: Buffer, limits?: Partial<BundleLimits>): { image: BundleImage; manifest: Manifest } {
  return readBundleWithManifest(archive, MANIFEST, limits);
}
