// Tiny quantized checkpoints through the emulated CUDA engine (engine_cli_emu --backend cuda) against
// the TypeScript reference engine, which dequantizes them on load: prefill of three prompts and one
// batched decode step, same greedy tokens, logits within the bf16-activation tolerance of the bf16
// parity. Covers AutoAWQ GEMM int4 (gemv_w4.cu + w4_epilogues.cu) and compressed-tensors FP8 (e4m3 and
// scales as stored, gemv.cu). Needs `npm run build` (gpu-node/dist).
//
//   node gpu-node/native/tests/emulated-quant-parity.mjs <engine_cli_emu> <workDir>
import { mkdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import {
  logitsErr,
  PROMPTS,
  readNumberLines,
  REFERENCE_KV,
  runEngineCli,
  runReferenceSchedule,
  writeManifest,
  writePrompts,
} from "../../bench/engine-cli-reference.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const dist = resolve(here, "..", "..", "dist");
const { makeTinyModel, listTensors, readLlamaConfig } = await import(join(dist, "model", "index.js"));
const { ReferenceEngine } = await import(join(dist, "engine", "index.js"));
const { loadReferenceWeights } = await import(join(dist, "engine", "reference", "load-weights.js"));
const [cli, workArg] = process.argv.slice(2);
const work = resolve(workArg, "quant-parity");
mkdirSync(work, { recursive: true });

const STEPS = 2;
writePrompts(join(work, "prompts.txt"));

async function prepare(name, opts, refOpts = {}) {
  const dir = await makeTinyModel({ outDir: join(work, name), overwrite: true, ...opts });
  const config = await readLlamaConfig(join(dir, "config.json"));
  const tensors = await listTensors(dir);
  const manifest = join(work, `${name}.manifest.txt`);
  writeManifest(manifest, work, config, tensors);
  const weights = await loadReferenceWeights(config, tensors, { quantization: refOpts.quantization });
  const engine = new ReferenceEngine(config, weights, { ...REFERENCE_KV, kvCacheDtype: refOpts.kvCacheDtype });
  const { gen, logits } = await runReferenceSchedule(engine, PROMPTS, STEPS);
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
  runEngineCli(cli, ref.manifest, join(work, "prompts.txt"), STEPS, [...flags, "--tokens", tokFile, "--logits", logitFile]);
  const got = readNumberLines(tokFile);
  const lg = new Float32Array(readFileSync(logitFile).buffer.slice(0));
  let worst = 0;
  ref.logits.forEach((b, i) => {
    worst = Math.max(worst, logitsErr(lg.subarray(i * ref.vocab, (i + 1) * ref.vocab), b));
  });
  const same = got.every((g, s) => g.length === STEPS && g.every((t, i) => t === ref.gen[s][i]));
  // bf16 activations on the device against float32 in the reference, as the bf16 parity (5e-2).
  const pass = same && worst < 5e-2;
  ok &&= pass;
  console.log(`${pass ? "PASS" : "FAIL"} tiny ${label}, emulated CUDA engine vs TypeScript reference, ${STEPS} steps: tokens ${same ? "same" : "DIFFER"}, ` +
    `logits max err ${worst.toExponential(2)} (< 5e-2), ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}

process.exit(ok ? 0 : 1);
