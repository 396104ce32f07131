/**
 * The x86-64 instruction policy: one ordered table of rules, first match wins. Each rule names
 * instructions by iced-x86 Mnemonic or Code (so a typo fails the build) and carries the decision
 * and its reason; docs/x86-sandbox.md shows the same table. Instructions no rule names are
 * ordinary user-mode instructions and are allowed — but a catch-all rule first rejects anything
 * iced marks as privileged, I/O or CPL 0-dependent, so a new system instruction is rejected even
 * before it gets a rule of its own.
 *
 * The policy is the first wall. The executor's CPL 3, W^X memory and syscall-only gate are the
 * second; several "allow" decisions below rely on it and say so.
 */
import { createRequire } from "node:module";
import type * as Iced from "iced-x86";

/**
 * iced-x86 (WASM), loaded with require: importing its 600 KB CommonJS glue as an ES module
 * costs ~0.3 s of export scanning at every start of the CLI.
 */
export const iced = createRequire(import.meta.url)("iced-x86") as typeof Iced;
const { Code, Instruction, Mnemonic } = iced;
type Code = Iced.Code;
type Mnemonic = Iced.Mnemonic;
type OpCodeInfo = Iced.OpCodeInfo;

export type X86Decision = "allow" | "reject";

export interface X86PolicyRule {
  /** Stable name, shown in reports and used by tests and docs. */
  id: string;
  decision: X86Decision;
  /** Short human list of what the rule covers. */
  instructions: string;
  /** Why: shown with every rejected instruction. */
  reason: string;
  mnemonics?: readonly Mnemonic[];
  codes?: readonly Code[];
  /** Matches by iced's opcode facts (catch-all rules). */
  match?: (op: OpCodeInfo) => boolean;
}

/** Rules applied by the validator itself rather than per opcode (shown in the table all the same). */
export const RULE_INVALID = "invalid";
export const RULE_AMBIGUOUS = "ambiguous-encoding";
export const RULE_BRANCH_TARGET = "branch-target";
export const RULE_DEFAULT = "user-mode";

const M = Mnemonic;

