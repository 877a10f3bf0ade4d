// RMSNorm fused with the residual add: v = resid + delta (written back), y = v · rsqrt(mean(v²)+eps) · w.
// One block per row; the row stays in shared memory between the two passes, so each value is read
// from global memory once. It lets the next kernel launch at once (PDL): the GEMV that follows streams
// its first weight tiles while the norm runs, and reads the norm's output after griddepcontrol.wait.
#include "cuda_common.cuh"
#include "kernels.h"
#include "pipeline.cuh"

namespace seventy::cuda {

constexpr int kNormThreads = 256;

// The delta as the residual adds it: bf16 values, or float32 GEMV outputs rounded to bf16 (W4 layers).
__device__ __forceinline__ float deltaValue(uint16_t d) { return __uint_as_float(uint32_t(d) << 16); }
__device__ __forceinline__ float deltaValue(float d) { return __uint_as_float(uint32_t(toBf16Bits(d)) << 16); }

template <class D>
__global__ void __launch_bounds__(kNormThreads) rmsNormResidualKernel(float* __restrict__ resid, const D* __restrict__ delta,
                                                                      const float* __restrict__ weight, int dim, float eps,
                                                                      uint16_t* __restrict__ out, const int32_t* __restrict__ rowIndex,
                                                                      bool writeBack) {
  SEVENTY_DYNAMIC_SMEM(float, row);
  __shared__ float warpSums[kNormThreads / 32];
  pdlLaunchDependents();
  const int i = blockIdx.x;
  const int64_t r = rowIndex ? rowIndex[i] : i;
  float* x = resid + r * dim;
  const D* d = delta ? delta + r * dim : nullptr;
  float sumSq = 0;
  for (int j = threadIdx.x; j < dim; j += kNormThreads) {
    float v = x[j];
    if (d) v += deltaValue(d[j]);
    row[j] = v;
    if (writeBack) x[j] = v;
    sumSq += v * v;
  }
  sumSq = warpSum(sumSq);
  if ((threadIdx.x & 31) == 0) warpSums[threadIdx.x >> 5] = sumSq;
  __syncthreads();
  if (threadIdx.x < 32) {
    float t = threadIdx.x < kNormThreads / 32 ? warpSums[threadIdx.x] : 0.0f;
    t = warpSum(t);
    if (threadIdx.x == 0) warpSums[0] = t;
  }
  __syncthreads();
  const float inv = rsqrtf(warpSums[0] / float(dim) + eps);
  uint16_t* y = out + int64_t(i) * dim;
  for (int j = threadIdx.x; j < dim; j += kNormThreads) y[j] = toBf16Bits(row[j] * inv * weight[j]);
}

template <class D>
static cudaError_t launchNorm(float* resid, const D* delta, const float* weight, int rows, int dim, float eps, uint16_t* out,
                              const int32_t* rowIndex, bool writeBack, cudaStream_t s) {
  if (rows <= 0) return cudaSuccess;
  const size_t smem = size_t(dim) * sizeof(float);
  if (smem > 48 * 1024) {
    cudaError_t e = cudaFuncSetAttribute(rmsNormResidualKernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    if (e != cudaSuccess) return e;
  }
  SEVENTY_LAUNCH(rows, kNormThreads, smem, s, rmsNormResidualKernel<D>)(resid, delta, weight, dim, eps, out, rowIndex, writeBack);
  return cudaGetLastError();
}

cudaError_t rmsNormResidual(float* resid, const uint16_t* delta, const float* weight, int rows, int dim, float eps, uint16_t* out,
                            const int32_t* rowIndex, bool writeBack, cudaStream_t s) {
  return launchNorm(resid, delta, weight, rows, dim, eps, out, rowIndex, writeBack, s);
}

cudaError_t rmsNormResidualF32(float* resid, const float* delta, const float* weight, int rows, int dim, float eps, uint16_t* out,
                               const int32_t* rowIndex, bool writeBack, cudaStream_t s) {
  return launchNorm(resid, delta, weight, rows, dim, eps, out, rowIndex, writeBack, s);
}

}  // namespace seventy::cuda
