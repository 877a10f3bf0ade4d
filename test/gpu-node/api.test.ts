import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Template } from "@huggingface/jinja";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNode, type RunningNode } from "../../gpu-node/src/node.js";
import { chatStreamText, parseSse, readSse, waitFor } from "../helpers/sse.js";

// A gpu-node serving the tiny random Llama 3.1 model with the reference engine, over real HTTP on loopback.
let node: RunningNode;
const MODEL = "tiny-llama-3.1";

beforeAll(async () => {
  node = await startNode({ port: 0, kvCacheBlocks: 1024, maxNumBatchedTokens: 256, log: () => {} });
});
afterAll(async () => {
  await node?.close();
});

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(node.url + path, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });

const chat = (extra: Record<string, unknown> = {}) => ({
  model: MODEL,
  messages: [
    { role: "system", content: "You are terse." },
    { role: "user", content: "Say hello in three languages." },
  ],
  ...extra,
});

async function health() {
  return (await (await fetch(node.url + "/health")).json()) as {
    running: number;
    waiting: number;
    kv_blocks_used: number;
    kv_blocks_total: number;
  };
}

describe("gpu-node HTTP API (tiny model, reference engine)", () => {
  it("lists the served model", async () => {
    const res = await fetch(node.url + "/v1/models");
    expect(res.status).toBe(200);
    const body = (await res.json()) as { data: Array<{ id: string; max_model_len: number }> };
    expect(body.data.map((m) => m.id)).toEqual([MODEL]);
    expect(body.data[0]!.max_model_len).toBeGreaterThan(1000);
  });

  it("prompt tokens equal the official Llama 3.1 template rendered and tokenized", async () => {
    const messages = chat().messages;
    const official = readFileSync(fileURLToPath(new URL("../../gpu-node/assets/llama-3.1-chat-template.jinja", import.meta.url)), "utf8");
    const rendered = new Template(official).render({ messages, bos_token: "<|begin_of_text|>", add_generation_prompt: true });
    expect(rendered.startsWith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023")).toBe(true);
    expect(rendered.endsWith("<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")).toBe(true);
    const viaPrompt = (await (await post("/tokenize", { model: MODEL, prompt: rendered, add_special_tokens: false })).json()) as { tokens: number[] };
    const viaChat = (await (await post("/tokenize", { model: MODEL, messages })).json()) as { tokens: number[]; count: number };
    expect(viaChat.tokens).toEqual(viaPrompt.tokens);
    expect(viaChat.tokens[0]).toBe(128000);
    expect(viaChat.tokens.filter((t) => t === 128000)).toHaveLength(1); // no double BOS
    const res = await post("/v1/chat/completions", chat({ max_tokens: 3, temperature: 0 }));
    const body = (await res.json()) as { usage: { prompt_tokens: number } };
    expect(body.usage.prompt_tokens).toBe(viaChat.count);
  });

  it("answers a greedy chat completion with usage and finish_reason length", async () => {
    const res = await post("/v1/chat/completions", chat({ max_tokens: 6, temperature: 0, ignore_eos: true }));
    expect(res.status).toBe(200);
    expect(res.headers.get("x-request-id")).toBeTruthy();
    const body = (await res.json()) as {
      object: string;
      choices: Array<{ message: { role: string; content: string }; finish_reason: string }>;
      usage: { completion_tokens: number; total_tokens: number; prompt_tokens: number };
    };
    expect(body.object).toBe("chat.completion");
    expect(body.choices[0]!.message.role).toBe("assistant");
    expect(typeof body.choices[0]!.message.content).toBe("string");
    expect(body.choices[0]!.finish_reason).toBe("length");
    expect(body.usage.completion_tokens).toBe(6);
    expect(body.usage.total_tokens).toBe(body.usage.prompt_tokens + 6);
    // Greedy is deterministic.
    const again = (await (await post("/v1/chat/completions", chat({ max_tokens: 6, temperature: 0, ignore_eos: true }))).json()) as typeof body;
    expect(again.choices[0]!.message.content).toBe(body.choices[0]!.message.content);
  });

  it("streams exactly the non-streamed text for the same seed, with a usage chunk and [DONE]", async () => {
    const params = { max_tokens: 12, temperature: 1, top_p: 0.95, seed: 1234, ignore_eos: true };
    const full = (await (await post("/v1/chat/completions", chat(params))).json()) as {
      choices: Array<{ message: { content: string } }>;
      usage: { completion_tokens: number; prompt_tokens: number };
    };
    const res = await post("/v1/chat/completions", chat({ ...params, stream: true, stream_options: { include_usage: true } }));
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const events = await readSse(res);
    expect(events.at(-1)).toBe("[DONE]");
    const usageChunk = events.at(-2) as { choices: unknown[]; usage: { completion_tokens: number; prompt_tokens: number } };
    expect(usageChunk.choices).toEqual([]);
    expect(usageChunk.usage).toMatchObject({ completion_tokens: 12, prompt_tokens: full.usage.prompt_tokens });
    expect(chatStreamText(events)).toBe(full.choices[0]!.message.content);
    const first = events[0] as { choices: Array<{ delta: { role?: string } }> };
    expect(first.choices[0]!.delta.role).toBe("assistant");
    const finishes = events.flatMap((e) => (e === "[DONE]" ? [] : ((e as { choices: Array<{ finish_reason: string | null }> }).choices ?? []).map((c) => c.finish_reason)));
    expect(finishes.filter((f) => f !== null)).toEqual(["length"]);
  });

  it("sends no usage chunk unless asked", async () => {
    const events = await readSse(await post("/v1/chat/completions", chat({ max_tokens: 3, stream: true })));
    expect(events.at(-1)).toBe("[DONE]");
    expect(events.some((e) => e !== "[DONE]" && (e as { usage?: unknown }).usage)).toBe(false);
  });

  it("generates n choices with different seeds and sums usage", async () => {
    const res = await post("/v1/chat/completions", chat({ max_tokens: 8, n: 3, temperature: 1, seed: 7, ignore_eos: true }));
    const body = (await res.json()) as { choices: Array<{ index: number; message: { content: string } }>; usage: { completion_tokens: number } };
    expect(body.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    expect(body.usage.completion_tokens).toBe(24);
    expect(new Set(body.choices.map((c) => c.message.content)).size).toBeGreaterThan(1);
  });

  it("returns logprobs with top_logprobs", async () => {
    const res = await post("/v1/chat/completions", chat({ max_tokens: 4, logprobs: true, top_logprobs: 3, temperature: 0, ignore_eos: true }));
    const body = (await res.json()) as {
      choices: Array<{ logprobs: { content: Array<{ token: string; logprob: number; bytes: number[]; top_logprobs: Array<{ logprob: number }> }> } }>;
    };
    const content = body.choices[0]!.logprobs.content;
    expect(content).toHaveLength(4);
    for (const t of content) {
      expect(t.logprob).toBeLessThanOrEqual(0);
      expect(t.top_logprobs).toHaveLength(3);
      // Greedy: the chosen token is the most likely one.
      expect(t.logprob).toBeCloseTo(t.top_logprobs[0]!.logprob, 5);
      expect(t.top_logprobs[0]!.logprob).toBeGreaterThanOrEqual(t.top_logprobs[2]!.logprob);
    }
  });

  it("serves legacy completions from text and from token ids", async () => {
    const a = (await (await post("/v1/completions", { model: MODEL, prompt: "The capital of France is", max_tokens: 5, temperature: 0, ignore_eos: true })).json()) as {
      object: string;
      choices: Array<{ text: string; finish_reason: string }>;
      usage: { prompt_tokens: number };
    };
    expect(a.object).toBe("text_completion");
    expect(a.choices[0]!.finish_reason).toBe("length");
    const tok = (await (await post("/tokenize", { model: MODEL, prompt: "The capital of France is" })).json()) as { tokens: number[] };
    expect(tok.tokens[0]).toBe(128000);
    expect(a.usage.prompt_tokens).toBe(tok.tokens.length);
    const b = (await (await post("/v1/completions", { model: MODEL, prompt: tok.tokens, max_tokens: 5, temperature: 0, ignore_eos: true })).json()) as typeof a;
    expect(b.choices[0]!.text).toBe(a.choices[0]!.text);
    const events = await readSse(await post("/v1/completions", { model: MODEL, prompt: tok.tokens, max_tokens: 5, temperature: 0, ignore_eos: true, stream: true }));
    expect(events.at(-1)).toBe("[DONE]");
    const streamed = events.filter((e) => e !== "[DONE]").map((e) => (e as { choices: Array<{ text: string }> }).choices[0]?.text ?? "").join("");
    expect(streamed).toBe(a.choices[0]!.text);
  });

  it("rejects a prompt plus max_tokens beyond the context with context_length_exceeded", async () => {
    const res = await post("/v1/chat/completions", chat({ max_tokens: node.ctx.maxModelLen }));
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; param: string; type: string } };
    expect(body.error).toMatchObject({ code: "context_length_exceeded", param: "max_tokens", type: "invalid_request_error" });
  });

  it("caps max_tokens at 4096 when it fits the context", async () => {
    const within = node.ctx.maxModelLen - 100;
    expect(within).toBeGreaterThan(4096);
    const res = await post("/v1/completions", { model: MODEL, prompt: "hi", max_tokens: within, stream: true, ignore_eos: true });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    await reader.read();
    await reader.cancel();
    const big = await post("/v1/completions", { model: MODEL, prompt: "hi", max_tokens: node.ctx.maxModelLen + 1 });
    expect(big.status).toBe(400);
    expect(((await big.json()) as { error: { code: string } }).error.code).toBe("context_length_exceeded");
  });

  it("answers an unknown model with 404 model_not_found", async () => {
    const res = await post("/v1/chat/completions", chat({ model: "gpt-4" }));
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string; param: string } }).error).toMatchObject({ code: "model_not_found", param: "model" });
  });

  it("echoes a given x-request-id", async () => {
    const res = await post("/v1/chat/completions", chat({ max_tokens: 1 }), { "x-request-id": "req-abc.123" });
    expect(res.headers.get("x-request-id")).toBe("req-abc.123");
    await res.body?.cancel();
  });

  it("frees a stream's KV blocks within a step when its client disconnects", async () => {
    await waitFor(async () => (await health()).running + (await health()).waiting === 0, 5000, "earlier requests to finish");
    const ac = new AbortController();
    const res = await fetch(node.url + "/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(chat({ max_tokens: 4000, ignore_eos: true, stream: true })),
      signal: ac.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    await reader.read();
    expect((await health()).running).toBe(1);
    expect((await health()).kv_blocks_used).toBeGreaterThan(0);
    ac.abort();
    await waitFor(async () => {
      const h = await health();
      return h.running === 0 && h.waiting === 0 && h.kv_blocks_used === 0;
    }, 5000, "the aborted request to be freed");
  });

  it("finishes 256 concurrent streams, each with [DONE], and leaks no blocks", async () => {
    const results = await Promise.all(
      Array.from({ length: 256 }, (_, i) =>
        post("/v1/chat/completions", {
          model: MODEL,
          messages: [{ role: "user", content: `Request number ${i % 7}` }],
          max_tokens: 3,
          ignore_eos: true,
          stream: true,
        }).then(async (r) => ({ status: r.status, events: parseSse(await r.text()) })),
      ),
    );
    for (const r of results) {
      expect(r.status).toBe(200);
      expect(r.events.at(-1)).toBe("[DONE]");
    }
    const h = await health();
    expect(h.running + h.waiting).toBe(0);
    expect(h.kv_blocks_used).toBe(0);
  });

  it("exposes Prometheus metrics under vLLM's names and health with KV usage", async () => {
    const text = await (await fetch(node.url + "/metrics")).text();
    for (const name of [
      "vllm:num_requests_running",
      "vllm:num_requests_waiting",
      "vllm:kv_cache_usage_perc",
      "vllm:prompt_tokens_total",
      "vllm:generation_tokens_total",
      "vllm:time_to_first_token_seconds_bucket",
      "vllm:inter_token_latency_seconds_bucket",
      "vllm:e2e_request_latency_seconds_bucket",
      "seventy:overlapped_steps",
    ]) {
      expect(text).toContain(name);
    }
    // The reference engine does not overlap steps; the scheduler's own host time is measured per step.
    expect(text).toMatch(/seventy:step_host_seconds_count\{[^}]*part="schedule"[^}]*\} [1-9]/);
    expect(text).toMatch(/seventy:step_host_seconds_count\{[^}]*part="handoff"[^}]*\} [1-9]/);
    expect(text).not.toContain('part="engine"');
    const h = (await health()) as unknown as Record<string, unknown>;
    expect(h).toMatchObject({ model: MODEL, engine: "reference" });
    expect(h).toHaveProperty("prefix_cache_hit_rate");
  });
});
