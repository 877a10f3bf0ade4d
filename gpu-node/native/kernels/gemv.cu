// Skinny GEMM for decode (batch M ≤ 64 per launch): y[m, n] = Σ_k x[m, k] · W[n, k], on tensor cores
// with the operands swapped — the weight is the MMA's A operand (16 rows of W), the activations the B
// operand (8 batch rows per n-tile) — so one m16n8k16 covers 16 output features × 8 sequences.
//
// Each block owns 64 rows of W (a 16-row tile per warp) and all M ≤ 64 rows of x. W and x stream through
// shared memory in 256-byte-per-row K tiles by a multi-stage cp.async pipeline (the next tiles' copies are
// in flight while this tile's MMAs run); x is staged once per block. Each warp runs its tile's epilogue.
// Launched with programmatic dependent launch on sm_90 (pipeline.cuh): the weights of the first stages
// are requested while the previous kernel drains.
//
// K permutation. mma.m16n8k16 wants lane (g = lane/4, t = lane%4) to hold A[g][2t, 2t+1, 2t+8, 2t+9]
// (and row g+8), B[2t, 2t+1, 2t+8, 2t+9][g]. A dot product does not care which physical k sits
// under which logical k, as long as A and B agree, so lane t takes four *contiguous* physical k's
// per MMA: logical {2t, 2t+1, 2t+8, 2t+9} ↔ physical {kstep·t + 4s + 0..3} of the chunk (sub-step s).
// Then every lane loads 16 contiguous bytes of its W row (8 bf16 or 16 fp8) and 16/32 bytes of its x row:
//
//   chunk (bf16: 32 k, fp8: 64 k):   | t=0: kstep elems | t=1 | t=2 | t=3 |     rows g and g+8 of the tile
//
// FP8 weights are e4m3 → bf16 in registers (exact) and the per-row scale is applied after the sum.
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cmath>

#include "cuda_common.cuh"
#include "epilogues.cuh"
#include "kernels.h"
#include "mma_bf16.cuh"
#include "pipeline.cuh"
#include "widen_bits.cuh"

namespace seventy::cuda {
namespace {

constexpr int kWarps = 4;                     // one 16-row tile of W per warp
constexpr int kRowsPerBlock = 16 * kWarps;
constexpr int kTileBytes = 256;               // bytes of each W row per pipeline stage: 4 chunks of 64

__device__ __forceinline__ uint32_t fp8x2ToBf16x2(uint32_t twoBytes) {
#if defined(SEVENTY_EMU) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 890)
  // No FP8 hardware before sm_89: integer bit manipulation (widen_bits.cuh), not cuda_fp8.hpp's software path.
  return fp8x2ToBf16x2Bits(twoBytes);
#else
  __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t(twoBytes & 0xffffu), __NV_E4M3);
  const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&h));
  return packBf16x2(f.x, f.y);
#endif
}

template <bool FP8>
struct Fmt {
  static constexpr int kStep = FP8 ? 16 : 8;    // k elements per 16-byte weight load
  static constexpr int kChunk = 4 * kStep;      // k elements per warp iteration
  static constexpr int kSub = kStep / 4;        // MMAs per chunk
  static constexpr int kBytes = FP8 ? 1 : 2;
  static constexpr int kTileK = kTileBytes / kBytes;  // k elements per stage
  // Shared-memory row strides. A 16-byte load is served 8 lanes at a time (rows g and g+1, t = 0..3):
  // W rows and bf16 x rows (64 bytes per row per phase) sit 64 bytes apart modulo 128, fp8 x rows (128
  // bytes per row per phase, in 32-byte steps) 16 bytes apart modulo 32, so no phase hits a bank twice.
  static constexpr int kWRow = kTileBytes + 64;
  static constexpr int kXRow = kTileK * 2 + (FP8 ? 16 : 64);
};

// Epilogues get the reduced accumulators of one tile: acc[nt][j] is W row n0 + g + 8·(j ≥ 2) and batch
// row 8·nt + 2t + (j & 1).
struct StoreBf16 {
  uint16_t* y;
  int N;
  template <int NT>
  __device__ void operator()(const float (&acc)[NT][4], int n0, int M, int g, int t) const {
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const int n = n0 + g + ((j >> 1) << 3), m = nt * 8 + 2 * t + (j & 1);
        if (m < M && n < N) y[int64_t(m) * N + n] = toBf16Bits(acc[nt][j]);
      }
  }
};

