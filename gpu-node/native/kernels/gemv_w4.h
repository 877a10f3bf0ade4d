// W4A16 decode GEMV / skinny GEMM over AutoAWQ GEMM checkpoints, kept in the checkpoint's packing.
// CPU reference: cpu::linear with a WType::W4 view (kernels/cpu/linear.cpp).
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>

namespace seventy::cuda {

// qweight int32 [K][N/8], qzeros int32 [K/groupSize][N/8] (nibble i of word c: column 8c + [0,2,4,6,1,3,5,7][i]),
// scales fp16 bits [K/groupSize][N]; W[o][k] = (q(k, o) − z(k/g, o)) · s(k/g, o).
struct W4Weight {
  const int32_t* qweight = nullptr;
  const int32_t* qzeros = nullptr;
  const uint16_t* scales = nullptr;
  int N = 0, K = 0, groupSize = 128;
};

// Float32 scratch for `w4Gemv` with M rows: kW4Splits partial sums per output.
size_t w4GemvWorkspaceBytes(int M, int N);

// y[m][o] = Σ_k x[m][k] · W[o][k] for M rows of bf16 x ([M][K] row-major), float32 y ([M][N]).
// Weights are dequantized in registers with bit tricks (widen_bits.cuh), accumulated in float32;
// N a multiple of 8, K of groupSize, groupSize of 8. `work` holds w4GemvWorkspaceBytes(M, N).
cudaError_t w4Gemv(const uint16_t* x, int M, const W4Weight& w, float* y, float* work, cudaStream_t s);

// ---- w4_epilogues.cu: what gemv.cu's fused epilogues do, from float32 GEMV outputs ----
// RoPE on q and k of M rows (float32, HF order [M][numHeads·headDim] / [M][numKvHeads·headDim]), q
// stored bf16, k and v written into the paged cache: the same math and rounding as gemvQkvRope.
struct QkvRopeArgs;
cudaError_t qkvRopeFromF32(const float* q, const float* k, const float* v, int M, const QkvRopeArgs& a, cudaStream_t s);
// y[m][j] = bf16(silu(gate[m][j]) · up[m][j]), as gemvSwiglu.
cudaError_t swigluFromF32(const float* gate, const float* up, int64_t n, uint16_t* y, cudaStream_t s);
// y[i] = bf16(x[i]), round to nearest even.
cudaError_t f32ToBf16(const float* x, int64_t n, uint16_t* y, cudaStream_t s);

}  // namespace seventy::cuda
