/**
 * The PHP probe app of the escape tests (public/run.php). The runner evaluates the request body. `t(name, fn)` records what fn returned (resources and
 * objects by type) or threw, plus the last PHP warning; the results are printed as JSON. A fatal
 * error (memory, time) is printed by the shutdown function.
 */
export const RUNNER = `<?php
$GLOBALS['__r'] = [];
function show($v) {
  if (is_resource($v)) return 'resource(' . get_resource_type($v) . ')';
  if (is_object($v)) return 'object(' . get_class($v) . ')';
  if (is_array($v)) return array_map('show', $v);
  return $v;
}
function t(string $name, callable $f): void {
  error_clear_last();
  try {
    $v = $f();
    $GLOBALS['__r'][$name] = ['value' => show($v), 'warning' => error_get_last()['message'] ?? null];
  } catch (\\Throwable $e) {
    $GLOBALS['__r'][$name] = ['throw' => get_class($e) . ': ' . $e->getMessage()];
  }
  error_clear_last();
}
register_shutdown_function(function () {
  $e = error_get_last();
  if ($e !== null && in_array($e['type'], [E_ERROR, E_CORE_ERROR, E_COMPILE_ERROR], true)) echo "\\nFATAL: ", $e['message'], "\\n";
});
try {
  eval(file_get_contents('php://input'));
} catch (\\Throwable $e) {
  echo "THROW ", get_class($e), ": ", $e->getMessage(), "\\n";
}
echo json_encode($GLOBALS['__r'], JSON_INVALID_UTF8_SUBSTITUTE | JSON_PARTIAL_OUTPUT_ON_ERROR);
`;

/** What `t()` recorded for one attempt. */
export type Outcome = { value?: unknown; warning?: string | null; throw?: string };


/**
 * zerocell.toml for a runner app. The warm-up runs the runner once: in snapshot mode an instance
 * whose warm-up executes no PHP (here "/" would be a 404) takes its snapshot before php-wasm's
 * lazy start-up, and every second request on it then crashes ("null function or function
 * signature mismatch") — a snapshot bug reported separately, not an escape.
 */
export function runnerManifest(host: string, extra = "", comment = "", mode = "snapshot"): string {
  return `# ${comment}\nruntime = "php"\nwarmup = ["/run.php"]\n[php]\ndocument_root = "public"\n${extra}\n[[routes]]\nhost = "${host}"\npath = "/"\nmode = "${mode}"\n`;
}

/** The JSON a runner printed last (after any output of the code itself). */
export function runnerJson(text: string): Record<string, Outcome> {
  const start = text.lastIndexOf("\n{") + 1;
  try {
    return JSON.parse(text.slice(start)) as Record<string, Outcome>;
  } catch {
    throw new Error(`runner output is not JSON: ${text.slice(0, 2000)}`);
  }
}
