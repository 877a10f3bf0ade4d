import { describe, expect, it } from "vitest";
import { Seventy } from "../client.js";
import { APIConnectionError, APIUserAbortError, BadRequestError, InternalServerError } from "../core/errors.js";
import type { ResponseObject } from "../protocol/responses.js";

// Responses streams replayed through an in-process fetch: what ResponseStream does with the bytes.

const encoder = new TextEncoder();
const response = (status: ResponseObject["status"], text = ""): ResponseObject => ({
  id: "resp_1",
  object: "response",
  created_at: 1,
  status,
  error: status === "failed" ? { code: "server_error", message: "node crashed" } : null,
  incomplete_details: null,
  instructions: null,
  max_output_tokens: null,
  model: "m",
  output: text ? [{ type: "message", id: "msg_1", role: "assistant", status: "completed", content: [{ type: "output_text", text, annotations: [] }] }] : [],
  parallel_tool_calls: true,
  previous_response_id: null,
  temperature: null,
  top_p: null,
  text: { format: { type: "text" } },
  tool_choice: "auto",
  tools: [],
  truncation: "disabled",
  usage: null,
  metadata: null,
});
const delta = (d: string) => ({ type: "response.output_text.delta", item_id: "msg_1", output_index: 0, content_index: 0, delta: d, logprobs: [] });

function sse(events: Array<Record<string, unknown>>): Uint8Array[] {
  return events.map((e, i) => encoder.encode(`event: ${e.type as string}\ndata: ${JSON.stringify({ ...e, sequence_number: i })}\n\n`));
}

const GOOD = sse([
  { type: "response.created", response: response("in_progress") },
  delta("Hel"),
  delta("lo"),
  { type: "response.completed", response: response("completed", "Hello") },
]);

function replay(pieces: Uint8Array[], status = 200) {
  const requests: Array<{ url: string; body: Record<string, unknown> }> = [];
  let cancelled = false;
  const fetch = async (url: string, init: RequestInit) => {
    requests.push({ url, body: JSON.parse((init.body as string) ?? "null") });
    if (status !== 200) {
      return Response.json({ error: { message: "bad", type: "invalid_request_error", param: "input", code: null } }, { status });
    }
    let i = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (i < pieces.length) c.enqueue(pieces[i++]!);
        else c.close();
      },
      cancel: () => void (cancelled = true),
    });
    return new Response(body, { headers: { "content-type": "text/event-stream" } });
  };
  const client = new Seventy({ baseURL: "http://edge.invalid/v1", apiKey: "k", fetch, maxRetries: 0 });
  return { client, requests, isCancelled: () => cancelled };
}

describe("ResponseStream", () => {
  it("iterates typed events, streams text, fires on() listeners and resolves finalResponse with output_text", async () => {
    const { client, requests } = replay(GOOD);
    const stream = await client.responses.create({ model: "m", input: "hi", stream: true });
    const seen: string[] = [];
    const texts: Array<[string, string]> = [];
    stream.on("event", (e) => seen.push(e.type)).on("text", (d, snap) => texts.push([d, snap]));
    const types: string[] = [];
    for await (const e of stream) types.push(e.type);
    expect(types).toEqual(["response.created", "response.output_text.delta", "response.output_text.delta", "response.completed"]);
    expect(seen).toEqual(types);
    expect(texts).toEqual([
      ["Hel", "Hel"],
      ["lo", "Hello"],
    ]);
    expect((await stream.finalResponse()).output_text).toBe("Hello");
    expect(requests[0]!.url).toBe("http://edge.invalid/v1/responses");
    expect(requests[0]!.body.stream).toBe(true);
  });

  it("stream() returns at once and connects on first read; textStream yields the deltas", async () => {
    const { client, requests } = replay(GOOD);
    const stream = client.responses.stream({ model: "m", input: "hi" });
    expect(requests).toHaveLength(0);
    const pieces: string[] = [];
    for await (const t of stream.textStream) pieces.push(t);
    expect(pieces).toEqual(["Hel", "lo"]);
    expect(requests).toHaveLength(1);
    expect((await stream.finalResponse()).status).toBe("completed");
  });

  it("finalResponse() alone reads the stream", async () => {
    const { client } = replay(GOOD);
    expect((await client.responses.stream({ model: "m", input: "hi" }).finalResponse()).output_text).toBe("Hello");
  });

  it("an `error` event throws an InternalServerError carrying its code", async () => {
    const { client } = replay(
      sse([{ type: "response.created", response: response("in_progress") }, delta("a"), { type: "error", code: "upstream_disconnected", message: "node died", param: null }]),
    );
    const stream = client.responses.stream({ model: "m", input: "hi" });
    const err = await stream.finalResponse().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InternalServerError);
    expect((err as InternalServerError).code).toBe("upstream_disconnected");
  });

  it("response.failed throws; a body cut off before the last event is an APIConnectionError", async () => {
    const failed = replay(sse([{ type: "response.created", response: response("in_progress") }, { type: "response.failed", response: response("failed") }]));
    await expect(failed.client.responses.stream({ model: "m", input: "hi" }).finalResponse()).rejects.toBeInstanceOf(InternalServerError);
    const cut = replay(GOOD.slice(0, 2));
    const stream = await cut.client.responses.create({ model: "m", input: "hi", stream: true });
    await expect((async () => {
      for await (const _ of stream) {
        /* read to the cut */
      }
    })()).rejects.toBeInstanceOf(APIConnectionError);
  });

  it("abort() rejects finalResponse and cancels the body; an error status is a typed error before any stream", async () => {
    const r = replay(GOOD);
    const stream = await r.client.responses.create({ model: "m", input: "hi", stream: true });
    const final = stream.finalResponse();
    stream.abort();
    await expect(final).rejects.toBeInstanceOf(APIUserAbortError);
    expect(r.isCancelled()).toBe(true);
    const bad = replay([], 400);
    await expect(bad.client.responses.create({ model: "m", input: "hi", stream: true })).rejects.toBeInstanceOf(BadRequestError);
    await expect(bad.client.responses.stream({ model: "m", input: "hi" }).finalResponse()).rejects.toBeInstanceOf(BadRequestError);
  });
});
