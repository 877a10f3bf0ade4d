import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SimulatedEngine } from "../../gpu-node/src/engine/index.js";
import { LlamaTokenizer, defaultTinyModelDir } from "../../gpu-node/src/model/index.js";
import { startNode, type RunningNode } from "../../gpu-node/src/node.js";
import { checkEvents, checkResponse, parseResponseEvents } from "../helpers/responses-shapes.js";
import { waitFor } from "../helpers/sse.js";

// POST /v1/responses on a gpu-node (tiny model, reference engine; a simulated engine for tool calls),
// over real HTTP on loopback.
const MODEL = "tiny-llama-3.1";
let node: RunningNode;

beforeAll(async () => {
  node = await startNode({ port: 0, kvCacheBlocks: 1024, maxNumBatchedTokens: 256, log: () => {} });
});
afterAll(async () => {
  await node?.close();
});

const post = (path: string, body: unknown, base = node.url, init: RequestInit = {}) =>
  fetch(base + path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), ...init });

type Resp = {
  id: string;
  status: string;
  incomplete_details: { reason: string } | null;
  output: Array<{ type: string; content?: Array<{ text: string }>; name?: string; arguments?: string; call_id?: string }>;
  usage: { input_tokens: number; output_tokens: number; total_tokens: number; input_tokens_details: { cached_tokens: number } };
  metadata: Record<string, string> | null;
  user?: string;
  previous_response_id: string | null;
};
const textOf = (r: Resp) => r.output.flatMap((i) => i.content ?? []).map((c) => c.text).join("");

async function create(body: Record<string, unknown>, base = node.url): Promise<Resp> {
  const res = await post("/v1/responses", { model: MODEL, ...body }, base);
  expect(res.status, await res.clone().text()).toBe(200);
  const json = (await res.json()) as Resp;
  checkResponse(json);
  return json;
}

async function stream(body: Record<string, unknown>, base = node.url) {
  const res = await post("/v1/responses", { model: MODEL, ...body, stream: true }, base);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("text/event-stream");
  const events = parseResponseEvents(await res.text());
  checkEvents(events);
  return events;
}

const deltas = (events: Array<Record<string, unknown>>) =>
  events.filter((e) => e.type === "response.output_text.delta").map((e) => e.delta as string).join("");

