/** S3 API test helpers: an AWS SDK client for a test server, SDK failures as data, raw signed requests. */
import https from "node:https";
import { createHash } from "node:crypto";
import { S3Client, S3ServiceException } from "@aws-sdk/client-s3";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import { SignatureV4 } from "@smithy/signature-v4";
import { HttpRequest } from "@smithy/protocol-http";
import { Hash } from "@smithy/hash-node";
import type { TestServer } from "./server.js";

export interface Key {
  accessKeyId: string;
  secretAccessKey: string;
}

/** The real AWS SDK, path-style, trusting the server's CA, no retries. */
export function s3Client(server: TestServer, key: Key, extra: { systemClockOffset?: number } = {}): S3Client {
  const c = new S3Client({
    endpoint: server.urls.s3,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: key,
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    maxAttempts: 1,
    requestHandler: new NodeHttpHandler({ httpsAgent: new https.Agent({ ca: server.ca }) }),
  });
  if (extra.systemClockOffset !== undefined) c.config.systemClockOffset = extra.systemClockOffset;
  return c;
}

/** The error an SDK call fails with (its S3 code and HTTP status), or "ok". */
export async function failure(p: Promise<unknown>): Promise<{ name: string; status: number | undefined; message: string } | "ok"> {
  try {
    await p;
    return "ok";
  } catch (e) {
    if (e instanceof S3ServiceException) return { name: e.name, status: e.$metadata.httpStatusCode, message: e.message };
    throw e;
  }
}

/** A raw HTTPS request to the S3 listener, optionally signed with SigV4 (for what the SDK will not send). */
export async function rawS3(server: TestServer, opts: { method: string; path: string; key?: Key; body?: Buffer; headers?: Record<string, string>; payloadHash?: string; query?: Record<string, string> }): Promise<{ status: number; text: string; headers: Record<string, string | string[] | undefined> }> {
  const url = new URL(server.urls.s3);
  let headers: Record<string, string> = { host: url.host, ...(opts.body === undefined ? {} : { "content-length": String(opts.body.length) }), ...(opts.headers ?? {}) };
  if (opts.key !== undefined) {
    const signer = new SignatureV4({ credentials: opts.key, region: "us-east-1", service: "s3", sha256: Hash.bind(null, "sha256"), uriEscapePath: false });
    const payloadHash = opts.payloadHash ?? createHash("sha256").update(opts.body ?? Buffer.alloc(0)).digest("hex");
    const signed = await signer.sign(new HttpRequest({ method: opts.method, protocol: "https:", hostname: url.hostname, port: Number(url.port), path: opts.path, query: opts.query ?? {}, headers: { ...headers, "x-amz-content-sha256": payloadHash } }));
    headers = signed.headers as Record<string, string>;
  }
  const qs = opts.query === undefined ? "" : "?" + Object.entries(opts.query).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&");
  return new Promise((resolve, reject) => {
    const req = https.request({ host: url.hostname, port: url.port, path: opts.path + qs, method: opts.method, headers, ca: server.ca, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8"), headers: res.headers }));
      res.on("error", reject);
    });
    req.on("error", reject);
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}
