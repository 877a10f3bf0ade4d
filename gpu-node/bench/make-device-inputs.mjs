// Prepares, on a machine with Node, what the GPU device check needs and cannot make there (it may
// have no Node): a tiny model directory, its manifest for engine_cli, prompts, and the TypeScript
// reference engine's greedy tokens and logits for them.
//
//   npm run build && node gpu-node/bench/make-device-inputs.mjs [outDir]
//
// outDir defaults to gpu-node/native/build/device-inputs (ignored by git; carry it to the GPU machine).
import { mkdir, rm, writeFile } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = resolve(here, "..", "dist");
const { makeTinyModel, listTensors, loadTensorsF32, readLlamaConfig } = await import(join(dist, "model", "index.js"));
const { ReferenceEngine } = await import(join(dist, "engine", "index.js"));

const out = resolve(process.argv[2] ?? join(here, "..", "native", "build", "device-inputs"));
const STEPS = 16;
/** Steps whose full logits are kept (the carried tree is size-limited): first, second, middle, last. */
const LOGIT_STEPS = [0, 1, 8, 15];
await mkdir(out, { recursive: true });
const dir = await makeTinyModel({ outDir: join(out, "tiny"), seed: 11, overwrite: true });
// The device loads weights only: drop the tokenizer (9 MB) from what travels.
await rm(join(dir, "tokenizer.json"), { force: true });
await rm(join(dir, "tokenizer_config.json"), { force: true });
const config = await readLlamaConfig(join(dir, "config.json"));
const tensors = await listTensors(dir);

// Manifest (see native/tests/engine_cli.cpp): files relative to the manifest.
const lines = [];
for (const key of ["hiddenSize", "intermediateSize", "numHiddenLayers", "numAttentionHeads", "numKeyValueHeads", "headDim", "vocabSize", "rmsNormEps", "ropeTheta"]) {
  lines.push(`config ${key} ${config[key]}`);
}
lines.push(`config tieWordEmbeddings ${config.tieWordEmbeddings ? 1 : 0}`);
const rs = config.ropeScaling;
lines.push(rs ? `rope llama3 ${rs.factor} ${rs.lowFreqFactor} ${rs.highFreqFactor} ${rs.originalMaxPositionEmbeddings}` : "rope none");
for (const t of tensors.values()) lines.push(`tensor ${t.name} ${t.dtype} ${relative(out, t.file)} ${t.offset} ${t.byteLength} ${t.shape.join(" ")}`);
await writeFile(join(out, "manifest.txt"), lines.join("\n") + "\n");

const prompts = [5, 23, 37].map((len, s) => Array.from({ length: len }, (_, i) => (i * 7919 + (s + 1) * 104729 + 13) % 128000));
await writeFile(join(out, "prompts.txt"), prompts.map((p) => p.join(" ")).join("\n") + "\n");

// Same schedule as engine_cli: every prompt prefilled in one step, then batched greedy decode.
const greedy = { temperature: 0, topK: 0, topP: 1, minP: 0, presencePenalty: 0, frequencyPenalty: 0, repetitionPenalty: 1, seed: 0, logprobs: -1 };
const engine = new ReferenceEngine(config, await loadTensorsF32(tensors), { numKvBlocks: 64, blockSize: 16 });
const gen = prompts.map(() => []);
const logits = [];
for (let step = 0; step < STEPS; step++) {
  const seqs = prompts.map((p, s) => ({
    seqId: 100 + s,
    tokenIds: step === 0 ? p : [gen[s].at(-1)],
    startPos: step === 0 ? 0 : p.length + gen[s].length - 1,
    blockTable: Array.from({ length: 4 }, (_, b) => 63 - (b * 3 + s)),
    sample: { params: greedy, outputIndex: gen[s].length },
    returnLogits: true,
  }));
  const { sampled } = await engine.step({ seqs });
  sampled.forEach((x, s) => {
    gen[s].push(x.tokenId);
    if (LOGIT_STEPS.includes(step)) logits.push(x.logits);
  });
}
const buf = Buffer.alloc(logits.length * config.vocabSize * 4);
logits.forEach((l, i) => Buffer.from(l.buffer, l.byteOffset, l.byteLength).copy(buf, i * config.vocabSize * 4));
await writeFile(join(out, "expected_logits.f32"), buf);
await writeFile(join(out, "expected_tokens.txt"), gen.map((g) => g.join(" ")).join("\n") + "\n");
await writeFile(join(out, "steps.txt"), `${STEPS}\n${LOGIT_STEPS.join(" ")}\n`);
console.log(`device inputs in ${out}: tiny model, manifest, ${prompts.length} prompts, ${STEPS} reference steps`);
