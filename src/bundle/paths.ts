/**
 * Path rules shared by archive entries, hard-link targets, decoded images and manifest paths:
 * posix, relative, no "..", no empty or "." segments (beyond a leading "./" and one trailing "/"),
 * no NUL, no backslash, bounded length and depth.
 */

export interface PathRules {
  maxPathLength: number;
  maxDepth: number;
}

export type PathCheck =
  | { ok: true; /** Normalised relative path; "" means the bundle root itself. */ path: string }
  | { ok: false; /** Completes a sentence like `entry "x" …`. */ reason: string };

export function checkRelativePath(raw: string, rules: PathRules): PathCheck {
  if (raw.includes("\0")) return { ok: false, reason: "contains a NUL byte" };
  if (raw.includes("\\")) return { ok: false, reason: "contains a backslash" };
  if (raw.startsWith("/")) return { ok: false, reason: "is an absolute path" };
  let p = raw;
  while (p.startsWith("./")) p = p.slice(2);
  if (p.endsWith("/")) p = p.slice(0, -1);
  if (p === "" || p === ".") return { ok: true, path: "" };
  const segments = p.split("/");
  if (segments.includes("..")) return { ok: false, reason: 'escapes the bundle root (".." segments are not allowed)' };
  if (segments.includes("")) return { ok: false, reason: "contains an empty path segment" };
  if (segments.includes(".")) return { ok: false, reason: 'contains a "." path segment' };
  if (p.length > rules.maxPathLength) {
    return { ok: false, reason: `is ${p.length} characters long, exceeds the path length limit of ${rules.maxPathLength}` };
  }
  if (segments.length > rules.maxDepth) {
    return { ok: false, reason: `is ${segments.length} levels deep, exceeds the depth limit of ${rules.maxDepth}` };
  }
  return { ok: true, path: p };
}

/** Parent directory of a normalised path ("" for top-level names). */
export function parentOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i === -1 ? "" : path.slice(0, i);
}

/** All proper ancestors of a normalised path, outermost first ("a/b/c" → ["a", "a/b"]). */
export function ancestorsOf(path: string): string[] {
  const out: string[] = [];
  let i = path.indexOf("/");
  while (i !== -1) {
    out.push(path.slice(0, i));
    i = path.indexOf("/", i + 1);
  }
  return out;
}

const MAX_SYMLINK_HOPS = 40;

export type Resolution =
  | { ok: true; /** Normalised resolved location relative to the root ("" = the root). */ path: string }
  | { ok: false; reason: "escapes" | "loop" | "absolute" | "too_complex" };

/** Work allowance shared by all resolutions of one image, so hostile link farms cannot burn CPU. */
export interface ResolveBudget {
  chars: number;
}

export function newResolveBudget(): ResolveBudget {
  return { chars: 64 * 1024 * 1024 };
}

/**
 * Resolves `target` relative to the directory `fromDir` the way the kernel would inside a chroot at
 * the bundle root, following the symlinks in `links` (normalised link path → raw target), but
 * failing when ".." would climb above the root instead of clamping. Missing components are fine
 * (dangling links), they are just not followed.
 */
export function resolveInside(
  fromDir: string,
  target: string,
  links: ReadonlyMap<string, string>,
  budget: ResolveBudget = newResolveBudget(),
): Resolution {
  if (target.startsWith("/")) return { ok: false, reason: "absolute" };
  // prefixes[i] is the path of the first i+1 resolved components.
  const prefixes: string[] = [];
  if (fromDir !== "") for (const seg of fromDir.split("/")) prefixes.push(join(prefixes, seg));
  const queue = target.split("/").reverse();
  let hops = 0;
  while (queue.length > 0) {
    const seg = queue.pop() as string;
    if (seg === "" || seg === ".") continue;
    if (seg === "..") {
      if (prefixes.length === 0) return { ok: false, reason: "escapes" };
      prefixes.pop();
      continue;
    }
    const key = join(prefixes, seg);
    budget.chars -= key.length + 1;
    if (budget.chars < 0) return { ok: false, reason: "too_complex" };
    const link = links.get(key);
    if (link === undefined) {
      prefixes.push(key);
      continue;
    }
    if (++hops > MAX_SYMLINK_HOPS) return { ok: false, reason: "loop" };
    if (link.startsWith("/")) return { ok: false, reason: "absolute" };
    const parts = link.split("/");
    for (let i = parts.length - 1; i >= 0; i--) queue.push(parts[i] as string);
  }
  return { ok: true, path: prefixes[prefixes.length - 1] ?? "" };
}

function join(prefixes: string[], seg: string): string {
  const last = prefixes[prefixes.length - 1];
  return last === undefined ? seg : last + "/" + seg;
}
