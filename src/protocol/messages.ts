/**
 * Every message on the gateway↔host pipe, one vocabulary for both sides.
 *
 * gateway → host (trusted, built by src/pool/host.ts): init, req, close, exit — plain types.
 * A host process carries one or more instances (slots) of ONE account: init opens a slot,
 * req names it, close frees it; the host's replies name the slot they concern (absent = 0).
 * host → gateway (untrusted: a guest may one day escape into its host): zod schemas that carry
 * every bound, parsed by the gateway before anything else reads them (`parseHostMessage`).
 * Must never: let a host message through whose numbers, strings or arrays are unbounded.
 */
import { z } from "zod";
import type { Manifest } from "../bundle/index.js";
import type { EngineRequest } from "../runtime/engine.js";
import { PROTOCOL_LIMITS as L } from "./limits.js";

// --- gateway → host ------------------------------------------------------------------------

export interface InitMessage {
  t: "init";
  /** The slot this init opens (default 0); it must not be open. */
  slot?: number;
  /**
   * The deployment's account. A host refuses an init of another account than its first one's:
   * Must never: carry two accounts' instances in one process (the gateway places slots by
   * account; this is the host's own check of it).
   */
  accountId?: string;
  /**
   * The host already has this deployment's image (another slot was opened with it): none is in
   * the body (imageBytes 0) and the host reuses what it prepared then.
   */
  sameImage?: boolean;
  deploymentId: string;
  manifest: Manifest;
  maxResponseBytes: number;
  /**
   * The app's environment variables for this deployment (secrets decrypted): the engine puts
   * them in the guest's environment before init and warm-up, so a snapshot carries them.
   */
  env: Record<string, string>;
  /** Bytes of the encoded image at the start of the body; a snapshot's memory follows. */
  imageBytes: number;
  /** A stored snapshot to start from (its memory is the rest of the body). */
  /**
   * `file`: the image is not in the frame's body but in a file the host maps (its own private
   * directory, src/snapshot/files.ts): its path and the bytes of memory it covers.
   */
  snapshot?: { engineBuild: string; globals: string[]; extra: unknown; file?: { path: string; bytes: number } };
  /** When the gateway sent this message, wall-clock ms (performance.timeOrigin based): the handoff phase. */
  sentAt?: number;
  /** Send the snapshot back after warm-up (none is stored for this deployment yet). */
  wantSnapshot: boolean;
  /** Run init and warm-up, ignore any snapshot (fresh mode). */
  cold: boolean;
  /**
   * The process may be handed another slot: once idle, make a blank instance ahead for it (the
   * engine's preinstantiate, as a spare does), so that slot's restore only maps its snapshot.
   */
  blankAhead?: boolean;
}

export interface RequestMessage {
  t: "req";
  id: number;
  /** The slot whose instance runs it (default 0). */
  slot?: number;
  req: Omit<EngineRequest, "body" | "data">;
  /** Reset the instance after this request (snapshot mode). */
  reset: boolean;
  /** The body is the request body (bodyBytes) followed by the key's /data image, if any. */
  bodyBytes: number;
  dataBytes?: number;
}

export interface ExitMessage {
  t: "exit";
}

/** Frees a slot's instance (its pool stopped it); the host exits on `exit`, not on this. */
export interface CloseSlotMessage {
  t: "close";
  slot: number;
}

/**
 * A diagnostic: the host answers with a `mem` message (its V8 heap, code, linear memory and the
 * snapshot bytes it holds), for bench/memory.mjs and operators; queued behind any request.
 */
export interface MemoryQueryMessage {
  t: "mem";
}

export type GatewayMessage = InitMessage | RequestMessage | ExitMessage | CloseSlotMessage | MemoryQueryMessage;

// --- host → gateway ------------------------------------------------------------------------

/**
 * The line a spare host writes to stderr once its engine is preloaded (and its blank instance
 * made): before any deployment it has no reply channel, and it has run no tenant code.
 */
export const SPARE_PRELOADED_LINE = "zerocell-spare: preloaded";

const count = z.number().int().nonnegative();
const ms = z.number().nonnegative().finite();
/** The slot a host message concerns (absent: slot 0). */
const slot = count.max(L.maxSlotsPerHost - 1).optional();

export const readyMessage = z.object({
  t: z.literal("ready"),
  slot,
  ms: ms.optional(),
  restored: z.boolean().optional(),
  /** CPU the warm-up took, µs (bounded again by the gateway against its own clock). */
  warmupCpuUs: count.optional(),
  /** Restored on the engine instance a spare host made before it was taken (no instantiate). */
  spareEngine: z.boolean().optional(),
  /**
   * Where the start's time went in the host, ms (display only: server-timing of the first
   * request, the deploy's log record): send = init sent → received (a new process's boot included),
   * engine, prepare, instantiate, then import (restored) or warmup and snapshot (cold).
   */
  phases: z.strictObject({ send: ms.max(3_600_000), engine: ms.max(3_600_000), prepare: ms.max(3_600_000), instantiate: ms.max(3_600_000), import: ms.max(3_600_000), warmup: ms.max(3_600_000), snapshot: ms.max(3_600_000) }).partial().optional(),
});

