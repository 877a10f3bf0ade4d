// Skinny GEMM for decode (batch M ≤ 64 per launch): y[m, n] = Σ_k x[m, k] · W[n, k], on tensor cores
// with the operands swapped — the weight is the MMA's A operand (16 rows of W), the activations the B
// operand (8 batch rows per n-tile) — so one m16n8k16 covers 16 output features × 8 sequences.
//
// Each block owns one 16-row tile of W; its 4 warps split K (interleaved 32/64-element chunks, so the
// block streams each row contiguously) and reduce through shared memory; warp 0 runs the epilogue.
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

#include <cmath>

#include "cuda_common.cuh"
#include "kernels.h"
#include "widen_bits.cuh"

namespace seventy::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kUnroll = 4;  // chunks of W in flight per warp before the first MMA

__device__ __forceinline__ void mmaBf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#ifdef SEVENTY_EMU
  emu::ptx::mma_m16n8k16_row_col_f32_bf16_bf16_f32(c, a, b0, b1, EMU_SITE_);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

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

__device__ __forceinline__ uint4 ldgStream(const void* p) {
  // Weights are read once per step: don't let them evict the activations from L1.
#ifdef SEVENTY_EMU
  return emu::ptx::ld_global_nc_L1_no_allocate_v4_u32(p);
#else
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
#endif
}

template <bool FP8>
struct Fmt {
  static constexpr int kStep = FP8 ? 16 : 8;    // k elements per 16-byte weight load
  static constexpr int kChunk = 4 * kStep;      // k elements per warp iteration
  static constexpr int kSub = kStep / 4;        // MMAs per chunk
  static constexpr int kBytes = FP8 ? 1 : 2;
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
        if (m < M) y[int64_t(m) * I + j] = toBf16Bits(gate / (1.0f + __expf(-gate)) * up);
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
    const int half = a.headDim / 2, lo = 8 * jt + g, hi = lo + half;
    const bool isQ = head < a.numHeads, isV = head >= a.numHeads + a.numKvHeads;
    if (head >= a.numHeads + 2 * a.numKvHeads) return;
    const float inv = a.invFreq[lo];
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
      for (int h = 0; h < 2; h++) {
        const int m = nt * 8 + 2 * t + h;
        if (m >= M) continue;
        float x = acc[nt][h], y = acc[nt][2 + h];
        if (!isV) {
          // The angle is rounded to float before cos/sin, as HF does (pos · inv_freq in float32).
          float sn, cs;
          sincosf(float(a.positions[m]) * inv, &sn, &cs);
          const float rx = x * cs - y * sn, ry = y * cs + x * sn;
          x = rx;
          y = ry;
        }
        if (isQ) {
          uint16_t* q = a.q + int64_t(m) * a.numHeads * a.headDim + int64_t(head) * a.headDim;
          q[lo] = toBf16Bits(x);
          q[hi] = toBf16Bits(y);
        } else {
          const int slot = a.slots[m];
          if (slot < 0) continue;
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
      }
  }
};

template <int NT, bool FP8, class Epi>
__global__ void __launch_bounds__(kWarps * 32) gemvKernel(const uint16_t* __restrict__ x, int M, int K, const uint8_t* __restrict__ W,
                                                          const float* __restrict__ scales, int N, Epi epi) {
  using F = Fmt<FP8>;
  __shared__ float red[kWarps - 1][NT * 4][32];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int n0 = blockIdx.x * 16;
  const int rowA = n0 + g, rowB = n0 + g + 8;
  const int64_t rowBytes = int64_t(K) * F::kBytes;
  const uint8_t* wA = W + int64_t(rowA) * rowBytes + t * 16;
  const uint8_t* wB = W + int64_t(rowB) * rowBytes + t * 16;
  const bool okA = rowA < N, okB = rowB < N;

  float acc[NT][4];
#pragma unroll
  for (int nt = 0; nt < NT; nt++)
#pragma unroll
    for (int j = 0; j < 4; j++) acc[nt][j] = 0.0f;

  const int numChunks = (K + F::kChunk - 1) / F::kChunk;
  for (int c0 = warp; c0 < numChunks; c0 += kWarps * kUnroll) {
    uint4 a[kUnroll][2];
#pragma unroll
    for (int u = 0; u < kUnroll; u++) {
      const int c = c0 + u * kWarps;
      const int k = c * F::kChunk + t * F::kStep;
      const bool inK = c < numChunks && k < K;
      const int64_t off = int64_t(c) * F::kChunk * F::kBytes;
      a[u][0] = inK && okA ? ldgStream(wA + off) : make_uint4(0, 0, 0, 0);
      a[u][1] = inK && okB ? ldgStream(wB + off) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; u++) {
      const int c = c0 + u * kWarps;
      if (c >= numChunks) break;
      const int k = c * F::kChunk + t * F::kStep;
      const bool inK = k < K;
      // A fragments of the chunk's kSub MMAs, converted once and reused for every n-tile.
      const uint32_t* ra = reinterpret_cast<const uint32_t*>(&a[u][0]);
      const uint32_t* rb = reinterpret_cast<const uint32_t*>(&a[u][1]);
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
        const int m = nt * 8 + g;
        // x row m, the same kStep elements (kStep·2 bytes: one or two 16-byte loads).
        uint4 xv[FP8 ? 2 : 1];
        const uint16_t* xp = x + int64_t(m) * K + k;
#pragma unroll
        for (int i = 0; i < (FP8 ? 2 : 1); i++) xv[i] = (m < M && inK) ? __ldg(reinterpret_cast<const uint4*>(xp) + i) : make_uint4(0, 0, 0, 0);
        const uint32_t* rx = reinterpret_cast<const uint32_t*>(xv);
#pragma unroll
        for (int s = 0; s < F::kSub; s++) mmaBf16(acc[nt], af[s], rx[2 * s], rx[2 * s + 1]);
      }
    }
  }

  // Split-K reduction across the block's warps; warp 0 finishes.
  if (warp > 0) {
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
      for (int j = 0; j < 4; j++) red[warp - 1][nt * 4 + j][lane] = acc[nt][j];
  }
  __syncthreads();
  if (warp != 0) return;
