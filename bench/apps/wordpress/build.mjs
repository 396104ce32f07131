#!/usr/bin/env node
/**
 * Assembles a WordPress 6.x site on SQLite, for the benchmark and the integration test, from the
 * npm package @wp-playground/wordpress-builds alone (nothing is downloaded at build or run time):
 *   1. WordPress (src/wordpress/wp-<version>.zip: the PHP files and a pre-installed SQLite
 *      database, wp-content/database/.ht.sqlite; CSS/JS/images are in public/wp-<version>/ and
 *      copied only with --assets),
 *   2. the SQLite integration plugin (src/sqlite-database-integration/…zip) into
 *      wp-content/plugins/sqlite-database-integration,
 *   3. its drop-in wp-content/db.php from the plugin's db.copy, the two placeholders filled in
 *      (the plugin folder as a path relative to the drop-in, so one site serves at /app in the
 *      sandbox and at any directory under nginx),
 *   4. wp-config.php (SQLite, no cron, no updates, no outbound HTTP; home URL from the request's
 *      Host so the same files serve every host and port),
 *   5. zerocell.toml (runtime php, warm-up "/" and the sample post),
 *   6. the database settled: the front page and the sample post requested once in php-wasm (the
 *      project's own PHP build, in memory) with a writable copy of the database, so the rows
 *      WordPress adds on a first view (the theme's global-styles post, theme_mods) are in the
 *      shipped file and a page view is a pure read of the read-only image.
 * Zips are read with fflate (small, no dependencies, synchronous unzip of a buffer).
 *
 * Usage: node bench/apps/wordpress/build.mjs [--out DIR] [--version 6.5] [--assets] [--force]
 * Default output: bench/apps/wordpress/site (gitignored).
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, cpSync, renameSync } from "node:fs";
import { createRequire } from "node:module";
import { randomBytes } from "node:crypto";
import { dirname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { unzipSync } from "fflate";
import { readdirSync } from "node:fs";

const HERE = dirname(fileURLToPath(import.meta.url));
export const DEFAULT_SITE_DIR = join(HERE, "site");
export const DEFAULT_WP_VERSION = "6.5";
const PACKAGE = "@wp-playground/wordpress-builds";
/** Files of public/wp-<version> (not in the zip) that WordPress's PHP reads to inline them. */
const INLINED_ASSETS = ["wp-includes/js/wp-emoji-loader.min.js", "wp-includes/js/wp-emoji-loader.js"];
const PLUGIN_DIR = "wp-content/plugins/sqlite-database-integration";

/** The package's root directory, or undefined when it is not installed. */
export function wordpressBuildsDir() {
  const require = createRequire(import.meta.url);
  try {
    return dirname(require.resolve(`${PACKAGE}/package.json`));
  } catch {
    return undefined;
  }
}

/** Every file under `dir` as [relative path, bytes]. */
function listFiles(dir, rel = "") {
  const out = [];
  for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
    const r = rel === "" ? e.name : `${rel}/${e.name}`;
    if (e.isDirectory()) out.push(...listFiles(dir, r));
    else if (e.isFile()) out.push(r);
  }
  return out;
}

/**
 * Runs the site's front page and first post once in php-wasm with the site in memory, then
 * writes the database back (see 6. above). Returns what each page answered.
 */
async function settleDatabase(dir) {
  const { loadPHPRuntime, PHP } = await import("@php-wasm/universal");
  const { getPHPLoaderModule } = await import("@php-wasm/node-8-3");
  const php = new PHP(await loadPHPRuntime(await getPHPLoaderModule(), { processId: 1 }));
  const root = "/wordpress";
  for (const rel of listFiles(dir)) {
    php.mkdirTree(dirname(`${root}/${rel}`));
    php.writeFile(`${root}/${rel}`, readFileSync(join(dir, rel)));
  }
  const pages = [];
  for (const uri of ["/", "/?p=1"]) {
    const q = uri.indexOf("?");
    const r = await php.run({
      scriptPath: `${root}/index.php`,
      relativeUri: uri,
      $_SERVER: { HTTP_HOST: "localhost", SERVER_NAME: "localhost", SERVER_PORT: "80", REQUEST_URI: uri, QUERY_STRING: q === -1 ? "" : uri.slice(q + 1), SCRIPT_NAME: "/index.php", SCRIPT_FILENAME: `${root}/index.php`, DOCUMENT_ROOT: root, REQUEST_METHOD: "GET" },
    });
    pages.push(`${uri} ${r.httpStatusCode} ${(r.text.match(/<title>[^<]*<\/title>/) ?? ["(no title)"])[0]}${r.errors ? ` errors: ${r.errors.slice(0, 300)}` : ""}`);
  }
  writeFileSync(join(dir, "wp-content", "database", ".ht.sqlite"), php.readFileAsBuffer(`${root}/wp-content/database/.ht.sqlite`));
  php.exit();
  return pages;
}

