/**
 * Quantized checkpoints as the public tools write them, and the number formats they use:
 *
 * - AutoAWQ "GEMM" 4-bit (`quant_method: "awq"`, `version: "gemm"`), per linear layer
 *     qweight int32 [in, out/8]   bits [4i, 4i+4) of qweight[k][c] hold q(k, 8c + AWQ_ORDER[i])
 *     qzeros  int32 [in/g, out/8] the same packing for the zero point of each (group, output)
 *     scales  fp16  [in/g, out]
 *   and w[o][k] = (q(k, o) − z(k/g, o)) · s(k/g, o). AutoAWQ quantizes asymmetrically per group of g
 *   inputs: s = max(max − min, 1e-5) / 15, z = clamp(−round(min / s), 0, 15), q = clamp(round(w / s) + z, 0, 15).
 * - compressed-tensors FP8 (`quant_method: "compressed-tensors"`, float-quantized weights of 8 bits),
 *   per linear layer `weight` F8_E4M3 [out, in] and `weight_scale` [out, 1] (strategy "channel") or
 *   [1] ("tensor"); w = q · scale. llm-compressor's FP8 schemes: scale = amax / 448 (per row or per
 *   tensor), q = e4m3(w / scale) rounded to nearest even and saturated.
 *
 * Dequantizing with these functions is exact in float32 (a 4-bit or e4m3 value times a 16-bit scale),
 * so the reference engine that runs them is an oracle for the native loaders.
 */
import { ModelDirError, describeValue } from "./errors.js";
import type { AwqQuantization, CheckpointQuantization, CompressedTensorsFp8Quantization } from "./types.js";

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * config.json's `quantization_config` as one of the formats we load, or a one-line `ModelDirError`
 * naming what is not supported.
 */
export function parseQuantizationConfig(q: unknown, file: string): CheckpointQuantization {
  const field = "quantization_config";
  const fail = (detail: string, sub = "") => new ModelDirError(file, `${field}${sub} ${detail}`, { field: `${field}${sub}` });
  if (!isObject(q)) throw fail(`${describeValue(q)} must be an object`);
  const method = q.quant_method;
  if (method === "awq") return parseAwq(q, fail);
  if (method === "compressed-tensors") return parseCompressedTensors(q, fail);
  throw fail(
    `${describeValue(method)} is not supported (supported: "awq" GEMM 4-bit, "compressed-tensors" FP8 weights; or a bf16 checkpoint with --quantization fp8)`,
    ".quant_method",
  );
}

type Fail = (detail: string, sub?: string) => ModelDirError;

function parseAwq(q: Json, fail: Fail): AwqQuantization {
  const bits = q.bits ?? q.w_bit;
  if (bits !== 4) throw fail(`${describeValue(bits)}: only 4-bit AWQ is supported`, ".bits");
  const version = q.version ?? "gemm";
  if (typeof version !== "string" || version.toLowerCase() !== "gemm") {
    throw fail(`${describeValue(version)} is not supported (only AutoAWQ "gemm" checkpoints)`, ".version");
  }
  const zeroPoint = q.zero_point ?? true;
  if (zeroPoint !== true) throw fail(`${describeValue(zeroPoint)} is not supported (AWQ GEMM checkpoints have zero points)`, ".zero_point");
  const groupSize = q.group_size ?? q.q_group_size;
  if (!Number.isSafeInteger(groupSize) || (groupSize as number) <= 0 || (groupSize as number) % 8 !== 0) {
    throw fail(`${describeValue(groupSize)} must be a positive multiple of 8 (-1, one group per row, is not supported)`, ".group_size");
  }
  const skip = q.modules_to_not_convert ?? [];
  if (!Array.isArray(skip) || !skip.every((s) => typeof s === "string")) throw fail(`${describeValue(skip)} must be a list of module names or null`, ".modules_to_not_convert");
  return { method: "awq", bits: 4, groupSize: groupSize as number, modulesToNotConvert: skip as string[] };
}