#pragma unroll
  for (int w = 0; w < kWarps - 1; w++)
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
      for (int j = 0; j < 4; j++) acc[nt][j] += red[w][nt * 4 + j][lane];
  if constexpr (FP8) {
    const float sA = okA ? scales[rowA] : 0.0f, sB = okB ? scales[rowB] : 0.0f;
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

template <bool FP8, class Epi>
cudaError_t launchTyped(const uint16_t* x, int M, const LinearWeight& w, Epi epi, cudaStream_t s) {
  const dim3 grid((w.N + 15) / 16), block(kWarps * 32);
  const uint8_t* W = static_cast<const uint8_t*>(w.data);
  if (M <= 8) SEVENTY_LAUNCH(grid, block, 0, s, gemvKernel<1, FP8, Epi>)(x, M, w.K, W, w.scales, w.N, epi);
  else if (M <= 16) SEVENTY_LAUNCH(grid, block, 0, s, gemvKernel<2, FP8, Epi>)(x, M, w.K, W, w.scales, w.N, epi);
  else if (M <= 32) SEVENTY_LAUNCH(grid, block, 0, s, gemvKernel<4, FP8, Epi>)(x, M, w.K, W, w.scales, w.N, epi);
  else SEVENTY_LAUNCH(grid, block, 0, s, gemvKernel<8, FP8, Epi>)(x, M, w.K, W, w.scales, w.N, epi);
  return cudaGetLastError();
}

template <class Epi>
cudaError_t launchSlice(const uint16_t* x, int M, const LinearWeight& w, Epi epi, cudaStream_t s) {
  return w.format == WFormat::FP8 ? launchTyped<true>(x, M, w, epi, s) : launchTyped<false>(x, M, w, epi, s);
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

cudaError_t gemvSwiglu(const uint16_t* x, int M, const LinearWeight& w, uint16_t* y, cudaStream_t s) {
  if (cudaError_t e = checkShape(w)) return e;
  if (w.N % 16 != 0) return cudaErrorInvalidValue;
  const int I = w.N / 2;
  for (int m0 = 0; m0 < M; m0 += 64)
    if (cudaError_t e = launchSlice(x + int64_t(m0) * w.K, min(64, M - m0), w, Swiglu{y + int64_t(m0) * I, I}, s)) return e;
  return cudaSuccess;
}

cudaError_t gemvQkvRope(const uint16_t* x, int M, const LinearWeight& w, const QkvRopeArgs& a, cudaStream_t s) {
  if (cudaError_t e = checkShape(w)) return e;
  if (a.headDim % 16 != 0 || w.N != (a.numHeads + 2 * a.numKvHeads) * a.headDim) return cudaErrorInvalidValue;
  for (int m0 = 0; m0 < M; m0 += 64) {
    QkvRopeArgs slice = a;
    slice.positions += m0;
    slice.slots += m0;
    slice.q += int64_t(m0) * a.numHeads * a.headDim;
    if (cudaError_t e = launchSlice(x + int64_t(m0) * w.K, min(64, M - m0), w, QkvRope{slice}, s)) return e;
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
