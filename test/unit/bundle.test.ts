import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PayloadTooLargeError, ZerocellError } from "../../src/errors.js";
import {
  DEFAULT_BUNDLE_LIMITS,
  decodeImage,
  encodeImage,
  packDirectory,
  packDirectoryReport,
  readBundleArchive,
  type BundleImage,
} from "../../src/bundle/index.js";
import { loadBundle, parseManifest } from "../../src/runtime/manifest.js";
import { rawHeader, tar, type RawEntry } from "../helpers/tar.js";

// Raw tar construction lives in test/helpers/tar.ts.

/** A pax extended header entry whose records apply to the next entry. */
function pax(records: Record<string, string>): RawEntry {
  let body = "";
  for (const [k, v] of Object.entries(records)) {
    const line = ` ${k}=${v}\n`;
    let len = Buffer.byteLength(line) + 1;
    while (String(len).length + Buffer.byteLength(line) !== len) len = String(len).length + Buffer.byteLength(line);
    body += `${len}${line}`;
  }
  return { path: "PaxHeader/x", type: "x", data: body };
}

const MANIFEST: RawEntry = { path: "zerocell.toml", data: 'runtime = "php"\n' };
const tgz = (entries: RawEntry[], opts?: { end?: boolean }) => gzipSync(tar(entries, opts));
/** A gzipped bundle with a minimal manifest plus the given entries. */
const bundle = (...entries: RawEntry[]) => tgz([MANIFEST, ...entries]);

function caught(fn: () => unknown): ZerocellError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ZerocellError) return e;
    throw e;
  }
  throw new Error("expected a ZerocellError, nothing was thrown");
}

async function caughtAsync(fn: () => Promise<unknown>): Promise<ZerocellError> {
  try {
    await fn();
  } catch (e) {
    if (e instanceof ZerocellError) return e;
    throw e;
  }
  throw new Error("expected a ZerocellError, nothing was thrown");
}

function expectError(fn: () => unknown, code: string, ...fragments: string[]): ZerocellError {
  const e = caught(fn);
  expect(e.code, e.message).toBe(code);
  for (const f of fragments) expect(e.message).toContain(f);
  return e;
}

const manifestError = (toml: string, code: string, ...fragments: string[]) =>
  expectError(() => parseManifest(toml), code, ...fragments);

const paths = (image: BundleImage) => image.entries.map((e) => `${e.kind}:${e.path}`);

// ---------------------------------------------------------------------------------------------

describe("packDirectory → loadBundle → encode/decode", () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "zerocell-bundle-"));
    await writeFile(
      join(dir, "zerocell.toml"),
      [
        'runtime = "php"',
        'warmup = ["/", "/about"]',
        "[php]",
        'version = "8.4"',
        'document_root = "public"',
        'ini = { "display_errors" = false, "precision" = 14, "include_path" = ".:/app/lib" }',
        "[[routes]]",
        'host = "Blog.Localhost"',
        "[[routes]]",
        'host = "*.example.com"',
        'path = "/posts/:id"',
        'mode = "fresh"',
        'key = "id"',
        "[limits]",
        "timeout_ms = 5000",
        "",
      ].join("\n"),
    );
    await mkdir(join(dir, "public", "css"), { recursive: true });
    await mkdir(join(dir, "bin"));
    await mkdir(join(dir, "deep", "a".repeat(60), "b".repeat(60)), { recursive: true });
    await writeFile(join(dir, "public", "index.php"), "<?php echo 'hi';");
    await writeFile(join(dir, "public", "css", "app.css"), "body{}");
    await writeFile(join(dir, "bin", "run.sh"), "#!/bin/sh\n");
    await chmod(join(dir, "bin", "run.sh"), 0o4755);
    await writeFile(join(dir, "deep", "a".repeat(60), "b".repeat(60), "long-name.txt"), "x".repeat(3000));
    await writeFile(join(dir, "empty.txt"), "");
    await symlink("css/app.css", join(dir, "public", "style.css"));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("packs reproducibly and loads the same tree back", async () => {
    const archive = await packDirectory(dir);
    expect(archive[0]).toBe(0x1f);
    expect(await packDirectory(dir)).toEqual(archive);

    const { image, manifest } = loadBundle(archive);
    expect(paths(image)).toEqual([
      "dir:bin",
      "file:bin/run.sh",
      "dir:deep",
      `dir:deep/${"a".repeat(60)}`,
      `dir:deep/${"a".repeat(60)}/${"b".repeat(60)}`,
      `file:deep/${"a".repeat(60)}/${"b".repeat(60)}/long-name.txt`,
      "file:empty.txt",
      "dir:public",
      "dir:public/css",
      "file:public/css/app.css",
      "file:public/index.php",
      "symlink:public/style.css",
      "file:zerocell.toml",
    ]);
    const byPath = new Map(image.entries.map((e) => [e.path, e]));
    expect(byPath.get("bin/run.sh")?.mode).toBe(0o755);
    expect(byPath.get("public/index.php")?.mode).toBe(0o644);
    expect(byPath.get("public/index.php")?.data?.toString()).toBe("<?php echo 'hi';");
    expect(byPath.get("public/style.css")?.target).toBe("css/app.css");
    expect(byPath.get("empty.txt")?.data?.length).toBe(0);
    expect(image.totalBytes).toBe(
      image.entries.reduce((n, e) => n + (e.data?.length ?? 0), 0),
    );

    expect(manifest).toEqual({
      runtime: "php",
      python: { app: "app:application", path: [] },
      x86: { program: "bin/app" },
      php: {
        version: "8.4",
        documentRoot: "public",
        ini: { display_errors: "0", precision: "14", include_path: ".:/app/lib" },
        frontController: "index.php",
      },
      routes: [
        { host: "blog.localhost", path: "/", mode: "snapshot" },
        { host: "*.example.com", path: "/posts/:id", mode: "fresh", key: "id" },
      ],
      limits: { timeoutMs: 5000, memoryMb: 128, maxBodyBytes: 10 * 1024 * 1024, dataMb: 16 },
      warmup: ["/", "/about"],
      health: ["/"],
    });

    const decoded = decodeImage(encodeImage(image));
    expect(decoded).toEqual(image);
  });

  it("refuses a directory without zerocell.toml", async () => {
    const empty = await mkdtemp(join(tmpdir(), "zerocell-empty-"));
    try {
      await writeFile(join(empty, "index.php"), "<?php");
      const e = await caughtAsync(() => packDirectory(empty));
      expect(e.code).toBe("manifest_missing");
      expect(e.message).toContain("zerocell.toml");
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });
});

