#include <cmath>

#include "cpu_kernels.h"

namespace seventy::cpu {

std::vector<float> ropeInvFreq(int headDim, double theta, const RopeScaling& s) {
  const int half = headDim / 2;
  std::vector<float> inv(half);
  for (int i = 0; i < half; i++) inv[i] = float(1.0 / std::pow(theta, double(2 * i) / headDim));
  if (!s.llama3) return inv;
  // Wavelengths shorter than the high-frequency cutoff stay; longer than the low-frequency cutoff are
  // divided by `factor`; in between, interpolate linearly in (original context / wavelength).
  const double lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const double highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  for (int i = 0; i < half; i++) {
    const double f = inv[i];
    const double wavelen = 2 * M_PI / f;
    if (wavelen < highWavelen) continue;
    if (wavelen > lowWavelen) {
      inv[i] = float(f / s.factor);
      continue;
    }
    const double smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    inv[i] = float((1 - smooth) * f / s.factor + smooth * f);
  }
  return inv;
}

// rotate_half layout: x = [x_0 … x_{h-1} | x_h … x_{2h-1}], dimension i pairs with i + h.
//   y_i = x_i cos θ_i − x_{i+h} sin θ_i,   y_{i+h} = x_{i+h} cos θ_i + x_i sin θ_i,   θ_i = pos · inv_freq_i
// The angle is rounded to float32 before cos/sin, as HF computes it.
void applyRope(float* x, int numHeads, int headDim, const float* invFreq, int pos) {
  const int half = headDim / 2;
  for (int i = 0; i < half; i++) {
    const float angle = float(double(pos) * double(invFreq[i]));
    const float c = float(std::cos(double(angle)));
    const float s = float(std::sin(double(angle)));
    for (int h = 0; h < numHeads; h++) {
      float* xh = x + int64_t(h) * headDim;
      const double a = xh[i], b = xh[i + half];
      xh[i] = float(a * c - b * s);
      xh[i + half] = float(b * c + a * s);
    }
  }
}

}  // namespace seventy::cpu
