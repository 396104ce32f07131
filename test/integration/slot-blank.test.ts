/**
 * A host process that may take more slots (`serve --instances-per-host 4`) makes a blank PHP
 * instance ahead once idle (InitMessage.blankAhead, the engine's preinstantiate, as a spare does),
 * so the next slot of its account is restored on it: its snapshot mapped, no php-wasm start.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { startServer, phpBundle, fetchApp, admin, type TestServer } from "../helpers/server.js";

type PoolJson = { deployments: Array<{ app: string; instances: number; pids: number[]; restoredFromSnapshot: number; restoredOnSpareEngine: number }> };
type MemoryJson = { hosts: Array<{ app: string; report: { mallocTrims?: number } | null }> };

describe("a blank instance ahead for a host process's next slot", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer(["--instances-per-host", "4", "--max-instances", "3"]);
    await server.cli(["deploy", phpBundle("blank.localhost", { "index.php": "<?php $GLOBALS['n'] = ($GLOBALS['n'] ?? 0) + 1; usleep(300000); echo 'n=', $GLOBALS['n'];" }), "--app", "blank"]);
  }, 180_000);
  afterAll(async () => {
    expect(await server.stop()).toBe(0);
  });

  it("restores the deployment's next slot on the blank its process made while idle", async () => {
    await expect.poll(() => server.output().includes('"snapshot stored"'), { timeout: 60_000, interval: 200 }).toBe(true);
    // The idle work (2 s after the start) makes the blank, then trims: its second trim (the first
    // follows the boot collection) says the blank is there.
    const trims = async () => ((await admin(server, "GET", "/v1/pool/memory")).json as MemoryJson).hosts.find((h) => h.app === "blank")?.report?.mallocTrims ?? 0;
    await expect.poll(trims, { timeout: 60_000, interval: 500 }).toBeGreaterThanOrEqual(2);
    const dep = async () => ((await admin(server, "GET", "/v1/pool")).json as PoolJson).deployments.find((d) => d.app === "blank")!;
    const before = await dep();
    expect(before.instances).toBe(1);
    // Requests that overlap: the pool opens more slots, restored from the stored snapshot.
    const rs = await Promise.all(Array.from({ length: 6 }, () => fetchApp(server, "blank.localhost", "/")));
    for (const r of rs) expect(r.text).toBe("n=1");
    const after = await dep();
    expect(after.instances).toBeGreaterThan(1);
    expect(after.restoredFromSnapshot).toBeGreaterThan(before.restoredFromSnapshot);
    // One of them on the process's blank (the others, if any, started php-wasm themselves).
    expect(after.restoredOnSpareEngine, server.output().split("\n").filter((l) => /blank|restor|snapshot/i.test(l)).slice(-20).join("\n")).toBeGreaterThan(before.restoredOnSpareEngine);
    // They share the first one's process.
    expect(new Set(after.pids).size).toBeLessThan(after.instances);
  }, 180_000);
});
