/**
 * Deployment bundles: untrusted .tar.gz archives with a zerocell.toml at the root.
 *
 *  - readBundleArchive: archive → BundleImage (all limits and path/link rules enforced);
 *  - createManifestParser: zerocell.toml text → Manifest (defaults filled), given each runtime's
 *    table (the registry composes it: src/runtime/manifest.ts parseManifest, loadBundle);
 *  - readBundleWithManifest: both, plus each table's checks against the files;
 *  - encodeImage / decodeImage: binary transport form of an image between processes;
 *  - packDirectory: the CLI side, a reproducible .tar.gz of a directory.
 *
 * Error codes (all BundleError, HTTP 400, unless noted):
 *   bundle_too_large (PayloadTooLargeError subclass, HTTP 413) · compression_bomb · bundle_corrupt ·
 *   bundle_bad_path · bundle_bad_entry · bundle_duplicate · manifest_missing · manifest_invalid ·
 *   image_corrupt
 */
import { BundleError } from "../errors.js";
import { readBundleArchive, type BundleImage, type BundleLimits } from "./archive.js";
import { q } from "./errors.js";
import { MANIFEST_FILE, MAX_MANIFEST_BYTES, type Manifest, type ManifestParser } from "./manifest.js";

export {
  DEFAULT_BUNDLE_LIMITS,
  readBundleArchive,
  type BundleEntry,
  type BundleImage,
  type BundleLimits,
} from "./archive.js";
export { BundleTooLargeError } from "./errors.js";
export { decodeImage, encodeImage } from "./image.js";
export {
  MANIFEST_FILE,
  MAX_MANIFEST_BYTES,
  createManifestParser,
  healthPaths,
  type Manifest,
  type ManifestLimits,
  type ManifestParser,
  type ManifestRoute,
  type ManifestSection,
  type ManifestSections,
  type RuntimeName,
  type RuntimeSections,
} from "./manifest.js";
export { packDirectory, packDirectoryReport, imageToTar, IGNORE_FILE, DEFAULT_PACK_IGNORES } from "./pack.js";

function missingManifest(image: BundleImage): BundleError {
  const nested = image.entries.find((e) => e.path.endsWith("/" + MANIFEST_FILE) && e.path.split("/").length === 2);
  const hint =
    nested === undefined ?
      ""
    : ` (found ${q(nested.path)}: pack the contents of that folder, not the folder itself)`;
  return new BundleError("manifest_missing", `bundle: no ${MANIFEST_FILE} at the root of the bundle${hint}`);
}

/**
 * readBundleArchive + find and parse zerocell.toml at the root (with `manifests`, the registry's
 * parser: src/runtime/manifest.ts loadBundle) + each runtime table's checks against the files.
 */
export function readBundleWithManifest(archive: Buffer, manifests: ManifestParser, limits?: Partial<BundleLimits>): { image: BundleImage; manifest: Manifest } {
  const image = readBundleArchive(archive, limits);
  const file = image.entries.find((e) => e.path === MANIFEST_FILE);
  if (file === undefined) throw missingManifest(image);
  if (file.kind !== "file" || file.data === undefined) {
    throw new BundleError("manifest_invalid", `manifest: ${MANIFEST_FILE} must be a regular file, not a ${file.kind}`);
  }
  if (file.data.length > MAX_MANIFEST_BYTES) {
    throw new BundleError(
      "manifest_invalid",
      `manifest: ${MANIFEST_FILE} is ${file.data.length} bytes, exceeds limit of ${MAX_MANIFEST_BYTES} bytes`,
    );
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(file.data);
  } catch {
    throw new BundleError("manifest_invalid", `manifest: ${MANIFEST_FILE} is not valid UTF-8`);
  }
  return { image, manifest: manifests.checkImage(manifests.parse(text), image) };
}
