// Prefill attention on tensor cores (FlashAttention-2 style) over the paged KV cache: one block per
// (query tile, query head), where a query tile is up to 64 consecutive rows of one sequence (the rows
// of a prefill chunk, see prefillAttentionTiles). Each K/V tile of 64 keys is read once per block
// and shared by all 64 query rows, instead of once per row as in the decode kernel.
//
// 4 warps × 16 query rows. Per key tile:
//   S = Q·Kᵀ      mma.m16n8k16: Q fragments (loaded once, kept in registers) × K from shared memory
//                 (ldmatrix, keys as the B operand's n);
//   mask          key position ≥ ctxLen[row] → −∞ (ctxLen = pos + 1: causal, and prefix keys of cached
//                 blocks count as any other key);
//   softmax       online, base 2 with the 1/√d scale folded in, running max and sum per row;
//   O += P·V      P re-packed from the S accumulators into A fragments (bf16) without leaving registers,
//                 V from shared memory through ldmatrix.trans (keys are the k dimension).
// K/V tiles are gathered page by page (a 64-key tile spans several KV blocks) as bf16, or with an FP8
// cache as e4m3 widened exactly to bf16 on the way into shared memory.
#include <cmath>

#include "cuda_common.cuh"
#include "ldmatrix.cuh"
#include "mma_bf16.cuh"
#include "prefill.h"
#include "widen_bits.cuh"

namespace seventy::cuda {
namespace {

constexpr int kQTile = 64;  // query rows per block
constexpr int kKTile = 64;  // keys per tile
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;

__device__ __forceinline__ uint4 widenFp8x8(uint32_t lo, uint32_t hi) {
  return make_uint4(fp8x2ToBf16x2Bits(lo), fp8x2ToBf16x2Bits(lo >> 16), fp8x2ToBf16x2Bits(hi), fp8x2ToBf16x2Bits(hi >> 16));
}

template <int D, bool KV8>
__global__ void __launch_bounds__(kThreads) prefillAttentionKernel(AttentionArgs a, const int32_t* __restrict__ tiles) {
  constexpr int kLd = D + 8;  // row stride: (D + 8)·2 bytes puts the 8 rows of an ldmatrix in 8 bank groups
  __shared__ __align__(16) uint16_t sK[kKTile * kLd];
  __shared__ __align__(16) uint16_t sV[kKTile * kLd];
  const int r0 = tiles[2 * blockIdx.x], nRows = tiles[2 * blockIdx.x + 1];
  const int head = blockIdx.y, kvh = head / (a.numHeads / a.numKvHeads);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int64_t qStride = int64_t(a.numHeads) * D;

  // Q tile through sK into registers (rows past the tile are zero).
  for (int c = tid; c < kQTile * D / 8; c += kThreads) {
    const int row = c / (D / 8), part = c % (D / 8);
    const uint4 v = row < nRows ? *reinterpret_cast<const uint4*>(a.q + (r0 + row) * qStride + head * D + part * 8) : make_uint4(0, 0, 0, 0);
    *reinterpret_cast<uint4*>(sK + row * kLd + part * 8) = v;
  }
  __syncthreads();
  uint32_t qf[D / 16][4];
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++) ldmatrixX4<false>(qf[kk], sK + (warp * 16 + (lane & 15)) * kLd + kk * 16 + (lane >> 4) * 8);

  const int rowA = warp * 16 + g, rowB = rowA + 8;
  const int ctxA = rowA < nRows ? a.ctxLen[r0 + rowA] : 0, ctxB = rowB < nRows ? a.ctxLen[r0 + rowB] : 0;
  int maxCtx = 0;
  for (int i = 0; i < nRows; i++) maxCtx = max(maxCtx, a.ctxLen[r0 + i]);
  const int32_t* table = a.blockTables + a.tableOffset[r0];
  const float scale = 1.4426950408889634f / sqrtf(float(D));  // log2(e)/√d: scores in base-2 units

