/**
 * Quantized tiny checkpoints in the public tools' file formats, loaded by the reference engine
 * (dequantized on load) and checked against the float weights they were made from.
 */
import { readFile, rm, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listTensors, loadTensorsF32, makeTinyModel, openModelDir, readLlamaConfig, writeSafetensors } from "../../model/index.js";
import { ModelDirError } from "../../model/errors.js";
import { f32ToFp8e4m3, fp8e4m3ToF32 } from "../../model/quantization.js";
import type { LlamaConfig, TensorInfo } from "../../model/types.js";
import { GREEDY_SAMPLING } from "../sampling.js";
import { fp8RoundTripRows, loadReferenceWeights } from "./load-weights.js";
import { ReferenceEngine } from "./reference-engine.js";

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "seventy-quant-"));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

interface Loaded {
  dir: string;
  config: LlamaConfig;
  tensors: Map<string, TensorInfo>;
}
async function make(name: string, opts: Omit<Parameters<typeof makeTinyModel>[0], "outDir">): Promise<Loaded> {
  const dir = await makeTinyModel({ ...opts, outDir: join(tmp, name) });
  return { dir, config: await readLlamaConfig(join(dir, "config.json")), tensors: await listTensors(dir) };
}

const LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"];

/** Greedy tokens and last logits of one prompt over `steps` decode steps. */
function greedy(config: LlamaConfig, weights: Map<string, Float32Array>, prompt: number[], steps: number, kvCacheDtype?: "fp8") {
  const engine = new ReferenceEngine(config, weights, { numKvBlocks: 16, blockSize: 16, kvCacheDtype });
  const table = [3, 7, 1];
  const tokens: number[] = [];
  const logits: Float32Array[] = [];
  let ids = prompt;
  let pos = 0;
  for (let i = 0; i < steps; i++) {
    const r = engine.stepSync({ seqs: [{ seqId: 1, tokenIds: ids, startPos: pos, blockTable: table, sample: { params: GREEDY_SAMPLING, outputIndex: i }, returnLogits: true }] });
    pos += ids.length;
    tokens.push(r.sampled[0]!.tokenId);
    logits.push(r.sampled[0]!.logits!);
    ids = [r.sampled[0]!.tokenId];
  }
  return { tokens, logits };
}

function relMaxDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    s = Math.max(s, Math.abs(b[i]!));
  }
  return d / s;
}

/** Bit-identical float arrays (expect's deep equality is far too slow for 8M-element embeddings). */
function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

const PROMPT = [128000, 9906, 11, 1917, 0, 358, 1097, 264, 2697];

describe("tiny AutoAWQ GEMM checkpoint", () => {
  let awq: Loaded;
  let float: Loaded;
  beforeAll(async () => {
    awq = await make("awq", { quant: "awq", seed: 5 });
    // The same seeded weights in float32: what the AWQ checkpoint was quantized from.
    float = await make("awq-source", { seed: 5, dtype: "F32", hiddenSize: 128, intermediateSize: 384 });
  });

  it("has AutoAWQ's config and tensors: I32 qweight/qzeros, F16 scales, F16 everything else", async () => {
    const json = JSON.parse(await readFile(join(awq.dir, "config.json"), "utf8"));
    expect(json.quantization_config).toEqual({ bits: 4, group_size: 128, modules_to_not_convert: null, quant_method: "awq", version: "gemm", zero_point: true });
    expect(json.torch_dtype).toBe("float16");
    const t = (n: string) => awq.tensors.get(n)!;
    expect([t("model.layers.0.self_attn.q_proj.qweight").dtype, t("model.layers.0.self_attn.q_proj.qweight").shape]).toEqual(["I32", [128, 16]]);
    expect([t("model.layers.0.self_attn.k_proj.qzeros").dtype, t("model.layers.0.self_attn.k_proj.qzeros").shape]).toEqual(["I32", [1, 8]]);
    expect([t("model.layers.1.mlp.down_proj.scales").dtype, t("model.layers.1.mlp.down_proj.scales").shape]).toEqual(["F16", [3, 128]]);
    expect([t("model.layers.1.mlp.down_proj.qweight").shape]).toEqual([[384, 16]]);
    expect(awq.tensors.has("model.layers.0.mlp.up_proj.weight")).toBe(false);
    expect(t("lm_head.weight").dtype).toBe("F16");
    expect(t("model.layers.0.input_layernorm.weight").dtype).toBe("F16");
    await expect(openModelDir(awq.dir)).resolves.toBeTruthy();
  });

  it("dequantizes on load to within one quantization step of the source weights", async () => {
    const deq = await loadReferenceWeights(awq.config, awq.tensors);
    const src = await loadTensorsF32(float.tensors);
    const scales = await loadTensorsF32(awq.tensors, LINEARS.map((m) => `model.layers.0.${m}.scales`));
    expect([...deq.keys()].sort()).toEqual([...src.keys()].sort());
    for (const m of LINEARS) {
      const name = `model.layers.0.${m}.weight`;
      const [outF, inF] = float.tensors.get(name)!.shape as [number, number];
      const s = scales.get(`model.layers.0.${m}.scales`)!;
      const a = deq.get(name)!;
      const b = src.get(name)!;
      let worst = 0;
      for (let o = 0; o < outF; o++) {
        for (let k = 0; k < inF; k++) worst = Math.max(worst, Math.abs(a[o * inF + k]! - b[o * inF + k]!) / s[Math.floor(k / 128) * outF + o]!);
      }
      // Rounding to the nearest step plus the zero point's rounding: at most one step.
      expect(worst, m).toBeLessThanOrEqual(1.0001);
      expect(worst, m).toBeGreaterThan(0.2);
    }
  });

  it("runs on the reference engine close to the float model it came from", async () => {
    const a = greedy(awq.config, await loadReferenceWeights(awq.config, awq.tensors), PROMPT, 4);
    const b = greedy(float.config, await loadTensorsF32(float.tensors), PROMPT, 4);
    // 4-bit weights move the logits by a few percent of their range on this random model.
    expect(relMaxDiff(a.logits[0]!, b.logits[0]!)).toBeLessThan(0.3);
    expect(a.tokens[0]).toBe(b.tokens[0]);
  });

  it("refuses a checkpoint with a missing AWQ tensor, naming it", async () => {
    const broken = new Map(awq.tensors);
    broken.delete("model.layers.1.mlp.gate_proj.qzeros");
    const { validateLlamaTensors } = await import("../../model/weights.js");
    expect(() => validateLlamaTensors(awq.config, broken, awq.dir)).toThrow(/missing tensor model\.layers\.1\.mlp\.gate_proj\.qzeros \(expected I32 \[1, 48\]\)/);
  });
});

