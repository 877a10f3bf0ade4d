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
// reads the weights ceil(M / kRowTile) times.
#include <cuda_runtime.h>

#include "cuda_common.cuh"
#include "gemv_w4.h"
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

}  // namespace

size_t w4GemvWorkspaceBytes(int M, int N) { return size_t(kW4Splits) * size_t(M) * size_t(N) * sizeof(float); }

cudaError_t w4Gemv(const uint16_t* x, int M, const W4Weight& w, float* y, float* work, cudaStream_t s) {
  if (M <= 0) return cudaSuccess;
  if (w.N % 8 != 0 || w.groupSize % 8 != 0 || w.K % w.groupSize != 0 || !work) return cudaErrorInvalidValue;
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
