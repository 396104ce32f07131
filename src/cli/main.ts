/**
 * The `zerocell` command: `serve` runs the platform; the other commands talk to a running
 * server's admin API (found from ZEROCELL_URL/ZEROCELL_TOKEN or --data DIR).
 */
import { Command, CommanderError, Option } from "commander";
import { readFileSync, readdirSync, existsSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import http from "node:http";
import https from "node:https";
import cliProgress from "cli-progress";
import { packDirectory, packDirectoryReport, IGNORE_FILE } from "../bundle/index.js";
import { PACKAGE_ROOT } from "../paths.js";
import { registerAccessKeyCommands, type CliKit } from "./access-keys.js";
import { registerBindingCommands } from "./bindings.js";
import { registerBucketCommands } from "./buckets.js";
import { registerEnvCommands } from "./env.js";
import { addAccountLifecycle, registerPlanCommands } from "./accounts.js";
import { registerJobCommands } from "./jobs.js";
import { printJobUsage } from "./job-costs.js";
import { EventSourceParserStream } from "eventsource-parser/stream";
import { registerDomainCommands } from "./domains.js";
import { addObjectBackendOptions, resolveObjectBackend, type ObjectBackendOpts } from "./objects-backend.js";
import { addAppsDelete, runTokensAction, type CliContext } from "./lifecycle.js";
import { apiError, CliError, EXIT, reportError, unreachable } from "./errors.js";
import { addExamples } from "./help.js";
import { configureLog, log, type LogFormat } from "../log.js";

interface ClientTarget {
  url: string;
  token: string;
}

function findTarget(opts: { data?: string }): ClientTarget {
  const envUrl = process.env.ZEROCELL_URL || undefined;
  const envToken = process.env.ZEROCELL_TOKEN || undefined;
  if (opts.data === undefined && envUrl !== undefined && envToken !== undefined) return { url: envUrl, token: envToken };
  const dir = resolve(opts.data ?? process.env.ZEROCELL_DATA ?? ".data");
  let server: { admin?: string };
  try {
    server = JSON.parse(readFileSync(join(dir, "run", "server.json"), "utf8")) as { admin?: string };
  } catch {
    throw unreachable(`cannot find a running server: no ${join(dir, "run", "server.json")} (start one with "zerocell serve --data ${dir}", or set ZEROCELL_URL and ZEROCELL_TOKEN)`);
  }
  const token = envToken ?? readFileSync(join(dir, "admin-token"), "utf8").trim();
  return { url: envUrl ?? server.admin ?? "", token };
}

interface ApiResult {
  status: number;
  body: unknown;
}

function request(target: ClientTarget, method: string, path: string, body?: Buffer, contentType?: string, onProgress?: (sent: number) => void): Promise<ApiResult> {
  const url = new URL(path, target.url);
  const mod = url.protocol === "https:" ? https : http;
  return new Promise((resolvePromise, reject) => {
    const req = mod.request(url, {
      method,
      headers: {
        authorization: `Bearer ${target.token}`,
        ...(body === undefined ? {} : { "content-type": contentType ?? "application/octet-stream", "content-length": String(body.length) }),
      },
    });
    req.on("error", (e) => reject(unreachable(`cannot reach ${target.url}: ${e.message}`)));
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let parsed: unknown = text;
        try {
          parsed = JSON.parse(text);
        } catch {
          // not JSON: keep the text
        }
        resolvePromise({ status: res.statusCode ?? 0, body: parsed });
      });
    });
    if (body === undefined) {
      req.end();
      return;
    }
    // Stream in chunks so a large bundle shows progress and respects backpressure.
    const CHUNK = 256 * 1024;
    let offset = 0;
    const pump = () => {
      while (offset < body.length) {
        const next = body.subarray(offset, offset + CHUNK);
        offset += next.length;
        onProgress?.(offset);
        if (!req.write(next)) {
          req.once("drain", pump);
          return;
        }
      }
      req.end();
    };
    pump();
  });
}

/** Pages a list command follows at most (each up to the API's page limit). */
const MAX_PAGES = 1000;

/**
 * One API call; a GET of a paginated list (an answer with `next_cursor`) follows the cursor and
 * returns every page's items joined, so list commands show the whole list.
 */
async function api(target: ClientTarget, method: string, path: string, body?: Buffer, contentType?: string, onProgress?: (sent: number) => void): Promise<unknown> {
  const r = await request(target, method, path, body, contentType, onProgress);
  if (r.status >= 400) throw apiError(r.status, r.body);
  const first = r.body as Record<string, unknown>;
  if (method !== "GET" || first === null || typeof first !== "object" || !("next_cursor" in first)) return r.body;
  let cursor = first.next_cursor;
  for (let page = 1; typeof cursor === "string" && page < MAX_PAGES; page++) {
    const next = await request(target, method, `${path}${path.includes("?") ? "&" : "?"}cursor=${encodeURIComponent(cursor)}`);
    if (next.status >= 400) throw apiError(next.status, next.body);
    const more = next.body as Record<string, unknown>;
    for (const [k, v] of Object.entries(more)) if (Array.isArray(v) && Array.isArray(first[k])) (first[k] as unknown[]).push(...v);
    cursor = more.next_cursor;
  }
  first.next_cursor = null;
  return first;
}