export const X86_POLICY: readonly X86PolicyRule[] = [
  {
    id: RULE_INVALID,
    decision: "reject",
    instructions: "bytes that do not decode (unknown opcode, LOCK on an instruction that cannot take it, instruction cut off by the end of the section)",
    reason: "undecodable bytes in executable code; LOCK misuse is #UD on hardware and a decoder differential risk",
    codes: [Code.INVALID],
  },
  {
    id: RULE_AMBIGUOUS,
    decision: "reject",
    instructions: "a REX prefix followed by another prefix; both F2 and F3; an operand-size (66) prefix on a branch; ud0, ud1",
    reason: "decoders disagree on the length or meaning (hardware ignores a REX that is not last, QEMU inside Unicorn keeps it; 66 on a near branch is 16-bit on AMD and QEMU, ignored on Intel; ud0 takes a ModRM byte on Intel only): the executor could run other instructions than those validated",
    mnemonics: [M.Ud0, M.Ud1],
  },
  {
    id: RULE_BRANCH_TARGET,
    decision: "reject",
    instructions: "a rejected instruction hidden inside another and reached by a direct branch or by a code address taken with lea [rip+x] / mov imm32 / movabs",
    reason: "a second decoding starting in the middle of an instruction contains an instruction this policy rejects",
  },
  // -- allowed, each for a stated reason ----------------------------------------------------
  {
    id: "syscall",
    decision: "allow",
    instructions: "syscall",
    reason: "the only gate into the system: Unicorn stops at it (UC_HOOK_INSN) and the executor answers from its narrow syscall table",
    mnemonics: [M.Syscall],
  },
  {
    id: "trap",
    decision: "allow",
    instructions: "hlt, ud2, int3",
    reason: "they end the program with a fault: at CPL 3 hlt raises #GP, ud2 #UD, int3 #BP, and the executor reports a crash. musl's a_crash() and glibc's _start/abort() contain hlt, compilers emit ud2 for __builtin_trap. (At CPL 0 Unicorn 2.0.1 ends emulation silently on hlt: the executor never runs guest code at CPL 0.)",
    mnemonics: [M.Hlt, M.Ud2, M.Int3],
  },
  {
    id: "cpuid",
    decision: "allow",
    instructions: "cpuid",
    reason: "answered by the emulator's CPU model, not the host's (the executor can pin the leaves with a CPUID hook); libc picks its string functions by it",
    mnemonics: [M.Cpuid],
  },
  {
    id: "timestamp",
    decision: "allow",
    instructions: "rdtsc, rdtscp, rdpid",
    reason: "glibc reads the TSC; the executor sets CR4.TSD, so at CPL 3 rdtsc/rdtscp raise #GP and are answered from the guest's virtual clock (or end the request): no host time reaches the guest. rdpid reads the emulated TSC_AUX (0), or raises #UD",
    mnemonics: [M.Rdtsc, M.Rdtscp, M.Rdpid],
  },
  {
    id: "xstate",
    decision: "allow",
    instructions: "xgetbv, xsave, xsavec, xsaveopt, xrstor, fxsave, fxrstor (and their 64-bit forms)",
    reason: "save and restore the program's own x87/SSE/AVX registers to guest memory, limited to the user components in XCR0; xgetbv only reads XCR0. glibc's TLS-descriptor and resolver trampolines use them, after checking CPUID (a form the emulator lacks, like xsavec, raises #UD). The supervisor forms (xsaves, xrstors) and xsetbv are rejected",
    mnemonics: [M.Xgetbv, M.Xsave, M.Xsave64, M.Xsavec, M.Xsavec64, M.Xsaveopt, M.Xsaveopt64, M.Xrstor, M.Xrstor64, M.Fxsave, M.Fxsave64, M.Fxrstor, M.Fxrstor64],
  },
  {
    id: "tsx",
    decision: "allow",
    instructions: "xbegin, xend, xabort, xtest",
    reason: "no privilege involved, and glibc's lock elision (in every static glibc program, busybox included) contains them behind a CPUID.RTM check; the emulator has no RTM, so they are never chosen, and if forced they raise #UD (a crash). Hardware TSX side channels need hardware TSX, which an emulated guest never reaches",
    mnemonics: [M.Xbegin, M.Xend, M.Xabort, M.Xtest],
  },
  {
    id: "shadow-stack-read",
    decision: "allow",
    instructions: "rdsspd, rdsspq, incsspd, incsspq",
    reason: "CET shadow stacks are never enabled in the sandbox: rdssp is then a NOP, incssp raises #UD on hardware and is a fence to QEMU — harmless either way. glibc's setjmp/longjmp contain them behind a check",
    mnemonics: [M.Rdsspd, M.Rdsspq, M.Incsspd, M.Incsspq],
  },
  {
    id: "random",
    decision: "allow",
    instructions: "rdrand, rdseed",
    reason: "user-mode random numbers, produced by the emulator (QEMU draws them from the host's random source) or #UD when its CPU model lacks them; no host state leaks, and values stay fresh after a snapshot restore",
    mnemonics: [M.Rdrand, M.Rdseed],
  },
  // -- rejected: privileged and system instructions ---------------------------------------------
  {
    id: "control-debug-registers",
    decision: "reject",
    instructions: "mov to/from CR0–CR15, DR0–DR7 (and test registers), clts, lmsw, smsw",
    reason: "change or reveal paging, protection and debug state: CPL 0 only (smsw also runs at CPL 3 without UMIP and reveals CR0)",
    codes: [Code.Mov_r32_cr, Code.Mov_r64_cr, Code.Mov_cr_r32, Code.Mov_cr_r64, Code.Mov_r32_dr, Code.Mov_r64_dr, Code.Mov_dr_r32, Code.Mov_dr_r64, Code.Mov_r32_tr, Code.Mov_tr_r32],
    mnemonics: [M.Clts, M.Lmsw, M.Smsw],
  },
  {
    id: "msr-counters",
    decision: "reject",
    instructions: "rdmsr, wrmsr, wrmsrns, rdmsrlist, wrmsrlist, rdpmc, rdpru, rdudbg, wrudbg",
    reason: "model-specific registers and performance counters: CPL 0 (rdpmc with CR4.PCE, rdpru on AMD at CPL 3) — host state and a timing side channel, no use in a program",
    mnemonics: [M.Rdmsr, M.Wrmsr, M.Wrmsrns, M.Rdmsrlist, M.Wrmsrlist, M.Rdpmc, M.Rdpru, M.Rdudbg, M.Wrudbg],
  },
  {
    id: "descriptor-tables",
    decision: "reject",
    instructions: "lgdt, lidt, lldt, ltr, lkgs, sgdt, sidt, sldt, str, lar, lsl, verr, verw",
    reason: "load or reveal the GDT, IDT, LDT and task register: the loads are CPL 0, the stores run at CPL 3 unless CR4.UMIP and reveal the sandbox's layout, lar/lsl/verr/verw probe descriptors. No Linux program uses them",
    mnemonics: [M.Lgdt, M.Lidt, M.Lldt, M.Ltr, M.Lkgs, M.Sgdt, M.Sidt, M.Sldt, M.Str, M.Lar, M.Lsl, M.Verr, M.Verw],
  },
  {
    id: "port-io",
    decision: "reject",
    instructions: "in, out, ins, outs",
    reason: "I/O ports: the sandbox has no devices, and at IOPL 0 they fault at CPL 3 anyway",
    mnemonics: [M.In, M.Out, M.Insb, M.Insw, M.Insd, M.Outsb, M.Outsw, M.Outsd],
  },
  {
    id: "interrupt-flag",
    decision: "reject",
    instructions: "cli, sti, clac, stac, clui, stui, testui, senduipi, uiret",
    reason: "interrupt, SMAP and user-interrupt state: CPL 0 or IOPL, and user interrupts are not emulated",
    mnemonics: [M.Cli, M.Sti, M.Clac, M.Stac, M.Clui, M.Stui, M.Testui, M.Senduipi, M.Uiret],
  },
  {
    id: "interrupt-gates",
    decision: "reject",
    instructions: "int n, int1, into, iret/iretd/iretq, sysenter, sysexit, sysret, swapgs",
    reason: "enter or leave the kernel through another gate than syscall: int n goes through the IDT (int 0x80 is the 32-bit ABI), int1 is a debug trap, iret/sysret/sysexit change privilege level, swapgs switches to the kernel's GS base",
    mnemonics: [M.Int, M.Int1, M.Into, M.Iret, M.Iretd, M.Iretq, M.Sysenter, M.Sysexit, M.Sysexitq, M.Sysret, M.Sysretq, M.Swapgs],
  },
  {
    id: "far-transfers",
    decision: "reject",
    instructions: "far jmp, far call, retf",
    reason: "load CS from a selector: could switch to 32-bit compatibility mode (code decoded differently from what was validated) or another privilege level",
    codes: [Code.Jmp_m1616, Code.Jmp_m1632, Code.Jmp_m1664, Code.Call_m1616, Code.Call_m1632, Code.Call_m1664, Code.Jmp_ptr1616, Code.Jmp_ptr1632, Code.Call_ptr1616, Code.Call_ptr1632],
    mnemonics: [M.Retf],
  },
  {
    id: "segment-loads",
    decision: "reject",
    instructions: "mov to a segment register, pop fs/gs, lfs, lgs, lss",
    reason: "load a segment register: the executor owns the segments (the FS base is set through arch_prctl only)",
    codes: [Code.Mov_Sreg_rm16, Code.Mov_Sreg_r32m16, Code.Mov_Sreg_r64m16, Code.Popw_FS, Code.Popd_FS, Code.Popq_FS, Code.Popw_GS, Code.Popd_GS, Code.Popq_GS, Code.Popw_SS, Code.Popd_SS, Code.Popw_DS, Code.Popd_DS, Code.Popw_ES, Code.Popd_ES],
    mnemonics: [M.Lfs, M.Lgs, M.Lss],
  },
  {
    id: "fs-gs-base",
    decision: "reject",
    instructions: "rdfsbase, rdgsbase, wrfsbase, wrgsbase",
    reason: "set the FS/GS base behind the executor's back; the sandbox keeps CR4.FSGSBASE clear (#UD) and sets FS through arch_prctl(ARCH_SET_FS)",
    mnemonics: [M.Rdfsbase, M.Rdgsbase, M.Wrfsbase, M.Wrgsbase],
  },
  {
    id: "cache-tlb",
    decision: "reject",
    instructions: "invd, wbinvd, wbnoinvd, invlpg, invlpga, invlpgb, tlbsync, invpcid",
    reason: "cache and TLB control: CPL 0",
    mnemonics: [M.Invd, M.Wbinvd, M.Wbnoinvd, M.Invlpg, M.Invlpga, M.Invlpgb, M.Tlbsync, M.Invpcid],
  },
  {
    id: "wait",
    decision: "reject",
    instructions: "monitor, mwait, monitorx, mwaitx, umonitor, umwait, tpause",
    reason: "stall the virtual CPU until a memory write or a deadline: CPL 0 on Linux or not emulated; a program that waits should block in a system call",
    mnemonics: [M.Monitor, M.Mwait, M.Monitorx, M.Mwaitx, M.Umonitor, M.Umwait, M.Tpause],
  },
  {
    id: "virtualization",
    decision: "reject",
    instructions: "VMX (vmcall, vmlaunch, vmxon, vmread, invept, vmfunc, …), SVM (vmrun, vmmcall, stgi, skinit, …), SMX getsec, SGX encls/enclu/enclv, TDX tdcall/seamcall, SEV-SNP pvalidate/rmpupdate/…",
    reason: "hypervisor, enclave and trusted-execution interfaces: CPL 0 or talk to firmware; nothing a sandboxed program may reach",
    mnemonics: [
      M.Vmcall, M.Vmlaunch, M.Vmresume, M.Vmxoff, M.Vmxon, M.Vmptrld, M.Vmptrst, M.Vmclear, M.Vmread, M.Vmwrite, M.Invept, M.Invvpid, M.Vmfunc,
      M.Vmrun, M.Vmload, M.Vmsave, M.Vmmcall, M.Stgi, M.Clgi, M.Skinit, M.Getsec, M.Getsecq, M.Encls, M.Enclu, M.Enclv,
      M.Tdcall, M.Seamret, M.Seamops, M.Seamcall, M.Rmpadjust, M.Rmpupdate, M.Psmash, M.Pvalidate, M.Rmpquery,
    ],
  },
  {
    id: "supervisor-state",
    decision: "reject",
    instructions: "xsetbv, xsaves, xrstors, rsm, pconfig, enqcmds, loadiwkey, hreset, eretu, erets, pbndkb",
    reason: "write XCR0, supervisor register state or platform configuration: CPL 0",
    mnemonics: [M.Xsetbv, M.Xsaves, M.Xsaves64, M.Xrstors, M.Xrstors64, M.Rsm, M.Pconfig, M.Enqcmds, M.Loadiwkey, M.Hreset, M.Eretu, M.Erets, M.Pbndkb],
  },
  {
    id: "shadow-stack-write",
    decision: "reject",
    instructions: "setssbsy, clrssbsy, wrss, wruss, rstorssp, saveprevssp",
    reason: "write shadow-stack state (CET is off in the sandbox; setssbsy/wruss are CPL 0)",
    mnemonics: [M.Setssbsy, M.Clrssbsy, M.Wrssd, M.Wrssq, M.Wrussd, M.Wrussq, M.Rstorssp, M.Saveprevssp],
  },
  {
    id: "protection-keys",
    decision: "reject",
    instructions: "rdpkru, wrpkru",
    reason: "memory protection keys are not enabled (#UD): the sandbox's page permissions are its only protection domain",
    mnemonics: [M.Rdpkru, M.Wrpkru],
  },
  {
    id: "devices",
    decision: "reject",
    instructions: "enqcmd, ptwrite, Key Locker (encodekey128/256, aes*kl)",
    reason: "talk to accelerator, processor-trace or key hardware the sandbox does not have",
    mnemonics: [
      M.Enqcmd, M.Ptwrite, M.Encodekey128, M.Encodekey256, M.Aesenc128kl, M.Aesdec128kl, M.Aesenc256kl, M.Aesdec256kl,
      M.Aesencwide128kl, M.Aesdecwide128kl, M.Aesencwide256kl, M.Aesdecwide256kl,
    ],
  },
  {
    id: "vendor-specific",
    decision: "reject",
    instructions: "VIA PadLock (xstore, xcrypt*, xsha*, montmul, ccs_*), AMD LWP (llwpcb, slwpcb, lwpins, lwpval), mcommit, and iced's undocumented/Knights opcodes (undoc, delay, spflt, clevict0/1)",
    reason: "vendor-specific or undocumented: no compiler emits them for a Linux program, the emulator does not implement them, and their effects are not specified well enough to allow",
    mnemonics: [
      M.Montmul, M.Xsha1, M.Xsha256, M.Xsha512, M.Xsha512_alt, M.Xstore, M.Xstore_alt, M.Xcryptecb, M.Xcryptcbc, M.Xcryptctr, M.Xcryptcfb, M.Xcryptofb,
      M.Ccs_hash, M.Ccs_encrypt, M.Llwpcb, M.Slwpcb, M.Lwpins, M.Lwpval, M.Mcommit, M.Undoc, M.Delay, M.Spflt, M.Clevict0, M.Clevict1,
    ],
  },
  {
    id: "privileged",
    decision: "reject",
    instructions: "anything else iced-x86 marks as privileged, CPL 0-only, CPL 0-dependent or I/O",
    reason: "a system instruction without a rule of its own: rejected until someone decides otherwise",
    match: (op) => op.isPrivileged || op.mustBeCpl0 || op.mayRequireCpl0 || op.isInputOutput,
  },
  {
    id: RULE_DEFAULT,
    decision: "allow",
    instructions: "every other instruction iced-x86 decodes in 64-bit mode: general purpose, x87, MMX, SSE–AVX-512, BMI, AES, SHA, fences, prefetch, pause, endbr64, …",
    reason: "run at CPL 3 without special control-register bits and touch only registers and guest memory; one the emulator does not implement raises #UD (a crash)",
    match: () => true,
  },
];

