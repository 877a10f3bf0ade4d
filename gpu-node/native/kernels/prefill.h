// Launchers of the prefill kernels: the tensor-core GEMM that takes every prefill row of a step in one
// pass over the weights (prefill_gemm.cu) and the FlashAttention-2-style attention over the paged KV
// cache (prefill_attention.cu). Same conventions as kernels.h: a stream in, the launch error out.
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>

#include "gemv_w4.h"
#include "kernels.h"

namespace seventy::cuda {

// ---- prefill_gemm.cu: y[m, n] = Σ_k x[m, k] · W[n, k] for any M, tiled 64 rows × 128 outputs ----
// The same contracts (row orders, epilogue math and rounding, shape rules) as the gemv*.cu launchers of
// the same name; only the summation order differs (float32 accumulation either way).
cudaError_t prefillGemmBf16Out(const uint16_t* x, int M, const LinearWeight& w, uint16_t* y, cudaStream_t s);
cudaError_t prefillGemmF32Out(const uint16_t* x, int M, const LinearWeight& w, float* y, cudaStream_t s);
cudaError_t prefillGemmSwiglu(const uint16_t* x, int M, const LinearWeight& w, uint16_t* y, cudaStream_t s);
cudaError_t prefillGemmQkvRope(const uint16_t* x, int M, const LinearWeight& w, const QkvRopeArgs& a, cudaStream_t s);
// AutoAWQ weights as stored (gemv_w4.h), float32 out: the (q − z) integers are exact bf16 MMA operands,
// and each group's partial sum is scaled once (groupSize a multiple of 32).
cudaError_t prefillGemmW4(const uint16_t* x, int M, const W4Weight& w, float* y, cudaStream_t s);
// Whether prefillGemmW4 takes this weight (groupSize % 32 == 0, N % 8 == 0, K % groupSize == 0).
bool prefillGemmW4Supported(const W4Weight& w);

// ---- prefill_attention.cu: causal GQA attention of query tiles over the paged cache ----
// A tile is up to 64 consecutive rows of one sequence: tiles[2i] = first row, tiles[2i + 1] = rows.
// Rows of a tile share tableOffset and have nondecreasing ctxLen (the rows of a prefill chunk, whose
// ctxLen = pos + 1, past any cached prefix); row m attends to positions [0, ctxLen[m]) as in
// pagedAttention (same AttentionArgs; numSplits and partial are not used). headDim 16, 32, 64 or 128.
bool prefillAttentionSupported(int headDim);
// Splits runs of equal rowSeq (the step plan's rows) into tiles; tiles holds 2·rows entries. Returns the count.
int prefillAttentionTiles(const int32_t* rowSeq, int rows, int32_t* tiles);
cudaError_t prefillAttention(const AttentionArgs& a, const int32_t* tiles, int numTiles, cudaStream_t s);

}  // namespace seventy::cuda