/** Writes the files of a zip under `dest`, dropping `stripPrefix` from each name. */
function extractZip(zipPath, dest, stripPrefix = "") {
  const files = unzipSync(readFileSync(zipPath));
  let count = 0;
  const root = resolve(dest);
  for (const [name, data] of Object.entries(files)) {
    if (!name.startsWith(stripPrefix)) continue;
    const rel = name.slice(stripPrefix.length);
    if (rel === "" || rel.endsWith("/")) continue;
    const target = resolve(root, rel);
    // The package is trusted, but a zip name never writes outside the site.
    if (!target.startsWith(root + sep)) throw new Error(`zip entry ${name} leaves ${dest}`);
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, data);
    count++;
  }
  return count;
}

function wpConfig() {
  const salt = () => randomBytes(32).toString("base64url");
  const keys = ["AUTH_KEY", "SECURE_AUTH_KEY", "LOGGED_IN_KEY", "NONCE_KEY", "AUTH_SALT", "SECURE_AUTH_SALT", "LOGGED_IN_SALT", "NONCE_SALT"];
  return `<?php
// Written by bench/apps/wordpress/build.mjs: WordPress on SQLite (wp-content/db.php), no cron,
// no updates, no outbound HTTP, the home URL taken from the request (any host, any port).
define( 'DB_NAME', 'wordpress' );
define( 'DB_USER', 'unused' );
define( 'DB_PASSWORD', 'unused' );
define( 'DB_HOST', 'localhost' );
define( 'DB_CHARSET', 'utf8' );
define( 'DB_COLLATE', '' );
${keys.map((k) => `define( '${k}', '${salt()}' );`).join("\n")}
$table_prefix = 'wp_';
define( 'WP_DEBUG', false );
define( 'CONCATENATE_SCRIPTS', false );
define( 'DISABLE_WP_CRON', true );
define( 'AUTOMATIC_UPDATER_DISABLED', true );
define( 'WP_AUTO_UPDATE_CORE', false );
define( 'DISALLOW_FILE_MODS', true );
define( 'WP_HTTP_BLOCK_EXTERNAL', true );
$zc_scheme = ( ! empty( $_SERVER['HTTPS'] ) && 'off' !== $_SERVER['HTTPS'] ) ? 'https' : 'http';
$zc_host = isset( $_SERVER['HTTP_HOST'] ) && preg_match( '/^[A-Za-z0-9.:\\[\\]-]{1,255}$/', $_SERVER['HTTP_HOST'] ) ? $_SERVER['HTTP_HOST'] : 'localhost';
define( 'WP_HOME', $zc_scheme . '://' . $zc_host );
define( 'WP_SITEURL', $zc_scheme . '://' . $zc_host );
if ( ! defined( 'ABSPATH' ) ) {
	define( 'ABSPATH', __DIR__ . '/' );
}
require_once ABSPATH . 'wp-settings.php';
`;
}

const MANIFEST = `# WordPress on SQLite, assembled by bench/apps/wordpress/build.mjs from @wp-playground/wordpress-builds.
# The database (wp-content/database/.ht.sqlite) is part of the read-only image: pages are served,
# writes (comments, logins, the admin) fail.
runtime = "php"
warmup = ["/", "/?p=1"]

[php]
version = "8.3"

[limits]
timeout_ms = 30000
memory_mb = 256

[[routes]]
host = "*"
path = "/"
`;

