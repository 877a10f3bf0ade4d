import { reset, runDurableObjectAlarm } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { hashApiKey } from "../src/auth/api-key";
import { resetReleases } from "../src/limits/releases";
import { poolView } from "../src/pool/view";
import { admin, call, createKey, expectOpenAIError, heartbeat, limiterState, sendHeartbeat, streamOf } from "./helpers";

// The edge's Responses API against mocked nodes: stored responses, previous_response_id, per-key
// isolation, streaming storage and the in-band end of a stream whose node died.

type NodeHandler = (req: Request, body: Record<string, unknown>) => Promise<Response> | Response;
const nodes = new Map<string, NodeHandler>();
const seen: { host: string; body: Record<string, unknown> }[] = [];

beforeEach(() => {
  nodes.clear();
  seen.length = 0;
  vi.spyOn(globalThis, "fetch").mockImplementation(async (input, init) => {
    const req = new Request(input as RequestInfo, init as RequestInit);
    const host = new URL(req.url).host;
    const handler = nodes.get(host);
    if (!handler) throw new TypeError("Network connection lost.");
    const body = JSON.parse(await req.clone().text()) as Record<string, unknown>;
    seen.push({ host, body });
    return handler(req, body);
  });
});

afterEach(async () => {
  await new Promise((r) => setTimeout(r, 50));
  vi.restoreAllMocks();
  poolView.reset();
  resetReleases();
  await reset();
});

async function addNode(id: string, handler: NodeHandler): Promise<void> {
  nodes.set(`${id}.node.test`, handler);
  expect((await sendHeartbeat(heartbeat(id))).status).toBe(200);
}

let counter = 0;
/** What a gpu-node answers: one message whose text names the request's turn. */
function nodeResponse(body: Record<string, unknown>, status = "completed") {
  const n = ++counter;
  return {
    id: `resp_${n}`,
    object: "response",
    created_at: 1,
    status,
    error: null,
    incomplete_details: null,
    instructions: null,
    max_output_tokens: null,
    model: "tiny",
    output: [{ type: "message", id: `msg_${n}`, role: "assistant", status: "completed", content: [{ type: "output_text", text: `answer ${n}`, annotations: [] }] }],
    parallel_tool_calls: true,
    previous_response_id: body.previous_response_id ?? null,
    temperature: null,
    top_p: null,
    text: { format: { type: "text" } },
    tool_choice: "auto",
    tools: [],
    truncation: "disabled",
    usage: { input_tokens: 11, input_tokens_details: { cached_tokens: 0 }, output_tokens: 3, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 14 },
    metadata: null,
  };
}

function sse(events: Array<Record<string, unknown>>): string {
  return events.map((e, i) => `event: ${e.type as string}\ndata: ${JSON.stringify({ ...e, sequence_number: i })}\n\n`).join("");
}

function streamEvents(body: Record<string, unknown>) {
  const done = nodeResponse(body);
  const created = { ...done, status: "in_progress", output: [], usage: null };
  const item = done.output[0]!;
  return [
    { type: "response.created", response: created },
    { type: "response.in_progress", response: created },
    { type: "response.output_item.added", output_index: 0, item: { ...item, status: "in_progress", content: [] } },
    { type: "response.content_part.added", item_id: item.id, output_index: 0, content_index: 0, part: { type: "output_text", text: "", annotations: [] } },
    { type: "response.output_text.delta", item_id: item.id, output_index: 0, content_index: 0, delta: item.content[0]!.text, logprobs: [] },
    { type: "response.output_text.done", item_id: item.id, output_index: 0, content_index: 0, text: item.content[0]!.text, logprobs: [] },
    { type: "response.content_part.done", item_id: item.id, output_index: 0, content_index: 0, part: item.content[0] },
    { type: "response.output_item.done", output_index: 0, item },
    { type: "response.completed", response: done },
  ];
}

const respond: NodeHandler = (_req, body) =>
  body.stream
    ? new Response(streamOf([sse(streamEvents(body))]), { headers: { "content-type": "text/event-stream" } })
    : // A node names what a whole answer used in x-seventy-usage (the edge meters that, not the body).
      Response.json(nodeResponse(body), { headers: { "x-seventy-usage": "11,3,0" } });

function post(key: string, json: Record<string, unknown>): Promise<Response> {
  return call("/v1/responses", {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify({ model: "tiny", ...json }),
  });
}

const get = (key: string, path: string, method = "GET") => call(`/v1/responses${path}`, { method, headers: { authorization: `Bearer ${key}` } });

