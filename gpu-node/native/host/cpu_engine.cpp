// The CPU flavor: float32 activations, a float32 or FP8 (e4m3, scale 1) KV cache, weights kept as
// stored (bf16 stays bf16, AWQ int4 stays packed, checkpoint FP8 stays e4m3 with its scales) or
// quantized to fp8 at load, the plain C++ kernels of kernels/cpu. It serves tiny models in CI and is the
// end-to-end reference for the CUDA flavor.
#include <cmath>
#include <cstring>

#include "../kernels/cpu/cpu_kernels.h"
#include "engines.h"
#include "forward.h"
#include "seventy/numerics.h"
#include "step_plan.h"
#include "weight_source.h"

namespace seventy {
namespace {

using cpu::WeightView;
using cpu::WType;

struct OwnedWeight {
  WeightView view;
  std::vector<uint8_t> data;
  std::vector<float> scales;
  std::vector<int32_t> zeros;  // AWQ qzeros
};

struct CpuLayer {
  std::vector<float> inputNorm, postNorm;
  OwnedWeight q, k, v, o, gate, up, down;
};

class CpuEngine final : public Engine, private ForwardOps {
 public:
  explicit CpuEngine(const EngineOptions& o) : opt_(o), c_(o.config) {
    numLayers_ = o.numLayersOverride > 0 && o.numLayersOverride < c_.numLayers ? o.numLayersOverride : c_.numLayers;
  }

  const char* kind() const override { return "native-cpu"; }
  int blockSize() const override { return opt_.blockSize; }
  int numKvBlocks() const override { return opt_.numKvBlocks; }
  uint64_t weightBytes() const override { return weightBytes_; }
  uint64_t kvCacheBytes() const override { return kvBytes_; }

