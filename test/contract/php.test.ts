import { PhpEngine } from "../../src/runtime/php/index.js";
import { readBundleArchive, type BundleImage } from "../../src/bundle/index.js";
import { parseManifest } from "../../src/runtime/manifest.js";
import { runEngineContract } from "./engine.contract.js";
import { packDirectory } from "../../src/bundle/index.js";
import { writeBundle } from "../helpers/server.js";

const APP = `<?php
$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
switch ($path) {
  case '/echo': header('x-method: ' . $_SERVER['REQUEST_METHOD']); setcookie('a', '1'); setcookie('b', '2'); echo file_get_contents('php://input'); break;
  case '/tmp-write': file_put_contents('/tmp/contract', 'left'); echo 'wrote'; break;
  case '/tmp-read': echo @file_get_contents('/tmp/contract') ?: 'none'; break;
  case '/rand': echo bin2hex(random_bytes(16)); break;
  case '/fail': throw new RuntimeException('contract failure');
  case '/memory-bomb': $a = []; while (true) { $a[] = str_repeat('x', 1 << 20); } break;
  default: echo 'hello';
}
`;

runEngineContract("php", async () => {
  const manifestText = `runtime = "php"\n[php]\ndocument_root = "public"\nfront_controller = "index.php"\n[limits]\nmemory_mb = 32\n`;
  const image = readBundleArchive(await packDirectory(writeBundle({ "zerocell.toml": manifestText, "public/index.php": APP })));
  const manifest = parseManifest(manifestText);
  const invalidManifest = parseManifest(`runtime = "php"\n[php]\ndocument_root = "missing"\n`);
  return { engine: new PhpEngine(), manifest, image, invalid: { manifest: invalidManifest, image: image as BundleImage }, daemonExhausts: true, daemonRecycles: true };
});
