import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNode, type RunningNode } from "../../gpu-node/src/node.js";
import { chatStreamText, readSse } from "../helpers/sse.js";

// `serve --engine native` on a machine without a GPU runs the native CPU flavor (built by
// `npm test` before the tests) through the same HTTP API, scheduler and KV block manager, and must
// answer exactly as the reference engine does.
let native: RunningNode;
let reference: RunningNode;
beforeAll(async () => {
  native = await startNode({ port: 0, engine: "native", kvCacheBlocks: 256, log: () => {} });
  reference = await startNode({ port: 0, engine: "reference", kvCacheBlocks: 256, log: () => {} });
});
afterAll(async () => {
  await native?.close();
  await reference?.close();
});

const body = (extra: Record<string, unknown>) =>
  JSON.stringify({
    model: "tiny-llama-3.1",
    messages: [{ role: "user", content: "Write a haiku about GPUs." }],
    max_tokens: 16,
    temperature: 0,
    ignore_eos: true,
    ...extra,
  });

describe("serve --engine native (CPU flavor)", () => {
  it("reports the native CPU engine", async () => {
    const h = (await (await fetch(native.url + "/health")).json()) as { engine: string };
    expect(h.engine).toBe("native-cpu");
  });

  it("streams the same greedy answer as the reference engine", async () => {
    const post = (n: RunningNode, extra: Record<string, unknown>) =>
      fetch(n.url + "/v1/chat/completions", { method: "POST", headers: { "content-type": "application/json" }, body: body(extra) });
    const ref = (await (await post(reference, {})).json()) as { choices: Array<{ message: { content: string } }> };
    const nat = (await (await post(native, {})).json()) as typeof ref;
    expect(nat.choices[0]!.message.content).toBe(ref.choices[0]!.message.content);
    const events = await readSse(await post(native, { stream: true }));
    expect(events.at(-1)).toBe("[DONE]");
    expect(chatStreamText(events)).toBe(ref.choices[0]!.message.content);
  });
});
