// W4A16 GEMV for AutoAWQ "GEMM" checkpoints, reading the packing as stored (no repack at load):
//
//   qweight [K][N/8] int32: word c of input row k holds outputs 8c..8c+7 of that k
//      lane l of a warp reads word c = 32·blockIdx.x + l  → one coalesced 128-byte load per k per warp
//
// Each thread owns one word column (8 outputs). A block's 8 warps read the same 256 outputs over
// disjoint K slices (split-K inside the block, reduced through shared memory), and gridDim.y splits
// K further into kW4Splits slices whose partial sums a second kernel adds in a fixed order
// (deterministic, no atomics). Per group of G inputs a thread widens its 8 scales and zero points
// once: w = q·s − z·s, exact in float32 as the CPU reference's (q − z)·s.
// Rows of x are taken kRowTile at a time (8 × kRowTile accumulators per thread); a batch of M rows
// reads the weights ceil(M / kRowTile) times. That CUDA-core kernel is kept for group sizes that are
// not a multiple of 16; the others run w4MmaKernel below (tensor cores, all M ≤ 64 rows in one pass).
#include <cuda_runtime.h>

#include "cuda_common.cuh"
#include "gemv_w4.h"
#include "mma_bf16.cuh"
#include "pipeline.cuh"
#include "widen_bits.cuh"

namespace seventy::cuda {
namespace {

constexpr int kW4Warps = 8;
constexpr int kW4Splits = 4;
constexpr int kRowTile = 4;

// Bit position of output column j (0..7) of a word: AutoAWQ's order puts column [0,2,4,6,1,3,5,7][i] in nibble i.
__device__ __forceinline__ int awqShift(int j) { return 4 * ((j & 1) * 4 + (j >> 1)); }

template <int RT>
__global__ void __launch_bounds__(kW4Warps * 32) w4PartialKernel(const uint16_t* __restrict__ x, int M, int m0, int K,
                                                                 const int32_t* __restrict__ qweight, const int32_t* __restrict__ qzeros,
                                                                 const uint16_t* __restrict__ scales, int N, int G,
                                                                 float* __restrict__ partial) {
  __shared__ float red[kW4Warps - 1][RT * 8][32];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int words = N / 8;
  const int c = blockIdx.x * 32 + lane;
  const bool live = c < words;
  const int groups = K / G;
  // This block's K slice, in whole groups; its warps take the slice's groups round robin.
  const int g0 = int((int64_t(groups) * blockIdx.y) / gridDim.y), g1 = int((int64_t(groups) * (blockIdx.y + 1)) / gridDim.y);

  float acc[RT][8];
#pragma unroll
  for (int r = 0; r < RT; r++)
#pragma unroll
    for (int j = 0; j < 8; j++) acc[r][j] = 0.0f;

  for (int g = g0 + warp; g < g1; g += kW4Warps) {
    if (!live) break;
    float s[8], zs[8];
    const uint32_t zw = uint32_t(__ldg(qzeros + int64_t(g) * words + c));
#pragma unroll
    for (int j = 0; j < 8; j++) {
      s[j] = f16BitsToFloat(__ldg(scales + int64_t(g) * N + 8 * c + j));
      zs[j] = nibbleToFloat(zw, awqShift(j)) * s[j];
    }
    for (int k = g * G; k < (g + 1) * G; k++) {
      const uint32_t qw = uint32_t(__ldg(qweight + int64_t(k) * words + c));
      float wv[8];
#pragma unroll
      for (int j = 0; j < 8; j++) wv[j] = fmaf(nibbleToFloat(qw, awqShift(j)), s[j], -zs[j]);
#pragma unroll
      for (int r = 0; r < RT; r++) {
        const int m = m0 + r;
        const float xv = m < M ? __uint_as_float(uint32_t(__ldg(x + int64_t(m) * K + k)) << 16) : 0.0f;
#pragma unroll
        for (int j = 0; j < 8; j++) acc[r][j] = fmaf(xv, wv[j], acc[r][j]);
      }
    }
  }

  if (warp > 0) {
#pragma unroll
    for (int r = 0; r < RT; r++)
#pragma unroll
      for (int j = 0; j < 8; j++) red[warp - 1][r * 8 + j][lane] = acc[r][j];
  }
  __syncthreads();
  if (warp != 0 || !live) return;
#pragma unroll
  for (int w = 0; w < kW4Warps - 1; w++)
#pragma unroll
    for (int r = 0; r < RT; r++)
#pragma unroll
      for (int j = 0; j < 8; j++) acc[r][j] += red[w][r * 8 + j][lane];
  // partial [split][m][N]
#pragma unroll
  for (int r = 0; r < RT; r++) {
    const int m = m0 + r;
    if (m >= M) break;
    float* dst = partial + (int64_t(blockIdx.y) * M + m) * N + 8 * c;
#pragma unroll
    for (int j = 0; j < 8; j++) dst[j] = acc[r][j];
  }
}

__global__ void w4ReduceKernel(const float* __restrict__ partial, int splits, int64_t MN, float* __restrict__ y) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= MN) return;
  float v = 0.0f;
  for (int s = 0; s < splits; s++) v += partial[int64_t(s) * MN + i];
  y[i] = v;
}

