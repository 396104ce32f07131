/**
 * x86 engine: a static x86-64 Linux program (musl-gcc -static, Debian's busybox-static, …) run
 * in Unicorn at CPL 3 behind the narrow system call interface of syscalls/, serving HTTP as
 * CGI/1.1 (RFC 3875): the meta-variables are its environment, the body its stdin, its stdout
 * the CGI response.
 *
 * Life of an instance:
 *   instantiate  loads the ELF (W^X pages), builds the entry stack with a neutral environment,
 *                drops to CPL 3 at the entry point. Nothing of the program has run yet.
 *   init         (lazily, at the first handle/snapshot/export) runs the program from its entry
 *                until it calls the ready trap (include/zerocell.h): the snapshot is taken there
 *                and every request resumes from it, with the request's environment delivered
 *                through the `environ` pointer the trap passed. A program that never calls it
 *                (it exits or fails during this probe run) is snapshotted at its entry point,
 *                and every request starts there with the request's environment on its stack.
 *   handle       one request; the program answers by exiting (or by calling the trap again,
 *                which parks it for the next request of a daemon-mode instance).
 *   reset        restores CPU context, writable memory, mappings, /tmp and descriptors in place.
 *
 * stdio mode (`[x86] io = "stdio"`, a Unix tool such as busybox grep): no init probe and no
 * CGI. The entry snapshot holds argv = [program, ...args] and the app's environment; every
 * request restores it and runs the program from its entry with the request body on stdin, and
 * its stdout is the response body as is (STDIO_HEADERS): exit 0 → 200, another exit code → 500,
 * both with `x-zerocell-exit-code` (and, for a non-zero one, the head of stderr in
 * `x-zerocell-stderr`, percent-encoded). The gateway drops x-zerocell-* headers before a
 * response leaves, so only the platform (jobs) reads them. Faults, signals, the budget, the
 * output limit and the wall clock end a stdio run as they end a CGI one.
 *
 * Statuses: exit 0 (or the trap) → the parsed CGI response; malformed CGI output → 502; a
 * non-zero exit, a fault (segfault, #GP from a privileged instruction, …) or a signal → 500;
 * the per-request meter budget → 500; the wall-clock limit → 504. A response past
 * spec.maxResponseBytes (plus 64 KiB of CGI headers) stops the guest at the write that passes it
 * and throws SandboxError("response_too_large", 502): stdout is never buffered beyond the limit.
 * Details go to the log (stderr), not to the client.
 *
 * Metering: `lastUsage` after each handle() holds the meter count (translated blocks executed by
 * default, or exact instructions with meter: "instruction"), the guest code bytes executed, the
 * system calls and the emulator's wall time.
 */
import { createHash } from "node:crypto";
import type { BundleImage, Manifest } from "../../bundle/index.js";
import { SandboxError } from "../../errors.js";
import { DEFAULT_MAX_RESPONSE_BYTES, type Engine, type EngineInstance, type EngineRequest, type EngineResponse, type EngineSpec, type PortableSnapshot } from "../engine.js";
import { Machine, type MachineSnapshot, type RunResult, type StopReason } from "./machine.js";
import { GuestFs, LinuxSyscalls, newIo, type FsSnapshot } from "./syscalls/index.js";
import { PROT_WRITE, X86_REG, type MeterKind } from "./unicorn.js";
import { assertValidProgram } from "./validate.js";
import { ENGINE_REVISION, loadableProgram, programEntry, x86EngineBuild, x86Section, type X86Io } from "./checks.js";

export { x86Section, type X86ManifestSection } from "./checks.js";

export { SYS_ZEROCELL_READY } from "./syscalls/index.js";
export type { MeterKind } from "./unicorn.js";

const APP_ROOT = "/app";

export interface X86EngineOptions {
  /** What the meter counts (default "block": translated blocks, ~1.4–2.4x cheaper than "instruction"). */
  meter?: MeterKind;
  /** Meter events per request (and for the init run); default 20e9 blocks / 100e9 instructions. */
  budget?: bigint;
  /** Guest stack (default 8 MiB). */
  stackBytes?: number;
  /** Log lines (default: process.stderr). */
  log?: (line: string) => void;
}


// ---------------------------------------------------------------------------------------------
// CGI

