/**
 * An app's environment variables and secrets (`zerocell env set|list|unset`). The env is part of
 * a deployment (deployments.env): a change is a new deployment of the active bundle, so rollback
 * restores the old values and a snapshot (stored per deployment) never carries another
 * revision's values. Every value is encrypted at rest (SecretBox, DIR/secrets.key, 0600) with the
 * app id and the name as associated data; `secret` only decides whether a value is ever shown
 * again (never, for a secret).
 * Must never: return a secret's value to anyone but a sandbox host of the app's own deployment;
 * log a value; accept a name the platform sets itself (CGI/WSGI meta-variables) or one a runtime
 * reads for its own configuration.
 */
import { SecretBox } from "../store/secret-box.js";
import { InputError, ZerocellError } from "../errors.js";

/** Bounds on one app's environment. */
export interface EnvLimits {
  /** Variables per app. */
  maxVars: number;
  /** Bytes of one name (ASCII). */
  maxNameBytes: number;
  /** Bytes of one value (UTF-8). */
  maxValueBytes: number;
  /** Bytes of all names and values together (what reaches the guest's environment block). */
  maxTotalBytes: number;
}

export const ENV_LIMITS: EnvLimits = { maxVars: 64, maxNameBytes: 128, maxValueBytes: 8 * 1024, maxTotalBytes: 32 * 1024 };

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Names the platform or a runtime sets or reads itself (compared upper-cased). */
const RESERVED_NAMES = new Set([
  "AUTH_TYPE", "CONTENT_LENGTH", "CONTENT_TYPE", "DOCUMENT_ROOT", "DOCUMENT_URI", "GATEWAY_INTERFACE", "HTTPS",
  "PATH_INFO", "PATH_TRANSLATED", "QUERY_STRING", "REDIRECT_STATUS", "HOME", "PATH", "PWD", "SHELL", "USER", "LANG", "TZ", "TMPDIR",
]);
/** Prefixes of reserved names: CGI meta-variable families, the dynamic loader, the runtimes' own switches. */
const RESERVED_PREFIXES = ["HTTP_", "SERVER_", "REQUEST_", "REMOTE_", "SCRIPT_", "ZEROCELL_", "LD_", "PYTHON", "PHP_", "PHPRC", "LC_", "WSGI", "PYODIDE"];

/** Why `name` cannot be an app's variable, or undefined when it can. */
export function envNameError(name: string, limits: EnvLimits = ENV_LIMITS): string | undefined {
  if (name.length === 0) return "empty name";
  if (name.length > limits.maxNameBytes) return `longer than ${limits.maxNameBytes} bytes`;
  if (!NAME.test(name)) return "a name is letters, digits and _ and does not start with a digit";
  const up = name.toUpperCase();
  if (RESERVED_NAMES.has(up) || RESERVED_PREFIXES.some((p) => up.startsWith(p))) return "reserved: the platform or the runtime sets it";
  return undefined;
}

/** One stored variable: the value encrypted. */
interface StoredVar {
  name: string;
  secret: boolean;
  enc: string;
}

/** A variable as the API shows it: a secret's value never. */
export interface EnvVarView {
  name: string;
  secret: boolean;
  value: string | null;
}

export interface EnvChange {
  set: Array<{ name: string; value: string; secret: boolean }>;
  unset: string[];
}

export class AppEnv {
  readonly #box: SecretBox;
  readonly #limits: EnvLimits;

  constructor(keyFile: string, limits: EnvLimits = ENV_LIMITS) {
    this.#box = new SecretBox(keyFile);
    this.#limits = limits;
  }

  #aad(appId: string, name: string): string {
    return `env\0${appId}\0${name}`;
  }

  #parse(json: string | null): StoredVar[] {
    if (json === null || json === "") return [];
    return JSON.parse(json) as StoredVar[];
  }

  #open(appId: string, v: StoredVar): string {
    const value = this.#box.decrypt(this.#aad(appId, v.name), v.enc);
    if (value === undefined) throw new ZerocellError("env_undecryptable", 500, `env: ${v.name} does not decrypt (was DIR/secrets.key replaced?)`);
    return value;
  }

  /** The variables of a deployment's env as the API shows them (sorted by name). */
  view(appId: string, json: string | null): EnvVarView[] {
    return this.#parse(json).map((v) => ({ name: v.name, secret: v.secret, value: v.secret ? null : this.#open(appId, v) }));
  }

  /** Decrypted name → value, for the deployment's sandbox hosts only. */
  values(appId: string, json: string | null): Record<string, string> {
    const out: Record<string, string> = {};
    for (const v of this.#parse(json)) out[v.name] = this.#open(appId, v);
    return out;
  }

  /**
   * The env after a change, checked against the limits (names, sizes, count), as stored JSON
   * (null when empty). Unsetting a name that is not set is refused, so a typo is not silent.
   */
  apply(appId: string, json: string | null, change: EnvChange): string | null {
    const vars = new Map(this.#parse(json).map((v) => [v.name, v]));
    const sizes = new Map<string, number>();
    for (const v of vars.values()) sizes.set(v.name, v.name.length + Buffer.byteLength(this.#open(appId, v)));
    for (const name of change.unset) {
      if (!vars.delete(name)) throw new InputError(`env: ${name.slice(0, 80)} is not set`, { code: "env_not_set", status: 404 });
      sizes.delete(name);
    }
    for (const s of change.set) {
      const err = envNameError(s.name, this.#limits);
      if (err !== undefined) throw new InputError(`env: bad name "${s.name.slice(0, 80)}": ${err}`, { code: "bad_env_name" });
      const bytes = Buffer.byteLength(s.value);
      if (bytes > this.#limits.maxValueBytes) throw new InputError(`env: the value of ${s.name} is ${bytes} bytes; the limit is ${this.#limits.maxValueBytes}`, { code: "env_too_large" });
      if (s.value.includes("\0")) throw new InputError(`env: the value of ${s.name} contains a NUL byte`, { code: "bad_env_value" });
      vars.set(s.name, { name: s.name, secret: s.secret, enc: this.#box.encrypt(this.#aad(appId, s.name), s.value) });
      sizes.set(s.name, s.name.length + bytes);
    }
    if (vars.size > this.#limits.maxVars) throw new InputError(`env: ${vars.size} variables; the limit is ${this.#limits.maxVars} per app`, { code: "env_too_large" });
    const total = [...sizes.values()].reduce((a, b) => a + b, 0);
    if (total > this.#limits.maxTotalBytes) throw new InputError(`env: ${total} bytes of names and values; the limit is ${this.#limits.maxTotalBytes} per app`, { code: "env_too_large" });
    if (vars.size === 0) return null;
    return JSON.stringify([...vars.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)));
  }
}
