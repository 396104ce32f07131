/**
 * The dashboard's pages (apps, usage, pool, billing) in real Chromium at a phone's width (390 px)
 * and a laptop's (1280 px), against a real server with real traffic; and the per-app time series
 * behind the apps page (GET /v1/apps/:app/stats). Screenshots of every page are written to
 * test/fixtures/build/dashboard-<page>-<width>.png for review.
 */
import { describe, it, expect, beforeAll, afterAll, vi } from "vitest";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { createAccount, startServer, phpBundle, fetchApp, admin, cleanup, CLI, ROOT, type TestServer } from "../helpers/server.js";

const SHOTS = join(ROOT, "test", "fixtures", "build");
const WIDTHS = [390, 1280] as const;

interface Bucket {
  start: number;
  requests: number;
  errors: number;
  p50WallUs: number | null;
  p99WallUs: number | null;
  cpuUs: number;
}

describe("dashboard pages in a real browser", () => {
  let server: TestServer;
  let context: BrowserContext;
  let userDataDir: string;
  let tenant = "";
  let failedId = "";
  const bundles: string[] = [];

  async function waitUsage(app: string, requests: number): Promise<void> {
    await vi.waitFor(async () => {
      const r = await admin(server, "GET", `/v1/apps/${app}/stats`);
      const n = (r.json.buckets as Bucket[]).reduce((s, b) => s + b.requests, 0);
      expect(n, `requests of ${app}`).toBeGreaterThanOrEqual(requests);
    }, { timeout: 20_000, interval: 100 });
  }

  beforeAll(async () => {
    server = await startServer(["--no-spare-hosts"]);
    // The default account's app: 6 good requests and 2 that fail (500) after logging a marker.
    const dash = phpBundle("dash.localhost", { "index.php": "<?php if (isset($_GET['boom'])) { error_log('boom-marker ' . $_GET['boom'] . ' <img src=x id=injected>'); http_response_code(500); echo 'no'; exit; } echo 'hello';" });
    bundles.push(dash);
    await server.cli(["deploy", dash, "--app", "dash"]);
    for (let i = 0; i < 6; i++) expect((await fetchApp(server, "dash.localhost", "/")).status).toBe(200);
    for (let i = 0; i < 2; i++) {
      const r = await fetchApp(server, "dash.localhost", `/?boom=${i}`);
      expect(r.status).toBe(500);
      failedId = String(r.headers["x-request-id"]);
    }
    // A tenant with its own app and token.
    tenant = await createAccount(server, "acme");
    const shop = phpBundle("shop.acme.localhost", { "index.php": "<?php echo 'shop';" });
    bundles.push(shop);
    // Asynchronous: a deploy under load can outlast vitest's 60 s worker RPC timeout.
    const deploy = promisify(execFile)(process.execPath, [CLI, "deploy", shop, "--app", "acme-shop"], { encoding: "utf8", env: { ...process.env, ZEROCELL_URL: server.urls.admin, ZEROCELL_TOKEN: tenant, ZEROCELL_DATA: "" } });
    deploy.child.stdin?.end();
    await deploy;
    for (let i = 0; i < 3; i++) expect((await fetchApp(server, "shop.acme.localhost", "/")).status).toBe(200);
    await waitUsage("dash", 8);
    await waitUsage("acme-shop", 3);

    userDataDir = mkdtempSync(join(tmpdir(), "zc-chromium-"));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: "/usr/bin/chromium",
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    mkdirSync(SHOTS, { recursive: true });
  }, 180_000);

  afterAll(async () => {
    await context?.close();
    await server?.stop();
    if (userDataDir !== undefined) rmSync(userDataDir, { recursive: true, force: true });
    for (const b of bundles) cleanup(b);
  });

  describe("GET /v1/apps/:app/stats", () => {
    it("counts the requests, the 5xx and the wall-time percentiles per minute", async () => {
      const r = await admin(server, "GET", "/v1/apps/dash/stats?bucket=minute&window=30m");
      expect(r.status).toBe(200);
      expect(r.json).toMatchObject({ app: "dash", bucket: "minute", bucketMs: 60_000, truncated: false });
      const buckets = r.json.buckets as Bucket[];
      expect(buckets).toHaveLength(30);
      expect(buckets.every((b, i) => i === 0 || b.start - buckets[i - 1]!.start === 60_000)).toBe(true);
      expect(buckets.reduce((s, b) => s + b.requests, 0)).toBe(8);
      expect(buckets.reduce((s, b) => s + b.errors, 0)).toBe(2);
      const busy = buckets.filter((b) => b.requests > 0);
      for (const b of busy) {
        expect(b.p50WallUs).toBeGreaterThan(0);
        expect(b.p99WallUs!).toBeGreaterThanOrEqual(b.p50WallUs!);
      }
      expect(buckets.filter((b) => b.requests === 0).every((b) => b.p50WallUs === null && b.errors === 0)).toBe(true);
      const hourly = await admin(server, "GET", "/v1/apps/dash/stats?bucket=hour&window=7d");
      expect(hourly.json.buckets).toHaveLength(168);
      expect((hourly.json.buckets as Bucket[]).reduce((s, b) => s + b.requests, 0)).toBe(8);
      // A window that ended before the requests holds none.
      const before = await admin(server, "GET", `/v1/apps/dash/stats?window=10m&to=${Date.now() - 3_600_000}`);
      expect((before.json.buckets as Bucket[]).reduce((s, b) => s + b.requests, 0)).toBe(0);
    });

    it("bounds the window and refuses bad parameters with a code", async () => {
      const tooMany = await admin(server, "GET", "/v1/apps/dash/stats?bucket=minute&window=7d");
      expect(tooMany.status).toBe(400);
      expect(tooMany.json.error.code).toBe("bad_window");
      expect(tooMany.json.error.message).toContain("limit 1440");
      expect((await admin(server, "GET", "/v1/apps/dash/stats?window=forever")).json.error.code).toBe("bad_window");
      expect((await admin(server, "GET", "/v1/apps/dash/stats?bucket=second")).json.error.code).toBe("bad_bucket");
      expect((await admin(server, "GET", "/v1/apps/dash/stats?to=tomorrow-ish")).json.error.code).toBe("bad_to");
    });

    it("shows a tenant its own app only (another account's app is a 404)", async () => {
      const own = await admin(server, "GET", "/v1/apps/acme-shop/stats", { token: tenant });
      expect(own.status).toBe(200);
      expect((own.json.buckets as Bucket[]).reduce((s, b) => s + b.requests, 0)).toBe(3);
      const other = await admin(server, "GET", "/v1/apps/dash/stats", { token: tenant });
      expect(other.status).toBe(404);
      expect(other.json.error.code).toBe("app_not_found");
      expect((await admin(server, "GET", "/v1/apps/dash/stats", { token: null })).status).toBe(401);
    });
  });

  async function open(width: number, path: string, token: string): Promise<{ page: Page; problems: string[]; foreign: string[] }> {
    const page = await context.newPage();
    await page.setViewportSize({ width, height: 900 });
    const problems: string[] = [];
    const foreign: string[] = [];
    page.on("request", (r) => {
      if (!r.url().startsWith(server.urls.admin + "/") && !r.url().startsWith("data:")) foreign.push(r.url());
    });
    page.on("pageerror", (e) => void problems.push(`pageerror: ${e.message}`));
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`);
    });
    const nav = await page.goto(`${server.urls.admin}${path}#token=${token}`);
    expect(nav?.status()).toBe(200);
    return { page, problems, foreign };
  }

  /** No horizontal scroll at this width, a screenshot, nothing foreign contacted, no script error. */
  async function finish(w: { page: Page; problems: string[]; foreign: string[] }, width: number, name: string): Promise<void> {
    expect(await w.page.evaluate(() => document.documentElement.scrollWidth), `${name} scroll width`).toBeLessThanOrEqual(width);
    await w.page.screenshot({ path: join(SHOTS, `dashboard-${name}-${width}.png`), fullPage: true });
    expect(w.foreign).toEqual([]);
    expect(w.problems).toEqual([]);
    await w.page.close();
  }

  for (const width of WIDTHS) {
    describe(`at ${width} px`, () => {
      it("apps: the list, then one app's charts, deployment, routes, instances and its error log line", async () => {
        const w = await open(width, "/dashboard", server.token);
        const { page } = w;
        await page.locator("#app-rows tr[data-app=dash]").waitFor();
        expect(await page.locator("nav a.active").innerText()).toBe("Apps");
        const names = await page.locator("#app-rows tr").evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset.app));
        expect(names).toEqual(expect.arrayContaining(["dash", "acme-shop"]));
        await finish(w, width, "apps");

        const d = await open(width, "/dashboard/apps?app=dash", server.token);
        const p = d.page;
        await p.locator("#requests-chart rect.bar.req").first().waitFor();
        const sum = async (sel: string) => (await p.locator(sel).evaluateAll((els) => els.map((e) => Number(e.getAttribute("data-value"))))).reduce((s, n) => s + n, 0);
        // The chart shows the requests this test made: 8, 2 of them errors.
        expect(await sum("#requests-chart rect.bar.req")).toBe(8);
        expect(await sum("#requests-chart rect.bar.err")).toBe(2);
        expect(await p.locator("#latency-chart circle.dot.p50").count()).toBeGreaterThanOrEqual(1);
        expect(await p.locator("#latency-chart path.line.p99").count()).toBe(1);
        expect(await p.locator("#cpu-chart rect.bar.cpu").count()).toBeGreaterThanOrEqual(1);
        expect(await p.locator("#stats-status").innerText()).toContain("8 requests, 2 errors in the last hour");
        await p.locator("#version-rows tr[data-version='1']").waitFor();
        expect(await p.locator("#deployment-meta").innerText()).toContain("v1");
        await expect.poll(() => p.locator("#route-rows").innerText()).toContain("dash.localhost");
        await p.locator("#instance-rows tr").first().waitFor();
        // The failed request's log line, with its request id.
        await expect.poll(() => p.locator(`#log-rows tr[data-request-id="${failedId}"]`).count()).toBeGreaterThanOrEqual(1);
        expect(await p.locator(`#log-rows tr[data-request-id="${failedId}"] td.log-line`).first().innerText()).toContain("boom-marker 1 <img src=x id=injected>");
        // App output is text, never markup.
        expect(await p.locator("#injected, #log-rows img").count()).toBe(0);
        // Another window redraws the charts from hourly buckets.
        await p.locator("#window").selectOption("24h");
        await expect.poll(() => p.locator("#stats-status").innerText()).toContain("in the last 24 hours");
        expect(await sum("#requests-chart rect.bar.req")).toBe(8);
        await p.locator("#window").selectOption("60m");
        await expect.poll(() => p.locator("#stats-status").innerText()).toContain("in the last hour");
        await finish(d, width, "app");
      });

      it("usage: requests per day and per app", async () => {
        const w = await open(width, "/dashboard/usage", server.token);
        const { page } = w;
        await page.locator("#usage-rows tr[data-app=dash]").waitFor();
        expect(await page.locator("#usage-rows tr[data-app=dash] td.requests").innerText()).toBe("8");
        expect(await page.locator("#usage-rows tr[data-app=acme-shop] td.requests").innerText()).toBe("3");
        const today = new Date().toISOString().slice(0, 10);
        expect(Number(await page.locator(`#usage-days-chart rect.bar[data-t="${today}"]`).getAttribute("data-value"))).toBeGreaterThanOrEqual(11);
        await finish(w, width, "usage");
      });

      it("pool: instances per deployment and state, and the spare hosts", async () => {
        const w = await open(width, "/dashboard/pool", server.token);
        const { page } = w;
        await page.locator("#pool-rows tr[data-app=dash]").waitFor();
        expect(Number(await page.locator("#pool-rows tr[data-app=dash] td.instances").innerText())).toBeGreaterThanOrEqual(1);
        expect(await page.locator("#pool-rows tr[data-app=acme-shop]").count()).toBe(1);
        expect(await page.locator("#spares").innerText()).toContain("spare hosts taken");
        await finish(w, width, "pool");
      });

      it("billing: the invoices (drafts of this period)", async () => {
        const w = await open(width, "/dashboard/billing", server.token);
        const { page } = w;
        await page.locator("#invoice-rows tr", { hasText: "acme" }).waitFor();
        expect(await page.locator("#invoice-rows tr").count()).toBe(2);
        // An invoice's lines and usage chart fit too.
        await page.locator("#invoice-rows tr", { hasText: "default" }).click();
        await page.locator("#usage-chart rect.bar").first().waitFor();
        expect(await page.locator("#line-rows tr[data-metric=requests] td.description").innerText()).toContain("Requests: 8 ");
        await finish(w, width, "billing");
      });

      it("a tenant token sees only its own apps on every page", async () => {
        const w = await open(width, "/dashboard/apps", tenant);
        const { page } = w;
        await page.locator("#app-rows tr[data-app=acme-shop]").waitFor();
        expect(await page.locator("#app-rows tr").count()).toBe(1);
        await finish(w, width, "tenant-apps");

        const d = await open(width, "/dashboard/apps?app=acme-shop", tenant);
        await d.page.locator("#requests-chart rect.bar.req").first().waitFor();
        await finish(d, width, "tenant-app");

        const other = await open(width, "/dashboard/apps?app=dash", tenant);
        await other.page.locator("#error").waitFor({ state: "visible" });
        expect(await other.page.locator("#error").innerText()).toContain("app_not_found");
        expect(await other.page.locator("#requests-chart").count()).toBe(0);
        await other.page.close();

        const pool = await open(width, "/dashboard/pool", tenant);
        await pool.page.locator("#pool-rows tr[data-app=acme-shop]").waitFor();
        expect(await pool.page.locator("#pool-rows tr").count()).toBe(1);
        expect(await pool.page.locator("#spares").innerText()).toContain("admin tokens");
        await finish(pool, width, "tenant-pool");

        const usage = await open(width, "/dashboard/usage", tenant);
        await usage.page.locator("#usage-rows tr[data-app=acme-shop]").waitFor();
        expect(await usage.page.locator("#usage-rows tr").count()).toBe(1);
        await finish(usage, width, "tenant-usage");
      });
    });
  }

  it("apps: Follow tails the app's log live (server-sent events read with the token in a header)", async () => {
    const w = await open(1280, "/dashboard/apps?app=dash", server.token);
    const { page } = w;
    await page.locator("#log-rows tr").first().waitFor();
    await page.locator("#logs-follow").click();
    await expect.poll(() => page.locator("#logs-status").innerText()).toContain("Following");
    // Requests until the follower (connected asynchronously) shows one of them at the top.
    let id = "";
    await expect
      .poll(
        async () => {
          if (id !== "" && (await page.locator("#log-rows tr").first().getAttribute("data-request-id")) === id) return true;
          const r = await fetchApp(server, "dash.localhost", "/?boom=live");
          id = String(r.headers["x-request-id"]);
          return false;
        },
        { timeout: 30_000, interval: 500 },
      )
      .toBe(true);
    expect(await page.locator("#log-rows tr").first().locator("td.log-line").innerText()).toContain("boom-marker live");
    await page.locator("#logs-follow").click();
    expect(await page.locator("#logs-status").innerText()).toBe("Stopped following.");
    await finish(w, 1280, "app-follow");
  });

  it("an unknown page is a 404; every page is the same self-contained document under the CSP", async () => {
    expect((await fetch(`${server.urls.admin}/dashboard/nope`)).status).toBe(404);
    const bodies = await Promise.all(["", "/apps", "/usage", "/pool", "/billing"].map(async (p) => {
      const r = await fetch(`${server.urls.admin}/dashboard${p}`);
      expect(r.status).toBe(200);
      expect(r.headers.get("content-security-policy")).toMatch(/script-src 'sha256-/);
      return r.text();
    }));
    expect(new Set(bodies).size).toBe(1);
    expect(bodies[0]).not.toContain("innerHTML");
  });
});
