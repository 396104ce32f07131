import { afterEach, beforeEach, describe, expect, it } from "vitest";
import Stripe from "stripe";
import { startStripeServer, type StripeServer } from "../helpers/stripe-server.js";

let srv: StripeServer;

function sdk(maxNetworkRetries = 0): Stripe {
  return new Stripe("sk_test_x", { host: "127.0.0.1", port: srv.port, protocol: "http", maxNetworkRetries });
}

beforeEach(async () => {
  srv = await startStripeServer();
});
afterEach(async () => {
  await srv.close();
});

describe("stripe-server: happy path with the real SDK", () => {
  it("customer → pending invoice items → invoice (include) → finalize", async () => {
    const stripe = sdk();
    const cus = await stripe.customers.create({ email: "a@example.com", name: "Ada", metadata: { zc_account: "acct_1" } });
    expect(cus.id).toMatch(/^cus_/);
    expect(cus.object).toBe("customer");
    expect(cus.metadata).toEqual({ zc_account: "acct_1" });

    const ii1 = await stripe.invoiceItems.create({ customer: cus.id, amount: 1250, currency: "usd", description: "CPU seconds", metadata: { zc_invoice: "inv_2026_01" } });
    const ii2 = await stripe.invoiceItems.create({ customer: cus.id, amount: -250, currency: "usd", description: "Credit" });
    expect(ii1).toMatchObject({ object: "invoiceitem", amount: 1250, currency: "usd", customer: cus.id, invoice: null, metadata: { zc_invoice: "inv_2026_01" } });
    expect(ii1.id).toMatch(/^ii_/);
    expect(srv.state.invoiceItems.get(ii1.id)?.metadata.zc_invoice).toBe("inv_2026_01");

    const pending = await stripe.invoiceItems.list({ customer: cus.id, pending: true });
    expect(pending.data.map((x) => x.id).sort()).toEqual([ii1.id, ii2.id].sort());

    const inv = await stripe.invoices.create({
      customer: cus.id,
      currency: "usd",
      auto_advance: false,
      collection_method: "charge_automatically",
      pending_invoice_items_behavior: "include",
      description: "Zerocell usage",
      metadata: { zc_invoice: "inv_2026_01" },
    });
    expect(inv.id).toMatch(/^in_/);
    expect(inv).toMatchObject({ object: "invoice", status: "draft", customer: cus.id, currency: "usd", total: 1000, subtotal: 1000, amount_due: 1000 });
    expect(inv.lines.object).toBe("list");
    expect(inv.lines.data.map((l) => l.amount)).toEqual([1250, -250]);
    expect(srv.state.invoiceItems.get(ii1.id)?.invoice).toBe(inv.id);

    const byInvoice = await stripe.invoiceItems.list({ invoice: inv.id });
    expect(byInvoice.data).toHaveLength(2);

    const fin = await stripe.invoices.finalizeInvoice(inv.id);
    expect(fin.status).toBe("open");
    expect(fin.total).toBe(1000);
    expect(fin.amount_due).toBe(1000);
    expect(fin.number).toMatch(/^[A-Z]{8}-0001$/);

    const again = await stripe.invoices.retrieve(inv.id);
    expect(again.status).toBe("open");
    const listed = await stripe.invoices.list({ customer: cus.id });
    expect(listed.data.map((x) => x.id)).toEqual([inv.id]);
    expect((await stripe.customers.retrieve(cus.id)).id).toBe(cus.id);

    expect(srv.invalidRequests).toEqual([]);
    // The SDK keys every POST.
    for (const r of srv.requests.filter((r) => r.method === "POST")) expect(r.idempotencyKey).toBeTruthy();
  });

  it("attaches items to a draft via `invoice`, totals follow, finalizing twice is a 400", async () => {
    const stripe = sdk();
    const cus = await stripe.customers.create({ email: "b@example.com" });
    const inv = await stripe.invoices.create({ customer: cus.id, currency: "eur", auto_advance: false, collection_method: "send_invoice", days_until_due: 14 });
    expect(inv.total).toBe(0);
    await stripe.invoiceItems.create({ customer: cus.id, invoice: inv.id, amount: 700, currency: "eur" });
    await stripe.invoiceItems.create({ customer: cus.id, invoice: inv.id, amount: 300, currency: "eur" });
    // A pending item is not pulled into an existing invoice.
    await stripe.invoiceItems.create({ customer: cus.id, amount: 99, currency: "eur" });
    expect(srv.state.invoices.get(inv.id)?.total).toBe(1000);
    expect((await stripe.invoices.retrieve(inv.id)).lines.data).toHaveLength(2);

    const fin = await stripe.invoices.finalizeInvoice(inv.id);
    expect(fin).toMatchObject({ status: "open", total: 1000, amount_due: 1000 });
    expect(fin.due_date).toBeGreaterThan(fin.created);

    const err = await stripe.invoices.finalizeInvoice(inv.id).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
    expect((err as Stripe.errors.StripeError).statusCode).toBe(400);
    expect((err as Stripe.errors.StripeError).message).toContain("This invoice is already finalized");

    const err2 = await stripe.invoiceItems.create({ customer: cus.id, invoice: inv.id, amount: 1, currency: "eur" }).catch((e: unknown) => e);
    expect(err2).toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
    // Business errors are not spec violations.
    expect(srv.invalidRequests).toEqual([]);
  });

  it("zero/negative totals are marked paid on finalization and credit the customer", async () => {
    const stripe = sdk();
    const cus = await stripe.customers.create({});
    await stripe.invoiceItems.create({ customer: cus.id, amount: -500, currency: "usd" });
    const inv = await stripe.invoices.create({ customer: cus.id, pending_invoice_items_behavior: "include", auto_advance: false });
    const fin = await stripe.invoices.finalizeInvoice(inv.id);
    expect(fin).toMatchObject({ status: "paid", total: -500, amount_due: 0, ending_balance: -500 });
    expect(srv.state.customers.get(cus.id)?.balance).toBe(-500);
  });

  it("unknown ids are 404 resource_missing", async () => {
    const stripe = sdk();
    const err = await stripe.customers.retrieve("cus_nope").catch((e: unknown) => e);
    expect(err).toMatchObject({ type: "StripeInvalidRequestError", statusCode: 404, code: "resource_missing" });
  });
});

