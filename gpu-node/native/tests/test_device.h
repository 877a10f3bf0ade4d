// Shared by kernel_tests and prefill_kernel_tests: random bf16 inputs, device buffers, and a test weight
// in bf16 or FP8 with its CPU view. Each test program seeds `rng` itself.
#pragma once

#include <random>

#include "../kernels/cpu/cpu_kernels.h"
#include "kernels.h"
#include "seventy/numerics.h"
#include "test_util.h"

inline std::mt19937_64 rng;

namespace seventy {

inline std::vector<uint16_t> randomBf16(size_t n, float amp) {
  std::uniform_real_distribution<float> d(-amp, amp);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = floatToBf16(d(rng));
  return v;
}
inline std::vector<float> widen(const std::vector<uint16_t>& v) {
  std::vector<float> f(v.size());
  for (size_t i = 0; i < v.size(); i++) f[i] = bf16ToFloat(v[i]);
  return f;
}

template <class T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t count) : n(count) { cudaMalloc(&p, std::max<size_t>(count, 1) * sizeof(T)); }
  Dev(const std::vector<T>& h) : Dev(h.size()) { cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice); }
  ~Dev() { cudaFree(p); }
  std::vector<T> get() const {
    std::vector<T> h(n);
    cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost);
    return h;
  }
  void poison() { cudaMemset(p, 0xff, n * sizeof(T)); }  // bf16 0xffff and f32 0xffffffff are NaN
};

inline std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

// Weight [N, K] as bf16 or fp8 (quantized on the device, checked bit-exact against the CPU quantizer).
struct TestWeight {
  std::vector<uint16_t> bf16;
  std::vector<uint8_t> q;
  std::vector<float> scales;
  cuda::LinearWeight dev;
  cpu::WeightView view;
  uint16_t* dBf16 = nullptr;
  uint8_t* dQ = nullptr;
  float* dScales = nullptr;
  bool quantOk = true;
  TestWeight(int N, int K, bool fp8, const std::vector<uint16_t>* rows = nullptr) {
    bf16 = rows ? *rows : randomBf16(size_t(N) * K, 0.08f);
    cudaMalloc(&dBf16, bf16.size() * 2);
    cudaMemcpy(dBf16, bf16.data(), bf16.size() * 2, cudaMemcpyHostToDevice);
    dev = {cuda::WFormat::BF16, dBf16, nullptr, N, K};
    view = {cpu::WType::BF16, bf16.data(), nullptr, N, K};
    if (fp8) {
      cudaMalloc(&dQ, bf16.size());
      cudaMalloc(&dScales, size_t(N) * 4);
      cuda::quantizeFp8Rows(dBf16, N, K, dQ, dScales, 0);
      q.resize(bf16.size());
      scales.resize(N);
      cudaMemcpy(q.data(), dQ, q.size(), cudaMemcpyDeviceToHost);
      cudaMemcpy(scales.data(), dScales, size_t(N) * 4, cudaMemcpyDeviceToHost);
      for (int r = 0; r < N && quantOk; r++) {
        float amax = 0;
        for (int k = 0; k < K; k++) amax = std::fmax(amax, std::fabs(bf16ToFloat(bf16[size_t(r) * K + k])));
        const float s = amax > 0 ? amax / kFp8Max : 1.0f;
        if (s != scales[r]) quantOk = false;
        for (int k = 0; k < K && quantOk; k++)
          if (q[size_t(r) * K + k] != floatToFp8e4m3(bf16ToFloat(bf16[size_t(r) * K + k]) / s)) quantOk = false;
      }
      dev = {cuda::WFormat::FP8, dQ, dScales, N, K};
      view = {cpu::WType::FP8, q.data(), scales.data(), N, K};
    }
  }
  TestWeight(int N, int K, bool fp8, const std::vector<uint16_t>& rows) : TestWeight(N, K, fp8, &rows) {}
  TestWeight(const TestWeight&) = delete;
  TestWeight& operator=(const TestWeight&) = delete;
  ~TestWeight() {
    cudaFree(dBf16);
    cudaFree(dQ);
    cudaFree(dScales);
  }
};

}  // namespace seventy
