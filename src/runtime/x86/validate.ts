/**
 * The static validator for x86-64 programs (NaCl's first wall, without NaCl's bundle rule):
 * check the ELF file (elf.ts), decode every executable section with iced-x86 in 64-bit mode,
 * look each instruction up in the policy (policy.ts), and report every rejected instruction with
 * its address, bytes, disassembly and reason. It runs at deploy and standalone
 * (`zerocell validate`), needs no server and never executes guest code.
 *
 * Beyond the linear decoding it re-decodes from every direct branch target, rip-relative code
 * address and section end that lands inside an instruction, until that decoding falls back onto
 * the linear one. What no static decoding can see, and the executor must cover (CPL 3, W^X): an
 * indirect jump to a computed address inside an instruction, and code written at run time.
 * docs/x86-sandbox.md has the policy table and the reasoning.
 */
import type * as Iced from "iced-x86";
import { BundleError } from "../../errors.js";
import {
  checkElf,
  DEFAULT_ELF_LIMITS,
  ElfFormatError,
  formatFlags,
  hex,
  nameAddress,
  PT_LOAD,
  readElf,
  type CodeRegion,
  type ElfCheck,
  type ElfLimits,
  type ElfPlan,
  type ElfSymbol,
} from "./elf.js";
import { compileX86Policy, iced, ruleIndexOf, RULE_AMBIGUOUS, RULE_BRANCH_TARGET, RULE_DEFAULT, type CompiledX86Policy } from "./policy.js";

const { CpuidFeature, Decoder, DecoderOptions, Code, FlowControl, Formatter, FormatterSyntax, Instruction, Mnemonic, OpCodeOperandKind } = iced;
type Decoder = Iced.Decoder;
type Formatter = Iced.Formatter;
type Instruction = Iced.Instruction;

export { X86_POLICY, ruleById, ruleForCode, type X86PolicyRule } from "./policy.js";
/** `zerocell validate PATH` reads its program through the manifest parser (program.ts). */
export { readProgram } from "./program.js";

/** Limits of one validation; sizes in bytes, counts in entries. */
export interface X86ValidateLimits extends ElfLimits {
  /** Rejected instructions listed per section (all are counted in rejectedTotal). */
  maxRejectionsPerSection: number;
  /** Instructions decoded from one mid-instruction target before giving up on falling back onto the linear decoding. */
  maxHiddenInstructions: number;
  /** Mid-instruction targets decoded a second time; more rejects the program (compiled code has a few dozen). */
  maxSecondDecodings: number;
}

export const DEFAULT_X86_VALIDATE_LIMITS: Readonly<X86ValidateLimits> = Object.freeze({
  ...DEFAULT_ELF_LIMITS,
  maxRejectionsPerSection: 200,
  maxHiddenInstructions: 64,
  maxSecondDecodings: 10_000,
});

export interface ValidateOptions {
  limits?: Partial<X86ValidateLimits>;
  /** Accept ET_DYN static-pie programs (default false: the executor loads ET_EXEC). */
  allowStaticPie?: boolean;
  /** Disassembly syntax of rejected instructions (default "intel"). */
  syntax?: "intel" | "gas";
  /** Shown in the report. */
  path?: string;
  /**
   * Decode common encodings in JavaScript, checked against iced-x86 the first time each
   * encoding shape is seen (default true). Off: iced decodes every instruction (same report, slower).
   */
  fastPath?: boolean;
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
  /** For an instruction hidden inside another: what reaches it. */
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
  /**
   * Instructions the policy rejects, found by decoding from a 32/64-bit constant that points
   * into the middle of an instruction: maybe a code address, maybe a number. Warnings only.
   */
  suspicious: RejectedInstruction[];
  /**
   * direct: relative branches; outside: of those, targets outside executable code (weak symbols
   * resolve to 0); addressTaken: rip-relative lea and mov/push constants pointing into code;
   * midInstruction: targets inside an instruction, decoded a second time from there, and
   * midInstructionBy: what reached them (branch, fall-through, lea, constant).
   */
  branches: { direct: number; outside: number; addressTaken: number; midInstruction: number; midInstructionBy: Record<string, number> };
}

