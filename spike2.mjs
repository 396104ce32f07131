import { loadPHPRuntime, PHP, PHPRequestHandler } from '@php-wasm/universal';
import { getPHPLoaderModule } from '@php-wasm/node-8-3';
import { createSpawnHandler } from '@php-wasm/util';
const id = await loadPHPRuntime(await getPHPLoaderModule(), { processId: 1 });
const php = new PHP(id);
await php.setSpawnHandler(createSpawnHandler((argv, p) => { p.stderr('zerocell: no processes'); p.exit(127); }));
php.mkdirTree('/app/public');
const h = new PHPRequestHandler({ php, documentRoot: '/app/public', absoluteUrl: 'https://blog.localhost' });
const snippets = {
  hello: `echo "hello ", PHP_VERSION, " ", $_SERVER['REQUEST_URI'], " https=", $_SERVER['HTTPS'] ?? '-', " ra=", $_SERVER['REMOTE_ADDR'] ?? '-';`,
  shell: `var_dump(shell_exec('id'));`,
  passwd: `var_dump(@file_get_contents('/etc/passwd'));`,
  scandir: `echo implode(',', scandir('/')), "\\n", implode(',', scandir('/internal/shared'));`,
  sock: `$e=0;$s=''; var_dump(@fsockopen('127.0.0.1', 22, $e, $s, 1), $e, $s);`,
  streamsock: `var_dump(@stream_socket_client('tcp://127.0.0.1:22', $e, $s, 1));`,
  http: `var_dump(@file_get_contents('http://127.0.0.1:1/'));`,
  exts: `echo implode(',', get_loaded_extensions()), "\\n", ini_get('disable_functions');`,
  after: `echo "still alive";`,
};
for (const [name, code] of Object.entries(snippets)) {
  php.writeFile('/app/public/t.php', '<?php ' + code);
  try {
    const r = await h.request({ url: '/t.php?x=1', headers: { host: 'blog.localhost' } });
    console.log(name, r.httpStatusCode, JSON.stringify(r.text.slice(0, 600)));
  } catch (e) { console.log(name, 'THROW', e?.message ?? e, e?.errno); }
}
