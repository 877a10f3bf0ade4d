/**
 * The paged KV cache: per layer, `numKvBlocks × blockSize` token slots, each holding K (and, in a
 * parallel array, V) for all KV heads:
 *
 *   keys[layer] = [ slot 0: head 0 (headDim) | head 1 | … ][ slot 1: … ] …     slot = block · blockSize + p % blockSize
 *
 * Position p of a sequence lives in block blockTable[floor(p / blockSize)], slot p % blockSize.
 * The scheduler owns the block tables; this class only owns the memory.
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
    this.keys[layer].set(k.subarray(srcOff, srcOff + this.kvDim), dst);
    this.values[layer].set(v.subarray(srcOff, srcOff + this.kvDim), dst);
  }

  /** Bytes held (K and V, all layers). */
  get byteLength(): number {
    return 2 * this.numLayers * this.numKvBlocks * this.blockSize * this.kvDim * 4;
  }
}