// ---- tensor-core W4 GEMV: one pass over the weights for up to 64 rows of x ----
//
// A block owns 128 outputs (8 warps × a 16-output tile: the MMA's A operand is W[n][k], 16 n × 16 k) and
// all M ≤ 64 rows of x (B operand, 8 rows per n-tile). K streams through shared memory in tiles of
// kW4TileK inputs by a cp.async pipeline: per input k the block's 16 qweight words (64 bytes, 128
// outputs) and the x tile. A lane (g, t) of warp w takes, per 16-k step, physical inputs 4t..4t+3
// (the K permutation of gemv.cu) of outputs 16w + g and 16w + g + 8: words 2w and 2w + 1 of each of
// those 4 rows, nibble g of each (AWQ order). The weight operand is q − z, an integer in [−15, 15]
// and so exact in bf16; per group the fresh accumulators are scaled by s and added to the output's:
// Σ_groups s · Σ_k (q − z)·x, the reference's (q − z)·s up to the order of the float32 sums.
// Needs groupSize % 16 == 0 (no MMA step straddles two groups). Launched with PDL on sm_90, as gemv.cu.
constexpr int kW4MmaWarps = 8;
constexpr int kW4MmaOutputs = 16 * kW4MmaWarps;  // per block
constexpr int kW4TileK = 256;                    // inputs per pipeline stage
constexpr int kW4RowBytes = kW4MmaOutputs / 2;   // qweight bytes of one input row for the block's outputs
constexpr int kW4XRow = kW4TileK * 2 + 32;       // x row stride: 8-byte loads of rows g..g+3 hit distinct banks

template <int NT>
__host__ __device__ constexpr int w4Stages() {
  return NT >= 8 ? 3 : 4;  // within sm_80's 163 KB per block
}
template <int NT>
__host__ __device__ constexpr int w4StageBytes() {
  return kW4TileK * kW4RowBytes + NT * 8 * kW4XRow;
}

// The qweight row of input k is stored as 8 units of 8 bytes (one warp's 16 outputs each); unit u sits
// at position u ^ ((k >> 2) & 3), so the 4 lanes t of a warp, which read rows 4 apart, hit 4 different banks.
__device__ __forceinline__ int w4UnitPos(int k, int u) { return u ^ ((k >> 2) & 3); }

