/**
 * The x86 executor: CGI glue, the CPL 3 wall (privileged instructions fault at run time), W^X,
 * memory and time limits, the file tree's walls, snapshots and resets, and real programs
 * (busybox-static applets give the same output as natively).
 */
import { execFileSync } from "node:child_process";
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { decodeImage, encodeImage } from "../../src/bundle/index.js";
import type { EngineInstance } from "../../src/runtime/engine.js";
import { X86Engine, cgiEnvironment, parseCgiResponse, runProgram, SYS_ZEROCELL_READY, type X86Usage } from "../../src/runtime/x86/index.js";
import { SYS, SYSCALLS } from "../../src/runtime/x86/syscalls/index.js";
import { request } from "../contract/engine.contract.js";

import { x86Fixture, x86Manifest, x86Image } from "../helpers/x86.js";

const text = (b: Uint8Array) => Buffer.from(b).toString("utf8");
const BUSYBOX = "/bin/busybox";

describe("x86 CGI glue", () => {
  it("builds RFC 3875 meta-variables", () => {
    const env = cgiEnvironment(
      request("/app/run/x%20y?a=1&b=2", {
        method: "POST",
        scriptName: "/app",
        body: Buffer.from("hello"),
        headers: [["host", "h"], ["content-type", "text/plain"], ["content-length", "5"], ["x-test", "1"], ["x-test", "2"], ["cookie", "a=1"], ["cookie", "b=2"], ["proxy", "http://evil"], ["x_under", "no"]],
        params: { id: "42" },
      }),
      "/app/bin/app",
    );
    const m = new Map(env.map((e) => [e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1)]));
    expect(m.get("GATEWAY_INTERFACE")).toBe("CGI/1.1");
    expect(m.get("REQUEST_METHOD")).toBe("POST");
    expect(m.get("SCRIPT_NAME")).toBe("/app");
    expect(m.get("PATH_INFO")).toBe("/run/x y");
    expect(m.get("QUERY_STRING")).toBe("a=1&b=2");
    expect(m.get("CONTENT_TYPE")).toBe("text/plain");
    expect(m.get("CONTENT_LENGTH")).toBe("5");
    expect(m.get("HTTP_X_TEST")).toBe("1, 2");
    expect(m.get("HTTP_COOKIE")).toBe("a=1; b=2");
    expect(m.get("HTTPS")).toBe("on");
    expect(m.get("SERVER_PROTOCOL")).toBe("HTTP/1.1");
    expect(m.get("ZEROCELL_PARAM_ID")).toBe("42");
    expect(m.has("HTTP_PROXY")).toBe(false); // httpoxy
    expect(m.has("HTTP_X_UNDER")).toBe(false); // "_" in a header name would alias "-"
    expect(m.has("HTTP_CONTENT_LENGTH")).toBe(false);
  });

  it("parses CGI responses: Status, Location, headers, LF or CRLF", () => {
    const ok = parseCgiResponse(Buffer.from("Status: 404 Not Found\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nbody"));
    expect(ok).toMatchObject({ ok: true, response: { status: 404, headers: [["content-type", "text/plain"], ["set-cookie", "a=1"], ["set-cookie", "b=2"]] } });
    expect(ok.ok && text(ok.response.body)).toBe("body");
    const redirect = parseCgiResponse(Buffer.from("Location: /elsewhere\n\n"));
    expect(redirect).toMatchObject({ ok: true, response: { status: 302, headers: [["location", "/elsewhere"]] } });
    const lf = parseCgiResponse(Buffer.from("Content-Type: a/b\n\n\nx"));
    expect(lf.ok && text(lf.response.body)).toBe("\nx");
    const dropped = parseCgiResponse(Buffer.from("Content-Type: a/b\nContent-Length: 99\nConnection: close\n\n"));
    expect(dropped.ok && dropped.response.headers).toEqual([["content-type", "a/b"]]);
  });

  it("refuses malformed CGI responses", () => {
    for (const bad of ["", "hello world", "Content-Type: text/plain", "X-Only: 1\n\nbody", "Status: 99\n\n", "Status: abc\n\n", "Bad Header: 1\n\n", "Content-Type: a\x01b\n\n", ": x\n\n", "\n\nbody"]) {
      expect(parseCgiResponse(Buffer.from(bad)).ok, JSON.stringify(bad)).toBe(false);
    }
  });
});

