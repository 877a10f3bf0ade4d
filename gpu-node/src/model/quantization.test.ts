import { describe, expect, it } from "vitest";
import { ModelDirError } from "./errors.js";
import { parseLlamaConfig, llamaConfigToJson } from "./config.js";
import {
  AWQ_ORDER,
  dequantizeAwq,
  dequantizeFp8,
  f32ToFp8e4m3,
  fp8e4m3ToF32,
  isUnquantizedModule,
  packAwq,
  parseQuantizationConfig,
  quantizeFp8,
  roundToF16,
} from "./quantization.js";
import { tinyLlamaConfig } from "./tiny-model.js";

const FILE = "/m/config.json";

/** quantization_config of an AutoAWQ 4-bit GEMM checkpoint, as AutoAWQ 0.2 writes it. */
const AUTOAWQ = { bits: 4, group_size: 128, modules_to_not_convert: null, quant_method: "awq", version: "gemm", zero_point: true };

/** quantization_config of llm-compressor's FP8_DYNAMIC scheme (the public "-FP8-dynamic" checkpoints). */
const FP8_DYNAMIC = {
  config_groups: {
    group_0: {
      input_activations: { actorder: null, block_structure: null, dynamic: true, group_size: null, num_bits: 8, observer: null, observer_kwargs: {}, strategy: "token", symmetric: true, type: "float" },
      output_activations: null,
      targets: ["Linear"],
      weights: { actorder: null, block_structure: null, dynamic: false, group_size: null, num_bits: 8, observer: "minmax", observer_kwargs: {}, strategy: "channel", symmetric: true, type: "float" },
    },
  },
  format: "float-quantized",
  global_compression_ratio: 1.4583,
  ignore: ["lm_head"],
  kv_cache_scheme: null,
  quant_method: "compressed-tensors",
  quantization_status: "compressed",
};

function errorOf(fn: () => unknown): ModelDirError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ModelDirError);
    return e as ModelDirError;
  }
  throw new Error("expected an error");
}

