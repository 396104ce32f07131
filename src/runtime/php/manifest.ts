/**
 * The manifest's [php] table: PHP version, document root, front controller, opcache size and the
 * php.ini settings a bundle may set (with the grammar of each value). The registry composes it
 * into the manifest parser (src/runtime/manifest.ts); this file imports no engine.
 */
import { z } from "zod";
import { lookupEntry } from "../../bundle/archive.js";
import { q } from "../../bundle/errors.js";
import { defineManifestSection, intBetween, manifestError, MANIFEST_PATH_RULES, str } from "../../bundle/manifest.js";
import { checkRelativePath } from "../../bundle/paths.js";

/** The [php] table as a Manifest holds it. */
export interface PhpManifestSection {
  version: "8.3" | "8.4";
  /** Normalised relative directory, "." for the bundle root. */
  documentRoot: string;
  /** php.ini overrides, values as strings (booleans as "1"/"0"). */
  ini: Record<string, string>;
  /**
   * File relative to documentRoot that serves paths that are no file, or null for none.
   * parseManifest leaves null when the key is absent; loadBundle fills in "index.php" when
   * that file exists in the document root.
   */
  frontController: string | null;
  /**
   * Opcache shared memory, MiB ([php] opcache_mb, at most limits.memory_mb); absent: sized from
   * the bundle's PHP source (src/runtime/php/validate.ts opcacheSizing).
   */
  opcacheMb?: number;
}

declare module "../../bundle/manifest.js" {
  interface RuntimeSections {
    php: PhpManifestSection;
  }
}

/** Bounds of [php] opcache_mb, MiB (also at most limits.memory_mb: opcache is part of the heap). */
const MIN_OPCACHE_MB = 8;
const MAX_OPCACHE_MB = 1024;

/**
 * php.ini keys a bundle may not set: the platform owns sandboxing, limits, paths and extensions.
 * (Everything outside PHP_INI_SETTINGS is refused; these get a message that says why.)
 */
const FORBIDDEN_INI_KEYS = new Set([
  "disable_functions",
  "disable_classes",
  "open_basedir",
  "allow_url_fopen",
  "allow_url_include",
  "extension",
  "zend_extension",
  "extension_dir",
  "memory_limit",
  "max_execution_time",
  "auto_prepend_file",
  "auto_append_file",
  "sendmail_path",
  "mail.log",
  "error_log",
  "session.save_path",
  "session.save_handler",
  "upload_tmp_dir",
  "sys_temp_dir",
  "enable_dl",
  "hard_timeout",
]);
const FORBIDDEN_INI_PREFIXES = ["opcache.", "ffi."];
const INI_KEY = /^[a-z0-9_.]+$/;

/**
 * The grammar of one php.ini value. Must never admit a value that changes how PHP's ini parser
 * reads the rest of the file: a syntax error there makes PHP stop reading php.ini, and the
 * platform's walls are written after the bundle's settings. `raw` values are written unquoted
 * (numbers, booleans, error_reporting expressions of E_* names); all others inside double
 * quotes, from a charset without `$ { } " ' ; \ = \``.
 */
type IniRule = { raw: boolean; check(value: string): string | undefined };

