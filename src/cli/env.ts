/**
 * `zerocell env set|list|unset`: an app's environment variables and secrets (the admin API's
 * /v1/apps/:app/env). A change deploys a new version of the app's active bundle with the new
 * values (health-checked; `rollback` restores the old values). A secret's value is never shown
 * again; `env set APP NAME --secret` with no "=" reads the value from stdin (kept out of shell
 * history and the process list).
 */
import type { Command } from "commander";
import type { CliKit } from "./access-keys.js";

interface EnvVarJson {
  name: string;
  secret: boolean;
  value: string | null;
}

interface ChangeJson {
  app: string;
  deployment: { version: number };
  env: EnvVarJson[];
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8").replace(/\r?\n$/, "");
}

export function registerEnvCommands<T extends { url: string; token: string }>(program: Command, kit: CliKit<T>): void {
  const env = program.command("env").description("environment variables and secrets of an app (a change deploys a new version)");
  const path = (app: string) => `/v1/apps/${encodeURIComponent(app)}/env`;
  const done = (json: boolean, res: ChangeJson) => kit.print(json, res, () => `${res.app} v${res.deployment.version} is live with ${res.env.length} variable(s)`);

  env
    .command("set")
    .description("set variables: NAME=VALUE … (with --secret, NAME alone reads the value from stdin)")
    .argument("<app>")
    .argument("<pairs...>")
    .option("--secret", "store as secrets: the values are never shown again")
    .addOption(kit.dataOption())
    .addOption(kit.jsonOption())
    .action(async (app: string, pairs: string[], opts: { secret?: boolean; data?: string; json?: boolean }) => {
      const secret = opts.secret === true;
      const set: Array<{ name: string; value: string; secret: boolean }> = [];
      for (const p of pairs) {
        const eq = p.indexOf("=");
        if (eq === -1) {
          if (!secret || pairs.length !== 1) kit.fail(`env set: "${p.slice(0, 80)}" is not NAME=VALUE (only one NAME with --secret reads its value from stdin)`);
          set.push({ name: p, value: await readStdin(), secret });
        } else set.push({ name: p.slice(0, eq), value: p.slice(eq + 1), secret });
      }
      const res = (await kit.api(kit.findTarget(opts), "POST", path(app), Buffer.from(JSON.stringify({ set })), "application/json")) as ChangeJson;
      done(opts.json === true, res);
    });

  env
    .command("list")
    .argument("<app>")
    .addOption(kit.dataOption())
    .addOption(kit.jsonOption())
    .action(async (app: string, opts: { data?: string; json?: boolean }) => {
      const res = (await kit.api(kit.findTarget(opts), "GET", path(app))) as { app: string; version: number | null; env: EnvVarJson[] };
      kit.print(opts.json === true, res, () => (res.env.length === 0 ? `${res.app}: no variables` : kit.table([["NAME", "VALUE"], ...res.env.map((v) => [v.name, v.secret ? "(secret)" : (v.value ?? "")])])));
    });

  env
    .command("unset")
    .argument("<app>")
    .argument("<names...>")
    .addOption(kit.dataOption())
    .addOption(kit.jsonOption())
    .action(async (app: string, names: string[], opts: { data?: string; json?: boolean }) => {
      const res = (await kit.api(kit.findTarget(opts), "POST", path(app), Buffer.from(JSON.stringify({ unset: names })), "application/json")) as ChangeJson;
      done(opts.json === true, res);
    });
}