describe("readBundleArchive: accepted input", () => {
  it("reads a plain (uncompressed) tar and normalises ./ prefixes and trailing slashes", () => {
    const image = readBundleArchive(
      tar([{ path: "./", type: "5" }, { path: "./a/", type: "5" }, { path: "./a/b.txt", data: "hello" }, MANIFEST]),
    );
    expect(paths(image)).toEqual(["dir:a", "file:a/b.txt", "file:zerocell.toml"]);
    expect(image.totalBytes).toBe(5 + MANIFEST.data!.length);
  });

  it("creates implicit parent directories", () => {
    const image = readBundleArchive(bundle({ path: "x/y/z.txt", data: "1" }));
    expect(paths(image)).toEqual(["dir:x", "dir:x/y", "file:x/y/z.txt", "file:zerocell.toml"]);
    expect(image.entries[0]?.mode).toBe(0o755);
  });

  it("keeps only permission bits", () => {
    const image = readBundleArchive(bundle({ path: "run", data: "x", mode: 0o6777 }, { path: "d", type: "5", mode: 0o1777 }));
    const modes = Object.fromEntries(image.entries.map((e) => [e.path, e.mode]));
    expect(modes).toMatchObject({ run: 0o777, d: 0o777 });
  });

  it("accepts a symlink that stays inside the root", () => {
    const image = readBundleArchive(
      bundle({ path: "data/x.txt", data: "x" }, { path: "public/x", type: "2", linkpath: "../data/x.txt" }),
    );
    expect(image.entries.find((e) => e.path === "public/x")).toEqual({
      path: "public/x",
      kind: "symlink",
      mode: 0o644,
      target: "../data/x.txt",
    });
  });

  it("turns a hard link to an earlier file into a copy", () => {
    const image = readBundleArchive(bundle({ path: "a.txt", data: "abc" }, { path: "b.txt", type: "1", linkpath: "a.txt" }));
    const b = image.entries.find((e) => e.path === "b.txt");
    expect(b?.kind).toBe("file");
    expect(b?.data?.toString()).toBe("abc");
    expect(image.totalBytes).toBe(6 + MANIFEST.data!.length);
  });

  it("accepts long paths from pax headers", () => {
    const long = "p/" + "x".repeat(300);
    const image = readBundleArchive(bundle(pax({ path: long }), { path: "ignored", data: "1" }));
    expect(paths(image)).toContain(`file:${long}`);
  });
});