export interface FileReport {
  path?: string;
  size: number;
  kind: ElfPlan["kind"] | "unreadable" | "raw";
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
  /** Findings that do not reject the program (suspicious constants). */
  warnings: string[];
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

// -- per-Code facts the hot loop needs, learnt on first sight --------------------------------

const F_BRANCH = 1; // near jmp/call/jcc/ret/loop/xbegin: an operand-size prefix is ambiguous
const F_DIRECT = 2; // relative branch: its target is known statically
const F_LEA = 4; // lea: a rip-relative one takes an address
const F_IMM32 = 8; // mov/push imm32: how a non-PIE program takes a code address (or any constant)
const F_IMM64 = 16; // movabs r64, imm64
const F_OPERAND = F_DIRECT | F_LEA | F_IMM32 | F_IMM64;
const F_REJECT = 0x40; // the policy rejects it
const F_KNOWN = 0x80; // facts computed (0 = not yet)

interface Tables {
  policy: CompiledX86Policy;
  /** F_* bits per Code; 0 until factsOf has seen the Code. */
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
const LEA_CODES = new Set<number>([Code.Lea_r16_m, Code.Lea_r32_m, Code.Lea_r64_m]);
const IMM32_CODES = new Set<number>([Code.Mov_r32_imm32, Code.Mov_rm32_imm32, Code.Mov_rm64_imm32, Code.Pushq_imm32]);

function getTables(): Tables {
  if (tables !== undefined) return tables;
  const policy = compileX86Policy();
  const featureNames: string[] = [];
  for (const [name, value] of Object.entries(CpuidFeature)) if (typeof value === "number") featureNames[value] = name;
  tables = { policy, facts: new Uint8Array(policy.codeCount), featureNames, features: new Array<string[] | undefined>(policy.codeCount) };
  return tables;
}

/** F_* bits of an iced Code (with F_KNOWN), decided by the policy on first sight. */
function factsOf(t: Tables, code: number): number {
  const known = t.facts[code]!;
  if (known !== 0) return known;
  const rule = ruleIndexOf(code);
  let f = F_KNOWN;
  if (t.policy.rules[rule]!.decision === "reject") f |= F_REJECT;
  if (code !== Code.INVALID) {
    if (BRANCH_MNEMONICS.has(t.policy.mnemonicOf[code]!)) f |= F_BRANCH;
    if (DIRECT_OPERANDS.has(t.policy.op0KindOf[code]!)) f |= F_DIRECT;
    if (LEA_CODES.has(code)) f |= F_LEA;
    if (IMM32_CODES.has(code)) f |= F_IMM32;
    if (code === Code.Mov_r64_imm64) f |= F_IMM64;
  }
  t.facts[code] = f;
  return f;
}

// -- prefixes ----------------------------------------------------------------------------------

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
  let rex = false;
  let rexW = false;
  let f2 = false;
  let f3 = false;
  let opsize = false;
  for (let i = start; i < end; i++) {
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
  }
  if (f2 && f3) return "both F2 and F3 prefixes (decoders pick different ones)";
  if (branch && opsize && !rexW) return "an operand-size (66) prefix on a branch (16-bit on AMD and QEMU, ignored on Intel)";
  return null;
}

// -- the fast path -----------------------------------------------------------------------------
//
// iced-x86 in WASM decodes ~10 M instructions/s; the round trips, not the decoding, dominate.
// Most compiled code is a few hundred encoding "shapes" (map, opcode, 66/F2/F3, REX.W, register
// or memory form, ModRM.reg). For the shapes in FAST, JavaScript computes the length (prefixes,
// ModRM, SIB, displacement, immediate) and the branch target or constant. The first time a shape
// is seen, iced decodes that instruction too; the shape is trusted from then on only if iced
// agrees on the length and the target, and its Code is valid and allowed. Its Code then stands
// for the whole shape (the key holds everything iced's Code depends on for these opcodes);
// everything else (VEX/EVEX, x87, lock, 67, system opcodes, any disagreement) goes to iced.

const MODRM = 0x10;
const GROUP = 0x20; // ModRM.reg selects the instruction: part of the shape
const BRANCHY = 0x40; // a 66 prefix is ambiguous here: leave to iced (which rejects it)
const REG0 = 0x80; // only ModRM.reg 0 (C6/C7: reg 7 with mod 3 is xabort/xbegin, which depend on rm)
const IMM_MASK = 0x0f;
const I_NONE = 1;
const I_B = 2; // imm8
const I_W = 3; // imm16
const I_Z = 4; // imm16 with 66 (without REX.W), else imm32
const I_V = 5; // B8+r: imm64 with REX.W, imm16 with 66, else imm32
const I_R8 = 6; // rel8
const I_R32 = 7; // rel32
const I_TB = 8; // F6: imm8 for reg 0/1 only
const I_TZ = 9; // F7: iz for reg 0/1 only

/** Fast-path entries per (map << 8 | opcode), map 0 = one byte, 1 = 0F xx; 0 = leave to iced. */
const FAST = new Uint16Array(512);
function fast(map: number, from: number, to: number, entry: number): void {
  for (let op = from; op <= to; op++) FAST[(map << 8) | op] = entry;
}
for (const base of [0x00, 0x08, 0x10, 0x18, 0x20, 0x28, 0x30, 0x38]) {
  fast(0, base, base + 3, MODRM | I_NONE); // alu r/m, r and r, r/m
  fast(0, base + 4, base + 4, I_B); // alu al, imm8
  fast(0, base + 5, base + 5, I_Z); // alu eax, imm32
}
fast(0, 0x50, 0x5f, I_NONE); // push/pop r64
fast(0, 0x63, 0x63, MODRM | I_NONE); // movsxd
fast(0, 0x68, 0x68, I_Z); // push imm32
fast(0, 0x69, 0x69, MODRM | I_Z); // imul r, r/m, imm32
fast(0, 0x6a, 0x6a, I_B); // push imm8
fast(0, 0x6b, 0x6b, MODRM | I_B); // imul r, r/m, imm8
fast(0, 0x70, 0x7f, BRANCHY | I_R8); // jcc rel8
fast(0, 0x80, 0x80, MODRM | GROUP | I_B);
fast(0, 0x81, 0x81, MODRM | GROUP | I_Z);
fast(0, 0x83, 0x83, MODRM | GROUP | I_B);
fast(0, 0x84, 0x8b, MODRM | I_NONE); // test, xchg, mov
fast(0, 0x8d, 0x8d, MODRM | I_NONE); // lea
fast(0, 0x90, 0x99, I_NONE); // nop/pause/xchg, cbw/cwde/cdqe, cwd/cdq/cqo
fast(0, 0x9c, 0x9f, I_NONE); // pushf, popf, sahf, lahf
fast(0, 0xa4, 0xa7, I_NONE); // movs, cmps
fast(0, 0xa8, 0xa8, I_B);
fast(0, 0xa9, 0xa9, I_Z);
fast(0, 0xaa, 0xaf, I_NONE); // stos, lods, scas
fast(0, 0xb0, 0xb7, I_B); // mov r8, imm8
fast(0, 0xb8, 0xbf, I_V); // mov r, imm
fast(0, 0xc0, 0xc1, MODRM | GROUP | I_B); // shifts by imm8
fast(0, 0xc2, 0xc2, BRANCHY | I_W); // ret imm16
fast(0, 0xc3, 0xc3, BRANCHY | I_NONE); // ret
fast(0, 0xc6, 0xc6, MODRM | GROUP | REG0 | I_B); // mov r/m8, imm8
fast(0, 0xc7, 0xc7, MODRM | GROUP | REG0 | I_Z); // mov r/m, imm32
fast(0, 0xc9, 0xc9, I_NONE); // leave
fast(0, 0xd0, 0xd3, MODRM | GROUP | I_NONE); // shifts by 1 / cl
fast(0, 0xe8, 0xe9, BRANCHY | I_R32); // call, jmp rel32
fast(0, 0xeb, 0xeb, BRANCHY | I_R8); // jmp rel8
fast(0, 0xf5, 0xf5, I_NONE); // cmc
fast(0, 0xf6, 0xf6, MODRM | GROUP | I_TB);
fast(0, 0xf7, 0xf7, MODRM | GROUP | I_TZ);
fast(0, 0xf8, 0xf9, I_NONE); // clc, stc
fast(0, 0xfc, 0xfd, I_NONE); // cld, std
fast(0, 0xfe, 0xff, BRANCHY | MODRM | GROUP | I_NONE); // inc/dec/call/jmp/push r/m (far forms are rejected by iced's Code)
fast(1, 0x10, 0x17, MODRM | I_NONE); // SSE moves, unpck
fast(1, 0x18, 0x18, MODRM | GROUP | I_NONE); // prefetch
fast(1, 0x1f, 0x1f, MODRM | GROUP | I_NONE); // nop r/m
fast(1, 0x28, 0x2f, MODRM | I_NONE); // movaps, cvt, movnt, (u)comis
fast(1, 0x40, 0x4f, MODRM | I_NONE); // cmovcc
fast(1, 0x50, 0x6f, MODRM | I_NONE); // SSE/MMX arithmetic, moves
fast(1, 0x70, 0x70, MODRM | I_B); // pshufd & co
fast(1, 0x71, 0x73, MODRM | GROUP | I_B); // shifts by imm8
fast(1, 0x74, 0x76, MODRM | I_NONE); // pcmpeq
fast(1, 0x7e, 0x7f, MODRM | I_NONE); // movd/movq/movdq
fast(1, 0x80, 0x8f, BRANCHY | I_R32); // jcc rel32
fast(1, 0x90, 0x9f, MODRM | GROUP | I_NONE); // setcc
fast(1, 0xa3, 0xa3, MODRM | I_NONE); // bt
fast(1, 0xa4, 0xa4, MODRM | I_B); // shld imm8
fast(1, 0xa5, 0xa5, MODRM | I_NONE); // shld cl
fast(1, 0xab, 0xab, MODRM | I_NONE); // bts
fast(1, 0xac, 0xac, MODRM | I_B); // shrd imm8
fast(1, 0xad, 0xad, MODRM | I_NONE); // shrd cl
fast(1, 0xaf, 0xb1, MODRM | I_NONE); // imul, cmpxchg
fast(1, 0xb3, 0xb3, MODRM | I_NONE); // btr
fast(1, 0xb6, 0xb8, MODRM | I_NONE); // movzx, popcnt
fast(1, 0xba, 0xba, MODRM | GROUP | I_B); // bt group imm8
fast(1, 0xbb, 0xbf, MODRM | I_NONE); // btc, bsf/tzcnt, bsr/lzcnt, movsx
fast(1, 0xc0, 0xc1, MODRM | I_NONE); // xadd
fast(1, 0xc2, 0xc2, MODRM | I_B); // cmpps
fast(1, 0xc3, 0xc3, MODRM | I_NONE); // movnti
fast(1, 0xc4, 0xc6, MODRM | I_B); // pinsrw, pextrw, shufps
fast(1, 0xc8, 0xcf, I_NONE); // bswap
fast(1, 0xd0, 0xfe, MODRM | I_NONE); // SSE/MMX arithmetic

/** 1 = segment prefix, 2 = 66, 3 = F2, 4 = F3; 67 and F0 are not here (iced handles them). */
const FAST_PREFIX = new Uint8Array(256);
for (const b of [0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65]) FAST_PREFIX[b] = 1;
FAST_PREFIX[0x66] = 2;
FAST_PREFIX[0xf2] = 3;
FAST_PREFIX[0xf3] = 4;

const SHAPES = 1 << 17;
/** Per shape: iced's Code once verified, -1 not seen yet, -2 leave to iced. Shared by all validations. */
const shapeCode = new Int32Array(SHAPES).fill(-1);


/**
 * The instruction at `pos` as `shape << 4 | length` when its shape is in FAST, else 0. Reads
 * only bytes [pos, end): every index is compared with `end` before the read (`p >= end` guards).
 */
function fastDecode(b: Uint8Array, pos: number, end: number): number {
  let p = pos;
  let p66 = 0;
  let f2 = 0;
  let f3 = 0;
  let w = 0;
  let rexB = 0;
  let legacy = 0;
  let x = b[p]!;
  let k = FAST_PREFIX[x]!;
  while (k !== 0) {
    if (k === 2) p66 = 1;
    else if (k === 3) f2 = 1;
    else if (k === 4) f3 = 1;
    if (++legacy > 4 || ++p >= end) return 0;
    x = b[p]!;
    k = FAST_PREFIX[x]!;
  }
  if ((x & 0xf0) === 0x40) {
    w = (x >> 3) & 1;
    rexB = x & 1;
    if (++p >= end) return 0;
    x = b[p]!;
  }
  if ((f2 & f3) !== 0) return 0;
  let map = 0;
  if (x === 0x0f) {
    map = 1;
    if (++p >= end) return 0;
    x = b[p]!;
  }
  const e = FAST[(map << 8) | x]!;
  if (e === 0 || (p66 !== 0 && (e & BRANCHY) !== 0)) return 0;
  p++;
  let reg = 0;
  let mod3 = 0;
  if ((e & MODRM) !== 0) {
    if (p >= end) return 0;
    const modrm = b[p]!;
    p++;
    const mod = modrm >> 6;
    const rm = modrm & 7;
    reg = (modrm >> 3) & 7;
    if (mod === 3) mod3 = 1;
    else {
      if (rm === 4) {
        if (p >= end) return 0;
        const sib = b[p]!;
        p++;
        if (mod === 0 && (sib & 7) === 5) p += 4;
      } else if (mod === 0 && rm === 5) p += 4; // rip-relative
      if (mod === 1) p += 1;
      else if (mod === 2) p += 4;
    }
    if ((e & REG0) !== 0 && reg !== 0) return 0;
    if ((e & GROUP) === 0) reg = 0;
  } else {
    reg = rexB; // 90 is nop, 41 90 is xchg r8d, eax
  }
  switch (e & IMM_MASK) {
    case I_B:
    case I_R8:
      p += 1;
      break;
    case I_W:
      p += 2;
      break;
    case I_Z:
      p += p66 !== 0 && w === 0 ? 2 : 4;
      break;
    case I_V:
      p += w !== 0 ? 8 : p66 !== 0 ? 2 : 4;
      break;
    case I_R32:
      p += 4;
      break;
    case I_TB:
      if (reg < 2) p += 1;
      break;
    case I_TZ:
      if (reg < 2) p += p66 !== 0 && w === 0 ? 2 : 4;
      break;
  }
  if (p > end || p - pos > 15) return 0;
  const shape = (((((((map << 8) | x) << 1 | p66) << 1 | f2) << 1 | f3) << 1 | w) << 1 | mod3) << 3 | reg;
  return (shape << 4) | (p - pos);
}

/** An address below 0 wraps around 2^64, as iced's u64 does (then it lies outside every segment). */
function wrap64(a: number): number {
  return a < 0 ? 18446744073709551616 + a : a;
}

/**
 * The fast path's view of the instruction at `pos`: its length (0 when left to iced) and shape.
 * For tests, which check it against iced-x86 over every opcode, prefix, REX and ModRM it covers.
 */
export function fastPathLength(bytes: Uint8Array, pos = 0): { length: number; shape: number } {
  const r = pos < bytes.length ? fastDecode(bytes, pos, bytes.length) : 0;
  return { length: r & 15, shape: r === 0 ? -1 : r >>> 4 };
}

function readI32(b: Uint8Array, at: number): number {
  return b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24);
}

