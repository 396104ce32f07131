/**
 * `zerocell domains add|list|remove`: domains an account proves it controls (the admin API's
 * /v1/domains). `add` runs an ACME order (HTTP-01 answered by the gateway) and waits for it; on
 * success the domain is the account's to route and its certificate is served. Failures exit with
 * the CLI's codes (src/cli/errors.ts: 3 no such domain or account, 6 an order still running or the
 * account's limit, 1 a failed order; with --json the API's error shape on stdout).
 */
import type { Command } from "commander";
import type { CliKit } from "./access-keys.js";

interface DomainJson {
  host: string;
  account?: string | null;
  status: string;
  error: string | null;
  certNotAfter: string | null;
  renewAt: string | null;
  createdAt: string;
  updatedAt: string;
}

export function registerDomainCommands<T extends { url: string; token: string }>(program: Command, kit: CliKit<T>): void {
  const d = program.command("domains").description("domains your account verified (ACME HTTP-01): route them and their subdomains, served with their certificate");
  d.command("add")
    .description("prove control of HOST (its DNS must point at this server's HTTP port 80) and get a certificate for it")
    .argument("<host>")
    .option("--account <name>", "the account that gets it (admin tokens; default: default)")
    .addOption(kit.dataOption())
    .addOption(kit.jsonOption())
    .action(async (host: string, opts: { account?: string; data?: string; json?: boolean }) => {
      const body = { host, ...(opts.account === undefined ? {} : { account: opts.account }) };
      const res = (await kit.api(kit.findTarget(opts), "POST", "/v1/domains", Buffer.from(JSON.stringify(body)), "application/json")) as { domain: DomainJson; url: string };
      kit.print(opts.json === true, res, () => `${res.domain.host} verified; certificate valid until ${res.domain.certNotAfter ?? "?"} (renewed from ${res.domain.renewAt ?? "?"}); deploy with --host ${res.domain.host}: ${res.url}`);
    });
  d.command("list")
    .description("domains of your account, with their status and certificate dates (admin tokens: every account's)")
    .option("--account <name>", "only this account's (admin tokens)")
    .addOption(kit.dataOption())
    .addOption(kit.jsonOption())
    .action(async (opts: { account?: string; data?: string; json?: boolean }) => {
      const res = (await kit.api(kit.findTarget(opts), "GET", `/v1/domains${opts.account === undefined ? "" : `?account=${encodeURIComponent(opts.account)}`}`)) as { domains: DomainJson[] };
      kit.print(opts.json === true, res, () =>
        kit.table([["HOST", "ACCOUNT", "STATUS", "CERT UNTIL", "RENEW AT", "ERROR"], ...res.domains.map((x) => [x.host, x.account ?? "-", x.status, x.certNotAfter ?? "-", x.renewAt ?? "-", (x.error ?? "-").slice(0, 80)])]),
      );
    });
  d.command("remove")
    .description("give up HOST: it is no longer your account's to route, and its certificate is removed")
    .argument("<host>")
    .option("--account <name>", "the account it belongs to (admin tokens)")
    .addOption(kit.dataOption())
    .addOption(kit.jsonOption())
    .action(async (host: string, opts: { account?: string; data?: string; json?: boolean }) => {
      const res = (await kit.api(kit.findTarget(opts), "DELETE", `/v1/domains/${encodeURIComponent(host)}${opts.account === undefined ? "" : `?account=${encodeURIComponent(opts.account)}`}`)) as { removed: string };
      kit.print(opts.json === true, res, () => `removed ${res.removed}`);
    });
}
