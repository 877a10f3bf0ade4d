// What the tiny-model parity checks of engine_cli share (make-device-inputs.mjs for the GPU device check,
// native/tests/emulated-parity.mjs and emulated-quant-parity.mjs under the emulator): the prompts, the
// manifest engine_cli reads a model from, the TypeScript reference engine run in engine_cli's schedule,
// engine_cli's invocation, and the logits error both sides are held to.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { relative } from "node:path";

/** Three prompts of 5, 23 and 37 tokens: one partial KV block, and two that cross block edges. */
export const PROMPTS = [5, 23, 37].map((len, s) => Array.from({ length: len }, (_, i) => (i * 7919 + (s + 1) * 104729 + 13) % 128000));

/** Writes the prompts one per line, token ids separated by spaces (engine_cli's --prompts). */
export function writePrompts(file, prompts = PROMPTS) {
  writeFileSync(file, prompts.map((p) => p.join(" ")).join("\n") + "\n");
}

/** Writes engine_cli's manifest of a model (see native/tests/engine_cli.cpp): tensor files relative to the manifest. */
export function writeManifest(file, manifestDir, config, tensors) {
  const lines = [];
  for (const key of ["hiddenSize", "intermediateSize", "numHiddenLayers", "numAttentionHeads", "numKeyValueHeads", "headDim", "vocabSize", "rmsNormEps", "ropeTheta"]) {
    lines.push(`config ${key} ${config[key]}`);
  }
  lines.push(`config tieWordEmbeddings ${config.tieWordEmbeddings ? 1 : 0}`);
  const rs = config.ropeScaling;
  lines.push(rs ? `rope llama3 ${rs.factor} ${rs.lowFreqFactor} ${rs.highFreqFactor} ${rs.originalMaxPositionEmbeddings}` : "rope none");
  for (const t of tensors.values()) lines.push(`tensor ${t.name} ${t.dtype} ${relative(manifestDir, t.file)} ${t.offset} ${t.byteLength} ${t.shape.join(" ")}`);
  writeFileSync(file, lines.join("\n") + "\n");
}

/** The KV cache engine_cli gives the reference engine: 64 blocks of 16 tokens. */
export const REFERENCE_KV = { numKvBlocks: 64, blockSize: 16 };

const GREEDY = { temperature: 0, topK: 0, topP: 1, minP: 0, presencePenalty: 0, frequencyPenalty: 0, repetitionPenalty: 1, seed: 0, logprobs: -1 };

/**
 * Runs `engine` (a ReferenceEngine over REFERENCE_KV) in engine_cli's schedule: every prompt prefilled
 * in one step, then batched greedy decode, `steps` steps in all. Returns each sequence's tokens and, for
 * the steps `keepLogits(step)` picks, every sequence's logits (step-major).
 */
export async function runReferenceSchedule(engine, prompts, steps, keepLogits = () => true) {
  const gen = prompts.map(() => []);
  const logits = [];
  for (let step = 0; step < steps; step++) {
    const seqs = prompts.map((p, s) => ({
      seqId: 100 + s,
      tokenIds: step === 0 ? p : [gen[s].at(-1)],
      startPos: step === 0 ? 0 : p.length + gen[s].length - 1,
      blockTable: Array.from({ length: 4 }, (_, b) => 63 - (b * 3 + s)),
      sample: { params: GREEDY, outputIndex: gen[s].length },
      returnLogits: true,
    }));
    const { sampled } = await engine.step({ seqs });
    sampled.forEach((x, s) => {
      gen[s].push(x.tokenId);
      if (keepLogits(step)) logits.push(x.logits);
    });
  }
  return { gen, logits };
}

/** Runs engine_cli on the CUDA backend for `steps` steps; `args` adds flags (e.g. --quant, --tokens, --logits). */
export function runEngineCli(cli, manifest, prompts, steps, args) {
  execFileSync(cli, ["--manifest", manifest, "--prompts", prompts, "--steps", String(steps), "--backend", "cuda", ...args], {
    stdio: ["ignore", "ignore", "inherit"],
  });
}

/** A text file of lines of whitespace-separated numbers (tokens.txt, steps.txt), blank lines dropped. */
export function readNumberLines(file) {
  return readFileSync(file, "utf8").split("\n").filter((l) => l.trim()).map((l) => l.trim().split(/\s+/).map(Number));
}

/** max |got − ref| / max |ref| over one sequence's logits; Infinity where `got` has a NaN (an unwritten output). */
export function logitsErr(got, ref) {
  let num = 0, den = 0;
  for (let v = 0; v < ref.length; v++) {
    const a = got[v];
    num = Number.isNaN(a) ? Infinity : Math.max(num, Math.abs(a - ref[v]));
    den = Math.max(den, Math.abs(ref[v]));
  }
  return num / den;
}
