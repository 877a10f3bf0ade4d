// Prefill GEMM on tensor cores: y[m, n] = Σ_k x[m, k] · W[n, k] with every prefill row of a step in one
// launch, so each weight tile is read from memory once per step (the blocks that share it run side by
// side: m-tiles are the fastest grid dimension) instead of once per 64-row slice as in gemv.cu.
//
// Block tile: 128 weight rows × 64 activation rows × 32 k, 8 warps (4 along the weight rows × 2 along
// the activation rows), each warp 32 × 32 = 2 × 4 mma.m16n8k16 per 16 k. As in gemv.cu the weight is
// the MMA's A operand and the activations the B operand, so one accumulator fragment holds weight rows
// g and g + 8 of a 16-row tile: the fused epilogues (RoPE pairs, gate/up pairs, see qkvRowOrder and
// gateUpRowOrder) work on the same row orders as the skinny GEMM's.
//
// Shared memory holds two k-tiles (double buffer): while the warps multiply tile kt out of one buffer,
// each thread has tile kt + 1's global loads in flight in registers and stores them into the other
// buffer afterwards (one __syncthreads per k-tile). Fragments come out of shared memory with ldmatrix;
// rows are padded to 80 bytes (272 for the W4 layout) so the eight row addresses of an ldmatrix hit
// eight different 16-byte bank groups.
//
// Formats, widened on the way into shared memory (the MMAs always see bf16):
//   BF16  rows of W as stored.
//   FP8   e4m3 → bf16 (exact) as gemv.cu does; the per-row scale multiplies the finished sum.
//   W4    AutoAWQ qweight [K][N/8] as stored: a tile is 32 k-rows of 128 outputs, kept k-major in shared
//         memory ([k][n]) and read with ldmatrix.trans, which hands out exactly the A fragment. Each
//         nibble becomes the integer q − z (−15..15, exact in bf16) through the 2^23 bit trick; the
//         group's fp16 scale multiplies the group's partial sum (a group spans whole k-tiles).
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "cuda_common.cuh"
#include "epilogues.cuh"
#include "ldmatrix.cuh"
#include "mma_bf16.cuh"
#include "prefill.h"
#include "widen_bits.cuh"

namespace seventy::cuda {
namespace {

constexpr int kBN = 128;           // weight rows (outputs) per block
constexpr int kBM = 64;            // activation rows per block
constexpr int kBK = 32;            // k per tile
constexpr int kLd = kBK + 8;       // row stride (elements) of the [n][k] weight tile and the [m][k] activation tile
constexpr int kLdT = kBN + 8;      // row stride of the W4 [k][n] weight tile
constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kWTile = kBN * kLd;  // elements of one weight buffer (≥ kBK · kLdT for W4)
static_assert(kBK * kLdT <= kWTile, "the W4 tile fits the weight buffer");

enum class Fmt { BF16, FP8, W4 };

__device__ __forceinline__ uint32_t fp8x2ToBf16x2(uint32_t twoBytes) {
#if defined(SEVENTY_EMU) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 890)
  return fp8x2ToBf16x2Bits(twoBytes);  // no FP8 hardware before sm_89 (widen_bits.cuh)
#else
  __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t(twoBytes & 0xffffu), __NV_E4M3);
  const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&h));
  return packBf16x2(f.x, f.y);
#endif
}

// Bit position of output column j (0..7) of an AWQ word: column [0,2,4,6,1,3,5,7][i] sits in nibble i.
__device__ __forceinline__ int awqShift(int j) { return 4 * ((j & 1) * 4 + (j >> 1)); }

// q − z of column j as bf16 bits: both nibbles land in a float's mantissa under 2^23, their difference
// is an exact small integer, and its bf16 is the float's top half.
__device__ __forceinline__ uint32_t awqDiffBf16(uint32_t q, uint32_t z, int j) {
  const int sh = awqShift(j);
  const float d = bitsFloat(0x4b000000u | ((q >> sh) & 0xfu)) - bitsFloat(0x4b000000u | ((z >> sh) & 0xfu));
  return floatBits(d) >> 16;
}

