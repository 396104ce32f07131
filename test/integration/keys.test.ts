import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { join } from "node:path";
import { startServer, fetchApp, admin, writeBundle, ROOT, type TestServer } from "../helpers/server.js";

const BLOG = join(ROOT, "examples", "php-blog");

function comment(server: TestServer, post: number, author: string, body: string, query = "") {
  return fetchApp(server, "blog.localhost", `/posts/${post}${query}`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ author, body }).toString(),
  });
}

async function comments(server: TestServer, post: number): Promise<Array<{ author: string; body: string }>> {
  const r = await fetchApp(server, "blog.localhost", `/posts/${post}?json=1`);
  expect(r.status).toBe(200);
  return JSON.parse(r.text).comments;
}

describe("per-key instances: each blog post has its own storage, one request at a time", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer(["--idle-ttl-ms", "800"]);
    await server.cli(["deploy", BLOG, "--app", "blog"]);
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("keeps every one of many concurrent comments on one post, in arrival order per client", async () => {
    const n = 20;
    const results = await Promise.all(Array.from({ length: n }, (_, i) => comment(server, 1, `c${i}`, `comment ${i}`)));
    for (const r of results) expect(r.status).toBe(303);
    const list = await comments(server, 1);
    expect(list.length).toBe(n);
    expect(new Set(list.map((c) => c.body)).size).toBe(n);
    // Sequential comments from one client come back in order.
    for (let i = 0; i < 3; i++) expect((await comment(server, 1, "seq", `ordered ${i}`)).status).toBe(303);
    const tail = (await comments(server, 1)).slice(-3).map((c) => c.body);
    expect(tail).toEqual(["ordered 0", "ordered 1", "ordered 2"]);
  });

  it("never shows post 1's comments on post 2", async () => {
    expect((await comment(server, 2, "bob", "only on two")).status).toBe(303);
    const two = await comments(server, 2);
    expect(two.map((c) => c.body)).toEqual(["only on two"]);
    expect((await comments(server, 1)).some((c) => c.body === "only on two")).toBe(false);
    const three = await comments(server, 3);
    expect(three).toEqual([]);
  });

  it("a request that writes and then fails leaves no trace", async () => {
    const before = await comments(server, 2);
    const r = await comment(server, 2, "mallory", "should vanish", "?fail=1");
    expect(r.status).toBe(500);
    expect(await comments(server, 2)).toEqual(before);
  });

  it("lists keys with their storage, exports one as a tar, and deletes one explicitly", async () => {
    const list = await admin(server, "GET", "/v1/apps/blog/keys");
    expect(list.status).toBe(200);
    const keys = list.json.keys.map((k: { key: string }) => k.key).sort();
    expect(keys).toEqual(["1", "2"]);
    expect(list.json.keys[0].bytes).toBeGreaterThan(0);
    const out = await server.cli(["keys", "blog"]);
    expect(out.stdout).toMatch(/KEY\s+BYTES\s+VERSION/);
    const exp = await fetch(`${server.urls.admin}/v1/apps/blog/keys/2/export`, { headers: { authorization: `Bearer ${server.token}` } });
    expect(exp.status).toBe(200);
    const tar = Buffer.from(await exp.arrayBuffer());
    expect(tar.subarray(0, 100).toString("utf8")).toContain("comments.sqlite");
    expect(tar.includes(Buffer.from("SQLite format 3"))).toBe(true);
    const del = await admin(server, "DELETE", "/v1/apps/blog/keys/2");
    expect(del.status).toBe(200);
    expect(await comments(server, 2)).toEqual([]);
  });

  it("a key's data outlives idle time; snapshot-mode keys need no instance of their own", async () => {
    // Snapshot mode: keys share the deployment's pool — no per-key pools exist.
    const pool = await admin(server, "GET", "/v1/pool");
    expect(pool.json.deployments.filter((d: { key: string | null }) => d.key !== null)).toEqual([]);
    expect((await comment(server, 3, "eve", "survives eviction")).status).toBe(303);
    // Idle for longer than the TTL (800 ms): the claim is about time passing, so a fixed wait.
    await new Promise((r) => setTimeout(r, 1500));
    expect((await comments(server, 3)).map((c) => c.body)).toEqual(["survives eviction"]);
  });

  it("keeps committed comments across a kill -9 of the server and a new deployment", async () => {
    expect((await comment(server, 1, "durable", "before the crash")).status).toBe(303);
    const dataDir = server.dataDir;
    server.proc.kill("SIGKILL");
    await new Promise((r) => server.proc.once("exit", r));
    server = await startServer([], { dataDir });
    await server.cli(["deploy", BLOG, "--app", "blog"]);
    const list = await comments(server, 1);
    expect(list.at(-1)?.body).toBe("before the crash");
    expect(list.length).toBe(24);
  });
});

describe("daemon-mode keyed routes: a dedicated instance per key, evicted when idle", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer(["--idle-ttl-ms", "3000"]);
    const dir = writeBundle({
      "zerocell.toml": `runtime = "php"\n[php]\ndocument_root = "public"\nfront_controller = "index.php"\n[[routes]]\nhost = "keyd.localhost"\npath = "/k/:name"\nkey = "name"\nmode = "daemon"\n`,
      "public/index.php": `<?php
$tmp = @file_get_contents('/tmp/mem') ?: '';
$data = @file_get_contents('/data/store') ?: '';
if ($_SERVER['REQUEST_METHOD'] === 'POST') { file_put_contents('/tmp/mem', $tmp . 'm'); file_put_contents('/data/store', $data . 'd'); }
echo json_encode(['tmp' => $tmp, 'data' => $data, 'uri' => $_SERVER['REQUEST_URI']]);`,
    });
    await server.cli(["deploy", dir, "--app", "keyd"]);
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("keeps instance state per key while it lives, /data forever", async () => {
    const post = (k: string) => fetchApp(server, "keyd.localhost", `/k/${k}`, { method: "POST", body: "" });
    const get = async (k: string) => JSON.parse((await fetchApp(server, "keyd.localhost", `/k/${k}`)).text);
    // Key a's requests back to back (its instance is warm), then key b (whose start is slow).
    await post("a");
    await post("a");
    expect(await get("a")).toMatchObject({ tmp: "mm", data: "dd" });
    await post("b");
    expect(await get("b")).toMatchObject({ tmp: "m", data: "d" });
    const pools = (await admin(server, "GET", "/v1/pool")).json.deployments.filter((d: { key: string | null }) => d.key !== null);
    // Key b's instance is there; a's may already have expired while b started on a slow machine.
    expect(pools.map((d: { key: string }) => d.key)).toContain("b");
    // Idle past the TTL (3 s): the key instances go, the data stays.
    await expect
      .poll(async () => (await admin(server, "GET", "/v1/pool")).json.deployments.filter((d: { key: string | null; instances: number }) => d.key !== null && d.instances > 0).length, { timeout: 30_000, interval: 200 })
      .toBe(0);
    expect(await get("a")).toMatchObject({ tmp: "", data: "dd" });
  });
});
