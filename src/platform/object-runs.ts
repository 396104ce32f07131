/**
 * Code next to the data: runs a bound app's handler (src/objects/bindings.ts) with one object as
 * its input — the request body (stdin for x86 CGI programs, php://input for PHP, wsgi.input for
 * Python), its key, bucket, ETag, type and user metadata as headers — in the app's pool, in
 * snapshot mode, under the app's own limits, and meters it like an app request.
 * Must never: run an app of another account than the bucket's, or feed it more than the app's
 * max_body_bytes.
 */
import { randomUUID } from "node:crypto";
import type { Platform } from "./index.js";
import type { BindingInfo } from "../objects/bindings.js";
import type { ObjectInfo } from "../objects/index.js";
import type { PoolRunResult } from "../pool/index.js";
import type { EngineRequest } from "../runtime/engine.js";
import { ZerocellError } from "../errors.js";

export interface BoundRun {
  binding: BindingInfo;
  result: PoolRunResult;
}

/** The app and limits a binding runs: its active deployment, or a 503 when it has none. */
export function boundTarget(p: Platform, binding: BindingInfo): { deploymentId: string; maxBodyBytes: number; timeoutMs: number; memoryMb: number } {
  const app = p.store.listApps(binding.accountId).find((a) => a.id === binding.appId);
  const deploymentId = app?.activeDeploymentId ?? undefined;
  const manifest = deploymentId === undefined ? undefined : p.deployments.manifest(deploymentId);
  if (deploymentId === undefined || manifest === undefined) throw new ZerocellError("binding_app_inactive", 503, `objects: the app "${binding.app}" bound to this prefix has no active deployment`);
  return { deploymentId, maxBodyBytes: manifest.limits.maxBodyBytes, timeoutMs: manifest.limits.timeoutMs, memoryMb: manifest.limits.memoryMb };
}

/** Runs the binding's app once with the object (already read, within maxBodyBytes) as input. */
export async function runBoundObject(p: Platform, binding: BindingInfo, object: { bucket: string; info: ObjectInfo; body: Buffer }): Promise<PoolRunResult> {
  const target = boundTarget(p, binding);
  if (object.body.length > target.maxBodyBytes) throw new ZerocellError("object_too_large_for_app", 413, `objects: object of ${object.body.length} bytes exceeds the bound app's max_body_bytes of ${target.maxBodyBytes}`);
  const headers: Array<[string, string]> = [
    ["content-type", object.info.contentType],
    ["content-length", String(object.body.length)],
    ["x-zerocell-object-bucket", object.bucket],
    ["x-zerocell-object-key", encodeURIComponent(object.info.key)],
    ["x-zerocell-object-etag", object.info.etag],
    ...Object.entries(object.info.metadata).map(([k, v]): [string, string] => [`x-zerocell-meta-${k}`, v]),
  ];
  const req: EngineRequest = {
    method: "POST",
    // The key as the path (each segment percent-encoded): PATH_INFO for CGI, PATH_INFO for WSGI.
    url: "/" + object.info.key.split("/").map(encodeURIComponent).join("/"),
    headers,
    body: object.body,
    remoteAddr: "",
    remotePort: 0,
    https: true,
    serverName: "objects",
    serverPort: 0,
    scriptName: "",
    params: {},
  };
  const startedAt = Date.now();
  const t0 = performance.now();
  let status = 500;
  let result: PoolRunResult | undefined;
  try {
    result = await p.pool.run(target.deploymentId, "snapshot", req, target.timeoutMs);
    status = result.status;
    return result;
  } catch (e) {
    if (e instanceof ZerocellError) status = e.status;
    throw e;
  } finally {
    p.usage.record({
      requestId: `object-${randomUUID()}`,
      accountId: binding.accountId,
      appId: binding.appId,
      deploymentId: target.deploymentId,
      routeKey: null,
      startedAt,
      wallUs: Math.max(1, Math.round((performance.now() - t0) * 1000)),
      cpuUs: result?.cpuUs ?? null,
      instructions: result?.usage?.instructions ?? null,
      memoryMb: target.memoryMb,
      status,
      bytesIn: object.body.length,
      bytesOut: result?.body.byteLength ?? 0,
      mode: "object",
    });
  }
}
