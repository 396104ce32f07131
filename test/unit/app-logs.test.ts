/**
 * The per-app log store (src/platform/app-logs.ts) on a real SQLite file with the real
 * migrations: ordering, filters, followers, and every bound (line length, lines per app, age).
 */
import { describe, it, expect, afterEach } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDb, type OpenedDb } from "../../src/store/db.js";
import { AppLogs, type AppLogLine } from "../../src/platform/app-logs.js";
import { parseSince } from "../../src/gateway/admin-logs.js";

let dir = "";
let db: OpenedDb | undefined;
let logs: AppLogs | undefined;

function open(limits: ConstructorParameters<typeof AppLogs>[1] = {}): AppLogs {
  dir = mkdtempSync(join(tmpdir(), "zc-logs-"));
  db = openDb(join(dir, "zerocell.db"));
  logs = new AppLogs(db, limits);
  return logs;
}

afterEach(() => {
  logs?.close();
  db?.close();
  rmSync(dir, { recursive: true, force: true });
  logs = undefined;
  db = undefined;
});

describe("app logs", () => {
  it("keeps lines per app in order with their request, filtered by after, since and limit", () => {
    const l = open();
    l.append("app1", "dep1", undefined, "booting");
    l.append("app1", "dep1", "req-a", "first");
    l.append("app2", "dep2", "req-b", "other app");
    l.append("app1", "dep1", "req-c", "second");
    const all = l.list("app1", { limit: 100 });
    expect(all.map((x) => [x.requestId, x.line])).toEqual([
      [null, "booting"],
      ["req-a", "first"],
      ["req-c", "second"],
    ]);
    expect(l.list("app1", { limit: 100, afterId: all[1]!.id }).map((x) => x.line)).toEqual(["second"]);
    // The most recent N, oldest first.
    expect(l.list("app1", { limit: 2 }).map((x) => x.line)).toEqual(["first", "second"]);
    expect(l.list("app1", { limit: 100, sinceMs: Date.now() + 60_000 })).toEqual([]);
    expect(l.list("app2", { limit: 100 }).map((x) => x.line)).toEqual(["other app"]);
    expect(l.list("nobody", { limit: 100 })).toEqual([]);
  });

  it("hands new lines to the app's followers only, with their ids, until they stop", () => {
    const l = open();
    const seen: AppLogLine[] = [];
    const stop = l.follow("app1", (x) => seen.push(x));
    l.append("app1", "dep1", "r1", "one");
    l.append("app2", "dep2", "r2", "not mine");
    l.flush();
    expect(seen.map((x) => x.line)).toEqual(["one"]);
    expect(seen[0]!.id).toBe(l.list("app1", { limit: 1 })[0]!.id);
    stop();
    l.append("app1", "dep1", "r3", "after stop");
    l.flush();
    expect(seen).toHaveLength(1);
  });

  it("cuts long lines, drops an app's lines past its budget until the next prune, and prunes by age and count", () => {
    const l = open({ maxLineChars: 10, maxLinesPerApp: 3, retentionMs: 1000, pruneIntervalMs: 3_600_000 });
    l.append("app1", "dep1", "r", "x".repeat(50));
    expect(l.list("app1", { limit: 10 })[0]!.line).toBe(`${"x".repeat(10)} …[cut]`);
    for (let i = 0; i < 5; i++) l.append("app1", "dep1", "r", `flood ${i}`);
    // 3 per prune interval: the long line and two of the flood.
    expect(l.list("app1", { limit: 10 }).map((x) => x.line)).toEqual([`${"x".repeat(10)} …[cut]`, "flood 0", "flood 1"]);
    expect(l.dropped).toBe(3);
    // Another app has its own budget.
    l.append("app2", "dep2", "r", "fine");
    expect(l.list("app2", { limit: 10 })).toHaveLength(1);
    // Pruning opens the budget again and keeps at most 3 lines per app.
    l.prune();
    for (let i = 0; i < 3; i++) l.append("app1", "dep1", "r", `later ${i}`);
    l.prune();
    expect(l.list("app1", { limit: 10 }).map((x) => x.line)).toEqual(["later 0", "later 1", "later 2"]);
    // Lines older than the retention window go.
    db!.sqlite.prepare("UPDATE app_logs SET at = at - 5000").run();
    l.prune();
    expect(l.list("app1", { limit: 10 })).toEqual([]);
  });

  it("parses since as a duration, an ISO date or epoch ms, and refuses anything else", () => {
    const now = 1_000_000_000_000;
    expect(parseSince("30s", now)).toBe(now - 30_000);
    expect(parseSince("10m", now)).toBe(now - 600_000);
    expect(parseSince("2h", now)).toBe(now - 7_200_000);
    expect(parseSince("7d", now)).toBe(now - 7 * 86_400_000);
    expect(parseSince("2026-12-05T10:00:00Z", now)).toBe(Date.parse("2026-12-05T10:00:00Z"));
    expect(parseSince("1700000000000", now)).toBe(1_700_000_000_000);
    for (const bad of ["", "10 minutes", "-5m", "x".repeat(100), "10y"]) expect(() => parseSince(bad, now)).toThrow(/since/);
  });
});
