/**
 * HF `nn.Linear` without bias over a batch of rows: out[r, o] = Σ_k x[r, k] · w[o, k].
 * `w` is the HF weight, shape [outDim, inDim] row-major, so each output is a contiguous dot product.
 *
 * Loop order: weight rows are taken in blocks that fit in L2 (~128 KB); for each block every input
 * row is processed, eight rows at a time so each loaded weight value feeds eight accumulators
 * (leftover rows one at a time). A
 * step's whole batch goes through one call, so a weight is streamed from memory once per step, not
 * once per token — that is what makes batched decode cheaper per token on the lm_head.
 * (Measured on the build machine, Node 20: ~1.4 GMAC/s for one row, ~1.6 GMAC/s in 8-row tiles.)
 */
export function linear(
  out: Float32Array,
  x: Float32Array,
  rows: number,
  inDim: number,
  w: Float32Array,
  outDim: number,
): void {
  const blockRows = Math.max(1, Math.floor(32768 / inDim));
  for (let oStart = 0; oStart < outDim; oStart += blockRows) {
    const oEnd = Math.min(outDim, oStart + blockRows);
    let r = 0;
    for (; r + 8 <= rows; r += 8) linearTile8(out, x, r, inDim, w, outDim, oStart, oEnd);
    for (; r < rows; r++) linearRow(out, x, r, inDim, w, outDim, oStart, oEnd);
  }
}

/** Rows r..r+7 against weight rows oStart..oEnd-1. */
function linearTile8(
  out: Float32Array,
  x: Float32Array,
  r: number,
  inDim: number,
  w: Float32Array,
  outDim: number,
  oStart: number,
  oEnd: number,
): void {
  const x0 = r * inDim;
  const x1 = x0 + inDim;
  const x2 = x1 + inDim;
  const x3 = x2 + inDim;
  const x4 = x3 + inDim;
  const x5 = x4 + inDim;
  const x6 = x5 + inDim;
  const x7 = x6 + inDim;
  for (let o = oStart; o < oEnd; o++) {
    const wOff = o * inDim;
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    let s4 = 0;
    let s5 = 0;
    let s6 = 0;
    let s7 = 0;
    for (let k = 0; k < inDim; k++) {
      const wk = w[wOff + k];
      s0 += x[x0 + k] * wk;
      s1 += x[x1 + k] * wk;
      s2 += x[x2 + k] * wk;
      s3 += x[x3 + k] * wk;
      s4 += x[x4 + k] * wk;
      s5 += x[x5 + k] * wk;
      s6 += x[x6 + k] * wk;
      s7 += x[x7 + k] * wk;
    }
    const y = r * outDim + o;
    out[y] = s0;
    out[y + outDim] = s1;
    out[y + 2 * outDim] = s2;
    out[y + 3 * outDim] = s3;
    out[y + 4 * outDim] = s4;
    out[y + 5 * outDim] = s5;
    out[y + 6 * outDim] = s6;
    out[y + 7 * outDim] = s7;
  }
}

/**
 * One row r against weight rows oStart..oEnd-1, four weight rows at a time: each x value loaded
 * feeds four independent accumulators (~25% faster than one output with split partial sums).
 */
function linearRow(
  out: Float32Array,
  x: Float32Array,
  r: number,
  inDim: number,
  w: Float32Array,
  outDim: number,
  oStart: number,
  oEnd: number,
): void {
  const xOff = r * inDim;
  const y = r * outDim;
  let o = oStart;
  for (; o + 4 <= oEnd; o += 4) {
    const w0 = o * inDim;
    const w1 = w0 + inDim;
    const w2 = w1 + inDim;
    const w3 = w2 + inDim;
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    for (let k = 0; k < inDim; k++) {
      const xk = x[xOff + k];
      s0 += xk * w[w0 + k];
      s1 += xk * w[w1 + k];
      s2 += xk * w[w2 + k];
      s3 += xk * w[w3 + k];
    }
    out[y + o] = s0;
    out[y + o + 1] = s1;
    out[y + o + 2] = s2;
    out[y + o + 3] = s3;
  }
  for (; o < oEnd; o++) {
    const wOff = o * inDim;
    let s = 0;
    for (let k = 0; k < inDim; k++) s += x[xOff + k] * w[wOff + k];
    out[y + o] = s;
  }
}
