import type { TokenConstraint } from "../engine/types.js";
import type { FastGrammarMatcher } from "./xgrammar.js";

/**
 * One sequence's grammar state: an xgrammar matcher over the full vocabulary. Owns WebAssembly
 * memory, so whoever creates it calls `dispose()` when the sequence finishes.
 */
export class GrammarConstraint implements TokenConstraint {
  private disposed = false;

  constructor(
    private readonly matcher: FastGrammarMatcher,
    private readonly stopTokenIds: readonly number[],
  ) {}

  async fillNextTokenBitmask(bitmask: Int32Array): Promise<void> {
    if (this.disposed || this.matcher.isTerminated()) {
      // Finished (or ended after its stop token with ignore_eos): only a stop token may follow.
      bitmask.fill(0);
      for (const id of this.stopTokenIds) bitmask[id >> 5] = (bitmask[id >> 5] ?? 0) | (1 << (id & 31));
      return;
    }
    this.matcher.fillNextTokenBitmask(bitmask);
  }

  acceptToken(tokenId: number): boolean {
    if (this.disposed) return true; // the sequence was aborted while its step ran
    if (this.matcher.isTerminated()) return this.stopTokenIds.includes(tokenId);
    return this.matcher.acceptToken(tokenId);
  }

  /** Whether the output so far is a complete match (the grammar would accept a stop token now). */
  get terminated(): boolean {
    return !this.disposed && this.matcher.isTerminated();
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.matcher.dispose();
  }
}
