/**
 * GET /v1/apps/:app/stats: an app's requests, errors (5xx), p50/p99 wall time and CPU per bucket
 * over a window, from its usage records (src/billing/series.ts). `bucket=minute|hour` (default
 * minute), `window=` a duration (30m, 6h, 7d; default 60 buckets), `to=` the end (epoch ms or ISO;
 * default now). The admin API has checked the token may see the app before this runs.
 * Must never: read an unbounded number of records (the bucket count and records read are capped).
 */
import type { Context } from "hono";
import type { Platform } from "../platform/index.js";
import type { AppInfo } from "../store/index.js";
import { SERIES_LIMITS } from "../billing/index.js";
import { InputError } from "../errors.js";

const BUCKET_MS = { minute: 60_000, hour: 3_600_000 } as const;
const DEFAULT_BUCKETS = 60;

function parseDuration(value: string): number {
  const m = /^(\d{1,6})(m|h|d)$/.exec(value);
  if (m === null) throw new InputError(`stats: window "${value.slice(0, 40)}" is not a duration like 30m, 6h or 7d`, { code: "bad_window" });
  return Number(m[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "m" | "h" | "d"];
}

export function statsResponse(c: Context, platform: Platform, app: AppInfo): Response {
  const bucketName = c.req.query("bucket") ?? "minute";
  if (bucketName !== "minute" && bucketName !== "hour") throw new InputError(`stats: bucket must be "minute" or "hour"`, { code: "bad_bucket" });
  const bucketMs = BUCKET_MS[bucketName];
  const windowParam = c.req.query("window");
  const buckets = windowParam === undefined || windowParam === "" ? DEFAULT_BUCKETS : Math.ceil(parseDuration(windowParam) / bucketMs);
  if (buckets < 1 || buckets > SERIES_LIMITS.maxBuckets) {
    throw new InputError(`stats: the window holds ${buckets} ${bucketName} buckets (limit ${SERIES_LIMITS.maxBuckets}); use a shorter window or bucket=hour`, { code: "bad_window" });
  }
  const toParam = c.req.query("to");
  let toMs = Date.now();
  if (toParam !== undefined && toParam !== "") {
    toMs = /^\d{1,15}$/.test(toParam) ? Number(toParam) : toParam.length <= 40 ? Date.parse(toParam) : NaN;
    if (Number.isNaN(toMs)) throw new InputError(`stats: to "${toParam.slice(0, 40)}" is not epoch milliseconds or an ISO date`, { code: "bad_to" });
  }
  // Whole buckets ending with the one that holds `to`.
  const fromMs = (Math.floor(toMs / bucketMs) + 1 - buckets) * bucketMs;
  const series = platform.billing.series({ appId: app.id, fromMs, bucketMs, buckets });
  return c.json({ app: app.name, bucket: bucketName, ...series });
}
