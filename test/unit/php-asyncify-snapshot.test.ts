/**
 * Asyncify's buffer and snapshots (src/runtime/php/asyncify-data.ts). PHP's usleep() unwinds the
 * wasm stack into a buffer the JS glue malloc'd at its first sleep and keeps for ever. Before the
 * fix, an instance whose first sleep came after its snapshot — every instance that imported one
 * (all hosts after a restart), and the snapshot's own instance when its warm-up never slept — had
 * that buffer freed by each reset, so a later request body was placed over it and the sleep wrote
 * the unwound stack into the body (wrong bytes, or "memory access out of bounds").
 */
import { describe, it, expect } from "vitest";
import { createHash } from "node:crypto";
import { PhpEngine } from "../../src/runtime/php/index.js";
import type { BundleImage } from "../../src/bundle/index.js";
import { parseManifest } from "../../src/runtime/manifest.js";
import type { EngineRequest, EngineInstance } from "../../src/runtime/engine.js";

function image(files: Record<string, string>): BundleImage {
  const entries: BundleImage["entries"] = Object.entries(files).map(([path, text]) => ({ path, kind: "file" as const, mode: 0o644, data: Buffer.from(text) }));
  return { entries, totalBytes: entries.reduce((n, e) => n + (e.data?.length ?? 0), 0) };
}

const req = (method: string, url: string, body: Uint8Array): EngineRequest => ({ method, url, headers: [["host", "localhost"], ["content-type", "application/octet-stream"], ["content-length", String(body.length)]], body, remoteAddr: "127.0.0.1", remotePort: 0, https: false, serverName: "localhost", serverPort: 80, scriptName: "", params: {} });

// PUT: PHP reads the body when the script asks for it (after the sleep); POST is read at startup.
const APP = "<?php if (isset($_GET['sleep'])) usleep(1000); $b = file_get_contents('php://input'); echo strlen($b), ' ', md5($b);";
const SIZES = [0, 1, 100, 1000, 4095, 4096, 5000, 8000, 20_000, 65_536, 100_000, 300_000, 1 << 20];

/** Sleeping requests with bodies of every size, a reset after each; the mismatches. */
async function bodies(inst: EngineInstance): Promise<string[]> {
  const fails: string[] = [];
  for (const n of SIZES) {
    for (const method of ["PUT", "POST"]) {
      const body = Buffer.alloc(n, 0x61 + (n % 26));
      const want = `${n} ${createHash("md5").update(body).digest("hex")}`;
      try {
        const r = await inst.handle(req(method, "/?sleep=1", body));
        const got = Buffer.from(r.body).toString();
        if (got !== want) fails.push(`${method} ${n} B: ${r.status} ${got.slice(0, 200)}`);
      } catch (e) {
        fails.push(`${method} ${n} B: ${(e as Error).message}`);
      }
      await inst.reset();
    }
  }
  return fails;
}

describe("php: Asyncify's buffer is part of the snapshot", () => {
  it("an instance that imported a snapshot, and one whose warm-up never slept, serve sleeping requests with intact bodies", async () => {
    const engine = new PhpEngine();
    const prepared = await engine.prepare({ deploymentId: "t", manifest: parseManifest(`runtime = "php"\n`), image: image({ "index.php": APP }) });
    const sleptInWarmup = await engine.instantiate(prepared);
    const neverSlept = await engine.instantiate(prepared);
    const imported = await engine.instantiate(prepared);
    try {
      await sleptInWarmup.handle(req("GET", "/?sleep=1", new Uint8Array(0)));
      sleptInWarmup.snapshot();
      await neverSlept.handle(req("GET", "/", new Uint8Array(0)));
      neverSlept.snapshot();
      const snap = sleptInWarmup.exportSnapshot();
      await imported.importSnapshot(snap);
      expect(await bodies(imported)).toEqual([]);
      expect(await bodies(neverSlept)).toEqual([]);
      expect(await bodies(sleptInWarmup)).toEqual([]);
      expect((snap.extra as { asyncifyData: number }).asyncifyData).toBeGreaterThan(0);
    } finally {
      for (const i of [sleptInWarmup, neverSlept, imported]) i.dispose();
    }
  }, 300_000);

  it("refuses a snapshot without a valid Asyncify buffer (the host then starts cold)", async () => {
    const engine = new PhpEngine();
    const prepared = await engine.prepare({ deploymentId: "t", manifest: parseManifest(`runtime = "php"\n`), image: image({ "index.php": APP }) });
    const a = await engine.instantiate(prepared);
    const b = await engine.instantiate(prepared);
    try {
      await a.handle(req("GET", "/", new Uint8Array(0)));
      a.snapshot();
      const snap = a.exportSnapshot();
      const extra = snap.extra as { fds: unknown; asyncifyData: number };
      for (const bad of [undefined, 0, -4, 3, snap.memory.length, 2 ** 60]) {
        await expect(b.importSnapshot({ ...snap, extra: { fds: extra.fds, asyncifyData: bad } })).rejects.toThrow(/Asyncify buffer/);
      }
      await b.importSnapshot(snap);
      expect(await bodies(b)).toEqual([]);
    } finally {
      a.dispose();
      b.dispose();
    }
  }, 300_000);
});
