/**
 * A real OpenStack Swift for tests and benchmarks: Debian's swift 2.30 (proxy with s3api + tempauth, account,
 * container and object servers, one replica each) and memcached, on loopback, on free ports, in a
 * temp dir. Started by the tests themselves; `stop()` ends every process it started and removes
 * the dir (`node scripts/swift-local.mjs` runs one until Ctrl-C). The S3 credentials are tempauth's: access key "test:tester", secret "testing".
 */
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, existsSync } from "node:fs";
import net from "node:net";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";


const BINARIES = ["swift-proxy-server", "swift-account-server", "swift-container-server", "swift-object-server", "swift-ring-builder"];

/** Why Swift cannot start here (a missing Debian package), or undefined. */
export function swiftMissing() {
  for (const b of [...BINARIES.map((x) => `/usr/bin/${x}`), "/usr/bin/memcached"]) {
    if (!existsSync(b)) return `${b} is missing: install Debian's swift, swift-proxy, swift-account, swift-container, swift-object and memcached (scripts/setup.sh does)`;
  }
  return undefined;
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = s.address().port;
      s.close(() => resolve(port));
    });
  });
}

function get(url, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, timeout: 5000 }, (res) => {
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}

export async function startSwift(opts = {}) {
  const missing = swiftMissing();
  if (missing !== undefined) throw new Error(`swift: ${missing}`);
  const dir = mkdtempSync(join(tmpdir(), "zc-swift-"));
  const etc = join(dir, "etc");
  const devices = join(dir, "srv");
  mkdirSync(etc);
  mkdirSync(join(devices, "d1"), { recursive: true });
  const [proxyPort, accountPort, containerPort, objectPort, memcachePort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()] ;

  writeFileSync(join(etc, "swift.conf"), `[swift-hash]\nswift_hash_path_suffix = zc-test-${process.pid}\nswift_hash_path_prefix = zc-test\n\n[storage-policy:0]\nname = Policy-0\ndefault = yes\n`);
  const common = (port) => `[DEFAULT]\nbind_ip = 127.0.0.1\nbind_port = ${port}\nworkers = 0\nuser = ${process.getuid() === 0 ? "root" : process.env.USER ?? "root"}\nswift_dir = ${etc}\ndevices = ${devices}\nmount_check = false\nlog_name = swift\nlog_facility = LOG_LOCAL0\nlog_level = WARNING\n`;
  for (const [name, port] of [["account", accountPort], ["container", containerPort], ["object", objectPort]])  {
    writeFileSync(join(etc, `${name}-server.conf`), `${common(port)}\n[pipeline:main]\npipeline = ${name}-server\n\n[app:${name}-server]\nuse = egg:swift#${name}\n${name === "object" ? "" : "allow_versions = true\n"}`);
    const builder = join(etc, `${name}.builder`);
    execFileSync("/usr/bin/swift-ring-builder", [builder, "create", "6", "1", "1"], { stdio: "ignore" });
    execFileSync("/usr/bin/swift-ring-builder", [builder, "add", `r1z1-127.0.0.1:${port}/d1`, "1"], { stdio: "ignore" });
    // rebalance exits 1 with a warning on a one-device ring; the ring file is written anyway.
    try {
      execFileSync("/usr/bin/swift-ring-builder", [builder, "rebalance"], { stdio: "ignore" });
    } catch {
      /* checked below */
    }
    if (!existsSync(join(etc, `${name}.ring.gz`))) throw new Error(`swift: ring ${name}.ring.gz was not built`);
  }
  writeFileSync(
    join(etc, "proxy-server.conf"),
    `${common(proxyPort)}
[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = true

[filter:s3api]
use = egg:swift#s3api
location = us-east-1
# The contract suite uses small parts (S3's 5 MiB minimum is a limit of the store, set per test).
min_segment_size = 1
allow_multipart_uploads = true
check_bucket_owner = false

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:${memcachePort}

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
`,
  );

  let out = "";
  const procs = [];
  const run = (cmd, args) => {
    const p = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], cwd: dir });
    p.stdout.on("data", (d) => (out += d.toString()));
    p.stderr.on("data", (d) => (out += d.toString()));
    procs.push(p);
    return p;
  };
  const stop = async () => {
    await Promise.all(
      procs.map(
        (p) =>
          new Promise((resolve) => {
            if (p.exitCode !== null || p.signalCode !== null) return resolve();
            const timer = setTimeout(() => p.kill("SIGKILL"), 10_000);
            p.once("exit", () => {
              clearTimeout(timer);
              resolve();
            });
            p.kill("SIGTERM");
          }),
      ),
    );
    rmSync(dir, { recursive: true, force: true });
  };

  run("/usr/bin/memcached", ["-l", "127.0.0.1", "-p", String(memcachePort), "-U", "0", "-m", "64", "-u", process.getuid() === 0 ? "root" : (process.env.USER ?? "root")]);
  for (const name of ["account", "container", "object", "proxy"]) run(`/usr/bin/swift-${name}-server`, [join(etc, `${name}-server.conf`)]);

  const endpoint = `http://127.0.0.1:${proxyPort}`;
  const deadline = Date.now() + (opts.timeoutMs ?? 240_000);
  for (;;) {
    const dead = procs.find((p) => p.exitCode !== null);
    if (dead !== undefined) {
      await stop();
      throw new Error(`swift: ${dead.spawnfile} exited (${dead.exitCode}) during start:\n${out.slice(-4000)}`);
    }
    // Ready when tempauth answers and an account HEAD works (all four servers are up).
    const ok = await (async () => {
      const auth = await get(`${endpoint}/auth/v1.0`, { "x-auth-user": "test:tester", "x-auth-key": "testing" });
      const token = auth.headers["x-auth-token"];
      const url = auth.headers["x-storage-url"];
      if (auth.status !== 200 || typeof token !== "string" || typeof url !== "string") return false;
      const acct = await get(url, { "x-auth-token": token });
      return acct.status === 204 || acct.status === 200;
    })().catch(() => false);
    if (ok) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`swift: not ready after ${opts.timeoutMs ?? 240_000} ms:\n${out.slice(-4000)}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return { endpoint, region: "us-east-1", accessKeyId: "test:tester", secretAccessKey: "testing", dir, output: () => out, stop };
}

// Run directly: a local Swift until interrupted (for trying the s3 object backend by hand).
if (import.meta.url === `file://${process.argv[1]}`) {
  const sw = await startSwift();
  console.log(`swift s3api at ${sw.endpoint} (access key ${sw.accessKeyId}, secret ${sw.secretAccessKey}); Ctrl-C stops it`);
  const stop = () => sw.stop().then(() => process.exit(0));
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
