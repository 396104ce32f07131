/**
 * `zerocell buckets usage|quota`: what an account stores in the object store and its quota
 * (the admin API's /v1/objects/usage and /v1/accounts/:name/object-quota).
 */
import type { Command } from "commander";
import type { CliKit } from "./access-keys.js";

interface UsageJson {
  account: string;
  bytes: number;
  objects: number;
  quota: { bytes: number; objects: number };
  override: { bytes: number | null; objects: number | null };
}

function human(u: UsageJson): string {
  const pct = (a: number, b: number) => (b === 0 ? "-" : `${((a / b) * 100).toFixed(1)}%`);
  const src = (v: number | null) => (v === null ? "default" : "set for the account");
  return [
    `account  ${u.account}`,
    `bytes    ${u.bytes} of ${u.quota.bytes} (${pct(u.bytes, u.quota.bytes)}; quota: ${src(u.override.bytes)})`,
    `objects  ${u.objects} of ${u.quota.objects} (${pct(u.objects, u.quota.objects)}; quota: ${src(u.override.objects)})`,
  ].join("\n");
}

/** "default" (back to the server's), or a whole number ≥ 0. */
function parseQuota(v: string, kit: { fail(message: string): never }): number | null {
  if (v === "default") return null;
  if (!/^\d{1,16}$/.test(v) || !Number.isSafeInteger(Number(v))) kit.fail(`invalid quota "${v}" (a whole number, or "default")`);
  return Number(v);
}

export function registerBucketCommands<T extends { url: string; token: string }>(program: Command, kit: CliKit<T>): void {
  const buckets = program.command("buckets").description("object store usage and quotas of an account");
  buckets
    .command("usage")
    .description("bytes and objects the account stores, and its quota")
    .option("--account <name>", "the account (admin tokens; default: your own, or \"default\")")
    .addOption(kit.dataOption())
    .addOption(kit.jsonOption())
    .action(async (opts: { account?: string; data?: string; json?: boolean }) => {
      const q = opts.account === undefined ? "" : `?account=${encodeURIComponent(opts.account)}`;
      const res = (await kit.api(kit.findTarget(opts), "GET", `/v1/objects/usage${q}`)) as UsageJson;
      kit.print(opts.json === true, res, () => human(res));
    });
  buckets
    .command("quota")
    .description("set an account's object store quota (admin); \"default\" returns to the server's")
    .requiredOption("--account <name>", "the account")
    .option("--bytes <n>", "bytes of objects the account may store, or \"default\"")
    .option("--objects <n>", "objects the account may store, or \"default\"")
    .addOption(kit.dataOption())
    .addOption(kit.jsonOption())
    .action(async (opts: { account: string; bytes?: string; objects?: string; data?: string; json?: boolean }) => {
      if (opts.bytes === undefined && opts.objects === undefined) kit.fail("give --bytes and/or --objects");
      const body = { ...(opts.bytes === undefined ? {} : { bytes: parseQuota(opts.bytes, kit) }), ...(opts.objects === undefined ? {} : { objects: parseQuota(opts.objects, kit) }) };
      const res = (await kit.api(kit.findTarget(opts), "PUT", `/v1/accounts/${encodeURIComponent(opts.account)}/object-quota`, Buffer.from(JSON.stringify(body)), "application/json")) as UsageJson;
      kit.print(opts.json === true, res, () => human(res));
    });
}
