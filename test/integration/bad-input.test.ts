/**
 * Hostile input against a real server: bundles POSTed to the admin API (A), raw HTTP to the app
 * ports (B), and malformed admin API calls (C). Every case checks the status, the error code, that
 * the message names the offending thing, that nothing was deployed, and that the server still serves.
 */
import { describe, it, expect, beforeAll, afterAll, vi } from "vitest";
import { gzipSync } from "node:zlib";
import { randomBytes } from "node:crypto";
import net from "node:net";
import tls from "node:tls";
import { startServer, fetchApp, admin, writeBundle, cleanup, type TestServer } from "../helpers/server.js";
import { tar, type RawEntry } from "../helpers/tar.js";

const tgz = (entries: RawEntry[]) => gzipSync(tar(entries));

const MiB = 1024 * 1024;

/** A valid manifest (document root "public", one route at `host`), optionally with extra TOML. */
function manifestText(host: string, opts: { limits?: string } = {}): string {
  return `runtime = "php"\n[php]\ndocument_root = "public"\n${opts.limits === undefined ? "" : `[limits]\n${opts.limits}\n`}[[routes]]\nhost = "${host}"\npath = "/"\n`;
}

/** A deployable bundle: manifest + public/index.php, plus `extra` entries. */
function bundle(host: string, php: string, ...extra: RawEntry[]): Buffer {
  return tgz([{ path: "zerocell.toml", data: manifestText(host) }, { path: "public/index.php", data: php }, ...extra]);
}

/** A bundle that would deploy fine except for the `extra` entries. */
const hostile = (...extra: RawEntry[]) => bundle("hostile.localhost", "<?php echo 'hostile';", ...extra);
const withManifest = (toml: string) => tgz([{ path: "zerocell.toml", data: toml }, { path: "public/index.php", data: "<?php echo 1;" }]);

function deploy(server: TestServer, app: string, body: Buffer | string, query = "") {
  return admin(server, "POST", `/v1/apps/${app}/deployments${query}`, { body, contentType: "application/gzip" });
}

// ---------------------------------------------------------------------------------------------
// Raw sockets.

interface RawResult {
  text: string;
  /** Status code of the first response, or 0 when the server sent nothing. */
  status: number;
  /** The server closed the connection (as opposed to our timeout). */
  closed: boolean;
  ms: number;
}

/** Opens a TCP (or TLS) connection to the app port; `host` is the SNI name for TLS. */
function connect(server: TestServer, scheme: "http" | "https", host = "b.localhost"): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock =
      scheme === "https" ?
        tls.connect({ host: "127.0.0.1", port: server.httpsPort, servername: host, ca: server.ca }, () => resolve(sock))
      : net.connect({ host: "127.0.0.1", port: server.httpPort }, () => resolve(sock));
    sock.once("error", reject);
  });
}

/** Sends raw bytes and reads until the server closes the connection or `timeoutMs` passes. */
async function rawRequest(server: TestServer, scheme: "http" | "https", data: string | Buffer, opts: { timeoutMs?: number; port?: number; host?: string } = {}): Promise<RawResult> {
  const t0 = Date.now();
  const sock = opts.port !== undefined ? await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port: opts.port! }, () => resolve(s));
    s.once("error", reject);
  }) : await connect(server, scheme, opts.host);
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let closed = false;
    const finish = () => {
      clearTimeout(timer);
      sock.destroy();
      const text = Buffer.concat(chunks).toString("latin1");
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      resolve({ text, status: m ? Number(m[1]) : 0, closed, ms: Date.now() - t0 });
    };
    const timer = setTimeout(finish, opts.timeoutMs ?? 5000);
    sock.on("data", (c: Buffer) => chunks.push(c));
    sock.on("error", () => {});
    sock.on("close", () => {
      closed = true;
      finish();
    });
    sock.write(data);
  });
}

/**
 * POSTs `total` bytes (a repeated random chunk) over a raw socket with backpressure, and stops
 * writing as soon as a whole response has arrived. With `declareLength` the request carries a
 * Content-Length, otherwise it is chunked. A raw socket (not http.request) so that an early
 * answer is read even when the server closes the connection while the client is still writing.
 */
