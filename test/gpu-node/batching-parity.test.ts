import { GREEDY_SAMPLING } from "../../gpu-node/src/engine/sampling.js";
import { beforeAll, describe, expect, it } from "vitest";
import { ReferenceEngine } from "../../gpu-node/src/engine/index.js";
import type { SamplingParams } from "../../gpu-node/src/engine/types.js";
import { defaultTinyModelDir, openModelDir, type ModelDir } from "../../gpu-node/src/model/index.js";
import { Scheduler, type SeqEvent } from "../../gpu-node/src/scheduler/index.js";

// Continuous batching must not change answers: many requests at once, in small prefill chunks,
// sharing prefix-cached blocks and preempted when KV runs out, give exactly the greedy tokens
// each request gets when it runs alone in one unchunked step with no cache.
// (The engine itself is checked against an independent plain forward pass in its own tests.)

let model: ModelDir;
let weights: Map<string, Float32Array>;

beforeAll(async () => {
  model = await openModelDir(defaultTinyModelDir());
  weights = await model.loadTensorsF32();
});

const greedy: SamplingParams = { ...GREEDY_SAMPLING };

function run(scheduler: Scheduler, id: string, prompt: number[], maxTokens: number): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const out: number[] = [];
    scheduler.add({ requestId: id, promptTokenIds: prompt, params: greedy, maxTokens, stopTokenIds: [] }, (ev: SeqEvent) => {
      if (ev.type === "token") out.push(ev.tokenId);
      else if (ev.reason === "length") resolve(out);
      else reject(new Error(`${id} finished with ${ev.reason}: ${ev.error?.message}`));
    });
  });
}

describe("batched, chunked, prefix-cached and preempted execution", () => {
  it("gives the same greedy tokens as unbatched runs", async () => {
    const tok = model.tokenizer;
    const shared = tok.encodeChat([{ role: "system", content: "You are a helpful assistant that answers in one short sentence." }, { role: "user", content: "Hi" }], {
      addGenerationPrompt: false,
    });
    const prompts = [
      [...shared, ...tok.encode("What is the capital of France?", { addSpecialTokens: false })],
      [...shared, ...tok.encode("Name a prime number.", { addSpecialTokens: false })],
      tok.encode("Completely different prompt without the shared prefix.", { addSpecialTokens: true }),
      [...shared, ...tok.encode("What is the capital of France? Explain.", { addSpecialTokens: false })],
      shared.slice(0, 33),
    ];
    const maxTokens = 12;

    // Alone: one request at a time, whole prompt in one step, no prefix cache.
    const alone: number[][] = [];
    {
      const engine = new ReferenceEngine(model.config, weights, { numKvBlocks: 64, blockSize: 16 });
      const s = new Scheduler(engine, { maxNumBatchedTokens: 4096, enablePrefixCaching: false });
      for (const [i, p] of prompts.entries()) alone.push(await run(s, `alone-${i}`, p, maxTokens));
      await s.close();
    }

    // Together: 5-token prefill chunks, prefix caching on, block size 4 and a pool small enough to preempt.
    const engine = new ReferenceEngine(model.config, weights, { numKvBlocks: 20, blockSize: 4 });
    const s = new Scheduler(engine, { maxNumBatchedTokens: 5, maxNumSeqs: 4, enablePrefixCaching: true });
    // Warm the prefix cache with the shared prefix first, then run everything at once.
    await run(s, "warm", prompts[0]!, 2);
    const together = await Promise.all(prompts.map((p, i) => run(s, `together-${i}`, p, maxTokens)));
    const stats = s.stats();
    await s.close();

    expect(together).toEqual(alone);
    expect(stats.prefixCacheHitRate).toBeGreaterThan(0);
    expect(stats.numPreemptions).toBeGreaterThan(0);
    expect(stats.kvBlocksUsed).toBe(0);
  });
});
