import { uniformFor } from "./rng.js";
import type { SampleRequest, SampledToken, SamplingParams, TopLogprob } from "./types.js";

/**
 * Next-token sampling from one row of logits, in vLLM's order:
 *
 *   raw logits ──► logprobs (log-softmax of the raw logits, when params.logprobs >= 0)
 *        │
 *        ├─ allowedTokens (constrained decoding): every token whose bit is clear gets −∞
 *        ├─ repetition penalty (prompt + output tokens)  ─ frequency / presence penalties (output tokens)
 *        ├─ temperature < 1e-5: argmax (lowest id on ties)
 *        └─ ÷ temperature → top-k → top-p → min-p → inverse-CDF draw with u = uniformFor(seed, outputIndex)
 *
 * The temperature path, exactly (the native engine's sampling.cpp must follow the same procedure):
 *
 *   w_i = exp((l_i − l_max) / T)   in double, l_i the (penalized) float32 logit, l_max the largest;
 *                                  the w_i are probabilities up to one normalizer, and w = 1 at the max.
 *   "Sorted order" = logit descending, lower id first among equal logits.
 *   1. top-k (0 < k < vocab): the candidates are the first k tokens in sorted order; all others drop.
 *   2. top-p (< 1): keep the shortest prefix of the candidates in sorted order whose Σ w reaches
 *      top_p · Σ_candidates w (so at least one token). Ties at the boundary follow the sorted order:
 *      of several tokens sharing the boundary logit, only as many as needed are kept, lowest ids first.
 *      If rounding keeps the prefix sum from ever reaching the target, all candidates stay.
 *   3. min-p (> 0): drop the kept tokens with w < min_p (the max token, w = 1, always stays).
 *   4. draw: total = Σ w over the kept tokens in ascending id order; walk the kept tokens in ascending
 *      id order adding w to cum, and return the first whose cum > u · total (the last kept token if
 *      rounding leaves u · total above the final cum).
 *
 * The draw order (token id, not probability) leaves the distribution unchanged and needs no sort; the
 * result is a pure function of (logits, params, seed, outputIndex). The sums in steps 1–2 are in
 * double but their grouping is not part of the contract (the prefix sum of step 2 may be accumulated
 * bucket by bucket), so engines may disagree only on a token whose inclusion hinges on the last bit.
 *
 * Cost is O(vocab) with one exp per token and no full sort: top-k is a partial selection (a sorted
 * list when k ≤ 1024, else a quickselect threshold), and top-p finds its boundary with a histogram of
 * the weights by (l_max − l)/T, then sorts only the tokens in the bucket that holds the boundary
 * (re-bucketing that bucket when it is large). Scratch buffers are reused across calls.
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
  let work = req.allowedTokens ? applyTokenMask(logits, req.allowedTokens) : logits;
  if (hasPenalty(p)) work = applyPenalties(work, req);

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

/**
 * A copy of `logits` where every token whose bit in `allowed` is clear is −∞ (bit i & 31 of word
 * i >> 5). At least one allowed token must remain, or there is nothing to sample.
 */
