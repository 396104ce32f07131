/**
 * The gateway↔host protocol (src/protocol): frames are bounded before anything is buffered, and
 * every host message is parsed against a schema that carries its bounds — what a compromised
 * host could send to the gateway.
 */
import { describe, it, expect } from "vitest";
import { encodeFrame, encodeFrameChunks, FrameDecoder, parseHostMessage, PROTOCOL_LIMITS, maxHostFrameBytes } from "../../src/protocol/index.js";

const okRes = { t: "res", id: 7, status: 200, headers: [["content-type", "text/plain"]], runMs: 1.5, startedAt: 1.7e12, bodyBytes: 2, cpuUs: 900 };

describe("framing", () => {
  it("round-trips frames split at every byte", () => {
    const a = encodeFrame({ t: "idle" });
    const b = encodeFrame(okRes, Buffer.from("hi"));
    const all = Buffer.concat([a, b]);
    for (let cut = 0; cut <= all.length; cut++) {
      const d = new FrameDecoder(1024);
      const frames = [...d.push(all.subarray(0, cut)), ...d.push(all.subarray(cut))];
      expect(frames.map((f) => f.header.t)).toEqual(["idle", "res"]);
      expect(frames[1]!.body.toString()).toBe("hi");
    }
  });

  it("refuses a frame over the limit from its length alone, and malformed headers", () => {
    const d = new FrameDecoder(100);
    const big = Buffer.alloc(8);
    big.writeUInt32BE(101, 0);
    expect(() => d.push(big)).toThrow(/exceeds the limit of 100 bytes/);
    const bad = Buffer.alloc(12);
    bad.writeUInt32BE(8, 0);
    bad.writeUInt32BE(4, 4);
    bad.write("nope", 8);
    expect(() => new FrameDecoder(100).push(bad)).toThrow(/not JSON/);
    const arr = encodeFrame([1, 2]);
    expect(() => new FrameDecoder(100).push(arr)).toThrow(/not an object/);
  });

  it("keeps a large body (≥ 1 MiB) in the chunks it arrived in, whole and in order, with the frames around it intact", () => {
    const big = Buffer.alloc(3 * 1024 * 1024 + 17);
    for (let i = 0; i < big.length; i += 4093) big[i] = (i / 4093) & 0xff;
    const header = { t: "snapshot", engine: "php", engineBuild: "b", globals: ["1"], extra: { pad: "x".repeat(200) } };
    const all = Buffer.concat([encodeFrame({ t: "idle" }), encodeFrameChunks(header, [big.subarray(0, 1000), big.subarray(1000)]).reduce((a, b) => Buffer.concat([a, b])), encodeFrame(okRes, Buffer.from("hi"))]);
    // Chunk sizes that split the prefix, the header and the body anywhere.
    for (const size of [3, 65536, 100_003]) {
      const d = new FrameDecoder(8 * 1024 * 1024);
      const frames = [];
      for (let at = 0; at < all.length; at += size) frames.push(...d.push(all.subarray(at, at + size)));
      expect(frames.map((f) => f.header.t)).toEqual(["idle", "snapshot", "res"]);
      const snap = frames[1]!;
      expect(snap.header).toEqual(header);
      expect(snap.bodyBytes).toBe(big.length);
      expect(snap.bodyChunks!.length).toBeGreaterThan(1);
      expect(Buffer.concat(snap.bodyChunks!).equals(big)).toBe(true);
      expect(snap.body.equals(big)).toBe(true);
      expect(frames[2]!.body.toString()).toBe("hi");
    }
  });

  it("refuses a large frame whose header length does not fit it", () => {
    const frame = encodeFrame({ t: "snapshot" }, Buffer.alloc(2 * 1024 * 1024));
    frame.writeUInt32BE(frame.length, 4);
    const d = new FrameDecoder(8 * 1024 * 1024);
    expect(() => {
      for (let at = 0; at < frame.length; at += 65536) d.push(frame.subarray(at, at + 65536));
    }).toThrow(/malformed message header length/);
  });

  it("sizes the host's frames from the response limit and the snapshot limit", () => {
    expect(maxHostFrameBytes(1024)).toBe(PROTOCOL_LIMITS.maxSnapshotBytes + PROTOCOL_LIMITS.maxHeaderBytes);
    expect(maxHostFrameBytes(2 ** 30)).toBe(2 ** 30 + PROTOCOL_LIMITS.maxHeaderBytes);
  });
});

