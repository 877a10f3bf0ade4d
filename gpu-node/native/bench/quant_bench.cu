// quant_bench: the decode GEMVs of one 70B layer (q, k, v, o, gate, up, down at hidden 8192,
// intermediate 28672) with synthetic weights in bf16, FP8 (e4m3 + per-row scales, gemv.cu) and W4A16
// (AutoAWQ int4 + fp16 group scales and zero points, gemv_w4.cu), at decode batch sizes, next to the
// device's copy bandwidth measured in the same run. Decode reads every weight once per step, so
// weight bytes / time is the figure to hold against copy bandwidth (target ≥ 80%).
//   quant_bench [--batches 1,8] [--iters 20]
// Prints one line per (format, batch) and a `RESULT {json}` line for the device report.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "gemv_w4.h"
#include "kernels.h"
#include "seventy/numerics.h"

using namespace seventy;

#define CK(x)                                                                              \
  do {                                                                                     \
    cudaError_t e_ = (x);                                                                  \
    if (e_ != cudaSuccess) {                                                               \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                        \
    }                                                                                      \
  } while (0)

struct Shape {
  const char* name;
  int N, K;
};
static const Shape kLayer[] = {{"q", 8192, 8192},    {"k", 1024, 8192},     {"v", 1024, 8192},   {"o", 8192, 8192},
                               {"gate", 28672, 8192}, {"up", 28672, 8192}, {"down", 8192, 28672}};

// Device bytes with a repeating pseudo-random pattern (what the values are does not change the bandwidth).
static void* deviceFill(size_t bytes, uint8_t mask, uint32_t seed) {
  void* d = nullptr;
  CK(cudaMalloc(&d, bytes));
  std::vector<uint8_t> h(std::min<size_t>(bytes, size_t(64) << 20));
  std::mt19937 rng(seed);
  for (auto& b : h) b = uint8_t(rng()) & mask;
  for (size_t off = 0; off < bytes; off += h.size()) CK(cudaMemcpy(static_cast<uint8_t*>(d) + off, h.data(), std::min(h.size(), bytes - off), cudaMemcpyHostToDevice));
  return d;
}

