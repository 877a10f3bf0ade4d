import { readFile } from "node:fs/promises";
import { ModelDirError, describeValue } from "./errors.js";
import { parseQuantizationConfig } from "./quantization.js";
import type { CheckpointQuantization, Llama3RopeScaling, LlamaConfig } from "./types.js";

type Json = Record<string, unknown>;

/**
 * Checks a parsed Hugging Face `config.json` and returns its typed view. Anything this server cannot
 * run exactly (another architecture, a rope type other than llama3, biases, a quantization format
 * other than AutoAWQ GEMM 4-bit or compressed-tensors FP8) is refused here with a one-line `ModelDirError` naming `file` and the field, instead of failing
 * later inside the engine.
 *
 * Defaults follow transformers' `LlamaConfig` where a field is optional there. Both the classic
 * layout (`rope_theta` + `rope_scaling`) and transformers 5's `rope_parameters` are accepted.
 *
 * @example
 * const config = parseLlamaConfig(JSON.parse(await readFile(path, "utf8")), path);
 */
export function parseLlamaConfig(json: unknown, file: string): LlamaConfig {
  if (!isObject(json)) throw new ModelDirError(file, `expected a JSON object, got ${describeValue(json)}`);
  const f = new Fields(json, file);

  const architectures = json.architectures;
  if (architectures !== undefined && architectures !== null) {
    if (!Array.isArray(architectures) || !architectures.includes("LlamaForCausalLM")) {
      throw f.error("architectures", `${describeValue(architectures)} is not supported (supported: ["LlamaForCausalLM"])`);
    }
  } else if (json.model_type !== "llama") {
    throw f.error("architectures", `is missing and model_type is ${describeValue(json.model_type)} (expected "llama")`);
  }
  if (json.model_type !== undefined && json.model_type !== "llama") {
    throw f.error("model_type", `${describeValue(json.model_type)} is not supported (expected "llama")`);
  }
  for (const key of ["attention_bias", "mlp_bias"] as const) {
    const v = json[key];
    if (v !== undefined && v !== null && v !== false) throw f.error(key, `${describeValue(v)} is not supported (only false)`);
  }
  const act = json.hidden_act;
  if (act !== undefined && act !== "silu") throw f.error("hidden_act", `${describeValue(act)} is not supported (only "silu")`);
  const quantization = json.quantization_config === undefined || json.quantization_config === null ? null : parseQuantizationConfig(json.quantization_config, file);

  const hiddenSize = f.positiveInt("hidden_size");
  const intermediateSize = f.positiveInt("intermediate_size");
  const numHiddenLayers = f.positiveInt("num_hidden_layers");
  const numAttentionHeads = f.positiveInt("num_attention_heads");
  const numKeyValueHeads = f.positiveInt("num_key_value_heads", numAttentionHeads);
  const vocabSize = f.positiveInt("vocab_size");

  if (numAttentionHeads % numKeyValueHeads !== 0) {
    throw f.error("num_key_value_heads", `${numKeyValueHeads} does not divide num_attention_heads ${numAttentionHeads}`);
  }
  let headDim: number;
  if (json.head_dim === undefined || json.head_dim === null) {
    if (hiddenSize % numAttentionHeads !== 0) {
      throw f.error("num_attention_heads", `${numAttentionHeads} does not divide hidden_size ${hiddenSize} (and head_dim is not set)`);
    }
    headDim = hiddenSize / numAttentionHeads;
  } else {
    headDim = f.positiveInt("head_dim");
  }
  if (headDim % 2 !== 0) throw f.error("head_dim", `${headDim} is odd; rotary embeddings need an even head_dim`);

  const rmsNormEps = f.positiveNumber("rms_norm_eps", 1e-6);
  const maxPositionEmbeddings = f.positiveInt("max_position_embeddings", 2048);
  const tieWordEmbeddings = f.boolean("tie_word_embeddings", false);

  // transformers >= 5 writes rope_parameters {rope_type, rope_theta, ...}; older ones rope_theta + rope_scaling.
  let ropeTheta: number;
  let ropeScaling: Llama3RopeScaling | null;
  if (json.rope_parameters !== undefined && json.rope_parameters !== null) {
    const rp = json.rope_parameters;
    if (!isObject(rp)) throw f.error("rope_parameters", `expected an object, got ${describeValue(rp)}`);
    ropeTheta = new Fields(rp, file, "rope_parameters.").positiveNumber("rope_theta", 10000);
    ropeScaling = parseRopeScaling(rp, file, "rope_parameters", maxPositionEmbeddings);
  } else {
    ropeTheta = f.positiveNumber("rope_theta", 10000);
    const rs = json.rope_scaling;
    if (rs === undefined || rs === null) ropeScaling = null;
    else if (!isObject(rs)) throw f.error("rope_scaling", `expected an object or null, got ${describeValue(rs)}`);
    else ropeScaling = parseRopeScaling(rs, file, "rope_scaling", maxPositionEmbeddings);
  }

  const bosTokenId = f.tokenId("bos_token_id", vocabSize);
  const eosTokenIds = parseEosTokenIds(json.eos_token_id, file, "eos_token_id", vocabSize);
  if (eosTokenIds === null) throw f.error("eos_token_id", "is missing");

  const dtype = json.torch_dtype ?? json.dtype ?? "float32";
  const dtypeField = json.torch_dtype !== undefined ? "torch_dtype" : "dtype";
  if (dtype !== "bfloat16" && dtype !== "float16" && dtype !== "float32") {
    throw f.error(dtypeField, `${describeValue(dtype)} is not supported (bfloat16, float16 or float32)`);
  }

  return {
    architecture: "LlamaForCausalLM",
    hiddenSize,
    intermediateSize,
    numHiddenLayers,
    numAttentionHeads,
    numKeyValueHeads,
    headDim,
    vocabSize,
    rmsNormEps,
    ropeTheta,
    ropeScaling,
    maxPositionEmbeddings,
    tieWordEmbeddings,
    bosTokenId,
    eosTokenIds,
    torchDtype: dtype,
    quantization,
  };
}

