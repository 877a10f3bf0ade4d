import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { Seventy } from "./client.js";
import {
  APIConnectionError,
  APITimeoutError,
  APIUserAbortError,
  AuthenticationError,
  BadRequestError,
  InternalServerError,
  RateLimitError,
} from "./core/errors.js";
import type { ChatCompletionChunk } from "./protocol/chat.js";

// ---- a loopback OpenAI-style server whose every answer the test scripts ----

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: any;
  /** Resolves when the client closed the connection before the response ended. */
  closedEarly: Promise<void>;
}

type Handler = (req: IncomingMessage, res: ServerResponse, seen: Seen) => void | Promise<void>;

const servers: { close(): void }[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

async function serve(handler: Handler): Promise<{ baseURL: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer(async (req, res) => {
    let raw = "";
    for await (const piece of req) raw += piece;
    const closedEarly = new Promise<void>((resolve) => res.on("close", () => !res.writableFinished && resolve()));
    const s: Seen = { method: req.method!, url: req.url!, headers: req.headers, body: raw ? JSON.parse(raw) : undefined, closedEarly };
    seen.push(s);
    await handler(req, res, s);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  servers.push({ close: () => server.close() && server.closeAllConnections() });
  return { baseURL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, seen };
}

const MODEL = "llama-test";
const base = { id: "chatcmpl-1", object: "chat.completion.chunk", created: 1, model: MODEL } as const;
const contentChunk = (content: string, index = 0): ChatCompletionChunk => ({
  ...base,
  choices: [{ index, delta: { content }, logprobs: null, finish_reason: null }],
});
const finishChunk = (reason: "stop" | "length" | "tool_calls" = "stop", index = 0): ChatCompletionChunk => ({
  ...base,
  choices: [{ index, delta: {}, logprobs: null, finish_reason: reason }],
});
const usage = { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 };
const usageChunk: ChatCompletionChunk = { ...base, choices: [], usage };

function sse(res: ServerResponse, status = 200, headers: Record<string, string> = {}): (data: unknown) => void {
  res.writeHead(status, { "content-type": "text/event-stream", "x-request-id": "req_123", ...headers });
  res.flushHeaders();
  return (data) => res.write(`data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`);
}

/** A complete, well-behaved stream: "Hello", " world", finish, usage when asked, [DONE]. */
const goodStream: Handler = (_req, res, seen) => {
  const send = sse(res);
  send({ ...base, choices: [{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }] });
  send(contentChunk("Hello"));
  send(contentChunk(" world"));
  send(finishChunk());
  if (seen.body.stream_options?.include_usage) send(usageChunk);
  send("[DONE]");
  res.end();
};

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": "application/json", "x-request-id": "req_123", ...headers });
  res.end(JSON.stringify(body));
}

const errorBody = (message: string, type: string, code: string | null = null) => ({ error: { message, type, param: null, code } });
const user = [{ role: "user" as const, content: "Hi" }];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- non-streaming ----

describe("non-streaming requests", () => {
  it("sends the key and body, and returns the completion", async () => {
    const completion = {
      id: "chatcmpl-2",
      object: "chat.completion",
      created: 1,
      model: MODEL,
      choices: [{ index: 0, message: { role: "assistant", content: "Hi!" }, logprobs: null, finish_reason: "stop" }],
      usage,
    };
    const { baseURL, seen } = await serve((_req, res) => json(res, 200, completion));
    const client = new Seventy({ baseURL, apiKey: "sk-test", headers: { "x-app": "demo" } });
    const result = await client.chat.completions.create({ model: MODEL, messages: user, temperature: 0 });
    expect(result).toEqual(completion);
    expect(seen[0]!.url).toBe("/v1/chat/completions");
    expect(seen[0]!.headers.authorization).toBe("Bearer sk-test");
    expect(seen[0]!.headers["x-app"]).toBe("demo");
    expect(seen[0]!.body).toEqual({ model: MODEL, messages: user, temperature: 0 });
  });

  it("lists models", async () => {
    const list = { object: "list", data: [{ id: MODEL, object: "model", created: 1, owned_by: "seventy" }] };
    const { baseURL, seen } = await serve((_req, res) => json(res, 200, list));
    const client = new Seventy({ baseURL, apiKey: "k" });
    expect(await client.models.list()).toEqual(list);
    expect(seen[0]!.method).toBe("GET");
    expect(seen[0]!.url).toBe("/v1/models");
  });

  it("maps error statuses to typed errors carrying the body and request id", async () => {
    const { baseURL } = await serve((req, res) => {
      if (req.headers.authorization !== "Bearer good") return json(res, 401, errorBody("Invalid API key.", "authentication_error", "invalid_api_key"));
      json(res, 400, { error: { message: "Invalid value for 'temperature'.", type: "invalid_request_error", param: "temperature", code: "invalid_value" } });
    });
    const bad = new Seventy({ baseURL, apiKey: "nope" });
    const e1 = await bad.chat.completions.create({ model: MODEL, messages: user }).catch((e) => e);
    expect(e1).toBeInstanceOf(AuthenticationError);
    expect(e1).toMatchObject({ status: 401, code: "invalid_api_key", type: "authentication_error", requestId: "req_123" });
    expect(e1.message).toBe("401 Invalid API key.");

    const good = new Seventy({ baseURL, apiKey: "good" });
    const e2 = await good.chat.completions.create({ model: MODEL, messages: user, temperature: 9 }).catch((e) => e);
    expect(e2).toBeInstanceOf(BadRequestError);
    expect(e2).toMatchObject({ status: 400, param: "temperature", code: "invalid_value" });
    expect(e2.headers.get("content-type")).toBe("application/json");
  });
});

// ---- retries ----

describe("retries", () => {
  it("retries 503 and 429 (honouring retry-after-ms) and then succeeds", async () => {
    let n = 0;
    const { baseURL, seen } = await serve((req, res, s) => {
      n++;
      if (n === 1) return json(res, 503, errorBody("Overloaded.", "service_unavailable_error"), { "retry-after-ms": "10" });
      if (n === 2) return json(res, 429, errorBody("Slow down.", "rate_limit_error"), { "retry-after-ms": "10" });
      goodStream(req, res, s);
    });
    const client = new Seventy({ baseURL, apiKey: "k" });
    const t0 = Date.now();
    const stream = await client.chat.completions.create({ model: MODEL, messages: user, stream: true });
    expect((await stream.finalCompletion()).choices[0]!.message.content).toBe("Hello world");
    expect(seen).toHaveLength(3);
    expect(Date.now() - t0).toBeLessThan(2_000); // the hints (10 ms), not the default backoff
  });

  it("gives up after maxRetries and throws the last error", async () => {
    const { baseURL, seen } = await serve((_req, res) => json(res, 500, errorBody("Boom.", "server_error"), { "retry-after-ms": "1" }));
    const client = new Seventy({ baseURL, apiKey: "k", maxRetries: 3 });
    const err = await client.chat.completions.create({ model: MODEL, messages: user }).catch((e) => e);
    expect(err).toBeInstanceOf(InternalServerError);
    expect(seen).toHaveLength(4);
  });

  it("does not retry a 400, or a retryable status the server marks x-should-retry: false", async () => {
    const { baseURL, seen } = await serve((req, res) => {
      if (req.url!.includes("chat")) return json(res, 400, errorBody("Bad.", "invalid_request_error"));
      json(res, 503, errorBody("Draining.", "service_unavailable_error"), { "x-should-retry": "false" });
    });
    const client = new Seventy({ baseURL, apiKey: "k" });
    await expect(client.chat.completions.create({ model: MODEL, messages: user })).rejects.toBeInstanceOf(BadRequestError);
    await expect(client.models.list()).rejects.toBeInstanceOf(InternalServerError);
    expect(seen).toHaveLength(2);
  });

  it("surfaces a 429 with a long Retry-After at once, with the parsed rate-limit headers", async () => {
    const { baseURL, seen } = await serve((_req, res) =>
      json(res, 429, errorBody("Rate limit reached.", "rate_limit_error", "rate_limit_exceeded"), {
        "retry-after": "120",
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1m59.5s",
        "x-ratelimit-remaining-tokens": "5000",
      }),
    );
    const client = new Seventy({ baseURL, apiKey: "k" });
    const err = await client.chat.completions.create({ model: MODEL, messages: user }).catch((e) => e);
    expect(err).toBeInstanceOf(RateLimitError);
    expect(err.retryAfter).toBe(120);
    expect(err.rateLimit).toEqual({ limitRequests: 60, remainingRequests: 0, resetRequests: 119.5, remainingTokens: 5000 });
    expect(seen).toHaveLength(1);
  });

  it("retries connection errors, then throws APIConnectionError", async () => {
    const { baseURL } = await serve(() => {});
    servers.splice(0).forEach((s) => s.close()); // nothing listens on that port any more
    let calls = 0;
    const client = new Seventy({
      baseURL,
      apiKey: "k",
      maxRetries: 1,
      fetch: (url, init) => (calls++, fetch(url, init)),
    });
    const err = await client.models.list().catch((e) => e);
    expect(err).toBeInstanceOf(APIConnectionError);
    expect(err.message).toMatch(/ECONNREFUSED/);
    expect(calls).toBe(2);
  });

  it("never retries once a stream has started, even when it breaks", async () => {
    const { baseURL, seen } = await serve((_req, res) => {
      sse(res);
      // Destroyed once the chunk is on the wire: the client sees it, then a reset connection.
      res.write(`data: ${JSON.stringify(contentChunk("partial"))}\n\n`, () => setTimeout(() => res.destroy(), 20));
    });
    const client = new Seventy({ baseURL, apiKey: "k" });
    const stream = await client.chat.completions.create({ model: MODEL, messages: user, stream: true });
    const got: string[] = [];
    const err = await (async () => {
      for await (const c of stream) got.push(c.choices[0]!.delta.content!);
    })().catch((e) => e);
    expect(got).toEqual(["partial"]);
    expect(err).toBeInstanceOf(APIConnectionError);
    expect(seen).toHaveLength(1);
  });
});

// ---- streaming ----

describe("streams", () => {
  it("yields typed chunks, asks for usage, and hides the usage chunk when the caller did not", async () => {
    const { baseURL, seen } = await serve(goodStream);
    const client = new Seventy({ baseURL, apiKey: "k" });
    const stream = await client.chat.completions.create({ model: MODEL, messages: user, stream: true });
    expect(stream.requestId).toBe("req_123");
    const chunks: ChatCompletionChunk[] = [];
    for await (const c of stream) chunks.push(c);
    expect(chunks.map((c) => c.choices[0]?.delta.content)).toEqual(["", "Hello", " world", undefined]);
    expect(chunks.every((c) => c.choices.length > 0)).toBe(true);
    expect(seen[0]!.body.stream_options).toEqual({ include_usage: true });
    expect(seen[0]!.headers.accept).toBe("text/event-stream");
    const final = await stream.finalCompletion();
    expect(final).toEqual({
      id: "chatcmpl-1",
      object: "chat.completion",
      created: 1,
      model: MODEL,
      choices: [{ index: 0, message: { role: "assistant", content: "Hello world" }, logprobs: null, finish_reason: "stop" }],
      usage,
    });
  });

  it("shows the usage chunk when the caller asked for it", async () => {
    const { baseURL } = await serve(goodStream);
    const client = new Seventy({ baseURL, apiKey: "k" });
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: user,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: ChatCompletionChunk[] = [];
    for await (const c of stream) chunks.push(c);
    expect(chunks.at(-1)).toEqual(usageChunk);
  });

  it("textStream, on() events and finalCompletion() share one pass", async () => {
    const { baseURL } = await serve(goodStream);
    const client = new Seventy({ baseURL, apiKey: "k" });
    const stream = await client.chat.completions.create({ model: MODEL, messages: user, stream: true });
    const events: string[] = [];
    stream
      .on("content", (delta, snapshot) => events.push(`content:${delta}|${snapshot}`))
      .on("usage", (u) => events.push(`usage:${u.total_tokens}`))
      .on("chunk", () => events.push("chunk"))
      .on("end", () => events.push("end"));
    const texts: string[] = [];
    for await (const t of stream.textStream) texts.push(t);
    expect(texts).toEqual(["Hello", " world"]);
    expect(events).toEqual([
      "chunk",
      "content:Hello|Hello",
      "chunk",
      "content: world|Hello world",
      "chunk",
      "chunk",
      "usage:8",
      "end",
    ]);
    expect(() => stream[Symbol.asyncIterator]()).toThrow(/already been read/);
    expect((await stream.finalCompletion()).usage).toEqual(usage);
  });

  it("finalCompletion() reads the stream itself when nothing else does", async () => {
    const { baseURL } = await serve(goodStream);
    const client = new Seventy({ baseURL, apiKey: "k" });
    const stream = await client.chat.completions.create({ model: MODEL, messages: user, stream: true });
    const seen: string[] = [];
    const final = await stream.on("content", (d) => seen.push(d)).finalCompletion();
    expect(seen).toEqual(["Hello", " world"]);
    expect(final.usage).toEqual(usage);
  });

  it("assembles tool calls and several choices", async () => {
    const { baseURL } = await serve((_req, res) => {
      const send = sse(res);
      send({ ...base, choices: [{ index: 0, delta: { tool_calls: [{ index: 0, id: "call_1", type: "function", function: { name: "weather", arguments: "" } }] }, finish_reason: null }] });
      send({ ...base, choices: [{ index: 1, delta: { content: "B" }, finish_reason: null }] });
      send({ ...base, choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }, finish_reason: null }] });
      send({ ...base, choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }, finish_reason: null }] });
      send(finishChunk("tool_calls", 0));
      send(finishChunk("stop", 1));
      send(usageChunk);
      send("[DONE]");
      res.end();
    });
    const client = new Seventy({ baseURL, apiKey: "k" });
    const stream = await client.chat.completions.create({ model: MODEL, messages: user, stream: true, n: 2 });
    const final = await stream.finalCompletion();
    expect(final.choices).toEqual([
      {
        index: 0,
        message: { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "weather", arguments: '{"city":"Paris"}' } }] },
        logprobs: null,
        finish_reason: "tool_calls",
      },
      { index: 1, message: { role: "assistant", content: "B" }, logprobs: null, finish_reason: "stop" },
    ]);
  });

  it("throws an in-band error event as a typed error after the chunks before it", async () => {
    const { baseURL } = await serve((_req, res) => {
      const send = sse(res);
      send(contentChunk("Hel"));
      send({ error: { message: "The node ran out of KV cache.", type: "server_error", code: 503 } });
      res.end();
    });
    const client = new Seventy({ baseURL, apiKey: "k" });
    const stream = await client.chat.completions.create({ model: MODEL, messages: user, stream: true });
    const errors: unknown[] = [];
    stream.on("error", (e) => errors.push(e));
    const got: string[] = [];
    const err = await (async () => {
      for await (const c of stream) got.push(c.choices[0]!.delta.content!);
    })().catch((e) => e);
    expect(got).toEqual(["Hel"]);
    expect(err).toBeInstanceOf(InternalServerError);
    expect(err).toMatchObject({ status: 503, type: "server_error", requestId: "req_123" });
    expect(err.message).toBe("503 The node ran out of KV cache.");
    expect(errors).toEqual([err]);
    await expect(stream.finalCompletion()).rejects.toBe(err);
  });

  it("reads `event: error` events too", async () => {
    const { baseURL } = await serve((_req, res) => {
      sse(res)(contentChunk("a"));
      res.end(`event: error\ndata: {"message":"Rate limited mid-stream.","type":"rate_limit_error","status":429}\n\n`);
    });
    const client = new Seventy({ baseURL, apiKey: "k" });
    const stream = await client.chat.completions.create({ model: MODEL, messages: user, stream: true });
    await expect(stream.finalCompletion()).rejects.toBeInstanceOf(RateLimitError);
  });

  it("treats a body that ends without [DONE] or a finish reason as cut off", async () => {
    const { baseURL } = await serve((_req, res) => {
      sse(res)(contentChunk("half an ans"));
      res.end();
    });
    const client = new Seventy({ baseURL, apiKey: "k" });
    const stream = await client.chat.completions.create({ model: MODEL, messages: user, stream: true });
    await expect(stream.finalCompletion()).rejects.toThrow(/ended before the completion was finished/);
  });

  it("accepts a finished stream whose server sent no [DONE]", async () => {
    const { baseURL } = await serve((_req, res) => {
      const send = sse(res);
      send(contentChunk("ok"));
      send(finishChunk());
      res.end();
    });
    const client = new Seventy({ baseURL, apiKey: "k" });
    const stream = await client.chat.completions.create({ model: MODEL, messages: user, stream: true });
    expect((await stream.finalCompletion()).choices[0]!.message.content).toBe("ok");
  });

  it("streams legacy completions", async () => {
    const { baseURL, seen } = await serve((_req, res) => {
      const send = sse(res);
      const c = { id: "cmpl-1", object: "text_completion", created: 1, model: MODEL };
      send({ ...c, choices: [{ index: 0, text: "Once", logprobs: null, finish_reason: null }] });
      send({ ...c, choices: [{ index: 0, text: " upon", logprobs: null, finish_reason: "length" }] });
      send({ ...c, choices: [], usage });
      send("[DONE]");
      res.end();
    });
    const client = new Seventy({ baseURL, apiKey: "k" });
    const stream = await client.completions.create({ model: MODEL, prompt: "Tell me", stream: true, max_tokens: 2 });
    const texts: string[] = [];
    for await (const t of stream.textStream) texts.push(t);
    expect(texts).toEqual(["Once", " upon"]);
    const final = await stream.finalCompletion();
    expect(final).toMatchObject({ object: "text_completion", choices: [{ text: "Once upon", finish_reason: "length" }], usage });
    expect(seen[0]!.url).toBe("/v1/completions");
  });
});

