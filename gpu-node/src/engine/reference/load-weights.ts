import { dequantizeAwq, f32ToFp8e4m3, fp8e4m3ToF32, FP8_E4M3_MAX } from "../../model/quantization.js";
import type { LlamaConfig, ProgressCallback, TensorInfo } from "../../model/types.js";
import { linearStorage, llamaTensorShapes, loadTensorsF32, readTensorBytes } from "../../model/weights.js";

export interface LoadReferenceWeightsOptions {
  /**
   * "fp8": quantize the decoder's float linear layers at load as the native engine's
   * `--quantization fp8` does (e4m3, one float32 scale per output row, scale = amax / 448), then
   * dequantize, so this engine computes with exactly the weights the native one holds.
   */
  quantization?: "none" | "fp8";
  onProgress?: ProgressCallback;
}

/**
 * Every weight of a LlamaForCausalLM checkpoint as float32 under its HF name (`….weight`, [out, in]),
 * whatever the checkpoint stores: floats are widened, AutoAWQ GEMM and compressed-tensors FP8 linears
 * are dequantized (exactly: a 4-bit or e4m3 value times a 16-bit scale is a float32).
 *
 * @example
 * const weights = await loadReferenceWeights(model.config, model.tensors);
 * const engine = new ReferenceEngine(model.config, weights, { numKvBlocks: 64 });
 */
export async function loadReferenceWeights(
  config: LlamaConfig,
  tensors: ReadonlyMap<string, TensorInfo>,
  opts: LoadReferenceWeightsOptions = {},
): Promise<Map<string, Float32Array>> {
  const shapes = llamaTensorShapes(config);
  const floatNames: string[] = [];
  const packed: { name: string; module: string; storage: "awq" | "fp8"; outF: number; inF: number }[] = [];
  for (const [name, shape] of shapes) {
    const module = name.slice(0, -".weight".length);
    const storage = shape.length === 2 && name !== "model.embed_tokens.weight" ? linearStorage(config, tensors, module) : "float";
    if (storage === "float") floatNames.push(name);
    else packed.push({ name, module, storage, outF: shape[0]!, inF: shape[1]! });
  }
  const scaleNames = packed.map((p) => (p.storage === "awq" ? `${p.module}.scales` : `${p.module}.weight_scale`));
  const fp8Names = packed.filter((p) => p.storage === "fp8").map((p) => p.name);
  const out = await loadTensorsF32(tensors, [...floatNames, ...scaleNames, ...fp8Names], opts.onProgress);
  const awq = packed.filter((p) => p.storage === "awq");
  const bytes = await readTensorBytes(tensors, awq.flatMap((p) => [`${p.module}.qweight`, `${p.module}.qzeros`]));
  const int32 = (b: Uint8Array) => new Int32Array(b.buffer, b.byteOffset, b.byteLength / 4);
  for (const p of packed) {
    if (p.storage === "awq") {
      const groupSize = (config.quantization as { groupSize: number }).groupSize;
      const scales = out.get(`${p.module}.scales`)!;
      out.set(p.name, dequantizeAwq(int32(bytes.get(`${p.module}.qweight`)!), int32(bytes.get(`${p.module}.qzeros`)!), scales, p.outF, p.inF, groupSize));
      out.delete(`${p.module}.scales`);
    } else {
      // loadTensorsF32 widened the e4m3 bytes to their exact values; w = q · scale (per row or one).
      const w = out.get(p.name)!;
      const scale = out.get(`${p.module}.weight_scale`)!;
      for (let o = 0; o < p.outF; o++) {
        const s = scale[scale.length === 1 ? 0 : o]!;
        for (let k = 0; k < p.inF; k++) w[o * p.inF + k] = Math.fround(w[o * p.inF + k]! * s);
      }
      out.delete(`${p.module}.weight_scale`);
    }
  }
  if (opts.quantization === "fp8") {
    for (const [name, shape] of shapes) {
      if (!/^model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj\.weight$/.test(name)) continue;
      if (packed.some((p) => p.name === name)) continue; // already quantized in the checkpoint
      out.set(name, fp8RoundTripRows(out.get(name)!, shape[0]!, shape[1]!));
    }
  }
  return out;
}

/**
 * The native engine's on-load FP8 rule, per output row in float32: scale = amax / 448 (1 for an
 * all-zero row), q = e4m3(w / scale); returns q · scale.
 */
export function fp8RoundTripRows(w: Float32Array, rows: number, cols: number): Float32Array {
  const r = new Float32Array(w.length);
  for (let o = 0; o < rows; o++) {
    let amax = 0;
    for (let k = 0; k < cols; k++) amax = Math.max(amax, Math.abs(w[o * cols + k]!));
    const scale = amax > 0 ? Math.fround(amax / FP8_E4M3_MAX) : 1;
    for (let k = 0; k < cols; k++) r[o * cols + k] = Math.fround(fp8e4m3ToF32(f32ToFp8e4m3(Math.fround(w[o * cols + k]! / scale))) * scale);
  }
  return r;
}
