/**
 * Host slots: where a new instance of a deployment goes when a host process may carry several
 * (`serve --instances-per-host N`, PoolLimits.instancesPerHost). A free slot in a live process of
 * the same account and runtime is preferred over a new process — one already holding the same
 * deployment first (its image is not sent again, and its snapshot file's pages are shared) —
 * up to N slots per process. A start reserves its slot before it waits for the memory budget,
 * so the budget charges it a slot's marginal cost, not a whole process.
 * Must never: place an instance in a process that holds another account's instances (the
 * process is the security boundary between tenants), or in one that is shutting down.
 */
import { SandboxHost, type HostInit, type HostOptions, type HostSlot } from "./host.js";

/** A slot promised to a start that waits for the memory budget. */
export interface SlotReservation {
  readonly host: SandboxHost;
  /** The start failed or was refused: the slot is free again (the process exits if it is empty). */
  release(): void;
}

export class HostSlots {
  readonly #maxSlots: number;
  /** Processes that may take more slots (one account each), until they exit. */
  readonly #hosts = new Set<SandboxHost>();
  readonly #consume = new WeakMap<SlotReservation, () => void>();

  constructor(maxSlotsPerHost: number) {
    this.#maxSlots = maxSlotsPerHost;
  }

  /**
   * A free slot for `deploymentId` of `accountId`: in a process of that account and runtime,
   * one that has the deployment first; undefined when none is free (a new process is needed).
   * An instance without an account (an in-memory deployment) never shares.
   */
  reserve(accountId: string | undefined, deploymentId: string, runtime: string): SlotReservation | undefined {
    if (this.#maxSlots <= 1 || accountId === undefined) return undefined;
    let best: SandboxHost | undefined;
    for (const h of this.#hosts) {
      if (h.accountId !== accountId || h.runtime !== runtime || h.freeSlots(this.#maxSlots) === 0) continue;
      if (h.hasDeployment(deploymentId)) {
        best = h;
        break;
      }
      best ??= h;
    }
    if (best === undefined) return undefined;
    const r = best.reserve();
    const reservation: SlotReservation = { host: best, release: r.release };
    this.#consume.set(reservation, r.consume);
    return reservation;
  }

  /** Opens the instance: in the reserved slot, or in a new process (which later starts may share). */
  async start(init: HostInit, opts: HostOptions, reservation: SlotReservation | undefined): Promise<HostSlot> {
    if (reservation !== undefined) {
      // Its process may have exited meanwhile (a crash): then a new one.
      if (reservation.host.accepting && reservation.host.accountId === init.accountId) {
        this.#consume.get(reservation)?.();
        return reservation.host.openSlot(this.#withBlankAhead(init, reservation.host), opts);
      }
      reservation.release();
    }
    // Starts race: one that found no free slot when it began (before its wait for the budget and
    // its snapshot) may find one now in a process another start spawned meanwhile. Its charge
    // stays a whole host's until the next sample measures its share: over, never under.
    const late = this.reserve(init.accountId, init.deploymentId, init.manifest.runtime);
    if (late !== undefined && late.host.accepting) {
      this.#consume.get(late)?.();
      return late.host.openSlot(this.#withBlankAhead(init, late.host), opts);
    }
    late?.release();
    const host = SandboxHost.spawn(init, opts);
    if (this.#maxSlots > 1 && init.accountId !== undefined) {
      this.#hosts.add(host);
      host.onExit(() => this.#hosts.delete(host));
      return host.openSlot(this.#withBlankAhead(init, host), opts);
    }
    return host.openSlot(init, opts);
  }

  /** Whether the process may take another slot after this one (its host then makes a blank instance ahead). */
  #withBlankAhead(init: HostInit, host: SandboxHost): HostInit {
    return host.slotCount + 1 < this.#maxSlots ? { ...init, blankAhead: true } : init;
  }

  /** Processes that carry slots now, with their account (diagnostics, tests). */
  list(): Array<{ pid: number; accountId: string | undefined; slots: number }> {
    return [...this.#hosts].map((h) => ({ pid: h.pid, accountId: h.accountId, slots: h.slotCount }));
  }
}
