/** The deploy pipeline, shared by the admin API and `serve --examples`. */
import type { Platform } from "../platform/index.js";
import { loadBundle } from "../bundle/index.js";
import { validateBundle } from "../runtime/index.js";
import { InputError } from "../errors.js";
import { checkHostPattern, type RouteSpec } from "../router/index.js";
import type { DeploymentInfo } from "../store/index.js";
import { log } from "../log.js";

/**
 * `privileged`: an admin token deploys (may route "*" and public suffixes; never another
 * account's hosts, which the store refuses to everyone).
 */
export function deployBundle(platform: Platform, input: { appName: string; archive: Buffer; hosts: string[]; accountId: string; privileged?: boolean }): DeploymentInfo {
  const t0 = performance.now();
  const { appName, archive } = input;
  if (archive.length === 0) throw new InputError("deploy: empty body; send the bundle as a .tar.gz");
  const hosts = input.hosts.map((h) => h.toLowerCase());
  for (const h of hosts) {
    const err = checkHostPattern(h);
    if (err !== undefined) throw new InputError(`deploy: --host "${h.slice(0, 80)}": ${err}`, { code: "bad_host" });
  }
  // 1. parse and check the untrusted bundle
  const { image, manifest } = loadBundle(archive);
  validateBundle(manifest, image);
  // 2. routes: the manifest's, plus one per --host, or <app>.localhost by default
  const routes: RouteSpec[] = [...manifest.routes];
  for (const h of hosts) routes.push({ host: h, path: "/", mode: "snapshot" });
  if (routes.length === 0) routes.push({ host: `${appName}.localhost`, path: "/", mode: "snapshot" });
  const seen = new Set<string>();
  const unique = routes.filter((r) => {
    const k = `${r.host} ${r.path}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  // 3. store the bundle (content-addressed), 4. record and activate in one transaction
  const sha = platform.blobs.put(archive);
  const deployment = platform.store.createDeployment({
    appName,
    accountId: input.accountId,
    runtime: manifest.runtime,
    bundleSha256: sha,
    bundleBytes: archive.length,
    manifest,
    routes: unique,
    privileged: input.privileged === true,
  });
  // 5. swap the route table; the old version drains
  platform.reloadRoutes();
  log.info("deployed", { app: appName, version: deployment.version, deployment: deployment.id, ms: Math.round(performance.now() - t0) });
  return deployment;
}
