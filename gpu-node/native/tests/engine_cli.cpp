// engine_cli: runs the engine on a model without Node, for parity checks on a GPU machine.
//
//   engine_cli --manifest M --prompts P --steps N [--backend cpu|cuda] [--quant fp8] [--kv-cache-dtype fp8] [--embedding-device host|gpu] [--lm-head-dtype auto|fp8] [--chunk C]
//              [--logits out.f32] [--tokens out.txt]
//
// M is a text manifest of the model (written by gpu-node/bench/make-device-inputs.mjs from the
// TypeScript model loader):   config <key> <value> | rope none | rope llama3 <factor> <low> <high> <orig>
//                             tensor <name> <BF16|F16|F32> <file> <offset> <byteLength> <dim0> [<dim1>]
// P has one prompt per line (token ids). All prompts run as one batch: prefill (in chunks of C tokens
// when --chunk is given: earlier chunks sample nothing), then N-1 batched greedy decode steps. It
// prints each sequence's generated ids and writes every sampled step's logits as float32
// [step][seq][vocab] to --logits.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "seventy/engine.h"

using namespace seventy;

static bool readManifest(const std::string& path, ModelConfig& c, std::vector<TensorSource>& tensors, std::string& err) {
  std::ifstream f(path);
  if (!f) {
    err = "cannot open " + path;
    return false;
  }
  std::string line;
  while (std::getline(f, line)) {
    std::istringstream ss(line);
    std::string kind;
    if (!(ss >> kind)) continue;
    if (kind == "config") {
      std::string key;
      double v;
      ss >> key >> v;
      if (key == "hiddenSize") c.hiddenSize = int(v);
      else if (key == "intermediateSize") c.intermediateSize = int(v);
      else if (key == "numHiddenLayers") c.numLayers = int(v);
      else if (key == "numAttentionHeads") c.numHeads = int(v);
      else if (key == "numKeyValueHeads") c.numKvHeads = int(v);
      else if (key == "headDim") c.headDim = int(v);
      else if (key == "vocabSize") c.vocabSize = int(v);
      else if (key == "rmsNormEps") c.rmsNormEps = v;
      else if (key == "ropeTheta") c.ropeTheta = v;
      else if (key == "tieWordEmbeddings") c.tieWordEmbeddings = v != 0;
    } else if (kind == "rope") {
      std::string type;
      ss >> type;
      if (type == "llama3") {
        c.rope.llama3 = true;
        ss >> c.rope.factor >> c.rope.lowFreqFactor >> c.rope.highFreqFactor >> c.rope.originalMaxPositionEmbeddings;
      }
    } else if (kind == "tensor") {
      TensorSource t;
      std::string dt;
      ss >> t.name >> dt >> t.file >> t.offset >> t.byteLength;
      // Relative files are relative to the manifest's directory (the manifest travels with the model).
      if (!t.file.empty() && t.file[0] != '/') {
        const size_t slash = path.find_last_of('/');
        if (slash != std::string::npos) t.file = path.substr(0, slash + 1) + t.file;
      }
      t.dtype = dt == "F32" ? DType::F32 : dt == "F16" ? DType::F16 : dt == "F8_E4M3" ? DType::F8E4M3 : dt == "I32" ? DType::I32 : DType::BF16;
      int64_t d;
      while (ss >> d) t.shape.push_back(d);
      tensors.push_back(t);
    }
  }
  return true;
}

