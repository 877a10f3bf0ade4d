import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SimulatedEngine } from "../../gpu-node/src/engine/index.js";
import { startNode, type RunningNode } from "../../gpu-node/src/node.js";

// A client that stops reading must not make the node generate into memory: its stream is paused
// (write() backpressure), and cancelled once it has been behind for the stall bound, freeing its KV.
const MODEL = "tiny-llama-3.1";
let node: RunningNode;

beforeAll(async () => {
  node = await startNode({
    port: 0,
    engineInstance: new SimulatedEngine({ numKvBlocks: 4096, blockSize: 16 }),
    streamStallMs: 500,
    log: () => {},
  });
});
afterAll(async () => node?.close());

/** Sends a streaming request on a raw socket and never reads the answer. */
function nonReader(body: string): Promise<Socket> {
  const { port } = new URL(node.url);
  return new Promise((resolve, reject) => {
    const s = connect(Number(port), "127.0.0.1", () => {
      s.pause();
      s.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      resolve(s);
    });
    s.on("error", reject);
  });
}

async function generatedTokens(): Promise<number> {
  const m = await node.ctx.metrics.generationTokens.get();
  return m.values.reduce((a, v) => a + v.value, 0);
}

describe("backpressure", () => {
  it("pauses streams whose client stops reading, then cancels them and frees their KV blocks", async () => {
    const maxTokens = 4096;
    const n = 16;
    const body = JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "hi" }], n, max_tokens: maxTokens, stream: true, ignore_eos: true });
    const rss0 = process.memoryUsage().rss;
    const sockets = await Promise.all(Array.from({ length: 6 }, () => nonReader(body)));
    let peakRss = rss0;
    const deadline = Date.now() + 30_000;
    await new Promise((r) => setTimeout(r, 200));
    for (;;) {
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
      const s = node.ctx.scheduler.stats();
      if (s.numRunning === 0 && s.numWaiting === 0) break;
      if (Date.now() > deadline) throw new Error(`still running: ${JSON.stringify(s)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const generated = await generatedTokens();
    console.log(
      `backpressure: 6 non-reading streams of ${n} × ${maxTokens} tokens generated ${generated} of ${6 * n * maxTokens} before being cancelled; RSS +${((peakRss - rss0) / 2 ** 20).toFixed(0)} MiB at peak`,
    );
    // Every stream was stopped well before its end, and nothing holds KV blocks.
    expect(generated).toBeLessThan(6 * n * maxTokens * 0.5);
    expect(node.ctx.scheduler.stats().kvBlocksUsed).toBe(0);
    for (const s of sockets) s.destroy();
  });

  it("a slow reader that keeps reading gets its whole answer", async () => {
    const res = await fetch(node.url + "/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "hi" }], n: 4, max_tokens: 2048, stream: true, ignore_eos: true }),
    });
    const reader = res.body!.getReader();
    let text = "";
    const dec = new TextDecoder();
    for (let i = 0; ; i++) {
      const { done, value } = await reader.read();
      if (done) break;
      text += dec.decode(value, { stream: true });
      // Stall briefly now and then (well under the stall bound), so the node has to pause and resume.
      if (i % 50 === 0) await new Promise((r) => setTimeout(r, 100));
    }
    expect(text.endsWith("data: [DONE]\n\n")).toBe(true);
    expect(text.split('"finish_reason":"length"').length - 1).toBe(4);
  });
});