/** Reads and parses `<dir>/config.json` (or the given file). */
export async function readLlamaConfig(file: string): Promise<LlamaConfig> {
  return parseLlamaConfig(await readJsonFile(file), file);
}

/** Reads a JSON file; a missing file or bad JSON becomes a `ModelDirError` naming it. */
export async function readJsonFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ModelDirError(file, code === "ENOENT" ? "file not found" : `cannot read (${code ?? String(e)})`, { cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ModelDirError(file, `invalid JSON (${(e as Error).message})`, { cause: e });
  }
}

function parseRopeScaling(rs: Json, file: string, prefix: string, maxPositionEmbeddings: number): Llama3RopeScaling | null {
  const typeKey = rs.rope_type !== undefined ? "rope_type" : "type";
  const type = rs[typeKey];
  if (type === "default" && prefix === "rope_parameters") return null;
  if (type !== "llama3") {
    throw new ModelDirError(file, `${prefix}.${typeKey} ${describeValue(type)} is not supported (supported: "llama3", or ${prefix} null for plain RoPE)`, {
      field: `${prefix}.${typeKey}`,
    });
  }
  const f = new Fields(rs, file, `${prefix}.`);
  const factor = f.positiveNumber("factor");
  if (factor < 1) throw f.error("factor", `${factor} must be >= 1`);
  const lowFreqFactor = f.positiveNumber("low_freq_factor");
  const highFreqFactor = f.positiveNumber("high_freq_factor");
  if (!(highFreqFactor > lowFreqFactor)) {
    throw f.error("high_freq_factor", `${highFreqFactor} must be greater than low_freq_factor ${lowFreqFactor}`);
  }
  const originalMaxPositionEmbeddings = f.positiveInt("original_max_position_embeddings");
  if (originalMaxPositionEmbeddings > maxPositionEmbeddings) {
    throw f.error("original_max_position_embeddings", `${originalMaxPositionEmbeddings} exceeds max_position_embeddings ${maxPositionEmbeddings}`);
  }
  return { ropeType: "llama3", factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings };
}

/** eos_token_id as a number or a non-empty list of numbers; null when absent. */
export function parseEosTokenIds(v: unknown, file: string, field: string, vocabSize?: number): number[] | null {
  if (v === undefined || v === null) return null;
  const list = Array.isArray(v) ? v : [v];
  if (list.length === 0) throw new ModelDirError(file, `${field} is an empty list`, { field });
  for (const id of list) {
    if (!Number.isInteger(id) || (id as number) < 0 || (vocabSize !== undefined && (id as number) >= vocabSize)) {
      const range = vocabSize !== undefined ? ` in [0, ${vocabSize})` : "";
      throw new ModelDirError(file, `${field} ${describeValue(v)} must be a token id${range} or a list of them`, { field });
    }
  }
  return [...new Set(list as number[])];
}

