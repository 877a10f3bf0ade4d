import { describe, expect, it } from "vitest";
import { llamaConfigToJson, parseLlamaConfig } from "./config.js";
import { ModelDirError } from "./errors.js";
import { tinyLlamaConfig } from "./tiny-model.js";

const FILE = "/models/x/config.json";

/** The real Llama-3.1-Nemotron-70B-Instruct-HF config.json (transformers 4.44 layout). */
const NEMOTRON_70B = {
  architectures: ["LlamaForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 128000,
  eos_token_id: [128001, 128008, 128009],
  hidden_act: "silu",
  hidden_size: 8192,
  initializer_range: 0.02,
  intermediate_size: 28672,
  max_position_embeddings: 131072,
  mlp_bias: false,
  model_type: "llama",
  num_attention_heads: 64,
  num_hidden_layers: 80,
  num_key_value_heads: 8,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192, rope_type: "llama3" },
  rope_theta: 500000.0,
  tie_word_embeddings: false,
  torch_dtype: "bfloat16",
  transformers_version: "4.44.0",
  use_cache: true,
  vocab_size: 128256,
};

function parseWith(patch: Record<string, unknown>, remove: string[] = []): ReturnType<typeof parseLlamaConfig> {
  const json: Record<string, unknown> = { ...NEMOTRON_70B, ...patch };
  for (const k of remove) delete json[k];
  return parseLlamaConfig(json, FILE);
}

function errorOf(fn: () => unknown): ModelDirError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ModelDirError);
    return e as ModelDirError;
  }
  throw new Error("expected a ModelDirError");
}

