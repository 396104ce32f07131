/**
 * The static validator for x86-64 programs (NaCl's first wall, without NaCl's bundle rule):
 * check the ELF file (elf.ts), decode every executable section with iced-x86 in 64-bit mode,
 * look each instruction up in the policy (policy.ts), and report every rejected instruction with
 * its address, bytes, disassembly and reason. It runs at deploy and standalone
 * (`zerocell validate`), needs no server and never executes guest code.
 *
 * What a linear decoding cannot see, and the executor must cover: an indirect jump into the
 * middle of an instruction, and code written at run time. See docs/x86-sandbox.md.
 */
import { CpuidFeature, Decoder, DecoderOptions, Code, CodeExt, Formatter, FormatterSyntax, Instruction, Mnemonic, OpCodeOperandKind } from "iced-x86";
import { BundleError } from "../../errors.js";
import { checkElf, DEFAULT_ELF_LIMITS, hex, nameAddress, readElf, ElfFormatError, formatFlags, PT_LOAD, type CodeRegion, type ElfCheck, type ElfFile, type ElfLimits, type ElfPlan } from "./elf.js";
import { compileX86Policy, countCodes, ruleById, RULE_AMBIGUOUS, RULE_BRANCH_TARGET, RULE_DEFAULT, RULE_INVALID, type CompiledX86Policy } from "./policy.js";

export { X86_POLICY, type X86PolicyRule } from "./policy.js";

/** Limits of one validation; sizes in bytes, counts in entries. */
export interface X86ValidateLimits extends ElfLimits {
  /** Rejected instructions listed per section (all are counted in rejectedTotal). */
  maxRejectionsPerSection: number;
  /** Instructions decoded from one mid-instruction branch target before giving up on resynchronising. */
  maxHiddenInstructions: number;
}

export const DEFAULT_X86_VALIDATE_LIMITS: Readonly<X86ValidateLimits> = Object.freeze({
  ...DEFAULT_ELF_LIMITS,
  maxRejectionsPerSection: 200,
  maxHiddenInstructions: 64,
});

export interface ValidateOptions {
  limits?: Partial<X86ValidateLimits>;
  /** Accept ET_DYN static-pie programs (default false: the executor loads ET_EXEC). */
  allowStaticPie?: boolean;
  /** Disassembly syntax of rejected instructions (default "intel"). */
  syntax?: "intel" | "gas";
  /** Shown in the report. */
  path?: string;
}

export interface RejectedInstruction {
  /** Virtual address, "0x401a2c". */
  address: string;
  /** The instruction's bytes in hex, "0f 30". */
  bytes: string;
  /** iced-x86's disassembly, "wrmsr". */
  text: string;
  /** Policy rule id (policy.ts, docs/x86-sandbox.md). */
  rule: string;
  reason: string;
  /** Nearest symbol, "main+0x12", when the file has a symbol table. */
  symbol?: string;
  /** For an instruction hidden inside another: the branch or address-taking instruction that reaches it. */
  via?: string;
}

export interface SectionReport {
  name: string;
  address: string;
  bytes: number;
  instructions: number;
  /** Instructions per CPUID feature iced-x86 names (X64, SSE2, AVX2, SYSCALL, TSC, RTM, …). */
  classes: Record<string, number>;
  /** Instructions allowed by a named rule rather than the default (syscall, trap, cpuid, timestamp, xstate, tsx, …). */
  notable: Record<string, number>;
  rejected: RejectedInstruction[];
  /** All rejected instructions, including those beyond the listing limit. */
  rejectedTotal: number;
  /** Direct branch targets, those in the middle of an instruction (re-decoded from there), and code addresses taken. */
  branches: { direct: number; midInstruction: number; addressTaken: number };
}

export interface FileReport {
  path?: string;
  size: number;
  kind: ElfPlan["kind"] | "unreadable";
  entry: string;
  checks: ElfCheck[];
  segments: Array<{ type: string; flags: string; address: string; memsz: number; filesz: number; offset: number }>;
  /** Bytes of executable segments outside executable sections; all must be padding (00, 90, cc). */
  paddingBytes: number;
  symbols: number;
}

