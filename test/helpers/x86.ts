/** Shared by the x86 tests: fixture programs built from source, manifests and images for them. */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { BundleEntry, BundleImage, Manifest } from "../../src/bundle/index.js";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** Builds test/fixtures/x86-exec/*.c (idempotent) and returns a fixture binary. */
export function x86Fixture(name: string): Buffer {
  execFileSync(`${ROOT}/scripts/build-x86-exec-fixtures.sh`, { stdio: ["ignore", "ignore", "inherit"] });
  return readFileSync(`${ROOT}/test/fixtures/build/x86-exec/${name}`);
}

/** An x86 manifest with the defaults the tests need. */
export function x86Manifest(program: string, limits: Partial<Manifest["limits"]> = {}): Manifest {
  return {
    runtime: "x86",
    x86: { program },
    routes: [],
    limits: { timeoutMs: 10_000, memoryMb: 32, maxBodyBytes: 10 * 1024 * 1024, dataMb: 16, ...limits },
    warmup: [],
  } as unknown as Manifest;
}

/** A bundle image from files (parent directories added). */
export function x86Image(files: Record<string, Buffer>): BundleImage {
  const entries = new Map<string, BundleEntry>();
  let totalBytes = 0;
  for (const [path, data] of Object.entries(files)) {
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join("/");
      entries.set(dir, { path: dir, kind: "dir", mode: 0o755 });
    }
    entries.set(path, { path, kind: "file", mode: 0o755, data });
    totalBytes += data.length;
  }
  return { entries: [...entries.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)), totalBytes };
}
