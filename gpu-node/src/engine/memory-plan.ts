/**
 * Where one GPU's memory goes when the native CUDA engine serves a model: weights by kind, the
 * activation workspace, CUDA graphs and runtime, and the KV cache that fills the rest of
 * `gpuMemoryUtilization · deviceMemory`. One pure function (`planMemory`) is the source of truth:
 * the node prints it at startup, serves it in `/health`, sizes the engine's KV cache from it and
 * refuses to start a model that does not fit (`memoryPlanError`).
 *
 * The byte counts mirror what `gpu-node/native/host/cuda_engine.cu` allocates (`loadWeights`,
 * `allocWorkspace`, `allocKvCache`); a change there is a change here.
 *
 * vLLM sizes its KV cache the same way — the budget is `gpu_memory_utilization` × the total that
 * cudaMemGetInfo reports, and weights, non-torch memory (context, library workspaces) and the peak
 * activations go first (vllm-project/vllm#10511 shows its log) — but it measures the last two with a
 * profiling forward pass of max_num_batched_tokens, where this plan computes them from the engine's
 * allocations, so it can run before any weight is read. `deviceMemoryBytes` is therefore that CUDA
 * total, not nvidia-smi's (which is a few hundred MiB larger: 81,559 vs 81,089 MiB on an H100 80GB).
 *
 * @example
 * const plan = planMemory({ model: config, deviceMemoryBytes: 81089 * MiB, weights: "fp8", kvCacheDtype: "fp8", lmHeadDtype: "fp8" });
 * console.log(formatMemoryPlan(plan).join("\n"));
 * const err = memoryPlanError(plan); // null when it fits
 */

import { DEFAULT_MAX_NUM_BATCHED_TOKENS, DEFAULT_MAX_NUM_SEQS } from "../scheduler/scheduler.js";

/** The shape fields of a Llama config the plan needs (a `LlamaConfig` has them all). */
export interface PlanModelShape {
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  vocabSize: number;
  tieWordEmbeddings: boolean;
  maxPositionEmbeddings: number;
}

/**
 * How the decoder's linear layers are held on the device: bf16; e4m3 with one float32 scale per
 * output row (on-load quantization and compressed-tensors checkpoints alike); or AutoAWQ int4
 * (4-bit weights and zero points packed 8 to an int32, one fp16 scale per group of `groupSize` inputs).
 * The embedding and lm_head have their own choices (`PlanEmbeddingDevice`, `PlanLmHeadDtype`).
 */
export type PlanWeights = "bf16" | "fp8" | "awq-int4";
export type PlanKvCacheDtype = "bf16" | "fp8";
/**
 * Where the bf16 embedding table lives (`--embedding-device`). "host": in host memory; each step
 * gathers its rows there and uploads them (rows × hidden × 2 bytes), the same bf16 values, so the
 * logits are bit-identical and the table's bytes (2.1 GB for the 70B) go to the KV cache instead.
 * With tied embeddings and a bf16 lm_head the device holds the table anyway and the embedding reads it.
 */
export type PlanEmbeddingDevice = "gpu" | "host";
/** lm_head as the checkpoint has it ("auto": bf16), or e4m3 with one float32 scale per vocab row (`--lm-head-dtype fp8`). */
export type PlanLmHeadDtype = "auto" | "fp8";

export interface MemoryPlanInput {
  model: PlanModelShape;
  /** Total device memory in bytes (cudaMemGetInfo's total). */
  deviceMemoryBytes: number;
  weights: PlanWeights;
  kvCacheDtype: PlanKvCacheDtype;
  /** Default "host" (see `PlanEmbeddingDevice`). */
  embeddingDevice?: PlanEmbeddingDevice;
  /** Default "auto" (bf16). */
  lmHeadDtype?: PlanLmHeadDtype;
  /** Fraction of `deviceMemoryBytes` the engine may hold (default 0.9, as vLLM). */
  gpuMemoryUtilization?: number;
  /** Default: the scheduler's (256). */
  maxNumSeqs?: number;
  /** Default: the scheduler's (2048). */
  maxNumBatchedTokens?: number;
  /** Longest context a request may have; default: the model's, capped to what the KV cache holds. */
  maxModelLen?: number;
  /** KV tokens per block (default 16). */
  blockSize?: number;
  /** AWQ group size (default 128). */
  groupSize?: number;
  /**
   * The device's streaming multiprocessors, which size the decode attention's split-K workspace
   * (default 132: an H100 SXM or H200; an A100 has 108).
   */
  multiprocessors?: number;
}