export interface ValidationReport {
  ok: boolean;
  file: FileReport;
  sections: SectionReport[];
  /** Every reason the program is rejected, one line each. */
  errors: string[];
  stats: { textBytes: number; instructions: number; ms: number; mbPerS: number };
}

/** A program the validator rejects; `details.report` carries the whole report. */
export class X86ValidationError extends BundleError {
  readonly report: ValidationReport;
  constructor(report: ValidationReport) {
    const first = report.errors.slice(0, 3).join("; ");
    const more = report.errors.length > 3 ? ` (and ${report.errors.length - 3} more)` : "";
    super("x86_program_rejected", `${first}${more}`, { details: { report } });
    this.report = report;
  }
}

// -- per-Code facts the hot loop needs, built once ---------------------------------------------

const F_BRANCH = 1; // near jmp/call/jcc/ret/loop/xbegin: an operand-size prefix is ambiguous
const F_DIRECT = 2; // relative branch: its target is known statically
const F_LEA = 4; // lea: a rip-relative one takes an address
const F_IMM32 = 8; // mov/push imm32: a non-PIE program takes code addresses this way
const F_IMM64 = 16; // movabs r64, imm64

interface Tables {
  policy: CompiledX86Policy;
  facts: Uint8Array;
  featureNames: string[];
  /** CPUID features per Code, filled on first sight. */
  features: Array<string[] | undefined>;
}

let tables: Tables | undefined;

const BRANCH_MNEMONICS = new Set<number>([
  Mnemonic.Jmp, Mnemonic.Call, Mnemonic.Ret, Mnemonic.Ja, Mnemonic.Jae, Mnemonic.Jb, Mnemonic.Jbe, Mnemonic.Je, Mnemonic.Jg,
  Mnemonic.Jge, Mnemonic.Jl, Mnemonic.Jle, Mnemonic.Jne, Mnemonic.Jno, Mnemonic.Jnp, Mnemonic.Jns, Mnemonic.Jo, Mnemonic.Jp,
  Mnemonic.Js, Mnemonic.Jrcxz, Mnemonic.Jecxz, Mnemonic.Jcxz, Mnemonic.Loop, Mnemonic.Loope, Mnemonic.Loopne, Mnemonic.Xbegin,
]);
const DIRECT_OPERANDS = new Set<number>([
  OpCodeOperandKind.br16_1, OpCodeOperandKind.br32_1, OpCodeOperandKind.br64_1, OpCodeOperandKind.br16_2,
  OpCodeOperandKind.br32_4, OpCodeOperandKind.br64_4, OpCodeOperandKind.xbegin_2, OpCodeOperandKind.xbegin_4,
]);

function getTables(): Tables {
  if (tables !== undefined) return tables;
  const policy = compileX86Policy();
  const codeCount = countCodes();
  const facts = new Uint8Array(codeCount);
  for (let code = 1; code < codeCount; code++) {
    const op = CodeExt.opCode(code);
    try {
      let f = 0;
      if (BRANCH_MNEMONICS.has(op.mnemonic)) f |= F_BRANCH;
      if (op.opCount > 0 && DIRECT_OPERANDS.has(op.op0Kind)) f |= F_DIRECT;
      facts[code] = f;
    } finally {
      op.free();
    }
  }
  facts[Code.Lea_r16_m] = facts[Code.Lea_r16_m]! | F_LEA;
  facts[Code.Lea_r32_m] = facts[Code.Lea_r32_m]! | F_LEA;
  facts[Code.Lea_r64_m] = facts[Code.Lea_r64_m]! | F_LEA;
  for (const c of [Code.Mov_r32_imm32, Code.Mov_rm32_imm32, Code.Mov_rm64_imm32, Code.Pushq_imm32]) facts[c] = facts[c]! | F_IMM32;
  facts[Code.Mov_r64_imm64] = facts[Code.Mov_r64_imm64]! | F_IMM64;
  const featureNames: string[] = [];
  for (const [name, value] of Object.entries(CpuidFeature)) if (typeof value === "number") featureNames[value] = name;
  tables = { policy, facts, featureNames, features: new Array<string[] | undefined>(codeCount) };
  return tables;
}

