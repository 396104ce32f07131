/**
 * `zerocell accounts disable|enable NAME` (admin) and `zerocell plans list|create`: the rest of
 * the account lifecycle (issue 15). `accounts create|list` stay in main.ts; these join them.
 */
import type { Command } from "commander";
import type { CliKit } from "./access-keys.js";
import type { PricePlan } from "../billing/rating.js";

/** A plan as the API answers it: the billing's own PricePlan. */
type PlanJson = PricePlan;

/** A non-negative integer option (micro prices, free allowances). */
function parseCount(v: string): number {
  if (!/^\d{1,13}$/.test(v)) throw Object.assign(new Error(`not a non-negative integer: ${v.slice(0, 40)}`), { code: "usage" });
  return Number(v);
}

/** `accounts disable NAME` and `accounts enable NAME` under the existing `accounts` command. */
export function addAccountLifecycle<T extends { url: string; token: string }>(accounts: Command, kit: CliKit<T>): void {
  for (const action of ["disable", "enable"] as const) {
    accounts
      .command(action)
      .description(
        action === "disable"
          ? "disable an account (admin): its tokens and access keys stop at once, its apps answer 404 and their instances stop; its data stays"
          : "enable a disabled account again (admin): tokens, keys and apps come back",
      )
      .argument("<name>")
      .addOption(kit.dataOption())
      .addOption(kit.jsonOption())
      .action(async (name: string, opts: { data?: string; json?: boolean }) => {
        const res = (await kit.api(kit.findTarget(opts), "POST", `/v1/accounts/${encodeURIComponent(name)}/${action}`)) as { account: string; changed: boolean };
        kit.print(opts.json === true, res, () => `${res.account} ${res.changed ? "is now" : "was already"} ${action === "disable" ? "disabled" : "enabled"}`);
      });
  }
}

/** `plans list` and `plans create NAME --currency … --request-price-micros …` (create: admin). */
export function registerPlanCommands<T extends { url: string; token: string }>(program: Command, kit: CliKit<T>): void {
  const plans = program.command("plans").description("price plans (prices in micro minor units per unit: 1/1,000,000 of a cent for usd)");
  plans
    .command("list")
    .addOption(kit.dataOption())
    .addOption(kit.jsonOption())
    .action(async (opts: { data?: string; json?: boolean }) => {
      const res = (await kit.api(kit.findTarget(opts), "GET", "/v1/plans")) as { plans: PlanJson[] };
      kit.print(opts.json === true, res, () =>
        kit.table([
          ["PLAN", "CURRENCY", "PER REQUEST µ", "PER GB-S µ", "PER G-INSTR µ", "FREE REQ", "FREE GB-S", "FREE G-INSTR"],
          ...res.plans.map((p) => [p.name, p.currency, String(p.requestPriceMicros), String(p.gbSecondPriceMicros), String(p.gigaInstructionPriceMicros), String(p.freeRequests), String(p.freeGbSeconds), String(p.freeGigaInstructions)]),
        ]),
      );
    });
  plans
    .command("create")
    .description("create a price plan (admin); assign it with accounts create --plan NAME")
    .argument("<name>")
    .option("--currency <code>", "ISO 4217 code", "usd")
    .requiredOption("--request-price-micros <n>", "price per request", parseCount)
    .requiredOption("--gb-second-price-micros <n>", "price per GB-second", parseCount)
    .requiredOption("--giga-instruction-price-micros <n>", "price per billion x86 instructions", parseCount)
    .option("--free-requests <n>", "free requests per month", parseCount, 0)
    .option("--free-gb-seconds <n>", "free GB-seconds per month", parseCount, 0)
    .option("--free-giga-instructions <n>", "free billions of instructions per month", parseCount, 0)
    .addOption(kit.dataOption())
    .addOption(kit.jsonOption())
    .action(async (name: string, opts: { currency: string; requestPriceMicros: number; gbSecondPriceMicros: number; gigaInstructionPriceMicros: number; freeRequests: number; freeGbSeconds: number; freeGigaInstructions: number; data?: string; json?: boolean }) => {
      const body = {
        name,
        currency: opts.currency,
        requestPriceMicros: opts.requestPriceMicros,
        gbSecondPriceMicros: opts.gbSecondPriceMicros,
        gigaInstructionPriceMicros: opts.gigaInstructionPriceMicros,
        freeRequests: opts.freeRequests,
        freeGbSeconds: opts.freeGbSeconds,
        freeGigaInstructions: opts.freeGigaInstructions,
      };
      const res = (await kit.api(kit.findTarget(opts), "POST", "/v1/plans", Buffer.from(JSON.stringify(body)), "application/json")) as { plan: PlanJson };
      kit.print(opts.json === true, res, () => `created plan ${res.plan.name} (${res.plan.id})`);
    });
}
