/**
 * The x86-64 static validator: ELF checks against hostile files, the policy instruction by
 * instruction (assembled from test/fixtures/x86/policy-*.S), hidden and self-modifying code,
 * real programs (a musl hello world, Debian's busybox-static), and the fast path against
 * iced-x86 alone. Fixtures are built by scripts/build-x86-fixtures.sh when stale.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { ElfFormatError, hex, readElf, readElfHeaders, type ElfSymbol } from "../../src/runtime/x86/elf.js";
import { ElfLoadError, parseStaticElf } from "../../src/runtime/x86/elf-load.js";
import { BundleError } from "../../src/errors.js";
import { parseManifest } from "../../src/runtime/manifest.js";
import { countCodes, iced, opCodeInfo, ruleById, ruleIndexOf, RULE_BRANCH_TARGET, X86_POLICY } from "../../src/runtime/x86/policy.js";
import {
  assertValidProgram,
  fastPathLength,
  formatReport,
  instructionTable,
  readProgram,
  validateCode,
  validateElf,
  X86ValidationError,
  type ValidateOptions,
  type ValidationReport,
} from "../../src/runtime/x86/validate.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const SRC = join(ROOT, "test/fixtures/x86");
const OUT = join(ROOT, "test/fixtures/build/x86");
const SCRIPT = join(ROOT, "scripts/build-x86-fixtures.sh");

/** Rebuilds the fixtures when an output is missing or older than its source or the script. */
function ensureFixtures(): void {
  const script = statSync(SCRIPT).mtimeMs;
  const outputs: Array<[string, string]> = readdirSync(SRC)
    .filter((f) => f.endsWith(".S"))
    .map((f) => [join(SRC, f), join(OUT, f.slice(0, -2))]);
  outputs.push([join(SRC, "hello.c"), join(OUT, "hello")], [join(SRC, "hello.c"), join(OUT, "hello-dynamic")]);
  if (existsSync("/bin/busybox")) outputs.push(["/bin/busybox", join(OUT, "busybox")]);
  const stale = outputs.some(([src, out]) => !existsSync(out) || statSync(out).mtimeMs < Math.max(statSync(src).mtimeMs, script));
  if (stale) execFileSync(SCRIPT, { stdio: ["ignore", "inherit", "inherit"] });
}

const programs = new Map<string, Uint8Array>();
function program(name: string): Uint8Array {
  let bytes = programs.get(name);
  if (bytes === undefined) {
    bytes = readFileSync(join(OUT, name));
    programs.set(name, bytes);
  }
  return bytes;
}

function validate(name: string, opts: ValidateOptions = {}): ValidationReport {
  return validateElf(program(name), { path: name, ...opts });
}

const allRejected = (r: ValidationReport) => r.sections.flatMap((s) => s.rejected);
const allSuspicious = (r: ValidationReport) => r.sections.flatMap((s) => s.suspicious);
const hexAddr = (n: number) => `0x${n.toString(16)}`;

interface Label {
  name: string;
  rule: string;
  address: number;
  /** The labelled instruction's bytes (up to the next label or the end of .text). */
  code: Uint8Array;
}

/** Labels "<kind>.<rule with _ for ->.<name>" of a policy fixture, with their instruction bytes. */
function labels(name: string, kind: "reject" | "allow"): Label[] {
  const bytes = program(name);
  const elf = readElf(bytes);
  const text = elf.sections.find((s) => s.name === ".text")!;
  const syms = elf.symbols.filter((s: ElfSymbol) => s.address >= text.address && s.address < text.address + text.size);
  const out: Label[] = [];
  syms.forEach((s, i) => {
    const [k, rule, ...rest] = s.name.split(".");
    if (k !== kind || rule === undefined || rest.length === 0) return;
    const end = syms[i + 1]?.address ?? text.address + text.size;
    const start = text.offset + (s.address - text.address);
    out.push({ name: s.name, rule: rule.replaceAll("_", "-"), address: s.address, code: bytes.subarray(start, start + (end - s.address)) });
  });
  return out;
}

beforeAll(() => {
  ensureFixtures();
});

describe("x86 policy table", () => {
  it("has unique rule ids, each documented in docs/x86-sandbox.md", () => {
    const ids = X86_POLICY.map((r) => r.id);
    expect(new Set(ids).size).toBe(ids.length);
    const doc = readFileSync(join(ROOT, "docs/x86-sandbox.md"), "utf8");
    for (const id of ids) expect(doc, `docs/x86-sandbox.md must show rule ${id}`).toContain(`\`${id}\``);
  });

  it("never allows a system instruction by default: each has an explicit rule, and only hlt, cpuid, rdtsc, rdtscp are allowed", () => {
    const { Mnemonic } = iced;
    const allowedSystem = new Set<number>([Mnemonic.Hlt, Mnemonic.Cpuid, Mnemonic.Rdtsc, Mnemonic.Rdtscp]);
    const catchAll = X86_POLICY.findIndex((r) => r.id === "privileged");
    let system = 0;
    const codes = countCodes();
    for (let code = 1; code < codes; code++) {
      const op = opCodeInfo(code);
      const flagged = op.mode64 && op.isInstruction && (op.isPrivileged || op.mustBeCpl0 || op.mayRequireCpl0 || op.isInputOutput);
      const mnemonic = op.mnemonic;
      op.free();
      if (!flagged) continue;
      system++;
      const index = ruleIndexOf(code);
      const rule = X86_POLICY[index]!;
      expect(index, `${rule.id} for Mnemonic ${mnemonic} should come from an explicit rule`).not.toBe(catchAll);
      expect(rule.decision === "allow", `Mnemonic ${Mnemonic[mnemonic]} is ${rule.id}`).toBe(allowedSystem.has(mnemonic));
    }
    expect(system).toBeGreaterThan(100);
  });

  it("keeps a catch-all that rejects what iced marks privileged", () => {
    const rule = ruleById("privileged");
    expect(rule.decision).toBe("reject");
    const op = opCodeInfo(iced.Code.Wrmsr);
    try {
      expect(rule.match!(op)).toBe(true);
    } finally {
      op.free();
    }
  });
});

