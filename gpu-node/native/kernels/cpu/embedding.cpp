#include "cpu_kernels.h"
#include "seventy/numerics.h"

namespace seventy::cpu {

void embedding(float* out, const WeightView& table, const int32_t* ids, int n) {
  const int dim = table.cols;
  for (int r = 0; r < n; r++) {
    float* dst = out + int64_t(r) * dim;
    const int64_t row = ids[r];
    switch (table.type) {
      case WType::F32: {
        const float* src = static_cast<const float*>(table.data) + row * dim;
        for (int i = 0; i < dim; i++) dst[i] = src[i];
        break;
      }
      case WType::BF16: {
        const uint16_t* src = static_cast<const uint16_t*>(table.data) + row * dim;
        for (int i = 0; i < dim; i++) dst[i] = bf16ToFloat(src[i]);
        break;
      }
      case WType::FP8: {
        const uint8_t* src = static_cast<const uint8_t*>(table.data) + row * dim;
        const float s = table.scales[row];
        for (int i = 0; i < dim; i++) dst[i] = fp8e4m3ToFloat(src[i]) * s;
        break;
      }
      case WType::W4:  // embeddings are gathered rows, never AWQ-packed (the loader keeps them as stored)
        for (int i = 0; i < dim; i++) dst[i] = 0;
        break;
    }
  }
}

}  // namespace seventy::cpu
