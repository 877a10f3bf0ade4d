// Paged attention for decode (and, one query row at a time, causal prefill), split-K over the
// context ("flash-decoding") and grouped-query: one block per (query row, KV head, split) computes
// all G = numHeads / numKvHeads query heads that share the KV head, so each K/V byte is read once
// for the group.
//
// Lanes split the head dimension 4 elements (8 bytes) at a time: LPT = headDim/4 lanes per token,
// 32/LPT tokens per warp pass. Per 64-token tile:
//   1. scores: every lane dots its 4 dims with G query heads, then a reduce-scatter across the LPT
//      lanes leaves each lane with the full score of some heads (log2(LPT) + G − 1 shuffles instead of
//      G · log2(LPT));
//   2. online softmax per head (base-2 exponent, the scale folded into q);
//   3. P·V with the running output rescaled.
// K/V are double-buffered in registers: a tile's V loads are issued with the scores still to compute
// (in flight during the scores and the softmax), and the next tile's K loads before this tile's P·V,
// so every phase of a tile overlaps a load of the next phase's operand.
// Splits write unnormalized partial outputs and (max, sum); a second kernel combines them.
#include <cmath>

#include "cuda_common.cuh"
#include "kernels.h"
#include "widen_bits.cuh"

namespace seventy::cuda {
namespace {

constexpr int kAttnWarps = 4;
constexpr int kTile = 64;                          // tokens per tile
constexpr int kTokensPerWarp = kTile / kAttnWarps;  // 16

// Reduce-scatter of v[0..CNT) over lanes that differ in bit OFF and below. After it, v[i] of a lane
// holds the total of head headBase + i, i < CNT / min(CNT, 2·OFF) ... tracked by the caller via headOffset.
template <int CNT, int OFF>
struct HeadReduce {
  static __device__ __forceinline__ void run(float* v, int lane, int& headBase) {
    if constexpr (OFF == 0) {
      return;
    } else if constexpr (CNT > 1) {
      constexpr int H = CNT / 2;
      const bool upper = (lane & OFF) != 0;
#pragma unroll
      for (int i = 0; i < H; i++) {
        const float send = upper ? v[i] : v[i + H];
        const float keep = upper ? v[i + H] : v[i];
        v[i] = keep + __shfl_xor_sync(kFullMask, send, OFF);
      }
      if (upper) headBase += H;
      HeadReduce<H, OFF / 2>::run(v, lane, headBase);
    } else {
      v[0] += __shfl_xor_sync(kFullMask, v[0], OFF);
      HeadReduce<1, OFF / 2>::run(v, lane, headBase);
    }
  }
};

template <int CNT, int OFF>
struct RemainingCount {
  static constexpr int value = (OFF == 0 || CNT == 1) ? CNT : RemainingCount<CNT / 2, OFF / 2>::value;
};
template <int CNT>
struct RemainingCount<CNT, 0> {
  static constexpr int value = CNT;
};

__device__ __forceinline__ float4 loadBf16x4(const uint16_t* p) {
  const uint2 u = *reinterpret_cast<const uint2*>(p);
  return make_float4(bf16Lo(u.x), bf16Hi(u.x), bf16Lo(u.y), bf16Hi(u.y));
}

// Four consecutive K or V values of one token and head: bf16 (8 bytes) or, with an FP8 cache, e4m3
// (4 bytes, scale 1, widened exactly by bit manipulation). `e` is the element offset.
template <bool KV8>
struct Kv4 {
  using Raw = uint2;
  __device__ static Raw load(const uint16_t* c, int64_t e) { return *reinterpret_cast<const uint2*>(c + e); }
  __device__ static float at(Raw r, int i) { return i == 0 ? bf16Lo(r.x) : i == 1 ? bf16Hi(r.x) : i == 2 ? bf16Lo(r.y) : bf16Hi(r.y); }
  __device__ static Raw zero() { return make_uint2(0, 0); }
};
template <>
struct Kv4<true> {
  using Raw = uint32_t;
  __device__ static Raw load(const uint16_t* c, int64_t e) { return *reinterpret_cast<const uint32_t*>(reinterpret_cast<const uint8_t*>(c) + e); }
  __device__ static float at(Raw r, int i) { return fp8e4m3BitsToFloat((r >> (8 * i)) & 0xffu); }
  __device__ static Raw zero() { return 0u; }
};

template <int HD, int G, bool KV8 = false>
// At most 168 registers: 3 blocks (12 warps) per SM keep enough K/V loads in flight (4 spills at G = 8).
__global__ void __launch_bounds__(kAttnWarps * 32, 3) attentionKernel(AttentionArgs a, float scaleLog2) {
  using KV = Kv4<KV8>;
  constexpr int LPT = HD / 4;                 // lanes per token
  constexpr int TPW = 32 / LPT;               // tokens per warp pass
  constexpr int PASSES = kTokensPerWarp / TPW;
  constexpr int KEEP = RemainingCount<G, LPT / 2>::value;  // heads a lane holds after the reduce-scatter
  static_assert(PASSES >= 1, "head dim too small");

  __shared__ float sc[G][kTile];
  __shared__ float mS[G], lS[G], alphaS[G];
  __shared__ float outS[kAttnWarps][G][HD];

  const int row = blockIdx.x, kvh = blockIdx.y, split = blockIdx.z, splits = gridDim.z;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int st = lane / LPT, dl = lane % LPT;
  const int qStride = a.numHeads * HD;

  float q[G][4];
#pragma unroll
  for (int g = 0; g < G; g++) {
    const float4 v = loadBf16x4(a.q + int64_t(row) * qStride + (kvh * G + g) * HD + 4 * dl);
    q[g][0] = v.x * scaleLog2;
    q[g][1] = v.y * scaleLog2;
    q[g][2] = v.z * scaleLog2;
    q[g][3] = v.w * scaleLog2;
  }
  const int ctx = a.ctxLen[row];
  const int per = (ctx + splits - 1) / splits;
  const int chunk = (per + kTile - 1) / kTile * kTile;
  const int start = split * chunk, end = min(ctx, start + chunk);
  const int32_t* table = a.blockTables + a.tableOffset[row];
  const int bs = a.blockSize;
  const int64_t headStride = int64_t(bs) * HD;  // one KV head of one block

  if (threadIdx.x < G) {
    mS[threadIdx.x] = -INFINITY;
    lS[threadIdx.x] = 0.0f;
  }
  float acc[G][4];
#pragma unroll
  for (int g = 0; g < G; g++)
#pragma unroll
    for (int j = 0; j < 4; j++) acc[g][j] = 0.0f;
  __syncthreads();

  // This warp's 16 tokens of the tile at tile0 (zero past the end), every load issued before any use.
  using Raw = typename KV::Raw;
  auto loadTile = [&](const uint16_t* cache, int tile0, Raw(&raw)[PASSES]) {
#pragma unroll
    for (int p = 0; p < PASSES; p++) {
      const int tok = tile0 + warp * kTokensPerWarp + p * TPW + st;
      if (tok < end) {
        const int64_t base = (int64_t(table[tok / bs]) * a.numKvHeads + kvh) * headStride + int64_t(tok % bs) * HD + 4 * dl;
        raw[p] = KV::load(cache, base);
      } else {
        raw[p] = KV::zero();
      }
    }
  };
  Raw kraw[PASSES], vraw[PASSES];
  if (start < end) loadTile(a.kCache, start, kraw);
  for (int tile0 = start; tile0 < end; tile0 += kTile) {
    // 1. scores (K loaded during the previous tile's P·V); this tile's V loads go out first.
    loadTile(a.vCache, tile0, vraw);
#pragma unroll
    for (int p = 0; p < PASSES; p++) {
      const float k0 = KV::at(kraw[p], 0), k1 = KV::at(kraw[p], 1), k2 = KV::at(kraw[p], 2), k3 = KV::at(kraw[p], 3);
      float v[G];
#pragma unroll
      for (int g = 0; g < G; g++) v[g] = q[g][0] * k0 + q[g][1] * k1 + q[g][2] * k2 + q[g][3] * k3;
      int headBase = 0;
      HeadReduce<G, LPT / 2>::run(v, lane, headBase);
      const int ti = warp * kTokensPerWarp + p * TPW + st;
      const bool valid = tile0 + ti < end;
#pragma unroll
      for (int i = 0; i < KEEP; i++) sc[headBase + i][ti] = valid ? v[i] : -INFINITY;  // lanes holding the same head write the same value
    }
    __syncthreads();

    // 2. online softmax, one warp per head.
    for (int g = warp; g < G; g += kAttnWarps) {
      const float s0 = sc[g][lane], s1 = sc[g][lane + 32];
      const float mOld = mS[g];
      const float mNew = fmaxf(mOld, warpMax(fmaxf(s0, s1)));
      const float p0 = exp2f(s0 - mNew), p1 = exp2f(s1 - mNew);
      sc[g][lane] = p0;
      sc[g][lane + 32] = p1;
      const float sum = warpSum(p0 + p1);
      if (lane == 0) {
        const float alpha = mOld == -INFINITY ? 0.0f : exp2f(mOld - mNew);
        alphaS[g] = alpha;
        lS[g] = lS[g] * alpha + sum;
        mS[g] = mNew;
      }
    }
    __syncthreads();

    // 3. P·V, with the next tile's K loads in flight.
    if (tile0 + kTile < end) loadTile(a.kCache, tile0 + kTile, kraw);
#pragma unroll
    for (int g = 0; g < G; g++) {
      const float al = alphaS[g];
#pragma unroll
      for (int j = 0; j < 4; j++) acc[g][j] *= al;
    }
#pragma unroll
    for (int p = 0; p < PASSES; p++) {
      const int ti = warp * kTokensPerWarp + p * TPW + st;
      const float v0 = KV::at(vraw[p], 0), v1 = KV::at(vraw[p], 1), v2 = KV::at(vraw[p], 2), v3 = KV::at(vraw[p], 3);
#pragma unroll
      for (int g = 0; g < G; g++) {
        const float pg = sc[g][ti];
        acc[g][0] += pg * v0;
        acc[g][1] += pg * v1;
        acc[g][2] += pg * v2;
        acc[g][3] += pg * v3;
      }
    }
    __syncthreads();
  }

  // Sum over the tokens a warp's lanes held (lanes with equal dl), then over warps.
#pragma unroll
  for (int o = LPT; o < 32; o <<= 1)
#pragma unroll
    for (int g = 0; g < G; g++)
#pragma unroll
      for (int j = 0; j < 4; j++) acc[g][j] += __shfl_xor_sync(kFullMask, acc[g][j], o);
  if (st == 0) {
#pragma unroll
    for (int g = 0; g < G; g++)
#pragma unroll
      for (int j = 0; j < 4; j++) outS[warp][g][4 * dl + j] = acc[g][j];
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < G * HD; idx += kAttnWarps * 32) {
    const int g = idx / HD, d = idx % HD;
    const float o = outS[0][g][d] + outS[1][g][d] + outS[2][g][d] + outS[3][g][d];
    const int qh = kvh * G + g;
    if (splits == 1) {
      const float l = lS[g];
      a.out[int64_t(row) * qStride + qh * HD + d] = toBf16Bits(l > 0 ? o / l : 0.0f);
    } else {
      const int64_t part = (int64_t(row) * splits + split) * a.numHeads + qh;
      a.partial[part * HD + d] = o;
      if (d == 0) {
        float* ml = a.partial + int64_t(a.rows) * splits * a.numHeads * HD;
        ml[2 * part] = mS[g];
        ml[2 * part + 1] = lS[g];
      }
    }
  }
}

// out = Σ_s o_s · 2^(m_s − M) / Σ_s l_s · 2^(m_s − M): one block per (row, query head).
__global__ void combineSplitsKernel(AttentionArgs a, int HD) {
  const int row = blockIdx.x, qh = blockIdx.y, splits = a.numSplits;
  const float* ml = a.partial + int64_t(a.rows) * splits * a.numHeads * HD;
  float M = -INFINITY;
  for (int s = 0; s < splits; s++) M = fmaxf(M, ml[2 * ((int64_t(row) * splits + s) * a.numHeads + qh)]);
  for (int d = threadIdx.x; d < HD; d += blockDim.x) {
    float L = 0, o = 0;
    for (int s = 0; s < splits; s++) {
      const int64_t part = (int64_t(row) * splits + s) * a.numHeads + qh;
      const float l = ml[2 * part + 1];
      if (l == 0.0f) continue;  // an empty split (past the end of a short context)
      const float w = exp2f(ml[2 * part] - M);
      L += l * w;
      o += a.partial[part * HD + d] * w;
    }
    a.out[int64_t(row) * a.numHeads * HD + qh * HD + d] = toBf16Bits(L > 0 ? o / L : 0.0f);
  }
}

template <int HD, bool KV8>
cudaError_t launchHdKv(const AttentionArgs& a, float scaleLog2, cudaStream_t s) {
  const int G = a.numHeads / a.numKvHeads;
  const dim3 grid(a.rows, a.numKvHeads, a.numSplits), block(kAttnWarps * 32);
  switch (G) {
    case 1: SEVENTY_LAUNCH(grid, block, 0, s, attentionKernel<HD, 1, KV8>)(a, scaleLog2); break;
    case 2: SEVENTY_LAUNCH(grid, block, 0, s, attentionKernel<HD, 2, KV8>)(a, scaleLog2); break;
    case 4: SEVENTY_LAUNCH(grid, block, 0, s, attentionKernel<HD, 4, KV8>)(a, scaleLog2); break;
    case 8: SEVENTY_LAUNCH(grid, block, 0, s, attentionKernel<HD, 8, KV8>)(a, scaleLog2); break;
    default: return cudaErrorNotSupported;
  }
  return cudaGetLastError();
}

template <int HD>
cudaError_t launchHd(const AttentionArgs& a, float scaleLog2, cudaStream_t s) {
  return a.kvFp8 ? launchHdKv<HD, true>(a, scaleLog2, s) : launchHdKv<HD, false>(a, scaleLog2, s);
}

}  // namespace

size_t attentionWorkspaceBytes(int rows, int numSplits, int numHeads, int headDim) {
  return numSplits <= 1 ? 0 : size_t(rows) * numSplits * numHeads * (headDim + 2) * sizeof(float);
}

cudaError_t pagedAttention(const AttentionArgs& a, cudaStream_t s) {
  if (a.rows <= 0) return cudaSuccess;
  if (a.numHeads % a.numKvHeads != 0 || a.numSplits < 1 || (a.numSplits > 1 && !a.partial)) return cudaErrorInvalidValue;
  const float scaleLog2 = float(1.4426950408889634 / std::sqrt(double(a.headDim)));  // log2(e) / sqrt(d)
  cudaError_t e;
  switch (a.headDim) {
    case 16: e = launchHd<16>(a, scaleLog2, s); break;
    case 32: e = launchHd<32>(a, scaleLog2, s); break;
    case 64: e = launchHd<64>(a, scaleLog2, s); break;
    case 128: e = launchHd<128>(a, scaleLog2, s); break;
    default: return cudaErrorNotSupported;
  }
  if (e != cudaSuccess || a.numSplits == 1) return e;
  SEVENTY_LAUNCH(dim3(a.rows, a.numHeads), min(a.headDim, 128), 0, s, combineSplitsKernel)(a, a.headDim);
  return cudaGetLastError();
}

}  // namespace seventy::cuda