const BOOL_WORDS = /^(0|1|on|off|yes|no|true|false|)$/i;
const ERROR_CONSTANTS = "E_ALL|E_ERROR|E_WARNING|E_PARSE|E_NOTICE|E_CORE_ERROR|E_CORE_WARNING|E_COMPILE_ERROR|E_COMPILE_WARNING|E_USER_ERROR|E_USER_WARNING|E_USER_NOTICE|E_STRICT|E_RECOVERABLE_ERROR|E_DEPRECATED|E_USER_DEPRECATED";
const ERROR_TERM = `~?\\s*(${ERROR_CONSTANTS}|\\d{1,6})`;
/** `E_ALL & ~E_NOTICE | E_STRICT`: terms joined by & | ^, no parentheses (always valid syntax). */
const ERROR_EXPRESSION = new RegExp(`^${ERROR_TERM}(\\s*[&|^]\\s*${ERROR_TERM}){0,15}$`);
/** Text written inside double quotes: printable ASCII without the ini parser's special characters. */
const SAFE_TEXT = /^[^\u0000-\u001f\u007f-\uffff$"'{};\\=`]*$/;
/** The same, with ";" (a comment outside quotes, an ordinary character inside): user agents have it. */
const SAFE_TEXT_WITH_SEMICOLON = /^[^\u0000-\u001f\u007f-\uffff$"'{}\\=`]*$/;

const bool: IniRule = { raw: true, check: (v) => (BOOL_WORDS.test(v) ? undefined : 'must be a boolean (true/false, 1/0, "On"/"Off")') };
function int(lo: number, hi: number): IniRule {
  return { raw: true, check: (v) => (/^-?\d{1,10}$/.test(v) && Number(v) >= lo && Number(v) <= hi ? undefined : `must be an integer between ${lo} and ${hi}`) };
}
function oneOf(...values: string[]): IniRule {
  return { raw: false, check: (v) => (values.includes(v) ? undefined : `must be one of ${values.map((x) => JSON.stringify(x)).join(", ")}`) };
}
function text(re: RegExp, what: string, maxLength = 256, semicolon = false): IniRule {
  return {
    raw: false,
    check: (v) => {
      if (v.length > maxLength) return `must be at most ${maxLength} characters`;
      if (!(semicolon ? SAFE_TEXT_WITH_SEMICOLON : SAFE_TEXT).test(v) || v !== v.trim()) {
        return `must be ${what} (printable ASCII without $ { } " ' ${semicolon ? "" : "; "}\\ = \` or leading/trailing spaces)`;
      }
      return re.test(v) ? undefined : `must be ${what}`;
    },
  };
}
const charset = text(/^[A-Za-z0-9_.:-]{0,40}$/, "a character set name such as UTF-8", 40);

/** php.ini settings a bundle may set: harmless to the platform, with the grammar of each value. */
const PHP_INI_SETTINGS: Record<string, IniRule> = {
  "date.timezone": text(/^[A-Za-z][A-Za-z0-9_+\/-]{0,63}$/, "a time zone name such as Europe/Paris", 64),
  default_charset: charset,
  input_encoding: charset,
  output_encoding: charset,
  internal_encoding: charset,
  default_mimetype: text(/^[A-Za-z0-9.+\/-]{1,100}$/, "a media type such as text/html", 100),
  error_reporting: {
    raw: true,
    check: (v) => (/^-?\d{1,10}$/.test(v) || ERROR_EXPRESSION.test(v) ? undefined : "must be an integer or E_* constants joined by & | ^ (with ~), e.g. E_ALL & ~E_DEPRECATED"),
  },
  display_errors: { raw: false, check: (v) => (BOOL_WORDS.test(v) || v === "stderr" || v === "stdout" ? undefined : 'must be a boolean, "stderr" or "stdout"') },
  display_startup_errors: bool,
  log_errors: bool,
  html_errors: bool,
  ignore_repeated_errors: bool,
  ignore_repeated_source: bool,
  report_memleaks: bool,
  short_open_tag: bool,
  expose_php: bool,
  implicit_flush: bool,
  ignore_user_abort: bool,
  file_uploads: bool,
  max_file_uploads: int(0, 1000),
  precision: int(-1, 50),
  serialize_precision: int(-1, 50),
  max_input_vars: int(1, 100_000),
  max_input_nesting_level: int(1, 1024),
  default_socket_timeout: int(0, 3600),
  output_buffering: { raw: true, check: (v) => (BOOL_WORDS.test(v) || (/^\d{1,9}$/.test(v) && Number(v) <= 16 * 1024 * 1024) ? undefined : "must be a boolean or a size in bytes up to 16777216") },
  variables_order: text(/^[EGPCS]{0,5}$/, 'letters of "EGPCS"', 5),
  request_order: text(/^[GPC]{0,3}$/, 'letters of "GPC"', 3),
  // Written in double quotes, where ";" is an ordinary character.
  "arg_separator.output": { raw: false, check: (v) => (/^[&;a-z]{1,8}$/.test(v) ? undefined : 'must be separator characters such as "&" or "&amp;"') },
  "arg_separator.input": { raw: false, check: (v) => (/^[&;]{1,4}$/.test(v) ? undefined : 'must be separator characters ("&" and ";")') },
  // open_basedir (a wall) still limits what include finds.
  include_path: text(/^[A-Za-z0-9_.\/:-]{1,1024}$/, 'directories separated by ":"', 1024),
  user_agent: text(/^/, "plain text", 256, true),
  "zend.assertions": int(-1, 1),
  "zend.enable_gc": bool,
  "zend.exception_ignore_args": bool,
  "zend.exception_string_param_max_len": int(0, 1_000_000),
  "assert.active": bool,
  "assert.bail": bool,
  "assert.warning": bool,
  "assert.exception": bool,
  "pcre.backtrack_limit": int(1, 100_000_000),
  "pcre.recursion_limit": int(1, 100_000_000),
  "pcre.jit": bool,
  "mbstring.language": text(/^[A-Za-z-]{1,20}$/, "a language name such as neutral or Japanese", 20),
  "mbstring.internal_encoding": charset,
  "mbstring.http_input": charset,
  "mbstring.http_output": charset,
  "mbstring.detect_order": text(/^[A-Za-z0-9_.:, -]{0,200}$/, "character set names separated by commas", 200),
  "mbstring.substitute_character": text(/^(none|long|entity|\d{1,7})$/, 'none, long, entity or a code point', 16),
  "mbstring.strict_detection": bool,
  "mbstring.encoding_translation": bool,
  "mbstring.regex_retry_limit": int(0, 100_000_000),
  "mbstring.regex_stack_limit": int(0, 100_000_000),
  // Sessions are files in /tmp (save_path and save_handler stay the platform's).
  "session.name": text(/^[A-Za-z][A-Za-z0-9_]{0,63}$/, "letters, digits and _ starting with a letter", 64),
  "session.auto_start": bool,
  "session.use_cookies": bool,
  "session.use_only_cookies": bool,
  "session.use_strict_mode": bool,
  "session.use_trans_sid": bool,
  "session.lazy_write": bool,
  "session.cookie_lifetime": int(0, 2_147_483_647),
  "session.cookie_path": text(/^\/[A-Za-z0-9_.\/~-]{0,255}$/, "a URL path starting with /", 256),
  "session.cookie_domain": text(/^[A-Za-z0-9.-]{0,253}$/, "a host name", 253),
  "session.cookie_secure": bool,
  "session.cookie_httponly": bool,
  "session.cookie_samesite": oneOf("", "Lax", "Strict", "None"),
  "session.cache_limiter": oneOf("", "nocache", "private", "private_no_expire", "public"),
  "session.cache_expire": int(0, 2_147_483_647),
  "session.gc_maxlifetime": int(0, 2_147_483_647),
  "session.gc_probability": int(0, 1_000_000),
  "session.gc_divisor": int(1, 1_000_000),
  "session.serialize_handler": oneOf("php", "php_binary", "php_serialize"),
  "session.sid_length": int(22, 256),
  "session.sid_bits_per_character": int(4, 6),
  "gd.jpeg_ignore_warning": bool,
};

/** Every php.ini key a bundle may set (docs, error messages). */
export const PHP_INI_KEYS: readonly string[] = Object.keys(PHP_INI_SETTINGS).sort();

/**
 * Why `key = value` may not be in a bundle's php.ini, or undefined when it may (the value as a
 * string: booleans "1"/"0", numbers in decimal).
 */
export function checkPhpIniSetting(key: string, value: string): string | undefined {
  if (!INI_KEY.test(key)) return `${q(key)} is not a php.ini key (a-z, 0-9, "_" and "." only)`;
  if (FORBIDDEN_INI_KEYS.has(key) || FORBIDDEN_INI_PREFIXES.some((p) => key.startsWith(p))) {
    return `${q(key)} cannot be set by a bundle (the platform controls it)`;
  }
  if (CONTROL_CHARS.test(value)) return "must not contain control characters (newlines, NUL, …)";
  const rule = Object.hasOwn(PHP_INI_SETTINGS, key) ? PHP_INI_SETTINGS[key] : undefined;
  if (rule === undefined) return `${q(key)} is not a php.ini setting a bundle may set (allowed: see docs/manifest.md)`;
  return rule.check(value);
}

const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

/**
 * The php.ini line for a bundle's setting, checked again here (a Manifest may be built by hand,
 * not parsed): throws a BundleError naming the field.
 */
export function phpIniLine(key: string, value: string): string {
  const problem = checkPhpIniSetting(key, value);
  if (problem !== undefined) throw manifestError(["php", "ini", key], problem);
  return PHP_INI_SETTINGS[key]!.raw ? `${key} = ${value === "" ? '""' : value}` : `${key} = "${value}"`;
}

const PhpSchema = z.strictObject({
  version: z.enum(["8.3", "8.4"], { error: 'must be "8.3" or "8.4" (a string)' }).default("8.3"),
  document_root: str().default("."),
  ini: z
    .record(
      z.string(),
      z.union([z.string(), z.number(), z.boolean()], { error: "must be a string, number or boolean" }),
      { error: "must be a table of php.ini settings" },
    )
    .default({}),
  front_controller: str().optional(),
  opcache_mb: intBetween(MIN_OPCACHE_MB, MAX_OPCACHE_MB).optional(),
}, { error: "must be a table" });

export const phpManifest = defineManifestSection({
  schema: PhpSchema,
  resolve(php, ctx): PhpManifestSection {
    // document_root / front_controller
    const root = checkRelativePath(php.document_root, MANIFEST_PATH_RULES);
    if (!root.ok) throw ctx.fail(["document_root"], `${q(php.document_root)} ${root.reason}`);
    let frontController: string | null = null;
    if (php.front_controller !== undefined) {
      const fc = checkRelativePath(php.front_controller, MANIFEST_PATH_RULES);
      if (!fc.ok) throw ctx.fail(["front_controller"], `${q(php.front_controller)} ${fc.reason}`);
      if (fc.path === "") throw ctx.fail(["front_controller"], "must name a file inside php.document_root");
      frontController = fc.path;
    }
    if (php.opcache_mb !== undefined && php.opcache_mb > ctx.limits.memoryMb) {
      throw ctx.fail(["opcache_mb"], `must be at most limits.memory_mb (${ctx.limits.memoryMb})`);
    }
    // ini
    const ini: Record<string, string> = {};
    for (const [key, value] of Object.entries(php.ini)) {
      const at = ["ini", key];
      if (typeof value === "number" && !Number.isFinite(value)) throw ctx.fail(at, "must be a finite number");
      const text = typeof value === "boolean" ? (value ? "1" : "0") : String(value);
      const problem = checkPhpIniSetting(key, text);
      if (problem !== undefined) throw ctx.fail(at, problem);
      ini[key] = text;
    }
    return {
      version: php.version,
      documentRoot: root.path === "" ? "." : root.path,
      ini,
      frontController,
      ...(php.opcache_mb === undefined ? {} : { opcacheMb: php.opcache_mb }),
    };
  },
  /**
   * The document root is a directory of the bundle, the front controller a file in it; without
   * one, index.php serves paths that are no file when it exists. (Every runtime: the gateway's
   * static files use the document root too, src/gateway/static.ts.)
   */
  checkImage(php, image): PhpManifestSection {
    const { documentRoot } = php;
    const rootPath = documentRoot === "." ? "" : documentRoot;
    const root = lookupEntry(image, rootPath);
    if (root === undefined) throw manifestError(["php", "document_root"], `${q(documentRoot)} does not exist in the bundle`);
    if (root.kind !== "dir") throw manifestError(["php", "document_root"], `${q(documentRoot)} is a ${root.kind}, not a directory`);
    const inRoot = (p: string) => (rootPath === "" ? p : `${rootPath}/${p}`);
    let frontController = php.frontController;
    if (frontController !== null) {
      const fc = lookupEntry(image, inRoot(frontController));
      if (fc === undefined || fc.kind !== "file") {
        throw manifestError(["php", "front_controller"], `${q(frontController)} is not a file in php.document_root ${q(documentRoot)}`);
      }
    } else if (lookupEntry(image, inRoot("index.php"))?.kind === "file") {
      frontController = "index.php";
    }
    return { ...php, frontController };
  },
});