template <int NT>
__global__ void __launch_bounds__(kW4MmaWarps * 32) w4MmaKernel(const uint16_t* __restrict__ x, int M, int K, const int32_t* __restrict__ qweight,
                                                               const int32_t* __restrict__ qzeros, const uint16_t* __restrict__ scales, int N,
                                                               int G, float* __restrict__ y) {
  constexpr int kStages = w4Stages<NT>(), kStage = w4StageBytes<NT>(), kMRows = NT * 8;
  SEVENTY_DYNAMIC_SMEM(uint4, smemV);
  uint8_t* const smem = reinterpret_cast<uint8_t*>(smemV);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int words = N / 8, word0 = blockIdx.x * (kW4MmaOutputs / 8);
  const int numTiles = (K + kW4TileK - 1) / kW4TileK;

  auto issueW = [&](int tile, int slot) {
    uint8_t* ws = smem + slot * kStage;
    const int k0 = tile * kW4TileK, rows = min(kW4TileK, K - k0);
    // qweight: rows × 8 units of 8 bytes (2 words); words past N/8 zero-filled. An odd N/8 leaves every
    // other row 4-byte aligned only: then a word at a time.
    for (int i = threadIdx.x; i < rows * 8; i += kW4MmaWarps * 32) {
      const int r = i >> 3, u = i & 7, k = k0 + r, wd = word0 + 2 * u;
      uint8_t* dst = ws + r * kW4RowBytes + 8 * w4UnitPos(k, u);
      const int32_t* src = qweight + int64_t(k) * words + wd;
      if (words % 2 == 0) {
        cpAsync8(dst, wd < words ? src : qweight, wd < words ? 8 : 0);
      } else {
        cpAsync4(dst, wd < words ? src : qweight, wd < words ? 4 : 0);
        cpAsync4(dst + 4, wd + 1 < words ? src + 1 : qweight, wd + 1 < words ? 4 : 0);
      }
    }
  };
  auto issueX = [&](int tile, int slot) {
    const int k0 = tile * kW4TileK, rows = min(kW4TileK, K - k0);
    // x: kMRows rows × rows·2 bytes in 16-byte pieces (rows is a multiple of 16); rows past M zero-filled.
    uint8_t* xs = smem + slot * kStage + kW4TileK * kW4RowBytes;
    const int pieces = rows / 8;
    for (int i = threadIdx.x; i < kMRows * pieces; i += kW4MmaWarps * 32) {
      const int m = i / pieces, p = i % pieces;
      cpAsync16(xs + m * kW4XRow + p * 16, m < M ? x + int64_t(m) * K + k0 + p * 8 : x, m < M ? 16 : 0);
    }
  };

  // As gemv.cu: the first stages' weights before griddepcontrol.wait (PDL), x after it.
  for (int st = 0; st < kStages - 1; st++)
    if (st < numTiles) issueW(st, st);
  pdlWait();
  for (int st = 0; st < kStages - 1; st++) {
    if (st < numTiles) issueX(st, st);
    cpAsyncCommit();
  }
  pdlLaunchDependents();

  const int nA = blockIdx.x * kW4MmaOutputs + warp * 16 + g, nB = nA + 8;  // this lane's two outputs
  const int shift = 4 * ((g & 1) * 4 + (g >> 1));                           // nibble of output g in its word (AWQ order)
  float acc[NT][4], part[NT][4];
#pragma unroll
  for (int nt = 0; nt < NT; nt++)
#pragma unroll
    for (int j = 0; j < 4; j++) acc[nt][j] = part[nt][j] = 0.0f;
  float zA = 0, zB = 0;

  for (int tile = 0; tile < numTiles; tile++) {
    cpAsyncWait<kStages - 2>();
    __syncthreads();
    const int next = tile + kStages - 1;
    if (next < numTiles) {
      issueW(next, next % kStages);
      issueX(next, next % kStages);
    }
    cpAsyncCommit();
    const uint8_t* ws = smem + (tile % kStages) * kStage;
    const uint8_t* xs = ws + kW4TileK * kW4RowBytes;
    const int k0 = tile * kW4TileK, steps = min(kW4TileK, K - k0) / 16;
    for (int st = 0; st < steps; st++) {
      const int kb = k0 + st * 16;
      if (kb % G == 0) {  // a new group: its zero points (as floats)
        const int grp = kb / G;
        zA = nA < N ? float((uint32_t(__ldg(qzeros + int64_t(grp) * words + nA / 8)) >> shift) & 15u) : 0.0f;
        zB = nB < N ? float((uint32_t(__ldg(qzeros + int64_t(grp) * words + nB / 8)) >> shift) & 15u) : 0.0f;
      }
      // Rows kb + 4t + i of the stage: this warp's unit (words 2·warp, 2·warp + 1 = outputs g and g + 8).
      float wa[4], wb[4];
#pragma unroll
      for (int i = 0; i < 4; i++) {
        const int r = st * 16 + 4 * t + i;
        const uint2 u = *reinterpret_cast<const uint2*>(ws + r * kW4RowBytes + 8 * w4UnitPos(kb + 4 * t + i, warp));
        wa[i] = float((u.x >> shift) & 15u) - zA;
        wb[i] = float((u.y >> shift) & 15u) - zB;
      }
      // Exact small integers: a bf16 is the float's top half.
      auto pack = [](float lo, float hi) { return (__float_as_uint(lo) >> 16) | (__float_as_uint(hi) & 0xffff0000u); };
      const uint32_t a[4] = {pack(wa[0], wa[1]), pack(wb[0], wb[1]), pack(wa[2], wa[3]), pack(wb[2], wb[3])};
#pragma unroll
      for (int nt = 0; nt < NT; nt++) {
        const uint2 xv = *reinterpret_cast<const uint2*>(xs + (nt * 8 + g) * kW4XRow + (st * 16 + 4 * t) * 2);
        mmaBf16(part[nt], a, xv.x, xv.y);
      }
      if ((kb + 16) % G == 0) {  // the group ends: scale its sums into the outputs'
        const int grp = kb / G;
        const float sA = nA < N ? f16BitsToFloat(__ldg(scales + int64_t(grp) * N + nA)) : 0.0f;
        const float sB = nB < N ? f16BitsToFloat(__ldg(scales + int64_t(grp) * N + nB)) : 0.0f;
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
          acc[nt][0] = fmaf(sA, part[nt][0], acc[nt][0]);
          acc[nt][1] = fmaf(sA, part[nt][1], acc[nt][1]);
          acc[nt][2] = fmaf(sB, part[nt][2], acc[nt][2]);
          acc[nt][3] = fmaf(sB, part[nt][3], acc[nt][3]);
#pragma unroll
          for (int j = 0; j < 4; j++) part[nt][j] = 0.0f;
        }
      }
    }
  }
