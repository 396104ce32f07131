/**
 * Deployment bundles: untrusted .tar.gz archives with a zerocell.toml at the root.
 *
 *  - readBundleArchive: archive → BundleImage (all limits and path/link rules enforced);
 *  - parseManifest: zerocell.toml text → Manifest (defaults filled);
 *  - loadBundle: both, plus manifest-vs-files checks (document root, front controller);
 *  - encodeImage / decodeImage: binary transport form of an image between processes;
 *  - packDirectory: the CLI side, a reproducible .tar.gz of a directory.
 *
 * Error codes (all BundleError, HTTP 400, unless noted):
 *   bundle_too_large (PayloadTooLargeError subclass, HTTP 413) · compression_bomb · bundle_corrupt ·
 *   bundle_bad_path · bundle_bad_entry · bundle_duplicate · manifest_missing · manifest_invalid ·
 *   runtime_unavailable · image_corrupt
 */
import { BundleError } from "../errors.js";
import { lookupEntry, readBundleArchive, type BundleImage, type BundleLimits } from "./archive.js";
import { q } from "./errors.js";
import { MANIFEST_FILE, MAX_MANIFEST_BYTES, parseManifest, type Manifest } from "./manifest.js";

export {
  DEFAULT_BUNDLE_LIMITS,
  readBundleArchive,
  type BundleEntry,
  type BundleImage,
  type BundleLimits,
} from "./archive.js";
export { BundleTooLargeError } from "./errors.js";
export { decodeImage, encodeImage } from "./image.js";
export { MANIFEST_FILE, MAX_MANIFEST_BYTES, healthPaths, parseManifest, checkPhpIniSetting, phpIniLine, PHP_INI_KEYS, type Manifest, type ManifestRoute } from "./manifest.js";
export { packDirectory, packDirectoryReport, imageToTar, IGNORE_FILE, DEFAULT_PACK_IGNORES } from "./pack.js";

function missingManifest(image: BundleImage): BundleError {
  const nested = image.entries.find((e) => e.path.endsWith("/" + MANIFEST_FILE) && e.path.split("/").length === 2);
  const hint =
    nested === undefined ?
      ""
    : ` (found ${q(nested.path)}: pack the contents of that folder, not the folder itself)`;
  return new BundleError("manifest_missing", `bundle: no ${MANIFEST_FILE} at the root of the bundle${hint}`);
}

/** readBundleArchive + find and parse zerocell.toml at the root + check the manifest against the files. */
export function loadBundle(archive: Buffer, limits?: Partial<BundleLimits>): { image: BundleImage; manifest: Manifest } {
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
  const manifest = parseManifest(text);

  const { documentRoot } = manifest.php;
  const rootPath = documentRoot === "." ? "" : documentRoot;
  const root = lookupEntry(image, rootPath);
  if (root === undefined) {
    throw new BundleError("manifest_invalid", `manifest: php.document_root: ${q(documentRoot)} does not exist in the bundle`, {
      details: { field: "php.document_root" },
    });
  }
  if (root.kind !== "dir") {
    throw new BundleError("manifest_invalid", `manifest: php.document_root: ${q(documentRoot)} is a ${root.kind}, not a directory`, {
      details: { field: "php.document_root" },
    });
  }

  const inRoot = (p: string) => (rootPath === "" ? p : `${rootPath}/${p}`);
  let frontController = manifest.php.frontController;
  if (frontController !== null) {
    const fc = lookupEntry(image, inRoot(frontController));
    if (fc === undefined || fc.kind !== "file") {
      throw new BundleError(
        "manifest_invalid",
        `manifest: php.front_controller: ${q(frontController)} is not a file in php.document_root ${q(documentRoot)}`,
        { details: { field: "php.front_controller" } },
      );
    }
  } else if (lookupEntry(image, inRoot("index.php"))?.kind === "file") {
    frontController = "index.php";
  }
  return { image, manifest: { ...manifest, php: { ...manifest.php, frontController } } };
}
