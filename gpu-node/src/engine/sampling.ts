import { uniformFor } from "./rng.js";
import type { SampleRequest, SampledToken, SamplingParams, TopLogprob } from "./types.js";

/**
 * Next-token sampling from one row of logits, in vLLM's order:
 *
 *   raw logits ──► logprobs (log-softmax of the raw logits, when params.logprobs >= 0)
 *        │
 *        ├─ repetition penalty (prompt + output tokens)  ─ frequency / presence penalties (output tokens)
 *        ├─ temperature < 1e-5: argmax (lowest id on ties)
 *        └─ ÷ temperature → top-k → top-p → min-p → inverse-CDF draw with u = uniformFor(seed, outputIndex)
 *
 * Nothing here sorts the whole vocabulary on the common paths: top-k is a partial selection, top-p
 * collects only the head of the distribution (widening until it holds top_p of the mass), and
 * plain temperature sampling walks the vocabulary in id order.
 */

/** What `sampleToken` returns: a SampledToken without its seqId. */
export type SampleOutcome = Omit<SampledToken, "seqId">;

/** Temperatures below this are greedy (vLLM's `_SAMPLING_EPS`): dividing by them only overflows. */
export const SAMPLING_EPS = 1e-5;

/** Throws a clear Error when a parameter is out of its range. */
export function checkSamplingParams(p: SamplingParams): void {
  const bad = (what: string, v: number): never => {
    throw new Error(`sampling: ${what}, got ${v}`);
  };
  if (!(p.temperature >= 0) || !Number.isFinite(p.temperature)) bad("temperature must be a finite number >= 0", p.temperature);
  if (!Number.isInteger(p.topK) || p.topK < -1) bad("topK must be an integer >= 0 (0 or -1 disables)", p.topK);
  if (!(p.topP > 0 && p.topP <= 1)) bad("topP must be in (0, 1]", p.topP);
  if (!(p.minP >= 0 && p.minP <= 1)) bad("minP must be in [0, 1]", p.minP);
  if (!Number.isFinite(p.presencePenalty)) bad("presencePenalty must be finite", p.presencePenalty);
  if (!Number.isFinite(p.frequencyPenalty)) bad("frequencyPenalty must be finite", p.frequencyPenalty);
  if (!(p.repetitionPenalty > 0) || !Number.isFinite(p.repetitionPenalty)) bad("repetitionPenalty must be > 0", p.repetitionPenalty);
  if (!Number.isSafeInteger(p.seed)) bad("seed must be a safe integer", p.seed);
  if (!Number.isInteger(p.logprobs) || p.logprobs < -1) bad("logprobs must be an integer >= -1", p.logprobs);
}

/**
 * Samples the next token from `logits` (one row, length vocab). Does not modify `logits`.
 *
 * @example
 * const { tokenId, logprob } = sampleToken(row, { params, outputIndex: generated.length,
 *   promptTokenIds, outputTokenIds: generated });
 */
export function sampleToken(logits: Float32Array, req: SampleRequest): SampleOutcome {
  const p = req.params;
  checkSamplingParams(p);
  const work = hasPenalty(p) ? applyPenalties(logits, req) : logits;

  let tokenId: number;
  if (p.temperature < SAMPLING_EPS) tokenId = argmax(work);
  else tokenId = sampleWithTemperature(work, p, uniformFor(p.seed, req.outputIndex));

  const out: SampleOutcome = { tokenId };
  if (p.logprobs >= 0) {
    const lse = logSumExp(logits);
    out.logprob = logits[tokenId] - lse;
    const n = Math.min(p.logprobs, logits.length);
    out.topLogprobs = n === 0 ? [] : topKIndices(logits, n).map((id): TopLogprob => ({ tokenId: id, logprob: logits[id] - lse }));
  }
  return out;
}

function hasPenalty(p: SamplingParams): boolean {
  return p.repetitionPenalty !== 1 || p.frequencyPenalty !== 0 || p.presencePenalty !== 0;
}

/**
 * A copy of `logits` with the penalties applied, in vLLM's order:
 *  1. repetition (HF): for each distinct token in prompt ∪ output, l > 0 ? l / p : l · p
 *  2. frequency and presence (OpenAI): for each token generated c > 0 times, l −= c · freq + pres
 */