export interface MemoryPlan {
  /** The inputs with defaults filled in. */
  input: Required<Omit<MemoryPlanInput, "maxModelLen">> & { maxModelLen: number | null };
  weights: {
    /** q/k/v/o/gate/up/down of every layer, in the chosen format (with scales / zero points). */
    linear: number;
    embedding: number;
    lmHead: number;
    norms: number;
    total: number;
  };
  /** Activations for maxNumBatchedTokens rows, logits and sampler scratch for maxNumSeqs rows, attention partials. */
  workspace: number;
  /** Captured decode graphs, the CUDA context and kernel modules, fragmentation. */
  cudaGraphs: number;
  /** gpuMemoryUtilization · deviceMemoryBytes. */
  budget: number;
  /** Bytes of the KV cache (whole blocks); 0 when nothing is left. */
  kvCache: number;
  kvBytesPerToken: number;
  kvBlocks: number;
  kvTokens: number;
  /** max-model-len in effect: the one asked for, or the model's capped to kvTokens. */
  maxModelLen: number;
  /** How many sequences of each context length fit at once (whole blocks each). */
  sequencesAt: { "2048": number; "8192": number; "32768": number };
  fits: boolean;
}

export const GiB = 1024 ** 3;
export const MiB = 1024 ** 2;

/** Decode graph buckets, the CUDA context and module data, allocator slack (the engine's reserve). */
export const CUDA_GRAPHS_RESERVE_BYTES = 512 * MiB;
/** The decode attention's split-K cap (`cuda::kMaxAttentionSplits`). */
const ATTENTION_MAX_SPLITS = 64;
/** Default `multiprocessors`: an H100 SXM and an H200 have 132. */
export const DEFAULT_MULTIPROCESSORS = 132;

/**
 * The decode attention's split rule (`cuda::attentionSplits` in kernels/kernels.h, mirrored): enough
 * (row, KV head, split) blocks to fill the GPU about 3 times over, at most 64 splits, one split above
 * `maxRows` (graph steps: no cap from the context, which only lowers the count).
 */
function attentionSplits(rows: number, numKvHeads: number, multiprocessors: number, maxRows: number): number {
  if (rows < 1 || rows > maxRows) return 1;
  const s = Math.ceil((3 * multiprocessors) / (rows * numKvHeads));
  return Math.max(1, Math.min(s, ATTENTION_MAX_SPLITS));
}

/**
 * The most rows × splits the rule gives any step of up to `maxRows` rows (0 when it never splits):
 * the split-K partials are sized for that many (row, split) pairs, `cuda::maxAttentionRowSplits`.
 * For the 70B (8 KV heads) on 132 SMs it is 98 (49 rows × 2 splits), not maxNumSeqs × 64.
 */
