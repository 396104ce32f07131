/**
 * Per-app logs: the lines an app's sandbox hosts write to stderr (PHP's error log, Python's
 * stderr and tracebacks, x86 stderr), each with the request it belongs to, kept in SQLite for a
 * retention window and bounded per app. Lines are written in batches (one transaction per
 * flush) and pushed at once to followers (`zerocell logs --follow`, SSE).
 *
 * Which request a line belongs to: a host serves one request at a time, so a line is the
 * request's that the host served last (src/pool/host.ts tags them). A line the app wrote at the
 * very end of a request may arrive after the next request began on the same host and be tagged
 * with that one.
 *
 * Must never: keep an unbounded amount of a tenant's output (lines, bytes per line, lines per
 * app, lines waiting in memory are all bounded), or show one account's lines to another (the
 * admin API checks the app's owner before it calls list/follow).
 */
import type { OpenedDb } from "../store/index.js";
import type { Statement } from "better-sqlite3";
import { log } from "../log.js";

export interface AppLogLimits {
  /** Longest line kept, characters (longer ones are cut and marked). */
  maxLineChars: number;
  /** Lines kept per app; older ones are pruned. */
  maxLinesPerApp: number;
  /** Lines older than this are pruned, ms. */
  retentionMs: number;
  /** Lines waiting in memory for the next flush; beyond it new lines are dropped (and counted). */
  maxBuffered: number;
  /** How often buffered lines are written, ms. */
  flushIntervalMs: number;
  /** How often old lines are pruned, ms. */
  pruneIntervalMs: number;
}

export const DEFAULT_APP_LOG_LIMITS: AppLogLimits = {
  maxLineChars: 2048,
  maxLinesPerApp: 10_000,
  retentionMs: 7 * 24 * 3600_000,
  maxBuffered: 10_000,
  flushIntervalMs: 200,
  pruneIntervalMs: 60_000,
};

export interface AppLogLine {
  id: number;
  /** Milliseconds since the epoch. */
  at: number;
  deploymentId: string;
  requestId: string | null;
  line: string;
}

interface Pending {
  appId: string;
  deploymentId: string;
  requestId: string | null;
  at: number;
  line: string;
}

type Follower = (line: AppLogLine) => void;

export class AppLogs {
  readonly #db: OpenedDb;
  readonly #limits: AppLogLimits;
  readonly #insert: Statement;
  readonly #select: Statement;
  readonly #followers = new Map<string, Set<Follower>>();
  #buffer: Pending[] = [];
  #timer: NodeJS.Timeout | undefined;
  readonly #pruner: NodeJS.Timeout;
  /** Lines dropped because the buffer was full (the database was slow or refusing writes). */
  dropped = 0;
  #closed = false;
  /** Lines each app added since the last prune. */
  readonly #recent = new Map<string, number>();

  constructor(db: OpenedDb, limits: Partial<AppLogLimits> = {}) {
    this.#db = db;
    this.#limits = { ...DEFAULT_APP_LOG_LIMITS, ...limits };
    this.#insert = db.sqlite.prepare("INSERT INTO app_logs (app_id, deployment_id, request_id, at, line) VALUES (@appId, @deploymentId, @requestId, @at, @line)");
    this.#select = db.sqlite.prepare(
      `SELECT id, at, deployment_id AS deploymentId, request_id AS requestId, line FROM app_logs
       WHERE app_id = ? AND id > ? AND at >= ? ORDER BY id DESC LIMIT ?`,
    );
    this.#pruner = setInterval(() => this.prune(), this.#limits.pruneIntervalMs);
    this.#pruner.unref();
  }

  /** Records one line an app's host wrote. */
  append(appId: string, deploymentId: string, requestId: string | undefined, line: string): void {
    if (this.#closed) return;
    // Each app may add at most maxLinesPerApp lines per prune interval (a flood cannot grow the
    // table faster than pruning shrinks it).
    const written = this.#recent.get(appId) ?? 0;
    if (this.#buffer.length >= this.#limits.maxBuffered || written >= this.#limits.maxLinesPerApp) {
      this.dropped++;
      return;
    }
    this.#recent.set(appId, written + 1);
    const max = this.#limits.maxLineChars;
    const text = line.length > max ? `${line.slice(0, max)} …[cut]` : line;
    this.#buffer.push({ appId, deploymentId, requestId: requestId ?? null, at: Date.now(), line: text });
    this.#timer ??= setTimeout(() => this.flush(), this.#limits.flushIntervalMs);
  }

  /** Writes the buffered lines in one transaction, then hands them to followers with their ids. */
  flush(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = this.#buffer;
    if (batch.length === 0) return;
    this.#buffer = [];
    let ids: number[];
    try {
      ids = this.#db.sqlite.transaction((rows: Pending[]) => rows.map((r) => Number(this.#insert.run(r).lastInsertRowid)))(batch);
    } catch (e) {
      // Logs are not billing: a batch the database refuses is dropped, counted and reported.
      this.dropped += batch.length;
      log.error("app log flush failed", { err: (e as Error).message, lines: batch.length });
      return;
    }
    batch.forEach((r, i) => {
      const followers = this.#followers.get(r.appId);
      if (followers === undefined) return;
      const line: AppLogLine = { id: ids[i]!, at: r.at, deploymentId: r.deploymentId, requestId: r.requestId, line: r.line };
      for (const f of followers) f(line);
    });
  }

  /** Lines of an app, oldest first: after `afterId`, or from `sinceMs` (epoch ms), at most `limit`. */
  list(appId: string, opts: { sinceMs?: number; afterId?: number; limit: number }): AppLogLine[] {
    this.flush();
    // The newest `limit` lines that match, returned oldest first.
    const rows = this.#select.all(appId, opts.afterId ?? 0, opts.sinceMs ?? 0, opts.limit) as AppLogLine[];
    return rows.reverse();
  }

  /** Calls `f` with every new line of the app until the returned function is called. */
  follow(appId: string, f: Follower): () => void {
    let set = this.#followers.get(appId);
    if (set === undefined) this.#followers.set(appId, (set = new Set()));
    set.add(f);
    return () => {
      set.delete(f);
      if (set.size === 0 && this.#followers.get(appId) === set) this.#followers.delete(appId);
    };
  }

  /** Deletes lines past the retention window and beyond each app's line budget. */
  prune(): void {
    this.flush();
    this.#recent.clear();
    try {
      this.#db.sqlite.prepare("DELETE FROM app_logs WHERE at < ?").run(Date.now() - this.#limits.retentionMs);
      const over = this.#db.sqlite.prepare("SELECT app_id AS appId, COUNT(*) AS n FROM app_logs GROUP BY app_id HAVING n > ?").all(this.#limits.maxLinesPerApp) as Array<{ appId: string; n: number }>;
      const cut = this.#db.sqlite.prepare("DELETE FROM app_logs WHERE app_id = ? AND id <= (SELECT id FROM app_logs WHERE app_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)");
      for (const o of over) cut.run(o.appId, o.appId, this.#limits.maxLinesPerApp);
    } catch (e) {
      log.error("app log prune failed", { err: (e as Error).message });
    }
  }

  close(): void {
    this.flush();
    this.#closed = true;
    clearInterval(this.#pruner);
    for (const set of this.#followers.values()) set.clear();
    this.#followers.clear();
  }
}
