#include <cmath>

#include "cpu_kernels.h"

namespace seventy::cpu {

// SwiGLU's elementwise part: gate = silu(gate) · up, silu(g) = g / (1 + e^-g).
void siluMul(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const double g = gate[i];
    gate[i] = float((g / (1.0 + std::exp(-g))) * double(up[i]));
  }
}

}  // namespace seventy::cpu
