// The epilogues gemv.cu fuses into its tensor-core GEMV (RoPE + KV-cache write, SwiGLU, bf16 store),
// as separate kernels over float32 GEMV outputs, for linears whose GEMV has no fused epilogue yet
// (gemv_w4.cu). The per-element math is gemv.cu's (epilogues.cuh), so a W4 layer's activations match
// what the fused path would produce from the same accumulators.
#include <cuda_runtime.h>

#include "cuda_common.cuh"
#include "epilogues.cuh"
#include "gemv_w4.h"
#include "kernels.h"
#include "widen_bits.cuh"

namespace seventy::cuda {
namespace {

// One thread per (row, head, rotated pair lo / lo + headDim/2); heads: q, then k, then v.
__global__ void qkvRopeF32Kernel(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v, int M, QkvRopeArgs a) {
  const int half = a.headDim / 2;
  const int heads = a.numHeads + 2 * a.numKvHeads;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(M) * heads * half) return;
  const int lo = int(i % half);
  const int head = int((i / half) % heads);
  const int m = int(i / (int64_t(half) * heads));
  const bool isQ = head < a.numHeads, isV = head >= a.numHeads + a.numKvHeads;
  const int kvh = isV ? head - a.numHeads - a.numKvHeads : head - a.numHeads;
  const float* src = isQ ? q + (int64_t(m) * a.numHeads + head) * a.headDim : (isV ? v : k) + (int64_t(m) * a.numKvHeads + kvh) * a.headDim;
  ropeAndStorePair(a, m, head, lo, src[lo], src[lo + half]);
}

__global__ void swigluF32Kernel(const float* __restrict__ gate, const float* __restrict__ up, int64_t n, uint16_t* __restrict__ y) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  y[i] = toBf16Bits(siluMul(gate[i], up[i]));
}

__global__ void f32ToBf16Kernel(const float* __restrict__ x, int64_t n, uint16_t* __restrict__ y) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] = toBf16Bits(x[i]);
}

unsigned blocksFor(int64_t n) { return unsigned((n + 255) / 256); }

}  // namespace

cudaError_t qkvRopeFromF32(const float* q, const float* k, const float* v, int M, const QkvRopeArgs& a, cudaStream_t s) {
  const int64_t n = int64_t(M) * (a.numHeads + 2 * a.numKvHeads) * (a.headDim / 2);
  if (n <= 0) return cudaSuccess;
  SEVENTY_LAUNCH(blocksFor(n), 256, 0, s, qkvRopeF32Kernel)(q, k, v, M, a);
  return lastLaunchError();
}

cudaError_t swigluFromF32(const float* gate, const float* up, int64_t n, uint16_t* y, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  SEVENTY_LAUNCH(blocksFor(n), 256, 0, s, swigluF32Kernel)(gate, up, n, y);
  return lastLaunchError();
}

cudaError_t f32ToBf16(const float* x, int64_t n, uint16_t* y, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  SEVENTY_LAUNCH(blocksFor(n), 256, 0, s, f32ToBf16Kernel)(x, n, y);
  return lastLaunchError();
}

}  // namespace seventy::cuda