  float o[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) o[i][j] = 0.0f;
  float mA = -INFINITY, mB = -INFINITY, lA = 0.0f, lB = 0.0f;

  for (int k0 = 0; k0 < maxCtx; k0 += kKTile) {
    __syncthreads();  // the previous tile's ldmatrix reads (and the Q loads) are done
    constexpr int kChunk = KV8 ? 16 : 8;  // elements per 16-byte global load
    for (int c = tid; c < kKTile * D / kChunk; c += kThreads) {
      const int key = c / (D / kChunk), part = c % (D / kChunk), p = k0 + key;
      uint4 k[2] = {make_uint4(0, 0, 0, 0), make_uint4(0, 0, 0, 0)}, v[2] = {k[0], k[1]};
      if (p < maxCtx) {
        const int64_t e = ((int64_t(table[p / a.blockSize]) * a.numKvHeads + kvh) * a.blockSize + p % a.blockSize) * D + part * kChunk;
        if constexpr (KV8) {
          const uint4 kr = *reinterpret_cast<const uint4*>(reinterpret_cast<const uint8_t*>(a.kCache) + e);
          const uint4 vr = *reinterpret_cast<const uint4*>(reinterpret_cast<const uint8_t*>(a.vCache) + e);
          k[0] = widenFp8x8(kr.x, kr.y), k[1] = widenFp8x8(kr.z, kr.w);
          v[0] = widenFp8x8(vr.x, vr.y), v[1] = widenFp8x8(vr.z, vr.w);
        } else {
          k[0] = *reinterpret_cast<const uint4*>(a.kCache + e);
          v[0] = *reinterpret_cast<const uint4*>(a.vCache + e);
        }
      }
#pragma unroll
      for (int i = 0; i < (KV8 ? 2 : 1); i++) {
        *reinterpret_cast<uint4*>(sK + key * kLd + part * kChunk + i * 8) = k[i];
        *reinterpret_cast<uint4*>(sV + key * kLd + part * kChunk + i * 8) = v[i];
      }
    }
    __syncthreads();

    // S = Q·Kᵀ for this warp's 16 rows × 64 keys (8 n-tiles of 8 keys).
    float s[8][4];
#pragma unroll
    for (int i = 0; i < 8; i++)
#pragma unroll
      for (int j = 0; j < 4; j++) s[i][j] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++)
#pragma unroll
      for (int np = 0; np < 4; np++) {
        uint32_t r[4];
        ldmatrixX4<false>(r, sK + (np * 16 + (lane >> 4) * 8 + (lane & 7)) * kLd + kk * 16 + ((lane >> 3) & 1) * 8);
        mmaBf16(s[2 * np], qf[kk], r[0], r[1]);
        mmaBf16(s[2 * np + 1], qf[kk], r[2], r[3]);
      }

    // Mask, scale, and the tile's row maxima (each row's 64 scores are spread over the 4 lanes of a quad).
    float tA = -INFINITY, tB = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < 8; nt++)
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const int key = k0 + nt * 8 + 2 * t + (j & 1);
        const bool live = key < (j < 2 ? ctxA : ctxB);
        s[nt][j] = live ? s[nt][j] * scale : -INFINITY;
        if (j < 2) tA = fmaxf(tA, s[nt][j]);
        else tB = fmaxf(tB, s[nt][j]);
      }
#pragma unroll
    for (int off = 1; off < 4; off <<= 1) {
      tA = fmaxf(tA, __shfl_xor_sync(kFullMask, tA, off));
      tB = fmaxf(tB, __shfl_xor_sync(kFullMask, tB, off));
    }
    const float nA = fmaxf(mA, tA), nB = fmaxf(mB, tB);
    // A row with no live key yet keeps max −∞: shift by 0 so exp2 gives 0, not NaN.
    const float shA = nA == -INFINITY ? 0.0f : nA, shB = nB == -INFINITY ? 0.0f : nB;
    const float alphaA = exp2f(mA - shA), alphaB = exp2f(mB - shB);
    mA = nA;
    mB = nB;
    lA *= alphaA;
    lB *= alphaB;
