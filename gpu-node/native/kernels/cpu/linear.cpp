#include <vector>

#include "cpu_kernels.h"
#include "seventy/numerics.h"

namespace seventy::cpu {
namespace {

// Σ a[k]·b[k] in float32 with eight independent partial sums (they vectorize and break the add chain).
inline float dot(const float* a, const float* b, int n) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int k = 0;
  for (; k + 8 <= n; k += 8)
    for (int j = 0; j < 8; j++) s[j] += a[k + j] * b[k + j];
  for (; k < n; k++) s[0] += a[k] * b[k];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

// Weight row o widened to float32 (fp8: dequantized with its row scale).
void widenRow(const WeightView& w, int o, float* dst) {
  const int64_t K = w.cols;
  switch (w.type) {
    case WType::F32: {
      const float* src = static_cast<const float*>(w.data) + o * K;
      for (int64_t k = 0; k < K; k++) dst[k] = src[k];
      break;
    }
    case WType::BF16: {
      const uint16_t* src = static_cast<const uint16_t*>(w.data) + o * K;
      for (int64_t k = 0; k < K; k++) dst[k] = bf16ToFloat(src[k]);
      break;
    }
    case WType::FP8: {
      const uint8_t* src = static_cast<const uint8_t*>(w.data) + o * K;
      for (int64_t k = 0; k < K; k++) dst[k] = fp8e4m3ToFloat(src[k]);
      break;
    }
    case WType::W4: {
      // (q − z) · s is exact in float32 (a 5-bit integer times an fp16 scale), as the TypeScript dequantizer.
      const int32_t* q = static_cast<const int32_t*>(w.data);
      const int64_t packed = w.rows / 8;
      for (int64_t k = 0; k < K; k++) {
        const int64_t g = k / w.groupSize;
        const int qv = awqNibble(q + k * packed, o);
        const int zv = awqNibble(w.zeros + g * packed, o);
        dst[k] = float(qv - zv) * w.scales[g * w.rows + o];
      }
      break;
    }
  }
}

}  // namespace

// Each weight row is widened once and dotted with every input row, so a step streams each weight
// once whatever its batch. FP8 rows are dotted in their e4m3 values and scaled after the sum, as
// the CUDA kernel does (the scale is per output row, so it factors out).
void linear(float* out, const float* x, int rows, const WeightView& w, bool accumulate) {
  const int K = w.cols, N = w.rows;
  std::vector<float> wrow(K);
  for (int o = 0; o < N; o++) {
    widenRow(w, o, wrow.data());
    const float scale = w.type == WType::FP8 ? w.scales[o] : 1.0f;
    for (int r = 0; r < rows; r++) {
      float v = dot(x + int64_t(r) * K, wrow.data(), K);
      if (w.type == WType::FP8) v *= scale;
      float& dst = out[int64_t(r) * N + o];
      dst = accumulate ? dst + v : v;
    }
  }
}

}  // namespace seventy::cpu
