/**
 * `zerocell job run --program PROGRAM --input BUCKET/PREFIX [--out BUCKET/PREFIX] [--reduce PROGRAM]
 * [--reduce-arg ARG]… [--ok-exit 0,1] [--json] -- ARGS…`: a Unix tool over every object of a
 * prefix. PROGRAM is a static x86-64 ELF file (run in stdio mode: each object on stdin, ARGS as
 * argv, stdout the task's output) or, when no such file exists, a deployed app's name (an x86
 * app in stdio mode takes ARGS; any app runs without them). Waits for the job (a progress bar
 * on a terminal), then prints the reduce output, or each task's output lines prefixed with its
 * object key (`KEY:LINE`, like `grep -c PATTERN FILES`). With --json:
 * `{ "job": ID, "tasks": [{ "key", "status", "output" }, …], "reduce": OUTPUT_OR_NULL }`
 * (an output is UTF-8 text, or `{ "base64": … }` when it is not text; failed tasks add `error`).
 * Exit status 2 when a task or the reduce step failed. Without --out the outputs go to
 * `<input bucket>/_jobs/<job id>/` and the reduce output to `<out prefix>_reduce`.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename } from "node:path";
import type { Command } from "commander";
import type { CliKit } from "./access-keys.js";
import { waitForJob, type ItemJson, type JobJson } from "./job-wait.js";

/** A program file's bytes, or an app name (when no file of that name exists). */
type ProgramRef = { file: Buffer; name: string } | { app: string };

function resolveProgram(ref: string, fail: (message: string) => never): ProgramRef {
  // The file's own name becomes argv[0]'s (a link named grep to busybox runs busybox's grep).
  if (existsSync(ref) && statSync(ref).isFile()) return { file: readFileSync(ref), name: programName(basename(ref)) };
  if (/^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/.test(ref)) return { app: ref };
  return fail(`${ref}: no such file, and not an app name`);
}

/** A file name the server accepts as a program name ([A-Za-z0-9._-], ≤ 64), else "app". */
function programName(file: string): string {
  return /^(?!\.\.?$)[A-Za-z0-9._-]{1,64}$/.test(file) ? file : "app";
}

type Output = string | { base64: string } | null;

function outputOf(x: { output?: string | null; encoding?: "utf8" | "base64" | null }): Output {
  if (x.output === undefined || x.output === null) return null;
  return x.encoding === "base64" ? { base64: x.output } : x.output;
}

