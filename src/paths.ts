/** Where the installed platform lives (code, migrations), found from this file's location. */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

function findPackageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, "package.json")) && existsSync(join(dir, "migrations"))) return dir;
    dir = dirname(dir);
  }
  throw new Error("zerocell: cannot find the package root (package.json + migrations/) above " + fileURLToPath(import.meta.url));
}

export const PACKAGE_ROOT = findPackageRoot();
export const MIGRATIONS_DIR = join(PACKAGE_ROOT, "migrations");
export const DIST_DIR = join(PACKAGE_ROOT, "dist");
export const NODE_MODULES_DIR = join(PACKAGE_ROOT, "node_modules");