function readU32(b: Uint8Array, at: number): number {
  return readI32(b, at) >>> 0;
}

/**
 * The branch target or constant of a fast-path instruction with facts `f` (-1: none, NaN: the
 * fast path cannot tell, so the shape is left to iced). Reads inside [pos, pos + len) only.
 */
function fastOperand(b: Uint8Array, pos: number, len: number, address: number, f: number, shape: number): number {
  const end = pos + len;
  if ((f & F_DIRECT) !== 0) {
    const imm = FAST[shape >>> 8]! & IMM_MASK;
    if (imm === I_R8) return wrap64(address + len + ((b[end - 1]! << 24) >> 24));
    if (imm === I_R32) return wrap64(address + len + readI32(b, end - 4));
    return NaN;
  }
  if ((f & F_LEA) !== 0) {
    if (shape >>> 8 !== 0x8d) return NaN;
    // lea is 8D /r: skip the prefixes and the REX fastDecode accepted to reach its ModRM.
    let modrm = pos;
    while (FAST_PREFIX[b[modrm]!] !== 0) modrm++;
    if ((b[modrm]! & 0xf0) === 0x40) modrm++;
    modrm++;
    return (b[modrm]! & 0xc7) === 0x05 ? wrap64(address + len + readI32(b, modrm + 1)) : -1;
  }
  if ((f & F_IMM32) !== 0) return readU32(b, end - 4);
  if ((f & F_IMM64) !== 0) return readU32(b, end - 8) + readU32(b, end - 4) * 4294967296;
  return -1;
}

