// The epilogues gemv.cu fuses into its tensor-core GEMV (RoPE + KV-cache write, SwiGLU, bf16 store),
// as separate kernels over float32 GEMV outputs, for linears whose GEMV has no fused epilogue yet
// (gemv_w4.cu). Same math and rounding as gemv.cu's QkvRope / Swiglu / StoreBf16, so a W4 layer's
// activations match what the fused path would produce from the same accumulators.
#include <cuda_runtime.h>

#include "cuda_common.cuh"
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
  const int hi = lo + half;
  const bool isQ = head < a.numHeads, isV = head >= a.numHeads + a.numKvHeads;
  const int kvh = isV ? head - a.numHeads - a.numKvHeads : head - a.numHeads;
  const float* src = isQ ? q + (int64_t(m) * a.numHeads + head) * a.headDim : (isV ? v : k) + (int64_t(m) * a.numKvHeads + kvh) * a.headDim;
  float x = src[lo], y = src[hi];
  if (!isV) {
    // The angle is rounded to float before cos/sin, as HF does (pos · inv_freq in float32).
    float sn, cs;
    sincosf(float(a.positions[m]) * a.invFreq[lo], &sn, &cs);
    const float rx = x * cs - y * sn, ry = y * cs + x * sn;
    x = rx;
    y = ry;
  }
  if (isQ) {
    uint16_t* dst = a.q + int64_t(m) * a.numHeads * a.headDim + int64_t(head) * a.headDim;
    dst[lo] = toBf16Bits(x);
    dst[hi] = toBf16Bits(y);
    return;
  }
  const int slot = a.slots[m];
  if (slot < 0) return;
  const int64_t base = ((int64_t(slot / a.blockSize) * a.numKvHeads + kvh) * a.blockSize + slot % a.blockSize) * a.headDim;
  uint16_t* cache = isV ? a.vCache : a.kCache;
  if (a.kvFp8) {
    reinterpret_cast<uint8_t*>(cache)[base + lo] = floatToFp8e4m3(x);
    reinterpret_cast<uint8_t*>(cache)[base + hi] = floatToFp8e4m3(y);
  } else {
    cache[base + lo] = toBf16Bits(x);
    cache[base + hi] = toBf16Bits(y);
  }
}

__global__ void swigluF32Kernel(const float* __restrict__ gate, const float* __restrict__ up, int64_t n, uint16_t* __restrict__ y) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float g = gate[i];
  y[i] = toBf16Bits(g / (1.0f + __expf(-g)) * up[i]);
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
