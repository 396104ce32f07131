/**
 * The virtual clock of an x86 guest: what clock_gettime, gettimeofday, time and file times
 * read. Sleeps advance it and return at once; no host time reaches the guest except the wall
 * clock sampled at request start.
 */

/**
 * The guest's clock: the host's wall clock sampled when the request started, advanced by the
 * guest's own run time (host monotonic clock) and by its sleeps, which return at once.
 */
export class VirtualClock {
  #wallStartNs = 0n;
  #perfStart = 0;
  #slept = 0n;
  readonly #epoch = performance.now();

  startRequest(): void {
    this.#wallStartNs = BigInt(Date.now()) * 1_000_000n;
    this.#perfStart = performance.now();
    this.#slept = 0n;
  }

  sleep(ns: bigint): void {
    if (ns > 0n) this.#slept += ns;
  }

  #elapsedNs(): bigint {
    return BigInt(Math.floor((performance.now() - this.#perfStart) * 1000)) * 1000n;
  }

  now(clock: number): bigint | undefined {
    switch (clock) {
      case 0: // REALTIME
      case 5: // REALTIME_COARSE
      case 8: // REALTIME_ALARM
      case 11: // TAI
        return this.#wallStartNs + this.#elapsedNs() + this.#slept;
      case 1: // MONOTONIC
      case 4: // MONOTONIC_RAW
      case 6: // MONOTONIC_COARSE
      case 7: // BOOTTIME
      case 9: // BOOTTIME_ALARM
        return 1_000_000_000n + BigInt(Math.floor((this.#perfStart - this.#epoch) * 1000)) * 1000n + this.#elapsedNs() + this.#slept;
      case 2: // PROCESS_CPUTIME_ID
      case 3: // THREAD_CPUTIME_ID
        return this.#elapsedNs();
      default:
        return undefined;
    }
  }
}
