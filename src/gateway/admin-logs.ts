/**
 * GET /v1/apps/:app/logs: an app's log lines as JSON, or followed as server-sent events
 * (`?follow=1`: the recent lines first, then each new one as it is written). The admin API has
 * checked the token may see the app before this runs.
 */
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import type { Platform } from "../platform/index.js";
import type { AppLogLine } from "../platform/app-logs.js";
import { InputError, PoolSaturatedError } from "../errors.js";

/** Lines one answer (or the backlog of a follow) carries at most. */
const MAX_LIMIT = 1000;
const DEFAULT_LIMIT = 200;
/** Followers across all apps at once; beyond it 503. */
const MAX_FOLLOWERS = 64;
/** A comment line this often keeps proxies from closing an idle stream, ms. */
const HEARTBEAT_MS = 15_000;
/** Lines a slow follower may have waiting; beyond it the stream ends (the client reconnects). */
const MAX_FOLLOW_BACKLOG = 5_000;

let followers = 0;

/** "10m", "2h", "7d", "30s", an ISO date or epoch milliseconds → epoch ms. */
export function parseSince(value: string, now = Date.now()): number {
  const rel = /^(\d{1,9})(s|m|h|d)$/.exec(value);
  if (rel !== null) return now - Number(rel[1]) * { s: 1000, m: 60_000, h: 3600_000, d: 86_400_000 }[rel[2] as "s" | "m" | "h" | "d"];
  if (/^\d{1,15}$/.test(value)) return Number(value);
  const t = Date.parse(value);
  if (value.length <= 40 && !Number.isNaN(t)) return t;
  throw new InputError(`logs: since "${value.slice(0, 40)}" is not a duration (30s, 10m, 2h, 7d), an ISO date or epoch milliseconds`, { code: "bad_since" });
}

function intParam(c: Context, name: string, fallback: number, max: number): number {
  const v = c.req.query(name);
  if (v === undefined || v === "") return fallback;
  if (!/^\d{1,15}$/.test(v) || Number(v) > max) throw new InputError(`logs: ${name} must be an integer from 0 to ${max}`, { code: `bad_${name}` });
  return Number(v);
}

export function logsResponse(c: Context, platform: Platform, appId: string): Response | Promise<Response> {
  const since = c.req.query("since");
  const opts = {
    limit: intParam(c, "limit", DEFAULT_LIMIT, MAX_LIMIT),
    afterId: intParam(c, "after", 0, Number.MAX_SAFE_INTEGER),
    ...(since === undefined || since === "" ? {} : { sinceMs: parseSince(since) }),
  };
  const follow = c.req.query("follow") === "1" || c.req.query("follow") === "true";
  if (!follow) return c.json({ logs: platform.logs.list(appId, opts) });
  if (followers >= MAX_FOLLOWERS) throw new PoolSaturatedError(`logs: ${MAX_FOLLOWERS} followers already; try again later`, 5);
  followers++;
  return streamSSE(c, async (stream) => {
    const queue: AppLogLine[] = [];
    let wake: (() => void) | undefined;
    let overflow = false;
    const stop = platform.logs.follow(appId, (line) => {
      if (queue.length >= MAX_FOLLOW_BACKLOG) overflow = true;
      else queue.push(line);
      wake?.();
    });
    let closed = false;
    stream.onAbort(() => {
      closed = true;
      wake?.();
    });
    const heartbeat = setInterval(() => {
      void stream.write(": keep-alive\n\n").catch(() => {});
    }, HEARTBEAT_MS);
    try {
      let last = 0;
      for (const line of platform.logs.list(appId, opts)) {
        await stream.writeSSE({ id: String(line.id), event: "log", data: JSON.stringify(line) });
        last = line.id;
      }
      while (!closed && !overflow) {
        const line = queue.shift();
        if (line === undefined) {
          await new Promise<void>((r) => (wake = r));
          wake = undefined;
          continue;
        }
        if (line.id <= last) continue;
        await stream.writeSSE({ id: String(line.id), event: "log", data: JSON.stringify(line) });
        last = line.id;
      }
      if (overflow) await stream.writeSSE({ event: "overflow", data: JSON.stringify({ message: "logs: this follower fell behind; reconnect with after=<last id>" }) });
    } finally {
      clearInterval(heartbeat);
      stop();
      followers--;
    }
  });
}
