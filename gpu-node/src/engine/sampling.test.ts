import { GREEDY_SAMPLING } from "./sampling.js";
import { describe, expect, it } from "vitest";
import { uniformFor } from "./rng.js";
import { applyPenalties, argmax, sampleToken, topKIndices } from "./sampling.js";
import type { SampleRequest, SamplingParams } from "./types.js";

const GREEDY: SamplingParams = { ...GREEDY_SAMPLING };

const req = (over: Partial<SamplingParams>, outputIndex = 0, extra: Partial<SampleRequest> = {}): SampleRequest => ({
  params: { ...GREEDY, ...over },
  outputIndex,
  ...extra,
});

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomLogits(n: number, seed: number, scale = 3): Float32Array {
  const rand = mulberry32(seed);
  return Float32Array.from({ length: n }, () => (rand() * 2 - 1) * scale);
}

const logitsOf = (probs: number[]) => Float32Array.from(probs, Math.log);

/** Draws `n` tokens with consecutive output indices and returns how often each id came up. */
function histogram(logits: Float32Array, params: Partial<SamplingParams>, n: number): number[] {
  const counts = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < n; i++) counts[sampleToken(logits, req({ temperature: 1, seed: 77, ...params }, i)).tokenId]++;
  return counts;
}

function chiSquare(counts: number[], probs: number[]): number {
  const n = counts.reduce((a, b) => a + b, 0);
  return counts.reduce((acc, c, i) => {
    if (probs[i] === 0) {
      expect(c, `token ${i} has probability 0`).toBe(0);
      return acc;
    }
    const e = n * probs[i];
    return acc + ((c - e) * (c - e)) / e;
  }, 0);
}