function parseCompressedTensors(q: Json, fail: Fail): CompressedTensorsFp8Quantization {
  const format = q.format;
  if (format !== "float-quantized" && format !== "naive-quantized") {
    throw fail(`${describeValue(format)} is not supported (only FP8 weights: "float-quantized")`, ".format");
  }
  if (q.sparsity_config !== undefined && q.sparsity_config !== null) throw fail("is not supported (sparse checkpoints)", ".sparsity_config");
  if (q.kv_cache_scheme !== undefined && q.kv_cache_scheme !== null) {
    throw fail("is not supported (checkpoint KV-cache scales); use --kv-cache-dtype fp8 instead", ".kv_cache_scheme");
  }
  const groups = q.config_groups;
  if (!isObject(groups) || Object.keys(groups).length === 0) throw fail(`${describeValue(groups)} must be a non-empty object`, ".config_groups");
  let strategy: "channel" | "tensor" | undefined;
  for (const [name, g] of Object.entries(groups)) {
    const at = `.config_groups.${name}`;
    if (!isObject(g)) throw fail(`${describeValue(g)} must be an object`, at);
    const targets = g.targets;
    if (!Array.isArray(targets) || !targets.includes("Linear")) throw fail(`${describeValue(targets)} is not supported (only ["Linear"])`, `${at}.targets`);
    const w = g.weights;
    if (!isObject(w)) throw fail(`${describeValue(w)} must be an object (weight-only activation schemes are not supported)`, `${at}.weights`);
    if (w.type !== "float" || w.num_bits !== 8) {
      throw fail(`type ${describeValue(w.type)} num_bits ${describeValue(w.num_bits)} is not supported (only FP8: type "float", num_bits 8)`, `${at}.weights`);
    }
    if (w.symmetric === false) throw fail("false is not supported (FP8 weights are symmetric)", `${at}.weights.symmetric`);
    if (w.strategy !== "channel" && w.strategy !== "tensor") {
      throw fail(`${describeValue(w.strategy)} is not supported (only "channel" or "tensor" FP8 scales)`, `${at}.weights.strategy`);
    }
    if (w.dynamic === true) throw fail("true is not supported (weights need stored scales)", `${at}.weights.dynamic`);
    if (strategy !== undefined && strategy !== w.strategy) throw fail("mix channel and tensor strategies; only one is supported", ".config_groups");
    strategy = w.strategy;
    // Input activations (dynamic per-token or static per-tensor FP8) are a compute choice: this
    // engine keeps activations in 16 bits, so their scheme only has to be one it can ignore.
    const a = g.input_activations;
    if (a !== undefined && a !== null && (!isObject(a) || a.type !== "float")) {
      throw fail(`${describeValue(isObject(a) ? a.type : a)} is not supported (only FP8 activation schemes, which run in 16 bits here)`, `${at}.input_activations.type`);
    }
  }
  const ignore = q.ignore ?? [];
  if (!Array.isArray(ignore) || !ignore.every((s) => typeof s === "string")) throw fail(`${describeValue(ignore)} must be a list of module names`, ".ignore");
  return { method: "compressed-tensors", format, strategy: strategy!, ignore: ignore as string[] };
}

// ---- e4m3 ("e4m3fn": bias 7, no infinities, 0x7f/0xff NaN, largest finite 448) ----

export const FP8_E4M3_MAX = 448;
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** e4m3 byte → float (exact). The same bit rule as `fp8e4m3ToFloat` in native/include/seventy/numerics.h. */
export function fp8e4m3ToF32(b: number): number {
  const e = (b >> 3) & 0xf;
  const m = b & 7;
  let v: number;
  if (e === 0) v = m * 0.001953125; // m · 2^-9
  else if (e === 15 && m === 7) v = NaN;
  else v = (1 + m / 8) * 2 ** (e - 7);
  return b & 0x80 ? -v : v;
}

/**
 * float → e4m3 byte, round to nearest even, saturating at ±448 (torch's clamp-then-cast, and
 * `__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3)`); NaN → 0x7f. The input is first rounded to float32.
 */
