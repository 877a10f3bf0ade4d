import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SimulatedEngine } from "../../gpu-node/src/engine/index.js";
import { startNode, type RunningNode } from "../../gpu-node/src/node.js";

// Hostile and malformed input: every one is a 4xx in the OpenAI error shape, never a 500.
let node: RunningNode;
const MODEL = "tiny-llama-3.1";

beforeAll(async () => {
  node = await startNode({
    port: 0,
    engineInstance: new SimulatedEngine({ numKvBlocks: 1024, blockSize: 16 }),
    maxBodyBytes: 64 * 1024,
    log: () => {},
  });
});
afterAll(async () => node?.close());

const msgs = [{ role: "user", content: "hi" }];
const ok = { model: MODEL, messages: msgs };

const chatCases: Array<[string, unknown, number, string | null]> = [
  ["empty body", "", 400, null],
  ["not JSON", "{model:", 400, null],
  ["JSON array", "[1,2]", 400, null],
  ["JSON string", '"hello"', 400, null],
  ["JSON null", "null", 400, null],
  ["missing model", { messages: msgs }, 400, "model"],
  ["model not a string", { model: 5, messages: msgs }, 400, "model"],
  ["missing messages", { model: MODEL }, 400, "messages"],
  ["empty messages", { model: MODEL, messages: [] }, 400, "messages"],
  ["messages not an array", { model: MODEL, messages: "hi" }, 400, "messages"],
  ["message without role", { model: MODEL, messages: [{ content: "x" }] }, 400, "messages[0].role"],
  ["unknown role", { model: MODEL, messages: [{ role: "wizard", content: "x" }] }, 400, "messages[0].role"],
  ["content a number", { model: MODEL, messages: [{ role: "user", content: 42 }] }, 400, "messages[0].content"],
  ["image part", { model: MODEL, messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] }, 400, "messages[0].content[0].type"],
  ["tool message without id", { model: MODEL, messages: [{ role: "tool", content: "x" }] }, 400, "messages[0].tool_call_id"],
  ["temperature too high", { ...ok, temperature: 3 }, 400, "temperature"],
  ["temperature a string", { ...ok, temperature: "hot" }, 400, "temperature"],
  ["negative temperature", { ...ok, temperature: -0.1 }, 400, "temperature"],
  ["top_p zero", { ...ok, top_p: 0 }, 400, "top_p"],
  ["top_p above one", { ...ok, top_p: 1.5 }, 400, "top_p"],
  ["top_k fractional", { ...ok, top_k: 2.5 }, 400, "top_k"],
  ["min_p above one", { ...ok, min_p: 2 }, 400, "min_p"],
  ["max_tokens zero", { ...ok, max_tokens: 0 }, 400, "max_tokens"],
  ["max_tokens fractional", { ...ok, max_tokens: 1.5 }, 400, "max_tokens"],
  ["max_completion_tokens negative", { ...ok, max_completion_tokens: -1 }, 400, "max_completion_tokens"],
  ["five stop strings", { ...ok, stop: ["a", "b", "c", "d", "e"] }, 400, "stop"],
  ["stop a number", { ...ok, stop: 5 }, 400, "stop"],
  ["n zero", { ...ok, n: 0 }, 400, "n"],
  ["n huge", { ...ok, n: 1000 }, 400, "n"],
  ["presence_penalty out of range", { ...ok, presence_penalty: 5 }, 400, "presence_penalty"],
  ["frequency_penalty out of range", { ...ok, frequency_penalty: -5 }, 400, "frequency_penalty"],
  ["repetition_penalty zero", { ...ok, repetition_penalty: 0 }, 400, "repetition_penalty"],
  ["top_logprobs without logprobs", { ...ok, top_logprobs: 2 }, 400, "top_logprobs"],
  ["top_logprobs above 20", { ...ok, logprobs: true, top_logprobs: 21 }, 400, "top_logprobs"],
  ["seed a string", { ...ok, seed: "abc" }, 400, "seed"],
  ["stream not boolean", { ...ok, stream: "yes" }, 400, "stream"],
  ["stream_options wrong type", { ...ok, stream_options: { include_usage: "y" } }, 400, "stream_options.include_usage"],
  ["tool with bad name", { ...ok, tools: [{ type: "function", function: { name: "bad name!" } }] }, 400, "tools[0].function.name"],
  ["tool_choice naming a missing tool", { ...ok, tools: [{ type: "function", function: { name: "f" } }], tool_choice: { type: "function", function: { name: "g" } } }, 400, "tool_choice"],
  ["tool_choice required without tools", { ...ok, tool_choice: "required" }, 400, "tool_choice"],
  ["json_schema with a keyword it cannot enforce", { ...ok, response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "string", format: "email" } } } }, 400, "response_format"],
  ["structured_outputs with two members", { ...ok, structured_outputs: { regex: "a", choice: ["b"] } }, 400, "structured_outputs"],
  ["unknown model", { ...ok, model: "nope" }, 404, "model"],
];

