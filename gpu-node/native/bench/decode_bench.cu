// decode_bench: 70B-shaped decode with dummy weights through the whole CUDA engine (graphs, sampling,
// the one host synchronization per step), next to the device's measured copy bandwidth.
//
//   decode_bench [--quant fp8|bf16] [--kv-cache-dtype auto|fp8] [--batches 1,8,32,64] [--ctx 1024] [--steps 20] [--layers N]
//
// For each batch size it loads as many of the 80 layers as fit next to that batch's KV cache (or
// --layers), plus a 1-layer engine, and reports the measured step time, the 80-layer step time
// projected from the two (fixed part + 80 · per-layer part; equal to the measurement when all 80
// fit), tokens/s, bytes read per step and their fraction of measured copy bandwidth.
// Each result is one line "RESULT {json}" for bench/device_report.py. With SEVENTY_PDL=0 in the
// environment the GEMVs launch without programmatic dependent launch (engine "seventy, no PDL"); with
// SEVENTY_FUSED_NORM=0 every residual add + RMSNorm is its own launch again ("seventy, unfused norm").
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "seventy/engine.h"

using namespace seventy;

struct Run {
  bool ok = false;
  std::string error;
  double stepMs = 0;
  // Medians of the engine thread's host work per step (StepOutput): plan + uploads + launch, and
  // the read-back after the sampled ids arrive. The GPU idles for both unless the next step overlaps.
  double prepareUs = 0, readbackUs = 0;
  uint64_t weightBytes = 0;
};

static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

static bool gKvFp8 = false;  // --kv-cache-dtype fp8: e4m3 K/V, half the KV bytes per token

// Median step time of `steps` decode steps of `batch` sequences at context `ctx` (greedy).
static Run timeDecode(const ModelConfig& c, bool fp8, int layers, int batch, int ctx, int steps) {
  Run run;
  EngineOptions o;
  o.config = c;
  o.backend = Backend::Cuda;
  o.loadFormat = LoadFormat::Dummy;
  o.dummySeed = 1;
  o.quantization = fp8 ? Quantization::Fp8 : Quantization::None;
  o.kvCacheDtype = gKvFp8 ? KvCacheDtype::Fp8 : KvCacheDtype::Auto;
  o.numLayersOverride = layers;
  o.maxNumSeqs = std::max(batch, 1);
  o.maxNumBatchedTokens = std::max(batch, 64);
  o.maxModelLen = ctx + steps + 16;
  const int bps = (ctx + steps + 8 + 15) / 16;
  o.numKvBlocks = batch * bps;
  std::unique_ptr<Engine> e;
  Status st = createEngine(o, e);
  if (st.ok()) st = e->load(nullptr);
  if (!st.ok()) {
    run.error = st.message;
    return run;
  }
  run.weightBytes = e->weightBytes();
  std::vector<double> ms, prepare, readback;
  for (int i = 0; i < steps + 3; i++) {
    StepInput in;
    for (int s = 0; s < batch; s++) {
      SeqInput q;
      q.seqId = s;
      q.tokenOffset = s;
      in.tokens.push_back(1000 + s);
      q.numTokens = 1;
      q.startPos = ctx - 1 + i;  // positions before it hold dummy K/V
      q.blockOffset = int(in.blockTables.size());
      q.numBlocks = bps;
      for (int b = 0; b < bps; b++) in.blockTables.push_back(s * bps + b);
      q.sample = true;
      q.sampling.outputIndex = i;
      in.seqs.push_back(q);
    }
    StepOutput out;
    const auto t0 = std::chrono::steady_clock::now();
    st = e->step(in, out);
    const auto t1 = std::chrono::steady_clock::now();
    if (!st.ok()) {
      run.error = st.message;
      return run;
    }
    if (i >= 3) {  // the first steps capture graphs
      ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      prepare.push_back(out.hostPrepareUs);
      readback.push_back(out.hostReadbackUs);
    }
  }
  run.stepMs = median(ms);
  run.prepareUs = median(prepare);
  run.readbackUs = median(readback);
  run.ok = true;
  return run;
}