describe("POST /v1/responses on a gpu-node", () => {
  it("renders through the chat template and scheduler: the same answer and token counts as chat completions", async () => {
    const r = await create({ input: "Name three colours.", instructions: "Be terse.", max_output_tokens: 8, temperature: 0 });
    const chat = (await (
      await post("/v1/chat/completions", {
        model: MODEL,
        messages: [
          { role: "system", content: "Be terse." },
          { role: "user", content: "Name three colours." },
        ],
        max_tokens: 8,
        temperature: 0,
      })
    ).json()) as { choices: Array<{ message: { content: string }; finish_reason: string }>; usage: { prompt_tokens: number; completion_tokens: number } };
    expect(textOf(r)).toBe(chat.choices[0]!.message.content);
    expect(r.usage.input_tokens).toBe(chat.usage.prompt_tokens);
    expect(r.usage.output_tokens).toBe(chat.usage.completion_tokens);
    expect(r.usage.total_tokens).toBe(r.usage.input_tokens + r.usage.output_tokens);
    // finish_reason length ↔ status incomplete with reason max_output_tokens.
    if (chat.choices[0]!.finish_reason === "length") {
      expect(r.status).toBe("incomplete");
      expect(r.incomplete_details).toEqual({ reason: "max_output_tokens" });
      expect(r.output[0]).toMatchObject({ type: "message", status: "incomplete" });
    } else {
      expect(r.status).toBe("completed");
      expect(r.incomplete_details).toBeNull();
    }
  });

  it("streams OpenAI's events in order, numbered from 0, with the same text as the non-streamed answer for the same seed", async () => {
    const body = { input: "Tell me a story.", max_output_tokens: 12, temperature: 1, seed: 42, metadata: { run: "a" }, user: "u-1" };
    const whole = await create(body);
    expect(whole.metadata).toEqual({ run: "a" });
    expect(whole.user).toBe("u-1");
    const events = await stream(body);
    const types = events.map((e) => e.type);
    const n = types.filter((t) => t === "response.output_text.delta").length;
    expect(n).toBeGreaterThan(0);
    expect(types).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
      ...Array<string>(n).fill("response.output_text.delta"),
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      whole.status === "incomplete" ? "response.incomplete" : "response.completed",
    ]);
    expect(deltas(events)).toBe(textOf(whole));
    const last = events.at(-1)!.response as Resp;
    expect(textOf(last)).toBe(textOf(whole));
    expect(last.usage.output_tokens).toBe(whole.usage.output_tokens);
    expect((events[0]!.response as Resp).status).toBe("in_progress");
  });

  it("takes input items — messages, function calls and their outputs — as the equivalent chat messages", async () => {
    const tools = [{ type: "function", name: "get_weather", description: "Weather", parameters: { type: "object", properties: { city: { type: "string" } } } }];
    const r = await create({
      instructions: "Use tools.",
      tools,
      max_output_tokens: 2,
      temperature: 0,
      input: [
        { role: "user", content: [{ type: "input_text", text: "Weather in Paris?" }] },
        { type: "function_call", call_id: "call_1", name: "get_weather", arguments: '{"city": "Paris"}' },
        { type: "function_call_output", call_id: "call_1", output: "18C and sunny" },
        { type: "message", role: "assistant", content: [{ type: "output_text", text: "It is 18C.", annotations: [] }] },
        { role: "user", content: "Thanks" },
      ],
    });
    const chat = (await (
      await post("/v1/chat/completions", {
        model: MODEL,
        max_tokens: 1,
        tools: [{ type: "function", function: { name: "get_weather", description: "Weather", parameters: tools[0]!.parameters } }],
        messages: [
          { role: "system", content: "Use tools." },
          { role: "user", content: "Weather in Paris?" },
          { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city": "Paris"}' } }] },
          { role: "tool", content: "18C and sunny", tool_call_id: "call_1" },
          { role: "assistant", content: "It is 18C." },
          { role: "user", content: "Thanks" },
        ],
      })
    ).json()) as { usage: { prompt_tokens: number } };
    // The tool call and its result are in the prompt: more than the plain turns alone.
    const plain = (await post("/tokenize", { model: MODEL, messages: [{ role: "system", content: "Use tools." }, { role: "user", content: "Thanks" }] }).then((r) => r.json())) as { count: number };
    expect(chat.usage.prompt_tokens).toBeGreaterThan(plain.count + 20);
    expect(r.usage.input_tokens).toBe(chat.usage.prompt_tokens);
  });

  it("stores nothing itself: store false is fine, previous_response_id alone is a clear 400", async () => {
    await create({ input: "hi", store: false, max_output_tokens: 1 });
    const res = await post("/v1/responses", { model: MODEL, input: "hi", previous_response_id: "resp_123" });
    expect(res.status).toBe(400);
    const { error } = (await res.json()) as { error: { param: string; code: string; message: string } };
    expect(error.param).toBe("previous_response_id");
    expect(error.code).toBe("previous_response_not_supported");
    expect(error.message).toMatch(/edge/);
  });

  it.each<[string, Record<string, unknown>, string]>([
    ["no input", { model: MODEL }, "input"],
    ["input a number", { model: MODEL, input: 3 }, "input"],
    ["empty input list", { model: MODEL, input: [] }, "input"],
    ["an image part", { model: MODEL, input: [{ role: "user", content: [{ type: "input_image", image_url: "x" }] }] }, "input[0].content[0].type"],
    ["a bad role", { model: MODEL, input: [{ role: "tool", content: "x" }] }, "input[0].role"],
    ["an unknown item type", { model: MODEL, input: [{ type: "web_search_call", id: "x" }] }, "input[0].type"],
    ["function_call without call_id", { model: MODEL, input: [{ type: "function_call", name: "f", arguments: "{}" }] }, "input[0].call_id"],
    ["max_output_tokens 0", { model: MODEL, input: "x", max_output_tokens: 0 }, "max_output_tokens"],
    ["temperature 3", { model: MODEL, input: "x", temperature: 3 }, "temperature"],
    ["top_p 0", { model: MODEL, input: "x", top_p: 0 }, "top_p"],
    ["a tool without name", { model: MODEL, input: "x", tools: [{ type: "function" }] }, "tools[0].name"],
    ["tool_choice unknown", { model: MODEL, input: "x", tool_choice: "sometimes" }, "tool_choice"],
    ["text.format unknown", { model: MODEL, input: "x", text: { format: { type: "xml" } } }, "text.format.type"],
    ["json_schema without schema", { model: MODEL, input: "x", text: { format: { type: "json_schema", name: "a" } } }, "text.format.schema"],
    ["metadata value not a string", { model: MODEL, input: "x", metadata: { a: 1 } }, "metadata.a"],
    ["stream not a boolean", { model: MODEL, input: "x", stream: "yes" }, "stream"],
    ["over the context", { model: MODEL, input: "x", max_output_tokens: 10_000_000 }, "max_output_tokens"],
  ])("answers 400 in OpenAI's shape naming the parameter: %s", async (_name, body, param) => {
    const res = await post("/v1/responses", body);
    expect(res.status).toBe(400);
    const { error } = (await res.json()) as { error: { message: string; type: string; param: string; code: string } };
    expect(error.type).toBe("invalid_request_error");
    expect(error.param).toBe(param);
    expect(error.message.length).toBeGreaterThan(0);
  });

  it("enforces text.format json_schema and json_object (constrained decoding, as chat's response_format)", async () => {
    // Random weights produce nothing sensible on their own: the output parses only because it is constrained.
    const schema = { type: "object", properties: { a: { type: "string", maxLength: 6 }, n: { type: "integer", minimum: 0, maximum: 9 } }, required: ["a", "n"], additionalProperties: false };
    for (let seed = 0; seed < 3; seed++) {
      const r = await create({ input: "JSON please", max_output_tokens: 200, seed, temperature: 1, text: { format: { type: "json_schema", name: "thing", schema, strict: true } } });
      expect(r.status).toBe("completed");
      const value = JSON.parse(textOf(r)) as { a: string; n: number };
      expect(Object.keys(value).sort()).toEqual(["a", "n"]);
      expect(typeof value.a === "string" && value.a.length <= 6).toBe(true);
      expect(Number.isInteger(value.n) && value.n >= 0 && value.n <= 9).toBe(true);
      // Streamed, the same seed gives the same text.
      const events = await stream({ input: "JSON please", max_output_tokens: 200, seed, temperature: 1, text: { format: { type: "json_schema", name: "thing", schema, strict: true } } });
      expect(deltas(events)).toBe(textOf(r));
    }
    const obj = await create({ input: "JSON please", max_output_tokens: 200, temperature: 0, text: { format: { type: "json_object" } } });
    const parsed = JSON.parse(textOf(obj)) as unknown;
    expect(typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)).toBe(true);
  });

  it("forces a function call with tool_choice required or a named function", async () => {
    const tools = [
      { type: "function", name: "get_weather", parameters: { type: "object", properties: { city: { type: "string", enum: ["Paris", "Oslo"] } }, required: ["city"], additionalProperties: false } },
      { type: "function", name: "get_time", parameters: { type: "object", properties: { zone: { type: "string", pattern: "^[A-Z]{3}$" } }, required: ["zone"], additionalProperties: false } },
    ];
    for (let seed = 0; seed < 3; seed++) {
      const named = await create({ input: "Weather?", tools, tool_choice: { type: "function", name: "get_weather" }, max_output_tokens: 200, seed, temperature: 1 });
      expect(named.status).toBe("completed");
      expect(named.output).toHaveLength(1);
      expect(named.output[0]).toMatchObject({ type: "function_call", name: "get_weather", status: "completed" });
      expect(["Paris", "Oslo"]).toContain((JSON.parse(named.output[0]!.arguments!) as { city: string }).city);

      const required = await create({ input: "Weather?", tools, tool_choice: "required", max_output_tokens: 200, seed, temperature: 1 });
      const call = required.output[0]!;
      expect(call.type).toBe("function_call");
      const args = JSON.parse(call.arguments!) as Record<string, string>;
      if (call.name === "get_weather") expect(["Paris", "Oslo"]).toContain(args.city);
      else expect(args.zone).toMatch(/^[A-Z]{3}$/);
    }
  });

  it("names its usage in x-seventy-usage, as chat does, so the edge meters it", async () => {
    const res = await post("/v1/responses", { model: MODEL, input: "Hello", max_output_tokens: 4 });
    expect(res.status).toBe(200);
    const r = (await res.json()) as Resp;
    expect(res.headers.get("x-seventy-usage")).toBe(`${r.usage.input_tokens},${r.usage.output_tokens},${r.usage.input_tokens_details.cached_tokens}`);
  });

  it("refuses a text.format schema it cannot enforce with a 400 naming text.format", async () => {
    const res = await post("/v1/responses", {
      model: MODEL,
      input: "x",
      text: { format: { type: "json_schema", name: "t", schema: { type: "object", properties: { a: { not: { type: "string" } } } } } },
    });
    expect(res.status).toBe(400);
    const { error } = (await res.json()) as { error: { param: string } };
    expect(error.param).toMatch(/^text\.format/);
  });

  it("a client that disconnects mid-stream cancels its generation", async () => {
    const controller = new AbortController();
    const res = await post("/v1/responses", { model: MODEL, input: "Go on and on.", max_output_tokens: 3000, stream: true }, node.url, {
      signal: controller.signal,
    });
    const reader = res.body!.getReader();
    let seen = "";
    while (!seen.includes("response.output_text.delta")) seen += new TextDecoder().decode((await reader.read()).value);
    const running = async () => ((await (await fetch(node.url + "/health")).json()) as { running: number }).running;
    expect(await running()).toBe(1);
    controller.abort();
    await waitFor(async () => (await running()) === 0, 10_000, "the request to be cancelled");
  });
});

