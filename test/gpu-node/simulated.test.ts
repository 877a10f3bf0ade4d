import { afterEach, describe, expect, it } from "vitest";
import { SimulatedEngine } from "../../gpu-node/src/engine/index.js";
import { LlamaTokenizer, defaultTinyModelDir } from "../../gpu-node/src/model/index.js";
import { startNode, type RunningNode } from "../../gpu-node/src/node.js";
import { chatStreamText, readSse } from "../helpers/sse.js";

// A simulated engine emits a chosen token sequence, so the text path (detokenizer, stop strings,
// SSE framing, admission) can be checked against known text.
const MODEL = "tiny-llama-3.1";
let node: RunningNode | undefined;
afterEach(async () => {
  await node?.close();
  node = undefined;
});

async function nodeEmitting(text: string, extra: { stepDelayMs?: number; maxNumSeqs?: number; maxQueue?: number } = {}) {
  const tokenizer = await LlamaTokenizer.fromDir(defaultTinyModelDir());
  const tokenCycle = tokenizer.encode(text, { addSpecialTokens: false });
  node = await startNode({
    port: 0,
    engineInstance: new SimulatedEngine({ numKvBlocks: 512, blockSize: 16, tokenCycle, stepDelayMs: extra.stepDelayMs }),
    maxNumSeqs: extra.maxNumSeqs,
    maxQueue: extra.maxQueue,
    log: () => {},
  });
  return { node, tokens: tokenCycle.length };
}

const post = (body: unknown) =>
  fetch(node!.url + "/v1/chat/completions", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

describe("text path", () => {
  it("streams emoji and CJK intact, never as U+FFFD, equal to the non-streamed text", async () => {
    const text = "Hi 😀👍🏽! 中文字符测试 日本語 👨‍👩‍👧‍👦.";
    const { tokens } = await nodeEmitting(text);
    const body = { model: MODEL, messages: [{ role: "user", content: "x" }], max_tokens: tokens, ignore_eos: true };
    const events = await readSse(await post({ ...body, stream: true }));
    for (const ev of events) {
      if (ev === "[DONE]") continue;
      for (const c of (ev as { choices: Array<{ delta: { content?: string } }> }).choices) expect(c.delta.content ?? "").not.toContain("\uFFFD");
    }
    expect(chatStreamText(events)).toBe(text);
    const full = (await (await post(body)).json()) as { choices: Array<{ message: { content: string } }> };
    expect(full.choices[0]!.message.content).toBe(text);
  });

  it("cuts stop strings matched across token boundaries, stream and non-stream alike", async () => {
    const text = "The quick brown fox jumps over the lazy dog";
    const { tokens } = await nodeEmitting(text);
    const body = { model: MODEL, messages: [{ role: "user", content: "x" }], max_tokens: tokens * 2, ignore_eos: true, stop: ["wn fo", "zzz"] };
    const full = (await (await post(body)).json()) as { choices: Array<{ message: { content: string }; finish_reason: string }> };
    expect(full.choices[0]!.message.content).toBe("The quick bro");
    expect(full.choices[0]!.finish_reason).toBe("stop");
    const events = await readSse(await post({ ...body, stream: true }));
    expect(chatStreamText(events)).toBe("The quick bro");
    expect(events.at(-1)).toBe("[DONE]");
  });

  it("the model's end-of-turn token ends the answer with finish_reason stop", async () => {
    const { tokens } = await nodeEmitting("Hello there<|eot_id|>never shown");
    const full = (await (await post({ model: MODEL, messages: [{ role: "user", content: "x" }], max_tokens: tokens })).json()) as {
      choices: Array<{ message: { content: string }; finish_reason: string }>;
      usage: { completion_tokens: number };
    };
    expect(full.choices[0]!.message.content).toBe("Hello there");
    expect(full.choices[0]!.finish_reason).toBe("stop");
  });

  it("a full admission queue answers 503 with Retry-After", async () => {
    await nodeEmitting("slow words here", { stepDelayMs: 20, maxNumSeqs: 1, maxQueue: 1 });
    const body = { model: MODEL, messages: [{ role: "user", content: "x" }], max_tokens: 50, ignore_eos: true };
    const first = post(body);
    // Let the first one be admitted to the running batch, then fill the queue.
    await new Promise((r) => setTimeout(r, 50));
    const second = post(body);
    await new Promise((r) => setTimeout(r, 20));
    const third = await post(body);
    expect(third.status).toBe(503);
    expect(third.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(((await third.json()) as { error: { code: string } }).error.code).toBe("queue_full");
    expect((await first).status).toBe(200);
    expect((await second).status).toBe(200);
  });

  it("parses a Llama 3.1 JSON tool call into tool_calls", async () => {
    const { tokens } = await nodeEmitting('\n\n{"name": "get_weather", "parameters": {"city": "Paris"}}<|eom_id|>');
    const body = {
      model: MODEL,
      messages: [{ role: "user", content: "Weather in Paris?" }],
      max_tokens: tokens,
      tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } } }],
    };
    const full = (await (await post(body)).json()) as {
      choices: Array<{ message: { content: string | null; tool_calls: Array<{ function: { name: string; arguments: string } }> }; finish_reason: string }>;
    };
    expect(full.choices[0]!.finish_reason).toBe("tool_calls");
    expect(full.choices[0]!.message.content).toBeNull();
    // The arguments are the generated text, unchanged.
    expect(full.choices[0]!.message.tool_calls[0]!.function).toEqual({ name: "get_weather", arguments: '{"city": "Paris"}' });
    const events = await readSse(await post({ ...body, stream: true }));
    const calls = events.flatMap((e) =>
      e === "[DONE]"
        ? []
        : (e as { choices: Array<{ delta: { tool_calls?: Array<{ function: { name?: string; arguments: string } }> } }> }).choices.flatMap(
            (c) => c.delta.tool_calls ?? [],
          ),
    );
    expect(calls[0]!.function.name).toBe("get_weather");
    expect(calls.length).toBeGreaterThan(2); // "auto": the call is streamed as it is generated, not held to the end
    expect(calls.map((c) => c.function.arguments).join("")).toBe('{"city": "Paris"}');
    expect(events.at(-1)).toBe("[DONE]");
  });
});

describe("graceful drain", () => {
  it("refuses new requests with 503, finishes running streams, then closes", async () => {
    await nodeEmitting("one two three four five six seven eight nine ten", { stepDelayMs: 10 });
    const running = post({ model: MODEL, messages: [{ role: "user", content: "x" }], max_tokens: 30, ignore_eos: true, stream: true });
    const res = await running;
    expect(res.status).toBe(200);
    const drained = node!.drain(10_000);
    const refused = await post({ model: MODEL, messages: [{ role: "user", content: "x" }], max_tokens: 2 });
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBeTruthy();
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("node_draining");
    const events = await readSse(res);
    expect(events.at(-1)).toBe("[DONE]");
    await drained;
    await expect(fetch(node!.url + "/health")).rejects.toThrow();
  });
});
