/**
 * One app request through the platform, in the order it meets the parts:
 *   1. route (host, path) → deployment, 2. read the body under the app's limit,
 *   3. run it in the pool (keyed routes: one at a time per key, with the key's /data),
 *   4. answer (the app's headers checked and framed by us), 5. log and meter.
 * Only the gateway turns errors into responses (respond.ts).
 * Must never: pass an app's hop-by-hop or framing headers through, or wait on a sandbox without
 * its time limit.
 */
import http from "node:http";
import { randomUUID } from "node:crypto";
import { normalizeHost, type RouteMatch } from "../router/index.js";
import { decodeKey, type Platform } from "../platform/index.js";
import type { PoolRunResult } from "../pool/index.js";
import type { EngineRequest } from "../runtime/engine.js";
import { PayloadTooLargeError, RouteNotFoundError, SandboxError, ZerocellError } from "../errors.js";
import { errorToResponse } from "./respond.js";
import { readStreamLimited } from "./body.js";
import { StaticFiles } from "./static.js";
import { log } from "../log.js";

const HOP_BY_HOP = new Set(["connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection", "te", "trailer", "content-length", "x-powered-by"]);
const EMPTY_BODY = Buffer.alloc(0);

/**
 * The request body under the app's limit. A request that declares no body (no Content-Length or
 * 0, no Transfer-Encoding: most GETs) is answered from the Node request's headers without
 * building the Web Request and its stream.
 */
async function readBody(req: Request, incoming: http.IncomingMessage, limit: number): Promise<Buffer> {
  const declared = incoming.headers["content-length"];
  if (declared !== undefined && Number(declared) > limit) {
    throw new PayloadTooLargeError(`gateway: request body of ${declared} bytes exceeds the app's limit of ${limit} bytes`);
  }
  if ((declared === undefined || declared === "0") && incoming.headers["transfer-encoding"] === undefined) return EMPTY_BODY;
  if (req.body === null) return EMPTY_BODY;
  return readStreamLimited(req.body, limit, () => new PayloadTooLargeError(`gateway: request body exceeds the app's limit of ${limit} bytes`));
}

/** The request as the sandbox sees it. */
function toEngineRequest(req: Request, incoming: http.IncomingMessage, url: URL, host: string, body: Buffer, isHttps: boolean, localPort: number, match: RouteMatch, requestId: string): EngineRequest {
  const headers: Array<[string, string]> = [];
  for (let i = 0; i < incoming.rawHeaders.length; i += 2) headers.push([incoming.rawHeaders[i]!.toLowerCase(), incoming.rawHeaders[i + 1]!]);
  return {
    method: req.method,
    url: url.pathname + url.search,
    headers,
    body,
    remoteAddr: incoming.socket.remoteAddress ?? "",
    remotePort: incoming.socket.remotePort ?? 0,
    https: isHttps,
    serverName: host,
    serverPort: localPort,
    scriptName: match.matchedPrefix,
    params: match.params,
    requestId,
  };
}

/**
 * The app's headers as a plain object for writeHead (repeats as arrays), each name and value
 * checked by node:http; hop-by-hop, framing and the platform's own headers dropped.
 */
