/**
 * The node's side of the edge's limits: the signed token budget (x-seventy-budget) bounds what a
 * request may generate, every answer names its real usage (x-seventy-usage, and in-band for
 * streams), and the edge can stop a request by its signature's nonce (POST /v1/cancel) and still
 * learn exactly what it generated.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatNodeCredential, NODE_ID_HEADER, signRequest } from "@seventy/sdk/protocol";
import { SimulatedEngine } from "../../gpu-node/src/engine/index.js";
import { startNode, type RunningNode } from "../../gpu-node/src/node.js";

// The node's own credential: the edge signs requests to it (and their budgets) with its edge key.
const CRED = { nodeId: "budget-node", edgeKey: "e".repeat(43), nodeKey: "n".repeat(43) };
const MODEL = "tiny-llama-3.1";
let node: RunningNode;
beforeAll(async () => {
  node = await startNode({ port: 0, credential: formatNodeCredential(CRED), engineInstance: new SimulatedEngine({ numKvBlocks: 512, blockSize: 16, stepDelayMs: 5 }), log: () => {} });
});
afterAll(async () => node?.close());

type Json = Record<string, any>;

/** Signs a request; `go` sends it. */
async function prepare(path: string, json: Json, budget?: number, extra: Record<string, string> = {}) {
  const body = JSON.stringify(json);
  const headers = await signRequest({ method: "POST", path, body, secret: CRED.edgeKey, signed: { [NODE_ID_HEADER]: CRED.nodeId }, budget });
  const go = () => fetch(node.url + path, { method: "POST", headers: { "content-type": "application/json", ...headers, ...extra }, body });
  return { go, nonce: headers["x-seventy-nonce"]! };
}

async function send(path: string, json: Json, budget?: number, extra: Record<string, string> = {}) {
  const { go, nonce } = await prepare(path, json, budget, extra);
  return { res: await go(), nonce };
}

function usageHeader(res: Response): [number, number] {
  const [p, c] = res.headers.get("x-seventy-usage")!.split(",").map(Number);
  return [p!, c!];
}

const chat = (over: Json = {}) => ({ model: MODEL, messages: [{ role: "user", content: "hello there" }], ignore_eos: true, ...over });

describe("the signed token budget", () => {
  it("refuses an explicit max_tokens that does not fit, before generating (usage 0)", async () => {
    const { res } = await send("/v1/chat/completions", chat({ max_tokens: 50, n: 2 }), 60);
    expect(res.status).toBe(400);
    const body = (await res.json()) as Json;
    expect(body.error).toMatchObject({ code: "budget_exceeded", param: "max_tokens" });
    expect(usageHeader(res)).toEqual([0, 0]);
  });

  it("shrinks an absent max_tokens to fit, and never generates past the budget", async () => {
    const { res } = await send("/v1/chat/completions", chat({ n: 3 }), 100);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Json;
    expect(body.usage.prompt_tokens + body.usage.completion_tokens).toBeLessThanOrEqual(100);
    expect(body.choices).toHaveLength(3);
    expect(usageHeader(res)).toEqual([body.usage.prompt_tokens, body.usage.completion_tokens]);
  });

  it("covers every prompt and choice of a completions request", async () => {
    const { res } = await send("/v1/completions", { model: MODEL, prompt: ["a b", "c d", "e f", "g h"], n: 2, ignore_eos: true }, 120);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Json;
    expect(body.choices).toHaveLength(8);
    expect(body.usage.prompt_tokens + body.usage.completion_tokens).toBeLessThanOrEqual(120);
    const tooMuch = await send("/v1/completions", { model: MODEL, prompt: ["a b", "c d", "e f", "g h"], n: 2, max_tokens: 20 }, 120);
    expect(tooMuch.res.status).toBe(400);
  });

  it("rejects a budget changed after signing", async () => {
    const { res } = await send("/v1/chat/completions", chat({ max_tokens: 2 }), 100, { "x-seventy-budget": "100000" });
    expect(res.status).toBe(401);
  });
});

