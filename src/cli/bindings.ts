/**
 * `zerocell bindings create|list|delete`: bucket prefixes bound to apps (the admin API's
 * /v1/bindings). A GET of an object under a bound prefix (S3 API) runs the app with the object
 * as its input and returns the app's output.
 */
import type { Command } from "commander";
import type { CliKit } from "./access-keys.js";

interface BindingJson {
  id: string;
  bucket: string;
  prefix: string;
  app: string;
  createdAt: string;
}

export function registerBindingCommands<T extends { url: string; token: string }>(program: Command, kit: CliKit<T>): void {
  const b = program.command("bindings").description("bucket prefixes bound to apps: a GET of an object there runs the app on it");
  b.command("create")
    .requiredOption("--bucket <name>")
    .option("--prefix <prefix>", "key prefix (default: the whole bucket)", "")
    .requiredOption("--app <name>")
    .addOption(kit.dataOption())
    .addOption(kit.jsonOption())
    .action(async (opts: { bucket: string; prefix: string; app: string; data?: string; json?: boolean }) => {
      const res = (await kit.api(kit.findTarget(opts), "POST", "/v1/bindings", Buffer.from(JSON.stringify({ bucket: opts.bucket, prefix: opts.prefix, app: opts.app })), "application/json")) as { binding: BindingJson };
      kit.print(opts.json === true, res, () => `bound ${res.binding.bucket}/${res.binding.prefix}* to ${res.binding.app} (${res.binding.id})`);
    });
  b.command("list")
    .addOption(kit.dataOption())
    .addOption(kit.jsonOption())
    .action(async (opts: { data?: string; json?: boolean }) => {
      const res = (await kit.api(kit.findTarget(opts), "GET", "/v1/bindings")) as { bindings: BindingJson[] };
      kit.print(opts.json === true, res, () => kit.table([["ID", "BUCKET", "PREFIX", "APP", "CREATED"], ...res.bindings.map((x) => [x.id, x.bucket, x.prefix, x.app, x.createdAt])]));
    });
  b.command("delete")
    .argument("<id>")
    .addOption(kit.dataOption())
    .action(async (id: string, opts: { data?: string }) => {
      await kit.api(kit.findTarget(opts), "DELETE", `/v1/bindings/${encodeURIComponent(id)}`);
      process.stdout.write(`deleted binding ${id}\n`);
    });
}
