import { describe, it, expect } from "vitest";
import { RouteTable, normalizeHost, checkHostPattern, checkPathPattern, canonicalPath, type RouteEntry } from "../../src/router/index.js";

function route(host: string, path: string, app: string, key?: string): RouteEntry {
  return { host, path, mode: "snapshot", ...(key === undefined ? {} : { key }), target: { appId: app, appName: app, accountId: "acct", deploymentId: `dep-${app}` } };
}

const table = new RouteTable([
  route("*", "/", "catchall"),
  route("*.example.com", "/", "wild"),
  route("*.api.example.com", "/", "wild-api"),
  route("blog.example.com", "/", "blog"),
  route("blog.example.com", "/api", "blog-api"),
  route("blog.example.com", "/posts/:id", "posts", "id"),
  route("blog.example.com", "/posts/new", "new-post"),
  route("blog.example.com", "/posts/:id/comments/:cid", "comment"),
]);

const app = (host: string, path: string) => table.match(host, path)?.route.target.appName;

describe("router", () => {
  it("prefers an exact host over wildcards, longer wildcards over shorter, '*' last", () => {
    expect(app("blog.example.com", "/")).toBe("blog");
    expect(app("x.example.com", "/")).toBe("wild");
    expect(app("a.b.example.com", "/")).toBe("wild");
    expect(app("v1.api.example.com", "/")).toBe("wild-api");
    expect(app("example.com", "/")).toBe("catchall");
    expect(app("other.org", "/")).toBe("catchall");
  });

  it("matches path prefixes only at segment boundaries, the longer match first", () => {
    expect(app("blog.example.com", "/api")).toBe("blog-api");
    expect(app("blog.example.com", "/api/v1/x")).toBe("blog-api");
    expect(app("blog.example.com", "/apix")).toBe("blog");
    expect(app("blog.example.com", "/")).toBe("blog");
  });

  it("prefers a static segment over a parameter, and extracts parameters", () => {
    expect(app("blog.example.com", "/posts/new")).toBe("new-post");
    const m = table.match("blog.example.com", "/posts/42");
    expect(m?.route.target.appName).toBe("posts");
    expect(m?.params).toEqual({ id: "42" });
    const c = table.match("blog.example.com", "/posts/7/comments/9/edit");
    expect(c?.route.target.appName).toBe("comment");
    expect(c?.params).toEqual({ id: "7", cid: "9" });
    expect(c?.matchedPrefix).toBe("/posts/7/comments/9");
    expect(c?.rest).toBe("/edit");
    // /posts alone is not /posts/:id: it falls back to the "/" route of the host.
    expect(app("blog.example.com", "/posts")).toBe("blog");
    expect(table.match("blog.example.com", "/posts/new/x")?.rest).toBe("/x");
  });

  it("backtracks from a static branch that dead-ends to a parameter branch", () => {
    const t = new RouteTable([route("h", "/a/b/c", "abc"), route("h", "/a/:x/d", "axd")]);
    expect(t.match("h", "/a/b/d")?.route.target.appName).toBe("axd");
    expect(t.match("h", "/a/b/c")?.route.target.appName).toBe("abc");
    expect(t.match("h", "/a/b")).toBeUndefined();
  });

  it("normalises hosts: case, port, trailing dot, IPv6 literal", () => {
    expect(normalizeHost("Blog.Example.COM:8443")).toBe("blog.example.com");
    expect(normalizeHost("blog.example.com.")).toBe("blog.example.com");
    expect(normalizeHost("[::1]:8080")).toBe("[::1]");
    expect(app("BLOG.example.com:443", "/api")).toBe("blog-api");
  });

  it("returns nothing for an unknown host when there is no catch-all, and survives hostile input", () => {
    const t = new RouteTable([route("a.localhost", "/", "a")]);
    expect(t.match("b.localhost", "/")).toBeUndefined();
    expect(t.match("", "/")).toBeUndefined();
    expect(t.match("a.localhost", "/" + "x/".repeat(10_000))).toBeUndefined();
    expect(t.match("a.localhost", "//a//b")?.route.target.appName).toBe("a");
    expect(t.match("\u0000\u00ff".repeat(1000), "/")).toBeUndefined();
  });

  it("validates host and path patterns", () => {
    expect(checkHostPattern("blog.localhost")).toBeUndefined();
    expect(checkHostPattern("*.example.com")).toBeUndefined();
    expect(checkHostPattern("*")).toBeUndefined();
    expect(checkHostPattern("a..b")).toMatch(/not a valid DNS label/);
    expect(checkHostPattern("-a.com")).toMatch(/not a valid DNS label/);
    expect(checkHostPattern("a.*.com")).toMatch(/not a valid DNS label/);
    expect(checkPathPattern("/posts/:id")).toBeUndefined();
    expect(checkPathPattern("posts")).toMatch(/must start with/);
    expect(checkPathPattern("/a/../b")).toMatch(/not allowed/);
    expect(checkPathPattern("/:id/:id")).toMatch(/appears twice/);
    expect(checkPathPattern("/:1x")).toMatch(/must look like/);
    expect(canonicalPath("/posts/:id/x")).toBe("/posts/:/x");
    expect(canonicalPath("/posts/:slug/x")).toBe(canonicalPath("/posts/:id/x/"));
  });
});

describe("host ownership policy (src/router/hosts.ts)", async () => {
  const { claimedName, isPublicSuffix, ownableAncestors, reservedHostError } = await import("../../src/router/hosts.js");
  it("claims the name itself, D for *.D, nothing for *", () => {
    expect(claimedName("shop.example.com")).toBe("shop.example.com");
    expect(claimedName("*.shop.example.com")).toBe("shop.example.com");
    expect(claimedName("*")).toBeUndefined();
  });
  it("knows public suffixes from the PSL (ICANN and private), and single labels", () => {
    for (const n of ["com", "co.uk", "github.io", "localhost", "s3.amazonaws.com"]) expect(isPublicSuffix(n), n).toBe(true);
    for (const n of ["example.com", "shop.co.uk", "me.github.io", "blog.localhost"]) expect(isPublicSuffix(n), n).toBe(false);
  });
  it("lists the names above a host that an account could hold, stopping at the suffix", () => {
    expect(ownableAncestors("a.b.shop.co.uk")).toEqual(["b.shop.co.uk", "shop.co.uk"]);
    expect(ownableAncestors("x.vshop.localhost")).toEqual(["vshop.localhost"]);
    expect(ownableAncestors("example.com")).toEqual([]);
  });
  it("reserves *, wildcards over suffixes and suffixes for tenants, not for admins", () => {
    expect(reservedHostError("*", false)).toBe('the catch-all host "*" is reserved for the platform');
    for (const p of ["*.localhost", "*.com"]) expect(reservedHostError(p, false), p).toBe(`"${p.slice(2)}" is a public suffix (a wildcard over it would take every site under it)`);
    for (const p of ["com", "github.io"]) expect(reservedHostError(p, false), p).toBe(`"${p}" is a public suffix (no account can hold it)`);
    for (const p of ["shop.example.com", "*.shop.example.com", "x.localhost"]) expect(reservedHostError(p, false), p).toBeUndefined();
    expect(reservedHostError("*", true)).toBeUndefined();
  });
});
