/**
 * The billing dashboard (GET /dashboard on the admin listener) in real Chromium: what a person
 * sees after deploying an app, sending it traffic and closing the period.
 */
import { describe, it, expect, beforeAll, afterAll, vi } from "vitest";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { startServer, phpBundle, fetchApp, admin, cleanup, CLI, ROOT, type TestServer } from "../helpers/server.js";

const SHOTS = join(ROOT, "test", "fixtures", "build");
/** Waits until the app's usage counts `requests` requests (records are written in batches). */
async function waitUsage(server: TestServer, app: string, requests: number): Promise<void> {
  // vi.waitFor, not expect.poll: this runs in beforeAll.
  await vi.waitFor(async () => {
    const r = await admin(server, "GET", `/v1/usage?app=${app}`);
    const n = (r.json.usage ?? []).reduce((sum: number, u: { requests: number }) => sum + u.requests, 0);
    expect(n, `usage of ${app}`).toBeGreaterThanOrEqual(requests);
  }, { timeout: 20_000, interval: 50 });
}
const usd = (minor: number, currency: string) => new Intl.NumberFormat("en-US", { style: "currency", currency: currency.toUpperCase() }).format(minor / 100);
/** "$1,234.56" / "€0.07" → minor units, from the text a person reads. */
const parseMoney = (text: string) => Math.round(Number(text.replace(/[^0-9.-]/g, "")) * 100);

interface PageWatch {
  page: Page;
  requests: string[];
  problems: string[];
}

async function openPage(context: BrowserContext): Promise<PageWatch> {
  const page = await context.newPage();
  const w: PageWatch = { page, requests: [], problems: [] };
  page.on("request", (r) => void w.requests.push(r.url()));
  page.on("pageerror", (e) => void w.problems.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") w.problems.push(`console ${m.type()}: ${m.text()}`);
  });
  return w;
}