describe("x86 policy, instruction by instruction", () => {
  const rejectRules = X86_POLICY.filter((r) => r.decision === "reject" && r.id !== RULE_BRANCH_TARGET && r.id !== "privileged").map((r) => r.id);
  it.each(rejectRules)("rejects every %s instruction of policy-reject.S", (id) => {
    const own = labels("policy-reject", "reject").filter((l) => l.rule === id);
    expect(own.length, `policy-reject.S has examples of ${id}`).toBeGreaterThan(0);
    for (const l of own) {
      const r = validateCode(l.code, l.address);
      const rejected = allRejected(r);
      expect(r.ok, l.name).toBe(false);
      expect(rejected.map((x) => [x.address, x.rule]), l.name).toEqual([[hexAddr(l.address), id]]);
      expect(rejected[0]!.text.length).toBeGreaterThan(0);
    }
  });

  const allowRules = X86_POLICY.filter((r) => r.decision === "allow").map((r) => r.id);
  it.each(allowRules)("allows every %s instruction of policy-allow.S", (id) => {
    const own = labels("policy-allow", "allow").filter((l) => l.rule === id);
    expect(own.length, `policy-allow.S has examples of ${id}`).toBeGreaterThan(0);
    for (const l of own) {
      const r = validateCode(l.code, l.address);
      expect(r.errors, l.name).toEqual([]);
      const notable = r.sections[0]!.notable;
      if (id === "user-mode") expect(notable, l.name).toEqual({});
      else expect(notable, l.name).toEqual({ [id]: 1 });
    }
  });

  it("reports each rejected instruction of policy-reject.S at its label in the whole program", () => {
    const r = validate("policy-reject");
    expect(r.ok).toBe(false);
    const all = labels("policy-reject", "reject");
    // Exactly one rejection at each label, with its rule; undecodable bytes may take a different
    // length than the assembler's, so those only need a rejection somewhere before the next label.
    const exact = all.filter((l) => l.rule !== "invalid");
    const got = allRejected(r).filter((x) => x.rule !== "invalid").map((x) => [x.address, x.rule, x.symbol]);
    expect(got).toEqual(exact.map((l) => [hexAddr(l.address), l.rule, l.name]));
    for (const l of all.filter((l) => l.rule === "invalid")) {
      const inside = allRejected(r).filter((x) => Number(x.address) >= l.address && Number(x.address) < l.address + l.code.length);
      expect(inside.length, l.name).toBeGreaterThan(0);
      expect(new Set(inside.map((x) => x.rule)), l.name).toEqual(new Set(["invalid"]));
    }
    const wrmsr = allRejected(r).find((x) => x.symbol === "reject.msr_counters.wrmsr")!;
    expect(wrmsr).toMatchObject({ bytes: "0f 30", text: "wrmsr", rule: "msr-counters" });
    expect(r.errors.some((e) => e.startsWith("x86.validate: .text: ") && e.includes("rejected instructions"))).toBe(true);
  });

  it("validates policy-allow.S as a whole", () => {
    const r = validate("policy-allow");
    expect(r.errors).toEqual([]);
    expect(r.ok).toBe(true);
    const counts: Record<string, number> = {};
    for (const l of labels("policy-allow", "allow")) if (l.rule !== "user-mode") counts[l.rule] = (counts[l.rule] ?? 0) + 1;
    counts.syscall = (counts.syscall ?? 0) + 1; // _start's exit
    expect(r.sections[0]!.notable).toEqual(Object.fromEntries(Object.entries(counts).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))));
  });

  it("decides instructions binutils cannot assemble from their bytes", () => {
    const cases: Array<[string, string]> = [
      ["f20f00f0", "descriptor-tables"], // lkgs ax
      ["0f01c6", "msr-counters"], // wrmsrns
      ["f20f01c6", "msr-counters"], // rdmsrlist
      ["f20f01ca", "supervisor-state"], // erets
      ["f30f01ca", "supervisor-state"], // eretu
      ["660f01cf", "virtualization"], // seamcall
      ["0fa7c0", "vendor-specific"], // VIA xstore
    ];
    for (const [hex, rule] of cases) {
      const r = validateCode(Buffer.from(hex, "hex"));
      expect(allRejected(r).map((x) => x.rule), hex).toEqual([rule]);
    }
  });

  it("rejects int n but allows int3, and tells the one-byte and two-byte forms apart", () => {
    expect(allRejected(validateCode(Buffer.from("cd03", "hex"))).map((x) => x.rule)).toEqual(["interrupt-gates"]);
    expect(validateCode(Buffer.from("cc", "hex")).sections[0]!.notable).toEqual({ trap: 1 });
  });

  it("rejects an instruction cut off by the end of the section", () => {
    const r = validateCode(Buffer.from("90b8112233", "hex")); // nop; mov eax, imm32 missing a byte
    expect(allRejected(r)).toMatchObject([{ address: "0x401001", rule: "invalid", bytes: "b8 11 22 33" }]);
    expect(allRejected(r)[0]!.reason).toContain("cut off");
  });
});

