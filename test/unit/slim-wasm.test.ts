/**
 * The slim php.wasm (src/runtime/php/slim-wasm.ts): the module V8 keeps has no name section and
 * no data segments, and writing the segments after instantiation gives the memory the original
 * module's instantiation gives. Modules whose data cannot be put back that way keep it.
 */
import { describe, it, expect, afterAll } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { slimWasm, writeDataSegments } from "../../src/runtime/php/slim-wasm.js";

const dir = mkdtempSync(join(tmpdir(), "zerocell-slim-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const HEADER = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
const MEMORY = [0x05, 0x03, 0x01, 0x00, 0x01]; // one memory, 1 page
const EXPORT_MEM = [0x07, 0x07, 0x01, 0x03, 0x6d, 0x65, 0x6d, 0x02, 0x00]; // "mem"
const NAME = [0x00, 0x0b, 0x04, 0x6e, 0x61, 0x6d, 0x65, 0x00, 0x04, 0x03, 0x6d, 0x6f, 0x64]; // module name "mod"
const section = (id: number, body: number[]) => [id, body.length, ...body];
/** Two active segments: "abc" at 16, "xy" at 1000 (0x3e8: i32.const e8 07). */
const ACTIVE = section(0x0b, [0x02, 0x00, 0x41, 0x10, 0x0b, 0x03, 0x61, 0x62, 0x63, 0x00, 0x41, 0xe8, 0x07, 0x0b, 0x02, 0x78, 0x79]);

function module(...parts: number[][]): Uint8Array<ArrayBuffer> {
  return new Uint8Array([...HEADER, ...parts.flat()]);
}

async function memoryOf(bytes: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
  const { instance } = await WebAssembly.instantiate(bytes, {});
  return new Uint8Array((instance.exports.mem as WebAssembly.Memory).buffer);
}

describe("slim wasm", () => {
  it("leaves out the name and data sections and puts the same bytes into the memory after instantiation", async () => {
    const original = module(MEMORY, EXPORT_MEM, section(0x0c, [0x02]), ACTIVE, NAME);
    const path = join(dir, "active.wasm");
    writeFileSync(path, original);
    const slim = slimWasm(original);
    expect(slim.data).toMatchObject({ segments: 2, end: 1002 });
    expect(slim.bytes.length).toBe(HEADER.length + MEMORY.length + EXPORT_MEM.length);
    const compiled = await WebAssembly.compile(slim.bytes);
    expect(WebAssembly.Module.customSections(compiled, "name")).toHaveLength(0);
    const { exports } = await WebAssembly.instantiate(compiled, {});
    const memory = exports.mem as WebAssembly.Memory;
    expect(new Uint8Array(memory.buffer)[16]).toBe(0);
    writeDataSegments(path, slim.data!, memory);
    expect(Buffer.from(new Uint8Array(memory.buffer)).equals(Buffer.from(await memoryOf(original)))).toBe(true);
    expect(Buffer.from(memory.buffer, 16, 3).toString()).toBe("abc");
    expect(Buffer.from(memory.buffer, 1000, 2).toString()).toBe("xy");
  });

  it("keeps the data of a module with a passive segment, and still leaves out the name section", async () => {
    const passive = section(0x0b, [0x01, 0x01, 0x03, 0x61, 0x62, 0x63]);
    const original = module(MEMORY, EXPORT_MEM, section(0x0c, [0x01]), passive, NAME);
    const slim = slimWasm(original);
    expect(slim.data).toBeUndefined();
    expect(slim.bytes.length).toBe(original.length - NAME.length);
    await WebAssembly.compile(slim.bytes);
  });

  it("refuses to write into a memory smaller than the segments, and a file that changed", async () => {
    const original = module(MEMORY, EXPORT_MEM, ACTIVE);
    const path = join(dir, "changed.wasm");
    writeFileSync(path, original);
    const slim = slimWasm(original);
    const small = new WebAssembly.Memory({ initial: 0 });
    expect(() => writeDataSegments(path, slim.data!, small)).toThrow(/smaller than the data segments/);
    // One segment fewer in the same place: the count no longer matches.
    const other = module(MEMORY, EXPORT_MEM, section(0x0b, [0x01, 0x00, 0x41, 0x10, 0x0b, 0x0b, ...Buffer.from("abcdefghijk")]));
    writeFileSync(path, other);
    expect(() => writeDataSegments(path, slim.data!, new WebAssembly.Memory({ initial: 1 }))).toThrow(/wasm:/);
  });

  it("makes php.wasm smaller by its name section and data, and keeps dylink.0", async () => {
    const loader = (await (await import("@php-wasm/node-8-3")).getPHPLoaderModule()) as { dependencyFilename: string };
    const path = loader.dependencyFilename;
    const file = readFileSync(path);
    const slim = slimWasm(file);
    expect(slim.data?.segments).toBeGreaterThan(1000);
    expect(file.length - slim.bytes.length).toBeGreaterThan(6 * 1024 * 1024);
    const compiled = await WebAssembly.compile(slim.bytes);
    expect(WebAssembly.Module.customSections(compiled, "name")).toHaveLength(0);
    expect(WebAssembly.Module.customSections(compiled, "dylink.0")).toHaveLength(1);
  });
});
