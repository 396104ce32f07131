/**
 * Who may route which host. A host — every path under it — belongs to exactly one account: the
 * first to claim it (by deploying a route on it) or the one an admin assigns it to. A wildcard
 * route "*.D" needs D; "*" and public suffixes (the Public Suffix List, ICANN and private
 * sections, through tldts: "com", "co.uk", "github.io", and "localhost" itself) belong to no
 * tenant. A claim under a name another account holds ("x.vshop.localhost" when someone else has
 * "vshop.localhost") is refused too.
 * Must never: let two accounts serve paths of one host, or a tenant take a name above its own.
 */
import { getPublicSuffix } from "tldts";

/** The name a route's host pattern claims: the host itself, or D for "*.D"; undefined for "*". */
export function claimedName(pattern: string): string | undefined {
  if (pattern === "*") return undefined;
  return pattern.startsWith("*.") ? pattern.slice(2) : pattern;
}

/** True for names no tenant may hold: public suffixes (and single labels such as "localhost"). */
export function isPublicSuffix(name: string): boolean {
  const suffix = getPublicSuffix(name, { allowPrivateDomains: true });
  return suffix === null || suffix === name;
}

/**
 * The names above `name` that an account could hold, nearest first, stopping at its public
 * suffix: "a.b.shop.co.uk" → ["b.shop.co.uk", "shop.co.uk"].
 */
export function ownableAncestors(name: string): string[] {
  const out: string[] = [];
  let rest = name;
  for (;;) {
    const dot = rest.indexOf(".");
    if (dot === -1) break;
    rest = rest.slice(dot + 1);
    if (isPublicSuffix(rest)) break;
    out.push(rest);
  }
  return out;
}

/**
 * Why a route host pattern may not be used by a tenant at all (before any ownership question),
 * or undefined. Admin tokens may route "*" and suffixes (the platform's own catch-alls).
 */
export function reservedHostError(pattern: string, privileged: boolean): string | undefined {
  if (privileged) return undefined;
  if (pattern === "*") return 'the catch-all host "*" is reserved for the platform';
  const name = claimedName(pattern)!;
  if (isPublicSuffix(name)) return `"${name}" is a public suffix (${pattern.startsWith("*.") ? "a wildcard over it would take every site under it" : "no account can hold it"})`;
  return undefined;
}
