/**
 * Admin API: `GET /v1/pool/memory` (admin tokens only: it names processes) — where the memory of
 * the gateway and of every sandbox host goes. Per host: its pids (the wrapper and the node process
 * inside it), RSS/PSS/USS from /proc/<pid>/smaps_rollup (read here: the gateway may read its
 * hosts' /proc, the hosts may not) and the host's own report (V8 heap and code, wasm linear
 * memory, snapshot bytes it holds; untrusted, display only). The gateway: the same rollup, its V8
 * heap and the cache of gzip'd snapshots. bench/memory.mjs reads it.
 */
import { readRollup } from "../../pool/spawn.js";
import v8 from "node:v8";
import { z } from "@hono/zod-openapi";
import type { AdminRoutes } from "./kit.js";

export const MEMORY_ENDPOINTS = {
  "GET /v1/pool/memory": ["admin"],
} as const;

export function registerMemoryRoutes({ endpoint, platform }: AdminRoutes<keyof typeof MEMORY_ENDPOINTS>): void {
  const spec = {
    tag: "operations",
    summary: "Memory of the gateway and of every sandbox host (smaps rollup and the host's own report), admin tokens",
    responses: { 200: { description: "Memory per process", schema: z.looseObject({ gateway: z.looseObject({ pid: z.number().int() }), hosts: z.array(z.looseObject({ deploymentId: z.string(), pid: z.number().int() })), spares: z.looseObject({}) }) } },
  };
  endpoint("GET /v1/pool/memory", spec, async (c) => {
    const hosts = await Promise.all(
      platform.pool.hosts().map(async ({ deploymentId, app, mode, host }) => {
        const nodePid = host.nodePid;
        return { deploymentId, app, mode, pid: host.pid, nodePid: nodePid ?? null, rollup: nodePid === undefined ? null : (readRollup(nodePid) ?? null), report: (await host.memory?.()) ?? null };
      }),
    );
    const m = process.memoryUsage();
    const h = v8.getHeapStatistics();
    const gateway = {
      pid: process.pid,
      rollup: readRollup(process.pid) ?? null,
      process: { rss: m.rss, heapTotal: m.heapTotal, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers },
      v8: { totalPhysicalSize: h.total_physical_size, mallocedMemory: h.malloced_memory },
      snapshotCache: platform.snapshots.cacheStats(),
    };
    // With --instances-per-host > 1: each process, its account and its open slots.
    return c.json({ gateway, hosts, spares: platform.pool.spares(), processes: platform.pool.hostProcesses() });
  });
}
