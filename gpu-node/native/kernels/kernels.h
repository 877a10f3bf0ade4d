// Launchers of the CUDA kernels. Each takes a stream and returns the launch error; none
// synchronizes. Tensors are plain pointers; shapes are spelled out. Activations between kernels are
// bf16 except the residual stream, which stays float32 for the whole forward pass.
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>

#include <cstdlib>

namespace seventy::cuda {

// SEVENTY_CUDA_SYNC_DEBUG=1 (device checks): every launch is followed by a stream synchronization that
// names a failing kernel, and the engine captures no graphs, so every kernel runs (and is checked) eagerly.
inline bool syncDebugEnabled() {
  static const bool on = [] {
    const char* v = std::getenv("SEVENTY_CUDA_SYNC_DEBUG");
    return v && *v && *v != '0';
  }();
  return on;
}

enum class WFormat { BF16, FP8 };

// A linear layer's weight [N, K] row-major (HF [out, in]); FP8: e4m3 with one float scale per row.
// K must be a multiple of 8 (BF16) or 16 (FP8) so rows are 16-byte aligned.
struct LinearWeight {
  WFormat format = WFormat::BF16;
  const void* data = nullptr;
  const float* scales = nullptr;
  int N = 0, K = 0;
};

// ---- embedding.cu ----
// resid[r, :] = float(table[ids[r], :])
// ids == nullptr: row r of `table` (rows gathered on the host and uploaded).
cudaError_t embeddingGather(const uint16_t* table, int hidden, const int32_t* ids, int rows, float* resid, cudaStream_t s);

// ---- rmsnorm.cu ----
// For output row i (source row r = rowIndex ? rowIndex[i] : i):
//   v = resid[r] + (delta ? delta[r] : 0);  if (writeBack) resid[r] = v;  out[i] = bf16(v · rsqrt(mean(v²) + eps) · w)
cudaError_t rmsNormResidual(float* resid, const uint16_t* delta, const float* weight, int rows, int dim, float eps,
                            uint16_t* out, const int32_t* rowIndex, bool writeBack, cudaStream_t s);
// The same with a float32 delta (a W4 GEMV's output), rounded to bf16 before the add as if stored as bf16.
cudaError_t rmsNormResidualF32(float* resid, const float* delta, const float* weight, int rows, int dim, float eps,
                               uint16_t* out, const int32_t* rowIndex, bool writeBack, cudaStream_t s);

// ---- gemv.cu: skinny GEMM on tensor cores, y[m, n] = Σ_k x[m, k] · W[n, k], any M (tiled by 64) ----
cudaError_t gemvBf16Out(const uint16_t* x, int M, const LinearWeight& w, uint16_t* y, cudaStream_t s);
cudaError_t gemvF32Out(const uint16_t* x, int M, const LinearWeight& w, float* y, cudaStream_t s);

// Residual add + RMSNorm fused into the GEMVs around it (decode steps), instead of rmsNormResidual:
//  - gemvAddResidual (o_proj, down_proj): resid[m, n] += bf16(y[m, n]) in the epilogue, and the sum of
//    squares of the new resid[m, 16i..16i+15] into parts[m · normPartsPerRow(N) + i];
//  - a GEMV given a NormIn (QKV, gate/up) sums row m's parts into inv = rsqrt(Σ / K + eps) and multiplies
//    bf16((resid[m, k] · inv) · weight[k]), the rounding rmsNormResidual stores, in place of x[m, k].
// parts holds M · normPartsPerRow(hidden) floats; every row is written by the producer before it is read.
struct NormIn {
  const float* resid = nullptr;   // [M, K]
  const float* weight = nullptr;  // [K]
  const float* parts = nullptr;   // [M, tiles]
  int tiles = 0;                  // normPartsPerRow(K)
  float eps = 0;
};
int normPartsPerRow(int hidden);
// Split-K across blocks (gemvAddResidual: o_proj and down_proj have the fewest blocks, hidden/64): with
// a workspace, K is split so that about two waves of blocks run, and the last split of each column of
// blocks sums the splits' partials in a fixed order before the epilogue. partials: splitKPartialsBytes(N)
// bytes; counters: one unsigned per 64 rows of N, zeroed once (each launch leaves them zero).
struct SplitKWorkspace {
  float* partials = nullptr;
  unsigned* counters = nullptr;
};
size_t splitKPartialsBytes(int N);
cudaError_t gemvAddResidual(const uint16_t* x, int M, const LinearWeight& w, float* resid, float* parts, cudaStream_t s,
                            const SplitKWorkspace* ws = nullptr);

// W holds gate and up rows interleaved in groups of 8 (see gateUpRowOrder): y[m, j] = silu(gate_j) · up_j, j < N/2.
// norm: the input is RMSNorm(norm->resid) (x unused), see NormIn.
cudaError_t gemvSwiglu(const uint16_t* x, int M, const LinearWeight& w, uint16_t* y, cudaStream_t s, const NormIn* norm = nullptr);

// The fused QKV projection: W rows in qkvRowOrder, then RoPE (rotate_half, inv_freq from the host)
// on q and k, q stored [M, numHeads·headDim] bf16, k and v written into the paged cache at slot[m]
// (cache layout [block][kvHead][blockSize][headDim] bf16).
struct QkvRopeArgs {
  const int32_t* positions = nullptr;  // [M]
  const int32_t* slots = nullptr;      // [M]; < 0: do not write the cache (padding rows)
  const float* invFreq = nullptr;      // [headDim / 2]
  uint16_t* q = nullptr;
  uint16_t* kCache = nullptr;
  uint16_t* vCache = nullptr;
  int numHeads = 0, numKvHeads = 0, headDim = 0, blockSize = 0;
  bool kvFp8 = false;  // write K/V as e4m3 bytes (scale 1; nearest even, saturating) at the same element offsets
};
cudaError_t gemvQkvRope(const uint16_t* x, int M, const LinearWeight& w, const QkvRopeArgs& a, cudaStream_t s,
                        const NormIn* norm = nullptr);

// Row orders of the fused weights (index i of the fused matrix holds HF row order[i] of the concatenation).
//  qkv: per head (q heads, then k, then v), 16-row tiles [d..d+7 | d+h..d+h+7] with h = headDim/2, so one
//       tile's accumulators hold both halves RoPE rotates together. Needs headDim % 16 == 0.
//  gate/up: tiles [gate 8j..8j+7 | up 8j..8j+7] (concatenation = [gate; up]).
void qkvRowOrder(int numHeads, int numKvHeads, int headDim, int32_t* order);
void gateUpRowOrder(int intermediate, int32_t* order);

// ---- decode_attention.cu: paged attention, split-K (flash-decoding), GQA ----
// Row m attends to positions [0, ctxLen[m]) of its sequence through blockTables + tableOffset[m].
// Prefill rows are rows with ctxLen = pos + 1 (causal). numSplits > 1 needs `partial` workspace
// of attentionWorkspaceBytes(rows, numSplits, numHeads, headDim).
struct AttentionArgs {
  const uint16_t* q = nullptr;  // [rows, numHeads·headDim]
  const uint16_t* kCache = nullptr;
  const uint16_t* vCache = nullptr;
  const int32_t* blockTables = nullptr;
  const int32_t* tableOffset = nullptr;  // [rows]
  const int32_t* ctxLen = nullptr;       // [rows]
  uint16_t* out = nullptr;               // [rows, numHeads·headDim]
  float* partial = nullptr;
  int rows = 0, numHeads = 0, numKvHeads = 0, headDim = 0, blockSize = 0, numSplits = 1;
  bool kvFp8 = false;  // the caches hold e4m3 bytes (scale 1) at the same element offsets
};
size_t attentionWorkspaceBytes(int rows, int numSplits, int numHeads, int headDim);

// The split rule of the decode attention: enough (row, KV head, split) blocks to fill the GPU about
// 3 times over, at most kMaxAttentionSplits, and (unless forGraph, where the context grows under a
// captured launch) no split shorter than a 64-token tile; one split (no workspace) above maxRows.
constexpr int kMaxAttentionSplits = 64;
inline int attentionSplits(int rows, int numKvHeads, int numSMs, int maxContext, bool forGraph, int maxRows) {
  if (rows < 1 || rows > maxRows) return 1;
  const int blocks = rows * numKvHeads;
  int s = (3 * numSMs + blocks - 1) / blocks;
  if (!forGraph) s = s < (maxContext + 63) / 64 ? s : (maxContext + 63) / 64;
  return s < 1 ? 1 : s > kMaxAttentionSplits ? kMaxAttentionSplits : s;
}
// The most rows × splits the rule gives any step of up to maxRows rows (0 when it never splits): the
// workspace needs attentionWorkspaceBytes(that, 1 split per row-split). A smaller context or an eager
// step only lowers the count. gpu-node/src/engine/memory-plan.ts (maxAttentionRowSplits) mirrors it.
inline int maxAttentionRowSplits(int maxRows, int numKvHeads, int numSMs) {
  int most = 0;
  for (int rows = 1; rows <= maxRows; rows++) {
    const int s = attentionSplits(rows, numKvHeads, numSMs, 0, true, maxRows);
    if (s > 1 && rows * s > most) most = rows * s;
  }
  return most;
}
cudaError_t pagedAttention(const AttentionArgs& a, cudaStream_t s);

// ---- sampling.cu ----
// One row of parameters per sampled row (mirrors SamplingSpec).
struct DeviceSamplingParams {
  float temperature, topP, minP, presencePenalty, frequencyPenalty, repetitionPenalty;
  int topK, logprobs;
  unsigned long long seed, outputIndex;
  int penaltyOffset, promptLen, outputLen, pad;
};
constexpr int kMaxTopLogprobs = 20;
// logits [rows, vocab] float32 (raw). work: [rows, vocab] float32 scratch. Outputs per row: token,
// logprob (of the raw logits), topIds/topLogprobs [rows, kMaxTopLogprobs].
struct SamplingArgs {
  const float* logits = nullptr;
  float* work = nullptr;
  const DeviceSamplingParams* params = nullptr;
  const int32_t* penaltyTokens = nullptr;
  int32_t* tokens = nullptr;
  float* logprobs = nullptr;
  int32_t* topIds = nullptr;
  float* topLogprobs = nullptr;
  int rows = 0, vocab = 0;
};
cudaError_t sampleTokens(const SamplingArgs& a, cudaStream_t s);

// ---- weights.cu ----
// dst[i, :] = src[order[i], :] (bf16 rows).
cudaError_t permuteRows(uint16_t* dst, const uint16_t* src, const int32_t* order, int64_t rows, int64_t cols, cudaStream_t s);
// Per row: scale = max|w| / 448 (1 when the row is zero), q = e4m3(w / scale), as the CPU quantizer.
cudaError_t quantizeFp8Rows(const uint16_t* src, int64_t rows, int64_t cols, uint8_t* dst, float* scales, cudaStream_t s);
// Seeded dummy values (numerics.h dummyWeightBf16) for rows [r0, r0 + rows) of a tensor with `cols` columns.
cudaError_t fillDummyBf16(uint16_t* dst, int64_t r0, int64_t rows, int64_t cols, uint64_t seed, uint32_t tensorId, float amplitude,
                          cudaStream_t s);
cudaError_t fillBf16(uint16_t* dst, int64_t n, float value, cudaStream_t s);
cudaError_t bf16ToF32(const uint16_t* src, float* dst, int64_t n, cudaStream_t s);

}  // namespace seventy::cuda