export function applyPenalties(logits: Float32Array, req: SampleRequest): Float32Array {
  const p = req.params;
  const vocab = logits.length;
  const out = logits.slice();
  const prompt = req.promptTokenIds ?? [];
  const output = req.outputTokenIds ?? [];
  const check = (id: number): void => {
    if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new Error(`sampling: penalty token id ${id} outside [0, ${vocab})`);
  };

  if (p.repetitionPenalty !== 1) {
    const seen = new Set<number>();
    for (const id of prompt) seen.add(id);
    for (const id of output) seen.add(id);
    for (const id of seen) {
      check(id);
      const l = out[id];
      out[id] = l > 0 ? l / p.repetitionPenalty : l * p.repetitionPenalty;
    }
  }
  if (p.frequencyPenalty !== 0 || p.presencePenalty !== 0) {
    const counts = new Map<number, number>();
    for (const id of output) counts.set(id, (counts.get(id) ?? 0) + 1);
    for (const [id, count] of counts) {
      check(id);
      out[id] -= count * p.frequencyPenalty + p.presencePenalty;
    }
  }
  return out;
}

/** Index of the largest value; the lowest index among equals. */
export function argmax(v: Float32Array): number {
  let best = 0;
  let bestVal = v[0];
  for (let i = 1; i < v.length; i++) {
    if (v[i] > bestVal) {
      bestVal = v[i];
      best = i;
    }
  }
  return best;
}

/** log Σ exp(v), with the max subtracted. */
export function logSumExp(v: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < v.length; i++) if (v[i] > max) max = v[i];
  let sum = 0;
  for (let i = 0; i < v.length; i++) sum += Math.exp(v[i] - max);
  return max + Math.log(sum);
}

/** Reused across calls: exp weights of the whole vocabulary on the unfiltered path. */
let vocabScratch = new Float64Array(0);

/**
 * Temperature sampling with the top-k / top-p / min-p filters. Works on weights
 * w_i = exp((l_i − l_max) / T), i.e. probabilities up to one normalizer, so the largest weight is 1.
 */
function sampleWithTemperature(logits: Float32Array, p: SamplingParams, u: number): number {
  const vocab = logits.length;
  const invT = 1 / p.temperature;
  const topK = p.topK > 0 && p.topK < vocab ? p.topK : 0;
  const useTopP = p.topP < 1;
  let maxL = -Infinity;
  for (let i = 0; i < vocab; i++) if (logits[i] > maxL) maxL = logits[i];

  if (topK === 0 && !useTopP) {
    // No sorted filter: walk the vocabulary in id order (min-p just zeroes small weights).
    if (vocabScratch.length < vocab) vocabScratch = new Float64Array(vocab);
    const w = vocabScratch;
    let total = 0;
    for (let i = 0; i < vocab; i++) {
      let wi = Math.exp((logits[i] - maxL) * invT);
      if (wi < p.minP) wi = 0;
      w[i] = wi;
      total += wi;
    }
    const target = u * total;
    let cum = 0;
    let lastKept = 0;
    for (let i = 0; i < vocab; i++) {
      if (w[i] === 0) continue;
      cum += w[i];
      lastKept = i;
      if (cum > target) return i;
    }
    return lastKept; // u·total rounded above the final sum
  }

  // Candidates sorted by logit, descending (ties: lower id first), with their weights.
  let ids: number[];
  let topPMass: number;
  if (topK > 0) {
    ids = topKIndices(logits, topK);
    topPMass = 0;
    for (const id of ids) topPMass += Math.exp((logits[id] - maxL) * invT);
  } else {
    const head = topPHead(logits, maxL, invT, p.topP);
    ids = head.ids;
    topPMass = head.total;
  }
  const w = ids.map((id) => Math.exp((logits[id] - maxL) * invT));

  let n = ids.length;
  if (useTopP) {
    // Smallest prefix whose probability (normalized over the top-k set, or the whole vocab) reaches top_p.
    const target = p.topP * topPMass;
    let cum = 0;
    for (let i = 0; i < n; i++) {
      cum += w[i];
      if (cum >= target) {
        n = i + 1;
        break;
      }
    }
  }
  if (p.minP > 0) {
    // w is relative to the max probability (w[0] = 1), so min-p keeps the prefix with w >= min_p.
    let keep = 1;
    while (keep < n && w[keep] >= p.minP) keep++;
    n = keep;
  }

  let total = 0;
  for (let i = 0; i < n; i++) total += w[i];
  const target = u * total;
  let cum = 0;
  for (let i = 0; i < n; i++) {
    cum += w[i];
    if (cum > target) return ids[i];
  }
  return ids[n - 1];
}