struct Operands {
  const uint16_t* x;
  int M, K, N;
  const uint8_t* w;            // BF16 / FP8: [N][K]; W4: qweight [K][N/8] int32
  const float* rowScales;      // FP8
  const int32_t* qzeros;       // W4
  const uint16_t* groupScales; // W4 (fp16 bits [K/G][N])
  int G;                       // W4 group size
};

// One thread's share of a k-tile's global loads, held in registers across the MMAs of the previous tile.
struct Staged {
  uint4 w[2];  // BF16: two 16-byte chunks; FP8: w[0] (16 e4m3); W4: w[0].x, w[1].x words, w[0].y the zero word
  uint4 x;
};

template <Fmt F>
__device__ __forceinline__ void loadTile(const Operands& o, int n0, int m0, int k0, Staged& st) {
  const int tid = threadIdx.x;
  const uint4 zero = make_uint4(0, 0, 0, 0);
  if constexpr (F == Fmt::BF16) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
      const int c = tid + i * kThreads, row = c >> 2, k = k0 + (c & 3) * 8, n = n0 + row;
      st.w[i] = n < o.N && k < o.K ? __ldg(reinterpret_cast<const uint4*>(o.w + (int64_t(n) * o.K + k) * 2)) : zero;
    }
  } else if constexpr (F == Fmt::FP8) {
    const int row = tid >> 1, k = k0 + (tid & 1) * 16, n = n0 + row;
    st.w[0] = n < o.N && k < o.K ? __ldg(reinterpret_cast<const uint4*>(o.w + int64_t(n) * o.K + k)) : zero;
  } else {
    const int words = o.N / 8, wc = n0 / 8 + (tid & 15);
    const bool live = wc < words;
#pragma unroll
    for (int i = 0; i < 2; i++) {
      const int k = k0 + (tid >> 4) + 16 * i;
      st.w[i].x = live ? uint32_t(__ldg(reinterpret_cast<const int32_t*>(o.w) + int64_t(k) * words + wc)) : 0u;
    }
    st.w[0].y = live ? uint32_t(__ldg(o.qzeros + int64_t(k0 / o.G) * words + wc)) : 0u;
  }
  const int row = tid >> 2, k = k0 + (tid & 3) * 8, m = m0 + row;
  st.x = m < o.M && k < o.K ? __ldg(reinterpret_cast<const uint4*>(o.x + int64_t(m) * o.K + k)) : zero;
}

template <Fmt F>
__device__ __forceinline__ void storeTile(const Staged& st, uint16_t* sW, uint16_t* sX) {
  const int tid = threadIdx.x;
  if constexpr (F == Fmt::BF16) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
      const int c = tid + i * kThreads;
      *reinterpret_cast<uint4*>(sW + (c >> 2) * kLd + (c & 3) * 8) = st.w[i];
    }
  } else if constexpr (F == Fmt::FP8) {
    const uint32_t* b = reinterpret_cast<const uint32_t*>(&st.w[0]);
    uint4 lo, hi;
    lo.x = fp8x2ToBf16x2(b[0]), lo.y = fp8x2ToBf16x2(b[0] >> 16), lo.z = fp8x2ToBf16x2(b[1]), lo.w = fp8x2ToBf16x2(b[1] >> 16);
    hi.x = fp8x2ToBf16x2(b[2]), hi.y = fp8x2ToBf16x2(b[2] >> 16), hi.z = fp8x2ToBf16x2(b[3]), hi.w = fp8x2ToBf16x2(b[3] >> 16);
    uint16_t* p = sW + (tid >> 1) * kLd + (tid & 1) * 16;
    *reinterpret_cast<uint4*>(p) = lo;
    *reinterpret_cast<uint4*>(p + 8) = hi;
  } else {
    const uint32_t z = st.w[0].y;
#pragma unroll
    for (int i = 0; i < 2; i++) {
      const uint32_t q = st.w[i].x;
      uint4 v;
      v.x = awqDiffBf16(q, z, 0) | awqDiffBf16(q, z, 1) << 16;
      v.y = awqDiffBf16(q, z, 2) | awqDiffBf16(q, z, 3) << 16;
      v.z = awqDiffBf16(q, z, 4) | awqDiffBf16(q, z, 5) << 16;
      v.w = awqDiffBf16(q, z, 6) | awqDiffBf16(q, z, 7) << 16;
      *reinterpret_cast<uint4*>(sW + ((tid >> 4) + 16 * i) * kLdT + (tid & 15) * 8) = v;
    }
  }
  *reinterpret_cast<uint4*>(sX + (tid >> 2) * kLd + (tid & 3) * 8) = st.x;
}

