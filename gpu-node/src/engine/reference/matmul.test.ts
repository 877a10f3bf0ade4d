import { describe, expect, it } from "vitest";
import { linear } from "./matmul.js";

function naive(x: Float32Array, rows: number, inDim: number, w: Float32Array, outDim: number): Float64Array {
  const y = new Float64Array(rows * outDim);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outDim; o++) {
      let s = 0;
      for (let k = 0; k < inDim; k++) s += x[r * inDim + k] * w[o * inDim + k];
      y[r * outDim + o] = s;
    }
  }
  return y;
}

describe("linear", () => {
  // inDim 3001 makes the L2 blocks 10 weight rows long, so outDim 23 spans three uneven blocks;
  // rows cover the 8-row tiles and every leftover count.
  it.each([
    [1, 7, 5],
    [3, 24, 50],
    [8, 20, 37],
    [19, 3001, 23],
    [17, 64, 176],
  ])("matches a plain triple loop for rows %i, in %i, out %i", (rows, inDim, outDim) => {
    let seed = rows * 1000 + inDim;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
    const x = Float32Array.from({ length: rows * inDim }, rand);
    const w = Float32Array.from({ length: outDim * inDim }, rand);
    const out = new Float32Array(rows * outDim).fill(NaN);
    linear(out, x, rows, inDim, w, outDim);
    const ref = naive(x, rows, inDim, w, outDim);
    for (let i = 0; i < ref.length; i++) expect(Math.abs(out[i] - ref[i])).toBeLessThan(1e-5 * Math.max(1, Math.abs(ref[i])));
  });
});
