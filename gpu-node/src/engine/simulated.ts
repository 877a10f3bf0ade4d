import { validateStepBatch } from "./reference/validate.js";
import type { Engine, SampledToken, StepBatch, StepResult } from "./types.js";

/**
 * " The quick brown fox jumps over the lazy dog. It was a sunny day in town, and everyone went
 * outside." in Llama 3 token ids: ordinary text that detokenizes cleanly.
 */
export const DEFAULT_TOKEN_CYCLE: readonly number[] = [
  791, 4062, 14198, 39935, 35308, 927, 279, 16053, 5679, 13, 1102, 574, 264, 40798, 1938, 304, 6424, 11, 323, 5127,
  4024, 4994, 13,
];

export interface SimulatedEngineOptions {
  numKvBlocks: number;
  blockSize: number;
  /** Output token i of every sequence is tokenCycle[i % length]. Default: DEFAULT_TOKEN_CYCLE. */
  tokenCycle?: readonly number[];
  /** Each step waits this long (a stand-in for GPU time). Default 0: resolves without a timer. */
  stepDelayMs?: number;
  /** When set, output token `eosAfter` (0-based) is `eosTokenId`: a sequence ends after eosAfter tokens. */
  eosAfter?: number;
  /** Default 128009 (`<|eot_id|>`). */
  eosTokenId?: number;
  /** Token ids must be below this. Default 128256. */
  vocabSize?: number;
}

/**
 * An engine with no model, for serving benchmarks and scheduler tests: each sampled sequence gets
 * the next token of a fixed cycle, chosen by its outputIndex, so results are deterministic across
 * batching and preemption. It owns no KV memory but validates batches exactly as the reference
 * engine does, so a scheduler bug fails here too.
 *
 * @example
 * const engine = new SimulatedEngine({ numKvBlocks: 1024, blockSize: 16, eosAfter: 64, stepDelayMs: 20 });
 */
export class SimulatedEngine implements Engine {
  readonly kind = "simulated";
  readonly blockSize: number;
  readonly numKvBlocks: number;
  private readonly cycle: readonly number[];
  private readonly stepDelayMs: number;
  private readonly eosAfter: number | undefined;
  private readonly eosTokenId: number;
  private readonly vocabSize: number;
  private closed = false;

  constructor(opts: SimulatedEngineOptions) {
    if (!Number.isInteger(opts.blockSize) || opts.blockSize <= 0) throw new Error(`blockSize must be a positive integer, got ${opts.blockSize}`);
    if (!Number.isInteger(opts.numKvBlocks) || opts.numKvBlocks <= 0) {
      throw new Error(`numKvBlocks must be a positive integer, got ${opts.numKvBlocks}`);
    }
    this.blockSize = opts.blockSize;
    this.numKvBlocks = opts.numKvBlocks;
    this.cycle = opts.tokenCycle ?? DEFAULT_TOKEN_CYCLE;
    if (this.cycle.length === 0) throw new Error("tokenCycle must not be empty");
    this.stepDelayMs = opts.stepDelayMs ?? 0;
    this.eosAfter = opts.eosAfter;
    this.eosTokenId = opts.eosTokenId ?? 128009;
    this.vocabSize = opts.vocabSize ?? 128256;
  }

  async step(batch: StepBatch): Promise<StepResult> {
    if (this.closed) throw new Error("SimulatedEngine is closed");
    validateStepBatch(batch, { numKvBlocks: this.numKvBlocks, blockSize: this.blockSize, vocabSize: this.vocabSize });
    if (this.stepDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.stepDelayMs));
    if (batch.masksReady) await batch.masksReady;

    const sampled: SampledToken[] = [];
    for (const s of batch.seqs) {
      if (!s.sample) continue;
      const i = s.sample.outputIndex;
      let tokenId = this.eosAfter !== undefined && i >= this.eosAfter ? this.eosTokenId : this.cycle[i % this.cycle.length];
      if (s.sample.allowedTokens) tokenId = allowedTokenNear(s.sample.allowedTokens, tokenId, this.vocabSize, s.sample.params.seed + i);
      const entry: SampledToken = { seqId: s.seqId, tokenId };
      // The simulated model is certain of every token: probability 1.
      if (s.sample.params.logprobs >= 0) {
        entry.logprob = 0;
        entry.topLogprobs = s.sample.params.logprobs > 0 ? [{ tokenId, logprob: 0 }] : [];
      }
      sampled.push(entry);
    }
    return { sampled };
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/**
 * The simulated model's choice under a token mask: its own token when allowed, else the first
 * allowed token at or after a position picked by `salt` (so constrained outputs vary between
 * sequences, like a model's would). Costs one scan of the mask at most.
 */
function allowedTokenNear(allowed: Int32Array, preferred: number, vocab: number, salt: number): number {
  if (((allowed[preferred >> 5]! >>> (preferred & 31)) & 1) === 1) return preferred;
  const words = Math.ceil(vocab / 32);
  const start = (Math.imul(salt | 0, 0x9e3779b1) >>> 0) % words;
  for (let k = 0; k < words; k++) {
    const w = (start + k) % words;
    const bits = allowed[w]!;
    if (bits === 0) continue;
    const id = w * 32 + (31 - Math.clz32(bits & -bits));
    if (id < vocab) return id;
  }
  throw new Error("SimulatedEngine: allowedTokens allows no token");
}