/** RFC 3875 meta-variables for a request, as "NAME=value" strings. */
export function cgiEnvironment(req: EngineRequest, scriptFilename: string): string[] {
  const q = req.url.indexOf("?");
  const rawPath = q === -1 ? req.url : req.url.slice(0, q);
  const query = q === -1 ? "" : req.url.slice(q + 1);
  const script = req.scriptName;
  const rest = script !== "" && rawPath.startsWith(script) ? rawPath.slice(script.length) : rawPath;
  let pathInfo = rest;
  try {
    const decoded = decodeURIComponent(rest);
    if (!decoded.includes("\0")) pathInfo = decoded;
  } catch {
    // malformed %-escape: keep it as sent
  }
  const vars = new Map<string, string>();
  const set = (k: string, v: string) => {
    if (!v.includes("\0")) vars.set(k, v);
  };
  set("GATEWAY_INTERFACE", "CGI/1.1");
  set("SERVER_SOFTWARE", "zerocell");
  set("SERVER_PROTOCOL", "HTTP/1.1");
  set("SERVER_NAME", req.serverName);
  set("SERVER_PORT", String(req.serverPort));
  set("REQUEST_METHOD", req.method);
  set("REQUEST_URI", req.url);
  set("REQUEST_SCHEME", req.https ? "https" : "http");
  if (req.https) set("HTTPS", "on");
  set("SCRIPT_NAME", script);
  set("SCRIPT_FILENAME", scriptFilename);
  set("DOCUMENT_ROOT", APP_ROOT);
  set("PATH_INFO", pathInfo);
  set("QUERY_STRING", query);
  set("REMOTE_ADDR", req.remoteAddr);
  set("REMOTE_HOST", req.remoteAddr);
  set("REMOTE_PORT", String(req.remotePort));
  const joined = new Map<string, string>();
  for (const [rawName, value] of req.headers) {
    const name = rawName.toLowerCase();
    // Names with "_" would alias "-" ones; "proxy" would become HTTP_PROXY (httpoxy).
    if (!/^[a-z0-9-]+$/.test(name) || name === "proxy") continue;
    const prev = joined.get(name);
    joined.set(name, prev === undefined ? value : `${prev}${name === "cookie" ? "; " : ", "}${value}`);
  }
  for (const [name, value] of joined) {
    if (name === "content-type") set("CONTENT_TYPE", value);
    else if (name === "content-length") continue;
    else set(`HTTP_${name.toUpperCase().replace(/-/g, "_")}`, value);
  }
  if (req.body.byteLength > 0 || joined.has("content-length")) set("CONTENT_LENGTH", String(req.body.byteLength));
  const auth = joined.get("authorization");
  if (auth !== undefined) {
    const scheme = auth.split(" ")[0] ?? "";
    if (/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(scheme)) set("AUTH_TYPE", scheme);
  }
  for (const [k, v] of Object.entries(req.params)) {
    const name = k.toUpperCase().replace(/[^A-Z0-9]/g, "_");
    set(`ZEROCELL_PARAM_${name}`, v);
  }
  return [...vars].map(([k, v]) => `${k}=${v}`);
}

export type CgiResult = { ok: true; response: EngineResponse } | { ok: false; error: string };

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const DROPPED = new Set(["status", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "trailer", "te", "proxy-connection"]);
/** Longest CGI header block; stdout may exceed the response body limit by this much. */
const MAX_HEADER_BYTES = 64 * 1024;
const MAX_HEADERS = 100;