struct StoreF32 {
  float* y;
  int N;
  template <int NT>
  __device__ void operator()(const float (&acc)[NT][4], int n0, int M, int g, int t) const {
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const int n = n0 + g + ((j >> 1) << 3), m = nt * 8 + 2 * t + (j & 1);
        if (m < M && n < N) y[int64_t(m) * N + n] = acc[nt][j];
      }
  }
};

// o_proj / down_proj fused with the residual add: resid[m, n] += bf16(y[m, n]) (the bf16 rounding the
// separate delta buffer had), and the sum of squares of the new residual over the tile's 16 columns,
// per batch row, into parts[m · tiles + n0/16] for the next GEMV's RMSNorm (see NormIn).
struct AddResidual {
  float* resid;
  float* parts;
  int N, tiles;
  template <int NT>
  __device__ void operator()(const float (&acc)[NT][4], int n0, int M, int g, int t) const {
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
      for (int h = 0; h < 2; h++) {
        const int m = nt * 8 + 2 * t + h;
        float ss = 0.0f;
#pragma unroll
        for (int hi = 0; hi < 2; hi++) {
          const int n = n0 + g + 8 * hi;
          if (m < M && n < N) {
            float* r = resid + int64_t(m) * N + n;
            const float v = *r + __uint_as_float(uint32_t(toBf16Bits(acc[nt][2 * hi + h])) << 16);
            *r = v;
            ss += v * v;
          }
        }
        // The 8 lanes of one t (g = 0..7) hold the tile's 16 columns of row m.
        ss += __shfl_xor_sync(0xffffffffu, ss, 4);
        ss += __shfl_xor_sync(0xffffffffu, ss, 8);
        ss += __shfl_xor_sync(0xffffffffu, ss, 16);
        if (g == 0 && m < M && n0 < N) parts[int64_t(m) * tiles + n0 / 16] = ss;
      }
  }
};

// Tile i holds gate rows 8i..8i+7 (accumulator rows g) and up rows 8i..8i+7 (rows g+8).
struct Swiglu {
  uint16_t* y;
  int I;
  template <int NT>
  __device__ void operator()(const float (&acc)[NT][4], int n0, int M, int g, int t) const {
    const int j = n0 / 2 + g;
    if (j >= I) return;
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
      for (int h = 0; h < 2; h++) {
        const int m = nt * 8 + 2 * t + h;
        const float gate = acc[nt][h], up = acc[nt][2 + h];
        if (m < M) y[int64_t(m) * I + j] = toBf16Bits(siluMul(gate, up));
      }
  }
};

// Tile i of head `head` holds dims lo = 8·jt + g (rows g) and lo + headDim/2 (rows g+8): the pair RoPE rotates.
struct QkvRope {
  QkvRopeArgs a;
  template <int NT>
  __device__ void operator()(const float (&acc)[NT][4], int n0, int M, int g, int t) const {
    const int tilesPerHead = a.headDim / 16;
    const int tile = n0 / 16, head = tile / tilesPerHead, jt = tile % tilesPerHead;
    if (head >= a.numHeads + 2 * a.numKvHeads) return;
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
      for (int h = 0; h < 2; h++) {
        const int m = nt * 8 + 2 * t + h;
        if (m >= M) continue;
        float x = acc[nt][h], y = acc[nt][2 + h];
        ropeAndStorePair(a, m, head, 8 * jt + g, x, y);
      }
  }
};

// Stages of the cp.async pipeline: 4, or 3 where 4 would pass sm_80's 163 KB of shared memory per block.
template <int NT, bool FP8>
__host__ __device__ constexpr int stagesFor() {
  return FP8 && NT >= 8 ? 3 : 4;
}
template <int NT, bool FP8>
__host__ __device__ constexpr int stageBytes() {
  return kRowsPerBlock * Fmt<FP8>::kWRow + NT * 8 * Fmt<FP8>::kXRow;
}