/** Legacy prefixes (66, 67, F0, F2, F3, segments); REX is 40–4F. */
const LEGACY_PREFIX = new Uint8Array(256);
for (const b of [0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3]) LEGACY_PREFIX[b] = 1;
const PREFIX_OR_REX = new Uint8Array(256);
for (let b = 0; b < 256; b++) PREFIX_OR_REX[b] = LEGACY_PREFIX[b] === 1 || (b & 0xf0) === 0x40 ? 1 : 0;
const PADDING_BYTE = new Uint8Array(256);
for (const b of [0x00, 0x90, 0xcc]) PADDING_BYTE[b] = 1;

/**
 * The prefix combinations decoders disagree on (see the ambiguous-encoding rule), or null.
 * Reads only bytes[start, end), the instruction iced just decoded.
 */
function checkPrefixes(bytes: Uint8Array, start: number, end: number, branch: boolean): string | null {
  let i = start;
  let rex = false;
  let rexW = false;
  let f2 = false;
  let f3 = false;
  let opsize = false;
  while (i < end) {
    const b = bytes[i]!;
    if (LEGACY_PREFIX[b] === 1) {
      if (rex) return "a REX prefix followed by another prefix (ignored by hardware, kept by QEMU)";
      if (b === 0xf2) f2 = true;
      else if (b === 0xf3) f3 = true;
      else if (b === 0x66) opsize = true;
    } else if ((b & 0xf0) === 0x40) {
      if (rex) return "two REX prefixes";
      rex = true;
      rexW = (b & 8) !== 0;
    } else break;
    i++;
  }
  if (f2 && f3) return "both F2 and F3 prefixes (decoders pick different ones)";
  if (branch && opsize && !rexW) return "an operand-size (66) prefix on a branch (16-bit on AMD and QEMU, ignored on Intel)";
  return null;
}

function hexBytes(bytes: Uint8Array, start: number, length: number): string {
  let s = "";
  for (let i = start; i < start + length && i < bytes.length; i++) s += (i === start ? "" : " ") + bytes[i]!.toString(16).padStart(2, "0");
  return s;
}

/** Scratch state of one validation. */
interface Region extends CodeRegion {
  bytes: Uint8Array;
  /** 1 at every offset where an instruction starts (length size + 1: the end is a boundary too). */
  boundary: Uint8Array;
  report: SectionReport;
  counts: Uint32Array;
  /** Offset of the first instruction of each Code (for CPUID features). */
  firstAt: Int32Array;
}

interface Target {
  address: number;
  from: number;
  kind: "branch" | "address";
}

class Validation {
  readonly #t = getTables();
  readonly #elf: ElfFile;
  readonly #limits: X86ValidateLimits;
  readonly #formatter: Formatter;
  readonly #instr = new Instruction();
  readonly targets: Target[] = [];
  readonly regions: Region[] = [];
  #low = Infinity;
  #high = -Infinity;

  constructor(elf: ElfFile, limits: X86ValidateLimits, syntax: "intel" | "gas") {
    this.#elf = elf;
    this.#limits = limits;
    this.#formatter = new Formatter(syntax === "gas" ? FormatterSyntax.Gas : FormatterSyntax.Intel);
    this.#formatter.firstOperandCharIndex = 0;
  }

  dispose(): void {
    this.#formatter.free();
    this.#instr.free();
  }

