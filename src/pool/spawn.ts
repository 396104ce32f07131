/**
 * How a sandbox host process is started: the layers that hold even if a guest escapes its
 * engine into host-realm JavaScript (docs/threat-model.md).
 *
 *   1. Node's permission model: fs reads limited to the platform's code, no writes, no child
 *      processes, no workers (addons only for x86), no code generation from strings.
 *   2. `unshare -n -p -f --mount-proc -i`: an empty network namespace, its own PID namespace (it
 *      sees itself as pid 1 and no other process), mount and IPC namespaces. `--kill-child`: when
 *      the gateway kills the wrapper, the host dies with it.
 *   3. `setpriv`: an unprivileged uid/gid of its own (HOST_UID_BASE + n), no supplementary
 *      groups, no capabilities, no new privileges.
 *   4. A memory ceiling per host: a memory cgroup (v1 `memory.limit_in_bytes` + memsw, or v2
 *      `memory.max`), else a watchdog that kills the host when its RSS passes the ceiling.
 *
 * Each layer is used when the machine allows it (root, util-linux, a writable cgroup mount);
 * what is missing is reported once at start (`HostIsolation.missing`).
 * Must never: start a host with any of the gateway's environment (ZEROCELL_RESET=compare, a fixed
 * value, is the one exception), descriptors beyond the four pipes, or a uid that can signal or
 * read the gateway when an unprivileged one is available.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, statSync, writeFileSync } from "node:fs";
import { readFile, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Manifest } from "../bundle/index.js";
import { DIST_DIR, NODE_MODULES_DIR, PACKAGE_ROOT } from "../paths.js";
import { hostFlags } from "../runtime/index.js";

type Runtime = Manifest["runtime"];

/** The uid/gid the start-up probe runs as ("nobody" on Debian). */
export const HOST_UID = 65534;
/**
 * Hosts run as uid/gid HOST_UID_BASE + n (a new one per host, cycling through HOST_UID_COUNT):
 * no passwd entry, no files, and no two live hosts share a uid, so even code that escaped every
 * layer inside a host cannot signal or ptrace another host as the same user.
 */
export const HOST_UID_BASE = 200_000;
const HOST_UID_COUNT = 100_000;

const HOST_SCRIPT = join(DIST_DIR, "src", "runtime", "host", "main.js");

/** Where each host gets a memory ceiling. */
type CgroupKind = { version: 1; root: string } | { version: 2; root: string };

export interface HostIsolation {
  /** `unshare` for network, PID, mount and IPC namespaces (absolute path), when usable. */
  unshare: string | undefined;
  /** `setpriv` to drop to HOST_UID (absolute path), when usable. */
  setpriv: string | undefined;
  /** Per-host memory cgroups under this directory, when writable. */
  cgroup: CgroupKind | undefined;
  /** The layers this machine does not allow, for the start-up log. */
  missing: string[];
}

/** No OS layers at all (tests of the pool's own logic, non-root machines). */
export const NO_ISOLATION: HostIsolation = { unshare: undefined, setpriv: undefined, cgroup: undefined, missing: ["not root"] };

function which(cmd: string): string | undefined {
  for (const dir of ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]) {
    const p = join(dir, cmd);
    if (existsSync(p)) return p;
  }
  return undefined;
}

function ok(cmd: string, args: string[]): boolean {
  return spawnSync(cmd, args, { stdio: "ignore", timeout: 5000, env: {} }).status === 0;
}

/**
 * Finds out once, at start, which layers this machine allows: each is tried for real (a
 * namespace that cannot be created, a uid that cannot read the platform's code, a cgroup mount
 * that is read-only are all left out and named in `missing`).
 */
export function detectHostIsolation(): HostIsolation {
  if (process.getuid?.() !== 0) return NO_ISOLATION;
  const missing: string[] = [];
  let unshare = which("unshare");
  if (unshare !== undefined && !ok(unshare, ["-n", "-p", "-f", "--mount-proc", "-i", "--kill-child", "true"])) unshare = undefined;
  if (unshare === undefined) missing.push("namespaces (unshare -n -p -f --mount-proc -i failed)");
  let setpriv = which("setpriv");
  // The host must be able to read the platform's code as HOST_UID (a checkout under /root is not).
  if (setpriv !== undefined && !ok(setpriv, [...setprivArgs(), "/usr/bin/test", "-r", HOST_SCRIPT])) {
    missing.push(`unprivileged uid (uid ${HOST_UID} cannot read ${HOST_SCRIPT})`);
    setpriv = undefined;
  } else if (setpriv === undefined) missing.push("unprivileged uid (no setpriv)");
  const cgroup = openCgroupRoot();
  if (cgroup === undefined) missing.push("memory cgroup (an RSS watchdog enforces the ceiling instead)");
  return { unshare, setpriv, cgroup, missing };
}

