// The per-element math of the GEMV epilogues, shared by gemv.cu (fused into the GEMV) and
// w4_epilogues.cu (separate kernels over float32 GEMV outputs), so both paths round alike.
#pragma once

#include "cuda_common.cuh"
#include "kernels.h"
#include "widen_bits.cuh"

namespace seventy::cuda {

// SwiGLU: silu(gate) · up, in float (bf16 rounding is the caller's store).
__device__ __forceinline__ float siluMul(float gate, float up) { return gate / (1.0f + __expf(-gate)) * up; }

// The pair (lo, lo + headDim/2) of head `head` (q heads, then k, then v) of row m: RoPE (rotate_half)
// on q and k, then stored to q, or to the paged K/V cache at the row's slot (none when slot < 0).
__device__ __forceinline__ void ropeAndStorePair(const QkvRopeArgs& a, int m, int head, int lo, float x, float y) {
  const int hi = lo + a.headDim / 2;
  const bool isQ = head < a.numHeads, isV = head >= a.numHeads + a.numKvHeads;
  if (!isV) {
    // The angle is rounded to float before cos/sin, as HF does (pos · inv_freq in float32).
    float sn, cs;
    sincosf(float(a.positions[m]) * a.invFreq[lo], &sn, &cs);
    const float rx = x * cs - y * sn, ry = y * cs + x * sn;
    x = rx;
    y = ry;
  }
  if (isQ) {
    uint16_t* q = a.q + int64_t(m) * a.numHeads * a.headDim + int64_t(head) * a.headDim;
    q[lo] = toBf16Bits(x);
    q[hi] = toBf16Bits(y);
    return;
  }
  const int slot = a.slots[m];
  if (slot < 0) return;
  const int kvh = isV ? head - a.numHeads - a.numKvHeads : head - a.numHeads;
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

}  // namespace seventy::cuda
