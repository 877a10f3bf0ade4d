import type { SampledToken, StepBatch, StepResult, TopLogprob } from "../types.js";
import type { PackedResult, PackedStep } from "./addon.js";

/**
 * A StepBatch as flat typed arrays for the addon: one copy per array instead of a walk over JS
 * objects from C++. Per sequence, `seqMeta` holds META_INTS ints and `seqParams` PARAM_DOUBLES doubles:
 *
 *   seqMeta:   seqId tokenOffset numTokens startPos blockOffset numBlocks flags topK logprobs penaltyOffset promptLen outputLen
 *              (flags: 1 = sample, 2 = returnLogits, 4 = tokenFromPreviousStep)
 *   seqParams: temperature topP minP presencePenalty frequencyPenalty repetitionPenalty seed outputIndex
 *
 * Penalty history (prompt ids then output ids) is sent only for sequences with a penalty active.
 */
export const META_INTS = 12;
export const PARAM_DOUBLES = 8;

export function packStep(batch: StepBatch): PackedStep {
  const seqs = batch.seqs;
  let numTokens = 0;
  let numBlocks = 0;
  let numPenalty = 0;
  for (const s of seqs) {
    numTokens += s.tokenIds.length;
    numBlocks += s.blockTable.length;
    const p = s.sample?.params;
    if (p && hasPenalty(p)) numPenalty += (s.sample?.promptTokenIds?.length ?? 0) + (s.sample?.outputTokenIds?.length ?? 0);
  }
  const tokens = new Int32Array(numTokens);
  const blockTables = new Int32Array(numBlocks);
  const penaltyTokens = new Int32Array(numPenalty);
  const seqMeta = new Int32Array(seqs.length * META_INTS);
  const seqParams = new Float64Array(seqs.length * PARAM_DOUBLES);
  let t = 0;
  let b = 0;
  let pen = 0;
  seqs.forEach((s, i) => {
    const m = i * META_INTS;
    seqMeta[m] = s.seqId;
    seqMeta[m + 1] = t;
    seqMeta[m + 2] = s.tokenIds.length;
    seqMeta[m + 3] = s.startPos;
    seqMeta[m + 4] = b;
    seqMeta[m + 5] = s.blockTable.length;
    seqMeta[m + 6] = (s.sample ? 1 : 0) | (s.returnLogits ? 2 : 0) | (s.tokenFromPreviousStep ? 4 : 0);
    for (const id of s.tokenIds) tokens[t++] = id;
    for (const id of s.blockTable) blockTables[b++] = id;
    const q = i * PARAM_DOUBLES;
    const sample = s.sample;
    if (sample) {
      const p = sample.params;
      seqMeta[m + 7] = p.topK;
      seqMeta[m + 8] = p.logprobs;
      seqParams[q] = p.temperature;
      seqParams[q + 1] = p.topP;
      seqParams[q + 2] = p.minP;
      seqParams[q + 3] = p.presencePenalty;
      seqParams[q + 4] = p.frequencyPenalty;
      seqParams[q + 5] = p.repetitionPenalty;
      seqParams[q + 6] = p.seed;
      seqParams[q + 7] = sample.outputIndex;
      seqMeta[m + 9] = pen;
      if (hasPenalty(p)) {
        const prompt = sample.promptTokenIds ?? [];
        const output = sample.outputTokenIds ?? [];
        for (const id of prompt) penaltyTokens[pen++] = id;
        for (const id of output) penaltyTokens[pen++] = id;
        seqMeta[m + 10] = prompt.length;
        seqMeta[m + 11] = output.length;
      }
    } else {
      seqMeta[m + 8] = -1;
      seqParams[q + 1] = 1;
      seqParams[q + 5] = 1;
    }
  });
  return { tokens, blockTables, penaltyTokens, seqMeta, seqParams };
}

function hasPenalty(p: { repetitionPenalty: number; frequencyPenalty: number; presencePenalty: number }): boolean {
  return p.repetitionPenalty !== 1 || p.frequencyPenalty !== 0 || p.presencePenalty !== 0;
}

/** The addon's flat result as the engine contract's StepResult. */
export function unpackResult(r: PackedResult): StepResult {
  const sampled: SampledToken[] = [];
  let top = 0;
  for (let i = 0; i < r.seqIds.length; i++) {
    const entry: SampledToken = { seqId: r.seqIds[i], tokenId: r.tokenIds[i] };
    const count = r.topCounts[i];
    if (count >= 0) {
      entry.logprob = r.logprobs[i];
      const tops: TopLogprob[] = [];
      for (let j = 0; j < count; j++, top++) tops.push({ tokenId: r.topIds[top], logprob: r.topLogprobs[top] });
      entry.topLogprobs = tops;
    }
    const logits = r.logits[i];
    if (logits) entry.logits = logits;
    sampled.push(entry);
  }
  if (r.hostPrepareUs !== undefined && r.hostReadbackUs !== undefined) return { sampled, hostTiming: { prepareUs: r.hostPrepareUs, readbackUs: r.hostReadbackUs } };
  return { sampled };
}