function setprivArgs(uid = HOST_UID): string[] {
  // A uid change clears the parent-death signal unshare's --kill-child set: set it again, so a
  // host dies with its wrapper (the gateway SIGKILLs the wrapper).
  return [`--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--pdeathsig=SIGKILL"];
}

/** This gateway's own directory of host cgroups; stale ones of dead gateways are removed. */
function openCgroupRoot(): CgroupKind | undefined {
  const candidates: Array<{ version: 1 | 2; base: string }> = [];
  if (existsSync("/sys/fs/cgroup/memory/memory.limit_in_bytes")) candidates.push({ version: 1, base: "/sys/fs/cgroup/memory/zerocell" });
  try {
    if (readFileSync("/sys/fs/cgroup/cgroup.controllers", "utf8").split(/\s+/).includes("memory")) candidates.push({ version: 2, base: "/sys/fs/cgroup/zerocell" });
  } catch {
    // no cgroup v2 hierarchy here
  }
  for (const c of candidates) {
    try {
      mkdirSync(c.base, { recursive: true });
      if (c.version === 2) {
        writeFileSync("/sys/fs/cgroup/cgroup.subtree_control", "+memory");
        writeFileSync(join(c.base, "cgroup.subtree_control"), "+memory");
      }
      removeStaleGateways(c.base);
      const root = join(c.base, `g${process.pid}`);
      mkdirSync(root, { recursive: true });
      if (c.version === 2) writeFileSync(join(root, "cgroup.subtree_control"), "+memory");
      return { version: c.version, root };
    } catch {
      // read-only or not delegated: try the next, else no cgroup
    }
  }
  return undefined;
}

function removeStaleGateways(base: string): void {
  for (const name of readdirSync(base)) {
    const m = /^g(\d+)$/.exec(name);
    if (m === null || isAlive(Number(m[1]))) continue;
    const dir = join(base, name);
    for (const h of readdirSync(dir, { withFileTypes: true })) if (h.isDirectory()) tryRmdir(join(dir, h.name));
    tryRmdir(dir);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

function tryRmdir(dir: string): boolean {
  try {
    rmdirSync(dir);
    return true;
  } catch {
    return false;
  }
}

/** Removes this gateway's cgroup directory (at close; host directories go as their hosts exit). */
export function closeHostIsolation(isolation: HostIsolation): void {
  if (isolation.cgroup !== undefined) tryRmdir(isolation.cgroup.root);
}

/**
 * A host's memory ceiling, bytes: Node and the compiled engine (~300 MB for PHP/Python), the
 * guest's heap (the PHP engine caps it at 2 × memory_mb + 192 MiB), a snapshot copy, a response
 * in both directions and a key's /data twice (the frame and the in-memory tree). Past it the
 * kernel (or the watchdog) kills the host: the request gets 502 and the host is replaced; the
 * machine and other tenants are not touched.
 */
export function hostMemoryCeiling(limits: { memoryMb: number; dataMb: number }, maxResponseBytes: number): number {
  return (512 + 3 * limits.memoryMb + 2 * limits.dataMb) * 1024 * 1024 + 2 * maxResponseBytes;
}

/** Node flags for the host: permission model, reads limited to the platform's own code. */
export function hostNodeArgs(runtime: Runtime = "php", spare = false): string[] {
  return [
    ...hostFlags(runtime),
    // Emscripten's dynamic loader eval()s the EM_JS strings of a side module, Pyodide's realm
    // escapes go through Function(...): no host may turn a string into code.
    "--disallow-code-generation-from-strings",
    "--experimental-permission",
    `--allow-fs-read=${DIST_DIR}`,
    `--allow-fs-read=${NODE_MODULES_DIR}`,
    `--allow-fs-read=${join(PACKAGE_ROOT, "package.json")}`,
    "--no-warnings",
    "--max-old-space-size=256",
    // V8's young generation: 4 MiB semi-spaces instead of 16 (bench/memory.mjs, docs/memory.md).
    "--max-semi-space-size=4",
    HOST_SCRIPT,
    // The host loads this runtime's engine at once, before a deployment arrives.
    runtime,
    ...(spare ? ["spare"] : []),
  ];
}

/**
 * glibc's heap in a host: one arena, not one per V8 background thread (whose freed chunks glibc
 * keeps: ~70 MB of a PHP host's ~140). The host trims it when idle (src/malloc.ts).
 */
export const HOST_MALLOC_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: "1" };

let nextHostId = 1;
let nextHostUid = 0;
const WATCHDOG_INTERVAL_MS = 200;

/** A started host process with its memory ceiling (cgroup or watchdog), removed when it exits. */
export class HostProcess {
  readonly child: ChildProcess;
  readonly #cgroupDir: string | undefined;
  readonly #cgroupVersion: 1 | 2 | undefined;
  #ceilingBytes: number;
  #watchdog: NodeJS.Timeout | undefined;
  #overCeiling = false;

  /** The uid the host runs as (setpriv), or undefined: the gateway's own. */
  readonly uid: number | undefined;

  constructor(child: ChildProcess, ceilingBytes: number, cgroup: { dir: string; version: 1 | 2 } | undefined, uid?: number) {
    this.child = child;
    this.uid = uid;
    this.#ceilingBytes = ceilingBytes;
    this.#cgroupDir = cgroup?.dir;
    this.#cgroupVersion = cgroup?.version;
    if (cgroup === undefined && child.pid !== undefined) {
      this.#watchdog = setInterval(() => this.#checkRss(), WATCHDOG_INTERVAL_MS);
      this.#watchdog.unref();
    }
    child.once("exit", () => {
      if (this.#watchdog !== undefined) clearInterval(this.#watchdog);
      const dir = this.#cgroupDir;
      if (dir !== undefined) {
        // The kernel empties the group a moment after the last task exits.
        let tries = 0;
        const remove = () => {
          if (!tryRmdir(dir) && ++tries < 20) setTimeout(remove, 50).unref();
        };
        remove();
      }
    });
  }

  /**
   * Kills the host. The node process is the wrappers' child (pid 1 of its namespace): killed
   * first, so the wrapper reaps it and exits; killing only the wrapper would leave the node
   * process to the machine's init, which may never reap it. The wrapper itself goes too if it
   * has not exited within a second (or had not forked yet).
   */
  kill(): void {
    const pid = this.child.pid;
    if (pid === undefined || this.child.exitCode !== null || this.child.signalCode !== null) return;
    const inner = childrenOf(pid);
    for (const c of inner) {
      try {
        process.kill(c, "SIGKILL");
      } catch {
        // already gone
      }
    }
    if (inner.length === 0) {
      this.child.kill("SIGKILL");
      return;
    }
    setTimeout(() => {
      if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
    }, 1000).unref();
  }

  /**
   * CPU time (user + system) the host's processes have used so far, ms, from /proc (the wrapper
   * and its descendants: the node host is the wrapper's child); undefined once it is gone.
   */
  cpuTimeMs(): number | undefined {
    const pid = this.child.pid;
    if (pid === undefined || this.child.exitCode !== null || this.child.signalCode !== null) return undefined;
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const ticks = sumOverTree(pid, (p) => {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return Number(f[11]) + Number(f[12]);
    });
    return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
  }

  /**
   * CPU time (user + system) of the node host's main thread so far, ms: where guest code runs
   * (wasm, Pyodide, Unicorn all run on it). V8's background threads (wasm tier-up compiling
   * php.wasm, concurrent GC) are not counted: a new host's first requests overlap seconds of
   * that, which is the platform's work, not the tenant's. Undefined once the host is gone.
   */
  mainThreadCpuMs(): number | undefined {
    const pid = this.nodePid();
    if (pid === undefined) return undefined;
    try {
      const stat = readFileSync(`/proc/${pid}/task/${pid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return ((Number(f[11]) + Number(f[12])) * 1000) / CLOCK_TICKS_PER_SECOND;
    } catch {
      return undefined;
    }
  }

  /** Memory of the host's processes now (PSS), bytes; undefined once it is gone. */
  memoryBytes(): number | undefined {
    const pid = this.child.pid;
    if (pid === undefined || this.child.exitCode !== null || this.child.signalCode !== null) return undefined;
    return treeMemoryBytes(pid);
  }

  /** The host's processes, found once and again every TREE_TTL_MS (a host cannot start processes). */
  #tree: { pids: number[]; at: number } | undefined;

  /**
   * memoryBytes() without blocking the event loop: /proc is read on libuv's threads (the kernel
   * walks the page tables for smaps_rollup: ~5–15 ms per host here, which the pool's sampler paid
   * on the gateway's loop for every host, every sample).
   */
  async memoryBytesAsync(): Promise<number | undefined> {
    const pid = this.child.pid;
    const gone = () => pid === undefined || this.child.exitCode !== null || this.child.signalCode !== null;
    if (gone()) return undefined;
    if (this.#tree === undefined || Date.now() - this.#tree.at > TREE_TTL_MS) this.#tree = { pids: await treePidsAsync(pid!), at: Date.now() };
    const bytes = (await Promise.all(this.#tree.pids.map(processMemoryBytesAsync))).reduce((a, b) => a + b, 0);
    return gone() ? undefined : bytes;
  }

  /**
   * The node host's pid: the innermost process under the wrappers (unshare forks it, setpriv
   * execs into it), or the child itself without wrappers; undefined once it is gone.
   */
  nodePid(): number | undefined {
    let pid = this.child.pid;
    if (pid === undefined || this.child.exitCode !== null || this.child.signalCode !== null) return undefined;
    for (let depth = 0; depth < 4; depth++) {
      const inner = childrenOf(pid);
      if (inner.length === 0) return pid;
      pid = inner[0]!;
    }
    return pid;
  }

  get ceilingBytes(): number {
    return this.#ceilingBytes;
  }

  /** Sets the ceiling for the deployment the host now serves (a spare starts with the default). */
  setCeiling(bytes: number): void {
    if (this.#cgroupDir !== undefined) {
      try {
        writeCgroupLimit(this.#cgroupDir, this.#cgroupVersion!, bytes);
      } catch {
        // The kernel refuses a limit below what the group uses now (EBUSY): the host keeps the
        // spare's default ceiling rather than failing the deploy.
        return;
      }
    }
    this.#ceilingBytes = bytes;
  }

  /** True when the host was killed for passing its memory ceiling. */
  overCeiling(): boolean {
    if (this.#overCeiling) return true;
    const dir = this.#cgroupDir;
    if (dir === undefined) return false;
    try {
      if (this.#cgroupVersion === 1) return /\boom_kill\s+[1-9]/.test(readFileSync(join(dir, "memory.oom_control"), "utf8"));
      return /\boom_kill\s+[1-9]/.test(readFileSync(join(dir, "memory.events"), "utf8"));
    } catch {
      return false;
    }
  }

  #checkRss(): void {
    const pid = this.child.pid;
    if (pid === undefined || this.child.exitCode !== null) return;
    if (treeRssBytes(pid) > this.#ceilingBytes) {
      this.#overCeiling = true;
      this.kill();
    }
  }
}

function writeCgroupLimit(dir: string, version: 1 | 2, bytes: number): void {
  if (version === 2) {
    writeFileSync(join(dir, "memory.max"), String(bytes));
    try {
      writeFileSync(join(dir, "memory.swap.max"), "0");
    } catch {
      // no swap accounting
    }
    return;
  }
  // memsw (memory + swap) must stay ≥ the memory limit: order the writes by direction.
  const memsw = join(dir, "memory.memsw.limit_in_bytes");
  const hasMemsw = existsSync(memsw);
  let current = Infinity;
  try {
    current = Number(readFileSync(join(dir, "memory.limit_in_bytes"), "utf8"));
  } catch {
    // new group
  }
  if (bytes >= current) {
    if (hasMemsw) writeFileSync(memsw, String(bytes));
    writeFileSync(join(dir, "memory.limit_in_bytes"), String(bytes));
  } else {
    writeFileSync(join(dir, "memory.limit_in_bytes"), String(bytes));
    if (hasMemsw) writeFileSync(memsw, String(bytes));
  }
}

/** USER_HZ: the unit of /proc/<pid>/stat times (100 on every Linux architecture Node runs on). */
const CLOCK_TICKS_PER_SECOND = 100;

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      for (const c of readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").split(" ")) if (c.trim() !== "") out.push(Number(c));
    }
  } catch {
    // gone
  }
  return out;
}

/** RSS of a process and its descendants (the wrappers' child is the node host), bytes. */
function treeRssBytes(pid: number): number {
  return sumOverTree(pid, (p) => {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, "utf8"));
    return m === null ? 0 : Number(m[1]) * 1024;
  });
}

/** One process's memory from /proc/PID/smaps_rollup, bytes; undefined when it cannot be read (gone, older kernel). */
export interface ProcessRollup {
  rss: number;
  /** Proportional set size: pages shared with other processes count by their share. */
  pss: number;
  /** Unique set size: pages only this process maps. */
  uss: number;
  pssAnon: number;
  pssFile: number;
  pssShmem: number;
}

export function readRollup(pid: number): ProcessRollup | undefined {
  try {
    return parseRollup(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"));
  } catch {
    return undefined;
  }
}

function parseRollup(text: string): ProcessRollup {
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? 0) * 1024;
  return { rss: kb("Rss"), pss: kb("Pss"), uss: kb("Private_Clean") + kb("Private_Dirty"), pssAnon: kb("Pss_Anon"), pssFile: kb("Pss_File"), pssShmem: kb("Pss_Shmem") };
}

/**
 * Memory of a process and its descendants, bytes: the proportional set size (PSS, from
 * /proc/PID/smaps_rollup: pages shared with other processes — Node's code, a snapshot file in
 * the page cache — count by their share), or RSS where smaps_rollup cannot be read; plus the
 * pages of its memfds that are not resident in it (a host writes its snapshot into a memfd and
 * maps it: pages it never touched since are memory too, and not in PSS).
 * 0 once gone.
 */
export function treeMemoryBytes(pid: number): number {
  return sumOverTree(pid, (p) => {
    const rollup = readRollup(p);
    return processBytes(rollup, readFileSync(`/proc/${p}/status`, "utf8"), memfdBytes(p));
  });
}

/** One process's share for treeMemoryBytes: PSS (or RSS) plus its memfds' pages not resident in it. */
function processBytes(rollup: ProcessRollup | undefined, status: string, memfd: number): number {
  const kb = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024;
  return (rollup?.pss ?? kb("VmRSS")) + Math.max(0, memfd - kb("RssShmem"));
}

/** How long HostProcess keeps the list of its processes (the wrappers, then node). */
const TREE_TTL_MS = 30_000;

/** A process and its descendants (at most 64), read without blocking the event loop. */
async function treePidsAsync(pid: number): Promise<number[]> {
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0 && out.length < 64) {
    const p = queue.shift()!;
    if (out.includes(p)) continue;
    out.push(p);
    try {
      for (const t of await readdir(`/proc/${p}/task`)) {
        for (const c of (await readFile(`/proc/${p}/task/${t}/children`, "utf8")).split(" ")) if (c.trim() !== "") queue.push(Number(c));
      }
    } catch {
      // gone
    }
  }
  return out;
}

