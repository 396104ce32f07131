/**
 * How the CLI fails: one error type carrying the API's error shape (`{ error: { code, message,
 * requestId?, details? } }`, src/gateway/respond.ts) and a distinct exit code per kind of
 * failure, so scripts can tell "no such app" from "wrong token" from "server down". With --json
 * the error is printed to stdout in that same shape; otherwise one line goes to stderr.
 */

/** Exit codes (documented in README.md and `zerocell --help`). */
export const EXIT = {
  ok: 0,
  /** Anything else: the server failed (5xx), a health check failed, a body was too large. */
  failure: 1,
  /** Bad command line or input the server refused as invalid (400). */
  usage: 2,
  /** The app, deployment, account, token, invoice… does not exist (404). */
  notFound: 3,
  /** Missing or invalid token (401), or a token without the scope (403). */
  auth: 4,
  /** No server to talk to: no server.json, connection refused, DNS, timeouts. */
  unreachable: 5,
  /** The request conflicts with the current state (409): name taken, route served elsewhere. */
  conflict: 6,
} as const;

export const EXIT_CODES_HELP = `
Exit codes:
  0  success
  1  other failure (server error, failed health check, body too large)
  2  usage error (bad arguments, or input the server refused as invalid)
  3  not found
  4  authentication or permission (missing/invalid token, missing scope)
  5  server unreachable
  6  conflict (already exists, in use)
With --json, errors are printed to stdout as {"error":{"code","message","requestId","details"}},
the admin API's error shape.`;

export interface ErrorShape {
  code: string;
  message: string;
  requestId?: string;
  details?: Record<string, unknown>;
}

export class CliError extends Error {
  readonly code: string;
  readonly exitCode: number;
  readonly requestId: string | undefined;
  readonly details: Record<string, unknown> | undefined;
  constructor(message: string, opts: { code?: string; exitCode?: number; requestId?: string; details?: Record<string, unknown> } = {}) {
    super(message);
    this.code = opts.code ?? "usage";
    this.exitCode = opts.exitCode ?? EXIT.usage;
    this.requestId = opts.requestId;
    this.details = opts.details;
  }

  toJSON(): { error: ErrorShape } {
    return { error: { code: this.code, message: this.message, ...(this.requestId === undefined ? {} : { requestId: this.requestId }), ...(this.details === undefined ? {} : { details: this.details }) } };
  }
}

/** The exit code of an HTTP error status. */
export function exitCodeOf(status: number): number {
  if (status === 400) return EXIT.usage;
  if (status === 401 || status === 403) return EXIT.auth;
  if (status === 404) return EXIT.notFound;
  if (status === 409) return EXIT.conflict;
  return EXIT.failure;
}

/** A failed API answer (status + parsed body) as a CliError that keeps the server's shape. */
export function apiError(status: number, body: unknown): CliError {
  const err = (body as { error?: Partial<ErrorShape> } | null)?.error;
  if (err !== undefined && typeof err.message === "string") {
    return new CliError(`${err.message} (${err.code ?? status})`, {
      code: err.code ?? `http_${status}`,
      exitCode: exitCodeOf(status),
      ...(err.requestId === undefined ? {} : { requestId: err.requestId }),
      ...(err.details === undefined ? {} : { details: err.details }),
    });
  }
  return new CliError(`HTTP ${status}: ${String(body).slice(0, 500)}`, { code: `http_${status}`, exitCode: exitCodeOf(status) });
}

export function unreachable(message: string): CliError {
  return new CliError(message, { code: "server_unreachable", exitCode: EXIT.unreachable });
}

/** Prints a failure (JSON to stdout with --json, else a line on stderr) and returns its exit code. */
export function reportError(e: unknown, json: boolean): number {
  const err = e instanceof CliError ? e : new CliError(e instanceof Error ? (json ? e.message : (e.stack ?? e.message)) : String(e), { code: "internal", exitCode: EXIT.failure });
  if (json) process.stdout.write(JSON.stringify(err.toJSON(), null, 2) + "\n");
  else process.stderr.write(`zerocell: ${err.message}\n`);
  return err.exitCode;
}