// Epilogues get, per 16-row weight tile, acc[nt][j]: weight row n0 + g + 8·(j ≥ 2), activation row
// mBase + 8·nt + 2t + (j & 1). The math and rounding are gemv.cu's (epilogues.cuh), row for row.
struct StoreBf16 {
  uint16_t* y;
  int N;
  __device__ void operator()(const float (&acc)[4][4], int n0, int mBase, int M, int g, int t) const {
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const int n = n0 + g + ((j >> 1) << 3), m = mBase + nt * 8 + 2 * t + (j & 1);
        if (m < M && n < N) y[int64_t(m) * N + n] = toBf16Bits(acc[nt][j]);
      }
  }
};

struct StoreF32 {
  float* y;
  int N;
  __device__ void operator()(const float (&acc)[4][4], int n0, int mBase, int M, int g, int t) const {
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const int n = n0 + g + ((j >> 1) << 3), m = mBase + nt * 8 + 2 * t + (j & 1);
        if (m < M && n < N) y[int64_t(m) * N + n] = acc[nt][j];
      }
  }
};

// Tile i holds gate rows 8i..8i+7 (accumulator rows g) and up rows 8i..8i+7 (rows g+8).
struct Swiglu {
  uint16_t* y;
  int I;
  __device__ void operator()(const float (&acc)[4][4], int n0, int mBase, int M, int g, int t) const {
    const int j = n0 / 2 + g;
    if (j >= I) return;
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
#pragma unroll
      for (int h = 0; h < 2; h++) {
        const int m = mBase + nt * 8 + 2 * t + h;
        if (m < M) y[int64_t(m) * I + j] = toBf16Bits(siluMul(acc[nt][h], acc[nt][2 + h]));
      }
  }
};

// Tile i of head `head` holds dims lo = 8·jt + g (rows g) and lo + headDim/2 (rows g+8): the pair RoPE rotates.
struct QkvRope {
  QkvRopeArgs a;
  __device__ void operator()(const float (&acc)[4][4], int n0, int mBase, int M, int g, int t) const {
    const int tilesPerHead = a.headDim / 16;
    const int tile = n0 / 16, head = tile / tilesPerHead, lo = 8 * (tile % tilesPerHead) + g;
    if (head >= a.numHeads + 2 * a.numKvHeads) return;
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
#pragma unroll
      for (int h = 0; h < 2; h++) {
        const int m = mBase + nt * 8 + 2 * t + h;
        if (m < M) ropeAndStorePair(a, m, head, lo, acc[nt][h], acc[nt][2 + h]);
      }
  }
};

