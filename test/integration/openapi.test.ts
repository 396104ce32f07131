/**
 * The admin API's OpenAPI document against the real server: the document itself is a valid
 * OpenAPI 3.1 document (@seriousme/openapi-schema-validator), and real answers of every declared
 * operation — successes and errors — match the schema the document gives for their status (ajv,
 * JSON Schema 2020-12, the dialect of OpenAPI 3.1). Also: one error shape whose validation
 * details list every invalid field, and `limit` + `cursor` pagination on the lists.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import { Validator } from "@seriousme/openapi-schema-validator";
import { json, startServer, fetchApp, admin, writeBundle, phpBundle, type TestServer } from "../helpers/server.js";

const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => void;

async function packed(dir: string): Promise<Buffer> {
  const { packDirectory } = await import("../../src/bundle/index.js");
  return packDirectory(dir);
}

interface Doc {
  paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: unknown }> }> }>>;
}

describe("OpenAPI document and real responses", () => {
  let server: TestServer;
  let doc: Doc;
  let ajv: Ajv2020;
  /** "get /v1/apps/{app}" → statuses seen. */
  const seen = new Map<string, Set<number>>();

  /** The document's operation for a concrete method and path ("GET", "/v1/apps/x/deployments?limit=1"). */
  function operationOf(method: string, path: string): { template: string; op: Doc["paths"][string][string] } {
    const bare = path.split("?")[0]!;
    for (const [template, ops] of Object.entries(doc.paths)) {
      const re = new RegExp("^" + template.replace(/\{[^}]+\}/g, "[^/]+") + "$");
      const op = ops[method.toLowerCase()];
      if (re.test(bare) && op !== undefined) return { template, op };
    }
    throw new Error(`the document declares no ${method} ${bare}`);
  }

  /** Calls the admin API and checks the answer against the document; returns it. */
  async function call(method: string, path: string, opts: Parameters<typeof admin>[3] = {}): Promise<{ status: number; json: any }> {
    const r = await admin(server, method, path, opts);
    const { template, op } = operationOf(method, path);
    const key = `${method.toLowerCase()} ${template}`;
    if (!seen.has(key)) seen.set(key, new Set());
    seen.get(key)!.add(r.status);
    const declared = op.responses[String(r.status)] ?? op.responses.default;
    expect(declared, `${key}: status ${r.status} is not in the document (${JSON.stringify(r.json).slice(0, 300)})`).toBeDefined();
    const schema = declared!.content?.["application/json"]?.schema;
    if (schema !== undefined) {
      const pointer = `doc#/paths/${template.replaceAll("~", "~0").replaceAll("/", "~1")}/${method.toLowerCase()}/responses/${op.responses[String(r.status)] === undefined ? "default" : r.status}/content/application~1json/schema`;
      const validate = ajv.getSchema(pointer);
      expect(validate, pointer).toBeDefined();
      const ok = validate!(r.json);
      expect(ok, `${key} ${r.status}: ${JSON.stringify(validate!.errors)}\n${JSON.stringify(r.json).slice(0, 500)}`).toBe(true);
    }
    return r;
  }

  beforeAll(async () => {
    server = await startServer();
    const r = await admin(server, "GET", "/openapi.json", { token: null });
    expect(r.status).toBe(200);
    doc = r.json as Doc;
    ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats(ajv);
    ajv.addFormat("binary", true);
    ajv.addSchema(doc as object, "doc");
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
  });

  it("serves a valid OpenAPI 3.1 document without a token, declaring every /v1 endpoint", async () => {
    const result = await new Validator().validate(structuredClone(doc) as never);
    expect(result.valid, JSON.stringify(result.errors)).toBe(true);
    const { ADMIN_ENDPOINTS } = await import("../../src/gateway/admin.js");
    const declared = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p.replace(/\{([^}]+)\}/g, ":$1")}`));
    for (const k of Object.keys(ADMIN_ENDPOINTS)) expect(declared).toContain(k);
  });

  it("answers every declared operation with a body its schema accepts (successes and errors)", async () => {
    // apps and deployments
    const v1 = await call("POST", "/v1/apps/docs/deployments", { body: await packed(phpBundle("docs.localhost", { "index.php": "<?php echo 'one';" })), contentType: "application/gzip" });
    expect(v1.status, JSON.stringify(v1.json)).toBe(201);
    const keyed = writeBundle({
      "zerocell.toml": `runtime = "php"\n[php]\ndocument_root = "public"\nfront_controller = "index.php"\n[[routes]]\nhost = "docs.localhost"\npath = "/"\n[[routes]]\nhost = "docs.localhost"\npath = "/k/:id"\nkey = "id"\n`,
      "public/index.php": `<?php if (str_starts_with($_SERVER['REQUEST_URI'], '/k/')) file_put_contents('/data/x.txt', 'x'); error_log('docs log line'); echo 'two';`,
    });
    expect((await call("POST", "/v1/apps/docs/deployments?host=docs2.localhost", { body: await packed(keyed), contentType: "application/gzip" })).status).toBe(201);
    expect((await call("POST", "/v1/apps/Bad_Name/deployments", { body: "x", contentType: "application/gzip" })).status).toBe(400);
    expect((await fetchApp(server, "docs.localhost", "/k/abc")).status).toBe(200);
    expect((await call("GET", "/v1/apps")).json.apps.map((a: { name: string }) => a.name)).toContain("docs");
    expect((await call("GET", "/v1/apps/docs/deployments")).json.deployments).toHaveLength(2);
    expect((await call("GET", "/v1/apps/nope/deployments")).status).toBe(404);
    expect((await call("POST", "/v1/apps/docs/rollback", json({}))).json.deployment.version).toBe(1);
    expect((await call("POST", "/v1/apps/docs/rollback", json({ version: 2 }))).json.deployment.version).toBe(2);
    expect((await call("POST", "/v1/apps/docs/rollback", json({ version: "two" }))).status).toBe(400);
    expect((await call("GET", "/v1/routes")).status).toBe(200);
    expect((await call("GET", "/v1/pool")).status).toBe(200);
    await expect.poll(async () => (await call("GET", "/v1/apps/docs/logs")).json.logs.length, { timeout: 30_000 }).toBeGreaterThan(0);
    expect((await call("GET", "/v1/apps/docs/logs?since=never")).status).toBe(400);
    expect((await call("GET", "/v1/apps/docs/stats?window=30m")).status).toBe(200);
    expect((await call("GET", "/v1/apps/docs/stats?bucket=second")).status).toBe(400);
    await expect.poll(async () => (await call("GET", "/v1/apps/docs/keys")).json.keys.length, { timeout: 30_000 }).toBe(1);
    const exp = await admin(server, "GET", "/v1/apps/docs/keys/abc/export");
    expect(exp.status).toBe(200);
    operationOf("GET", "/v1/apps/docs/keys/abc/export");
    seen.set("get /v1/apps/{app}/keys/{key}/export", new Set([200]));
    expect((await call("GET", "/v1/apps/docs/keys/nope/export")).status).toBe(404);
    expect((await call("DELETE", "/v1/apps/docs/keys/abc")).status).toBe(200);
    expect((await call("DELETE", "/v1/apps/docs/keys/abc")).status).toBe(404);

    // accounts, tokens, plans
    const acct = await call("POST", "/v1/accounts", json({ name: "carol" }));
    expect(acct.status).toBe(201);
    expect((await call("POST", "/v1/accounts", json({ name: "carol" }))).status).toBeGreaterThanOrEqual(400);
    expect((await call("GET", "/v1/accounts")).status).toBe(200);
    const tok = await call("POST", "/v1/tokens", json({ account: "carol", scopes: ["read-usage"] }));
    expect(tok.status).toBe(201);
    expect((await call("POST", "/v1/tokens", json({ account: "nobody", scopes: ["deploy"] }))).status).toBe(404);
    expect((await call("GET", "/v1/tokens")).json.tokens.length).toBeGreaterThanOrEqual(2);
    expect((await call("GET", "/v1/tokens", { token: acct.json.token })).json.tokens).toHaveLength(2);
    expect((await call("DELETE", `/v1/tokens/${tok.json.id}`)).json.alreadyRevoked).toBe(false);
    expect((await call("DELETE", "/v1/tokens/tok_nope")).status).toBe(404);
    expect((await call("GET", "/v1/plans")).status).toBe(200);
    expect((await call("POST", "/v1/plans", json({ name: "cheap", currency: "usd", requestPriceMicros: 1, gbSecondPriceMicros: 1, gigaInstructionPriceMicros: 1 }))).status).toBe(201);

    // usage and invoices (scope errors are the one shape too)
    expect((await call("GET", "/v1/usage")).status).toBe(200);
    expect((await call("GET", "/v1/usage?from=yesterday")).status).toBe(400);
    expect((await call("GET", "/v1/pool", { token: tok.json.token })).status).toBe(401);
    const invoices = await call("GET", "/v1/invoices?drafts=1");
    expect(invoices.status).toBe(200);
    expect(invoices.json.invoices.length).toBeGreaterThan(0);
    expect((await call("GET", `/v1/invoices/${invoices.json.invoices[0].id}`)).status).toBe(200);
    expect((await call("GET", "/v1/invoices/inv_nope")).status).toBe(404);
    expect((await call("POST", "/v1/invoices/close", json({ period: "2020-01" }))).status).toBe(200);
    expect((await call("POST", "/v1/invoices/inv_nope/sync")).status).toBe(409);
    expect((await call("PUT", "/v1/certificates/docs.localhost", json({ cert: "not a pem", key: "nor this" }))).status).toBe(400);

    // host names, access keys, bindings, program runs
    expect((await call("PUT", "/v1/hosts/carol.example", json({ account: "carol" }))).status).toBe(200);
    expect((await call("GET", "/v1/hosts")).json.hosts.length).toBeGreaterThan(0);
    const key = await call("POST", "/v1/access-keys", json({}));
    expect(key.status).toBe(201);
    expect((await call("GET", "/v1/access-keys")).json.accessKeys).toHaveLength(1);
    expect((await call("DELETE", `/v1/access-keys/${key.json.accessKeyId}`)).status).toBe(200);
    const bound = await call("POST", "/v1/bindings", json({ bucket: "docs-bucket", app: "docs" }));
    expect([201, 404]).toContain(bound.status);
    expect((await call("GET", "/v1/bindings")).status).toBe(200);
    expect((await call("DELETE", `/v1/bindings/${bound.json.binding?.id ?? "bind_nope"}`)).status).toBe(bound.status === 201 ? 200 : 404);
    expect((await call("POST", "/v1/objects/run?bucket=docs-bucket&key=a", { body: "not an elf", contentType: "application/octet-stream" })).status).toBeGreaterThanOrEqual(400);

    // env, accounts disable/enable, pool memory, jobs
    expect((await call("GET", "/v1/apps/docs/env")).status).toBe(200);
    const envSet = await call("POST", "/v1/apps/docs/env", json({ set: [{ name: "GREETING", value: "hi" }, { name: "TOKEN", value: "s3cret", secret: true }] }));
    expect(envSet.status, JSON.stringify(envSet.json)).toBe(201);
    expect(JSON.stringify(envSet.json)).not.toContain("s3cret");
    expect((await call("POST", "/v1/apps/docs/env", json({ set: [{ name: 7 }] }))).status).toBe(400);
    expect((await call("DELETE", "/v1/apps/docs/env/GREETING")).status).toBe(201);
    expect((await call("POST", "/v1/accounts/carol/disable")).json.disabled).toBe(true);
    expect((await call("POST", "/v1/accounts/carol/enable")).json.disabled).toBe(false);
    expect((await call("POST", "/v1/accounts/nobody/disable")).status).toBe(404);
    expect((await call("GET", "/v1/objects/usage")).json).toMatchObject({ account: "default", bytes: expect.any(Number) });
    expect((await call("PUT", "/v1/accounts/carol/object-quota", json({ bytes: 1000, objects: null }))).json.quota.bytes).toBe(1000);
    expect((await call("PUT", "/v1/accounts/carol/object-quota", json({ bytes: "x" }))).status).toBe(400);
    expect((await call("GET", "/v1/pool/memory")).status).toBe(200);
    expect((await call("GET", "/v1/jobs")).status).toBe(200);
    expect((await call("POST", "/v1/jobs", json({ app: "docs", input: "no-such-bucket/in/", output: "no-such-bucket/out/" }))).status).toBeGreaterThanOrEqual(400);
    expect((await call("POST", "/v1/jobs", json({ app: 7 }))).status).toBe(400);
    expect((await call("GET", "/v1/jobs/job_nope")).status).toBe(404);
    expect((await call("POST", "/v1/jobs/job_nope/cancel")).status).toBe(404);
    expect((await call("GET", "/v1/jobs/job_nope/events")).status).toBe(404);
    expect((await call("GET", "/v1/usage/jobs")).json.jobs).toEqual([]);
    expect((await call("GET", "/v1/usage/jobs?account=nobody")).status).toBe(404);

    // domains: this server has no ACME directory, so add is refused (the ACME round trip against
    // pebble, with its 201, is test/integration/domains.test.ts)
    expect((await call("GET", "/v1/domains")).json.domains).toEqual([]);
    expect((await call("GET", "/v1/domains?account=nobody")).status).toBe(404);
    const noAcme = await call("POST", "/v1/domains", json({ host: "docs-shop.example.org" }));
    expect(noAcme.status).toBe(409);
    expect(noAcme.json.error.code).toBe("acme_not_configured");
    expect((await call("POST", "/v1/domains", json({ host: 7, extra: true }))).status).toBe(400);
    expect((await call("DELETE", "/v1/domains/docs-shop.example.org")).status).toBe(404);

    // delete, then unknown endpoints and missing tokens: the same error shape
    expect((await call("DELETE", "/v1/apps/docs")).status).toBe(200);
    expect((await call("GET", "/v1/apps", { token: null })).status).toBe(401);
    expect((await call("GET", "/v1/accounts", { token: acct.json.token })).status).toBe(403);

    const missing = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m} ${p}`)).filter((k) => k.includes("/v1/") && !seen.has(k));
    expect(missing, "operations no test call reached").toEqual([]);
  }, 240_000);

  it("lists every invalid field of a body or query, with its path", async () => {
    const r = await call("POST", "/v1/accounts", json({ name: "Not OK", scopes: ["deploy", "root"], plan: 7, extra: true }));
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe("bad_input");
    expect(r.json.error.details.fields.map((f: { path: string }) => f.path).sort()).toEqual(["extra", "name", "plan", "scopes.1"]);
    const q = await call("GET", "/v1/usage?limit=0&from=soon&to=later");
    expect(q.status).toBe(400);
    expect(q.json.error.details.fields.map((f: { path: string }) => f.path).sort()).toEqual(["from", "limit", "to"]);
  });

  it("pages lists with limit and an opaque cursor, within bounds", async () => {
    for (const n of ["p1", "p2", "p3", "p4", "p5"]) expect((await call("POST", "/v1/accounts", json({ name: n }))).status).toBe(201);
    const all = (await call("GET", "/v1/accounts?limit=1000")).json;
    expect(all.next_cursor).toBeNull();
    const names: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: { json: { accounts: Array<{ name: string }>; next_cursor: string | null } } = await call("GET", `/v1/accounts?limit=2${cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`}`);
      expect(page.json.accounts.length).toBeLessThanOrEqual(2);
      names.push(...page.json.accounts.map((a) => a.name));
      cursor = page.json.next_cursor;
      pages++;
    } while (cursor !== null && pages < 20);
    expect(names).toEqual(all.accounts.map((a: { name: string }) => a.name));
    expect(pages).toBe(Math.ceil(all.accounts.length / 2));
    // Tokens page the same way; the default page is bounded.
    const first = await call("GET", "/v1/tokens?limit=1");
    expect(first.json.tokens).toHaveLength(1);
    expect(typeof first.json.next_cursor).toBe("string");
    for (const bad of ["limit=0", "limit=1001", "limit=two", "limit=1.5"]) {
      const r = await call("GET", `/v1/accounts?${bad}`);
      expect(r.status, bad).toBe(400);
      expect(r.json.error.details.fields[0].path).toBe("limit");
    }
    for (const bad of ["!!!", Buffer.from("not json").toString("base64url"), Buffer.from('{"k":1,"i":-1}').toString("base64url"), "a".repeat(600)]) {
      const r = await call("GET", `/v1/accounts?cursor=${bad}`);
      expect(r.status).toBe(400);
      expect(r.json.error.code).toBe(bad.length > 512 ? "bad_input" : "bad_cursor");
    }
  });
});