describe("readBundleArchive: hostile paths", () => {
  it("rejects absolute paths", () => {
    expectError(() => readBundleArchive(bundle({ path: "/etc/x", data: "x" })), "bundle_bad_path", '"/etc/x"', "absolute");
  });

  it('rejects "../" paths', () => {
    expectError(() => readBundleArchive(bundle({ path: "../etc/x", data: "x" })), "bundle_bad_path", 'bundle: entry "../etc/x" escapes the bundle root');
  });

  it('rejects "a/../../b"', () => {
    expectError(() => readBundleArchive(bundle({ path: "a/../../b", data: "x" })), "bundle_bad_path", '"a/../../b"', "escapes the bundle root");
  });

  it('rejects ".." even when it would stay inside', () => {
    expectError(() => readBundleArchive(bundle({ path: "a/../b", data: "x" })), "bundle_bad_path", '"a/../b"');
  });

  it("rejects backslashes and empty segments", () => {
    expectError(() => readBundleArchive(bundle({ path: "a\\..\\b", data: "x" })), "bundle_bad_path", "backslash");
    expectError(() => readBundleArchive(bundle({ path: "a//b", data: "x" })), "bundle_bad_path", '"a//b"', "empty path segment");
    expectError(() => readBundleArchive(bundle({ path: "a/./b", data: "x" })), "bundle_bad_path", '"a/./b"');
  });

  it("rejects paths over maxPathLength and deeper than maxDepth", () => {
    expectError(
      () => readBundleArchive(bundle(pax({ path: "y".repeat(2000) }), { path: "z", data: "1" })),
      "bundle_bad_path",
      "path length limit of 1024",
    );
    expectError(
      () => readBundleArchive(bundle({ path: "a/b/c/d/e.txt", data: "1" }), { maxDepth: 4 }),
      "bundle_bad_path",
      '"a/b/c/d/e.txt"',
      "depth limit of 4",
    );
  });

  it("rejects duplicate entries", () => {
    expectError(
      () => readBundleArchive(bundle({ path: "a.txt", data: "1" }, { path: "./a.txt", data: "2" })),
      "bundle_duplicate",
      '"a.txt"',
    );
    expectError(() => readBundleArchive(bundle({ path: "d/", type: "5" }, { path: "d", type: "5" })), "bundle_duplicate", '"d"');
  });

  it("rejects entries below a file or a symlink", () => {
    expectError(
      () => readBundleArchive(bundle({ path: "a", data: "1" }, { path: "a/b", data: "2" })),
      "bundle_bad_entry",
      '"a/b" is inside "a"',
    );
    expectError(
      () => readBundleArchive(bundle({ path: "lnk", type: "2", linkpath: "sub" }, { path: "lnk/evil.php", data: "2" })),
      "bundle_bad_entry",
      '"lnk/evil.php" is inside "lnk", which is a symlink',
    );
  });
});

describe("readBundleArchive: links and special files", () => {
  it("rejects a symlink to /etc/passwd", () => {
    expectError(
      () => readBundleArchive(bundle({ path: "passwd", type: "2", linkpath: "/etc/passwd" })),
      "bundle_bad_entry",
      'symlink "passwd"',
      '"/etc/passwd"',
    );
  });

  it("rejects a symlink to ../outside", () => {
    expectError(
      () => readBundleArchive(bundle({ path: "a/out", type: "2", linkpath: "../../outside" })),
      "bundle_bad_entry",
      'symlink "a/out" points outside the bundle root',
    );
    expectError(
      () => readBundleArchive(bundle({ path: "out", type: "2", linkpath: "../outside" })),
      "bundle_bad_entry",
      '"../outside"',
    );
  });

  it("rejects symlinks that escape only together", () => {
    // a/up -> ".." is the root; l -> "a/up/../x" looks like "a/x" but really climbs above the root.
    expectError(
      () =>
        readBundleArchive(
          bundle({ path: "a/up", type: "2", linkpath: ".." }, { path: "l", type: "2", linkpath: "a/up/../x" }),
        ),
      "bundle_bad_entry",
      'symlink "l"',
    );
  });

  it("rejects symlink loops", () => {
    expectError(
      () => readBundleArchive(bundle({ path: "l1", type: "2", linkpath: "l2/x" }, { path: "l2", type: "2", linkpath: "l1/y" })),
      "bundle_bad_entry",
      "loop",
    );
  });

  it("rejects a hard link outside the root or to a missing file", () => {
    expectError(
      () => readBundleArchive(bundle({ path: "h", type: "1", linkpath: "../../etc/passwd" })),
      "bundle_bad_entry",
      'hard link "h"',
      '"../../etc/passwd"',
    );
    expectError(
      () => readBundleArchive(bundle({ path: "h", type: "1", linkpath: "later.txt" }, { path: "later.txt", data: "x" })),
      "bundle_bad_entry",
      'hard link "h" must point to an earlier regular file',
    );
  });

  it("rejects character devices, block devices and FIFOs", () => {
    expectError(() => readBundleArchive(bundle({ path: "dev/null", type: "3" })), "bundle_bad_entry", '"dev/null"', "CharacterDevice");
    expectError(() => readBundleArchive(bundle({ path: "dev/sda", type: "4" })), "bundle_bad_entry", '"dev/sda"', "BlockDevice");
    expectError(() => readBundleArchive(bundle({ path: "pipe", type: "6" })), "bundle_bad_entry", '"pipe"', "FIFO");
  });

  it("rejects types the tar parser would silently skip", () => {
    expectError(() => readBundleArchive(bundle({ path: "sparse", type: "S", data: "x" })), "bundle_bad_entry", '"sparse"');
    expectError(() => readBundleArchive(bundle({ path: "weird", type: "Z" })), "bundle_bad_entry", '"weird"');
  });
});

