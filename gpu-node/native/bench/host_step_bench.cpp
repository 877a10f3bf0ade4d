// The CUDA engine's host work per decode step (StepOutput::hostPrepareUs / hostReadbackUs) at the
// 70B's host-side shapes, under the CPU emulator: 64 sequences, block tables for 8k tokens of context
// (512 blocks each), a hidden size of 8192 (the embedding rows gathered on the host and uploaded:
// 1 MB per step), sampling parameters per row, graph replay. Everything the host does per step
// depends on those and not on the layers, so the model is otherwise minimal (1 layer, 1 head of 128,
// a 16-wide MLP, 256 tokens of vocabulary) to keep the emulated kernels cheap. The emulator's
// runtime calls cost less than the driver's (a cudaMemcpyAsync is a queue push here, a few µs on a
// GPU), so on a GPU add those: about 10 uploads and 2 read-backs per step.
//
//   host_step_bench_emu [--batch 64] [--ctx 8192] [--steps 8]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "seventy/engine.h"

using namespace seventy;

int main(int argc, char** argv) {
  int batch = 64, ctx = 8192, steps = 8;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (k == "--batch") batch = v;
    else if (k == "--ctx") ctx = v;
    else if (k == "--steps") steps = v;
  }
  EngineOptions o;
  o.config.hiddenSize = 8192;
  o.config.intermediateSize = 16;
  o.config.numLayers = 1;
  o.config.numHeads = 1;
  o.config.numKvHeads = 1;
  o.config.headDim = 128;
  o.config.vocabSize = 256;
  o.backend = Backend::Cuda;
  o.loadFormat = LoadFormat::Dummy;
  o.dummySeed = 1;
  o.maxNumSeqs = batch;
  o.maxNumBatchedTokens = std::max(batch, 64);
  o.maxModelLen = ctx + steps + 16;
  const int bps = (ctx + steps + 16 + 15) / 16;
  o.numKvBlocks = batch * bps;
  std::unique_ptr<Engine> e;
  Status st = createEngine(o, e);
  if (st.ok()) st = e->load(nullptr);
  if (!st.ok()) {
    std::fprintf(stderr, "engine: %s\n", st.message.c_str());
    return 1;
  }
  std::vector<double> prepare, readback;
  for (int i = 0; i < steps; i++) {
    StepInput in;
    for (int s = 0; s < batch; s++) {
      SeqInput q;
      q.seqId = s;
      q.tokenOffset = s;
      in.tokens.push_back((s * 7 + i) % 256);
      q.numTokens = 1;
      // The whole 8k table travels with the step; attention reads only the first positions, so the
      // emulated kernels stay cheap (the host's work does not depend on where the context ends).
      q.startPos = 15 + i;
      q.blockOffset = int(in.blockTables.size());
      q.numBlocks = bps;
      for (int b = 0; b < bps; b++) in.blockTables.push_back(s * bps + b);
      q.sample = true;
      q.sampling.temperature = 0.8;
      q.sampling.topP = 0.95;
      q.sampling.seed = s;
      q.sampling.outputIndex = i;
      in.seqs.push_back(q);
    }
    StepOutput out;
    st = e->step(in, out);
    if (!st.ok()) {
      std::fprintf(stderr, "step: %s\n", st.message.c_str());
      return 1;
    }
    if (i >= 2) {  // the first steps capture the graph
      prepare.push_back(out.hostPrepareUs);
      readback.push_back(out.hostReadbackUs);
    }
  }
  std::sort(prepare.begin(), prepare.end());
  std::sort(readback.begin(), readback.end());
  const double p = prepare[prepare.size() / 2], r = readback[readback.size() / 2];
  std::printf("host per decode step (emulated runtime), batch %d, %d-token tables, hidden 8192: prepare %.1f us, read-back %.1f us; "
              "%.2f-%.2f%% of a 20-25 ms 70B step\n",
              batch, ctx, p, r, 100 * (p + r) / 25000, 100 * (p + r) / 20000);
  std::printf("RESULT {\"kind\":\"host_step\",\"batch\":%d,\"ctx\":%d,\"prepare_us\":%.2f,\"readback_us\":%.2f}\n", batch, ctx, p, r);
  return 0;
}
