/**
 * "Adding a runtime is one folder and one registry line" (docs/architecture.md): a runtime that
 * exists only in test/fixtures/echo-runtime, added to a copy of the registry with one line, gets
 * its manifest table parsed, checked and refused like the built-in ones, with no change to
 * src/bundle/manifest.ts (which names no runtime).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createManifestParser } from "../../src/bundle/index.js";
import { manifestSectionsOf, RUNTIMES } from "../../src/runtime/registry.js";
import { parseManifest } from "../../src/runtime/manifest.js";
import { echoRuntime } from "../fixtures/echo-runtime/descriptor.js";
import { ROOT } from "../helpers/server.js";

// The one line: src/runtime/registry.ts's RUNTIMES plus `echo: echoRuntime`.
const runtimes = { ...RUNTIMES, echo: echoRuntime };
const parser = createManifestParser(manifestSectionsOf(runtimes));

describe("adding a runtime", () => {
  it("parses the new runtime's table, with its defaults, next to the built-in ones", () => {
    const m = parser.parse('runtime = "echo"\n[echo]\ngreeting = "bonjour"\n') as unknown as Record<string, unknown>;
    expect(m.runtime).toBe("echo");
    expect(m.echo).toEqual({ greeting: "bonjour" });
    // Every table is present, as for the built-in runtimes.
    expect(m.php).toMatchObject({ documentRoot: "." });
    expect((parser.parse('runtime = "php"\n') as unknown as Record<string, unknown>).echo).toEqual({ greeting: "hello" });
    expect(runtimes.echo.buildId(parser.parse('runtime = "echo"\n'))).toBe("echo-5");
  });

  it("refuses the new table's bad fields with messages that name the field", () => {
    const fail = (toml: string) => {
      try {
        parser.parse(toml);
      } catch (e) {
        return (e as Error).message;
      }
      throw new Error("parsed");
    };
    expect(fail('runtime = "echo"\n[echo]\ngreting = "x"\n')).toBe("manifest: echo.greting: unknown key (allowed: greeting)");
    expect(fail('runtime = "echo"\n[echo]\ngreeting = 3\n')).toBe("manifest: echo.greeting: must be a string");
    expect(fail(`runtime = "echo"\n[echo]\ngreeting = "${"x".repeat(65)}"\n`)).toBe("manifest: echo.greeting: must be at most 64 characters");
    expect(fail('runtime = "ech"\n')).toBe('manifest: runtime: must be one of "php", "python", "x86", "echo"');
    expect(fail('runtime = "echo"\n[nope]\n')).toMatch(/^manifest: nope: unknown key \(allowed: runtime, php, python, x86, echo, routes, /);
  });

  it("the built-in registry does not know it, and the bundle's manifest parser names no runtime", () => {
    expect(() => parseManifest('runtime = "echo"\n')).toThrow('manifest: runtime: must be one of "php", "python", "x86"');
    expect(() => parseManifest('runtime = "php"\n[echo]\n')).toThrow(/manifest: echo: unknown key/);
    const source = readFileSync(join(ROOT, "src/bundle/manifest.ts"), "utf8").replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, "");
    expect(source).not.toMatch(/\b(php|python|x86)\b/i);
  });
});