/** The same as fastOperand, from iced's decoding. */
function icedOperand(instr: Instruction, f: number): number {
  if ((f & F_DIRECT) !== 0) return Number(instr.nearBranchTarget);
  if ((f & F_LEA) !== 0) return instr.isIpRelMemoryOperand ? Number(instr.ipRelMemoryAddress) : -1;
  if ((f & F_IMM32) !== 0) return instr.immediate32;
  if ((f & F_IMM64) !== 0) return Number(instr.immediate64);
  return -1;
}

const R_COUNT = 0;
const R_DIRECT = 1;
const R_TAKEN = 2;
const R_LAST = 3;

/**
 * Decodes fast-path instructions from `pos` while their shapes are verified, doing the same
 * bookkeeping as Validation.decode; returns where iced has to take over (or the end). `run`
 * accumulates instruction, branch and taken-address counts and the last instruction's offset.
 * Kept a plain function over typed arrays so V8 compiles one tight loop.
 */
function runFast(
  bytes: Uint8Array, pos: number, base: number, boundary: Uint8Array, bstart: number, counts: Uint32Array, seen: number[],
  facts: Uint8Array, targets: Targets, low: number, high: number, run: Float64Array,
): number {
  const size = bytes.length;
  let n = 0;
  let last = -1;
  while (pos < size) {
    const r = fastDecode(bytes, pos, size);
    if (r === 0) break;
    const code = shapeCode[r >>> 4]!;
    if (code < 0) break;
    const len = r & 15;
    boundary[bstart + pos] = 1;
    n++;
    const n0 = counts[code]!;
    if (n0 === 0) seen.push(code, pos);
    counts[code] = n0 + 1;
    const f = facts[code]!; // learnt: the shape was verified through the iced path
    if ((f & F_OPERAND) !== 0) {
      const operand = fastOperand(bytes, pos, len, base + pos, f, r >>> 4);
      if (operand >= 0) {
        if ((f & F_DIRECT) !== 0) {
          run[R_DIRECT] = run[R_DIRECT]! + 1;
          targets.push(operand, base + pos, T_BRANCH);
        } else if (operand >= low && operand < high) {
          run[R_TAKEN] = run[R_TAKEN]! + 1;
          targets.push(operand, base + pos, (f & F_LEA) !== 0 ? T_LEA : T_CONST);
        }
      }
    }
    last = pos;
    pos += len;
  }
  run[R_COUNT] = run[R_COUNT]! + n;
  if (last >= 0) run[R_LAST] = last;
  return pos;
}

// -- the code space ----------------------------------------------------------------------------

/** What reaches a place: strongest first (a lower number wins when several reach the same byte). */
const T_BRANCH = 0; // a direct branch
const T_FALLTHROUGH = 1; // the end of a section running on into padding and the next section
const T_LEA = 2; // a rip-relative lea: an address for sure
const T_CONST = 3; // a 32/64-bit constant: maybe an address
const TARGET_WORDS = ["branch", "fall-through from the end of", "rip-relative code address taken", "constant"] as const;
const TARGET_KINDS = ["branch", "fall-through", "lea", "constant"] as const;

/** An executable segment's file bytes: where every second decoding runs and resynchronises. */
interface Space {
  address: number;
  bytes: Uint8Array;
  /** 1 where the linear decoding of some section starts an instruction. */
  boundary: Uint8Array;
  regions: Region[];
  decoder?: Decoder;
}

interface Region extends CodeRegion {
  space: Space;
  /** Offset of the region in its space. */
  start: number;
  bytes: Uint8Array;
  report: SectionReport;
  /** Each Code seen, with the offset of its first instruction (flat pairs), for the summary. */
  seen: number[];
}

/** Growable list of (address, from, kind) without an object per entry. */
class Targets {
  address = new Float64Array(4096);
  from = new Float64Array(4096);
  kind = new Uint8Array(4096);
  length = 0;

  push(address: number, from: number, kind: number): void {
    if (this.length === this.address.length) {
      const grow = <T extends Float64Array | Uint8Array>(a: T): T => {
        const b = new (a.constructor as new (n: number) => T)(a.length * 2);
        b.set(a);
        return b;
      };
      this.address = grow(this.address);
      this.from = grow(this.from);
      this.kind = grow(this.kind);
    }
    this.address[this.length] = address;
    this.from[this.length] = from;
    this.kind[this.length] = kind;
    this.length++;
  }
}

const sharedTargets = new Targets();
let sharedCounts: Uint32Array | undefined;