export function f32ToFp8e4m3(x: number): number {
  f32[0] = x;
  const u = u32[0]!;
  const sign = (u >>> 24) & 0x80;
  const a = u & 0x7fffffff;
  if (a > 0x7f800000) return sign | 0x7f;
  if (a >= 0x43e00000) return sign | 0x7e; // >= 448
  if (a < 0x3c800000) {
    // Below 2^-6: subnormal m · 2^-9.
    f32[0] = Math.abs(f32[0]!);
    const v = f32[0]! * 512;
    let m = Math.floor(v);
    const d = v - m;
    if (d > 0.5 || (d === 0.5 && (m & 1) === 1)) m++;
    return sign | m; // m == 8 encodes 2^-6, the smallest normal
  }
  let e = (a >>> 23) - 127; // -6 .. 8
  const mant = a & 0x7fffff;
  let r = mant >>> 20;
  const rem = mant & 0xfffff;
  if (rem > 0x80000 || (rem === 0x80000 && (r & 1) === 1)) r++;
  if (r === 8) {
    r = 0;
    e++;
  }
  if (e > 8 || (e === 8 && r === 7)) return sign | 0x7e;
  return sign | ((e + 7) << 3) | r;
}

/** Round half to even, as torch.round. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Rounds to the nearest fp16 value (Math.fround for half precision, round half to even). */
export function roundToF16(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  if (a >= 65520) return x > 0 ? Infinity : -Infinity;
  const e = Math.max(Math.floor(Math.log2(a)), -14);
  const ulp = 2 ** (e - 10);
  const r = roundHalfEven(a / ulp) * ulp;
  return x < 0 ? -r : r;
}

// ---- AutoAWQ GEMM packing ----

/** Within each int32 of qweight/qzeros, nibble i holds output column 8c + AWQ_ORDER[i] (AutoAWQ's `order_map`). */
export const AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7] as const;

export interface AwqPacked {
  /** [in, out/8] */
  qweight: Int32Array;
  /** [in/groupSize, out/8] */
  qzeros: Int32Array;
  /** [in/groupSize, out], values already rounded to fp16 (write them as F16). */
  scales: Float32Array;
}

/**
 * Quantizes w ([out, in] row-major, HF layout) and packs it exactly as AutoAWQ's
 * `pseudo_quantize_tensor` + `WQLinear_GEMM.from_linear` do.
 */
export function packAwq(w: Float32Array, outF: number, inF: number, groupSize: number): AwqPacked {
  if (w.length !== outF * inF) throw new RangeError(`packAwq: ${w.length} values for [${outF}, ${inF}]`);
  if (inF % groupSize !== 0 || outF % 8 !== 0) throw new RangeError(`packAwq: in ${inF} must be a multiple of the group size ${groupSize} and out ${outF} of 8`);
  const groups = inF / groupSize;
  const scales = new Float32Array(groups * outF);
  const zeros = new Int32Array(groups * outF);
  const q = new Uint8Array(inF * outF); // [in, out]
  for (let o = 0; o < outF; o++) {
    for (let g = 0; g < groups; g++) {
      let max = -Infinity;
      let min = Infinity;
      for (let k = g * groupSize; k < (g + 1) * groupSize; k++) {
        const v = w[o * inF + k]!;
        if (v > max) max = v;
        if (v < min) min = v;
      }
      // AutoAWQ computes in the model dtype (fp16); the stored scale is fp16.
      const s = roundToF16(Math.max(max - min, 1e-5) / 15);
      const z = Math.min(15, Math.max(0, -roundHalfEven(min / s)));
      scales[g * outF + o] = s;
      zeros[g * outF + o] = z;
      for (let k = g * groupSize; k < (g + 1) * groupSize; k++) {
        q[k * outF + o] = Math.min(15, Math.max(0, roundHalfEven(w[o * inF + k]! / s) + z));
      }
    }
  }
  return { qweight: packNibbles(q, inF, outF), qzeros: packNibbles(zeros, groups, outF), scales };
}

/** [rows, cols] values 0..15 → int32 [rows, cols/8] in AutoAWQ's order. */
function packNibbles(v: ArrayLike<number>, rows: number, cols: number): Int32Array {
  const out = new Int32Array((rows * cols) / 8);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols / 8; c++) {
      let word = 0;
      for (let i = 0; i < 8; i++) word |= (v[r * cols + 8 * c + AWQ_ORDER[i]!]! & 0xf) << (4 * i);
      out[r * (cols / 8) + c] = word;
    }
  }
  return out;
}

