import { f32ToFp8e4m3, fp8e4m3ToF32 } from "../../model/quantization.js";

/**
 * The paged KV cache: per layer, `numKvBlocks × blockSize` token slots, each holding K (and, in a
 * parallel array, V) for all KV heads:
 *
 *   keys[layer] = [ slot 0: head 0 (headDim) | head 1 | … ][ slot 1: … ] …     slot = block · blockSize + p % blockSize
 *
 * Position p of a sequence lives in block blockTable[floor(p / blockSize)], slot p % blockSize.
 * The scheduler owns the block tables; this class only owns the memory.
 *
 * `dtype` "fp8" stores every K/V value as e4m3 with a scale of 1 per layer (vLLM's `--kv-cache-dtype
 * fp8` without calibrated scales): written values are rounded to e4m3 (nearest even, saturating at
 * ±448) and kept as the floats they decode to, so attention reads exactly what an FP8 cache holds.
 */
export class PagedKvCache {
  readonly keys: Float32Array[];
  readonly values: Float32Array[];
  /** numKeyValueHeads · headDim: floats per token slot in one of keys/values. */
  readonly kvDim: number;

  constructor(
    readonly numLayers: number,
    readonly numKvBlocks: number,
    readonly blockSize: number,
    kvDim: number,
    readonly dtype: "float32" | "fp8" = "float32",
  ) {
    this.kvDim = kvDim;
    const floats = numKvBlocks * blockSize * kvDim;
    this.keys = Array.from({ length: numLayers }, () => new Float32Array(floats));
    this.values = Array.from({ length: numLayers }, () => new Float32Array(floats));
  }

  /** The cache slot of position `pos` of a sequence with this block table. */
  slotOf(blockTable: readonly number[], pos: number): number {
    const bs = this.blockSize;
    return blockTable[Math.floor(pos / bs)] * bs + (pos % bs);
  }

  /** Copies one token's K and V (kvDim floats each, from `k`/`v` at `srcOff`) into `slot` of `layer`. */
  write(layer: number, slot: number, k: Float32Array, v: Float32Array, srcOff: number): void {
    const dst = slot * this.kvDim;
    if (this.dtype === "fp8") {
      const keys = this.keys[layer];
      const values = this.values[layer];
      for (let i = 0; i < this.kvDim; i++) {
        keys[dst + i] = fp8e4m3ToF32(f32ToFp8e4m3(k[srcOff + i]!));
        values[dst + i] = fp8e4m3ToF32(f32ToFp8e4m3(v[srcOff + i]!));
      }
      return;
    }
    this.keys[layer].set(k.subarray(srcOff, srcOff + this.kvDim), dst);
    this.values[layer].set(v.subarray(srcOff, srcOff + this.kvDim), dst);
  }

  /** Bytes held (K and V, all layers); an FP8 cache counts the byte per value it represents. */
  get byteLength(): number {
    return 2 * this.numLayers * this.numKvBlocks * this.blockSize * this.kvDim * (this.dtype === "fp8" ? 1 : 4);
  }
}
