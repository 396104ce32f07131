/**
 * Test harness: starts the real server (the built CLI, `zerocell serve`) on random ports with a
 * fresh data dir, and talks to it over real HTTPS with the server's own CA.
 */
import { spawn, execFile, execFileSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, existsSync, writeFileSync, mkdirSync, rmSync, appendFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, dirname, resolve, basename } from "node:path";
import { fileURLToPath } from "node:url";
import https from "node:https";
import http from "node:http";
import Database from "better-sqlite3";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const CLI = join(ROOT, "dist", "src", "cli", "main.js");

export interface TestServer {
  dataDir: string;
  urls: { http: string; https: string; admin: string; s3: string };
  httpsPort: number;
  httpPort: number;
  token: string;
  ca: string;
  proc: ChildProcess;
  output: () => string;
  /** SIGTERM, wait for exit; returns the exit code. */
  stop(): Promise<number | null>;
  /** Runs the CLI against this server's data dir; async, so a slow deploy never blocks the test worker's event loop (vitest's worker RPC times out after 60 s). */
  cli(args: string[], opts?: { allowFail?: boolean }): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Pids of sandbox host processes whose parent is this server. */
  hostPids(): number[];
}

export async function startServer(extraArgs: string[] = [], opts: { dataDir?: string; env?: Record<string, string> } = {}): Promise<TestServer> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), "zc-test-"));
  rmSync(join(dataDir, "run", "server.json"), { force: true });
  // ZC_TEST_INSTANCES_PER_HOST=N runs a suite's servers with host slots (unless the test sets its own).
  const slots = process.env.ZC_TEST_INSTANCES_PER_HOST;
  const slotArgs = slots !== undefined && !extraArgs.includes("--instances-per-host") ? ["--instances-per-host", slots] : [];
  const proc = spawn(process.execPath, [CLI, "serve", "--data", dataDir, "--http-port", "0", "--https-port", "0", "--admin-port", "0", "--s3-port", "0", ...slotArgs, ...extraArgs], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...opts.env },
  });
  let out = "";
  // ZC_TEST_SERVER_LOG=DIR also writes each server's output to DIR/<data dir's name>.log (for a
  // failure whose test does not print it).
  const logDir = process.env.ZC_TEST_SERVER_LOG;
  const logFile = logDir === undefined ? undefined : join(logDir, `${basename(dataDir)}.log`);
  const keep = (d: Buffer) => {
    out += d.toString();
    if (logFile !== undefined) appendFileSync(logFile, d);
  };
  proc.stdout!.on("data", keep);
  proc.stderr!.on("data", keep);
  const serverJson = join(dataDir, "run", "server.json");
  const deadline = Date.now() + 30_000;
  while (!existsSync(serverJson) || !out.includes("zerocell listening")) {
    if (proc.exitCode !== null) throw new Error(`server exited early (${proc.exitCode}):\n${out}`);
    if (Date.now() > deadline) throw new Error(`server did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const urls = JSON.parse(readFileSync(serverJson, "utf8")) as TestServer["urls"];
  const token = readFileSync(join(dataDir, "admin-token"), "utf8").trim();
  const ca = readFileSync(join(dataDir, "certs", "ca.pem"), "utf8");
  const server: TestServer = {
    dataDir,
    urls,
    httpsPort: Number(new URL(urls.https).port),
    httpPort: Number(new URL(urls.http).port),
    token,
    ca,
    proc,
    output: () => out,
    async stop() {
      if (proc.exitCode !== null) return proc.exitCode;
      const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), 15_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
    async cli(args, opts = {}) {
      try {
        const stdout = await new Promise<string>((resolveRun, reject) => {
          const child = execFile(process.execPath, [CLI, ...args, "--data", dataDir], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024, env: { ...process.env, ZEROCELL_URL: "", ZEROCELL_TOKEN: "" } }, (err, out, errOut) => (err ? reject(Object.assign(err, { stdout: out, stderr: errOut })) : resolveRun(out)));
          child.stdin?.end(); // as stdio "ignore" did: the CLI never waits for input
        });
        return { code: 0, stdout, stderr: "" };
      } catch (e) {
        const err = e as { code: number | string; stdout: string; stderr: string };
        const status = typeof err.code === "number" ? err.code : 1;
        if (opts.allowFail !== true) throw new Error(`zerocell ${args.join(" ")} failed (${status}):\n${err.stderr}\n${err.stdout}`);
        return { code: status, stdout: err.stdout, stderr: err.stderr };
      }
    },
    hostPids() {
      return childPids(proc.pid!);
    },
  };
  return server;
}

/** Direct children (and their children: `unshare` wraps node) of a pid. */
export function childPids(pid: number): number[] {
  let text = "";
  try {
    text = execFileSync("ps", ["-e", "-o", "pid=,ppid="], { encoding: "utf8" });
  } catch {
    return [];
  }
  return descendantsIn(text, pid);
}

/** Every descendant of `pid` in `ps -e -o pid=,ppid=` output. */
function descendantsIn(psText: string, pid: number): number[] {
  const rows = psText.trim().split("\n").map((l) => l.trim().split(/\s+/).map(Number) as [number, number]);
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [c, pp] of rows) if (pp === p) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Writes a bundle directory from a map of relative path → contents. */
export function writeBundle(files: Record<string, string | Buffer>): string {
  const dir = mkdtempSync(join(tmpdir(), "zc-bundle-"));
  for (const [path, data] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), data);
  }
  return dir;
}

export function phpBundle(host: string, files: Record<string, string>, manifestExtra = ""): string {
  return writeBundle({
    "zerocell.toml": `runtime = "php"\n[php]\ndocument_root = "public"\n${manifestExtra}\n[[routes]]\nhost = "${host}"\npath = "/"\n`,
    ...Object.fromEntries(Object.entries(files).map(([k, v]) => [`public/${k}`, v])),
  });
}

export interface Res {
  status: number;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
  text: string;
}

/** One HTTPS request to the server's app port, with SNI and Host set to `host`. */
export function fetchApp(server: TestServer, host: string, path: string, opts: { method?: string; headers?: Record<string, string>; body?: string | Buffer; scheme?: "https" | "http" } = {}): Promise<Res> {
  const scheme = opts.scheme ?? "https";
  return new Promise((resolvePromise, reject) => {
    const common = {
      host: "127.0.0.1",
      port: scheme === "https" ? server.httpsPort : server.httpPort,
      path,
      method: opts.method ?? "GET",
      headers: { host, ...(opts.headers ?? {}) },
      agent: false as const,
    };
    const req = scheme === "https" ? https.request({ ...common, servername: host.replace(/:\d+$/, ""), ca: server.ca }) : http.request(common);
    req.on("error", reject);
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const body = Buffer.concat(chunks);
        resolvePromise({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body, text: body.toString("utf8") });
      });
      res.on("error", reject);
    });
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}

/** A request to the admin API. */
export async function admin(server: TestServer, method: string, path: string, opts: { token?: string | null; body?: Buffer | string; contentType?: string } = {}): Promise<{ status: number; json: any }> {
  const headers: Record<string, string> = {};
  const token = opts.token === undefined ? server.token : opts.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (opts.contentType !== undefined) headers["content-type"] = opts.contentType;
  // A new connection per call (agent: false): a kept-alive socket the server closed while this
  // test process was blocked (a synchronous CLI run on a loaded machine) would fail the request.
  const { status, text } = await new Promise<{ status: number; text: string }>((resolvePromise, reject) => {
    const req = http.request(server.urls.admin + path, { method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (d: Buffer) => chunks.push(d));
      res.on("end", () => resolvePromise({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("error", reject);
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
  let json: unknown = text;
  try {
    json = JSON.parse(text);
  } catch {
    // leave as text
  }
  return { status, json };
}

/** An admin API body of JSON: `admin(server, "POST", path, json({ … }))`. */
export const json = (o: unknown): { body: string; contentType: string } => ({ body: JSON.stringify(o), contentType: "application/json" });

/** Creates an account through the admin API (as the server's admin) and returns its token. */
export async function createAccount(server: TestServer, name: string, extra: Record<string, unknown> = {}): Promise<string> {
  const r = await admin(server, "POST", "/v1/accounts", json({ name, ...extra }));
  if (r.status !== 201 || typeof r.json?.token !== "string") throw new Error(`createAccount ${name}: ${r.status} ${JSON.stringify(r.json).slice(0, 300)}`);
  return r.json.token as string;
}

/** Rows of a read-only query on the server's SQLite file (what the platform stored). */
export function queryDb<T>(server: TestServer, sql: string, ...args: unknown[]): T[] {
  const db = new Database(join(server.dataDir, "zerocell.db"), { readonly: true });
  try {
    return db.prepare(sql).all(...args) as T[];
  } finally {
    db.close();
  }
}

/** PSS of the server's descendants (hosts, spares, wrappers), bytes; ps and /proc read asynchronously. */
export async function hostsPssAsync(server: TestServer): Promise<number> {
  const text = await new Promise<string>((ok) => execFile("ps", ["-e", "-o", "pid=,ppid="], { encoding: "utf8" }, (err, out) => ok(err ? "" : out)));
  const pids = descendantsIn(text, server.proc.pid!);
  const pss = await Promise.all(
    pids.map(async (c) => {
      try {
        const m = /^Pss:\s+(\d+) kB/m.exec(await readFile(`/proc/${c}/smaps_rollup`, "utf8"));
        return m === null ? 0 : Number(m[1]) * 1024;
      } catch {
        return 0; // gone
      }
    }),
  );
  return pss.reduce((a, b) => a + b, 0);
}

/**
 * The peak of the platform's hosts' PSS, sampled every `intervalMs` (one sample at a time,
 * asynchronously: a synchronous ps every 100 ms starved the test worker's event loop on a loaded
 * machine, and vitest's 60 s worker RPC timed out). `stop()` resolves to the peak.
 */
export function watchPeakPss(server: TestServer, intervalMs = 250): { stop(): Promise<number> } {
  let peak = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      peak = Math.max(peak, await hostsPssAsync(server));
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return peak;
    },
  };
}

export function cleanup(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