describe("readBundleArchive: size limits", () => {
  const tooLarge = (fn: () => unknown, ...fragments: string[]) => {
    const e = expectError(fn, "bundle_too_large", ...fragments);
    expect(e).toBeInstanceOf(PayloadTooLargeError);
    expect(e.status).toBe(413);
  };

  it("rejects too many files", () => {
    const many = Array.from({ length: 10 }, (_, i) => ({ path: `f${i}`, data: "x" }));
    tooLarge(() => readBundleArchive(bundle(...many), { maxFiles: 5 }), "bundle: file count exceeds limit of 5");
  });

  it("counts implied directories as entries", () => {
    tooLarge(() => readBundleArchive(bundle({ path: "a/b/c/d", data: "x" }), { maxFiles: 3 }), "file count exceeds limit of 3");
  });

  it("rejects a file over maxFileBytes", () => {
    tooLarge(
      () => readBundleArchive(bundle({ path: "big.bin", data: Buffer.alloc(2000) }), { maxFileBytes: 1000 }),
      '"big.bin"',
      "limit of 1000 bytes",
    );
  });

  it("checks the declared size before reading any data", () => {
    // Declares 1 TiB but carries nothing: must fail on the size, not on truncation or memory.
    tooLarge(() => readBundleArchive(bundle({ path: "huge", size: 2 ** 40 })), '"huge"', "per-file limit");
  });

  it("rejects a total over maxBytes", () => {
    tooLarge(
      () => readBundleArchive(bundle({ path: "a", data: Buffer.alloc(2000) }, { path: "b", data: Buffer.alloc(2000) }), { maxBytes: 3000 }),
      "total uncompressed size exceeds limit of 3000 bytes",
    );
  });

  it("counts hard-link copies against maxBytes", () => {
    const links = Array.from({ length: 5 }, (_, i) => ({ path: `h${i}`, type: "1", linkpath: "a" }));
    tooLarge(() => readBundleArchive(bundle({ path: "a", data: Buffer.alloc(1000) }, ...links), { maxBytes: 4000 }), "limit of 4000 bytes");
  });

  it("rejects an archive over maxArchiveBytes", () => {
    tooLarge(() => readBundleArchive(bundle({ path: "a", data: Buffer.alloc(10_000, 7) }), { maxArchiveBytes: 100 }), "limit of 100 bytes");
  });

  describe("gzip bombs", () => {
    // 48 MiB of zeros in one entry compresses to about 50 KB (ratio ~1000).
    const ZEROS = 48 * 1024 * 1024;
    let bomb: Buffer;
    beforeAll(() => {
      bomb = gzipSync(Buffer.concat([rawHeader({ path: "zeros" }, ZEROS), Buffer.alloc(ZEROS), Buffer.alloc(1024)]));
    });

    it("stops at the compression ratio limit", () => {
      expect(bomb.length).toBeLessThan(200_000);
      const e = expectError(() => readBundleArchive(bomb), "compression_bomb", "compression ratio limit of 200");
      expect(e.status).toBe(400);
    });

    it("stops at the uncompressed size limit when the ratio is allowed", () => {
      tooLarge(() => readBundleArchive(bomb, { maxRatio: 1e9, maxBytes: 1024 * 1024, maxFiles: 10 }), "uncompressed archive exceeds limit");
    });

    it("does not apply the ratio below 1 MiB", () => {
      const small = gzipSync(tar([MANIFEST, { path: "z", data: Buffer.alloc(900 * 1024) }]));
      expect(900 * 1024 / small.length).toBeGreaterThan(200);
      expect(paths(readBundleArchive(small))).toContain("file:z");
    });
  });
});