#pragma unroll
  for (int nt = 0; nt < NT; nt++)
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const int n = j < 2 ? nA : nB, m = nt * 8 + 2 * t + (j & 1);
      if (m < M && n < N) y[int64_t(m) * N + n] = acc[nt][j];
    }
}

template <int NT>
cudaError_t launchW4Mma(const uint16_t* x, int M, const W4Weight& w, float* y, cudaStream_t s) {
  constexpr int smem = w4Stages<NT>() * w4StageBytes<NT>();
  static const cudaError_t attr = cudaFuncSetAttribute(w4MmaKernel<NT>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (attr != cudaSuccess) return attr;
  const dim3 grid((w.N + kW4MmaOutputs - 1) / kW4MmaOutputs);
  if (cudaError_t e = (SEVENTY_LAUNCH_PDL(grid, kW4MmaWarps * 32, smem, s, w4MmaKernel<NT>)(x, M, w.K, w.qweight, w.qzeros, w.scales, w.N,
                                                                                           w.groupSize, y)))
    return e;
  return lastLaunchError();
}

}  // namespace

size_t w4GemvWorkspaceBytes(int M, int N) { return size_t(kW4Splits) * size_t(M) * size_t(N) * sizeof(float); }

cudaError_t w4Gemv(const uint16_t* x, int M, const W4Weight& w, float* y, float* work, cudaStream_t s) {
  if (M <= 0) return cudaSuccess;
  if (w.N % 8 != 0 || w.groupSize % 8 != 0 || w.K % w.groupSize != 0 || !work) return cudaErrorInvalidValue;
  if (w.groupSize % 16 == 0) {
    for (int m0 = 0; m0 < M; m0 += 64) {
      const int m = min(64, M - m0);
      const uint16_t* xs = x + int64_t(m0) * w.K;
      float* ys = y + int64_t(m0) * w.N;
      const cudaError_t e = m <= 8 ? launchW4Mma<1>(xs, m, w, ys, s) : m <= 16 ? launchW4Mma<2>(xs, m, w, ys, s)
                            : m <= 32 ? launchW4Mma<4>(xs, m, w, ys, s) : launchW4Mma<8>(xs, m, w, ys, s);
      if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
  }
  const int groups = w.K / w.groupSize;
  const int splits = groups < kW4Splits ? groups : kW4Splits;
  const dim3 grid((w.N / 8 + 31) / 32, splits);
  for (int m0 = 0; m0 < M; m0 += kRowTile) {
    SEVENTY_LAUNCH(grid, kW4Warps * 32, 0, s, w4PartialKernel<kRowTile>)(x, M, m0, w.K, w.qweight, w.qzeros, w.scales, w.N, w.groupSize, work);
    cudaError_t e = lastLaunchError();
    if (e != cudaSuccess) return e;
  }
  const int64_t MN = int64_t(M) * w.N;
  SEVENTY_LAUNCH(dim3(unsigned((MN + 255) / 256)), 256, 0, s, w4ReduceKernel)(work, splits, MN, y);
  return lastLaunchError();
}

}  // namespace seventy::cuda
