/**
 * One error type for the whole platform. Every part throws a subclass with a stable string
 * `code` and the HTTP `status` the gateway should answer with; only the gateway turns errors
 * into responses (src/gateway/respond.ts). Translate errors where they leave a module and keep
 * the original as `cause`.
 */
export class ZerocellError extends Error {
  readonly code: string;
  readonly status: number;
  /** Extra, safe-to-show details (never secrets, never stacks). */
  readonly details: Record<string, unknown> | undefined;

  constructor(
    code: string,
    status: number,
    message: string,
    options: { cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.status = status;
    this.details = options.details;
  }
}

/** A bundle or manifest that cannot be deployed. */
export class BundleError extends ZerocellError {
  constructor(code: string, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(code, 400, message, options);
  }
}

/** Bad admin API input (body, parameters). */
export class InputError extends ZerocellError {
  constructor(message: string, options: { cause?: unknown; details?: Record<string, unknown>; code?: string; status?: number } = {}) {
    super(options.code ?? "bad_input", options.status ?? 400, message, options);
  }
}

export class UnauthorizedError extends ZerocellError {
  constructor(message = "missing or invalid API token") {
    super("unauthorized", 401, message);
  }
}

export class NotFoundError extends ZerocellError {
  constructor(code: string, message: string) {
    super(code, 404, message);
  }
}

export class ConflictError extends ZerocellError {
  constructor(code: string, message: string, details?: Record<string, unknown>) {
    super(code, 409, message, details === undefined ? {} : { details });
  }
}

export class RouteNotFoundError extends ZerocellError {
  constructor(host: string, path: string) {
    super("route_not_found", 404, `router: no app is deployed at ${host}${path}`);
  }
}

export class PayloadTooLargeError extends ZerocellError {
  constructor(message: string) {
    super("payload_too_large", 413, message);
  }
}

/** Everything that goes wrong while a sandbox runs guest code. */
export class SandboxError extends ZerocellError {
  constructor(code: string, status: number, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(code, status, message, options);
  }
}

export class SandboxTimeoutError extends SandboxError {
  constructor(limitMs: number, app: string) {
    super("sandbox_timeout", 504, `pool: ${app} ran longer than its wall-clock limit of ${limitMs} ms; the instance was destroyed`);
  }
}

export class PoolSaturatedError extends ZerocellError {
  readonly retryAfterS: number;
  constructor(message: string, retryAfterS = 1) {
    super("pool_saturated", 503, message);
    this.retryAfterS = retryAfterS;
  }
}

/**
 * A request got no instance: the wait for one passed its own bound, or the instance it waited
 * for failed to start. 503 + Retry-After; never the app's 504 (timeout_ms counts the app's own
 * run only). `details.reason` keeps the start failure's code; its message (which may carry the
 * app's log lines) stays in `cause` and the log.
 */
export class InstanceUnavailableError extends PoolSaturatedError {
  override readonly code = "instance_unavailable";
  constructor(message: string, retryAfterS: number, options: { cause?: unknown; reason?: string } = {}) {
    super(message, retryAfterS);
    if (options.cause !== undefined) (this as { cause?: unknown }).cause = options.cause;
    (this as { details: Record<string, unknown> | undefined }).details = options.reason === undefined ? undefined : { reason: options.reason };
  }
}

export function isZerocellError(e: unknown): e is ZerocellError {
  return e instanceof ZerocellError;
}

/**
 * A deployment that did not pass its health check (warm-up and health paths): stored as failed,
 * never activated; the app's active deployment keeps serving.
 */
export class DeploymentFailedError extends ZerocellError {
  constructor(message: string, details: { deployment: string; version: number }, cause?: unknown) {
    super("health_check_failed", 422, message, { details, cause });
  }
}