describe("tiny compressed-tensors FP8 checkpoint", () => {
  let fp8: Loaded;
  let float: Loaded;
  beforeAll(async () => {
    fp8 = await make("fp8", { quant: "fp8", seed: 6, shards: 2 });
    float = await make("fp8-source", { seed: 6, dtype: "F32" });
  });

  it("has llm-compressor's config and tensors: F8_E4M3 weights, BF16 [out, 1] scales, lm_head in bf16", async () => {
    const json = JSON.parse(await readFile(join(fp8.dir, "config.json"), "utf8"));
    expect(json.quantization_config).toMatchObject({ quant_method: "compressed-tensors", format: "float-quantized", ignore: ["lm_head"], kv_cache_scheme: null });
    expect(json.quantization_config.config_groups.group_0.weights).toMatchObject({ type: "float", num_bits: 8, strategy: "channel", symmetric: true, dynamic: false });
    const w = fp8.tensors.get("model.layers.1.mlp.down_proj.weight")!;
    expect([w.dtype, w.shape]).toEqual(["F8_E4M3", [64, 176]]);
    const s = fp8.tensors.get("model.layers.1.mlp.down_proj.weight_scale")!;
    expect([s.dtype, s.shape]).toEqual(["BF16", [64, 1]]);
    expect(fp8.tensors.get("lm_head.weight")!.dtype).toBe("BF16");
    expect(fp8.tensors.has("lm_head.weight_scale")).toBe(false);
    await expect(openModelDir(fp8.dir)).resolves.toBeTruthy();
  });

  it("dequantizes to q · scale, within e4m3 rounding of the source weights", async () => {
    const deq = await loadReferenceWeights(fp8.config, fp8.tensors);
    const src = await loadTensorsF32(float.tensors);
    for (const m of LINEARS) {
      const name = `model.layers.1.${m}.weight`;
      const a = deq.get(name)!;
      const b = src.get(name)!;
      const [outF, inF] = float.tensors.get(name)!.shape as [number, number];
      for (let o = 0; o < outF; o++) {
        let amax = 0;
        for (let k = 0; k < inF; k++) amax = Math.max(amax, Math.abs(b[o * inF + k]!));
        for (let k = 0; k < inF; k++) {
          const x = b[o * inF + k]!;
          // half an e4m3 step (2^-4 relative for normals) plus the bf16 scale's rounding (2^-9), or a subnormal step.
          expect(Math.abs(a[o * inF + k]! - x)).toBeLessThanOrEqual(Math.abs(x) * (1 / 16 + 1 / 256) + (amax / 448) * 2 ** -9 + 1e-12);
        }
      }
    }
  });

  it("per-tensor scales load too", async () => {
    const t = await make("fp8-tensor", { quant: "fp8", fp8Strategy: "tensor", seed: 6 });
    expect(t.tensors.get("model.layers.0.self_attn.o_proj.weight_scale")!.shape).toEqual([1]);
    const deq = await loadReferenceWeights(t.config, t.tensors);
    const src = await loadTensorsF32(float.tensors);
    expect(relMaxDiff(deq.get("model.layers.0.self_attn.o_proj.weight")!, src.get("model.layers.0.self_attn.o_proj.weight")!)).toBeLessThan(0.07);
  });

  it("refuses FP8 tensors under a config that does not describe them", async () => {
    const plain = { ...fp8.config, quantization: null };
    const { validateLlamaTensors } = await import("../../model/weights.js");
    expect(() => validateLlamaTensors(plain, fp8.tensors, fp8.dir)).toThrow(/tensor model\.layers\.0\.self_attn\.q_proj\.weight is F8_E4M3; a packed dtype, but config.json's quantization_config does not describe it \(none\)/);
  });

  it("refuses a channel scale of the wrong shape", async () => {
    const dir = join(tmp, "bad-scale");
    const { mkdir, copyFile } = await import("node:fs/promises");
    await mkdir(dir);
    for (const f of ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]) await copyFile(join(fp8.dir, f), join(dir, f));
    const src = await listTensors(fp8.dir);
    const all = await loadTensorsF32(src, [...src.keys()].filter((n) => src.get(n)!.dtype !== "F8_E4M3"));
    const { readTensorBytes } = await import("../../model/weights.js");
    const raw = await readTensorBytes(src, [...src.keys()].filter((n) => src.get(n)!.dtype === "F8_E4M3"));
    const tensors = [...src.values()].map((t) =>
      t.name === "model.layers.0.mlp.up_proj.weight_scale"
        ? { name: t.name, dtype: t.dtype, shape: [1], data: Float32Array.of(0.01) }
        : { name: t.name, dtype: t.dtype, shape: t.shape, data: raw.get(t.name) ?? all.get(t.name)! },
    );
    await writeSafetensors(join(dir, "model.safetensors"), tensors);
    const e = await openModelDir(dir).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(ModelDirError);
    expect((e as Error).message).toMatch(/tensor model\.layers\.0\.mlp\.up_proj\.weight_scale has shape \[1\], expected \[176, 1\] for channel FP8 scales/);
  });
});