/** Parses a CGI response (RFC 3875 §6): header lines (LF or CRLF), a blank line, the body. */
export function parseCgiResponse(out: Buffer): CgiResult {
  const headers: Array<[string, string]> = [];
  let status: number | undefined;
  let location: string | undefined;
  let contentType = false;
  let pos = 0;
  for (;;) {
    const nl = out.indexOf(10, pos);
    if (nl === -1 || nl > MAX_HEADER_BYTES) {
      return { ok: false, error: out.length === 0 ? "no output" : nl === -1 ? "no blank line after the CGI headers" : `CGI headers longer than ${MAX_HEADER_BYTES} bytes` };
    }
    const end = nl > pos && out[nl - 1] === 13 ? nl - 1 : nl;
    const line = out.toString("latin1", pos, end);
    pos = nl + 1;
    if (line === "") break;
    if (headers.length + (status !== undefined ? 1 : 0) >= MAX_HEADERS) return { ok: false, error: `more than ${MAX_HEADERS} CGI header lines` };
    const colon = line.indexOf(":");
    if (colon <= 0) return { ok: false, error: `malformed CGI header line ${JSON.stringify(line.slice(0, 80))}` };
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    if (!TOKEN.test(name)) return { ok: false, error: `invalid CGI header name ${JSON.stringify(line.slice(0, colon).slice(0, 80))}` };
    if (/[\u0000-\u0008\u000a-\u001f\u007f]/.test(value)) return { ok: false, error: `control character in CGI header ${name}` };
    if (name === "status") {
      const m = /^([1-5]\d\d)(?:[ \t]+.*)?$/.exec(value);
      const code = m === null ? NaN : Number(m[1]);
      if (!(code >= 200 && code <= 599)) return { ok: false, error: `invalid Status ${JSON.stringify(value.slice(0, 40))}` };
      if (status !== undefined) return { ok: false, error: "more than one Status header" };
      status = code;
      continue;
    }
    if (name === "location") {
      if (location !== undefined) return { ok: false, error: "more than one Location header" };
      location = value;
    }
    if (name === "content-type") contentType = true;
    if (DROPPED.has(name)) continue;
    headers.push([name, value]);
  }
  if (status === undefined && location === undefined && !contentType) {
    return { ok: false, error: "the CGI response has none of Content-Type, Location, Status" };
  }
  const code = status ?? (location !== undefined ? 302 : 200);
  return { ok: true, response: { status: code, headers, body: out.subarray(pos) } };
}

// ---------------------------------------------------------------------------------------------
// The process: machine + file tree + system calls

interface ProcessOptions {
  memoryBytes: number;
  stackBytes: number;
  meter: MeterKind;
  tmpQuota: number;
  log: (line: string) => void;
}

type Phase = "idle" | "init" | "request";

interface Snapshot {
  machine: MachineSnapshot;
  fs: FsSnapshot;
  mode: "ready" | "entry";
  environPtr: number;
}

export interface X86Usage {
  /** Meter events (translated blocks executed, or instructions with meter "instruction"). */
  events: bigint;
  /** Guest instructions executed (counted per block from the program's instruction-start table). */
  instructions: bigint;
  meter: MeterKind;
  /** Guest code bytes executed (sum of block or instruction sizes). */
  codeBytes: bigint;
  syscalls: number;
  /** Wall time inside the emulator, ms. */
  ms: number;
}

const enc = new TextEncoder();

/** One guest process; the engine instance and runProgram() are built on it. */
export class X86Process {
  readonly machine: Machine;
  readonly fs: GuestFs;
  readonly sys: LinuxSyscalls;
  readonly argv0: string;
  readonly #log: (line: string) => void;
  phase: Phase = "idle";
  /** The request's environment, delivered at the ready trap. */
  #pendingEnv: string[] | undefined;
  /** Whether the current run already got its environment through the trap. */
  #delivered = false;
  environPtr = 0;
  #warnedEnviron = false;

  constructor(program: Uint8Array, image: BundleImage, programPath: string, opts: ProcessOptions) {
    this.machine = new Machine(program, { memoryBytes: opts.memoryBytes, stackBytes: opts.stackBytes, meter: opts.meter });
    try {
      this.fs = new GuestFs(image, opts.tmpQuota);
      this.#log = opts.log;
      this.argv0 = `${APP_ROOT}/${programPath}`;
      this.sys = new LinuxSyscalls(this.machine, this.fs, {
        ready: (environPtr) => this.#ready(environPtr),
        log: (m) => this.#log(`x86: ${m}`),
      });
      this.machine.syscallHandler = (nr, args) => this.sys.handle(nr, args);
    } catch (e) {
      this.machine.dispose();
      throw e;
    }
  }

  /** Builds the entry stack and drops to CPL 3 at the entry point (nothing of the program runs). */
  enter(argv: readonly string[], env: readonly string[]): void {
    const rsp = this.machine.buildStack(argv.map((a) => enc.encode(a)), env.map((e) => enc.encode(e)), enc.encode(this.argv0));
    this.machine.enterUserMode(this.machine.elf.entry, rsp);
  }