export interface CompiledX86Policy {
  rules: readonly X86PolicyRule[];
  /** Number of iced Codes (table length). */
  codeCount: number;
  /** Rule index per iced Code; UNKNOWN until ruleIndexOf has looked at the Code. */
  ruleOf: Uint8Array;
  /** iced Mnemonic per Code (valid once ruleOf is known). */
  mnemonicOf: Uint16Array;
  /** OpCodeOperandKind of operand 0 per Code, -1 without operands (valid once ruleOf is known). */
  op0KindOf: Int16Array;
}

const UNKNOWN = 255;
let compiled: (CompiledX86Policy & { byMnemonic: Map<number, number>; byCode: Map<number, number> }) | undefined;

let codeCount = 0;

/** Number of iced-x86 Code values (the largest + 1). */
export function countCodes(): number {
  if (codeCount === 0) {
    // Code has ~10 000 keys (names and reverse mappings): scan it once.
    let max = 0;
    for (const v of Object.values(Code)) if (typeof v === "number" && v > max) max = v;
    codeCount = max + 1;
  }
  return codeCount;
}

let scratch: Iced.Instruction | undefined;

/**
 * iced's opcode facts for a Code. Through an Instruction whose code is set: iced 1.21's
 * CodeExt.opCode takes ~2.5 ms a call in WASM, Instruction.opCode ~5 µs.
 */
