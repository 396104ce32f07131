/**
 * WordPress 6.5 on SQLite (bench/apps/wordpress/build.mjs, from the npm package
 * @wp-playground/wordpress-builds) deploys and serves its front page over HTTPS, and a later
 * request is served by a snapshot instance without compiling any script (opcache filled before the
 * snapshot). The test adds one must-use plugin that prints opcache's counters in an HTML comment
 * at the end of each page.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startServer, fetchApp, admin, ROOT, type TestServer } from "../helpers/server.js";

interface WordPressBuild {
  wordpressBuildsDir(): string | undefined;
  buildWordPressSite(opts: { out?: string }): Promise<{ dir: string }>;
}

const SITE = join(ROOT, "test", "fixtures", "build", "wordpress");
// Imported at run time: a plain .mjs script outside the type-checked tree.
const build = (await import(join(ROOT, "bench", "apps", "wordpress", "build.mjs"))) as WordPressBuild;
const missing = build.wordpressBuildsDir() === undefined;
if (missing) console.warn("wordpress.test: SKIPPED: the npm package @wp-playground/wordpress-builds is not installed (npm install)");

const PROBE = `<?php
// Test probe: opcache's counters at the very end of the request.
add_action( 'shutdown', function () {
	$s = opcache_get_status( false );
	printf( "\\n<!-- zc-opcache misses=%d cached=%d -->\\n", $s['opcache_statistics']['misses'], $s['opcache_statistics']['num_cached_scripts'] );
}, 1000 );
`;

function probe(html: string): { misses: number; cached: number } {
  const m = /<!-- zc-opcache misses=(\d+) cached=(\d+) -->/.exec(html);
  if (m === null) throw new Error(`no opcache probe in the page: ${html.slice(-300)}`);
  return { misses: Number(m[1]), cached: Number(m[2]) };
}

describe.skipIf(missing)("WordPress on SQLite", () => {
  let server: TestServer;
  beforeAll(async () => {
    await build.buildWordPressSite({ out: SITE });
    mkdirSync(join(SITE, "wp-content", "mu-plugins"), { recursive: true });
    writeFileSync(join(SITE, "wp-content", "mu-plugins", "zc-opcache-probe.php"), PROBE);
    server = await startServer(["--no-spare-hosts"]);
    await server.cli(["deploy", SITE, "--app", "wordpress"]);
  }, 180_000);
  afterAll(async () => {
    if (server !== undefined) expect(await server.stop()).toBe(0);
  });

  it("serves the front page with its title, then again from the snapshot without compiling a script", async () => {
    const first = await fetchApp(server, "wp.localhost", "/");
    expect(first.status, first.text.slice(0, 500)).toBe(200);
    expect(first.text).toContain("<title>My WordPress Website</title>");
    // Links point at the host and scheme the request came in on (WP_HOME from the Host header).
    expect(first.text).toContain(`href="https://wp.localhost/?p=1"`);
    const a = probe(first.text);
    // The whole bundle (~1,070 PHP files) is in the cache before the first request.
    expect(a.cached).toBeGreaterThan(1000);
    const post = await fetchApp(server, "wp.localhost", "/?p=1");
    expect(post.status).toBe(200);
    expect(post.text).toContain("Hello world!");
    const second = await fetchApp(server, "wp.localhost", "/");
    expect(second.status).toBe(200);
    expect(second.text).toContain("<title>My WordPress Website</title>");
    // Every request starts from the snapshot: a compile would show as one more miss.
    expect(probe(post.text)).toEqual(a);
    expect(probe(second.text)).toEqual(a);
    const pool = await admin(server, "GET", "/v1/pool");
    const d = pool.json.deployments.find((x: { app: string }) => x.app === "wordpress");
    expect(d?.mode).toBe("snapshot");
  }, 180_000);
});