class Validation {
  readonly #t = getTables();
  readonly #symbols: readonly ElfSymbol[];
  readonly #limits: X86ValidateLimits;
  readonly #fastPath: boolean;
  readonly #formatter: Formatter;
  readonly #instr = new Instruction();
  /** Shared by all validations: they run synchronously, one at a time, and reset it first. */
  readonly targets = sharedTargets;
  /** Instructions per Code of the region being decoded (shared; zeroed again after each region). */
  readonly #counts: Uint32Array;
  readonly spaces: Space[] = [];
  readonly regions: Region[] = [];
  readonly warnings: string[] = [];
  #low = Infinity;
  #high = -Infinity;

  constructor(symbols: readonly ElfSymbol[], limits: X86ValidateLimits, opts: ValidateOptions) {
    this.targets.length = 0;
    sharedCounts ??= new Uint32Array(this.#t.policy.codeCount);
    this.#counts = sharedCounts.fill(0);
    this.#symbols = symbols;
    this.#limits = limits;
    this.#fastPath = opts.fastPath ?? true;
    this.#formatter = new Formatter(opts.syntax === "gas" ? FormatterSyntax.Gas : FormatterSyntax.Intel);
    this.#formatter.firstOperandCharIndex = 0;
    this.#formatter.hexPrefix = "0x";
    this.#formatter.hexSuffix = "";
    this.#formatter.spaceAfterOperandSeparator = true;
  }

  dispose(): void {
    for (const s of this.spaces) s.decoder?.free();
    this.#formatter.free();
    this.#instr.free();
  }

  /**
   * Registers an executable segment's bytes and the code regions inside it. The caller
   * (validateElf) passes subarrays it bounds-checked: regions lie inside their space.
   */
  addSpace(address: number, bytes: Uint8Array, code: CodeRegion[], codeOffset: (c: CodeRegion) => number): void {
    const space: Space = { address, bytes, boundary: new Uint8Array(bytes.length), regions: [] };
    this.spaces.push(space);
    for (const c of code) {
      const start = codeOffset(c);
      const region: Region = {
        ...c,
        space,
        start,
        bytes: bytes.subarray(start, start + c.size),
        seen: [],
        report: {
          name: c.name,
          address: hex(c.address),
          bytes: c.size,
          instructions: 0,
          classes: {},
          notable: {},
          rejected: [],
          rejectedTotal: 0,
          suspicious: [],
          branches: { direct: 0, outside: 0, addressTaken: 0, midInstruction: 0, midInstructionBy: {} },
        },
      };
      space.regions.push(region);
      this.regions.push(region);
      this.#low = Math.min(this.#low, c.address);
      this.#high = Math.max(this.#high, c.address + c.size);
    }
    this.spaces.sort((a, b) => a.address - b.address);
    this.regions.sort((a, b) => a.address - b.address);
  }

  #listing(bytes: Uint8Array, offset: number, length: number, address: number, rule: string, reason: string, via?: string): RejectedInstruction {
    const entry: RejectedInstruction = {
      address: hex(address),
      bytes: hexBytes(bytes, offset, length),
      text: this.#formatter.format(this.#instr),
      rule,
      reason,
    };
    const symbol = nameAddress(this.#symbols, address);
    if (symbol !== undefined) entry.symbol = symbol;
    if (via !== undefined) entry.via = via;
    return entry;
  }

  #reject(region: Region, bytes: Uint8Array, offset: number, length: number, address: number, rule: string, reason: string, via?: string): void {
    const r = region.report;
    r.rejectedTotal++;
    if (r.rejected.length < this.#limits.maxRejectionsPerSection) r.rejected.push(this.#listing(bytes, offset, length, address, rule, reason, via));
  }

  /** The linear decoding of one region: every byte belongs to exactly one instruction. */
  decode(region: Region): void {
    const t = this.#t;
    const { policy, facts } = t;
    const { ruleOf, rules } = policy;
    const instr = this.#instr;
    // Reads below stay inside region.bytes: pos < size, and len comes from a decoder of those bytes.
    const bytes = region.bytes;
    const size = bytes.length;
    const boundary = region.space.boundary;
    const bstart = region.start;
    const counts = this.#counts;
    const seen = region.seen;
    const base = region.address;
    const low = this.#low;
    const high = this.#high;
    const targets = this.targets;
    const useFast = this.#fastPath;
    let direct = 0;
    let taken = 0;
    let n = 0;
    const run = new Float64Array(4);
    const decoder = new Decoder(64, bytes, DecoderOptions.None);
    try {
      let decoderAt = 0;
      decoder.ip = BigInt(base);
      let pos = 0;
      while (pos < size) {
        // 1. fast path: a run of verified shapes (valid, allowed, unambiguous prefixes)
        if (useFast) {
          pos = runFast(bytes, pos, base, boundary, bstart, counts, seen, facts, targets, low, high, run);
          if (pos >= size) break;
        }
        // 2. iced: everything else, and the first instance of each shape
        const fast = useFast ? fastDecode(bytes, pos, size) : 0;
        const shape = fast === 0 ? -1 : fast >>> 4;
        if (decoderAt !== pos) {
          decoder.position = pos;
          decoder.ip = BigInt(base + pos);
        }
        decoder.decodeOut(instr);
        const code = instr.code;
        let len = instr.length;
        if (len <= 0) {
          len = 1; // never loop in place, whatever the decoder says
          decoder.position = pos + 1;
        }
        decoderAt = pos + len;
        const f = factsOf(t, code);
        let operand = -1;
        let ambiguous = false;
        if ((f & F_REJECT) !== 0) {
          const rule = rules[ruleOf[code]!]!;
          this.#reject(region, bytes, pos, len, base + pos, rule.id, code === Code.INVALID ? invalidReason(size - pos, len) : rule.reason);
        } else {
          const first = bytes[pos]!;
          // Most instructions have no prefix, or just a REX right before the opcode.
          if (LEGACY_PREFIX[first] === 1 || ((first & 0xf0) === 0x40 && PREFIX_OR_REX[bytes[pos + 1] ?? 0] === 1)) {
            const problem = checkPrefixes(bytes, pos, pos + len, (f & F_BRANCH) !== 0);
            if (problem !== null) {
              ambiguous = true;
              this.#reject(region, bytes, pos, len, base + pos, RULE_AMBIGUOUS, problem);
            }
          }
          if ((f & F_OPERAND) !== 0) operand = icedOperand(instr, f);
        }
        if (shape >= 0 && shapeCode[shape] === -1) {
          // The shape's first instance: trust the fast path for it only if iced agrees on everything.
          const agrees = code !== Code.INVALID && (f & F_REJECT) === 0 && !ambiguous && len === (fast & 15) && Object.is(fastOperand(bytes, pos, len, base + pos, f, shape), operand);
          shapeCode[shape] = agrees ? code : -2;
        }
        // 3. bookkeeping (runFast does the same for its instructions)
        boundary[bstart + pos] = 1;
        n++;
        const n0 = counts[code]!;
        if (n0 === 0) seen.push(code, pos);
        counts[code] = n0 + 1;
        if (operand >= 0) {
          if ((f & F_DIRECT) !== 0) {
            direct++;
            targets.push(operand, base + pos, T_BRANCH);
          } else if (operand >= low && operand < high) {
            taken++;
            targets.push(operand, base + pos, (f & F_LEA) !== 0 ? T_LEA : T_CONST);
          }
        }
        run[R_LAST] = pos;
        pos += len;
      }
    } finally {
      decoder.free();
    }
    n += run[R_COUNT]!;
    direct += run[R_DIRECT]!;
    taken += run[R_TAKEN]!;
    const lastPos = run[R_LAST]!;
    region.report.instructions = n;
    region.report.branches.direct = direct;
    region.report.branches.addressTaken = taken;
    this.#summarise(region);
    // A section whose last instruction can fall through runs on into what follows in its segment
    // (padding, the next section); checkTargets skips it when the next section starts right there.
    if (region.start + size < region.space.bytes.length && n > 0 && this.#fallsThrough(region, lastPos)) {
      targets.push(base + size, base + lastPos, T_FALLTHROUGH);
    }
  }

  /** Whether execution can continue after the region's last instruction (not a jmp, ret, ud2, hlt, int3). */
  #fallsThrough(region: Region, lastPos: number): boolean {
    const decoder = new Decoder(64, region.bytes.subarray(lastPos, lastPos + 15), DecoderOptions.None);
    try {
      decoder.ip = BigInt(region.address + lastPos);
      decoder.decodeOut(this.#instr);
      const fc = this.#instr.flowControl;
      const m = this.#instr.mnemonic;
      return !(fc === FlowControl.UnconditionalBranch || fc === FlowControl.IndirectBranch || fc === FlowControl.Return || fc === FlowControl.Exception || m === Mnemonic.Hlt || m === Mnemonic.Int3);
    } finally {
      decoder.free();
    }
  }

  #spaceOf(address: number): Space | undefined {
    let lo = 0;
    let hi = this.spaces.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const s = this.spaces[mid]!;
      if (address < s.address) hi = mid - 1;
      else if (address >= s.address + s.bytes.length) lo = mid + 1;
      else return s;
    }
    return undefined;
  }

  #regionOf(address: number): Region | undefined {
    // this.regions is sorted by address once decoding starts (sortRegions).
    let lo = 0;
    let hi = this.regions.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = this.regions[mid]!;
      if (address < r.address) hi = mid - 1;
      else if (address >= r.address + r.size) lo = mid + 1;
      else return r;
    }
    return undefined;
  }

  /**
   * A branch, a section end or a taken address that lands inside an instruction (or in padding)
   * starts a second decoding there — glibc jumps over `lock` prefixes this way. Decode from it
   * until it falls back onto a boundary of the linear decoding and report what the policy
   * rejects on the way. A branch outside the executable segments can only reach memory that is
   * never executable, so it is counted, not rejected.
   */
  checkTargets(): string[] {
    const errors: string[] = [];
    const t = this.targets;
    // 1. the strongest reason per mid-instruction address
    const mid = new Map<number, { kind: number; from: number }>();
    for (let i = 0; i < t.length; i++) {
      const address = t.address[i]!;
      const kind = t.kind[i]!;
      const space = this.#spaceOf(address);
      if (space === undefined) {
        if (kind === T_BRANCH) {
          const r = this.#regionOf(t.from[i]!);
          if (r !== undefined) r.report.branches.outside++;
        }
        continue;
      }
      if (space.boundary[address - space.address] === 1) continue;
      const known = mid.get(address);
      if (known === undefined || kind < known.kind) mid.set(address, { kind, from: t.from[i]! });
    }
    // 2. a second decoding from each (compiled code has a few dozen; garbage has thousands)
    const { policy } = this.#t;
    const limit = this.#limits.maxSecondDecodings;
    if (mid.size > limit) errors.push(`x86.validate: ${mid.size} branch targets and code addresses point inside instructions, over the limit of ${limit}: this is not compiled code`);
    let done = 0;
    for (const [address, { kind, from }] of mid) {
      if (done++ >= limit) break;
      const space = this.#spaceOf(address)!;
      const home = this.#regionOf(address) ?? this.#regionOf(from) ?? space.regions[0];
      if (home === undefined) continue;
      const b = home.report.branches;
      b.midInstruction++;
      b.midInstructionBy[TARGET_KINDS[kind]!] = (b.midInstructionBy[TARGET_KINDS[kind]!] ?? 0) + 1;
      const via = kind === T_FALLTHROUGH ? `${TARGET_WORDS[kind]} ${this.#regionOf(from)?.name ?? "a section"} at ${hex(address)}` : `${TARGET_WORDS[kind]} at ${hex(from)}${nameSuffix(this.#symbols, from)}`;
      space.decoder ??= new Decoder(64, space.bytes, DecoderOptions.None);
      const decoder = space.decoder;
      let pos = address - space.address;
      decoder.position = pos;
      decoder.ip = BigInt(address);
      for (let i = 0; i < this.#limits.maxHiddenInstructions && pos < space.bytes.length && (i === 0 || space.boundary[pos] !== 1); i++) {
        decoder.decodeOut(this.#instr);
        const code = this.#instr.code;
        const len = Math.max(1, this.#instr.length);
        // An invalid second decoding faults if run (#UD): only a branch makes it a finding.
        if ((factsOf(this.#t, code) & F_REJECT) !== 0 && (code !== Code.INVALID || kind === T_BRANCH)) {
          const rule = policy.rules[ruleIndexOf(code)]!;
          const at = space.address + pos;
          const region = this.#regionOf(at) ?? home;
          if (kind === T_CONST) {
            if (region.report.suspicious.length < this.#limits.maxRejectionsPerSection) {
              const entry = this.#listing(space.bytes, pos, len, at, rule.id, rule.reason, via);
              region.report.suspicious.push(entry);
              this.warnings.push(`x86.validate: ${entry.text} (${rule.id}) at ${entry.address} is hidden inside another instruction and reached if the ${via} is a code address`);
            }
          } else {
            this.#reject(region, space.bytes, pos, len, at, RULE_BRANCH_TARGET, `${rule.id}: ${rule.reason}`, via);
          }
        }
        pos += len;
        decoder.position = pos; // an instruction cut off by the end of the space has length 0..n; go on from pos
      }
    }
    return errors;
  }

  /**
   * Per-section classes (CPUID features) and notable allowed rules from the Code counts, right
   * after the region's decoding; then the counts go back to zero for the next region.
   */
  #summarise(region: Region): void {
    const { policy, features, featureNames } = this.#t;
    const classes: Record<string, number> = {};
    const notable: Record<string, number> = {};
    const counts = this.#counts;
    const seen = region.seen;
    let decoder: Decoder | undefined;
    try {
      for (let i = 0; i < seen.length; i += 2) {
        const code = seen[i]!;
        const count = counts[code]!;
        const rule = policy.rules[ruleIndexOf(code)]!;
        if (rule.decision === "allow" && rule.id !== RULE_DEFAULT) notable[rule.id] = (notable[rule.id] ?? 0) + count;
        if (code === Code.INVALID) continue;
        let names = features[code];
        if (names === undefined) {
          decoder ??= new Decoder(64, region.bytes, DecoderOptions.None);
          decoder.position = seen[i + 1]!;
          decoder.decodeOut(this.#instr);
          names = Array.from(this.#instr.cpuidFeatures(), (f) => featureNames[f] ?? `feature${f}`);
          features[code] = names;
        }
        for (const name of names) classes[name] = (classes[name] ?? 0) + count;
      }
    } finally {
      decoder?.free();
      for (let i = 0; i < seen.length; i += 2) counts[seen[i]!] = 0;
    }
    region.report.classes = sortByCount(classes);
    region.report.notable = sortByCount(notable);
  }

  isBoundary(address: number): boolean {
    const space = this.#spaceOf(address);
    return space !== undefined && space.boundary[address - space.address] === 1;
  }
}

function hexBytes(bytes: Uint8Array, start: number, length: number): string {
  let s = "";
  for (let i = start; i < start + length && i < bytes.length; i++) s += (i === start ? "" : " ") + bytes[i]!.toString(16).padStart(2, "0");
  return s;
}

function nameSuffix(symbols: readonly ElfSymbol[], address: number): string {
  const name = nameAddress(symbols, address);
  return name === undefined ? "" : ` (${name})`;
}

function invalidReason(left: number, len: number): string {
  return len >= left ? "undecodable, or cut off by the end of the section" : "undecodable bytes (unknown opcode, or LOCK on an instruction that cannot take it)";
}

function sortByCount(r: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(r).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)));
}

function rejectionLines(sections: SectionReport[]): string[] {
  const lines: string[] = [];
  for (const s of sections) {
    if (s.rejectedTotal === 0) continue;
    const first = s.rejected[0];
    const what = first === undefined ? "" : ` (first: ${first.text} at ${first.address}, ${first.rule})`;
    lines.push(`x86.validate: ${s.name}: ${s.rejectedTotal} rejected ${s.rejectedTotal === 1 ? "instruction" : "instructions"}${what}`);
  }
  return lines;
}

function report(started: number, file: FileReport, sections: SectionReport[], errors: string[], warnings: string[]): ValidationReport {
  const ms = performance.now() - started;
  const textBytes = sections.reduce((a, s) => a + s.bytes, 0);
  const instructions = sections.reduce((a, s) => a + s.instructions, 0);
  return {
    ok: errors.length === 0,
    file,
    sections,
    errors,
    warnings,
    stats: { textBytes, instructions, ms: Math.round(ms * 1000) / 1000, mbPerS: ms > 0 ? Math.round((textBytes / 1e6 / (ms / 1000)) * 10) / 10 : 0 },
  };
}

/**
 * Validates a static x86-64 Linux program. Never throws for a bad program (the report says why);
 * `ok` is true when every ELF check passed and no instruction is rejected.
 */
export function validateElf(bytes: Uint8Array, opts: ValidateOptions = {}): ValidationReport {
  const started = performance.now();
  const limits: X86ValidateLimits = { ...DEFAULT_X86_VALIDATE_LIMITS, ...opts.limits };
  const errors: string[] = [];
  const path = opts.path === undefined ? {} : { path: opts.path };

  // 1. the file
  let elf;
  try {
    elf = readElf(bytes, limits);
  } catch (e) {
    if (!(e instanceof ElfFormatError)) throw e;
    errors.push(e.message);
    const file: FileReport = { ...path, size: bytes.byteLength, kind: "unreadable", entry: "", checks: [], segments: [], paddingBytes: 0, symbols: 0 };
    return report(started, file, [], errors, []);
  }
  const plan = checkElf(elf, { allowStaticPie: opts.allowStaticPie ?? false, limits });
  for (const c of plan.checks) if (!c.ok) errors.push(`x86.elf: ${c.check}: ${c.detail}`);
  const file: FileReport = {
    ...path,
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
      const b = bytes[p.offset + i]!;
      if (PADDING_BYTE[b] !== 1) {
        errors.push(`x86.validate: byte ${b.toString(16).padStart(2, "0")} at ${hex(p.address + i)} lies in an executable segment but outside every executable section (only 00/90/cc padding may; link with -z separate-code)`);
        break;
      }
    }
  }

  // 3. decode every code region, then re-decode from targets inside instructions
  const v = new Validation(elf.symbols, limits, opts);
  try {
    for (const seg of plan.executable) {
      const code = plan.code.filter((c) => c.address >= seg.vaddr && c.address + c.size <= seg.vaddr + seg.filesz);
      // Safe: checkElf keeps only executable segments whose file range lies inside the file (and
      // within maxCodeBytes in total); the filter keeps the regions inside this one.
      v.addSpace(seg.vaddr, bytes.subarray(seg.offset, seg.offset + seg.filesz), code, (c) => c.address - seg.vaddr);
    }
    for (const region of v.regions) v.decode(region);
    errors.push(...v.checkTargets());
    if (plan.checks.find((c) => c.check === "entry")?.ok === true && !v.isBoundary(elf.header.entry)) {
      errors.push(`x86.validate: the entry point ${hex(elf.header.entry)} is in the middle of an instruction`);
    }
  } finally {
    v.dispose();
  }

  // 4. one line per section with rejected instructions
  const sections = v.regions.map((r) => r.report);
  errors.push(...rejectionLines(sections));
  return report(started, file, sections, errors, v.warnings);
}

