import type { MemoryPlan } from "../engine/memory-plan.js";
import type { Engine, SeqStep, StepBatch, StepResult, TokenConstraint } from "../engine/types.js";

/**
 * Wraps an engine so that sequences with a `sample.constraint` can only sample tokens their grammar
 * allows. Per step: the constrained sequences get an `allowedTokens` bitmask, the inner engine's
 * step starts (its forward pass runs on its own thread or timer), the masks are computed meanwhile
 * on the grammar threads (see GrammarCompiler), and `masksReady` tells the engine when it may
 * sample. Each grammar advances past its sampled token during the next step's forward pass (before
 * its next mask is computed), so neither cost sits between steps. Batches without constraints pass
 * through untouched.
 *
 * @example
 * const engine = new ConstrainedEngine(await createEngine(...), config.vocabSize);
 */
export class ConstrainedEngine implements Engine {
  readonly kind: string;
  readonly blockSize: number;
  readonly numKvBlocks: number;
  readonly memoryPlan?: MemoryPlan;
  readonly overlapsSteps?: boolean;
  private readonly words: number;
  /** Tokens sampled in the last step, accepted by their grammars during the next one. */
  private pending: Array<{ constraint: TokenConstraint; tokenId: number; seqId: number }> = [];
  /** One reusable mask per live grammar (a step completes before the next begins). */
  private readonly masks = new WeakMap<TokenConstraint, Int32Array>();

  constructor(
    readonly inner: Engine,
    readonly vocabSize: number,
  ) {
    this.kind = inner.kind;
    this.blockSize = inner.blockSize;
    this.numKvBlocks = inner.numKvBlocks;
    if (inner.memoryPlan) this.memoryPlan = inner.memoryPlan;
    // Overlapped steps never hold constrained sequences (the scheduler opts them out), and a step
    // without any passes straight through, so the inner engine's ordering holds.
    if (inner.overlapsSteps) this.overlapsSteps = true;
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
      let mask = this.masks.get(constraint);
      if (!mask) this.masks.set(constraint, (mask = new Int32Array(this.words)));
      const { constraint: _, ...sample } = s.sample!;
      seqs[i] = { ...s, sample: { ...sample, allowedTokens: mask } };
      constrained.push({ seqId: s.seqId, constraint, mask });
    }
    if (constrained.length === 0 && this.pending.length === 0) return this.inner.step(batch);

    let release!: () => void;
    let fail!: (e: unknown) => void;
    const masksReady = new Promise<void>((resolve, reject) => {
      release = resolve;
      fail = reject;
    });
    masksReady.catch(() => {}); // observed below; an engine that never awaits it must not leave it unhandled
    const stepping = this.inner.step(constrained.length > 0 ? { seqs, masksReady } : batch);
    stepping.catch(() => {});
    try {
      // While the engine runs its forward pass: advance every grammar past its previous token, then
      // compute the masks this step samples under. All are asked for at once: the grammar threads
      // compute them in parallel (one message per thread), and this thread is free meanwhile.
      this.acceptPending();
      await Promise.all(constrained.map((c) => c.constraint.fillNextTokenBitmask(c.mask)));
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
      if (tok) this.pending.push({ constraint: c.constraint, tokenId: tok.tokenId, seqId: c.seqId });
    }
    return result;
  }

  /**
   * Sampled tokens are accepted at the start of the next step, while its forward pass runs, rather
   * than between steps where the engine would wait for them. A grammar that rejects its token means
   * the engine sampled outside the mask: the step fails loudly.
   */
  private acceptPending(): void {
    const pending = this.pending;
    this.pending = [];
    for (const p of pending) {
      if (!p.constraint.acceptToken(p.tokenId)) {
        throw new Error(`constrained decoding: the engine sampled token ${p.tokenId}, which the grammar of seq ${p.seqId} does not allow`);
      }
    }
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