describe("malformed chat completion requests", () => {
  for (const [name, body, status, param] of chatCases) {
    it(`${name} → ${status}${param ? ` naming '${param}'` : ""}`, async () => {
      const res = await fetch(node.url + "/v1/chat/completions", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: typeof body === "string" ? body : JSON.stringify(body),
      });
      expect(res.status).toBe(status);
      const json = (await res.json()) as { error: { message: string; type: string; param: string | null; code: unknown } };
      expect(typeof json.error.message).toBe("string");
      expect(json.error.message.length).toBeGreaterThan(5);
      expect(typeof json.error.type).toBe("string");
      expect(json.error).toHaveProperty("code");
      if (param) expect(json.error.param).toBe(param);
    });
  }
});

describe("other malformed requests", () => {
  const cases: Array<[string, string, unknown, number]> = [
    ["completions without prompt", "/v1/completions", { model: MODEL }, 400],
    ["completions with empty token list", "/v1/completions", { model: MODEL, prompt: [] }, 400],
    ["completions with token id out of vocab", "/v1/completions", { model: MODEL, prompt: [1, 999999] }, 400],
    ["completions with negative token id", "/v1/completions", { model: MODEL, prompt: [-1] }, 400],
    ["completions with suffix", "/v1/completions", { model: MODEL, prompt: "a", suffix: "b" }, 400],
    ["completions logprobs above 5", "/v1/completions", { model: MODEL, prompt: "a", logprobs: 6 }, 400],
    ["tokenize without prompt or messages", "/tokenize", { model: MODEL }, 400],
    ["unknown route", "/v1/embeddings", { model: MODEL, input: "x" }, 404],
  ];
  for (const [name, path, body, status] of cases) {
    it(`${name} → ${status}`, async () => {
      const res = await fetch(node.url + path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      expect(res.status).toBe(status);
      const json = (await res.json()) as { error: { message: string; type: string } };
      expect(json.error.type).toBeTruthy();
    });
  }

  it("a body over the limit → 413", async () => {
    const big = JSON.stringify({ ...ok, messages: [{ role: "user", content: "x".repeat(100 * 1024) }] });
    const res = await fetch(node.url + "/v1/chat/completions", { method: "POST", headers: { "content-type": "application/json" }, body: big });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: { type: string } }).error.type).toBe("invalid_request_error");
  });

  it("unknown fields are ignored", async () => {
    const res = await fetch(node.url + "/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...ok, max_tokens: 2, frobnicate: true, metadata: { a: 1 }, max_tokens_extra: null }),
    });
    expect(res.status).toBe(200);
  });

  it("nulls mean unset, as OpenAI clients send them", async () => {
    const res = await fetch(node.url + "/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...ok, max_tokens: 2, temperature: null, stop: null, tools: null, seed: null }),
    });
    expect(res.status).toBe(200);
  });
});
