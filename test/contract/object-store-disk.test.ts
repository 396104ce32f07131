import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { it, expect } from "vitest";
import { openDb, Store } from "../../src/store/index.js";
import { DiskObjectStore } from "../../src/objects/index.js";
import { runObjectStoreContract } from "./object-store.contract.js";

let dir = "";

runObjectStoreContract("disk", async (limits) => {
  dir = mkdtempSync(join(tmpdir(), "zc-objects-"));
  const db = openDb(join(dir, "zerocell.db"));
  const store = new Store(db);
  const a = store.createAccount("acct-a", null).id;
  const b = store.createAccount("acct-b", null).id;
  const objects = new DiskObjectStore({ db, dir: join(dir, "objects"), limits });
  return {
    store: objects,
    accounts: [a, b],
    close: async () => {
      await objects.close();
      db.close();
    },
  };
});

// Disk-specific: after the suite's work, the blob directory holds only files named by their hash
// (keys never become paths) and no temp file is left behind.
it("disk: blobs are content-addressed files only; no temp files remain", () => {
  const blobs = join(dir, "objects", "blobs");
  const files: string[] = [];
  for (const sub of readdirSync(blobs)) {
    expect(sub).toMatch(/^[0-9a-f]{2}$/);
    for (const f of readdirSync(join(blobs, sub))) {
      expect(f).toMatch(/^[0-9a-f]{62}$/);
      files.push(sub + f);
    }
  }
  // Replaced and deleted objects' bytes are gone: exactly one blob per distinct content in use.
  const db = openDb(join(dir, "zerocell.db"));
  const used = (db.sqlite.prepare("SELECT DISTINCT sha256 FROM objects").all() as Array<{ sha256: string }>).map((r) => r.sha256);
  db.close();
  expect(files.sort()).toEqual(used.sort());
  expect(readdirSync(join(dir, "objects", "tmp"))).toEqual([]);
  expect(readdirSync(join(dir, "objects", "uploads"))).toEqual([]);
  rmSync(dir, { recursive: true, force: true });
});
