// Builds the examples' generated files from their sources: examples/*/data/schema.sql → *.sqlite.
import { existsSync, readdirSync, readFileSync, statSync, rmSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "examples");
for (const app of readdirSync(root)) {
  const schema = join(root, app, "data", "schema.sql");
  if (!existsSync(schema)) continue;
  const target = join(root, app, "data", "blog.sqlite");
  if (existsSync(target) && statSync(target).mtimeMs >= statSync(schema).mtimeMs) continue;
  rmSync(target, { force: true });
  const db = new Database(target);
  db.pragma("journal_mode = DELETE");
  db.exec(readFileSync(schema, "utf8"));
  db.close();
  console.log(`built ${target}`);
}

// Native examples: src/app.c → bin/app with musl-gcc -static (scripts/apt-packages.txt has musl-tools).
const include = join(dirname(fileURLToPath(import.meta.url)), "..", "include");
for (const app of readdirSync(root)) {
  const src = join(root, app, "src", "app.c");
  if (!existsSync(src)) continue;
  const out = join(root, app, "bin", "app");
  if (existsSync(out) && statSync(out).mtimeMs >= statSync(src).mtimeMs) continue;
  mkdirSync(join(root, app, "bin"), { recursive: true });
  execFileSync("musl-gcc", ["-static", "-O2", "-I", include, "-o", out, src], { stdio: "inherit" });
  console.log(`built ${out}`);
}
