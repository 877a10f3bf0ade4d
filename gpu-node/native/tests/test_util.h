// Shared by kernel_tests, quant_kernel_tests and prefill_kernel_tests: one PASS/FAIL line per check, the
// counters behind the closing "N passed, M failed" line, a CUDA-call check, and the relative error every
// check uses.
#pragma once

// Standard headers first: the emulator's <cuda_runtime.h> defines CUDA's specifiers as macros.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <cuda_runtime.h>

inline int passed = 0, failed = 0;

inline void report(bool ok, const std::string& name, const std::string& detail) {
  std::printf("%s %-60s %s\n", ok ? "PASS" : "FAIL", name.c_str(), detail.c_str());
  (ok ? passed : failed)++;
}

// In a test function returning void: a failing CUDA call fails the check and ends the function.
#define CHECK_CUDA(x)                                                                     \
  do {                                                                                    \
    cudaError_t e_ = (x);                                                                 \
    if (e_ != cudaSuccess) {                                                              \
      std::printf("FAIL %s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      failed++;                                                                           \
      return;                                                                             \
    }                                                                                     \
  } while (0)

// ‖a − b‖ / ‖b‖ in double; NaN anywhere (an unwritten poisoned output) makes it NaN.
inline double relErr(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); i++) {
    if (std::isnan(a[i])) return NAN;
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}
