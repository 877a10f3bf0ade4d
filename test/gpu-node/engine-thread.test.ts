import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNode, type RunningNode } from "../../gpu-node/src/node.js";

// The reference engine runs on its own thread: while a long prompt is prefilled in one big step,
// the node still answers /health at once (and so keeps its edge heartbeats going).
let node: RunningNode;
beforeAll(async () => {
  node = await startNode({ port: 0, kvCacheBlocks: 1024, maxNumBatchedTokens: 4096, log: () => {} });
});
afterAll(async () => node?.close());

describe("reference engine thread", () => {
  it("keeps the event loop free during a long prefill step", async () => {
    const prompt = Array.from({ length: 3000 }, (_, i) => 1000 + (i % 2000));
    const t0 = performance.now();
    const completion = fetch(node.url + "/v1/completions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "tiny-llama-3.1", prompt, max_tokens: 1 }),
    }).then(async (r) => ({ status: r.status, at: performance.now() - t0, body: await r.text() }));
    // Wait until the request is in the engine.
    for (;;) {
      const h = (await (await fetch(node.url + "/health")).json()) as { running: number };
      if (h.running === 1) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    const h0 = performance.now();
    const health = await fetch(node.url + "/health");
    const healthMs = performance.now() - h0;
    const healthAt = performance.now() - t0;
    const done = await completion;
    expect(health.status).toBe(200);
    expect(done.status).toBe(200);
    // /health was answered while the prefill step was still running, and took a small part of it.
    expect(healthAt).toBeLessThan(done.at);
    expect(healthMs).toBeLessThan((done.at - healthAt) / 2);
  });
});