/** The 4-bit value of output column `col` in a packed row. */
function nibble(packedRow: Int32Array, rowOffset: number, col: number): number {
  const word = packedRow[rowOffset + (col >> 3)]!;
  return (word >>> (4 * AWQ_INVERSE[col & 7]!)) & 0xf;
}
/** Column j within a group of 8 sits in nibble AWQ_INVERSE[j]. */
const AWQ_INVERSE = AWQ_ORDER.map((_, j) => AWQ_ORDER.indexOf(j as (typeof AWQ_ORDER)[number]));

/** AWQ GEMM tensors → float32 weights [out, in] (HF layout): w = (q − z) · s, exact in float32. */
export function dequantizeAwq(qweight: Int32Array, qzeros: Int32Array, scales: Float32Array, outF: number, inF: number, groupSize: number): Float32Array {
  const groups = inF / groupSize;
  if (qweight.length !== (inF * outF) / 8 || qzeros.length !== (groups * outF) / 8 || scales.length !== groups * outF) {
    throw new RangeError(`dequantizeAwq: sizes do not match [${outF}, ${inF}] with group size ${groupSize}`);
  }
  const w = new Float32Array(outF * inF);
  const packedCols = outF / 8;
  for (let k = 0; k < inF; k++) {
    const g = Math.floor(k / groupSize);
    for (let o = 0; o < outF; o++) {
      const q = nibble(qweight, k * packedCols, o);
      const z = nibble(qzeros, g * packedCols, o);
      w[o * inF + k] = (q - z) * scales[g * outF + o]!;
    }
  }
  return w;
}

// ---- compressed-tensors FP8 ----

export interface Fp8Quantized {
  /** e4m3 bytes [out, in]. */
  weight: Uint8Array;
  /** [out] (channel) or [1] (tensor), already rounded to the dtype they are written in. */
  scale: Float32Array;
}

/**
 * llm-compressor's FP8 weight quantization: scale = amax / 448 per output row ("channel") or over the
 * whole tensor ("tensor"), rounded to `roundScale` (the checkpoint's scale dtype), then
 * q = e4m3(w / scale).
 */
export function quantizeFp8(w: Float32Array, outF: number, inF: number, strategy: "channel" | "tensor", roundScale: (x: number) => number): Fp8Quantized {
  const scale = new Float32Array(strategy === "channel" ? outF : 1);
  const amax = (o0: number, o1: number) => {
    let m = 0;
    for (let i = o0 * inF; i < o1 * inF; i++) m = Math.max(m, Math.abs(w[i]!));
    return m;
  };
  if (strategy === "channel") for (let o = 0; o < outF; o++) scale[o] = roundScale(Math.max(amax(o, o + 1), 1e-12) / FP8_E4M3_MAX);
  else scale[0] = roundScale(Math.max(amax(0, outF), 1e-12) / FP8_E4M3_MAX);
  const weight = new Uint8Array(outF * inF);
  for (let o = 0; o < outF; o++) {
    const s = scale[strategy === "channel" ? o : 0]!;
    for (let k = 0; k < inF; k++) weight[o * inF + k] = f32ToFp8e4m3(w[o * inF + k]! / s);
  }
  return { weight, scale };
}

/** FP8 weight [out, in] and its scales ([out] or [1]) → float32 [out, in]; exact in float32. */
export function dequantizeFp8(weight: Uint8Array, scale: Float32Array, outF: number, inF: number): Float32Array {
  if (weight.length !== outF * inF || (scale.length !== outF && scale.length !== 1)) {
    throw new RangeError(`dequantizeFp8: sizes do not match [${outF}, ${inF}]`);
  }
  const lut = new Float32Array(256);
  for (let b = 0; b < 256; b++) lut[b] = fp8e4m3ToF32(b);
  const w = new Float32Array(outF * inF);
  for (let o = 0; o < outF; o++) {
    const s = scale[scale.length === 1 ? 0 : o]!;
    for (let k = 0; k < inF; k++) w[o * inF + k] = lut[weight[o * inF + k]!]! * s;
  }
  return w;
}

/** Whether a module (e.g. "model.layers.0.mlp.down_proj" or "lm_head") is kept in floats by the checkpoint's config. */
export function isUnquantizedModule(q: CheckpointQuantization, module: string): boolean {
  if (q.method === "awq") return q.modulesToNotConvert.some((m) => module.includes(m));
  return q.ignore.some((entry) => (entry.startsWith("re:") ? new RegExp(entry.slice(3)).test(module) : entry === module));
}
