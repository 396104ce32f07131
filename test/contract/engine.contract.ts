/**
 * The engine contract suite: the same cases run against every engine (PHP now; Python and x86
 * will add a fixture and one line). Each engine supplies a small fixture app with these paths:
 *   /echo          200, body = request body, header x-method = method, two set-cookie headers
 *   /tmp-write     writes a file in /tmp and answers "wrote"
 *   /tmp-read      answers the file's content, or "none"
 *   /rand          answers 16 random bytes as hex
 *   /fail          the guest fails (uncaught error) → 500
 *   /memory-bomb   allocates far beyond the memory limit
 *   /hello         200 "hello"
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { WORN_AT, type Engine, type EngineInstance, type EngineRequest } from "../../src/runtime/engine.js";
import type { BundleImage, Manifest } from "../../src/bundle/index.js";

export interface EngineFixture {
  engine: Engine;
  manifest: Manifest;
  image: BundleImage;
  /** A manifest+image the engine's validate must refuse. */
  invalid: { manifest: Manifest; image: BundleImage };
  /**
   * Whether a daemon instance serving /hello without resets runs out of something only a new
   * instance frees within 4,500 requests (PHP: php-wasm leaks a pipe per request), so the daemon
   * case must see it ask to be replaced; otherwise it must never ask.
   */
  daemonExhausts: boolean;
  /** Whether what wears it out is given back by a reset (recycleDue), so the host recycles it instead of replacing it. */
  daemonRecycles?: boolean;
}

export function request(url: string, init: Partial<EngineRequest> = {}): EngineRequest {
  return {
    method: "GET",
    url,
    headers: [["host", "contract.localhost"]],
    body: new Uint8Array(0),
    remoteAddr: "127.0.0.1",
    remotePort: 40000,
    https: true,
    serverName: "contract.localhost",
    serverPort: 443,
    scriptName: "",
    params: {},
    ...init,
  };
}

const text = (b: Uint8Array) => Buffer.from(b).toString("utf8");