describe("stripe-server: idempotency", () => {
  it("replays the stored response for the same key without side effects", async () => {
    const stripe = sdk();
    const a = await stripe.customers.create({ email: "c@example.com" }, { idempotencyKey: "k1" });
    const b = await stripe.customers.create({ email: "c@example.com" }, { idempotencyKey: "k1" });
    expect(b.id).toBe(a.id);
    expect(srv.state.customers.size).toBe(1);
    expect(b.lastResponse.headers["idempotent-replayed"]).toBe("true");
    expect(srv.requests.map((r) => r.replayed)).toEqual([false, true]);

    const ii1 = await stripe.invoiceItems.create({ customer: a.id, amount: 100, currency: "usd" }, { idempotencyKey: "k2" });
    const ii2 = await stripe.invoiceItems.create({ customer: a.id, amount: 100, currency: "usd" }, { idempotencyKey: "k2" });
    expect(ii2.id).toBe(ii1.id);
    expect(srv.state.invoiceItems.size).toBe(1);
    expect(srv.invalidRequests).toEqual([]);
  });

  it("replays stored errors too (same status and body)", async () => {
    const stripe = sdk();
    const cus = await stripe.customers.create({});
    const inv = await stripe.invoices.create({ customer: cus.id, auto_advance: false });
    await stripe.invoices.finalizeInvoice(inv.id, {}, { idempotencyKey: "fin-1" });
    const replay = await stripe.invoices.finalizeInvoice(inv.id, {}, { idempotencyKey: "fin-1" });
    expect(replay.status).toBe("paid") // empty invoice: nothing to collect;
    const err = await stripe.invoices.finalizeInvoice(inv.id, {}, { idempotencyKey: "fin-2" }).catch((e: unknown) => e);
    expect(err).toMatchObject({ statusCode: 400 });
    const err2 = await stripe.invoices.finalizeInvoice(inv.id, {}, { idempotencyKey: "fin-2" }).catch((e: unknown) => e);
    expect((err2 as Stripe.errors.StripeError).message).toBe((err as Stripe.errors.StripeError).message);
    expect(srv.requests.at(-1)?.replayed).toBe(true);
  });

  it("same key with other parameters or another endpoint is an idempotency_error", async () => {
    const stripe = sdk();
    const cus = await stripe.customers.create({ email: "d@example.com" }, { idempotencyKey: "k1" });
    const e1 = await stripe.customers.create({ email: "other@example.com" }, { idempotencyKey: "k1" }).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(Stripe.errors.StripeIdempotencyError);
    const e2 = await stripe.invoices.create({ customer: cus.id }, { idempotencyKey: "k1" }).catch((e: unknown) => e);
    expect(e2).toBeInstanceOf(Stripe.errors.StripeIdempotencyError);
    expect(srv.state.customers.size).toBe(1);
    expect(srv.state.invoices.size).toBe(0);
    expect(srv.invalidRequests.map((v) => v.kind)).toEqual(["idempotency_mismatch", "idempotency_mismatch"]);
  });
});