describe("x86 system call table", () => {
  it("gives every named number one handler, the Linux x86-64 numbers where zerocell answers them", () => {
    const numbers = Object.values(SYS);
    expect(new Set(numbers).size).toBe(numbers.length); // a repeated number would drop a handler
    expect(SYSCALLS.size).toBe(numbers.length);
    for (const nr of numbers) expect(typeof SYSCALLS.get(nr)).toBe("function");
    expect([SYS.read, SYS.write, SYS.openat, SYS.mmap, SYS.exit_group, SYS.getrandom]).toEqual([0, 1, 257, 9, 231, 318]);
    expect(SYS_ZEROCELL_READY).toBe(0x5a0ce11);
    for (const absent of [56, 57, 59, 101, 202, 273, 334]) expect(SYSCALLS.has(absent)).toBe(false); // clone, fork, execve, ptrace, futex, set_robust_list, rseq: ENOSYS
  });
});

describe("x86 executor: the second wall (CPL 3, W^X, no host files)", () => {
  let privileged: Buffer;
  beforeAll(() => {
    privileged = x86Fixture("privileged");
  });

  const run = (what: string) => runProgram(privileged, ["privileged", what], new Uint8Array(0), { memoryMb: 16, timeoutMs: 5000 });

  // What stops each: the CPU's #GP at CPL 3 (SIGSEGV), the engine's port-I/O hooks, a stray
  // interrupt, or Unicorn refusing an instruction it does not emulate in 64-bit mode.
  const GP = { kind: "signal", message: /^general protection fault \(#GP\)/ };
  it.each([
    ["hlt", GP],
    ["cli", GP],
    ["in", { kind: "fault", message: /^in instruction \(port 0x60\)/ }],
    ["out", { kind: "fault", message: /^out instruction \(port 0x80\)/ }],
    ["rdmsr", GP],
    ["wrmsr", GP],
    ["movcr3", GP],
    ["lgdt", GP],
    ["int80", { kind: "signal", message: /^interrupt 0x80 \(int n is not a system call here\)/ }],
    ["ud2", { kind: "fault", message: /^invalid instruction at/ }],
    ["rdtsc", GP],
    ["sysenter", { kind: "fault", message: /^invalid instruction at/ }],
  ] as const)("%s faults at CPL 3", (what, stop) => {
    const r = run(what);
    expect(r.stdout.toString()).not.toContain("survived");
    expect(r.exitCode).toBeGreaterThanOrEqual(128);
    expect(r.stop.kind).toBe(stop.kind);
    expect(r.stop.kind === "signal" || r.stop.kind === "fault" ? r.stop.message : "").toMatch(stop.message);
  });

  it("privileged instructions raise #GP (not a silent stop)", () => {
    for (const what of ["hlt", "cli", "wrmsr", "movcr3", "lgdt", "rdtsc"]) {
      const r = run(what);
      expect(r.stop.kind === "signal" && r.stop.message, what).toContain("general protection");
    }
  });

  it.each([
    ["textwrite", "write to read-only memory"],
    ["stackexec", "execution of non-executable memory"],
    ["null", "unmapped memory at 0x0"],
    ["wild", "jump to unmapped memory"],
    ["recurse", "stack overflow"],
    ["div0", "divide error"],
    ["abort", "signal 6"],
  ])("%s ends in a clear fault", (what, message) => {
    const r = run(what);
    expect(r.exitCode).toBeGreaterThanOrEqual(128);
    expect(r.stop.kind === "signal" || r.stop.kind === "fault" ? r.stop.message : "").toContain(message);
  });

  it("open(\"/etc/passwd\") and friends find nothing", () => {
    const r = runProgram(x86Fixture("open-passwd"), ["open-passwd"]);
    expect(r.exitCode).toBe(0);
    const out = r.stdout.toString();
    expect(out).not.toContain("OPENED");
    expect(out).toContain("/etc/passwd: No such file or directory");
    expect(out).toContain("/proc/self/environ: No such file or directory");
  });

  it("mmap/mprotect with PROT_EXEC are refused, and the data page does not run", () => {
    const bin = x86Fixture("mmap-exec");
    const r = runProgram(bin, ["mmap-exec"]);
    const out = r.stdout.toString();
    expect(out).not.toMatch(/MAPPED|ALLOWED/);
    expect(out).toContain("mprotect rx: Operation not permitted");
    const jump = runProgram(bin, ["mmap-exec", "jump"]);
    expect(jump.stop.kind === "signal" && jump.stop.message).toContain("execution of non-executable memory");
    expect(jump.stdout.toString()).not.toContain("jumped");
  });
});

describe("x86 executor: limits", () => {
  it("the memory limit stops a memory bomb (malloc fails inside the limit)", () => {
    const r = runProgram(x86Fixture("memory-bomb"), ["memory-bomb"], new Uint8Array(0), { memoryMb: 16 });
    expect(r.exitCode).toBe(1);
    const mib = Number(/after (\d+) MiB/.exec(r.stderr.toString())?.[1]);
    expect(mib).toBeGreaterThan(8);
    expect(mib).toBeLessThanOrEqual(16); // the arena is 16 MiB: brk and mmap share it
  });

  it("an infinite loop without system calls ends at the deadline", () => {
    const t0 = performance.now();
    const r = runProgram(x86Fixture("infinite-loop"), ["infinite-loop"], new Uint8Array(0), { timeoutMs: 300 });
    expect(r.stop.kind).toBe("timeout");
    expect(performance.now() - t0).toBeLessThan(3000);
  });

  it("an infinite loop ends when the meter budget runs out", () => {
    const r = runProgram(x86Fixture("infinite-loop"), ["infinite-loop"], new Uint8Array(0), { budget: 100_000n });
    expect(r.stop.kind).toBe("budget");
    expect(r.usage.events).toBeGreaterThanOrEqual(100_000n);
    expect(r.usage.events).toBeLessThan(110_000n);
  });

  it("a system call flood ends at the deadline", () => {
    const r = runProgram(x86Fixture("syscall-flood"), ["syscall-flood"], new Uint8Array(0), { timeoutMs: 300 });
    expect(r.stop.kind).toBe("timeout");
    expect(r.usage.syscalls).toBeGreaterThan(1000);
  });

  it("meters exact instructions in instruction mode", () => {
    const bin = x86Fixture("cgi-hello");
    const blocks = runProgram(bin, ["cgi-hello"], new Uint8Array(0), { meter: "block" }).usage;
    const insns = runProgram(bin, ["cgi-hello"], new Uint8Array(0), { meter: "instruction" }).usage;
    expect(insns.codeBytes).toBe(blocks.codeBytes); // the same code ran
    expect(insns.events).toBeGreaterThan(blocks.events);
    const perInsn = Number(insns.codeBytes) / Number(insns.events);
    expect(perInsn).toBeGreaterThan(1);
    expect(perInsn).toBeLessThan(8);
  });
});

describe("x86 executor: instruction counts from the block meter", () => {
  // The block meter counts instructions per block with the validator's instruction-start table;
  // instruction mode counts them one by one in a hook. Both must agree exactly on compiled code.
  const busybox = () => execFileSync("sh", ["-c", "cat /bin/busybox"], { maxBuffer: 64 << 20 });
  it.each([
    ["cgi-hello", () => x86Fixture("cgi-hello"), ["cgi-hello"], Buffer.alloc(0)],
    ["busybox sha256sum", busybox, ["sha256sum"], Buffer.alloc(50_000, 120)],
    ["busybox wc -l", busybox, ["wc", "-l"], Buffer.from("a\nbb\nccc\n".repeat(2000))],
  ] as Array<[string, () => Uint8Array, string[], Buffer]>)("%s", (_name, program, argv, stdin) => {
    const bin = program();
    const blocks = runProgram(bin, argv, stdin, { meter: "block", programPath: "bin/prog" }).usage;
    const exact = runProgram(bin, argv, stdin, { meter: "instruction", programPath: "bin/prog" }).usage;
    expect(blocks.events).toBeLessThan(exact.events); // really counted per block
    expect(blocks.instructions).toBeGreaterThan(0n);
    expect(blocks.instructions).toBe(exact.events);
    expect(exact.instructions).toBe(exact.events);
  });
});

describe("x86 executor: busybox-static applets give the same output as natively", () => {
  const lines: string[] = [];
  for (let i = 0; i < 3000; i++) lines.push(`line ${i} ${i % 7 === 0 ? "zerocell" : "other"} ${"x".repeat(i % 50)}`);
  const input = Buffer.from(lines.join("\n") + "\n");
  const busybox = () => execFileSync("sh", ["-c", "cat /bin/busybox"], { maxBuffer: 64 << 20 });

  it.each([
    [["echo", "hello", "world"], Buffer.alloc(0)],
    [["wc"], input],
    [["wc", "-l"], input],
    [["grep", "-c", "zerocell"], input],
    [["grep", "-n", "line 2.*zerocell"], input],
    [["sha256sum"], input],
  ] as Array<[string[], Buffer]>)("busybox %j", (argv, stdin) => {
    const native = execFileSync(BUSYBOX, argv, { input: stdin });
    const r = runProgram(busybox(), argv, stdin, { programPath: "bin/busybox" });
    expect(r.exitCode).toBe(0);
    expect(r.stdout.toString()).toBe(native.toString());
  });
});

describe("x86 engine: CGI requests, snapshots, resets", () => {
  let engine: X86Engine;
  let inst: EngineInstance & { lastUsage: X86Usage | undefined };
  const logs: string[] = [];
  const manifest = x86Manifest("bin/cgi", { timeoutMs: 2000, memoryMb: 16 });
  let image: ReturnType<typeof x86Image>;

  beforeAll(async () => {
    engine = new X86Engine({ log: (l) => logs.push(l) });
    image = x86Image({ "bin/cgi": x86Fixture("cgi-test"), "bin/hello": x86Fixture("cgi-hello"), "bin/nohook": x86Fixture("open-passwd"), "bin/privileged": x86Fixture("privileged") });
    inst = await engine.instantiate(await engine.prepare({ deploymentId: "x86-unit", manifest, image, maxResponseBytes: 1024 * 1024 }));
    inst.snapshot();
  });
  afterAll(() => inst?.dispose());

  it("answers with the program's status, headers and body", async () => {
    const created = await inst.handle(request("/stdin", { method: "POST", body: Buffer.alloc(10_000, 1) }));
    expect(created.status).toBe(201);
    expect(text(created.body)).toBe("10000");
    const notFound = await inst.handle(request("/notfound"));
    expect(notFound.status).toBe(404);
    expect(notFound.headers).toContainEqual(["x-extra", "1"]);
    const redirect = await inst.handle(request("/redirect"));
    expect(redirect.status).toBe(302);
    expect(redirect.headers).toContainEqual(["location", "https://example.com/elsewhere"]);
    expect(inst.lastUsage?.events).toBeGreaterThan(0n);
    await inst.reset();
  });

  it("passes the meta-variables", async () => {
    const r = await inst.handle(request("/cgi/env?q=1", { scriptName: "/cgi", headers: [["host", "h"], ["x-test", "yes"], ["proxy", "x"]], params: { id: "7" } }));
    expect(text(r.body)).toContain("PATH_INFO=/env\n");
    expect(text(r.body)).toContain("SCRIPT_NAME=/cgi\n");
    expect(text(r.body)).toContain("QUERY_STRING=q=1\n");
    expect(text(r.body)).toContain("HTTP_X_TEST=yes\n");
    expect(text(r.body)).toContain("ZEROCELL_PARAM_ID=7\n");
    expect(text(r.body)).not.toContain("HTTP_PROXY");
    await inst.reset();
  });

  it("maps failures: malformed → 502, output limit → 502, crash → 500, deadline → 504; the instance keeps working", async () => {
    const seen: number[] = [];
    for (const path of ["/malformed", "/big", "/crash", "/spin"]) {
      // The response limit is an error with its own code (the host forwards it, the gateway answers 502).
      seen.push(await inst.handle(request(path)).then((r) => r.status, (e: { code?: string; status?: number }) => (e.code === "response_too_large" ? e.status! : -1)));
      await inst.reset();
      expect(text((await inst.handle(request("/count"))).body)).toBe("1 initialised");
      await inst.reset();
    }
    expect(seen).toEqual([502, 502, 500, 504]);
    expect(logs.some((l) => l.includes("malformed CGI response"))).toBe(true);
    expect(logs.some((l) => l.includes("segmentation fault"))).toBe(true);
  });

  it("resumes from the ready trap: memory carries over without a reset, a reset returns to the snapshot", async () => {
    expect(text((await inst.handle(request("/count"))).body)).toBe("1 initialised");
    expect(text((await inst.handle(request("/count"))).body)).toBe("2 initialised");
    expect(text((await inst.handle(request("/tmp"))).body)).toBe("1");
    expect(text((await inst.handle(request("/tmp"))).body)).toBe("2");
    await inst.reset();
    expect(text((await inst.handle(request("/count"))).body)).toBe("1 initialised");
    expect(text((await inst.handle(request("/tmp"))).body)).toBe("1");
    await inst.reset();
  });

  it("mounts a key's /data and returns it when changed", async () => {
    const data = encodeImage({ entries: [{ path: "note", kind: "file", mode: 0o644, data: Buffer.from("ab") }], totalBytes: 2 });
    const r = await inst.handle(request("/data", { data }));
    expect(text(r.body)).toBe("noted");
    const files = decodeImage(Buffer.from(r.data!)).entries.filter((e) => e.kind === "file");
    expect(files.map((e) => [e.path, e.data?.toString()])).toEqual([["note", "abx"]]);
    await inst.reset();
    expect((await inst.handle(request("/data"))).status).toBe(500); // no /data after the reset
    await inst.reset();
  });

  it("exports a snapshot another instance imports without running init", async () => {
    const snap = inst.exportSnapshot();
    const other = await engine.instantiate(await engine.prepare({ deploymentId: "x86-unit", manifest, image }));
    try {
      await other.importSnapshot(snap);
      expect(text((await other.handle(request("/count"))).body)).toBe("1 initialised");
      await other.reset();
      expect(text((await other.handle(request("/count"))).body)).toBe("1 initialised");
      await expect(other.importSnapshot({ ...snap, extra: { ...(snap.extra as object), program: "0".repeat(64) } })).rejects.toThrow(/another program/);
      await expect(other.importSnapshot({ ...snap, memory: snap.memory.subarray(1) })).rejects.toThrow();
    } finally {
      other.dispose();
    }
  });

  it("a program without the ready trap starts at its entry point for every request", async () => {
    const m = x86Manifest("bin/nohook", { memoryMb: 16 });
    const i = await engine.instantiate(await engine.prepare({ deploymentId: "x86-unit-nohook", manifest: m, image }));
    try {
      for (let k = 0; k < 3; k++) {
        const r = await i.handle(request("/"));
        expect(r.status).toBe(200);
        expect(text(r.body)).toContain("/etc/passwd: No such file or directory");
        if (k === 1) await i.reset();
      }
      expect(logs.some((l) => l.includes("did not call zerocell_ready"))).toBe(true);
    } finally {
      i.dispose();
    }
  });

  it("a CGI hello world answers after the snapshot", async () => {
    const m = x86Manifest("bin/hello", { memoryMb: 16 });
    const i = await engine.instantiate(await engine.prepare({ deploymentId: "x86-unit-hello", manifest: m, image }));
    try {
      const r = await i.handle(request("/?zerocell"));
      expect(r.status).toBe(200);
      expect(r.headers).toContainEqual(["content-type", "text/plain"]);
      expect(text(r.body)).toBe("hello from x86, zerocell\n");
      i.snapshot();
      await i.reset();
      expect(text((await i.handle(request("/"))).body)).toBe("hello from x86\n");
    } finally {
      i.dispose();
    }
  });

  it("validate refuses what cannot run", () => {
    const bad = (m: typeof manifest, img: typeof image) => {
      try {
        engine.validate(m, img);
      } catch (e) {
        return (e as { status?: number; code?: string }).status === 400 ? (e as { code: string }).code : `unexpected ${String(e)}`;
      }
      return "accepted";
    };
    expect(bad(x86Manifest("bin/missing"), image)).toBe("manifest_invalid");
    expect(bad(x86Manifest("../bin/cgi"), image)).toBe("manifest_invalid");
    expect(bad({ ...manifest, runtime: "php" } as typeof manifest, image)).toBe("manifest_invalid");
    expect(bad(x86Manifest("bin/x"), x86Image({ "bin/x": Buffer.from("not an elf") }))).toBe("x86_program_invalid");
    expect(bad(x86Manifest("bin/x"), x86Image({ "bin/x": execFileSync("sh", ["-c", "cat /bin/ls"], { maxBuffer: 64 << 20 }) }))).toBe("x86_program_invalid"); // dynamic
    expect(bad(x86Manifest("bin/privileged"), image)).not.toBe("accepted"); // the static validator
    expect(bad(manifest, image)).toBe("accepted");
  });
});
