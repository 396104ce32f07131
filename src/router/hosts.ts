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

/**
 * The platform's base domain (`serve --base-domain`, default "localhost"). Every app gets
 * APP.ACCOUNT.BASE (APP.BASE for the default account) with no claim step; the names under
 * ACCOUNT.BASE (two or more labels above BASE) belong to that account alone, derived from its
 * name, never stored.
 */
export const DEFAULT_BASE_DOMAIN = "localhost";

/** The host an app is served at without any --host: APP.ACCOUNT.BASE, or APP.BASE for the default account. */
export function appBaseHost(app: string, account: string, base: string, isDefaultAccount: boolean): string {
  return isDefaultAccount ? `${app}.${base}` : `${app}.${account}.${base}`;
}

/**
 * Where a route host pattern sits relative to the base domain:
 * - `{ kind: "account", label }`: inside one account's namespace ("x.acme.BASE", "*.acme.BASE",
 *   "a.b.acme.BASE") — only the account named `label` may route it;
 * - `{ kind: "platform" }`: BASE itself, "L.BASE" or "*.BASE" — the platform's own names (admin
 *   tokens, and the default account's APP.BASE);
 * - `{ kind: "outside" }`: any other name (a domain an account must verify or be assigned).
 */
export function baseDomainZone(pattern: string, base: string): { kind: "account"; label: string } | { kind: "platform" } | { kind: "outside" } {
  const name = claimedName(pattern);
  if (name === undefined) return { kind: "outside" };
  // For "*.D" the names it covers are the ones under D: judge by a representative one.
  const covered = pattern.startsWith("*.") ? `x.${name}` : name;
  if (covered === base) return { kind: "platform" };
  if (!covered.endsWith(`.${base}`)) return { kind: "outside" };
  const labels = covered.slice(0, -(base.length + 1)).split(".");
  if (labels.length < 2) return { kind: "platform" };
  return { kind: "account", label: labels[labels.length - 1]! };
}
