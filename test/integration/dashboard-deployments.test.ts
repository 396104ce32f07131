/**
 * The dashboard's deployments page in real Chromium (390 px and 1280 px) against a real server:
 * an app's history (ready and failed versions) and a rollback button that calls the API; the app
 * then serves the version rolled back to. Screenshots: test/fixtures/build/dashboard-deployments-<width>.png.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext } from "playwright-core";
import { startServer, phpBundle, fetchApp, admin, cleanup, ROOT, type TestServer } from "../helpers/server.js";

const SHOTS = join(ROOT, "test", "fixtures", "build");

describe("dashboard: deployments page", () => {
  let server: TestServer;
  let context: BrowserContext;
  let userDataDir: string;
  const bundles: string[] = [];

  async function deploy(text: string): Promise<number> {
    const { packDirectory } = await import("../../src/bundle/index.js");
    const dir = phpBundle("roll.localhost", { "index.php": text });
    bundles.push(dir);
    return (await admin(server, "POST", "/v1/apps/roll/deployments", { body: await packDirectory(dir), contentType: "application/gzip" })).status;
  }

  beforeAll(async () => {
    server = await startServer(["--no-spare-hosts"]);
    expect(await deploy("<?php echo 'one';")).toBe(201);
    expect(await deploy("<?php echo 'two';")).toBe(201);
    expect(await deploy("<?php echo 'broken'")).toBe(422); // a parse error: stored as failed
    expect((await fetchApp(server, "roll.localhost", "/")).text).toBe("two");
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

  for (const [width, target] of [[390, 1], [1280, 2]] as const) {
    it(`shows the history and rolls back to v${target} with a click (${width} px)`, async () => {
      const page = await context.newPage();
      await page.setViewportSize({ width, height: 900 });
      const problems: string[] = [];
      page.on("pageerror", (e) => void problems.push(`pageerror: ${e.message}`));
      page.on("console", (m) => {
        if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`);
      });
      const nav = await page.goto(`${server.urls.admin}/dashboard/deployments?app=roll#token=${server.token}`);
      expect(nav?.status()).toBe(200);
      await page.locator("#deployment-rows tr[data-version='3']").waitFor();
      expect(await page.locator("nav a.active").innerText()).toBe("Deployments");
      expect(await page.locator("#deployment-rows tr").count()).toBe(3);
      // The failed version shows its error and has no rollback button; the active one neither.
      expect(await page.locator("#deployment-rows tr[data-version='3']").innerText()).toContain("failed");
      expect(await page.locator("#deployment-rows tr[data-version='3'] button.rollback").count()).toBe(0);
      const active = width === 390 ? 2 : 1;
      expect(await page.locator(`#deployment-rows tr[data-version='${active}']`).getAttribute("data-active")).toBe("true");
      expect(await page.locator(`#deployment-rows tr[data-version='${active}'] button.rollback`).count()).toBe(0);
      await page.locator(`#deployment-rows tr[data-version='${target}'] button.rollback`).click();
      await expect.poll(() => page.locator("#deployments-status").innerText(), { timeout: 30_000 }).toContain(`Rolled back roll to v${target}.`);
      expect(await page.locator(`#deployment-rows tr[data-version='${target}']`).getAttribute("data-active")).toBe("true");
      expect((await fetchApp(server, "roll.localhost", "/")).text).toBe(target === 1 ? "one" : "two");
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(width);
      await page.screenshot({ path: join(SHOTS, `dashboard-deployments-${width}.png`), fullPage: true });
      expect(problems).toEqual([]);
      await page.close();
    }, 120_000);
  }
});
