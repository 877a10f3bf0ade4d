// Sampling on the device: one block per sampled row, no host round trip, so a decode step's only
// synchronization is reading back the ids.
//
//   raw logits ─► penalties (repetition over prompt ∪ output; frequency/presence over output)
//             ─► greedy: argmax (lowest id on ties)
//             └► w = exp((l − max)/T); top-k and top-p thresholds by radix select on the logit's
//                bits (top-p weighted by w); min-p drops w < min_p; inverse-CDF draw in id order
//                with u = uniformFor(seed, outputIndex)
//   logprobs of the raw logits: log-softmax at the token, and the top-n in (value desc, id asc) order.
//
// Greedy picks exactly what the CPU sampler picks. Seeded sampling follows the procedure of
// sampling.ts (same u, kept tokens walked in id order), except that every token tied at a top-k or
// top-p threshold is kept and the sums are float: a seeded sample can differ from the CPU flavor's
// only on a token whose inclusion hinges on that.
#include <cmath>

#include "cuda_common.cuh"
#include "kernels.h"
#include "seventy/numerics.h"

namespace seventy::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarpsPerBlock = kThreads / 32;

__device__ __forceinline__ uint32_t orderedKey(float f) {
  const uint32_t b = __float_as_uint(f);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// (value desc, id asc): true when (v, i) comes before (bv, bi).
__device__ __forceinline__ bool before(float v, int i, float bv, int bi) { return v > bv || (v == bv && i < bi); }

struct ArgmaxScratch {
  float v[kWarpsPerBlock];
  int i[kWarpsPerBlock];
};

// The first element in (value desc, id asc) order among those `after` (prevV, prevI) in that order.
__device__ void blockArgmax(const float* x, int n, float prevV, int prevI, bool usePrev, ArgmaxScratch& s, float& outV, int& outI) {
  float bv = -INFINITY;
  int bi = 0x7fffffff;
  for (int i = threadIdx.x; i < n; i += kThreads) {
    const float v = x[i];
    if (usePrev && !before(prevV, prevI, v, i)) continue;
    if (before(v, i, bv, bi)) {
      bv = v;
      bi = i;
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(kFullMask, bv, o);
    const int oi = __shfl_xor_sync(kFullMask, bi, o);
    if (before(ov, oi, bv, bi)) {
      bv = ov;
      bi = oi;
    }
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();
  if (lane == 0) {
    s.v[warp] = bv;
    s.i[warp] = bi;
  }
  __syncthreads();
  if (warp == 0) {
    bv = s.v[lane];
    bi = s.i[lane];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(kFullMask, bv, o);
      const int oi = __shfl_xor_sync(kFullMask, bi, o);
      if (before(ov, oi, bv, bi)) {
        bv = ov;
        bi = oi;
      }
    }
    if (lane == 0) {
      s.v[0] = bv;
      s.i[0] = bi;
    }
  }
  __syncthreads();
  outV = s.v[0];
  outI = s.i[0];
}

__device__ float blockSum(float v, float* scratch) {
  v = warpSum(v);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = warpSum(scratch[lane]);
    if (lane == 0) scratch[0] = v;
  }
  __syncthreads();
  return scratch[0];
}

// Radix select from the top over 32-bit keys, 8 bits a pass. Counting (weighted = false): the key of
// the k-th largest element. Weighted: the largest key τ with Σ_{key ≥ τ} w ≥ target.
__device__ uint32_t radixSelectTop(const float* x, int n, float invT, float maxL, uint32_t minKey, bool weighted, float target,
                                   float* hist) {
  uint32_t prefix = 0, prefixMask = 0;
  float above = 0;  // count or mass of elements with a key above the current prefix range
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += kThreads) hist[b] = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += kThreads) {
      const uint32_t key = orderedKey(x[i]);
      if (key < minKey || (key & prefixMask) != prefix) continue;
      atomicAdd(&hist[(key >> shift) & 255u], weighted ? __expf((x[i] - maxL) * invT) : 1.0f);
    }
    __syncthreads();
    // Walk bins from the top (thread 0: 256 steps, cheap next to the pass over n).
    __shared__ uint32_t chosen;
    __shared__ float chosenAbove;
    if (threadIdx.x == 0) {
      float cum = above;
      int b = 255;
      for (; b > 0; b--) {
        if (cum + hist[b] >= target) break;
        cum += hist[b];
      }
      chosen = uint32_t(b);
      chosenAbove = cum;
    }
    __syncthreads();
    prefix |= chosen << shift;
    prefixMask |= 255u << shift;
    above = chosenAbove;
    __syncthreads();
  }
  return prefix;
}

