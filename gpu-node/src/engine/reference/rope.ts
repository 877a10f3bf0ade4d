import type { Llama3RopeScaling } from "../../model/types.js";

/**
 * Rotary position embeddings as HF transformers applies them to Llama.
 *
 * inv_freq[i] = 1 / theta^(2i / headDim) for i < headDim/2, then (optionally) rescaled per
 * `_compute_llama3_parameters`. Layout is HF's "rotate_half": dimension i is paired with
 * i + headDim/2 (NOT the interleaved (2i, 2i+1) layout of the original Meta code):
 *
 *   x = [ x_0 … x_{h-1} | x_h … x_{2h-1} ]       h = headDim / 2
 *   y_i     = x_i     cos θ_i − x_{i+h} sin θ_i
 *   y_{i+h} = x_{i+h} cos θ_i + x_i     sin θ_i     θ_i = pos · inv_freq[i]
 */

/** The inverse frequencies (length headDim/2), float32 as HF keeps them. */
export function ropeInvFreq(headDim: number, theta: number, scaling: Llama3RopeScaling | null): Float32Array {
  if (headDim % 2 !== 0) throw new Error(`RoPE needs an even head_dim, got ${headDim}`);
  const half = headDim / 2;
  const invFreq = new Float32Array(half);
  for (let i = 0; i < half; i++) invFreq[i] = 1 / Math.pow(theta, (2 * i) / headDim);
  if (scaling) applyLlama3Scaling(invFreq, scaling);
  return invFreq;
}

/**
 * transformers `_compute_llama3_parameters`: wavelengths shorter than the high-frequency cutoff are
 * kept, those longer than the low-frequency cutoff are divided by `factor`, and the band between is
 * interpolated linearly in (original context / wavelength).
 */
export function applyLlama3Scaling(invFreq: Float32Array, s: Llama3RopeScaling): void {
  const lowFreqWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highFreqWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  for (let i = 0; i < invFreq.length; i++) {
    const inv = invFreq[i];
    const wavelen = (2 * Math.PI) / inv;
    if (wavelen < highFreqWavelen) continue;
    if (wavelen > lowFreqWavelen) {
      invFreq[i] = inv / s.factor;
      continue;
    }
    const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    invFreq[i] = ((1 - smooth) * inv) / s.factor + smooth * inv;
  }
}

/**
 * cos/sin of pos · inv_freq into `cos`/`sin` at `off` (headDim/2 each). The angle is rounded to
 * float32 before cos/sin, as HF computes it (inv_freq @ position_ids in float32): at positions near
 * 131072 that rounding moves the angle by up to ~0.008 rad, so skipping it would drift from HF.
 */
export function ropeCosSin(invFreq: Float32Array, pos: number, cos: Float32Array, sin: Float32Array, off: number): void {
  for (let i = 0; i < invFreq.length; i++) {
    const angle = Math.fround(pos * invFreq[i]);
    cos[off + i] = Math.cos(angle);
    sin[off + i] = Math.sin(angle);
  }
}

/** Rotates `numHeads` consecutive heads of `x` starting at `xOff`, in place, by one position's cos/sin. */
export function applyRope(
  x: Float32Array,
  xOff: number,
  numHeads: number,
  headDim: number,
  cos: Float32Array,
  sin: Float32Array,
  csOff: number,
): void {
  const half = headDim >> 1;
  for (let h = 0; h < numHeads; h++) {
    const base = xOff + h * headDim;
    for (let i = 0; i < half; i++) {
      const c = cos[csOff + i];
      const s = sin[csOff + i];
      const a = x[base + i];
      const b = x[base + i + half];
      x[base + i] = a * c - b * s;
      x[base + i + half] = b * c + a * s;
    }
  }
}
