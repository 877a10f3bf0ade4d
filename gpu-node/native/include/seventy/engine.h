// The native engine's C++ API: what the N-API binding, the standalone tools and the tests call.
// No CUDA headers here: the same header serves the CPU flavor and the CUDA flavor.
//
// One engine executes one scheduler step at a time (see gpu-node/src/engine/types.ts, the contract this
// mirrors): for every sequence of the batch it computes the tokens at positions
// startPos .. startPos + numTokens - 1, writes their K/V into the paged cache through the sequence's
// block table, and, when asked, samples the next token from the last position's logits.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace seventy {

// Errors are returned, never thrown across the API and never turned into a process exit.
struct Status {
  int code = 0;  // 0 ok; otherwise a StatusCode
  std::string message;
  bool ok() const { return code == 0; }
  static Status Ok() { return {}; }
};

enum StatusCode : int {
  kInvalidArgument = 1,
  kIo = 2,
  kOutOfMemory = 3,
  kDevice = 4,       // a CUDA call failed
  kNoDevice = 5,     // no usable GPU / driver (the addon still loads and says why)
  kUnsupported = 6,
  kClosed = 7,
};

Status errorStatus(int code, std::string message);

struct RopeScaling {
  bool llama3 = false;  // false: plain RoPE
  double factor = 1, lowFreqFactor = 1, highFreqFactor = 4;
  double originalMaxPositionEmbeddings = 8192;
};

struct ModelConfig {
  int hiddenSize = 0;
  int intermediateSize = 0;
  int numLayers = 0;
  int numHeads = 0;
  int numKvHeads = 0;
  int headDim = 0;
  int vocabSize = 0;
  double rmsNormEps = 1e-5;
  double ropeTheta = 10000;
  RopeScaling rope;
  bool tieWordEmbeddings = false;
};

// Llama-3.1-70B's shape (the model we serve), for dummy weights and benchmarks.
ModelConfig llama70BConfig();

// F8E4M3: compressed-tensors FP8 weights (with a `<module>.weight_scale`); I32: AutoAWQ's packed
// `qweight` / `qzeros` (with fp16 `scales`). See gpu-node/src/model/quantization.ts for the formats.
enum class DType { BF16, F16, F32, F8E4M3, I32 };

// Where one tensor lives on disk: `byteLength` bytes at absolute `offset` of `file` (little-endian).
struct TensorSource {
  std::string name;
  DType dtype = DType::BF16;
  std::vector<int64_t> shape;
  std::string file;
  uint64_t offset = 0;
  uint64_t byteLength = 0;
};

enum class LoadFormat { Safetensors, Dummy };
enum class Quantization { None, Fp8 };  // Fp8: e4m3 weights with one float scale per output channel
// Fp8: K/V stored as e4m3 with a scale of 1 per layer (vLLM's --kv-cache-dtype fp8 without calibration).
enum class KvCacheDtype { Auto, Fp8 };
// Host: the CUDA engine keeps the bf16 embedding table in host memory and uploads each step's rows
// (the same values: the logits do not change); Gpu: the table is on the device. The CPU flavor holds
// everything in host memory either way.
enum class EmbeddingDevice { Host, Gpu };
// Fp8: lm_head quantized at load to e4m3 with one float scale per vocab row (half the bytes of bf16).
enum class LmHeadDtype { Auto, Fp8 };
enum class Backend { Cpu, Cuda };

struct EngineOptions {
  ModelConfig config;
  Backend backend = Backend::Cpu;
  LoadFormat loadFormat = LoadFormat::Safetensors;
  std::vector<TensorSource> tensors;  // LoadFormat::Safetensors
  uint64_t dummySeed = 0;             // LoadFormat::Dummy
  Quantization quantization = Quantization::None;  // on-load quantization of a float checkpoint
  KvCacheDtype kvCacheDtype = KvCacheDtype::Auto;
  EmbeddingDevice embeddingDevice = EmbeddingDevice::Host;
  LmHeadDtype lmHeadDtype = LmHeadDtype::Auto;
  int blockSize = 16;
  int numKvBlocks = 0;                    // 0: size the cache from free memory (CUDA) — required on the CPU
  double gpuMemoryUtilization = 0.9;      // fraction of the device's total memory the engine may hold
  int maxNumSeqs = 256;                   // largest batch (sequences) one step may hold
  int maxNumBatchedTokens = 8192;         // largest number of tokens one step may compute
  int maxModelLen = 0;                    // longest context; 0: 131072 (sizes the attention split)
  bool cudaGraphs = true;                 // replay decode-only steps from captured graphs
  int numLayersOverride = 0;              // benchmarks: run only the first N layers (0: all)
};

