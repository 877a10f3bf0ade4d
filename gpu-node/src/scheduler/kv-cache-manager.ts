import { type BlockHash, hashBlockTokens } from "./block-hash.js";
import { BlockPool } from "./block-pool.js";

/** What the KV cache manager needs to know about a request. */
export interface KvRequest {
  readonly requestId: string;
  /** Prompt followed by the output so far. */
  readonly allTokenIds: readonly number[];
  /** Tokens whose KV is already written: positions [0, numComputedTokens). */
  readonly numComputedTokens: number;
  /** Prefix-cache salt: blocks are shared only between requests with the same salt. */
  readonly cacheSalt?: string;
}

/** The longest cached prefix of a request, in whole blocks. */
export interface ComputedBlocks {
  blockIds: number[];
  numTokens: number;
}

const NO_COMPUTED_BLOCKS: ComputedBlocks = { blockIds: [], numTokens: 0 };

/**
 * Maps requests to KV blocks on top of the `BlockPool`: a request's block table grows with its
 * computed tokens; full blocks are registered in the prefix cache so a later request with the same
 * prefix reuses them. `allocateSlots` answers `null` when the pool cannot hold the new tokens: the
 * scheduler then preempts and retries.
 *
 *   positions   0 ....... 15 | 16 ...... 31 | 32 .. 37
 *   block table [    b0      |     b1       |   b2    ]   blockSize 16, 38 tokens computed
 *   hashes      h0=H(∅,t0..15) h1=H(h0,t16..31)  (b2 is not full: no hash yet)
 */
export class KvCacheManager {
  readonly blockSize: number;
  readonly enablePrefixCaching: boolean;
  readonly pool: BlockPool;
  private readonly reqToBlocks = new Map<string, number[]>();
  /** Prefix hashes of the request's full blocks, computed lazily from its tokens. */
  private readonly reqToBlockHashes = new Map<string, BlockHash[]>();
  /** How many leading blocks of the request are already registered in the prefix cache. */
  private readonly reqToNumCachedBlocks = new Map<string, number>();

  constructor(opts: { numBlocks: number; blockSize: number; enablePrefixCaching?: boolean }) {
    if (!Number.isInteger(opts.blockSize) || opts.blockSize < 1) throw new RangeError(`blockSize must be a positive integer, got ${opts.blockSize}`);
    this.blockSize = opts.blockSize;
    this.enablePrefixCaching = opts.enablePrefixCaching ?? true;
    this.pool = new BlockPool(opts.numBlocks);
  }

  get numBlocks(): number {
    return this.pool.numBlocks;
  }

  /** Blocks needed to hold `numTokens` positions. */
  numBlocksFor(numTokens: number): number {
    return Math.ceil(numTokens / this.blockSize);
  }

  getBlockIds(requestId: string): readonly number[] {
    return this.reqToBlocks.get(requestId) ?? [];
  }

  /**
   * The longest chain of cached full blocks matching the request's tokens, taking no references.
   * Capped at (numTokens - 1) tokens: the last token is always recomputed, because its logits are
   * what the engine samples from.
   */
  getComputedBlocks(req: KvRequest): ComputedBlocks {
    if (!this.enablePrefixCaching) return NO_COMPUTED_BLOCKS;
    const maxBlocks = Math.floor((req.allTokenIds.length - 1) / this.blockSize);
    const blockIds: number[] = [];
    for (let i = 0; i < maxBlocks; i++) {
      const id = this.pool.getCachedBlock(this.blockHash(req, i));
      if (id === undefined) break;
      blockIds.push(id);
    }
    return blockIds.length === 0 ? NO_COMPUTED_BLOCKS : { blockIds, numTokens: blockIds.length * this.blockSize };
  }

  /**
   * Grows the request's block table to cover `numNewTokens` more tokens after its computed ones
   * (and after `computed`, a prefix hit on admission). Returns the newly allocated block ids, or
   * null, changing nothing, when the pool cannot supply them.
   */
  allocateSlots(req: KvRequest, numNewTokens: number, computed: ComputedBlocks = NO_COMPUTED_BLOCKS): number[] | null {
    const blocks = this.reqToBlocks.get(req.requestId) ?? [];
    if (computed.blockIds.length > 0 && (blocks.length > 0 || req.numComputedTokens > 0)) {
      throw new Error(`request ${req.requestId}: prefix hit for a request that already has blocks`);
    }
    const numTokens = req.numComputedTokens + computed.numTokens + numNewTokens;
    const numNew = this.numBlocksFor(numTokens) - blocks.length - computed.blockIds.length;
    // Cached free blocks of the hit are counted as free but are about to be revived, not handed out.
    let numRevived = 0;
    for (const id of computed.blockIds) if (this.pool.refCount(id) === 0) numRevived++;
    if (numNew > this.pool.numFreeBlocks - numRevived) return null;

    this.pool.touch(computed.blockIds);
    const newIds = numNew > 0 ? this.pool.allocate(numNew) : [];
    if (!this.reqToBlocks.has(req.requestId)) {
      this.reqToBlocks.set(req.requestId, blocks);
      this.reqToNumCachedBlocks.set(req.requestId, computed.blockIds.length);
    }
    blocks.push(...computed.blockIds, ...newIds);
    return newIds;
  }

  /** Registers the request's blocks that are full within its first `numComputedTokens` tokens. */
  cacheBlocks(req: KvRequest, numComputedTokens: number): void {
    if (!this.enablePrefixCaching) return;
    const blocks = this.reqToBlocks.get(req.requestId);
    if (blocks === undefined) return;
    const numFull = Math.min(Math.floor(numComputedTokens / this.blockSize), blocks.length);
    const numCached = this.reqToNumCachedBlocks.get(req.requestId) ?? 0;
    for (let i = numCached; i < numFull; i++) this.pool.cacheBlock(blocks[i], this.blockHash(req, i));
    if (numFull > numCached) this.reqToNumCachedBlocks.set(req.requestId, numFull);
  }

  /** Releases all of the request's blocks, tail first (see `BlockPool.free`), and forgets it. */
  free(requestId: string): void {
    const blocks = this.reqToBlocks.get(requestId);
    if (blocks !== undefined) this.pool.free(blocks.slice().reverse());
    this.reqToBlocks.delete(requestId);
    this.reqToBlockHashes.delete(requestId);
    this.reqToNumCachedBlocks.delete(requestId);
  }

  /** Hash of the request's i-th full block, extending its hash chain as far as needed. */
  private blockHash(req: KvRequest, i: number): BlockHash {
    let hashes = this.reqToBlockHashes.get(req.requestId);
    if (hashes === undefined) this.reqToBlockHashes.set(req.requestId, (hashes = []));
    const bs = this.blockSize;
    for (let j = hashes.length; j <= i; j++) {
      const parent = j === 0 ? null : hashes[j - 1];
      hashes.push(hashBlockTokens(parent, req.allTokenIds.slice(j * bs, (j + 1) * bs), req.cacheSalt));
    }
    return hashes[i];
  }
}
