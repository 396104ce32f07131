/** The deploy pipeline, shared by the admin API and `serve --examples`. */
import type { Platform } from "../platform/index.js";
import { loadBundle, validateBundle } from "../runtime/index.js";
import { DeploymentFailedError, InputError, isZerocellError } from "../errors.js";
import { checkHostPattern, type RouteMode, type RouteSpec } from "../router/index.js";
import { appBaseHost } from "../router/hosts.js";
import { DEFAULT_ACCOUNT } from "../store/index.js";
import type { DeploymentInfo } from "../store/index.js";
import { log } from "../log.js";

/**
 * The pool a deployment's health check starts its host in: the mode of its first route that
 * shares a pool (the host then serves its first requests); a deployment with only per-key
 * daemon routes is checked in a snapshot-mode host that is stopped afterwards.
 */
function probeMode(routes: RouteSpec[]): { mode: RouteMode; keep: boolean } {
  const shared = routes.find((r) => !(r.key !== undefined && r.mode === "daemon"));
  return shared === undefined ? { mode: "snapshot", keep: false } : { mode: shared.mode, keep: true };
}

/** APP.ACCOUNT.BASE, or APP.BASE for the default account. */
export function defaultAppHost(platform: Platform, appName: string, accountId: string): string {
  const account = platform.store.accountName(accountId) ?? DEFAULT_ACCOUNT;
  return appBaseHost(appName, account, platform.store.baseDomain, account === DEFAULT_ACCOUNT);
}

/** ":PORT" of the HTTPS listener's URL, or "" for 443. */
export function httpsPortSuffix(httpsUrl: string): string {
  const port = new URL(httpsUrl).port;
  return port === "" || port === "443" ? "" : `:${port}`;
}

/**
 * The URL a deployment is reached at: its route on APP.ACCOUNT.BASE if it has one, else its
 * first route on an exact host (undefined if it has only wildcard routes or no listener yet).
 */
export function deploymentUrl(platform: Platform, d: DeploymentInfo, httpsUrl: string | undefined): string | undefined {
  if (httpsUrl === undefined) return undefined;
  const base = defaultAppHost(platform, d.app, d.accountId);
  const route = d.routes.find((r) => r.host === base) ?? d.routes.find((r) => !r.host.includes("*"));
  if (route === undefined) return undefined;
  return `https://${route.host}${httpsPortSuffix(httpsUrl)}${route.path.includes(":") ? "/" : route.path}`;
}

/**
 * `privileged`: an admin token deploys (may route "*" and public suffixes; never another
 * account's hosts, which the store refuses to everyone).
 */
export async function deployBundle(platform: Platform, input: { appName: string; archive: Buffer; hosts: string[]; accountId: string; privileged?: boolean }): Promise<DeploymentInfo> {
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
  await validateBundle(manifest, image);
  // 2. routes: the manifest's, plus one per --host, or APP.ACCOUNT.BASE (APP.BASE for the
  // default account) by default — a name the account holds without any claim
  const routes: RouteSpec[] = [...manifest.routes];
  for (const h of hosts) routes.push({ host: h, path: "/", mode: "snapshot" });
  if (routes.length === 0) routes.push({ host: defaultAppHost(platform, appName, input.accountId), path: "/", mode: "snapshot" });
  const seen = new Set<string>();
  const unique = routes.filter((r) => {
    const k = `${r.host} ${r.path}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  // 3. store the bundle (content-addressed), then steps 4–6
  const sha = platform.blobs.put(archive);
  return deployRevision(platform, { appName, accountId: input.accountId, runtime: manifest.runtime, bundleSha256: sha, bundleBytes: archive.length, manifest, routes: unique, privileged: input.privileged === true, t0 });
}

/**
 * Steps 4–6 of a deploy, for a bundle already stored: record the deployment as "checking",
 * health-check it, activate it. An env change runs this with the active deployment's bundle,
 * manifest and routes and the new env (`env`; undefined: the app's current env).
 */
export async function deployRevision(
  platform: Platform,
  input: { appName: string; accountId: string; runtime: string; bundleSha256: string; bundleBytes: number; manifest: unknown; routes: RouteSpec[]; privileged: boolean; env?: string | null; t0?: number },
): Promise<DeploymentInfo> {
  const t0 = input.t0 ?? performance.now();
  const { appName } = input;
  const unique = input.routes;
  // 4. record it as "checking" (not active yet)
  const pending = platform.store.createDeployment({
    appName,
    accountId: input.accountId,
    runtime: input.runtime,
    bundleSha256: input.bundleSha256,
    bundleBytes: input.bundleBytes,
    manifest: input.manifest,
    routes: unique,
    privileged: input.privileged,
    checking: true,
    ...(input.env === undefined ? {} : { env: input.env }),
  });
  // 5. health check: a host starts it (init, warm-up, health paths; no snapshot unless all pass).
  // The app's active deployment serves meanwhile and keeps serving if this one fails.
  const dlog = log.child({ app: appName, deploymentId: pending.id, accountId: input.accountId });
  const { mode, keep } = probeMode(unique);
  let started: { readyMs: number; phases: Record<string, number> };
  const tCheck = performance.now();
  let checkMs = 0;
  try {
    started = await platform.pool.probe(pending.id, mode, keep);
    checkMs = performance.now() - tCheck;
  } catch (e) {
    const reason = e instanceof Error ? e.message.replace(/^sandbox: /, "") : String(e);
    platform.store.failDeployment(pending.id, reason);
    dlog.warn("deploy failed its health check", { version: pending.version, code: isZerocellError(e) ? e.code : "unknown", error: reason.slice(0, 2000) });
    throw new DeploymentFailedError(`deploy: ${appName} v${pending.version} failed its health check and was not activated: ${reason}`, { deployment: pending.id, version: pending.version }, e);
  }
  // 6. activate (hosts and routes checked again) and swap the route table; the old version drains
  let deployment: DeploymentInfo;
  try {
    deployment = platform.store.activateDeployment(pending.id, input.privileged === true);
  } catch (e) {
    // A host or route taken while the check ran: this deployment never serves.
    platform.store.failDeployment(pending.id, e instanceof Error ? e.message : String(e));
    platform.reloadRoutes();
    throw e;
  }
  platform.reloadRoutes();
  // Where a deploy's time went (bench/density.mjs reads these): before the check (bundle checks,
  // blob, record), the check (the host's start, by phase), after it (activation, route table).
  const phases = Object.fromEntries(Object.entries(started.phases).map(([k, v]) => [k, Math.round(v)]));
  dlog.info("deployed", { version: deployment.version, ms: Math.round(performance.now() - t0), beforeCheckMs: Math.round(tCheck - t0), checkMs: Math.round(checkMs), hostReadyMs: Math.round(started.readyMs), startPhases: phases });
  return deployment;
}