/**
 * Validates raw machine code loaded at `address` as one section (no ELF): what the policy tests
 * use to check instruction by instruction.
 */
export function validateCode(code: Uint8Array, address = 0x401000, opts: ValidateOptions = {}): ValidationReport {
  const started = performance.now();
  const limits: X86ValidateLimits = { ...DEFAULT_X86_VALIDATE_LIMITS, ...opts.limits };
  const v = new Validation([], limits, opts);
  let sections: SectionReport[];
  const errors: string[] = [];
  try {
    v.addSpace(address, code, [{ name: ".text", address, offset: 0, size: code.length }], () => 0);
    for (const region of v.regions) v.decode(region);
    errors.push(...v.checkTargets());
    sections = v.regions.map((r) => r.report);
  } finally {
    v.dispose();
  }
  const file: FileReport = { ...(opts.path === undefined ? {} : { path: opts.path }), size: code.length, kind: "raw", entry: hex(address), checks: [], segments: [], paddingBytes: 0, symbols: 0 };
  errors.push(...rejectionLines(sections));
  return report(started, file, sections, errors, v.warnings);
}

/** validateElf for the deploy path: throws X86ValidationError (a BundleError, 400) carrying the report. */
export function assertValidProgram(bytes: Uint8Array, opts: ValidateOptions = {}): ValidationReport {
  const r = validateElf(bytes, opts);
  if (!r.ok) throw new X86ValidationError(r);
  return r;
}

