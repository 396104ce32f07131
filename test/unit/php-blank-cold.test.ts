/**
 * A spare's blank PHP instance serves a deploy's cold start when it was started exactly as that
 * deployment's would be (same php.ini — hence the same walls and opcache size —, output limit,
 * version, no environment), and never otherwise: an app with env vars or its own php.ini settings
 * starts its own runtime. Either way the instance answers with the deployment's settings.
 */
import { describe, it, expect } from "vitest";
import { PhpEngine } from "../../src/runtime/php/index.js";
import type { BundleImage } from "../../src/bundle/index.js";
import { parseManifest } from "../../src/runtime/manifest.js";
import type { EngineRequest } from "../../src/runtime/engine.js";

const page = `<?php echo json_encode(['env' => getenv('GREETING'), 'mem' => ini_get('memory_limit'), 'prec' => ini_get('precision'), 'basedir' => ini_get('open_basedir')]);`;
const image: BundleImage = { entries: [{ path: "index.php", kind: "file", mode: 0o644, data: Buffer.from(page) }], totalBytes: page.length };
const req: EngineRequest = { method: "GET", url: "/", headers: [["host", "localhost"]], body: new Uint8Array(0), remoteAddr: "127.0.0.1", remotePort: 0, https: false, serverName: "localhost", serverPort: 80, scriptName: "", params: {} };

async function run(manifestText: string, env: Record<string, string> = {}): Promise<{ spare: boolean; out: Record<string, unknown> }> {
  const engine = new PhpEngine();
  await engine.preinstantiate();
  const prepared = await engine.prepare({ deploymentId: "d", manifest: parseManifest(manifestText), image, env });
  const inst = await engine.instantiate(prepared);
  try {
    const res = await inst.handle(req);
    expect(res.status).toBe(200);
    return { spare: inst.spareEngine === true, out: JSON.parse(Buffer.from(res.body).toString()) as Record<string, unknown> };
  } finally {
    inst.dispose();
  }
}

describe("php: a cold start on the spare's blank instance", () => {
  it("takes the blank when the deployment's runtime would be started the same way", async () => {
    const r = await run(`runtime = "php"\n`);
    expect(r.spare).toBe(true);
    expect(r.out.env).toBe(false);
    expect(r.out.basedir).not.toBe("");
  }, 120_000);

  it("starts its own runtime for an app with env vars (environ is set at the start) or its own php.ini", async () => {
    const withEnv = await run(`runtime = "php"\n`, { GREETING: "hello" });
    expect(withEnv.spare).toBe(false);
    expect(withEnv.out.env).toBe("hello");
    const withIni = await run(`runtime = "php"\n[php.ini]\nprecision = "10"\n`);
    expect(withIni.spare).toBe(false);
    expect(withIni.out.prec).toBe("10");
  }, 120_000);
});
