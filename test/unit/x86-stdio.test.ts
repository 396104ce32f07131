/**
 * The x86 engine's stdio mode (`[x86] io = "stdio"`, `args = [...]`): a Unix tool (Debian's
 * busybox-static) runs from its entry per request with the manifest's argv, the body on stdin,
 * stdout as the body and the exit code in x-zerocell-exit-code; a fault is a crash; the
 * manifest refuses hostile arguments with the field named.
 */
import { existsSync, readFileSync } from "node:fs";
import { describe, it, expect, afterAll } from "vitest";
import { X86Engine } from "../../src/runtime/x86/index.js";
import { parseManifest } from "../../src/runtime/index.js";
import { request } from "../contract/engine.contract.js";
import { x86Fixture, x86Image, x86Manifest } from "../helpers/x86.js";
import type { Manifest } from "../../src/bundle/index.js";

const BUSYBOX = "/bin/busybox";
const text = (b: Uint8Array) => Buffer.from(b).toString("utf8");
const header = (h: Array<[string, string]>, name: string) => h.find(([k]) => k === name)?.[1];

function stdioManifest(program: string, args: string[]): Manifest {
  const m = x86Manifest(program, { timeoutMs: 10_000, memoryMb: 64 });
  (m as unknown as { x86: unknown }).x86 = { program, io: "stdio", args };
  return m;
}

describe.skipIf(!existsSync(BUSYBOX))("x86 stdio mode: busybox grep as a job program", () => {
  const engine = new X86Engine({ log: () => {} });
  const disposers: Array<() => void> = [];
  afterAll(() => disposers.forEach((d) => d()));
  const instance = async (program: string, bytes: Buffer, args: string[]) => {
    const inst = await engine.instantiate(await engine.prepare({ deploymentId: `stdio-${program}-${args.join(",")}`, manifest: stdioManifest(program, args), image: x86Image({ [program]: bytes }), maxResponseBytes: 1024 * 1024 }));
    disposers.push(() => inst.dispose());
    return inst;
  };

  it("runs argv = [program, ...args] with the body on stdin; stdout is the body, exit code in a header", async () => {
    const grep = await instance("bin/busybox", readFileSync(BUSYBOX), ["grep", "-c", "needle"]);
    const body = Buffer.from("a needle\nno\nneedle again\nhay\n");
    const r = await grep.handle(request("/k", { method: "POST", body }));
    expect(r.status).toBe(200);
    expect(text(r.body)).toBe("2\n");
    expect(header(r.headers, "x-zerocell-exit-code")).toBe("0");
    // Reset and run again (the entry snapshot): same answer, nothing carried over.
    await grep.reset();
    expect(text((await grep.handle(request("/k", { method: "POST", body }))).body)).toBe("2\n");
    // No match: grep exits 1, its stdout ("0") still the body; status 500 for HTTP clients.
    await grep.reset();
    const none = await grep.handle(request("/k", { method: "POST", body: Buffer.from("hay\nstack\n") }));
    expect(none.status).toBe(500);
    expect(text(none.body)).toBe("0\n");
    expect(header(none.headers, "x-zerocell-exit-code")).toBe("1");
    // Without a reset in between (daemon-like reuse) the next run starts from the entry too.
    const again = await grep.handle(request("/k", { method: "POST", body }));
    expect(text(again.body)).toBe("2\n");
  });

  it("a non-zero exit carries the head of stderr; a fault is a crash", async () => {
    const bad = await instance("bin/busybox", readFileSync(BUSYBOX), ["grep", "-c", "-E", "a("]);
    const r = await bad.handle(request("/k", { method: "POST", body: Buffer.from("x\n") }));
    expect(header(r.headers, "x-zerocell-exit-code")).toBe("2");
    expect(decodeURIComponent(header(r.headers, "x-zerocell-stderr") ?? "")).toMatch(/grep/);
    const wc = await instance("bin/wc", x86Fixture("wordcount"), []);
    const poisoned = await wc.handle(request("/k", { method: "POST", body: Buffer.from("one POISON two\n") }));
    expect(poisoned.status).toBe(500);
    expect(header(poisoned.headers, "x-zerocell-exit-code")).toBeUndefined();
    expect(header(poisoned.headers, "x-zerocell-stop")).toMatch(/^(fault|signal)$/);
  });

  it("the manifest: io and args, with limits (count, bytes, NUL) and only with io = stdio", () => {
    const m = parseManifest('runtime = "x86"\n[x86]\nprogram = "bin/busybox"\nio = "stdio"\nargs = ["grep", "-c", "x"]\n');
    expect((m as unknown as { x86: unknown }).x86).toEqual({ program: "bin/busybox", io: "stdio", args: ["grep", "-c", "x"] });
    expect((parseManifest('runtime = "x86"\n') as unknown as { x86: unknown }).x86).toEqual({ program: "bin/app" });
    const refuse = (toml: string) => {
      try {
        parseManifest(`runtime = "x86"\n[x86]\n${toml}\n`);
      } catch (e) {
        return (e as { code: string; message: string }).code + ": " + (e as Error).message;
      }
      return "accepted";
    };
    expect(refuse('io = "tty"')).toMatch(/manifest_invalid: manifest: x86.io/);
    expect(refuse('args = ["-c"]')).toMatch(/x86.args: needs io = "stdio"/);
    expect(refuse(`io = "stdio"\nargs = ["a\\u0000b"]`)).toMatch(/x86.args: argument 0 contains a NUL byte/);
    expect(refuse(`io = "stdio"\nargs = ["${"x".repeat(5000)}"]`)).toMatch(/argument 0 is 5000 bytes/);
    expect(refuse(`io = "stdio"\nargs = [${Array.from({ length: 129 }, () => '"a"').join(",")}]`)).toMatch(/x86.args/);
    expect(refuse(`io = "stdio"\nargs = [${Array.from({ length: 5 }, () => `"${"y".repeat(4000)}"`).join(",")}]`)).toMatch(/limit 16384/);
    expect(refuse("args = 3")).toMatch(/x86.args/);
  });
});
