/**
 * Static files of a PHP app's document root are served by the gateway (issue 15): no sandbox,
 * no usage record; ETag / Last-Modified revalidation, byte ranges, gzip and brotli for text.
 * Runtime errors the app did not render itself show the short page with the request id.
 */
import { describe, it, expect, beforeAll, afterAll, vi } from "vitest";
import Database from "better-sqlite3";
import { join } from "node:path";
import { gunzipSync, brotliDecompressSync } from "node:zlib";
import { startServer, fetchApp, admin, phpBundle, type TestServer } from "../helpers/server.js";
import { packDirectory } from "../../src/bundle/index.js";

const CSS = "body { color: red; }\n".repeat(200);
const BIN = Buffer.from(Array.from({ length: 4096 }, (_, i) => i % 251));

describe("static files served by the gateway", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer(["--no-spare-hosts"]);
    const dir = phpBundle("static.localhost", { "index.php": "<?php echo 'php ran';", "fatal.php": "<?php undefined_function_here();", "app.css": CSS, "blob.bin": "", "docs/index.html": "<h1>docs</h1>" });
    const { writeFileSync } = await import("node:fs");
    writeFileSync(join(dir, "public", "blob.bin"), BIN);
    const r = await admin(server, "POST", "/v1/apps/static/deployments", { body: await packDirectory(dir), contentType: "application/gzip" });
    expect(r.status).toBe(201);
  });
  afterAll(async () => {
    expect(await server.stop()).toBe(0);
  });

  const usageRows = (): number => {
    const db = new Database(join(server.dataDir, "zerocell.db"), { readonly: true });
    try {
      return (db.prepare("SELECT count(*) AS n FROM usage_records WHERE mode != 'warmup'").get() as { n: number }).n;
    } finally {
      db.close();
    }
  };

  it("serves a file without a sandbox, with validators and Cache-Control, and does not bill it", async () => {
    const before = usageRows();
    const r = await fetchApp(server, "static.localhost", "/app.css");
    expect(r.status).toBe(200);
    expect(r.text).toBe(CSS);
    expect(r.headers["x-zerocell-instance"]).toBe("static");
    expect(r.headers["content-type"]).toContain("text/css");
    expect(r.headers["cache-control"]).toContain("must-revalidate");
    expect(r.headers.etag).toMatch(/^"[A-Za-z0-9_-]{22}"$/);
    expect(new Date(r.headers["last-modified"]!).getTime()).toBeGreaterThan(0);
    // Revalidation: 304 by ETag and by date.
    expect((await fetchApp(server, "static.localhost", "/app.css", { headers: { "if-none-match": r.headers.etag! } })).status).toBe(304);
    expect((await fetchApp(server, "static.localhost", "/app.css", { headers: { "if-modified-since": r.headers["last-modified"]! } })).status).toBe(304);
    expect((await fetchApp(server, "static.localhost", "/app.css", { headers: { "if-none-match": '"other"' } })).status).toBe(200);
    // A directory index that is a file, too.
    expect((await fetchApp(server, "static.localhost", "/docs/")).headers["x-zerocell-instance"]).toBe("static");
    // PHP still runs in the sandbox.
    const php = await fetchApp(server, "static.localhost", "/");
    expect(php.text).toBe("php ran");
    expect(php.headers["x-zerocell-instance"]).not.toBe("static");
    // Only the PHP request is metered.
    await vi.waitFor(() => expect(usageRows()).toBe(before + 1), { timeout: 10_000, interval: 100 });
  });

  it("answers byte ranges (206, 416) and compresses text with brotli or gzip", async () => {
    const part = await fetchApp(server, "static.localhost", "/blob.bin", { headers: { range: "bytes=10-19" } });
    expect(part.status).toBe(206);
    expect(part.headers["content-range"]).toBe(`bytes 10-19/${BIN.length}`);
    expect(part.body).toEqual(BIN.subarray(10, 20));
    const tail = await fetchApp(server, "static.localhost", "/blob.bin", { headers: { range: "bytes=-5" } });
    expect(tail.body).toEqual(BIN.subarray(BIN.length - 5));
    const bad = await fetchApp(server, "static.localhost", "/blob.bin", { headers: { range: "bytes=99999-" } });
    expect(bad.status).toBe(416);
    expect(bad.headers["content-range"]).toBe(`bytes */${BIN.length}`);
    const br = await fetchApp(server, "static.localhost", "/app.css", { headers: { "accept-encoding": "gzip, br" } });
    expect(br.headers["content-encoding"]).toBe("br");
    expect(br.body.length).toBeLessThan(CSS.length / 4);
    expect(brotliDecompressSync(br.body).toString()).toBe(CSS);
    const gz = await fetchApp(server, "static.localhost", "/app.css", { headers: { "accept-encoding": "gzip" } });
    expect(gz.headers["content-encoding"]).toBe("gzip");
    expect(gunzipSync(gz.body).toString()).toBe(CSS);
    // Binary files are not compressed.
    expect((await fetchApp(server, "static.localhost", "/blob.bin", { headers: { "accept-encoding": "gzip, br" } })).headers["content-encoding"]).toBeUndefined();
  });

  it("a PHP fatal error shows visitors the short error page with the request id", async () => {
    const r = await fetchApp(server, "static.localhost", "/fatal.php");
    expect(r.status).toBe(500);
    expect(r.text).toContain(r.headers["x-request-id"] as string);
    expect(r.text).toContain("the app failed while answering this request");
    expect(r.text).not.toContain("undefined_function_here");
  });
});