/** Every id of `logits` in sorted order (logit descending, lower id first among equals); cached per array. */
const sortedCache = new WeakMap<Float32Array, number[]>();
function sortedIds(logits: Float32Array): number[] {
  let ids = sortedCache.get(logits);
  if (!ids) {
    ids = Array.from({ length: logits.length }, (_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b);
    sortedCache.set(logits, ids);
  }
  return ids;
}

/**
 * Straightforward sampler with the documented semantics: sort everything, keep the first k, the
 * shortest prefix reaching top_p, the tokens with w >= min_p; then walk the kept tokens in id order.
 */
function bruteSample(logits: Float32Array, p: SamplingParams, u: number): number {
  const max = logits.reduce((a, b) => Math.max(a, b), -Infinity);
  const w = Array.from(logits, (l) => Math.exp((l - max) / p.temperature));
  let ids = sortedIds(logits);
  if (p.topK > 0) ids = ids.slice(0, p.topK);
  if (p.topP < 1) {
    const z = ids.reduce((acc, i) => acc + w[i], 0);
    let cum = 0;
    const cut = ids.findIndex((i) => (cum += w[i]) >= p.topP * z);
    if (cut >= 0) ids = ids.slice(0, cut + 1);
  }
  ids = ids.filter((i) => w[i] >= p.minP).sort((a, b) => a - b);
  const total = ids.reduce((acc, i) => acc + w[i], 0);
  let cum = 0;
  for (const i of ids) if ((cum += w[i]) > u * total) return i;
  return ids[ids.length - 1];
}

/** Checks `sampleToken` against `bruteSample` for `draws` consecutive output indices. */
function expectMatchesBrute(logits: Float32Array, cases: Partial<SamplingParams>[], draws: number, seed = 11): void {
  for (const c of cases) {
    for (let i = 0; i < draws; i++) {
      const r = req({ seed, ...c }, i);
      expect(sampleToken(logits, r).tokenId, JSON.stringify(c) + ` index ${i}`).toBe(bruteSample(logits, r.params, uniformFor(seed, i)));
    }
  }
}

/** The set of ids drawn over `n` consecutive output indices. */
function drawnSet(logits: Float32Array, params: Partial<SamplingParams>, n: number): number[] {
  const seen = new Set<number>();
  for (let i = 0; i < n; i++) seen.add(sampleToken(logits, req({ temperature: 1, seed: 5, ...params }, i)).tokenId);
  return [...seen].sort((a, b) => a - b);
}

describe("greedy", () => {
  it("takes the argmax, lowest id on ties", () => {
    expect(sampleToken(new Float32Array([1, 3, 3, 2]), req({})).tokenId).toBe(1);
    expect(sampleToken(new Float32Array([-5, -5, -7]), req({})).tokenId).toBe(0);
    expect(argmax(new Float32Array([0, 0, 9, 9]))).toBe(2);
  });

  it("does not depend on seed or outputIndex, and leaves the logits untouched", () => {
    const logits = randomLogits(1000, 1);
    const copy = logits.slice();
    const t = sampleToken(logits, req({ repetitionPenalty: 1.3, presencePenalty: 0.5 }, 0, { promptTokenIds: [1, 2], outputTokenIds: [3] })).tokenId;
    expect(sampleToken(logits, req({ seed: 9, repetitionPenalty: 1.3, presencePenalty: 0.5 }, 17, { promptTokenIds: [1, 2], outputTokenIds: [3] })).tokenId).toBe(t);
    expect(logits).toEqual(copy);
  });
});

describe("temperature sampling", () => {
  const logits = randomLogits(500, 2, 2);

  it("is reproducible for (seed, index) and varies across indices and seeds", () => {
    const a = Array.from({ length: 50 }, (_, i) => sampleToken(logits, req({ temperature: 0.9, seed: 5 }, i)).tokenId);
    const b = Array.from({ length: 50 }, (_, i) => sampleToken(logits, req({ temperature: 0.9, seed: 5 }, i)).tokenId);
    const c = Array.from({ length: 50 }, (_, i) => sampleToken(logits, req({ temperature: 0.9, seed: 6 }, i)).tokenId);
    expect(a).toEqual(b);
    expect(new Set(a).size).toBeGreaterThan(20);
    expect(c).not.toEqual(a);
  });

  it("top-k = 1 and a tiny top-p both equal greedy", () => {
    const g = sampleToken(logits, req({})).tokenId;
    for (let i = 0; i < 30; i++) {
      expect(sampleToken(logits, req({ temperature: 1.5, topK: 1, seed: i }, i)).tokenId).toBe(g);
      expect(sampleToken(logits, req({ temperature: 1.5, topP: 1e-6, seed: i }, i)).tokenId).toBe(g);
      expect(sampleToken(logits, req({ temperature: 1.5, minP: 1, seed: i }, i)).tokenId).toBe(g);
    }
  });

  it("treats temperatures below 1e-5 as greedy", () => {
    expect(sampleToken(logits, req({ temperature: 1e-6, seed: 3 }, 8)).tokenId).toBe(argmax(logits));
  });

  const probs = [0.4, 0.25, 0.15, 0.1, 0.06, 0.04];
  const small = logitsOf(probs);
  const renorm = (ps: number[]) => ps.map((x) => x / ps.reduce((a, b) => a + b, 0));
  const N = 20000;
  // χ² with ≤ 5 degrees of freedom: P(χ² > 30) ≈ 1.5e-5; the draws are fixed, so this never flakes.
  const BOUND = 30;

  it("temperature 1 reproduces the distribution (χ²)", () => {
    expect(chiSquare(histogram(small, {}, N), probs)).toBeLessThan(BOUND);
  });

  it("temperature 2 flattens it to p^(1/2)", () => {
    expect(chiSquare(histogram(small, { temperature: 2 }, N), renorm(probs.map(Math.sqrt)))).toBeLessThan(BOUND);
  });

  it("top-k renormalizes over the k most likely", () => {
    expect(chiSquare(histogram(small, { topK: 2 }, N), renorm([0.4, 0.25, 0, 0, 0, 0]))).toBeLessThan(BOUND);
  });

  it("top-p keeps the smallest head reaching p", () => {
    // cumulative 0.40, 0.65, 0.80: p = 0.7 needs three tokens, p = 0.6 two
    expect(chiSquare(histogram(small, { topP: 0.7 }, N), renorm([0.4, 0.25, 0.15, 0, 0, 0]))).toBeLessThan(BOUND);
    expect(chiSquare(histogram(small, { topP: 0.6 }, N), renorm([0.4, 0.25, 0, 0, 0, 0]))).toBeLessThan(BOUND);
  });

  it("min-p drops tokens below min_p × the max probability", () => {
    // 0.3 × 0.4 = 0.12: tokens with p < 0.12 go
    expect(chiSquare(histogram(small, { minP: 0.3 }, N), renorm([0.4, 0.25, 0.15, 0, 0, 0]))).toBeLessThan(BOUND);
  });

  it("top-k, top-p and min-p compose in that order", () => {
    // top-k 4 → [.4 .25 .15 .1]/.9; top-p 0.8 of that (cum .444 .722 .889) → 3 tokens; min-p 0.5 → p ≥ .2 → 2 tokens
    expect(chiSquare(histogram(small, { topK: 4, topP: 0.8, minP: 0.5 }, N), renorm([0.4, 0.25, 0, 0, 0, 0]))).toBeLessThan(BOUND);
    expect(chiSquare(histogram(small, { topK: 4, topP: 0.8 }, N), renorm([0.4, 0.25, 0.15, 0, 0, 0]))).toBeLessThan(BOUND);
  });

  it("matches a sort-everything sampler draw for draw", () => {
    const cases: Partial<SamplingParams>[] = [
      { temperature: 0.7 },
      { temperature: 1.3, minP: 0.05 },
      { temperature: 0.8, topK: 5 },
      { temperature: 1, topK: 100 }, // the quickselect path
      { temperature: 1, topK: 999 },
      { temperature: 1.1, topP: 0.9 },
      { temperature: 0.5, topP: 0.3, minP: 0.2 },
      { temperature: 1, topK: 80, topP: 0.95, minP: 0.01 },
      { temperature: 3, topP: 0.999 }, // a flat head
    ];
    expectMatchesBrute(randomLogits(1000, 3, 4), cases, 40);
  });

  it("draws in token-id order: u below the first kept token's share picks it", () => {
    // p = [0.2, 0.8] for ids [0, 1] but [0.8, 0.2] sorted: id order makes u < 0.2 pick id 0.
    const logits = logitsOf([0.2, 0.8]);
    for (let i = 0; i < 200; i++) {
      const u = uniformFor(3, i);
      const expected = u < 0.2 ? 0 : 1;
      expect(sampleToken(logits, req({ temperature: 1, seed: 3 }, i)).tokenId).toBe(expected);
      expect(sampleToken(logits, req({ temperature: 1, seed: 3, topP: 0.999 }, i)).tokenId).toBe(expected);
      expect(sampleToken(logits, req({ temperature: 1, seed: 3, topK: 2 }, i)).tokenId).toBe(expected); // topK = vocab: off
      expect(sampleToken(logits, req({ temperature: 1, seed: 3, topK: 1 }, i)).tokenId).toBe(1);
    }
  });

  it("top-p ties at the boundary keep only as many as needed, lowest ids first", () => {
    // sorted: id 2 (.4), then ids 0, 1, 3 tied at .2: top_p 0.5 → {2, 0}; 0.7 → {2, 0, 1}; 0.9 → all
    const logits = logitsOf([0.2, 0.2, 0.4, 0.2]);
    expect(drawnSet(logits, { topP: 0.5 }, 300)).toEqual([0, 2]);
    expect(drawnSet(logits, { topP: 0.7 }, 300)).toEqual([0, 1, 2]);
    expect(drawnSet(logits, { topP: 0.9 }, 300)).toEqual([0, 1, 2, 3]);
    expect(chiSquare(histogram(logits, { topP: 0.5 }, N), [1 / 3, 0, 2 / 3, 0])).toBeLessThan(BOUND);
    // with top-k first: top-k 3 keeps ids 2, 0, 1; top_p 0.6 of .8 = .48 → {2, 0}
    expect(drawnSet(logits, { topK: 3, topP: 0.6 }, 300)).toEqual([0, 2]);
    // near-ties in one histogram bucket: 1, .99, .99, .99 → target 1.985 is reached by the second token
    expect(drawnSet(new Float32Array([0, -0.01, -0.01, -0.01]), { topP: 0.5 }, 300)).toEqual([0, 1]);
    // all tied: the first ceil(top_p · n) ids; reaching the target exactly is enough
    expect(drawnSet(new Float32Array(10), { topP: 0.35 }, 300)).toEqual([0, 1, 2, 3]);
    expect(drawnSet(new Float32Array(10), { topP: 0.4 }, 300)).toEqual([0, 1, 2, 3]);
    expect(drawnSet(new Float32Array(8), { topK: 4, topP: 0.5 }, 300)).toEqual([0, 1]);
    // the mask path (k > 1024): ids 0..999
    const flat3k = new Float32Array(3000);
    expect(drawnSet(flat3k, { topK: 2000, topP: 0.5 }, 2000).every((id) => id < 1000)).toBe(true);
    expect(drawnSet(flat3k, { topK: 2000, topP: 0.5 }, 2000).length).toBeGreaterThan(800);
    expectMatchesBrute(flat3k, [{ temperature: 1, topK: 2000, topP: 0.5 }, { temperature: 1, topK: 2000, topP: 0.4995 }], 100);
  });

  it("min-p keeps the tokens with w exactly min_p, ties with the max included", () => {
    expect(drawnSet(new Float32Array([0, -1, 0]), { minP: 1 }, 300)).toEqual([0, 2]);
    expect(drawnSet(new Float32Array([0, -1, 0]), { minP: 1, topP: 0.99 }, 300)).toEqual([0, 2]);
    expect(drawnSet(new Float32Array([0, -1, 0]), { minP: 1, topK: 2 }, 300)).toEqual([0, 2]);
  });

  it("top-k ties at the k-th value keep the lowest ids", () => {
    const logits = new Float32Array([0, 1, 0, 1, 1, 0]);
    expect(drawnSet(logits, { topK: 2 }, 300)).toEqual([1, 3]);
    expect(drawnSet(logits, { topK: 4 }, 300)).toEqual([0, 1, 3, 4]);
  });

  it("handles a 128k vocabulary with a peaked head", () => {
    const logits = randomLogits(128256, 4, 2);
    for (let i = 0; i < 10; i++) logits[(i * 7919) % 128256] = 12 - i;
    expectMatchesBrute(logits, [{ temperature: 0.8, topP: 0.9 }, { temperature: 0.8, topK: 40, topP: 0.95 }, { temperature: 0.8, minP: 0.1 }], 4, 21);
  });

  it("handles a flat 128k vocabulary (the boundary bucket holds hundreds of tokens)", () => {
    const logits = Float32Array.from(randomLogits(128256, 8, 5), (l) => l + 5); // [0, 10)
    expectMatchesBrute(
      logits,
      [
        { temperature: 0.6 },
        { temperature: 0.6, topP: 0.9 },
        { temperature: 1, topP: 0.5, minP: 0.3 },
        { temperature: 0.6, topK: 50 },
        { temperature: 0.6, minP: 0.05 },
        { temperature: 1, topK: 3000 }, // the mask path for a large k
        { temperature: 1, topK: 20000, topP: 0.8 },
        { temperature: 1, topK: 20000, topP: 0.8, minP: 0.5 },
        { temperature: 50, topP: 0.999999 }, // the boundary deep in the tail
      ],
      5,
    );
  });

  it("handles a 128k vocabulary packed into one bucket (re-bucketing) and one all tied", () => {
    const narrow = randomLogits(128256, 9, 1e-3);
    expectMatchesBrute(narrow, [{ temperature: 1, topP: 0.9 }, { temperature: 0.7, topP: 0.3 }, { temperature: 1, topK: 5000, topP: 0.5 }], 5);
    const tied = new Float32Array(128256);
    tied.fill(-2, 100_000); // two plateaus
    expectMatchesBrute(tied, [{ temperature: 1, topP: 0.5 }, { temperature: 1, topP: 0.99 }, { temperature: 1, topK: 2000, topP: 0.5 }], 5);
    for (let i = 0; i < 20; i++) expect(sampleToken(tied, req({ temperature: 1, topP: 0.5, seed: 2 }, i)).tokenId).toBeLessThan(100_000);
  });

  it("ignores −∞ logits (masked tokens)", () => {
    const logits = Float32Array.from(randomLogits(5000, 10), (l, i) => (i % 3 === 0 ? -Infinity : l));
    for (const c of [{ temperature: 1 }, { temperature: 1, topP: 0.95 }, { temperature: 1, topK: 3000 }, { temperature: 1, topK: 4000, topP: 0.9999 }]) {
      for (let i = 0; i < 30; i++) expect(sampleToken(logits, req(c, i)).tokenId % 3).not.toBe(0);
    }
    expectMatchesBrute(logits, [{ temperature: 1, topP: 0.95 }, { temperature: 1, topK: 2000, topP: 0.9 }], 10);
  });
});

describe("penalties", () => {
  it("change logits exactly as the formulas say", () => {
    const logits = new Float32Array([2, -1, 0.5, -3, 1, 4]);
    const out = applyPenalties(
      logits,
      req({ repetitionPenalty: 2, frequencyPenalty: 0.5, presencePenalty: 0.25 }, 3, { promptTokenIds: [0, 1, 1], outputTokenIds: [2, 2, 3] }),
    );
    // 0: prompt, 2 > 0 → 2/2 = 1                1: prompt, −1 ≤ 0 → −1·2 = −2
    // 2: output ×2: 0.5/2 = 0.25, then −(2·0.5 + 0.25) = −1     3: output ×1: −3·2 = −6, then −0.75 = −6.75
    // 4, 5: untouched
    expect(Array.from(out)).toEqual([1, -2, -1, -6.75, 1, 4]);
    expect(Array.from(logits)).toEqual([2, -1, 0.5, -3, 1, 4]);
  });

  it("frequency and presence ignore the prompt", () => {
    const out = applyPenalties(new Float32Array([1, 1, 1]), req({ frequencyPenalty: 1, presencePenalty: 1 }, 0, { promptTokenIds: [0], outputTokenIds: [1] }));
    expect(Array.from(out)).toEqual([1, -1, 1]);
  });

  it("steer greedy decoding away from repeated tokens", () => {
    const logits = new Float32Array([5, 4.9, 1]);
    expect(sampleToken(logits, req({})).tokenId).toBe(0);
    expect(sampleToken(logits, req({ presencePenalty: 0.5 }, 1, { outputTokenIds: [0] })).tokenId).toBe(1);
    expect(sampleToken(logits, req({ repetitionPenalty: 1.1 }, 0, { promptTokenIds: [0] })).tokenId).toBe(1);
  });

  it("reject token ids outside the vocabulary", () => {
    expect(() => applyPenalties(new Float32Array(3), req({ repetitionPenalty: 1.2 }, 0, { promptTokenIds: [3] }))).toThrow(/outside/);
  });
});

describe("logprobs", () => {
  it("are the log-softmax of the raw logits, ordered, and sum to 1 over the vocabulary", () => {
    const logits = randomLogits(10, 5);
    const r = sampleToken(logits, req({ temperature: 0.5, seed: 1, repetitionPenalty: 1.5, logprobs: 10 }, 2, { promptTokenIds: [1, 2] }));
    const lse = Math.log(Array.from(logits).reduce((a, l) => a + Math.exp(l), 0));
    expect(r.logprob).toBeCloseTo(logits[r.tokenId] - lse, 6);
    const top = r.topLogprobs ?? [];
    expect(top).toHaveLength(10);
    expect(top.reduce((a, t) => a + Math.exp(t.logprob), 0)).toBeCloseTo(1, 6);
    for (let i = 1; i < top.length; i++) expect(top[i].logprob).toBeLessThanOrEqual(top[i - 1].logprob);
    for (const t of top) expect(t.logprob).toBeCloseTo(logits[t.tokenId] - lse, 6);
  });

  it("ignore penalties even when the chosen token was penalized", () => {
    const logits = new Float32Array([5, 1, 0]);
    const r = sampleToken(logits, req({ presencePenalty: 1, repetitionPenalty: 1.2, logprobs: 1 }, 1, { outputTokenIds: [0] }));
    expect(r.tokenId).toBe(0);
    const lse = Math.log(Math.exp(5) + Math.exp(1) + 1);
    expect(r.logprob).toBeCloseTo(5 - lse, 6);
    expect(r.topLogprobs).toEqual([{ tokenId: 0, logprob: r.logprob }]);
  });

  it("top-20 of a large vocabulary matches a full sort; ties keep the lower id first", () => {
    const logits = randomLogits(128256, 6);
    logits[500] = logits[100] = 9;
    const r = sampleToken(logits, req({ logprobs: 20 }));
    const sorted = Array.from({ length: logits.length }, (_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b);
    expect(r.topLogprobs?.map((t) => t.tokenId)).toEqual(sorted.slice(0, 20));
    expect(r.tokenId).toBe(100);
    expect(topKIndices(logits, 300)).toEqual(sorted.slice(0, 300));
  });

  it("0 returns only the chosen token's logprob, −1 none", () => {
    const logits = randomLogits(8, 7);
    expect(sampleToken(logits, req({ logprobs: 0 }))).toEqual({ tokenId: argmax(logits), logprob: expect.any(Number), topLogprobs: [] });
    expect(sampleToken(logits, req({ logprobs: -1 }))).toEqual({ tokenId: argmax(logits) });
  });
});

describe("parameter checks", () => {
  it.each([
    [{ temperature: -1 }, /temperature/],
    [{ topP: 0 }, /topP/],
    [{ topP: 1.5 }, /topP/],
    [{ minP: 2 }, /minP/],
    [{ topK: 1.5 }, /topK/],
    [{ repetitionPenalty: 0 }, /repetitionPenalty/],
    [{ logprobs: -2 }, /logprobs/],
  ])("rejects %o", (over, message) => {
    expect(() => sampleToken(new Float32Array(4), req(over as Partial<SamplingParams>))).toThrow(message);
  });
});