describe("function calls (simulated engine emitting a Llama 3.1 JSON tool call)", () => {
  let sim: RunningNode;
  beforeAll(async () => {
    const tokenizer = await LlamaTokenizer.fromDir(defaultTinyModelDir());
    // No end-of-turn token: the engine goes on after the call (text after a call is dropped), so a
    // stream can show that the call's arguments arrive while the generation still runs.
    const tokenCycle = tokenizer.encode('{"name": "get_weather", "parameters": {"city": "Paris"}}', { addSpecialTokens: false });
    sim = await startNode({ port: 0, engineInstance: new SimulatedEngine({ numKvBlocks: 512, blockSize: 16, tokenCycle, stepDelayMs: 2 }), log: () => {} });
  });
  afterAll(async () => {
    await sim?.close();
  });
  const tools = [{ type: "function", name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } }];

  it("answers a function_call item, streamed and not, with the arguments-delta events", async () => {
    // `arguments` is the generated text of the parameters, unchanged (as in chat completions).
    const r = await create({ input: "Weather in Paris?", tools, max_output_tokens: 64 }, sim.url);
    expect(r.status).toBe("completed");
    expect(r.output).toHaveLength(1);
    expect(r.output[0]).toMatchObject({ type: "function_call", name: "get_weather", arguments: '{"city": "Paris"}', status: "completed" });
    expect(r.output[0]!.call_id).toMatch(/^call_/);
    const events = await stream({ input: "Weather in Paris?", tools, max_output_tokens: 64 }, sim.url);
    const types = events.map((e) => e.type);
    const pieces = events.filter((e) => e.type === "response.function_call_arguments.delta");
    // The arguments arrive piece by piece (one per generated token or so), not in one delta.
    expect(pieces.length).toBeGreaterThan(1);
    expect(types).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      ...pieces.map(() => "response.function_call_arguments.delta"),
      "response.function_call_arguments.done",
      "response.output_item.done",
      "response.completed",
    ]);
    expect(events[3 + pieces.length]).toMatchObject({ name: "get_weather", arguments: '{"city": "Paris"}' });
    // Concatenated, the pieces are the final (and the non-streamed) arguments byte for byte.
    expect(pieces.map((e) => e.delta).join("")).toBe(r.output[0]!.arguments);
    expect(events[2]).toMatchObject({ item: { type: "function_call", name: "get_weather", arguments: "", status: "in_progress" } });
    for (const e of pieces) expect(e).toMatchObject({ item_id: (events[2]!.item as { id: string }).id, output_index: 0 });
  });

  it("streams a call's arguments while it is still being generated", async () => {
    const controller = new AbortController();
    const res = await post("/v1/responses", { model: MODEL, input: "Weather?", tools, max_output_tokens: 3000, stream: true }, sim.url, { signal: controller.signal });
    const reader = res.body!.getReader();
    let seen = "";
    const argsSoFar = () =>
      parseResponseEvents(seen.slice(0, seen.lastIndexOf("\n\n") + 2))
        .filter((e) => e.type === "response.function_call_arguments.delta")
        .map((e) => e.delta)
        .join("");
    while (argsSoFar() !== '{"city": "Paris"}') {
      const { done, value } = await reader.read();
      expect(done).toBe(false);
      seen += new TextDecoder().decode(value);
    }
    expect(seen).not.toContain("response.function_call_arguments.done");
    const health = (await (await fetch(sim.url + "/health")).json()) as { running: number };
    expect(health.running).toBe(1); // thousands of tokens still to go
    controller.abort();
    await waitFor(async () => ((await (await fetch(sim.url + "/health")).json()) as { running: number }).running === 0, 10_000, "the request to be cancelled");
  });

  it("with tool_choice none the same text is a plain message", async () => {
    const r = await create({ input: "Weather in Paris?", tools, tool_choice: "none", max_output_tokens: 64 }, sim.url);
    expect(r.output[0]!.type).toBe("message");
    expect(textOf(r)).toContain('"get_weather"');
  });
});

describe("a node shutting down mid-stream", () => {
  it("ends the stream with `error` and `response.failed`, not a completed answer", async () => {
    const slow = await startNode({
      port: 0,
      engineInstance: new SimulatedEngine({ numKvBlocks: 512, blockSize: 16, stepDelayMs: 20 }),
      log: () => {},
    });
    try {
      const res = await post("/v1/responses", { model: MODEL, input: "x", max_output_tokens: 2000, stream: true }, slow.url);
      const reader = res.body!.getReader();
      let text = "";
      while (!text.includes("response.output_text.delta")) text += new TextDecoder().decode((await reader.read()).value);
      const closing = slow.close();
      for (let r = await reader.read(); !r.done; r = await reader.read()) text += new TextDecoder().decode(r.value);
      await closing;
      const events = parseResponseEvents(text);
      checkEvents(events);
      expect(events.map((e) => e.type).slice(-2)).toEqual(["error", "response.failed"]);
      expect((events.at(-1)!.response as { status: string }).status).toBe("failed");
    } finally {
      await slow.close();
    }
  });
});