/** treeMemoryBytes without blocking the event loop (spares: the pool's sampler). */
export async function treeMemoryBytesAsync(pid: number): Promise<number> {
  return (await Promise.all((await treePidsAsync(pid)).map(processMemoryBytesAsync))).reduce((a, b) => a + b, 0);
}

/** processBytes of one process through fs/promises; 0 once gone. */
async function processMemoryBytesAsync(p: number): Promise<number> {
  try {
    const [rollup, status, memfd] = await Promise.all([
      readFile(`/proc/${p}/smaps_rollup`, "utf8").then(parseRollup, () => undefined),
      readFile(`/proc/${p}/status`, "utf8"),
      memfdBytesAsync(p),
    ]);
    return processBytes(rollup, status, memfd);
  } catch {
    return 0;
  }
}

/** memfdBytes through fs/promises. */
async function memfdBytesAsync(pid: number): Promise<number> {
  let maps: string;
  try {
    maps = await readFile(`/proc/${pid}/maps`, "utf8");
  } catch {
    return 0;
  }
  const ranges = memfdRanges(maps);
  const sizes = await Promise.all(ranges.map((range) => stat(`/proc/${pid}/map_files/${range}`).then((st) => st.blocks * 512, () => 0)));
  return sizes.reduce((a, b) => a + b, 0);
}