// One block: kRowsPerBlock rows of W (a 16-row tile per warp, each warp over the whole K) against all M
// rows of x. K is streamed in tiles of kTileBytes per W row through a kStages-deep cp.async pipeline in
// shared memory; the block's threads copy W and x tiles cooperatively (x once per block, not per warp).
// With PDL the first stages' weights are requested before griddepcontrol.wait: they do not depend on
// the previous kernel, whose tail they overlap; x is read and every output written after the wait.
//
// NORM: the activations are RMSNorm(resid) rather than x: the block sums each row's partial sums of
// squares (left by the AddResidual epilogue of the GEMV before) into its inverse RMS, then stages x
// tiles as bf16(resid · inv · w) with plain loads and shared-memory stores in place of the x copies.
//
// Split-K (gridDim.y > 1): block (bx, s) runs tiles [s·sk.tilesPer, (s+1)·sk.tilesPer) of K, stores its
// accumulators in sk.partials, and the last of the gridDim.y blocks of column bx to finish (a counter per
// column, reset by that block for the next launch) sums all splits' partials in split order and runs the
// epilogue, so the result does not depend on which block finishes last.
struct SplitK {
  float* partials = nullptr;     // [blocks][splits][threads][NT·4]
  unsigned* counters = nullptr;  // [blocks], zero between launches
  int tilesPer = 0;
};