struct LoadProgress {
  uint64_t bytesDone = 0;
  uint64_t bytesTotal = 0;
  std::string file;
};
using ProgressFn = std::function<void(const LoadProgress&)>;

// Doubles, as JavaScript numbers: a float temperature would change the seeded draws.
struct SamplingSpec {
  double temperature = 0;  // < 1e-5: greedy
  int topK = 0;            // 0 or -1: off
  double topP = 1;
  double minP = 0;
  double presencePenalty = 0;
  double frequencyPenalty = 0;
  double repetitionPenalty = 1;
  int64_t seed = 0;
  int64_t outputIndex = 0;
  int logprobs = -1;  // -1 none; 0 only the chosen token; n: top-n as well
};

// One sequence of a step. Offsets index the flat arrays of StepInput.
struct SeqInput {
  int seqId = 0;
  int tokenOffset = 0, numTokens = 0;
  int startPos = 0;
  int blockOffset = 0, numBlocks = 0;
  bool sample = false;
  bool returnLogits = false;
  // The one token is the one this sequence sampled in the previous step (the addon fills it in on
  // the engine thread before step() sees it; see SeqStep.tokenFromPreviousStep in types.ts).
  bool tokenFromPreviousStep = false;
  SamplingSpec sampling;
  // Penalty history: promptLen prompt ids then outputLen generated ids at penaltyOffset.
  int penaltyOffset = 0, promptLen = 0, outputLen = 0;
};

struct StepInput {
  std::vector<int32_t> tokens;
  std::vector<int32_t> blockTables;
  std::vector<int32_t> penaltyTokens;
  std::vector<SeqInput> seqs;
};

// One entry per sequence with sample or returnLogits set, in batch order.
struct SampledOutput {
  int seqId = 0;
  int tokenId = -1;       // -1: logits only (no sample)
  bool hasLogprob = false;
  double logprob = 0;
  std::vector<int32_t> topIds;
  std::vector<double> topLogprobs;
  std::vector<float> logits;  // returnLogits only
};

struct StepOutput {
  std::vector<SampledOutput> sampled;
  // Host time of the step on the engine's thread, in microseconds (-1: not measured, the CPU flavor):
  // from step() to the last launch (validation, plan, uploads), and from the sampled ids' arrival
  // on the host to the end of step() (read-back into `sampled`).
  double hostPrepareUs = -1, hostReadbackUs = -1;
};

struct DeviceInfo {
  bool usable = false;
  std::string reason;  // why not, when !usable
  std::string name;
  int computeCapability = 0;  // 90 for sm_90
  int multiprocessors = 0;
  uint64_t totalMemory = 0, freeMemory = 0;
};

class Engine {
 public:
  virtual ~Engine() = default;
  // "native-cpu" or "native-cuda".
  virtual const char* kind() const = 0;
  virtual int blockSize() const = 0;
  virtual int numKvBlocks() const = 0;
  // Reads (or makes) the weights and allocates the KV cache. Call once, before step().
  virtual Status load(const ProgressFn& progress) = 0;
  // Runs one step. Not thread safe: one step at a time, on the thread that owns the engine.
  virtual Status step(const StepInput& in, StepOutput& out) = 0;
  // Bytes of weights held (after quantization) and of KV cache.
  virtual uint64_t weightBytes() const = 0;
  virtual uint64_t kvCacheBytes() const = 0;
};

// "cpu" or "cuda": which kernels this library was built with. A CUDA build also has the CPU backend.
const char* buildFlavor();
// The CUDA device, or why there is none (always !usable in a CPU build). Never aborts.
DeviceInfo probeDevice();
Status createEngine(const EngineOptions& options, std::unique_ptr<Engine>& out);

// Checks a step against the engine's geometry before anything is written (block ids, slots, token ids).
Status validateStep(const StepInput& in, const ModelConfig& c, int numKvBlocks, int blockSize);

}  // namespace seventy
