/**
 * Python instances in one host process (`serve --instances-per-host 4`), restored from the
 * deployment's stored snapshot: they share one snapshot memfd and keep only the pages where their
 * booted images differ (DirtyPageTracker.create with a share key), and every request still
 * starts from its own instance's snapshot.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { readFileSync } from "node:fs";
import { startServer, fetchApp, admin, writeBundle, type TestServer } from "../helpers/server.js";

/** Each request: what an earlier request left in /tmp and in a module global (nothing, from a snapshot). */
const APP = `
import os
counter = 0
def application(environ, start_response):
    global counter
    counter += 1
    seen = open('/tmp/state').read() if os.path.exists('/tmp/state') else 'none'
    with open('/tmp/state', 'w') as f:
        f.write('x')
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [f'seen={seen} counter={counter} pid={os.getpid()}'.encode()]
`;

type PoolJson = { deployments: Array<{ app: string; instances: number }> };
type MemoryJson = { hosts: Array<{ app: string; nodePid: number | null }> };

describe("python slots share their snapshot's memfd", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer(["--instances-per-host", "4", "--max-instances", "3", "--idle-ttl-ms", "3000"]);
    await server.cli(["deploy", writeBundle({ "zerocell.toml": `runtime = "python"\n[python]\napp = "app:application"\n[[routes]]\nhost = "pyslots.localhost"\n`, "app.py": APP }), "--app", "pyslots"]);
  }, 240_000);
  afterAll(async () => {
    expect(await server.stop()).toBe(0);
  });

  it("instances restored into one process map one memfd, and each request starts clean", async () => {
    // The deploy's instance made the snapshot; once it is stored and that instance has idled
    // out, every new instance is restored from the stored snapshot's file.
    await expect.poll(() => server.output().includes('"snapshot stored"'), { timeout: 120_000, interval: 250 }).toBe(true);
    const instances = async () => ((await admin(server, "GET", "/v1/pool")).json as PoolJson).deployments.filter((d) => d.app === "pyslots").reduce((n, d) => n + d.instances, 0);
    await expect.poll(instances, { timeout: 60_000, interval: 500 }).toBe(0);
    const bodies: string[] = [];
    for (let round = 0; round < 3; round++) {
      const rs = await Promise.all(Array.from({ length: 6 }, () => fetchApp(server, "pyslots.localhost", "/")));
      for (const r of rs) {
        expect(r.status, r.body.toString()).toBe(200);
        bodies.push(r.body.toString());
      }
    }
    // Every request started from the snapshot: no file, the module global at its snapshot value.
    const counters = new Set(bodies.map((b) => b.match(/counter=(\d+)/)?.[1]));
    expect(bodies.every((b) => b.startsWith("seen=none "))).toBe(true);
    expect(counters.size).toBe(1);
    // The process holding the most of the app's instances: one snapshot memfd among them.
    const hosts = ((await admin(server, "GET", "/v1/pool/memory")).json as MemoryJson).hosts.filter((h) => h.app === "pyslots" && h.nodePid !== null);
    const byPid = new Map<number, number>();
    for (const h of hosts) byPid.set(h.nodePid!, (byPid.get(h.nodePid!) ?? 0) + 1);
    const [pid, slots] = [...byPid.entries()].sort((a, b) => b[1] - a[1])[0] ?? [0, 0];
    expect(slots, JSON.stringify([...byPid])).toBeGreaterThanOrEqual(2);
    const memfds = new Set(
      readFileSync(`/proc/${pid}/maps`, "utf8")
        .split("\n")
        .filter((l) => l.includes("/memfd:zerocell-snapshot") && l.includes(" r--s "))
        .map((l) => l.trim().split(/\s+/)[4]),
    );
    expect(memfds.size).toBe(1);
  }, 240_000);
});
