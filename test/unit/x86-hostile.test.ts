/**
 * The x86 executor against a hostile tenant (red-team findings): response floods stopped while
 * the guest writes, the /tmp and /data quotas against the unlink-while-open game, undefined
 * protection bits, and the host-owned pages (GDT, iretq frame and stub) out of the guest's reach.
 * Every program is built from C in test/fixtures/x86-exec/.
 */
import { execFileSync } from "node:child_process";
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { encodeImage } from "../../src/bundle/index.js";
import { DEFAULT_MAX_RESPONSE_BYTES, type EngineInstance } from "../../src/runtime/engine.js";
import { X86Engine, runProgram } from "../../src/runtime/x86/index.js";
import { request } from "../contract/engine.contract.js";
import { ROOT, x86Fixture, x86Image, x86Manifest } from "../helpers/x86.js";

const text = (b: Uint8Array) => Buffer.from(b).toString("utf8");
const MiB = 1024 * 1024;

/**
 * Serves one request in a fresh child process (test/helpers/x86-rss-child.ts) and returns how it
 * ended and how much the process's peak RSS grew over its RSS before the request.
 */
function measureRequest(program: string, path: string, o: { maxResponseBytes: number; memoryMb: number; warmup: string }) {
  x86Fixture(program);
  const bin = `${ROOT}/test/fixtures/build/x86-exec/${program}`;
  const args = ["--import", "tsx", `${ROOT}/test/helpers/x86-rss-child.ts`, bin, path, String(o.maxResponseBytes), String(o.memoryMb), o.warmup];
  const out = execFileSync(process.execPath, args, { cwd: ROOT, encoding: "utf8", timeout: 60_000 });
  const r = JSON.parse(out.trim().split("\n").pop()!) as { code?: string; status?: number; body?: string; ms: number; baseRss: number; maxRss: number };
  return { ...r, growthMiB: (r.maxRss - r.baseRss) / MiB };
}

type Outcome = { status: number; body: string } | { code: string | undefined; status: number | undefined; message: string };

async function outcome(inst: EngineInstance, url: string, init: Parameters<typeof request>[1] = {}): Promise<Outcome> {
  try {
    const r = await inst.handle(request(url, init));
    return { status: r.status, body: text(r.body) };
  } catch (e) {
    const err = e as { code?: string; status?: number; message?: string };
    return { code: err.code, status: err.status, message: String(err.message) };
  } finally {
    await inst.reset();
  }
}

describe("x86 hostile: response floods are stopped while the guest writes", () => {
  const logs: string[] = [];
  const engine = new X86Engine({ log: (l) => logs.push(l) });
  const image = () => x86Image({ "bin/app": x86Fixture("output-flood") });
  const instances: EngineInstance[] = [];
  const instance = async (maxResponseBytes: number | undefined) => {
    const spec = { deploymentId: "x86-flood", manifest: x86Manifest("bin/app", { memoryMb: 16, timeoutMs: 30_000 }), image: image(), ...(maxResponseBytes === undefined ? {} : { maxResponseBytes }) };
    const inst = await engine.instantiate(await engine.prepare(spec));
    instances.push(inst);
    return inst;
  };
  afterAll(() => instances.forEach((i) => i.dispose()));

  it("1 MiB blocks forever → response_too_large (502) at spec.maxResponseBytes, not at the 30 s timeout", async () => {
    const inst = await instance(4 * MiB);
    for (const path of ["/blocks", "/dup"]) {
      const r = await outcome(inst, path);
      // Stopped while it writes: a guest that ran on would end at timeout_ms with another code.
      expect(r, path).toMatchObject({ code: "response_too_large", status: 502 });
      expect("message" in r && r.message).toMatch(/more than 4194304 bytes/);
    }
    // The instance still answers after the stop (and its reset).
    expect(await outcome(inst, "/size/5")).toEqual({ status: 200, body: "xxxxx" });
  });

  it("1-byte writes and 1-byte iovecs are stopped at the limit too", async () => {
    const inst = await instance(256 * 1024);
    for (const path of ["/bytes", "/writev"]) expect(await outcome(inst, path), path).toMatchObject({ code: "response_too_large", status: 502 });
  });

  it("the limit is the body limit: exactly maxResponseBytes passes, one byte more fails", async () => {
    const inst = await instance(2 * MiB);
    const ok = await outcome(inst, `/size/${2 * MiB}`);
    expect(ok.status).toBe(200);
    expect("body" in ok && ok.body.length).toBe(2 * MiB);
    // Within stdout's allowance for CGI headers, but the body is one byte too long.
    expect(await outcome(inst, `/size/${2 * MiB + 1}`)).toMatchObject({ code: "response_too_large", status: 502 });
  });

  it("without a limit in the spec the gateway's default (32 MiB) applies", async () => {
    const inst = await instance(undefined);
    const r = await outcome(inst, "/blocks");
    expect(r).toMatchObject({ code: "response_too_large", status: 502 });
    expect("message" in r && r.message).toContain(`more than ${DEFAULT_MAX_RESPONSE_BYTES} bytes`);
  });

  it("stderr is kept to 64 KiB (64 MiB written) and the request succeeds", async () => {
    const inst = await instance(MiB);
    logs.length = 0;
    expect(await outcome(inst, "/stderr")).toEqual({ status: 200, body: "logged\n" });
    const line = logs.find((l) => l.includes("stderr:"));
    expect(line).toBeDefined();
    expect(line!.length).toBeLessThan(8 * 1024);
  });

  it("host memory stays bounded: 4 MiB of 1-byte iovecs cost the host process < 128 MiB (was ~520 MiB)", () => {
    const r = measureRequest("output-flood", "/writev", { maxResponseBytes: 4 * MiB, memoryMb: 16, warmup: "/size/10" });
    expect(r).toMatchObject({ code: "response_too_large", status: 502 });
    expect(r.growthMiB).toBeLessThan(128);
  });

  it("unknown system calls: 5000 distinct numbers make at most 17 log lines", async () => {
    const inst = await instance(MiB);
    logs.length = 0;
    expect(await outcome(inst, "/enosys")).toEqual({ status: 200, body: "enosys 5000\n" });
    const lines = logs.filter((l) => l.includes("is not available (ENOSYS)"));
    expect(lines.length).toBe(17);
    expect(lines[16]).toContain("further unknown system calls are not logged");
  });
});