export function applyTokenMask(logits: Float32Array, allowed: Int32Array): Float32Array {
  const vocab = logits.length;
  if (allowed.length < Math.ceil(vocab / 32)) throw new Error(`sampling: allowedTokens has ${allowed.length} words, the vocabulary needs ${Math.ceil(vocab / 32)}`);
  const out = logits.slice();
  let any = false;
  for (let w = 0, base = 0; base < vocab; w++, base += 32) {
    const bits = allowed[w];
    if (bits === -1) {
      any = true;
      continue;
    }
    if (bits !== 0) any = true;
    const end = Math.min(base + 32, vocab);
    for (let i = base; i < end; i++) if (((bits >>> (i - base)) & 1) === 0) out[i] = -Infinity;
  }
  if (!any) throw new Error("sampling: allowedTokens allows no token");
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

// Scratch buffers, reused across calls (sampling is synchronous, so one set suffices).
let weightScratch = new Float64Array(0);
let bucketScratch = new Uint16Array(0);
let blockScratch = new Float64Array(0);
let idScratch = new Int32Array(0);
let selectScratch = new Float32Array(0);

/** Top-k up to this size works on the sorted candidate list; above it, on a mask over the vocabulary. */
const LIST_TOP_K = 1024;
/** Top-p histogram: BUCKETS buckets of (l_max − l)/T, BUCKET_SCALE per unit; the last one takes the rest. */
const BUCKETS = 1024;
const BUCKET_SCALE = 32;
/** Bucket "index" of a token that is not a candidate (w = 0). */
const NO_BUCKET = 0xffff;
/** A boundary bucket with more tokens than this is re-bucketed over its own range before sorting. */
const SORT_LIMIT = 2048;
const bucketMass = new Float64Array(BUCKETS);
/** The draw records the running sum every BLOCK tokens, so the walk re-adds one block only. */
const BLOCK = 256;

function scratchFor(vocab: number): void {
  if (weightScratch.length >= vocab) return;
  weightScratch = new Float64Array(vocab);
  bucketScratch = new Uint16Array(vocab);
  blockScratch = new Float64Array(Math.ceil(vocab / BLOCK));
}

function idBuffer(n: number): Int32Array {
  if (idScratch.length < n) idScratch = new Int32Array(n);
  return idScratch;
}

/** Temperature sampling with the top-k / top-p / min-p filters, as documented at the top of the file. */
function sampleWithTemperature(logits: Float32Array, p: SamplingParams, u: number): number {
  const vocab = logits.length;
  const invT = 1 / p.temperature;
  const topK = p.topK > 0 && p.topK < vocab ? p.topK : 0;
  let maxL = -Infinity;
  for (let i = 0; i < vocab; i++) if (logits[i] > maxL) maxL = logits[i];
  if (!(maxL > -Infinity)) return argmax(logits); // everything masked: nothing to weigh

  if (topK > 0 && topK <= LIST_TOP_K) return sampleFromList(logits, topKIndices(logits, topK), maxL, invT, p, u);

  scratchFor(vocab);
  const w = weightScratch;
  if (topK === 0 && p.topP >= 1) {
    // Plain temperature (± min-p): weigh, filter and sum in one pass.
    weighAndSum(logits, w, maxL, invT, p.minP);
    return walk(logits, w, vocab, u);
  }

  let cut: TopPCut = KEEP_ALL;
  if (topK === 0) {
    // Top-p alone: weigh and bucket in one pass.
    const mass = weighAndBucket(logits, w, maxL, invT);
    cut = topPCut(logits, w, maxL, invT, p.topP * mass);
  } else {
    const mass = weighTopK(logits, w, maxL, invT, topK);
    if (p.topP < 1) {
      bucketCandidates(logits, w, maxL, invT);
      cut = topPCut(logits, w, maxL, invT, p.topP * mass);
    }
  }
  applyCutAndSum(logits, w, cut, p.minP);
  return walk(logits, w, vocab, u);
}

/**
 * The list path for a small top-k: `ids` are the k candidates in sorted order. Top-p and min-p cut
 * the list; the kept tokens are then drawn from in id order.
 */
function sampleFromList(logits: Float32Array, ids: number[], maxL: number, invT: number, p: SamplingParams, u: number): number {
  const k = ids.length;
  const w = new Float64Array(k);
  let mass = 0;
  for (let j = 0; j < k; j++) mass += w[j] = Math.exp((logits[ids[j]] - maxL) * invT);

  let n = k;
  if (p.topP < 1) {
    const target = p.topP * mass;
    let cum = 0;
    for (let j = 0; j < k; j++) {
      cum += w[j];
      if (cum >= target) {
        n = j + 1;
        break;
      }
    }
  }
  if (p.minP > 0) {
    let keep = 1; // w[0] = 1 ≥ min_p
    while (keep < n && w[keep] >= p.minP) keep++;
    n = keep;
  }

  const kept = Int32Array.from(ids.slice(0, n)).sort(); // ascending id
  const keptW = new Float64Array(n);
  let total = 0;
  for (let j = 0; j < n; j++) total += keptW[j] = Math.exp((logits[kept[j]] - maxL) * invT);
  const target = u * total;
  let cum = 0;
  for (let j = 0; j < n; j++) {
    cum += keptW[j];
    if (cum > target) return kept[j];
  }
  return kept[n - 1];
}

/**
 * w_i for the top k (the k largest logits, lower id first among equals), 0 for the others; returns
 * the candidates' Σ w.
 */
function weighTopK(logits: Float32Array, w: Float64Array, maxL: number, invT: number, k: number): number {
  const vocab = logits.length;
  if (selectScratch.length < vocab) selectScratch = new Float32Array(vocab);
  const copy = selectScratch.subarray(0, vocab);
  copy.set(logits);
  const threshold = kthLargest(copy, k);
  let above = 0;
  for (let i = 0; i < vocab; i++) if (logits[i] > threshold) above++;
  let ties = k - above; // tokens at the threshold that stay, lowest ids first
  let mass = 0;
  for (let i = 0; i < vocab; i++) {
    const l = logits[i];
    if (l > threshold || (l === threshold && ties-- > 0)) mass += w[i] = Math.exp((l - maxL) * invT);
    else w[i] = 0;
  }
  return mass;
}

/**
 * Where top-p cuts: keep the tokens with logit > `logit`, and the first `quota` tokens (lowest ids)
 * of the `ties` candidates with logit === `logit`.
 */
interface TopPCut {
  logit: number;
  quota: number;
  ties: number;
}
const KEEP_ALL: TopPCut = { logit: -Infinity, quota: Infinity, ties: 0 };

/** Bucket of a token: (l_max − l)/T in steps of 1/BUCKET_SCALE, clamped to the last; monotone in the logit. */
function bucketOf(l: number, maxL: number, scale: number): number {
  return Math.min((maxL - l) * scale, BUCKETS - 1) | 0;
}

/**
 * w_i for every token, the top-p histogram (each bucket's Σ w, and each token's bucket), and Σ w.
 * Tokens whose w underflows to 0 land in the last bucket and add nothing to it.
 */
function weighAndBucket(logits: Float32Array, w: Float64Array, maxL: number, invT: number): number {
  const mass = bucketMass;
  const bucket = bucketScratch;
  mass.fill(0);
  const scale = invT * BUCKET_SCALE;
  let total = 0;
  for (let i = 0; i < logits.length; i++) {
    const l = logits[i];
    const wi = Math.exp((l - maxL) * invT);
    w[i] = wi;
    total += wi;
    const b = bucketOf(l, maxL, scale);
    bucket[i] = b;
    mass[b] += wi;
  }
  return total;
}

/** The top-p histogram of the candidates (w > 0) after top-k. */
function bucketCandidates(logits: Float32Array, w: Float64Array, maxL: number, invT: number): void {
  const mass = bucketMass;
  const bucket = bucketScratch;
  mass.fill(0);
  const scale = invT * BUCKET_SCALE;
  for (let i = 0; i < logits.length; i++) {
    const wi = w[i];
    const b = wi === 0 ? NO_BUCKET : bucketOf(logits[i], maxL, scale);
    bucket[i] = b;
    if (b !== NO_BUCKET) mass[b] += wi;
  }
}

/**
 * Finds the shortest prefix of the candidates (w > 0) in sorted order whose Σ w ≥ target. The
 * histogram (bucketMass, bucketScratch) locates the bucket holding the boundary; only that bucket's
 * tokens are then ordered. Bucket indices are monotone in the logit, so equal logits share a bucket
 * and the buckets before the boundary one lie wholly inside the prefix.
 */
function topPCut(logits: Float32Array, w: Float64Array, maxL: number, invT: number, target: number): TopPCut {
  const vocab = logits.length;
  const bucket = bucketScratch;
  let cum = 0;
  for (let b = 0; b < BUCKETS; b++) {
    const mass = bucketMass[b];
    if (mass === 0) continue;
    if (cum + mass < target) {
      cum += mass;
      continue;
    }
    const ids = idBuffer(vocab);
    let n = 0;
    for (let i = 0; i < vocab; i++) if (bucket[i] === b) ids[n++] = i;
    const found = resolveBoundary(logits, w, ids.subarray(0, n), maxL, invT, cum, target, 0);
    if (found.cut) return found.cut;
    cum = found.cum; // rounding: the tokens one by one fell just short of the bucket sum
  }
  return KEEP_ALL;
}

/**
 * Walks `ids` (candidates in ascending id order, all inside one bucket) in sorted order from `cum`
 * until Σ w ≥ target. Large sets are re-bucketed over their own range of (l_max − l)/T first.
 */
function resolveBoundary(
  logits: Float32Array,
  w: Float64Array,
  ids: Int32Array,
  maxL: number,
  invT: number,
  cum: number,
  target: number,
  depth: number,
): { cut?: TopPCut; cum: number } {
  const n = ids.length;
  const l0 = logits[ids[0]];
  let allEqual = true;
  for (let j = 1; j < n && allEqual; j++) allEqual = logits[ids[j]] === l0;
  if (allEqual) {
    // Ties: sorted order is id order, which `ids` already is.
    for (let j = 0; j < n; j++) {
      cum += w[ids[j]];
      if (cum >= target) return { cut: { logit: l0, quota: j + 1, ties: n }, cum };
    }
    return { cum };
  }

  if (n > SORT_LIMIT && depth < 8) {
    let dMin = Infinity;
    let dMax = -Infinity;
    for (let j = 0; j < n; j++) {
      const d = (maxL - logits[ids[j]]) * invT;
      if (d < dMin) dMin = d;
      if (d > dMax) dMax = d;
    }
    if (dMax > dMin) {
      const last = BUCKETS - 1;
      const scale = last / (dMax - dMin);
      const index = (id: number): number => {
        const t = ((maxL - logits[id]) * invT - dMin) * scale;
        return t < last ? t | 0 : last;
      };
      const mass = new Float64Array(BUCKETS);
      const count = new Int32Array(BUCKETS);
      for (let j = 0; j < n; j++) {
        const b = index(ids[j]);
        mass[b] += w[ids[j]];
        count[b]++;
      }
      for (let b = 0; b < BUCKETS; b++) {
        if (count[b] === 0) continue;
        if (cum + mass[b] < target) {
          cum += mass[b];
          continue;
        }
        const sub = new Int32Array(count[b]);
        let m = 0;
        for (let j = 0; j < n; j++) if (index(ids[j]) === b) sub[m++] = ids[j];
        const found = resolveBoundary(logits, w, sub, maxL, invT, cum, target, depth + 1);
        if (found.cut) return found;
        cum = found.cum;
      }
      return { cum };
    }
  }

  ids.sort((a, b) => logits[b] - logits[a] || a - b);
  for (let j = 0; j < n; j++) {
    cum += w[ids[j]];
    if (cum >= target) {
      const logit = logits[ids[j]];
      let first = j;
      while (first > 0 && logits[ids[first - 1]] === logit) first--;
      let end = j + 1;
      while (end < n && logits[ids[end]] === logit) end++;
      return { cut: { logit, quota: j + 1 - first, ties: end - first }, cum };
    }
  }
  return { cum };
}

/**
 * Plain temperature: w_i (0 below min-p) and the running sum Σ w in id order, recorded at the end of
 * every BLOCK tokens in blockScratch.
 */
function weighAndSum(logits: Float32Array, w: Float64Array, maxL: number, invT: number, minP: number): void {
  const vocab = logits.length;
  const blocks = blockScratch;
  let cum = 0;
  for (let blk = 0, i = 0; i < vocab; blk++) {
    const end = Math.min(i + BLOCK, vocab);
    for (; i < end; i++) {
      const wi = Math.exp((logits[i] - maxL) * invT);
      const kept = wi * Number(wi >= minP); // no data-dependent branch
      w[i] = kept;
      cum += kept;
    }
    blocks[blk] = cum;
  }
}

/** Applies the top-p cut and min-p to `w` and records the running sum as `weighAndSum` does. */
function applyCutAndSum(logits: Float32Array, w: Float64Array, cut: TopPCut, minP: number): void {
  const vocab = logits.length;
  const cutLogit = cut.logit;
  if (cut.ties > cut.quota) {
    // Rare: several tokens share the boundary logit and only the lowest ids stay.
    let quota = cut.quota;
    for (let i = 0; i < vocab; i++) if (w[i] !== 0 && logits[i] === cutLogit && quota-- <= 0) w[i] = 0;
  }
  const blocks = blockScratch;
  let cum = 0;
  for (let blk = 0, i = 0; i < vocab; blk++) {
    const end = Math.min(i + BLOCK, vocab);
    for (; i < end; i++) {
      // Dropped tokens become 0 and add nothing, so this loop needs no data-dependent branch.
      const wi = w[i];
      const kept = logits[i] >= cutLogit && wi >= minP ? wi : 0;
      w[i] = kept;
      cum += kept;
    }
    blocks[blk] = cum;
  }
}

/**
 * The inverse-CDF draw over the kept weights `w` (0 = dropped) in id order: the first token whose
 * running sum exceeds u · total. The block sums locate its block, and re-adding from the previous
 * block's sum gives bit for bit the running sum of a plain walk from token 0.
 */
function walk(logits: Float32Array, w: Float64Array, vocab: number, u: number): number {
  const blocks = blockScratch;
  const nBlocks = Math.ceil(vocab / BLOCK);
  const target = u * blocks[nBlocks - 1];
  let blk = 0;
  while (blk < nBlocks && !(blocks[blk] > target)) blk++;
  if (blk < nBlocks) {
    let cum = blk > 0 ? blocks[blk - 1] : 0;
    const end = Math.min((blk + 1) * BLOCK, vocab);
    for (let i = blk * BLOCK; i < end; i++) {
      cum += w[i];
      if (cum > target) return i;
    }
  }
  for (let i = vocab - 1; i >= 0; i--) if (w[i] !== 0) return i; // u·total rounded above the final sum
  return argmax(logits);
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

  if (selectScratch.length < n) selectScratch = new Float32Array(n);
  const copy = selectScratch.subarray(0, n);
  copy.set(v);
  const threshold = kthLargest(copy, k);
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

/** Greedy decoding with every filter and penalty off and no logprobs: the neutral parameters. */
export const GREEDY_SAMPLING: Readonly<SamplingParams> = Object.freeze({
  temperature: 0,
  topK: 0,
  topP: 1,
  minP: 0,
  presencePenalty: 0,
  frequencyPenalty: 0,
  repetitionPenalty: 1,
  seed: 0,
  logprobs: -1,
});