describe("x86 hidden and self-modifying code", () => {
  it("rejects a privileged instruction inside another, reached by a direct jump", () => {
    const r = validate("hidden-direct");
    expect(r.ok).toBe(false);
    const [x] = allRejected(r);
    expect(x).toMatchObject({ text: "wrmsr", rule: RULE_BRANCH_TARGET, symbol: "hidden+0x1" });
    expect(x!.reason).toMatch(/^msr-counters: /);
    expect(x!.via).toMatch(/^branch at 0x401000 \(_start\)/);
    expect(r.sections[0]!.branches.midInstruction).toBe(1);
  });

  it("rejects it when the address is taken with a rip-relative lea and reached by an indirect jump", () => {
    const r = validate("hidden-lea");
    expect(r.ok).toBe(false);
    expect(allRejected(r).map((x) => [x.text, x.rule])).toEqual([
      ["wrmsr", RULE_BRANCH_TARGET],
      ["out 0x90, al", RULE_BRANCH_TARGET],
    ]);
    expect(allRejected(r)[0]!.via).toContain("rip-relative code address taken");
  });

  it("warns, without rejecting, when the address is a 32-bit constant (it may be a number)", () => {
    const r = validate("hidden-const");
    expect(r.ok).toBe(true);
    expect(allSuspicious(r)).toMatchObject([{ text: "wrmsr", rule: "msr-counters", symbol: "hidden+0x1" }]);
    expect(r.warnings).toHaveLength(1);
    expect(formatReport(r)).toContain("WARN");
  });

  it("cannot see an address computed at run time: validates (CPL 3 is the second wall)", () => {
    const r = validate("hidden-computed");
    expect(r.ok).toBe(true);
    expect(r.warnings).toEqual([]);
  });

  it("follows glibc's jump over a lock prefix into a plain cmpxchg", () => {
    const r = validate("lock-skip");
    expect(r.ok).toBe(true);
    expect(r.sections[0]!.branches.midInstruction).toBe(1);
  });

  it("cannot see self-modifying code: validates (W^X is the second wall)", () => {
    expect(validate("self-modifying").ok).toBe(true);
  });

  it("passes the run-time hostile programs, which only the executor can stop", () => {
    for (const name of readdirSync(SRC).filter((f) => f.startsWith("hostile-")).map((f) => f.slice(0, -2))) {
      const r = validate(name);
      expect(r.errors, name).toEqual([]);
    }
  });
});

describe("x86 real programs", () => {
  it("validates a musl-gcc -static hello world", () => {
    const r = validate("hello");
    expect(r.errors).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.file).toMatchObject({ kind: "exec", path: "hello" });
    expect(r.file.checks.every((c) => c.ok)).toBe(true);
    const text = r.sections.find((s) => s.name === ".text")!;
    expect(text.instructions).toBeGreaterThan(500);
    expect(text.classes.X64).toBeGreaterThan(0);
    expect(text.notable.syscall).toBeGreaterThan(0);
    expect(text.notable.trap).toBeGreaterThan(0); // musl's a_crash() is hlt
    expect(r.stats.textBytes).toBe(r.sections.reduce((a, s) => a + s.bytes, 0));
  });

  it.skipIf(!existsSync("/bin/busybox"))("validates Debian's busybox-static and reports its system-ish instructions", () => {
    const r = validate("busybox");
    expect(r.errors).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.sections.map((s) => s.name)).toEqual([".init", ".plt", ".text", "__libc_freeres_fn", ".fini"]);
    const text = r.sections.find((s) => s.name === ".text")!;
    expect(text.instructions).toBeGreaterThan(300_000);
    for (const rule of ["syscall", "cpuid", "timestamp", "xstate", "tsx", "shadow-stack-read", "trap"]) expect(text.notable[rule], rule).toBeGreaterThan(0);
    for (const cls of ["RTM", "XSAVE", "TSC", "CPUID", "AVX2", "AVX512F", "SYSCALL"]) expect(text.classes[cls], cls).toBeGreaterThan(0);
    // glibc jumps over lock prefixes; every such target re-decodes to allowed instructions.
    expect(text.branches.midInstruction).toBeGreaterThan(0);
    expect(allSuspicious(r).length).toBe(r.warnings.length);
    expect(r.warnings.length).toBeLessThan(5);
  });

  it("formats a readable report", () => {
    const out = formatReport(validate("hidden-direct"));
    expect(out).toContain("hidden-direct: REJECTED");
    expect(out).toMatch(/REJECT 0x[0-9a-f]+ <hidden\+0x1>\s+0f 30\s+wrmsr/);
    expect(out).toContain("[branch-target] msr-counters:");
    expect(out).toContain("section .text at 0x401000");
  });

  it("throws X86ValidationError (400, with the report) for the deploy path", () => {
    expect(assertValidProgram(program("hello")).ok).toBe(true);
    let caught: unknown;
    try {
      assertValidProgram(program("hidden-direct"));
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(X86ValidationError);
    const e = caught as X86ValidationError;
    expect(e).toMatchObject({ code: "x86_program_rejected", status: 400 });
    expect(e.message).toContain("wrmsr");
    expect(e.report.ok).toBe(false);
  });
});