export function maxAttentionRowSplits(maxRows: number, numKvHeads: number, multiprocessors: number): number {
  let most = 0;
  for (let rows = 1; rows <= maxRows; rows++) {
    const s = attentionSplits(rows, numKvHeads, multiprocessors, maxRows);
    if (s > 1) most = Math.max(most, rows * s);
  }
  return most;
}
/** Top logprobs kept per sampled row on the device (`cuda::kMaxTopLogprobs`). */
const MAX_TOP_LOGPROBS = 20;
/** Rows per W4 GEMV pass (`kW4RowChunk`) and its split-K slices (`kW4Splits` in gemv_w4.cu). */
const W4_ROW_CHUNK = 64;
const W4_SPLITS = 4;
/** gemv.cu kMaxSplits: the split-K of o_proj / down_proj keeps 4 splits × 128 threads × 32 floats per 64 outputs. */
const GEMV_MAX_SPLITS = 4;
/** Penalty history buffer, ints (`penaltyCap_`). */
const PENALTY_CAP = 4 << 20;
/** sizeof(cuda::DeviceSamplingParams). */
const SAMPLING_PARAMS_BYTES = 64;

/** Bytes of the decoder's linear weights in one format. */
function linearBytes(m: PlanModelShape, format: PlanWeights, groupSize: number): number {
  const h = m.hiddenSize;
  const q = m.numAttentionHeads * m.headDim;
  const kv = m.numKeyValueHeads * m.headDim;
  const inter = m.intermediateSize;
  // [out, in] of q, k, v, o, gate, up, down.
  const mats: [number, number][] = [
    [q, h],
    [kv, h],
    [kv, h],
    [h, q],
    [inter, h],
    [inter, h],
    [h, inter],
  ];
  let perLayer = 0;
  for (const [out, inp] of mats) {
    if (format === "bf16") perLayer += out * inp * 2;
    else if (format === "fp8") perLayer += out * inp + out * 4;
    else {
      const groups = Math.ceil(inp / groupSize);
      // qweight: 4 bits per weight; qzeros: 4 bits per (group, out); scales: fp16 per (group, out).
      perLayer += (out * inp) / 2 + (groups * out) / 2 + groups * out * 2;
    }
  }
  return perLayer * m.numHiddenLayers;
}

/** KV bytes of one token across all layers (K and V). FP8 keeps one float scale per layer for K and V, outside the blocks. */
export function kvBytesPerToken(m: PlanModelShape, dtype: PlanKvCacheDtype): number {
  return m.numHiddenLayers * 2 * m.numKeyValueHeads * m.headDim * (dtype === "fp8" ? 1 : 2);
}

/** What `allocWorkspace` in cuda_engine.cu allocates on the device. */
function workspaceBytes(
  m: PlanModelShape,
  maxRows: number,
  maxOut: number,
  maxModelLen: number,
  blockSize: number,
  weights: PlanWeights,
  multiprocessors: number,
): number {
  const T = maxRows;
  const S = maxOut;
  const h = m.hiddenSize;
  const q = m.numAttentionHeads * m.headDim;
  const v = m.vocabSize;
  const tableCap = S * Math.ceil(maxModelLen / blockSize);
  const kv = m.numKeyValueHeads * m.headDim;
  // AWQ layers: float32 GEMV outputs of one row chunk and the split-K partials (+ one float of slack).
  const w4 =
    weights === "awq-int4"
      ? W4_ROW_CHUNK * Math.max(q + 2 * kv, 2 * m.intermediateSize, h) * 4 + W4_SPLITS * W4_ROW_CHUNK * Math.max(q, m.intermediateSize, h) * 4 + 4
      : 0;
  return (
    w4 +
    T * h * 4 + // residual stream, float32
    2 * T * h * 2 + // normed input, layer output (bf16)
    2 * T * q * 2 + // q, attention output (bf16)
    T * m.intermediateSize * 2 + // SwiGLU activation (bf16)
    S * h * 2 + // final hidden of the sampled rows
    2 * S * v * 4 + // logits and sampler scratch (float32)
    maxAttentionRowSplits(S, m.numKeyValueHeads, multiprocessors) * m.numAttentionHeads * (m.headDim + 2) * 4 + // split-K partials
    T * Math.ceil(h / 16) * 4 + // per-row partial sums of squares of the fused residual add + RMSNorm
    Math.ceil(h / 64) * (GEMV_MAX_SPLITS * 128 * 32 * 4 + 4) + // o_proj / down_proj split-K partials and counters
    5 * T * 4 + // per-row token, position, slot, table offset, context
    S * 4 * 3 + // sampled rows, tokens, logprobs
    tableCap * 4 +
    PENALTY_CAP * 4 +
    S * SAMPLING_PARAMS_BYTES +
    S * MAX_TOP_LOGPROBS * 8
  );
}