template <int NT, bool FP8, bool NORM, class Epi>
__global__ void __launch_bounds__(kWarps * 32) gemvKernel(const uint16_t* __restrict__ x, int M, int K, const uint8_t* __restrict__ W,
                                                          const float* __restrict__ scales, int N, NormIn nin, SplitK sk, Epi epi) {
  using F = Fmt<FP8>;
  constexpr int kStages = stagesFor<NT, FP8>(), kStage = stageBytes<NT, FP8>(), kMRows = NT * 8;
  SEVENTY_DYNAMIC_SMEM(uint4, smemV);
  __shared__ float invRms[NORM ? kMRows : 1];
  uint8_t* const smem = reinterpret_cast<uint8_t*>(smemV);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int row0 = blockIdx.x * kRowsPerBlock;
  const int64_t rowBytes = int64_t(K) * F::kBytes;
  const int numTiles = int((rowBytes + kTileBytes - 1) / kTileBytes);
  const int t0 = gridDim.y > 1 ? int(blockIdx.y) * sk.tilesPer : 0;  // this block's K tiles [t0, t1)
  const int t1 = gridDim.y > 1 ? min(numTiles, t0 + sk.tilesPer) : numTiles;

  // The last tile may end early: its chunks (64 bytes of W) past K are neither copied nor multiplied;
  // inside the last chunk, and for rows past N or M, the copies zero-fill (src-size 0: nothing is read).
  auto chunksIn = [&](int tile) { return int(min(int64_t(kTileBytes / 64), (rowBytes - int64_t(tile) * kTileBytes + 63) / 64)); };
  auto issueW = [&](int tile, int slot) {
    uint8_t* dst = smem + slot * kStage;
    constexpr int kPieces = kTileBytes / 16;
    const int pieces = chunksIn(tile) * 4;
#pragma unroll
    for (int i = threadIdx.x; i < kRowsPerBlock * kPieces; i += kWarps * 32) {
      const int r = i / kPieces, p = i % kPieces, n = row0 + r;
      if (p >= pieces) continue;
      const int64_t kb = int64_t(tile) * kTileBytes + p * 16;
      const bool ok = n < N && kb < rowBytes;
      cpAsync16(dst + r * F::kWRow + p * 16, ok ? W + int64_t(n) * rowBytes + kb : W, ok ? 16 : 0);
    }
  };
  auto issueX = [&](int tile, int slot) {
    uint8_t* dst = smem + slot * kStage + kRowsPerBlock * F::kWRow;
    constexpr int kPieces = F::kTileK * 2 / 16;
    const int pieces = chunksIn(tile) * F::kChunk / 8;
#pragma unroll
    for (int i = threadIdx.x; i < kMRows * kPieces; i += kWarps * 32) {
      const int m = i / kPieces, p = i % kPieces, k = tile * F::kTileK + p * 8;
      if (p >= pieces) continue;
      const bool ok = m < M && k < K;
      if constexpr (NORM) {
        // The same rounding as rmsnorm.cu: bf16((v · inv) · w).
        uint4 v = make_uint4(0, 0, 0, 0);
        if (ok) {
          const float* r = nin.resid + int64_t(m) * K + k;
          const float4 r0 = *reinterpret_cast<const float4*>(r), r1 = *reinterpret_cast<const float4*>(r + 4);
          const float4 w0 = *reinterpret_cast<const float4*>(nin.weight + k), w1 = *reinterpret_cast<const float4*>(nin.weight + k + 4);
          const float inv = invRms[m];
          v.x = packBf16x2(r0.x * inv * w0.x, r0.y * inv * w0.y);
          v.y = packBf16x2(r0.z * inv * w0.z, r0.w * inv * w0.w);
          v.z = packBf16x2(r1.x * inv * w1.x, r1.y * inv * w1.y);
          v.w = packBf16x2(r1.z * inv * w1.z, r1.w * inv * w1.w);
        }
        *reinterpret_cast<uint4*>(dst + m * F::kXRow + p * 16) = v;
      } else {
        cpAsync16(dst + m * F::kXRow + p * 16, ok ? x + int64_t(m) * K + k : x, ok ? 16 : 0);
      }
    }
  };

  // Prologue: stages 0..kStages-2. Group 0 holds their weights and x of stage 0, group s ≥ 1 x of stage s.
  for (int st = 0; st < kStages - 1; st++)
    if (t0 + st < t1) issueW(t0 + st, st);
  pdlWait();
  if constexpr (NORM) {
    // Row m's inverse RMS from the previous GEMV's per-tile partial sums (rows past M: unused).
    for (int m = warp; m < kMRows; m += kWarps) {
      float ss = 0.0f;
      if (m < M)
        for (int i = lane; i < nin.tiles; i += 32) ss += nin.parts[int64_t(m) * nin.tiles + i];
      ss = warpSum(ss);
      if (lane == 0) invRms[m] = rsqrtf(ss / float(K) + nin.eps);
    }
    __syncthreads();
  }
  for (int st = 0; st < kStages - 1; st++) {
    if (t0 + st < t1) issueX(t0 + st, st);
    cpAsyncCommit();
  }
  pdlLaunchDependents();

  float acc[NT][4];
#pragma unroll
  for (int nt = 0; nt < NT; nt++)
#pragma unroll
    for (int j = 0; j < 4; j++) acc[nt][j] = 0.0f;

  const int wr = warp * 16;  // this warp's rows within the block's tile
  for (int tile = t0; tile < t1; tile++) {
    cpAsyncWait<kStages - 2>();  // this thread's copies of `tile` have landed
    __syncthreads();             // everyone's have; and everyone is done with the slot refilled next
    const int next = tile + kStages - 1;
    if (next < t1) {
      issueW(next, (next - t0) % kStages);
      issueX(next, (next - t0) % kStages);
    }
    cpAsyncCommit();  // (maybe empty: keeps one group per tile for the wait count)
    const uint8_t* ws = smem + ((tile - t0) % kStages) * kStage;
    const uint8_t* xs = ws + kRowsPerBlock * F::kWRow;
    const int chunks = chunksIn(tile);
#pragma unroll
    for (int c = 0; c < kTileBytes / 64; c++) {
      if (c >= chunks) break;
      const uint4 va = *reinterpret_cast<const uint4*>(ws + (wr + g) * F::kWRow + c * 64 + t * 16);
      const uint4 vb = *reinterpret_cast<const uint4*>(ws + (wr + g + 8) * F::kWRow + c * 64 + t * 16);
      // A fragments of the chunk's kSub MMAs, converted once and reused for every n-tile.
      const uint32_t* ra = reinterpret_cast<const uint32_t*>(&va);
      const uint32_t* rb = reinterpret_cast<const uint32_t*>(&vb);
      uint32_t af[F::kSub][4];
#pragma unroll
      for (int s = 0; s < F::kSub; s++) {
        if constexpr (FP8) {
          // sub-step s uses bytes 4s..4s+3 of the 16: word s.
          af[s][0] = fp8x2ToBf16x2(ra[s]);
          af[s][1] = fp8x2ToBf16x2(rb[s]);
          af[s][2] = fp8x2ToBf16x2(ra[s] >> 16);
          af[s][3] = fp8x2ToBf16x2(rb[s] >> 16);
        } else {
          af[s][0] = ra[2 * s];
          af[s][1] = rb[2 * s];
          af[s][2] = ra[2 * s + 1];
          af[s][3] = rb[2 * s + 1];
        }
      }
#pragma unroll
      for (int nt = 0; nt < NT; nt++) {
        // x row nt·8 + g, the same kStep elements (kStep·2 bytes: one or two 16-byte loads).
        const uint8_t* xp = xs + (nt * 8 + g) * F::kXRow + (c * F::kChunk + t * F::kStep) * 2;
        uint4 xv[FP8 ? 2 : 1];
#pragma unroll
        for (int i = 0; i < (FP8 ? 2 : 1); i++) xv[i] = *reinterpret_cast<const uint4*>(xp + 16 * i);
        const uint32_t* rx = reinterpret_cast<const uint32_t*>(xv);
#pragma unroll
        for (int s = 0; s < F::kSub; s++) mmaBf16(acc[nt], af[s], rx[2 * s], rx[2 * s + 1]);
      }
    }
  }

  if (gridDim.y > 1) {
    __shared__ int lastSplit;
    const int64_t perBlock = int64_t(kWarps * 32) * NT * 4;
    float* mine = sk.partials + (int64_t(blockIdx.x) * gridDim.y + blockIdx.y) * perBlock + threadIdx.x * NT * 4;
#pragma unroll
    for (int nt = 0; nt < NT; nt++) *reinterpret_cast<float4*>(mine + nt * 4) = make_float4(acc[nt][0], acc[nt][1], acc[nt][2], acc[nt][3]);
    __threadfence();  // the partials are visible before the counter says so
    __syncthreads();
    if (threadIdx.x == 0) lastSplit = atomicAdd(sk.counters + blockIdx.x, 1u) == gridDim.y - 1;
    __syncthreads();
    if (!lastSplit) return;
    __threadfence();
    const float* col = sk.partials + int64_t(blockIdx.x) * gridDim.y * perBlock + threadIdx.x * NT * 4;
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
      for (int j = 0; j < 4; j++) acc[nt][j] = 0.0f;
    for (int sp = 0; sp < int(gridDim.y); sp++)
#pragma unroll
      for (int nt = 0; nt < NT; nt++) {
        const float4 v = __ldcg(reinterpret_cast<const float4*>(col + sp * perBlock + nt * 4));  // other blocks' stores: not via L1
        acc[nt][0] += v.x;
        acc[nt][1] += v.y;
        acc[nt][2] += v.z;
        acc[nt][3] += v.w;
      }
    if (threadIdx.x == 0) sk.counters[blockIdx.x] = 0;  // ready for the next launch
  }

  const int n0 = row0 + wr, rowA = n0 + g, rowB = n0 + g + 8;
  if constexpr (FP8) {
    const float sA = rowA < N ? scales[rowA] : 0.0f, sB = rowB < N ? scales[rowB] : 0.0f;
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
      acc[nt][0] *= sA;
      acc[nt][1] *= sA;
      acc[nt][2] *= sB;
      acc[nt][3] *= sB;
    }
  }
  epi.template operator()<NT>(acc, n0, M, g, t);
}