  /** For a run that starts at the entry point again: a fresh stack with this environment. */
  restartAtEntry(argv: readonly string[], env: readonly string[]): void {
    const rsp = this.machine.buildStack(argv.map((a) => enc.encode(a)), env.map((e) => enc.encode(e)), enc.encode(this.argv0));
    this.machine.uc.regWriteBatch([X86_REG.RSP, X86_REG.RIP], [BigInt(rsp), BigInt(this.machine.elf.entry)]);
  }

  #ready(environPtr: number): bigint | undefined {
    if (this.phase === "request" && !this.#delivered) {
      // Entry-mode request (or the first trap of one): hand over the environment and go on.
      this.environPtr = environPtr;
      this.deliverEnvironment();
      return 0n;
    }
    this.environPtr = environPtr;
    this.machine.stop({ kind: "ready" });
    return undefined;
  }

  /** Writes the pending environment into the request block and points *environPtr at it. */
  deliverEnvironment(): void {
    this.#delivered = true;
    const env = this.#pendingEnv ?? [];
    const ptr = this.environPtr;
    const slot = ptr === 0 ? undefined : this.machine.view(ptr, 8, PROT_WRITE);
    if (slot === undefined) {
      if (!this.#warnedEnviron) {
        this.#warnedEnviron = true;
        this.#log("x86: the ready trap gave no writable environ pointer; the request's environment is not delivered");
      }
      return;
    }
    const r = this.machine.request;
    const strings = env.map((e) => enc.encode(e));
    const arrayBytes = (strings.length + 1) * 8;
    let total = arrayBytes;
    for (const s of strings) total += s.length + 1;
    if (total > r.size) throw new Error(`x86: the request environment (${total} bytes) exceeds ${r.size} bytes`);
    const view = this.machine.view(r.base, total, PROT_WRITE)!;
    const dv = new DataView(view.buffer, view.byteOffset, arrayBytes);
    let at = arrayBytes;
    strings.forEach((s, i) => {
      view.set(s, at);
      view[at + s.length] = 0;
      dv.setBigUint64(i * 8, BigInt(r.base + at), true);
      at += s.length + 1;
    });
    dv.setBigUint64(strings.length * 8, 0n, true);
    new DataView(slot.buffer, slot.byteOffset, 8).setBigUint64(0, BigInt(r.base), true);
  }

  /**
   * Runs until the guest stops, with this stdin and output limit. `env` is what a ready trap
   * delivers; with `deliverNow` it is delivered before the first instruction (a program parked
   * in the trap), otherwise at the first trap of the run.
   */
  run(phase: Phase, stdin: Uint8Array, outputLimit: number, env: string[] | undefined, deliverNow: boolean, budget: bigint, timeoutMs: number): { result: RunResult; stdout: Buffer; stderr: Buffer; syscalls: number } {
    this.phase = phase;
    this.#pendingEnv = env;
    this.#delivered = false;
    this.sys.io = newIo(stdin, outputLimit);
    this.sys.count = 0;
    this.sys.clock.startRequest();
    try {
      if (deliverNow) this.deliverEnvironment();
      const result = this.machine.run({ budget, timeoutMs });
      return { result, stdout: this.sys.io.stdout.bytes(), stderr: this.sys.io.stderr.bytes(), syscalls: this.sys.count };
    } finally {
      this.phase = "idle";
      this.#pendingEnv = undefined;
    }
  }

  dispose(): void {
    this.machine.dispose();
  }
}

export function describeStop(s: StopReason): string {
  switch (s.kind) {
    case "exit": return `exited with status ${s.code}`;
    case "ready": return "called zerocell_ready";
    case "signal": return `killed: ${s.message}`;
    case "fault": return `fault: ${s.message}`;
    case "budget": return "stopped: the per-request CPU budget (meter events) ran out";
    case "timeout": return "stopped: the wall-clock limit was reached";
    case "limit": return `stopped: ${s.message}`;
    case "error": return `host error: ${s.message}`;
  }
}

// ---------------------------------------------------------------------------------------------
// The engine

interface X86Prepared {
  spec: EngineSpec;
  program: Buffer;
  programPath: string;
  programHash: string;
  options: Required<Omit<X86EngineOptions, "log">> & { log: (line: string) => void };
}

const TEXT: Array<[string, string]> = [["content-type", "text/plain; charset=utf-8"]];

