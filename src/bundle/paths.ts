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
  | { ok: true; /** Normalised resolved location relative to the root ("" = the root). */ path: string; exists: boolean }
  | { ok: false; reason: "escapes" | "loop" | "absolute" | "too_complex" };

/** Work allowance (path segments walked) shared by all resolutions of one image, so hostile link farms cannot burn CPU. */
export interface ResolveBudget {
  steps: number;
}

export function newResolveBudget(): ResolveBudget {
  return { steps: 4_000_000 };
}

interface TreeNode {
  kind: "file" | "dir" | "symlink";
  children?: Map<string, TreeNode>;
  target?: string;
}

/** The directory tree of an image, for resolving link targets the way the kernel would. */
export class PathTree {
  readonly #root: TreeNode = { kind: "dir", children: new Map() };

  constructor(entries: Iterable<{ path: string; kind: "file" | "dir" | "symlink"; target?: string | undefined }> = []) {
    for (const e of entries) this.#add(e.path, e.kind, e.target);
  }

  #add(path: string, kind: TreeNode["kind"], target: string | undefined): void {
    if (path === "") return;
    const segs = path.split("/");
    const last = segs.pop() as string;
    let node = this.#root;
    for (const seg of segs) {
      if (node.children === undefined) return;
      let next = node.children.get(seg);
      if (next === undefined) {
        next = { kind: "dir", children: new Map() };
        node.children.set(seg, next);
      }
      node = next;
    }
    if (node.children === undefined) return;
    const existing = node.children.get(last);
    if (kind === "dir") {
      if (existing?.kind !== "dir") node.children.set(last, { kind: "dir", children: new Map() });
    } else {
      node.children.set(last, kind === "symlink" ? { kind, target: target ?? "" } : { kind });
    }
  }

  /**
   * Resolves `target` relative to the directory `fromDir` as the kernel would inside a chroot at the
   * bundle root, following the symlinks of the tree, but failing when ".." would climb above the
   * root instead of clamping. Missing components are fine (dangling links), they are not followed.
   */
  resolve(fromDir: string, target: string, budget: ResolveBudget = newResolveBudget()): Resolution {
    if (target.startsWith("/")) return { ok: false, reason: "absolute" };
    const names: string[] = [];
    const nodes: Array<TreeNode | undefined> = [];
    const top = (): TreeNode | undefined => (nodes.length === 0 ? this.#root : nodes[nodes.length - 1]);
    if (fromDir !== "") {
      for (const seg of fromDir.split("/")) {
        const child = top()?.children?.get(seg);
        names.push(seg);
        nodes.push(child);
      }
    }
    const queue = target.split("/").reverse();
    let hops = 0;
    while (queue.length > 0) {
      if (--budget.steps < 0) return { ok: false, reason: "too_complex" };
      const seg = queue.pop() as string;
      if (seg === "" || seg === ".") continue;
      if (seg === "..") {
        if (names.length === 0) return { ok: false, reason: "escapes" };
        names.pop();
        nodes.pop();
        continue;
      }
      const child = top()?.children?.get(seg);
      if (child?.kind === "symlink") {
        if (++hops > MAX_SYMLINK_HOPS) return { ok: false, reason: "loop" };
        const link = child.target ?? "";
        if (link.startsWith("/")) return { ok: false, reason: "absolute" };
        const parts = link.split("/");
        for (let i = parts.length - 1; i >= 0; i--) queue.push(parts[i] as string);
        continue;
      }
      names.push(seg);
      nodes.push(child);
    }
    return { ok: true, path: names.join("/"), exists: top() !== undefined };
  }
}

const EMPTY_TREE = new PathTree();

/** Purely lexical check (no other links known): does `target`, seen from `fromDir`, stay inside? */
export function staysInside(fromDir: string, target: string): boolean {
  return EMPTY_TREE.resolve(fromDir, target).ok;
}