/** The CLI error for a failed streamed API call (one read with fetch, not through api()). */
async function responseError(res: Response): Promise<CliError> {
  return apiError(res.status, await res.json().catch(() => ({})));
}

function print(json: boolean, data: unknown, human: () => string): void {
  process.stdout.write(json ? JSON.stringify(data, null, 2) + "\n" : human() + "\n");
}

function table(rows: string[][]): string {
  if (rows.length === 0) return "";
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n");
}

interface DeploymentJson {
  id: string;
  app: string;
  version: number;
  active: boolean;
  status?: string;
  error?: string | null;
  createdAt: string;
  bundleSha256: string;
  routes: Array<{ host: string; path: string; mode: string; key?: string }>;
}

function describeDeployment(d: DeploymentJson, urls: string[] = []): string {
  const lines = [`deployed ${d.app} v${d.version} (${d.id})`];
  for (const u of urls) lines.push(`  ${u}`);
  for (const r of d.routes) lines.push(`  route ${r.host}${r.path}  mode=${r.mode}${r.key === undefined ? "" : ` key=${r.key}`}`);
  return lines.join("\n");
}

async function readBundle(path: string): Promise<Buffer> {
  if (!existsSync(path)) throw new CliError(`no such file or directory: ${path}`);
  if (statSync(path).isDirectory()) {
    const { archive, skipped } = await packDirectoryReport(path);
    if (skipped.length > 0) process.stderr.write(`left out of the bundle (dotfiles, .git, node_modules, ${IGNORE_FILE}): ${skipped.slice(0, 50).join(", ")}${skipped.length > 50 ? ` and ${skipped.length - 50} more` : ""}\n`);
    return archive;
  }
  return readFileSync(path);
}

export async function deployPath(target: ClientTarget, path: string, app: string, hosts: string[], showProgress: boolean): Promise<{ deployment: DeploymentJson; urls: string[] }> {
  const bundle = await readBundle(path);
  const qs = new URLSearchParams();
  for (const h of hosts) qs.append("host", h);
  let bar: cliProgress.SingleBar | undefined;
  if (showProgress) {
    bar = new cliProgress.SingleBar({ format: "uploading {bar} {percentage}% | {value}/{total} KiB", stream: process.stderr, hideCursor: true }, cliProgress.Presets.shades_classic);
    bar.start(Math.ceil(bundle.length / 1024), 0);
  }
  try {
    const res = (await api(target, "POST", `/v1/apps/${encodeURIComponent(app)}/deployments${hosts.length > 0 ? "?" + qs.toString() : ""}`, bundle, "application/gzip", (sent) => bar?.update(Math.ceil(sent / 1024)))) as { deployment: DeploymentJson; urls?: string[] };
    return { deployment: res.deployment, urls: res.urls ?? [] };
  } finally {
    bar?.stop();
  }
}

