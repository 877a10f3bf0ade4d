#include "weight_source.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>

#include "seventy/numerics.h"

namespace seventy {

std::string layerTensorName(int layer, const char* suffix) {
  return "model.layers." + std::to_string(layer) + "." + suffix;
}

uint32_t dummyTensorId(const std::string& name) {
  uint32_t h = 2166136261u;
  for (unsigned char c : name) h = (h ^ c) * 16777619u;
  return h;
}

bool isNormWeight(const std::string& name) {
  return name.find("layernorm") != std::string::npos || name == "model.norm.weight";
}

float dummyAmplitude(const std::string& name, int64_t cols) {
  if (name == "model.embed_tokens.weight") return 1.0f;
  return float(std::sqrt(3.0 / double(cols)));
}

namespace {

size_t dtypeBytes(DType d) {
  switch (d) {
    case DType::F32:
    case DType::I32:
      return 4;
    case DType::F8E4M3:
      return 1;
    default:
      return 2;
  }
}

class SafetensorsSource final : public WeightSource {
 public:
  SafetensorsSource(const std::vector<TensorSource>& tensors, ProgressFn progress) : progress_(std::move(progress)) {
    for (const TensorSource& t : tensors) {
      byName_[t.name] = t;
      total_ += t.byteLength;
    }
  }
  ~SafetensorsSource() override {
    for (auto& [file, fd] : fds_) ::close(fd);
  }

  Status shape(const std::string& name, int64_t& rows, int64_t& cols) const override {
    auto it = byName_.find(name);
    if (it == byName_.end()) return errorStatus(kInvalidArgument, "missing tensor " + name);
    const auto& s = it->second.shape;
    if (s.empty()) {
      rows = 1;
      cols = 1;
    } else if (s.size() == 1) {
      rows = 1;
      cols = s[0];
    } else if (s.size() == 2) {
      rows = s[0];
      cols = s[1];
    } else {
      return errorStatus(kInvalidArgument, "tensor " + name + " is not 1-D or 2-D");
    }
    if (uint64_t(rows * cols) * dtypeBytes(it->second.dtype) != it->second.byteLength) {
      return errorStatus(kInvalidArgument, "tensor " + name + ": byteLength does not match its shape and dtype");
    }
    return Status::Ok();
  }

  DType dtype(const std::string& name) const override {
    auto it = byName_.find(name);
    return it == byName_.end() ? DType::BF16 : it->second.dtype;
  }

  bool has(const std::string& name) const override { return byName_.count(name) != 0; }

  Status readRaw(const std::string& name, uint8_t* dst, uint64_t byteLength) override {
    auto it = byName_.find(name);
    if (it == byName_.end()) return errorStatus(kInvalidArgument, "missing tensor " + name);
    const TensorSource& t = it->second;
    if (t.byteLength != byteLength) return errorStatus(kInvalidArgument, "tensor " + name + " has " + std::to_string(t.byteLength) + " bytes, expected " + std::to_string(byteLength));
    int fd;
    Status st = openFile(t.file, fd);
    if (!st.ok()) return st;
    if (!(st = preadAll(fd, t.file, dst, size_t(byteLength), t.offset)).ok()) return st;
    done_ += byteLength;
    if (progress_) progress_(LoadProgress{done_, total_, t.file});
    return Status::Ok();
  }

  Status readRowsBf16(const std::string& name, int64_t r0, int64_t n, uint16_t* dst) override {
    return readRows(name, r0, n, [dst](DType dt, const uint8_t* src, int64_t i0, int64_t count) {
      for (int64_t i = 0; i < count; i++) {
        uint16_t h;
        if (dt == DType::BF16) std::memcpy(&h, src + 2 * i, 2);
        else if (dt == DType::F8E4M3) h = floatToBf16(fp8e4m3ToFloat(src[i]));  // exact: 3 mantissa bits
        else if (dt == DType::F16) {
          uint16_t x;
          std::memcpy(&x, src + 2 * i, 2);
          h = floatToBf16(f16ToFloat(x));
        } else {
          float f;
          std::memcpy(&f, src + 4 * i, 4);
          h = floatToBf16(f);
        }
        dst[i0 + i] = h;
      }
    });
  }

