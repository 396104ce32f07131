/**
 * Billing records: price plans, usage queries over the daily aggregates, and invoices. Closing a
 * period writes one invoice per account with usage (status "open", immutable) in one transaction;
 * running it again changes nothing. The current period's invoice is a draft computed on demand.
 */
import { randomUUID } from "node:crypto";
import { and, asc, desc, eq, gte, lte, sql } from "drizzle-orm";
import type { OpenedDb } from "../store/index.js";
import { accounts, apps, invoiceLines, invoices, pricePlans, usageDaily } from "../store/schema.js";
import { DEFAULT_PLAN, currentPeriod, periodDays, ratePeriod, type PricePlan, type RatedLine } from "./rating.js";
import { InputError, NotFoundError, ConflictError } from "../errors.js";
import { querySeries, type Series, type SeriesQuery } from "./series.js";
import { usageHistory, usageOfRequests, type UsageHistory, type UsageTotals } from "./job-usage.js";

export interface UsageRow {
  day: string;
  accountId: string;
  account: string;
  app: string;
  requests: number;
  errors: number;
  gbSeconds: number;
  wallMs: number;
  instructions: number;
  bytesIn: number;
  bytesOut: number;
}

export interface InvoiceLineInfo extends RatedLine {
  id: string;
  position: number;
  stripeItemId: string | null;
}

export interface InvoiceInfo {
  id: string;
  accountId: string;
  account: string;
  period: string;
  status: "draft" | "open";
  currency: string;
  total: number;
  plan: string;
  createdAt: string;
  syncStatus: string;
  syncError: string | null;
  stripeInvoiceId: string | null;
  lines: InvoiceLineInfo[];
}

function newId(prefix: string): string {
  return `${prefix}_${randomUUID().replace(/-/g, "").slice(0, 20)}`;
}

export class Billing {
  readonly #o: OpenedDb;

  readonly #allowClosingOpenPeriods: boolean;

  /** allowClosingOpenPeriods: the operator lets `invoices close` take the current period (tests, demos). */
  constructor(opened: OpenedDb, opts: { allowClosingOpenPeriods?: boolean } = {}) {
    this.#o = opened;
    this.#allowClosingOpenPeriods = opts.allowClosingOpenPeriods === true;
    this.#ensureDefaultPlan();
  }