// ---- aborts and timeouts: each checks that the server saw the connection close ----

/** Sends one chunk, then holds the stream open (until the client goes away). */
const stallingStream: Handler = (_req, res) => {
  sse(res)(contentChunk("first"));
};

describe("aborts", () => {
  it("`break` closes the HTTP request", async () => {
    const { baseURL, seen } = await serve(stallingStream);
    const client = new Seventy({ baseURL, apiKey: "k" });
    const stream = await client.chat.completions.create({ model: MODEL, messages: user, stream: true });
    for await (const _ of stream) break;
    await seen[0]!.closedEarly;
    await expect(stream.finalCompletion()).rejects.toBeInstanceOf(APIUserAbortError);
  });

  it("stream.abort() ends a pending read with APIUserAbortError and closes the request", async () => {
    const { baseURL, seen } = await serve(stallingStream);
    const client = new Seventy({ baseURL, apiKey: "k" });
    const stream = await client.chat.completions.create({ model: MODEL, messages: user, stream: true });
    const reading = (async () => {
      for await (const _ of stream) {
        /* waits on the second chunk */
      }
    })();
    await sleep(50);
    stream.abort();
    await expect(reading).rejects.toBeInstanceOf(APIUserAbortError);
    await seen[0]!.closedEarly;
  });

  it("the caller's signal aborts mid-stream, before the headers, and during a retry wait", async () => {
    const { baseURL, seen } = await serve(async (req, res, s) => {
      if (req.url!.endsWith("/models")) return json(res, 503, errorBody("busy", "server_error"), { "retry-after-ms": "10000" });
      if (s.body.messages[0].content === "slow") return; // never answers
      stallingStream(req, res, s);
    });
    const client = new Seventy({ baseURL, apiKey: "k" });

    const c1 = new AbortController();
    const stream = await client.chat.completions.create({ model: MODEL, messages: user, stream: true }, { signal: c1.signal });
    setTimeout(() => c1.abort(), 50);
    await expect(stream.finalCompletion()).rejects.toBeInstanceOf(APIUserAbortError);
    await seen[0]!.closedEarly;

    const c2 = new AbortController();
    const pending = client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "slow" }] }, { signal: c2.signal });
    setTimeout(() => c2.abort(), 50);
    await expect(pending).rejects.toBeInstanceOf(APIUserAbortError);
    await seen[1]!.closedEarly;

    const c3 = new AbortController();
    const t0 = Date.now();
    const waiting = client.models.list({ signal: c3.signal });
    setTimeout(() => c3.abort(), 100);
    await expect(waiting).rejects.toBeInstanceOf(APIUserAbortError);
    expect(Date.now() - t0).toBeLessThan(5_000); // did not sit out the 10 s retry-after
  });

  it("aborts even through a fetch that ignores its signal", async () => {
    const { baseURL, seen } = await serve(stallingStream);
    const client = new Seventy({ baseURL, apiKey: "k", fetch: (url, { signal: _ignored, ...init }) => fetch(url, init) });
    const stream = await client.chat.completions.create({ model: MODEL, messages: user, stream: true });
    setTimeout(() => stream.abort(), 50);
    await expect(stream.finalCompletion()).rejects.toBeInstanceOf(APIUserAbortError);
    await seen[0]!.closedEarly;
  });
});