function parseEvents(text: string): Array<{ event: string; data: Record<string, unknown> }> {
  return text
    .split("\n\n")
    .filter((b) => b.trim())
    .map((b) => {
      const lines = b.split("\n");
      return {
        event: lines.find((l) => l.startsWith("event: "))!.slice(7),
        data: JSON.parse(lines.find((l) => l.startsWith("data: "))!.slice(6)) as Record<string, unknown>,
      };
    });
}

describe("POST /v1/responses at the edge", () => {
  it("stores a response and continues it by previous_response_id: the node gets the whole conversation", async () => {
    await addNode("a", respond);
    const k = await createKey();
    const first = await post(k.key, { input: "Hello", instructions: "Be brief." });
    expect(first.status).toBe(200);
    const r1 = (await first.json()) as { id: string };
    expect(seen[0]!.body.previous_items).toBeUndefined();

    const second = await post(k.key, { input: [{ role: "user", content: [{ type: "input_text", text: "And again?" }] }], previous_response_id: r1.id });
    expect(second.status).toBe(200);
    const r2 = (await second.json()) as { id: string; previous_response_id: string };
    expect(r2.previous_response_id).toBe(r1.id);
    const prev = seen[1]!.body.previous_items as Array<Record<string, unknown>>;
    expect(prev.map((i) => [i.type, i.role])).toEqual([
      ["message", "user"],
      ["message", "assistant"],
    ]);
    expect((prev[0]!.content as Array<{ text: string }>)[0]!.text).toBe("Hello");
    expect((prev[1]!.content as Array<{ text: string }>)[0]!.text).toMatch(/^answer \d+$/);

    // A third turn brings both earlier turns, oldest first.
    await post(k.key, { input: "Third", previous_response_id: r2.id });
    expect((seen[2]!.body.previous_items as unknown[]).length).toBe(4);

    const fetched = await get(k.key, `/${r2.id}`);
    expect(fetched.status).toBe(200);
    expect(((await fetched.json()) as { id: string }).id).toBe(r2.id);
    const items = (await (await get(k.key, `/${r2.id}/input_items?order=asc`)).json()) as { object: string; data: Array<{ id: string; type: string }>; has_more: boolean };
    expect(items.object).toBe("list");
    expect(items.data).toHaveLength(1);
    expect(items.data[0]!.id).toMatch(/^msg_/);
    expect(items.has_more).toBe(false);
    const badLimit = await expectOpenAIError(await get(k.key, `/${r2.id}/input_items?limit=0`), 400);
    expect(badLimit.param).toBe("limit");
  });

  it("one key can never read, continue, list or delete another key's response", async () => {
    await addNode("a", respond);
    const owner = await createKey();
    const other = await createKey();
    const { id } = (await (await post(owner.key, { input: "secret" })).json()) as { id: string };
    await expectOpenAIError(await get(other.key, `/${id}`), 404, "not_found");
    await expectOpenAIError(await get(other.key, `/${id}/input_items`), 404, "not_found");
    await expectOpenAIError(await get(other.key, `/${id}`, "DELETE"), 404, "not_found");
    const cont = await expectOpenAIError(await post(other.key, { input: "x", previous_response_id: id }), 400, "previous_response_not_found");
    expect(cont.param).toBe("previous_response_id");
    expect(seen).toHaveLength(1); // the refused continuation never reached a node
    // The owner still has it, and can delete it.
    expect((await get(owner.key, `/${id}`)).status).toBe(200);
    const del = (await (await get(owner.key, `/${id}`, "DELETE")).json()) as { deleted: boolean; object: string };
    expect(del).toMatchObject({ id, object: "response.deleted", deleted: true });
    await expectOpenAIError(await get(owner.key, `/${id}`), 404, "not_found");
  });

  it("store: false keeps nothing; an unknown key is 401 before anything else", async () => {
    await addNode("a", respond);
    const k = await createKey();
    const { id } = (await (await post(k.key, { input: "x", store: false })).json()) as { id: string };
    await expectOpenAIError(await get(k.key, `/${id}`), 404, "not_found");
    await expectOpenAIError(await get("sk-unknown-000000000000000000000000", `/${id}`), 401);
    await expectOpenAIError(await post("sk-unknown-000000000000000000000000", { input: 5 }), 401);
    await expectOpenAIError(await post("sk-unknown-000000000000000000000000", { input: "x", previous_response_id: id }), 401);
  });

  it("answers 400 naming the parameter for malformed bodies, and refuses previous_items from clients", async () => {
    const k = await createKey();
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ input: 5 }, "input"],
      [{ input: [] }, "input"],
      [{ input: [{ role: "user", content: [{ type: "input_image", image_url: "x" }] }] }, "input[0].content[0].type"],
      [{ input: [{ type: "function_call_output", output: "x" }] }, "input[0].call_id"],
      [{ input: "x", max_output_tokens: 0 }, "max_output_tokens"],
      [{ input: "x", text: { format: { type: "json_schema" } } }, "text.format.name"],
      [{ input: "x", tools: [{ type: "function" }] }, "tools[0].name"],
      [{ input: "x", metadata: { k: 5 } }, "metadata.k"],
      [{ input: "x", previous_items: [] }, "previous_items"],
    ];
    for (const [json, param] of cases) {
      const err = await expectOpenAIError(await post(k.key, json), 400);
      expect(err.param, JSON.stringify(json)).toBe(param);
    }
    const cancel = await expectOpenAIError(await get(k.key, "/resp_nope/cancel", "POST"), 404);
    expect(cancel.param).toBe("response_id");
  });

  it("streams through unchanged and stores the response before the last event reaches the client", async () => {
    await addNode("a", respond);
    const k = await createKey();
    const res = await post(k.key, { input: "Hi", stream: true });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const events = parseEvents(await res.text());
    expect(events.map((e) => e.event)).toEqual(streamEvents({}).map((e) => e.type));
    expect(events.map((e) => e.data.sequence_number)).toEqual(events.map((_, i) => i));
    const id = (events[0]!.data.response as { id: string }).id;
    // Stored by the time the stream ended: readable at once.
    const stored = (await (await get(k.key, `/${id}`)).json()) as { status: string; output: unknown[] };
    expect(stored.status).toBe("completed");
    expect(stored.output).toHaveLength(1);
    // The lease settles with the usage of response.completed.
    await vi.waitFor(async () => expect((await limiterState(hashApiKey(k.key))).inFlight).toBe(0));
    // Metered with the usage the responses report (11 in, 3 out each), streamed or not.
    await post(k.key, { input: "Hi again" });
    await vi.waitFor(async () => {
      const usage = (await (await admin(`/admin/usage?key=${k.id}`)).json()) as { data: { requests: number; prompt_tokens: number; completion_tokens: number }[] };
      expect(usage.data[0]).toMatchObject({ requests: 2, prompt_tokens: 22, completion_tokens: 6 });
    });
  });

  it("reserves the conversation it forwards plus max_output_tokens, and signs that budget into the request", async () => {
    const budgets: { budget: string | null; bytes: number }[] = [];
    await addNode("a", async (req, body) => {
      budgets.push({ budget: req.headers.get("x-seventy-budget"), bytes: (await req.clone().arrayBuffer()).byteLength });
      return respond(req, body);
    });
    const k = await createKey();
    const first = (await (await post(k.key, { input: "Hi", max_output_tokens: 40 })).json()) as { id: string };
    // The next turn's body carries the resolved conversation (previous_items): the reservation counts it.
    expect((await post(k.key, { input: "More", max_output_tokens: 40, previous_response_id: first.id })).status).toBe(200);
    expect(budgets).toHaveLength(2);
    for (const b of budgets) expect(Number(b.budget)).toBe(b.bytes + 256 + 40);
    expect(budgets[1]!.bytes).toBeGreaterThan(budgets[0]!.bytes);
  });

  it("stops the node (POST /v1/cancel with the request's nonce) when a stream's client leaves, and meters what response.failed reports", async () => {
    const { default: worker } = await import("../src/index");
    const { createExecutionContext, waitOnExecutionContext } = await import("cloudflare:test");
    const enc = new TextEncoder();
    const stop = new Map<string, () => void>();
    const cancels: string[] = [];
    let sent = 0;
    await addNode("a", (req, body) => {
      if (new URL(req.url).pathname === "/v1/cancel") {
        const nonce = body.nonce as string;
        cancels.push(nonce);
        const f = stop.get(nonce);
        f?.();
        return Response.json({ cancelled: f !== undefined });
      }
      const events = streamEvents(body);
      let stopping = false;
      stop.set(req.headers.get("x-seventy-nonce")!, () => (stopping = true));
      let seq = 0;
      const event = (e: Record<string, unknown>) => enc.encode(`event: ${e.type as string}\ndata: ${JSON.stringify({ ...e, sequence_number: seq++ })}\n\n`);
      return new Response(
        new ReadableStream<Uint8Array>({
          start(c) {
            for (const e of events.slice(0, 4)) c.enqueue(event(e));
          },
          async pull(c) {
            await new Promise((r) => setTimeout(r, 5));
            if (stopping) {
              const usage = { input_tokens: 9, input_tokens_details: { cached_tokens: 0 }, output_tokens: sent, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 9 + sent };
              const response = { ...(events[0]!.response as object), status: "failed", usage };
              c.enqueue(event({ type: "error", code: "server_error", message: "stopped", param: null }));
              c.enqueue(event({ type: "response.failed", response }));
              c.close();
              return;
            }
            sent++;
            c.enqueue(event({ ...events[4]!, delta: "x" }));
          },
        }),
        { headers: { "content-type": "text/event-stream" } },
      );
    });
    const k = await createKey();
    const client = new AbortController();
    const ctx = createExecutionContext();
    const res = await worker.fetch(
      new Request("http://edge.test/v1/responses", {
        method: "POST",
        headers: { authorization: `Bearer ${k.key}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "tiny", input: "Go on", max_output_tokens: 1000, stream: true }),
        signal: client.signal,
      }),
      env,
      ctx,
    );
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    let text = "";
    while (!text.includes("response.output_text.delta")) text += new TextDecoder().decode((await reader.read()).value);
    await reader.cancel();
    client.abort();
    await waitOnExecutionContext(ctx);
    expect(cancels).toHaveLength(1);
    expect(sent).toBeGreaterThan(0);
    expect(await limiterState(hashApiKey(k.key))).toMatchObject({ inFlight: 0, reservedTokens: 0 });
    const usage = (await (await admin(`/admin/usage?key=${k.id}`)).json()) as { data: { requests: number; prompt_tokens: number; completion_tokens: number; errors: number }[] };
    expect(usage.data[0]).toMatchObject({ requests: 1, prompt_tokens: 9, completion_tokens: sent, errors: 0 });
  });

  it("reads CRLF-framed events, and cuts off an event larger than the edge passes on", async () => {
    await addNode("a", (_req, body) =>
      new Response(streamOf([sse(streamEvents(body)).replaceAll("\n", "\r\n")]), { headers: { "content-type": "text/event-stream" } }),
    );
    const k = await createKey();
    const text = await (await post(k.key, { input: "Hi", stream: true })).text();
    expect(text.split("\r\n\r\n").filter((b) => b.trim())).toHaveLength(streamEvents({}).length);
    const id = /"id":"(resp_\d+)"/.exec(text)![1]!;
    // Complete (response.completed was seen): stored, and metered with its usage.
    expect((await get(k.key, `/${id}`)).status).toBe(200);
    await vi.waitFor(async () => {
      const usage = (await (await admin(`/admin/usage?key=${k.id}`)).json()) as { data: { prompt_tokens: number; completion_tokens: number }[] };
      expect(usage.data[0]).toMatchObject({ prompt_tokens: 11, completion_tokens: 3 });
    });

    nodes.clear();
    // An event that never ends: the edge holds back at most MAX_EVENT_BYTES of it.
    const endless = `event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"${"x".repeat(2 << 20)}`;
    await addNode("b", (_req, body) =>
      new Response(streamOf([sse(streamEvents(body).slice(0, 4)), endless]), { headers: { "content-type": "text/event-stream" } }),
    );
    const cut = parseEvents(await (await post(k.key, { input: "Hi", stream: true })).text());
    expect(cut.at(-2)!.data).toMatchObject({ type: "error", code: "upstream_event_too_large" });
    expect(cut.at(-1)!.event).toBe("response.failed");
  });

  it("a node dying mid-stream ends it with `error` and `response.failed`, numbered on, and stores nothing", async () => {
    const events = streamEvents({});
    nodes.clear();
    await addNode("a", () => new Response(streamOf([sse(events.slice(0, 5))], { errorAtEnd: true }), { headers: { "content-type": "text/event-stream" } }));
    const k = await createKey();
    const res = await post(k.key, { input: "Hi", stream: true });
    const got = parseEvents(await res.text());
    expect(got.slice(0, 5).map((e) => e.event)).toEqual(events.slice(0, 5).map((e) => e.type));
    const [error, failed] = got.slice(5);
    expect(error!.event).toBe("error");
    expect(error!.data).toMatchObject({ type: "error", code: "upstream_disconnected", param: null, sequence_number: 5 });
    expect(failed!.event).toBe("response.failed");
    expect(failed!.data.sequence_number).toBe(6);
    const response = failed!.data.response as { id: string; status: string; error: { code: string; message: string } };
    expect(response.status).toBe("failed");
    expect(response.error.code).toBe("server_error");
    await expectOpenAIError(await get(k.key, `/${response.id}`), 404, "not_found");
  });

  it("routes every turn of a conversation to the node that served its first turn (prefix affinity)", async () => {
    for (const id of ["a", "b", "c"]) await addNode(id, respond);
    const k = await createKey();
    for (let conversation = 0; conversation < 3; conversation++) {
      seen.length = 0;
      let { id } = (await (await post(k.key, { input: `Conversation ${conversation} starts here.` })).json()) as { id: string };
      for (let turn = 0; turn < 3; turn++) {
        ({ id } = (await (await post(k.key, { input: `turn ${turn}`, previous_response_id: id })).json()) as { id: string });
      }
      expect(seen).toHaveLength(4);
      expect(new Set(seen.map((s) => s.host)).size).toBe(1);
    }
  });

  it("fails over to the next node before the first byte, as chat does", async () => {
    await addNode("a", () => new Response("boom", { status: 500 }));
    await addNode("b", respond);
    const k = await createKey();
    // Different conversations hash to different first choices: some start at the failing node.
    for (let i = 0; i < 6; i++) expect((await post(k.key, { input: `conversation ${i}` })).status).toBe(200);
    expect(seen.filter((s) => s.host === "a.node.test").length).toBeGreaterThan(0);
    expect(seen.filter((s) => s.host === "b.node.test")).toHaveLength(6);
  });
});

describe("ResponseStore (one per key)", () => {
  const store = () => env.RESPONSE_STORE.get(env.RESPONSE_STORE.idFromName(`store-${Math.random()}`));
  const record = (id: string, previousId: string | null = null, pad = 0) => ({
    response: { ...nodeResponse({}), id, previous_response_id: previousId, instructions: "x".repeat(pad) } as never,
    input: [{ type: "message", id: `msg_${id}`, role: "user", status: "completed", content: [{ type: "input_text", text: id }] }] as never,
    previousId,
  });
  const roomy = { retentionMs: 60_000, maxBytes: 1 << 20 };

  it("chains a conversation oldest first, and names the first missing link", async () => {
    const s = store();
    expect(await s.save(record("resp_a"), roomy)).toBe(true);
    expect(await s.save(record("resp_b", "resp_a"), roomy)).toBe(true);
    const conv = await s.conversation("resp_b", roomy, 1 << 20);
    expect(conv.ok && conv.items.map((i) => i.id)).toEqual(["msg_resp_a", expect.stringMatching(/^msg_/), "msg_resp_b", expect.stringMatching(/^msg_/)]);
    expect(await s.remove("resp_a")).toBe(true);
    expect(await s.conversation("resp_b", roomy, 1 << 20)).toEqual({ ok: false, missing: "resp_a", reason: "not_found" });
    expect(await s.conversation("resp_b", roomy, 10)).toMatchObject({ ok: false, reason: "too_long" });
  });

  it("forgets responses past the retention period", async () => {
    const s = store();
    await s.save(record("resp_old"), { retentionMs: 5, maxBytes: 1 << 20 });
    await new Promise((r) => setTimeout(r, 20));
    expect(await s.get("resp_old", { retentionMs: 5, maxBytes: 1 << 20 })).toBeNull();
  });

  it("deletes expired responses from disk by alarm, with no further writes", async () => {
    const s = store();
    await s.save(record("resp_gone"), { retentionMs: 30, maxBytes: 1 << 20 });
    expect(await s.get("resp_gone", roomy)).not.toBeNull();
    // Read with a longer retention: only a row deleted from disk is missing.
    await vi.waitFor(async () => expect(await s.get("resp_gone", roomy)).toBeNull(), { timeout: 5000, interval: 20 });
    expect(await runDurableObjectAlarm(s)).toBe(false); // empty: no alarm left
  });

  it("keeps at most maxBytes per key, deleting the oldest first", async () => {
    const s = store();
    const limits = { retentionMs: 60_000, maxBytes: 6000 };
    for (const id of ["resp_1", "resp_2", "resp_3"]) {
      expect(await s.save(record(id, null, 2000), limits)).toBe(true);
      await new Promise((r) => setTimeout(r, 2));
    }
    expect(await s.get("resp_1", limits)).toBeNull();
    expect(await s.get("resp_2", limits)).not.toBeNull();
    expect(await s.get("resp_3", limits)).not.toBeNull();
    expect(await s.save(record("resp_huge", null, 7000), limits)).toBe(false);
  });

  it("refuses what a node should not send: an odd id, no output list, an id already taken", async () => {
    const s = store();
    expect(await s.save({ ...record("bad id!"), previousId: null }, roomy)).toBe(false);
    expect(await s.save({ ...record("resp_x"), response: { id: "resp_x" } as never }, roomy)).toBe(false);
    expect(await s.save(record("resp_y"), roomy)).toBe(true);
    const again = record("resp_y");
    expect(await s.save(again, roomy)).toBe(false);
  });
});
