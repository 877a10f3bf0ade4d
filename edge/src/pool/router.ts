/**
 * Choosing a node: prefix affinity first, power-of-two-choices on load otherwise.
 *
 * Affinity uses rendezvous hashing: every (prefix, node) pair gets a score and the prefix belongs
 * to the node with the highest one. Adding or removing a node only moves the prefixes that node
 * wins, so prefix caches elsewhere stay warm.
 */

export interface RouteCandidate {
  id: string;
  /** Sequences running or queued on the node: its report or, if higher, what this isolate has in flight there. */
  busy: number;
  /** Sequences the node reported waiting for a slot. */
  waiting: number;
  maxNumSeqs: number;
  /** Fraction of KV blocks in use. */
  kvUsage: number;
}

const KV_FULL = 0.95;

export function loadScore(c: RouteCandidate): number {
  return c.busy / c.maxNumSeqs + c.kvUsage / 1000;
}

/** A node past this point gives up affinity: queueing would cost more than a prefix-cache hit saves. */
export function isOverloaded(c: RouteCandidate): boolean {
  return c.busy >= c.maxNumSeqs || c.waiting > 0 || c.kvUsage >= KV_FULL;
}

/** FNV-1a over UTF-16 code units, 32 bits. */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** murmur3's finalizer over a ^ b: a well-mixed score for a (prefix, node) pair. */
function rendezvous(a: number, b: number): number {
  let h = (a ^ b) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const idHashes = new Map<string, number>();
function idHash(id: string): number {
  let h = idHashes.get(id);
  if (h === undefined) {
    if (idHashes.size > 4096) idHashes.clear();
    h = hashString(id);
    idHashes.set(id, h);
  }
  return h;
}

/** The node a prefix belongs to, whatever its load. */
export function affinityNode<C extends RouteCandidate>(candidates: readonly C[], prefixHash: number): C | undefined {
  let best: C | undefined;
  let bestScore = -1;
  for (const c of candidates) {
    const s = rendezvous(prefixHash, idHash(c.id));
    if (s > bestScore || (s === bestScore && best && c.id < best.id)) {
      best = c;
      bestScore = s;
    }
  }
  return best;
}

function powerOfTwo<C extends RouteCandidate>(candidates: readonly C[], random: () => number): C {
  if (candidates.length === 1) return candidates[0]!;
  const i = Math.floor(random() * candidates.length);
  let j = Math.floor(random() * (candidates.length - 1));
  if (j >= i) j++;
  const a = candidates[i]!;
  const b = candidates[j]!;
  return loadScore(b) < loadScore(a) ? b : a;
}

/**
 * The order in which to try nodes: the first is the choice, the rest are failover targets from
 * least to most loaded.
 *
 * @example
 * planRoute(nodes, hashString(systemPrompt))[0] // the prefix's node unless it is overloaded
 */
export function planRoute<C extends RouteCandidate>(
  candidates: readonly C[],
  prefixHash: number | null,
  random: () => number = Math.random,
): C[] {
  if (candidates.length === 0) return [];
  let first: C | undefined;
  if (prefixHash !== null) {
    const home = affinityNode(candidates, prefixHash);
    if (home && !isOverloaded(home)) first = home;
  }
  first ??= powerOfTwo(candidates, random);
  const rest = candidates.filter((c) => c !== first).sort((a, b) => loadScore(a) - loadScore(b));
  return [first, ...rest];
}
