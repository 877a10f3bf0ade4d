/**
 * Causal GQA attention of one query token over a sequence's paged KV cache.
 *
 * Query head h reads KV head floor(h / (numHeads / numKvHeads)) (HF `repeat_kv`). The token at
 * position `pos` attends to positions 0..pos, wherever they were written: earlier steps, earlier
 * prefill chunks, or another sequence's shared prefix blocks. Scores are scaled by 1/sqrt(headDim)
 * and softmaxed with the max subtracted, as `eager_attention_forward` does in float32.
 */
export interface PagedAttentionArgs {
  /** This layer's K and V caches, [slots, numKvHeads · headDim]. */
  keys: Float32Array;
  values: Float32Array;
  blockTable: readonly number[];
  blockSize: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  /** Scratch: at least pos + 1 scores, and headDim accumulators. */
  scores: Float64Array;
  acc: Float64Array;
}

/** Writes numHeads · headDim floats at out[outOff] from the query q[qOff] (already rotated). */
export function pagedAttention(
  a: PagedAttentionArgs,
  q: Float32Array,
  qOff: number,
  pos: number,
  out: Float32Array,
  outOff: number,
): void {
  const { keys, values, blockTable, blockSize, numHeads, numKvHeads, headDim, scores, acc } = a;
  const group = numHeads / numKvHeads;
  const kvDim = numKvHeads * headDim;
  const scale = 1 / Math.sqrt(headDim);
  const ctx = pos + 1;

  for (let h = 0; h < numHeads; h++) {
    const qh = qOff + h * headDim;
    const headOff = Math.floor(h / group) * headDim;

    // scores[j] = q · k_j / sqrt(d), walking the block table one block at a time
    let max = -Infinity;
    for (let j0 = 0; j0 < ctx; j0 += blockSize) {
      const slot0 = blockTable[j0 / blockSize] * blockSize;
      const n = Math.min(blockSize, ctx - j0);
      for (let t = 0; t < n; t++) {
        const kOff = (slot0 + t) * kvDim + headOff;
        let s = 0;
        for (let d = 0; d < headDim; d++) s += q[qh + d] * keys[kOff + d];
        s *= scale;
        scores[j0 + t] = s;
        if (s > max) max = s;
      }
    }

    let sum = 0;
    for (let j = 0; j < ctx; j++) {
      const e = Math.exp(scores[j] - max);
      scores[j] = e;
      sum += e;
    }
    const inv = 1 / sum;

    acc.fill(0, 0, headDim);
    for (let j0 = 0; j0 < ctx; j0 += blockSize) {
      const slot0 = blockTable[j0 / blockSize] * blockSize;
      const n = Math.min(blockSize, ctx - j0);
      for (let t = 0; t < n; t++) {
        const p = scores[j0 + t];
        const vOff = (slot0 + t) * kvDim + headOff;
        for (let d = 0; d < headDim; d++) acc[d] += p * values[vOff + d];
      }
    }
    const oh = outOff + h * headDim;
    for (let d = 0; d < headDim; d++) out[oh + d] = acc[d] * inv;
  }
}
