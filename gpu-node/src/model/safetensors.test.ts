import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ModelDirError } from "./errors.js";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, readSafetensorsHeader, writeSafetensors } from "./safetensors.js";
import { loadTensorsF32 } from "./weights.js";

const tmp = mkdtempSync(join(tmpdir(), "seventy-st-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const path = (name = "t") => join(tmp, `${name}-${n++}.safetensors`);

/** A hand-made file: u64 length + header text + data. */
function rawFile(header: unknown, data: Uint8Array = new Uint8Array(0), lengthOverride?: bigint): string {
  const p = path("raw");
  const h = Buffer.from(typeof header === "string" ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(h.length));
  writeFileSync(p, Buffer.concat([len, h, data]));
  return p;
}

async function headerError(file: string): Promise<ModelDirError> {
  const e = await readSafetensorsHeader(file).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(ModelDirError);
  const err = e as ModelDirError;
  expect(err.message.startsWith(`${file}: `)).toBe(true);
  expect(err.message).not.toContain("\n");
  return err;
}

const bytesOf = (a: Uint16Array | Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

describe("writeSafetensors / readSafetensorsHeader", () => {
  it("round-trips F32, BF16 and F16 tensors with an 8-byte aligned data buffer and format=pt metadata", async () => {
    const a = Float32Array.from({ length: 6 }, (_, i) => i * 0.5 - 1);
    const b = Float32Array.from([1, -2, 0.15625, 3.5]);
    const c = Float32Array.from([0.5, -0.25, 65504, 1e-7]);
    const file = path();
    await writeSafetensors(file, [
      { name: "a", dtype: "F32", shape: [2, 3], data: a },
      { name: "b.weight", dtype: "BF16", shape: [4], data: b },
      { name: "c", dtype: "F16", shape: [2, 2], data: bytesOf(f32ToF16(c)) },
      { name: "scalar", dtype: "F32", shape: [], data: Float32Array.of(7) },
      { name: "empty", dtype: "BF16", shape: [0, 4], data: new Float32Array(0) },
    ]);
    const h = await readSafetensorsHeader(file);
    expect(h.dataStart % 8).toBe(0);
    expect(h.metadata).toEqual({ format: "pt" });
    expect(h.tensors.map((t) => [t.name, t.dtype, t.shape, t.byteLength])).toEqual([
      ["a", "F32", [2, 3], 24],
      ["b.weight", "BF16", [4], 8],
      ["c", "F16", [2, 2], 8],
      ["scalar", "F32", [], 4],
      ["empty", "BF16", [0, 4], 0],
    ]);
    const raw = readFileSync(file);
    const headerLen = Number(raw.readBigUInt64LE(0));
    expect(JSON.parse(raw.subarray(8, 8 + headerLen).toString()).a.data_offsets).toEqual([0, 24]);

    const loaded = await loadTensorsF32(new Map(h.tensors.map((t) => [t.name, t])));
    expect([...loaded.get("a")!]).toEqual([...a]);
    expect([...loaded.get("b.weight")!]).toEqual([1, -2, 0.15625, 3.5]);
    expect([...loaded.get("c")!]).toEqual([0.5, -0.25, 65504, f16ToF32(bytesOf(f32ToF16(Float32Array.of(1e-7))))[0]]);
    expect([...loaded.get("scalar")!]).toEqual([7]);
    expect(loaded.get("empty")!.length).toBe(0);
  });

  it("refuses raw data of the wrong size", async () => {
    await expect(writeSafetensors(path(), [{ name: "x", dtype: "BF16", shape: [3], data: new Uint8Array(4) }])).rejects.toThrow(/needs 6/);
  });
});

describe("corrupt files are a ModelDirError naming the file", () => {
  const good = { w: { dtype: "F32", shape: [2], data_offsets: [0, 8] } };

  it("a file shorter than 8 bytes", async () => {
    const p = path();
    writeFileSync(p, Buffer.from([1, 2, 3]));
    expect((await headerError(p)).message).toMatch(/truncated: 3 bytes/);
  });

  it("a header length past the end of the file", async () => {
    expect((await headerError(rawFile(good, new Uint8Array(8), 1n << 40n))).message).toMatch(/bad header length 1099511627776 for a file of/);
  });

  it("a header that is not JSON", async () => {
    expect((await headerError(rawFile("{not json", new Uint8Array(8)))).message).toMatch(/header is not valid JSON/);
  });

  it("a truncated data buffer", async () => {
    const p = path();
    await writeSafetensors(p, [
      { name: "first", dtype: "F32", shape: [4], data: new Float32Array(4) },
      { name: "last", dtype: "F32", shape: [4], data: new Float32Array(4) },
    ]);
    truncateSync(p, readFileSync(p).length - 3);
    const e = await headerError(p);
    expect(e.message).toMatch(/tensor last: data_offsets \[16, 32\] run past the end of the file .*truncated/);
    expect(e.field).toBe("last");
  });

  it("overlapping tensors", async () => {
    const header = {
      a: { dtype: "F32", shape: [4], data_offsets: [0, 16] },
      b: { dtype: "F32", shape: [2], data_offsets: [8, 16] },
    };
    expect((await headerError(rawFile(header, new Uint8Array(16)))).message).toMatch(/tensors a and b overlap \(data_offsets \[0, 16\] and \[8, 16\]\)/);
    const nested = {
      big: { dtype: "F32", shape: [8], data_offsets: [0, 32] },
      x: { dtype: "F32", shape: [1], data_offsets: [4, 8] },
      y: { dtype: "F32", shape: [1], data_offsets: [20, 24] },
    };
    expect((await headerError(rawFile(nested, new Uint8Array(32)))).message).toMatch(/overlap/);
  });

  it("an unsupported dtype names the tensor and dtype", async () => {
    const header = { ...good, "model.layers.0.mlp.up_proj.weight_scale": { dtype: "I64", shape: [1], data_offsets: [8, 16] } };
    const e = await headerError(rawFile(header, new Uint8Array(16)));
    expect(e.message).toMatch(/tensor model\.layers\.0\.mlp\.up_proj\.weight_scale: unsupported dtype "I64" \(supported: BF16, F16, F32, F8_E4M3, I32\)/);
    const e5m2 = await headerError(rawFile({ w: { dtype: "F8_E5M2", shape: [8], data_offsets: [0, 8] } }, new Uint8Array(8)));
    expect(e5m2.message).toMatch(/unsupported dtype "F8_E5M2"/);
  });

  it("a shape that does not match its byte span", async () => {
    const e = await headerError(rawFile({ w: { dtype: "BF16", shape: [3, 2], data_offsets: [0, 8] } }, new Uint8Array(8)));
    expect(e.message).toMatch(/tensor w: shape \[3,2\] BF16 needs 12 bytes but data_offsets \[0, 8\] span 8/);
  });

  it("malformed entries", async () => {
    expect((await headerError(rawFile({ w: { dtype: "F32", shape: [-1], data_offsets: [0, 0] } }))).message).toMatch(/bad shape/);
    expect((await headerError(rawFile({ w: { dtype: "F32", shape: [1], data_offsets: [4, 0] } }))).message).toMatch(/bad data_offsets/);
    expect((await headerError(rawFile([1, 2]))).message).toMatch(/not a JSON object/);
  });

  it("ignores __metadata__ of any shape", async () => {
    const h = await readSafetensorsHeader(rawFile({ __metadata__: { format: "pt", n: 3 }, ...good }, new Uint8Array(8)));
    expect(h.metadata).toEqual({ format: "pt" });
    expect(h.tensors.map((t) => t.name)).toEqual(["w"]);
  });

  it("a missing file", async () => {
    expect((await headerError(join(tmp, "nope.safetensors"))).message).toMatch(/file not found/);
  });
});

describe("dtype conversion", () => {
  const u32 = (f: number) => new Uint32Array(Float32Array.of(f).buffer)[0]!;
  const bf16 = (f: number) => f32ToBf16(Float32Array.of(f))[0]!;

  it("bf16 → f32 is the top 16 bits", () => {
    const bits = Uint16Array.from([0x3f80, 0xbf80, 0x7f80, 0xff80, 0x0001, 0x8000, 0x4049]);
    const f = bf16ToF32(bytesOf(bits));
    for (let i = 0; i < bits.length; i++) expect(u32(f[i]!)).toBe((bits[i]! << 16) >>> 0);
    expect(bf16ToF32(bytesOf(Uint16Array.of(0x7fc0)))[0]).toBeNaN();
  });

  it("bf16 conversion also works from an odd byte offset", () => {
    const buf = new Uint8Array(5);
    buf.set([0x80, 0x3f, 0x00, 0xc0], 1);
    expect([...bf16ToF32(buf.subarray(1))]).toEqual([1, -2]);
  });

  it("f32 → bf16 rounds to nearest even, keeps inf/NaN, overflows to inf", () => {
    expect(bf16(1)).toBe(0x3f80);
    expect(bf16(1 + 2 ** -8)).toBe(0x3f80); // tie → even
    expect(bf16(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie → even (up)
    expect(bf16(1 + 2 ** -8 + 2 ** -20)).toBe(0x3f81); // above the tie
    expect(bf16(-1 - 2 ** -8 - 2 ** -20)).toBe(0xbf81);
    expect(bf16(Infinity)).toBe(0x7f80);
    expect(bf16(-Infinity)).toBe(0xff80);
    expect(bf16(3.4028234663852886e38)).toBe(0x7f80);
    const nan = bf16(NaN);
    expect(nan & 0x7f80).toBe(0x7f80);
    expect(nan & 0x7f).not.toBe(0);
    // Every bf16 value survives bf16 → f32 → bf16.
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const back = f32ToBf16(bf16ToF32(bytesOf(all)));
    for (let i = 0; i < 65536; i++) {
      const isNaN = (i & 0x7f80) === 0x7f80 && (i & 0x7f) !== 0;
      if (!isNaN && back[i] !== i) throw new Error(`bf16 ${i.toString(16)} came back as ${back[i]!.toString(16)}`);
    }
  });

  it("f16 → f32 matches the IEEE definition for all 65536 values", () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const f = f16ToF32(bytesOf(all));
    for (let h = 0; h < 65536; h++) {
      const s = h & 0x8000 ? -1 : 1;
      const e = (h >> 10) & 0x1f;
      const m = h & 0x3ff;
      const want = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
      if (!Object.is(f[h], want) && !(Number.isNaN(want) && Number.isNaN(f[h]))) throw new Error(`f16 ${h.toString(16)}: ${f[h]} != ${want}`);
    }
    // ... and f32 → f16 inverts it exactly.
    const back = f32ToF16(f);
    for (let h = 0; h < 65536; h++) {
      const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
      if (!isNaN && back[h] !== h) throw new Error(`f16 ${h.toString(16)} came back as ${back[h]!.toString(16)}`);
    }
  });

  it("f32 → f16 rounds to nearest even at the edges", () => {
    const h = (f: number) => f32ToF16(Float32Array.of(f))[0]!;
    expect(h(65504)).toBe(0x7bff);
    expect(h(65519)).toBe(0x7bff);
    expect(h(65520)).toBe(0x7c00); // tie above the largest half → inf
    expect(h(1e6)).toBe(0x7c00);
    expect(h(-1e6)).toBe(0xfc00);
    expect(h(2 ** -25)).toBe(0); // half the smallest subnormal: tie → even (0)
    expect(h(3 * 2 ** -25)).toBe(2); // 1.5 subnormal ulps → even (2)
    expect(h(2 ** -25 + 2 ** -35)).toBe(1);
    expect(h(2 ** -14 - 2 ** -26)).toBe(0x400); // rounds up into the smallest normal
    expect(h(1 + 2 ** -11)).toBe(0x3c00); // tie → even
    expect(h(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(h(-0)).toBe(0x8000);
    expect(h(NaN) & 0x7e00).toBe(0x7e00);
  });
});
