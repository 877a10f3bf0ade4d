// The edge, as `npm start` runs it, answers the official openai client, the Vercel AI SDK and
// @seventy/sdk unchanged: non-streaming, streaming, usage, abort, and error statuses.
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import {
  APIConnectionError as SeventyConnectionError,
  APIUserAbortError as SeventyAbortError,
  AuthenticationError as SeventyAuthError,
  BadRequestError as SeventyBadRequest,
  NotFoundError as SeventyNotFound,
  RateLimitError as SeventyRateLimit,
  Seventy,
  SeventyAdmin,
} from "@seventy/sdk";
import { APICallError, generateText, streamText } from "ai";
import OpenAI from "openai";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { startStack, type Stack } from "./support/stack.js";

let stack: Stack;
let admin: SeventyAdmin;
/** The tiny model's greedy answer to PROMPT in MAX tokens, from a plain HTTP call: the reference every client must reproduce. */
let reference: { text: string; completionTokens: number };

const PROMPT = "Write one sentence about llamas.";
const MAX = 12;

beforeAll(async () => {
  stack = await startStack();
  admin = new SeventyAdmin({ baseURL: stack.origin, adminToken: stack.adminToken });
  const res = await fetch(`${stack.baseURL}/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" },
    body: JSON.stringify({ model: stack.model, messages: [{ role: "user", content: PROMPT }], max_tokens: MAX, temperature: 0 }),
  });
  const body = (await res.json()) as { choices: { message: { content: string } }[]; usage: { completion_tokens: number } };
  reference = { text: body.choices[0]!.message.content, completionTokens: body.usage.completion_tokens };
  expect(reference.text.length).toBeGreaterThan(0);
});

afterEach((context) => {
  if (context.task.result?.state === "fail" && stack) console.error(stack.logs());
});

afterAll(async () => {
  await stack?.stop();
});

/** A fresh key with its own limits, so one test's requests never count against another's. */
async function newKey(limits: { rpm?: number; tpm?: number; concurrency?: number } = {}) {
  return admin.keys.create({ name: `test-${Math.random().toString(36).slice(2, 8)}`, limits: { rpm: 1000, tpm: 10_000_000, ...limits } });
}

async function inFlight(keyId: string): Promise<number> {
  return (await admin.keys.retrieve(keyId)).state.in_flight;
}

async function eventually(check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("condition not met in time");
}

const messages = [{ role: "user" as const, content: PROMPT }];
const LONG = 2_000; // tokens: a stream that is still running when the test aborts it

describe("openai (official client)", () => {
  const client = () => new OpenAI({ baseURL: stack.baseURL, apiKey: stack.apiKey, maxRetries: 0 });

  it("non-streaming: the same answer and usage as plain HTTP", async () => {
    const c = await client().chat.completions.create({ model: stack.model, messages, max_tokens: MAX, temperature: 0 });
    expect(c.object).toBe("chat.completion");
    expect(c.choices[0]!.message.content).toBe(reference.text);
    expect(c.usage!.completion_tokens).toBe(reference.completionTokens);
    expect(c.usage!.total_tokens).toBe(c.usage!.prompt_tokens + c.usage!.completion_tokens);
    expect(c._request_id).toMatch(/\S/);
  });

  it("streaming with include_usage: the same text, then a usage chunk", async () => {
    const stream = await client().chat.completions.create({
      model: stack.model,
      messages,
      max_tokens: MAX,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(reference.text);
    expect(usage?.completion_tokens).toBe(reference.completionTokens);
  });

  it("streaming without include_usage: no usage chunk reaches the client", async () => {
    const stream = await client().chat.completions.create({ model: stack.model, messages, max_tokens: MAX, temperature: 0, stream: true });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.some((c) => c.usage)).toBe(false);
    expect(chunks.every((c) => c.choices.length > 0)).toBe(true);
  });

  it("abort: the loop stops and the edge releases the request", async () => {
    const key = await newKey();
    const c = new OpenAI({ baseURL: stack.baseURL, apiKey: key.key, maxRetries: 0 });
    const controller = new AbortController();
    const stream = await c.chat.completions.create({ model: stack.model, messages, max_tokens: LONG, stream: true }, { signal: controller.signal });
    let n = 0;
    // openai-node ends the loop quietly on abort (no error); the request must still end at the edge.
    for await (const _ of stream) if (++n === 2) controller.abort();
    expect(n).toBeLessThan(50);
    await eventually(async () => (await inFlight(key.id)) === 0);
  });

  it("error statuses: 401, 400 with param, 404 model, 429 with Retry-After", async () => {
    const bad = new OpenAI({ baseURL: stack.baseURL, apiKey: "sk-not-a-real-key-000000", maxRetries: 0 });
    const e401 = await bad.chat.completions.create({ model: stack.model, messages }).catch((e) => e);
    expect(e401).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(e401.status).toBe(401);

    const e400 = await client().chat.completions.create({ model: stack.model, messages, temperature: 5 }).catch((e) => e);
    expect(e400).toBeInstanceOf(OpenAI.BadRequestError);
    expect(e400.param).toBe("temperature");

    const e404 = await client().chat.completions.create({ model: "no-such-model", messages }).catch((e) => e);
    expect(e404).toBeInstanceOf(OpenAI.NotFoundError);

    const key = await newKey({ rpm: 1 });
    const limited = new OpenAI({ baseURL: stack.baseURL, apiKey: key.key, maxRetries: 0 });
    await limited.chat.completions.create({ model: stack.model, messages, max_tokens: 2 });
    const e429 = await limited.chat.completions.create({ model: stack.model, messages, max_tokens: 2 }).catch((e) => e);
    expect(e429).toBeInstanceOf(OpenAI.RateLimitError);
    expect(Number(e429.headers.get("retry-after"))).toBeGreaterThan(0);
  });

  it("lists models", async () => {
    const page = await client().models.list();
    expect(page.data.map((m) => m.id)).toContain(stack.model);
  });
});

describe("Vercel AI SDK (@ai-sdk/openai-compatible)", () => {
  const provider = (apiKey = stack.apiKey) =>
    createOpenAICompatible({ name: "seventy", baseURL: stack.baseURL, apiKey, includeUsage: true });

  it("generateText: the same answer, with usage", async () => {
    const r = await generateText({ model: provider().chatModel(stack.model), prompt: PROMPT, maxOutputTokens: MAX, temperature: 0, maxRetries: 0 });
    expect(r.text).toBe(reference.text);
    expect(r.usage.outputTokens).toBe(reference.completionTokens);
    expect(r.usage.inputTokens).toBeGreaterThan(0);
  });

  it("streamText: the same text as it streams, usage at the end", async () => {
    const r = streamText({ model: provider().chatModel(stack.model), prompt: PROMPT, maxOutputTokens: MAX, temperature: 0, maxRetries: 0 });
    let text = "";
    for await (const t of r.textStream) text += t;
    expect(text).toBe(reference.text);
    expect((await r.usage).outputTokens).toBe(reference.completionTokens);
  });

  it("abortSignal stops the stream and the edge releases the request", async () => {
    const key = await newKey();
    const controller = new AbortController();
    const r = streamText({
      model: provider(key.key).chatModel(stack.model),
      prompt: PROMPT,
      maxOutputTokens: LONG,
      abortSignal: controller.signal,
      maxRetries: 0,
      onError: () => {},
    });
    let n = 0;
    const t0 = Date.now();
    await (async () => {
      for await (const _ of r.textStream) if (++n === 2) controller.abort();
    })().catch(() => {});
    expect(n).toBeLessThan(50);
    expect(Date.now() - t0).toBeLessThan(20_000);
    await eventually(async () => (await inFlight(key.id)) === 0);
  });

  it("error statuses reach the caller as APICallError with the status", async () => {
    const e401 = await generateText({ model: provider("sk-not-a-real-key-000000").chatModel(stack.model), prompt: PROMPT, maxRetries: 0 }).catch((e) => e);
    expect(APICallError.isInstance(e401)).toBe(true);
    expect(e401.statusCode).toBe(401);

    const key = await newKey({ rpm: 1 });
    await generateText({ model: provider(key.key).chatModel(stack.model), prompt: PROMPT, maxOutputTokens: 2, maxRetries: 0 });
    const e429 = await generateText({ model: provider(key.key).chatModel(stack.model), prompt: PROMPT, maxOutputTokens: 2, maxRetries: 0 }).catch((e) => e);
    expect(APICallError.isInstance(e429)).toBe(true);
    expect(e429.statusCode).toBe(429);
  });
});

describe("@seventy/sdk against the edge", () => {
  const client = (apiKey = stack.apiKey) => new Seventy({ baseURL: stack.baseURL, apiKey, maxRetries: 0 });

  it("stream and non-stream agree; finalCompletion has usage nobody asked for", async () => {
    const c = await client().chat.completions.create({ model: stack.model, messages, max_tokens: MAX, temperature: 0 });
    expect(c.choices[0]!.message.content).toBe(reference.text);

    const stream = await client().chat.completions.create({ model: stack.model, messages, max_tokens: MAX, temperature: 0, stream: true });
    expect(stream.requestId).toMatch(/\S/);
    let text = "";
    for await (const chunk of stream) {
      expect(chunk.choices.length).toBeGreaterThan(0); // the usage chunk stays hidden
      text += chunk.choices[0]!.delta.content ?? "";
    }
    expect(text).toBe(reference.text);
    const final = await stream.finalCompletion();
    expect(final.choices[0]!.message.content).toBe(reference.text);
    expect(final.usage?.completion_tokens).toBe(reference.completionTokens);
  });

  it("legacy completions stream", async () => {
    const stream = await client().completions.create({ model: stack.model, prompt: "Once upon a time", max_tokens: 6, temperature: 0, stream: true });
    const texts: string[] = [];
    for await (const t of stream.textStream) texts.push(t);
    const final = await stream.finalCompletion();
    expect(final.choices[0]!.text).toBe(texts.join(""));
    expect(final.usage?.completion_tokens).toBe(6);
  });

  it("break aborts: the edge releases the request", async () => {
    const key = await newKey();
    const stream = await client(key.key).chat.completions.create({ model: stack.model, messages, max_tokens: LONG, stream: true });
    let n = 0;
    for await (const _ of stream) if (++n === 2) break;
    await eventually(async () => (await inFlight(key.id)) === 0);
    await expect(stream.finalCompletion()).rejects.toBeInstanceOf(SeventyAbortError);
  });

  it("typed errors with request ids and parsed rate-limit headers", async () => {
    const e401 = await client("sk-not-a-real-key-000000").models.list().catch((e) => e);
    expect(e401).toBeInstanceOf(SeventyAuthError);
    expect(e401.requestId).toMatch(/\S/);
    const e400 = await client().chat.completions.create({ model: stack.model, messages, temperature: 5 }).catch((e) => e);
    expect(e400).toBeInstanceOf(SeventyBadRequest);
    expect(e400.param).toBe("temperature");
    const e404 = await client().chat.completions.create({ model: "no-such-model", messages }).catch((e) => e);
    expect(e404).toBeInstanceOf(SeventyNotFound);

    const key = await newKey({ rpm: 1 });
    await client(key.key).chat.completions.create({ model: stack.model, messages, max_tokens: 2 });
    const e429 = await client(key.key).chat.completions.create({ model: stack.model, messages, max_tokens: 2 }).catch((e) => e);
    expect(e429).toBeInstanceOf(SeventyRateLimit);
    expect(e429.retryAfter).toBeGreaterThan(0);
    expect(e429.rateLimit.limitRequests).toBe(1);
    expect(e429.rateLimit.remainingRequests).toBe(0);
  });

  it("a connection to a port nobody listens on is an APIConnectionError after the retries", async () => {
    const c = new Seventy({ baseURL: "http://127.0.0.1:9/v1", apiKey: stack.apiKey, maxRetries: 1 });
    await expect(c.models.list()).rejects.toBeInstanceOf(SeventyConnectionError);
  });
});

describe("SeventyAdmin against the edge", () => {
  it("creates, lists, updates and revokes keys; a revoked key gets 401", async () => {
    const created = await admin.keys.create({ name: "admin-test", limits: { rpm: 5 } });
    expect(created.key).toMatch(/^sk-/);
    expect(created.limits.rpm).toBe(5);
    const c = new Seventy({ baseURL: stack.baseURL, apiKey: created.key, maxRetries: 0 });
    expect((await c.models.list()).data.length).toBeGreaterThan(0);

    expect((await admin.keys.list()).data.map((k) => k.id)).toContain(created.id);
    const updated = await admin.keys.update(created.id, { limits: { tpm: 1234 } });
    expect(updated.limits).toMatchObject({ rpm: 5, tpm: 1234 });

    await admin.keys.revoke(created.id);
    await expect(c.models.list()).rejects.toBeInstanceOf(SeventyAuthError);
  });

  it("lists, drains and undrains nodes, and reports usage", async () => {
    const nodes = await admin.nodes.list();
    expect(nodes.data.length).toBeGreaterThan(0);
    const node = nodes.data[0]!;
    expect((await admin.nodes.drain(node.id)).status).toBe("draining");
    expect((await admin.nodes.undrain(node.id)).status).toBe("healthy");

    const key = await newKey();
    await new Seventy({ baseURL: stack.baseURL, apiKey: key.key }).chat.completions.create({ model: stack.model, messages, max_tokens: 3 });
    // The edge settles a finished request's usage just after answering it (see edge/src/limits/releases.ts).
    await vi.waitFor(
      async () => {
        const usage = await admin.usage.retrieve({ key: key.id });
        expect(usage.data.reduce((n, d) => n + d.completion_tokens, 0)).toBe(3);
      },
      { timeout: 5000, interval: 50 },
    );
  });

  it("a wrong admin token is an AuthenticationError", async () => {
    const wrong = new SeventyAdmin({ baseURL: stack.origin, adminToken: "wrong" });
    await expect(wrong.keys.list()).rejects.toBeInstanceOf(SeventyAuthError);
  });
});
