/**
 * Code next to the data: a bucket prefix bound to a deployed x86 app; a GET of an object there
 * (through the real AWS SDK and a raw signed request) runs the app's handler with the object as
 * its stdin and answers with its output. Another account cannot bind to or through it.
 */
import { describe, it, expect, beforeAll, afterAll, vi } from "vitest";
import Database from "better-sqlite3";
import { join } from "node:path";
import { CreateBucketCommand, PutObjectCommand, GetObjectCommand, HeadObjectCommand } from "@aws-sdk/client-s3";
import { startServer, admin, cleanup, writeBundle, type TestServer } from "../helpers/server.js";
import { s3Client, failure, rawS3, type Key } from "../helpers/s3.js";
import { x86Fixture } from "../helpers/x86.js";

const json = (o: unknown) => ({ body: JSON.stringify(o), contentType: "application/json" });

describe("bucket bindings: GET runs the bound app on the object", () => {
  let server: TestServer;
  let key: Key;
  let bindingId = "";
  let otherToken = "";

  beforeAll(async () => {
    server = await startServer(["--no-spare-hosts"]);
    key = JSON.parse((await server.cli(["access-keys", "create", "--json"])).stdout) as Key;
    await server.cli(["deploy", writeBundle({ "zerocell.toml": `runtime = "x86"\n[x86]\nprogram = "bin/app"\n[limits]\ntimeout_ms = 20000\nmemory_mb = 32\nmax_body_bytes = 65536\n[[routes]]\nhost = "cgi.localhost"\n`, "bin/app": x86Fixture("cgi-test") }), "--app", "cgi"]);
    const s3 = s3Client(server, key);
    await s3.send(new CreateBucketCommand({ Bucket: "mail" }));
    await s3.send(new PutObjectCommand({ Bucket: "mail", Key: "stdin", Body: Buffer.alloc(12_345, 0x61) }));
    await s3.send(new PutObjectCommand({ Bucket: "mail", Key: "env", Body: "0123456789", ContentType: "text/x-mail" }));
    await s3.send(new PutObjectCommand({ Bucket: "mail", Key: "big", Body: Buffer.alloc(100_000) }));
    await s3.send(new CreateBucketCommand({ Bucket: "plain" }));
    await s3.send(new PutObjectCommand({ Bucket: "plain", Key: "stdin", Body: "not bound" }));
    otherToken = (await admin(server, "POST", "/v1/accounts", json({ name: "other" }))).json.token;
  }, 180_000);

  afterAll(async () => {
    await server?.stop();
    if (server !== undefined) cleanup(server.dataDir);
  });

  it("binds a bucket; another account can neither bind our app nor see the binding", async () => {
    const out = JSON.parse((await server.cli(["bindings", "create", "--bucket", "mail", "--app", "cgi", "--json"])).stdout) as { binding: { id: string; app: string } };
    expect(out.binding.app).toBe("cgi");
    bindingId = out.binding.id;
    // A prefix binding: "plain/stdin" is outside "x/", so it stays a plain object.
    await server.cli(["bindings", "create", "--bucket", "plain", "--prefix", "x/", "--app", "cgi"]);
    const theirs = await admin(server, "POST", "/v1/bindings", { token: otherToken, ...json({ bucket: "mail", prefix: "", app: "cgi" }) });
    const missing = await admin(server, "POST", "/v1/bindings", { token: otherToken, ...json({ bucket: "mail", prefix: "", app: "nope" }) });
    expect(theirs.status).toBe(404);
    expect(theirs.json.error.message.replace("cgi", "X")).toBe(missing.json.error.message.replace("nope", "X"));
    expect((await admin(server, "GET", "/v1/bindings", { token: otherToken })).json.bindings).toEqual([]);
    expect((await admin(server, "DELETE", `/v1/bindings/${bindingId}`, { token: otherToken })).status).toBe(404);
    // Binding a missing bucket of one's own fails.
    expect((await admin(server, "POST", "/v1/bindings", json({ bucket: "nobucket", app: "cgi" }))).status).toBe(404);
  });

  it("a GET under the prefix runs the app with the object as stdin", async () => {
    const r = await rawS3(server, { method: "GET", path: "/mail/stdin", key });
    expect(r.status).toBe(201);
    expect(r.text).toBe("12345");
    expect(r.headers["x-zerocell-binding"]).toBe(bindingId);
    const env = await (await s3Client(server, key).send(new GetObjectCommand({ Bucket: "mail", Key: "env" }))).Body!.transformToString();
    expect(env).toContain("REQUEST_METHOD=POST");
    expect(env).toContain("CONTENT_LENGTH=10");
    expect(env).toContain("CONTENT_TYPE=text/x-mail");
    expect(env).toContain("PATH_INFO=/env");
    // Outside a bound prefix, and HEAD anywhere, the object itself.
    expect(await (await s3Client(server, key).send(new GetObjectCommand({ Bucket: "plain", Key: "stdin" }))).Body!.transformToString()).toBe("not bound");
    expect((await s3Client(server, key).send(new HeadObjectCommand({ Bucket: "mail", Key: "stdin" }))).ContentLength).toBe(12_345);
    // Every run is metered for the app's account.
    await vi.waitFor(() => {
      const db = new Database(join(server.dataDir, "zerocell.db"), { readonly: true });
      const n = (db.prepare("SELECT COUNT(*) AS n FROM usage_records WHERE mode = 'object'").get() as { n: number }).n;
      db.close();
      expect(n).toBeGreaterThanOrEqual(2);
    }, { timeout: 20_000, interval: 100 });
  });

  it("refuses an object larger than the app's max_body_bytes, and 404s a missing key", async () => {
    expect(await failure(s3Client(server, key).send(new GetObjectCommand({ Bucket: "mail", Key: "big" })))).toMatchObject({ name: "EntityTooLarge", status: 400 });
    expect(await failure(s3Client(server, key).send(new GetObjectCommand({ Bucket: "mail", Key: "none" })))).toMatchObject({ name: "NoSuchKey", status: 404 });
  });

  it("a POSTed program is validated like a deployment and runs once per named object; nothing is stored", async () => {
    const run = (program: Buffer, keys: string[], token?: string) =>
      admin(server, "POST", `/v1/objects/run?bucket=mail&${keys.map((k) => `key=${encodeURIComponent(k)}`).join("&")}`, { body: program, contentType: "application/octet-stream", ...(token === undefined ? {} : { token }) });
    const program = x86Fixture("cgi-test");
    const r = await run(program, ["stdin", "env", "none"]);
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(r.json.validation).toBe("validated");
    expect(r.json.results[0]).toMatchObject({ key: "stdin", status: 201, output: "12345", encoding: "utf8" });
    expect(r.json.results[1].output).toContain("CONTENT_LENGTH=10");
    expect(r.json.results[2]).toMatchObject({ key: "none", error: { code: "no_such_key" } });
    // The same bytes again: the validation is found by content hash.
    const again = await run(program, ["stdin"]);
    expect(again.json).toMatchObject({ validation: "cached", results: [{ key: "stdin", output: "12345" }] });
    // The answer's server-timing: the phases from the request's arrival to the program's start.
    const timed = await fetch(`${server.urls.admin}/v1/objects/run?bucket=mail&key=stdin`, { method: "POST", headers: { authorization: `Bearer ${server.token}`, "content-type": "application/octet-stream" }, body: new Uint8Array(program) });
    expect(timed.status).toBe(200);
    const st = timed.headers.get("server-timing") ?? "";
    expect(st).toMatch(/^body;dur=[\d.]+, validate;desc="hit";dur=[\d.]+, read;dur=[\d.]+, acquire;dur=[\d.]+, ready;dur=[\d.]+, run;dur=[\d.]+, total;dur=[\d.]+$/);
    const dur = (name: string) => Number(new RegExp(`${name};(?:desc="\\w+";)?dur=([\\d.]+)`).exec(st)![1]);
    expect(dur("ready")).toBeLessThanOrEqual(dur("total"));
    expect(dur("validate")).toBeLessThanOrEqual(dur("total"));
    // A program with a privileged instruction is refused exactly as a deploy refuses it.
    const evil = x86Fixture("privileged");
    const refused = await run(evil, ["stdin"]);
    const deployRefused = await admin(server, "POST", "/v1/apps/evil/deployments", { body: await (await import("../../src/bundle/index.js")).packDirectory(writeBundle({ "zerocell.toml": 'runtime = "x86"\n[x86]\nprogram = "bin/app"\n', "bin/app": evil })), contentType: "application/gzip" });
    expect(refused.status).toBe(400);
    expect(refused.json.error.code).toBe(deployRefused.json.error.code);
    // Another account names our bucket: its own namespace has none.
    const foreign = await run(program, ["stdin"], otherToken);
    expect(foreign.status).toBe(404);
    expect(foreign.json.error.code).toBe("no_such_bucket");
    // Nothing stored: no app, no deployment.
    expect((await admin(server, "GET", "/v1/apps")).json.apps.map((a: { name: string }) => a.name)).toEqual(["cgi"]);
  });

  it("after the binding is deleted, the GET returns the bytes again", async () => {
    await server.cli(["bindings", "delete", bindingId]);
    const r = await rawS3(server, { method: "GET", path: "/mail/env", key });
    expect(r.status).toBe(200);
    expect(r.text).toBe("0123456789");
  });
});