describe("parseLlamaConfig", () => {
  it("parses the 70B config", () => {
    expect(parseWith({})).toEqual({
      architecture: "LlamaForCausalLM",
      hiddenSize: 8192,
      intermediateSize: 28672,
      numHiddenLayers: 80,
      numAttentionHeads: 64,
      numKeyValueHeads: 8,
      headDim: 128,
      vocabSize: 128256,
      rmsNormEps: 1e-5,
      ropeTheta: 500000,
      ropeScaling: { ropeType: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 },
      maxPositionEmbeddings: 131072,
      tieWordEmbeddings: false,
      bosTokenId: 128000,
      eosTokenIds: [128001, 128008, 128009],
      torchDtype: "bfloat16",
      quantization: null,
    });
  });

  it("accepts plain RoPE, a single eos id, explicit head_dim, the old `type` key and transformers 5's rope_parameters", () => {
    expect(parseWith({ rope_scaling: null }).ropeScaling).toBeNull();
    expect(parseWith({}, ["rope_scaling"]).ropeScaling).toBeNull();
    expect(parseWith({ eos_token_id: 128009 }).eosTokenIds).toEqual([128009]);
    expect(parseWith({ head_dim: 64 }).headDim).toBe(64);
    const { rope_type: _, ...rs } = NEMOTRON_70B.rope_scaling;
    expect(parseWith({ rope_scaling: { ...rs, type: "llama3" } }).ropeScaling?.factor).toBe(8);
    const v5 = parseWith({ rope_parameters: { ...NEMOTRON_70B.rope_scaling, rope_theta: 123 }, dtype: "bfloat16" }, ["rope_scaling", "rope_theta", "torch_dtype"]);
    expect(v5.ropeTheta).toBe(123);
    expect(v5.ropeScaling?.highFreqFactor).toBe(4);
    expect(parseWith({ rope_parameters: { rope_type: "default", rope_theta: 10000 } }, ["rope_scaling"]).ropeScaling).toBeNull();
  });

  it("round-trips the tiny config through llamaConfigToJson", () => {
    const c = tinyLlamaConfig();
    expect(parseLlamaConfig(llamaConfigToJson(c), FILE)).toEqual(c);
  });

  const bad: [string, Record<string, unknown>, string[], RegExp][] = [
    ["another architecture", { architectures: ["MistralForCausalLM"] }, [], /architectures \["MistralForCausalLM"\] is not supported/],
    ["another model_type", { model_type: "mistral" }, [], /model_type "mistral"/],
    ["yarn rope", { rope_scaling: { rope_type: "yarn", factor: 4 } }, [], /rope_scaling\.rope_type "yarn" is not supported/],
    ["linear rope (old key)", { rope_scaling: { type: "linear", factor: 2 } }, [], /rope_scaling\.type "linear" is not supported/],
    ["dynamic rope", { rope_scaling: { rope_type: "dynamic", factor: 2 } }, [], /rope_scaling\.rope_type "dynamic"/],
    ["llama3 rope without factor", { rope_scaling: { ...NEMOTRON_70B.rope_scaling, factor: undefined } }, [], /rope_scaling\.factor is missing/],
    ["llama3 rope with low >= high", { rope_scaling: { ...NEMOTRON_70B.rope_scaling, low_freq_factor: 4 } }, [], /rope_scaling\.high_freq_factor 4 must be greater than low_freq_factor 4/],
    ["rope_scaling not an object", { rope_scaling: "llama3" }, [], /rope_scaling expected an object or null/],
    ["heads not dividing hidden", { num_attention_heads: 48 }, [], /num_attention_heads 48 does not divide hidden_size 8192/],
    ["kv heads not dividing heads", { num_key_value_heads: 7 }, [], /num_key_value_heads 7 does not divide num_attention_heads 64/],
    ["missing hidden_size", {}, ["hidden_size"], /hidden_size is missing/],
    ["missing intermediate_size", {}, ["intermediate_size"], /intermediate_size is missing/],
    ["missing vocab_size", {}, ["vocab_size"], /vocab_size is missing/],
    ["missing eos", {}, ["eos_token_id"], /eos_token_id is missing/],
    ["missing bos", {}, ["bos_token_id"], /bos_token_id is missing/],
    ["string layer count", { num_hidden_layers: "80" }, [], /num_hidden_layers "80" must be a positive integer/],
    ["fractional hidden", { hidden_size: 8192.5 }, [], /hidden_size 8192.5 must be a positive integer/],
    ["negative eps", { rms_norm_eps: -1 }, [], /rms_norm_eps -1 must be a positive number/],
    ["eos out of range", { eos_token_id: [128001, 200000] }, [], /eos_token_id \[128001,200000\] must be a token id in \[0, 128256\)/],
    ["empty eos list", { eos_token_id: [] }, [], /eos_token_id is an empty list/],
    ["attention_bias", { attention_bias: true }, [], /attention_bias true is not supported/],
    ["mlp_bias", { mlp_bias: true }, [], /mlp_bias true is not supported/],
    ["gelu", { hidden_act: "gelu" }, [], /hidden_act "gelu" is not supported/],
    ["fp8 checkpoint", { quantization_config: { quant_method: "fbgemm_fp8" } }, [], /quantization_config\.quant_method "fbgemm_fp8" is not supported \(supported: "awq" GEMM 4-bit, "compressed-tensors" FP8/],
    ["odd head_dim", { head_dim: 63 }, [], /head_dim 63 is odd/],
    ["int8 dtype", { torch_dtype: "int8" }, [], /torch_dtype "int8" is not supported/],
  ];
  for (const [what, patch, remove, message] of bad) {
    it(`refuses ${what} with a one-line error naming the file and field`, () => {
      const e = errorOf(() => parseWith(patch, remove));
      expect(e.message).toMatch(message);
      expect(e.message.startsWith(`${FILE}: `)).toBe(true);
      expect(e.message).not.toContain("\n");
      expect(e.file).toBe(FILE);
    });
  }

  it("refuses non-objects", () => {
    expect(errorOf(() => parseLlamaConfig([1], FILE)).message).toBe(`${FILE}: expected a JSON object, got [1]`);
    expect(errorOf(() => parseLlamaConfig(null, FILE)).message).toContain("expected a JSON object");
  });
});
