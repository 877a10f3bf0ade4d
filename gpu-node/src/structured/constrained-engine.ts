import type { Engine, SeqStep, StepBatch, StepResult, TokenConstraint } from "../engine/types.js";

/**
 * Wraps an engine so that sequences with a `sample.constraint` can only sample tokens their grammar
 * allows. Per step: the constrained sequences get an `allowedTokens` bitmask, the inner engine's
 * step starts (its forward pass runs on its own thread or timer), the masks are computed meanwhile
 * on this thread, and `masksReady` tells the engine when it may sample. After the step each grammar
 * advances past its sampled token. Batches without constraints pass through untouched.
 *
 * @example
 * const engine = new ConstrainedEngine(await createEngine(...), config.vocabSize);
 */
export class ConstrainedEngine implements Engine {
  readonly kind: string;
  readonly blockSize: number;
  readonly numKvBlocks: number;
  private readonly words: number;
  /** Mask computation time per constrained token, for /metrics and the benchmark. */
  onMaskTime?: (seconds: number) => void;

  constructor(
    readonly inner: Engine,
    readonly vocabSize: number,
  ) {
    this.kind = inner.kind;
    this.blockSize = inner.blockSize;
    this.numKvBlocks = inner.numKvBlocks;
    this.words = Math.ceil(vocabSize / 32);
  }

  async step(batch: StepBatch): Promise<StepResult> {
    const constrained: Array<{ seqId: number; constraint: TokenConstraint; mask: Int32Array }> = [];
    let seqs: SeqStep[] = batch.seqs;
    for (let i = 0; i < batch.seqs.length; i++) {
      const s = batch.seqs[i]!;
      const constraint = s.sample?.constraint;
      if (!constraint) continue;
      if (seqs === batch.seqs) seqs = batch.seqs.slice();
      const mask = new Int32Array(this.words);
      const { constraint: _, ...sample } = s.sample!;
      seqs[i] = { ...s, sample: { ...sample, allowedTokens: mask } };
      constrained.push({ seqId: s.seqId, constraint, mask });
    }
    if (constrained.length === 0) return this.inner.step(batch);

    let release!: () => void;
    let fail!: (e: unknown) => void;
    const masksReady = new Promise<void>((resolve, reject) => {
      release = resolve;
      fail = reject;
    });
    masksReady.catch(() => {}); // observed below; an engine that never awaits it must not leave it unhandled
    const stepping = this.inner.step({ seqs, masksReady });
    stepping.catch(() => {});
    try {
      for (const c of constrained) {
        const t0 = performance.now();
        await c.constraint.fillNextTokenBitmask(c.mask);
        this.onMaskTime?.((performance.now() - t0) / 1000);
      }
      release();
    } catch (err) {
      fail(err);
      await stepping.catch(() => {});
      throw err;
    }
    const result = await stepping;
    const byId = new Map(result.sampled.map((t) => [t.seqId, t]));
    for (const c of constrained) {
      const tok = byId.get(c.seqId);
      if (tok && !c.constraint.acceptToken(tok.tokenId)) {
        throw new Error(`constrained decoding: the engine sampled token ${tok.tokenId}, which the grammar of seq ${c.seqId} does not allow`);
      }
    }
    return result;
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