export function appHeaders(headers: Array<[string, string]>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>;
  for (const [rawName, value] of headers) {
    const name = rawName.toLowerCase();
    if (HOP_BY_HOP.has(name) || name.startsWith("x-zerocell-") || name === "x-request-id" || name === "server-timing") continue;
    try {
      http.validateHeaderName(name);
      http.validateHeaderValue(name, value);
    } catch {
      throw new SandboxError("bad_response", 502, `sandbox: the app sent an invalid header "${rawName.slice(0, 64)}"`);
    }
    const prev = out[name];
    out[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
  }
  return out;
}

/**
 * ready = request arrival → guest code starting in its sandbox (clamped: two processes' clocks);
 * guest = the guest's own CPU inside run, cpu = the host's CPU for the request (both as the host
 * reports them: display only).
 */
function serverTiming(res: PoolRunResult, arrivedAt: number, totalMs: number): string {
  const readyMs = res.startedAt === undefined ? undefined : Math.max(0, res.startedAt - arrivedAt);
  const guest = res.guestMs === undefined ? "" : `, guest;dur=${res.guestMs.toFixed(3)}`;
  const cpu = res.cpuUs === undefined ? "" : `, cpu;dur=${(res.cpuUs / 1000).toFixed(3)}`;
  // A new host's start (its first request only): s-admit, s-snapfetch, s-send, s-engine, s-prepare,
  // s-instantiate, s-import (src/pool/host.ts startPhases).
  const start = res.startPhases === undefined ? "" : Object.entries(res.startPhases).map(([k, v]) => `, s-${k};dur=${v.toFixed(3)}`).join("");
  return `${readyMs === undefined ? "" : `ready;dur=${readyMs.toFixed(3)}, `}acquire;dur=${res.acquireMs.toFixed(3)}, run;dur=${res.runMs.toFixed(3)}${guest}${cpu}, total;dur=${totalMs.toFixed(3)}${start}`;
}

export class AppHandler {
  readonly #p: Platform;
  /** App requests being served now (a shutdown waits for them before it stops the pool). */
  activeRequests = 0;

  readonly #static: StaticFiles;

  constructor(platform: Platform) {
    this.#p = platform;
    this.#static = new StaticFiles((id) => platform.deployments.bundle(id));
  }

  /** Serves one app request. */
  async handle(req: Request, incoming: http.IncomingMessage, isHttps: boolean, localPort: number): Promise<Response> {
    this.activeRequests++;
    try {
      return await this.#handle(req, incoming, isHttps, localPort);
    } finally {
      this.activeRequests--;
    }
  }

  async #handle(req: Request, incoming: http.IncomingMessage, isHttps: boolean, localPort: number): Promise<Response> {
    const p = this.#p;
    const requestId = randomUUID();
    const t0 = performance.now();
    const arrivedAt = performance.timeOrigin + t0;
    const startedAt = Date.now();
    // The URL's authority is the Host header for origin-form requests and the target's for
    // absolute-form ones (RFC 9112 §3.2.2: the target wins).
    const url = new URL(req.url);
    const host = normalizeHost(url.host);
    let match: RouteMatch | undefined;
    let status = 500;
    let bytesIn = 0;
    let bytesOut = 0;
    let wallUs = 0;
    let usage: { cpuUs: number | null; instructions: number | null } | undefined;
    let ran: PoolRunResult | undefined;
    try {
      // 1. route
      match = p.table.match(host, url.pathname);
      if (match === undefined) throw new RouteNotFoundError(host, url.pathname);
      const target = match.route.target;
      const manifest = p.deployments.manifest(target.deploymentId);
      if (manifest === undefined) throw new RouteNotFoundError(host, url.pathname);
      // 1b. a static file of the document root: answered here, no sandbox, not billed
      if (manifest.runtime === "php") {
        const file = await this.#static.serve(target.deploymentId, req.method, url.pathname, req.headers);
        if (file !== undefined) {
          status = file.status;
          file.headers.set("x-request-id", requestId);
          file.headers.set("x-zerocell-instance", "static");
          return file;
        }
      }
      // 2. read the body under the app's limit
      const body = await readBody(req, incoming, manifest.limits.maxBodyBytes);
      bytesIn = body.length;
      const engineReq = toEngineRequest(req, incoming, url, host, body, isHttps, localPort, match, requestId);
      // 3. run in the pool (keyed routes: one request per key at a time, with the key's /data)
      const sandboxStart = performance.now();
      const keyParam = match.route.key;
      const res =
        keyParam === undefined
          ? await p.pool.run(target.deploymentId, match.route.mode, engineReq, manifest.limits.timeoutMs)
          : await p.keyed.run(target, match.route.mode, decodeKey(match.params[keyParam] ?? ""), engineReq, manifest);
      wallUs = Math.round((performance.now() - sandboxStart) * 1000);
      ran = res;
      usage = { cpuUs: res.cpuUs ?? null, instructions: res.usage?.instructions ?? null };
      // 4. answer
      const out = appHeaders(res.headers);
      out["x-request-id"] = requestId;
      out["x-zerocell-instance"] = `${match.route.mode}; ${res.reused ? "reused" : "new"}`;
      out["server-timing"] = serverTiming(res, arrivedAt, performance.now() - t0);
      status = res.status;
      if (status < 200 || status > 599) throw new SandboxError("bad_response", 502, `sandbox: the app answered with status ${status}`);
      // A runtime error the app did not render itself (PHP's empty 500 after a fatal error, the
      // Python driver's marked 500): visitors get the short page with the request id; the
      // details are in the app's log lines.
      if (status >= 500 && (res.body.byteLength === 0 || res.headers.some(([n]) => n.toLowerCase() === "x-zerocell-error"))) {
        throw new ZerocellError("app_error", status, `the app failed while answering this request (request ${requestId})`);
      }
      bytesOut = res.body.byteLength;
      const noBody = req.method === "HEAD" || status === 204 || status === 304;
      if (!noBody) return new Response(res.body as Uint8Array<ArrayBuffer>, { status, headers: out as unknown as HeadersInit });
      // Without a body the response is built the slow way (a Headers object): keep repeats apart.
      const bodyless = new Headers();
      for (const [name, v] of Object.entries(out)) for (const one of Array.isArray(v) ? v : [v]) bodyless.append(name, one);
      return new Response(null, { status, headers: bodyless });
    } catch (e) {
      const r = errorToResponse(e, requestId, "page");
      status = r.status;
      return r;
    } finally {
      // 5. log and meter (a usage record for every request that reached a sandbox)
      const ms = performance.now() - t0;
      const target = match?.route.target;
      log.child({ requestId, app: target?.appName ?? null, deploymentId: target?.deploymentId ?? null, accountId: target?.accountId ?? null }).info("request", { host, path: url.pathname, status, ms: Math.round(ms * 1000) / 1000 });
      p.metrics.request({ app: target?.appName, status, totalMs: ms, readyMs: ran?.startedAt === undefined ? undefined : Math.max(0, ran.startedAt - arrivedAt), acquireMs: ran?.acquireMs });
      if (target !== undefined && wallUs > 0) {
        p.usage.record({
          requestId,
          accountId: target.accountId,
          appId: target.appId,
          deploymentId: target.deploymentId,
          routeKey: match?.route.key === undefined ? null : (match.params[match.route.key] ?? null),
          startedAt,
          wallUs,
          cpuUs: usage?.cpuUs ?? null,
          instructions: usage?.instructions ?? null,
          memoryMb: p.deployments.manifest(target.deploymentId)?.limits.memoryMb ?? 0,
          status,
          bytesIn,
          bytesOut,
          mode: match!.route.mode,
        });
      }
    }
  }
}
