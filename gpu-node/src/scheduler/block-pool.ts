import type { BlockHash } from "./block-hash.js";

/**
 * The fixed pool of KV blocks: ref counts, the two free lists and the prefix-hash map.
 *
 * A block is in exactly one of three states:
 *
 *   in use       refCount > 0 (shared by every request whose prefix matched it)
 *   free         refCount = 0, no hash                → `freeIds`, handed out lowest id first
 *   cached free  refCount = 0, hash still registered  → `cachedFree`, an LRU evicted oldest first
 *
 * `allocate` prefers free blocks and evicts cached ones only when none is left, so the prefix cache
 * keeps as much as the pool can spare. `touch` revives a cached block (prefix hit) without evicting.
 */
export class BlockPool {
  readonly numBlocks: number;
  private readonly refCounts: Int32Array;
  private readonly blockHashes: (BlockHash | null)[];
  private readonly freeIds: MinHeap;
  /** Insertion order is recency: the first element is the least recently freed. */
  private readonly cachedFree = new Set<number>();
  private readonly hashToBlock = new Map<BlockHash, number>();

  constructor(numBlocks: number) {
    if (!Number.isInteger(numBlocks) || numBlocks < 1) throw new RangeError(`numBlocks must be a positive integer, got ${numBlocks}`);
    this.numBlocks = numBlocks;
    this.refCounts = new Int32Array(numBlocks);
    this.blockHashes = new Array<BlockHash | null>(numBlocks).fill(null);
    this.freeIds = new MinHeap(Array.from({ length: numBlocks }, (_, i) => i));
  }

  /** Blocks with refCount 0, cached or not: what `allocate` can hand out. */
  get numFreeBlocks(): number {
    return this.freeIds.size + this.cachedFree.size;
  }

  /** Blocks with refCount > 0. */
  get numUsedBlocks(): number {
    return this.numBlocks - this.numFreeBlocks;
  }

  /** Blocks registered in the prefix-hash map (in use or cached free). */
  get numCachedBlocks(): number {
    return this.hashToBlock.size;
  }

  refCount(blockId: number): number {
    return this.refCounts[blockId];
  }

  blockHash(blockId: number): BlockHash | null {
    return this.blockHashes[blockId];
  }

  /** The block holding this prefix, in use or cached free. */
  getCachedBlock(hash: BlockHash): number | undefined {
    return this.hashToBlock.get(hash);
  }

  /** Cached free ids, least recently freed first (the eviction order). */
  cachedFreeIds(): number[] {
    return [...this.cachedFree];
  }

  /** Takes a reference on blocks found by a prefix lookup, reviving cached free ones. */
  touch(blockIds: readonly number[]): void {
    for (const id of blockIds) {
      if (this.refCounts[id] === 0) {
        if (!this.cachedFree.delete(id)) throw new Error(`block ${id} has refCount 0 but is not cached`);
      }
      this.refCounts[id]++;
    }
  }

  /** `n` blocks with refCount 1: free ids lowest first, then cached ones evicted oldest first. */
  allocate(n: number): number[] {
    if (n > this.numFreeBlocks) throw new Error(`cannot allocate ${n} blocks, ${this.numFreeBlocks} free`);
    const ids: number[] = [];
    for (let i = 0; i < n; i++) {
      let id = this.freeIds.pop();
      if (id === undefined) {
        id = this.cachedFree.values().next().value as number;
        this.cachedFree.delete(id);
        this.hashToBlock.delete(this.blockHashes[id] as BlockHash);
        this.blockHashes[id] = null;
      }
      this.refCounts[id] = 1;
      ids.push(id);
    }
    return ids;
  }

  /**
   * Drops one reference on each block, in the order given: a block that reaches 0 and has a hash
   * becomes the most recent cached free block, so callers pass a request's blocks tail first to have
   * the tail (the least shareable part of a prefix) evicted before the head.
   */
  free(blockIds: readonly number[]): void {
    for (const id of blockIds) {
      if (this.refCounts[id] <= 0) throw new Error(`block ${id} freed with refCount ${this.refCounts[id]}`);
      if (--this.refCounts[id] > 0) continue;
      if (this.blockHashes[id] !== null) this.cachedFree.add(id);
      else this.freeIds.push(id);
    }
  }

  /**
   * Registers a full, computed, in-use block under its prefix hash. Returns false when another block
   * already holds that prefix (two requests computed it at once): this one stays unhashed.
   */
  cacheBlock(blockId: number, hash: BlockHash): boolean {
    if (this.refCounts[blockId] <= 0) throw new Error(`block ${blockId} cached while free`);
    const existing = this.hashToBlock.get(hash);
    if (existing !== undefined) return existing === blockId;
    if (this.blockHashes[blockId] !== null) throw new Error(`block ${blockId} already has a different hash`);
    this.blockHashes[blockId] = hash;
    this.hashToBlock.set(hash, blockId);
    return true;
  }

  /** Throws if the three states above do not partition the pool or the hash map disagrees with blocks. */
  checkInvariants(): void {
    const freeSet = new Set(this.freeIds.items());
    if (freeSet.size !== this.freeIds.size) throw new Error("duplicate ids in the free list");
    for (let id = 0; id < this.numBlocks; id++) {
      const ref = this.refCounts[id];
      const inFree = freeSet.has(id);
      const inCached = this.cachedFree.has(id);
      const hash = this.blockHashes[id];
      if (ref < 0) throw new Error(`block ${id}: negative refCount ${ref}`);
      if (ref > 0 && (inFree || inCached)) throw new Error(`block ${id}: in use (ref ${ref}) and on a free list`);
      if (ref === 0 && inFree === inCached) throw new Error(`block ${id}: free but on ${inFree ? "both" : "neither"} free list(s)`);
      if (inFree && hash !== null) throw new Error(`block ${id}: on the free list with a hash`);
      if (inCached && hash === null) throw new Error(`block ${id}: cached free without a hash`);
      if (hash !== null && this.hashToBlock.get(hash) !== id) throw new Error(`block ${id}: hash not mapped to it`);
    }
    for (const [hash, id] of this.hashToBlock) {
      if (this.blockHashes[id] !== hash) throw new Error(`hash map entry for block ${id} is stale`);
    }
  }
}

/** Binary min-heap of block ids, so freed ids are reused lowest first whatever the free order. */
class MinHeap {
  private readonly heap: number[];

  constructor(sortedIds: number[]) {
    this.heap = sortedIds; // an ascending array is already a valid heap
  }

  get size(): number {
    return this.heap.length;
  }

  items(): readonly number[] {
    return this.heap;
  }

  push(x: number): void {
    const h = this.heap;
    let i = h.push(x) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (h[parent] <= x) break;
      h[i] = h[parent];
      i = parent;
    }
    h[i] = x;
  }

  pop(): number | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0];
    const last = h.pop() as number;
    if (h.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= h.length) break;
        const c = l + 1 < h.length && h[l + 1] < h[l] ? l + 1 : l;
        if (h[c] >= last) break;
        h[i] = h[c];
        i = c;
      }
      h[i] = last;
    }
    return top;
  }
}