describe("billing dashboard in a real browser", () => {
  let server: TestServer;
  let context: BrowserContext;
  let userDataDir: string;
  const bundles: string[] = [];
  const now = new Date();
  const period = now.toISOString().slice(0, 7);
  const today = now.toISOString().slice(0, 10);
  let acmeToken = "";

  beforeAll(async () => {
    server = await startServer(["--allow-closing-open-periods"]);

    // The default account: an app deployed with the CLI, ten requests, then the period closed.
    const app = phpBundle("dash.localhost", { "index.php": "<?php echo 'hello ' . intdiv(6 * 7, 1);" });
    bundles.push(app);
    await server.cli(["deploy", app, "--app", "dash"]);
    for (let i = 0; i < 10; i++) expect((await fetchApp(server, "dash.localhost", "/")).status).toBe(200);
    await waitUsage(server, "dash", 10);
    const closed = await admin(server, "POST", "/v1/invoices/close", { body: JSON.stringify({ period }), contentType: "application/json" });
    expect(closed.status).toBe(200);
    expect(closed.json.created).toHaveLength(1);

    // A second account on a priced plan (in euros) with its own token; its usage after the close
    // shows as a draft.
    const plan = await admin(server, "POST", "/v1/plans", {
      body: JSON.stringify({ name: "pricey", currency: "eur", requestPriceMicros: 1_234_567, gbSecondPriceMicros: 10_000_000_000, gigaInstructionPriceMicros: 0 }),
      contentType: "application/json",
    });
    expect(plan.status).toBe(201);
    const acct = await admin(server, "POST", "/v1/accounts", { body: JSON.stringify({ name: "acme", plan: "pricey" }), contentType: "application/json" });
    expect(acct.status).toBe(201);
    acmeToken = acct.json.token;
    const acmeApp = phpBundle("shop.acme.localhost", { "index.php": "<?php echo str_repeat('x', 1000);" });
    bundles.push(acmeApp);
    // Asynchronous: a deploy under load can outlast vitest's 60 s worker RPC timeout.
    const deploy = promisify(execFile)(process.execPath, [CLI, "deploy", acmeApp, "--app", "acme-shop"], { encoding: "utf8", env: { ...process.env, ZEROCELL_URL: server.urls.admin, ZEROCELL_TOKEN: acmeToken, ZEROCELL_DATA: "" } });
    deploy.child.stdin?.end();
    await deploy;
    for (let i = 0; i < 12; i++) expect((await fetchApp(server, "shop.acme.localhost", "/")).status).toBe(200);
    await waitUsage(server, "acme-shop", 12);

    userDataDir = mkdtempSync(join(tmpdir(), "zc-chromium-"));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: "/usr/bin/chromium",
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
      viewport: { width: 1200, height: 900 },
    });
    mkdirSync(SHOTS, { recursive: true });
  });

  afterAll(async () => {
    await context?.close();
    await server?.stop();
    if (userDataDir !== undefined) rmSync(userDataDir, { recursive: true, force: true });
    for (const b of bundles) cleanup(b);
  });

  it("serves the page without a token, as self-contained HTML under a strict CSP", async () => {
    const res = await fetch(`${server.urls.admin}/dashboard`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
    const csp = res.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("default-src 'self'");
    expect(csp).toMatch(/script-src 'sha256-[A-Za-z0-9+/=]+'(;|$)/);
    expect(csp).toContain("connect-src 'self'");
    expect(csp).not.toMatch(/https?:|unsafe-eval|\*/);
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    const html = await res.text();
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).not.toContain("innerHTML");
    expect(html).not.toMatch(/<(script|link|img|iframe)[^>]+(src|href)="(?!data:)/);
    // The API behind it still wants a token.
    expect((await fetch(`${server.urls.admin}/v1/invoices`)).status).toBe(401);
  });

  it("shows the closed invoice, its lines and a usage chart to an admin", async () => {
    const api = await admin(server, "GET", "/v1/invoices?drafts=1");
    const apiInvoice = api.json.invoices.find((i: { account: string; period: string }) => i.account === "default" && i.period === period);
    expect(apiInvoice).toMatchObject({ status: "open", currency: "usd" });

    const w = await openPage(context);
    const { page } = w;
    const nav = await page.goto(`${server.urls.admin}/dashboard/billing#token=${server.token}`);
    expect(nav?.status()).toBe(200);
    // The token moved from the fragment into sessionStorage and out of the address bar.
    expect(page.url()).toBe(`${server.urls.admin}/dashboard/billing`);
    expect(await page.evaluate(() => sessionStorage.getItem("zerocell.dashboard.token"))).toBe(server.token);

    const row = page.locator("#invoice-rows tr", { hasText: "default" });
    await row.waitFor();
    const cells = await row.locator("td").allInnerTexts();
    expect(cells[0]).toBe(period);
    expect(cells[1]).toBe("default");
    expect(cells[2]).toBe("open");
    expect(cells[3]).toBe(usd(apiInvoice.total, "usd"));
    expect(cells[3]).toMatch(/^\$\d[\d,]*\.\d{2}$/);
    expect(cells[4]).toBe("none");
    expect(cells[5]).toBe(String(apiInvoice.lineCount));
    // The other account's usage after the close shows as a draft, in euros.
    const acmeRow = page.locator("#invoice-rows tr", { hasText: "acme" });
    expect(await acmeRow.locator("td").nth(2).innerText()).toBe("draft");
    expect(await acmeRow.locator("td").nth(3).innerText()).toMatch(/^€\d[\d,]*\.\d{2}$/);
    expect(await page.locator("#error").isVisible()).toBe(false);

    await row.click();
    const requests = page.locator("#line-rows tr[data-metric=requests]");
    await requests.waitFor();
    expect(await page.locator("#detail-title").innerText()).toBe(`Invoice ${apiInvoice.id}`);
    const detail = (await admin(server, "GET", `/v1/invoices/${apiInvoice.id}`)).json.invoice;
    const reqLine = detail.lines.find((l: { metric: string }) => l.metric === "requests");
    expect(await requests.locator("td.metric").innerText()).toBe("Requests");
    expect(await requests.locator("td.description").innerText()).toContain("Requests: 10 ");
    expect(await requests.locator("td.quantity").innerText()).toBe(reqLine.quantity);
    expect(await requests.locator("td.amount").innerText()).toBe(usd(reqLine.amount, "usd"));
    const amounts = await page.locator("#line-rows td.amount").allInnerTexts();
    expect(amounts).toHaveLength(detail.lines.length);
    const totalText = await page.locator("#invoice-total").innerText();
    expect(totalText).toBe(cells[3]);
    expect(parseMoney(totalText)).toBe(amounts.reduce((s, a) => s + parseMoney(a), 0));

    const chart = page.locator("#usage-chart");
    await chart.waitFor();
    expect(await chart.locator("text.title").textContent()).toBe(`Requests per day — default, ${period}`);
    const bars = chart.locator("rect.bar");
    expect(await bars.count()).toBeGreaterThanOrEqual(1);
    expect(Number(await chart.locator(`rect.bar[data-day="${today}"]`).getAttribute("data-requests"))).toBe(10);
    expect(await chart.locator(`text.day[data-day="${today}"]`).textContent()).toBe(String(now.getUTCDate()));
    expect(await page.locator("#chart-status").innerText()).toContain("10 requests");

    await page.screenshot({ path: join(SHOTS, "dashboard.png"), fullPage: true });
    // Nothing but this origin was contacted, and no CSP violation or script error happened.
    expect(w.requests.filter((u) => !u.startsWith(server.urls.admin + "/") && !u.startsWith("data:"))).toEqual([]);
    expect(w.problems).toEqual([]);
    await page.close();
  });

  it("shows an account token its own invoice (a draft) with a priced total and its usage", async () => {
    const w = await openPage(context);
    const { page } = w;
    await page.goto(`${server.urls.admin}/dashboard/billing`);
    expect(await page.locator("#invoices-status").innerText()).toContain("Enter an API token");
    await page.locator("#token").fill(acmeToken);
    await page.locator("#use-token").click();
    const row = page.locator("#invoice-rows tr").first();
    await row.waitFor();
    expect(await page.locator("#invoice-rows tr").count()).toBe(1);
    const cells = await row.locator("td").allInnerTexts();
    expect(cells.slice(0, 3)).toEqual([period, "acme", "draft"]);
    await row.click();
    await page.locator("#usage-chart rect.bar").first().waitFor();
    const reqAmount = await page.locator("#line-rows tr[data-metric=requests] td.amount").innerText();
    // 12 requests at 1.234567 cents each, rounded once: €0.15.
    expect(reqAmount).toBe("€0.15");
    expect(await page.locator("#line-rows tr[data-metric=requests] td.quantity").innerText()).toBe("12");
    expect(await page.locator("#line-rows tr[data-metric=requests] td.unit-price").innerText()).toBe("€0.01234567");
    const amounts = await page.locator("#line-rows td.amount").allInnerTexts();
    const total = await page.locator("#invoice-total").innerText();
    expect(parseMoney(total)).toBe(amounts.reduce((s, a) => s + parseMoney(a), 0));
    expect(parseMoney(total)).toBeGreaterThanOrEqual(15);
    expect(Number(await page.locator(`#usage-chart rect.bar[data-day="${today}"]`).getAttribute("data-requests"))).toBe(12);
    expect(await page.locator("#usage-chart text.title").textContent()).toBe(`Requests per day — acme, ${period}`);
    await page.screenshot({ path: join(SHOTS, "dashboard-account.png"), fullPage: true });
    expect(w.problems).toEqual([]);
    await page.close();
  });

  it("shows a wrong token's 401 in the error box", async () => {
    const w = await openPage(context);
    const { page } = w;
    await page.goto(`${server.urls.admin}/dashboard/billing#token=zc_wrong-token-value-xxxxxxxxxxxxxxxx`);
    const box = page.locator("#error");
    await box.waitFor({ state: "visible" });
    const text = await box.innerText();
    expect(text).toContain("401");
    expect(text).toContain("missing or invalid API token");
    expect(await page.locator("#invoice-rows tr").count()).toBe(0);
    await page.screenshot({ path: join(SHOTS, "dashboard-401.png"), fullPage: true });
    await page.close();
  });
});
