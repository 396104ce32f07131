import { describe, it, expect, beforeAll, afterAll, vi } from "vitest";
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { packDirectory } from "../../src/bundle/index.js";
import { UNICORN_20_PATH, UNICORN_21_PATH } from "../../src/runtime/x86/library-path.js";
import { startServer, fetchApp, admin, writeBundle, isAlive, ROOT, type TestServer } from "../helpers/server.js";

describe("native x86-64 CGI apps through the platform", () => {
  let server: TestServer;
  beforeAll(async () => {
    // The example's binary and the hostile fixtures are built from source (musl-gcc -static).
    execFileSync("node", [join(ROOT, "scripts", "build-examples.mjs")], { stdio: "ignore" });
    execFileSync(join(ROOT, "scripts", "build-x86-exec-fixtures.sh"), { stdio: "ignore" });
    server = await startServer();
  }, 120_000);
  afterAll(async () => {
    const pids = server.hostPids();
    expect(await server.stop()).toBe(0);
    for (const pid of pids) await vi.waitFor(() => expect(isAlive(pid)).toBe(false), { timeout: 10_000, interval: 100 });
  });

  it("deploys examples/x86-cgi (validated at deploy) and serves it over HTTPS in snapshot mode", async () => {
    await server.cli(["deploy", join(ROOT, "examples", "x86-cgi"), "--app", "x86-cgi"]);
    for (const n of [12, 999]) {
      const r = await fetchApp(server, "x86.localhost", `/sq?${n}`);
      expect(r.status).toBe(200);
      expect(r.text).toBe(`Hello from native x86-64 on Zerocell\nmethod=GET path=/sq n=${n} n^2=${n * n}\n`);
      expect(r.headers["x-zerocell-instance"]).toMatch(/^snapshot; /);
    }
  });

  it("its hosts run Debian's Unicorn 2.1.1 where setup installed it (else 2.0.1)", () => {
    const want = existsSync(UNICORN_21_PATH) ? UNICORN_21_PATH : UNICORN_20_PATH;
    // Every process under the server (wrappers and the node hosts inside them).
    const all = readdirSync("/proc").filter((d) => /^\d+$/.test(d));
    const parent = new Map<number, number>();
    for (const d of all) {
      try {
        const stat = readFileSync(`/proc/${d}/stat`, "utf8");
        parent.set(Number(d), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
      } catch {
        // gone
      }
    }
    const under = (pid: number): boolean => {
      for (let p = parent.get(pid), n = 0; p !== undefined && n < 10; p = parent.get(p), n++) if (p === server.proc.pid) return true;
      return false;
    };
    const libs = new Set<string>();
    for (const pid of parent.keys()) {
      if (!under(pid)) continue;
      let maps = "";
      try {
        maps = readFileSync(`/proc/${pid}/maps`, "utf8");
      } catch {
        continue;
      }
      for (const m of maps.matchAll(/\s(\/\S*libunicorn\.so[.\d]*)$/gm)) libs.add(m[1]!);
    }
    expect([...libs]).toEqual([want]);
  });

  it("writes the guest's instructions and CPU time into each request's usage record", async () => {
    const before = Date.now();
    for (const n of [3, 4, 5]) expect((await fetchApp(server, "x86.localhost", `/sq?${n}`)).status).toBe(200);
    const db = new Database(join(server.dataDir, "zerocell.db"), { readonly: true });
    try {
      const select = () =>
        db
          .prepare("SELECT u.instructions, u.cpu_us, u.wall_us FROM usage_records u JOIN apps a ON a.id = u.app_id WHERE a.name = 'x86-cgi' AND u.mode != 'warmup' AND u.started_at >= ?")
          .all(before) as Array<{ instructions: number | null; cpu_us: number | null; wall_us: number }>;
      // Usage is flushed every 100 ms; a loaded machine may take longer: wait for the three, then
      // make sure no fourth arrives.
      await expect.poll(() => select().length, { timeout: 20_000, interval: 50 }).toBe(3);
      await new Promise((r) => setTimeout(r, 200));
      const rows = select();
      expect(rows.length).toBe(3);
      for (const r of rows) {
        // The CGI hello world runs a few thousand instructions per request (printf, the query parsing).
        expect(r.instructions).toBeGreaterThan(500);
        expect(r.instructions).toBeLessThan(5_000_000);
        expect(r.cpu_us).toBeGreaterThan(0);
      }
      const daily = db.prepare("SELECT SUM(d.instructions) AS n FROM usage_daily d JOIN apps a ON a.id = d.app_id WHERE a.name = 'x86-cgi'").get() as { n: number };
      const all = db.prepare("SELECT SUM(u.instructions) AS n FROM usage_records u JOIN apps a ON a.id = u.app_id WHERE a.name = 'x86-cgi'").get() as { n: number };
      expect(daily.n).toBe(all.n);
    } finally {
      db.close();
    }
  });

  it("hostile programs that pass validation end in clear errors while the server keeps serving", async () => {
    const fixture = (name: string) => readFileSync(join(ROOT, "test", "fixtures", "build", "x86-exec", name));
    const deploy = (name: string, limits: string) =>
      server.cli(["deploy", writeBundle({ "zerocell.toml": `runtime = "x86"\nhealth = []\n[x86]\nprogram = "bin/app"\n[limits]\n${limits}\n[[routes]]\nhost = "${name}.localhost"\n`, "bin/app": fixture(name) }), "--app", `x86-${name}`]);
    for (const name of ["infinite-loop", "syscall-flood", "mmap-exec", "open-passwd"]) await deploy(name, "timeout_ms = 1500\nmemory_mb = 64");
    // Filling memory takes the emulator a while (every guest store is slow in libunicorn 2.0.1).
    await deploy("memory-bomb", "timeout_ms = 20000\nmemory_mb = 16");
    // Loops (with or without system calls) end at timeout_ms with 504; the example answers meanwhile.
    for (const name of ["infinite-loop", "syscall-flood"]) {
      const t0 = Date.now();
      const looping = fetchApp(server, `${name}.localhost`, "/");
      await new Promise((r) => setTimeout(r, 300));
      expect((await fetchApp(server, "x86.localhost", "/sq?2")).status).toBe(200);
      const r = await looping;
      expect(r.status, name).toBe(504);
      expect(Date.now() - t0).toBeLessThan(30_000);
    }
    // The memory bomb's malloc fails inside memory_mb; the program exits 1 → 500.
    expect((await fetchApp(server, "memory-bomb.localhost", "/")).status).toBe(500);
    // W^X: no executable mapping, no mprotect to executable.
    const wx = await fetchApp(server, "mmap-exec.localhost", "/");
    expect(wx.status).toBe(200);
    // (The engine answers EPERM; musl's mmap() turns EPERM of an anonymous mapping into ENOMEM.)
    expect(wx.text).toMatch(/mmap rwx: (Operation not permitted|Out of memory)/);
    expect(wx.text).toMatch(/mmap rx: (Operation not permitted|Out of memory)/);
    expect(wx.text).toContain("mprotect rx: Operation not permitted");
    expect(wx.text).not.toMatch(/MAPPED|ALLOWED/);
    // No host file is reachable.
    const files = await fetchApp(server, "open-passwd.localhost", "/");
    expect(files.status).toBe(200);
    expect(files.text).toContain("/etc/passwd: No such file or directory");
    expect(files.text).not.toContain("OPENED");
    expect((await fetchApp(server, "x86.localhost", "/sq?5")).text).toContain("n^2=25");
  }, 120_000);

  it("a response flood is stopped while it writes (502 response_too_large), host pages crash (500), quotas hold", async () => {
    const fixture = (name: string) => readFileSync(join(ROOT, "test", "fixtures", "build", "x86-exec", name));
    for (const name of ["output-flood", "host-pages", "tmp-quota"]) {
      await server.cli(["deploy", writeBundle({ "zerocell.toml": `runtime = "x86"\nhealth = []\n[x86]\nprogram = "bin/app"\n[limits]\ntimeout_ms = 20000\nmemory_mb = 32\n[[routes]]\nhost = "${name}.localhost"\n`, "bin/app": fixture(name) }), "--app", `x86-${name}`]);
    }
    // 1 MiB blocks forever: the gateway's response limit (32 MiB by default) stops the guest.
    const t0 = Date.now();
    const flood = await fetchApp(server, "output-flood.localhost", "/blocks");
    expect(flood.status).toBe(502);
    expect(flood.text).toContain("response_too_large");
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect((await fetchApp(server, "output-flood.localhost", "/size/3")).text).toBe("xxx");
    // The emulated GDT is not readable at CPL 3: a crash, no descriptor bytes.
    const gdt = await fetchApp(server, "host-pages.localhost", "/gdt");
    expect(gdt.status).toBe(500);
    expect(gdt.text).not.toContain("read 0x");
    expect((await fetchApp(server, "host-pages.localhost", "/ok")).text).toBe("ok\n");
    // Unlinked open files stay charged to /tmp (quota = memory_mb).
    expect((await fetchApp(server, "tmp-quota.localhost", "/unlink")).text).toBe("total 32 MiB, stopped by No space left on device\n");
  }, 120_000);

  it("refuses a program with a privileged instruction at deploy, with the validator's report", async () => {
    const dir = writeBundle({
      "zerocell.toml": `runtime = "x86"\n[x86]\nprogram = "bin/app"\n[[routes]]\nhost = "evil-x86.localhost"\n`,
      "bin/app": readFileSync(join(ROOT, "test", "fixtures", "build", "x86-exec", "privileged")),
    });
    const r = await admin(server, "POST", "/v1/apps/evil-x86/deployments", { body: await packDirectory(dir), contentType: "application/gzip" });
    expect(r.status).toBe(400);
    expect(JSON.stringify(r.json.error)).toMatch(/x86|privileged|rejected/i);
    expect((await admin(server, "GET", "/v1/apps/evil-x86/deployments")).status).toBe(404);
  });
});