describe("x86 ELF checks", () => {
  const failed = (r: ValidationReport) => r.file.checks.filter((c) => !c.ok).map((c) => c.check);

  it("rejects a writable and executable segment", () => {
    const r = validate("wx-segment");
    expect(failed(r)).toContain("w-xor-x");
    expect(r.errors.join("\n")).toMatch(/both writable and executable/);
  });

  it("rejects an executable stack", () => {
    expect(validate("exec-stack").errors).toContain("x86.elf: w-xor-x: PT_GNU_STACK asks for an executable stack");
  });

  it("rejects bytes of an executable segment outside the executable sections (no separate-code)", () => {
    const r = validate("data-in-text");
    expect(r.ok).toBe(false);
    expect(r.errors.join("\n")).toMatch(/lies in an executable segment but outside every executable section/);
  });

  it("rejects a dynamic program", () => {
    const r = validate("hello-dynamic");
    expect(r.file.kind).toBe("dynamic");
    expect(failed(r)).toEqual(expect.arrayContaining(["static-executable", "no-interpreter", "no-shared-libraries"]));
  });

  it("rejects static-pie by default and accepts it when allowed", () => {
    expect(validate("static-pie").errors).toEqual(["x86.elf: static-executable: static-pie (ET_DYN) programs are not supported yet: link with -static (-no-pie)"]);
    const r = validate("static-pie", { allowStaticPie: true });
    expect(r.errors).toEqual([]);
    expect(r.file.kind).toBe("static-pie");
  });

  /** A copy of hello with fields overwritten (little-endian). */
  function patched(edit: (v: DataView, b: Uint8Array) => void): Uint8Array {
    const b = new Uint8Array(program("hello"));
    edit(new DataView(b.buffer, b.byteOffset, b.byteLength), b);
    return b;
  }
  const phdr = (v: DataView, i: number) => Number(v.getBigUint64(32, true)) + i * 56;
  const findPhdr = (v: DataView, pred: (type: number, flags: number) => boolean) => {
    for (let i = 0; i < v.getUint16(56, true); i++) if (pred(v.getUint32(phdr(v, i), true), v.getUint32(phdr(v, i) + 4, true))) return phdr(v, i);
    throw new Error("no such program header");
  };
  const textPhdr = (v: DataView) => findPhdr(v, (t, f) => t === 1 && (f & 1) !== 0);

  const cases: Array<[string, (v: DataView, b: Uint8Array) => void, RegExp]> = [
    ["bad magic", (_v, b) => void (b[1] = 0x46), /not an ELF file/],
    ["32-bit class", (_v, b) => void (b[4] = 1), /not a 64-bit ELF file/],
    ["big-endian", (_v, b) => void (b[5] = 2), /not a little-endian ELF file/],
    ["another machine", (v) => v.setUint16(18, 3, true), /x86-64: e_machine is 3/],
    ["another OS ABI", (_v, b) => void (b[7] = 9), /linux-abi: EI_OSABI is 9/],
    ["a relocatable object", (v) => v.setUint16(16, 1, true), /static-executable: e_type is 1/],
    ["program headers past the end", (v, b) => v.setBigUint64(32, BigInt(b.length - 8), true), /the program header table at file offset .* lies outside/],
    ["too many program headers", (v) => v.setUint16(56, 65, true), /65 program headers, over the limit of 64/],
    ["PN_XNUM", (v) => v.setUint16(56, 0xffff, true), /PN_XNUM/],
    ["a bad phentsize", (v) => v.setUint16(54, 32, true), /e_phentsize is 32/],
    ["a section table offset beyond 2^53", (v) => v.setBigUint64(40, 1n << 60n, true), /e_shoff is .*beyond any user-space value/],
    ["section headers past the end", (v, b) => v.setBigUint64(40, BigInt(b.length - 100), true), /the section header table .* lies outside/],
    ["a section name table index out of range", (v) => v.setUint16(62, v.getUint16(60, true), true), /e_shstrndx .* is not a section/],
    ["too many section headers", (v) => v.setUint16(60, 5000, true), /5000 section headers, over the limit of 4096/],
    ["a section past the end", (v, b) => v.setBigUint64(Number(v.getBigUint64(40, true)) + 64 + 24, BigInt(b.length), true), /section 1's contents .* lies outside/],
    ["a section name outside its table", (v) => v.setUint32(Number(v.getBigUint64(40, true)) + 64, 0x7fffffff, true), /name offset .* is outside its string table/],
    ["a segment past the end of the file", (v) => v.setBigUint64(textPhdr(v) + 32, 1n << 30n, true), /segments: .*outside the .*-byte file/],
    ["filesz larger than memsz", (v) => v.setBigUint64(textPhdr(v) + 40, 1n, true), /larger than p_memsz/],
    ["a writable text segment", (v) => v.setUint32(textPhdr(v) + 4, 7, true), /w-xor-x: segment \d+ at 0x401000 is both writable and executable/],
    ["a segment in the null page", (v) => v.setBigUint64(findPhdr(v, (t, f) => t === 1 && f === 4) + 16, 0x1000n, true), /outside user space/],
    ["a segment beyond user space", (v) => v.setBigUint64(textPhdr(v) + 16, 1n << 48n, true), /outside user space/],
    ["an interpreter", (v) => v.setUint32(findPhdr(v, (t) => t === 0x6474e551), 3, true), /no-interpreter: PT_INTERP/],
    ["an entry point in data", (v) => v.setBigUint64(24, 0x400000n, true), /entry: entry point 0x400000 is not inside an executable segment/],
    ["an entry point inside an instruction", (v) => v.setBigUint64(24, v.getBigUint64(24, true) + 1n, true), /the entry point 0x[0-9a-f]+ is in the middle of an instruction/],
  ];
  it.each(cases)("rejects %s", (_name, edit, message) => {
    const r = validateElf(patched(edit));
    expect(r.ok).toBe(false);
    expect(r.errors.join("\n")).toMatch(message);
  });

  /**
   * The loader (elf-load.ts, run at deploy and by every host) reads the header and program headers
   * with the validator's reader: the same hostile variants go to both. `null`: the loader maps it
   * (a section, ABI or decoding problem only the validator looks at; deploy runs both).
   */
  const loaderRefuses: Record<string, RegExp | null> = {
    "bad magic": /x86 loader: not an ELF file/,
    "32-bit class": /x86 loader: not a 64-bit ELF file/,
    "big-endian": /x86 loader: not a little-endian ELF file/,
    "another machine": /x86 loader: not an x86-64 program/,
    "another OS ABI": null,
    "a relocatable object": /x86 loader: ELF type 1 is not an executable/,
    "program headers past the end": /x86 loader: the program header table at file offset .* lies outside/,
    "too many program headers": /x86 loader: 65 program headers, over the limit of 64/,
    "PN_XNUM": /x86 loader: .*PN_XNUM/,
    "a bad phentsize": /x86 loader: e_phentsize is 32/,
    "a section table offset beyond 2^53": /x86 loader: e_shoff is .*beyond any user-space value/,
    "section headers past the end": null,
    "a section name table index out of range": null,
    "too many section headers": null,
    "a section past the end": null,
    "a section name outside its table": null,
    "a segment past the end of the file": /x86 loader: segment \d+: file range outside the file/,
    "filesz larger than memsz": /x86 loader: segment \d+: file range outside the file/,
    "a writable text segment": /x86 loader: segment \d+ is writable and executable/,
    "a segment in the null page": /x86 loader: segment \d+ at 0x1000 is outside the image area/,
    "a segment beyond user space": /x86 loader: segment \d+ at 0x1000000000000 is outside the image area/,
    "an interpreter": /x86 loader: the program asks for an interpreter/,
    "an entry point in data": /x86 loader: entry point 0x400000 is not inside an executable segment/,
    "an entry point inside an instruction": null,
  };
  const loaderOnly: Array<[string, (v: DataView, b: Uint8Array) => void, RegExp | null, RegExp]> = [
    // both refuse: the page congruence the executor's mapping depends on
    ["an offset not congruent with the address", (v) => v.setBigUint64(textPhdr(v) + 8, v.getBigUint64(textPhdr(v) + 8, true) + 1n, true), /not congruent modulo the page size/, /offset and address disagree modulo the page size/],
    // the image area ends below user space: only the loader refuses (it cannot map the program there)
    ["a segment above the image area", (v) => v.setBigUint64(findPhdr(v, (t, f) => t === 1 && f === 4) + 16, 1n << 40n, true), null, /outside the image area/],
    ["no program headers", (v) => v.setUint16(56, 0, true), /no PT_LOAD segment/, /bad program header table/],
  ];
  it("feeds the same hostile variants to the validator and the loader: each refuses what it refused before", () => {
    expect(Object.keys(loaderRefuses).sort()).toEqual(cases.map(([name]) => name).sort());
    const loaderError = (b: Uint8Array): string | undefined => {
      try {
        parseStaticElf(b);
        return undefined;
      } catch (e) {
        expect(e).toBeInstanceOf(ElfLoadError);
        return (e as Error).message;
      }
    };
    expect(loaderError(program("hello"))).toBeUndefined();
    for (const [name, edit, validatorMessage] of cases) {
      const b = patched(edit);
      expect(validateElf(b).errors.join("\n"), name).toMatch(validatorMessage);
      const want = loaderRefuses[name];
      if (want === null) expect(loaderError(b), name).toBeUndefined();
      else expect(loaderError(b), name).toMatch(want!);
    }
    for (const [name, edit, validatorMessage, loaderMessage] of loaderOnly) {
      const b = patched(edit);
      const r = validateElf(b);
      if (validatorMessage === null) expect(r.ok, name).toBe(true);
      else expect(r.errors.join("\n"), name).toMatch(validatorMessage);
      expect(loaderError(b), name).toMatch(loaderMessage);
    }
  });

  it("the loader refuses a corrupt header exactly when the reader does", () => {
    let seed = 0x13579b;
    const rand = () => ((seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) | 0) >>> 0) / 2 ** 32;
    const base = program("hello");
    for (let i = 0; i < 1000; i++) {
      const b = new Uint8Array(base);
      for (let j = 0; j < 1 + Math.floor(rand() * 4); j++) b[Math.floor(rand() * 0x190)] = Math.floor(rand() * 256);
      const cut = rand() < 0.2 ? b.subarray(0, Math.floor(rand() * b.length)) : b;
      let readerError: string | undefined;
      try {
        readElfHeaders(cut);
      } catch (e) {
        readerError = (e as Error).message.replace(/^x86\.elf: /, "");
      }
      if (readerError === undefined) continue;
      expect(() => parseStaticElf(cut)).toThrow(`x86 loader: ${readerError}`);
      expect(validateElf(cut).ok).toBe(false);
    }
  });

  it("rejects a file over the size limit and a file shorter than a header", () => {
    expect(validateElf(program("hello"), { limits: { maxFileBytes: 1000 } }).errors[0]).toMatch(/over the limit of 1000/);
    expect(validateElf(program("hello").subarray(0, 10)).errors[0]).toMatch(/shorter than an ELF64 header/);
    expect(validateElf(new Uint8Array(0)).ok).toBe(false);
  });

  it("bounds the work a hostile file can ask for", () => {
    expect(validateElf(program("hello"), { limits: { maxCodeBytes: 100 } }).errors.join("\n")).toMatch(/executable segments hold \d+ bytes, over the limit of 100: not decoded/);
    // a section name table without a single NUL
    const b = new Uint8Array(program("hello"));
    const elf = readElf(b);
    const names = elf.sections[elf.header.shstrndx]!;
    b.fill(0x41, names.offset, names.offset + names.size);
    expect(validateElf(b).errors[0]).toMatch(/not NUL-terminated/);
    // a symbol table linked to a string table that claims more bytes than the file has
    const c = new Uint8Array(program("hello"));
    const e2 = readElf(c);
    const symtab = e2.sections.find((x) => x.name === ".symtab")!;
    const strtabHeader = Number(e2.header.shoff) + symtab.link * 64;
    const v = new DataView(c.buffer, c.byteOffset, c.byteLength);
    v.setUint32(strtabHeader + 4, 0, true); // SHT_NULL: its contents are not checked when read as a section
    v.setBigUint64(strtabHeader + 32, 1n << 40n, true);
    expect(validateElf(c).errors[0]).toMatch(/the string table at file offset .* lies outside/);
    // random bytes: thousands of branch targets inside instructions
    let seed = 7;
    const random = Uint8Array.from({ length: 20_000 }, () => ((seed = (Math.imul(seed, 1103515245) + 12345) | 0) >>> 16) & 0xff);
    expect(validateCode(random, 0x401000, { limits: { maxSecondDecodings: 10 } }).errors[0]).toMatch(/point inside instructions, over the limit of 10: this is not compiled code/);
  });

  /** A report without its timings, to compare two runs. */
  const timeless = (r: ValidationReport) => ({ ...r, stats: { ...r.stats, ms: 0, mbPerS: 0 } });

  it("survives random corruption of headers and truncation: a report, never a throw, the same for the same bytes", () => {
    let seed = 0x12345678;
    const rand = () => ((seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) | 0) >>> 0) / 2 ** 32;
    const base = program("hello");
    const elf = readElf(base);
    const shoff = elf.header.shoff;
    let rejected = 0;
    for (let i = 0; i < 1500; i++) {
      const b = new Uint8Array(base);
      const flips = 1 + Math.floor(rand() * 4);
      for (let j = 0; j < flips; j++) {
        // headers, program headers, section headers: where the offsets live
        const at = rand() < 0.5 ? Math.floor(rand() * 0x190) : shoff + Math.floor(rand() * (b.length - shoff));
        b[at] = Math.floor(rand() * 256);
      }
      const cut = rand() < 0.2 ? b.subarray(0, Math.floor(rand() * b.length)) : b;
      const r = validateElf(cut);
      // ok exactly when no error; every error one line naming its step.
      expect(r.ok).toBe(r.errors.length === 0);
      for (const e of r.errors) expect(e).toMatch(/^x86\.(elf|validate): \S/);
      // Deterministic: a copy of the same bytes gets the same report.
      expect(timeless(validateElf(Uint8Array.from(cut)))).toEqual(timeless(r));
      // The throwing form refuses with the one BundleError subclass, code and status set.
      let thrown: unknown;
      try {
        assertValidProgram(cut);
      } catch (e) {
        thrown = e;
      }
      if (r.ok) expect(thrown).toBeUndefined();
      else {
        rejected++;
        expect(thrown).toBeInstanceOf(X86ValidationError);
        expect(thrown).toBeInstanceOf(BundleError);
        expect((thrown as X86ValidationError).code).toBe("x86_program_rejected");
        expect((thrown as X86ValidationError).status).toBe(400);
      }
    }
    // The corruption reaches the checks: most mutants are refused (a flip in an unused field is not).
    expect(rejected).toBeGreaterThan(500);
  });

  it("readElf throws only ElfFormatError (a BundleError with a code) on corrupt files", () => {
    let seed = 0x2468ace;
    const rand = () => ((seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) | 0) >>> 0) / 2 ** 32;
    const base = program("hello");
    let failed = 0;
    for (let i = 0; i < 1000; i++) {
      const b = new Uint8Array(base);
      for (let j = 0; j < 1 + Math.floor(rand() * 4); j++) b[Math.floor(rand() * 0x200)] = Math.floor(rand() * 256);
      const cut = rand() < 0.3 ? b.subarray(0, Math.floor(rand() * b.length)) : b;
      try {
        readElf(cut);
      } catch (e) {
        failed++;
        expect(e).toBeInstanceOf(ElfFormatError);
        expect(e).toBeInstanceOf(BundleError);
        expect((e as ElfFormatError).code).toBe("x86_elf_invalid");
        expect((e as ElfFormatError).message).toMatch(/^x86\.elf: /);
      }
    }
    expect(failed).toBeGreaterThan(0);
  });

  it("refuses a valid program with any one instruction replaced by a privileged one (the rest nops)", () => {
    const base = program("hello");
    expect(validateElf(base).ok).toBe(true);
    const text = readElf(base).sections.find((s) => s.name === ".text")!;
    const table = instructionTable(base)!;
    // Instruction starts in .text with their lengths (the linear decoding the validator uses).
    const starts: Array<{ address: number; length: number }> = [];
    let last = -1;
    for (let a = text.address; a < text.address + text.size; a++) {
      const i = a - table.base;
      if (table.counts[i + 1]! - table.counts[i]! !== 1) continue;
      if (last !== -1) starts.push({ address: last, length: a - last });
      last = a;
    }
    expect(starts.length).toBeGreaterThan(100);
    const privileged: Array<[string, number[]]> = [
      ["cli", [0xfa]],
      ["out dx,al", [0xee]],
      ["in al,dx", [0xec]],
      ["wrmsr", [0x0f, 0x30]],
      ["rdmsr", [0x0f, 0x32]],
      ["mov cr3,rax", [0x0f, 0x22, 0xd8]],
      ["swapgs", [0x0f, 0x01, 0xf8]],
      ["lgdt [rax]", [0x0f, 0x01, 0x10]],
    ];
    let seed = 99;
    const rand = () => ((seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) | 0) >>> 0) / 2 ** 32;
    let tried = 0;
    for (let n = 0; n < 400; n++) {
      const [name, bytes] = privileged[Math.floor(rand() * privileged.length)]!;
      const at = starts[Math.floor(rand() * starts.length)]!;
      if (at.length < bytes.length) continue;
      const b = new Uint8Array(base);
      const offset = text.offset + (at.address - text.address);
      b.set(bytes, offset);
      b.fill(0x90, offset + bytes.length, offset + at.length);
      const r = validateElf(b);
      tried++;
      expect(r.ok, `${name} at ${hex(at.address)}`).toBe(false);
      const listed = r.sections.flatMap((s) => s.rejected).map((x) => x.address);
      expect(listed, `${name} at ${hex(at.address)}: ${r.errors.join("; ")}`).toContain(hex(at.address));
    }
    expect(tried).toBeGreaterThan(200);
  });
});

