// Plain C++ kernels of the CPU flavor. Each is also the reference its CUDA kernel is tested against.
// Activations are float32; weights stay in their stored format (bf16, f32, or fp8 e4m3 with a float
// scale per output row) and are widened on the fly; dot products accumulate in float32.
#pragma once

#include <cstdint>
#include <vector>

#include "seventy/engine.h"

namespace seventy::cpu {

enum class WType { F32, BF16, FP8 };

// A [rows, cols] row-major matrix as stored (an HF linear weight: rows = out features).
struct WeightView {
  WType type = WType::BF16;
  const void* data = nullptr;
  const float* scales = nullptr;  // FP8 only: one per row
  int rows = 0, cols = 0;
};

// out[r] = table[ids[r]] widened to float.
void embedding(float* out, const WeightView& table, const int32_t* ids, int n);

// HF LlamaRMSNorm row by row; `out` may equal `x`.
void rmsNorm(float* out, const float* x, const float* weight, int rows, int dim, double eps);

// out[r, o] = Σ_k x[r, k] · W[o, k] (+ out[r, o] when accumulate).
void linear(float* out, const float* x, int rows, const WeightView& w, bool accumulate = false);

// gate = silu(gate) · up over n values.
void siluMul(float* gate, const float* up, int64_t n);

// inv_freq[i] = 1/θ^(2i/d), rescaled for llama3 (transformers' _compute_llama3_parameters), float32.
std::vector<float> ropeInvFreq(int headDim, double theta, const RopeScaling& scaling);
// Rotates numHeads heads (rotate_half layout: i pairs with i + d/2) of one token at `pos`.
void applyRope(float* x, int numHeads, int headDim, const float* invFreq, int pos);

// Causal GQA attention of one query token at `pos` over a paged cache laid out
// [slot][numKvHeads·headDim] (slot = blockTable[p / blockSize] · blockSize + p % blockSize).
void pagedAttention(float* out, const float* q, const float* keys, const float* values, const int32_t* blockTable,
                    int blockSize, int pos, int numHeads, int numKvHeads, int headDim, std::vector<double>& scratch);

// Next-token sampling of one logits row, exactly as gpu-node/src/engine/sampling.ts.
struct SampleResult {
  int tokenId = 0;
  bool hasLogprob = false;
  double logprob = 0;
  std::vector<int32_t> topIds;
  std::vector<double> topLogprobs;
};
SampleResult sampleToken(const float* logits, int vocab, const SamplingSpec& s, const int32_t* promptIds, int promptLen,
                         const int32_t* outputIds, int outputLen);

}  // namespace seventy::cpu
