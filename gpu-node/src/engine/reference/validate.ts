import { checkSamplingParams } from "../sampling.js";
import type { StepBatch } from "../types.js";

export interface StepLimits {
  numKvBlocks: number;
  blockSize: number;
  /** Token ids must be below this; omitted: not checked. */
  vocabSize?: number;
}

/**
 * Checks a batch against the engine's KV geometry before anything is written, so a scheduler bug
 * surfaces as a clear Error instead of a silent read of another sequence's cache. Checks: ids,
 * positions and token ids are integers in range; every block table covers
 * [0, startPos + tokenIds.length) with block ids in [0, numKvBlocks); no seqId repeats; no two
 * tokens of the step write the same cache slot; sampling parameters are in range.
 */
export function validateStepBatch(batch: StepBatch, limits: StepLimits): void {
  const { numKvBlocks, blockSize, vocabSize } = limits;
  if (!batch || !Array.isArray(batch.seqs)) throw new Error("step batch must have a seqs array");
  const seqIds = new Set<number>();
  const written = new Set<number>();
  for (const s of batch.seqs) {
    const where = `seq ${s.seqId}`;
    if (seqIds.has(s.seqId)) throw new Error(`${where} appears twice in one step`);
    seqIds.add(s.seqId);
    if (!Array.isArray(s.tokenIds) || s.tokenIds.length === 0) throw new Error(`${where}: tokenIds is empty`);
    if (!Number.isInteger(s.startPos) || s.startPos < 0) {
      throw new Error(`${where}: startPos must be a non-negative integer, got ${s.startPos}`);
    }
    for (const t of s.tokenIds) {
      if (!Number.isInteger(t) || t < 0 || (vocabSize !== undefined && t >= vocabSize)) {
        throw new Error(`${where}: token id ${t} is outside the vocabulary [0, ${vocabSize ?? "∞"})`);
      }
    }
    const end = s.startPos + s.tokenIds.length;
    const needed = Math.ceil(end / blockSize);
    if (!Array.isArray(s.blockTable) || s.blockTable.length < needed) {
      throw new Error(
        `${where}: block table has ${s.blockTable?.length ?? 0} blocks, positions [0, ${end}) need ${needed} of size ${blockSize}`,
      );
    }
    for (const b of s.blockTable) {
      if (!Number.isInteger(b) || b < 0 || b >= numKvBlocks) {
        throw new Error(`${where}: block id ${b} is outside [0, ${numKvBlocks})`);
      }
    }
    if (s.sample) {
      checkSamplingParams(s.sample.params);
      const i = s.sample.outputIndex;
      if (!Number.isSafeInteger(i) || i < 0) throw new Error(`${where}: outputIndex must be a non-negative integer, got ${i}`);
    }
    for (let p = s.startPos; p < end; p++) {
      const slot = s.blockTable[Math.floor(p / blockSize)] * blockSize + (p % blockSize);
      if (written.has(slot)) {
        throw new Error(`${where}: position ${p} writes KV slot ${slot}, which another token of this step also writes`);
      }
      written.add(slot);
    }
  }
}