describe("readBundleArchive: corrupt input", () => {
  it("rejects corrupt gzip", () => {
    expectError(() => readBundleArchive(Buffer.from([0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9])), "bundle_corrupt", "gzip");
    const good = bundle({ path: "a", data: Buffer.alloc(5000, 1) });
    expectError(() => readBundleArchive(good.subarray(0, good.length >> 1)), "bundle_corrupt", "gzip");
  });

  it("rejects empty input and garbage", () => {
    expectError(() => readBundleArchive(Buffer.alloc(0)), "bundle_corrupt", "empty");
    expectError(() => readBundleArchive(Buffer.from("hello, not a tar")), "bundle_corrupt", "not a tar archive");
    expectError(() => readBundleArchive(Buffer.alloc(4096, 0x41)), "bundle_corrupt", "tar archive is corrupt");
  });

  it("rejects a tar truncated inside a file body", () => {
    const full = tar([MANIFEST, { path: "a", data: Buffer.alloc(5000, 1) }]);
    expectError(() => readBundleArchive(full.subarray(0, 2048)), "bundle_corrupt", "truncated");
    expectError(() => readBundleArchive(gzipSync(full.subarray(0, 2048))), "bundle_corrupt", "truncated");
  });

  it("rejects a tar cut off between blocks or without an end marker", () => {
    const full = tar([MANIFEST, { path: "a", data: "x" }]);
    expectError(() => readBundleArchive(full.subarray(0, 1500)), "bundle_corrupt", "512-byte blocks");
    expectError(() => readBundleArchive(tgz([MANIFEST, { path: "a", data: "x" }], { end: false })), "bundle_corrupt", "end-of-archive");
  });

  it("rejects a bad header checksum", () => {
    const t = tar([MANIFEST, { path: "a", data: "x" }]);
    t[512 * 2 + 10] = (t[512 * 2 + 10] ?? 0) ^ 0xff;
    expectError(() => readBundleArchive(t), "bundle_corrupt", "checksum");
  });

  it("rejects doubly compressed archives", () => {
    expectError(() => readBundleArchive(gzipSync(bundle())), "bundle_corrupt", "compressed twice");
  });
});

describe("loadBundle", () => {
  const toml = (text: string): RawEntry => ({ path: "zerocell.toml", data: text });

  it("requires zerocell.toml at the root", () => {
    expectError(() => loadBundle(tgz([{ path: "index.php", data: "<?php" }])), "manifest_missing", "zerocell.toml", "root");
    expectError(
      () => loadBundle(tgz([{ path: "app/zerocell.toml", data: 'runtime = "php"' }, { path: "app/index.php", data: "" }])),
      "manifest_missing",
      '"app/zerocell.toml"',
    );
  });

  it("rejects a zerocell.toml that is not a regular file", () => {
    expectError(
      () => loadBundle(tgz([{ path: "real.toml", data: 'runtime = "php"' }, { path: "zerocell.toml", type: "2", linkpath: "real.toml" }])),
      "manifest_invalid",
      "regular file",
    );
  });

  it("fills defaults and resolves the front controller", () => {
    const { manifest } = loadBundle(bundle({ path: "index.php", data: "<?php" }));
    expect(manifest.php).toEqual({ version: "8.3", documentRoot: ".", ini: {}, frontController: "index.php" });
    expect(loadBundle(bundle({ path: "other.php", data: "<?php" })).manifest.php.frontController).toBeNull();
  });

  it("follows a document root symlink inside the bundle", () => {
    const { manifest } = loadBundle(
      tgz([
        toml('runtime = "php"\n[php]\ndocument_root = "web"\nfront_controller = "app.php"\n'),
        { path: "dist/app.php", data: "<?php" },
        { path: "web", type: "2", linkpath: "dist" },
      ]),
    );
    expect(manifest.php.documentRoot).toBe("web");
    expect(manifest.php.frontController).toBe("app.php");
  });

  it("rejects a missing document_root", () => {
    expectError(
      () => loadBundle(tgz([toml('runtime = "php"\n[php]\ndocument_root = "public"\n'), { path: "index.php", data: "" }])),
      "manifest_invalid",
      'php.document_root: "public" does not exist',
    );
  });

  it("rejects a document_root that is a file", () => {
    expectError(
      () => loadBundle(tgz([toml('runtime = "php"\n[php]\ndocument_root = "public"\n'), { path: "public", data: "" }])),
      "manifest_invalid",
      "php.document_root",
      "not a directory",
    );
  });

  it("rejects a front_controller that does not exist", () => {
    expectError(
      () => loadBundle(tgz([toml('runtime = "php"\n[php]\nfront_controller = "app.php"\n'), { path: "index.php", data: "" }])),
      "manifest_invalid",
      'php.front_controller: "app.php"',
    );
  });

  it("rejects a manifest over 64 KiB", () => {
    expectError(
      () => loadBundle(tgz([toml('runtime = "php"\n#' + "x".repeat(70_000) + "\n")])),
      "manifest_invalid",
      "limit of 65536 bytes",
    );
  });

  it("passes archive errors through", () => {
    expectError(() => loadBundle(bundle({ path: "../x", data: "" })), "bundle_bad_path", '"../x"');
  });
});

