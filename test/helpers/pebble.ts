/**
 * Debian's `pebble` ACME test server (apt package pebble), started on loopback for a test: its
 * own TLS certificate (made here with openssl, trusted through --acme-ca-file), a validation
 * port pointing at the gateway's HTTP listener, and a tiny DNS responder (dns2) that answers
 * every name with 127.0.0.1, so HTTP-01 challenges for any test domain reach the gateway.
 * Everything listens on and talks to 127.0.0.1 only.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from "node:fs";
import { createServer as createNetServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import https from "node:https";
import dns2 from "dns2";

export const PEBBLE = "/usr/bin/pebble";

export interface Pebble {
  directoryUrl: string;
  /** The CA file that makes pebble's own HTTPS trusted (for --acme-ca-file). */
  tlsCaFile: string;
  /** Pebble's issuing root (PEM), to verify certificates it issued. */
  root(): Promise<string>;
  output(): string;
  stop(): Promise<void>;
}

/** A free loopback TCP port (listen on 0, close): pebble's ports must be known before it starts. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** DNS on 127.0.0.1 (UDP): A → addressOf(name) (default 127.0.0.1; loopback only) for every name, AAAA → no answer. */
export async function startDnsResponder(addressOf: (name: string) => string = () => "127.0.0.1"): Promise<{ port: number; close(): Promise<void> }> {
  const { Packet } = dns2;
  const server = dns2.createServer({
    udp: true,
    handle: (request, send) => {
      const response = Packet.createResponseFromRequest(request);
      const q = request.questions[0];
      // dns2 encodes plain answer objects; its types ask for a Resource class instance.
      const answer = { name: q?.name ?? "", type: Packet.TYPE.A, class: Packet.CLASS.IN, ttl: 1, address: addressOf(q?.name ?? "") };
      if (q !== undefined && q.type === Packet.TYPE.A) response.answers.push(answer as unknown as (typeof response.answers)[number]);
      send(response);
    },
  });
  const addresses = await server.listen({ udp: { port: 0, address: "127.0.0.1" } });
  return { port: addresses.udp!.port, close: () => server.close() };
}

/**
 * Step one, before the gateway starts: pebble's TLS certificate and port, so the gateway can be
 * given --acme-directory and --acme-ca-file; step two (start) needs the gateway's HTTP port.
 */
export async function preparePebble(): Promise<{ directoryUrl: string; tlsCaFile: string; start(opts: { validationHttpPort: number; dnsPort?: number; alwaysValid?: boolean; certValiditySeconds?: number }): Promise<Pebble> }> {
  const dir = mkdtempSync(join(tmpdir(), "zc-pebble-"));
  const certFile = join(dir, "cert.pem");
  const keyFile = join(dir, "key.pem");
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", keyFile, "-out", certFile], { stdio: "ignore" });
  const port = await freePort();
  const directoryUrl = `https://127.0.0.1:${port}/dir`;
  return { directoryUrl, tlsCaFile: certFile, start: (opts) => startPebble(dir, certFile, keyFile, port, opts) };
}

async function startPebble(dir: string, certFile: string, keyFile: string, port: number, opts: { validationHttpPort: number; dnsPort?: number; alwaysValid?: boolean; certValiditySeconds?: number }): Promise<Pebble> {
  const mgmt = await freePort();
  const config = {
    pebble: {
      listenAddress: `127.0.0.1:${port}`,
      managementListenAddress: `127.0.0.1:${mgmt}`,
      certificate: certFile,
      privateKey: keyFile,
      httpPort: opts.validationHttpPort,
      tlsPort: await freePort(),
      ocspResponderURL: "",
      externalAccountBindingRequired: false,
      ...(opts.certValiditySeconds === undefined ? {} : { certificateValidityPeriod: opts.certValiditySeconds }),
    },
  };
  writeFileSync(join(dir, "config.json"), JSON.stringify(config));
  const args = ["-config", join(dir, "config.json"), ...(opts.dnsPort === undefined ? [] : ["-dnsserver", `127.0.0.1:${opts.dnsPort}`])];
  const proc: ChildProcess = spawn(PEBBLE, args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, PEBBLE_VA_NOSLEEP: "1", PEBBLE_WFE_NONCEREJECT: "0", PEBBLE_AUTHZREUSE: "0", ...(opts.alwaysValid === true ? { PEBBLE_VA_ALWAYS_VALID: "1" } : {}) },
  });
  let out = "";
  proc.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  proc.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const ca = readFileSync(certFile, "utf8");
  const get = (url: string) =>
    new Promise<string>((resolve, reject) => {
      https.get(url, { ca }, (res) => {
        let body = "";
        res.on("data", (d: Buffer) => (body += d.toString()));
        res.on("end", () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`${url}: ${res.statusCode} ${body}`))));
      }).on("error", reject);
    });
  const directoryUrl = `https://127.0.0.1:${port}/dir`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`pebble exited (${proc.exitCode}):\n${out}`);
    try {
      await get(directoryUrl);
      break;
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`pebble did not start: ${(e as Error).message}\n${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    directoryUrl,
    tlsCaFile: certFile,
    root: () => get(`https://127.0.0.1:${mgmt}/roots/0`),
    output: () => out,
    async stop() {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once("exit", r));
        proc.kill("SIGTERM");
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
