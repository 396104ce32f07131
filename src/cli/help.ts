/**
 * Examples shown by `zerocell --help` and `zerocell COMMAND --help` (commander's addHelpText),
 * and the exit codes every command shares. Kept apart from main.ts, which only wires commands.
 */
import type { Command } from "commander";
import { EXIT_CODES_HELP } from "./errors.js";

const EXAMPLES: Record<string, string[]> = {
  serve: ["zerocell serve --data .data --examples", "zerocell serve --https-port 443 --http-port 80 --host 0.0.0.0"],
  deploy: ["zerocell deploy ./myapp --app myapp", "zerocell deploy ./myapp --app myapp --host www.example.com --json", "zerocell deploy bundle.tar.gz --app myapp"],
  apps: ["zerocell apps", "zerocell apps --json", "zerocell apps delete myapp --delete-data"],
  deployments: ["zerocell deployments myapp"],
  rollback: ["zerocell rollback myapp        # to the version before the active one", "zerocell rollback myapp v3"],
  logs: ["zerocell logs myapp --since 10m", "zerocell logs myapp --follow", "zerocell logs myapp --json --limit 50"],
  pool: ["zerocell pool", "zerocell pool myapp --json"],
  accounts: ["zerocell accounts create alice --plan standard", "zerocell accounts list"],
  tokens: ["zerocell tokens create --account alice --scope deploy", "zerocell tokens list", "zerocell tokens revoke tok_..."],
  usage: ["zerocell usage --account alice --from 2026-11-01 --to 2026-11-30", "zerocell usage --jobs        # per job: objects, estimated and actual cost"],
  domains: ["zerocell domains add shop.example.com", "zerocell domains list --json", "zerocell domains remove shop.example.com"],
  invoices: ["zerocell invoices --drafts", "zerocell invoices close --period 2026-11"],
  job: ["ln -s /bin/busybox grep; ln -s /bin/busybox awk   # busybox picks its applet by the file name", "zerocell job run --program ./grep --input mail/inbox/ --reduce ./awk --reduce-arg '{s+=$1} END {print s}' --ok-exit 0,1 -- -c needle", "zerocell job run --program ./grep --input mail/inbox/ --out results/counts/ --ok-exit 0,1 --json -- -c needle"],
  buckets: ["zerocell buckets usage", "zerocell buckets usage --account alice --json", "zerocell buckets quota --account alice --bytes 10737418240 --objects 100000", "zerocell buckets quota --account alice --bytes default"],
};

export function addExamples(program: Command): void {
  for (const cmd of program.commands) {
    const lines = EXAMPLES[cmd.name()];
    if (lines !== undefined) cmd.addHelpText("after", `\nExamples:\n${lines.map((l) => `  $ ${l}`).join("\n")}\n${EXIT_CODES_HELP}\n`);
  }
  program.addHelpText(
    "after",
    `\nExamples:\n  $ zerocell serve --examples\n  $ zerocell deploy ./myapp --app myapp\n  $ zerocell logs myapp --follow\n  $ zerocell rollback myapp\n\nThe commands other than serve and validate talk to a running server: found from --data DIR\n(DIR/run/server.json, DIR/admin-token) or ZEROCELL_URL and ZEROCELL_TOKEN.\n${EXIT_CODES_HELP}\n`,
  );
}
