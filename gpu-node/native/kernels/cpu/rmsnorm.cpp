#include <cmath>

#include "cpu_kernels.h"

namespace seventy::cpu {

// y = x · rsqrt(mean(x²) + eps) · w. The sum of squares is taken in double: it is one reduction per
// row, and it keeps this reference as close as possible to the TypeScript engine (which uses doubles).
void rmsNorm(float* out, const float* x, const float* weight, int rows, int dim, double eps) {
  for (int r = 0; r < rows; r++) {
    const float* xr = x + int64_t(r) * dim;
    float* yr = out + int64_t(r) * dim;
    double sumSq = 0;
    for (int i = 0; i < dim; i++) sumSq += double(xr[i]) * xr[i];
    const double inv = 1.0 / std::sqrt(sumSq / dim + eps);
    for (int i = 0; i < dim; i++) yr[i] = float(double(xr[i]) * inv * double(weight[i]));
  }
}

}  // namespace seventy::cpu
