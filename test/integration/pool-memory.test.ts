/**
 * GET /v1/pool/memory (src/gateway/admin/memory.ts): per sandbox host the node process inside
 * its wrappers, its RSS/PSS/USS and its own report (V8 heap, linear memory, snapshot bytes held
 * in JS); admin tokens only. And the snapshot's bytes live once, in the memfd: the host holds
 * less than a 64 KiB block of them in JS.
 */
import { vi, describe, it, expect, beforeAll, afterAll } from "vitest";
import { readFileSync } from "node:fs";
import { startServer, phpBundle, fetchApp, admin, isAlive, type TestServer } from "../helpers/server.js";

const GATEWAY_SECRET = "gateway-only-7f3a9c";

describe("pool memory report", () => {
  let server: TestServer;
  beforeAll(async () => {
    // A secret in the gateway's environment: no host may see it (the "whole environ" test).
    server = await startServer([], { env: { ZC_TEST_GATEWAY_SECRET: GATEWAY_SECRET } });
    await server.cli(["deploy", phpBundle("mem.localhost", { "index.php": "<?php echo 'hello';" }), "--app", "mem"]);
  }, 180_000);
  afterAll(async () => {
    const pids = server.hostPids();
    expect(await server.stop()).toBe(0);
    // A wrapper may outlive its host by a moment after the server exits.
    for (const pid of pids) await vi.waitFor(() => expect(isAlive(pid)).toBe(false), { timeout: 10_000, interval: 100 });
  });

  it("names the node process of each host and splits its memory", async () => {
    expect((await fetchApp(server, "mem.localhost", "/")).status).toBe(200);
    // The deploy's host sent its snapshot (gzip'd) before it was ready; the gateway stores it.
    await expect.poll(() => server.output().includes('"snapshot stored"'), { timeout: 60_000, interval: 200 }).toBe(true);
    const { status, json } = await admin(server, "GET", "/v1/pool/memory");
    expect(status).toBe(200);
    const host = json.hosts.find((h: { app: string }) => h.app === "mem");
    expect(host.mode).toBe("snapshot");
    expect(typeof host.nodePid).toBe("number");
    // The node host itself (the wrappers' command is unshare or setpriv, when the machine has them).
    expect(readFileSync(`/proc/${host.nodePid}/cmdline`, "utf8").split("\0")[0]).toBe(process.execPath);
    expect(host.rollup.pss).toBeGreaterThan(10 * 1024 * 1024);
    expect(host.rollup.uss).toBeLessThanOrEqual(host.rollup.rss);
    const r = host.report;
    expect(r.v8.totalPhysicalSize).toBeGreaterThan(0);
    expect(r.instance.linearBytes).toBeGreaterThanOrEqual(r.instance.snapshotBytes);
    // Where the kernel allows the dirty-page reset, the image is read from the memfd's shared
    // mapping, not copied into JS (the partial block above its whole pages at most).
    if (!/dirty-page reset unavailable/.test(server.output())) expect(r.instance.snapshotHeldBytes).toBeLessThan(64 * 1024);
    expect(json.gateway.rollup.pss).toBeGreaterThan(0);
  }, 120_000);

  it("gives the host's freed heap back to the kernel: one malloc arena, trimmed once idle", async () => {
    expect((await fetchApp(server, "mem.localhost", "/")).status).toBe(200);
    const hostOf = async () => (await admin(server, "GET", "/v1/pool/memory")).json.hosts.find((h: { app: string }) => h.app === "mem");
    const host = await hostOf();
    // glibc reads MALLOC_ARENA_MAX at the host's start (HOST_MALLOC_ENV, src/pool/spawn.ts).
    const environ = readFileSync(`/proc/${host.nodePid}/environ`, "utf8").split("\0");
    expect(environ).toContain("MALLOC_ARENA_MAX=1");
    // The host trims after its boot collection and again ~2 s after its last request.
    await expect.poll(async () => (await hostOf()).report.mallocTrims ?? 0, { timeout: 30_000, interval: 500 }).toBeGreaterThanOrEqual(2);
    // A PHP hello host was ~180 MB of PSS with an arena per V8 thread and no trim (docs/memory.md);
    // ~80–100 MB with one arena, trimmed. The bound leaves room for a machine's variance.
    const after = await hostOf();
    expect(after.rollup.pss).toBeLessThan(140 * 1024 * 1024);
  }, 60_000);

  it("a host's whole environment is the allocator setting: nothing of the gateway's (a secret there included)", async () => {
    expect((await fetchApp(server, "mem.localhost", "/")).status).toBe(200);
    const { json } = await admin(server, "GET", "/v1/pool/memory");
    const pids: number[] = [...json.hosts.map((h: { nodePid: number }) => h.nodePid), ...(json.spares?.ready ?? []).map((s: { pid: number }) => s.pid), ...server.hostPids()];
    expect(pids.length).toBeGreaterThanOrEqual(2);
    const allowed = new Set(["MALLOC_ARENA_MAX=1", ...(process.env.ZEROCELL_RESET === "compare" ? ["ZEROCELL_RESET=compare"] : [])]);
    let read = 0;
    for (const pid of new Set(pids)) {
      let environ: string;
      try {
        environ = readFileSync(`/proc/${pid}/environ`, "utf8");
      } catch {
        continue; // a wrapper that exec'd or a spare taken meanwhile
      }
      read++;
      expect(environ).not.toContain(GATEWAY_SECRET);
      for (const entry of environ.split("\0").filter((e) => e !== "")) expect(allowed.has(entry), `pid ${pid}: ${entry.split("=")[0]}`).toBe(true);
    }
    expect(read).toBeGreaterThanOrEqual(2);
  });

  it("is for admin tokens only", async () => {
    const account = await admin(server, "POST", "/v1/accounts", { body: JSON.stringify({ name: "memtenant" }), contentType: "application/json" });
    expect(account.status).toBe(201);
    const { status } = await admin(server, "GET", "/v1/pool/memory", { token: account.json.token });
    expect(status).toBe(403);
  });
});
