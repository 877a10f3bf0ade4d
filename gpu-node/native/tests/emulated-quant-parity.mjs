// Tiny quantized checkpoints through the emulated CUDA engine (engine_cli_emu --backend cuda) against
// the TypeScript reference engine, which dequantizes them on load: prefill of three prompts and one
// batched decode step, same greedy tokens, logits within the bf16-activation tolerance of the bf16
// parity. Covers AutoAWQ GEMM int4 (gemv_w4.cu + w4_epilogues.cu) and compressed-tensors FP8 (e4m3 and
// scales as stored, gemv.cu). Needs `npm run build` (gpu-node/dist).
//
//   node gpu-node/native/tests/emulated-quant-parity.mjs <engine_cli_emu> <workDir>
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = resolve(here, "..", "..", "dist");
const { makeTinyModel, listTensors, readLlamaConfig } = await import(join(dist, "model", "index.js"));
const { ReferenceEngine } = await import(join(dist, "engine", "index.js"));
const { loadReferenceWeights } = await import(join(dist, "engine", "reference", "load-weights.js"));
const [cli, workArg] = process.argv.slice(2);
const work = resolve(workArg, "quant-parity");
mkdirSync(work, { recursive: true });

const STEPS = 2;
const prompts = [5, 23, 37].map((len, s) => Array.from({ length: len }, (_, i) => (i * 7919 + (s + 1) * 104729 + 13) % 128000));
writeFileSync(join(work, "prompts.txt"), prompts.map((p) => p.join(" ")).join("\n") + "\n");
const greedy = { temperature: 0, topK: 0, topP: 1, minP: 0, presencePenalty: 0, frequencyPenalty: 0, repetitionPenalty: 1, seed: 0, logprobs: -1 };

async function prepare(name, opts, refOpts = {}) {
  const dir = await makeTinyModel({ outDir: join(work, name), overwrite: true, ...opts });
  const config = await readLlamaConfig(join(dir, "config.json"));
  const tensors = await listTensors(dir);
  const lines = [];
  for (const key of ["hiddenSize", "intermediateSize", "numHiddenLayers", "numAttentionHeads", "numKeyValueHeads", "headDim", "vocabSize", "rmsNormEps", "ropeTheta"]) {
    lines.push(`config ${key} ${config[key]}`);
  }
  lines.push(`config tieWordEmbeddings ${config.tieWordEmbeddings ? 1 : 0}`);
  const rs = config.ropeScaling;
  lines.push(rs ? `rope llama3 ${rs.factor} ${rs.lowFreqFactor} ${rs.highFreqFactor} ${rs.originalMaxPositionEmbeddings}` : "rope none");
  for (const t of tensors.values()) lines.push(`tensor ${t.name} ${t.dtype} ${relative(work, t.file)} ${t.offset} ${t.byteLength} ${t.shape.join(" ")}`);
  const manifest = join(work, `${name}.manifest.txt`);
  writeFileSync(manifest, lines.join("\n") + "\n");
  // The reference: every prompt prefilled in one step, then batched greedy decode (engine_cli's schedule).
  const weights = await loadReferenceWeights(config, tensors, { quantization: refOpts.quantization });
  const engine = new ReferenceEngine(config, weights, { numKvBlocks: 64, blockSize: 16, kvCacheDtype: refOpts.kvCacheDtype });
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
      logits.push(x.logits);
    });
  }
  return { manifest, gen, logits, vocab: config.vocabSize };
}

let ok = true;
// [label, model name, makeTinyModel options, engine_cli flags, reference options]
const cases = [
  ["AutoAWQ GEMM int4", "awq", { quant: "awq", seed: 11 }, [], {}],
  ["compressed-tensors FP8, per-channel scales", "fp8", { quant: "fp8", seed: 12 }, [], {}],
  ["compressed-tensors FP8, per-tensor scales", "fp8-tensor", { quant: "fp8", fp8Strategy: "tensor", seed: 13 }, [], {}],
  ["bf16 quantized to FP8 at load", "bf16", { seed: 14 }, ["--quant", "fp8"], { quantization: "fp8" }],
  ["bf16 with an FP8 KV cache", "bf16", { seed: 14 }, ["--kv-cache-dtype", "fp8"], { kvCacheDtype: "fp8" }],
  ["AutoAWQ GEMM int4 with an FP8 KV cache", "awq", { quant: "awq", seed: 11 }, ["--kv-cache-dtype", "fp8"], { kvCacheDtype: "fp8" }],
];
for (const [label, name, opts, flags, refOpts] of cases) {
  const ref = await prepare(name, opts, refOpts);
  const tokFile = join(work, `${name}.tokens.txt`), logitFile = join(work, `${name}.f32`);
  const t0 = Date.now();
  execFileSync(cli, ["--manifest", ref.manifest, "--prompts", join(work, "prompts.txt"), "--steps", String(STEPS), "--backend", "cuda", ...flags, "--tokens", tokFile, "--logits", logitFile], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  const got = readFileSync(tokFile, "utf8").split("\n").filter((l) => l.trim()).map((l) => l.trim().split(/\s+/).map(Number));
  const lg = new Float32Array(readFileSync(logitFile).buffer.slice(0));
  let worst = 0;
  ref.logits.forEach((b, i) => {
    let num = 0, den = 0;
    for (let v = 0; v < ref.vocab; v++) {
      const a = lg[i * ref.vocab + v];
      num = Number.isNaN(a) ? Infinity : Math.max(num, Math.abs(a - b[v]));
      den = Math.max(den, Math.abs(b[v]));
    }
    worst = Math.max(worst, num / den);
  });
  const same = got.every((g, s) => g.length === STEPS && g.every((t, i) => t === ref.gen[s][i]));
  // bf16 activations on the device against float32 in the reference, as the bf16 parity (5e-2).
  const pass = same && worst < 5e-2;
  ok &&= pass;
  console.log(`${pass ? "PASS" : "FAIL"} tiny ${label}, emulated CUDA engine vs TypeScript reference, ${STEPS} steps: tokens ${same ? "same" : "DIFFER"}, ` +
    `logits max err ${worst.toExponential(2)} (< 5e-2), ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}

process.exit(ok ? 0 : 1);
