/**
 * The server's own log: pino records (numeric levels: 30 info, 40 warn, 50 error; `time` in ms
 * since the epoch) on stdout, one JSON object per line, or pretty lines for a terminal
 * (pino-pretty; `zerocell serve --log-format pretty|json`, default pretty when stdout is a TTY).
 * The interface stays small: `log.info(msg, fields)`, `log.warn`, `log.error`, and
 * `log.child(bindings)` for a logger whose every record carries those fields (app, deployment,
 * account, request id). JSON records leave through an asynchronous sonic-boom destination, so
 * lines written while a write is in flight leave together (a request log line per request would
 * otherwise cost a blocking pipe write each under load); what is pending is flushed at exit.
 */
import { pino, type Logger as PinoLogger } from "pino";
import pretty from "pino-pretty";

type Fields = Record<string, unknown>;

export type LogFormat = "json" | "pretty";

export interface Logger {
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  /** A logger whose records all carry `bindings` (e.g. { app, deploymentId, accountId, requestId }). */
  child(bindings: Fields): Logger;
}

function createRoot(format: LogFormat): PinoLogger {
  const options = { base: { pid: process.pid } };
  if (format === "pretty") return pino(options, pretty({ colorize: process.stdout.isTTY === true, sync: true, translateTime: "SYS:HH:MM:ss.l", ignore: "pid" }));
  return pino(options, pino.destination({ dest: 1, sync: false }));
}

let root: PinoLogger = createRoot(process.stdout.isTTY === true ? "pretty" : "json");

/** Chooses the output format; call before the server starts (children made earlier keep the old one). */
export function configureLog(format: LogFormat): void {
  root.flush();
  root = createRoot(format);
}

function wrap(get: () => PinoLogger): Logger {
  return {
    info: (msg, fields) => get().info(fields ?? {}, msg),
    warn: (msg, fields) => get().warn(fields ?? {}, msg),
    error: (msg, fields) => get().error(fields ?? {}, msg),
    child: (bindings) => {
      const c = get().child(bindings);
      return wrap(() => c);
    },
  };
}

export const log: Logger = wrap(() => root);
