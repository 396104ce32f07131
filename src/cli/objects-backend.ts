/**
 * `zerocell serve`'s object store options: local disk (default) or a remote S3 API (OpenStack
 * Swift's s3api, MinIO, AWS S3). The remote's credentials come from the environment only
 * (ZEROCELL_OBJECTS_S3_ACCESS_KEY_ID / ZEROCELL_OBJECTS_S3_SECRET_ACCESS_KEY): a flag would show
 * them to every user of `ps`.
 */
import { Option, type Command } from "commander";
import type { ObjectBackendChoice } from "../objects/index.js";
import { CliError } from "./errors.js";

export interface ObjectBackendOpts {
  objectsBackend?: string;
  objectsS3Endpoint?: string;
  objectsS3Region?: string;
  objectsS3Bucket?: string;
  objectsS3Prefix?: string;
  objectsS3TimeoutMs?: string;
}

export function addObjectBackendOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option("--objects-backend <kind>", "where objects live: disk (DIR/objects) or s3 (a remote S3 API; $ZEROCELL_OBJECTS_BACKEND)").choices(["disk", "s3"]))
    .option("--objects-s3-endpoint <url>", "S3 API base URL of the remote store, path-style ($ZEROCELL_OBJECTS_S3_ENDPOINT)")
    .option("--objects-s3-region <region>", "region to sign for ($ZEROCELL_OBJECTS_S3_REGION; default us-east-1)")
    .option("--objects-s3-bucket <name>", "the one remote bucket that holds every account's objects, created if missing ($ZEROCELL_OBJECTS_S3_BUCKET)")
    .option("--objects-s3-prefix <prefix>", "prefix of every remote name, to share a bucket ($ZEROCELL_OBJECTS_S3_PREFIX; default none)")
    .option("--objects-s3-timeout-ms <n>", "longest silence from the remote before a call fails as unavailable (default 30000)");
}

/** The backend the options and environment choose; credentials from the environment. */
export async function resolveObjectBackend(opts: ObjectBackendOpts, env: NodeJS.ProcessEnv = process.env): Promise<ObjectBackendChoice> {
  const kind = opts.objectsBackend ?? env.ZEROCELL_OBJECTS_BACKEND ?? "disk";
  if (kind === "disk") return { kind: "disk" };
  if (kind !== "s3") throw new CliError(`serve: --objects-backend must be disk or s3, not "${kind.slice(0, 40)}"`);
  const need = (v: string | undefined, what: string): string => {
    if (v === undefined || v === "") throw new CliError(`serve: the s3 object backend needs ${what}`);
    return v;
  };
  const endpoint = need(opts.objectsS3Endpoint ?? env.ZEROCELL_OBJECTS_S3_ENDPOINT, "--objects-s3-endpoint (or ZEROCELL_OBJECTS_S3_ENDPOINT)");
  if (!/^https?:\/\/[^\s]+$/.test(endpoint)) throw new CliError(`serve: --objects-s3-endpoint must be an http(s) URL`);
  const { DEFAULT_S3_BACKEND } = await import("../objects/s3/index.js");
  const timeout = opts.objectsS3TimeoutMs === undefined ? DEFAULT_S3_BACKEND.idleTimeoutMs : Number(opts.objectsS3TimeoutMs);
  if (!Number.isInteger(timeout) || timeout <= 0) throw new CliError(`serve: --objects-s3-timeout-ms must be a positive integer`);
  return {
    kind: "s3",
    s3: {
      ...DEFAULT_S3_BACKEND,
      endpoint,
      region: opts.objectsS3Region ?? env.ZEROCELL_OBJECTS_S3_REGION ?? DEFAULT_S3_BACKEND.region,
      bucket: need(opts.objectsS3Bucket ?? env.ZEROCELL_OBJECTS_S3_BUCKET, "--objects-s3-bucket (or ZEROCELL_OBJECTS_S3_BUCKET)"),
      prefix: opts.objectsS3Prefix ?? env.ZEROCELL_OBJECTS_S3_PREFIX ?? "",
      accessKeyId: need(env.ZEROCELL_OBJECTS_S3_ACCESS_KEY_ID, "ZEROCELL_OBJECTS_S3_ACCESS_KEY_ID in the environment"),
      secretAccessKey: need(env.ZEROCELL_OBJECTS_S3_SECRET_ACCESS_KEY, "ZEROCELL_OBJECTS_S3_SECRET_ACCESS_KEY in the environment"),
      idleTimeoutMs: timeout,
    },
  };
}