int main(int argc, char** argv) {
  std::string manifest, promptsPath, logitsPath, tokensPath, backend = "cpu", quant = "none", kv = "auto", embeddingDevice = "host",
              lmHead = "auto";
  int steps = 8, chunk = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--manifest") manifest = v;
    else if (k == "--prompts") promptsPath = v;
    else if (k == "--steps") steps = std::atoi(v.c_str());
    else if (k == "--backend") backend = v;
    else if (k == "--quant") quant = v;
    else if (k == "--kv-cache-dtype") kv = v;
    else if (k == "--embedding-device") embeddingDevice = v;
    else if (k == "--lm-head-dtype") lmHead = v;
    else if (k == "--chunk") chunk = std::atoi(v.c_str());
    else if (k == "--logits") logitsPath = v;
    else if (k == "--tokens") tokensPath = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (manifest.empty() || promptsPath.empty()) {
    std::fprintf(stderr, "usage: engine_cli --manifest M --prompts P [--steps N] [--backend cpu|cuda] [--quant fp8] [--kv-cache-dtype fp8] [--embedding-device host|gpu] [--lm-head-dtype auto|fp8] [--chunk C] [--logits F] [--tokens F]\n");
    return 2;
  }
  EngineOptions o;
  std::string err;
  if (!readManifest(manifest, o.config, o.tensors, err)) {
    std::fprintf(stderr, "%s\n", err.c_str());
    return 1;
  }
  std::vector<std::vector<int32_t>> prompts;
  {
    std::ifstream f(promptsPath);
    std::string line;
    while (std::getline(f, line)) {
      std::istringstream ss(line);
      std::vector<int32_t> p;
      int32_t t;
      while (ss >> t) p.push_back(t);
      if (!p.empty()) prompts.push_back(p);
    }
  }
  const int nseq = int(prompts.size());
  size_t maxLen = 0;
  for (auto& p : prompts) maxLen = std::max(maxLen, p.size() + size_t(steps));
  o.backend = backend == "cuda" ? Backend::Cuda : Backend::Cpu;
  o.quantization = quant == "fp8" ? Quantization::Fp8 : Quantization::None;
  o.kvCacheDtype = kv == "fp8" ? KvCacheDtype::Fp8 : KvCacheDtype::Auto;
  o.embeddingDevice = embeddingDevice == "gpu" ? EmbeddingDevice::Gpu : EmbeddingDevice::Host;
  o.lmHeadDtype = lmHead == "fp8" ? LmHeadDtype::Fp8 : LmHeadDtype::Auto;
  o.blockSize = 16;
  const int blocksPerSeq = int((maxLen + 15) / 16);
  o.numKvBlocks = nseq * blocksPerSeq + 3;
  o.maxModelLen = int(maxLen);

  std::printf("device: %s\n", probeDevice().usable ? probeDevice().name.c_str() : probeDevice().reason.c_str());
  std::unique_ptr<Engine> engine;
  Status st = createEngine(o, engine);
  if (st.ok()) st = engine->load(nullptr);
  if (!st.ok()) {
    std::fprintf(stderr, "engine: %s\n", st.message.c_str());
    return 1;
  }
  std::printf("engine: %s, %d KV blocks\n", engine->kind(), engine->numKvBlocks());

  // Sequence s owns blocks in descending order from the top, so block ids are neither 0-based nor contiguous with s.
  std::vector<std::vector<int32_t>> tables(nseq);
  for (int s = 0; s < nseq; s++)
    for (int b = 0; b < blocksPerSeq; b++) tables[s].push_back(o.numKvBlocks - 1 - (b * nseq + s));

  std::vector<std::vector<int32_t>> generated(nseq);
  std::vector<int> done(nseq, 0);  // prompt tokens computed
  FILE* logitsOut = logitsPath.empty() ? nullptr : std::fopen(logitsPath.c_str(), "wb");
  int sampledSteps = 0;
  while (sampledSteps < steps) {
    StepInput in;
    for (int s = 0; s < nseq; s++) {
      SeqInput q;
      q.seqId = 100 + s;
      q.tokenOffset = int(in.tokens.size());
      const int plen = int(prompts[s].size());
      if (done[s] < plen) {
        const int n = chunk > 0 ? std::min(chunk, plen - done[s]) : plen - done[s];
        for (int t = 0; t < n; t++) in.tokens.push_back(prompts[s][done[s] + t]);
        q.startPos = done[s];
        q.numTokens = n;
        q.sample = done[s] + n == plen;
      } else {
        in.tokens.push_back(generated[s].back());
        q.startPos = plen + int(generated[s].size()) - 1;
        q.numTokens = 1;
        q.sample = true;
      }
      q.returnLogits = q.sample;
      q.sampling.outputIndex = int64_t(generated[s].size());
      q.blockOffset = int(in.blockTables.size());
      q.numBlocks = blocksPerSeq;
      in.blockTables.insert(in.blockTables.end(), tables[s].begin(), tables[s].end());
      in.seqs.push_back(q);
    }
    StepOutput out;
    st = engine->step(in, out);
    if (!st.ok()) {
      std::fprintf(stderr, "step: %s\n", st.message.c_str());
      return 1;
    }
    for (int s = 0; s < nseq; s++)
      if (done[s] < int(prompts[s].size())) done[s] += in.seqs[s].numTokens;
    if (out.sampled.empty()) continue;  // a prefill chunk that sampled nothing (all prompts chunked alike)
    if (int(out.sampled.size()) != nseq) {
      std::fprintf(stderr, "prompts of different chunk counts are not supported by this tool\n");
      return 1;
    }
    for (int s = 0; s < nseq; s++) {
      generated[s].push_back(out.sampled[s].tokenId);
      if (logitsOut) std::fwrite(out.sampled[s].logits.data(), 4, out.sampled[s].logits.size(), logitsOut);
    }
    sampledSteps++;
  }
  if (logitsOut) std::fclose(logitsOut);
  std::ostringstream tok;
  for (int s = 0; s < nseq; s++) {
    for (size_t i = 0; i < generated[s].size(); i++) tok << (i ? " " : "") << generated[s][i];
    tok << "\n";
  }
  std::printf("%s", tok.str().c_str());
  if (!tokensPath.empty()) std::ofstream(tokensPath) << tok.str();
  return 0;
}