describe("host messages (untrusted)", () => {
  it("accepts each well-formed message", () => {
    for (const m of [
      { t: "ready", ms: 12.5, restored: false, warmupCpuUs: 1000 },
      { t: "warmup", index: 0 },
      okRes,
      { t: "fail", id: 3, code: "guest_error", message: "boom" },
      { t: "fail", code: "init_failed", message: "init: x" },
      { t: "snapshot", engine: "php", engineBuild: "php-wasm-3.1.54/x", globals: ["123", "-4"], extra: { fds: [] } },
      { t: "snapshot", engine: "php", engineBuild: "b", globals: [], extra: null, encoding: "gzip", memoryBytes: 30 * 1024 * 1024 },
      { t: "tainted" },
      { t: "worn" },
      { t: "idle", resetMs: 0.4 },
      { t: "idle" },
    ]) {
      const r = parseHostMessage(m);
      expect(r.ok, JSON.stringify(m)).toBe(true);
    }
  });

  it("refuses what a compromised host could send to overflow or confuse the gateway", () => {
    const bad: Array<Record<string, unknown>> = [
      { t: "unknown" },
      {},
      { ...okRes, status: 1000 },
      { ...okRes, status: 99 },
      { ...okRes, status: 200.5 },
      { ...okRes, status: "200" },
      { ...okRes, headers: Array.from({ length: PROTOCOL_LIMITS.maxResponseHeaders + 1 }, () => ["x", "y"]) },
      { ...okRes, headers: [["x".repeat(257), "y"]] },
      { ...okRes, headers: [["x", "y".repeat(16 * 1024 + 1)]] },
      { ...okRes, headers: [["x"]] },
      { ...okRes, headers: [["x", 1]] },
      { ...okRes, runMs: -1 },
      { ...okRes, bodyBytes: -1 },
      { ...okRes, bodyBytes: 1.5 },
      { ...okRes, cpuUs: -5 },
      { ...okRes, cpuUs: 2 ** 60 },
      { ...okRes, instructions: -1 },
      { ...okRes, id: "7" },
      { t: "warmup", index: PROTOCOL_LIMITS.maxWarmupIndex + 1 },
      { t: "warmup" },
      { t: "snapshot", engine: "php", engineBuild: "x".repeat(257), globals: [], extra: null },
      { t: "snapshot", engine: "php", engineBuild: "b", globals: ["1e3"], extra: null },
      { t: "snapshot", engine: "php", engineBuild: "b", globals: Array.from({ length: 17 }, () => "1"), extra: null },
      { t: "snapshot", engine: "php", engineBuild: "b", globals: [], extra: null, encoding: "br", memoryBytes: 1 },
      { t: "snapshot", engine: "php", engineBuild: "b", globals: [], extra: null, encoding: "gzip", memoryBytes: PROTOCOL_LIMITS.maxSnapshotBytes + 1 },
      { t: "snapshot", engine: "php", engineBuild: "b", globals: [], extra: null, encoding: "gzip", memoryBytes: -1 },
      { t: "fail", id: 1, code: 5, message: "x" },
      { t: "ready", warmupCpuUs: -1 },
      { t: "idle", resetMs: -1 },
    ];
    for (const m of bad) expect(parseHostMessage(m).ok, JSON.stringify(m).slice(0, 120)).toBe(false);
  });

  it("names the request of a malformed reply, so only that request fails", () => {
    const r = parseHostMessage({ ...okRes, status: 5000 });
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.t).toBe("res");
      expect(r.id).toBe(7);
      expect(r.reason).toMatch(/status/);
    }
  });

  it("truncates a failure's code and message to the gateway's bounds", () => {
    const r = parseHostMessage({ t: "fail", id: 1, code: "c".repeat(500), message: "m".repeat(50_000) });
    expect(r.ok).toBe(true);
    if (r.ok && r.msg.t === "fail") {
      expect(r.msg.code.length).toBe(PROTOCOL_LIMITS.maxFailCodeChars);
      expect(r.msg.message.length).toBe(PROTOCOL_LIMITS.maxFailMessageChars);
    }
  });
});

describe("host slots in the protocol", () => {
  it("a host message names a slot within the limit, or is refused", () => {
    const last = PROTOCOL_LIMITS.maxSlotsPerHost - 1;
    for (const t of ["idle", "tainted", "worn"]) {
      expect(parseHostMessage({ t, slot: last }).ok).toBe(true);
      expect(parseHostMessage({ t, slot: last + 1 }).ok).toBe(false);
      expect(parseHostMessage({ t, slot: -1 }).ok).toBe(false);
      expect(parseHostMessage({ t, slot: 1.5 }).ok).toBe(false);
    }
    expect(parseHostMessage({ t: "ready", slot: 3, restored: true }).ok).toBe(true);
    expect(parseHostMessage({ t: "fail", slot: last + 1, code: "x", message: "y" }).ok).toBe(false);
    expect(parseHostMessage({ t: "mem", process: { rss: 1, heapTotal: 1, heapUsed: 1, external: 1, arrayBuffers: 1 }, v8: { totalPhysicalSize: 1, mallocedMemory: 1, peakMallocedMemory: 1 }, code: { codeAndMetadata: 1, bytecodeAndMetadata: 1, externalScriptSource: 1 }, slots: PROTOCOL_LIMITS.maxSlotsPerHost + 1 }).ok).toBe(false);
  });
});