/** The address range of one mapping per memfd in a /proc/PID/maps text (at most 16 memfds). */
function memfdRanges(maps: string): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const line of maps.split("\n")) {
    if (!line.includes("/memfd:")) continue;
    const [range, , , , inode] = line.split(/\s+/);
    if (range === undefined || inode === undefined || seen.has(inode) || seen.size >= 16) continue;
    seen.add(inode);
    out.push(range);
  }
  return out;
}

/**
 * Bytes allocated to the memfds a process maps (a host closes the descriptor once its snapshot is
 * mapped, so they are found through /proc/PID/maps and map_files; each memfd counted once).
 * 0 when unreadable.
 */
function memfdBytes(pid: number): number {
  let sum = 0;
  try {
    for (const range of memfdRanges(readFileSync(`/proc/${pid}/maps`, "utf8"))) {
      try {
        sum += statSync(`/proc/${pid}/map_files/${range}`).blocks * 512;
      } catch {
        // unmapped meanwhile
      }
    }
  } catch {
    // gone, or not ours to read
  }
  return sum;
}

/** `read` summed over a process and its descendants (at most 64; ones already gone count 0). */
function sumOverTree(pid: number, read: (pid: number) => number): number {
  let total = 0;
  const seen = new Set<number>();
  const visit = (p: number) => {
    if (seen.has(p) || seen.size > 64) return;
    seen.add(p);
    try {
      total += read(p);
      for (const c of childrenOf(p)) visit(c);
    } catch {
      // gone
    }
  };
  visit(pid);
  return total;
}

