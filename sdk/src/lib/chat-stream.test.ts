import { describe, expect, it } from "vitest";
import { Seventy } from "../client.js";
import { APIUserAbortError, InternalServerError, ResponseValidationError } from "../core/errors.js";
import type { ChatCompletionChunk } from "../protocol/chat.js";
import { ChatCompletionStream } from "./chat-stream.js";
import { protocolValidator } from "./validate.js";

// An in-process fetch: these tests are about what the stream object does with bytes it was given.

const MODEL = "llama-test";
const base = { id: "chatcmpl-1", object: "chat.completion.chunk", created: 1, model: MODEL } as const;
const content = (text: string): ChatCompletionChunk => ({ ...base, choices: [{ index: 0, delta: { content: text }, logprobs: null, finish_reason: null }] });
const finish: ChatCompletionChunk = { ...base, choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: "stop" }] };
const usage = { prompt_tokens: 2, completion_tokens: 2, total_tokens: 4 };
const usageOnly: ChatCompletionChunk = { ...base, choices: [], usage };
const user = [{ role: "user" as const, content: "Hi" }];

const encoder = new TextEncoder();
const events = (items: unknown[]) => items.map((x) => encoder.encode(`data: ${typeof x === "string" ? x : JSON.stringify(x)}\n\n`));
const GOOD = [content("Hel"), content("lo"), finish, usageOnly, "[DONE]"];

/** A fetch answering with these SSE pieces; `cancelled` resolves if the client cancels the body. */
function replay(pieces: Uint8Array[]) {
  let onCancel!: () => void;
  const cancelled = new Promise<void>((r) => (onCancel = r));
  const requests: { url: string; body: any }[] = [];
  const fetch = async (url: string, init: RequestInit) => {
    requests.push({ url, body: JSON.parse(init.body as string) });
    let i = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (i < pieces.length) c.enqueue(pieces[i++]!);
        else if (i++ === pieces.length) c.close();
      },
      cancel: () => onCancel(),
    });
    return new Response(body, { headers: { "content-type": "text/event-stream", "x-request-id": "req_9" } });
  };
  return { fetch, cancelled, requests };
}

async function open(pieces: Uint8Array[], options: ConstructorParameters<typeof Seventy>[0] = {}) {
  const r = replay(pieces);
  const client = new Seventy({ baseURL: "http://edge.invalid/v1", apiKey: "k", fetch: r.fetch, ...options });
  const stream = await client.chat.completions.create({ model: MODEL, messages: user, stream: true });
  return { stream, ...r };
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe("ChatCompletionStream", () => {
  it("toReadableStream() → fromReadableStream() rebuilds the same chunks and completion", async () => {
    const { stream } = await open(events(GOOD));
    const relayed = ChatCompletionStream.fromReadableStream(stream.toReadableStream());
    const chunks = await collect(relayed);
    // The relay carries the usage chunk too, so the far side's finalCompletion() has usage.
    expect(chunks).toEqual([content("Hel"), content("lo"), finish, usageOnly]);
    expect(await relayed.finalCompletion()).toMatchObject({ choices: [{ message: { content: "Hello" } }], usage });
    expect(await stream.finalCompletion()).toMatchObject({ usage });
  });

  it("toResponse() is an uncompressed SSE response that Seventy.fromResponse reads", async () => {
    const { stream } = await open(events(GOOD));
    const res = stream.toResponse({ headers: { "x-extra": "1" } });
    expect(res.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    expect(res.headers.get("content-encoding")).toBe("identity");
    expect(res.headers.get("cache-control")).toBe("no-cache");
    expect(res.headers.get("x-request-id")).toBe("req_9");
    expect(res.headers.get("x-extra")).toBe("1");
    const text = await collect(Seventy.fromResponse(res).textStream);
    expect(text).toEqual(["Hel", "lo"]);
  });

  it("relays an in-band error as an error event that the far side throws", async () => {
    const { stream } = await open(events([content("a"), { error: { message: "node crashed", type: "server_error", code: 502 } }]));
    const relayed = Seventy.fromResponse(stream.toResponse());
    const got: string[] = [];
    const err = await (async () => {
      for await (const t of relayed.textStream) got.push(t);
    })().catch((e) => e);
    expect(got).toEqual(["a"]);
    expect(err).toBeInstanceOf(InternalServerError);
    expect(err).toMatchObject({ status: 502, message: "502 node crashed" });
  });

  it("cancelling the readable stream cancels the request body", async () => {
    const { stream, cancelled } = await open([...events([content("a"), content("b")])].concat(new Array(100).fill(events([content("x")])[0])));
    const reader = stream.toReadableStream().getReader();
    await reader.read();
    await reader.cancel();
    await cancelled;
    await expect(stream.finalCompletion()).rejects.toBeInstanceOf(APIUserAbortError);
  });

  it("tee() gives two full readers of one request", async () => {
    const { stream, requests } = await open(events(GOOD));
    const [a, b] = stream.tee();
    const [ta, tb] = await Promise.all([collect(a.textStream), collect(b)]);
    expect(ta).toEqual(["Hel", "lo"]);
    expect(tb).toEqual([content("Hel"), content("lo"), finish]);
    expect((await a.finalCompletion()).usage).toEqual(usage);
    expect((await stream.finalCompletion()).choices[0]!.message.content).toBe("Hello");
    expect(requests).toHaveLength(1);
  });

  it("abort() before reading rejects finalCompletion and cancels the body", async () => {
    const { stream, cancelled } = await open(events(GOOD));
    const errors: unknown[] = [];
    stream.on("error", (e) => errors.push(e));
    stream.abort();
    await cancelled;
    await expect(stream.finalCompletion()).rejects.toBeInstanceOf(APIUserAbortError);
    expect(errors).toHaveLength(1);
  });

  it("off() removes a listener", async () => {
    const { stream } = await open(events(GOOD));
    const seen: string[] = [];
    const fn = (d: string) => seen.push(d);
    stream.on("content", fn).off("content", fn);
    await stream.finalCompletion();
    expect(seen).toEqual([]);
  });

  it("sends the caller's stream_options through, adding include_usage", async () => {
    const { requests } = await open(events(GOOD));
    expect(requests[0]!.body).toMatchObject({ stream: true, stream_options: { include_usage: true } });
    expect(requests[0]!.url).toBe("http://edge.invalid/v1/chat/completions");
  });

  it("with protocolValidator, a malformed chunk is a ResponseValidationError", async () => {
    const bad = { ...content("x"), choices: [{ index: "zero", delta: {} }] };
    const { stream } = await open(events([content("ok"), bad, finish, "[DONE]"]), { validate: protocolValidator });
    const got: ChatCompletionChunk[] = [];
    const err = await (async () => {
      for await (const c of stream) got.push(c);
    })().catch((e) => e);
    expect(got).toEqual([content("ok")]);
    expect(err).toBeInstanceOf(ResponseValidationError);
    expect(err.message).toMatch(/choices\.0\.index/);
  });

  it("without a validator the same chunk passes through untouched", async () => {
    const odd = { ...content("x"), extra_field: 1 };
    const { stream } = await open(events([odd, finish, "[DONE]"]));
    expect(await collect(stream)).toEqual([odd, finish]);
  });
});
