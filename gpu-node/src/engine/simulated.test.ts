import { describe, expect, it } from "vitest";
import { DEFAULT_TOKEN_CYCLE, SimulatedEngine } from "./simulated.js";
import type { SampleRequest } from "./types.js";

const req = (outputIndex: number, logprobs = -1): SampleRequest => ({
  params: { temperature: 1, topK: 0, topP: 1, minP: 0, presencePenalty: 0, frequencyPenalty: 0, repetitionPenalty: 1, seed: 3, logprobs },
  outputIndex,
});

describe("SimulatedEngine", () => {
  it("returns the cycle by output index, only for sampled sequences, in batch order", async () => {
    const engine = new SimulatedEngine({ numKvBlocks: 8, blockSize: 4, tokenCycle: [100, 200, 300] });
    expect(engine.kind).toBe("simulated");
    const ok = await engine.step({
      seqs: [
        { seqId: 5, tokenIds: [1, 2, 3], startPos: 0, blockTable: [0], sample: req(4) },
        { seqId: 6, tokenIds: [1, 2, 3, 4, 5], startPos: 0, blockTable: [1, 2], sample: null },
        { seqId: 7, tokenIds: [9], startPos: 7, blockTable: [3, 4], sample: req(0) },
      ],
    });
    expect(ok.sampled).toEqual([
      { seqId: 5, tokenId: 200 },
      { seqId: 7, tokenId: 100 },
    ]);
  });

  it("defaults to ordinary Llama 3 text tokens and ends with EOS after eosAfter tokens", async () => {
    const engine = new SimulatedEngine({ numKvBlocks: 4, blockSize: 16, eosAfter: 3 });
    const tokens: number[] = [];
    for (let i = 0; i < 5; i++) {
      const { sampled } = await engine.step({ seqs: [{ seqId: 1, tokenIds: [791], startPos: i, blockTable: [0], sample: req(i) }] });
      tokens.push(sampled[0].tokenId);
    }
    expect(tokens).toEqual([...DEFAULT_TOKEN_CYCLE.slice(0, 3), 128009, 128009]);
  });

  it("returns certain logprobs when asked", async () => {
    const engine = new SimulatedEngine({ numKvBlocks: 4, blockSize: 16 });
    const { sampled } = await engine.step({
      seqs: [
        { seqId: 1, tokenIds: [1], startPos: 0, blockTable: [0], sample: req(0, 2) },
        { seqId: 2, tokenIds: [1], startPos: 0, blockTable: [1], sample: req(0, 0) },
      ],
    });
    expect(sampled[0]).toEqual({ seqId: 1, tokenId: 791, logprob: 0, topLogprobs: [{ tokenId: 791, logprob: 0 }] });
    expect(sampled[1]).toEqual({ seqId: 2, tokenId: 791, logprob: 0, topLogprobs: [] });
  });

  it("validates block tables like the real engine", async () => {
    const engine = new SimulatedEngine({ numKvBlocks: 4, blockSize: 4 });
    const seq = { seqId: 1, tokenIds: [1, 2, 3, 4, 5], startPos: 0, sample: null };
    await expect(engine.step({ seqs: [{ ...seq, blockTable: [0] }] })).rejects.toThrow(/block table has 1 blocks/);
    await expect(engine.step({ seqs: [{ ...seq, blockTable: [0, 4] }] })).rejects.toThrow(/block id 4/);
    await expect(engine.step({ seqs: [{ ...seq, tokenIds: [128256], blockTable: [0] }] })).rejects.toThrow(/vocabulary/);
    // two sequences writing the same slot (block 1, slot 0)
    await expect(
      engine.step({ seqs: [{ ...seq, blockTable: [0, 1] }, { ...seq, seqId: 2, tokenIds: [7], startPos: 4, blockTable: [2, 1] }] }),
    ).rejects.toThrow(/writes KV slot/);
  });

  it("waits stepDelayMs per step", async () => {
    const engine = new SimulatedEngine({ numKvBlocks: 4, blockSize: 4, stepDelayMs: 30 });
    const t0 = performance.now();
    await engine.step({ seqs: [{ seqId: 1, tokenIds: [1], startPos: 0, blockTable: [0], sample: req(0) }] });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(25);
    await engine.close();
    await expect(engine.step({ seqs: [] })).rejects.toThrow(/closed/);
  });
});