describe("parseQuantizationConfig", () => {
  it("reads AutoAWQ GEMM 4-bit", () => {
    expect(parseQuantizationConfig(AUTOAWQ, FILE)).toEqual({ method: "awq", bits: 4, groupSize: 128, modulesToNotConvert: [] });
    // transformers' AwqConfig spelling, with modules kept in floats
    const q = parseQuantizationConfig({ quant_method: "awq", bits: 4, group_size: 64, version: "GEMM", zero_point: true, backend: "autoawq", modules_to_not_convert: ["down_proj"] }, FILE);
    expect(q).toEqual({ method: "awq", bits: 4, groupSize: 64, modulesToNotConvert: ["down_proj"] });
    expect(isUnquantizedModule(q, "model.layers.3.mlp.down_proj")).toBe(true);
    expect(isUnquantizedModule(q, "model.layers.3.mlp.up_proj")).toBe(false);
  });

  it("reads compressed-tensors FP8 (per channel and per tensor)", () => {
    const q = parseQuantizationConfig(FP8_DYNAMIC, FILE);
    expect(q).toEqual({ method: "compressed-tensors", format: "float-quantized", strategy: "channel", ignore: ["lm_head"] });
    expect(isUnquantizedModule(q, "lm_head")).toBe(true);
    expect(isUnquantizedModule(q, "model.layers.0.mlp.up_proj")).toBe(false);
    // The static FP8 scheme of older checkpoints: per-tensor weights and activations, "naive-quantized".
    const tensor = {
      config_groups: { group_0: { input_activations: { num_bits: 8, strategy: "tensor", type: "float" }, targets: ["Linear"], weights: { num_bits: 8, strategy: "tensor", type: "float" } } },
      format: "naive-quantized",
      ignore: ["lm_head", "re:.*mlp.down_proj"],
      quant_method: "compressed-tensors",
      quantization_status: "frozen",
    };
    const t = parseQuantizationConfig(tensor, FILE);
    expect(t).toMatchObject({ strategy: "tensor", format: "naive-quantized" });
    expect(isUnquantizedModule(t, "model.layers.1.mlp.down_proj")).toBe(true);
  });

  const withGroup = (patch: Record<string, unknown>) => ({
    ...FP8_DYNAMIC,
    config_groups: { group_0: { ...FP8_DYNAMIC.config_groups.group_0, weights: { ...FP8_DYNAMIC.config_groups.group_0.weights, ...patch } } },
  });
  const bad: [string, unknown, RegExp][] = [
    ["GPTQ", { quant_method: "gptq", bits: 4 }, /quantization_config\.quant_method "gptq" is not supported/],
    ["bitsandbytes", { quant_method: "bitsandbytes", load_in_4bit: true }, /quant_method "bitsandbytes" is not supported/],
    ["fbgemm fp8", { quant_method: "fbgemm_fp8" }, /quant_method "fbgemm_fp8" is not supported/],
    ["8-bit AWQ", { ...AUTOAWQ, bits: 8 }, /quantization_config\.bits 8: only 4-bit AWQ/],
    ["AWQ GEMV", { ...AUTOAWQ, version: "gemv" }, /quantization_config\.version "gemv" is not supported/],
    ["AWQ without zero points", { ...AUTOAWQ, zero_point: false }, /zero_point false is not supported/],
    ["AWQ group -1", { ...AUTOAWQ, group_size: -1 }, /group_size -1 must be a positive multiple of 8/],
    ["int4 compressed-tensors", { ...FP8_DYNAMIC, format: "pack-quantized" }, /format "pack-quantized" is not supported/],
    ["int8 weights", withGroup({ type: "int" }), /weights type "int" num_bits 8 is not supported/],
    ["block FP8", withGroup({ strategy: "block" }), /weights\.strategy "block" is not supported/],
    ["group FP8", withGroup({ strategy: "group" }), /weights\.strategy "group" is not supported/],
    ["KV cache scales", { ...FP8_DYNAMIC, kv_cache_scheme: { num_bits: 8, type: "float", strategy: "tensor" } }, /kv_cache_scheme is not supported .*--kv-cache-dtype fp8/],
    ["not an object", "awq", /quantization_config "awq" must be an object/],
  ];
  for (const [what, q, message] of bad) {
    it(`refuses ${what} with one line naming it`, () => {
      const e = errorOf(() => parseQuantizationConfig(q, FILE));
      expect(e.message).toMatch(message);
      expect(e.message.startsWith(`${FILE}: quantization_config`)).toBe(true);
      expect(e.message).not.toContain("\n");
    });
  }

  it("round-trips through config.json", () => {
    for (const quantization of [
      { method: "awq", bits: 4, groupSize: 128, modulesToNotConvert: [] } as const,
      { method: "compressed-tensors", format: "float-quantized", strategy: "tensor", ignore: ["lm_head"] } as const,
    ]) {
      const c = { ...tinyLlamaConfig(), quantization };
      expect(parseLlamaConfig(llamaConfigToJson(c), FILE).quantization).toEqual(quantization);
    }
    expect(llamaConfigToJson(tinyLlamaConfig())).not.toHaveProperty("quantization_config");
  });
});

describe("e4m3", () => {
  it("decodes every byte and re-encodes it to itself", () => {
    for (let b = 0; b < 256; b++) {
      const v = fp8e4m3ToF32(b);
      if ((b & 0x7f) === 0x7f) {
        expect(v).toBeNaN();
        continue;
      }
      // +0 and −0 both encode; −0 keeps its sign bit.
      expect(f32ToFp8e4m3(v === 0 && b === 0x80 ? -0 : v)).toBe(b);
    }
  });

  it("rounds to nearest even and saturates", () => {
    expect(fp8e4m3ToF32(0x7e)).toBe(448);
    expect(fp8e4m3ToF32(0x38)).toBe(1);
    expect(fp8e4m3ToF32(0x01)).toBe(2 ** -9);
    expect(f32ToFp8e4m3(1e6)).toBe(0x7e);
    expect(f32ToFp8e4m3(-1e6)).toBe(0xfe);
    expect(f32ToFp8e4m3(Infinity)).toBe(0x7e);
    expect(f32ToFp8e4m3(NaN)).toBe(0x7f);
    // 1.0625 is halfway between 1 (mantissa 0, even) and 1.125 (mantissa 1): stays 1.
    expect(f32ToFp8e4m3(1.0625)).toBe(0x38);
    // 1.1875 is halfway between 1.125 (odd) and 1.25 (even): goes to 1.25.
    expect(fp8e4m3ToF32(f32ToFp8e4m3(1.1875))).toBe(1.25);
    // Subnormals: 1.5 · 2^-9 is halfway between 1 and 2 units: rounds to 2 units.
    expect(f32ToFp8e4m3(1.5 * 2 ** -9)).toBe(0x02);
    expect(f32ToFp8e4m3(0.5 * 2 ** -9)).toBe(0x00);
  });
});