/**
 * The memory plan of one model on one device. Pure: the same input gives the same plan, with no
 * device access (the caller passes the device's total memory).
 */
export function planMemory(input: MemoryPlanInput): MemoryPlan {
  const m = input.model;
  const gpuMemoryUtilization = input.gpuMemoryUtilization ?? 0.9;
  const maxNumSeqs = input.maxNumSeqs ?? DEFAULT_MAX_NUM_SEQS;
  const maxNumBatchedTokens = input.maxNumBatchedTokens ?? DEFAULT_MAX_NUM_BATCHED_TOKENS;
  const blockSize = input.blockSize ?? 16;
  const groupSize = input.groupSize ?? 128;
  const embeddingDevice = input.embeddingDevice ?? "host";
  const lmHeadDtype = input.lmHeadDtype ?? "auto";
  const multiprocessors = input.multiprocessors ?? DEFAULT_MULTIPROCESSORS;
  if (embeddingDevice !== "gpu" && embeddingDevice !== "host") throw new RangeError(`embeddingDevice must be gpu or host, got ${String(embeddingDevice)}`);
  if (lmHeadDtype !== "auto" && lmHeadDtype !== "fp8") throw new RangeError(`lmHeadDtype must be auto or fp8, got ${String(lmHeadDtype)}`);
  if (!(gpuMemoryUtilization > 0 && gpuMemoryUtilization <= 1)) throw new RangeError(`gpuMemoryUtilization must be in (0, 1], got ${gpuMemoryUtilization}`);
  for (const [k, v] of Object.entries({ deviceMemoryBytes: input.deviceMemoryBytes, maxNumSeqs, maxNumBatchedTokens, blockSize, groupSize, multiprocessors })) {
    if (!Number.isSafeInteger(v) || v <= 0) throw new RangeError(`${k} must be a positive integer, got ${v}`);
  }
  if (input.maxModelLen !== undefined && (!Number.isSafeInteger(input.maxModelLen) || input.maxModelLen <= 0)) {
    throw new RangeError(`maxModelLen must be a positive integer, got ${input.maxModelLen}`);
  }

  const table = m.vocabSize * m.hiddenSize * 2;
  const linear = linearBytes(m, input.weights, groupSize);
  // A tied bf16 lm_head is the embedding table: counted once, under the embedding when it is on the device.
  const embedding = embeddingDevice === "gpu" ? table : 0;
  const lmHead = lmHeadDtype === "fp8" ? m.vocabSize * m.hiddenSize + m.vocabSize * 4 : m.tieWordEmbeddings && embeddingDevice === "gpu" ? 0 : table;
  const norms = (2 * m.numHiddenLayers + 1) * m.hiddenSize * 4;
  const weightsTotal = linear + embedding + lmHead + norms;

  const maxOut = Math.min(maxNumSeqs, maxNumBatchedTokens);
  // The workspace's block tables are sized by the longest context the engine accepts.
  const tableLen = input.maxModelLen ?? m.maxPositionEmbeddings;
  const workspace = workspaceBytes(m, maxNumBatchedTokens, maxOut, tableLen, blockSize, input.weights, multiprocessors);
  const cudaGraphs = CUDA_GRAPHS_RESERVE_BYTES;
  const budget = Math.floor(gpuMemoryUtilization * input.deviceMemoryBytes);

  const perToken = kvBytesPerToken(m, input.kvCacheDtype);
  const perBlock = perToken * blockSize;
  const left = budget - weightsTotal - workspace - cudaGraphs;
  const kvBlocks = left > 0 ? Math.floor(left / perBlock) : 0;
  const kvTokens = kvBlocks * blockSize;
  const maxModelLen = input.maxModelLen ?? Math.min(m.maxPositionEmbeddings, kvTokens);
  const seqs = (len: number) => Math.floor(kvBlocks / Math.ceil(len / blockSize));

  return {
    input: {
      model: m,
      deviceMemoryBytes: input.deviceMemoryBytes,
      weights: input.weights,
      kvCacheDtype: input.kvCacheDtype,
      embeddingDevice,
      lmHeadDtype,
      gpuMemoryUtilization,
      maxNumSeqs,
      maxNumBatchedTokens,
      maxModelLen: input.maxModelLen ?? null,
      blockSize,
      groupSize,
      multiprocessors,
    },
    weights: { linear, embedding, lmHead, norms, total: weightsTotal },
    workspace,
    cudaGraphs,
    budget,
    kvCache: kvBlocks * perBlock,
    kvBytesPerToken: perToken,
    kvBlocks,
    kvTokens,
    maxModelLen,
    sequencesAt: { "2048": seqs(2048), "8192": seqs(8192), "32768": seqs(32768) },
    fits: kvBlocks > 0 && kvTokens >= maxModelLen,
  };
}

