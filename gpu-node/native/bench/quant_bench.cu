// quant_bench: the decode GEMVs of one 70B layer (q, k, v, o, gate, up, down at hidden 8192,
// intermediate 28672) with synthetic weights in bf16, FP8 (e4m3 + per-row scales, gemv.cu) and W4A16
// (AutoAWQ int4 + fp16 group scales and zero points, gemv_w4.cu), at decode batch sizes, next to the
// device's copy bandwidth measured in the same run. Decode reads every weight once per step, so
// weight bytes / time is the figure to hold against copy bandwidth (target ≥ 80%).
// Each linear is also timed alone (kind gemv_op: the kernel class per shape and batch).
//   quant_bench [--batches 1,8,32,64] [--iters 20]
// Prints one line per (format, batch) and `RESULT {json}` lines for the device report.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "bench_util.h"
#include "gemv_w4.h"
#include "kernels.h"
#include "seventy/numerics.h"

using namespace seventy;

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

int main(int argc, char** argv) {
  std::vector<int> batches = {1, 8, 32, 64};
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
      // Each linear alone: one launch, so small shapes (k, v) show the launch and the pipeline fill.
      for (size_t i = 0; i < std::size(kLayer); i++) {
        const Shape& sh = kLayer[i];
        const double nk = double(sh.N) * sh.K;
        const double opBytes = !w4.empty() ? nk / 2 + nk / 128 / 2 + nk / 128 * 2 : nk * (dense[i].format == cuda::WFormat::FP8 ? 1.0 : 2.0);
        const double opMs = timeMs(iters, [&] {
          if (!w4.empty()) CK(cuda::w4Gemv(static_cast<const uint16_t*>(x), M, w4[i], y, work, 0));
          else CK(cuda::gemvF32Out(static_cast<const uint16_t*>(x), M, dense[i], y, 0));
        });
        const double opTbps = opBytes / (opMs * 1e-3) / 1e12;
        std::printf("RESULT {\"kind\":\"gemv_op\",\"format\":\"%s\",\"op\":\"%s\",\"N\":%d,\"K\":%d,\"batch\":%d,\"us\":%.2f,\"tbps\":%.4f,"
                    "\"frac_copy\":%.4f}\n", fmt, sh.name, sh.N, sh.K, M, opMs * 1e3, opTbps, opTbps * 1e12 / copyBw);
      }
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
