#!/usr/bin/env node
// Copies the non-TypeScript source files the code reads at run time (ASSET_EXTENSIONS) from src/
// into dist/src/ at the same relative paths, after `tsc` (which copies nothing). Hosts read dist/
// only (Node's permission model), e.g. src/runtime/python/driver.py next to driver.js.
import { copyFileSync, mkdirSync, readdirSync } from "node:fs";
import { dirname, extname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const ASSET_EXTENSIONS = new Set([".py"]);

let copied = 0;
for (const entry of readdirSync(join(ROOT, "src"), { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || !ASSET_EXTENSIONS.has(extname(entry.name))) continue;
  const from = join(entry.parentPath ?? entry.path, entry.name);
  const to = join(ROOT, "dist", relative(ROOT, from));
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(from, to);
  copied++;
}
if (copied === 0) throw new Error("copy-assets: no asset found under src/ (expected src/runtime/python/driver.py)");