describe("x86 fast path", () => {
  const strip = (r: ValidationReport) => ({ ...r, stats: { ...r.stats, ms: 0, mbPerS: 0 }, file: r.file });

  it("gives the same report as iced-x86 alone on every fixture", () => {
    for (const name of readdirSync(OUT).filter((f) => !f.startsWith(".") && !f.endsWith(".tmp") && !f.endsWith(".o"))) {
      expect(strip(validate(name)), name).toEqual(strip(validate(name, { fastPath: false })));
    }
  });

  it("agrees with iced-x86 on the length, and maps each shape to one Code, for every opcode × prefixes × REX × ModRM it decodes", () => {
    const { Decoder, DecoderOptions, Instruction } = iced;
    const instr = new Instruction();
    let seed = 5;
    const rand = () => ((seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) | 0) >>> 0) / 2 ** 32;
    const prefixSets = [[], [0x66], [0xf2], [0xf3], [0x66, 0xf2], [0x66, 0xf3], [0x64, 0x66], [0x66, 0x66, 0x2e]];
    const rexes = [-1, 0x40, 0x48, 0x41, 0x4c, 0x4f];
    const codesOf = new Map<number, Set<number>>();
    const buf = new Uint8Array(32);
    const lengthErrors: string[] = [];
    let decoded = 0;
    try {
      for (const map of [0, 1]) {
        for (let op = 0; op < 256; op++) {
          for (const pre of prefixSets) {
            for (const rex of rexes) {
              for (let modrm = 0; modrm < 256; modrm++) {
                let n = 0;
                for (const p of pre) buf[n++] = p;
                if (rex >= 0) buf[n++] = rex;
                if (map === 1) buf[n++] = 0x0f;
                buf[n++] = op;
                buf[n++] = modrm;
                for (let k = n; k < buf.length; k++) buf[k] = Math.floor(rand() * 256);
                if (rand() < 0.3) buf[n] = (buf[n]! & 0xf8) | 5; // SIB with base 5: disp32 without base
                const { length, shape } = fastPathLength(buf);
                if (length === 0) continue;
                const d = new Decoder(64, buf, DecoderOptions.None);
                d.decodeOut(instr);
                d.free();
                decoded++;
                if (instr.code !== iced.Code.INVALID && length !== instr.length && lengthErrors.length < 10) {
                  lengthErrors.push(`${Buffer.from(buf.subarray(0, 16)).toString("hex")}: ${length} vs iced ${instr.length}`);
                }
                let codes = codesOf.get(shape);
                if (codes === undefined) codesOf.set(shape, (codes = new Set()));
                codes.add(instr.code);
              }
            }
          }
        }
      }
    } finally {
      instr.free();
    }
    expect(lengthErrors).toEqual([]);
    expect(decoded).toBeGreaterThan(1_000_000);
    const mixed = [...codesOf].filter(([, codes]) => codes.size > 1);
    expect(mixed.map(([shape, codes]) => [shape.toString(16), [...codes]])).toEqual([]);
  });

  it("gives the same report as iced-x86 alone on random instruction streams", () => {
    let seed = 42;
    const rand = () => ((seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) | 0) >>> 0) / 2 ** 32;
    const byte = () => Math.floor(rand() * 256);
    const prefixes = [0x66, 0x66, 0xf2, 0xf3, 0x2e, 0x3e, 0x64, 0x65, 0xf0, 0x67, 0x26, 0x36];
    for (let round = 0; round < 6; round++) {
      const out: number[] = [];
      while (out.length < 60_000) {
        const r = rand();
        if (r < 0.3) out.push(prefixes[Math.floor(rand() * prefixes.length)]!);
        if (rand() < 0.45) out.push(0x40 | (byte() & 15));
        if (rand() < 0.35) out.push(0x0f);
        out.push(byte());
        // ModRM biased towards memory forms with SIB and rip-relative displacements
        const modrm = rand() < 0.3 ? (byte() & 0xc0) | (byte() & 0x38) | (rand() < 0.5 ? 4 : 5) : byte();
        out.push(modrm);
        for (let k = Math.floor(rand() * 9); k > 0; k--) out.push(byte());
      }
      const code = Uint8Array.from(out);
      const fast = validateCode(code, 0x401000);
      const slow = validateCode(code, 0x401000, { fastPath: false });
      expect(strip(fast), `round ${round}`).toEqual(strip(slow));
    }
  });
});