export function opCodeInfo(code: number): OpCodeInfo {
  scratch ??= new Instruction();
  scratch.code = code;
  return scratch.opCode;
}

/**
 * The policy as tables indexed by iced Code. Each Code is decided the first time it is looked
 * up (a program uses a few hundred of iced's ~4900 Codes), then it is one array read.
 */
export function compileX86Policy(): CompiledX86Policy {
  if (compiled !== undefined) return compiled;
  const rules = X86_POLICY;
  if (rules.length >= UNKNOWN) throw new Error("x86.policy: too many rules for a Uint8Array table");
  const codeCount = countCodes();
  const byMnemonic = new Map<number, number>();
  const byCode = new Map<number, number>();
  rules.forEach((rule, i) => {
    for (const m of rule.mnemonics ?? []) if (!byMnemonic.has(m)) byMnemonic.set(m, i);
    for (const c of rule.codes ?? []) if (!byCode.has(c)) byCode.set(c, i);
  });
  compiled = {
    rules,
    codeCount,
    ruleOf: new Uint8Array(codeCount).fill(UNKNOWN),
    mnemonicOf: new Uint16Array(codeCount),
    op0KindOf: new Int16Array(codeCount).fill(-1),
    byMnemonic,
    byCode,
  };
  return compiled;
}

