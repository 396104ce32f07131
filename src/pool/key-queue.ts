/**
 * One request at a time per key, in arrival order: a FIFO per key with a bound on waiters
 * (beyond it 503 + Retry-After). Different keys never wait for each other. An entry exists only
 * while its key has a request running, so idle keys cost nothing.
 */
import { PoolSaturatedError } from "../errors.js";

interface KeySlot {
  waiters: Array<() => void>;
}

export class KeyQueue {
  readonly #slots = new Map<string, KeySlot>();
  readonly #maxWaiting: number;

  constructor(maxWaiting: number) {
    this.#maxWaiting = maxWaiting;
  }

  /** Keys with a request running right now. */
  get active(): number {
    return this.#slots.size;
  }

  async run<T>(key: string, describe: () => string, fn: () => Promise<T>): Promise<T> {
    const slot = this.#slots.get(key);
    if (slot === undefined) {
      this.#slots.set(key, { waiters: [] });
    } else {
      if (slot.waiters.length >= this.#maxWaiting) {
        throw new PoolSaturatedError(`pool: ${describe()} is busy and its queue is full (limit ${this.#maxWaiting})`);
      }
      await new Promise<void>((resolve) => slot.waiters.push(resolve));
    }
    try {
      return await fn();
    } finally {
      const s = this.#slots.get(key)!;
      const next = s.waiters.shift();
      if (next !== undefined) next();
      else this.#slots.delete(key);
    }
  }
}
