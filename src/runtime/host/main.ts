/**
 * Sandbox host process: holds engine instances (slots) of one account — of one deployment, or
 * with `serve --instances-per-host N` up to N of that account's deployments and keys — and runs
 * guest code off the gateway's event loop, one request at a time across all its slots (one
 * thread), each slot reset to its own snapshot after its request.
 * Must never: open a slot for an account other than its first slot's. Started by src/pool with Node's permission model
 * (reads limited to the platform's code, no child processes, no workers) and, where possible,
 * in an empty network namespace. Reads framed requests on stdin, writes framed replies on fd 3;
 * stdout and stderr are only logs.
 */
import fs from "node:fs";
import net from "node:net";
import v8 from "node:v8";
import vm from "node:vm";
import { encodeFrame, encodeFrameChunks, FrameDecoder, PROTOCOL_LIMITS, type Frame, type GatewayMessage, type HostMessage } from "../../protocol/index.js";
import { WORN_AT, type Engine, type EngineInstance } from "../engine.js";
import { decodeImage, healthPaths, type Manifest } from "../../bundle/index.js";
import { gzipPieces } from "../../snapshot/gzip.js";
import { loadEngine } from "../load.js";
import { findRuntime } from "../registry.js";
import { isZerocellError } from "../../errors.js";
import { SPARE_PRELOADED_LINE } from "../../protocol/index.js";
import { mallocTrims, trimMalloc } from "../../malloc.js";

// Emscripten's NODEFS reads fs constants through process.binding, which the permission model
// refuses; hand it the same constants from the public API and nothing else.
(process as unknown as { binding: (name: string) => unknown }).binding = (name: string) => {
  if (name === "constants") return { fs: fs.constants };
  throw new Error(`zerocell host: process.binding("${name}") is not available`);
};
// Logs go to stderr; stdout is not the reply channel but keep it quiet anyway.
console.log = (...a: unknown[]) => process.stderr.write(a.map(String).join(" ") + "\n");
console.info = console.log;
console.debug = () => {};

const out = new net.Socket({ fd: 3, readable: false, writable: true });

/**
 * V8's full collection, for this module only: exposed for one throwaway context while the flag is
 * on, so no other context — the host's global, the Python realm — ever has a `gc`. An idle host
 * allocates nothing, so V8 would not collect on its own: the boot's garbage (the init frame with
 * the image and a snapshot, the exported snapshot once sent, php-wasm's and Pyodide's loading
 * buffers) would stay resident for the host's life.
 */
const collectGarbage = ((): (() => void) | undefined => {
  try {
    v8.setFlagsFromString("--expose-gc");
    return vm.runInNewContext("gc") as () => void;
  } catch {
    return undefined;
  } finally {
    v8.setFlagsFromString("--no-expose-gc");
  }
})();
/** One full collection, then what it freed back to the kernel (malloc.ts). */
function collectAndTrim(): void {
  collectGarbage?.();
  trimMalloc();
}
/**
 * Runs one full collection once the host is past its start: when it has been quiet for
 * GC_QUIET_MS after a request (1 s after the start if no request comes), and at the latest
 * GC_LATEST_MS after the start. Not right after the first request: a collection takes 10–30 ms
 * on the host's one thread, and the request that follows a cold start (the page's next asset, the
 * user's next click) would wait for it (measured: bench/cold.mjs's warm request, ~27 ms → see
 * docs/memory.md).
 */
function collectSoon(): void {
  if (collectGarbage === undefined || bootCollection !== undefined) return;
  const run = () => {
    clearTimeout(quiet);
    clearTimeout(latest);
    bootCollection = undefined;
    collectAndTrim();
  };
  let quiet = setTimeout(run, GC_DELAY_MS);
  const latest = setTimeout(run, GC_LATEST_MS);
  // After each request: wait for quiet again.
  bootCollection = () => {
    clearTimeout(quiet);
    quiet = setTimeout(run, GC_QUIET_MS);
  };
}
/** The boot collection still to come: pushed back by each request (collectSoon). */
let bootCollection: (() => void) | undefined;
/** How long after its start an idle host collects its boot garbage, ms. */
const GC_DELAY_MS = 1000;
/** Quiet time after a request before the boot collection, ms. */
const GC_QUIET_MS = 250;
/** Latest the boot collection runs, however busy the host, ms after its start. */
const GC_LATEST_MS = 5000;
/** When a spare collects again, after its preload's background work, ms. */
const SPARE_LATE_GC_MS = 15_000;

