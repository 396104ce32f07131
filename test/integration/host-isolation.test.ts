/**
 * The OS layers around every sandbox host (src/pool/spawn.ts), checked on the real server's hosts
 * and attacked by code that runs exactly as an escaped guest would: node inside the same
 * wrappers, trying what the red team did from host JavaScript (signal the gateway and other
 * hosts, list processes, write files, reach the network, eat the machine's memory).
 * Needs root (CI runs as root); skipped otherwise.
 */
import { describe, it, expect, beforeAll, afterAll, vi } from "vitest";
import { spawnSync } from "node:child_process";
import { readFileSync, readlinkSync, existsSync, rmdirSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { startServer, phpBundle, fetchApp, isAlive, childPids, ROOT, type TestServer } from "../helpers/server.js";

const isRoot = process.getuid?.() === 0;
const spawnMod = (await import(join(ROOT, "dist", "src", "pool", "spawn.js"))) as typeof import("../../src/pool/spawn.js");

function status(pid: number): string {
  return readFileSync(`/proc/${pid}/status`, "utf8");
}

/** The node processes among a server's hosts (the wrappers exec into or fork them). */
function hostNodePids(server: TestServer): number[] {
  return server.hostPids().filter((pid) => {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      return cmd[0] === process.execPath && cmd.some((a) => a.endsWith("host/main.js"));
    } catch {
      return false;
    }
  });
}

describe.skipIf(!isRoot)("sandbox host processes run inside every OS layer", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer(["--no-spare-hosts"]);
    await server.cli(["deploy", phpBundle("iso.localhost", { "index.php": "<?php echo 'iso ok';" }, "[limits]\nmemory_mb = 64\n"), "--app", "iso"]);
  });
  afterAll(async () => {
    const pids = server.hostPids();
    expect(await server.stop()).toBe(0);
    for (const pid of pids) await vi.waitFor(() => expect(isAlive(pid)).toBe(false), { timeout: 10_000, interval: 100 });
    // The gateway's cgroup directory goes with it.
    expect(existsSync(`/sys/fs/cgroup/memory/zerocell/g${server.proc.pid}`)).toBe(false);
  });

  it("a serving host is unprivileged, alone in its PID and network namespaces, in a memory cgroup, with no code generation", async () => {
    const r = await fetchApp(server, "iso.localhost", "/");
    expect(r.status).toBe(200);
    expect(r.text).toBe("iso ok");
    // A second app: its host must run as another uid.
    await server.cli(["deploy", phpBundle("iso2.localhost", { "index.php": "<?php echo 'iso2 ok';" }), "--app", "iso2"]);
    expect((await fetchApp(server, "iso2.localhost", "/")).text).toBe("iso2 ok");
    const pids = hostNodePids(server);
    expect(pids.length).toBeGreaterThan(1);
    const uids = new Set<number>();
    for (const pid of pids) {
      const st = status(pid);
      const uid = Number(/^Uid:\s+(\d+)\s+\1\s+\1\s+\1$/m.exec(st)?.[1]);
      expect(uid).toBeGreaterThanOrEqual(spawnMod.HOST_UID_BASE);
      expect(st).toMatch(new RegExp(`^Gid:\\s+${uid}\\s+${uid}\\s+${uid}\\s+${uid}$`, "m"));
      uids.add(uid);
      expect(st).toMatch(/^Groups:\s*$/m);
      expect(st).toMatch(/^CapBnd:\s+0+$/m);
      expect(st).toMatch(/^NoNewPrivs:\s+1$/m);
      // NSpid: its pid here, then 1 in its own namespace.
      expect(st).toMatch(/^NSpid:\s+\d+\s+1$/m);
      for (const ns of ["net", "pid", "mnt", "ipc"]) expect(readlinkSync(`/proc/${pid}/ns/${ns}`)).not.toBe(readlinkSync(`/proc/self/ns/${ns}`));
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      expect(cmd).toContain("--disallow-code-generation-from-strings");
      expect(cmd).toContain("--experimental-permission");
      const memLine = readFileSync(`/proc/${pid}/cgroup`, "utf8").split("\n").find((l) => /:memory:/.test(l));
      expect(memLine).toMatch(new RegExp(`:memory:/zerocell/g${server.proc.pid}/h\\d+$`));
      const dir = `/sys/fs/cgroup/memory${memLine!.split(":")[2]}`;
      // memory_mb = 64, data_mb = 16 → (512 + 3 × 64 + 2 × 16) MiB + 2 × the 32 MiB response limit.
      expect(Number(readFileSync(join(dir, "memory.limit_in_bytes"), "utf8"))).toBeGreaterThanOrEqual((512 + 3 * 64 + 2 * 16) * 1024 * 1024 + 64 * 1024 * 1024);
    }
    // No two hosts share a uid.
    expect(uids.size).toBe(pids.length);
  });
});