describe("x86 hostile: quotas hold against the unlink-while-open game", () => {
  const bin = () => x86Fixture("tmp-quota");
  const game = (args: string[]) => runProgram(bin(), ["tmp-quota", ...args], new Uint8Array(0), { memoryMb: 64, timeoutMs: 30_000 });

  it.each(["/unlink", "/dup", "/rename"])("%s: unlinked open files stay charged, ENOSPC at the /tmp quota", (g) => {
    const r = game([g]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout.toString()).toBe("total 64 MiB, stopped by No space left on device\n");
  });

  it("truncating gives the host memory back too: 48 files of 16 MiB truncated to 0 under a 64 MiB quota (was ~830 MiB of RSS)", () => {
    const r = measureRequest("tmp-quota", "/truncate", { maxResponseBytes: MiB, memoryMb: 64, warmup: "/none" });
    expect(r).toMatchObject({ status: 200, body: "truncated 48 files of 16 MiB, stopped by nothing\n" });
    expect(r.growthMiB).toBeLessThan(300);
  });

  it("closing the last descriptor gives the bytes back", () => {
    const r = game(["/release"]);
    expect(r.stdout.toString()).toBe("kept 64 MiB, stopped by No space left on device\nafter closing: wrote 32 MiB\n");
  });

  describe("through the engine (/data, and across requests)", () => {
    let engine: X86Engine;
    let inst: EngineInstance;
    beforeAll(async () => {
      engine = new X86Engine({ log: () => {} });
      const image = x86Image({ "bin/app": bin() });
      inst = await engine.instantiate(await engine.prepare({ deploymentId: "x86-quota", manifest: x86Manifest("bin/app", { memoryMb: 64, dataMb: 16, timeoutMs: 30_000 }), image }));
    });
    afterAll(() => inst?.dispose());

    it("/data: the key's quota (data_mb) holds the same way", async () => {
      const data = encodeImage({ entries: [], totalBytes: 0 });
      for (const g of ["/unlink", "/rename"]) {
        const r = await inst.handle(request(`/${g.slice(1)}?/data`, { data }));
        expect(text(r.body), g).toBe("total 16 MiB, stopped by No space left on device\n");
        await inst.reset();
      }
    });

    it("orphans of a finished request are credited back when the program starts again (no reset)", async () => {
      // tmp-quota exits after each request: the next one restarts it from the snapshot, keeping
      // /tmp; the descriptors of the finished run are closed, so its orphans are freed.
      for (let k = 0; k < 3; k++) expect(text((await inst.handle(request("/unlink"))).body), `request ${k}`).toBe("total 64 MiB, stopped by No space left on device\n");
      await inst.reset();
    });
  });
});