/** The index in X86_POLICY of the rule deciding `code` (first match in table order). */
export function ruleIndexOf(code: number): number {
  const p = compileX86Policy() as NonNullable<typeof compiled>;
  const known = p.ruleOf[code];
  if (known === undefined) throw new RangeError(`x86.policy: ${code} is not an iced Code`);
  if (known !== UNKNOWN) return known;
  let index = p.byCode.get(code);
  if (code !== Code.INVALID) {
    const op = opCodeInfo(code);
    try {
      p.mnemonicOf[code] = op.mnemonic;
      p.op0KindOf[code] = op.opCount > 0 ? op.op0Kind : -1;
      // Explicit code/mnemonic rules come before the catch-alls in the table: the lowest index wins.
      index ??= p.byMnemonic.get(op.mnemonic);
      for (let i = 0; i < (index ?? p.rules.length); i++) {
        const match = p.rules[i]!.match;
        if (match !== undefined && match(op)) {
          index = i;
          break;
        }
      }
    } finally {
      op.free();
    }
  }
  const i = index ?? p.rules.length - 1;
  p.ruleOf[code] = i;
  return i;
}

/** The rule deciding an iced Code. */
export function ruleForCode(code: Code): X86PolicyRule {
  return X86_POLICY[ruleIndexOf(code)]!;
}

export function ruleById(id: string): X86PolicyRule {
  const rule = X86_POLICY.find((r) => r.id === id);
  if (rule === undefined) throw new Error(`x86.policy: no rule ${id}`);
  return rule;
}