int main(int argc, char** argv) {
  bool fp8 = true;
  std::vector<int> batches = {1, 8, 32, 64};
  int ctx = 1024, steps = 20, forcedLayers = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--quant") fp8 = v == "fp8";
    else if (k == "--kv-cache-dtype") gKvFp8 = v == "fp8";
    else if (k == "--ctx") ctx = std::atoi(v.c_str());
    else if (k == "--steps") steps = std::atoi(v.c_str());
    else if (k == "--layers") forcedLayers = std::atoi(v.c_str());
    else if (k == "--batches") {
      batches.clear();
      std::stringstream ss(v);
      std::string b;
      while (std::getline(ss, b, ',')) batches.push_back(std::atoi(b.c_str()));
    }
  }
  DeviceInfo d = probeDevice();
  if (!d.usable) {
    std::printf("no usable CUDA device: %s\n", d.reason.c_str());
    return 1;
  }
  const double copyBw = copyBandwidth();
  std::printf("device %s, %.1f GiB, copy bandwidth %.2f TB/s (read + write)\n", d.name.c_str(), d.totalMemory / 1073741824.0, copyBw / 1e12);
  std::printf("RESULT {\"kind\":\"copy\",\"device\":\"%s\",\"copy_tbps\":%.4f}\n", d.name.c_str(), copyBw / 1e12);

  const ModelConfig c = llama70BConfig();
  const double H = c.hiddenSize, I = c.intermediateSize, V = c.vocabSize;
  const double qkv = double(c.numHeads + 2 * c.numKvHeads) * c.headDim;
  const double paramsPerLayer = H * qkv + H * c.numHeads * c.headDim + 2 * I * H + I * H;
  const double bytesPerLayer = fp8 ? paramsPerLayer + (qkv + H + 2 * I + H) * 4 : 2 * paramsPerLayer;
  const double kvBytesPerTokenLayer = 2.0 * c.numKvHeads * c.headDim * (gKvFp8 ? 1 : 2);
  const double fixedBytes = V * H * 2 + 2 * H * 4 * 80;  // lm_head (bf16) + norms, read once per step

  const char* pdl = std::getenv("SEVENTY_PDL");
  const char* fused = std::getenv("SEVENTY_FUSED_NORM");
  const bool noPdl = pdl && *pdl == '0', unfused = fused && *fused == '0';
  const char* engine = noPdl ? (unfused ? "seventy, no PDL, unfused norm" : "seventy, no PDL") : unfused ? "seventy, unfused norm" : "seventy";
  for (int batch : batches) {
    // Layers that fit: weights + KV of this batch, within 88% of free memory after the fixed part.
    size_t freeB = 0, totalB = 0;
    cudaMemGetInfo(&freeB, &totalB);
    const double kvPerLayer = double(batch) * ((ctx + steps + 8 + 15) / 16) * 16 * kvBytesPerTokenLayer;
    const double fixedMem = 2 * V * H * 2 + 2.2e9 + 1e9;  // embeddings + lm_head, load staging, workspace
    int layers = forcedLayers > 0 ? forcedLayers : int((0.88 * double(freeB) - fixedMem) / (bytesPerLayer + kvPerLayer));
    layers = std::max(1, std::min(layers, c.numLayers));
    Run full = timeDecode(c, fp8, layers, batch, ctx, steps);
    const bool projected = layers < c.numLayers;
    Run one = projected && layers > 1 ? timeDecode(c, fp8, 1, batch, ctx, steps) : full;
    if (!full.ok || !one.ok) {
      std::printf("batch %d: FAILED: %s\n", batch, (full.ok ? one.error : full.error).c_str());
      std::printf("RESULT {\"kind\":\"decode\",\"engine\":\"%s\",\"batch\":%d,\"error\":\"failed\"}\n", engine, batch);
      continue;
    }
    const double perLayer = projected && layers > 1 ? (full.stepMs - one.stepMs) / (layers - 1) : full.stepMs / layers;
    const double fixedMs = projected && layers > 1 ? one.stepMs - perLayer : 0;
    const double step80 = projected ? fixedMs + c.numLayers * perLayer : full.stepMs;
    const double bytes80 = fixedBytes + c.numLayers * (bytesPerLayer + double(batch) * ctx * kvBytesPerTokenLayer);
    const double tbps = bytes80 / (step80 * 1e-3) / 1e12;
    std::printf("batch %2d: %2d layers run, step %.2f ms (1 layer: %.2f ms) -> 80 layers %.2f ms, %.1f tok/s, %.1f GB/step, %.2f TB/s = %.0f%% of copy\n",
                batch, layers, full.stepMs, one.stepMs, step80, batch * 1000.0 / step80, bytes80 / 1e9, tbps, 100 * tbps * 1e12 / copyBw);
    const double hostUs = full.prepareUs + full.readbackUs;
    std::printf("          host per step: prepare %.1f us + read-back %.1f us = %.2f%% of the 80-layer step (target < 5%%)\n", full.prepareUs,
                full.readbackUs, 100 * hostUs * 1e-3 / step80);
    std::printf(
        "RESULT {\"kind\":\"decode\",\"engine\":\"%s\",\"quant\":\"%s\",\"batch\":%d,\"ctx\":%d,\"layers_run\":%d,\"step_ms_run\":%.4f,"
        "\"step_ms_80\":%.4f,\"tok_s\":%.2f,\"gb_per_step\":%.3f,\"tbps\":%.4f,\"frac_copy\":%.4f,\"host_prepare_us\":%.2f,"
        "\"host_readback_us\":%.2f,\"frac_host\":%.5f}\n",
        engine, fp8 ? (gKvFp8 ? "fp8+kv8" : "fp8") : (gKvFp8 ? "bf16+kv8" : "bf16"), batch, ctx, layers, full.stepMs, step80, batch * 1000.0 / step80, bytes80 / 1e9, tbps, tbps * 1e12 / copyBw,
        full.prepareUs, full.readbackUs, hostUs * 1e-3 / step80);
    std::fflush(stdout);
  }
  return 0;
}