export function runEngineContract(name: string, makeFixture: () => Promise<EngineFixture>): void {
  describe(`engine contract: ${name}`, () => {
    let fx: EngineFixture;
    let inst: EngineInstance;

    beforeAll(async () => {
      fx = await makeFixture();
      const prepared = await fx.engine.prepare({ deploymentId: "contract", manifest: fx.manifest, image: fx.image });
      inst = await fx.engine.instantiate(prepared);
      await inst.handle(request("/hello"));
      inst.snapshot();
    });
    afterAll(() => inst?.dispose());

    it("validate refuses an invalid bundle with a BundleError", () => {
      let err: unknown;
      try {
        fx.engine.validate(fx.invalid.manifest, fx.invalid.image);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(Error);
      expect((err as { status?: number }).status).toBe(400);
      expect(typeof (err as { code?: string }).code).toBe("string");
    });

    it("handles a request: status, method, body, repeated headers", async () => {
      const res = await inst.handle(request("/echo", { method: "POST", body: Buffer.from("ping body"), headers: [["host", "contract.localhost"], ["content-type", "text/plain"], ["content-length", "9"]] }));
      expect(res.status).toBe(200);
      expect(text(res.body)).toBe("ping body");
      expect(res.headers).toContainEqual(["x-method", "POST"]);
      expect(res.headers.filter(([k]) => k === "set-cookie").length).toBe(2);
      await inst.reset();
    });

    it("reset: a request sees nothing the previous one left in /tmp", async () => {
      expect(text((await inst.handle(request("/tmp-write"))).body)).toBe("wrote");
      await inst.reset();
      expect(text((await inst.handle(request("/tmp-read"))).body)).toBe("none");
      await inst.reset();
    });

    it("without reset (daemon), state carries over", async () => {
      await inst.handle(request("/tmp-write"));
      expect(text((await inst.handle(request("/tmp-read"))).body)).not.toBe("none");
      await inst.reset();
    });

    it("every request after a reset draws fresh randomness", async () => {
      const seen = new Set<string>();
      for (let i = 0; i < 5; i++) {
        const r = text((await inst.handle(request("/rand"))).body);
        expect(r).toMatch(/^[0-9a-f]{32}$/);
        expect(seen.has(r)).toBe(false);
        seen.add(r);
        await inst.reset();
      }
    });

    it("a failing guest maps to a 500 response, not an exception, and the instance keeps working", async () => {
      const res = await inst.handle(request("/fail"));
      expect(res.status).toBe(500);
      await inst.reset();
      expect(text((await inst.handle(request("/hello"))).body)).toBe("hello");
      await inst.reset();
    });

    it("the memory limit stops a memory bomb with an error, and reset recovers", async () => {
      const res = await inst.handle(request("/memory-bomb"));
      expect(res.status).toBe(500);
      await inst.reset();
      const ok = await inst.handle(request("/hello"));
      expect(ok.status).toBe(200);
      expect(text(ok.body)).toBe("hello");
      await inst.reset();
    });

    it("daemon mode: thousands of requests without a reset never fail; the engine asks to be recycled or replaced first", async () => {
      const prepared = await fx.engine.prepare({ deploymentId: "contract-daemon", manifest: fx.manifest, image: fx.image });
      let daemon = await fx.engine.instantiate(prepared);
      // As the host's warm-up ends (a request, then the snapshot): the state a recycle returns to.
      expect((await daemon.handle(request("/hello"))).status).toBe(200);
      daemon.snapshot();
      let replaced = 0; // how often the engine asked to be replaced (PHP: about every 1,800 requests)
      let served = 0; // requests of the current instance
      let wornAfter: number | undefined; // when its wear() passed WORN_AT (the host then says "worn")
      let recycled = 0; // how often it was reset to its snapshot instead (the host does that on recycleDue)
      try {
        for (let i = 0; i < 4500; i++) {
          const r = await daemon.handle(request("/hello"));
          expect(r.status).toBe(200);
          served++;
          // What the host does after a daemon-mode request: recycle when due, replace when exhausted.
          if (daemon.recycleDue?.() === true) {
            await daemon.reset();
            recycled++;
            served = 0;
            // The reset gave back what wore it out.
            expect(daemon.wear?.() ?? 0).toBeLessThan(WORN_AT);
            expect(daemon.exhausted?.() ?? false).toBe(false);
          }
          if (wornAfter === undefined && (daemon.wear?.() ?? 0) >= WORN_AT) wornAfter = served;
          // What the pool does when the host reports the instance exhausted.
          if (daemon.exhausted?.() === true) {
            // An engine that wears out says so well before (the pool's successor gets a head
            // start of the rest of the budget): at most WORN_AT of the instance's life.
            if (daemon.wear !== undefined) {
              expect(wornAfter).toBeDefined();
              expect(wornAfter!).toBeLessThanOrEqual(Math.ceil(served * WORN_AT) + 1);
            }
            daemon.dispose();
            daemon = await fx.engine.instantiate(prepared);
            expect((await daemon.handle(request("/hello"))).status).toBe(200);
            daemon.snapshot();
            replaced++;
            served = 0;
            wornAfter = undefined;
          }
        }
      } finally {
        daemon.dispose();
      }
      if (fx.daemonRecycles === true) {
        // 4,500 requests are more than two lives of ~1,800: recycled each time, never replaced.
        expect(recycled).toBeGreaterThanOrEqual(2);
        expect(replaced).toBe(0);
      } else if (fx.daemonExhausts) expect(replaced).toBeGreaterThanOrEqual(1);
      else expect(replaced + recycled).toBe(0);
    }, 180_000);

    it("many request/reset cycles keep working (no leak of fds or memory growth that breaks it)", async () => {
      for (let i = 0; i < 200; i++) {
        const r = await inst.handle(request("/hello"));
        expect(r.status).toBe(200);
        await inst.reset();
      }
    });
  });
}