/**
 * Builds the site into `out` (replaced when `force` or when it is incomplete). Returns the
 * directory and what went in.
 */
export async function buildWordPressSite({ out = DEFAULT_SITE_DIR, version = DEFAULT_WP_VERSION, assets = false, force = false } = {}) {
  const pkg = wordpressBuildsDir();
  if (pkg === undefined) throw new Error(`${PACKAGE} is not installed (npm install in the repository)`);
  const wpZip = join(pkg, "src", "wordpress", `wp-${version}.zip`);
  const pluginZip = join(pkg, "src", "sqlite-database-integration", "sqlite-database-integration.zip");
  if (!existsSync(wpZip)) throw new Error(`${PACKAGE} has no WordPress ${version} (${wpZip})`);
  const stamp = join(out, ".zerocell-build.json");
  const want = JSON.stringify({ version, assets, pkg: JSON.parse(readFileSync(join(pkg, "package.json"), "utf8")).version, layout: 2 });
  if (!force && existsSync(stamp) && readFileSync(stamp, "utf8") === want) return { dir: out, reused: true };
  const tmp = `${out}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  // 1. WordPress
  const wpFiles = extractZip(wpZip, tmp);
  // The assets PHP itself reads (inlined into every page), or all of them with --assets.
  const pub = join(pkg, "public", `wp-${version}`);
  for (const rel of assets ? [""] : INLINED_ASSETS) {
    if (existsSync(join(pub, rel))) cpSync(join(pub, rel), join(tmp, rel), { recursive: true, force: false, errorOnExist: false });
  }
  // 2. the SQLite plugin (its zip holds one top folder)
  const top = Object.keys(unzipSync(readFileSync(pluginZip), { filter: (f) => !f.name.slice(0, -1).includes("/") && f.name.endsWith("/") }))[0] ?? "";
  const pluginFiles = extractZip(pluginZip, join(tmp, PLUGIN_DIR), top);
  // 3. the drop-in, placeholders filled in
  const dropIn = readFileSync(join(tmp, PLUGIN_DIR, "db.copy"), "utf8")
    .replace("'{SQLITE_IMPLEMENTATION_FOLDER_PATH}'", "__DIR__ . '/plugins/sqlite-database-integration'")
    .replaceAll("{SQLITE_PLUGIN}", "sqlite-database-integration/load.php");
  if (dropIn.includes("{SQLITE_")) throw new Error("db.copy: a placeholder is left");
  writeFileSync(join(tmp, "wp-content", "db.php"), dropIn);
  // 4. wp-config.php, 5. the manifest
  writeFileSync(join(tmp, "wp-config.php"), wpConfig());
  writeFileSync(join(tmp, "zerocell.toml"), MANIFEST);
  // The packer leaves dotfiles out; the database is one (never served: dispatch refuses hidden files).
  writeFileSync(join(tmp, ".zerocellignore"), "!wp-content/database/.ht.sqlite\n");
  if (!existsSync(join(tmp, "wp-content", "database", ".ht.sqlite"))) throw new Error(`wp-${version}.zip has no pre-installed database`);
  // 6. the database settled
  const settled = await settleDatabase(tmp);
  writeFileSync(join(tmp, ".zerocell-build.json"), want);
  rmSync(out, { recursive: true, force: true });
  mkdirSync(dirname(out), { recursive: true });
  renameSync(tmp, out);
  return { dir: out, reused: false, wpFiles, pluginFiles, settled };
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const opt = (name) => {
    const i = args.indexOf(name);
    return i === -1 ? undefined : args[i + 1];
  };
  const t0 = performance.now();
  const r = await buildWordPressSite({ out: resolve(opt("--out") ?? DEFAULT_SITE_DIR), version: opt("--version") ?? DEFAULT_WP_VERSION, assets: args.includes("--assets"), force: args.includes("--force") });
  console.log(`${r.reused ? "up to date" : "built"}: ${r.dir}${r.reused ? "" : ` (${r.wpFiles} WordPress files, ${r.pluginFiles} plugin files; ${r.settled.join("; ")})`} in ${Math.round(performance.now() - t0)} ms`);
}
