/**
 * HF `LlamaRMSNorm`, row by row: y = x * rsqrt(mean(x²) + eps) * w.
 * `out` may be `x` itself (in place).
 */
export function rmsNorm(
  out: Float32Array,
  x: Float32Array,
  weight: Float32Array,
  rows: number,
  dim: number,
  eps: number,
): void {
  for (let r = 0; r < rows; r++) {
    const off = r * dim;
    let sumSq = 0;
    for (let i = 0; i < dim; i++) {
      const v = x[off + i];
      sumSq += v * v;
    }
    const inv = 1 / Math.sqrt(sumSq / dim + eps);
    for (let i = 0; i < dim; i++) out[off + i] = x[off + i] * inv * weight[i];
  }
}