describe("stripe-server: spec validation", () => {
  it("rejects and records an unknown parameter", async () => {
    const stripe = sdk();
    const err = await stripe.customers.create({ email: "e@example.com", foo: "bar" } as Stripe.CustomerCreateParams).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
    expect(err).toMatchObject({ statusCode: 400, param: "foo", message: "Received unknown parameter: foo" });
    expect(srv.state.customers.size).toBe(0);
    expect(srv.invalidRequests).toHaveLength(1);
    expect(srv.invalidRequests[0]).toMatchObject({ kind: "unknown_parameter", method: "POST", path: "/v1/customers", param: "foo" });
  });

  it("rejects unknown nested parameters, bad integers, bad enums, missing required params and empty strings", async () => {
    const stripe = sdk();
    const cus = await stripe.customers.create({});
    const bad: Array<[() => Promise<unknown>, string]> = [
      [() => stripe.customers.create({ invoice_settings: { nope: "x" } } as unknown as Stripe.CustomerCreateParams), "invoice_settings[nope]"],
      [() => stripe.invoiceItems.create({ customer: cus.id, amount: 12.5, currency: "usd" }), "amount"],
      [() => stripe.invoices.create({ customer: cus.id, collection_method: "bogus" as "send_invoice" }), "collection_method"],
      [() => stripe.invoiceItems.create({ amount: 1, currency: "usd" }), "customer"],
      [() => stripe.invoices.create({ customer: cus.id, description: "" }), "description"],
      [() => stripe.invoices.create({ customer: cus.id, auto_advance: "yes" as unknown as boolean }), "auto_advance"],
      [() => stripe.invoiceItems.list({ customer: cus.id, bogus: 1 } as Stripe.InvoiceItemListParams), "bogus"],
      [() => stripe.customers.create({ metadata: { k: "x".repeat(501) } }), "metadata[k]"],
      [() => stripe.invoices.list({ customer: cus.id, limit: "ten" as unknown as number }), "limit"],
      [() => stripe.invoiceItems.create({ customer: cus.id, amount: 1, currency: "usd", period: { start: 1 } } as Stripe.InvoiceItemCreateParams), "period[end]"],
    ];
    for (const [call, param] of bad) {
      const err = await call().catch((e: unknown) => e);
      expect(err, param).toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
      expect((err as Stripe.errors.StripeError).param, param).toBe(param);
    }
    expect(srv.invalidRequests.map((v) => v.param)).toEqual(bad.map(([, p]) => p));
    expect(srv.state.invoices.size).toBe(0);
    expect(srv.state.invoiceItems.size).toBe(0);
  });

  it("accepts expand[] and emptyable metadata", async () => {
    const stripe = sdk();
    const cus = await stripe.customers.create({ metadata: { a: "1" }, expand: ["invoice_settings.default_payment_method"] });
    await stripe.invoices.create({ customer: cus.id, metadata: "" as unknown as Stripe.MetadataParam, expand: ["customer"] });
    const raw = await fetch(`${srv.url}/v1/customers`, {
      method: "POST",
      headers: { Authorization: "Bearer sk_test_x", "Idempotency-Key": "raw-expand" },
      body: new URLSearchParams([["expand[]", "tax"], ["metadata[zc_invoice]", "inv_1"]]),
    });
    expect(raw.status).toBe(200);
    expect(((await raw.json()) as { metadata: Record<string, string> }).metadata).toEqual({ zc_invoice: "inv_1" });
    expect(srv.invalidRequests).toEqual([]);
  });

  it("records a POST without Idempotency-Key (served anyway), 401 without auth, 404 for unknown endpoints", async () => {
    const res = await fetch(`${srv.url}/v1/customers`, {
      method: "POST",
      headers: { Authorization: "Bearer sk_test_x" },
      body: new URLSearchParams({ email: "raw@example.com", "metadata[zc_invoice]": "inv_9" }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { id: string; metadata: Record<string, string> };
    expect(body.metadata).toEqual({ zc_invoice: "inv_9" });
    expect(srv.requests[0]).toMatchObject({ method: "POST", path: "/v1/customers", idempotencyKey: null, body: { email: "raw@example.com", metadata: { zc_invoice: "inv_9" } } });
    expect(srv.invalidRequests).toEqual([expect.objectContaining({ kind: "missing_idempotency_key", path: "/v1/customers" })]);

    const noAuth = await fetch(`${srv.url}/v1/customers/${body.id}`);
    expect(noAuth.status).toBe(401);
    expect(((await noAuth.json()) as { error: { type: string } }).error.type).toBe("invalid_request_error");

    const unknown = await fetch(`${srv.url}/v1/nope`, { headers: { Authorization: "Bearer sk_test_x" } });
    expect(unknown.status).toBe(404);
    expect(srv.invalidRequests.map((v) => v.kind)).toEqual(["missing_idempotency_key", "auth", "unknown_endpoint"]);
  });

  it("flags endpoints that exist in Stripe but are not implemented by the fake", async () => {
    const stripe = sdk();
    const err = await stripe.customers.del("cus_x").catch((e: unknown) => e);
    expect(err).toMatchObject({ statusCode: 501 });
    expect(srv.invalidRequests).toEqual([expect.objectContaining({ kind: "not_implemented" })]);
  });
});

describe("stripe-server: failure injection", () => {
  it("failNextRequests + SDK maxNetworkRetries: 2 succeeds on the third attempt with one key", async () => {
    const stripe = sdk(2);
    srv.failNextRequests(2);
    const cus = await stripe.customers.create({ email: "retry@example.com" });
    expect(cus.id).toMatch(/^cus_/);
    expect(srv.requests.map((r) => r.status)).toEqual([500, 500, 200]);
    expect(srv.requests.map((r) => r.injectedFailure)).toEqual([true, true, false]);
    const keys = new Set(srv.requests.map((r) => r.idempotencyKey));
    expect(keys.size).toBe(1);
    expect(srv.state.customers.size).toBe(1);
    expect(srv.invalidRequests).toEqual([]);
  });

  it("without retries the failure surfaces and nothing is created", async () => {
    const stripe = sdk(0);
    srv.failNextRequests(1, 503);
    const err = await stripe.customers.create({}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Stripe.errors.StripeAPIError);
    expect(srv.state.customers.size).toBe(0);
    // The same key can be used again after an injected failure (nothing stored).
    srv.failNextRequests(1, 429, { shouldRetry: false });
    const err2 = await stripe.customers.create({}, { idempotencyKey: "after-429" }).catch((e: unknown) => e);
    expect(err2).toBeInstanceOf(Stripe.errors.StripeRateLimitError);
    const ok = await stripe.customers.create({}, { idempotencyKey: "after-429" });
    expect(srv.state.customers.get(ok.id)).toMatchObject({ id: ok.id, object: "customer" });
    expect(srv.state.customers.size).toBe(1);
  });

  it("startStripeServer({ failNext }) pre-arms failures", async () => {
    const s2 = await startStripeServer({ failNext: { count: 1, status: 500 } });
    try {
      const stripe = new Stripe("sk_test_x", { ...s2.sdkConfig, maxNetworkRetries: 1 });
      await stripe.customers.create({});
      expect(s2.requests.map((r) => r.status)).toEqual([500, 200]);
    } finally {
      await s2.close();
    }
  });

  it("crashAfter: committed but the response is lost; the SDK retry is an idempotent replay", async () => {
    const stripe = sdk(1);
    const cus = await stripe.customers.create({});
    srv.crashAfter((r) => r.method === "POST" && r.path === "/v1/invoices");
    const inv = await stripe.invoices.create({ customer: cus.id, auto_advance: false });
    expect(srv.state.invoices.size).toBe(1);
    expect(srv.state.invoices.has(inv.id)).toBe(true);
    const invReqs = srv.requests.filter((r) => r.path === "/v1/invoices");
    expect(invReqs.map((r) => [r.crashed, r.replayed])).toEqual([
      [true, false],
      [false, true],
    ]);
    expect(invReqs[0]?.idempotencyKey).toBe(invReqs[1]?.idempotencyKey);
  });
});