#pragma unroll
    for (int i = 0; i < D / 8; i++) {
      o[i][0] *= alphaA;
      o[i][1] *= alphaA;
      o[i][2] *= alphaB;
      o[i][3] *= alphaB;
    }
#pragma unroll
    for (int nt = 0; nt < 8; nt++) {
      s[nt][0] = exp2f(s[nt][0] - shA);
      s[nt][1] = exp2f(s[nt][1] - shA);
      s[nt][2] = exp2f(s[nt][2] - shB);
      s[nt][3] = exp2f(s[nt][3] - shB);
      lA += s[nt][0] + s[nt][1];
      lB += s[nt][2] + s[nt][3];
    }

    // O += P·V: the accumulators of n-tiles 2kk and 2kk+1 are the A fragment of keys 16kk..16kk+15.
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
      const uint32_t pa[4] = {packBf16x2(s[2 * kk][0], s[2 * kk][1]), packBf16x2(s[2 * kk][2], s[2 * kk][3]),
                              packBf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]), packBf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int dp = 0; dp < D / 16; dp++) {
        uint32_t r[4];
        ldmatrixX4<true>(r, sV + (kk * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * kLd + dp * 16 + (lane >> 4) * 8);
        mmaBf16(o[2 * dp], pa, r[0], r[1]);
        mmaBf16(o[2 * dp + 1], pa, r[2], r[3]);
      }
    }
  }

#pragma unroll
  for (int off = 1; off < 4; off <<= 1) {
    lA += __shfl_xor_sync(kFullMask, lA, off);
    lB += __shfl_xor_sync(kFullMask, lB, off);
  }
  const float invA = lA > 0.0f ? 1.0f / lA : 0.0f, invB = lB > 0.0f ? 1.0f / lB : 0.0f;
#pragma unroll
  for (int i = 0; i < D / 8; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const int row = j < 2 ? rowA : rowB, d = i * 8 + 2 * t + (j & 1);
      if (row < nRows) a.out[(r0 + row) * qStride + head * D + d] = toBf16Bits(o[i][j] * (j < 2 ? invA : invB));
    }
}

template <int D>
cudaError_t launchDim(const AttentionArgs& a, const int32_t* tiles, int numTiles, cudaStream_t s) {
  const dim3 grid(numTiles, a.numHeads);
  if (a.kvFp8) SEVENTY_LAUNCH(grid, kThreads, 0, s, prefillAttentionKernel<D, true>)(a, tiles);
  else SEVENTY_LAUNCH(grid, kThreads, 0, s, prefillAttentionKernel<D, false>)(a, tiles);
  return cudaGetLastError();
}

}  // namespace

bool prefillAttentionSupported(int headDim) { return headDim == 16 || headDim == 32 || headDim == 64 || headDim == 128; }

int prefillAttentionTiles(const int32_t* rowSeq, int rows, int32_t* tiles) {
  int n = 0;
  for (int r = 0; r < rows;) {
    int e = r + 1;
    while (e < rows && e - r < kQTile && rowSeq[e] == rowSeq[r]) e++;
    tiles[2 * n] = r;
    tiles[2 * n + 1] = e - r;
    n++;
    r = e;
  }
  return n;
}

cudaError_t prefillAttention(const AttentionArgs& a, const int32_t* tiles, int numTiles, cudaStream_t s) {
  if (!prefillAttentionSupported(a.headDim) || a.numKvHeads <= 0 || a.numHeads % a.numKvHeads != 0 || a.blockSize <= 0) return cudaErrorInvalidValue;
  if (numTiles <= 0) return cudaSuccess;
  switch (a.headDim) {
    case 16: return launchDim<16>(a, tiles, numTiles, s);
    case 32: return launchDim<32>(a, tiles, numTiles, s);
    case 64: return launchDim<64>(a, tiles, numTiles, s);
    default: return launchDim<128>(a, tiles, numTiles, s);
  }
}

}  // namespace seventy::cuda
