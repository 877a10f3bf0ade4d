import { describe, expect, it } from "vitest";
import { hashBlockTokens } from "./block-hash.js";
import { BlockPool } from "./block-pool.js";

const h = (n: number) => hashBlockTokens(null, [n]);

describe("BlockPool", () => {
  it("hands out free ids lowest first, whatever the free order", () => {
    const pool = new BlockPool(8);
    expect(pool.allocate(3)).toEqual([0, 1, 2]);
    expect(pool.allocate(2)).toEqual([3, 4]);
    pool.free([4, 1]);
    expect(pool.numFreeBlocks).toBe(5);
    expect(pool.allocate(3)).toEqual([1, 4, 5]);
    expect(pool.numUsedBlocks).toBe(6);
    pool.checkInvariants();
  });

  it("counts references: a shared block is free only when the last holder lets go", () => {
    const pool = new BlockPool(4);
    const [a] = pool.allocate(1);
    expect(pool.cacheBlock(a, h(1))).toBe(true);
    pool.touch([a]);
    expect(pool.refCount(a)).toBe(2);
    pool.free([a]);
    expect(pool.refCount(a)).toBe(1);
    expect(pool.numUsedBlocks).toBe(1);
    pool.free([a]);
    expect(pool.refCount(a)).toBe(0);
    expect(pool.numUsedBlocks).toBe(0);
    expect(() => pool.free([a])).toThrow(/refCount 0/);
    pool.checkInvariants();
  });

  it("keeps freed hashed blocks findable and evicts them oldest first, after the plain free ones", () => {
    const pool = new BlockPool(4);
    expect(pool.allocate(4)).toEqual([0, 1, 2, 3]);
    pool.cacheBlock(0, h(0));
    pool.cacheBlock(1, h(1));
    pool.cacheBlock(2, h(2));
    pool.free([2, 0, 3, 1]); // 3 has no hash: back to the free list
    expect(pool.cachedFreeIds()).toEqual([2, 0, 1]);
    expect(pool.getCachedBlock(h(0))).toBe(0);
    pool.checkInvariants();

    expect(pool.allocate(1)).toEqual([3]); // plain free first, the cache is untouched
    expect(pool.numCachedBlocks).toBe(3);
    expect(pool.allocate(2)).toEqual([2, 0]); // then LRU order
    expect(pool.getCachedBlock(h(2))).toBeUndefined();
    expect(pool.getCachedBlock(h(0))).toBeUndefined();
    expect(pool.blockHash(2)).toBeNull();
    expect(pool.getCachedBlock(h(1))).toBe(1);
    pool.checkInvariants();
  });

  it("revives a cached free block on touch, taking it off the LRU", () => {
    const pool = new BlockPool(3);
    pool.allocate(3);
    pool.cacheBlock(0, h(0));
    pool.cacheBlock(1, h(1));
    pool.free([0, 1, 2]);
    pool.touch([0]);
    expect(pool.refCount(0)).toBe(1);
    expect(pool.cachedFreeIds()).toEqual([1]);
    expect(pool.numFreeBlocks).toBe(2);
    expect(pool.allocate(2)).toEqual([2, 1]);
    expect(() => pool.allocate(1)).toThrow(/cannot allocate/);
    pool.checkInvariants();
  });

  it("refreshes recency: a block freed again goes to the back of the LRU", () => {
    const pool = new BlockPool(2);
    pool.allocate(2);
    pool.cacheBlock(0, h(0));
    pool.cacheBlock(1, h(1));
    pool.free([0, 1]);
    pool.touch([0]);
    pool.free([0]);
    expect(pool.cachedFreeIds()).toEqual([1, 0]);
  });

  it("registers one block per prefix hash", () => {
    const pool = new BlockPool(2);
    pool.allocate(2);
    expect(pool.cacheBlock(0, h(7))).toBe(true);
    expect(pool.cacheBlock(1, h(7))).toBe(false);
    expect(pool.cacheBlock(0, h(7))).toBe(true);
    expect(pool.blockHash(1)).toBeNull();
    pool.free([0, 1]);
    expect(pool.cachedFreeIds()).toEqual([0]);
    pool.checkInvariants();
  });
});

describe("hashBlockTokens", () => {
  it("chains the parent: same tokens under different prefixes differ", () => {
    const a = hashBlockTokens(null, [1, 2, 3, 4]);
    expect(hashBlockTokens(null, [1, 2, 3, 4])).toBe(a);
    expect(hashBlockTokens(null, [1, 2, 3, 5])).not.toBe(a);
    expect(hashBlockTokens(a, [1, 2, 3, 4])).not.toBe(a);
    expect(hashBlockTokens(hashBlockTokens(null, [9]), [1, 2, 3, 4])).not.toBe(hashBlockTokens(a, [1, 2, 3, 4]));
  });
});
