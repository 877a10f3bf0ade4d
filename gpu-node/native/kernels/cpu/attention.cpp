#include <cmath>

#include "cpu_kernels.h"
#include "seventy/numerics.h"

namespace seventy::cpu {

namespace {

inline float widen(float x) { return x; }
inline float widen(uint8_t x) { return fp8e4m3ToFloat(x); }

// Query head h reads KV head h / (numHeads / numKvHeads) (HF repeat_kv). Scores are scaled by
// 1/sqrt(headDim) and softmaxed with the max subtracted; sums in double, like the TypeScript engine.
template <class T>
void attend(float* out, const float* q, const T* keys, const T* values, const int32_t* blockTable, int blockSize, int pos,
            int numHeads, int numKvHeads, int headDim, std::vector<double>& scratch) {
  const int group = numHeads / numKvHeads;
  const int64_t kvDim = int64_t(numKvHeads) * headDim;
  const double scale = 1.0 / std::sqrt(double(headDim));
  const int ctx = pos + 1;
  scratch.resize(size_t(ctx) + headDim);
  double* scores = scratch.data();
  double* acc = scores + ctx;

  for (int h = 0; h < numHeads; h++) {
    const float* qh = q + int64_t(h) * headDim;
    const int64_t headOff = int64_t(h / group) * headDim;
    double max = -INFINITY;
    for (int j = 0; j < ctx; j++) {
      const int64_t slot = int64_t(blockTable[j / blockSize]) * blockSize + j % blockSize;
      const T* k = keys + slot * kvDim + headOff;
      double s = 0;
      for (int d = 0; d < headDim; d++) s += double(qh[d]) * widen(k[d]);
      s *= scale;
      scores[j] = s;
      if (s > max) max = s;
    }
    double sum = 0;
    for (int j = 0; j < ctx; j++) {
      scores[j] = std::exp(scores[j] - max);
      sum += scores[j];
    }
    for (int d = 0; d < headDim; d++) acc[d] = 0;
    for (int j = 0; j < ctx; j++) {
      const int64_t slot = int64_t(blockTable[j / blockSize]) * blockSize + j % blockSize;
      const T* v = values + slot * kvDim + headOff;
      const double p = scores[j];
      for (int d = 0; d < headDim; d++) acc[d] += p * widen(v[d]);
    }
    float* oh = out + int64_t(h) * headDim;
    for (int d = 0; d < headDim; d++) oh[d] = float(acc[d] / sum);
  }
}

}  // namespace

void pagedAttention(float* out, const float* q, const float* keys, const float* values, const int32_t* blockTable,
                    int blockSize, int pos, int numHeads, int numKvHeads, int headDim, std::vector<double>& scratch) {
  attend(out, q, keys, values, blockTable, blockSize, pos, numHeads, numKvHeads, headDim, scratch);
}

void pagedAttention(float* out, const float* q, const uint8_t* keys, const uint8_t* values, const int32_t* blockTable,
                    int blockSize, int pos, int numHeads, int numKvHeads, int headDim, std::vector<double>& scratch) {
  attend(out, q, keys, values, blockTable, blockSize, pos, numHeads, numKvHeads, headDim, scratch);
}

}  // namespace seventy::cpu
