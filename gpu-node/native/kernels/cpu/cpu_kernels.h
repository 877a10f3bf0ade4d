// Plain C++ kernels of the CPU flavor. Each is also the reference its CUDA kernel is tested against.
// Activations are float32; weights stay in their stored format (bf16, f32, or fp8 e4m3 with a float
// scale per output row) and are widened on the fly; dot products accumulate in float32.
#pragma once

#include <cstdint>
#include <vector>

#include "seventy/engine.h"

namespace seventy::cpu {

// W4: AutoAWQ GEMM int4, kept packed as the checkpoint stores it (see awqNibble).
enum class WType { F32, BF16, FP8, W4 };

// A [rows, cols] matrix (an HF linear weight: rows = out features, cols = in features).
// F32/BF16/FP8: row-major values. W4: `data` is AWQ's qweight int32 [cols][rows / 8], `zeros` its
// qzeros int32 [cols / groupSize][rows / 8], `scales` float [cols / groupSize][rows];
// W[o][k] = (q(k, o) − z(k / groupSize, o)) · scales[k / groupSize][o].
struct WeightView {
  WType type = WType::BF16;
  const void* data = nullptr;
  const float* scales = nullptr;  // FP8: one per row; W4: one per (group, row)
  int rows = 0, cols = 0;
  const int32_t* zeros = nullptr;  // W4 only
  int groupSize = 0;               // W4 only
};

// Output column `col` of a row of AWQ-packed int32s: nibble i of word c holds column 8c + [0,2,4,6,1,3,5,7][i],
// so column j of a word sits in nibble [0,4,1,5,2,6,3,7][j].
inline int awqNibble(const int32_t* packedRow, int col) {
  static constexpr int kShift[8] = {0, 16, 4, 20, 8, 24, 12, 28};
  return int((uint32_t(packedRow[col >> 3]) >> kShift[col & 7]) & 0xfu);
}

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
// The same over an FP8 cache: e4m3 bytes with a scale of 1 (widened exactly on read).
void pagedAttention(float* out, const float* q, const uint8_t* keys, const uint8_t* values, const int32_t* blockTable,
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