template <Fmt F, class Epi>
__global__ void __launch_bounds__(kThreads) prefillGemmKernel(Operands o, Epi epi) {
  __shared__ __align__(16) uint16_t sW[2][kWTile];
  __shared__ __align__(16) uint16_t sX[2][kBM * kLd];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int wn = warp & 3, wm = warp >> 2;  // this warp's 32 weight rows and 32 activation rows
  const int m0 = blockIdx.x * kBM, n0 = blockIdx.y * kBN;

  float acc[2][4][4];
  [[maybe_unused]] float part[2][4][4];  // W4: the current group's sum, scaled into acc when the group ends
#pragma unroll
  for (int a = 0; a < 2; a++)
#pragma unroll
    for (int b = 0; b < 4; b++)
#pragma unroll
      for (int j = 0; j < 4; j++) acc[a][b][j] = 0.0f;

  const int numTiles = (o.K + kBK - 1) / kBK;
  Staged st;
  loadTile<F>(o, n0, m0, 0, st);
  storeTile<F>(st, sW[0], sX[0]);
  __syncthreads();

  for (int kt = 0; kt < numTiles; kt++) {
    const int buf = kt & 1;
    if (kt + 1 < numTiles) loadTile<F>(o, n0, m0, (kt + 1) * kBK, st);  // in flight during the MMAs below
    if constexpr (F == Fmt::W4) {
      if ((kt * kBK) % o.G == 0)
#pragma unroll
        for (int a = 0; a < 2; a++)
#pragma unroll
          for (int b = 0; b < 4; b++)
#pragma unroll
            for (int j = 0; j < 4; j++) part[a][b][j] = 0.0f;
    }
    const uint16_t* w = sW[buf];
    const uint16_t* xs = sX[buf];
#pragma unroll
    for (int ks = 0; ks < kBK / 16; ks++) {
      uint32_t af[2][4], bf[4][2];
#pragma unroll
      for (int mt = 0; mt < 2; mt++) {
        if constexpr (F == Fmt::W4)
          ldmatrixX4<true>(af[mt], w + (ks * 16 + (lane >> 4) * 8 + (lane & 7)) * kLdT + wn * 32 + mt * 16 + ((lane >> 3) & 1) * 8);
        else
          ldmatrixX4<false>(af[mt], w + (wn * 32 + mt * 16 + (lane & 15)) * kLd + ks * 16 + (lane >> 4) * 8);
      }
#pragma unroll
      for (int np = 0; np < 2; np++) {
        uint32_t r[4];
        ldmatrixX4<false>(r, xs + (wm * 32 + np * 16 + (lane >> 4) * 8 + (lane & 7)) * kLd + ks * 16 + ((lane >> 3) & 1) * 8);
        bf[2 * np][0] = r[0];
        bf[2 * np][1] = r[1];
        bf[2 * np + 1][0] = r[2];
        bf[2 * np + 1][1] = r[3];
      }
#pragma unroll
      for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int nt = 0; nt < 4; nt++) {
          if constexpr (F == Fmt::W4) mmaBf16(part[mt][nt], af[mt], bf[nt][0], bf[nt][1]);
          else mmaBf16(acc[mt][nt], af[mt], bf[nt][0], bf[nt][1]);
        }
    }
    if constexpr (F == Fmt::W4) {
      if (((kt + 1) * kBK) % o.G == 0) {
        const int grp = kt * kBK / o.G;
#pragma unroll
        for (int mt = 0; mt < 2; mt++) {
          const int nA = n0 + wn * 32 + mt * 16 + g, nB = nA + 8;
          const float sA = nA < o.N ? f16BitsToFloat(__ldg(o.groupScales + int64_t(grp) * o.N + nA)) : 0.0f;
          const float sB = nB < o.N ? f16BitsToFloat(__ldg(o.groupScales + int64_t(grp) * o.N + nB)) : 0.0f;
#pragma unroll
          for (int nt = 0; nt < 4; nt++) {
            acc[mt][nt][0] += part[mt][nt][0] * sA;
            acc[mt][nt][1] += part[mt][nt][1] * sA;
            acc[mt][nt][2] += part[mt][nt][2] * sB;
            acc[mt][nt][3] += part[mt][nt][3] * sB;
          }
        }
      }
    }
    if (kt + 1 < numTiles) storeTile<F>(st, sW[buf ^ 1], sX[buf ^ 1]);
    __syncthreads();
  }