describe("packDirectory leaves out dotfiles, .git, node_modules and .zerocellignore's patterns", () => {
  it("skips them by default, honours .zerocellignore (with ! re-includes) and lists what it left out", async () => {
    const dir = await mkdtemp(join(tmpdir(), "zc-pack-ignore-"));
    try {
      const files: Record<string, string> = {
        "zerocell.toml": 'runtime = "php"\n',
        "index.php": "<?php echo 1;",
        ".env": "DB_PASSWORD=hunter2",
        ".git/config": "[core]",
        "node_modules/x/index.js": "1",
        "lib/.secret": "s",
        "lib/keep.php": "<?php",
        "build/out.o": "o",
        "notes.log": "log",
        ".well-known/security.txt": "Contact: x",
        ".zerocellignore": "build/\n*.log\n!.well-known/\nzerocell.toml\n",
      };
      for (const [p, d] of Object.entries(files)) {
        await mkdir(join(dir, p, ".."), { recursive: true });
        await writeFile(join(dir, p), d);
      }
      const { archive, skipped } = await packDirectoryReport(dir);
      expect(skipped).toEqual([".env", ".git/", ".zerocellignore", "build/", "lib/.secret", "node_modules/", "notes.log"]);
      const { image } = loadBundle(archive);
      // zerocell.toml is never left out, even when .zerocellignore names it.
      expect(paths(image).filter((p) => p.startsWith("file:"))).toEqual(["file:.well-known/security.txt", "file:index.php", "file:lib/keep.php", "file:zerocell.toml"]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("parseManifest", () => {
  it("fills every default", () => {
    expect(parseManifest('runtime = "php"')).toEqual({
      runtime: "php",
      python: { app: "app:application", path: [] },
      x86: { program: "bin/app" },
      php: { version: "8.3", documentRoot: ".", ini: {}, frontController: null },
      routes: [],
      limits: { timeoutMs: 10000, memoryMb: 128, maxBodyBytes: 10485760, dataMb: 16 },
      warmup: [],
      health: ["/"],
    });
  });

  it("reports TOML syntax errors with line and column", () => {
    manifestError('runtime = "php"\nfoo = = 1\n', "manifest_invalid", "invalid TOML at line 2, column");
  });

  it("rejects an unknown runtime", () => {
    manifestError('runtime = "ruby"', "manifest_invalid", "manifest: runtime: must be one of");
    manifestError("[php]", "manifest_invalid", "manifest: runtime: is required");
  });

  it("accepts python and x86 with their tables, naming unknown keys", () => {
    expect(parseManifest('runtime = "python"\n[python]\napp = "web:app"\npath = ["vendor"]\n').python).toEqual({ app: "web:app", path: ["vendor"] });
    manifestError('runtime = "python"\n[python]\nmodule = "x"', "manifest_invalid", "manifest: python.module: unknown key");
    expect(parseManifest('runtime = "x86"\n[x86]\nprogram = "bin/server"\n').x86).toEqual({ program: "bin/server" });
    manifestError('runtime = "x86"\n[x86]\nbinary = "x"', "manifest_invalid", "manifest: x86.binary: unknown key");
  });

  it("rejects unknown keys, naming them", () => {
    manifestError('runtime = "php"\nfoo = 1', "manifest_invalid", "manifest: foo: unknown key");
    manifestError('runtime = "php"\n[php]\ndocroot = "x"', "manifest_invalid", "manifest: php.docroot: unknown key", "document_root");
    manifestError('runtime = "php"\n[[routes]]\nhots = "a.b"', "manifest_invalid", "manifest: routes[0].hots: unknown key");
  });

  it("rejects a bad php version and document_root", () => {
    manifestError('runtime = "php"\n[php]\nversion = 8.3', "manifest_invalid", "php.version");
    manifestError('runtime = "php"\n[php]\ndocument_root = "../x"', "manifest_invalid", 'php.document_root: "../x" escapes');
    manifestError('runtime = "php"\n[php]\ndocument_root = "/var/www"', "manifest_invalid", "php.document_root", "absolute");
  });

  it("normalises document_root", () => {
    expect(parseManifest('runtime = "php"\n[php]\ndocument_root = "./public/"').php.documentRoot).toBe("public");
    expect(parseManifest('runtime = "php"\n[php]\ndocument_root = "./"').php.documentRoot).toBe(".");
  });

  it("rejects a bad route host", () => {
    manifestError('runtime = "php"\n[[routes]]\nhost = "bad_host!"', "manifest_invalid", "manifest: routes[0].host:", '"bad_host!"');
    manifestError('runtime = "php"\n[[routes]]\npath = "/"', "manifest_invalid", "manifest: routes[0].host: is required");
    manifestError('runtime = "php"\n[[routes]]\nhost = "a.b"\npath = "nope"', "manifest_invalid", "routes[0].path:");
  });

  it("rejects a route key that is not a path parameter", () => {
    manifestError(
      'runtime = "php"\n[[routes]]\nhost = "a.b"\npath = "/posts/:slug"\nkey = "id"',
      "manifest_invalid",
      'manifest: routes[0].key: "id" is not a :param of path "/posts/:slug"',
    );
  });

  it("rejects bad route modes, too many routes and duplicate routes", () => {
    manifestError('runtime = "php"\n[[routes]]\nhost = "a.b"\nmode = "eager"', "manifest_invalid", "routes[0].mode");
    const many = Array.from({ length: 65 }, (_, i) => `[[routes]]\nhost = "h${i}.example"`).join("\n");
    manifestError(`runtime = "php"\n${many}`, "manifest_invalid", "routes: must have at most 64 entries");
    manifestError(
      'runtime = "php"\n[[routes]]\nhost = "a.b"\npath = "/p/:x"\n[[routes]]\nhost = "A.B"\npath = "/p/:y"',
      "manifest_invalid",
      "routes[1]",
      "routes[0]",
    );
  });

  it("rejects bad limits", () => {
    manifestError(
      'runtime = "php"\n[limits]\ntimeout_ms = 0',
      "manifest_invalid",
      "manifest: limits.timeout_ms: must be an integer between 1 and 300000",
    );
    manifestError('runtime = "php"\n[limits]\nmemory_mb = 1.5', "manifest_invalid", "limits.memory_mb: must be an integer between 16 and 2048");
    manifestError('runtime = "php"\n[limits]\nmax_body_bytes = "10M"', "manifest_invalid", "limits.max_body_bytes");
    manifestError('runtime = "php"\n[limits]\ncpu = 1', "manifest_invalid", "limits.cpu: unknown key");
  });

  it("rejects forbidden and malformed php.ini keys", () => {
    manifestError(
      'runtime = "php"\n[php.ini]\ndisable_functions = ""',
      "manifest_invalid",
      'php.ini.disable_functions: "disable_functions" cannot be set',
    );
    manifestError('runtime = "php"\n[php.ini]\n"opcache.enable" = 0', "manifest_invalid", 'php.ini["opcache.enable"]');
    manifestError('runtime = "php"\n[php.ini]\nmemory_limit = "1G"', "manifest_invalid", "memory_limit");
    manifestError('runtime = "php"\n[php.ini]\nDisplay_Errors = "1"', "manifest_invalid", '"Display_Errors" is not a php.ini key');
    manifestError('runtime = "php"\n[php.ini]\n"__proto__" = "1"', "manifest_invalid", "__proto__");
    manifestError('runtime = "php"\n[php.ini]\nerror_reporting = [1]', "manifest_invalid", "php.ini.error_reporting: must be a string, number or boolean");
    manifestError(
      'runtime = "php"\n[php.ini]\nprecision = "14\\ndisable_functions="',
      "manifest_invalid",
      "php.ini.precision: must not contain control characters",
    );
  });

  it("converts php.ini values to strings and allows include_path", () => {
    const m = parseManifest('runtime = "php"\n[php.ini]\ndisplay_errors = true\nlog_errors = false\nprecision = 17\ninclude_path = "."');
    expect(m.php.ini).toEqual({ display_errors: "1", log_errors: "0", precision: "17", include_path: "." });
  });

  it("validates warmup paths", () => {
    expect(parseManifest('runtime = "php"\nwarmup = ["/", "/a?b=1"]').warmup).toEqual(["/", "/a?b=1"]);
    manifestError('runtime = "php"\nwarmup = ["index.php"]', "manifest_invalid", 'warmup[0]: "index.php"');
    manifestError(`runtime = "php"\nwarmup = [${Array.from({ length: 17 }, () => '"/"').join(",")}]`, "manifest_invalid", "warmup: must have at most 16");
  });

  it("rejects manifest text over 64 KiB", () => {
    manifestError('runtime = "php"\n#' + "x".repeat(65536), "manifest_invalid", "limit of 65536 bytes");
  });
});

describe("encodeImage / decodeImage", () => {
  const image: BundleImage = readBundleArchive(
    bundle({ path: "a/b.txt", data: "hello" }, { path: "a/l", type: "2", linkpath: "b.txt" }, { path: "e", data: "" }),
  );
  const encoded = encodeImage(image);

  it("round-trips", () => {
    expect(decodeImage(encoded)).toEqual(image);
    expect(decodeImage(encodeImage({ entries: [], totalBytes: 0 }))).toEqual({ entries: [], totalBytes: 0 });
  });

  it("rejects truncated buffers", () => {
    for (const n of [0, 5, 11, 12, 40, encoded.length - 1]) {
      expectError(() => decodeImage(encoded.subarray(0, n)), "image_corrupt", "image:");
    }
  });

  it("rejects garbage and trailing bytes", () => {
    expectError(() => decodeImage(Buffer.from("definitely not an image at all")), "image_corrupt", "magic");
    expectError(() => decodeImage(Buffer.concat([encoded, Buffer.from("x")])), "image_corrupt", "trailing");
    const hugeHeader = Buffer.from(encoded);
    hugeHeader.writeUInt32BE(0xffffffff, 8);
    expectError(() => decodeImage(hugeHeader), "image_corrupt", "header length");
  });

  const forge = (header: unknown, data = Buffer.alloc(0)) => {
    const json = Buffer.from(JSON.stringify(header));
    const prefix = Buffer.from(encoded.subarray(0, 12));
    prefix.writeUInt32BE(json.length, 8);
    return Buffer.concat([prefix, json, data]);
  };

  it("rejects malformed headers", () => {
    expectError(() => decodeImage(forge([1, 2])), "image_corrupt", "entries");
    expectError(() => decodeImage(forge({ totalBytes: 0, entries: [{ path: "../x", kind: "dir", mode: 0o755 }] })), "image_corrupt", '"../x"');
    expectError(() => decodeImage(forge({ totalBytes: 0, entries: [{ path: "x", kind: "fifo", mode: 0o644 }] })), "image_corrupt", "kind");
    expectError(() => decodeImage(forge({ totalBytes: 0, entries: [{ path: "x", kind: "file", mode: 0o4755, size: 0 }] })), "image_corrupt", "mode");
    expectError(() => decodeImage(forge({ totalBytes: 5, entries: [{ path: "x", kind: "file", mode: 0o644, size: -1 }] })), "image_corrupt", "size");
    expectError(
      () => decodeImage(forge({ totalBytes: 9, entries: [{ path: "x", kind: "file", mode: 0o644, size: 9 }] }, Buffer.from("abc"))),
      "image_corrupt",
      "needs 9 bytes",
    );
    expectError(
      () => decodeImage(forge({ totalBytes: 7, entries: [{ path: "x", kind: "file", mode: 0o644, size: 3 }] }, Buffer.from("abc"))),
      "image_corrupt",
      "totalBytes",
    );
    expectError(
      () => decodeImage(forge({ totalBytes: 0, entries: [{ path: "l", kind: "symlink", mode: 0o777, target: "../../etc" }] })),
      "image_corrupt",
      '"l"',
    );
    expectError(() => decodeImage(forge({ totalBytes: 0, entries: [{ path: "a/b", kind: "dir", mode: 0o755 }] })), "image_corrupt", "parent");
  });
});

it("exports the default limits", () => {
  expect(DEFAULT_BUNDLE_LIMITS).toEqual({
    maxArchiveBytes: 64 * 1024 * 1024,
    maxBytes: 256 * 1024 * 1024,
    maxFiles: 10000,
    maxFileBytes: 64 * 1024 * 1024,
    maxRatio: 200,
    maxPathLength: 1024,
    maxDepth: 32,
  });
});