int numSMs() {
  static const int n = [] {
    int dev = 0;
    cudaDeviceProp p;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&p, dev) != cudaSuccess) return 1;
    return std::max(p.multiProcessorCount, 1);
  }();
  return n;
}

// Splits of K for a GEMV with a split-K workspace: enough blocks for about two waves of the SMs, at
// most kMaxSplits, each split at least kStages tiles of K (so its pipeline fills).
constexpr int kMaxSplits = 4;
template <int NT, bool FP8>
int splitsFor(const LinearWeight& w, int& tilesPer) {
  const int blocks = (w.N + kRowsPerBlock - 1) / kRowsPerBlock;
  const int numTiles = int((int64_t(w.K) * Fmt<FP8>::kBytes + kTileBytes - 1) / kTileBytes);
  int splits = std::min({kMaxSplits, (2 * numSMs() + blocks - 1) / blocks, std::max(1, numTiles / stagesFor<NT, FP8>())});
  tilesPer = (numTiles + splits - 1) / splits;
  return (numTiles + tilesPer - 1) / tilesPer;  // no empty split
}

template <int NT, bool FP8, bool NORM, class Epi>
cudaError_t launchOne(const uint16_t* x, int M, const LinearWeight& w, const NormIn& nin, const SplitKWorkspace* ws, Epi epi, cudaStream_t s) {
  constexpr int smem = stagesFor<NT, FP8>() * stageBytes<NT, FP8>();
  static const cudaError_t attr = cudaFuncSetAttribute(gemvKernel<NT, FP8, NORM, Epi>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (attr != cudaSuccess) return attr;
  SplitK sk;
  int splits = 1;
  if (ws && ws->partials) {
    splits = splitsFor<NT, FP8>(w, sk.tilesPer);
    sk.partials = ws->partials;
    sk.counters = ws->counters;
  }
  const dim3 grid((w.N + kRowsPerBlock - 1) / kRowsPerBlock, splits), block(kWarps * 32);
  const uint8_t* W = static_cast<const uint8_t*>(w.data);
  if (cudaError_t e = (SEVENTY_LAUNCH_PDL(grid, block, smem, s, gemvKernel<NT, FP8, NORM, Epi>)(x, M, w.K, W, w.scales, w.N, nin, sk, epi))) return e;
  return cudaGetLastError();
}

template <bool FP8, bool NORM, class Epi>
cudaError_t launchTyped(const uint16_t* x, int M, const LinearWeight& w, const NormIn& nin, const SplitKWorkspace* ws, Epi epi, cudaStream_t s) {
  if (M <= 8) return launchOne<1, FP8, NORM>(x, M, w, nin, ws, epi, s);
  if (M <= 16) return launchOne<2, FP8, NORM>(x, M, w, nin, ws, epi, s);
  if (M <= 32) return launchOne<4, FP8, NORM>(x, M, w, nin, ws, epi, s);
  return launchOne<8, FP8, NORM>(x, M, w, nin, ws, epi, s);
}

template <class Epi>
cudaError_t launchSlice(const uint16_t* x, int M, const LinearWeight& w, Epi epi, cudaStream_t s, const SplitKWorkspace* ws = nullptr) {
  const NormIn none;
  return w.format == WFormat::FP8 ? launchTyped<true, false>(x, M, w, none, ws, epi, s) : launchTyped<false, false>(x, M, w, none, ws, epi, s);
}
// nin.resid != nullptr: the activations are RMSNorm(nin.resid) (x unused). Only the epilogues of the
// GEMVs that follow a norm (QKV, gate/up) are instantiated with it.
template <class Epi>
cudaError_t launchSlice(const uint16_t* x, int M, const LinearWeight& w, const NormIn& nin, Epi epi, cudaStream_t s) {
  if (!nin.resid) return launchSlice(x, M, w, epi, s);
  return w.format == WFormat::FP8 ? launchTyped<true, true>(x, M, w, nin, nullptr, epi, s) : launchTyped<false, true>(x, M, w, nin, nullptr, epi, s);
}

// The rows [m0, m0 + 64) of a normed input.
NormIn sliceOf(const NormIn& n, int m0, int K) {
  NormIn r = n;
  if (r.resid) {
    r.resid += int64_t(m0) * K;
    r.parts += int64_t(m0) * r.tiles;
  }
  return r;
}

cudaError_t checkShape(const LinearWeight& w) {
  const int align = w.format == WFormat::FP8 ? 16 : 8;
  if (w.K % align != 0 || w.N <= 0) return cudaErrorInvalidValue;
  return cudaSuccess;
}

}  // namespace

