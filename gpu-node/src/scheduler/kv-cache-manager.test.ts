import { describe, expect, it } from "vitest";
import { type KvRequest, KvCacheManager } from "./kv-cache-manager.js";

/** A mutable stand-in for the scheduler's request. */
function req(requestId: string, tokens: number[], numComputedTokens = 0): KvRequest & { numComputedTokens: number; allTokenIds: number[] } {
  return { requestId, allTokenIds: tokens, numComputedTokens };
}
const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

describe("KvCacheManager", () => {
  it("grows a block table as tokens are computed and frees it tail first", () => {
    const kv = new KvCacheManager({ numBlocks: 10, blockSize: 4 });
    const a = req("a", range(100, 10));
    expect(kv.allocateSlots(a, 6)).toEqual([0, 1]); // positions 0..5
    a.numComputedTokens = 6;
    kv.cacheBlocks(a, 6);
    expect(kv.allocateSlots(a, 4)).toEqual([2]); // positions 6..9
    a.numComputedTokens = 10;
    kv.cacheBlocks(a, 10);
    expect(kv.allocateSlots(a, 0)).toEqual([]);
    expect(kv.getBlockIds("a")).toEqual([0, 1, 2]);
    expect(kv.pool.numCachedBlocks).toBe(2); // blocks 0 and 1 are full; 2 holds 8..9 only
    kv.free("a");
    expect(kv.pool.cachedFreeIds()).toEqual([1, 0]); // tail first: block 1 is evicted before block 0
    expect(kv.pool.numUsedBlocks).toBe(0);
    kv.pool.checkInvariants();
  });

  it("shares cached prefix blocks: same ids, ref counts up", () => {
    const kv = new KvCacheManager({ numBlocks: 10, blockSize: 4 });
    const a = req("a", range(0, 10));
    kv.allocateSlots(a, 10);
    kv.cacheBlocks(a, 10);

    const b = req("b", [...range(0, 8), 50, 51, 52]);
    const hit = kv.getComputedBlocks(b);
    expect(hit).toEqual({ blockIds: [0, 1], numTokens: 8 });
    expect(kv.allocateSlots(b, 3, hit)).toEqual([3]);
    expect(kv.getBlockIds("b")).toEqual([0, 1, 3]);
    expect([0, 1, 2, 3].map((id) => kv.pool.refCount(id))).toEqual([2, 2, 1, 1]);

    kv.free("a");
    expect([0, 1, 2, 3].map((id) => kv.pool.refCount(id))).toEqual([1, 1, 0, 1]);
    expect(kv.pool.cachedFreeIds()).toEqual([]); // 2 had no hash; 0 and 1 are still held by b
    kv.free("b");
    expect(kv.pool.cachedFreeIds()).toEqual([1, 0]);
    kv.pool.checkInvariants();
  });

  it("matches whole prefixes only: a block's tokens at another position do not hit", () => {
    const kv = new KvCacheManager({ numBlocks: 10, blockSize: 2 });
    const a = req("a", [1, 1, 2, 2, 3, 3, 0]);
    kv.allocateSlots(a, 7);
    kv.cacheBlocks(a, 7);
    // b = block [1,1] then [3,3]: [3,3] is cached, but after [1,1,2,2], not after [1,1].
    expect(kv.getComputedBlocks(req("b", [1, 1, 3, 3, 0]))).toEqual({ blockIds: [0], numTokens: 2 });
    expect(kv.getComputedBlocks(req("c", [1, 1, 2, 2, 3, 3, 9]))).toEqual({ blockIds: [0, 1, 2], numTokens: 6 });
  });

  it("never serves the last prompt token from the cache", () => {
    const kv = new KvCacheManager({ numBlocks: 10, blockSize: 4 });
    const a = req("a", range(0, 12));
    kv.allocateSlots(a, 12);
    kv.cacheBlocks(a, 12);
    expect(kv.pool.numCachedBlocks).toBe(3);
    // 8 tokens, both blocks cached: only block 0 is reused, token 7 is recomputed (and block 1's 4 tokens).
    expect(kv.getComputedBlocks(req("b", range(0, 8)))).toEqual({ blockIds: [0], numTokens: 4 });
    expect(kv.getComputedBlocks(req("c", range(0, 9)))).toEqual({ blockIds: [0, 1], numTokens: 8 });
    expect(kv.getComputedBlocks(req("d", range(0, 12)))).toEqual({ blockIds: [0, 1], numTokens: 8 });
    expect(kv.getComputedBlocks(req("e", range(0, 3)))).toEqual({ blockIds: [], numTokens: 0 });
  });

  it("revives cached free blocks on a hit and evicts the LRU ones for fresh allocations", () => {
    const kv = new KvCacheManager({ numBlocks: 4, blockSize: 2 });
    const a = req("a", [1, 2, 3, 4, 5, 6, 7]);
    expect(kv.allocateSlots(a, 7)).toEqual([0, 1, 2, 3]);
    kv.cacheBlocks(a, 7);
    kv.free("a");
    expect(kv.pool.cachedFreeIds()).toEqual([2, 1, 0]);
    expect(kv.pool.numFreeBlocks).toBe(4);

    // b shares 2 blocks; needs 3 more for positions 4..8: 3 (plain free) then evicts 2 (LRU head)
    // but not 1 or 0 (revived by the hit, not counted as free).
    const b = req("b", [1, 2, 3, 4, 9, 9, 9, 9, 9]);
    const hit = kv.getComputedBlocks(b);
    expect(hit.blockIds).toEqual([0, 1]);
    expect(kv.allocateSlots(b, 5, hit)).toBeNull(); // 2 revived + 3 new > 4
    expect(kv.allocateSlots(b, 4, hit)).toEqual([3, 2]);
    expect(kv.getBlockIds("b")).toEqual([0, 1, 3, 2]);
    expect(kv.pool.getCachedBlock(kv.pool.blockHash(0) as string)).toBe(0);
    expect(kv.pool.numCachedBlocks).toBe(2); // a's third block (id 2) was evicted
    kv.pool.checkInvariants();
  });

  it("returns null and changes nothing when the pool is short", () => {
    const kv = new KvCacheManager({ numBlocks: 3, blockSize: 4 });
    const a = req("a", range(0, 8));
    expect(kv.allocateSlots(a, 8)).toEqual([0, 1]);
    const b = req("b", range(100, 9));
    expect(kv.allocateSlots(b, 9)).toBeNull();
    expect(kv.getBlockIds("b")).toEqual([]);
    expect(kv.pool.numFreeBlocks).toBe(1);
    expect(kv.allocateSlots(b, 4)).toEqual([2]);
  });

  it("does nothing for prefixes when prefix caching is off", () => {
    const kv = new KvCacheManager({ numBlocks: 4, blockSize: 2, enablePrefixCaching: false });
    const a = req("a", [1, 2, 3, 4, 5]);
    kv.allocateSlots(a, 5);
    kv.cacheBlocks(a, 5);
    expect(kv.pool.numCachedBlocks).toBe(0);
    expect(kv.getComputedBlocks(req("b", [1, 2, 3, 4, 5])).numTokens).toBe(0);
    kv.free("a");
    expect(kv.pool.allocate(4)).toEqual([0, 1, 2, 3]);
  });
});
