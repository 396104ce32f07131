/**
 * Opcache is sized for the app and holds every PHP file of the bundle before the snapshot is
 * taken: the warm-up compiles what it reaches, the precompile step (PhpInstance.precompile) the
 * rest. So no request of a snapshot instance compiles a script that was in the bundle, whichever
 * page it asks for. Read from inside the app: opcache_get_status() at the end of each page.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { startServer, fetchApp, writeBundle, type TestServer } from "../helpers/server.js";

/** Prints opcache's counters as JSON (after the page's own includes). */
const STATUS = `function zc_status(array $extra = []): void {
  $s = opcache_get_status(false);
  echo json_encode($extra + ['misses' => $s['opcache_statistics']['misses'], 'cached' => $s['opcache_statistics']['num_cached_scripts'], 'full' => $s['cache_full'], 'mb' => (int) ini_get('opcache.memory_consumption')]);
}`;

/** A class per file under lib/classes, loaded by an autoloader: files the warm-up never reaches. */
const CLASSES = Object.fromEntries(
  Array.from({ length: 40 }, (_, i) => [`lib/classes/Model${i}.php`, `<?php\nclass Model${i} {\n${Array.from({ length: 30 }, (_, j) => `  public function m${j}(int $x): int { return $x * ${j} + ${i}; }`).join("\n")}\n}\n`]),
);

const FILES: Record<string, string> = {
  "zerocell.toml": `runtime = "php"\nwarmup = ["/"]\n[php]\ndocument_root = "public"\n[[routes]]\nhost = "opc.localhost"\npath = "/"\nmode = "snapshot"\n`,
  "lib/status.php": `<?php\n${STATUS}\n`,
  "lib/autoload.php": `<?php\nspl_autoload_register(function ($c) { $f = __DIR__ . '/classes/' . $c . '.php'; if (is_file($f)) require $f; });\n`,
  // The warm-up's page: reaches only itself and lib/status.php.
  "public/index.php": `<?php\nrequire __DIR__ . '/../lib/status.php';\nzc_status(['page' => 'index']);\n`,
  "public/a.php": `<?php\nrequire __DIR__ . '/../lib/status.php';\nrequire __DIR__ . '/../lib/autoload.php';\n$t = 0;\nfor ($i = 0; $i < 20; $i++) { $c = "Model$i"; $t += (new $c())->m3($i); }\nzc_status(['page' => 'a', 't' => $t]);\n`,
  "public/b.php": `<?php\nrequire __DIR__ . '/../lib/status.php';\nrequire __DIR__ . '/../lib/autoload.php';\nrequire __DIR__ . '/../lib/helpers.php';\n$t = 0;\nfor ($i = 20; $i < 40; $i++) { $c = "Model$i"; $t += (new $c())->m5($i); }\nzc_status(['page' => 'b', 't' => helper_double($t)]);\n`,
  "lib/helpers.php": "<?php\nfunction helper_double(int $x): int { return 2 * $x; }\n",
  // Never run by anyone: compiled all the same.
  "lib/unused.php": "<?php\nfunction unused_fn() { return 1; }\n",
  ...CLASSES,
};

interface Status {
  page: string;
  misses: number;
  cached: number;
  full: boolean;
  mb: number;
}

describe("opcache holds the whole bundle before the snapshot", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer(["--no-spare-hosts"]);
    await server.cli(["deploy", writeBundle(FILES), "--app", "opc"]);
  });
  afterAll(async () => {
    expect(await server.stop()).toBe(0);
  });

  it("no request of a snapshot instance compiles a script of the bundle (misses stay at the snapshot's count)", async () => {
    const get = async (path: string): Promise<Status> => {
      const r = await fetchApp(server, "opc.localhost", path);
      expect(r.status, r.text).toBe(200);
      return JSON.parse(r.text) as Status;
    };
    const seen: Status[] = [];
    for (const path of ["/", "/a.php", "/b.php", "/a.php", "/", "/b.php"]) seen.push(await get(path));
    const base = seen[0]!;
    // Every PHP file of the bundle (45) plus the engine's own scripts is in the cache.
    expect(base.cached).toBeGreaterThanOrEqual(Object.keys(FILES).filter((f) => f.endsWith(".php")).length);
    expect(base.full).toBe(false);
    // Each request starts from the snapshot: a script compiled in a request would show as one
    // more miss (and one more cached script) in that request's answer.
    for (const s of seen) {
      expect({ page: s.page, misses: s.misses, cached: s.cached }).toEqual({ page: s.page, misses: base.misses, cached: base.cached });
    }
  });
});
