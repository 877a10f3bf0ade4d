// The Responses API through the local stack (`npm start`'s edge under wrangler dev and real
// gpu-nodes): the official openai client, the AI SDK's default OpenAI provider and @seventy/sdk,
// with only baseURL and apiKey changed. What the servers send is checked against the openai
// package's declared shapes.
import { createOpenAI } from "@ai-sdk/openai";
import { NotFoundError as SeventyNotFound, Seventy, SeventyAdmin } from "@seventy/sdk";
import { generateText, streamText } from "ai";
import OpenAI from "openai";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { SimulatedEngine } from "../../gpu-node/src/engine/index.js";
import { LlamaTokenizer, defaultTinyModelDir } from "../../gpu-node/src/model/index.js";
import { startNode, type RunningNode } from "../../gpu-node/src/node.js";
import { checkEvents, checkResponse } from "../helpers/responses-shapes.js";
import { freePort, startStack, type Stack } from "./support/stack.js";
import { registerNode, startNode as spawnNode, stopGroup, waitForNodes } from "../../edge/scripts/stack.mjs";

let stack: Stack;
let admin: SeventyAdmin;
/** A second gpu-node on the same tiny model, and one whose engine answers with a tool call. */
let second: RunningNode;
let scripted: RunningNode;
const SCRIPTED = "scripted-tools";
/** The greedy chat completion of PROMPT in MAX tokens: what every Responses client must reproduce. */
let reference: { text: string; completionTokens: number; promptTokens: number };

const PROMPT = "Write one sentence about llamas.";
const MAX = 12;

