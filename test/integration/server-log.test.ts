/**
 * The server's own log (src/log.ts): pino records with numeric levels on stdout when it is not a
 * terminal, the startup line a record too; a request's record carries its request id, app,
 * deployment and account (child loggers); `--log-format pretty` prints pino-pretty lines.
 */
import { describe, it, expect, afterAll } from "vitest";
import { startServer, fetchApp, admin, phpBundle, type TestServer } from "../helpers/server.js";

async function packed(dir: string): Promise<Buffer> {
  const { packDirectory } = await import("../../src/bundle/index.js");
  return packDirectory(dir);
}

interface Rec {
  level: number;
  time: number;
  msg: string;
  [k: string]: unknown;
}

/** Lines Node itself writes to stderr (deprecation and experimental warnings). */
const NODE_NOISE = /^\(node:\d+\)|^\(Use `node /;

describe("server log: pino records", () => {
  const servers: TestServer[] = [];
  afterAll(async () => {
    for (const s of servers) await s.stop();
  });

  it("writes only JSON records with numeric levels; requests carry request id, app, deployment and account", async () => {
    const server = await startServer();
    servers.push(server);
    const up = await admin(server, "POST", "/v1/apps/logged/deployments", { body: await packed(phpBundle("logged.localhost", { "index.php": "<?php echo 'hi';" })), contentType: "application/gzip" });
    expect(up.status, JSON.stringify(up.json)).toBe(201);
    const res = await fetchApp(server, "logged.localhost", "/");
    expect(res.status).toBe(200);
    const requestId = String(res.headers["x-request-id"]);
    const records = (): Rec[] =>
      server
        .output()
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Rec);
    await expect.poll(() => records().some((r) => r.msg === "request" && r.requestId === requestId), { timeout: 20_000 }).toBe(true);
    const lines = server.output().split("\n").filter((l) => l.trim() !== "");
    expect(lines.filter((l) => !l.startsWith("{") && !NODE_NOISE.test(l))).toEqual([]);
    for (const r of records()) {
      expect([10, 20, 30, 40, 50, 60]).toContain(r.level);
      expect(typeof r.time).toBe("number");
    }
    const listening = records().find((r) => r.msg.startsWith("zerocell listening"));
    expect(listening?.level).toBe(30);
    expect((listening?.urls as { admin: string }).admin).toBe(server.urls.admin);
    const req = records().find((r) => r.msg === "request" && r.requestId === requestId)!;
    expect(req).toMatchObject({ level: 30, app: "logged", deploymentId: up.json.deployment.id, accountId: up.json.deployment.accountId, host: "logged.localhost", path: "/", status: 200 });
    const deployed = records().find((r) => r.msg === "deployed")!;
    expect(deployed).toMatchObject({ app: "logged", deploymentId: up.json.deployment.id, accountId: up.json.deployment.accountId });
  }, 120_000);

  it("prints pretty lines with --log-format pretty", async () => {
    const server = await startServer(["--log-format", "pretty"]);
    servers.push(server);
    const first = server.output().split("\n").find((l) => l.includes("zerocell listening"))!;
    expect(first).toMatch(/INFO.*zerocell listening: http /);
    expect(first.startsWith("{")).toBe(false);
  }, 60_000);
});
