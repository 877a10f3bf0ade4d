/**
 * The contract between the scheduler and an engine (reference TypeScript, native C++/CUDA, or the
 * simulated engine used by benchmarks). Plain data only, so the native addon can implement it unchanged.
 *
 * The scheduler owns the KV block tables; an engine owns the KV memory (`numKvBlocks` blocks of
 * `blockSize` token slots each, per layer) and executes one step: for every sequence in the batch
 * it computes (and writes to the paged KV cache) the tokens `tokenIds` at positions
 * `startPos .. startPos + tokenIds.length - 1`, attending to all earlier positions through
 * `blockTable`, and, when `sample` is set, samples the next token from the last position's logits.
 */

import type { MemoryPlan } from "./memory-plan.js";

export interface SamplingParams {
  /** 0 means greedy (argmax). */
  temperature: number;
  /** 0 disables. */
  topK: number;
  /** 1 disables. */
  topP: number;
  /** 0 disables. */
  minP: number;
  /** OpenAI semantics: subtract `presencePenalty` once for any token already generated. 0 disables. */
  presencePenalty: number;
  /** OpenAI semantics: subtract `frequencyPenalty * count` for generated tokens. 0 disables. */
  frequencyPenalty: number;
  /** HF/vLLM semantics over prompt and generated tokens: logit > 0 ? logit / p : logit * p. 1 disables. */
  repetitionPenalty: number;
  /**
   * Always set (the scheduler draws one when the user gave none). The random draw for output token i
   * is a pure function of (seed, i), so a seeded request is reproducible whatever else is in the batch
   * and across preemption.
   */
  seed: number;
  /** Number of top logprobs to return with each sampled token; -1 returns none, 0 only the chosen token's. */
  logprobs: number;
}

/**
 * A grammar that limits the next token (constrained decoding). The scheduler hands it to the engine
 * through `SampleRequest.constraint`; the ConstrainedEngine wrapper (structured/) turns it into the
 * plain `allowedTokens` bitmask the engines read, and advances it with the sampled token.
 */
export interface TokenConstraint {
  /** Writes the allowed next tokens into `bitmask`: bit (i & 31) of word i >> 5 set means token i may follow. */
  fillNextTokenBitmask(bitmask: Int32Array): Promise<void>;
  /**
   * Advances past the sampled token; false when the grammar rejects it. A grammar that runs
   * elsewhere may queue the token and return true: its next `fillNextTokenBitmask` then rejects.
   */
  acceptToken(tokenId: number): boolean;
}

export interface SampleRequest {
  params: SamplingParams;
  /**
   * Only tokens whose bit is set may be sampled (bit (i & 31) of word i >> 5), applied before any
   * sampling parameter, greedy included. Set by the ConstrainedEngine wrapper; engines that sample on
   * the node's thread must not read it before `StepBatch.masksReady` settles.
   */
  allowedTokens?: Int32Array;
  /** The grammar behind `allowedTokens`; consumed by the ConstrainedEngine wrapper, never sent to an engine. */
  constraint?: TokenConstraint;
  /** Index of the output token being sampled (0 for the first generated token). */
  outputIndex: number;
  /** Only needed when a penalty is active. */
  promptTokenIds?: readonly number[];
  outputTokenIds?: readonly number[];
}

export interface SeqStep {
  /** Stable id of the sequence while it lives in the scheduler. */
  seqId: number;
  /** Tokens to compute this step: a prefill chunk, or the last sampled token for a decode. */
  tokenIds: number[];
  /** Position of tokenIds[0]. Positions before it are already in the KV cache. */
  startPos: number;
  /** KV block ids covering positions [0, startPos + tokenIds.length). Position p lives in block blockTable[floor(p / blockSize)], slot p % blockSize. */
  blockTable: number[];
  /** null: no token is sampled (a prefill chunk that does not reach the end of the prompt). */
  sample: SampleRequest | null;
  /** Tests only: return the raw last-position logits. */
  returnLogits?: boolean;
  /**
   * Only for engines with `overlapsSteps`: the one token to compute is the token this sequence
   * sampled in the step called just before this one (which must have sampled it), not yet known when
   * the step was built; `tokenIds` holds a placeholder. Lets the scheduler enqueue step N+1 before
   * step N's tokens reach JavaScript.
   */
  tokenFromPreviousStep?: boolean;
}

export interface StepBatch {
  seqs: SeqStep[];
  /**
   * Set when some `allowedTokens` are still being computed (overlapping the forward pass): settles
   * when they are all written. Engines await it before sampling; it never crosses a thread.
   */
  masksReady?: Promise<void>;
}

export interface TopLogprob {
  tokenId: number;
  logprob: number;
}

export interface SampledToken {
  seqId: number;
  tokenId: number;
  /** log-softmax of the raw logits (before penalties and temperature) at tokenId, when logprobs >= 0. */
  logprob?: number;
  topLogprobs?: TopLogprob[];
  logits?: Float32Array;
}

/** Host time of one step on the engine's own thread (native engine), in microseconds. */
export interface StepHostTiming {
  /** From the step's arrival to its last launch: validation, plan, uploads (the embedding rows included). */
  prepareUs: number;
  /** From the sampled ids' arrival on the host to the step's result. */
  readbackUs: number;
}

export interface StepResult {
  /** One entry per sequence whose `sample` was set, in batch order. */
  sampled: SampledToken[];
  hostTiming?: StepHostTiming;
}

export interface Engine {
  /** "reference", "native-cuda", "native-cpu", "simulated" — shown in /health and logs. */
  readonly kind: string;
  readonly blockSize: number;
  readonly numKvBlocks: number;
  /** Where the device's memory goes (native engine on a GPU, or planned for `--device-memory`); absent otherwise. */
  readonly memoryPlan?: MemoryPlan;
  /**
   * Steps run in the order `step` is called, and a step may be called before the previous one has
   * settled: such an engine honours `SeqStep.tokenFromPreviousStep`. A failed step makes the next
   * step's previous tokens unavailable (that step fails too).
   */
  readonly overlapsSteps?: boolean;
  step(batch: StepBatch): Promise<StepResult>;
  close(): Promise<void>;
}