/** Headers of a stdio-mode response (read by src/platform/jobs.ts; dropped by the gateway). */
export const STDIO_HEADERS = {
  /** The program's exit code, 0–255. */
  exitCode: "x-zerocell-exit-code",
  /** The first STDERR_HEAD_BYTES of stderr after a non-zero exit, percent-encoded UTF-8. */
  stderr: "x-zerocell-stderr",
  /** Why a run that did not exit stopped: fault, signal, budget, timeout. */
  stop: "x-zerocell-stop",
} as const;
const STDERR_HEAD_BYTES = 256;

function errorResponse(status: number, text: string): EngineResponse {
  return { status, headers: [...TEXT], body: Buffer.from(text + "\n") };
}

class X86Instance implements EngineInstance {
  readonly #p: X86Prepared;
  readonly #proc: X86Process;
  readonly #entry: Snapshot;
  #mode: "unknown" | "ready" | "entry" = "unknown";
  #base: Snapshot | undefined;
  /** The CPU is stopped where a request can start: at the trap (ready mode) or at the entry (entry mode). */
  #parked = true;
  /** Usage of the last handle(). */
  lastUsage: X86Usage | undefined;
  readonly #label: string;
  readonly #io: X86Io;

  constructor(p: X86Prepared) {
    this.#p = p;
    this.#label = `x86 ${p.spec.deploymentId}`;
    const m = p.spec.manifest;
    this.#proc = new X86Process(p.program, p.spec.image, p.programPath, {
      memoryBytes: m.limits.memoryMb * 1024 * 1024,
      stackBytes: p.options.stackBytes,
      meter: p.options.meter,
      tmpQuota: m.limits.memoryMb * 1024 * 1024,
      log: p.options.log,
    });
    const sec = x86Section(m);
    this.#io = sec?.io ?? "cgi";
    try {
      // The app's variables are the whole entry environment: init code (before the ready trap) sees them.
      // A stdio program's arguments are part of its entry state (the manifest fixes them).
      this.#proc.enter([this.#proc.argv0, ...(this.#io === "stdio" ? (sec?.args ?? []) : [])], this.#appEnv());
      this.#entry = this.#capture("entry");
    } catch (e) {
      this.#proc.dispose();
      throw e;
    }
  }

  #capture(mode: "ready" | "entry"): Snapshot {
    return { machine: this.#proc.machine.capture(), fs: this.#proc.fs.snapshot(), mode, environPtr: this.#proc.environPtr };
  }

  #restore(s: Snapshot, keepTmp: boolean): void {
    this.#proc.machine.restore(s.machine);
    if (!this.#proc.machine.checkUserMode()) throw new Error("x86: a restored context is not at CPL 3");
    this.#proc.fs.restore(s.fs, keepTmp);
    this.#proc.environPtr = s.environPtr;
    this.#parked = true;
  }

  #limits(): { budget: bigint; timeoutMs: number } {
    return { budget: this.#p.options.budget, timeoutMs: this.#p.spec.manifest.limits.timeoutMs };
  }

  /** Runs the program's init up to the ready trap (once per instance), or detects that it has none. */
  #ensureInit(): void {
    if (this.#mode !== "unknown") return;
    if (this.#io === "stdio") {
      // A Unix tool has no init to keep: every run starts at its entry (argv already on the stack).
      this.#mode = "entry";
      this.#base = this.#entry;
      return;
    }
    const { budget, timeoutMs } = this.#limits();
    const r = this.#proc.run("init", new Uint8Array(0), 1024 * 1024, undefined, false, budget, timeoutMs);
    if (r.stderr.length > 0) this.#p.options.log(`${this.#label}: init stderr: ${r.stderr.toString("utf8", 0, 2000).trimEnd()}`);
    if (r.result.stop.kind === "ready") {
      this.#mode = "ready";
      this.#base = this.#capture("ready");
    } else {
      if (r.result.stop.kind === "error") throw new Error(`${this.#label}: init: ${describeStop(r.result.stop)}`);
      this.#p.options.log(`${this.#label}: the program did not call zerocell_ready during init (${describeStop(r.result.stop)}); requests start at its entry point`);
      this.#mode = "entry";
      this.#base = this.#entry;
      this.#restore(this.#entry, false);
    }
    this.#parked = true;
  }

  /** The app's environment variables as "NAME=value" strings (EngineSpec.env). */
  #appEnv(): string[] {
    return Object.entries(this.#p.spec.env ?? {}).map(([k, v]) => `${k}=${v}`);
  }

  async handle(request: EngineRequest): Promise<EngineResponse> {
    if (this.#io === "stdio") return this.#handleStdio(request);
    this.#ensureInit();
    const base = this.#base!;
    // A finished (exited) program cannot take another request: start it again from the
    // snapshot, keeping /tmp (daemon mode keeps files between requests).
    if (!this.#parked) this.#restore(base, true);
    const proc = this.#proc;
    const m = this.#p.spec.manifest;
    // The app's variables, then the request's meta-variables (their names never collide: app-env.ts reserves them).
    const env = [...this.#appEnv(), ...cgiEnvironment(request, proc.argv0)];
    const before = request.data === undefined ? undefined : proc.fs.mountData(request.data, m.limits.dataMb * 1024 * 1024);
    if (this.#mode === "entry") proc.restartAtEntry([proc.argv0], env);
    // Resuming from the trap: it returns 0 and *environ is the request's environment.
    else proc.machine.uc.regWrite(X86_REG.RAX, 0n);
    this.#parked = false;
    const { budget, timeoutMs } = this.#limits();
    // The response limit is enforced while the guest writes: stdout may hold the body limit
    // plus the CGI headers, and a write past that stops the guest (see OutputBuffer).
    const maxBody = this.#p.spec.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    const { run, data, usage } = this.#runRequest(request.body, before, maxBody + MAX_HEADER_BYTES, env, this.#mode === "ready", budget, timeoutMs);
    const { result, stdout, stderr } = run;
    this.#parked = result.stop.kind === "ready";
    if (stderr.length > 0) this.#p.options.log(`${this.#label} ${request.method} ${request.url.slice(0, 200)}: stderr: ${stderr.toString("utf8", 0, 4000).trimEnd()}`);
    const stop = result.stop;
    if (stop.kind === "error") throw new Error(`${this.#label}: ${describeStop(stop)}`);
    const ok = stop.kind === "ready" || (stop.kind === "exit" && stop.code === 0);
    if (!ok) {
      this.#p.options.log(`${this.#label} ${request.method} ${request.url.slice(0, 200)}: ${describeStop(stop)}`);
      if (stop.kind === "timeout") return { ...errorResponse(504, "504 gateway timeout: the app ran longer than its time limit"), usage };
      if (stop.kind === "limit") throw new SandboxError("response_too_large", 502, `x86: ${this.#label}: the app wrote more than ${maxBody} bytes of response body (plus ${MAX_HEADER_BYTES} of CGI headers); stopped`);
      return { ...errorResponse(500, "500 internal server error: the app failed"), usage };
    }
    const parsed = parseCgiResponse(stdout);
    if (!parsed.ok) {
      this.#p.options.log(`${this.#label} ${request.method} ${request.url.slice(0, 200)}: malformed CGI response: ${parsed.error}`);
      return { ...errorResponse(502, "502 bad gateway: the app sent a malformed CGI response"), usage };
    }
    if (parsed.response.body.byteLength > maxBody) {
      throw new SandboxError("response_too_large", 502, `x86: ${this.#label}: response body of ${parsed.response.body.byteLength} bytes exceeds the limit of ${maxBody} bytes`);
    }
    return data === undefined ? { ...parsed.response, usage } : { ...parsed.response, data, usage };
  }

  /**
   * Runs one request's guest code (CGI or stdio) and what both do around it: the key's /data
   * read back and unmounted (a key's /data is only visible to its own request), the metering
   * record and the request's usage.
   */
  #runRequest(body: Uint8Array, before: Map<string, Buffer> | undefined, maxOut: number, env: string[], park: boolean, budget: bigint, timeoutMs: number) {
    const proc = this.#proc;
    const c0 = process.cpuUsage();
    const run = proc.run("request", body, maxOut, env, park, budget, timeoutMs);
    const cpu = process.cpuUsage(c0);
    const { result, syscalls } = run;
    const data = before !== undefined && result.stop.kind !== "error" ? proc.fs.changedData(before) : undefined;
    if (before !== undefined) proc.fs.unmountData();
    this.lastUsage = { events: result.events, meter: this.#p.options.meter, codeBytes: result.codeBytes, instructions: result.instructions, syscalls, ms: result.ms };
    const usage = { instructions: Number(result.instructions), guestMs: (cpu.user + cpu.system) / 1000 };
    return { run, data, usage };
  }

  /** One stdio run: the body on stdin from the entry snapshot, stdout as the body, the exit code in a header. */
  #handleStdio(request: EngineRequest): EngineResponse {
    this.#ensureInit();
    if (!this.#parked) this.#restore(this.#base!, true);
    const proc = this.#proc;
    const m = this.#p.spec.manifest;
    const before = request.data === undefined ? undefined : proc.fs.mountData(request.data, m.limits.dataMb * 1024 * 1024);
    // Whatever stops it, the run is over: the next request starts again from the entry snapshot.
    this.#parked = false;
    const { budget, timeoutMs } = this.#limits();
    const maxBody = this.#p.spec.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    const { run, data, usage } = this.#runRequest(request.body, before, maxBody, this.#appEnv(), false, budget, timeoutMs);
    const { result, stdout, stderr } = run;
    const what = `${this.#label} ${request.method} ${request.url.slice(0, 200)}`;
    if (stderr.length > 0) this.#p.options.log(`${what}: stderr: ${stderr.toString("utf8", 0, 4000).trimEnd()}`);
    const stop = result.stop;
    if (stop.kind === "error") throw new Error(`${this.#label}: ${describeStop(stop)}`);
    if (stop.kind === "limit") throw new SandboxError("response_too_large", 502, `x86: ${this.#label}: the program wrote more than ${maxBody} bytes to stdout; stopped`);
    // A second zerocell_ready ends a stdio run like exit(0).
    const code = stop.kind === "exit" ? stop.code : stop.kind === "ready" ? 0 : undefined;
    if (code === undefined) {
      this.#p.options.log(`${what}: ${describeStop(stop)}`);
      const stopHeader: [string, string] = [STDIO_HEADERS.stop, stop.kind];
      if (stop.kind === "timeout") return { ...errorResponse(504, "504 gateway timeout: the program ran longer than its time limit"), headers: [...TEXT, stopHeader], usage };
      return { ...errorResponse(500, `500 internal server error: the program was stopped (${stop.kind})`), headers: [...TEXT, stopHeader], usage };
    }
    const headers: Array<[string, string]> = [["content-type", "application/octet-stream"], [STDIO_HEADERS.exitCode, String(code)]];
    if (code !== 0 && stderr.length > 0) headers.push([STDIO_HEADERS.stderr, encodeURIComponent(stderr.toString("utf8", 0, Math.min(stderr.length, STDERR_HEAD_BYTES)))]);
    const res: EngineResponse = { status: code === 0 ? 200 : 500, headers, body: stdout, usage };
    return data === undefined ? res : { ...res, data };
  }

  snapshot(): void {
    this.#ensureInit();
    if (this.#mode !== "ready" || !this.#parked) return;
    const old = this.#base;
    this.#base = this.#capture("ready");
    if (old !== undefined && old !== this.#entry) this.#proc.machine.freeSnapshot(old.machine);
  }

  async reset(): Promise<void> {
    if (this.#base === undefined) return;
    this.#restore(this.#base, false);
  }

  exportSnapshot(): PortableSnapshot {
    this.#ensureInit();
    const s = this.#base!;
    const ex = this.#proc.machine.exportSnapshot(s.machine);
    return {
      memory: ex.memory,
      globals: [],
      extra: { engine: ENGINE_REVISION, program: this.#p.programHash, mode: s.mode, environPtr: s.environPtr, machine: ex.meta, fs: this.#proc.fs.exportSnapshot(s.fs) },
    };
  }

  async importSnapshot(snapshot: PortableSnapshot): Promise<void> {
    const x = snapshot.extra as { engine?: unknown; program?: unknown; mode?: unknown; environPtr?: unknown; machine?: unknown; fs?: unknown } | null;
    if (x === null || typeof x !== "object" || x.engine !== ENGINE_REVISION) throw new Error("x86: snapshot of another engine revision");
    if (x.program !== this.#p.programHash) throw new Error("x86: snapshot of another program");
    if (x.mode !== "ready" && x.mode !== "entry") throw new Error("x86: snapshot has no mode");
    if (!Number.isSafeInteger(x.environPtr) || (x.environPtr as number) < 0) throw new Error("x86: snapshot has a bad environ pointer");
    const machine = this.#proc.machine.importSnapshot(snapshot.memory, x.machine);
    let fs: FsSnapshot;
    try {
      fs = this.#proc.fs.importSnapshot(x.fs);
    } catch (e) {
      this.#proc.machine.freeSnapshot(machine);
      throw e;
    }
    const snap: Snapshot = { machine, fs, mode: x.mode, environPtr: x.environPtr as number };
    this.#restore(snap, false);
    const old = this.#base;
    this.#base = snap;
    this.#mode = x.mode;
    if (old !== undefined && old !== this.#entry) this.#proc.machine.freeSnapshot(old.machine);
  }

  dispose(): void {
    this.#proc.dispose();
  }
}

export class X86Engine implements Engine<X86Prepared> {
  readonly runtime = "x86";
  readonly #options: X86Prepared["options"];

  constructor(options: X86EngineOptions = {}) {
    const meter = options.meter ?? "block";
    this.#options = {
      meter,
      budget: options.budget ?? (meter === "block" ? 20_000_000_000n : 100_000_000_000n),
      stackBytes: options.stackBytes ?? 8 * 1024 * 1024,
      log: options.log ?? ((line) => process.stderr.write(line.endsWith("\n") ? line : line + "\n")),
    };
  }

  validate(manifest: Manifest, image: BundleImage): void {
    const { path, bytes } = loadableProgram(manifest, image);
    assertValidProgram(bytes, { path });
  }

  buildId(manifest: Manifest): string {
    return x86EngineBuild(manifest, this.#options);
  }

  async prepare(spec: EngineSpec): Promise<X86Prepared> {
    this.validate(spec.manifest, spec.image);
    const { path, bytes } = programEntry(spec.manifest, spec.image);
    return { spec, program: bytes, programPath: path, programHash: createHash("sha256").update(bytes).digest("hex"), options: this.#options };
  }

  async instantiate(prepared: X86Prepared): Promise<EngineInstance & { lastUsage: X86Usage | undefined }> {
    return new X86Instance(prepared);
  }
}

// ---------------------------------------------------------------------------------------------
// Non-CGI runs (tests, tools): a program with argv and stdin, to exit.

export interface RunProgramOptions {
  /** Bundle image mounted at /app (default: empty). */
  image?: BundleImage;
  /** Program path shown as argv[0]'s directory entry (default "prog"). */
  programPath?: string;
  env?: string[];
  memoryMb?: number;
  timeoutMs?: number;
  budget?: bigint;
  meter?: MeterKind;
  maxOutputBytes?: number;
  /** Engine log lines (unknown system calls, …); default: dropped. */
  log?: (line: string) => void;
}

export interface RunProgramResult {
  /** Exit status, or 128 + signal for a fault or signal, or -1 for another stop. */
  exitCode: number;
  stop: StopReason;
  stdout: Buffer;
  stderr: Buffer;
  usage: X86Usage;
}

/** Runs a static program once from its entry point: argv[0] is /app/<programPath>. */
export function runProgram(program: Uint8Array, argv: readonly string[], stdin: Uint8Array = new Uint8Array(0), opts: RunProgramOptions = {}): RunProgramResult {
  const image = opts.image ?? { entries: [], totalBytes: 0 };
  const memoryBytes = (opts.memoryMb ?? 256) * 1024 * 1024;
  const meter = opts.meter ?? "block";
  const proc = new X86Process(program, image, opts.programPath ?? "prog", { memoryBytes, stackBytes: 8 * 1024 * 1024, meter, tmpQuota: memoryBytes, log: opts.log ?? (() => {}) });
  try {
    proc.enter(argv.length > 0 ? argv : [proc.argv0], opts.env ?? []);
    const r = proc.run("request", stdin, opts.maxOutputBytes ?? 256 * 1024 * 1024, opts.env ?? [], false, opts.budget ?? (meter === "block" ? 50_000_000_000n : 250_000_000_000n), opts.timeoutMs ?? 60_000);
    const stop = r.result.stop;
    const exitCode = stop.kind === "exit" ? stop.code : stop.kind === "signal" ? 128 + stop.signal : stop.kind === "fault" ? 139 : -1;
    return { exitCode, stop, stdout: r.stdout, stderr: r.stderr, usage: { events: r.result.events, meter, codeBytes: r.result.codeBytes, instructions: r.result.instructions, syscalls: r.syscalls, ms: r.result.ms } };
  } finally {
    proc.dispose();
  }
}