describe("on-load FP8 and the FP8 KV cache on the reference engine", () => {
  let bf16: Loaded;
  beforeAll(async () => {
    bf16 = await make("bf16", { seed: 0 });
  });

  it("on-load FP8 rounds each decoder linear through e4m3 with a float32 per-row scale, as the native engine does", async () => {
    const w = Float32Array.of(1, -3, 0.001, 0, 0, 0);
    const r = fp8RoundTripRows(w, 2, 3);
    const scale = Math.fround(3 / 448);
    expect(r[1]).toBe(Math.fround(fp8e4m3ToF32(f32ToFp8e4m3(Math.fround(-3 / scale))) * scale));
    expect(r[1]).toBeCloseTo(-3, 5);
    expect([...r.subarray(3)]).toEqual([0, 0, 0]); // an all-zero row keeps scale 1
    const plain = await loadTensorsF32(bf16.tensors);
    const q = await loadReferenceWeights(bf16.config, bf16.tensors, { quantization: "fp8" });
    expect(sameBits(q.get("lm_head.weight")!, plain.get("lm_head.weight")!)).toBe(true); // lm_head stays bf16
    expect(sameBits(q.get("model.embed_tokens.weight")!, plain.get("model.embed_tokens.weight")!)).toBe(true);
    const name = "model.layers.0.mlp.gate_proj.weight";
    expect(sameBits(q.get(name)!, fp8RoundTripRows(plain.get(name)!, 176, 64))).toBe(true);
    expect(sameBits(q.get(name)!, plain.get(name)!)).toBe(false);
  });

  it("an FP8 KV cache keeps greedy tokens and moves the logits by under 2% of their range (tiny model)", async () => {
    const weights = await loadTensorsF32(bf16.tensors);
    const a = greedy(bf16.config, weights, PROMPT, 6, "fp8");
    const b = greedy(bf16.config, weights, PROMPT, 6);
    expect(a.tokens).toEqual(b.tokens);
    const worst = Math.max(...a.logits.map((l, i) => relMaxDiff(l, b.logits[i]!)));
    expect(worst).toBeGreaterThan(0); // the cache really is rounded
    expect(worst).toBeLessThan(0.02);
  });
});
