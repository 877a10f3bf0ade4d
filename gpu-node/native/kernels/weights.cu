// Load-time kernels: row permutation into the fused layouts, per-channel FP8 quantization, seeded
// dummy weights. They use numerics.h, so the device produces the bits the CPU flavor produces.
#include "cuda_common.cuh"
#include "kernels.h"
#include "seventy/numerics.h"

namespace seventy::cuda {
namespace {

__global__ void permuteRowsKernel(uint16_t* __restrict__ dst, const uint16_t* __restrict__ src, const int32_t* __restrict__ order,
                                  int64_t cols) {
  const int64_t r = blockIdx.x;
  const uint16_t* s = src + int64_t(order[r]) * cols;
  uint16_t* d = dst + r * cols;
  if ((cols & 7) == 0) {
    for (int64_t i = threadIdx.x * 8; i < cols; i += blockDim.x * 8)
      *reinterpret_cast<uint4*>(d + i) = *reinterpret_cast<const uint4*>(s + i);
  } else {
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) d[i] = s[i];
  }
}

constexpr int kQuantThreads = 256;

__global__ void __launch_bounds__(kQuantThreads) quantizeFp8RowsKernel(const uint16_t* __restrict__ src, int64_t cols,
                                                                        uint8_t* __restrict__ dst, float* __restrict__ scales) {
  __shared__ float warpMaxes[kQuantThreads / 32];
  const int64_t r = blockIdx.x;
  const uint16_t* s = src + r * cols;
  float amax = 0;
  for (int64_t i = threadIdx.x; i < cols; i += kQuantThreads) amax = fmaxf(amax, fabsf(bf16ToFloat(s[i])));
  amax = warpMax(amax);
  if ((threadIdx.x & 31) == 0) warpMaxes[threadIdx.x >> 5] = amax;
  __syncthreads();
  if (threadIdx.x < 32) {
    float m = threadIdx.x < kQuantThreads / 32 ? warpMaxes[threadIdx.x] : 0.0f;
    m = warpMax(m);
    if (threadIdx.x == 0) warpMaxes[0] = m;
  }
  __syncthreads();
  const float m = warpMaxes[0];
  const float scale = m > 0 ? m / kFp8Max : 1.0f;
  if (threadIdx.x == 0) scales[r] = scale;
  for (int64_t i = threadIdx.x; i < cols; i += kQuantThreads) dst[r * cols + i] = floatToFp8e4m3(bf16ToFloat(s[i]) / scale);
}

__global__ void fillDummyKernel(uint16_t* dst, int64_t base, int64_t n, uint64_t seed, uint32_t tensorId, float amplitude) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = dummyWeightBf16(seed, tensorId, uint64_t(base + i), amplitude);
}

__global__ void fillKernel(uint16_t* dst, int64_t n, uint16_t v) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) dst[i] = v;
}

__global__ void bf16ToF32Kernel(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) dst[i] = bf16ToFloat(src[i]);
}

int gridFor(int64_t n) { return int((n + 255) / 256 < 65536 ? (n + 255) / 256 : 65536); }

}  // namespace

cudaError_t permuteRows(uint16_t* dst, const uint16_t* src, const int32_t* order, int64_t rows, int64_t cols, cudaStream_t s) {
  if (rows <= 0) return cudaSuccess;
  SEVENTY_LAUNCH(unsigned(rows), 256, 0, s, permuteRowsKernel)(dst, src, order, cols);
  return cudaGetLastError();
}

cudaError_t quantizeFp8Rows(const uint16_t* src, int64_t rows, int64_t cols, uint8_t* dst, float* scales, cudaStream_t s) {
  if (rows <= 0) return cudaSuccess;
  SEVENTY_LAUNCH(unsigned(rows), kQuantThreads, 0, s, quantizeFp8RowsKernel)(src, cols, dst, scales);
  return cudaGetLastError();
}

cudaError_t fillDummyBf16(uint16_t* dst, int64_t r0, int64_t rows, int64_t cols, uint64_t seed, uint32_t tensorId, float amplitude,
                          cudaStream_t s) {
  const int64_t n = rows * cols;
  if (n <= 0) return cudaSuccess;
  SEVENTY_LAUNCH(gridFor(n), 256, 0, s, fillDummyKernel)(dst, r0 * cols, n, seed, tensorId, amplitude);
  return cudaGetLastError();
}

cudaError_t fillBf16(uint16_t* dst, int64_t n, float value, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  SEVENTY_LAUNCH(gridFor(n), 256, 0, s, fillKernel)(dst, n, floatToBf16(value));
  return cudaGetLastError();
}

cudaError_t bf16ToF32(const uint16_t* src, float* dst, int64_t n, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  SEVENTY_LAUNCH(gridFor(n), 256, 0, s, bf16ToF32Kernel)(src, dst, n);
  return cudaGetLastError();
}

}  // namespace seventy::cuda
