// Where weights come from, seen row by row: a safetensors checkpoint (TensorSource byte ranges read
// with pread, no copy of the whole file) or seeded dummy values. Backends ask for rows in the
// format they keep and never see files or dtypes.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "seventy/engine.h"

namespace seventy {

// HF tensor names of a LlamaForCausalLM.
std::string layerTensorName(int layer, const char* suffix);  // e.g. (3, "self_attn.q_proj.weight")
// FNV-1a of the name: the stream id of a tensor's dummy values (the same on the CPU and the device).
uint32_t dummyTensorId(const std::string& name);
// Amplitude of a tensor's uniform dummy values: sqrt(3 / fan_in) for projections (unit output
// variance for unit input), 1 for embeddings; norm weights are ones.
float dummyAmplitude(const std::string& name, int64_t cols);
bool isNormWeight(const std::string& name);

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  // Shape as [rows, cols] (1-D tensors are [1, n]); fails when the tensor is missing.
  virtual Status shape(const std::string& name, int64_t& rows, int64_t& cols) const = 0;
  // The stored dtype (dummy weights are BF16).
  virtual DType dtype(const std::string& name) const = 0;
  virtual bool has(const std::string& name) const = 0;
  // The tensor's stored bytes (packed AWQ ints, FP8 bytes), little-endian, `byteLength` of them.
  virtual Status readRaw(const std::string& name, uint8_t* dst, uint64_t byteLength) = 0;
  // Rows [r0, r0 + n) as bf16 (F32/F16 are rounded to nearest even, F8E4M3 widened exactly; not I32).
  virtual Status readRowsBf16(const std::string& name, int64_t r0, int64_t n, uint16_t* dst) = 0;
  // Rows [r0, r0 + n) widened to float (exact for every float dtype, F8E4M3 included; not I32).
  virtual Status readRowsF32(const std::string& name, int64_t r0, int64_t n, float* dst) = 0;
  // Total bytes a full load reads (for progress).
  virtual uint64_t totalBytes() const = 0;
};

// `progress` is called after each read chunk with the bytes read so far.
std::unique_ptr<WeightSource> makeSafetensorsSource(const std::vector<TensorSource>& tensors, ProgressFn progress);
std::unique_ptr<WeightSource> makeDummySource(const ModelConfig& c, uint64_t seed);

}  // namespace seventy
