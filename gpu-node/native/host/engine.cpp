#include "engines.h"

namespace seventy {

ModelConfig llama70BConfig() {
  ModelConfig c;
  c.hiddenSize = 8192;
  c.intermediateSize = 28672;
  c.numLayers = 80;
  c.numHeads = 64;
  c.numKvHeads = 8;
  c.headDim = 128;
  c.vocabSize = 128256;
  c.rmsNormEps = 1e-5;
  c.ropeTheta = 500000;
  c.rope.llama3 = true;
  c.rope.factor = 8;
  c.rope.lowFreqFactor = 1;
  c.rope.highFreqFactor = 4;
  c.rope.originalMaxPositionEmbeddings = 8192;
  c.tieWordEmbeddings = false;
  return c;
}

const char* buildFlavor() {
#if SEVENTY_WITH_CUDA
  return "cuda";
#else
  return "cpu";
#endif
}

DeviceInfo probeDevice() {
#if SEVENTY_WITH_CUDA
  return probeCudaDevice();
#else
  DeviceInfo d;
  d.reason = "this build has no CUDA kernels (built with ENGINE_CUDA=OFF)";
  return d;
#endif
}

static Status checkConfig(const ModelConfig& c) {
  if (c.hiddenSize <= 0 || c.intermediateSize <= 0 || c.numLayers < 0 || c.numHeads <= 0 || c.numKvHeads <= 0 || c.headDim <= 0 ||
      c.vocabSize <= 0) {
    return errorStatus(kInvalidArgument, "model config: every size must be a positive integer");
  }
  if (c.numHeads % c.numKvHeads != 0) return errorStatus(kInvalidArgument, "model config: numKvHeads must divide numHeads");
  if (c.headDim % 2 != 0) return errorStatus(kInvalidArgument, "model config: headDim must be even for RoPE");
  return Status::Ok();
}

Status createEngine(const EngineOptions& o, std::unique_ptr<Engine>& out) {
  Status st = checkConfig(o.config);
  if (!st.ok()) return st;
  if (o.blockSize <= 0) return errorStatus(kInvalidArgument, "blockSize must be positive");
  if (o.backend == Backend::Cpu) {
    out = makeCpuEngine(o);
    return Status::Ok();
  }
#if SEVENTY_WITH_CUDA
  DeviceInfo d = probeCudaDevice();
  if (!d.usable) return errorStatus(kNoDevice, "no usable CUDA device: " + d.reason);
  out = makeCudaEngine(o);
  return Status::Ok();
#else
  return errorStatus(kUnsupported, "this build has no CUDA kernels (built with ENGINE_CUDA=OFF)");
#endif
}

}  // namespace seventy