/**
 * The command that runs `argv` inside every layer `isolation` allows; with `cgroupProcs`, the
 * wrapper joins that memory cgroup before it execs anything, so every process it starts is in it.
 */
export function isolatedCommand(isolation: HostIsolation, argv: string[], cgroupProcs?: string, uid = HOST_UID): string[] {
  let out = argv;
  if (isolation.setpriv !== undefined) out = [isolation.setpriv, ...setprivArgs(uid), ...out];
  if (isolation.unshare !== undefined) out = [isolation.unshare, "-n", "-p", "-f", "--mount-proc", "-i", "--kill-child", ...out];
  // The shell would export PWD (the gateway's working directory) to the host: unset first.
  if (cgroupProcs !== undefined) out = ["/bin/sh", "-c", 'unset PWD OLDPWD; echo $$ > "$0" && exec "$@"', cgroupProcs, ...out];
  return out;
}

/** A new memory cgroup of `ceilingBytes` for one host, or undefined where there are none. */
export function createHostCgroup(isolation: HostIsolation, ceilingBytes: number): { dir: string; version: 1 | 2 } | undefined {
  if (isolation.cgroup === undefined) return undefined;
  const dir = join(isolation.cgroup.root, `h${nextHostId++}`);
  try {
    mkdirSync(dir);
    writeCgroupLimit(dir, isolation.cgroup.version, ceilingBytes);
    return { dir, version: isolation.cgroup.version };
  } catch {
    tryRmdir(dir);
    return undefined;
  }
}

