// The CUDA flavor of the engine: weights and KV cache on the device, the fused kernels of kernels/,
// the decoder loop of forward.h. One step = a few host→device copies of the step's plan, the kernel
// launches (or one graph launch for decode steps), and one device→host copy of the sampled ids, the
// only synchronization of the step.
//
// Memory: weights (bf16, or fp8 + per-row scales; the embedding table in host memory unless
// --embedding-device gpu, lm_head bf16 or --lm-head-dtype fp8), then the activation workspace for
// maxNumBatchedTokens rows, then the KV cache sized from what is left of
// gpuMemoryUtilization · total memory (unless numKvBlocks is given).
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <vector>

#include "../kernels/cpu/cpu_kernels.h"
#include "engines.h"
#include "forward.h"
#include "gemv_w4.h"
#include "kernels.h"
#include "prefill.h"
#include "seventy/numerics.h"
#include "step_plan.h"
#include "weight_source.h"

namespace seventy {
namespace {

using cuda::LinearWeight;
using cuda::WFormat;

Status cudaStatus(cudaError_t e, const char* what) {
  return errorStatus(e == cudaErrorMemoryAllocation ? kOutOfMemory : kDevice,
                     std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

#define CU(expr)                                    \
  do {                                              \
    cudaError_t e_ = (expr);                        \
    if (e_ != cudaSuccess) return cudaStatus(e_, #expr); \
  } while (0)

struct DeviceLayer {
  float* inputNorm = nullptr;
  float* postNorm = nullptr;
  LinearWeight qkv, o, gateUp, down;
  // AutoAWQ checkpoints: the seven linears as stored (unfused), run by gemv_w4.cu + w4_epilogues.cu.
  bool w4 = false;
  cuda::W4Weight q4, k4, v4, o4, gate4, up4, down4;
};

// W4 layers run their GEMVs over at most this many rows at a time (bounds the float32 scratch).
constexpr int kW4RowChunk = 64;
// Steps with more rows than this run their linears through the tiled prefill GEMM (prefill_gemm.cu:
// every row in one pass over the weights) instead of the skinny GEMM (64-row slices, each re-reading
// them); SEVENTY_PREFILL_GEMM_MIN_ROWS overrides it (the emulated tests set 1 to run every step
// through it). W4 layers then take up to kW4PrefillRowChunk rows per GEMM (their float32 scratch).
constexpr int kPrefillGemmMinRows = 64;
constexpr int kW4PrefillRowChunk = 512;

int prefillGemmMinRows() {
  const char* v = std::getenv("SEVENTY_PREFILL_GEMM_MIN_ROWS");
  return v && *v ? std::max(0, std::atoi(v)) : kPrefillGemmMinRows;
}

// Decode batches are padded up to one of these sizes, each with its own captured graph.
const int kGraphBuckets[] = {1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256};

class CudaEngine final : public Engine, private ForwardOps {
 public:
  explicit CudaEngine(const EngineOptions& o) : opt_(o), c_(o.config) {
    numLayers_ = o.numLayersOverride > 0 && o.numLayersOverride < c_.numLayers ? o.numLayersOverride : c_.numLayers;
    maxRows_ = std::max(1, o.maxNumBatchedTokens);
    maxOut_ = std::max(1, std::min(o.maxNumSeqs, maxRows_));
    maxModelLen_ = o.maxModelLen > 0 ? o.maxModelLen : 131072;
  }

  ~CudaEngine() override {
    for (auto& [b, g] : graphs_) cudaGraphExecDestroy(g);
    for (void* p : deviceAllocs_) cudaFree(p);
    for (void* p : hostAllocs_) cudaFreeHost(p);
    if (stream_) cudaStreamDestroy(stream_);
  }

  const char* kind() const override { return "native-cuda"; }
  int blockSize() const override { return opt_.blockSize; }
  int numKvBlocks() const override { return numKvBlocks_; }
  uint64_t weightBytes() const override { return weightBytes_; }
  uint64_t kvCacheBytes() const override { return kvBytes_; }

  Status load(const ProgressFn& progress) override {
    Status st = checkShapes();
    if (!st.ok()) return st;
    CU(cudaSetDevice(0));
    CU(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    cudaDeviceProp prop{};
    CU(cudaGetDeviceProperties(&prop, 0));
    numSMs_ = prop.multiProcessorCount;
    if (opt_.loadFormat == LoadFormat::Safetensors) src_ = makeSafetensorsSource(opt_.tensors, progress);
    else src_ = makeDummySource(c_, opt_.dummySeed);
    if (!(st = loadWeights()).ok()) return st;
    if (!(st = allocWorkspace()).ok()) return st;
    if (!(st = allocKvCache()).ok()) return st;
    src_.reset();
    CU(cudaStreamSynchronize(stream_));
    loaded_ = true;
    return Status::Ok();
  }

  Status step(const StepInput& in, StepOutput& out) override {
    using Clock = std::chrono::steady_clock;
    const auto tStart = Clock::now();
    auto micros = [](Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::micro>(b - a).count(); };
    if (!loaded_) return errorStatus(kInvalidArgument, "step() before load()");
    Status st = validateStep(in, c_, numKvBlocks_, opt_.blockSize);
    if (!st.ok()) return st;
    plan_ = buildStepPlan(in, opt_.blockSize);
    out.sampled.clear();
    if (plan_.numRows == 0) return Status::Ok();
    if (plan_.numRows > maxRows_) {
      return errorStatus(kInvalidArgument, "step has " + std::to_string(plan_.numRows) + " tokens; maxNumBatchedTokens is " + std::to_string(maxRows_));
    }
    if (int(plan_.outRows.size()) > maxOut_) return errorStatus(kInvalidArgument, "step samples more sequences than maxNumSeqs");
    if (in.blockTables.size() > tableCap_) return errorStatus(kInvalidArgument, "step's block tables exceed the engine's capacity");
    if (in.penaltyTokens.size() > penaltyCap_) return errorStatus(kInvalidArgument, "step's penalty history exceeds the engine's capacity");

    // A graph replays decode steps where every sequence computes and samples one token.
    bool anyLogits = false, allSample = true;
    for (const SeqInput& s : in.seqs) {
      anyLogits |= s.returnLogits;
      allSample &= s.sample;
    }
    int bucket = 0;
    if (opt_.cudaGraphs && plan_.decodeOnly && allSample && !anyLogits && !cuda::syncDebugEnabled()) {
      for (int b : kGraphBuckets)
        if (b >= plan_.numRows && b <= maxOut_) {
          bucket = b;
          break;
        }
    }
    rows_ = bucket ? bucket : plan_.numRows;
    numOut_ = bucket ? bucket : int(plan_.outRows.size());
    splits_ = attentionSplits(rows_, plan_.maxContext, bucket != 0);

    if (!(st = uploadStep(in)).ok()) return st;
    if (!(st = uploadAttentionTiles(bucket)).ok()) return st;
    if (bucket) {
      if (!(st = launchGraph(bucket)).ok()) return st;
    } else {
      err_ = cudaSuccess;
      runForward(*this, numLayers_);
      sampleOp();
      if (err_ != cudaSuccess) return cudaStatus(err_, "forward");
    }
    out.hostPrepareUs = micros(tStart, Clock::now());
    const int realOut = int(plan_.outRows.size());
    CU(cudaMemcpyAsync(hOutTokens_, dOutTokens_, sizeof(int32_t) * realOut, cudaMemcpyDeviceToHost, stream_));
    CU(cudaMemcpyAsync(hOutLogprobs_, dOutLogprobs_, sizeof(float) * realOut, cudaMemcpyDeviceToHost, stream_));
    bool anyTop = false;
    for (const SeqInput& s : in.seqs) anyTop |= s.sample && s.sampling.logprobs > 0;
    if (anyTop) {
      CU(cudaMemcpyAsync(hTopIds_, dTopIds_, sizeof(int32_t) * realOut * cuda::kMaxTopLogprobs, cudaMemcpyDeviceToHost, stream_));
      CU(cudaMemcpyAsync(hTopLogprobs_, dTopLogprobs_, sizeof(float) * realOut * cuda::kMaxTopLogprobs, cudaMemcpyDeviceToHost, stream_));
    }
    std::vector<float> logits;
    if (anyLogits) {
      logits.resize(size_t(realOut) * c_.vocabSize);
      CU(cudaMemcpyAsync(logits.data(), dLogits_, sizeof(float) * logits.size(), cudaMemcpyDeviceToHost, stream_));
    }
    CU(cudaStreamSynchronize(stream_));  // the step's one synchronization: the sampled ids
    const auto tBack = Clock::now();

    for (int i = 0; i < realOut; i++) {
      const SeqInput& s = in.seqs[plan_.outSeqs[i]];
      SampledOutput o;
      o.seqId = s.seqId;
      if (s.sample) {
        o.tokenId = hOutTokens_[i];
        if (s.sampling.logprobs >= 0) {
          o.hasLogprob = true;
          o.logprob = hOutLogprobs_[i];
          const int n = std::min(std::min(s.sampling.logprobs, cuda::kMaxTopLogprobs), c_.vocabSize);
          for (int j = 0; j < n; j++) {
            o.topIds.push_back(hTopIds_[i * cuda::kMaxTopLogprobs + j]);
            o.topLogprobs.push_back(hTopLogprobs_[i * cuda::kMaxTopLogprobs + j]);
          }
        }
      }
      if (s.returnLogits) o.logits.assign(logits.begin() + size_t(i) * c_.vocabSize, logits.begin() + size_t(i + 1) * c_.vocabSize);
      out.sampled.push_back(std::move(o));
    }
    out.hostReadbackUs = micros(tBack, Clock::now());
    return Status::Ok();
  }

 private:
  // ---- memory ----
  template <class T>
  Status deviceAlloc(T*& p, size_t count) {
    void* v = nullptr;
    CU(cudaMalloc(&v, std::max<size_t>(count, 1) * sizeof(T)));
    deviceAllocs_.push_back(v);
    p = static_cast<T*>(v);
    return Status::Ok();
  }
  template <class T>
  Status hostAlloc(T*& p, size_t count) {
    void* v = nullptr;
    CU(cudaHostAlloc(&v, std::max<size_t>(count, 1) * sizeof(T), cudaHostAllocDefault));
    hostAllocs_.push_back(v);
    p = static_cast<T*>(v);
    return Status::Ok();
  }

  Status checkShapes() const {
    const int G = c_.numHeads / c_.numKvHeads;
    if (G != 1 && G != 2 && G != 4 && G != 8) return errorStatus(kUnsupported, "CUDA engine: numHeads / numKvHeads must be 1, 2, 4 or 8");
    if (c_.headDim != 16 && c_.headDim != 32 && c_.headDim != 64 && c_.headDim != 128) {
      return errorStatus(kUnsupported, "CUDA engine: headDim must be 16, 32, 64 or 128");
    }
    const int align = opt_.quantization == Quantization::Fp8 ? 16 : 8;
    if (opt_.lmHeadDtype == LmHeadDtype::Fp8 && c_.hiddenSize % 16 != 0) {
      return errorStatus(kUnsupported, "CUDA engine: --lm-head-dtype fp8 needs a hidden size that is a multiple of 16");
    }
    if (c_.hiddenSize % align != 0 || c_.intermediateSize % align != 0 || (c_.numHeads * c_.headDim) % align != 0) {
      return errorStatus(kUnsupported, "CUDA engine: hidden, intermediate and head sizes must be multiples of " + std::to_string(align));
    }
    return Status::Ok();
  }

  // ---- weights ----
  // Rows of one HF tensor into device bf16 memory (dummy: generated there).
  Status stageTensor(const std::string& name, uint16_t* dst, int64_t& rows, int64_t& cols) {
    Status st = src_->shape(name, rows, cols);
    if (!st.ok()) return st;
    return stageRows(name, 0, rows, cols, dst);
  }

  // Rows [r0, r0 + rows) of a tensor with `cols` columns into device bf16 memory at dst.
  Status stageRows(const std::string& name, int64_t r0, int64_t rows, int64_t cols, uint16_t* dst) {
    if (opt_.loadFormat == LoadFormat::Dummy) {
      if (isNormWeight(name)) CU(cuda::fillBf16(dst, rows * cols, 1.0f, stream_));
      else CU(cuda::fillDummyBf16(dst, r0, rows, cols, opt_.dummySeed, dummyTensorId(name), dummyAmplitude(name, cols), stream_));
      return Status::Ok();
    }
    const int64_t chunkRows = std::max<int64_t>(1, int64_t(kPinnedElems) / cols);
    for (int64_t r = 0; r < rows; r += chunkRows) {
      const int64_t n = std::min(chunkRows, rows - r);
      CU(cudaStreamSynchronize(stream_));  // the pinned buffer is free again
      Status st = src_->readRowsBf16(name, r0 + r, n, pinned_);
      if (!st.ok()) return st;
      CU(cudaMemcpyAsync(dst + r * cols, pinned_, size_t(n * cols) * 2, cudaMemcpyHostToDevice, stream_));
    }
    return Status::Ok();
  }

  // --embedding-device host: the bf16 table stays in host memory; uploadStep gathers each step's rows.
  Status loadHostTable(const std::string& name) {
    int64_t rows, cols;
    Status st = src_->shape(name, rows, cols);
    if (!st.ok()) return st;
    if (opt_.loadFormat == LoadFormat::Safetensors && src_->dtype(name) != DType::BF16 && src_->dtype(name) != DType::F16 && src_->dtype(name) != DType::F32) {
      return errorStatus(kUnsupported, "the CUDA flavor keeps " + name + " in bf16; an FP8 or packed " + name + " is not supported");
    }
    hostEmbed_.resize(size_t(rows * cols));
    return src_->readRowsBf16(name, 0, rows, hostEmbed_.data());
  }

  // --lm-head-dtype fp8: the bf16 rows quantized on the device in chunks that fit the staging buffer,
  // one e4m3 row and float scale per vocab entry (the rule of the linear layers' on-load quantization).
  Status loadLmHeadFp8(const std::string& name) {
    if (opt_.loadFormat == LoadFormat::Safetensors && src_->dtype(name) == DType::F8E4M3) return loadCheckpointFp8({name}, nullptr, lmHead_);
    int64_t rows, cols;
    Status st = src_->shape(name, rows, cols);
    if (!st.ok()) return st;
    uint8_t* q;
    float* scales;
    if (!(st = deviceAlloc(q, size_t(rows * cols))).ok() || !(st = deviceAlloc(scales, size_t(rows))).ok()) return st;
    const int64_t chunkRows = std::max<int64_t>(1, stagingElems_ / cols);
    for (int64_t r = 0; r < rows; r += chunkRows) {
      const int64_t n = std::min(chunkRows, rows - r);
      if (!(st = stageRows(name, r, n, cols, staging_)).ok()) return st;
      CU(cuda::quantizeFp8Rows(staging_, n, cols, q + r * cols, scales + r, stream_));
      CU(cudaStreamSynchronize(stream_));  // staging is reused by the next chunk
    }
    lmHead_ = {WFormat::FP8, q, scales, int(rows), int(cols)};
    weightBytes_ += uint64_t(rows * cols) + uint64_t(rows) * 4;
    return Status::Ok();
  }

  // The HF tensors `names` concatenated by rows, permuted by `order`, stored bf16 or fp8.
  // compressed-tensors FP8: the checkpoint's e4m3 rows and scales as stored ([out, 1] per channel or
  // one per tensor, broadcast per row), concatenated and permuted on the host; the device quantizer
  // would pick other scales.
  Status loadCheckpointFp8(const std::vector<std::string>& names, const std::vector<int32_t>* order, LinearWeight& w) {
    std::vector<uint8_t> rows;
    std::vector<float> scales;
    int64_t K = 0;
    for (const std::string& n : names) {
      if (src_->dtype(n) != DType::F8E4M3) return errorStatus(kInvalidArgument, "tensor " + n + " is not FP8 like the others it is fused with");
      int64_t r, c, sr, sc;
      Status st = src_->shape(n, r, c);
      const std::string scaleName = n.substr(0, n.size() - 7) + ".weight_scale";  // strip ".weight"
      if (st.ok()) st = src_->shape(scaleName, sr, sc);
      if (!st.ok()) return st;
      if (K != 0 && c != K) return errorStatus(kInvalidArgument, "tensor " + n + " has " + std::to_string(c) + " columns, expected " + std::to_string(K));
      if (sr * sc != r && sr * sc != 1) return errorStatus(kInvalidArgument, scaleName + " must have one value per row or one in all");
      K = c;
      const size_t at = rows.size();
      rows.resize(at + size_t(r * c));
      if (!(st = src_->readRaw(n, rows.data() + at, uint64_t(r * c))).ok()) return st;
      std::vector<float> s(static_cast<size_t>(sr * sc));
      if (!(st = src_->readRowsF32(scaleName, 0, sr, s.data())).ok()) return st;
      for (int64_t i = 0; i < r; i++) scales.push_back(s[s.size() == 1 ? 0 : size_t(i)]);
    }
    const int64_t total = int64_t(scales.size());
    std::vector<uint8_t> permuted;
    std::vector<float> permutedScales;
    if (order) {
      permuted.resize(rows.size());
      permutedScales.resize(scales.size());
      for (int64_t r = 0; r < total; r++) {
        std::memcpy(permuted.data() + r * K, rows.data() + int64_t((*order)[size_t(r)]) * K, size_t(K));
        permutedScales[size_t(r)] = scales[size_t((*order)[size_t(r)])];
      }
    }
    uint8_t* q;
    float* dScales;
    Status st = deviceAlloc(q, rows.size());
    if (st.ok()) st = deviceAlloc(dScales, size_t(total));
    if (!st.ok()) return st;
    CU(cudaMemcpy(q, order ? permuted.data() : rows.data(), rows.size(), cudaMemcpyHostToDevice));
    CU(cudaMemcpy(dScales, order ? permutedScales.data() : scales.data(), size_t(total) * 4, cudaMemcpyHostToDevice));
    w = {WFormat::FP8, q, dScales, int(total), int(K)};
    weightBytes_ += uint64_t(rows.size()) + uint64_t(total) * 4;
    return Status::Ok();
  }

  Status loadLinear(const std::vector<std::string>& names, const std::vector<int32_t>* order, bool fp8, LinearWeight& w) {
    if (opt_.loadFormat == LoadFormat::Safetensors && src_->dtype(names[0]) == DType::F8E4M3) return loadCheckpointFp8(names, order, w);
    int64_t total = 0, K = 0;
    for (const std::string& n : names) {
      int64_t r, c;
      Status st = src_->shape(n, r, c);
      if (!st.ok()) return st;
      total += r;
      K = c;
    }
    if (total * K > stagingElems_) return errorStatus(kInvalidArgument, "staging buffer too small for " + names[0]);
    int64_t off = 0;
    for (const std::string& n : names) {
      int64_t r, c;
      Status st = stageTensor(n, staging_ + off * K, r, c);
      if (!st.ok()) return st;
      if (c != K) return errorStatus(kInvalidArgument, "tensor " + n + " has " + std::to_string(c) + " columns, expected " + std::to_string(K));
      off += r;
    }
    const uint16_t* rowsSrc = staging_;
    if (order) {
      CU(cudaMemcpyAsync(dOrder_, order->data(), order->size() * 4, cudaMemcpyHostToDevice, stream_));
      CU(cuda::permuteRows(staging2_, staging_, dOrder_, total, K, stream_));
      rowsSrc = staging2_;
    }
    w.N = int(total);
    w.K = int(K);
    if (fp8) {
      uint8_t* q;
      float* scales;
      Status st = deviceAlloc(q, size_t(total * K));
      if (st.ok()) st = deviceAlloc(scales, size_t(total));
      if (!st.ok()) return st;
      CU(cuda::quantizeFp8Rows(rowsSrc, total, K, q, scales, stream_));
      w.format = WFormat::FP8;
      w.data = q;
      w.scales = scales;
      weightBytes_ += uint64_t(total * K) + uint64_t(total) * 4;
    } else {
      uint16_t* d;
      Status st = deviceAlloc(d, size_t(total * K));
      if (!st.ok()) return st;
      CU(cudaMemcpyAsync(d, rowsSrc, size_t(total * K) * 2, cudaMemcpyDeviceToDevice, stream_));
      w.format = WFormat::BF16;
      w.data = d;
      weightBytes_ += uint64_t(total * K) * 2;
    }
    CU(cudaStreamSynchronize(stream_));  // staging is reused by the next tensor
    return Status::Ok();
  }

  // AutoAWQ GEMM: qweight int32 [K][N/8], qzeros int32 [K/g][N/8], scales fp16 [K/g][N], uploaded as stored.
  Status loadW4(const std::string& module, cuda::W4Weight& w) {
    int64_t K = 0, words = 0, groups = 0, zw = 0, sg = 0, N = 0;
    Status st = src_->shape(module + ".qweight", K, words);
    if (st.ok()) st = src_->shape(module + ".qzeros", groups, zw);
    if (st.ok()) st = src_->shape(module + ".scales", sg, N);
    if (!st.ok()) return st;
    if (src_->dtype(module + ".scales") != DType::F16 || N != words * 8 || zw != words || sg != groups || groups <= 0 || K % groups != 0 ||
        (K / groups) % 8 != 0) {
      return errorStatus(kUnsupported, module + ": AWQ tensors must be qweight I32 [K, N/8], qzeros I32 [K/g, N/8], scales F16 [K/g, N] with g % 8 == 0");
    }
    std::vector<uint8_t> host;
    auto upload = [&](const std::string& name, size_t bytes, void*& dst) -> Status {
      host.resize(bytes);
      Status s2 = src_->readRaw(name, host.data(), bytes);
      if (!s2.ok()) return s2;
      uint8_t* d;
      if (!(s2 = deviceAlloc(d, bytes)).ok()) return s2;
      CU(cudaMemcpy(d, host.data(), bytes, cudaMemcpyHostToDevice));
      dst = d;
      weightBytes_ += bytes;
      return Status::Ok();
    };
    void *q = nullptr, *z = nullptr, *sc = nullptr;
    if (!(st = upload(module + ".qweight", size_t(K * words) * 4, q)).ok()) return st;
    if (!(st = upload(module + ".qzeros", size_t(groups * words) * 4, z)).ok()) return st;
    if (!(st = upload(module + ".scales", size_t(groups * N) * 2, sc)).ok()) return st;
    w.qweight = static_cast<const int32_t*>(q);
    w.qzeros = static_cast<const int32_t*>(z);
    w.scales = static_cast<const uint16_t*>(sc);
    w.N = int(N);
    w.K = int(K);
    w.groupSize = int(K / groups);
    return Status::Ok();
  }

  Status loadBf16Table(const std::string& name, uint16_t*& dst) {
    int64_t rows, cols;
    Status st = src_->shape(name, rows, cols);
    if (!st.ok()) return st;
    if (opt_.loadFormat == LoadFormat::Safetensors && src_->dtype(name) != DType::BF16 && src_->dtype(name) != DType::F16 && src_->dtype(name) != DType::F32) {
      return errorStatus(kUnsupported, "the CUDA flavor keeps " + name + " in bf16; an FP8 or packed " + name + " is not supported");
    }
    if (!(st = deviceAlloc(dst, size_t(rows * cols))).ok()) return st;
    weightBytes_ += uint64_t(rows * cols) * 2;
    return stageTensor(name, dst, rows, cols);
  }

  Status loadNorm(const std::string& name, float*& dst) {
    int64_t rows, cols;
    Status st = src_->shape(name, rows, cols);
    if (!st.ok()) return st;
    std::vector<float> h(size_t(rows * cols));
    if (!(st = src_->readRowsF32(name, 0, rows, h.data())).ok()) return st;
    if (opt_.loadFormat == LoadFormat::Dummy) std::fill(h.begin(), h.end(), 1.0f);
    if (!(st = deviceAlloc(dst, h.size())).ok()) return st;
    CU(cudaMemcpy(dst, h.data(), h.size() * 4, cudaMemcpyHostToDevice));
    weightBytes_ += h.size() * 4;
    return Status::Ok();
  }

  Status loadWeights() {
    const bool fp8 = opt_.quantization == Quantization::Fp8;
    const int64_t H = c_.hiddenSize, I = c_.intermediateSize, qkvRows = int64_t(c_.numHeads + 2 * c_.numKvHeads) * c_.headDim;
    stagingElems_ = std::max({qkvRows * H, 2 * I * H, H * I, H * int64_t(c_.numHeads) * c_.headDim});
    Status st = deviceAlloc(staging_, size_t(stagingElems_));
    if (st.ok()) st = deviceAlloc(staging2_, size_t(stagingElems_));
    if (st.ok()) st = hostAlloc(pinned_, kPinnedElems);
    if (st.ok()) st = deviceAlloc(dOrder_, size_t(std::max(qkvRows, 2 * I)));
    if (!st.ok()) return st;

    std::vector<int32_t> qkvOrder(qkvRows), gateUpOrder(2 * I);
    cuda::qkvRowOrder(c_.numHeads, c_.numKvHeads, c_.headDim, qkvOrder.data());
    cuda::gateUpRowOrder(int(I), gateUpOrder.data());

    // A tied bf16 lm_head needs the table on the device: the embedding reads that copy.
    const bool lmHeadFp8 = opt_.lmHeadDtype == LmHeadDtype::Fp8;
    embedOnHost_ = opt_.embeddingDevice == EmbeddingDevice::Host && !(c_.tieWordEmbeddings && !lmHeadFp8);
    if (embedOnHost_) st = loadHostTable("model.embed_tokens.weight");
    else st = loadBf16Table("model.embed_tokens.weight", embed_);
    if (!st.ok()) return st;
    if (!(st = loadNorm("model.norm.weight", finalNorm_)).ok()) return st;
    // lm_head stays bf16 by default (as vLLM's FP8 checkpoints keep it): all of the logits come from it.
    if (lmHeadFp8) {
      if (!(st = loadLmHeadFp8(c_.tieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight")).ok()) return st;
    } else if (c_.tieWordEmbeddings) {
      lmHead_ = {WFormat::BF16, embed_, nullptr, c_.vocabSize, c_.hiddenSize};
    } else {
      uint16_t* lm;
      if (!(st = loadBf16Table("lm_head.weight", lm)).ok()) return st;
      lmHead_ = {WFormat::BF16, lm, nullptr, c_.vocabSize, c_.hiddenSize};
    }
    layers_.resize(numLayers_);
    for (int l = 0; l < numLayers_; l++) {
      DeviceLayer& L = layers_[l];
      auto n = [l](const char* s) { return layerTensorName(l, s); };
      if (!(st = loadNorm(n("input_layernorm.weight"), L.inputNorm)).ok()) return st;
      if (!(st = loadNorm(n("post_attention_layernorm.weight"), L.postNorm)).ok()) return st;
      if (opt_.loadFormat == LoadFormat::Safetensors && src_->has(n("self_attn.q_proj.qweight"))) {
        L.w4 = true;
        const std::pair<const char*, cuda::W4Weight*> mods[] = {{"self_attn.q_proj", &L.q4}, {"self_attn.k_proj", &L.k4}, {"self_attn.v_proj", &L.v4},
                                                                 {"self_attn.o_proj", &L.o4}, {"mlp.gate_proj", &L.gate4},   {"mlp.up_proj", &L.up4},
                                                                 {"mlp.down_proj", &L.down4}};
        for (const auto& [mod, w] : mods)
          if (!(st = loadW4(n(mod), *w)).ok()) return st;
        hasW4_ = true;
        continue;
      }
      if (!(st = loadLinear({n("self_attn.q_proj.weight"), n("self_attn.k_proj.weight"), n("self_attn.v_proj.weight")}, &qkvOrder, fp8, L.qkv)).ok())
        return st;
      if (!(st = loadLinear({n("self_attn.o_proj.weight")}, nullptr, fp8, L.o)).ok()) return st;
      if (!(st = loadLinear({n("mlp.gate_proj.weight"), n("mlp.up_proj.weight")}, &gateUpOrder, fp8, L.gateUp)).ok()) return st;
      if (!(st = loadLinear({n("mlp.down_proj.weight")}, nullptr, fp8, L.down)).ok()) return st;
    }
    std::vector<float> inv = cpu::ropeInvFreq(c_.headDim, c_.ropeTheta, c_.rope);
    if (!(st = deviceAlloc(invFreq_, inv.size())).ok()) return st;
    CU(cudaMemcpy(invFreq_, inv.data(), inv.size() * 4, cudaMemcpyHostToDevice));
    CU(cudaStreamSynchronize(stream_));
    // The staging buffers are the largest temporary: give them back before sizing the KV cache.
    CU(cudaFree(staging_));
    CU(cudaFree(staging2_));
    deviceAllocs_.erase(std::remove_if(deviceAllocs_.begin(), deviceAllocs_.end(), [this](void* p) { return p == staging_ || p == staging2_; }),
                        deviceAllocs_.end());
    staging_ = staging2_ = nullptr;
    return Status::Ok();
  }

  // ---- workspace and KV cache ----
  // The rule (cuda::attentionSplits) fixes the count per bucket for graph steps (the context grows
  // under a captured graph); the kernel recomputes each split's range from the actual context length.
  int attentionSplits(int rows, int maxContext, bool forGraph) const {
    return cuda::attentionSplits(rows, c_.numKvHeads, numSMs_, maxContext, forGraph, maxOut_);
  }

  Status allocWorkspace() {
    const size_t T = size_t(maxRows_), S = size_t(maxOut_), H = size_t(c_.hiddenSize), I = size_t(c_.intermediateSize);
    const size_t Q = size_t(c_.numHeads) * c_.headDim, V = size_t(c_.vocabSize);
    tableCap_ = S * size_t((maxModelLen_ + opt_.blockSize - 1) / opt_.blockSize);
    penaltyCap_ = size_t(4) << 20;
    Status st;
    auto all = [&](std::initializer_list<Status> list) {
      for (const Status& s : list)
        if (!s.ok()) return s;
      return Status::Ok();
    };
    st = all({deviceAlloc(resid_, T * H), deviceAlloc(hbuf_, T * H), deviceAlloc(delta_, T * H), deviceAlloc(q_, T * Q),
              deviceAlloc(attnOut_, T * Q), deviceAlloc(act_, T * I), deviceAlloc(lastH_, S * H), deviceAlloc(dLogits_, S * V),
              deviceAlloc(dWork_, S * V),
              // Split-K partials (attentionWorkspaceBytes / 4 floats) for the most rows × splits the split
              // rule gives any step, about 100 on an H100 with 8 KV heads (not maxNumSeqs × 64).
              deviceAlloc(partial_, size_t(cuda::maxAttentionRowSplits(int(S), c_.numKvHeads, numSMs_)) * c_.numHeads * (c_.headDim + 2) + 1),
              deviceAlloc(dRowToken_, T), deviceAlloc(dRowPos_, T), deviceAlloc(dRowSlot_, T), deviceAlloc(dRowTable_, T),
              deviceAlloc(dRowCtx_, T), deviceAlloc(dOutRows_, S), deviceAlloc(dTables_, tableCap_), deviceAlloc(dPenalty_, penaltyCap_),
              deviceAlloc(dParams_, S), deviceAlloc(dOutTokens_, S), deviceAlloc(dOutLogprobs_, S),
              deviceAlloc(dTopIds_, S * cuda::kMaxTopLogprobs), deviceAlloc(dTopLogprobs_, S * cuda::kMaxTopLogprobs),
              hostAlloc(hRowToken_, T), hostAlloc(hRowPos_, T), hostAlloc(hRowSlot_, T), hostAlloc(hRowTable_, T), hostAlloc(hRowCtx_, T),
              hostAlloc(hOutRows_, S), hostAlloc(hTables_, tableCap_), hostAlloc(hPenalty_, penaltyCap_), hostAlloc(hParams_, S),
              hostAlloc(hOutTokens_, S), hostAlloc(hOutLogprobs_, S), hostAlloc(hTopIds_, S * cuda::kMaxTopLogprobs),
              hostAlloc(hTopLogprobs_, S * cuda::kMaxTopLogprobs)});
    if (st.ok() && embedOnHost_) st = hostAlloc(hEmbedRows_, T * H);  // the step's embedding rows, uploaded into hbuf_
    if (st.ok() && hasW4_) {
      // Float32 GEMV outputs of one row chunk (q|k|v, gate|up, or o/down) and the W4 split-K partials.
      w4Chunk_ = int(std::min<size_t>(std::max<size_t>(T, kW4RowChunk), kW4PrefillRowChunk));
      const size_t R = size_t(w4Chunk_), KV = size_t(c_.numKvHeads) * c_.headDim;
      const size_t widest = std::max({Q + 2 * KV, 2 * I, H});
      st = all({deviceAlloc(w4Out_, R * widest), deviceAlloc(w4Work_, cuda::w4GemvWorkspaceBytes(kW4RowChunk, int(std::max({Q, I, H}))) / 4 + 1)});
    }
    // Per-row partial sums of squares between a GEMV that adds into the residual and the next one that normalizes it.
    if (st.ok()) st = deviceAlloc(normParts_, T * size_t(cuda::normPartsPerRow(c_.hiddenSize)));
    // Split-K of o_proj / down_proj (hidden outputs): the splits' partials and one counter per 64 outputs, zero between launches.
    const size_t splitCols = (H + 63) / 64;
    if (st.ok()) st = all({deviceAlloc(splitK_.partials, cuda::splitKPartialsBytes(int(H)) / sizeof(float)), deviceAlloc(splitK_.counters, splitCols)});
    if (st.ok()) CU(cudaMemset(splitK_.counters, 0, splitCols * sizeof(unsigned)));
    // Query tiles of the prefill attention (at most one per row).
    if (st.ok()) st = all({deviceAlloc(dAttnTiles_, 2 * T), hostAlloc(hAttnTiles_, 2 * T)});
    return st;
  }

  Status allocKvCache() {
    // bf16, or e4m3 bytes (scale 1) with --kv-cache-dtype fp8: the same element offsets, half the bytes.
    kvFp8_ = opt_.kvCacheDtype == KvCacheDtype::Fp8;
    const size_t elemBytes = kvFp8_ ? 1 : 2;
    const size_t perBlock = size_t(numLayers_) * 2 * c_.numKvHeads * opt_.blockSize * c_.headDim * elemBytes;
    numKvBlocks_ = opt_.numKvBlocks;
    if (numKvBlocks_ <= 0) {
      size_t freeB = 0, totalB = 0;
      CU(cudaMemGetInfo(&freeB, &totalB));
      const double budget = opt_.gpuMemoryUtilization * double(totalB) - double(totalB - freeB);
      const double reserve = 512.0 * (1 << 20);  // graphs, cuBLAS-free kernels' module data, fragmentation
      if (budget - reserve < double(perBlock)) {
        return errorStatus(kOutOfMemory, "no room for a KV cache: weights and workspace use " + std::to_string((totalB - freeB) >> 20) +
                                             " MiB of " + std::to_string(totalB >> 20) + " MiB (gpuMemoryUtilization " +
                                             std::to_string(opt_.gpuMemoryUtilization) + ")");
      }
      numKvBlocks_ = int(std::min((budget - reserve) / double(perBlock), 2.0e9));
    }
    const size_t layerElems = size_t(numKvBlocks_) * c_.numKvHeads * opt_.blockSize * c_.headDim;
    Status st = deviceAlloc(kv_, (layerElems * 2 * numLayers_ * elemBytes + 1) / 2);
    if (!st.ok()) return st;
    kvLayerElems_ = layerElems;
    kvBytes_ = uint64_t(layerElems) * 2 * numLayers_ * elemBytes;
    if (opt_.loadFormat == LoadFormat::Dummy && kvFp8_) {
      CU(cudaMemsetAsync(kv_, 0x30, kvBytes_, stream_));  // e4m3 0.5 everywhere: plausible magnitudes for benchmarks
    } else if (opt_.loadFormat == LoadFormat::Dummy) {
      // Benchmarks decode against contexts they never prefilled: give them plausible values, not zeros.
      CU(cuda::fillDummyBf16(kv_, 0, int64_t(numLayers_) * 2, int64_t(layerElems), opt_.dummySeed, 0x6b76u, 1.0f, stream_));
    } else {
      CU(cudaMemsetAsync(kv_, 0, kvBytes_, stream_));
    }
    return Status::Ok();
  }

  // Layer l's K (or V) cache; with an FP8 cache the pointer addresses bytes (kernels get kvFp8 too).
  uint16_t* kCache(int l) const { return kvAt(size_t(2 * l) * kvLayerElems_); }
  uint16_t* vCache(int l) const { return kvAt(size_t(2 * l + 1) * kvLayerElems_); }
  uint16_t* kvAt(size_t elem) const { return reinterpret_cast<uint16_t*>(reinterpret_cast<uint8_t*>(kv_) + elem * (kvFp8_ ? 1 : 2)); }

  // ---- a step ----
  Status uploadStep(const StepInput& in) {
    const int n = plan_.numRows;
    for (int r = 0; r < rows_; r++) {
      if (r < n) {
        const SeqInput& s = in.seqs[plan_.rowSeq[r]];
        hRowToken_[r] = plan_.rowToken[r];
        hRowPos_[r] = plan_.rowPos[r];
        hRowSlot_[r] = plan_.rowSlot[r];
        hRowTable_[r] = s.blockOffset;
        hRowCtx_[r] = plan_.rowPos[r] + 1;
      } else {  // graph padding: attends to one cached position of sequence 0, writes nothing
        hRowToken_[r] = 0;
        hRowPos_[r] = 0;
        hRowSlot_[r] = -1;
        hRowTable_[r] = 0;
        hRowCtx_[r] = 1;
      }
    }
    for (int i = 0; i < numOut_; i++) {
      cuda::DeviceSamplingParams p{};
      p.repetitionPenalty = 1.0f;
      p.topP = 1.0f;
      p.logprobs = -1;
      if (i < int(plan_.outRows.size())) {
        hOutRows_[i] = plan_.outRows[i];
        const SeqInput& s = in.seqs[plan_.outSeqs[i]];
        if (s.sample) {
          const SamplingSpec& q = s.sampling;
          p.temperature = float(q.temperature);
          p.topP = float(q.topP);
          p.minP = float(q.minP);
          p.presencePenalty = float(q.presencePenalty);
          p.frequencyPenalty = float(q.frequencyPenalty);
          p.repetitionPenalty = float(q.repetitionPenalty);
          p.topK = q.topK;
          p.logprobs = q.logprobs;
          p.seed = (unsigned long long)q.seed;
          p.outputIndex = (unsigned long long)q.outputIndex;
          p.penaltyOffset = s.penaltyOffset;
          p.promptLen = s.promptLen;
          p.outputLen = s.outputLen;
        }
      } else {
        hOutRows_[i] = i;  // padding rows of a graph bucket
      }
      hParams_[i] = p;
    }
    std::memcpy(hTables_, in.blockTables.data(), in.blockTables.size() * 4);
    if (!in.penaltyTokens.empty()) std::memcpy(hPenalty_, in.penaltyTokens.data(), in.penaltyTokens.size() * 4);
    const size_t R = size_t(rows_) * 4;
    CU(cudaMemcpyAsync(dRowToken_, hRowToken_, R, cudaMemcpyHostToDevice, stream_));
    CU(cudaMemcpyAsync(dRowPos_, hRowPos_, R, cudaMemcpyHostToDevice, stream_));
    CU(cudaMemcpyAsync(dRowSlot_, hRowSlot_, R, cudaMemcpyHostToDevice, stream_));
    CU(cudaMemcpyAsync(dRowTable_, hRowTable_, R, cudaMemcpyHostToDevice, stream_));
    CU(cudaMemcpyAsync(dRowCtx_, hRowCtx_, R, cudaMemcpyHostToDevice, stream_));
    CU(cudaMemcpyAsync(dOutRows_, hOutRows_, size_t(numOut_) * 4, cudaMemcpyHostToDevice, stream_));
    CU(cudaMemcpyAsync(dParams_, hParams_, size_t(numOut_) * sizeof(cuda::DeviceSamplingParams), cudaMemcpyHostToDevice, stream_));
    CU(cudaMemcpyAsync(dTables_, hTables_, in.blockTables.size() * 4, cudaMemcpyHostToDevice, stream_));
    if (!in.penaltyTokens.empty()) CU(cudaMemcpyAsync(dPenalty_, hPenalty_, in.penaltyTokens.size() * 4, cudaMemcpyHostToDevice, stream_));
    if (embedOnHost_) {
      // Host-resident embedding: gather the rows here (token ids were validated) and upload them into
      // hbuf_, which embed() widens into the residual stream before the first norm overwrites it.
      const size_t H = size_t(c_.hiddenSize);
      for (int r = 0; r < rows_; r++) std::memcpy(hEmbedRows_ + size_t(r) * H, hostEmbed_.data() + size_t(hRowToken_[r]) * H, H * 2);
      CU(cudaMemcpyAsync(hbuf_, hEmbedRows_, size_t(rows_) * H * 2, cudaMemcpyHostToDevice, stream_));
    }
    return Status::Ok();
  }

  Status launchGraph(int bucket) {
    auto it = graphs_.find(bucket);
    if (it == graphs_.end()) {
      cudaGraph_t graph;
      CU(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
      err_ = cudaSuccess;
      runForward(*this, numLayers_);
      sampleOp();
      const cudaError_t endErr = cudaStreamEndCapture(stream_, &graph);
      if (err_ != cudaSuccess) return cudaStatus(err_, "capturing the decode graph");
      CU(endErr);
      cudaGraphExec_t exec;
      const cudaError_t instErr = cudaGraphInstantiate(&exec, graph, 0);
      cudaGraphDestroy(graph);
      CU(instErr);
      it = graphs_.emplace(bucket, exec).first;
    }
    CU(cudaGraphLaunch(it->second, stream_));
    return Status::Ok();
  }

  void record(cudaError_t e) {
    if (err_ == cudaSuccess && e != cudaSuccess) err_ = e;
  }

  // ---- forward stages (ForwardOps) ----
  void embed() override {
    pending_ = Pending::Nothing;
    if (embedOnHost_) record(cuda::embeddingGather(hbuf_, c_.hiddenSize, nullptr, rows_, resid_, stream_));  // rows already gathered
    else record(cuda::embeddingGather(embed_, c_.hiddenSize, dRowToken_, rows_, resid_, stream_));
  }

  // Residual add + RMSNorm. In decode steps it has no launch of its own between two bf16/FP8 GEMVs:
  // o_proj / down_proj added their output into the residual (gemvAddResidual) and the QKV or gate/up
  // GEMV normalizes on load (normIn). Otherwise (the first layer's input, W4 layers, prefill steps
  // over the threshold) rmsnorm.cu adds what is pending (delta_, or a W4 GEMV's float32 output in
  // w4Out_, which saves the conversion kernel) and writes the normed rows to hbuf_.
  void addNorm(int l, bool post) override {
    const DeviceLayer& L = layers_[l];
    normFused_ = pending_ == Pending::InResidual && fuseNorm(l);
    if (normFused_) return;
    normRows(post ? L.postNorm : L.inputNorm, rows_, hbuf_, nullptr, true);
    pending_ = Pending::Nothing;
  }
  void normRows(const float* w, int rows, uint16_t* out, const int32_t* rowIndex, bool writeBack) {
    const int H = c_.hiddenSize;
    const float eps = float(c_.rmsNormEps);
    if (pending_ == Pending::DeltaF32) return record(cuda::rmsNormResidualF32(resid_, w4Out_, w, rows, H, eps, out, rowIndex, writeBack, stream_));
    record(cuda::rmsNormResidual(resid_, pending_ == Pending::Delta ? delta_ : nullptr, w, rows, H, eps, out, rowIndex, writeBack, stream_));
  }
  // Layer l's GEMVs take part in the fusion: bf16/FP8 weights in a skinny-GEMM step.
  bool fuseNorm(int l) const { return fuseNormEnabled_ && !tiled() && !layers_[l].w4; }
  const cuda::NormIn* normIn(int l, bool post) {
    if (!normFused_) return nullptr;
    normArgs_.resid = resid_;
    normArgs_.weight = post ? layers_[l].postNorm : layers_[l].inputNorm;
    normArgs_.parts = normParts_;
    normArgs_.tiles = cuda::normPartsPerRow(c_.hiddenSize);
    normArgs_.eps = float(c_.rmsNormEps);
    return &normArgs_;
  }
  // o_proj / down_proj: into the residual when fused, else into delta_ for the next rmsNormResidual.
  void residualLinear(int l, const uint16_t* x, const LinearWeight& w) {
    if (fuseNorm(l)) {
      pending_ = Pending::InResidual;
      return record(cuda::gemvAddResidual(x, rows_, w, resid_, normParts_, stream_, &splitK_));
    }
    pending_ = Pending::Delta;
    linearBf16(x, w, delta_);
  }

  void qkvRopeCache(int l) override {
    if (layers_[l].w4) return qkvRopeCacheW4(l);
    cuda::QkvRopeArgs a;
    a.positions = dRowPos_;
    a.slots = dRowSlot_;
    a.invFreq = invFreq_;
    a.q = q_;
    a.kCache = kCache(l);
    a.vCache = vCache(l);
    a.numHeads = c_.numHeads;
    a.numKvHeads = c_.numKvHeads;
    a.headDim = c_.headDim;
    a.blockSize = opt_.blockSize;
    a.kvFp8 = kvFp8_;
    record(tiled() ? cuda::prefillGemmQkvRope(hbuf_, rows_, layers_[l].qkv, a, stream_)
                   : cuda::gemvQkvRope(hbuf_, rows_, layers_[l].qkv, a, stream_, normIn(l, false)));
  }

  void attention(int l) override {
    cuda::AttentionArgs a;
    a.q = q_;
    a.kCache = kCache(l);
    a.vCache = vCache(l);
    a.blockTables = dTables_;
    a.tableOffset = dRowTable_;
    a.ctxLen = dRowCtx_;
    a.out = attnOut_;
    a.partial = partial_;
    a.rows = rows_;
    a.numHeads = c_.numHeads;
    a.numKvHeads = c_.numKvHeads;
    a.headDim = c_.headDim;
    a.blockSize = opt_.blockSize;
    a.numSplits = splits_;
    a.kvFp8 = kvFp8_;
    if (prefillAttn_) return record(cuda::prefillAttention(a, dAttnTiles_, numAttnTiles_, stream_));
    record(cuda::pagedAttention(a, stream_));
  }

  void oProj(int l) override {
    if (layers_[l].w4) return w4Residual(attnOut_, c_.numHeads * c_.headDim, layers_[l].o4);
    residualLinear(l, attnOut_, layers_[l].o);
  }
  void gateUpSwiglu(int l) override {
    if (layers_[l].w4) return gateUpSwigluW4(l);
    record(tiled() ? cuda::prefillGemmSwiglu(hbuf_, rows_, layers_[l].gateUp, act_, stream_)
                   : cuda::gemvSwiglu(hbuf_, rows_, layers_[l].gateUp, act_, stream_, normIn(l, true)));
  }
  void downProj(int l) override {
    if (layers_[l].w4) return w4Residual(act_, c_.intermediateSize, layers_[l].down4);
    residualLinear(l, act_, layers_[l].down);
  }

  // ---- attention dispatch: eager steps over the threshold run the tiled prefill attention (query tiles
  // per sequence: a prefill chunk reads each K/V tile once per 64 rows); graph-replayed decode steps
  // keep the split-K decode kernel (a captured launch cannot change its grid) ----
  Status uploadAttentionTiles(int bucket) {
    prefillAttn_ = bucket == 0 && tiled() && cuda::prefillAttentionSupported(c_.headDim);
    if (!prefillAttn_) return Status::Ok();
    numAttnTiles_ = cuda::prefillAttentionTiles(plan_.rowSeq.data(), rows_, hAttnTiles_);
    CU(cudaMemcpyAsync(dAttnTiles_, hAttnTiles_, sizeof(int32_t) * 2 * numAttnTiles_, cudaMemcpyHostToDevice, stream_));
    return Status::Ok();
  }

  // ---- GEMM dispatch: skinny GEMM for decode-sized steps, the tiled prefill GEMM above the threshold ----
  bool tiled() const { return rows_ > prefillMinRows_; }
  void linearBf16(const uint16_t* x, const LinearWeight& w, uint16_t* y) {
    record(tiled() ? cuda::prefillGemmBf16Out(x, rows_, w, y, stream_) : cuda::gemvBf16Out(x, rows_, w, y, stream_));
  }
  // W4: rows per chunk of the float32 scratch, and the kernel for one chunk of m rows.
  int w4Chunk() const { return tiled() ? w4Chunk_ : kW4RowChunk; }
  void w4Linear(const uint16_t* x, int m, const cuda::W4Weight& w, float* y) {
    if (m > prefillMinRows_ && cuda::prefillGemmW4Supported(w)) return record(cuda::prefillGemmW4(x, m, w, y, stream_));
    for (int c0 = 0; c0 < m; c0 += kW4RowChunk)  // the GEMV's workspace holds kW4RowChunk rows
      record(cuda::w4Gemv(x + size_t(c0) * w.K, std::min(kW4RowChunk, m - c0), w, y + size_t(c0) * w.N, w4Work_, stream_));
  }

  // ---- W4 layers: unfused GEMVs in row chunks, then the epilogue as its own kernel ----
  void qkvRopeCacheW4(int l) {
    const DeviceLayer& L = layers_[l];
    const int H = c_.hiddenSize, Q = c_.numHeads * c_.headDim, KV = c_.numKvHeads * c_.headDim;
    for (int c0 = 0; c0 < rows_; c0 += w4Chunk()) {
      const int m = std::min(w4Chunk(), rows_ - c0);
      float* fq = w4Out_;
      float* fk = fq + size_t(m) * Q;
      float* fv = fk + size_t(m) * KV;
      w4Linear(hbuf_ + size_t(c0) * H, m, L.q4, fq);
      w4Linear(hbuf_ + size_t(c0) * H, m, L.k4, fk);
      w4Linear(hbuf_ + size_t(c0) * H, m, L.v4, fv);
      cuda::QkvRopeArgs a;
      a.positions = dRowPos_ + c0;
      a.slots = dRowSlot_ + c0;
      a.invFreq = invFreq_;
      a.q = q_ + size_t(c0) * Q;
      a.kCache = kCache(l);
      a.vCache = vCache(l);
      a.numHeads = c_.numHeads;
      a.numKvHeads = c_.numKvHeads;
      a.headDim = c_.headDim;
      a.blockSize = opt_.blockSize;
      a.kvFp8 = kvFp8_;
      record(cuda::qkvRopeFromF32(fq, fk, fv, m, a, stream_));
    }
  }

  void gateUpSwigluW4(int l) {
    const DeviceLayer& L = layers_[l];
    const int H = c_.hiddenSize, I = c_.intermediateSize;
    for (int c0 = 0; c0 < rows_; c0 += w4Chunk()) {
      const int m = std::min(w4Chunk(), rows_ - c0);
      float* fg = w4Out_;
      float* fu = fg + size_t(m) * I;
      w4Linear(hbuf_ + size_t(c0) * H, m, L.gate4, fg);
      w4Linear(hbuf_ + size_t(c0) * H, m, L.up4, fu);
      record(cuda::swigluFromF32(fg, fu, int64_t(m) * I, act_ + size_t(c0) * I, stream_));
    }
  }

  // o_proj / down_proj of a W4 layer; x has K columns. One chunk (decode): the float32 output stays in
  // w4Out_ for the next norm; more: each chunk's bf16 output into delta_.
  void w4Residual(const uint16_t* x, int K, const cuda::W4Weight& w) {
    if (rows_ <= w4Chunk()) {
      pending_ = Pending::DeltaF32;
      return w4Linear(x, rows_, w, w4Out_);
    }
    pending_ = Pending::Delta;
    uint16_t* y = delta_;
    for (int c0 = 0; c0 < rows_; c0 += w4Chunk()) {
      const int m = std::min(w4Chunk(), rows_ - c0);
      w4Linear(x + size_t(c0) * K, m, w, w4Out_);
      record(cuda::f32ToBf16(w4Out_, int64_t(m) * w.N, y + size_t(c0) * w.N, stream_));
    }
  }

  void finalNormLmHead() override {
    normRows(finalNorm_, numOut_, lastH_, dOutRows_, false);
    record(cuda::gemvF32Out(lastH_, numOut_, lmHead_, dLogits_, stream_));
  }

  void sampleOp() {
    cuda::SamplingArgs a;
    a.logits = dLogits_;
    a.work = dWork_;
    a.params = dParams_;
    a.penaltyTokens = dPenalty_;
    a.tokens = dOutTokens_;
    a.logprobs = dOutLogprobs_;
    a.topIds = dTopIds_;
    a.topLogprobs = dTopLogprobs_;
    a.rows = numOut_;
    a.vocab = c_.vocabSize;
    record(cuda::sampleTokens(a, stream_));
  }

  static constexpr size_t kPinnedElems = size_t(32) << 20;  // 64 MiB of bf16 staging on the host

  EngineOptions opt_;
  ModelConfig c_;
  int numLayers_ = 0, maxRows_ = 0, maxOut_ = 0, maxModelLen_ = 0, numSMs_ = 1, numKvBlocks_ = 0;
  bool loaded_ = false;
  uint64_t weightBytes_ = 0, kvBytes_ = 0;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<WeightSource> src_;
  std::vector<void*> deviceAllocs_, hostAllocs_;
  std::map<int, cudaGraphExec_t> graphs_;
  cudaError_t err_ = cudaSuccess;

  // weights
  uint16_t* embed_ = nullptr;     // device table (--embedding-device gpu, or tied with a bf16 lm_head)
  bool embedOnHost_ = false;
  std::vector<uint16_t> hostEmbed_;  // host table otherwise
  uint16_t* hEmbedRows_ = nullptr;   // pinned: one step's gathered rows
  float* finalNorm_ = nullptr;
  float* invFreq_ = nullptr;
  LinearWeight lmHead_;
  std::vector<DeviceLayer> layers_;
  bool hasW4_ = false;
  bool kvFp8_ = false;
  float* w4Out_ = nullptr;
  float* w4Work_ = nullptr;
  uint16_t *staging_ = nullptr, *staging2_ = nullptr, *pinned_ = nullptr;
  int32_t* dOrder_ = nullptr;
  int64_t stagingElems_ = 0;

  // KV cache: per layer K then V, each [block][kvHead][blockSize][headDim]
  uint16_t* kv_ = nullptr;
  size_t kvLayerElems_ = 0;

  // workspace
  float* resid_ = nullptr;
  uint16_t *hbuf_ = nullptr, *delta_ = nullptr, *q_ = nullptr, *attnOut_ = nullptr, *act_ = nullptr, *lastH_ = nullptr;
  float *dLogits_ = nullptr, *dWork_ = nullptr, *partial_ = nullptr;
  int32_t *dRowToken_ = nullptr, *dRowPos_ = nullptr, *dRowSlot_ = nullptr, *dRowTable_ = nullptr, *dRowCtx_ = nullptr, *dOutRows_ = nullptr;
  int32_t *dTables_ = nullptr, *dPenalty_ = nullptr, *dOutTokens_ = nullptr, *dTopIds_ = nullptr;
  float *dOutLogprobs_ = nullptr, *dTopLogprobs_ = nullptr;
  cuda::DeviceSamplingParams* dParams_ = nullptr;
  int32_t *hRowToken_ = nullptr, *hRowPos_ = nullptr, *hRowSlot_ = nullptr, *hRowTable_ = nullptr, *hRowCtx_ = nullptr, *hOutRows_ = nullptr;
  int32_t *hTables_ = nullptr, *hPenalty_ = nullptr, *hOutTokens_ = nullptr, *hTopIds_ = nullptr;
  float *hOutLogprobs_ = nullptr, *hTopLogprobs_ = nullptr;
  cuda::DeviceSamplingParams* hParams_ = nullptr;
  size_t tableCap_ = 0, penaltyCap_ = 0;

  // per step
  StepPlan plan_;
  int rows_ = 0, numOut_ = 0, splits_ = 1;
  const int prefillMinRows_ = prefillGemmMinRows();
  int w4Chunk_ = kW4RowChunk;
  // The residual fusion (see addNorm). pending_: what the last o_proj / down_proj left for the next norm:
  // nothing (the embedding, or a norm wrote the residual back), its bf16 output in delta_, a W4 GEMV's
  // float32 output in w4Out_, or nothing because it added into resid_ itself and left the norm's partial
  // sums in normParts_. normFused_: the next QKV or gate/up GEMV normalizes on load.
  // SEVENTY_FUSED_NORM=0 turns the GEMV fusion off (a comparison for the benchmark).
  const bool fuseNormEnabled_ = [] {
    const char* v = std::getenv("SEVENTY_FUSED_NORM");
    return !(v && *v == '0');
  }();
  enum class Pending { Nothing, Delta, DeltaF32, InResidual } pending_ = Pending::Nothing;
  bool normFused_ = false;
  cuda::NormIn normArgs_;
  float* normParts_ = nullptr;
  cuda::SplitKWorkspace splitK_;
  bool prefillAttn_ = false;
  int numAttnTiles_ = 0;
  int32_t *dAttnTiles_ = nullptr, *hAttnTiles_ = nullptr;
};

}  // namespace

std::unique_ptr<Engine> makeCudaEngine(const EngineOptions& o) { return std::make_unique<CudaEngine>(o); }

}  // namespace seventy
