/**
 * `zerocell access-keys create|list|revoke`: S3 access keys of an account (the admin API's
 * /v1/access-keys). `create` prints the secret once.
 */
import type { Command, Option } from "commander";

interface Target {
  url: string;
  token: string;
}

/** What main.ts lends every command group: how to find the server and talk to its admin API. */
export interface CliKit<T extends Target = Target> {
  findTarget(opts: { data?: string }): T;
  api(target: T, method: string, path: string, body?: Buffer, contentType?: string): Promise<unknown>;
  print(json: boolean, data: unknown, human: () => string): void;
  table(rows: string[][]): string;
  dataOption(): Option;
  jsonOption(): Option;
  fail(message: string): never;
}

interface KeyJson {
  accessKeyId: string;
  accountId: string;
  scopes: string[];
  createdAt: string;
}

export function registerAccessKeyCommands<T extends Target>(program: Command, kit: CliKit<T>): void {
  const keys = program.command("access-keys").description("S3 access keys of an account (SigV4; the S3 API's URL is in DIR/run/server.json)");
  keys
    .command("create")
    .description("create an access key pair; prints accessKeyId and secretAccessKey (shown once)")
    .option("--account <name>", "the account (admin tokens; default: your own, or \"default\")")
    .option("--read-only", "the key may only read (GET, HEAD, list)")
    .addOption(kit.dataOption())
    .addOption(kit.jsonOption())
    .action(async (opts: { account?: string; readOnly?: boolean; data?: string; json?: boolean }) => {
      const body = { ...(opts.account === undefined ? {} : { account: opts.account }), scopes: opts.readOnly === true ? ["read"] : ["read", "write"] };
      const res = (await kit.api(kit.findTarget(opts), "POST", "/v1/access-keys", Buffer.from(JSON.stringify(body)), "application/json")) as { accessKeyId: string; secretAccessKey: string; account: string; scopes: string[] };
      kit.print(opts.json === true, res, () => `access key for ${res.account} (scopes ${res.scopes.join(", ")}; the secret is shown once)\naccessKeyId      ${res.accessKeyId}\nsecretAccessKey  ${res.secretAccessKey}`);
    });
  keys
    .command("list")
    .option("--account <name>")
    .addOption(kit.dataOption())
    .addOption(kit.jsonOption())
    .action(async (opts: { account?: string; data?: string; json?: boolean }) => {
      const q = opts.account === undefined ? "" : `?account=${encodeURIComponent(opts.account)}`;
      const res = (await kit.api(kit.findTarget(opts), "GET", `/v1/access-keys${q}`)) as { accessKeys: KeyJson[] };
      kit.print(opts.json === true, res, () => kit.table([["ACCESS KEY ID", "ACCOUNT", "SCOPES", "CREATED"], ...res.accessKeys.map((k) => [k.accessKeyId, k.accountId, k.scopes.join(","), k.createdAt])]));
    });
  keys
    .command("revoke")
    .argument("<accessKeyId>")
    .addOption(kit.dataOption())
    .action(async (id: string, opts: { data?: string }) => {
      await kit.api(kit.findTarget(opts), "DELETE", `/v1/access-keys/${encodeURIComponent(id)}`);
      process.stdout.write(`revoked ${id}\n`);
    });
}
