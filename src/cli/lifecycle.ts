/**
 * `zerocell apps delete`, `zerocell tokens list|revoke`: the lifecycle commands (issue 15). main.ts
 * wires them in with its client helpers.
 */
import type { Command, Option } from "commander";

export interface CliContext {
  findTarget(opts: { data?: string }): { url: string; token: string };
  api(target: { url: string; token: string }, method: string, path: string, body?: Buffer, contentType?: string): Promise<unknown>;
  print(json: boolean, data: unknown, human: () => string): void;
  table(rows: string[][]): string;
  dataOption(): Option;
  jsonOption(): Option;
}

interface TokenJson {
  id: string;
  prefix: string;
  account: string | null;
  scopes: string[];
  createdAt: string;
  revokedAt: string | null;
  current: boolean;
}

/** `apps delete APP [--delete-data]` under the existing `apps` command. */
export function addAppsDelete(apps: Command, cx: CliContext): void {
  apps
    .command("delete")
    .description("delete an app: its routes, instances, deployments, snapshots and bundles no other app uses (per-key data only with --delete-data)")
    .argument("<app>")
    .option("--delete-data", "also delete the app's per-key /data (cannot be undone)")
    .addOption(cx.dataOption())
    .addOption(cx.jsonOption())
    .action(async (app: string, _opts: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<{ deleteData?: boolean; data?: string; json?: boolean }>();
      const res = (await cx.api(cx.findTarget(opts), "DELETE", `/v1/apps/${encodeURIComponent(app)}${opts.deleteData === true ? "?delete_data=1" : ""}`)) as { deleted: string; deployments: number; blobsRemoved: number; keysRemoved: number };
      cx.print(opts.json === true, res, () => `deleted app ${res.deleted}: ${res.deployments} deployment(s), ${res.blobsRemoved} blob(s), ${res.keysRemoved} key(s) of data`);
    });
}

/** `tokens list` and `tokens revoke ID` (the `tokens create` action stays in main.ts). */
export async function runTokensAction(action: string, id: string | undefined, opts: { data?: string; json?: boolean }, cx: CliContext): Promise<boolean> {
  if (action === "list") {
    const res = (await cx.api(cx.findTarget(opts), "GET", "/v1/tokens")) as { tokens: TokenJson[] };
    cx.print(opts.json === true, res, () =>
      cx.table([["ID", "PREFIX", "ACCOUNT", "SCOPES", "CREATED", "REVOKED"], ...res.tokens.map((t) => [t.id + (t.current ? " (this one)" : ""), t.prefix + "…", t.account ?? "-", t.scopes.join(","), t.createdAt, t.revokedAt ?? "-"])]),
    );
    return true;
  }
  if (action === "revoke") {
    if (id === undefined) throw Object.assign(new Error("usage: zerocell tokens revoke TOKEN_ID (see zerocell tokens list)"), { code: "usage" });
    const res = (await cx.api(cx.findTarget(opts), "DELETE", `/v1/tokens/${encodeURIComponent(id)}`)) as { revoked: string; alreadyRevoked: boolean };
    cx.print(opts.json === true, res, () => (res.alreadyRevoked ? `token ${res.revoked} was already revoked` : `revoked token ${res.revoked}; it stops working now`));
    return true;
  }
  return false;
}
