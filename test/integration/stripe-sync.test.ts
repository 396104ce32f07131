import { describe, it, expect, beforeAll, afterAll, vi } from "vitest";
import { json, startServer, phpBundle, fetchApp, admin, type TestServer } from "../helpers/server.js";
import { startStripeServer, type StripeServer } from "../helpers/stripe-server.js";

const PERIOD = new Date().toISOString().slice(0, 7);

/** Polls `fn` until it gives a value (bounds generous for a loaded machine). */
function until<T>(fn: () => Promise<T | undefined>, ms = 30_000, every = 50): Promise<T> {
  return vi.waitFor(
    async () => {
      const v = await fn();
      if (v === undefined) throw new Error("still waiting");
      return v;
    },
    { timeout: ms, interval: every },
  );
}

describe("Stripe sync against a local Stripe-shaped server that checks every request against the OpenAPI spec", () => {
  let stripe: StripeServer;
  let server: TestServer;
  const saved = { key: process.env.STRIPE_API_KEY, base: process.env.STRIPE_API_BASE };

  beforeAll(async () => {
    stripe = await startStripeServer();
    process.env.STRIPE_API_KEY = "sk_test_zerocell";
    process.env.STRIPE_API_BASE = stripe.url;
    server = await startServer(["--allow-closing-open-periods"]);
  });
  afterAll(async () => {
    await server?.stop();
    await stripe?.close();
    if (saved.key === undefined) delete process.env.STRIPE_API_KEY;
    else process.env.STRIPE_API_KEY = saved.key;
    if (saved.base === undefined) delete process.env.STRIPE_API_BASE;
    else process.env.STRIPE_API_BASE = saved.base;
  });

  it("syncs a closed period: one customer, one invoice with one item per line, finalized; a crash before finalize and a re-run bill once", async () => {
    const plan = await admin(server, "POST", "/v1/plans", json({ name: "pricey", currency: "usd", requestPriceMicros: 2_000_000, gbSecondPriceMicros: 360_000_000, gigaInstructionPriceMicros: 0 }));
    expect(plan.status).toBe(201);
    const acct = await admin(server, "POST", "/v1/accounts", json({ name: "carol", plan: "pricey" }));
    const token = acct.json.token as string;
    const { packDirectory } = await import("../../src/bundle/index.js");
    const up = await admin(server, "POST", "/v1/apps/carol-app/deployments", { token, body: await packDirectory(phpBundle("carol.carol.localhost", { "index.php": "<?php echo 'carol';" })), contentType: "application/gzip" });
    expect(up.status).toBe(201);
    for (let i = 0; i < 5; i++) expect((await fetchApp(server, "carol.carol.localhost", "/")).status).toBe(200);
    await until(async () => ((await admin(server, "GET", "/v1/usage?app=carol-app")).json.usage?.[0]?.requests >= 5 ? true : undefined));

    // The first invoice item reaches Stripe → the platform dies (kill -9) before it can finalize.
    const closing = admin(server, "POST", "/v1/invoices/close", json({ period: PERIOD }));
    const closed = await closing;
    expect(closed.status).toBe(200);
    await until(async () => (stripe.requests.some((r) => r.path === "/v1/invoiceitems" && r.status === 200) ? true : undefined), 30_000, 1);
    // Hold it there: the next calls fail (no retry hint), the sync backs off, and then it dies.
    stripe.failNextRequests(2, 503, { shouldRetry: false });
    await until(async () => (stripe.requests.filter((r) => r.injectedFailure).length >= 2 ? true : undefined));
    expect(stripe.requests.some((r) => r.path.endsWith("/finalize"))).toBe(false);
    const dataDir = server.dataDir;
    server.proc.kill("SIGKILL");
    await new Promise((r) => server.proc.once("exit", r));

    // Restart: the unfinished sync resumes by itself.
    server = await startServer(["--allow-closing-open-periods"], { dataDir });
    const inv = await until(async () => {
      const list = (await admin(server, "GET", "/v1/invoices?account=carol")).json.invoices as Array<{ id: string; syncStatus: string }>;
      return list.find((i) => i.syncStatus === "synced");
    });
    const ours = (await admin(server, "GET", `/v1/invoices/${inv.id}`)).json.invoice;

    // Exactly one of everything at Stripe, with our amounts.
    const customers = [...stripe.state.customers.values()];
    expect(customers.length).toBe(1);
    const invoices = [...stripe.state.invoices.values()];
    expect(invoices.length).toBe(1);
    // Finalized with something to collect (send_invoice, never charged): open, not paid.
    expect(ours.total).toBeGreaterThan(0);
    expect(invoices[0]!.status).toBe("open");
    const items = [...stripe.state.invoiceItems.values()].filter((i) => i.invoice === invoices[0]!.id);
    expect(items.length).toBe(ours.lines.length);
    expect(items.map((i) => i.amount).sort()).toEqual(ours.lines.map((l: { amount: number }) => l.amount).sort());
    expect(invoices[0]!.total).toBe(ours.total);
    expect(ours.stripeInvoiceId).toBe(invoices[0]!.id);
    // Every request matched Stripe's OpenAPI spec and every POST carried an idempotency key.
    expect(stripe.invalidRequests).toEqual([]);
    for (const r of stripe.requests.filter((r) => r.method === "POST")) expect(r.idempotencyKey).toMatch(/^zerocell-/);
  });

  it("retries failures with backoff and shows the sync status", async () => {
    stripe.failNextRequests(2, 500);
    const acct = await admin(server, "POST", "/v1/accounts", json({ name: "dave" }));
    const { packDirectory } = await import("../../src/bundle/index.js");
    await admin(server, "POST", "/v1/apps/dave-app/deployments", { token: acct.json.token, body: await packDirectory(phpBundle("dave.dave.localhost", { "index.php": "<?php echo 'dave';" })), contentType: "application/gzip" });
    // A period that has no invoice for dave yet: closing again after new usage creates only his.
    for (let i = 0; i < 2; i++) await fetchApp(server, "dave.dave.localhost", "/");
    await until(async () => ((await admin(server, "GET", "/v1/usage?app=dave-app")).json.usage?.[0]?.requests >= 2 ? true : undefined));
    stripe.failNextRequests(3, 500);
    const closed = await admin(server, "POST", "/v1/invoices/close", json({ period: PERIOD }));
    expect(closed.json.created.map((i: { account: string }) => i.account)).toEqual(["dave"]);
    const synced = await until(async () => {
      const list = (await admin(server, "GET", "/v1/invoices?account=dave")).json.invoices as Array<{ syncStatus: string }>;
      return list[0]?.syncStatus === "synced" ? list[0] : undefined;
    });
    expect(synced.syncStatus).toBe("synced");
    expect([...stripe.state.customers.values()].length).toBe(2);
    expect(stripe.invalidRequests).toEqual([]);
  });
});