describe("timeouts", () => {
  it("a stalled stream fails with an idle timeout instead of hanging", async () => {
    const { baseURL, seen } = await serve(stallingStream);
    const client = new Seventy({ baseURL, apiKey: "k", idleTimeout: 150 });
    const stream = await client.chat.completions.create({ model: MODEL, messages: user, stream: true });
    const t0 = Date.now();
    const err = await stream.finalCompletion().catch((e) => e);
    expect(err).toBeInstanceOf(APITimeoutError);
    expect(err).toMatchObject({ phase: "idle", timeoutMs: 150 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    await seen[0]!.closedEarly;
  });

  it("a slow but steady stream is not an idle timeout", async () => {
    const { baseURL } = await serve(async (_req, res) => {
      const send = sse(res);
      for (let i = 0; i < 5; i++) {
        send(contentChunk(String(i)));
        await sleep(60);
      }
      send(finishChunk());
      send("[DONE]");
      res.end();
    });
    const client = new Seventy({ baseURL, apiKey: "k", idleTimeout: 150 });
    const stream = await client.chat.completions.create({ model: MODEL, messages: user, stream: true });
    expect((await stream.finalCompletion()).choices[0]!.message.content).toBe("01234");
  });

  it("the first chunk has its own deadline (headers sent, then silence)", async () => {
    const { baseURL, seen } = await serve((_req, res) => void sse(res));
    const client = new Seventy({ baseURL, apiKey: "k", idleTimeout: 10_000, maxRetries: 0 });
    const stream = await client.chat.completions.create({ model: MODEL, messages: user, stream: true }, { timeout: 150 });
    const err = await stream.finalCompletion().catch((e) => e);
    expect(err).toBeInstanceOf(APITimeoutError);
    expect(err.phase).toBe("first-chunk");
    await seen[0]!.closedEarly;
  });

  it("a non-streaming request times out as a whole, and is retried", async () => {
    const { baseURL, seen } = await serve((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.write('{"object":'); // and never the rest
    });
    const client = new Seventy({ baseURL, apiKey: "k", timeout: 100, maxRetries: 1 });
    const err = await client.models.list().catch((e) => e);
    expect(err).toBeInstanceOf(APITimeoutError);
    expect(err.phase).toBe("request");
    // Headers arrived, so the body timeout is not retried: one attempt.
    expect(seen).toHaveLength(1);

    const { baseURL: silent, seen: seen2 } = await serve(() => {});
    const client2 = new Seventy({ baseURL: silent, apiKey: "k", timeout: 100, maxRetries: 1 });
    await expect(client2.models.list()).rejects.toBeInstanceOf(APITimeoutError);
    expect(seen2).toHaveLength(2); // no response at all: retried
  });
});
