/**
 * Stripe sync of closed invoices, with the official SDK: a customer per account (created once),
 * a Stripe invoice per invoice, one invoice item per line, then finalize. Every call carries an
 * idempotency key derived from our ids, and each Stripe id is stored as soon as it is known, so a
 * crash at any point and a re-run never bill twice. Failures are retried with backoff and end in
 * the invoice's sync status.
 */
import Stripe from "stripe";
import type { Billing } from "./service.js";
import { log } from "../log.js";

export interface StripeSyncOptions {
  apiKey: string;
  /** e.g. "http://127.0.0.1:12111" for a local Stripe-shaped server; default Stripe's API. */
  apiBase?: string;
  /** Attempts per invoice before its status becomes "failed". */
  maxAttempts?: number;
  /** First backoff, ms (doubles each attempt). */
  backoffMs?: number;
}

export function createStripeClient(opts: StripeSyncOptions): Stripe {
  const config: ConstructorParameters<typeof Stripe>[1] = { maxNetworkRetries: 2, timeout: 20_000 };
  if (opts.apiBase !== undefined && opts.apiBase !== "") {
    const u = new URL(opts.apiBase);
    config.host = u.hostname;
    config.port = Number(u.port || (u.protocol === "https:" ? 443 : 80));
    config.protocol = u.protocol === "http:" ? "http" : "https";
  }
  return new Stripe(opts.apiKey, config);
}

export class StripeSync {
  readonly #billing: Billing;
  readonly #stripe: Stripe;
  readonly #maxAttempts: number;
  readonly #backoffMs: number;
  readonly #running = new Map<string, Promise<void>>();

  constructor(billing: Billing, opts: StripeSyncOptions) {
    this.#billing = billing;
    this.#stripe = createStripeClient(opts);
    this.#maxAttempts = opts.maxAttempts ?? 5;
    this.#backoffMs = opts.backoffMs ?? 500;
  }

  /** Syncs one invoice (joins a sync already running for it). */
  sync(invoiceId: string): Promise<void> {
    let p = this.#running.get(invoiceId);
    if (p === undefined) {
      p = this.#syncWithRetries(invoiceId).finally(() => this.#running.delete(invoiceId));
      this.#running.set(invoiceId, p);
    }
    return p;
  }

  /** Resumes every invoice that is pending or failed (at start and after a close). */
  resumeAll(): Promise<void[]> {
    return Promise.all(this.#billing.unsyncedInvoiceIds().map((id) => this.sync(id)));
  }

  async #syncWithRetries(invoiceId: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#syncOnce(invoiceId);
        this.#billing.setSyncStatus(invoiceId, "synced", null);
        log.info("stripe sync done", { invoice: invoiceId });
        return;
      } catch (e) {
        const message = e instanceof Error ? e.message : String(e);
        if (attempt >= this.#maxAttempts) {
          this.#billing.setSyncStatus(invoiceId, "failed", message.slice(0, 500));
          log.warn("stripe sync failed", { invoice: invoiceId, attempts: attempt, err: message });
          return;
        }
        this.#billing.setSyncStatus(invoiceId, "pending", `attempt ${attempt}: ${message.slice(0, 400)}`);
        await new Promise((r) => setTimeout(r, this.#backoffMs * 2 ** (attempt - 1)));
      }
    }
  }

  async #syncOnce(invoiceId: string): Promise<void> {
    const inv = this.#billing.invoice(invoiceId);
    if (inv === undefined) throw new Error(`no invoice ${invoiceId}`);
    // 1. customer, created once per account
    let customer = this.#billing.stripeCustomerOf(inv.accountId);
    if (customer === null) {
      const c = await this.#stripe.customers.create(
        { name: inv.account, metadata: { zerocell_account: inv.accountId } },
        { idempotencyKey: `zerocell-customer-${inv.accountId}` },
      );
      customer = c.id;
      this.#billing.setStripeCustomer(inv.accountId, customer);
    }
    // 2. the invoice (draft at Stripe until finalized)
    let stripeInvoiceId = inv.stripeInvoiceId;
    if (stripeInvoiceId === null) {
      const s = await this.#stripe.invoices.create(
        {
          customer,
          currency: inv.currency,
          collection_method: "send_invoice",
          days_until_due: 30,
          auto_advance: false,
          pending_invoice_items_behavior: "exclude",
          description: `Zerocell usage ${inv.period}`,
          metadata: { zerocell_invoice: inv.id, period: inv.period },
        },
        { idempotencyKey: `zerocell-invoice-${inv.id}` },
      );
      stripeInvoiceId = s.id;
      this.#billing.setStripeInvoice(inv.id, stripeInvoiceId);
    }
    // 3. one invoice item per line
    for (const line of inv.lines) {
      if (line.stripeItemId !== null) continue;
      const item = await this.#stripe.invoiceItems.create(
        {
          customer,
          invoice: stripeInvoiceId,
          amount: line.amount,
          currency: inv.currency,
          description: line.description,
          metadata: { zerocell_invoice: inv.id, zerocell_line: line.id },
        },
        { idempotencyKey: `zerocell-line-${line.id}` },
      );
      this.#billing.setStripeItem(line.id, item.id);
    }
    // 4. finalize (skipped when Stripe says it already is)
    const current = await this.#stripe.invoices.retrieve(stripeInvoiceId);
    if (current.status === "draft") {
      await this.#stripe.invoices.finalizeInvoice(stripeInvoiceId, {}, { idempotencyKey: `zerocell-finalize-${inv.id}` });
    }
  }
}
