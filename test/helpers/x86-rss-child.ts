/**
 * Run in a child process by test/unit/x86-hostile.test.ts (node --import tsx): one x86 engine
 * instance serves one request of a program from test/fixtures/x86-exec/ (after a warm-up
 * request to <warmup path>), then prints how the request ended and the process's peak RSS, so
 * host memory is measured in a process that did nothing else.
 * argv: <binary> <path> <maxResponseBytes> <memoryMb> <warmup path>.
 */
import { readFileSync } from "node:fs";
import type { EngineRequest } from "../../src/runtime/engine.js";
import { X86Engine } from "../../src/runtime/x86/index.js";
import { x86Image, x86Manifest } from "./x86.js";

const [bin, path, limit, memoryMb, warmup] = process.argv.slice(2) as [string, string, string, string, string];
// (The contract's request() lives in a module that needs vitest: a plain one here.)
const request = (url: string): EngineRequest => ({ method: "GET", url, headers: [["host", "flood.localhost"]], body: new Uint8Array(0), remoteAddr: "127.0.0.1", remotePort: 1, https: true, serverName: "flood.localhost", serverPort: 443, scriptName: "", params: {} });
const engine = new X86Engine({ log: () => {} });
const image = x86Image({ "bin/app": readFileSync(bin) });
const inst = await engine.instantiate(await engine.prepare({ deploymentId: "rss", manifest: x86Manifest("bin/app", { memoryMb: Number(memoryMb), timeoutMs: 60_000 }), image, maxResponseBytes: Number(limit) }));
// Warm up (init, the first request) before the baseline, so only the flood is measured.
await inst.handle(request(warmup));
await inst.reset();
const baseRss = process.memoryUsage().rss;
const t0 = performance.now();
let outcome: Record<string, unknown>;
try {
  const r = await inst.handle(request(path));
  outcome = { status: r.status, bodyBytes: r.body.byteLength, ...(r.body.byteLength <= 4096 ? { body: Buffer.from(r.body).toString("utf8") } : {}) };
} catch (e) {
  const err = e as { code?: string; status?: number; message?: string };
  outcome = { code: err.code, status: err.status, message: err.message };
}
const ms = performance.now() - t0;
inst.dispose();
process.stdout.write(JSON.stringify({ ...outcome, ms, baseRss, maxRss: process.resourceUsage().maxRSS * 1024 }) + "\n");