  /** Sets up the regions first, so address-taking instructions can be matched against all of them. */
  addRegions(code: CodeRegion[]): void {
    for (const c of code) {
      // Safe: checkElf verified offset + size lies inside the file for every code region.
      const bytes = this.#elf.bytes.subarray(c.offset, c.offset + c.size);
      this.regions.push({
        ...c,
        bytes,
        boundary: new Uint8Array(c.size + 1),
        counts: new Uint32Array(this.#t.policy.codeCount),
        firstAt: new Int32Array(this.#t.policy.codeCount).fill(-1),
        report: {
          name: c.name,
          address: hex(c.address),
          bytes: c.size,
          instructions: 0,
          classes: {},
          notable: {},
          rejected: [],
          rejectedTotal: 0,
          branches: { direct: 0, midInstruction: 0, addressTaken: 0 },
        },
      });
      this.#low = Math.min(this.#low, c.address);
      this.#high = Math.max(this.#high, c.address + c.size);
    }
  }

  #reject(region: Region, offset: number, length: number, rule: string, reason: string, via?: string): void {
    const r = region.report;
    r.rejectedTotal++;
    if (r.rejected.length >= this.#limits.maxRejectionsPerSection) return;
    const address = region.address + offset;
    const entry: RejectedInstruction = {
      address: hex(address),
      bytes: hexBytes(region.bytes, offset, length),
      text: this.#formatter.format(this.#instr),
      rule,
      reason,
    };
    const symbol = nameAddress(this.#elf.symbols, address);
    if (symbol !== undefined) entry.symbol = symbol;
    if (via !== undefined) entry.via = via;
    r.rejected.push(entry);
  }

  /** The linear decoding of one region: every byte belongs to exactly one instruction. */
  decode(region: Region): void {
    const { policy, facts } = this.#t;
    const { ruleOf, rejects, rules } = policy;
    const instr = this.#instr;
    const bytes = region.bytes;
    const size = bytes.length;
    const boundary = region.boundary;
    const counts = region.counts;
    const firstAt = region.firstAt;
    const base = region.address;
    const low = this.#low;
    const high = this.#high;
    let direct = 0;
    let taken = 0;
    let n = 0;
    const decoder = new Decoder(64, bytes, DecoderOptions.None);
    try {
      decoder.ip = BigInt(base);
      let pos = 0;
      while (pos < size) {
        decoder.decodeOut(instr);
        const code = instr.code;
        let len = instr.length;
        if (len <= 0) {
          // never loop in place, whatever the decoder says
          len = 1;
          decoder.position = pos + 1;
        }
        boundary[pos] = 1;
        n++;
        const seen = counts[code]!;
        if (seen === 0) firstAt[code] = pos;
        counts[code] = seen + 1;
        if (rejects[code] === 1) {
          const rule = rules[ruleOf[code]!]!;
          this.#reject(region, pos, len, rule.id, code === Code.INVALID ? invalidReason(size - pos, len) : rule.reason);
        } else {
          const first = bytes[pos]!;
          const f = facts[code]!;
          // Most instructions have no prefix or just a REX before the opcode: one or two table reads.
          if (LEGACY_PREFIX[first] === 1 || ((first & 0xf0) === 0x40 && PREFIX_OR_REX[bytes[pos + 1] ?? 0] === 1)) {
            const problem = checkPrefixes(bytes, pos, pos + len, (f & F_BRANCH) !== 0);
            if (problem !== null) this.#reject(region, pos, len, RULE_AMBIGUOUS, problem);
          }
          if (f !== 0) {
            if (f & F_DIRECT) {
              direct++;
              this.targets.push({ address: Number(instr.nearBranchTarget), from: base + pos, kind: "branch" });
            } else if (f & F_LEA) {
              if (instr.isIpRelMemoryOperand) {
                const a = Number(instr.ipRelMemoryAddress);
                if (a >= low && a < high) {
                  taken++;
                  this.targets.push({ address: a, from: base + pos, kind: "address" });
                }
              }
            } else if (f & F_IMM32) {
              const a = instr.immediate32;
              if (a >= low && a < high) {
                taken++;
                this.targets.push({ address: a, from: base + pos, kind: "address" });
              }
            } else if (f & F_IMM64) {
              const a = Number(instr.immediate64);
              if (a >= low && a < high) {
                taken++;
                this.targets.push({ address: a, from: base + pos, kind: "address" });
              }
            }
          }
        }
        pos += len;
      }
      boundary[size] = 1;
    } finally {
      decoder.free();
    }
    region.report.instructions = n;
    region.report.branches.direct = direct;
    region.report.branches.addressTaken = taken;
  }

  /**
   * A branch or taken address that lands inside an instruction starts a second decoding there
   * (glibc jumps over `lock` prefixes this way). Decode from it until it falls back onto the
   * linear decoding's boundaries and reject what the policy rejects on the way. Direct branches
   * outside every code region are rejected too; taken addresses outside are just constants.
   */
  checkTargets(): string[] {
    const errors: string[] = [];
    const { policy } = this.#t;
    const seen = new Set<number>();
    const regions = [...this.regions].sort((a, b) => a.address - b.address);
    const find = (address: number) => regions.find((r) => address >= r.address && address < r.address + r.bytes.length);
    for (const t of this.targets) {
      const region = find(t.address);
      if (region === undefined) {
        if (t.kind === "branch" && !seen.has(-t.address)) {
          seen.add(-t.address);
          errors.push(`x86.validate: the branch at ${hex(t.from)} jumps to ${hex(t.address)}, outside the executable sections`);
        }
        continue;
      }
      const offset = t.address - region.address;
      if (region.boundary[offset] === 1 || seen.has(t.address)) continue;
      seen.add(t.address);
      region.report.branches.midInstruction++;
      const via = `${t.kind === "branch" ? "branch" : "code address taken"} at ${hex(t.from)}${nameSuffix(this.#elf, t.from)}, into the middle of an instruction`;
      const decoder = new Decoder(64, region.bytes, DecoderOptions.None);
      try {
        decoder.ip = BigInt(t.address);
        decoder.position = offset;
        let pos = offset;
        for (let i = 0; i < this.#limits.maxHiddenInstructions && pos < region.bytes.length && region.boundary[pos] !== 1; i++) {
          decoder.decodeOut(this.#instr);
          const code = this.#instr.code;
          const len = Math.max(1, this.#instr.length);
          // An invalid second decoding faults when run (#UD); only a branch makes it a finding.
          if (policy.rejects[code] === 1 && (code !== Code.INVALID || t.kind === "branch")) {
            const rule = policy.rules[policy.ruleOf[code]!]!;
            this.#reject(region, pos, len, RULE_BRANCH_TARGET, `${rule.id}: ${rule.reason}`, via);
          }
          pos += len;
        }
      } finally {
        decoder.free();
      }
    }
    return errors;
  }

  /** Per-section classes (CPUID features) and notable allowed rules, from the Code counts. */
  summarise(region: Region): void {
    const { policy, features, featureNames } = this.#t;
    const classes: Record<string, number> = {};
    const notable: Record<string, number> = {};
    const counts = region.counts;
    let decoder: Decoder | undefined;
    try {
      for (let code = 0; code < counts.length; code++) {
        const count = counts[code]!;
        if (count === 0) continue;
        const rule = policy.rules[policy.ruleOf[code]!]!;
        if (rule.decision === "allow" && rule.id !== RULE_DEFAULT) notable[rule.id] = (notable[rule.id] ?? 0) + count;
        if (code === Code.INVALID) continue;
        let names = features[code];
        if (names === undefined) {
          decoder ??= new Decoder(64, region.bytes, DecoderOptions.None);
          decoder.position = region.firstAt[code]!;
          decoder.decodeOut(this.#instr);
          names = Array.from(this.#instr.cpuidFeatures(), (f) => featureNames[f] ?? `feature${f}`);
          features[code] = names;
        }
        for (const name of names) classes[name] = (classes[name] ?? 0) + count;
      }
    } finally {
      decoder?.free();
    }
    region.report.classes = sortByCount(classes);
    region.report.notable = sortByCount(notable);
  }

  entryIsBoundary(entry: number): boolean {
    const region = this.regions.find((r) => entry >= r.address && entry < r.address + r.bytes.length);
    return region !== undefined && region.boundary[entry - region.address] === 1;
  }
}

function nameSuffix(elf: ElfFile, address: number): string {
  const name = nameAddress(elf.symbols, address);
  return name === undefined ? "" : ` (${name})`;
}

function invalidReason(left: number, len: number): string {
  return len >= left ? "undecodable or cut off by the end of the section" : "undecodable bytes (unknown opcode, or LOCK on an instruction that cannot take it)";
}

function sortByCount(r: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(r).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)));
}

function emptyFile(bytes: Uint8Array, path: string | undefined): FileReport {
  return { ...(path === undefined ? {} : { path }), size: bytes.byteLength, kind: "unreadable", entry: "", checks: [], segments: [], paddingBytes: 0, symbols: 0 };
}

/**
 * Validates a static x86-64 Linux program. Never throws for a bad program (the report says why);
 * throws only for a bug. `ok` is true when every ELF check passed and no instruction is rejected.
 */
export function validateElf(bytes: Uint8Array, opts: ValidateOptions = {}): ValidationReport {
  const started = performance.now();
  const limits: X86ValidateLimits = { ...DEFAULT_X86_VALIDATE_LIMITS, ...opts.limits };
  const errors: string[] = [];
  const finish = (file: FileReport, sections: SectionReport[], textBytes: number, instructions: number): ValidationReport => {
    const ms = performance.now() - started;
    return {
      ok: errors.length === 0,
      file,
      sections,
      errors,
      stats: { textBytes, instructions, ms: Math.round(ms * 1000) / 1000, mbPerS: ms > 0 ? Math.round((textBytes / 1e6 / (ms / 1000)) * 10) / 10 : 0 },
    };
  };

  // 1. the file
  let elf: ElfFile;
  try {
    elf = readElf(bytes, limits);
  } catch (e) {
    if (!(e instanceof ElfFormatError)) throw e;
    errors.push(e.message);
    return finish(emptyFile(bytes, opts.path), [], 0, 0);
  }
  const plan = checkElf(elf, { allowStaticPie: opts.allowStaticPie ?? false, limits });
  for (const c of plan.checks) if (!c.ok) errors.push(`x86.elf: ${c.check}: ${c.detail}`);
  const file: FileReport = {
    ...(opts.path === undefined ? {} : { path: opts.path }),
    size: bytes.byteLength,
    kind: plan.kind,
    entry: hex(elf.header.entry),
    checks: plan.checks,
    segments: elf.segments
      .filter((s) => s.type === PT_LOAD)
      .map((s) => ({ type: s.typeName, flags: formatFlags(s.flags), address: hex(s.vaddr), memsz: s.memsz, filesz: s.filesz, offset: s.offset })),
    paddingBytes: plan.padding.reduce((a, p) => a + p.size, 0),
    symbols: elf.symbols.length,
  };

  // 2. padding between executable sections: only 00, 90 (nop) and cc (int3), so no unvalidated
  //    code hides in an executable segment. Safe: checkElf derived each range from a PT_LOAD whose
  //    file range it verified to lie inside the file.
  for (const p of plan.padding) {
    for (let i = 0; i < p.size; i++) {
      if (PADDING_BYTE[bytes[p.offset + i]!] !== 1) {
        errors.push(`x86.validate: byte ${bytes[p.offset + i]!.toString(16).padStart(2, "0")} at ${hex(p.address + i)} lies in an executable segment but outside every executable section (only 00/90/cc padding may; link with -z separate-code)`);
        break;
      }
    }
  }

  // 3. decode every code region, then the branch targets that land inside instructions
  const v = new Validation(elf, limits, opts.syntax ?? "intel");
  try {
    v.addRegions(plan.code);
    for (const region of v.regions) v.decode(region);
    errors.push(...v.checkTargets());
    for (const region of v.regions) v.summarise(region);
    if (plan.checks.find((c) => c.check === "entry")?.ok === true && !v.entryIsBoundary(elf.header.entry)) {
      errors.push(`x86.validate: the entry point ${hex(elf.header.entry)} is in the middle of an instruction`);
    }
  } finally {
    v.dispose();
  }

  // 4. one line per section with rejected instructions
  const sections = v.regions.map((r) => r.report);
  for (const s of sections) {
    if (s.rejectedTotal === 0) continue;
    const first = s.rejected[0];
    const what = first === undefined ? "" : ` (first: ${first.text} at ${first.address}, ${first.rule})`;
    errors.push(`x86.validate: ${s.name}: ${s.rejectedTotal} rejected ${s.rejectedTotal === 1 ? "instruction" : "instructions"}${what}`);
  }
  const textBytes = sections.reduce((a, s) => a + s.bytes, 0);
  const instructions = sections.reduce((a, s) => a + s.instructions, 0);
  return finish(file, sections, textBytes, instructions);
}

/** validateElf for the deploy path: throws X86ValidationError (a BundleError, 400) carrying the report. */
export function assertValidProgram(bytes: Uint8Array, opts: ValidateOptions = {}): ValidationReport {
  const report = validateElf(bytes, opts);
  if (!report.ok) throw new X86ValidationError(report);
  return report;
}

/** The human report printed by `zerocell validate`. */
export function formatReport(report: ValidationReport): string {
  const lines: string[] = [];
  const f = report.file;
  lines.push(`${f.path ?? "program"}: ${report.ok ? "OK" : "REJECTED"} (${f.size} bytes, ${f.kind}${f.entry === "" ? "" : `, entry ${f.entry}`})`);
  if (f.checks.length > 0) {
    lines.push("", "file checks:");
    for (const c of f.checks) lines.push(`  ${c.ok ? "ok  " : "FAIL"} ${c.check.padEnd(20)} ${c.detail}`);
  }
  if (f.segments.length > 0) {
    lines.push("", "segments:");
    for (const s of f.segments) lines.push(`  ${s.type} ${s.flags} ${s.address.padStart(12)}  memsz ${String(s.memsz).padStart(9)}  filesz ${String(s.filesz).padStart(9)}`);
  }
  for (const s of report.sections) {
    lines.push("", `section ${s.name} at ${s.address}: ${s.bytes} bytes, ${s.instructions} instructions, ${s.rejectedTotal} rejected`);
    const classes = Object.entries(s.classes).map(([k, n]) => `${k} ${n}`).join(", ");
    if (classes !== "") lines.push(`  classes: ${classes}`);
    const notable = Object.entries(s.notable).map(([k, n]) => `${k} ${n}`).join(", ");
    if (notable !== "") lines.push(`  allowed by rule: ${notable}`);
    const b = s.branches;
    lines.push(`  branches: ${b.direct} direct, ${b.addressTaken} code addresses taken, ${b.midInstruction} into the middle of an instruction`);
    for (const r of s.rejected) {
      lines.push(`  REJECT ${r.address}${r.symbol === undefined ? "" : ` <${r.symbol}>`}  ${r.bytes.padEnd(24)} ${r.text}`);
      lines.push(`         [${r.rule}] ${r.reason}`);
      if (r.via !== undefined) lines.push(`         reached by the ${r.via}`);
    }
    if (s.rejectedTotal > s.rejected.length) lines.push(`  … and ${s.rejectedTotal - s.rejected.length} more`);
  }
  if (report.errors.length > 0) {
    lines.push("", "errors:");
    for (const e of report.errors) lines.push(`  ${e}`);
  }
  const st = report.stats;
  lines.push("", `${st.instructions} instructions in ${st.textBytes} bytes of code, validated in ${st.ms.toFixed(1)} ms (${st.mbPerS} MB/s)`);
  return lines.join("\n") + "\n";
}

export { ruleById, RULE_INVALID };