__global__ void __launch_bounds__(kThreads) sampleKernel(SamplingArgs a) {
  SEVENTY_DYNAMIC_SMEM(uint32_t, seen);  // two bitmaps over the vocabulary
  __shared__ ArgmaxScratch am;
  __shared__ float scratch[kWarpsPerBlock];
  __shared__ float hist[256];
  __shared__ int pick;

  const int row = blockIdx.x, V = a.vocab;
  const DeviceSamplingParams p = a.params[row];
  const float* raw = a.logits + int64_t(row) * V;
  float* work = a.work + int64_t(row) * V;
  const int words = (V + 31) / 32;

  // Penalties on a copy, so the logprobs below see the raw logits.
  const bool penalize = p.repetitionPenalty != 1.0f || p.frequencyPenalty != 0.0f || p.presencePenalty != 0.0f;
  const float* src = raw;
  if (penalize) {
    for (int i = threadIdx.x; i < V; i += kThreads) work[i] = raw[i];
    for (int i = threadIdx.x; i < 2 * words; i += kThreads) seen[i] = 0;
    __syncthreads();
    const int32_t* hist0 = a.penaltyTokens + p.penaltyOffset;
    if (p.repetitionPenalty != 1.0f) {
      for (int i = threadIdx.x; i < p.promptLen + p.outputLen; i += kThreads) {
        const int id = hist0[i];
        if (id < 0 || id >= V) continue;
        const uint32_t bit = 1u << (id & 31);
        if (atomicOr(&seen[id >> 5], bit) & bit) continue;  // each distinct token once
        const float l = work[id];
        work[id] = l > 0 ? l / p.repetitionPenalty : l * p.repetitionPenalty;
      }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < p.outputLen; i += kThreads) {
      const int id = hist0[p.promptLen + i];
      if (id < 0 || id >= V) continue;
      float d = p.frequencyPenalty;
      const uint32_t bit = 1u << (id & 31);
      if (!(atomicOr(&seen[words + (id >> 5)], bit) & bit)) d += p.presencePenalty;
      atomicAdd(&work[id], -d);
    }
    __syncthreads();
    src = work;
  }

  float maxL;
  int best;
  blockArgmax(src, V, 0, 0, false, am, maxL, best);
  int token = best;
  if (p.temperature >= 1e-5f) {
    const float invT = 1.0f / p.temperature;
    const int topK = p.topK > 0 && p.topK < V ? p.topK : 0;
    const uint32_t kKey = topK ? radixSelectTop(src, V, invT, maxL, 0, false, float(topK), hist) : 0u;
    uint32_t pKey = kKey;
    if (p.topP < 1.0f) {
      float mass = 0;
      for (int i = threadIdx.x; i < V; i += kThreads)
        if (orderedKey(src[i]) >= kKey) mass += __expf((src[i] - maxL) * invT);
      mass = blockSum(mass, scratch);
      pKey = radixSelectTop(src, V, invT, maxL, kKey, true, p.topP * mass, hist);
    }
    // Kept: key ≥ pKey (≥ kKey) and w ≥ min_p. Inverse CDF over kept weights in id order.
    const int per = (V + kThreads - 1) / kThreads;
    const int lo = threadIdx.x * per, hi = min(V, lo + per);
    float local = 0;
    for (int i = lo; i < hi; i++) {
      const float w = __expf((src[i] - maxL) * invT);
      if (orderedKey(src[i]) >= pKey && w >= p.minP) local += w;
    }
    // Inclusive scan of the per-thread sums (warp scan, then the warp totals).
    float incl = local;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const float t = __shfl_up_sync(kFullMask, incl, o);
      if (lane >= o) incl += t;
    }
    __syncthreads();
    if (lane == 31) scratch[warp] = incl;
    __syncthreads();
    if (warp == 0) {
      float t = scratch[lane];
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const float u = __shfl_up_sync(kFullMask, t, o);
        if (lane >= o) t += u;
      }
      scratch[lane] = t;  // inclusive prefix of warp totals
    }
    if (threadIdx.x == 0) pick = 0x7fffffff;
    __syncthreads();
    const float total = scratch[kWarpsPerBlock - 1];
    const float target = float(uniformFor(int64_t(p.seed), int64_t(p.outputIndex))) * total;
    const float excl = incl - local + (warp > 0 ? scratch[warp - 1] : 0.0f);
    if (local > 0 && excl + local > target) {
      float cum = excl;
      int found = -1, last = -1;
      for (int i = lo; i < hi; i++) {
        const float w = __expf((src[i] - maxL) * invT);
        if (!(orderedKey(src[i]) >= pKey && w >= p.minP)) continue;
        cum += w;
        last = i;
        if (cum > target) {
          found = i;
          break;
        }
      }
      atomicMin(&pick, found >= 0 ? found : last);
    }
    __syncthreads();
    token = pick == 0x7fffffff ? best : pick;  // u·total rounded above the final sum: keep the argmax
  }
  if (threadIdx.x == 0) a.tokens[row] = token;

  if (p.logprobs >= 0) {
    float m;
    int mi;
    blockArgmax(raw, V, 0, 0, false, am, m, mi);
    float sum = 0;
    for (int i = threadIdx.x; i < V; i += kThreads) sum += __expf(raw[i] - m);
    sum = blockSum(sum, scratch);
    const float lse = m + logf(sum);
    if (threadIdx.x == 0) a.logprobs[row] = raw[token] - lse;
    float pv = m;
    int pi = mi;
    const int n = min(min(p.logprobs, kMaxTopLogprobs), V);
    for (int j = 0; j < n; j++) {
      if (j > 0) blockArgmax(raw, V, pv, pi, true, am, pv, pi);
      if (threadIdx.x == 0) {
        a.topIds[row * kMaxTopLogprobs + j] = pi;
        a.topLogprobs[row * kMaxTopLogprobs + j] = pv - lse;
      }
    }
  }
}

}  // namespace

cudaError_t sampleTokens(const SamplingArgs& a, cudaStream_t s) {
  if (a.rows <= 0) return cudaSuccess;
  const size_t smem = size_t(2 * ((a.vocab + 31) / 32)) * sizeof(uint32_t);
  if (smem > 48 * 1024) {
    cudaError_t e = cudaFuncSetAttribute(sampleKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    if (e != cudaSuccess) return e;
  }
  SEVENTY_LAUNCH(a.rows, kThreads, smem, s, sampleKernel)(a);
  return cudaGetLastError();
}

}  // namespace seventy::cuda
