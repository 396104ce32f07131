/**
 * Prometheus metrics (prom-client), scraped at the admin listener's /metrics with an admin
 * token. Request counts and latencies are observed as requests finish; pool sizes, pool totals
 * and the metering lag are read from their owners at scrape time (no second copy to drift).
 *
 * Must never: carry tenant-controlled text as a label other than the app name (which the
 * deploy API validated), or let a label's cardinality grow with requests (status is the HTTP
 * code, not the path).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { Pool } from "../pool/index.js";
import type { UsageRecorder } from "../billing/index.js";

/** Latency buckets, seconds: 0.25 ms … 30 s (sandbox-ready targets are 0.5 ms p50, 2 ms p99). */
const LATENCY_BUCKETS = [0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export interface RequestObservation {
  /** The app's name, or undefined when no route matched. */
  app: string | undefined;
  status: number;
  totalMs: number;
  /** Request arrival → guest code starting, when a sandbox ran. */
  readyMs: number | undefined;
  /** Waiting for an instance, when a sandbox ran. */
  acquireMs: number | undefined;
}

export class PlatformMetrics {
  readonly registry = new Registry();
  readonly #requests: Counter<"app" | "status">;
  readonly #duration: Histogram<"app">;
  readonly #ready: Histogram;
  readonly #acquire: Histogram;

  constructor(pool: Pool, usage: UsageRecorder) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: "zerocell_gateway_" });
    this.#requests = new Counter({ name: "zerocell_requests_total", help: "App requests answered, by app and HTTP status (app \"-\": no route matched)", labelNames: ["app", "status"], registers });
    this.#duration = new Histogram({ name: "zerocell_request_duration_seconds", help: "Request arrival to response, in the gateway, by app", labelNames: ["app"], buckets: LATENCY_BUCKETS, registers });
    this.#ready = new Histogram({ name: "zerocell_sandbox_ready_seconds", help: "Request arrival to guest code starting in its sandbox", buckets: LATENCY_BUCKETS, registers });
    this.#acquire = new Histogram({ name: "zerocell_pool_acquire_seconds", help: "Time a request waited for an instance (queue wait and host start)", buckets: LATENCY_BUCKETS, registers });

    // Read at scrape time from the pool and the usage recorder.
    const total = (name: string, help: string, read: () => number) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(read());
        },
      });
    const c = pool.counters;
    total("zerocell_host_starts_total", "Sandbox host processes started and ready", () => c.hostStarts);
    total("zerocell_host_start_failures_total", "Sandbox host starts that failed (warm-up error or timeout, crash, start timeout)", () => c.hostStartFailures);
    total("zerocell_host_exits_total", "Sandbox hosts that exited without the pool stopping them (crash, kill, memory ceiling)", () => c.hostExits);
    total("zerocell_snapshot_restores_total", "Hosts started from a stored snapshot instead of init and warm-up", () => c.restoredFromSnapshot);
    total("zerocell_resets_total", "Instance resets to the snapshot after a request", () => c.resets);
    total("zerocell_evictions_total", "Idle instances stopped past the global idle cap (LRU)", () => c.evictions);
    total("zerocell_pool_saturated_total", "Requests refused with 503 because a deployment's queue was full", () => c.saturated);
    total("zerocell_usage_records_written_total", "Usage records written to the database", () => usage.stats.written);
    total("zerocell_usage_flush_failures_total", "Usage flushes the database refused (records kept and retried)", () => usage.stats.flushFailures);
    new Gauge({
      name: "zerocell_pool_instances",
      help: "Sandbox instances by state, over every deployment",
      labelNames: ["state"],
      registers,
      collect() {
        const sum = { idle: 0, busy: 0, starting: 0 };
        for (const s of pool.stats()) {
          sum.idle += s.idle;
          sum.busy += s.busy;
          sum.starting += s.starting;
        }
        for (const [state, n] of Object.entries(sum)) this.set({ state }, n);
      },
    });
    new Gauge({
      name: "zerocell_pool_queued_requests",
      help: "Requests waiting for an instance, over every deployment",
      registers,
      collect() {
        this.set(pool.stats().reduce((n, s) => n + s.queued, 0));
      },
    });
    new Gauge({
      name: "zerocell_pool_deployments_failing",
      help: "Deployment pools whose last host start failed",
      registers,
      collect() {
        this.set(pool.stats().filter((s) => s.lastStartError !== undefined).length);
      },
    });
    new Gauge({
      name: "zerocell_spare_hosts_ready",
      help: "Preloaded spare host processes waiting",
      registers,
      collect() {
        this.set(pool.spares().ready.length);
      },
    });
    new Gauge({
      name: "zerocell_pool_memory_budget_bytes",
      help: "The memory budget of all sandbox hosts together",
      registers,
      collect() {
        this.set(pool.memory().budgetBytes);
      },
    });
    new Gauge({
      name: "zerocell_pool_memory_used_bytes",
      help: "Memory the budget charges now: hosts' measured PSS, estimates for starts, spare hosts",
      registers,
      collect() {
        this.set(pool.memory().usedBytes);
      },
    });
    total("zerocell_pool_budget_evictions_total", "Idle instances evicted to make room in the memory budget", () => pool.memory().evictionsForBudget);
    total("zerocell_pool_budget_refused_total", "Host starts refused (503) because the memory budget had no room within the wait bound", () => pool.memory().refused);
    new Gauge({
      name: "zerocell_usage_buffered_records",
      help: "Usage records waiting in memory to be written",
      registers,
      collect() {
        this.set(usage.stats.buffered);
      },
    });
    new Gauge({
      name: "zerocell_usage_flush_lag_seconds",
      help: "Age of the oldest usage record not yet written (metering lag)",
      registers,
      collect() {
        this.set(usage.stats.lagMs / 1000);
      },
    });
  }

  /** Called once per app request as it finishes. */
  request(o: RequestObservation): void {
    const app = o.app ?? "-";
    this.#requests.inc({ app, status: String(o.status) });
    this.#duration.observe({ app }, o.totalMs / 1000);
    if (o.readyMs !== undefined) this.#ready.observe(o.readyMs / 1000);
    if (o.acquireMs !== undefined) this.#acquire.observe(o.acquireMs / 1000);
  }

  /** The Prometheus text exposition. */
  async text(): Promise<{ body: string; contentType: string }> {
    return { body: await this.registry.metrics(), contentType: this.registry.contentType };
  }
}