  get #db() {
    return this.#o.db;
  }

  #ensureDefaultPlan(): void {
    this.#db.insert(pricePlans).values({ ...DEFAULT_PLAN, createdAt: Date.now() }).onConflictDoNothing().run();
  }

  createPlan(p: Omit<PricePlan, "id">): PricePlan {
    if (this.#db.select().from(pricePlans).where(eq(pricePlans.name, p.name)).get() !== undefined) {
      throw new ConflictError("plan_exists", `billing: a price plan named "${p.name}" exists`);
    }
    const plan = { ...p, id: newId("plan") };
    this.#db.insert(pricePlans).values({ ...plan, createdAt: Date.now() }).run();
    return plan;
  }

  listPlans(): PricePlan[] {
    return this.#db.select().from(pricePlans).orderBy(asc(pricePlans.name)).all().map(({ createdAt: _c, ...p }) => p);
  }

  planByName(name: string): PricePlan {
    const row = this.#db.select().from(pricePlans).where(eq(pricePlans.name, name)).get();
    if (row === undefined) throw new NotFoundError("plan_not_found", `billing: no price plan named "${name.slice(0, 80)}"`);
    const { createdAt: _c, ...plan } = row;
    return plan;
  }

  planOf(accountId: string): PricePlan {
    const acct = this.#db.select().from(accounts).where(eq(accounts.id, accountId)).get();
    const row = acct?.planId == null ? undefined : this.#db.select().from(pricePlans).where(eq(pricePlans.id, acct.planId)).get();
    if (row === undefined) return DEFAULT_PLAN;
    const { createdAt: _c, ...plan } = row;
    return plan;
  }

  setPlan(accountId: string, planId: string): void {
    this.#db.update(accounts).set({ planId }).where(eq(accounts.id, accountId)).run();
  }

  /** Usage per day and app from the aggregates; `from`/`to` are inclusive "YYYY-MM-DD". */
  /** Per-bucket requests, errors, wall-time percentiles and CPU of one app (series.ts). */
  series(q: SeriesQuery): Series {
    return querySeries(this.#o.sqlite, q);
  }

  /** Totals of an account's usage records whose request id starts with `prefix` (a job's items: job-usage.ts). */
  usageOfRequests(accountId: string, prefix: string): UsageTotals {
    return usageOfRequests(this.#o.sqlite, accountId, prefix);
  }

  /** The sums an estimate fits to: an app's (or program's) newest `limit` runs on objects (job-usage.ts). */
  usageHistory(accountId: string, appId: string, limit: number): UsageHistory {
    return usageHistory(this.#o.sqlite, accountId, appId, limit);
  }

  usage(filter: { accountId?: string; app?: string; from?: string; to?: string }): UsageRow[] {
    const conds = [];
    if (filter.accountId !== undefined) conds.push(eq(usageDaily.accountId, filter.accountId));
    if (filter.app !== undefined) conds.push(eq(apps.name, filter.app));
    if (filter.from !== undefined) conds.push(gte(usageDaily.day, filter.from));
    if (filter.to !== undefined) conds.push(lte(usageDaily.day, filter.to));
    return this.#db
      .select({ d: usageDaily, app: apps.name, account: accounts.name })
      .from(usageDaily)
      // A deleted app's usage stays billed and listed (under "(deleted)").
      .leftJoin(apps, eq(apps.id, usageDaily.appId))
      .innerJoin(accounts, eq(accounts.id, usageDaily.accountId))
      .where(conds.length === 0 ? undefined : and(...conds))
      .orderBy(asc(usageDaily.day), asc(apps.name))
      .all()
      .map(({ d, app, account }) => ({
        day: d.day,
        accountId: d.accountId,
        account,
        // A POSTed program's runs (jobs, /v1/objects/run) are metered under "program:<sha>", no app row.
        app: app ?? (d.appId.startsWith("program:") ? d.appId : "(deleted)"),
        requests: d.requests,
        errors: d.errors,
        gbSeconds: d.mbMs / 1024 / 1000,
        wallMs: d.wallUs / 1000,
        instructions: d.instructions,
        bytesIn: d.bytesIn,
        bytesOut: d.bytesOut,
      }));
  }

  #periodUsage(accountId: string, period: string): { requests: number; mbMs: number; instructions: number } {
    const days = periodDays(period)!;
    const row = this.#db
      .select({
        requests: sql<number>`coalesce(sum(${usageDaily.requests}), 0)`,
        mbMs: sql<number>`coalesce(sum(${usageDaily.mbMs}), 0)`,
        instructions: sql<number>`coalesce(sum(${usageDaily.instructions}), 0)`,
      })
      .from(usageDaily)
      .where(and(eq(usageDaily.accountId, accountId), gte(usageDaily.day, days.from), lte(usageDaily.day, days.to)))
      .get();
    return { requests: Number(row?.requests ?? 0), mbMs: Number(row?.mbMs ?? 0), instructions: Number(row?.instructions ?? 0) };
  }

  #assertPeriod(period: string): void {
    if (periodDays(period) === undefined) throw new InputError(`billing: period "${period.slice(0, 20)}" must look like 2026-11`, { code: "bad_period" });
  }

  /** The invoice an account would get for a period, computed now (not stored). */
  draft(accountId: string, period: string): InvoiceInfo {
    this.#assertPeriod(period);
    const acct = this.#db.select().from(accounts).where(eq(accounts.id, accountId)).get();
    if (acct === undefined) throw new NotFoundError("account_not_found", "billing: no such account");
    const plan = this.planOf(accountId);
    const lines = ratePeriod(plan, this.#periodUsage(accountId, period));
    return {
      id: `draft_${accountId}_${period}`,
      accountId,
      account: acct.name,
      period,
      status: "draft",
      currency: plan.currency,
      total: lines.reduce((s, l) => s + l.amount, 0),
      plan: plan.name,
      createdAt: new Date().toISOString(),
      syncStatus: "none",
      syncError: null,
      stripeInvoiceId: null,
      lines: lines.map((l, i) => ({ ...l, id: `draft_line_${i}`, position: i, stripeItemId: null })),
    };
  }

  /**
   * Closes a period: one open (immutable) invoice per account that had usage in it and has none
   * yet. Returns the invoices created now; a second run creates nothing.
   */
  closePeriod(period: string, syncing: boolean, now = new Date()): { created: InvoiceInfo[]; existing: number } {
    this.#assertPeriod(period);
    // Only a period that has ended: the current one still takes usage, a future one has none yet.
    const current = currentPeriod(now);
    if (period > current || (period === current && !this.#allowClosingOpenPeriods)) throw new ConflictError("period_open", `billing: period ${period} ${period === current ? "is still open" : "is in the future"}; only a period before ${current} can be closed`);
    const days = periodDays(period)!;
    const run = this.#o.sqlite.transaction(() => {
      const withUsage = this.#db
        .selectDistinct({ accountId: usageDaily.accountId })
        .from(usageDaily)
        .where(and(gte(usageDaily.day, days.from), lte(usageDaily.day, days.to)))
        .all();
      const created: string[] = [];
      let existing = 0;
      for (const { accountId } of withUsage) {
        if (this.#db.select({ id: invoices.id }).from(invoices).where(and(eq(invoices.accountId, accountId), eq(invoices.period, period))).get() !== undefined) {
          existing++;
          continue;
        }
        const plan = this.planOf(accountId);
        const lines = ratePeriod(plan, this.#periodUsage(accountId, period));
        const id = newId("inv");
        this.#db.insert(invoices).values({
          id,
          accountId,
          period,
          status: "open",
          currency: plan.currency,
          total: lines.reduce((s, l) => s + l.amount, 0),
          planId: plan.id,
          createdAt: Date.now(),
          syncStatus: syncing ? "pending" : "none",
          syncAttempts: 0,
        }).run();
        lines.forEach((l, position) => {
          this.#db.insert(invoiceLines).values({ id: newId("line"), invoiceId: id, position, metric: l.metric, description: l.description, quantity: l.quantity, unitPriceMicros: l.unitPriceMicros, amount: l.amount }).run();
        });
        created.push(id);
      }
      return { created, existing };
    });
    const r = run.immediate();
    return { created: r.created.map((id) => this.invoice(id)!), existing: r.existing };
  }

  invoice(id: string): InvoiceInfo | undefined {
    const row = this.#db.select({ i: invoices, account: accounts.name, plan: pricePlans.name }).from(invoices).innerJoin(accounts, eq(accounts.id, invoices.accountId)).leftJoin(pricePlans, eq(pricePlans.id, invoices.planId)).where(eq(invoices.id, id)).get();
    if (row === undefined) return undefined;
    const lines = this.#db.select().from(invoiceLines).where(eq(invoiceLines.invoiceId, id)).orderBy(asc(invoiceLines.position)).all();
    const i = row.i;
    return {
      id: i.id,
      accountId: i.accountId,
      account: row.account,
      period: i.period,
      status: i.status as "open",
      currency: i.currency,
      total: i.total,
      plan: row.plan ?? i.planId,
      createdAt: new Date(i.createdAt).toISOString(),
      syncStatus: i.syncStatus,
      syncError: i.syncError,
      stripeInvoiceId: i.stripeInvoiceId,
      lines: lines.map((l) => ({ id: l.id, position: l.position, metric: l.metric as RatedLine["metric"], description: l.description, quantity: l.quantity, unitPriceMicros: l.unitPriceMicros, amount: l.amount, stripeItemId: l.stripeItemId })),
    };
  }

  listInvoices(accountId?: string): InvoiceInfo[] {
    const ids = this.#db.select({ id: invoices.id }).from(invoices).where(accountId === undefined ? undefined : eq(invoices.accountId, accountId)).orderBy(desc(invoices.period), asc(invoices.accountId)).all();
    return ids.map(({ id }) => this.invoice(id)!);
  }

  /** Invoices whose Stripe sync has not finished (resumed at start and after a close). */
  unsyncedInvoiceIds(): string[] {
    return this.#db.select({ id: invoices.id }).from(invoices).where(sql`${invoices.syncStatus} IN ('pending', 'failed')`).all().map((r) => r.id);
  }

  // The Stripe sync records its progress here, step by step, so a crash resumes where it stopped.
  setStripeCustomer(accountId: string, customerId: string): void {
    this.#db.update(accounts).set({ stripeCustomerId: customerId }).where(eq(accounts.id, accountId)).run();
  }

  stripeCustomerOf(accountId: string): string | null {
    return this.#db.select({ c: accounts.stripeCustomerId }).from(accounts).where(eq(accounts.id, accountId)).get()?.c ?? null;
  }

  setStripeInvoice(invoiceId: string, stripeInvoiceId: string): void {
    this.#db.update(invoices).set({ stripeInvoiceId }).where(eq(invoices.id, invoiceId)).run();
  }

  setStripeItem(lineId: string, itemId: string): void {
    this.#db.update(invoiceLines).set({ stripeItemId: itemId }).where(eq(invoiceLines.id, lineId)).run();
  }

  setSyncStatus(invoiceId: string, status: "pending" | "synced" | "failed", error: string | null): void {
    this.#db
      .update(invoices)
      .set({ syncStatus: status, syncError: error, syncAttempts: sql`${invoices.syncAttempts} + 1` })
      .where(eq(invoices.id, invoiceId))
      .run();
  }
}
