/**
 * Structured logs: one JSON object per line on stdout. Lines written in the same turn of the
 * event loop leave in one write (a request log line per request would otherwise cost a
 * blocking pipe write each under load); whatever is pending is written synchronously at exit.
 */
import { writeSync } from "node:fs";

type Fields = Record<string, unknown>;

/** Flush at once beyond this many pending bytes. */
const MAX_PENDING_BYTES = 64 * 1024;

let pending: string[] = [];
let pendingBytes = 0;
let scheduled = false;

function flush(): void {
  scheduled = false;
  if (pending.length === 0) return;
  const text = pending.join("");
  pending = [];
  pendingBytes = 0;
  process.stdout.write(text);
}

process.once("exit", () => {
  if (pending.length === 0) return;
  const text = pending.join("");
  pending = [];
  try {
    writeSync(1, text);
  } catch {
    // stdout is gone
  }
});

function write(level: string, msg: string, fields: Fields | undefined): void {
  const line = JSON.stringify({ t: new Date().toISOString(), level, msg, ...fields }) + "\n";
  pending.push(line);
  pendingBytes += line.length;
  if (pendingBytes >= MAX_PENDING_BYTES) flush();
  else if (!scheduled) {
    scheduled = true;
    setImmediate(flush);
  }
}

export const log = {
  info: (msg: string, fields?: Fields) => write("info", msg, fields),
  warn: (msg: string, fields?: Fields) => write("warn", msg, fields),
  error: (msg: string, fields?: Fields) => write("error", msg, fields),
};