  Status readRowsF32(const std::string& name, int64_t r0, int64_t n, float* dst) override {
    return readRows(name, r0, n, [dst](DType dt, const uint8_t* src, int64_t i0, int64_t count) {
      for (int64_t i = 0; i < count; i++) {
        uint16_t x;
        float f;
        if (dt == DType::F32) std::memcpy(&f, src + 4 * i, 4);
        else if (dt == DType::F8E4M3) f = fp8e4m3ToFloat(src[i]);
        else {
          std::memcpy(&x, src + 2 * i, 2);
          f = dt == DType::BF16 ? bf16ToFloat(x) : f16ToFloat(x);
        }
        dst[i0 + i] = f;
      }
    });
  }

  uint64_t totalBytes() const override { return total_; }

 private:
  // Reads the byte range of rows [r0, r0+n) in chunks of at most 16 MiB and hands each chunk to
  // `convert(dtype, bytes, firstElement, elementCount)`.
  template <class Convert>
  Status readRows(const std::string& name, int64_t r0, int64_t n, Convert convert) {
    int64_t rows = 0, cols = 0;
    Status st = shape(name, rows, cols);
    if (!st.ok()) return st;
    if (r0 < 0 || n < 0 || r0 + n > rows) return errorStatus(kInvalidArgument, "rows out of range for " + name);
    const TensorSource& t = byName_.at(name);
    if (t.dtype == DType::I32) return errorStatus(kInvalidArgument, "tensor " + name + " is packed I32: read it raw");
    int fd;
    st = openFile(t.file, fd);
    if (!st.ok()) return st;
    const size_t esz = dtypeBytes(t.dtype);
    const int64_t elements = n * cols;
    const int64_t chunkElems = int64_t(16 << 20) / int64_t(esz);
    buffer_.resize(size_t(std::min(elements, chunkElems)) * esz);
    for (int64_t e = 0; e < elements; e += chunkElems) {
      const int64_t count = std::min(chunkElems, elements - e);
      const uint64_t off = t.offset + uint64_t(r0 * cols + e) * esz;
      st = preadAll(fd, t.file, buffer_.data(), size_t(count) * esz, off);
      if (!st.ok()) return st;
      convert(t.dtype, buffer_.data(), e, count);
      done_ += uint64_t(count) * esz;
      if (progress_) progress_(LoadProgress{done_, total_, t.file});
    }
    return Status::Ok();
  }

  Status openFile(const std::string& file, int& fd) {
    auto it = fds_.find(file);
    if (it != fds_.end()) {
      fd = it->second;
      return Status::Ok();
    }
    fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errorStatus(kIo, file + ": cannot open: " + std::strerror(errno));
    fds_[file] = fd;
    return Status::Ok();
  }

  static Status preadAll(int fd, const std::string& file, uint8_t* dst, size_t len, uint64_t off) {
    size_t done = 0;
    while (done < len) {
      ssize_t r = ::pread(fd, dst + done, len - done, off_t(off + done));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return errorStatus(kIo, file + ": read failed: " + std::strerror(errno));
      if (r == 0) return errorStatus(kIo, file + ": truncated: unexpected end of file at byte " + std::to_string(off + done));
      done += size_t(r);
    }
    return Status::Ok();
  }

