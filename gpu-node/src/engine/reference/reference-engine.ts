import type { LlamaConfig } from "../../model/types.js";
import type { Engine, SampledToken, SeqStep, StepBatch, StepResult } from "../types.js";
import { sampleToken } from "../sampling.js";
import { pagedAttention, type PagedAttentionArgs } from "./attention.js";
import { PagedKvCache } from "./kv-cache.js";
import { linear } from "./matmul.js";
import { addInPlace, siluMul } from "./mlp.js";
import { rmsNorm } from "./rmsnorm.js";
import { applyRope, ropeCosSin, ropeInvFreq } from "./rope.js";
import { validateStepBatch } from "./validate.js";
import { resolveLlamaWeights, type LlamaWeights } from "./weights.js";

export interface ReferenceEngineOptions {
  numKvBlocks: number;
  /** Token slots per KV block. Default 16. */
  blockSize?: number;
  /** "fp8": K/V stored as e4m3 (scale 1), as the native engine's `--kv-cache-dtype fp8`. Default "auto" (float32 here). */
  kvCacheDtype?: "auto" | "fp8";
}

/**
 * A LlamaForCausalLM forward pass in plain float32 TypeScript on the CPU: the numerical reference
 * for the native engine and a way to serve tiny models without a GPU.
 *
 * One step runs every token of every sequence in the batch through each layer together
 * (rows = Σ tokenIds.length), so each weight is read once per step. Logits are computed only for
 * the last token of sequences that sample (or ask for `returnLogits`).
 *
 * `returnLogits` on a sequence without `sample` (tests only) adds an entry with `tokenId: -1`
 * carrying the logits, so a prefill chunk's last position can be inspected too.
 *
 * @example
 * const engine = new ReferenceEngine(config, weights, { numKvBlocks: 256 });
 * const { sampled } = await engine.step({ seqs: [{ seqId: 1, tokenIds: prompt, startPos: 0,
 *   blockTable: [0, 1], sample: { params, outputIndex: 0 } }] });
 */
export class ReferenceEngine implements Engine {
  readonly kind = "reference";
  readonly blockSize: number;
  readonly numKvBlocks: number;
  readonly config: LlamaConfig;
  private readonly w: LlamaWeights;
  private readonly invFreq: Float32Array;
  private cache: PagedKvCache | null;

  constructor(config: LlamaConfig, weights: ReadonlyMap<string, Float32Array>, opts: ReferenceEngineOptions) {
    const blockSize = opts.blockSize ?? 16;
    if (!Number.isInteger(blockSize) || blockSize <= 0) throw new Error(`blockSize must be a positive integer, got ${blockSize}`);
    if (!Number.isInteger(opts.numKvBlocks) || opts.numKvBlocks <= 0) {
      throw new Error(`numKvBlocks must be a positive integer, got ${opts.numKvBlocks}`);
    }
    this.config = config;
    this.w = resolveLlamaWeights(config, weights);
    this.blockSize = blockSize;
    this.numKvBlocks = opts.numKvBlocks;
    this.invFreq = ropeInvFreq(config.headDim, config.ropeTheta, config.ropeScaling);
    this.cache = new PagedKvCache(
      config.numHiddenLayers,
      opts.numKvBlocks,
      blockSize,
      config.numKeyValueHeads * config.headDim,
      opts.kvCacheDtype === "fp8" ? "fp8" : "float32",
    );
  }

  async step(batch: StepBatch): Promise<StepResult> {
    if (batch.masksReady) await batch.masksReady;
    return this.stepSync(batch);
  }

  /** `step` without the promise, for benchmarks and tests. */
  stepSync(batch: StepBatch): StepResult {
    const cache = this.cache;
    if (!cache) throw new Error("ReferenceEngine is closed");
    validateStepBatch(batch, { numKvBlocks: this.numKvBlocks, blockSize: this.blockSize, vocabSize: this.config.vocabSize });

    const outSeqs = batch.seqs.filter((s) => s.sample !== null || s.returnLogits === true);
    const logits = this.forward(batch.seqs, outSeqs, cache);
    const vocab = this.config.vocabSize;
    const sampled: SampledToken[] = [];
    outSeqs.forEach((s, i) => {
      const row = logits.subarray(i * vocab, (i + 1) * vocab);
      const entry: SampledToken = s.sample ? { seqId: s.seqId, ...sampleToken(row, s.sample) } : { seqId: s.seqId, tokenId: -1 };
      if (s.returnLogits) entry.logits = row.slice();
      sampled.push(entry);
    });
    return { sampled };
  }

  async close(): Promise<void> {
    this.cache = null;
  }