// M > 64 runs in slices of 64 rows (prefill): each slice re-reads W, which is fine for the chunk
// sizes a decode-first server prefills with; a tiled GEMM for long prompts is separate work.
cudaError_t gemvBf16Out(const uint16_t* x, int M, const LinearWeight& w, uint16_t* y, cudaStream_t s) {
  if (cudaError_t e = checkShape(w)) return e;
  for (int m0 = 0; m0 < M; m0 += 64)
    if (cudaError_t e = launchSlice(x + int64_t(m0) * w.K, min(64, M - m0), w, StoreBf16{y + int64_t(m0) * w.N, w.N}, s)) return e;
  return cudaSuccess;
}

cudaError_t gemvF32Out(const uint16_t* x, int M, const LinearWeight& w, float* y, cudaStream_t s) {
  if (cudaError_t e = checkShape(w)) return e;
  for (int m0 = 0; m0 < M; m0 += 64)
    if (cudaError_t e = launchSlice(x + int64_t(m0) * w.K, min(64, M - m0), w, StoreF32{y + int64_t(m0) * w.N, w.N}, s)) return e;
  return cudaSuccess;
}

int normPartsPerRow(int hidden) { return (hidden + 15) / 16; }

size_t splitKPartialsBytes(int N) {
  return size_t((N + kRowsPerBlock - 1) / kRowsPerBlock) * kMaxSplits * kWarps * 32 * 8 * 4 * sizeof(float);
}

