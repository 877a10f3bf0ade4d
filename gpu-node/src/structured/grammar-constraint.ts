import type { TokenConstraint } from "../engine/types.js";
import type { GrammarThread } from "./grammar-thread-handle.js";

/**
 * One sequence's grammar state: a handle on an xgrammar matcher that lives on a grammar thread.
 * Accepted tokens are sent along with the next mask request (one message per thread per step), so
 * a token the grammar rejects fails that request. Whoever creates it calls `dispose()` when the
 * sequence finishes.
 */
export class GrammarConstraint implements TokenConstraint {
  private disposed = false;
  private accepted: number[] = [];

  constructor(
    private readonly thread: GrammarThread,
    private readonly mid: number,
    /** Written by the grammar thread (shared memory); copied out once complete. */
    private readonly shared: Int32Array,
    private readonly stopTokenIds: readonly number[],
    private readonly release: () => void,
    private readonly onMaskTime?: (seconds: number) => void,
  ) {}

  async fillNextTokenBitmask(bitmask: Int32Array): Promise<void> {
    if (!this.disposed) {
      const accepts = this.accepted;
      this.accepted = [];
      const us = await this.thread.fill(this.mid, accepts);
      this.onMaskTime?.(us / 1e6);
    }
    if (this.disposed) {
      // The sequence was aborted while its step ran: its mask only has to be a valid one.
      bitmask.fill(0);
      for (const id of this.stopTokenIds) bitmask[id >> 5] = (bitmask[id >> 5] ?? 0) | (1 << (id & 31));
      return;
    }
    bitmask.set(this.shared);
  }

  /** Queues the token for the grammar thread; a rejection fails the next `fillNextTokenBitmask`. */
  acceptToken(tokenId: number): boolean {
    if (!this.disposed) this.accepted.push(tokenId);
    return true;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.thread.disposeMatcher(this.mid);
    this.release();
  }
}