/** Bytes as decimal gigabytes with two decimals ("72.69 GB"), the unit model cards and GPU names use. */
export function formatGB(bytes: number): string {
  return `${(bytes / 1e9).toFixed(2)} GB`;
}

const WEIGHT_NAMES: Record<PlanWeights, string> = { bf16: "bf16", fp8: "fp8 e4m3 + per-row scales", "awq-int4": "int4 AWQ" };

function embeddingText(p: MemoryPlan): string {
  if (p.input.embeddingDevice === "gpu") return `bf16 ${formatGB(p.weights.embedding)}`;
  const tiedOnDevice = p.input.model.tieWordEmbeddings && p.input.lmHeadDtype === "auto";
  return tiedOnDevice ? "shared with lm_head" : `in host memory (${formatGB(p.input.model.vocabSize * p.input.model.hiddenSize * 2)})`;
}

/** The plan as the lines printed at startup. */
export function formatMemoryPlan(p: MemoryPlan): string[] {
  const i = p.input;
  const w = p.weights;
  const n = (x: number) => x.toLocaleString("en-US");
  return [
    `memory plan: ${formatGB(i.deviceMemoryBytes)} device × ${i.gpuMemoryUtilization} = ${formatGB(p.budget)}`,
    `  weights ${formatGB(w.total)} (linear ${WEIGHT_NAMES[i.weights]} ${formatGB(w.linear)}, embedding ${embeddingText(p)}, lm_head ${i.lmHeadDtype === "fp8" ? "fp8" : "bf16"} ${formatGB(w.lmHead)}, norms ${formatGB(w.norms)})`,
    `  workspace ${formatGB(p.workspace)} (${n(i.maxNumBatchedTokens)} batched tokens, ${n(Math.min(i.maxNumSeqs, i.maxNumBatchedTokens))} sequences), CUDA graphs and runtime ${formatGB(p.cudaGraphs)}`,
    `  KV cache ${formatGB(p.kvCache)} ${i.kvCacheDtype}: ${n(p.kvTokens)} tokens (${n(p.kvBlocks)} blocks of ${i.blockSize}); sequences that fit: ${n(p.sequencesAt["2048"])} × 2k, ${n(p.sequencesAt["8192"])} × 8k, ${n(p.sequencesAt["32768"])} × 32k`,
  ];
}

