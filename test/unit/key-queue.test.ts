import { describe, it, expect } from "vitest";
import { KeyQueue } from "../../src/pool/key-queue.js";
import { PoolSaturatedError, ZerocellError } from "../../src/errors.js";

/** A promise settled from outside: lets a test decide when a task finishes. */
function deferred<T = void>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets every queued microtask and one macrotask run. */
const settle = () => new Promise<void>((r) => setImmediate(r));

const describeKey = (key: string) => () => `app@v1 key "${key}"`;

describe("KeyQueue", () => {
  it("runs the tasks of one key one at a time, in arrival order", async () => {
    const q = new KeyQueue(16);
    const log: string[] = [];
    const gates = [deferred(), deferred(), deferred(), deferred()];
    let running = 0;
    let maxRunning = 0;
    const runs = gates.map((g, i) =>
      q.run("k", describeKey("k"), async () => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        log.push(`start ${i}`);
        await g.promise;
        log.push(`end ${i}`);
        running--;
        return i;
      }),
    );
    await settle();
    expect(log).toEqual(["start 0"]);
    // Finish them out of order: the queue still starts them in arrival order.
    gates[3]!.resolve();
    gates[2]!.resolve();
    await settle();
    expect(log).toEqual(["start 0"]);
    gates[0]!.resolve();
    await settle();
    expect(log).toEqual(["start 0", "end 0", "start 1"]);
    gates[1]!.resolve();
    expect(await Promise.all(runs)).toEqual([0, 1, 2, 3]);
    expect(log).toEqual(["start 0", "end 0", "start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]);
    expect(maxRunning).toBe(1);
    expect(q.active).toBe(0);
  });

  it("never makes different keys wait for each other", async () => {
    const q = new KeyQueue(16);
    const a = deferred();
    const started: string[] = [];
    const runA = q.run("a", describeKey("a"), async () => {
      started.push("a");
      await a.promise;
      return "a";
    });
    // b starts and finishes while a is still running.
    const b = await q.run("b", describeKey("b"), async () => {
      started.push("b");
      return "b";
    });
    expect(b).toBe("b");
    expect(started).toEqual(["a", "b"]);
    expect(q.active).toBe(1);
    a.resolve();
    expect(await runA).toBe("a");
    expect(q.active).toBe(0);
  });

  it("runs many keys at once: active counts keys with a running task", async () => {
    const q = new KeyQueue(4);
    const gates = new Map(["x", "y", "z"].map((k) => [k, deferred()]));
    let concurrent = 0;
    let maxConcurrent = 0;
    const runs = [...gates].map(([k, g]) =>
      q.run(k, describeKey(k), async () => {
        concurrent++;
        maxConcurrent = Math.max(maxConcurrent, concurrent);
        await g.promise;
        concurrent--;
      }),
    );
    await settle();
    expect(maxConcurrent).toBe(3);
    expect(q.active).toBe(3);
    for (const g of gates.values()) g.resolve();
    await Promise.all(runs);
    expect(q.active).toBe(0);
  });

  it("refuses a task past the bound with PoolSaturatedError (pool_saturated, 503, Retry-After 1 s)", async () => {
    const q = new KeyQueue(2);
    const gate = deferred();
    let described = 0;
    const describe = () => {
      described++;
      return 'blog@v3 key "alice"';
    };
    const ran: number[] = [];
    // One running + two waiting fill the key; the bound counts waiters, not the running task.
    const accepted = [0, 1, 2].map((i) =>
      q.run("alice", describe, async () => {
        ran.push(i);
        await gate.promise;
      }),
    );
    await settle();
    const refused = q.run("alice", describe, async () => {
      ran.push(99);
    });
    const err = await refused.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PoolSaturatedError);
    expect(err).toBeInstanceOf(ZerocellError);
    const e = err as PoolSaturatedError;
    expect(e.code).toBe("pool_saturated");
    expect(e.status).toBe(503);
    expect(e.retryAfterS).toBe(1);
    expect(e.message).toBe('pool: blog@v3 key "alice" is busy and its queue is full (limit 2)');
    // describe() is only called to build the refusal.
    expect(described).toBe(1);
    // Another key is not affected by alice's full queue.
    await expect(q.run("bob", describeKey("bob"), async () => "bob")).resolves.toBe("bob");
    gate.resolve();
    await Promise.all(accepted);
    expect(ran).toEqual([0, 1, 2]);
    expect(q.active).toBe(0);
    // Once the queue drained, the key takes tasks again.
    await expect(q.run("alice", describe, async () => "again")).resolves.toBe("again");
  });

  it("with a bound of 0 runs one task per key and refuses every other", async () => {
    const q = new KeyQueue(0);
    const gate = deferred();
    const first = q.run("k", describeKey("k"), () => gate.promise);
    await expect(q.run("k", describeKey("k"), async () => undefined)).rejects.toMatchObject({ code: "pool_saturated", message: expect.stringContaining("(limit 0)") as unknown });
    gate.resolve();
    await first;
    expect(q.active).toBe(0);
  });

  it("counts a freed place: after one waiter starts, one more fits", async () => {
    const q = new KeyQueue(1);
    const g0 = deferred();
    const g1 = deferred();
    const r0 = q.run("k", describeKey("k"), () => g0.promise);
    const r1 = q.run("k", describeKey("k"), () => g1.promise);
    await expect(q.run("k", describeKey("k"), async () => undefined)).rejects.toBeInstanceOf(PoolSaturatedError);
    g0.resolve();
    await r0;
    // r1 is running now, nobody waits: one more may wait.
    const r2 = q.run("k", describeKey("k"), async () => "r2");
    await expect(q.run("k", describeKey("k"), async () => undefined)).rejects.toBeInstanceOf(PoolSaturatedError);
    g1.resolve();
    await r1;
    expect(await r2).toBe("r2");
    expect(q.active).toBe(0);
  });

  it("a failing task (rejected or thrown synchronously) does not block the next one", async () => {
    const q = new KeyQueue(8);
    const gate = deferred();
    const order: string[] = [];
    const failing = q.run("k", describeKey("k"), async () => {
      order.push("fail start");
      await gate.promise;
      throw new Error("guest blew up");
    });
    const throwsSync = q.run("k", describeKey("k"), (): Promise<never> => {
      order.push("sync throw");
      throw new Error("synchronous");
    });
    const next = q.run("k", describeKey("k"), async () => {
      order.push("next");
      return "ok";
    });
    gate.resolve();
    await expect(failing).rejects.toThrow("guest blew up");
    await expect(throwsSync).rejects.toThrow("synchronous");
    await expect(next).resolves.toBe("ok");
    expect(order).toEqual(["fail start", "sync throw", "next"]);
    expect(q.active).toBe(0);
  });

  it("leaves no entry behind: many keys and tasks, successes and failures", async () => {
    const q = new KeyQueue(1000);
    const runs: Array<Promise<unknown>> = [];
    for (let i = 0; i < 500; i++) {
      const key = `key-${i % 37}`;
      runs.push(
        q.run(key, describeKey(key), async () => {
          await settle();
          if (i % 5 === 0) throw new Error(`task ${i}`);
          return i;
        }),
      );
    }
    expect(q.active).toBe(37);
    const results = await Promise.allSettled(runs);
    expect(results.filter((r) => r.status === "rejected")).toHaveLength(100);
    expect(q.active).toBe(0);
  });

  it("keeps FIFO for a task that arrives as the running one settles", async () => {
    const q = new KeyQueue(8);
    const order: string[] = [];
    const g0 = deferred();
    const r0 = q.run("k", describeKey("k"), async () => {
      await g0.promise;
      order.push("0");
    });
    const r1 = q.run("k", describeKey("k"), async () => {
      order.push("1");
    });
    // r2 arrives the moment r0's caller sees it settle (r0 has already handed the key to r1):
    // it must wait for r1, not take the key for itself.
    const r2 = r0.then(() => {
      order.push("2 arrives");
      return q.run("k", describeKey("k"), async () => {
        order.push("2");
      });
    });
    g0.resolve();
    await Promise.all([r0, r1, r2]);
    expect(order.filter((o) => o !== "2 arrives")).toEqual(["0", "1", "2"]);
    expect(q.active).toBe(0);
  });
});