  Status load(const ProgressFn& progress) override {
    if (opt_.numKvBlocks <= 0) return errorStatus(kInvalidArgument, "the CPU engine needs numKvBlocks > 0");
    std::unique_ptr<WeightSource> src = opt_.loadFormat == LoadFormat::Dummy ? makeDummySource(c_, opt_.dummySeed)
                                                                             : makeSafetensorsSource(opt_.tensors, progress);
    const bool fp8 = opt_.quantization == Quantization::Fp8;
    Status st;
    // Embeddings are gathered, not streamed: keep them as stored (fp8 only helps streamed weights).
    if (!(st = loadMatrix(*src, "model.embed_tokens.weight", false, embed_)).ok()) return st;
    if (!(st = loadVector(*src, "model.norm.weight", finalNorm_)).ok()) return st;
    // --lm-head-dtype fp8 quantizes lm_head (a tied one from the embedding table) like the linear layers.
    const bool lmHeadFp8 = opt_.lmHeadDtype == LmHeadDtype::Fp8;
    if ((!c_.tieWordEmbeddings || lmHeadFp8) &&
        !(st = loadMatrix(*src, c_.tieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight", lmHeadFp8, lmHead_)).ok()) {
      return st;
    }
    layers_.resize(numLayers_);
    for (int l = 0; l < numLayers_; l++) {
      CpuLayer& L = layers_[l];
      const struct {
        const char* name;
        OwnedWeight* w;
      } mats[] = {{"self_attn.q_proj.weight", &L.q}, {"self_attn.k_proj.weight", &L.k}, {"self_attn.v_proj.weight", &L.v},
                  {"self_attn.o_proj.weight", &L.o}, {"mlp.gate_proj.weight", &L.gate},   {"mlp.up_proj.weight", &L.up},
                  {"mlp.down_proj.weight", &L.down}};
      for (const auto& m : mats)
        if (!(st = loadMatrix(*src, layerTensorName(l, m.name), fp8, *m.w)).ok()) return st;
      if (!(st = loadVector(*src, layerTensorName(l, "input_layernorm.weight"), L.inputNorm)).ok()) return st;
      if (!(st = loadVector(*src, layerTensorName(l, "post_attention_layernorm.weight"), L.postNorm)).ok()) return st;
    }
    invFreq_ = cpu::ropeInvFreq(c_.headDim, c_.ropeTheta, c_.rope);
    const size_t slots = size_t(opt_.numKvBlocks) * opt_.blockSize;
    const size_t kvDim = size_t(c_.numKvHeads) * c_.headDim;
    kvFp8_ = opt_.kvCacheDtype == KvCacheDtype::Fp8;
    keys_.assign(numLayers_, std::vector<float>());
    values_.assign(numLayers_, std::vector<float>());
    keys8_.assign(numLayers_, std::vector<uint8_t>());
    values8_.assign(numLayers_, std::vector<uint8_t>());
    try {
      for (int l = 0; l < numLayers_; l++) {
        if (kvFp8_) {
          keys8_[l].assign(slots * kvDim, 0);
          values8_[l].assign(slots * kvDim, 0);
        } else {
          keys_[l].assign(slots * kvDim, 0.0f);
          values_[l].assign(slots * kvDim, 0.0f);
        }
      }
    } catch (const std::bad_alloc&) {
      return errorStatus(kOutOfMemory, "KV cache of " + std::to_string(opt_.numKvBlocks) + " blocks does not fit in memory");
    }
    kvBytes_ = uint64_t(numLayers_) * 2 * slots * kvDim * (kvFp8_ ? 1 : 4);
    loaded_ = true;
    return Status::Ok();
  }

  Status step(const StepInput& in, StepOutput& out) override {
    if (!loaded_) return errorStatus(kInvalidArgument, "step() before load()");
    Status st = validateStep(in, c_, opt_.numKvBlocks, opt_.blockSize);
    if (!st.ok()) return st;
    in_ = &in;
    plan_ = buildStepPlan(in, opt_.blockSize);
    if (plan_.numRows == 0) {
      out.sampled.clear();
      return Status::Ok();
    }
    const int rows = plan_.numRows;
    const size_t h = c_.hiddenSize, qDim = size_t(c_.numHeads) * c_.headDim, kvDim = size_t(c_.numKvHeads) * c_.headDim;
    resid_.assign(rows * h, 0.0f);
    delta_.assign(rows * h, 0.0f);
    hbuf_.resize(rows * h);
    q_.resize(rows * qDim);
    k_.resize(rows * kvDim);
    v_.resize(rows * kvDim);
    attn_.resize(rows * qDim);
    gate_.resize(size_t(rows) * c_.intermediateSize);
    up_.resize(size_t(rows) * c_.intermediateSize);
    runForward(*this, numLayers_);
    return sample(out);
  }

 private:
  // ---- loading ----
  Status loadVector(WeightSource& src, const std::string& name, std::vector<float>& dst) {
    int64_t rows = 0, cols = 0;
    Status st = src.shape(name, rows, cols);
    if (!st.ok()) return st;
    dst.resize(size_t(rows * cols));
    weightBytes_ += dst.size() * 4;
    return src.readRowsF32(name, 0, rows, dst.data());
  }

  // AutoAWQ GEMM: qweight int32 [in, out/8], qzeros int32 [in/g, out/8], scales [in/g, out]; kept packed.
  Status loadAwq(WeightSource& src, const std::string& module, OwnedWeight& w) {
    int64_t inF = 0, packedOut = 0, groups = 0, zc = 0, sg = 0, outF = 0;
    Status st = src.shape(module + ".qweight", inF, packedOut);
    if (st.ok()) st = src.shape(module + ".qzeros", groups, zc);
    if (st.ok()) st = src.shape(module + ".scales", sg, outF);
    if (!st.ok()) return st;
    if (src.dtype(module + ".qweight") != DType::I32 || src.dtype(module + ".qzeros") != DType::I32 || outF != packedOut * 8 ||
        zc != packedOut || sg != groups || groups <= 0 || inF % groups != 0) {
      return errorStatus(kInvalidArgument, module + ": AWQ qweight/qzeros/scales shapes or dtypes do not fit together");
    }
    w.data.resize(size_t(inF * packedOut) * 4);
    w.zeros.resize(size_t(groups * packedOut));
    w.scales.resize(size_t(groups * outF));
    if (!(st = src.readRaw(module + ".qweight", w.data.data(), w.data.size())).ok()) return st;
    if (!(st = src.readRaw(module + ".qzeros", reinterpret_cast<uint8_t*>(w.zeros.data()), w.zeros.size() * 4)).ok()) return st;
    if (!(st = src.readRowsF32(module + ".scales", 0, groups, w.scales.data())).ok()) return st;
    w.view.type = WType::W4;
    w.view.rows = int(outF);
    w.view.cols = int(inF);
    w.view.groupSize = int(inF / groups);
    w.view.data = w.data.data();
    w.view.zeros = w.zeros.data();
    w.view.scales = w.scales.data();
    // fp16 scales are held as float here; the device keeps them fp16 (the memory plan counts 2 bytes).
    weightBytes_ += w.data.size() + w.zeros.size() * 4 + w.scales.size() * 4;
    return Status::Ok();
  }

  // compressed-tensors FP8: e4m3 [out, in] and weight_scale [out, 1] (channel) or [1] (tensor), broadcast per row.
  Status loadCheckpointFp8(WeightSource& src, const std::string& name, int64_t rows, int64_t cols, OwnedWeight& w) {
    const std::string module = name.substr(0, name.size() - std::string(".weight").size());
    int64_t sr = 0, sc = 0;
    Status st = src.shape(module + ".weight_scale", sr, sc);
    if (!st.ok()) return st;
    const int64_t n = sr * sc;
    if (n != rows && n != 1) return errorStatus(kInvalidArgument, module + ".weight_scale must have one value per row or one in all");
    std::vector<float> s(static_cast<size_t>(n));
    if (!(st = src.readRowsF32(module + ".weight_scale", 0, sr, s.data())).ok()) return st;
    w.data.resize(size_t(rows * cols));
    if (!(st = src.readRaw(name, w.data.data(), w.data.size())).ok()) return st;
    w.scales.resize(size_t(rows));
    for (int64_t r = 0; r < rows; r++) w.scales[size_t(r)] = s[n == 1 ? 0 : size_t(r)];
    w.view.type = WType::FP8;
    w.view.rows = int(rows);
    w.view.cols = int(cols);
    w.view.data = w.data.data();
    w.view.scales = w.scales.data();
    weightBytes_ += w.data.size() + w.scales.size() * 4;
    return Status::Ok();
  }

  Status loadMatrix(WeightSource& src, const std::string& name, bool fp8, OwnedWeight& w) {
    const std::string module = name.size() > 7 ? name.substr(0, name.size() - 7) : name;  // strip ".weight"
    if (!src.has(name) && src.has(module + ".qweight")) return loadAwq(src, module, w);
    int64_t rows = 0, cols = 0;
    Status st = src.shape(name, rows, cols);
    if (!st.ok()) return st;
    if (src.dtype(name) == DType::F8E4M3) return loadCheckpointFp8(src, name, rows, cols, w);
    const size_t n = size_t(rows * cols);
    w.view.rows = int(rows);
    w.view.cols = int(cols);
    if (fp8) {
      // Per output row: scale = max|w| / 448, q = e4m3(w / scale) — the same rule as the device quantizer.
      std::vector<float> row(static_cast<size_t>(cols));
      w.data.resize(n);
      w.scales.resize(size_t(rows));
      for (int64_t r = 0; r < rows; r++) {
        if (!(st = src.readRowsF32(name, r, 1, row.data())).ok()) return st;
        float amax = 0;
        for (float x : row) amax = std::fmax(amax, std::fabs(x));
        const float scale = amax > 0 ? amax / kFp8Max : 1.0f;
        w.scales[r] = scale;
        for (int64_t i = 0; i < cols; i++) w.data[size_t(r * cols + i)] = floatToFp8e4m3(row[size_t(i)] / scale);
      }
      w.view.type = WType::FP8;
      w.view.scales = w.scales.data();
    } else if (src.dtype(name) == DType::BF16) {
      w.data.resize(n * 2);
      if (!(st = src.readRowsBf16(name, 0, rows, reinterpret_cast<uint16_t*>(w.data.data()))).ok()) return st;
      w.view.type = WType::BF16;
    } else {
      w.data.resize(n * 4);
      if (!(st = src.readRowsF32(name, 0, rows, reinterpret_cast<float*>(w.data.data()))).ok()) return st;
      w.view.type = WType::F32;
    }
    w.view.data = w.data.data();
    weightBytes_ += w.data.size() + w.scales.size() * 4;
    return Status::Ok();
  }

  // ---- forward stages ----
  void embed() override { cpu::embedding(resid_.data(), embed_.view, plan_.rowToken.data(), plan_.numRows); }

  void addNorm(int l, bool post) override {
    const size_t n = size_t(plan_.numRows) * c_.hiddenSize;
    if (post || l > 0)
      for (size_t i = 0; i < n; i++) resid_[i] += delta_[i];
    const std::vector<float>& w = post ? layers_[l].postNorm : layers_[l].inputNorm;
    cpu::rmsNorm(hbuf_.data(), resid_.data(), w.data(), plan_.numRows, c_.hiddenSize, c_.rmsNormEps);
  }

  void qkvRopeCache(int l) override {
    const CpuLayer& L = layers_[l];
    const int rows = plan_.numRows;
    cpu::linear(q_.data(), hbuf_.data(), rows, L.q.view);
    cpu::linear(k_.data(), hbuf_.data(), rows, L.k.view);
    cpu::linear(v_.data(), hbuf_.data(), rows, L.v.view);
    const size_t qDim = size_t(c_.numHeads) * c_.headDim, kvDim = size_t(c_.numKvHeads) * c_.headDim;
    for (int r = 0; r < rows; r++) {
      cpu::applyRope(q_.data() + r * qDim, c_.numHeads, c_.headDim, invFreq_.data(), plan_.rowPos[r]);
      cpu::applyRope(k_.data() + r * kvDim, c_.numKvHeads, c_.headDim, invFreq_.data(), plan_.rowPos[r]);
      const size_t slot = size_t(plan_.rowSlot[r]);
      if (kvFp8_) {
        // Scale 1: e4m3 of the value itself, rounded to nearest even and saturated at ±448.
        for (size_t i = 0; i < kvDim; i++) {
          keys8_[l][slot * kvDim + i] = floatToFp8e4m3(k_[r * kvDim + i]);
          values8_[l][slot * kvDim + i] = floatToFp8e4m3(v_[r * kvDim + i]);
        }
      } else {
        std::memcpy(keys_[l].data() + slot * kvDim, k_.data() + r * kvDim, kvDim * 4);
        std::memcpy(values_[l].data() + slot * kvDim, v_.data() + r * kvDim, kvDim * 4);
      }
    }
  }

  // Every K/V of the step is in the cache before any token attends, so a sequence may read blocks
  // another sequence of the same step fills (a shared prefix).
  void attention(int l) override {
    const size_t qDim = size_t(c_.numHeads) * c_.headDim;
    for (int r = 0; r < plan_.numRows; r++) {
      const SeqInput& s = in_->seqs[plan_.rowSeq[r]];
      const int32_t* table = in_->blockTables.data() + s.blockOffset;
      if (kvFp8_) {
        cpu::pagedAttention(attn_.data() + r * qDim, q_.data() + r * qDim, keys8_[l].data(), values8_[l].data(), table, opt_.blockSize,
                            plan_.rowPos[r], c_.numHeads, c_.numKvHeads, c_.headDim, scratch_);
      } else {
        cpu::pagedAttention(attn_.data() + r * qDim, q_.data() + r * qDim, keys_[l].data(), values_[l].data(), table, opt_.blockSize,
                            plan_.rowPos[r], c_.numHeads, c_.numKvHeads, c_.headDim, scratch_);
      }
    }
  }

  void oProj(int l) override { cpu::linear(delta_.data(), attn_.data(), plan_.numRows, layers_[l].o.view); }

  void gateUpSwiglu(int l) override {
    cpu::linear(gate_.data(), hbuf_.data(), plan_.numRows, layers_[l].gate.view);
    cpu::linear(up_.data(), hbuf_.data(), plan_.numRows, layers_[l].up.view);
    cpu::siluMul(gate_.data(), up_.data(), int64_t(plan_.numRows) * c_.intermediateSize);
  }

  void downProj(int l) override { cpu::linear(delta_.data(), gate_.data(), plan_.numRows, layers_[l].down.view); }

  void finalNormLmHead() override {
    const int m = int(plan_.outRows.size());
    const size_t h = c_.hiddenSize;
    last_.resize(m * h);
    for (int i = 0; i < m; i++) {
      const size_t r = size_t(plan_.outRows[i]);
      for (size_t j = 0; j < h; j++) last_[i * h + j] = resid_[r * h + j] + (numLayers_ > 0 ? delta_[r * h + j] : 0.0f);
    }
    cpu::rmsNorm(last_.data(), last_.data(), finalNorm_.data(), m, c_.hiddenSize, c_.rmsNormEps);
    logits_.resize(size_t(m) * c_.vocabSize);
    const bool shared = c_.tieWordEmbeddings && opt_.lmHeadDtype != LmHeadDtype::Fp8;
    cpu::linear(logits_.data(), last_.data(), m, shared ? embed_.view : lmHead_.view);
  }

  Status sample(StepOutput& out) {
    out.sampled.clear();
    const int vocab = c_.vocabSize;
    for (size_t i = 0; i < plan_.outSeqs.size(); i++) {
      const SeqInput& s = in_->seqs[plan_.outSeqs[i]];
      const float* row = logits_.data() + i * size_t(vocab);
      SampledOutput o;
      o.seqId = s.seqId;
      if (s.sample) {
        const int32_t* hist = in_->penaltyTokens.data() + s.penaltyOffset;
        cpu::SampleResult r = cpu::sampleToken(row, vocab, s.sampling, hist, s.promptLen, hist + s.promptLen, s.outputLen);
        o.tokenId = r.tokenId;
        o.hasLogprob = r.hasLogprob;
        o.logprob = r.logprob;
        o.topIds = std::move(r.topIds);
        o.topLogprobs = std::move(r.topLogprobs);
      }
      if (s.returnLogits) o.logits.assign(row, row + vocab);
      out.sampled.push_back(std::move(o));
    }
    return Status::Ok();
  }

  EngineOptions opt_;
  ModelConfig c_;
  int numLayers_ = 0;
  bool loaded_ = false;
  uint64_t weightBytes_ = 0, kvBytes_ = 0;
  OwnedWeight embed_, lmHead_;
  std::vector<float> finalNorm_, invFreq_;
  std::vector<CpuLayer> layers_;
  std::vector<std::vector<float>> keys_, values_;
  bool kvFp8_ = false;
  std::vector<std::vector<uint8_t>> keys8_, values8_;
  // per step
  const StepInput* in_ = nullptr;
  StepPlan plan_;
  std::vector<float> resid_, delta_, hbuf_, q_, k_, v_, attn_, gate_, up_, last_, logits_;
  std::vector<double> scratch_;
};

}  // namespace

std::unique_ptr<Engine> makeCpuEngine(const EngineOptions& o) { return std::make_unique<CpuEngine>(o); }

}  // namespace seventy