/** The human report printed by `zerocell validate`. */
export function formatReport(r: ValidationReport): string {
  const lines: string[] = [];
  const f = r.file;
  lines.push(`${f.path ?? "program"}: ${r.ok ? "OK" : "REJECTED"} (${f.size} bytes, ${f.kind}${f.entry === "" ? "" : `, entry ${f.entry}`})`);
  if (f.checks.length > 0) {
    lines.push("", "file checks:");
    for (const c of f.checks) lines.push(`  ${c.ok ? "ok  " : "FAIL"} ${c.check.padEnd(20)} ${c.detail}`);
  }
  if (f.segments.length > 0) {
    lines.push("", "segments:");
    for (const s of f.segments) lines.push(`  ${s.type} ${s.flags} ${s.address.padStart(12)}  memsz ${String(s.memsz).padStart(9)}  filesz ${String(s.filesz).padStart(9)}`);
    if (f.paddingBytes > 0) lines.push(`  ${f.paddingBytes} bytes of padding between executable sections`);
  }
  const listing = (tag: string, e: RejectedInstruction) => {
    lines.push(`  ${tag} ${e.address}${e.symbol === undefined ? "" : ` <${e.symbol}>`}  ${e.bytes.padEnd(24)} ${e.text}`);
    lines.push(`         [${e.rule}] ${e.reason}`);
    if (e.via !== undefined) lines.push(`         reached by the ${e.via}`);
  };
  for (const s of r.sections) {
    lines.push("", `section ${s.name} at ${s.address}: ${s.bytes} bytes, ${s.instructions} instructions, ${s.rejectedTotal} rejected`);
    const classes = Object.entries(s.classes).map(([k, n]) => `${k} ${n}`).join(", ");
    if (classes !== "") lines.push(`  classes: ${classes}`);
    const notable = Object.entries(s.notable).map(([k, n]) => `${k} ${n}`).join(", ");
    if (notable !== "") lines.push(`  allowed by rule: ${notable}`);
    const b = s.branches;
    const by = Object.entries(b.midInstructionBy).map(([k, n]) => `${k} ${n}`).join(", ");
    lines.push(`  branches: ${b.direct} direct (${b.outside} outside the code), ${b.addressTaken} code addresses taken, ${b.midInstruction} targets inside an instruction${by === "" ? "" : ` (${by})`}`);
    for (const e of s.rejected) listing("REJECT", e);
    if (s.rejectedTotal > s.rejected.length) lines.push(`  … and ${s.rejectedTotal - s.rejected.length} more`);
    for (const e of s.suspicious) listing("WARN  ", e);
  }
  if (r.errors.length > 0) {
    lines.push("", "errors:");
    for (const e of r.errors) lines.push(`  ${e}`);
  }
  if (r.warnings.length > 0) {
    lines.push("", "warnings:");
    for (const w of r.warnings) lines.push(`  ${w}`);
  }
  const st = r.stats;
  lines.push("", `${st.instructions} instructions in ${st.textBytes} bytes of code, validated in ${st.ms.toFixed(1)} ms (${st.mbPerS} MB/s)`);
  return lines.join("\n") + "\n";
}