describe("zerocell validate PATH", () => {
  it("reads a program file, or the [x86] program of a bundle directory", () => {
    const dir = mkdtempSync(join(tmpdir(), "zerocell-x86-"));
    try {
      mkdirSync(join(dir, "bin"));
      writeFileSync(join(dir, "bin", "app"), program("hello"));
      writeFileSync(join(dir, "zerocell.toml"), 'runtime = "x86"\n\n[x86]\nprogram = "bin/app"\n');
      expect(readProgram(dir, parseManifest)).toMatchObject({ path: join(dir, "bin", "app") });
      expect(readProgram(join(dir, "bin", "app"), parseManifest).bytes.length).toBe(program("hello").length);
      // the manifest goes through the project's parser, as at deploy: its default, its errors, deploy's path rule
      writeFileSync(join(dir, "zerocell.toml"), 'runtime = "x86"\n');
      expect(readProgram(dir, parseManifest)).toMatchObject({ path: join(dir, "bin", "app") });
      for (const program of ["../../etc/passwd", "/bin/app", "bin/../bin/app"]) {
        writeFileSync(join(dir, "zerocell.toml"), `runtime = "x86"\n[x86]\nprogram = "${program}"\n`);
        expect(() => readProgram(dir, parseManifest)).toThrow(/zerocell\.toml: manifest: x86\.program: .* must be a relative path inside the bundle/);
      }
      writeFileSync(join(dir, "zerocell.toml"), 'runtime = "php"\n');
      expect(() => readProgram(dir, parseManifest)).toThrow(/zerocell\.toml: manifest: runtime: the x86 engine cannot run "php"/);
      writeFileSync(join(dir, "zerocell.toml"), '[x86]\nprogram = "bin/app"\n');
      expect(() => readProgram(dir, parseManifest)).toThrow(expect.objectContaining({ code: "manifest_invalid", message: expect.stringMatching(/zerocell\.toml: manifest: runtime/) }));
      writeFileSync(join(dir, "zerocell.toml"), 'runtime = "x86"\n[x86]\nprogam = "bin/app"\n');
      expect(() => readProgram(dir, parseManifest)).toThrow(/x86\.progam/);
      rmSync(join(dir, "zerocell.toml"));
      expect(() => readProgram(dir, parseManifest)).toThrow(/is a directory without a readable zerocell\.toml/);
      expect(() => readProgram(join(dir, "bin", "app"), parseManifest, 100)).toThrow(/over the limit of 100/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
