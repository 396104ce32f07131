/**
 * The pool's memory reading of a process tree (/proc smaps_rollup, status, maps): the
 * non-blocking reader the sampler uses must see what the synchronous one sees, descendants
 * included, and a memfd's pages; a process that is gone reads 0.
 */
import { describe, it, expect, afterEach } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { treeMemoryBytes, treeMemoryBytesAsync } from "../../src/pool/spawn.js";

const MB = 1048576;
const started: ChildProcess[] = [];

/**
 * A node process under `sh` (a tree of two) that touches `mb` MB and says so; in a process group
 * of its own, which killTree ends (killing sh alone would leave the node process running).
 */
async function holder(mb: number): Promise<ChildProcess> {
  const child = spawn("/bin/sh", ["-c", `exec_node() { "$@"; }; exec_node "${process.execPath}" -e 'const b = Buffer.alloc(${mb} * 1048576, 1); console.log("ready", b.length); setInterval(() => b[0]++, 1000)'`], { stdio: ["ignore", "pipe", "inherit"], detached: true });
  started.push(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (d: Buffer) => d.toString().includes("ready") && resolve());
    child.once("exit", (code) => reject(new Error(`holder exited ${code}`)));
  });
  return child;
}

function killTree(c: ChildProcess): void {
  try {
    process.kill(-c.pid!, "SIGKILL");
  } catch {
    // gone
  }
}

afterEach(() => {
  for (const c of started.splice(0)) killTree(c);
});

describe("pool memory sampling", () => {
  it("reads a process tree off the event loop as the synchronous reader does, descendants included", async () => {
    const child = await holder(96);
    const sync = treeMemoryBytes(child.pid!);
    const async = await treeMemoryBytesAsync(child.pid!);
    // The 96 MB live in the node grandchild, not in sh: found only by walking the tree.
    expect(sync).toBeGreaterThan(96 * MB);
    expect(async).toBeGreaterThan(96 * MB);
    expect(Math.abs(async - sync)).toBeLessThan(16 * MB);
  });

  it("reads 0 for a process that is gone", async () => {
    const child = await holder(1);
    const pid = child.pid!;
    const exited = new Promise((r) => child.once("exit", r));
    killTree(child);
    await exited;
    expect(await treeMemoryBytesAsync(pid)).toBe(0);
    expect(treeMemoryBytes(pid)).toBe(0);
  });
});