function send(header: HostMessage, body?: Uint8Array): void {
  out.write(encodeFrame(header, body));
}

/** A readable message for anything thrown (Emscripten throws ErrnoError objects, not Errors). */
function describeError(e: unknown): string {
  if (e instanceof Error) return e.message;
  if (typeof e === "object" && e !== null) {
    const o = e as { name?: unknown; errno?: unknown; message?: unknown };
    if (typeof o.message === "string") return o.message;
    if (typeof o.errno === "number") return `${typeof o.name === "string" ? o.name : "error"} (errno ${o.errno})`;
  }
  return String(e);
}

/**
 * The runtime this host was started for (its first argument): its engine is loaded at once,
 * while the gateway sends the deployment. A spare host (second argument "spare") also runs the
 * engine's preload, before any deployment exists, and waits in that state.
 */
const startRuntime = findRuntime(process.argv[2])?.name;
const isSpare = process.argv[3] === "spare";
const preloaded: Promise<Engine> | undefined =
  startRuntime === undefined
    ? undefined
    : loadEngine(startRuntime).then(async (e) => {
        if (isSpare) {
          await e.preload?.();
          // A blank instance ahead (no tenant's bytes): a restore then only maps its snapshot.
          await e.preinstantiate?.();
          // Told on stderr (a spare has no reply channel yet; SpareHosts reads its stderr).
          // Not once taken: its stderr is then the deployment's log.
          if (!initStarted) process.stderr.write(`${SPARE_PRELOADED_LINE}\n`);
        }
        return e;
      });
// A failure shows at init (as a "fail" reply), not as an unhandled rejection now.
preloaded?.catch(() => {});
// A spare collects the garbage of its preload (its engine stays loaded, compiled and warm): once
// after it, and once after the preload's background work (Python's base image, ~3 s of CPU).
if (isSpare) {
  void preloaded?.then(() => {
    // Not once it serves a deployment: its own collection comes after its first request.
    for (const ms of [GC_DELAY_MS, SPARE_LATE_GC_MS]) {
      setTimeout(() => !initStarted && collectAndTrim(), ms).unref();
    }
  });
}

/** The engine to make a blank instance ahead with, for this process's next slot (InitMessage.blankAhead), once idle. */
let blankAheadFor: Engine | undefined;
/** Quiet time after a request or a start before the idle work, ms. */
const IDLE_WORK_MS = 2_000;
let idleTimer: NodeJS.Timeout | undefined;
/**
 * Called after every start and request: the idle work runs once the host has been quiet for
 * IDLE_WORK_MS (one timer, pushed back by each request, so a busy host never does it between
 * requests).
 */
function whenIdle(): void {
  if (idleTimer === undefined) {
    idleTimer = setTimeout(() => void idleWork(), IDLE_WORK_MS);
    idleTimer.unref();
  } else {
    idleTimer.refresh();
  }
}
/**
 * A blank instance ahead where one is wanted (a PHP slot restored on it only maps its snapshot:
 * no php-wasm start), then glibc's freed heap back to the kernel (malloc.ts).
 */
async function idleWork(): Promise<void> {
  const engine = blankAheadFor;
  blankAheadFor = undefined;
  if (engine?.preinstantiate !== undefined) {
    try {
      await engine.preinstantiate();
    } catch (e) {
      process.stderr.write(`blank instance ahead: ${describeError(e)}\n`);
    }
  }
  trimMalloc();
}

/** One open slot: an engine instance of one deployment. */
interface Slot {
  instance: EngineInstance;
  deploymentId: string;
  maxResponseBytes: number;
  /** The host told the pool this instance passed WORN_AT (told once: the pool starts one successor). */
  worn: boolean;
}
const slots = new Map<number, Slot>();
/** The account of the first slot: every later slot must be of the same one. */
let account: string | undefined;
/** What was prepared per deployment (engine, prepared image), for more slots of it (`sameImage`). */
const preparedByDeployment = new Map<string, { engine: Engine; prepared: unknown; slots: number }>();
/** An init message arrived (a spare was taken). */
let initStarted = false;

