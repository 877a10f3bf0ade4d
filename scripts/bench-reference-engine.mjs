// Reference engine speed on the tiny model (vocab 128256 × hidden 64, 2 layers): ms per decode token
// at batch 1 and 32, next to a bare float32 GEMV of the lm_head's size measured in the same run
// (the lm_head is nearly all of a step, so the GEMV is the floor for plain JavaScript).
import { ReferenceEngine } from "../gpu-node/dist/engine/index.js";
import { ensureTinyModel, openModelDir } from "../gpu-node/dist/model/index.js";

const model = await openModelDir(await ensureTinyModel({ log: () => {} }));
const weights = await model.loadTensorsF32();
const { vocabSize, hiddenSize } = model.config;
const engine = new ReferenceEngine(model.config, weights, { numKvBlocks: 32 * 8, blockSize: 16 });
const greedy = { temperature: 0, topK: 0, topP: 1, minP: 0, presencePenalty: 0, frequencyPenalty: 0, repetitionPenalty: 1, seed: 0, logprobs: -1 };

function bareGemvMs(rows, reps) {
  const w = weights.get("lm_head.weight");
  const x = new Float32Array(hiddenSize).fill(0.01);
  const out = new Float32Array(vocabSize);
  const t0 = performance.now();
  for (let r = 0; r < reps * rows; r++) {
    for (let v = 0, o = 0; v < vocabSize; v++, o += hiddenSize) {
      let acc = 0;
      for (let k = 0; k < hiddenSize; k++) acc += w[o + k] * x[k];
      out[v] = acc;
    }
  }
  return (performance.now() - t0) / reps;
}

console.log("\nreference engine, tiny model, greedy decode (2-core machine; noisy)");
console.log("| batch | ms/step | ms/token | bare lm_head GEMV ms/step | engine / bare |");
console.log("|---:|---:|---:|---:|---:|");
for (const batch of [1, 32]) {
  const seqs = Array.from({ length: batch }, (_, i) => ({ seqId: i, blockTable: Array.from({ length: 8 }, (_, j) => i * 8 + j), len: 32 }));
  await engine.step({ seqs: seqs.map((s) => ({ seqId: s.seqId, tokenIds: Array.from({ length: 32 }, (_, t) => 1000 + t), startPos: 0, blockTable: s.blockTable, sample: null })) });
  const decode = () =>
    engine.step({ seqs: seqs.map((s) => ({ seqId: s.seqId, tokenIds: [42], startPos: s.len++, blockTable: s.blockTable, sample: { params: greedy, outputIndex: 0 } })) });
  await decode();
  const steps = batch === 1 ? 30 : 5;
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) await decode();
  const ms = (performance.now() - t0) / steps;
  const bare = bareGemvMs(batch, batch === 1 ? 30 : 3);
  console.log(`| ${batch} | ${ms.toFixed(2)} | ${(ms / batch).toFixed(2)} | ${bare.toFixed(2)} | ${(ms / bare).toFixed(2)}× |`);
}
await engine.close();