/**
 * Starts a host process for `runtime` (no deployment yet: it loads the runtime and waits for
 * init) inside every layer `isolation` allows, with `ceilingBytes` of memory.
 */
export function spawnHost(runtime: Runtime, isolation: HostIsolation, spare: boolean, ceilingBytes: number): HostProcess {
  const cgroup = createHostCgroup(isolation, ceilingBytes);
  const uid = HOST_UID_BASE + (nextHostUid++ % HOST_UID_COUNT);
  const argv = isolatedCommand(isolation, [process.execPath, ...hostNodeArgs(runtime, spare)], cgroup === undefined ? undefined : join(cgroup.dir, "cgroup.procs"), uid);
  const child = spawn(argv[0]!, argv.slice(1), {
    stdio: ["pipe", "pipe", "pipe", "pipe"],
    // Nothing of the gateway's environment (tokens, keys) reaches the sandbox, except the
    // operator's switch back to the full-compare reset (a fixed value, ADR 002). glibc's heap:
    // one arena (src/malloc.ts).
    env: { ...HOST_MALLOC_ENV, ...(process.env.ZEROCELL_RESET === "compare" ? { ZEROCELL_RESET: "compare" } : {}) },
    cwd: "/",
  });
  return new HostProcess(child, ceilingBytes, cgroup, isolation.setpriv === undefined ? undefined : uid);
}