  /**
   * Runs all tokens of the batch through the model, writing their K/V into the cache, and returns
   * the logits [outSeqs.length, vocab] of each of `outSeqs`' last tokens.
   */
  private forward(seqs: readonly SeqStep[], outSeqs: readonly SeqStep[], cache: PagedKvCache): Float32Array {
    const c = this.config;
    const hidden = c.hiddenSize;
    const headDim = c.headDim;
    const half = headDim >> 1;
    const qDim = c.numAttentionHeads * headDim;
    const kvDim = c.numKeyValueHeads * headDim;
    const inter = c.intermediateSize;

    // Flatten the batch: row r is one token; rowSeq/rowPos/rowSlot say whose, where, and which cache slot.
    let rows = 0;
    let maxCtx = 0;
    for (const s of seqs) {
      rows += s.tokenIds.length;
      maxCtx = Math.max(maxCtx, s.startPos + s.tokenIds.length);
    }
    const rowSeq = new Int32Array(rows);
    const rowPos = new Int32Array(rows);
    const rowSlot = new Int32Array(rows);
    const x = new Float32Array(rows * hidden);
    const cos = new Float32Array(rows * half);
    const sin = new Float32Array(rows * half);
    const lastRow = new Map<SeqStep, number>();
    let r = 0;
    seqs.forEach((s, si) => {
      for (let t = 0; t < s.tokenIds.length; t++, r++) {
        const pos = s.startPos + t;
        rowSeq[r] = si;
        rowPos[r] = pos;
        rowSlot[r] = cache.slotOf(s.blockTable, pos);
        x.set(this.w.embedTokens.subarray(s.tokenIds[t] * hidden, (s.tokenIds[t] + 1) * hidden), r * hidden);
        ropeCosSin(this.invFreq, pos, cos, sin, r * half);
      }
      lastRow.set(s, r - 1);
    });

    const h = new Float32Array(rows * hidden);
    const q = new Float32Array(rows * qDim);
    const k = new Float32Array(rows * kvDim);
    const v = new Float32Array(rows * kvDim);
    const attn = new Float32Array(rows * qDim);
    const gate = new Float32Array(rows * inter);
    const up = new Float32Array(rows * inter);
    const attnArgs: PagedAttentionArgs = {
      keys: cache.keys[0],
      values: cache.values[0],
      blockTable: [],
      blockSize: this.blockSize,
      numHeads: c.numAttentionHeads,
      numKvHeads: c.numKeyValueHeads,
      headDim,
      scores: new Float64Array(maxCtx),
      acc: new Float64Array(headDim),
    };

    for (let l = 0; l < c.numHiddenLayers; l++) {
      const lw = this.w.layers[l];
      // attention block: h = norm(x); q,k,v = h·Wᵀ; rotate; cache K/V; attend; x += attn·Woᵀ
      rmsNorm(h, x, lw.inputNorm, rows, hidden, c.rmsNormEps);
      linear(q, h, rows, hidden, lw.qProj, qDim);
      linear(k, h, rows, hidden, lw.kProj, kvDim);
      linear(v, h, rows, hidden, lw.vProj, kvDim);
      for (let i = 0; i < rows; i++) {
        applyRope(q, i * qDim, c.numAttentionHeads, headDim, cos, sin, i * half);
        applyRope(k, i * kvDim, c.numKeyValueHeads, headDim, cos, sin, i * half);
        cache.write(l, rowSlot[i], k, v, i * kvDim);
      }
      // All of the step's K/V is written before any token attends, so a sequence may read blocks
      // that another sequence of the same step fills (a shared prefix).
      attnArgs.keys = cache.keys[l];
      attnArgs.values = cache.values[l];
      for (let i = 0; i < rows; i++) {
        attnArgs.blockTable = seqs[rowSeq[i]].blockTable;
        pagedAttention(attnArgs, q, i * qDim, rowPos[i], attn, i * qDim);
      }
      linear(h, attn, rows, qDim, lw.oProj, hidden);
      addInPlace(x, h, rows * hidden);

      // MLP block: x += down(silu(gate(norm(x))) · up(norm(x)))
      rmsNorm(h, x, lw.postNorm, rows, hidden, c.rmsNormEps);
      linear(gate, h, rows, hidden, lw.gateProj, inter);
      linear(up, h, rows, hidden, lw.upProj, inter);
      siluMul(gate, up, rows * inter);
      linear(h, gate, rows, inter, lw.downProj, hidden);
      addInPlace(x, h, rows * hidden);
    }

    // Final norm and lm_head, only for the rows whose logits are wanted.
    const m = outSeqs.length;
    const last = new Float32Array(m * hidden);
    outSeqs.forEach((s, i) => {
      const lr = lastRow.get(s) as number;
      last.set(x.subarray(lr * hidden, (lr + 1) * hidden), i * hidden);
    });
    rmsNorm(last, last, this.w.norm, m, hidden, c.rmsNormEps);
    const logits = new Float32Array(m * c.vocabSize);
    linear(logits, last, m, hidden, this.w.lmHead, c.vocabSize);
    return logits;
  }
}