function streamPost(port: number, path: string, headers: Record<string, string>, total: number, declareLength: boolean): Promise<{ status: number; text: string; sentAtResponse: number }> {
  const chunk = randomBytes(256 * 1024);
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: "127.0.0.1", port });
    let sent = 0;
    let sentAtResponse = -1;
    let done = false;
    let buf = Buffer.alloc(0);
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      const text = buf.toString("utf8");
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      const sep = text.indexOf("\r\n\r\n");
      if (m === null || sep === -1) return reject(err ?? new Error(`no response (sent ${sent} bytes): ${JSON.stringify(text.slice(0, 200))}`));
      resolve({ status: Number(m[1]), text: text.slice(sep + 4), sentAtResponse });
    };
    const timer = setTimeout(() => finish(new Error("timed out")), 60_000);
    sock.on("data", (c: Buffer) => {
      if (sentAtResponse === -1) sentAtResponse = sent;
      buf = Buffer.concat([buf, c]);
      const text = buf.toString("latin1");
      const sep = text.indexOf("\r\n\r\n");
      const len = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, sep === -1 ? undefined : sep));
      if (sep !== -1 && len !== null && buf.length >= sep + 4 + Number(len[1])) finish();
    });
    sock.on("error", (e) => finish(e));
    sock.on("close", () => finish());
    sock.on("connect", () => {
      const head = Object.entries({ host: "127.0.0.1", ...headers, ...(declareLength ? { "content-length": String(total) } : { "transfer-encoding": "chunked" }) })
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join("");
      sock.write(`POST ${path} HTTP/1.1\r\n${head}\r\n`);
      const pump = () => {
        while (!done && sentAtResponse === -1 && sent < total) {
          const n = Math.min(chunk.length, total - sent);
          sent += n;
          const piece = n === chunk.length ? chunk : chunk.subarray(0, n);
          const ok = declareLength ? sock.write(piece) : sock.write(Buffer.concat([Buffer.from(`${n.toString(16)}\r\n`), piece, Buffer.from("\r\n")]));
          if (!ok) {
            sock.once("drain", pump);
            return;
          }
        }
        if (!done && sent >= total && !declareLength) sock.write("0\r\n\r\n");
      };
      pump();
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// =============================================================================================
// A. Hostile bundles

describe("A. hostile bundles POSTed to the admin API", () => {
  let server: TestServer;

  /** Nothing was deployed: the throwaway app does not exist and "good" is still at v1 and serving. */
  async function expectNothingDeployed(app = "hostile"): Promise<void> {
    const missing = await admin(server, "GET", `/v1/apps/${app}/deployments`);
    expect(missing.status).toBe(404);
    expect(missing.json.error.code).toBe("app_not_found");
    const good = await admin(server, "GET", "/v1/apps/good/deployments");
    expect(good.status).toBe(200);
    expect(good.json.deployments.map((d: { version: number }) => d.version)).toEqual([1]);
    const res = await fetchApp(server, "good.localhost", "/");
    expect(res.status).toBe(200);
    expect(res.text).toBe("good");
  }

  /** POSTs the body to a new app and to the existing "good" app; both must be refused the same way. */
  async function expectRejected(body: Buffer | string, status: number, code: string, ...fragments: Array<string | RegExp>): Promise<void> {
    for (const app of ["hostile", "good"]) {
      const r = await deploy(server, app, body);
      expect(r.status, JSON.stringify(r.json)).toBe(status);
      expect(r.json.error.code, r.json.error.message).toBe(code);
      expect(typeof r.json.error.requestId).toBe("string");
      for (const f of fragments) {
        if (typeof f === "string") expect(r.json.error.message).toContain(f);
        else expect(r.json.error.message).toMatch(f);
      }
      expect(r.json.error.message).not.toMatch(/at .*\.js:\d+/);
    }
    await expectNothingDeployed();
  }

  beforeAll(async () => {
    server = await startServer();
    const r = await deploy(server, "good", bundle("good.localhost", "<?php echo 'good';"));
    expect(r.status, JSON.stringify(r.json)).toBe(201);
    expect(r.json.deployment.version).toBe(1);
    expect((await fetchApp(server, "good.localhost", "/")).text).toBe("good");
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("accepts the control bundle (the hostile ones differ only in the hostile entry)", async () => {
    // Sanity: the base of every hostile bundle below is deployable, so each one is refused for
    // its hostile entry and not for something else.
    const r = await deploy(server, "control", hostile({ path: "public/ok.txt", data: "fine" }));
    expect(r.status, JSON.stringify(r.json)).toBe(201);
    expect((await fetchApp(server, "hostile.localhost", "/")).text).toBe("hostile");
  });

  // The control app above owns hostile.localhost: hostile bundles for other apps would now fail
  // with a route conflict, so they use a host of their own.
  const h = (...extra: RawEntry[]) => bundle("h.localhost", "<?php echo 1;", ...extra);

  it("rejects an absolute path entry", async () => {
    await expectRejected(h({ path: "/etc/cron.d/evil", data: "x" }), 400, "bundle_bad_path", '"/etc/cron.d/evil"', "absolute path");
  });

  it('rejects a "../" entry', async () => {
    await expectRejected(h({ path: "../evil.php", data: "<?php" }), 400, "bundle_bad_path", '"../evil.php"', "escapes the bundle root");
    await expectRejected(h({ path: "public/../../evil.php", data: "<?php" }), 400, "bundle_bad_path", '"public/../../evil.php"');
  });

  it("rejects a symlink to /etc/passwd", async () => {
    await expectRejected(h({ path: "public/passwd", type: "2", linkpath: "/etc/passwd" }), 400, "bundle_bad_entry", '"public/passwd"', '"/etc/passwd"', "absolute path");
  });

  it("rejects a symlink to ../outside", async () => {
    await expectRejected(h({ path: "out", type: "2", linkpath: "../outside" }), 400, "bundle_bad_entry", '"out"', '"../outside"', "outside the bundle root");
    await expectRejected(h({ path: "public/deep", type: "2", linkpath: "../../outside" }), 400, "bundle_bad_entry", '"public/deep"', "outside the bundle root");
  });

  it("rejects a hard link outside the root", async () => {
    await expectRejected(h({ path: "public/pw", type: "1", linkpath: "../../../etc/passwd" }), 400, "bundle_bad_entry", 'hard link "public/pw"', "points outside the bundle");
    await expectRejected(h({ path: "public/pw", type: "1", linkpath: "/etc/passwd" }), 400, "bundle_bad_entry", 'hard link "public/pw"', '"/etc/passwd"');
  });

  it("rejects a character device", async () => {
    await expectRejected(h({ path: "public/null", type: "3" }), 400, "bundle_bad_entry", '"public/null"', "unsupported type");
  });

  it("rejects a FIFO", async () => {
    await expectRejected(h({ path: "public/fifo", type: "6" }), 400, "bundle_bad_entry", '"public/fifo"', "unsupported type");
  });

  it("rejects more files than DEFAULT_BUNDLE_LIMITS.maxFiles (10000) with 413", async () => {
    const entries: RawEntry[] = [];
    for (let i = 0; i < 10_001; i++) entries.push({ path: `public/f/${i}`, data: "" });
    const body = h(...entries);
    expect(body.length).toBeLessThan(4 * MiB);
    await expectRejected(body, 413, "bundle_too_large", "file count exceeds limit of 10000");
  });

  it("rejects a gzip bomb (48 MiB of zeros)", async () => {
    const body = h({ path: "public/zeros.bin", data: Buffer.alloc(48 * MiB) });
    expect(body.length).toBeLessThan(1 * MiB);
    await expectRejected(body, 400, "compression_bomb", "compression ratio limit of 200");
  });

  it("answers 413 to a declared Content-Length over maxArchiveBytes (64 MiB) before reading the body, and survives", async () => {
    const total = 65 * MiB;
    for (const app of ["hostile", "good"]) {
      const r = await streamPost(Number(new URL(server.urls.admin).port), `/v1/apps/${app}/deployments`, { authorization: `Bearer ${server.token}`, "content-type": "application/gzip" }, total, true);
      expect(r.status).toBe(413);
      const j = JSON.parse(r.text);
      expect(j.error.code).toBe("payload_too_large");
      expect(j.error.message).toContain(String(total));
      expect(j.error.message).toContain(String(64 * MiB));
      // The answer came before the client had pushed the whole body.
      expect(r.sentAtResponse).toBeLessThan(total);
    }
    expect((await admin(server, "GET", "/healthz", { token: null })).status).toBe(200);
    await expectNothingDeployed();
  });

  it("answers 413 to a chunked 65 MiB body (no Content-Length), and survives", async () => {
    const total = 65 * MiB;
    for (const app of ["hostile", "good"]) {
      const r = await streamPost(Number(new URL(server.urls.admin).port), `/v1/apps/${app}/deployments`, { authorization: `Bearer ${server.token}`, "content-type": "application/gzip" }, total, false);
      expect(r.status).toBe(413);
      const j = JSON.parse(r.text);
      expect(j.error.code).toBe("payload_too_large");
      expect(j.error.message).toContain(`limit of ${64 * MiB} bytes`);
      expect(r.sentAtResponse).toBeLessThanOrEqual(total);
    }
    expect((await admin(server, "GET", "/healthz", { token: null })).status).toBe(200);
    await expectNothingDeployed();
  });

  it("rejects a bundle without zerocell.toml, with a hint for a nested one", async () => {
    await expectRejected(tgz([{ path: "public/index.php", data: "<?php" }]), 400, "manifest_missing", "zerocell.toml");
    await expectRejected(tgz([{ path: "app/zerocell.toml", data: manifestText("h.localhost") }, { path: "app/public/index.php", data: "<?php" }]), 400, "manifest_missing", '"app/zerocell.toml"', "pack the contents of that folder");
  });

  it("rejects invalid TOML, naming line and column", async () => {
    await expectRejected(withManifest('runtime = "php"\n[php\ndocument_root = "public"\n'), 400, "manifest_invalid", /invalid TOML at line 2, column \d+/);
    await expectRejected(withManifest('runtime = "php"\nruntime = "php"\n'), 400, "manifest_invalid", /line 2, column \d+/);
  });

  it("rejects an unknown runtime, and an x86 bundle without its program", async () => {
    await expectRejected(withManifest('runtime = "cobol"\n[php]\ndocument_root = "public"\n'), 400, "manifest_invalid", "manifest: runtime:", '"php"');
    await expectRejected(withManifest('runtime = "x86"\n'), 400, "manifest_invalid", "x86.program", '"bin/app" is not a file');
  });

  it("rejects missing and invalid fields, naming the field", async () => {
    await expectRejected(withManifest('[php]\ndocument_root = "public"\n'), 400, "manifest_invalid", "manifest: runtime: is required");
    await expectRejected(withManifest('runtime = "php"\n[php]\ndocument_root = "public"\n[limits]\ntimeout_ms = "fast"\n'), 400, "manifest_invalid", "limits.timeout_ms", "integer between 1 and 300000");
    await expectRejected(withManifest('runtime = "php"\n[php]\ndocument_root = "public"\n[limits]\nmemory_mb = 1000000\n'), 400, "manifest_invalid", "limits.memory_mb");
    await expectRejected(withManifest('runtime = "php"\n[php]\ndocument_root = "public"\n[limits]\nmax_body_bytes = -1\n'), 400, "manifest_invalid", "limits.max_body_bytes");
    await expectRejected(withManifest('runtime = "php"\n[php]\ndocument_root = "missing"\n'), 400, "manifest_invalid", "php.document_root", '"missing"');
    await expectRejected(withManifest('runtime = "php"\n[php]\ndocument_root = "public"\n[[routes]]\npath = "/"\n'), 400, "manifest_invalid", "routes[0].host: is required");
    await expectRejected(withManifest('runtime = "php"\n[php]\ndocument_root = "public"\n[[routes]]\nhost = "bad_host!"\n'), 400, "manifest_invalid", "routes[0].host", '"bad_host!"');
    await expectRejected(withManifest('runtime = "php"\nsurprise = 1\n'), 400, "manifest_invalid", "surprise", "unknown key");
    await expectRejected(withManifest('runtime = "php"\n[php]\ndocument_root = "public"\nini = { "disable_functions" = "" }\n'), 400, "manifest_invalid", "disable_functions", "cannot be set by a bundle");
  });

  it("rejects an empty body", async () => {
    await expectRejected(Buffer.alloc(0), 400, "bad_input", "empty body");
  });

  it("rejects garbage bytes, truncated gzip and a lone tar header", async () => {
    const junk = randomBytes(4096);
    junk[0] = 0; // never the gzip magic
    await expectRejected(junk.subarray(0, 4001), 400, "bundle_corrupt", "not a tar archive");
    await expectRejected(junk, 400, "bundle_corrupt", "tar archive");
    await expectRejected("this is not a tarball at all", 400, "bundle_corrupt");
    const good = bundle("h.localhost", "<?php echo 1;");
    await expectRejected(good.subarray(0, good.length - 20), 400, "bundle_corrupt", "gzip stream is corrupt");
    await expectRejected(Buffer.from([0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff, 1, 2, 3]), 400, "bundle_corrupt", "gzip");
  });

  it("rejects bad app names", async () => {
    const good = bundle("h.localhost", "<?php echo 1;");
    const cases: Array<[string, string]> = [
      ["..%2Fx", "x"],
      ["UPPER", '"UPPER"'],
      ["a".repeat(100), "a".repeat(80)],
      ["a".repeat(64), "a".repeat(64)],
      ["-dash", '"-dash"'],
      ["dash-", '"dash-"'],
      ["under_score", '"under_score"'],
      ["%C3%A9t%C3%A9", '"été"'],
      ["a%00b", "1-63 characters"],
    ];
    for (const [name, fragment] of cases) {
      const r = await deploy(server, name, good);
      expect(r.status, `${name}: ${JSON.stringify(r.json)}`).toBe(400);
      expect(r.json.error.code).toBe("bad_app_name");
      expect(r.json.error.message).toContain(fragment);
      expect(r.json.error.message).toContain("must be 1-63 characters");
      const g = await admin(server, "GET", `/v1/apps/${name}/deployments`);
      expect(g.status).toBe(404);
      expect(g.json.error.code).toBe("app_not_found");
    }
    // An unencoded "../x" is normalised away by the URL parser: no such endpoint, still JSON.
    const adminPort = Number(new URL(server.urls.admin).port);
    const raw = await rawRequest(server, "http", `POST /v1/apps/../x/deployments HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${server.token}\r\nContent-Length: ${good.length}\r\nConnection: close\r\n\r\n${good.toString("latin1")}`, { port: adminPort });
    expect(raw.status).toBe(404);
    expect(raw.text).toContain('"code":"not_found"');
    const apps = await admin(server, "GET", "/v1/apps");
    expect(apps.json.apps.map((a: { name: string }) => a.name).sort()).toEqual(["control", "good"]);
    await expectNothingDeployed("x");
  });

  it("rejects bad --host query values, naming the host", async () => {
    const good = bundle("h.localhost", "<?php echo 1;");
    for (const [hostValue, fragment] of [
      ["bad_host!", '"bad_host!"'],
      ["evil.localhost/path", '"evil.localhost/path"'],
      ["-x.localhost", '"-x.localhost"'],
      ["", '""'],
      ["a".repeat(300), "1 to 253 characters"],
      ["x y.localhost", '"x y.localhost"'],
    ] as const) {
      for (const app of ["hostile", "good"]) {
        const r = await deploy(server, app, good, `?host=${encodeURIComponent(hostValue)}`);
        expect(r.status, `${hostValue}: ${JSON.stringify(r.json)}`).toBe(400);
        expect(r.json.error.code).toBe("bad_host");
        expect(r.json.error.message).toContain(fragment);
      }
    }
    const many = Array.from({ length: 33 }, (_, i) => `host=h${i}.localhost`).join("&");
    const r = await deploy(server, "hostile", good, `?${many}`);
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe("bad_input");
    expect(r.json.error.message).toContain("at most 32 --host values");
    await expectNothingDeployed();
  });

  it("refuses a deploy without a token before reading the body", async () => {
    const r = await admin(server, "POST", "/v1/apps/hostile/deployments", { token: null, body: hostile(), contentType: "application/gzip" });
    expect(r.status).toBe(401);
    expect(r.json.error.code).toBe("unauthorized");
    await expectNothingDeployed();
  });

  it("still serves the good app over HTTPS and lists only the apps that were deployed", async () => {
    const res = await fetchApp(server, "good.localhost", "/");
    expect(res.status).toBe(200);
    expect(res.text).toBe("good");
    const apps = await admin(server, "GET", "/v1/apps");
    expect(apps.json.apps.map((a: { name: string }) => a.name).sort()).toEqual(["control", "good"]);
    expect(server.proc.exitCode).toBeNull();
    expect(server.output()).not.toMatch(/unexpected error/);
  });
});

// =============================================================================================
// B. Hostile HTTP to the app port

describe("B. hostile HTTP to the app port", () => {
  let server: TestServer;
  let dir: string;

  async function expectServing(): Promise<void> {
    const res = await fetchApp(server, "b.localhost", "/");
    expect(res.status).toBe(200);
    expect(res.text).toBe("0 /");
    const plain = await fetchApp(server, "b.localhost", "/", { scheme: "http" });
    expect(plain.status).toBe(200);
  }

  beforeAll(async () => {
    server = await startServer(["--headers-timeout-ms", "1000"]);
    // Table order: top-level keys, [php], [limits], [[routes]].
    dir = writeBundle({
      "zerocell.toml": manifestText("b.localhost", { limits: "max_body_bytes = 1024" }),
      "public/index.php": "<?php header('Content-Type: text/plain'); echo strlen(file_get_contents('php://input')), ' ', $_SERVER['REQUEST_URI'];",
    });
    await server.cli(["deploy", dir, "--app", "b"]);
    await expectServing();
  });
  afterAll(async () => {
    await server?.stop();
    if (dir !== undefined) cleanup(dir);
  });

  it("answers 431 to a header block over 16 KiB (HTTP and HTTPS)", async () => {
    for (const scheme of ["http", "https"] as const) {
      const r = await rawRequest(server, scheme, `GET / HTTP/1.1\r\nHost: b.localhost\r\nX-Big: ${"a".repeat(17 * 1024)}\r\n\r\n`);
      expect(r.status, r.text.slice(0, 200)).toBe(431);
      // Many headers adding up to more than 16 KiB, too.
      const many = Array.from({ length: 100 }, (_, i) => `X-H${i}: ${"b".repeat(200)}\r\n`).join("");
      const r2 = await rawRequest(server, scheme, `GET / HTTP/1.1\r\nHost: b.localhost\r\n${many}\r\n`);
      expect(r2.status).toBe(431);
    }
    // Just under the limit is fine.
    const ok = await fetchApp(server, "b.localhost", "/", { headers: { "x-big": "a".repeat(15 * 1024) } });
    expect(ok.status).toBe(200);
    await expectServing();
  });

  it("enforces [limits] max_body_bytes with Content-Length", async () => {
    const at = await fetchApp(server, "b.localhost", "/", { method: "POST", body: "x".repeat(1024), headers: { "content-length": "1024" } });
    expect(at.status).toBe(200);
    expect(at.text).toBe("1024 /");
    for (const scheme of ["https", "http"] as const) {
      const over = await fetchApp(server, "b.localhost", "/", { scheme, method: "POST", body: "x".repeat(1025), headers: { "content-length": "1025" } });
      expect(over.status).toBe(413);
      expect(over.text).toContain("1025 bytes exceeds the app&#39;s limit of 1024 bytes");
      expect(over.text).toContain("payload_too_large");
    }
    // A huge declared length with a small body: refused from the header alone.
    const r = await rawRequest(server, "http", `POST / HTTP/1.1\r\nHost: b.localhost\r\nContent-Length: 99999999999\r\n\r\nxx`);
    expect(r.status).toBe(413);
    await expectServing();
  });

  it("enforces [limits] max_body_bytes with chunked transfer encoding", async () => {
    for (const scheme of ["https", "http"] as const) {
      const sock = await connect(server, scheme);
      const got: Buffer[] = [];
      sock.on("data", (c: Buffer) => got.push(c));
      sock.on("error", () => {});
      sock.write("POST / HTTP/1.1\r\nHost: b.localhost\r\nTransfer-Encoding: chunked\r\n\r\n");
      for (let i = 0; i < 4; i++) {
        sock.write(`200\r\n${"y".repeat(512)}\r\n`);
        await sleep(20);
      }
      sock.write("0\r\n\r\n");
      await vi.waitFor(() => expect(Buffer.concat(got).toString()).toContain("</html>"), { timeout: 15_000, interval: 20 });
      sock.destroy();
      const text = Buffer.concat(got).toString();
      expect(text).toMatch(/^HTTP\/1\.1 413 /);
      expect(text).toContain("exceeds the app&#39;s limit of 1024 bytes");
    }
    // Under the limit, chunked works.
    const ok = await rawRequest(server, "http", `POST / HTTP/1.1\r\nHost: b.localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n100\r\n${"z".repeat(256)}\r\n0\r\n\r\n`);
    expect(ok.status).toBe(200);
    expect(ok.text).toContain("256 /");
    await expectServing();
  });

  it("answers 400 to a malformed request line over raw TCP and keeps serving", async () => {
    for (const line of ["GARBAGE\r\n\r\n", "GET\r\n\r\n", "GET / HTTP/9.9\r\n\r\n", "\x00\x01\x02\x03\r\n\r\n", "GET /  HTTP/1.1 extra\r\nHost: b.localhost\r\n\r\n"]) {
      for (const scheme of ["http", "https"] as const) {
        const r = await rawRequest(server, scheme, line);
        expect(r.status, `${JSON.stringify(line)} over ${scheme}: ${r.text.slice(0, 100)}`).toBe(400);
        expect(r.closed).toBe(true);
      }
    }
    // TLS garbage to the HTTPS port: the handshake fails, the server lives.
    const junk = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: "127.0.0.1", port: server.httpsPort }, () => s.write(randomBytes(2048)));
      s.on("error", () => {});
      s.on("close", () => resolve(true));
      setTimeout(() => {
        s.destroy();
        resolve(false);
      }, 5000);
    });
    expect(junk).toBe(true);
    await expectServing();
  });

  it("answers 400 to invalid header characters", async () => {
    const cases = [
      "X-Bad: a\x00b\r\n",
      "X-Bad: a\x01b\r\n",
      "X-Bad: a\rb\r\n",
      "Bad Header: x\r\n",
      "X(Bad): x\r\n",
      ": no-name\r\n",
      "X-Bad\r\n",
      " X-Folded: continuation\r\n",
    ];
    for (const header of cases) {
      for (const scheme of ["http", "https"] as const) {
        const r = await rawRequest(server, scheme, `GET / HTTP/1.1\r\nHost: b.localhost\r\n${header}\r\n`);
        expect(r.status, `${JSON.stringify(header)} over ${scheme}: ${r.text.slice(0, 100)}`).toBe(400);
      }
    }
    await expectServing();
  });

  it("answers a huge or odd Host header with the 404 page, not a crash", async () => {
    const huge = "h".repeat(8000) + ".localhost";
    for (const scheme of ["http", "https"] as const) {
      const r = await rawRequest(server, scheme, `GET /x HTTP/1.1\r\nHost: ${huge}\r\nConnection: close\r\n\r\n`);
      expect(r.status).toBe(404);
      expect(r.text).toContain("no app is deployed at hhhh");
      expect(r.text).not.toMatch(/at .*\.js:\d+/);
    }
    // Characters that are legal in a URL host but not in a DNS name: the page escapes them.
    for (const host of [`a"b'c.localhost`, "ev!l$host&x", "b.localhost.evil", "[::1]", "*.localhost"]) {
      const r = await rawRequest(server, "http", `GET /p HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
      expect(r.status, `${host}: ${r.text.slice(0, 120)}`).toBe(404);
      expect(r.text).not.toContain(`"b'`);
      expect(r.text).toMatch(/Content-Type: text\/html/i);
    }
    // Case and a trailing dot are normalised away: that is the b app.
    const upper = await rawRequest(server, "http", `GET / HTTP/1.1\r\nHost: B.LOCALHOST.\r\nConnection: close\r\n\r\n`);
    expect(upper.status).toBe(200);
    // Characters a URL host cannot hold: refused as a bad request (RFC 9112: invalid Host → 400).
    for (const host of ["<script>alert(1)</script>", "xn--.localhost", "b.localhost:99999", "b.localhost:8080:1", "%62.localhost", "a b", "a/b", "a@b", "a\\b", "a|b"]) {
      const r = await rawRequest(server, "http", `GET /p HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
      expect(r.status, `${host}: ${r.text.slice(0, 120)}`).toBe(400);
      expect(r.text).not.toContain("<script>");
    }
    // Over HTTPS with a valid SNI name but an odd Host header.
    const odd = await rawRequest(server, "https", `GET / HTTP/1.1\r\nHost: <b>.localhost\r\nConnection: close\r\n\r\n`);
    expect(odd.status).toBe(400);
    expect(odd.text).not.toContain("<b>");
    await expectServing();
  });

  it("disconnects a slow client (one header byte per 500 ms, --headers-timeout-ms 1000) within a few seconds, while a normal request succeeds", async () => {
    for (const scheme of ["http", "https"] as const) {
      const sock = await connect(server, scheme);
      const t0 = Date.now();
      const got: Buffer[] = [];
      let closedAt = 0;
      sock.on("data", (c: Buffer) => got.push(c));
      sock.on("error", () => {});
      sock.on("close", () => (closedAt = Date.now()));
      const dribble = `GET / HTTP/1.1\r\nHost: b.localhost\r\nX-Slow: ${"s".repeat(100)}`;
      let i = 0;
      const timer = setInterval(() => {
        if (closedAt !== 0 || sock.destroyed || i >= dribble.length) return;
        sock.write(dribble[i++]!);
      }, 500);
      // A normal request in the meantime is served.
      await vi.waitFor(() => expect(i).toBeGreaterThanOrEqual(1), { timeout: 10_000 });
      const normal = await fetchApp(server, "b.localhost", "/");
      expect(normal.status).toBe(200);
      await vi.waitFor(() => expect(closedAt, `${scheme}: slow client still connected after ${Date.now() - t0} ms`).not.toBe(0), { timeout: 15_000, interval: 50 });
      clearInterval(timer);
      sock.destroy();
      const text = Buffer.concat(got).toString();
      // The claim is the timeout: 1000 ms plus Node's check interval, far below the ~50 s the
      // dribble would take to finish its headers.
      expect(closedAt - t0, `${scheme}: slow client was disconnected only after ${closedAt - t0} ms`).toBeLessThan(10_000);
      expect(text).toMatch(/^HTTP\/1\.1 408 /);
    }
    await expectServing();
  }, 40_000);

  it("keeps serving while 200 connections per port sit idle", async () => {
    const socks: net.Socket[] = [];
    try {
      for (const port of [server.httpPort, server.httpsPort]) {
        await Promise.all(
          Array.from({ length: 200 }, () => new Promise<void>((resolve, reject) => {
            const s = net.connect({ host: "127.0.0.1", port }, () => resolve());
            s.on("error", () => {});
            s.once("error", reject);
            socks.push(s);
          })),
        );
      }
      expect(socks.length).toBe(400);
      await expectServing();
    } finally {
      for (const s of socks) s.destroy();
    }
    await expectServing();
  });

  it("answers an HTTP/1.0 request without Host with the 404 page", async () => {
    for (const scheme of ["http", "https"] as const) {
      const r = await rawRequest(server, scheme, "GET / HTTP/1.0\r\n\r\n");
      expect(r.status, `${scheme}: ${JSON.stringify(r.text.slice(0, 200))}`).toBe(404);
      expect(r.text).toContain("no app is deployed at");
    }
    await expectServing();
  });

  it("does not act as a proxy for an absolute-form request target", async () => {
    for (const scheme of ["http", "https"] as const) {
      const r = await rawRequest(server, scheme, `GET http://evil.example/ HTTP/1.1\r\nHost: b.localhost\r\nConnection: close\r\n\r\n`);
      // Routed by the target's authority (RFC 9112 §3.2.2: it wins over Host): no app there, 404; never fetched.
      expect(r.status, r.text.slice(0, 200)).toBe(404);
      expect(r.text).toContain("no app is deployed at evil.example");
      expect(r.text).not.toContain("http://evil.example");
      // The target's authority routes to b, whose dispatch refuses the bad percent-encoding.
      const r2 = await rawRequest(server, scheme, `GET http://b.localhost:1/%zz HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n`);
      expect(r2.status, r2.text.slice(0, 200)).toBe(400);
      expect(r2.text).toContain("invalid path");
      // No CONNECT handler: Node closes the connection without an answer.
      const r3 = await rawRequest(server, scheme, `CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n`);
      expect(r3.status, r3.text.slice(0, 200)).toBe(0);
      expect(r3.closed).toBe(true);
    }
    await expectServing();
  });

  it("answers paths with %00, invalid percent-encoding and encoded dot segments with 400 (the client-resolved ones stay inside the app)", async () => {
    // The PHP dispatch refuses a path with NUL, bad percent-encoding, encoded slashes or dot
    // segments, or invalid UTF-8 (400).
    const refused = ["/%00", "/a%00b.php", "/%zz", "/%", "/%%%", "/%c0%ae%c0%ae/etc/passwd", "/..%2f..%2fetc%2fpasswd", "/index.php%00.txt", "/" + "%ff".repeat(100)];
    // The client resolves %2e%2e as ".." before sending (WHATWG URL): the app sees /etc/passwd,
    // a path inside the app. A bad query string is the app's business.
    const served: [string, string][] = [["/%2e%2e/%2e%2e/etc/passwd", "0 /etc/passwd"], ["/?q=%zz&%00=1", "0 /?q=%zz&%00=1"]];
    for (const scheme of ["https", "http"] as const) {
      for (const path of refused) {
        const r = await fetchApp(server, "b.localhost", path, { scheme });
        expect(r.status, `${path} over ${scheme}: ${r.text.slice(0, 200)}`).toBe(400);
        expect(r.text).toContain("invalid path");
      }
      for (const [path, body] of served) {
        const r = await fetchApp(server, "b.localhost", path, { scheme });
        expect(r.status, `${path} over ${scheme}: ${r.text.slice(0, 200)}`).toBe(200);
        expect(r.text).toBe(body);
      }
    }
    // Raw bytes the HTTP client would refuse to send: Node's parser answers 400.
    for (const target of ["/a\x7fb", "/\xff\xfe", "/a b"]) {
      const r = await rawRequest(server, "http", Buffer.from(`GET ${target} HTTP/1.1\r\nHost: b.localhost\r\nConnection: close\r\n\r\n`, "latin1"));
      expect(r.status, `${JSON.stringify(target)}: ${r.text.slice(0, 200)}`).toBe(400);
    }
    await expectServing();
    expect(server.proc.exitCode).toBeNull();
    expect(server.output()).not.toMatch(/unexpected error/);
  });
});

// =============================================================================================
// C. Admin API hostile input

describe("C. hostile input to the admin API", () => {
  let server: TestServer;
  let adminPort: number;

  async function activeVersion(app: string): Promise<number> {
    const r = await admin(server, "GET", `/v1/apps/${app}/deployments`);
    expect(r.status).toBe(200);
    return r.json.deployments.find((d: { active: boolean }) => d.active).version;
  }

  beforeAll(async () => {
    server = await startServer();
    adminPort = Number(new URL(server.urls.admin).port);
    for (const v of ["one", "two"]) {
      const r = await deploy(server, "c", bundle("c.localhost", `<?php echo '${v}';`));
      expect(r.status, JSON.stringify(r.json)).toBe(201);
    }
    expect(await activeVersion("c")).toBe(2);
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("answers a non-JSON rollback body with 400 bad_input (a missing app with 404 first)", async () => {
    const missing = await admin(server, "POST", "/v1/apps/x/rollback", { body: "not json{", contentType: "application/json" });
    expect(missing.status).toBe(404);
    expect(missing.json.error.code).toBe("app_not_found");
    for (const app of ["c"]) {
      for (const body of ["not json{", "{'version': 1}", "\x00\x01", "[1,2", "{\"version\":1}garbage"]) {
        const r = await admin(server, "POST", `/v1/apps/${app}/rollback`, { body, contentType: "application/json" });
        expect(r.status, `${app} ${JSON.stringify(body)}: ${JSON.stringify(r.json)}`).toBe(400);
        expect(r.json.error.code).toBe("bad_input");
        expect(r.json.error.message).toContain("not valid JSON");
      }
    }
    // Valid JSON of the wrong shape names the field.
    const wrong = await admin(server, "POST", "/v1/apps/c/rollback", { body: '{"version":"two"}', contentType: "application/json" });
    expect(wrong.status).toBe(400);
    expect(wrong.json.error.code).toBe("bad_input");
    expect(wrong.json.error.message).toContain("version");
    const extra = await admin(server, "POST", "/v1/apps/c/rollback", { body: '{"version":1,"evil":true}', contentType: "application/json" });
    expect(extra.status).toBe(400);
    expect(extra.json.error.message).toContain("evil");
    for (const body of ['{"version":-1}', '{"version":1.5}', '{"version":1e400}', "null", "42"]) {
      const r = await admin(server, "POST", "/v1/apps/c/rollback", { body, contentType: "application/json" });
      expect(r.status, `${body}: ${JSON.stringify(r.json)}`).toBe(400);
      expect(r.json.error.code).toBe("bad_input");
    }
    expect(await activeVersion("c")).toBe(2);
    expect((await fetchApp(server, "c.localhost", "/")).text).toBe("two");
  });

  it("answers a JSON body over 1 MiB with 413 (declared and chunked)", async () => {
    const big = JSON.stringify({ version: 1, pad: "x".repeat(1024 * 1024 + 10) });
    const r = await admin(server, "POST", "/v1/apps/c/rollback", { body: big, contentType: "application/json" });
    expect(r.status).toBe(413);
    expect(r.json.error.code).toBe("payload_too_large");
    expect(r.json.error.message).toContain(`limit of ${1024 * 1024} bytes`);
    const chunked = await streamPost(adminPort, "/v1/apps/c/rollback", { authorization: `Bearer ${server.token}`, "content-type": "application/json" }, 2 * MiB, false);
    expect(chunked.status).toBe(413);
    expect(JSON.parse(chunked.text).error.code).toBe("payload_too_large");
    const certs = await admin(server, "PUT", "/v1/certificates/c.localhost", { body: big, contentType: "application/json" });
    expect(certs.status).toBe(413);
    expect(await activeVersion("c")).toBe(2);
    expect((await fetchApp(server, "c.localhost", "/")).text).toBe("two");
  });

  it("answers unknown endpoints with a 404 JSON error", async () => {
    for (const [method, path] of [
      ["GET", "/v1/nope"],
      ["GET", "/nope"],
      ["DELETE", "/v1/apps/c/deployments"],
      ["PATCH", "/v1/apps/c/deployments"],
      ["GET", "/v1/apps/c/deployments/extra/segments"],
      ["POST", "/v2/apps/c/deployments"],
      ["GET", "/" + "x".repeat(5000)],
    ] as const) {
      const r = await admin(server, method, path);
      expect(r.status, `${method} ${path.slice(0, 40)}: ${JSON.stringify(r.json).slice(0, 200)}`).toBe(404);
      expect(r.json.error.code).toBe("not_found");
      expect(r.json.error.message).toContain(`admin: no endpoint ${method} ${path.slice(0, 30)}`);
      expect(typeof r.json.error.requestId).toBe("string");
    }
  });

  it("answers a huge or malformed token with 401, not 500", async () => {
    for (const token of ["z".repeat(15_000), "zc_" + "\u00ff".repeat(10), "a b", "\t", `${server.token}x`, server.token.slice(0, -1)]) {
      const authorization = `Bearer ${token}`;
      const r = await rawRequest(server, "http", Buffer.from(`GET /v1/apps HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${authorization}\r\nConnection: close\r\n\r\n`, "latin1"), { port: adminPort });
      expect(r.status, `${JSON.stringify(token.slice(0, 20))}: ${r.text.slice(0, 200)}`).toBe(401);
      expect(r.text).toContain('"code":"unauthorized"');
    }
    for (const authorization of ["Basic " + Buffer.from("admin:admin").toString("base64"), "Bearer", "Bearer  ", server.token, `Token ${server.token}`]) {
      const raw = await rawRequest(server, "http", `GET /v1/apps HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${authorization}\r\nConnection: close\r\n\r\n`, { port: adminPort });
      expect(raw.status, authorization).toBe(401);
    }
    // Over the 16 KiB header limit: 431 from the HTTP layer.
    const over = await rawRequest(server, "http", `GET /v1/apps HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${"z".repeat(20_000)}\r\n\r\n`, { port: adminPort });
    expect(over.status).toBe(431);
    // The real token still works.
    expect((await admin(server, "GET", "/v1/apps")).status).toBe(200);
    expect(server.output()).not.toMatch(/unexpected error/);
  });
});