#pragma unroll
  for (int mt = 0; mt < 2; mt++) {
    const int nTile = n0 + wn * 32 + mt * 16;
    if constexpr (F == Fmt::FP8) {
      const int nA = nTile + g, nB = nA + 8;
      const float sA = nA < o.N ? o.rowScales[nA] : 0.0f, sB = nB < o.N ? o.rowScales[nB] : 0.0f;
#pragma unroll
      for (int nt = 0; nt < 4; nt++) {
        acc[mt][nt][0] *= sA;
        acc[mt][nt][1] *= sA;
        acc[mt][nt][2] *= sB;
        acc[mt][nt][3] *= sB;
      }
    }
    epi(acc[mt], nTile, m0 + wm * 32, o.M, g, t);
  }
}

template <Fmt F, class Epi>
cudaError_t launch(const Operands& o, Epi epi, cudaStream_t s) {
  if (o.M <= 0) return cudaSuccess;
  const dim3 grid((o.M + kBM - 1) / kBM, (o.N + kBN - 1) / kBN);
  SEVENTY_LAUNCH(grid, kThreads, 0, s, prefillGemmKernel<F, Epi>)(o, epi);
  return cudaGetLastError();
}

template <class Epi>
cudaError_t launchLinear(const uint16_t* x, int M, const LinearWeight& w, Epi epi, cudaStream_t s) {
  const int align = w.format == WFormat::FP8 ? 16 : 8;
  if (w.K % align != 0 || w.N <= 0 || M < 0) return cudaErrorInvalidValue;
  const Operands o{x, M, w.K, w.N, static_cast<const uint8_t*>(w.data), w.scales, nullptr, nullptr, 0};
  return w.format == WFormat::FP8 ? launch<Fmt::FP8>(o, epi, s) : launch<Fmt::BF16>(o, epi, s);
}

}  // namespace

cudaError_t prefillGemmBf16Out(const uint16_t* x, int M, const LinearWeight& w, uint16_t* y, cudaStream_t s) {
  return launchLinear(x, M, w, StoreBf16{y, w.N}, s);
}

cudaError_t prefillGemmF32Out(const uint16_t* x, int M, const LinearWeight& w, float* y, cudaStream_t s) {
  return launchLinear(x, M, w, StoreF32{y, w.N}, s);
}

cudaError_t prefillGemmSwiglu(const uint16_t* x, int M, const LinearWeight& w, uint16_t* y, cudaStream_t s) {
  if (w.N % 16 != 0) return cudaErrorInvalidValue;
  return launchLinear(x, M, w, Swiglu{y, w.N / 2}, s);
}

cudaError_t prefillGemmQkvRope(const uint16_t* x, int M, const LinearWeight& w, const QkvRopeArgs& a, cudaStream_t s) {
  if (a.headDim % 16 != 0 || w.N != (a.numHeads + 2 * a.numKvHeads) * a.headDim) return cudaErrorInvalidValue;
  return launchLinear(x, M, w, QkvRope{a}, s);
}

bool prefillGemmW4Supported(const W4Weight& w) {
  return w.groupSize > 0 && w.groupSize % kBK == 0 && w.N > 0 && w.N % 8 == 0 && w.K > 0 && w.K % w.groupSize == 0;
}

cudaError_t prefillGemmW4(const uint16_t* x, int M, const W4Weight& w, float* y, cudaStream_t s) {
  if (!prefillGemmW4Supported(w) || M < 0) return cudaErrorInvalidValue;
  const Operands o{x, M, w.K, w.N, reinterpret_cast<const uint8_t*>(w.qweight), nullptr, w.qzeros, w.scales, w.groupSize};
  return launch<Fmt::W4>(o, StoreF32{y, w.N}, s);
}

}  // namespace seventy::cuda