describe("stopping a request by its nonce", () => {
  it("ends a stream at once with the usage it really generated", async () => {
    const { res, nonce } = await send("/v1/chat/completions", chat({ max_tokens: 2000, stream: true, stream_options: { include_usage: true } }), 5000);
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let text = "";
    while ((text.match(/"content":"[^"]/g) ?? []).length < 5) text += dec.decode((await reader.read()).value, { stream: true });
    const stop = await send("/v1/cancel", { nonce });
    expect(await stop.res.json()).toEqual({ cancelled: true });
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += dec.decode(value, { stream: true });
    }
    expect(text.endsWith("data: [DONE]\n\n")).toBe(true);
    const usage = JSON.parse(text.split("\n\n").find((e) => e.includes('"usage":{'))!.slice(6)).usage;
    const chunks = (text.match(/"content":"[^"]/g) ?? []).length;
    expect(usage.completion_tokens).toBeGreaterThanOrEqual(chunks);
    expect(usage.completion_tokens).toBeLessThan(2000);
    // A nonce is stopped once; an unknown one is not.
    expect(await (await send("/v1/cancel", { nonce })).res.json()).toEqual({ cancelled: false });
  });

  it("answers a stopped non-stream request with its partial usage", async () => {
    const { go, nonce } = await prepare("/v1/chat/completions", chat({ max_tokens: 2000 }), 5000);
    const pending = go();
    await new Promise((r) => setTimeout(r, 100));
    const stop = await send("/v1/cancel", { nonce });
    expect(await stop.res.json()).toEqual({ cancelled: true });
    const res = await pending;
    expect(res.status).toBe(200);
    const body = (await res.json()) as Json;
    expect(body.usage.completion_tokens).toBeGreaterThan(0);
    expect(body.usage.completion_tokens).toBeLessThan(2000);
    expect(usageHeader(res)).toEqual([body.usage.prompt_tokens, body.usage.completion_tokens]);
  });

  it("refuses an unsigned stop", async () => {
    const res = await fetch(node.url + "/v1/cancel", { method: "POST", headers: { "content-type": "application/json" }, body: '{"nonce":"x"}' });
    expect(res.status).toBe(401);
  });
});


describe("the Responses API under the same budget and stop", () => {
  const respond = (over: Json = {}) => ({ model: MODEL, input: "hello there", ...over });

  it("refuses a max_output_tokens that does not fit, naming it, and shrinks an absent one to fit", async () => {
    const refused = await send("/v1/responses", respond({ max_output_tokens: 50 }), 30);
    expect(refused.res.status).toBe(400);
    expect(((await refused.res.json()) as Json).error).toMatchObject({ code: "budget_exceeded", param: "max_output_tokens" });
    expect(usageHeader(refused.res)).toEqual([0, 0]);

    const { res } = await send("/v1/responses", respond(), 60);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Json;
    expect(body.usage.total_tokens).toBeLessThanOrEqual(60);
    expect(body.status).toBe("incomplete");
    expect(usageHeader(res)).toEqual([body.usage.input_tokens, body.usage.output_tokens]);
  });

  it("ends a stopped stream with response.failed carrying the usage it generated", async () => {
    const { res, nonce } = await send("/v1/responses", respond({ max_output_tokens: 2000, stream: true }), 5000);
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let text = "";
    while ((text.match(/response\.output_text\.delta/g) ?? []).length < 10) text += dec.decode((await reader.read()).value, { stream: true });
    expect(await (await send("/v1/cancel", { nonce })).res.json()).toEqual({ cancelled: true });
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += dec.decode(value, { stream: true });
    }
    const last = text.trimEnd().split("\n\n").at(-1)!;
    expect(last.startsWith("event: response.failed\n")).toBe(true);
    const usage = JSON.parse(last.split("\n")[1]!.slice(6)).response.usage;
    const deltas = (text.match(/"type":"response\.output_text\.delta"/g) ?? []).length;
    expect(usage.output_tokens).toBeGreaterThanOrEqual(deltas);
    expect(usage.output_tokens).toBeLessThan(2000);
  });

  it("answers a stopped non-stream request with its partial usage in x-seventy-usage", async () => {
    const { go, nonce } = await prepare("/v1/responses", respond({ max_output_tokens: 2000 }), 5000);
    const pending = go();
    await new Promise((r) => setTimeout(r, 100));
    expect(await (await send("/v1/cancel", { nonce })).res.json()).toEqual({ cancelled: true });
    const res = await pending;
    expect(res.status).toBe(503);
    const [prompt, completion] = usageHeader(res);
    expect(prompt).toBeGreaterThan(0);
    expect(completion).toBeGreaterThan(0);
    expect(completion).toBeLessThan(2000);
  });
});
