/**
 * Opcache sizing (src/runtime/php/validate.ts opcacheSizing) and its manifest setting
 * ([php] opcache_mb): derived from the bundle's PHP source, bounded by limits.memory_mb, written
 * into php.ini by the platform only (a bundle's [php.ini] still may not name opcache.*).
 */
import { describe, it, expect } from "vitest";
import type { BundleImage } from "../../src/bundle/index.js";
import { parseManifest } from "../../src/runtime/manifest.js";
import { buildPhpIni, opcacheSizing, OPCACHE_SIZING, phpEngineBuild } from "../../src/runtime/php/validate.js";

function image(files: Record<string, number>): BundleImage {
  const entries = Object.entries(files).map(([path, size]) => ({ path, kind: "file" as const, mode: 0o644, data: Buffer.alloc(size, 0x20) }));
  return { entries, totalBytes: entries.reduce((n, e) => n + e.data.length, 0) };
}

const MiB = 1024 * 1024;

describe("opcache sizing", () => {
  it("keeps hello world at the minimum and grows with the PHP source (other files do not count)", () => {
    const m = parseManifest(`runtime = "php"\n`);
    expect(opcacheSizing(m, image({ "index.php": 100 })).memoryMb).toBe(OPCACHE_SIZING.minMb);
    const big = opcacheSizing(m, image({ "a.php": 10 * MiB, "b.inc": 2 * MiB, "video.mp4": 50 * MiB }));
    // 12 MiB of PHP × 5 + 4, rounded up to 8.
    expect(big.memoryMb).toBe(64);
    expect(big.internedMb).toBeGreaterThanOrEqual(6);
    expect(big.internedMb).toBeLessThanOrEqual(big.memoryMb / 4);
  });

  it("never goes above limits.memory_mb (opcache is part of the instance's heap)", () => {
    const m = parseManifest(`runtime = "php"\n[limits]\nmemory_mb = 32\n`);
    expect(opcacheSizing(m, image({ "a.php": 100 * MiB })).memoryMb).toBe(32);
  });

  it("takes [php] opcache_mb when set, within 8..memory_mb", () => {
    const m = parseManifest(`runtime = "php"\n[php]\nopcache_mb = 96\n[limits]\nmemory_mb = 128\n`);
    expect(opcacheSizing(m, image({ "a.php": 10 })).memoryMb).toBe(96);
    expect(buildPhpIni(m, opcacheSizing(m, image({ "a.php": 10 })))).toContain("opcache.memory_consumption = 96\n");
    expect(() => parseManifest(`runtime = "php"\n[php]\nopcache_mb = 512\n`)).toThrow(/php\.opcache_mb: must be at most limits\.memory_mb \(128\)/);
    expect(() => parseManifest(`runtime = "php"\n[php]\nopcache_mb = 4\n`)).toThrow(/php\.opcache_mb: must be an integer between 8 and 1024/);
    expect(() => parseManifest(`runtime = "php"\n[php]\nopcache_mb = "64"\n`)).toThrow(/php\.opcache_mb/);
    // The php.ini allow-list is unchanged: opcache.* stays the platform's.
    expect(() => parseManifest(`runtime = "php"\n[php.ini]\n"opcache.memory_consumption" = 64\n`)).toThrow(/cannot be set by a bundle/);
  });

  it("the build id follows the manifest's setting", () => {
    const a = parseManifest(`runtime = "php"\n`);
    const b = parseManifest(`runtime = "php"\n[php]\nopcache_mb = 64\n`);
    expect(phpEngineBuild(a)).not.toBe(phpEngineBuild(b));
  });
});