/**
 * The head of the distribution that holds at least top_p of the probability mass, sorted
 * descending, plus the full normalizer Σ w over the vocabulary. It collects tokens within `gap`
 * (in temperature-scaled logits) of the max and widens the gap until they hold enough mass —
 * usually one pass, and only the collected tokens are sorted.
 */
function topPHead(logits: Float32Array, maxL: number, invT: number, topP: number): { ids: number[]; total: number } {
  const vocab = logits.length;
  let total = 0;
  let lowest = Infinity;
  for (let i = 0; i < vocab; i++) {
    total += Math.exp((logits[i] - maxL) * invT);
    if (logits[i] < lowest && logits[i] > -Infinity) lowest = logits[i]; // −∞ (masked) never joins
  }
  const target = topP * total;
  for (let gap = 8; ; gap *= 2) {
    const minL = maxL - gap / invT;
    const ids: number[] = [];
    let mass = 0;
    for (let i = 0; i < vocab; i++) {
      if (logits[i] >= minL) {
        ids.push(i);
        mass += Math.exp((logits[i] - maxL) * invT);
      }
    }
    if (mass >= target || minL <= lowest) {
      sortByValueDesc(ids, logits);
      return { ids, total };
    }
  }
}

function sortByValueDesc(ids: number[], v: Float32Array): void {
  ids.sort((a, b) => v[b] - v[a] || a - b);
}

/**
 * The ids of the k largest values, sorted descending (lower id first among equals), without
 * sorting everything: one pass with a small sorted buffer for k ≤ 64, otherwise a quickselect for
 * the k-th value followed by one pass to collect.
 */
export function topKIndices(v: Float32Array, k: number): number[] {
  const n = v.length;
  if (k <= 0) return [];
  if (k >= n) {
    const all = Array.from({ length: n }, (_, i) => i);
    sortByValueDesc(all, v);
    return all;
  }
  if (k <= 64) return topKSmall(v, k);

  const threshold = kthLargest(v.slice(), k);
  const ids: number[] = [];
  for (let i = 0; i < n; i++) if (v[i] > threshold) ids.push(i);
  for (let i = 0; i < n && ids.length < k; i++) if (v[i] === threshold) ids.push(i);
  sortByValueDesc(ids, v);
  return ids;
}

/** Insertion into a sorted buffer of k; strict > keeps the earlier (lower) id on ties. */
function topKSmall(v: Float32Array, k: number): number[] {
  const vals = new Float64Array(k).fill(-Infinity);
  const ids = new Int32Array(k).fill(-1);
  let filled = 0;
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (filled === k && !(x > vals[k - 1])) continue;
    let j = filled < k ? filled++ : k - 1;
    while (j > 0 && x > vals[j - 1]) {
      vals[j] = vals[j - 1];
      ids[j] = ids[j - 1];
      j--;
    }
    vals[j] = x;
    ids[j] = i;
  }
  return Array.from(ids);
}

/** The k-th largest value (1-based) of `a`, reordering `a` (Hoare quickselect, middle pivot). */
function kthLargest(a: Float32Array, k: number): number {
  let lo = 0;
  let hi = a.length - 1;
  const target = k - 1; // index in descending order
  while (lo < hi) {
    const pivot = a[(lo + hi) >>> 1];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] > pivot) i++;
      while (a[j] < pivot) j--;
      if (i <= j) {
        const t = a[i];
        a[i] = a[j];
        a[j] = t;
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return a[target];
  }
  return a[target];
}