export function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Typed access to one JSON object's fields, with errors that name `prefix + key`. */
class Fields {
  constructor(
    private readonly obj: Json,
    private readonly file: string,
    private readonly prefix = "",
  ) {}

  error(key: string, detail: string): ModelDirError {
    const field = this.prefix + key;
    return new ModelDirError(this.file, `${field} ${detail}`, { field });
  }

  private get(key: string, fallback: unknown): unknown {
    const v = this.obj[key];
    if (v === undefined || v === null) {
      if (fallback === undefined) throw this.error(key, "is missing");
      return fallback;
    }
    return v;
  }

  positiveInt(key: string, fallback?: number): number {
    const v = this.get(key, fallback);
    if (!Number.isSafeInteger(v) || (v as number) <= 0) throw this.error(key, `${describeValue(v)} must be a positive integer`);
    return v as number;
  }

  positiveNumber(key: string, fallback?: number): number {
    const v = this.get(key, fallback);
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) throw this.error(key, `${describeValue(v)} must be a positive number`);
    return v;
  }

  boolean(key: string, fallback?: boolean): boolean {
    const v = this.get(key, fallback);
    if (typeof v !== "boolean") throw this.error(key, `${describeValue(v)} must be true or false`);
    return v;
  }

  tokenId(key: string, vocabSize: number): number {
    const v = this.get(key, undefined);
    if (!Number.isInteger(v) || (v as number) < 0 || (v as number) >= vocabSize) {
      throw this.error(key, `${describeValue(v)} must be a token id in [0, ${vocabSize})`);
    }
    return v as number;
  }
}

/**
 * The inverse of `parseLlamaConfig`: a `config.json` object that transformers (4.4x and 5.x) loads
 * as LlamaForCausalLM. Used to write test models and 70B-shaped dummy configs.
 */
export function llamaConfigToJson(c: LlamaConfig): Record<string, unknown> {
  const rs = c.ropeScaling;
  return {
    architectures: ["LlamaForCausalLM"],
    attention_bias: false,
    attention_dropout: 0.0,
    bos_token_id: c.bosTokenId,
    eos_token_id: c.eosTokenIds.length === 1 ? c.eosTokenIds[0] : c.eosTokenIds,
    head_dim: c.headDim,
    hidden_act: "silu",
    hidden_size: c.hiddenSize,
    initializer_range: 0.02,
    intermediate_size: c.intermediateSize,
    max_position_embeddings: c.maxPositionEmbeddings,
    mlp_bias: false,
    model_type: "llama",
    num_attention_heads: c.numAttentionHeads,
    num_hidden_layers: c.numHiddenLayers,
    num_key_value_heads: c.numKeyValueHeads,
    pretraining_tp: 1,
    rms_norm_eps: c.rmsNormEps,
    rope_scaling:
      rs === null
        ? null
        : {
            factor: rs.factor,
            high_freq_factor: rs.highFreqFactor,
            low_freq_factor: rs.lowFreqFactor,
            original_max_position_embeddings: rs.originalMaxPositionEmbeddings,
            rope_type: "llama3",
          },
    rope_theta: c.ropeTheta,
    tie_word_embeddings: c.tieWordEmbeddings,
    torch_dtype: c.torchDtype,
    transformers_version: "4.45.0",
    use_cache: true,
    vocab_size: c.vocabSize,
    ...(c.quantization ? { quantization_config: quantizationConfigToJson(c.quantization) } : {}),
  };
}

/** `quantization_config` as AutoAWQ / llm-compressor write it. */
export function quantizationConfigToJson(q: CheckpointQuantization): Record<string, unknown> {
  if (q.method === "awq") {
    return { bits: q.bits, group_size: q.groupSize, modules_to_not_convert: q.modulesToNotConvert.length > 0 ? q.modulesToNotConvert : null, quant_method: "awq", version: "gemm", zero_point: true };
  }
  const float8 = (strategy: string, dynamic: boolean) => ({
    actorder: null,
    block_structure: null,
    dynamic,
    group_size: null,
    num_bits: 8,
    observer: dynamic ? null : "minmax",
    observer_kwargs: {},
    strategy,
    symmetric: true,
    type: "float",
  });
  return {
    config_groups: {
      group_0: {
        input_activations: float8("token", true), // FP8_DYNAMIC: activations quantized per token at run time
        output_activations: null,
        targets: ["Linear"],
        weights: float8(q.strategy, false),
      },
    },
    format: q.format,
    ignore: q.ignore,
    kv_cache_scheme: null,
    quant_method: "compressed-tensors",
    quantization_status: "compressed",
  };
}