describe("AutoAWQ GEMM packing", () => {
  it("puts output column 8c + ORDER[i] in nibble i (hand-packed word)", () => {
    expect(AWQ_ORDER).toEqual([0, 2, 4, 6, 1, 3, 5, 7]);
    // One group of 8 inputs, 8 outputs, q(k, o) = o, zero 0, scale 1 → w[o][k] = o.
    // Nibble i holds column ORDER[i], so the word is 7 5 3 1 6 4 2 0 from the top nibble down.
    const word = 0x75316420;
    const qweight = new Int32Array(8).fill(word);
    const w = dequantizeAwq(qweight, new Int32Array(1), new Float32Array(8).fill(1), 8, 8, 8);
    for (let o = 0; o < 8; o++) for (let k = 0; k < 8; k++) expect(w[o * 8 + k]).toBe(o);
    // Zero points use the same order: zero(o) = o cancels q(o) = o.
    expect([...dequantizeAwq(qweight, Int32Array.of(word), new Float32Array(8).fill(1), 8, 8, 8)].every((x) => x === 0)).toBe(true);
  });

  it("quantizes one group as AutoAWQ does (hand-computed)", () => {
    // Output row 0: one group of 8 inputs. max 1, min −1 → s = fp16(2/15) = 0.13330078125,
    // z = −round(−1 / s) = −round(−7.5018) = 8; q = clamp(round(w / s) + 8, 0, 15).
    const row = [-1, -0.5, 0, 0.5, 1, 0.25, -0.25, 0.75];
    const w = new Float32Array(8 * 8);
    w.set(row, 0);
    const p = packAwq(w, 8, 8, 8);
    expect(p.scales[0]).toBe(0.13330078125);
    const q = (k: number) => (p.qweight[k]! >>> (4 * AWQ_ORDER.indexOf(0))) & 0xf;
    // −1 → −8 + 8 = 0; −0.5 → round(−3.751) + 8 = 4; 0 → 8; 0.5 → 12; 1 → round(7.5018) + 8 = 16 → 15;
    // 0.25 → round(1.8755) + 8 = 10; −0.25 → 6; 0.75 → round(5.6264) + 8 = 14.
    expect(row.map((_, k) => q(k))).toEqual([0, 4, 8, 12, 15, 10, 6, 14]);
    expect(p.qzeros[0]! & 0xf).toBe(8);
    const deq = dequantizeAwq(p.qweight, p.qzeros, p.scales, 8, 8, 8);
    expect(deq[4]).toBe(7 * 0.13330078125);
    // Rows of zeros: s = fp16(1e-5 / 15), z = 0, all q = 0.
    expect(p.scales[1]).toBe(roundToF16(1e-5 / 15));
    expect(deq[8]).toBe(0);
  });

  it("dequantizes within one step of each group's scale, on awkward shapes", () => {
    const outF = 24;
    const inF = 96;
    const w = new Float32Array(outF * inF).map((_, i) => Math.sin(i * 1.37) * (1 + (i % 7)));
    const p = packAwq(w, outF, inF, 32);
    expect(p.qweight.length).toBe((inF * outF) / 8);
    expect(p.qzeros.length).toBe((3 * outF) / 8);
    const deq = dequantizeAwq(p.qweight, p.qzeros, p.scales, outF, inF, 32);
    for (let o = 0; o < outF; o++) {
      for (let k = 0; k < inF; k++) {
        const s = p.scales[Math.floor(k / 32) * outF + o]!;
        expect(Math.abs(deq[o * inF + k]! - w[o * inF + k]!)).toBeLessThanOrEqual(s * 1.01);
      }
    }
  });
});

describe("compressed-tensors FP8", () => {
  it("scales by amax / 448 per channel or per tensor, and dequantizes to q · scale", () => {
    const w = Float32Array.of(1, -2, 0.5, 0.25, 3, 6);
    const ch = quantizeFp8(w, 2, 3, "channel", (x) => x);
    expect([...ch.scale]).toEqual([Math.fround(2 / 448), Math.fround(6 / 448)]);
    expect(ch.weight[1]).toBe(0xfe); // −2 / (2/448) = −448
    expect(ch.weight[5]).toBe(0x7e);
    const back = dequantizeFp8(ch.weight, ch.scale, 2, 3);
    for (let i = 0; i < 6; i++) expect(Math.abs(back[i]! - w[i]!)).toBeLessThanOrEqual(Math.abs(w[i]!) / 16 + 1e-9);
    const t = quantizeFp8(w, 2, 3, "tensor", (x) => x);
    expect(t.scale.length).toBe(1);
    expect(t.scale[0]).toBe(Math.fround(6 / 448));
  });
});
