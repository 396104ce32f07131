/**
 * Jobs that run a real Unix tool (Debian's busybox-static) in stdio mode: `zerocell job run
 * --program grep --reduce awk -- -c PATTERN` over 300 mail-like objects prints the exact total;
 * `--json` has the shape, and grep's exit 1 (nothing matched) fails a task with
 * program_exit unless --ok-exit 0,1; one poisoned object (a program that faults on it) is
 * reported alone; hostile arguments are refused with codes; an x86 app in stdio mode takes a
 * job's arguments; a job whose map finished and whose reduce did not runs it after a restart,
 * once, metered once.
 */
import { describe, it, expect, beforeAll, afterAll, vi } from "vitest";
import Database from "better-sqlite3";
import { existsSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { CreateBucketCommand, PutObjectCommand, GetObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { queryDb, startServer, admin, cleanup, phpBundle, writeBundle, fetchApp, CLI, type TestServer } from "../helpers/server.js";
import { s3Client, type Key } from "../helpers/s3.js";
import { x86Fixture } from "../helpers/x86.js";

const BUSYBOX = "/bin/busybox";
const execFileAsync = promisify(execFile);
const N = 300;
const POISON_N = 30;
const POISONED = 17;
const keyOf = (i: number) => `inbox/${String(i).padStart(4, "0")}.eml`;
/** How many lines of message i say "needle" (0 for every fourth message: grep exits 1 there). */
const needles = (i: number) => i % 4;
function mail(i: number): string {
  const lines = Array.from({ length: 4 + (i % 9) }, (_, l) => `line ${l} of message ${i}${l < needles(i) ? " with a needle in it" : ""}`);
  return `From: sender${i}@example.com\nTo: inbox@example.com\nSubject: message ${i}\n\n${lines.join("\n")}\n`;
}
const TOTAL = Array.from({ length: N }, (_, i) => needles(i)).reduce((a, b) => a + b, 0);

interface TaskJson {
  key: string;
  status: string;
  output: string | { base64: string } | null;
  error?: { code: string; message: string };
  exitCode?: number;
}

describe.skipIf(!existsSync(BUSYBOX))("jobs: a real Unix tool over every object (stdio mode, args, reduce)", () => {
  let server: TestServer;
  let s3: S3Client;
  let key: Key;
  /** busybox under the names of its applets: argv[0] picks the applet. */
  const tools = mkdtempSync(join(tmpdir(), "zc-tools-"));
  const grep = join(tools, "grep");
  const awk = join(tools, "awk");
  const busybox = join(tools, "busybox");
  const query = <T>(sql: string, ...args: unknown[]): T[] => queryDb<T>(server, sql, ...args);
  /** `zerocell job run …` (the helper's --data goes before "--": after it, it would be an argument). */
  // Asynchronous: a job over hundreds of objects must not block the test worker's event loop.
  const jobRun = async (args: string[], opts: { allowFail?: boolean } = {}): Promise<{ code: number; stdout: string; stderr: string }> => {
    const at = args.indexOf("--");
    const argv = at === -1 ? [...args, "--data", server.dataDir] : [...args.slice(0, at), "--data", server.dataDir, ...args.slice(at)];
    try {
      const { stdout, stderr } = await execFileAsync(process.execPath, [CLI, ...argv], { encoding: "utf8", env: { ...process.env, ZEROCELL_URL: "", ZEROCELL_TOKEN: "" }, maxBuffer: 64 << 20 });
      return { code: 0, stdout, stderr };
    } catch (e) {
      const err = e as { code: number; stdout: string; stderr: string };
      if (opts.allowFail !== true) throw new Error(`zerocell ${argv.join(" ")} failed (${err.code}):\n${err.stderr}\n${err.stdout}`);
      return { code: err.code, stdout: err.stdout, stderr: err.stderr };
    }
  };
  const output = async (bucket: string, k: string) => (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: k }))).Body!.transformToString();
  /** A multipart job with a program part (and the "job" JSON part). */
  const postProgram = (job: unknown, program: Buffer) => {
    const boundary = "zc-test-boundary";
    const body = Buffer.concat([
      Buffer.from(`--${boundary}\r\ncontent-disposition: form-data; name="job"\r\n\r\n${JSON.stringify(job)}\r\n--${boundary}\r\ncontent-disposition: form-data; name="program"; filename="grep"\r\ncontent-type: application/octet-stream\r\n\r\n`),
      program,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    return admin(server, "POST", "/v1/jobs", { body, contentType: `multipart/form-data; boundary=${boundary}` });
  };

  beforeAll(async () => {
    symlinkSync(BUSYBOX, grep);
    symlinkSync(BUSYBOX, awk);
    symlinkSync(BUSYBOX, busybox);
    server = await startServer(["--no-spare-hosts"]);
    key = JSON.parse((await server.cli(["access-keys", "create", "--json"])).stdout) as Key;
    s3 = s3Client(server, key);
    await s3.send(new CreateBucketCommand({ Bucket: "mail" }));
    await s3.send(new CreateBucketCommand({ Bucket: "out" }));
    const puts: Array<() => Promise<unknown>> = [];
    for (let i = 0; i < N; i++) puts.push(() => s3.send(new PutObjectCommand({ Bucket: "mail", Key: keyOf(i), Body: mail(i), ContentType: "message/rfc822" })));
    for (let i = 0; i < POISON_N; i++) puts.push(() => s3.send(new PutObjectCommand({ Bucket: "mail", Key: `poison/${String(i).padStart(4, "0")}.eml`, Body: mail(i) + (i === POISONED ? "POISON\n" : "") })));
    let next = 0;
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (next < puts.length) await puts[next++]!();
    }));
  }, 300_000);

  afterAll(async () => {
    await server?.stop();
    if (server !== undefined) cleanup(server.dataDir);
    cleanup(tools);
  });

  it("job run --program grep --reduce awk -- -c PATTERN prints the exact total", async () => {
    const r = await jobRun(["job", "run", "--program", grep, "--input", "mail/inbox/", "--out", "out/grep/", "--reduce", awk, "--reduce-arg", "{s+=$1} END {print s}", "--ok-exit", "0,1", "--concurrency", "4", "--", "-c", "needle"]);
    expect(r.stdout).toBe(`${TOTAL}\n`);
  }, 300_000);

  it("--json: { job, tasks: [{ key, status, output }], reduce }; exit 1 of grep is program_exit with its stdout, outputs under the default prefix", async () => {
    const r = await jobRun(["job", "run", "--program", busybox, "--input", "mail/inbox/", "--json", "--", "grep", "-c", "needle"], { allowFail: true });
    // Tasks where nothing matched failed (grep exits 1): exit status 2.
    expect(r.code, r.stderr).toBe(2);
    const res = JSON.parse(r.stdout) as { job: string; tasks: TaskJson[]; reduce: unknown };
    expect(res.job).toMatch(/^job_/);
    expect(res.reduce).toBeNull();
    expect(res.tasks).toHaveLength(N);
    res.tasks.forEach((t, i) => {
      expect(t.key).toBe(keyOf(i));
      expect(t.output).toBe(`${needles(i)}\n`);
      if (needles(i) === 0) expect(t).toMatchObject({ status: "failed", exitCode: 1, error: { code: "program_exit" } });
      else expect(t.status).toBe("ok");
    });
    expect(res.tasks.find((t) => t.status === "failed")!.error!.message).toContain("exited with status 1");
    // Without --out: <input bucket>/_jobs/<job id>/<key without the input prefix>.
    expect(await output("mail", `_jobs/${res.job}/0005.eml`)).toBe(`${needles(5)}\n`);
    // Without --json and without a reduce: KEY:OUTPUT lines, like grep -c over files.
    const plain = await jobRun(["job", "run", "--program", grep, "--input", "mail/inbox/00", "--ok-exit", "0,1", "--", "-c", "needle"]);
    expect(plain.stdout.split("\n").slice(0, 3)).toEqual([`${keyOf(0)}:0`, `${keyOf(1)}:1`, `${keyOf(2)}:2`]);
  }, 300_000);

  it("one poisoned object (the program faults on it) is reported alone; every other one is ok", async () => {
    const wc = join(tools, "wordcount");
    writeFileSync(wc, x86Fixture("wordcount"), { mode: 0o755 });
    const r = await jobRun(["job", "run", "--program", wc, "--input", "mail/poison/", "--out", "out/poison/", "--json"], { allowFail: true });
    expect(r.code, r.stderr).toBe(2);
    const res = JSON.parse(r.stdout) as { tasks: TaskJson[] };
    const failed = res.tasks.filter((t) => t.status !== "ok");
    expect(failed.map((t) => t.key)).toEqual([`poison/${String(POISONED).padStart(4, "0")}.eml`]);
    expect(failed[0]!.error!.code).toBe("program_failed");
    expect(res.tasks.filter((t) => t.status === "ok")).toHaveLength(POISON_N - 1);
  }, 300_000);

  it("refuses hostile arguments and exit codes with codes", async () => {
    const program = readFileSync(BUSYBOX);
    const job = (extra: object) => ({ input: "mail/inbox/", output: "out/hostile/", ...extra });
    const code = async (extra: object) => {
      const r = await postProgram(job(extra), program);
      return `${r.status} ${r.json?.error?.code}`;
    };
    expect(await code({ args: ["grep", "a\u0000b"] })).toBe("400 bad_args");
    expect(await code({ args: Array.from({ length: 129 }, () => "x") })).toBe("400 bad_args");
    expect(await code({ args: ["grep", "x".repeat(5000)] })).toBe("400 bad_args");
    expect(await code({ args: Array.from({ length: 5 }, () => "y".repeat(4000)) })).toBe("400 bad_args");
    expect(await code({ args: ["grep", "\ud800"] })).toBe("400 bad_args");
    expect(await code({ args: [1, 2] })).toBe("400 bad_args");
    expect(await code({ args: ["grep"], okExitCodes: [300] })).toBe("400 bad_ok_exit_codes");
    expect(await code({ args: ["grep"], okExitCodes: [] })).toBe("400 bad_ok_exit_codes");
    expect(await code({ args: ["grep"], io: "cgi" })).toBe("400 args_need_stdio");
    expect(await code({ args: ["grep"], programName: "../x" })).toBe("400 bad_program_name");
    // A PHP app takes no arguments.
    await server.cli(["deploy", phpBundle("echo.localhost", { "index.php": "<?php echo 1;" }), "--app", "echo"]);
    const php = await admin(server, "POST", "/v1/jobs", { body: JSON.stringify({ app: "echo", input: "mail/inbox/", output: "out/php/", args: ["x"] }), contentType: "application/json" });
    expect(`${php.status} ${php.json.error.code}`).toBe("400 args_need_stdio");
    // No job was created by any of these.
    expect(query<{ n: number }>("SELECT COUNT(*) AS n FROM jobs WHERE output_prefix IN ('hostile/', 'php/')")[0]!.n).toBe(0);
  }, 300_000);

  it("an x86 app in stdio mode runs with the job's arguments (its own replaced)", async () => {
    const dir = writeBundle({
      "zerocell.toml": 'runtime = "x86"\nhealth = []\n[x86]\nprogram = "bin/grep"\nio = "stdio"\nargs = ["-c", "line"]\n[[routes]]\nhost = "grep.localhost"\n',
      "bin/grep": readFileSync(BUSYBOX),
    });
    await server.cli(["deploy", dir, "--app", "grepper"]);
    const started = await admin(server, "POST", "/v1/jobs", { body: JSON.stringify({ app: "grepper", input: "mail/inbox/001", output: "out/app/", args: ["-c", "needle"], okExitCodes: [0, 1] }), contentType: "application/json" });
    expect(started.status, JSON.stringify(started.json)).toBe(201);
    const id = started.json.job.id as string;
    await vi.waitFor(async () => expect((await admin(server, "GET", `/v1/jobs/${id}`)).json.job.status).toBe("done"), { timeout: 120_000, interval: 250 });
    expect((await admin(server, "GET", `/v1/jobs/${id}`)).json.job.counts).toEqual({ ok: 10, failed: 0, pending: 0 });
    // <output prefix><key without the input prefix "inbox/001">
    for (const i of [10, 11, 13]) expect(await output("out", `app/${i - 10}.eml`)).toBe(`${needles(i)}\n`);
    // Served to a visitor: the body is grep's stdout, and the platform's own headers (the exit
    // code, the head of stderr) never leave the gateway.
    // (grep's exit 1, no line matched, is a 500 with its stdout.)
    for (const [body, count, status] of [["a line\nno\nline two\n", "2", 200], ["nothing here\n", "0", 500]] as const) {
      const r = await fetchApp(server, "grep.localhost", "/", { method: "POST", body });
      expect(r.status, r.text).toBe(status);
      expect(r.text).toBe(`${count}\n`);
      expect(Object.keys(r.headers).filter((h) => h.startsWith("x-zerocell-") && h !== "x-zerocell-instance")).toEqual([]);
    }
  }, 300_000);

  it("a job whose map finished and whose reduce did not runs the reduce after a restart, once", async () => {
    const r = await jobRun(["job", "run", "--program", grep, "--input", "mail/inbox/", "--out", "out/restart/", "--reduce", awk, "--reduce-arg", "{s+=$1} END {print s}", "--ok-exit", "0,1", "--json", "--", "-c", "needle"]);
    const id = (JSON.parse(r.stdout) as { job: string }).job;
    expect(JSON.parse(r.stdout).reduce).toBe(`${TOTAL}\n`);
    // The state of a server killed after the map and before the reduce finished: job running, reduce pending.
    await server.stop();
    const db = new Database(join(server.dataDir, "zerocell.db"));
    db.prepare("UPDATE jobs SET status = 'running', finished_at = NULL WHERE id = ?").run(id);
    db.prepare("UPDATE job_reduces SET status = 'pending', output_key = NULL, output_head = NULL, finished_at = NULL WHERE job_id = ?").run(id);
    db.close();
    const items = query<{ n: number }>("SELECT COUNT(*) AS n FROM usage_records WHERE request_id LIKE ?", `job-${id}-%`)[0]!.n;
    server = await startServer(["--no-spare-hosts"], { dataDir: server.dataDir });
    s3 = s3Client(server, key);
    await vi.waitFor(async () => expect((await admin(server, "GET", `/v1/jobs/${id}`)).json.job.status).toBe("done"), { timeout: 120_000, interval: 250 });
    const job = (await admin(server, "GET", `/v1/jobs/${id}`)).json.job;
    expect(job.reduce).toMatchObject({ status: "ok", output: `${TOTAL}\n`, outputKey: "restart/_reduce", exitCode: 0 });
    expect(await output("out", "restart/_reduce")).toBe(`${TOTAL}\n`);
    // The reduce ran again under the same request id: counted once; no item ran again.
    expect(query<{ n: number }>("SELECT COUNT(*) AS n FROM usage_records WHERE request_id = ?", `job-${id}-reduce`)[0]!.n).toBe(1);
    expect(query<{ n: number }>("SELECT COUNT(*) AS n FROM usage_records WHERE request_id LIKE ?", `job-${id}-%`)[0]!.n).toBe(items);
  }, 300_000);
});