beforeAll(async () => {
  stack = await startStack();
  admin = new SeventyAdmin({ baseURL: stack.origin, adminToken: stack.adminToken });
  // Each node is registered with the edge first; its credential names it and signs its traffic.
  const join = async (id: string) => {
    const port = await freePort();
    return { port, credential: await registerNode(stack.origin, stack.adminToken, { id, port }), edgeUrl: stack.origin, heartbeatIntervalMs: 500, log: () => {} };
  };
  second = await startNode({ kvCacheBlocks: 512, ...(await join("second")) });
  const tokenizer = await LlamaTokenizer.fromDir(defaultTinyModelDir());
  const tokenCycle = tokenizer.encode('{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>', { addSpecialTokens: false });
  scripted = await startNode({
    servedModelName: SCRIPTED,
    engineInstance: new SimulatedEngine({ numKvBlocks: 512, blockSize: 16, tokenCycle }),
    ...(await join("scripted")),
  });
  const deadline = Date.now() + 30_000;
  while ((await admin.nodes.list()).data.filter((n) => n.status === "healthy").length < 3) {
    if (Date.now() > deadline) throw new Error("the extra nodes did not join the edge");
    await new Promise((r) => setTimeout(r, 100));
  }
  const res = await fetch(`${stack.baseURL}/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" },
    body: JSON.stringify({ model: stack.model, messages: [{ role: "user", content: PROMPT }], max_tokens: MAX, temperature: 0 }),
  });
  const body = (await res.json()) as { choices: { message: { content: string } }[]; usage: { completion_tokens: number; prompt_tokens: number } };
  reference = { text: body.choices[0]!.message.content, completionTokens: body.usage.completion_tokens, promptTokens: body.usage.prompt_tokens };
  expect(reference.text.length).toBeGreaterThan(0);
});

afterEach((context) => {
  if (context.task.result?.state === "fail" && stack) console.error(stack.logs());
});

afterAll(async () => {
  await scripted?.close();
  await second?.close();
  await stack?.stop();
});

const client = (apiKey = stack.apiKey) => new OpenAI({ baseURL: stack.baseURL, apiKey, maxRetries: 0 });

describe("openai (official client) — client.responses", () => {
  it("create: the chat completion's answer and token counts, as a Response", async () => {
    const r = await client().responses.create({ model: stack.model, input: PROMPT, max_output_tokens: MAX, temperature: 0 });
    checkResponse(r);
    expect(r.object).toBe("response");
    expect(r.output_text).toBe(reference.text);
    expect(r.usage!.input_tokens).toBe(reference.promptTokens);
    expect(r.usage!.output_tokens).toBe(reference.completionTokens);
    expect(r._request_id).toMatch(/\S/);
  });

  it("streaming iteration: typed events numbered from 0, the same text as non-streaming for the same seed", async () => {
    const params = { model: stack.model, input: "Tell me about the sea.", max_output_tokens: 16, temperature: 1, seed: 1234 } as OpenAI.Responses.ResponseCreateParamsNonStreaming;
    const whole = await client().responses.create(params);
    const stream = await client().responses.create({ ...params, stream: true });
    const events: OpenAI.Responses.ResponseStreamEvent[] = [];
    let text = "";
    for await (const event of stream) {
      events.push(event);
      if (event.type === "response.output_text.delta") text += event.delta;
    }
    checkEvents(events);
    expect(events[0]!.type).toBe("response.created");
    expect(["response.completed", "response.incomplete"]).toContain(events.at(-1)!.type);
    expect(text).toBe(whole.output_text);
    expect(text.length).toBeGreaterThan(0);
  });

  it("responses.stream(): delta events and finalResponse()", async () => {
    const stream = client().responses.stream({ model: stack.model, input: PROMPT, max_output_tokens: MAX, temperature: 0 });
    let text = "";
    stream.on("response.output_text.delta", (e) => (text += e.delta));
    const final = await stream.finalResponse();
    expect(text).toBe(reference.text);
    expect(final.output_text).toBe(reference.text);
  });

  it("previous_response_id continues a stored conversation on another node, exactly as the whole conversation sent again", async () => {
    const c = client();
    const { data: first, response: res1 } = await c.responses
      .create({ model: stack.model, input: "My name is Ada.", max_output_tokens: 6, temperature: 0 })
      .withResponse();
    const firstNode = res1.headers.get("x-seventy-node")!;
    expect(firstNode).toBeTruthy();
    await admin.nodes.drain(firstNode);
    try {
      const { data: next, response: res2 } = await c.responses
        .create({ model: stack.model, previous_response_id: first.id, input: "What is my name?", max_output_tokens: 6, temperature: 0 })
        .withResponse();
      expect(res2.headers.get("x-seventy-node")).not.toBe(firstNode);
      checkResponse(next);
      expect(next.previous_response_id).toBe(first.id);
      const explicit = await c.responses.create({
        model: stack.model,
        store: false,
        input: [{ role: "user", content: "My name is Ada." }, ...(first.output as OpenAI.Responses.ResponseInputItem[]), { role: "user", content: "What is my name?" }],
        max_output_tokens: 6,
        temperature: 0,
      });
      expect(next.output_text).toBe(explicit.output_text);
      expect(next.usage!.input_tokens).toBe(explicit.usage!.input_tokens);
      expect(next.usage!.input_tokens).toBeGreaterThan(first.usage!.input_tokens + first.usage!.output_tokens);
    } finally {
      await admin.nodes.undrain(firstNode);
    }
  });

  it("retrieve, inputItems.list and delete a stored response; another key cannot see it", async () => {
    const c = client();
    const r = await c.responses.create({ model: stack.model, input: "Remember this.", max_output_tokens: 3, temperature: 0 });
    const got = await c.responses.retrieve(r.id);
    expect(got.id).toBe(r.id);
    expect(got.output_text).toBe(r.output_text);
    const items = await c.responses.inputItems.list(r.id);
    expect(items.data).toHaveLength(1);
    expect(items.data[0]).toMatchObject({ type: "message", role: "user", content: [{ type: "input_text", text: "Remember this." }] });
    const other = await admin.keys.create({ name: "other", limits: { rpm: 1000, tpm: 10_000_000 } });
    await expect(client(other.key).responses.retrieve(r.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(
      client(other.key).responses.create({ model: stack.model, previous_response_id: r.id, input: "x", max_output_tokens: 1 }),
    ).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    await c.responses.delete(r.id);
    await expect(c.responses.retrieve(r.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it("function tool round trip: a function_call, its output sent back by previous_response_id", async () => {
    const c = client();
    const tools: OpenAI.Responses.Tool[] = [
      { type: "function", name: "get_weather", strict: null, parameters: { type: "object", properties: { city: { type: "string" } } } },
    ];
    const first = await c.responses.create({ model: SCRIPTED, input: "Weather in Paris?", tools, max_output_tokens: 64 });
    checkResponse(first);
    const call = first.output[0] as OpenAI.Responses.ResponseFunctionToolCall;
    expect(call.type).toBe("function_call");
    expect(call.name).toBe("get_weather");
    expect(JSON.parse(call.arguments)).toEqual({ city: "Paris" });
    const output: OpenAI.Responses.ResponseInputItem = { type: "function_call_output", call_id: call.call_id, output: '{"temp_c":18}' };
    const second = await c.responses.create({ model: SCRIPTED, previous_response_id: first.id, input: [output], tools, max_output_tokens: 64 });
    const explicit = await c.responses.create({
      model: SCRIPTED,
      store: false,
      input: [{ role: "user", content: "Weather in Paris?" }, call, output],
      tools,
      max_output_tokens: 64,
    });
    expect(second.usage!.input_tokens).toBe(explicit.usage!.input_tokens);
    expect(second.usage!.input_tokens).toBeGreaterThan(first.usage!.input_tokens + first.usage!.output_tokens);
  });

  it("responses.stream() of a function call: the arguments in pieces as generated, equal to the final and the non-streamed arguments", async () => {
    const tools: OpenAI.Responses.Tool[] = [
      { type: "function", name: "get_weather", strict: null, parameters: { type: "object", properties: { city: { type: "string" } } } },
    ];
    const params = { model: SCRIPTED, input: "Weather in Paris?", tools, max_output_tokens: 64 };
    const stream = client().responses.stream(params);
    const pieces: string[] = [];
    let added: OpenAI.Responses.ResponseOutputItem | null = null;
    stream.on("response.output_item.added", (e) => (added = e.item));
    stream.on("response.function_call_arguments.delta", (e) => {
      expect(added).toMatchObject({ type: "function_call", name: "get_weather" }); // announced before its arguments
      pieces.push(e.delta);
    });
    const final = await stream.finalResponse();
    const call = final.output[0] as OpenAI.Responses.ResponseFunctionToolCall;
    expect(call).toMatchObject({ type: "function_call", name: "get_weather", status: "completed" });
    expect(pieces.length).toBeGreaterThan(1);
    expect(pieces.join("")).toBe(call.arguments);
    const plain = await client().responses.create(params);
    expect((plain.output[0] as OpenAI.Responses.ResponseFunctionToolCall).arguments).toBe(call.arguments);
  });

  it("a node killed mid-stream: the stream ends with `error` and `response.failed`, and nothing is stored", async () => {
    // A node of its own (a separate process, serving a model name nobody else serves), killed outright.
    const port = await freePort();
    const doomed = await spawnNode({
      port,
      edgeUrl: stack.origin,
      credential: await registerNode(stack.origin, stack.adminToken, { id: "doomed", port }),
      args: ["--served-model-name", "doomed-model"],
    });
    try {
      await waitForNodes(stack.origin, stack.adminToken, ["doomed"]);
      const stream = await client().responses.create({ model: "doomed-model", input: "Talk for a long time.", max_output_tokens: 3000, stream: true });
      const events: OpenAI.Responses.ResponseStreamEvent[] = [];
      for await (const event of stream) {
        events.push(event);
        if (event.type === "response.output_text.delta" && events.filter((e) => e.type === event.type).length === 3) {
          await stopGroup(doomed.child, "SIGKILL");
        }
      }
      checkEvents(events);
      const [error, failed] = events.slice(-2);
      expect(error).toMatchObject({ type: "error", code: "upstream_disconnected", param: null });
      expect(failed!.type).toBe("response.failed");
      const response = (failed as OpenAI.Responses.ResponseFailedEvent).response;
      expect(response.status).toBe("failed");
      expect(response.error?.code).toBe("server_error");
      await expect(client().responses.retrieve(response.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    } finally {
      await stopGroup(doomed.child, "SIGKILL");
    }
  });

  it("a malformed body is a 400 naming the parameter", async () => {
    const err = await client()
      .responses.create({ model: stack.model, input: [{ role: "user", content: [{ type: "input_image", image_url: "x", detail: "auto" }] }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("input[0].content[0].type");
  });
});

describe("AI SDK (@ai-sdk/openai, default Responses model)", () => {
  const provider = () => createOpenAI({ baseURL: stack.baseURL, apiKey: stack.apiKey });

  it("generateText: the same answer and usage", async () => {
    const result = await generateText({ model: provider()(stack.model), prompt: PROMPT, maxOutputTokens: MAX, temperature: 0, maxRetries: 0 });
    expect(result.text).toBe(reference.text);
    expect(result.usage.outputTokens).toBe(reference.completionTokens);
    expect(result.usage.inputTokens).toBe(reference.promptTokens);
  });

  it("streamText: the same text, piece by piece", async () => {
    const result = streamText({ model: provider()(stack.model), prompt: PROMPT, maxOutputTokens: MAX, temperature: 0, maxRetries: 0 });
    let text = "";
    let pieces = 0;
    for await (const piece of result.textStream) {
      text += piece;
      pieces++;
    }
    expect(text).toBe(reference.text);
    expect(pieces).toBeGreaterThan(1);
    expect((await result.usage).outputTokens).toBe(reference.completionTokens);
  });
});

describe("@seventy/sdk — client.responses", () => {
  const seventy = () => new Seventy({ baseURL: stack.baseURL, apiKey: stack.apiKey, maxRetries: 0 });

  it("create, create({ stream: true }) and stream() give the same text", async () => {
    const params = { model: stack.model, input: PROMPT, max_output_tokens: MAX, temperature: 0 };
    const r = await seventy().responses.create(params);
    expect(r.output_text).toBe(reference.text);
    const streamed = await seventy().responses.create({ ...params, stream: true });
    const types: string[] = [];
    for await (const event of streamed) types.push(event.type);
    expect(types[0]).toBe("response.created");
    const s = seventy().responses.stream(params);
    let fromEvents = "";
    s.on("response.output_text.delta", (e) => (fromEvents += e.delta));
    let text = "";
    for await (const piece of s.textStream) text += piece;
    expect(text).toBe(reference.text);
    expect(fromEvents).toBe(reference.text);
    expect((await s.finalResponse()).output_text).toBe(reference.text);
  });

  it("retrieve, inputItems.list, delete", async () => {
    const c = seventy();
    const r = await c.responses.create({ model: stack.model, input: "Keep me.", max_output_tokens: 2 });
    expect((await c.responses.retrieve(r.id)).output_text).toBe(r.output_text);
    expect((await c.responses.inputItems.list(r.id, { order: "asc" })).data[0]).toMatchObject({ role: "user" });
    expect(await c.responses.delete(r.id)).toEqual({ id: r.id, object: "response.deleted", deleted: true });
    await expect(c.responses.retrieve(r.id)).rejects.toBeInstanceOf(SeventyNotFound);
  });
});
