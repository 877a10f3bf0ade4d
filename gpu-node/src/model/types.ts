/** Typed view of a Hugging Face `config.json` for LlamaForCausalLM (Llama 3.x). */
export interface Llama3RopeScaling {
  ropeType: "llama3";
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

export interface LlamaConfig {
  architecture: "LlamaForCausalLM";
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  /** hidden_size / num_attention_heads unless config.json sets head_dim. */
  headDim: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  /** null: plain RoPE (no scaling). */
  ropeScaling: Llama3RopeScaling | null;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  bosTokenId: number;
  /** From config.json's eos_token_id (number or list); generation_config.json may extend it. */
  eosTokenIds: number[];
  /** torch_dtype as written ("bfloat16", "float16", "float32"). */
  torchDtype: string;
  /** How the checkpoint's linear layers are stored (config.json's `quantization_config`); null: plain floats. */
  quantization: CheckpointQuantization | null;
}

/**
 * AutoAWQ "GEMM" 4-bit: per linear `qweight` int32 [in, out/8], `qzeros` int32 [in/groupSize, out/8],
 * `scales` fp16 [in/groupSize, out]; w = (q − z) · s.
 */
export interface AwqQuantization {
  method: "awq";
  bits: 4;
  groupSize: number;
  /** Modules kept in floats (`modules_to_not_convert`), matched as name substrings like AutoAWQ. */
  modulesToNotConvert: string[];
}

/**
 * compressed-tensors FP8 weights ("float-quantized"): per linear `weight` F8_E4M3 [out, in] and
 * `weight_scale` [out, 1] (channel) or [1] (tensor); w = q · scale. Activations stay 16-bit here.
 */
export interface CompressedTensorsFp8Quantization {
  method: "compressed-tensors";
  format: "float-quantized" | "naive-quantized";
  strategy: "channel" | "tensor";
  /** Modules left in floats (`ignore`): names or `re:` regular expressions. */
  ignore: string[];
}

export type CheckpointQuantization = AwqQuantization | CompressedTensorsFp8Quantization;

/** Floats the engines compute in, plus the packed dtypes of quantized checkpoints (FP8 weights, AWQ int32 packs). */
export type TensorDType = "BF16" | "F16" | "F32" | "F8_E4M3" | "I32";

/** Where one tensor lives on disk. Offsets are absolute byte offsets into `file`. */
export interface TensorInfo {
  name: string;
  dtype: TensorDType;
  shape: number[];
  file: string;
  offset: number;
  byteLength: number;
}

/** Defaults from `generation_config.json` (all optional in the file). */
export interface GenerationDefaults {
  eosTokenIds: number[];
  temperature?: number;
  topP?: number;
  topK?: number;
  repetitionPenalty?: number;
  maxNewTokens?: number;
  /** min_p, when the file sets it (vLLM reads it too). */
  minP?: number;
  /** HF do_sample as written; informational (servers, like vLLM, apply the sampling fields regardless). */
  doSample?: boolean;
}

/** Progress of a long load, for the CLI's bar. */
export interface LoadProgress {
  bytesDone: number;
  bytesTotal: number;
  file: string;
}
export type ProgressCallback = (p: LoadProgress) => void;