/** Disposes a slot's instance and forgets what was prepared for its deployment once no slot uses it. */
function closeSlot(n: number): void {
  const s = slots.get(n);
  if (s === undefined) return;
  slots.delete(n);
  s.instance.dispose();
  const p = preparedByDeployment.get(s.deploymentId);
  if (p !== undefined && --p.slots <= 0) preparedByDeployment.delete(s.deploymentId);
}

/** Lines the guest's runtime logged while a warm-up request ran (bounded), for the failure message. */
const WARMUP_LOG_TAIL_CHARS = 2048;
let capture: string[] | undefined;
const writeStderr = process.stderr.write.bind(process.stderr);
process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
  if (capture !== undefined) {
    capture.push(typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8"));
    if (capture.length > 64) capture.splice(0, capture.length - 64);
  }
  return (writeStderr as (c: string | Uint8Array, ...r: unknown[]) => boolean)(chunk, ...rest);
}) as typeof process.stderr.write;

/** A warm-up or health request that failed: the instance must never be snapshotted or serve. */
class WarmupFailedError extends Error {
  readonly code = "warmup_failed";
}

/**
 * Runs the manifest's warm-up requests, then its health paths (default "/"; one a warm-up request
 * already asked for is not asked again), so the first real request
 * does not pay for the runtime's lazy start-up (and opcache is warm); then the instance takes the
 * snapshot every reset returns to.
 * Must never: snapshot an instance whose warm-up or health request threw (it may have stopped
 * mid-request: functions of the aborted script still declared) or answered a 5xx. Such a start
 * fails with the request, its status and the last lines the runtime logged (PHP's "Parse error
 * ... in /public/index.php on line 3", Python's traceback): a new deployment is then refused.
 */
async function warmUp(inst: EngineInstance, manifest: Manifest, precompile: boolean, slot: number | undefined): Promise<void> {
  const warm = manifest.warmup;
  const paths = [...warm, ...healthPaths(manifest).filter((p) => !warm.includes(p))];
  const host = manifest.routes[0]?.host.replace(/^\*\.?/, "") || "localhost";
  for (const [index, url] of paths.entries()) {
    // Tenant code runs now: the gateway bounds each warm-up request by timeout_ms (the first also
    // by the runtime's boot allowance: Python imports the app in it) and bills the time.
    send({ t: "warmup", index, ...(slot === undefined ? {} : { slot }) });
    capture = [];
    let failure: string | undefined;
    try {
      const res = await inst.handle({ method: "GET", url, headers: [["host", host], ["user-agent", "zerocell-warmup"]], body: new Uint8Array(0), remoteAddr: "127.0.0.1", remotePort: 0, https: true, serverName: host, serverPort: 443, scriptName: "", params: {} });
      if (res.status >= 500) failure = `GET ${url} answered ${res.status}`;
    } catch (e) {
      failure = `GET ${url} failed: ${describeError(e)}`;
    }
    const logged = capture.join("").trim();
    capture = undefined;
    if (failure !== undefined) {
      const tail = logged.length > WARMUP_LOG_TAIL_CHARS ? "…" + logged.slice(-WARMUP_LOG_TAIL_CHARS) : logged;
      throw new WarmupFailedError(`${failure}${tail === "" ? "" : `\n${tail}`}`);
    }
  }
  // The engine's precompile step gets its own timeout_ms, like one more warm-up request.
  if (precompile && inst.precompile !== undefined) {
    send({ t: "warmup", index: paths.length, ...(slot === undefined ? {} : { slot }) });
    process.stderr.write(`precompile: ${JSON.stringify(await inst.precompile())}\n`);
  }
  inst.snapshot();
}