export function registerJobRunCommand<T extends { url: string; token: string }>(program: Command, kit: CliKit<T>): void {
  const job = program.command("job").description("run a Unix tool (a static x86-64 program or a deployed app) over every object of a bucket prefix");
  job
    .command("run")
    .description("each object is the program's stdin, ARGS its argv, its stdout the task's output; prints the reduce output or each task's output")
    .requiredOption("--program <program>", "a static x86-64 ELF file, or a deployed app's name")
    .requiredOption("--input <bucket/prefix>", "the objects to run on")
    .option("--out <bucket/prefix>", "where each output goes (<out prefix><key without the input prefix>); default <input bucket>/_jobs/<job id>/")
    .option("--reduce <program>", "run once after every task, the ok outputs concatenated in key order on stdin (a file or an app name)")
    .option("--reduce-arg <arg>", "an argument of the reduce program (repeat for more)", (v: string, prev: string[] = []) => [...prev, v])
    .option("--ok-exit <codes>", "exit codes that make a task ok, comma-separated (default 0; grep exits 1 when nothing matched: 0,1)")
    .option("--io <mode>", "how a program file meets each object: stdio (default) or cgi")
    .option("--concurrency <n>", "objects in flight at once", (v) => Number(v))
    .argument("[args...]", "the program's arguments (after --)")
    .addOption(kit.dataOption())
    .addOption(kit.jsonOption())
    .action(async (args: string[], opts: { program: string; input: string; out?: string; reduce?: string; reduceArg?: string[]; okExit?: string; io?: string; concurrency?: number; data?: string; json?: boolean }) => {
      const target = kit.findTarget(opts);
      const prog = resolveProgram(opts.program, (m) => kit.fail(m));
      const reduce = opts.reduce === undefined ? undefined : resolveProgram(opts.reduce, (m) => kit.fail(m));
      if (opts.io !== undefined && opts.io !== "stdio" && opts.io !== "cgi") kit.fail("--io is stdio or cgi");
      let okExitCodes: number[] | undefined;
      if (opts.okExit !== undefined) {
        okExitCodes = opts.okExit.split(",").map((c) => Number(c.trim()));
        if (okExitCodes.some((c) => !Number.isInteger(c) || c < 0 || c > 255)) kit.fail("--ok-exit takes exit codes 0 to 255, comma-separated (e.g. 0,1)");
      }
      // 1. the job: JSON when everything is an app, multipart when a program file goes along
      const spec = {
        ...("app" in prog ? { app: prog.app } : { io: opts.io ?? "stdio", programName: prog.name }),
        input: opts.input,
        ...(opts.out === undefined ? {} : { output: opts.out }),
        ...(opts.concurrency === undefined ? {} : { concurrency: opts.concurrency }),
        // A program file always runs with its argv; an app takes arguments only when given some.
        ...("file" in prog || args.length > 0 ? { args } : {}),
        ...(okExitCodes === undefined ? {} : { okExitCodes }),
        ...(reduce === undefined ? {} : { reduce: { ...("app" in reduce ? { app: reduce.app } : { programName: reduce.name }), ...(opts.reduceArg === undefined && "app" in reduce ? {} : { args: opts.reduceArg ?? [] }) } }),
      };
      let res: { job: JobJson };
      if ("app" in prog && (reduce === undefined || "app" in reduce)) {
        res = (await kit.api(target, "POST", "/v1/jobs", Buffer.from(JSON.stringify(spec)), "application/json")) as { job: JobJson };
      } else {
        const form = new FormData();
        form.append("job", JSON.stringify(spec));
        if ("file" in prog) form.append("program", new Blob([new Uint8Array(prog.file)]), "program");
        if (reduce !== undefined && "file" in reduce) form.append("reduce", new Blob([new Uint8Array(reduce.file)]), "reduce");
        // undici serializes the form (boundary and all) like any fetch body.
        const encoded = new Response(form);
        res = (await kit.api(target, "POST", "/v1/jobs", Buffer.from(await encoded.arrayBuffer()), encoded.headers.get("content-type") ?? "")) as { job: JobJson };
      }
      // 2. wait, 3. every task with its output (pages of 1,000)
      const done = await waitForJob(kit, target, res.job);
      const tasks: ItemJson[] = [];
      for (let after = -1; ; ) {
        const page = ((await kit.api(target, "GET", `/v1/jobs/${encodeURIComponent(done.id)}?items=all&outputs=1&limit=1000&after=${after}`)) as { items: ItemJson[] }).items;
        tasks.push(...page);
        if (page.length < 1000) break;
        after = page.at(-1)!.seq;
      }
      const red = done.reduce ?? null;
      const failed = tasks.filter((t) => t.status === "failed");
      if (failed.length > 0 || red?.status === "failed" || done.status !== "done") process.exitCode = 2;
      // 4. print
      if (opts.json === true) {
        const out = {
          job: done.id,
          tasks: tasks.map((t) => ({ key: t.key, status: t.status, output: outputOf(t), ...(t.error === null ? {} : { error: t.error }), ...(t.exitCode === null || t.exitCode === undefined ? {} : { exitCode: t.exitCode }) })),
          reduce: red === null ? null : outputOf(red),
          ...(red !== null && red.error !== null ? { reduceError: red.error } : {}),
        };
        process.stdout.write(JSON.stringify(out, null, 2) + "\n");
      } else if (red !== null) {
        if (red.output !== null) process.stdout.write(red.encoding === "base64" ? Buffer.from(red.output, "base64") : red.output);
        if (red.truncated) process.stderr.write(`(the reduce output is longer: the whole of it is ${done.output.bucket}/${red.outputKey ?? ""})\n`);
      } else {
        for (const t of tasks) {
          if (t.output === null || t.output === undefined) continue;
          if (t.encoding === "base64") {
            process.stdout.write(`${t.key}: (${Buffer.from(t.output, "base64").length} bytes, not text)\n`);
            continue;
          }
          const lines = t.output.endsWith("\n") ? t.output.slice(0, -1).split("\n") : t.output.split("\n");
          process.stdout.write(lines.map((l) => `${t.key}:${l}\n`).join(""));
          if (t.truncated === true) process.stderr.write(`(${t.key}: output truncated; the whole of it is ${done.output.bucket}/${t.outputKey ?? ""})\n`);
        }
      }
      for (const t of failed) process.stderr.write(`failed ${t.key}: ${t.error?.message ?? ""} (${t.error?.code ?? ""})\n`);
      if (red?.status === "failed") process.stderr.write(`reduce failed: ${red.error?.message ?? ""} (${red.error?.code ?? ""})\n`);
      if (done.status !== "done") process.stderr.write(`job ${done.id} ${done.status}\n`);
    });
}
