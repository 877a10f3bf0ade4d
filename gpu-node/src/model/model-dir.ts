import { stat } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { readLlamaConfig } from "./config.js";
import { ModelDirError } from "./errors.js";
import { readGenerationConfig } from "./generation-config.js";
import { LlamaTokenizer } from "./tokenizer.js";
import type { GenerationDefaults, LlamaConfig, ProgressCallback, TensorInfo } from "./types.js";
import { listTensors, loadTensorsF32, validateLlamaTensors } from "./weights.js";

export interface ModelDir {
  /** Absolute path. */
  dir: string;
  /** Served model name: the directory's basename unless overridden. */
  modelName: string;
  config: LlamaConfig;
  generation: GenerationDefaults;
  tokenizer: LlamaTokenizer;
  /** Every tensor in the checkpoint (headers only; nothing loaded). */
  tensors: Map<string, TensorInfo>;
  /** Reads tensors as float32 (all, or `names`), reporting to `onProgress` (default: openModelDir's). */
  loadTensorsF32(names?: Iterable<string>, onProgress?: ProgressCallback): Promise<Map<string, Float32Array>>;
}

export interface OpenModelDirOptions {
  modelName?: string;
  /** Default progress callback for `loadTensorsF32`. */
  onProgress?: ProgressCallback;
  /** Reuse an already loaded tokenizer (e.g. in tests) instead of reading tokenizer.json again. */
  tokenizer?: LlamaTokenizer;
}

/**
 * Opens a Hugging Face model directory and validates everything that can be checked without
 * reading weights: config.json, generation_config.json, the tokenizer, every safetensors header,
 * the shard index, and that every tensor the config implies is there with the right shape.
 * Any problem is a one-line `ModelDirError` naming the file.
 *
 * @example
 * const model = await openModelDir("/models/Llama-3.1-Nemotron-70B-Instruct-HF");
 * console.log(model.modelName, model.config.numHiddenLayers, model.tensors.size);
 */
export async function openModelDir(dirArg: string, options: OpenModelDirOptions = {}): Promise<ModelDir> {
  const dir = resolve(dirArg);
  let isDir = false;
  try {
    isDir = (await stat(dir)).isDirectory();
  } catch (e) {
    throw new ModelDirError(dir, "model directory not found", { cause: e });
  }
  if (!isDir) throw new ModelDirError(dir, "is not a directory (expected a Hugging Face model directory)");

  const config = await readLlamaConfig(join(dir, "config.json"));
  const generation = await readGenerationConfig(join(dir, "generation_config.json"), config);
  // Headers and tokenizer are independent; read them together.
  const [tensors, tokenizer] = await Promise.all([listTensors(dir), options.tokenizer ?? LlamaTokenizer.fromDir(dir)]);
  validateLlamaTensors(config, tensors, dir);

  if (tokenizer.vocabSize > config.vocabSize) {
    throw new ModelDirError(join(dir, "tokenizer.json"), `has ${tokenizer.vocabSize} tokens but config.json vocab_size is ${config.vocabSize}`);
  }
  if (tokenizer.bosTokenId !== undefined && tokenizer.bosTokenId !== config.bosTokenId) {
    throw new ModelDirError(join(dir, "tokenizer_config.json"), `bos_token ${tokenizer.bosToken} is id ${tokenizer.bosTokenId} but config.json bos_token_id is ${config.bosTokenId}`, { field: "bos_token" });
  }

  // Like vLLM: the tokenizer's eos_token stops generation too, even where the configs forgot it.
  if (tokenizer.eosTokenId !== undefined && !generation.eosTokenIds.includes(tokenizer.eosTokenId)) {
    generation.eosTokenIds.push(tokenizer.eosTokenId);
  }

  const defaultProgress = options.onProgress;
  return {
    dir,
    modelName: options.modelName ?? basename(dir),
    config,
    generation,
    tokenizer,
    tensors,
    loadTensorsF32: (names, onProgress) => loadTensorsF32(tensors, names, onProgress ?? defaultProgress),
  };
}
