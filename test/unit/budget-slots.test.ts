/**
 * The memory budget with host slots: a start in a free slot of a running process is charged the
 * slot's marginal estimate, not a whole host's, and a shared process's share does not teach the
 * budget what a whole host costs.
 */
import { describe, it, expect } from "vitest";
import { MemoryBudget } from "../../src/pool/budget.js";

const MB = 1048576;

describe("memory budget: slots", () => {
  const make = () => new MemoryBudget({ budgetBytes: 1000 * MB, defaultEstimateBytes: () => 256 * MB, slotEstimateBytes: () => 32 * MB, maxWaitMs: 1000 });

  it("charges a slot's estimate for a slot start and a host's for a process start", async () => {
    const b = make();
    const host = await b.admit("php");
    const slot = await b.admit("php", undefined, false, "slot");
    expect(host.kind).toBe("host");
    expect(host.bytes).toBe(256 * MB);
    expect(slot.kind).toBe("slot");
    expect(slot.bytes).toBe(32 * MB);
    expect(b.usedBytes).toBe(288 * MB);
    // Twenty more slots fit where three more hosts would not.
    for (let i = 0; i < 20; i++) await b.admit("php", undefined, true, "slot");
    expect(b.usedBytes).toBe((288 + 20 * 32) * MB);
    await expect(b.admit("php", undefined, true)).rejects.toThrow(/memory budget/);
    b.close();
  });

  it("learns a host's cost only from hosts alone in their process", async () => {
    const b = make();
    const c = await b.admit("php");
    b.measured(c, 60 * MB, false);
    expect(c.bytes).toBe(60 * MB);
    expect(b.estimate("php")).toBe(256 * MB);
    b.measured(c, 180 * MB, true);
    expect(b.estimate("php")).toBe(180 * MB);
    b.close();
  });

  it("reserves a start at what its runtime's hosts were measured at (their peaks), the default only before", async () => {
    const b = make();
    const first = await b.admit("php");
    expect(first.bytes).toBe(256 * MB);
    // Hosts measured at 90 MB, one start peaking at 120 MB: the next start reserves the peak.
    b.measured(first, 90 * MB);
    const second = await b.admit("php");
    b.measured(second, 120 * MB);
    expect((await b.admit("php")).bytes).toBe(120 * MB);
    // Another runtime has learned nothing yet: its default.
    expect((await b.admit("python")).bytes).toBe(256 * MB);
    b.close();
  });

  it("evicts idle instances, least recently used first, when measured charges pass the budget, and keeps the last one", async () => {
    const b = make();
    const charges = [await b.admit("php"), await b.admit("php"), await b.admit("php")];
    // Three idle instances, LRU order 0, 1, 2; evicting one frees its charge (as the pool does).
    const idle = [...charges];
    const evicted: number[] = [];
    b.evictOne = () => {
      const c = idle.shift();
      if (c === undefined) return false;
      evicted.push(charges.indexOf(c));
      b.release(c);
      return true;
    };
    expect(b.enforce()).toBe(0); // 768 of 1000: nothing to do
    // The hosts grew after admission: 3 × 400 = 1200 > 1000.
    for (const c of charges) b.measured(c, 400 * MB);
    expect(b.usedBytes).toBe(1200 * MB);
    expect(b.enforce()).toBe(1);
    expect(evicted).toEqual([0]);
    expect(b.usedBytes).toBe(800 * MB);
    // One instance alone over the budget is never evicted for it (it is all the pool serves).
    b.measured(charges[1]!, 1500 * MB);
    b.measured(charges[2]!, 1500 * MB);
    expect(b.enforce()).toBe(1);
    expect(evicted).toEqual([0, 1]);
    expect(b.enforce()).toBe(0);
    expect(b.usedBytes).toBe(1500 * MB);
    expect(b.stats.evictionsOverBudget).toBe(2);
    b.close();
  });

  it("stops when nothing idle is left to evict (busy instances stay over until they idle)", async () => {
    const b = make();
    const charges = [await b.admit("php"), await b.admit("php")];
    for (const c of charges) b.measured(c, 700 * MB);
    b.evictOne = () => false;
    expect(b.enforce()).toBe(0);
    expect(b.usedBytes).toBe(1400 * MB);
    b.close();
  });
});