describe.skipIf(!isRoot)("host-realm code inside the wrappers (what an escaped guest would run)", () => {
  const isolation = spawnMod.detectHostIsolation();
  afterAll(() => spawnMod.closeHostIsolation(isolation));

  function runEscaped(script: string, ceilingBytes = 256 * 1024 * 1024): { code: number | null; out: Record<string, unknown>; oomKills: number } {
    const cg = spawnMod.createHostCgroup(isolation, ceilingBytes);
    const argv = spawnMod.isolatedCommand(isolation, [process.execPath, "--disallow-code-generation-from-strings", "-e", script], cg === undefined ? undefined : join(cg.dir, "cgroup.procs"));
    const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", env: {}, cwd: "/", timeout: 30_000 });
    let out: Record<string, unknown> = {};
    try {
      out = JSON.parse(r.stdout.trim().split("\n").pop() ?? "{}") as Record<string, unknown>;
    } catch {
      // no report (killed)
    }
    let oomKills = 0;
    if (cg !== undefined) {
      oomKills = Number(/\boom_kill\s+(\d+)/.exec(readFileSync(join(cg.dir, "memory.oom_control"), "utf8"))?.[1] ?? 0);
      rmdirSync(cg.dir);
    }
    return { code: r.status, out, oomKills };
  }

  it("every layer is available on this machine", () => {
    expect(isolation.missing).toEqual([]);
  });

  it("cannot see or signal the gateway or any other process, cannot write host files, reaches no network, cannot eval", async () => {
    const listener = net.createServer((s) => s.end("reached")).listen(0, "127.0.0.1");
    await new Promise((r) => listener.once("listening", r));
    const port = (listener.address() as net.AddressInfo).port;
    const me = process.pid;
    const script = `
      const fs = require("fs"), net = require("net");
      const out = {};
      const code = (f) => { try { f(); return "ok"; } catch (e) { return e.code || e.name; } };
      out.uid = process.getuid();
      out.pid = process.pid;
      out.killGateway = code(() => process.kill(${me}, "SIGSTOP"));
      out.killAll = code(() => process.kill(-1, "SIGKILL") );
      out.procs = fs.readdirSync("/proc").filter((n) => /^\\d+$/.test(n)).length;
      out.writeRoot = code(() => fs.writeFileSync("/zerocell-escape-test", "x"));
      out.writeEtc = code(() => fs.writeFileSync("/etc/zerocell-escape-test", "x"));
      out.readShadow = code(() => fs.readFileSync("/etc/shadow"));
      out.evalBlocked = code(() => new Function("return 1")());
      const s = net.connect(${port}, "127.0.0.1");
      s.on("data", () => { out.net = "reached"; done(); });
      s.on("error", (e) => { out.net = e.code; done(); });
      function done() { console.log(JSON.stringify(out)); process.exit(0); }
    `;
    const r = runEscaped(script);
    listener.close();
    expect(r.code).toBe(0);
    expect(r.out.uid).toBe(65534);
    expect(r.out.pid).toBe(1);
    // The gateway's pid does not exist in the host's namespace; kill(-1) reaches nobody else.
    expect(r.out.killGateway).toBe("ESRCH");
    expect(r.out.procs).toBeLessThanOrEqual(2);
    expect(r.out.writeRoot).toBe("EACCES");
    expect(r.out.writeEtc).toBe("EACCES");
    expect(r.out.readShadow).toBe("EACCES");
    expect(r.out.evalBlocked).toBe("EvalError");
    expect(r.out.net).toBe("ENETUNREACH");
    expect(isAlive(process.pid)).toBe(true);
    expect(existsSync("/zerocell-escape-test")).toBe(false);
  });

  it("dies with its wrapper: a SIGKILL of the wrapper the gateway holds kills the host (parent-death signal survives the uid change)", async () => {
    const argv = spawnMod.isolatedCommand(isolation, [process.execPath, "-e", "setInterval(() => {}, 1000)"]);
    const child = (await import("node:child_process")).spawn(argv[0]!, argv.slice(1), { stdio: "ignore", env: {} });
    const inner = await vi.waitFor(() => {
      const pids = childPids(child.pid!);
      // Until the guest node itself runs (the wrappers exec their way down to it).
      const cmdline = (pid: number) => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, "utf8");
        } catch {
          return "";
        }
      };
      expect(pids.some((p) => cmdline(p).includes("setInterval"))).toBe(true);
      return pids;
    }, { timeout: 15_000, interval: 50 });
    child.kill("SIGKILL");
    // Dead (a zombie of the machine's init at worst: killed, holding no memory).
    const state = (pid: number) => (existsSync(`/proc/${pid}/status`) ? /^State:\s+(\S)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] : "gone");
    await vi.waitFor(() => {
      for (const pid of inner) expect(["Z", "gone"], `pid ${pid}`).toContain(state(pid));
    }, { timeout: 15_000, interval: 50 });
  });

  it("cannot take more memory than its ceiling: the kernel kills it, not the machine", () => {
    expect(isolation.cgroup).toBeDefined();
    // 600 MiB of touched memory against a 200 MiB ceiling.
    const r = runEscaped(`const a = []; for (let i = 0; i < 60; i++) a.push(Buffer.alloc(10 * 1024 * 1024, 1)); console.log(JSON.stringify({ survived: true }));`, 200 * 1024 * 1024);
    expect(r.out.survived).toBeUndefined();
    // (util-linux's unshare exits 1 when its child was killed; the cgroup counts the OOM kill.)
    expect(r.code).not.toBe(0);
    expect(r.oomKills).toBe(1);
  });
});