async function onFrame(frame: Frame): Promise<void> {
  // The gateway is trusted: its messages are typed, not re-validated.
  const h = frame.header as unknown as GatewayMessage;
  switch (h.t) {
    case "init": {
      initStarted = true;
      const init = h;
      // Replies name the slot only when it is not 0 (a one-slot host speaks as before).
      const sn = init.slot ?? 0;
      const tag = sn === 0 ? {} : { slot: sn };
      if (sn < 0 || sn >= PROTOCOL_LIMITS.maxSlotsPerHost || slots.has(sn)) {
        send({ t: "fail", ...tag, code: "bad_slot", message: `init: slot ${sn} is open or out of range` });
        return;
      }
      // Must never: an instance of a second account in this process.
      const acct = init.accountId ?? `deployment:${init.deploymentId}`;
      if (account !== undefined && account !== acct) {
        send({ t: "fail", ...tag, code: "account_mismatch", message: "init: this host carries another account's instances" });
        return;
      }
      account = acct;
      let instance: EngineInstance | undefined;
      const t0 = performance.now();
      // Where the start's time goes (server-timing of the first request; display only).
      const phases: { send?: number; engine?: number; prepare?: number; instantiate?: number; import?: number; warmup?: number; snapshot?: number } = {};
      if (init.sentAt !== undefined) phases.send = Math.max(0, performance.timeOrigin + t0 - init.sentAt);
      let spareEngine = false;
      try {
        const engine = preloaded !== undefined && init.manifest.runtime === startRuntime ? await preloaded : await loadEngine(init.manifest.runtime);
        const t1 = performance.now();
        phases.engine = t1 - t0;
        // Another slot of this deployment was prepared already: its image and checks are reused.
        const known = init.sameImage === true ? preparedByDeployment.get(init.deploymentId) : undefined;
        if (init.sameImage === true && known === undefined) throw new Error(`no prepared image of ${init.deploymentId} in this host`);
        // A copy of the image's bytes: the decoded entries are views into it and engines keep them
        // (realm rebuilds, x86's file tree); views into the frame would pin the snapshot after it too.
        const prepared =
          known !== undefined
            ? known.prepared
            : await engine.prepare({ deploymentId: init.deploymentId, manifest: init.manifest, image: decodeImage(Buffer.from(frame.body.subarray(0, init.imageBytes))), env: init.env ?? {}, maxResponseBytes: init.maxResponseBytes });
        const t2 = performance.now();
        phases.prepare = t2 - t1;
        const build = engine.buildId(init.manifest);
        const restoring = !init.cold && init.snapshot !== undefined && init.snapshot.engineBuild === build;
        instance = await engine.instantiate(prepared, { forRestore: restoring });
        const t3 = performance.now();
        phases.instantiate = t3 - t2;
        let restored = false;
        if (restoring && init.snapshot !== undefined) {
          try {
            const file = init.snapshot.file;
            await instance.importSnapshot({ memory: file === undefined ? frame.body.subarray(init.imageBytes) : Buffer.alloc(0), globals: init.snapshot.globals.map(Number), extra: init.snapshot.extra, ...(file === undefined ? {} : { file }) });
            restored = true;
            spareEngine = instance.spareEngine === true;
          } catch (e) {
            // A snapshot that does not load: start cold (a fresh instance, the snapshot is not reused).
            process.stderr.write(`snapshot import failed, starting cold: ${(e as Error).message}\n`);
            instance.dispose();
            instance = await engine.instantiate(prepared);
          }
          phases.import = performance.now() - t3;
        }
        const cpu0 = process.cpuUsage();
        const t4 = performance.now();
        if (!restored) await warmUp(instance, init.manifest, !init.cold, init.slot);
        const cpu = process.cpuUsage(cpu0);
        if (!restored) phases.warmup = performance.now() - t4;
        if (!restored && init.wantSnapshot && !init.cold) {
          // Captured and sent before "ready" (the state every reset returns to): a host that is
          // ready owes nothing, so the pool may evict it for the memory budget at once without
          // losing its deployment's snapshot.
          // Sent gzip'd (level 1, on libuv's threads: ~28 MB of a PHP hello image → ~4 MB): the
          // gateway stores it as it comes instead of receiving the whole image through the pipe
          // (fresh pages, its GC) and compressing it itself. `keep` (the snapshot, which owns the
          // mapping the blocks view) is held until the gzip has read them.
          const chunked = instance.exportSnapshotChunks?.();
          const snap = chunked ?? instance.exportSnapshot();
          const blocks = chunked?.chunks ?? [snap.memory];
          const memoryBytes = blocks.reduce((n, b) => n + b.byteLength, 0);
          const gz = await gzipPieces(blocks, 1);
          void chunked?.keep;
          // The gzip's own pieces, corked into one writev (no joined copy of them).
          out.cork();
          for (const part of encodeFrameChunks({ t: "snapshot", ...tag, engine: engine.runtime, engineBuild: build, globals: snap.globals.map(String), extra: snap.extra, encoding: "gzip", memoryBytes }, gz)) out.write(part);
          out.uncork();
          phases.snapshot = performance.now() - t4 - (phases.warmup ?? 0);
        }
        slots.set(sn, { instance, deploymentId: init.deploymentId, maxResponseBytes: init.maxResponseBytes, worn: false });
        const p = preparedByDeployment.get(init.deploymentId);
        if (p === undefined) preparedByDeployment.set(init.deploymentId, { engine, prepared, slots: 1 });
        else p.slots++;
        send({ t: "ready", ...tag, ms: performance.now() - t0, restored, phases, ...(restored ? { spareEngine } : { warmupCpuUs: cpu.user + cpu.system }) });
        if (slots.size === 1) collectSoon();
        if (init.blankAhead === true && engine.preinstantiate !== undefined && engine.blankAheadInSlots !== false) blankAheadFor = engine;
        whenIdle();
      } catch (e) {
        // A failed warm-up leaves an instance nobody may use: the host exits after saying why.
        // The slot is not opened; the gateway closes the host if no other slot is open.
        try {
          instance?.dispose();
        } catch {
          // half-made: nothing more to free
        }
        if (e instanceof WarmupFailedError) {
          send({ t: "fail", ...tag, code: e.code, message: `warm-up: ${e.message}` });
        } else send({ t: "fail", ...tag, code: isZerocellError(e) ? e.code : "init_failed", message: `init: ${describeError(e)}` });
      }
      return;
    }
    case "req": {
      const r = h;
      const sn = r.slot ?? 0;
      const tag = sn === 0 ? {} : { slot: sn };
      const slot = slots.get(sn);
      if (slot === undefined) {
        send({ t: "fail", id: r.id, code: "not_ready", message: `host: request for slot ${sn}, which is not open` });
        send({ t: "idle", ...tag });
        return;
      }
      const { instance, maxResponseBytes } = slot;
      const t0 = performance.now();
      const cpu0 = process.cpuUsage();
      try {
        const body = frame.body.subarray(0, r.bodyBytes);
        const data = r.dataBytes === undefined ? undefined : frame.body.subarray(r.bodyBytes, r.bodyBytes + r.dataBytes);
        const res = await instance.handle({ ...r.req, body, ...(data === undefined ? {} : { data }) });
        const runMs = performance.now() - t0;
        // CPU time of this process while the request ran (the guest plus its engine), µs.
        const cpu = process.cpuUsage(cpu0);
        const instructions = res.usage?.instructions;
        const guestMs = res.usage?.guestMs;
        if (res.body.byteLength > maxResponseBytes) {
          send({ t: "fail", id: r.id, code: "response_too_large", message: `response body of ${res.body.byteLength} bytes exceeds the limit of ${maxResponseBytes} bytes` });
        } else {
          // startedAt (wall-clock ms, sub-ms precision) lets the gateway compute request arrival → guest start.
          const out = res.data === undefined ? res.body : Buffer.concat([res.body, res.data]);
          send({ t: "res", id: r.id, status: res.status, headers: res.headers, runMs, startedAt: performance.timeOrigin + t0, bodyBytes: res.body.byteLength, cpuUs: cpu.user + cpu.system, ...(instructions === undefined ? {} : { instructions }), ...(guestMs === undefined ? {} : { guestMs }), ...(res.data === undefined ? {} : { dataBytes: res.data.byteLength }) }, out);
        }
      } catch (e) {
        // An engine's own limit errors keep their code (response_too_large → 502 at the gateway).
        send({ t: "fail", id: r.id, code: isZerocellError(e) ? e.code : "guest_error", message: describeError(e) });
        // Must never: reuse an instance whose request was aborted, for any reason (a JS-level
        // failure inside the engine, or the engine stopping the guest at one of its own limits):
        // it may be mid-call with state a reset does not undo. Ask to be replaced; the pool
        // stops it (it was never snapshotted: the snapshot is taken before any request).
        send({ t: "tainted", ...tag });
      }
      let resetMs: number | undefined;
      let resetCpuUs: number | undefined;
      if (r.reset) {
        const t1 = performance.now();
        const c1 = process.cpuUsage();
        try {
          await instance.reset();
          resetMs = performance.now() - t1;
          const c = process.cpuUsage(c1);
          resetCpuUs = c.user + c.system;
        } catch (e) {
          process.stderr.write(`reset failed: ${(e as Error).message}\n`);
          send({ t: "tainted", ...tag });
        }
      }
      // Daemon mode: an instance that used up what a reset gives back goes back to its snapshot
      // here (~0.1 ms) rather than being replaced by a new host (~1 s of CPU): a worker recycled
      // as php-fpm's pm.max_requests does, its kept state starting over.
      if (!r.reset && instance.recycleDue?.() === true) {
        try {
          await instance.reset();
        } catch (e) {
          process.stderr.write(`recycle failed: ${(e as Error).message}\n`);
          send({ t: "tainted", ...tag });
        }
      }
      // An engine may run out of something only a new instance frees (daemon mode: what only a
      // reset frees; any mode: a runtime stopped mid-request).
      if (instance.exhausted?.() === true) send({ t: "tainted", ...tag });
      else if (!slot.worn && (instance.wear?.() ?? 0) >= WORN_AT) {
        slot.worn = true;
        send({ t: "worn", ...tag });
      }
      send({ t: "idle", ...tag, ...(resetMs === undefined ? {} : { resetMs }), ...(resetCpuUs === undefined ? {} : { resetCpuUs }) });
      bootCollection?.();
      whenIdle();
      return;
    }
    case "mem": {
      const m = process.memoryUsage();
      const h = v8.getHeapStatistics();
      const c = v8.getHeapCodeStatistics();
      send({
        t: "mem",
        process: { rss: m.rss, heapTotal: m.heapTotal, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers },
        v8: { totalPhysicalSize: h.total_physical_size, mallocedMemory: h.malloced_memory, peakMallocedMemory: h.peak_malloced_memory },
        code: { codeAndMetadata: c.code_and_metadata_size, bytecodeAndMetadata: c.bytecode_and_metadata_size, externalScriptSource: c.external_script_source_size },
        ...memoryOfSlots(),
        mallocTrims: mallocTrims(),
      });
      return;
    }
    case "close":
      closeSlot(h.slot);
      return;
    case "exit":
      for (const n of [...slots.keys()]) closeSlot(n);
      out.end(() => process.exit(0));
      return;
    default:
      process.stderr.write(`host: unknown message ${String((h as { t?: unknown }).t)}\n`);
  }
}

/** The slots' instances' memory figures, summed (diagnostics). */
function memoryOfSlots(): { instance?: Record<string, number>; slots: number } {
  const sum: Record<string, number> = {};
  let any = false;
  for (const s of slots.values()) {
    const info = s.instance.memoryInfo?.();
    if (info === undefined) continue;
    any = true;
    for (const [k, v] of Object.entries(info)) if (typeof v === "number") sum[k] = (sum[k] ?? 0) + v;
  }
  return { ...(any ? { instance: sum } : {}), slots: slots.size };
}

const decoder = new FrameDecoder(PROTOCOL_LIMITS.maxGatewayFrameBytes);
let chain = Promise.resolve();
process.stdin.on("data", (chunk: Buffer) => {
  for (const frame of decoder.push(chunk)) chain = chain.then(() => onFrame(frame));
});
process.stdin.on("end", () => process.exit(0));
