import type { BundleImage, Manifest } from "../../src/bundle/index.js";
import { PythonEngine } from "../../src/runtime/python/index.js";
import { runEngineContract } from "./engine.contract.js";

/** The contract's fixture app as a WSGI application (paths: see engine.contract.ts). */
const APP = String.raw`
import random


def application(environ, start_response):
    path = environ["PATH_INFO"]
    text = [("Content-Type", "text/plain; charset=utf-8")]
    if path == "/echo":
        n = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(n)
        start_response("200 OK", text + [("X-Method", environ["REQUEST_METHOD"]), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
        return [body]
    if path == "/tmp-write":
        with open("/tmp/contract", "w") as f:
            f.write("left")
        start_response("200 OK", text)
        return [b"wrote"]
    if path == "/tmp-read":
        try:
            with open("/tmp/contract") as f:
                data = f.read().encode()
        except FileNotFoundError:
            data = b"none"
        start_response("200 OK", text)
        return [data]
    if path == "/rand":
        # The module-level PRNG, not os.urandom: this is the state a snapshot would repeat.
        start_response("200 OK", text)
        return [random.randbytes(16).hex().encode()]
    if path == "/fail":
        raise RuntimeError("contract failure")
    if path == "/memory-bomb":
        hog = []
        while True:
            hog.append(bytearray(1 << 20))
    start_response("200 OK", text)
    return [b"hello"]
`;

function manifest(python: { app: string; path: string[] }): Manifest {
  return {
    runtime: "python",
    python,
    routes: [],
    limits: { timeoutMs: 10_000, memoryMb: 32, maxBodyBytes: 10 * 1024 * 1024, dataMb: 16 },
    warmup: [],
  } as unknown as Manifest;
}

function image(files: Record<string, string>): BundleImage {
  const entries = Object.entries(files).map(([path, text]) => ({ path, kind: "file" as const, mode: 0o644, data: Buffer.from(text) }));
  return { entries, totalBytes: entries.reduce((n, e) => n + e.data.length, 0) };
}

runEngineContract("python", async () => {
  const img = image({ "app.py": APP });
  return {
    engine: new PythonEngine({ log: () => {} }),
    manifest: manifest({ app: "app:application", path: [] }),
    image: img,
    // The app module is not in the bundle.
    invalid: { manifest: manifest({ app: "missing:application", path: [] }), image: img },
    daemonExhausts: false,
  };
});
