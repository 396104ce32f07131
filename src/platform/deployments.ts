/**
 * Deployments as the pool sees them: the bundle image (decoded once, LRU-cached by content
 * hash), the manifest of every active deployment, and the snapshot policy (a snapshot is loaded
 * and stored only for the deployment and engine build it was made by).
 * Must never: hand the pool a snapshot of another deployment or engine build.
 */
import { LRUCache } from "lru-cache";
import { readBundleArchive, encodeImage, decodeImage, type BundleImage, type Manifest } from "../bundle/index.js";
import type { BlobStore, Store } from "../store/index.js";
import { imageBytes, type SnapshotStore } from "../snapshot/store.js";
import { snapshotFiles } from "../snapshot/files.js";
import type { AppEnv } from "./app-env.js";
import type { DeploymentSource } from "../pool/index.js";
import { engineBuildId } from "../runtime/index.js";
import { SandboxError } from "../errors.js";
import { log } from "../log.js";

/** Decoded bundle images kept in memory, bytes. */
const IMAGE_CACHE_BYTES = 128 * 1024 * 1024;

export class DeploymentCatalog {
  readonly #store: Store;
  readonly #blobs: BlobStore;
  readonly #snapshots: SnapshotStore;
  readonly #env: AppEnv;
  readonly #manifests = new Map<string, Manifest>();
  readonly #images = new LRUCache<string, Buffer>({ maxSize: IMAGE_CACHE_BYTES, sizeCalculation: (b) => Math.max(1, b.length) });
  /**
   * Deployments that exist only in memory (a POSTed program run against objects): never in the
   * store, no snapshot stored. Bounded; the pool retires one when it leaves (onEphemeralGone).
   */
  readonly #ephemeral: LRUCache<string, { appName: string; manifest: Manifest; image: Buffer; env?: Record<string, string> }>;
  onEphemeralGone: () => void = () => {};

  constructor(store: Store, blobs: BlobStore, snapshots: SnapshotStore, env: AppEnv) {
    this.#env = env;
    this.#ephemeral = new LRUCache({ max: 64, dispose: () => queueMicrotask(() => this.onEphemeralGone()) });
    this.#store = store;
    this.#blobs = blobs;
    this.#snapshots = snapshots;
  }

  /** The manifest of an active deployment (undefined once it is retired). */
  manifest(deploymentId: string): Manifest | undefined {
    return this.#manifests.get(deploymentId) ?? this.#ephemeral.get(deploymentId)?.manifest;
  }

  /** Registers (or touches) an in-memory deployment; `image` is encodeImage() of its bundle. */
  addEphemeral(id: string, appName: string, manifest: Manifest, image: Buffer): void {
    if (this.#ephemeral.get(id) === undefined) this.#ephemeral.set(id, { appName, manifest, image });
  }

  /**
   * Registers (or touches) an in-memory copy of a stored deployment with another manifest (a
   * job's arguments for a stdio program): the same bundle and env. False when `from` is gone.
   */
  deriveEphemeral(id: string, from: string, manifest: Manifest): boolean {
    if (this.#ephemeral.get(id) !== undefined) return true;
    const d = this.#store.getDeployment(from);
    if (d === undefined) return false;
    this.#ephemeral.set(id, { appName: d.app, manifest, image: this.#encodedImage(d.bundleSha256), env: this.#env.values(d.appId, this.#store.deploymentEnv(d.id)) });
    return true;
  }

  ephemeralIds(): string[] {
    return [...this.#ephemeral.keys()];
  }

  /** Keeps the manifests of exactly these deployments (after a route change). */
  retain(active: Set<string>): void {
    for (const id of active) {
      if (this.#manifests.has(id)) continue;
      const d = this.#store.getDeployment(id);
      if (d !== undefined) this.#manifests.set(d.id, d.manifest as Manifest);
    }
    for (const id of this.#manifests.keys()) if (!active.has(id)) this.#manifests.delete(id);
  }

  #encodedImage(bundleSha256: string): Buffer {
    let image = this.#images.get(bundleSha256);
    if (image === undefined) {
      image = encodeImage(readBundleArchive(this.#blobs.get(bundleSha256)));
      this.#images.set(bundleSha256, image);
    }
    return image;
  }

  /** A deployment's files and when it was made, for the gateway's static files (src/gateway/static.ts). */
  bundle(id: string): { image: BundleImage; manifest: Manifest; createdAt: Date } | undefined {
    const d = this.#store.getDeployment(id);
    if (d === undefined) return undefined;
    return { image: decodeImage(this.#encodedImage(d.bundleSha256)), manifest: d.manifest as Manifest, createdAt: new Date(d.createdAt) };
  }

  /** What the pool needs to start hosts of a deployment. */
  source(id: string): DeploymentSource {
    const e = this.#ephemeral.get(id);
    if (e !== undefined) {
      // Nothing is stored for these: hosts start cold and keep their snapshot to themselves.
      return { deploymentId: id, appName: e.appName, manifest: e.manifest, image: e.image, env: e.env ?? {}, loadSnapshot: async () => undefined, hasSnapshot: () => true, saveSnapshot: () => {} };
    }
    const d = this.#store.getDeployment(id);
    if (d === undefined) throw new SandboxError("deployment_missing", 500, `pool: deployment ${id} not found`);
    const image = this.#encodedImage(d.bundleSha256);
    const manifest = d.manifest as Manifest;
    const build = engineBuildId(manifest);
    return {
      deploymentId: d.id,
      appName: d.app,
      // Instances of one account may share a host process (--instances-per-host); never two accounts'.
      accountId: d.accountId,
      manifest,
      image,
      // The env is part of the deployment (an env change is a new deployment), so the snapshot
      // stored under this deployment id was taken with exactly these values.
      env: this.#env.values(d.appId, this.#store.deploymentEnv(d.id)),
      // PHP and Python hosts map the image from a file (decompressed once); x86 gets the bytes.
      loadSnapshot: () => this.#snapshots.loadForHost(d.id, build, manifest.runtime === "x86" ? undefined : snapshotFiles()),
      hasSnapshot: () => this.#snapshots.has(d.id, build),
      saveSnapshot: (img) => {
        if (img.engineBuild !== build) {
          log.warn("snapshot refused", { deploymentId: d.id, got: img.engineBuild.slice(0, 256), want: build });
          return;
        }
        this.#snapshots.save(d.id, img).then(
          (r) => {
            log.info("snapshot stored", { deploymentId: d.id, app: d.app, bytes: r.bytes, memoryBytes: imageBytes(img), sha256: r.sha256 });
            if (manifest.runtime !== "x86") this.#snapshots.prefetchFile(d.id, build, snapshotFiles());
          },
          (e: unknown) => log.error("snapshot store failed", { deploymentId: d.id, err: (e as Error).message }),
        );
      },
    };
  }
}