export const warmupMessage = z.object({ t: z.literal("warmup"), slot, index: count.max(L.maxWarmupIndex) });

export const responseMessage = z.object({
  t: z.literal("res"),
  id: count,
  status: z.number().int().min(100).max(999),
  headers: z.array(z.tuple([z.string().max(L.maxHeaderNameBytes), z.string().max(L.maxHeaderValueBytes)])).max(L.maxResponseHeaders),
  runMs: ms,
  /** When the guest started, wall-clock ms (performance.timeOrigin based). */
  startedAt: z.number().finite().optional(),
  /** Body bytes at the start of the frame body; the key's /data follows (dataBytes). */
  bodyBytes: count,
  dataBytes: count.optional(),
  cpuUs: count.optional(),
  instructions: count.optional(),
  /** CPU ms inside the guest's entry point (the rest of the request's CPU is engine glue); display only. */
  guestMs: ms.optional(),
});

export const failMessage = z.object({
  t: z.literal("fail"),
  /** The request that failed; absent: the slot's init failed. */
  id: count.optional(),
  slot,
  code: z.string().transform((s) => s.slice(0, L.maxFailCodeChars)),
  message: z.string().transform((s) => s.slice(0, L.maxFailMessageChars)),
});

export const snapshotMessage = z.object({
  t: z.literal("snapshot"),
  slot,
  engine: z.string().max(64),
  engineBuild: z.string().max(L.maxEngineBuildChars),
  globals: z.array(z.string().regex(/^-?\d{1,20}$/)).max(L.maxSnapshotGlobals),
  extra: z.unknown(),
  /**
   * "gzip": the body is the memory gzip'd (the gateway stores it as it is; a body that does not
   * inflate to memoryBytes is refused when the snapshot is loaded). Absent: the memory itself.
   */
  encoding: z.literal("gzip").optional(),
  /** With encoding "gzip": the memory's length, bytes. */
  memoryBytes: count.max(L.maxSnapshotBytes).optional(),
});

/** Bytes as a host reports them (untrusted, display only): at most 256 TiB. */
const bytes = count.max(2 ** 48);

/** The host's own view of its memory (process.memoryUsage, v8 heap and code statistics, engine). */
export const memoryMessage = z.object({
  t: z.literal("mem"),
  /** process.memoryUsage(): rss, V8 heap total/used, external (ArrayBuffers and other off-heap), ArrayBuffers. */
  process: z.object({ rss: bytes, heapTotal: bytes, heapUsed: bytes, external: bytes, arrayBuffers: bytes }),
  /** v8.getHeapStatistics(): physical size of the heap, malloc'd by V8 (zones, compiler), peak of that. */
  v8: z.object({ totalPhysicalSize: bytes, mallocedMemory: bytes, peakMallocedMemory: bytes }),
  /** v8.getHeapCodeStatistics(): JS code and bytecode on the heap, external script sources. */
  code: z.object({ codeAndMetadata: bytes, bytecodeAndMetadata: bytes, externalScriptSource: bytes }),
  /** EngineInstance.memoryInfo(), when the engine has one. */
  instance: z.object({ linearBytes: bytes, snapshotBytes: bytes, snapshotHeldBytes: bytes, otherHeldBytes: bytes }).partial().optional(),
  /** Slots open in the host (their instances' figures are summed in `instance`). */
  slots: count.max(L.maxSlotsPerHost).optional(),
  /** malloc_trim calls the host made (src/malloc.ts), when it can make them. */
  mallocTrims: count.optional(),
});

export const taintedMessage = z.object({ t: z.literal("tainted"), slot });
/** The engine passed WORN_AT of what only a new instance frees (sent once): start its successor. */
export const wornMessage = z.object({ t: z.literal("worn"), slot });
export const idleMessage = z.object({ t: z.literal("idle"), slot, resetMs: ms.optional(), resetCpuUs: count.optional() });

export const hostMessage = z.discriminatedUnion("t", [readyMessage, warmupMessage, responseMessage, failMessage, snapshotMessage, taintedMessage, wornMessage, idleMessage, memoryMessage]);

export type HostMessage = z.infer<typeof hostMessage>;
export type ResponseMessage = z.infer<typeof responseMessage>;
export type HostMemoryReport = Omit<z.infer<typeof memoryMessage>, "t">;

/**
 * A host message, or why it is not one. A malformed reply to a request names its id (when that
 * much is readable) so only that request fails, not the host.
 */
export function parseHostMessage(header: Record<string, unknown>): { ok: true; msg: HostMessage } | { ok: false; t: unknown; id: number | undefined; reason: string } {
  const r = hostMessage.safeParse(header);
  if (r.success) return { ok: true, msg: r.data };
  const id = typeof header.id === "number" && Number.isSafeInteger(header.id) ? header.id : undefined;
  const issue = r.error.issues[0];
  return { ok: false, t: header.t, id, reason: `${issue?.path.join(".") || "message"}: ${issue?.message ?? "invalid"}` };
}