/** Instruction starts of a program's code, for counting executed instructions per block. */
export interface InstructionTable {
  /** Guest address of counts[0]. */
  base: number;
  /**
   * counts[i] = instruction starts in [base, base + i) of the linear decoding; length span + 1.
   * A block [a, a + size) holds counts[a + size - base] - counts[a - base] instructions when it
   * starts on a linear-decoding boundary (always, for compiled code).
   */
  counts: Uint32Array;
}

/** Code spans larger than this get no table (the meter then counts blocks only). */
const MAX_TABLE_SPAN = 256 * 1024 * 1024;

/**
 * The instruction-start table of a static program's code regions (the validator's linear
 * decoding: every executable section). Undefined when the file has no code the checks accept.
 */
export function instructionTable(bytes: Uint8Array, limits: ElfLimits = DEFAULT_ELF_LIMITS): InstructionTable | undefined {
  const plan = checkElf(readElf(bytes, limits), { allowStaticPie: true, limits });
  if (plan.code.length === 0) return undefined;
  const base = Math.min(...plan.code.map((r) => r.address));
  const end = Math.max(...plan.code.map((r) => r.address + r.size));
  if (end - base > MAX_TABLE_SPAN) return undefined;
  const starts = new Uint8Array(end - base);
  const instr = new Instruction();
  for (const region of plan.code) {
    const code = bytes.subarray(region.offset, region.offset + region.size);
    const decoder = new Decoder(64, code, DecoderOptions.None);
    try {
      let pos = 0;
      while (pos < code.length) {
        starts[region.address - base + pos] = 1;
        let len = fastDecode(code, pos, code.length) & 15;
        if (len === 0) {
          decoder.position = pos;
          decoder.ip = BigInt(region.address + pos);
          decoder.decodeOut(instr);
          len = instr.length > 0 ? instr.length : 1;
        }
        pos += len;
      }
    } finally {
      decoder.free();
    }
  }
  instr.free();
  const counts = new Uint32Array(starts.length + 1);
  let n = 0;
  for (let i = 0; i < starts.length; i++) {
    counts[i] = n;
    n += starts[i]!;
  }
  counts[starts.length] = n;
  return { base, counts };
}