const wantsJson = process.argv.includes("--json");
const program = new Command();
program.name("zerocell").description("Serverless platform: PHP, Python WSGI and x86-64 apps in userspace sandboxes").showHelpAfterError();
// Commander's own errors (unknown option, missing argument) become CliErrors (exit 2, JSON with
// --json); subcommands inherit both settings.
program.exitOverride();
program.configureOutput({ outputError: (text, write) => (wantsJson ? undefined : write(text)) });
program.version((JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")) as { version: string }).version, "-V, --version");

const dataOption = () => new Option("--data <dir>", "data directory of the server (default: $ZEROCELL_DATA or ./.data)");
const jsonOption = () => new Option("--json", "print JSON");
const cx: CliContext = { findTarget, api, print, table, dataOption, jsonOption };

function parsePort(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new CliError(`invalid port "${v}"`);
  return n;
}

function parsePositive(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new CliError(`invalid number "${v}"`);
  return n;
}

function parseNonNegative(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new CliError(`invalid number "${v}"`);
  return n;
}

addObjectBackendOptions(program
  .command("serve"))
  .description("start the platform (HTTP, HTTPS and the admin API)")
  .addOption(dataOption())
  .option("--http-port <n>", "HTTP port (0: any free port)", parsePort, 8080)
  .option("--https-port <n>", "HTTPS port (0: any free port)", parsePort, 8443)
  .option("--admin-port <n>", "admin API port (0: any free port)", parsePort, 8081)
  .option("--s3-port <n>", "S3 API port, HTTPS (0: any free port)", parsePort, 8082)
  .option("--host <addr>", "address for app traffic", "127.0.0.1")
  .option("--admin-host <addr>", "address for the admin API", "127.0.0.1")
  .option("--examples", "deploy the bundled examples (examples/*) at start")
  .option("--headers-timeout-ms <n>", "time a client has to send its request headers", parsePositive, 10_000)
  .option("--request-timeout-ms <n>", "time a client has to send its whole request", parsePositive, 60_000)
  .option("--max-instances <n>", "sandbox instances per deployment and mode", parsePositive, 2)
  .option("--max-queue <n>", "requests waiting per deployment and mode before 503", parsePositive, 256)
  .option("--max-response-bytes <n>", "largest response body an app may send", parsePositive, 32 * 1024 * 1024)
  .option("--idle-ttl-ms <n>", "stop instances idle this long (an idle app scales to zero; its next request starts from its snapshot)", parsePositive, 300_000)
  .option("--min-instances <n>", "instances each deployment and mode keeps even when idle", parseNonNegative, 0)
  .option("--instances-per-host <n>", "instances one sandbox host process may carry, all of one account (1: a process per instance)", parsePositive, 1)
  .option("--memory-budget-mb <n>", "memory all sandbox hosts together may use, MiB (default: 60% of the machine's); idle instances are evicted (LRU) to stay under it")
  .option("--no-spare-hosts", "do not keep a preloaded spare sandbox host per runtime in use")
  .option("--no-metering", "do not write usage records (for benchmarks)")
  .option("--usage-flush-ms <n>", "longest time a usage record waits in memory before it is written", parsePositive, 100)
  .addOption(new Option("--log-format <format>", "server log format (default: pretty when stdout is a terminal, else json: one pino record per line)").choices(["json", "pretty"]))
  .option("--object-quota-bytes <n>", "bytes of objects an account may store unless an admin set its own quota", parsePositive, 1024 ** 4)
  .option("--object-quota-objects <n>", "objects an account may store unless an admin set its own quota", parsePositive, 10_000_000)
  .option("--allow-closing-open-periods", "let `invoices close` close the current period (tests and demos; its later usage then goes to the next period)")
  .option("--base-domain <domain>", "the platform's domain: every app gets APP.ACCOUNT.DOMAIN (APP.DOMAIN for the default account)", "localhost")
  .option("--acme-directory <url>", "ACME directory URL for `domains add` (e.g. https://acme-v02.api.letsencrypt.org/directory)")
  .option("--acme-ca-file <file>", "extra CA certificate (PEM) to trust for the ACME directory's HTTPS (a test CA)")
  .option("--acme-renew-check-ms <n>", "how often certificates are checked for renewal", parsePositive, 3_600_000)
  .action(async (opts: { baseDomain: string; acmeDirectory?: string; acmeCaFile?: string; acmeRenewCheckMs: number; data?: string; httpPort: number; httpsPort: number; adminPort: number; s3Port: number; host: string; adminHost: string; examples?: boolean; headersTimeoutMs: number; requestTimeoutMs: number; maxInstances: number; instancesPerHost: number; maxQueue: number; maxResponseBytes: number; idleTtlMs: number; minInstances: number; memoryBudgetMb?: string; spareHosts: boolean; metering: boolean; usageFlushMs: number; objectQuotaBytes: number; objectQuotaObjects: number; allowClosingOpenPeriods?: boolean; logFormat?: LogFormat } & ObjectBackendOpts) => {
    if (opts.logFormat !== undefined) configureLog(opts.logFormat);
    const objects = await resolveObjectBackend(opts);
    const { startGateway } = await import("../gateway/index.js");
    const { deployBundle } = await import("../gateway/deploy.js");
    const dataDir = resolve(opts.data ?? process.env.ZEROCELL_DATA ?? ".data");
    const server = await startGateway({
      dataDir,
      httpPort: opts.httpPort,
      httpsPort: opts.httpsPort,
      adminPort: opts.adminPort,
      s3Port: opts.s3Port,
      host: opts.host,
      adminHost: opts.adminHost,
      http: { headersTimeoutMs: opts.headersTimeoutMs, requestTimeoutMs: opts.requestTimeoutMs },
      metering: { enabled: opts.metering, flushIntervalMs: opts.usageFlushMs, allowClosingOpenPeriods: opts.allowClosingOpenPeriods === true },
      baseDomain: opts.baseDomain,
      acme: { renewCheckMs: opts.acmeRenewCheckMs, ...(opts.acmeDirectory === undefined ? {} : { directoryUrl: opts.acmeDirectory }), ...(opts.acmeCaFile === undefined ? {} : { caFile: opts.acmeCaFile }) },
      objectLimits: { quotaBytes: opts.objectQuotaBytes, quotaObjects: opts.objectQuotaObjects },
      objects,
      pool: { maxInstancesPerDeployment: opts.maxInstances, maxQueue: opts.maxQueue, maxResponseBytes: opts.maxResponseBytes, idleTtlMs: opts.idleTtlMs, minInstancesPerDeployment: opts.minInstances, instancesPerHost: opts.instancesPerHost, memoryBudgetBytes: opts.memoryBudgetMb === undefined ? 0 : parsePositive(opts.memoryBudgetMb) * 1048576, spareHosts: opts.spareHosts },
    });
    log.info(`zerocell listening: http ${server.urls.http}  https ${server.urls.https}  admin ${server.urls.admin}  s3 ${server.urls.s3}`, { urls: server.urls, dataDir });
    if (opts.examples === true) {
      const dir = join(PACKAGE_ROOT, "examples");
      const account = server.platform.store.ensureDefaultAccount();
      for (const name of readdirSync(dir).sort()) {
        if (!existsSync(join(dir, name, "zerocell.toml"))) continue;
        let d;
        try {
          d = await deployBundle(server.platform, { appName: name, archive: await packDirectory(join(dir, name)), hosts: [], accountId: account, privileged: true });
        } catch (e) {
          // An example for a runtime this build does not have yet is skipped, not fatal.
          log.warn(`example ${name} skipped: ${(e as Error).message}`, { app: name });
          continue;
        }
        for (const r of d.routes) {
          const port = new URL(server.urls.https).port;
          log.info(`example ${name} v${d.version}: https://${r.host.replace("*", "www")}:${port}${r.path}  (curl --cacert ${join(dataDir, "certs", "ca.pem")} ...)`, { app: name, deploymentId: d.id, url: `https://${r.host.replace("*", "www")}:${port}${r.path}` });
        }
      }
    }
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info(`zerocell: ${signal}, draining`, { signal });
      server.close().then(
        () => process.exit(0),
        (e: unknown) => {
          log.error(`zerocell: shutdown failed: ${(e as Error).message}`);
          process.exit(1);
        },
      );
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
  });

program
  .command("deploy")
  .description("deploy a bundle (a directory with zerocell.toml, or a .tar.gz)")
  .argument("<path>", "bundle directory or .tar.gz")
  .requiredOption("--app <name>", "app name")
  .option("--host <host>", "serve the app at this host too (repeatable)", (v: string, acc: string[]) => [...acc, v], [] as string[])
  .addOption(dataOption())
  .addOption(jsonOption())
  .action(async (path: string, opts: { app: string; host: string[]; data?: string; json?: boolean }) => {
    const target = findTarget(opts);
    const { deployment, urls } = await deployPath(target, path, opts.app, opts.host, opts.json !== true && process.stderr.isTTY === true);
    print(opts.json === true, { deployment, urls }, () => describeDeployment(deployment, urls));
  });

const appsCmd = program
  .command("apps")
  .description("list apps; `apps delete APP` deletes one")
  .addOption(dataOption())
  .addOption(jsonOption())
  .action(async (opts: { data?: string; json?: boolean }) => {
    const res = (await api(findTarget(opts), "GET", "/v1/apps")) as { apps: Array<{ name: string; activeVersion: number | null; activeDeploymentId: string | null; createdAt: string }> };
    print(opts.json === true, res, () => table([["APP", "VERSION", "DEPLOYMENT", "CREATED"], ...res.apps.map((a) => [a.name, a.activeVersion === null ? "-" : `v${a.activeVersion}`, a.activeDeploymentId ?? "-", a.createdAt])]));
  });

addAppsDelete(appsCmd, cx);

program
  .command("deployments")
  .description("list an app's deployments")
  .argument("<app>")
  .addOption(dataOption())
  .addOption(jsonOption())
  .action(async (app: string, opts: { data?: string; json?: boolean }) => {
    const res = (await api(findTarget(opts), "GET", `/v1/apps/${encodeURIComponent(app)}/deployments`)) as { deployments: DeploymentJson[] };
    print(opts.json === true, res, () => table([["VERSION", "ID", "ACTIVE", "STATUS", "CREATED", "BUNDLE"], ...res.deployments.map((d) => [`v${d.version}`, d.id, d.active ? "*" : "", d.status ?? "ready", d.createdAt, d.bundleSha256.slice(0, 12)])]));
  });

program
  .command("rollback")
  .description("re-activate an older deployment (the previous one by default)")
  .argument("<app>")
  .argument("[version]", "version number, e.g. 3 or v3")
  .addOption(dataOption())
  .addOption(jsonOption())
  .action(async (app: string, version: string | undefined, opts: { data?: string; json?: boolean }) => {
    let body = {};
    if (version !== undefined) {
      const n = Number(version.replace(/^v/, ""));
      if (!Number.isInteger(n) || n < 1) throw new CliError(`invalid version "${version}"`);
      body = { version: n };
    }
    const res = (await api(findTarget(opts), "POST", `/v1/apps/${encodeURIComponent(app)}/rollback`, Buffer.from(JSON.stringify(body)), "application/json")) as { deployment: DeploymentJson };
    print(opts.json === true, res, () => `rolled back ${res.deployment.app} to v${res.deployment.version} (${res.deployment.id})`);
  });

program
  .command("routes")
  .description("list the active routes")
  .addOption(dataOption())
  .addOption(jsonOption())
  .action(async (opts: { data?: string; json?: boolean }) => {
    const res = (await api(findTarget(opts), "GET", "/v1/routes")) as { routes: Array<{ host: string; path: string; mode: string; key: string | null; app: string; deploymentId: string }> };
    print(opts.json === true, res, () => table([["HOST", "PATH", "APP", "MODE", "KEY", "DEPLOYMENT"], ...res.routes.map((r) => [r.host, r.path, r.app, r.mode, r.key ?? "-", r.deploymentId])]));
  });

program
  .command("hosts")
  .description("list the host names your account holds (a host and every path under it belong to one account), or assign one (admin)")
  .argument("[action]", '"assign" to give HOST to --account')
  .argument("[host]")
  .option("--account <name>", "the account that gets the host (assign)")
  .addOption(dataOption())
  .addOption(jsonOption())
  .action(async (action: string | undefined, host: string | undefined, opts: { account?: string; data?: string; json?: boolean }) => {
    const target = findTarget(opts);
    if (action !== undefined) {
      if (action !== "assign" || host === undefined || opts.account === undefined) throw new CliError("usage: zerocell hosts assign HOST --account NAME");
      const res = await api(target, "PUT", `/v1/hosts/${encodeURIComponent(host)}`, Buffer.from(JSON.stringify({ account: opts.account })), "application/json");
      print(opts.json === true, res, () => `${host} → account ${opts.account}`);
      return;
    }
    const res = (await api(target, "GET", "/v1/hosts")) as { hosts: Array<{ host: string; account: string; source: string; createdAt: string }> };
    print(opts.json === true, res, () => table([["HOST", "ACCOUNT", "HOW", "SINCE"], ...res.hosts.map((h) => [h.host, h.account, h.source, h.createdAt])]));
  });

interface Quantiles {
  count: number;
  p50: number | null;
  p99: number | null;
}

function fmtQ(q: Quantiles): string {
  return q.p50 === null ? "-" : `${q.p50.toFixed(2)}/${(q.p99 ?? 0).toFixed(2)}`;
}

program
  .command("pool")
  .description("show sandbox instances per deployment and mode, with acquire/reset/start times (p50/p99 ms)")
  .argument("[app]")
  .addOption(dataOption())
  .addOption(jsonOption())
  .action(async (app: string | undefined, opts: { data?: string; json?: boolean }) => {
    const res = (await api(findTarget(opts), "GET", "/v1/pool")) as {
      deployments: Array<{ app: string; deploymentId: string; mode: string; instances: number; idle: number; busy: number; starting: number; queued: number; resets: number; memoryBytes?: number; acquireMs: Quantiles; resetMs: Quantiles; instanceStartMs: Quantiles; lastStartError?: { code: string; message: string; at: string } }>;
      /** Admin tokens only. */
      spares?: { ready: Array<{ runtime: string; pid: number }>; taken: number };
      /** Admin tokens only. */
      memory?: { budgetBytes: number; usedBytes: number; waitingStarts: number; evictionsForBudget: number; refused: number };
    };
    const rows = res.deployments.filter((d) => app === undefined || d.app === app);
    print(opts.json === true, { deployments: rows, ...(res.spares === undefined ? {} : { spares: res.spares }), ...(res.memory === undefined ? {} : { memory: res.memory }) }, () => {
      const t = table([
        ["APP", "DEPLOYMENT", "MODE", "READY", "BUSY", "STARTING", "QUEUED", "RESETS", "MEM MiB", "ACQUIRE ms", "RESET ms", "START ms"],
        ...rows.map((d) => [d.app, d.deploymentId, d.mode, String(d.idle), String(d.busy), String(d.starting), String(d.queued), String(d.resets), String(Math.round((d.memoryBytes ?? 0) / 1048576)), fmtQ(d.acquireMs), fmtQ(d.resetMs), fmtQ(d.instanceStartMs)]),
      ]);
      const failed = rows.filter((d) => d.lastStartError !== undefined).map((d) => `${d.app} ${d.deploymentId} (${d.mode}) failed to start at ${d.lastStartError!.at}: ${d.lastStartError!.message} [${d.lastStartError!.code}]`);
      const tf = failed.length === 0 ? t : `${t}\n${failed.join("\n")}`;
      if (res.spares === undefined) return tf;
      const ready = res.spares.ready.map((s) => `${s.runtime} (pid ${s.pid})`).join(", ") || "none";
      const m = res.memory;
      const mib = (b: number) => Math.round(b / 1048576);
      const mem = m === undefined ? "" : `\nmemory budget: ${mib(m.usedBytes)} of ${mib(m.budgetBytes)} MiB in use; ${m.waitingStarts} starts waiting; ${m.evictionsForBudget} idle instances evicted for it; ${m.refused} starts refused (503)`;
      return `${tf}\nspare hosts ready: ${ready}; taken so far: ${res.spares.taken}${mem}`;
    });
  });

interface LogLineJson {
  id: number;
  at: number;
  deploymentId: string;
  requestId: string | null;
  line: string;
}

const fmtLog = (l: LogLineJson) => `${new Date(l.at).toISOString()} ${l.requestId === null ? "[start]" : `[${l.requestId.slice(0, 8)}]`} ${l.line}`;

program
  .command("logs")
  .description("show an app's log lines (PHP errors, Python stderr and tracebacks, x86 stderr) with the request each belongs to")
  .argument("<app>")
  .option("-f, --follow", "keep printing new lines as they are written")
  .option("--since <when>", "only lines from this long ago or later (30s, 10m, 2h, 7d) or since an ISO date")
  .option("-n, --limit <n>", "the most recent N lines (default 200, at most 1000)")
  .addOption(dataOption())
  .addOption(jsonOption())
  .action(async (app: string, opts: { follow?: boolean; since?: string; limit?: string; data?: string; json?: boolean }) => {
    const target = findTarget(opts);
    const q = new URLSearchParams();
    if (opts.since !== undefined) q.set("since", opts.since);
    if (opts.limit !== undefined) q.set("limit", opts.limit);
    const path = `/v1/apps/${encodeURIComponent(app)}/logs`;
    if (opts.follow !== true) {
      const res = (await api(target, "GET", `${path}?${q}`)) as { logs: LogLineJson[] };
      print(opts.json === true, res, () => res.logs.map(fmtLog).join("\n") || "(no log lines)");
      return;
    }
    // Server-sent events: one JSON line per log line with --json, else the text form.
    q.set("follow", "1");
    const res = await fetch(new URL(`${path}?${q}`, target.url), { headers: { authorization: `Bearer ${target.token}`, accept: "text/event-stream" } });
    if (!res.ok || res.body === null) {
      throw await responseError(res);
    }
    // Parsed by eventsource-parser, as the jobs' progress stream is (src/cli/job-events.ts).
    const events = res.body.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream());
    for await (const e of events as unknown as AsyncIterable<{ event?: string; data: string }>) {
      if (e.event === "overflow") throw new CliError("logs: the server dropped this follower (it fell behind); run the command again");
      if (e.data === "") continue;
      const line = JSON.parse(e.data) as LogLineJson;
      process.stdout.write(opts.json === true ? JSON.stringify(line) + "\n" : fmtLog(line) + "\n");
    }
  });

program
  .command("keys")
  .description("list an app's keys (per-key storage), export one as a tar, or delete one")
  .argument("<app>")
  .option("--export <key>", "write this key's /data as a tar (to --output or stdout)")
  .option("-o, --output <file>", "file for --export")
  .option("--delete <key>", "delete this key's data")
  .addOption(dataOption())
  .addOption(jsonOption())
  .action(async (app: string, opts: { export?: string; output?: string; delete?: string; data?: string; json?: boolean }) => {
    const target = findTarget(opts);
    const base = `/v1/apps/${encodeURIComponent(app)}/keys`;
    if (opts.export !== undefined) {
      const url = new URL(`${base}/${encodeURIComponent(opts.export)}/export`, target.url);
      const res = await fetch(url, { headers: { authorization: `Bearer ${target.token}` } });
      if (!res.ok) {
        throw await responseError(res);
      }
      const tar = Buffer.from(await res.arrayBuffer());
      if (opts.output !== undefined) {
        const { writeFileSync } = await import("node:fs");
        writeFileSync(opts.output, tar);
        process.stderr.write(`wrote ${tar.length} bytes to ${opts.output}\n`);
      } else process.stdout.write(tar);
      return;
    }
    if (opts.delete !== undefined) {
      await api(target, "DELETE", `${base}/${encodeURIComponent(opts.delete)}`);
      print(opts.json === true, { deleted: true, key: opts.delete }, () => `deleted key "${opts.delete}" of ${app}`);
      return;
    }
    const res = (await api(target, "GET", base)) as { keys: Array<{ key: string; bytes: number; version: number; updatedAt: string; lastAccessAt: string }> };
    print(opts.json === true, res, () => table([["KEY", "BYTES", "VERSION", "UPDATED", "LAST ACCESS"], ...res.keys.map((k) => [k.key, String(k.bytes), String(k.version), k.updatedAt, k.lastAccessAt])]));
  });

interface InvoiceJson {
  id: string;
  account: string;
  period: string;
  status: string;
  currency: string;
  total: number;
  plan: string;
  syncStatus: string;
  syncError: string | null;
  stripeInvoiceId: string | null;
  lineCount?: number;
  lines?: Array<{ description: string; quantity: string; unitPriceMicros: number; amount: number; metric: string }>;
}

function money(minor: number, currency: string): string {
  return new Intl.NumberFormat("en-US", { style: "currency", currency: currency.toUpperCase() }).format(minor / 100);
}

const accounts = program.command("accounts").description("accounts (each with its own apps, usage and invoices)");
accounts
  .command("create")
  .argument("<name>")
  .option("--plan <plan>", "price plan name (default: standard)")
  .addOption(dataOption())
  .addOption(jsonOption())
  .action(async (name: string, opts: { plan?: string; data?: string; json?: boolean }) => {
    const res = (await api(findTarget(opts), "POST", "/v1/accounts", Buffer.from(JSON.stringify({ name, ...(opts.plan === undefined ? {} : { plan: opts.plan }) })), "application/json")) as { account: { id: string; name: string }; token: string };
    print(opts.json === true, res, () => `created account ${res.account.name} (${res.account.id})\ntoken (scopes deploy, read-usage; shown once): ${res.token}`);
  });
accounts
  .command("list")
  .addOption(dataOption())
  .addOption(jsonOption())
  .action(async (opts: { data?: string; json?: boolean }) => {
    const res = (await api(findTarget(opts), "GET", "/v1/accounts")) as { accounts: Array<{ id: string; name: string; planId: string | null; createdAt: string; disabledAt: string | null }> };
    print(opts.json === true, res, () => table([["ACCOUNT", "ID", "PLAN", "CREATED", "DISABLED"], ...res.accounts.map((a) => [a.name, a.id, a.planId ?? "standard", a.createdAt, a.disabledAt ?? "-"])]));
  });

program
  .command("tokens")
  .description("create an API token for an account (admin), list tokens, or revoke one")
  .argument("<action>", "create, list or revoke")
  .argument("[id]", "the token to revoke (revoke)")
  .option("--account <name>", "the account the new token is for (create)")
  .option("--scope <scope>", "deploy or read-usage (repeatable)", (v: string, acc: string[]) => [...acc, v], [] as string[])
  .addOption(dataOption())
  .addOption(jsonOption())
  .action(async (action: string, id: string | undefined, opts: { account?: string; scope: string[]; data?: string; json?: boolean }) => {
    if (await runTokensAction(action, id, opts, cx)) return;
    if (action !== "create") throw new CliError(`unknown action "${action}" (use: create, list, revoke)`);
    if (opts.account === undefined) throw new CliError("usage: zerocell tokens create --account NAME [--scope deploy|read-usage]");
    const scopes = opts.scope.length === 0 ? ["deploy", "read-usage"] : opts.scope;
    const res = (await api(findTarget(opts), "POST", "/v1/tokens", Buffer.from(JSON.stringify({ account: opts.account, scopes })), "application/json")) as { token: string; scopes: string[] };
    print(opts.json === true, res, () => `token for ${opts.account} (scopes ${res.scopes.join(", ")}; shown once): ${res.token}`);
  });

program
  .command("usage")
  .description("usage per day and app (requests, GB-seconds, instructions)")
  .option("--account <name>")
  .option("--app <name>")
  .option("--from <day>", "YYYY-MM-DD")
  .option("--to <day>", "YYYY-MM-DD")
  .option("--jobs", "per job instead: objects, bytes read, estimated and actual cost")
  .addOption(dataOption())
  .addOption(jsonOption())
  .action(async (opts: { account?: string; app?: string; from?: string; to?: string; jobs?: boolean; data?: string; json?: boolean }) => {
    if (opts.jobs === true) return printJobUsage(kit, findTarget(opts), opts);
    const qs = new URLSearchParams();
    for (const k of ["account", "app", "from", "to"] as const) if (opts[k] !== undefined) qs.set(k, opts[k]!);
    const res = (await api(findTarget(opts), "GET", `/v1/usage${qs.size > 0 ? "?" + qs.toString() : ""}`)) as { usage: Array<{ day: string; account: string; app: string; requests: number; errors: number; gbSeconds: number; wallMs: number; instructions: number; bytesIn: number; bytesOut: number }> };
    print(opts.json === true, res, () =>
      table([
        ["DAY", "ACCOUNT", "APP", "REQUESTS", "ERRORS", "GB-S", "WALL MS", "INSTRUCTIONS", "IN", "OUT"],
        ...res.usage.map((u) => [u.day, u.account, u.app, String(u.requests), String(u.errors), u.gbSeconds.toFixed(6), u.wallMs.toFixed(1), String(u.instructions), String(u.bytesIn), String(u.bytesOut)]),
      ]),
    );
  });

const invoicesCmd = program
  .command("invoices")
  .description("list invoices (with the current period as a draft); `invoices close --period YYYY-MM` closes a period")
  .option("--account <name>")
  .addOption(dataOption())
  .addOption(jsonOption())
  .action(async (opts: { account?: string; data?: string; json?: boolean }) => {
    const qs = new URLSearchParams({ drafts: "1" });
    if (opts.account !== undefined) qs.set("account", opts.account);
    const res = (await api(findTarget(opts), "GET", `/v1/invoices?${qs.toString()}`)) as { invoices: InvoiceJson[] };
    print(opts.json === true, res, () => table([["INVOICE", "ACCOUNT", "PERIOD", "STATUS", "TOTAL", "LINES", "STRIPE"], ...res.invoices.map((i) => [i.id, i.account, i.period, i.status, money(i.total, i.currency), String(i.lineCount ?? 0), i.syncStatus + (i.syncError === null ? "" : ` (${i.syncError.slice(0, 60)})`)])]));
  });
invoicesCmd
  .command("close")
  .requiredOption("--period <period>", "YYYY-MM")
  .addOption(dataOption())
  .addOption(jsonOption())
  .action(async (_opts: unknown, cmd: Command) => {
    // The parent command also declares --data/--json; take whichever level parsed them.
    const opts = cmd.optsWithGlobals<{ period: string; data?: string; json?: boolean }>();
    const res = (await api(findTarget(opts), "POST", "/v1/invoices/close", Buffer.from(JSON.stringify({ period: opts.period })), "application/json")) as { period: string; created: InvoiceJson[]; existing: number };
    print(opts.json === true, res, () => [`closed ${res.period}: ${res.created.length} invoice(s) created, ${res.existing} already closed`, ...res.created.map((i) => `  ${i.id}  ${i.account}  ${money(i.total, i.currency)}`)].join("\n"));
  });

program
  .command("invoice")
  .description("show an invoice with its lines")
  .argument("<id>")
  .addOption(dataOption())
  .addOption(jsonOption())
  .action(async (id: string, opts: { data?: string; json?: boolean }) => {
    const res = (await api(findTarget(opts), "GET", `/v1/invoices/${encodeURIComponent(id)}`)) as { invoice: InvoiceJson };
    const i = res.invoice;
    print(opts.json === true, res, () =>
      [
        `invoice ${i.id}  account ${i.account}  period ${i.period}  ${i.status}  plan ${i.plan}  stripe ${i.syncStatus}${i.stripeInvoiceId === null ? "" : ` (${i.stripeInvoiceId})`}`,
        table([["LINE", "QUANTITY", "UNIT PRICE (micro)", "AMOUNT"], ...(i.lines ?? []).map((l) => [l.description, l.quantity, String(l.unitPriceMicros), money(l.amount, i.currency)])]),
        `total ${money(i.total, i.currency)}`,
      ].join("\n"),
    );
  });

program
  .command("validate")
  .description("statically validate an x86-64 program (an ELF file, or a bundle directory with [x86] program) — no server needed")
  .argument("<path>")
  .addOption(jsonOption())
  .action(async (path: string, opts: { json?: boolean }) => {
    // Loaded here: iced-x86 (WASM) is needed by this command only.
    const { readProgram, validateElf, formatReport } = await import("../runtime/x86/validate.js");
    const { parseManifest } = await import("../runtime/manifest.js");
    const prog = readProgram(path, parseManifest);
    const report = validateElf(prog.bytes, { path: prog.path });
    process.stdout.write(opts.json === true ? JSON.stringify(report, null, 2) + "\n" : formatReport(report));
    if (!report.ok) process.exitCode = 1;
  });

program
  .command("certs-add")
  .description("install your own certificate chain and key for a host")
  .argument("<host>")
  .requiredOption("--cert <file>", "PEM certificate chain")
  .requiredOption("--key <file>", "PEM private key")
  .addOption(dataOption())
  .action(async (host: string, opts: { cert: string; key: string; data?: string }) => {
    const body = JSON.stringify({ cert: readFileSync(opts.cert, "utf8"), key: readFileSync(opts.key, "utf8") });
    await api(findTarget(opts), "PUT", `/v1/certificates/${encodeURIComponent(host)}`, Buffer.from(body), "application/json");
    process.stdout.write(`certificate installed for ${host}\n`);
  });

const kit: CliKit<ClientTarget> = { findTarget, api, print, table, dataOption, jsonOption, fail: (m) => { throw new CliError(m); } };
registerAccessKeyCommands(program, kit);
registerBindingCommands(program, kit);
registerBucketCommands(program, kit);
registerEnvCommands(program, kit);
addAccountLifecycle(accounts, kit);
registerPlanCommands(program, kit);
registerJobCommands(program, kit);
registerDomainCommands(program, kit);

addExamples(program);

program.parseAsync(process.argv).catch((e: unknown) => {
  if (e instanceof CommanderError) {
    // --help and --version end here too, with exit code 0.
    if (e.exitCode === 0) process.exit(0);
    process.exit(reportError(new CliError(e.message.replace(/^error: /, ""), { code: "usage", exitCode: EXIT.usage }), wantsJson));
  }
  // System errors (a file named on the command line is missing): their message, no stack.
  if (!(e instanceof CliError) && e instanceof Error && "code" in e) process.exit(reportError(new CliError(e.message, { code: String((e as { code: unknown }).code).toLowerCase(), exitCode: EXIT.failure }), wantsJson));
  process.exit(reportError(e, wantsJson));
});