describe("x86 hostile: an open unlinked file in the snapshot", () => {
  it("stays charged and private through resets and a snapshot export/import", async () => {
    const engine = new X86Engine({ log: () => {} });
    const spec = () => ({ deploymentId: "x86-orphan", manifest: x86Manifest("bin/app", { memoryMb: 16 }), image: x86Image({ "bin/app": x86Fixture("orphan-snapshot") }) });
    const inst = await engine.instantiate(await engine.prepare(spec()));
    const other = await engine.instantiate(await engine.prepare(spec()));
    const expected = "orphan 1048576 bytes intact\nfilled 15 MiB, stopped by No space left on device\n";
    try {
      expect(text((await inst.handle(request("/"))).body)).toBe(expected);
      // Without a reset the program's own write through the descriptor is still there.
      expect(text((await inst.handle(request("/"))).body)).toMatch(/^orphan 1048576 bytes CHANGED\nfilled 15 MiB/);
      await inst.reset();
      expect(text((await inst.handle(request("/"))).body)).toBe(expected);
      await inst.reset();
      await other.importSnapshot(inst.exportSnapshot());
      for (let k = 0; k < 2; k++) {
        expect(text((await other.handle(request("/"))).body)).toBe(expected);
        await other.reset();
      }
    } finally {
      inst.dispose();
      other.dispose();
    }
  });
});

describe("x86 hostile: undefined protection bits are EINVAL, not a host error", () => {
  it("mprotect and mmap with unknown prot bits", () => {
    const r = runProgram(x86Fixture("prot-flags"), ["prot-flags"], new Uint8Array(0), { memoryMb: 16 });
    expect(r.stop).toEqual({ kind: "exit", code: 0 });
    const out = r.stdout.toString();
    for (const p of ["0x10", "0x20", "0x80", "0x1000000", "0x2000000", "0x3000003", "0x80000000", "0xffffffffffffffff"]) {
      expect(out).toContain(`mprotect ${p}: Invalid argument\n`);
      expect(out).toContain(`mmap ${p}: Invalid argument\n`);
    }
    // PROT_SEM is accepted by Linux and means nothing.
    for (const p of ["0x8", "0x9", "0xb"]) {
      expect(out).toContain(`mprotect ${p}: ok\n`);
      expect(out).toContain(`mmap ${p}: ok\n`);
    }
    expect(out).toMatch(/ALIVE\n$/);
  });
});

describe("x86 hostile: host-owned pages are not in the guest's address space", () => {
  const run = (what: string) => runProgram(x86Fixture("host-pages"), ["host-pages", what], new Uint8Array(0), { memoryMb: 16 });

  it.each([
    ["/gdt", "read of unmapped memory at 0x7fff00000028"],
    ["/gdt-code", "read of unmapped memory at 0x7fff00000030"],
    ["/frame", "read of unmapped memory at 0x7fff00000100"],
    ["/stub", "read of unmapped memory at 0x7fff00001000"],
    ["/stub-jump", "jump to unmapped memory at 0x7fff00001000"],
    ["/write", "write to unmapped memory at 0x7fff00000000"],
  ])("%s faults: %s", (what, message) => {
    const r = run(what);
    expect(r.stop.kind === "signal" && r.stop.message).toContain(`segmentation fault: ${message}`);
    expect(r.stdout.toString()).toBe("Content-Type: text/plain\r\n\r\n");
  });

  // The CPU's own descriptor loads at CPL 3 (the validator rejects these instructions; a
  // computed jump could still reach them): there is no GDT to read, so no descriptor leaks.
  it.each([
    ["movds", "read of unmapped memory at 0x7fff00000028"],
    ["lar", "read of unmapped memory at 0x7fff00000030"],
    ["farret", "read of unmapped memory at 0x7fff00000030"],
  ])("%s (a descriptor load) faults: %s", (what, message) => {
    const r = runProgram(x86Fixture("privileged"), ["privileged", what], new Uint8Array(0), { memoryMb: 16 });
    expect(r.stop.kind === "signal" && r.stop.message).toContain(`segmentation fault: ${message}`);
    expect(r.stdout.toString()).toBe("");
  });

  it("through the engine: a crash (500), and the next request is served", async () => {
    const engine = new X86Engine({ log: () => {} });
    const inst = await engine.instantiate(await engine.prepare({ deploymentId: "x86-host-pages", manifest: x86Manifest("bin/app", { memoryMb: 16 }), image: x86Image({ "bin/app": x86Fixture("host-pages") }) }));
    try {
      for (const what of ["/gdt", "/frame", "/stub", "/stub-jump"]) {
        const r = await inst.handle(request(what));
        expect(r.status, what).toBe(500);
        expect(text(r.body)).not.toContain("read 0x");
        await inst.reset();
        expect(text((await inst.handle(request("/ok"))).body)).toBe("ok\n");
        await inst.reset();
      }
      // After an export and import (another machine's CPU state) the pages are still gone.
      const other = await engine.instantiate(await engine.prepare({ deploymentId: "x86-host-pages", manifest: x86Manifest("bin/app", { memoryMb: 16 }), image: x86Image({ "bin/app": x86Fixture("host-pages") }) }));
      try {
        await other.importSnapshot(inst.exportSnapshot());
        expect((await other.handle(request("/gdt"))).status).toBe(500);
        await other.reset();
        expect(text((await other.handle(request("/ok"))).body)).toBe("ok\n");
      } finally {
        other.dispose();
      }
    } finally {
      inst.dispose();
    }
  });
});