cudaError_t gemvAddResidual(const uint16_t* x, int M, const LinearWeight& w, float* resid, float* parts, cudaStream_t s,
                            const SplitKWorkspace* ws) {
  if (cudaError_t e = checkShape(w)) return e;
  const int tiles = normPartsPerRow(w.N);
  for (int m0 = 0; m0 < M; m0 += 64)
    if (cudaError_t e = launchSlice(x + int64_t(m0) * w.K, min(64, M - m0), w,
                                    AddResidual{resid + int64_t(m0) * w.N, parts + int64_t(m0) * tiles, w.N, tiles}, s, ws))
      return e;
  return cudaSuccess;
}

static cudaError_t checkNorm(const NormIn* n, const LinearWeight& w) {
  if (n && (!n->resid || !n->parts || !n->weight || n->tiles != normPartsPerRow(w.K))) return cudaErrorInvalidValue;
  return cudaSuccess;
}

cudaError_t gemvSwiglu(const uint16_t* x, int M, const LinearWeight& w, uint16_t* y, cudaStream_t s, const NormIn* norm) {
  if (cudaError_t e = checkShape(w)) return e;
  if (cudaError_t e = checkNorm(norm, w)) return e;
  if (w.N % 16 != 0) return cudaErrorInvalidValue;
  const int I = w.N / 2;
  const NormIn nin = norm ? *norm : NormIn{};
  for (int m0 = 0; m0 < M; m0 += 64)
    if (cudaError_t e = launchSlice(x + int64_t(m0) * w.K, min(64, M - m0), w, sliceOf(nin, m0, w.K), Swiglu{y + int64_t(m0) * I, I}, s))
      return e;
  return cudaSuccess;
}

cudaError_t gemvQkvRope(const uint16_t* x, int M, const LinearWeight& w, const QkvRopeArgs& a, cudaStream_t s, const NormIn* norm) {
  if (cudaError_t e = checkShape(w)) return e;
  if (cudaError_t e = checkNorm(norm, w)) return e;
  if (a.headDim % 16 != 0 || w.N != (a.numHeads + 2 * a.numKvHeads) * a.headDim) return cudaErrorInvalidValue;
  const NormIn nin = norm ? *norm : NormIn{};
  for (int m0 = 0; m0 < M; m0 += 64) {
    QkvRopeArgs slice = a;
    slice.positions += m0;
    slice.slots += m0;
    slice.q += int64_t(m0) * a.numHeads * a.headDim;
    if (cudaError_t e = launchSlice(x + int64_t(m0) * w.K, min(64, M - m0), w, sliceOf(nin, m0, w.K), QkvRope{slice}, s)) return e;
  }
  return cudaSuccess;
}

void qkvRowOrder(int numHeads, int numKvHeads, int headDim, int32_t* order) {
  const int half = headDim / 2, heads = numHeads + 2 * numKvHeads;
  int i = 0;
  for (int h = 0; h < heads; h++)
    for (int jt = 0; jt < headDim / 16; jt++) {
      for (int g = 0; g < 8; g++) order[i++] = h * headDim + 8 * jt + g;
      for (int g = 0; g < 8; g++) order[i++] = h * headDim + half + 8 * jt + g;
    }
}

void gateUpRowOrder(int intermediate, int32_t* order) {
  int i = 0;
  for (int j = 0; j < intermediate / 8; j++) {
    for (int g = 0; g < 8; g++) order[i++] = 8 * j + g;
    for (int g = 0; g < 8; g++) order[i++] = intermediate + 8 * j + g;
  }
}

}  // namespace seventy::cuda