  std::map<std::string, TensorSource> byName_;
  std::map<std::string, int> fds_;
  std::vector<uint8_t> buffer_;
  ProgressFn progress_;
  uint64_t total_ = 0, done_ = 0;
};

class DummySource final : public WeightSource {
 public:
  DummySource(const ModelConfig& c, uint64_t seed) : seed_(seed) {
    const int64_t h = c.hiddenSize, q = int64_t(c.numHeads) * c.headDim, kv = int64_t(c.numKvHeads) * c.headDim;
    shapes_["model.embed_tokens.weight"] = {c.vocabSize, h};
    shapes_["model.norm.weight"] = {1, h};
    if (!c.tieWordEmbeddings) shapes_["lm_head.weight"] = {c.vocabSize, h};
    for (int l = 0; l < c.numLayers; l++) {
      shapes_[layerTensorName(l, "input_layernorm.weight")] = {1, h};
      shapes_[layerTensorName(l, "post_attention_layernorm.weight")] = {1, h};
      shapes_[layerTensorName(l, "self_attn.q_proj.weight")] = {q, h};
      shapes_[layerTensorName(l, "self_attn.k_proj.weight")] = {kv, h};
      shapes_[layerTensorName(l, "self_attn.v_proj.weight")] = {kv, h};
      shapes_[layerTensorName(l, "self_attn.o_proj.weight")] = {h, q};
      shapes_[layerTensorName(l, "mlp.gate_proj.weight")] = {c.intermediateSize, h};
      shapes_[layerTensorName(l, "mlp.up_proj.weight")] = {c.intermediateSize, h};
      shapes_[layerTensorName(l, "mlp.down_proj.weight")] = {h, c.intermediateSize};
    }
  }
  Status shape(const std::string& name, int64_t& rows, int64_t& cols) const override {
    auto it = shapes_.find(name);
    if (it == shapes_.end()) return errorStatus(kInvalidArgument, "missing tensor " + name);
    rows = it->second.first;
    cols = it->second.second;
    return Status::Ok();
  }
  DType dtype(const std::string&) const override { return DType::BF16; }
  bool has(const std::string& name) const override { return shapes_.count(name) != 0; }
  Status readRaw(const std::string& name, uint8_t*, uint64_t) override {
    return errorStatus(kInvalidArgument, "dummy weights have no stored bytes (" + name + ")");
  }
  Status readRowsBf16(const std::string& name, int64_t r0, int64_t n, uint16_t* dst) override {
    int64_t rows = 0, cols = 0;
    Status st = shape(name, rows, cols);
    if (!st.ok()) return st;
    if (isNormWeight(name)) {
      for (int64_t i = 0; i < n * cols; i++) dst[i] = floatToBf16(1.0f);
      return Status::Ok();
    }
    const uint32_t id = dummyTensorId(name);
    const float amp = dummyAmplitude(name, cols);
    const uint64_t base = uint64_t(r0 * cols);
    for (int64_t i = 0; i < n * cols; i++) dst[i] = dummyWeightBf16(seed_, id, base + uint64_t(i), amp);
    return Status::Ok();
  }
  Status readRowsF32(const std::string& name, int64_t r0, int64_t n, float* dst) override {
    int64_t rows = 0, cols = 0;
    Status st = shape(name, rows, cols);
    if (!st.ok()) return st;
    std::vector<uint16_t> tmp(size_t(n * cols));
    st = readRowsBf16(name, r0, n, tmp.data());
    for (size_t i = 0; i < tmp.size(); i++) dst[i] = bf16ToFloat(tmp[i]);
    return st;
  }
  uint64_t totalBytes() const override { return 0; }

 private:
  uint64_t seed_;
  std::map<std::string, std::pair<int64_t, int64_t>> shapes_;
};

}  // namespace

std::unique_ptr<WeightSource> makeSafetensorsSource(const std::vector<TensorSource>& tensors, ProgressFn progress) {
  return std::make_unique<SafetensorsSource>(tensors, std::move(progress));
}

std::unique_ptr<WeightSource> makeDummySource(const ModelConfig& c, uint64_t seed) {
  return std::make_unique<DummySource>(c, seed);
}

}  // namespace seventy
