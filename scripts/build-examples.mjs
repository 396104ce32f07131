// Builds the examples' generated files from their sources: examples/*/data/schema.sql → *.sqlite.
import { existsSync, readdirSync, readFileSync, statSync, rmSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";

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