/** The plan as /health serves it (snake_case, bytes as numbers). */
export function memoryPlanJson(p: MemoryPlan): Record<string, unknown> {
  return {
    device_memory_bytes: p.input.deviceMemoryBytes,
    gpu_memory_utilization: p.input.gpuMemoryUtilization,
    budget_bytes: p.budget,
    weights_format: p.input.weights,
    embedding_device: p.input.embeddingDevice,
    lm_head_dtype: p.input.lmHeadDtype,
    weights_bytes: { linear: p.weights.linear, embedding: p.weights.embedding, lm_head: p.weights.lmHead, norms: p.weights.norms, total: p.weights.total },
    workspace_bytes: p.workspace,
    cuda_graphs_bytes: p.cudaGraphs,
    kv_cache_dtype: p.input.kvCacheDtype,
    kv_cache_bytes: p.kvCache,
    kv_bytes_per_token: p.kvBytesPerToken,
    kv_blocks: p.kvBlocks,
    kv_tokens: p.kvTokens,
    max_model_len: p.maxModelLen,
    sequences_that_fit: { "2048": p.sequencesAt["2048"], "8192": p.sequencesAt["8192"], "32768": p.sequencesAt["32768"] },
  };
}

/**
 * null when the plan fits; otherwise one line that says why not and which flags would make it fit
 * (`--quantization fp8`, `--kv-cache-dtype fp8`, `--embedding-device host`, `--lm-head-dtype fp8`,
 * `--max-model-len N`, `--gpu-memory-utilization F`).
 */
export function memoryPlanError(p: MemoryPlan): string | null {
  if (p.fits) return null;
  const i = p.input;
  const fixed = p.weights.total + p.workspace + p.cudaGraphs;
  const why =
    p.kvBlocks === 0
      ? `weights ${formatGB(p.weights.total)} + workspace ${formatGB(p.workspace)} + CUDA graphs ${formatGB(p.cudaGraphs)} leave no room for a KV cache in ${formatGB(p.budget)} (${i.gpuMemoryUtilization} of ${formatGB(i.deviceMemoryBytes)})`
      : `the KV cache holds ${p.kvTokens.toLocaleString("en-US")} tokens, fewer than --max-model-len ${p.maxModelLen.toLocaleString("en-US")}`;
  const options: string[] = [];
  const rerun = (change: Partial<MemoryPlanInput>) => planMemory({ ...i, maxModelLen: i.maxModelLen ?? undefined, ...change });
  if (i.weights === "bf16") {
    const alt = rerun({ weights: "fp8" });
    if (alt.fits) options.push(`--quantization fp8 (${alt.kvTokens.toLocaleString("en-US")} KV tokens)`);
  }
  if (i.kvCacheDtype === "bf16") {
    const alt = rerun({ kvCacheDtype: "fp8" });
    if (alt.fits) options.push(`--kv-cache-dtype fp8 (${alt.kvTokens.toLocaleString("en-US")} KV tokens)`);
  }
  if (i.embeddingDevice === "gpu") {
    const alt = rerun({ embeddingDevice: "host" });
    if (alt.fits) options.push(`--embedding-device host (${alt.kvTokens.toLocaleString("en-US")} KV tokens)`);
  }
  if (i.lmHeadDtype === "auto") {
    const alt = rerun({ lmHeadDtype: "fp8" });
    if (alt.fits) options.push(`--lm-head-dtype fp8 (${alt.kvTokens.toLocaleString("en-US")} KV tokens)`);
  }
  if (p.kvTokens > 0) options.push(`--max-model-len ${p.kvTokens}`);
  // The utilization at which the asked-for context fits: fixed costs plus one max-length sequence.
  const wantTokens = i.maxModelLen ?? p.input.blockSize;
  const needed = fixed + Math.ceil(wantTokens / i.blockSize) * i.blockSize * p.kvBytesPerToken;
  const u = Math.ceil((needed / i.deviceMemoryBytes) * 100) / 100;
  if (u <= 1 && u > i.gpuMemoryUtilization) options.push(`--gpu-memory-utilization ${u}`);
  const fix = options.length > 0 ? `; would fit: ${options.join(", or ")}` : "; nothing fits on this device: use a smaller or quantized checkpoint";
  return `the model does not fit: ${why}${fix}`;
}