static double copyBandwidth() {
  const size_t bytes = size_t(2) << 30;
  void *a = nullptr, *b = nullptr;
  CK(cudaMalloc(&a, bytes));
  CK(cudaMalloc(&b, bytes));
  CK(cudaMemset(a, 1, bytes));
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  for (int i = 0; i < 3; i++) cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
  std::vector<float> ms;
  for (int i = 0; i < 10; i++) {
    cudaEventRecord(e0);
    cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float t;
    cudaEventElapsedTime(&t, e0, e1);
    ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  cudaFree(a);
  cudaFree(b);
  return 2.0 * double(bytes) / (ms[ms.size() / 2] * 1e-3);  // read + write
}

// Median milliseconds of `iters` runs of `body` (after two warm-ups).
static double timeMs(int iters, const std::function<void()>& body) {
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  body();
  body();
  std::vector<float> ms;
  for (int i = 0; i < iters; i++) {
    cudaEventRecord(e0);
    body();
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float t;
    cudaEventElapsedTime(&t, e0, e1);
    ms.push_back(t);
  }
  CK(cudaGetLastError());
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

int main(int argc, char** argv) {
  std::vector<int> batches = {1, 8};
  int iters = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--batches")) {
      batches.clear();
      for (char* p = std::strtok(argv[i + 1], ","); p; p = std::strtok(nullptr, ",")) batches.push_back(std::atoi(p));
    } else if (!std::strcmp(argv[i], "--iters")) {
      iters = std::atoi(argv[i + 1]);
    }
  }
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, 0));
  const double copyBw = copyBandwidth();
  std::printf("device %s (sm_%d%d), copy bandwidth %.2f TB/s (read + write)\n", prop.name, prop.major, prop.minor, copyBw / 1e12);
  std::printf("RESULT {\"kind\":\"copy\",\"device\":\"%s\",\"copy_tbps\":%.4f}\n", prop.name, copyBw / 1e12);
  const int maxM = *std::max_element(batches.begin(), batches.end());

  // Activations and outputs for the largest shapes.
  void* x = deviceFill(size_t(maxM) * 28672 * 2, 0x3f, 1);  // small positive bf16 patterns
  float* y = nullptr;
  float* work = nullptr;
  CK(cudaMalloc(&y, size_t(maxM) * 28672 * 4));
  CK(cudaMalloc(&work, cuda::w4GemvWorkspaceBytes(maxM, 28672)));

  for (const char* fmt : {"bf16", "fp8", "w4a16"}) {
    std::vector<cuda::LinearWeight> dense;
    std::vector<cuda::W4Weight> w4;
    double bytes = 0;
    for (const Shape& s : kLayer) {
      const size_t nk = size_t(s.N) * s.K;
      if (!std::strcmp(fmt, "w4a16")) {
        cuda::W4Weight w;
        w.N = s.N;
        w.K = s.K;
        w.groupSize = 128;
        w.qweight = static_cast<const int32_t*>(deviceFill(nk / 2, 0xff, 2));
        w.qzeros = static_cast<const int32_t*>(deviceFill(nk / 128 / 2, 0xff, 3));
        w.scales = static_cast<const uint16_t*>(deviceFill(nk / 128 * 2, 0x2f, 4));  // finite fp16
        w4.push_back(w);
        bytes += nk / 2.0 + nk / 128 / 2.0 + nk / 128 * 2.0;
      } else {
        cuda::LinearWeight w;
        const bool fp8 = !std::strcmp(fmt, "fp8");
        w.format = fp8 ? cuda::WFormat::FP8 : cuda::WFormat::BF16;
        w.N = s.N;
        w.K = s.K;
        w.data = deviceFill(nk * (fp8 ? 1 : 2), fp8 ? 0x77 : 0x3f, 5);  // no e4m3 NaN
        if (fp8) w.scales = static_cast<const float*>(deviceFill(size_t(s.N) * 4, 0x3c, 6));
        dense.push_back(w);
        bytes += nk * (fp8 ? 1.0 : 2.0) + (fp8 ? s.N * 4.0 : 0.0);
      }
    }
    for (int M : batches) {
      const double ms = timeMs(iters, [&] {
        if (!w4.empty())
          for (const auto& w : w4) CK(cuda::w4Gemv(static_cast<const uint16_t*>(x), M, w, y, work, 0));
        else
          for (const auto& w : dense) CK(cuda::gemvF32Out(static_cast<const uint16_t*>(x), M, w, y, 0));
      });
      const double tbps = bytes / (ms * 1e-3) / 1e12;
      std::printf("%-6s batch %2d: one layer's 7 GEMVs %.3f ms, %.1f MB of weights, %.2f TB/s = %.0f%% of copy\n", fmt, M, ms, bytes / 1e6, tbps,
                  100 * tbps * 1e12 / copyBw);
      std::printf("RESULT {\"kind\":\"gemv\",\"format\":\"%s\",\"batch\":%d,\"layer_ms\":%.4f,\"mb\":%.2f,\"tbps\":%.4f,\"frac_copy\":%.4f}\n", fmt, M, ms,
                  bytes / 1e6, tbps, tbps * 1e12 / copyBw);
    }
    for (auto& w : w4) {
      cudaFree(const_cast<int32_t*>(w.qweight));
      cudaFree(const_cast<int32_t*>(w.qzeros));
      cudaFree(const_cast<uint16_t*>(w.scales));
    }
    for (auto& w : dense) {
      cudaFree(const_cast<void*>(w.data));
      if (w.scales) cudaFree(const_cast<float*>(w.scales));
    }
  }
  cudaFree(x);
  cudaFree(y);
  cudaFree(work);
  return 0;
}
