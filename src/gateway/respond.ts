/**
 * The one place where errors become HTTP responses. Known errors keep their code, status and
 * message; anything else is a generic 500 with the request id (the stack goes to the log only).
 */
import { isZerocellError, PoolSaturatedError } from "../errors.js";
import { log } from "../log.js";

export interface ErrorBody {
  error: { code: string; message: string; requestId: string; details?: Record<string, unknown> };
}

export function errorToResponse(e: unknown, requestId: string, format: "json" | "page"): Response {
  let status = 500;
  let code = "internal";
  let message = `internal error (request ${requestId})`;
  let details: Record<string, unknown> | undefined;
  const headers = new Headers({ "x-request-id": requestId, "cache-control": "no-store" });
  if (isZerocellError(e)) {
    status = e.status;
    code = e.code;
    message = e.message;
    details = e.details;
    if (e instanceof PoolSaturatedError) headers.set("retry-after", String(e.retryAfterS));
    if (status >= 500) log.warn("request failed", { requestId, code, message });
    // An engine's own JavaScript failing (the host said guest_error) may carry internals of the
    // sandbox in its text: visitors get a generic line, the log keeps the message.
    if (code === "guest_error") message = `sandbox: the app's engine failed while running this request (request ${requestId})`;
    // A start whose warm-up failed carries the app's log lines (a traceback, file paths): the
    // deployer sees them (deploy, `zerocell pool`, the server log), visitors do not.
    if (code === "warmup_failed" && format === "page") message = `sandbox: the app failed to start (request ${requestId})`;
  } else {
    log.error("unexpected error", { requestId, err: e instanceof Error ? (e.stack ?? e.message) : String(e) });
  }
  if (format === "json") {
    headers.set("content-type", "application/json");
    const body: ErrorBody = { error: { code, message, requestId, ...(details === undefined ? {} : { details }) } };
    return new Response(JSON.stringify(body), { status, headers });
  }
  headers.set("content-type", "text/html; charset=utf-8");
  const title = status === 404 ? "Not found" : status === 504 ? "Gateway timeout" : status === 503 ? "Service unavailable" : status === 413 ? "Payload too large" : `Error ${status}`;
  const page = `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head><body><h1>${title}</h1><p>${escapeHtml(message)}</p><p><small>zerocell · ${code} · request ${requestId}</small></p></body></html>\n`;
  return new Response(page, { status, headers });
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
