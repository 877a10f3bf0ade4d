import { verifyRequest } from "@seventy/sdk/protocol";
import { reset } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { hashApiKey } from "../src/auth/api-key";
import { resetReleases } from "../src/limits/releases";
import { poolView } from "../src/pool/view";
import {
  admin,
  call,
  CHAT,
  chat,
  createKey,
  expectOpenAIError,
  heartbeat,
  credentialFor,
  limiterState,
  NODE_SECRET,
  sendHeartbeat,
  sseBody,
  streamOf,
} from "./helpers";

type NodeHandler = (req: Request) => Promise<Response> | Response;
const nodes = new Map<string, NodeHandler>();
const seen: { host: string; req: Request; body: string }[] = [];

function nodeJson(usage = { prompt_tokens: 9, completion_tokens: 4, total_tokens: 13 }): Response {
  return Response.json({
    id: "cmpl-1",
    object: "chat.completion",
    created: 1,
    model: "tiny",
    choices: [{ index: 0, message: { role: "assistant", content: "hi" }, logprobs: null, finish_reason: "stop" }],
    usage,
  });
}

beforeEach(() => {
  nodes.clear();
  seen.length = 0;
  vi.spyOn(globalThis, "fetch").mockImplementation(async (input, init) => {
    const req = new Request(input as RequestInfo, init as RequestInit);
    const host = new URL(req.url).host;
    const handler = nodes.get(host);
    if (!handler) throw new TypeError("Network connection lost.");
    const body = await req.clone().text();
    seen.push({ host, req, body });
    return handler(req);
  });
});

afterEach(async () => {
  // Let leases settled after the response (waitUntil) land before storage is wiped.
  await new Promise((r) => setTimeout(r, 50));
  vi.restoreAllMocks();
  poolView.reset();
  resetReleases();
  await reset();
});

async function addNode(id: string, handler: NodeHandler, over: Parameters<typeof heartbeat>[1] = {}): Promise<void> {
  nodes.set(`${id}.node.test`, handler);
  const res = await sendHeartbeat(heartbeat(id, over));
  expect(res.status).toBe(200);
}

describe("edge basics", () => {
  it("answers health and unknown URLs in the OpenAI error shape", async () => {
    expect((await call("/health")).status).toBe(200);
    const err = await expectOpenAIError(await call("/v1/nope"), 404, "unknown_url");
    expect(err.type).toBe("invalid_request_error");
  });

  it("echoes a sane x-request-id and makes one otherwise", async () => {
    const given = await call("/health", { headers: { "x-request-id": "abc-123" } });
    expect(given.headers.get("x-request-id")).toBe("abc-123");
    const made = await call("/health", { headers: { "x-request-id": "bad id with spaces" } });
    expect(made.headers.get("x-request-id")).toMatch(/^req_[0-9a-f]{32}$/);
  });
});

describe("admin API", () => {
  it("requires the admin token", async () => {
    await expectOpenAIError(await call("/admin/keys"), 401, "invalid_admin_token");
    await expectOpenAIError(await call("/admin/keys", { headers: { authorization: "Bearer wrong" } }), 401);
    await expectOpenAIError(await call("/admin/keys", { headers: { authorization: "Bearer test-admin-token-and-more" } }), 401);
    expect((await admin("/admin/keys")).status).toBe(200);
  });

  it("creates a key, shows it once, and stores only its hash", async () => {
    const created = await createKey({ name: "app", models: ["tiny"], limits: { rpm: 5 } });
    expect(created.key).toMatch(/^sk-[A-Za-z0-9_-]{43}$/);
    expect(created.prefix).toBe(`${created.key.slice(0, 6)}...${created.key.slice(-4)}`);
    expect(created.limits).toEqual({ rpm: 5, tpm: 200_000, concurrency: 8 });
    const list = await (await admin("/admin/keys")).text();
    expect(list).toContain(created.id);
    expect(list).not.toContain(created.key);
    expect(list).not.toContain(await hashApiKey(created.key));
    const one = (await (await admin(`/admin/keys/${created.id}`)).json()) as Record<string, unknown>;
    expect(one).not.toHaveProperty("key");
    expect(one).not.toHaveProperty("hash");
    expect(one.state).toEqual({ in_flight: 0, reserved_tokens: 0, remaining_requests: 5, remaining_tokens: 200_000 });
  });

  it("validates key bodies and names the bad parameter", async () => {
    const bad = await admin("/admin/keys", { method: "POST", json: { name: "x", limits: { rpm: 0 } } });
    expect((await expectOpenAIError(bad, 400, "invalid_value")).param).toBe("limits.rpm");
    const unknown = await admin("/admin/keys", { method: "POST", json: { name: "x", limit: { rpm: 1 } } });
    expect((await expectOpenAIError(unknown, 400)).param).toBe("limit");
    const key = await admin("/admin/keys", { method: "POST", json: { name: "x", key: "pk-123456789" } });
    expect((await expectOpenAIError(key, 400)).param).toBe("key");
    await expectOpenAIError(await admin("/admin/keys", { method: "POST", body: "{" }), 400, "invalid_json");
  });

  it("imports a given key once; a second import of the same key conflicts", async () => {
    const k = await createKey({ key: "sk-dev-local-key" });
    expect(k.key).toBe("sk-dev-local-key");
    await expectOpenAIError(await admin("/admin/keys", { method: "POST", json: { name: "again", key: "sk-dev-local-key" } }), 409, "key_exists");
  });

  it("updates and deletes keys; unknown ids are 404", async () => {
    const k = await createKey();
    const patched = await admin(`/admin/keys/${k.id}`, { method: "PATCH", json: { limits: { tpm: 77 }, models: ["a"] } });
    expect(await patched.json()).toMatchObject({ limits: { rpm: 60, tpm: 77, concurrency: 8 }, models: ["a"] });
    expect((await admin(`/admin/keys/${k.id}`, { method: "DELETE" })).status).toBe(200);
    await expectOpenAIError(await admin(`/admin/keys/${k.id}`), 404, "key_not_found");
    await expectOpenAIError(await admin(`/admin/keys/${k.id}`, { method: "DELETE" }), 404);
    await expectOpenAIError(await admin("/admin/keys/key_nope", { method: "PATCH", json: {} }), 404);
    const list = (await (await admin("/admin/keys")).json()) as { data: unknown[] };
    expect(list.data).toHaveLength(0);
  });
});

describe("node heartbeats", () => {
  it("accepts signed heartbeats and lists the node", async () => {
    const res = await sendHeartbeat(heartbeat("n1"));
    expect(await res.json()).toEqual({ ok: true, draining: false, ttl_ms: 6000 });
    const list = (await (await admin("/admin/nodes")).json()) as { data: { id: string; status: string; url: string }[] };
    expect(list.data).toMatchObject([{ id: "n1", status: "healthy", url: "https://n1.node.test" }]);
  });

  it("refuses unsigned, wrongly signed and replayed heartbeats", async () => {
    await expectOpenAIError(await call("/internal/nodes/heartbeat", { method: "POST", body: JSON.stringify(heartbeat("x")) }), 401, "invalid_signature");
    const cred = await credentialFor("x");
    await expectOpenAIError(await sendHeartbeat(heartbeat("x"), { key: NODE_SECRET }), 401, "invalid_signature");
    // The edge → node key is not the node → edge key: a node cannot use it to sign.
    await expectOpenAIError(await sendHeartbeat(heartbeat("x"), { key: cred.edgeKey }), 401, "invalid_signature");
    const body = JSON.stringify(heartbeat("x"));
    const { signRequest } = await import("@seventy/sdk/protocol");
    const headers = await signRequest({ method: "POST", path: "/internal/nodes/heartbeat", body, secret: cred.nodeKey, signed: { "x-seventy-node": "x" } });
    const send = () => call("/internal/nodes/heartbeat", { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
    expect((await send()).status).toBe(200);
    await expectOpenAIError(await send(), 401, "replayed_signature");
  });

  it("rejects a signed heartbeat that does not match the schema", async () => {
    const err = await expectOpenAIError(await sendHeartbeat({ ...heartbeat("x"), models: [] }), 400);
    expect(err.param).toBe("models");
  });
});

describe("API keys on /v1", () => {
  it("answers 401 for missing, malformed, unknown, disabled and deleted keys", async () => {
    await addNode("a", () => nodeJson());
    await expectOpenAIError(await chat(null, CHAT), 401, "missing_api_key");
    await expectOpenAIError(await chat("not-a-key", CHAT), 401, "invalid_api_key");
    await expectOpenAIError(await chat("sk-unknownunknownunknown", CHAT), 401, "invalid_api_key");
    const k = await createKey();
    expect((await chat(k.key, CHAT)).status).toBe(200);
    await admin(`/admin/keys/${k.id}`, { method: "PATCH", json: { disabled: true } });
    await expectOpenAIError(await chat(k.key, CHAT), 401, "key_disabled");
    await admin(`/admin/keys/${k.id}`, { method: "PATCH", json: { disabled: false } });
    expect((await chat(k.key, CHAT)).status).toBe(200);
    await admin(`/admin/keys/${k.id}`, { method: "DELETE" });
    await expectOpenAIError(await chat(k.key, CHAT), 401, "invalid_api_key");
    expect(seen).toHaveLength(2);
  });

  it("answers 401 before 400: a bad body with a bad key is still a 401", async () => {
    await expectOpenAIError(await chat("sk-unknownunknownunknown", { model: "tiny" }), 401);
    const k = await createKey();
    const err = await expectOpenAIError(await chat(k.key, { model: "tiny", messages: [] }), 400, "invalid_value");
    expect(err.param).toBe("messages");
    await expectOpenAIError(
      await call("/v1/chat/completions", { method: "POST", headers: { authorization: `Bearer ${k.key}` }, body: "{nope" }),
      400,
      "invalid_json",
    );
  });

  it("answers 403 for a model the key may not use", async () => {
    await addNode("a", () => nodeJson(), { models: ["tiny", "big"] });
    const k = await createKey({ models: ["big"] });
    const err = await expectOpenAIError(await chat(k.key, CHAT), 403, "model_not_allowed");
    expect(err.type).toBe("permission_error");
    expect(seen).toHaveLength(0);
  });

  it("answers 413 for a body over the limit", async () => {
    const k = await createKey();
    const big = { ...CHAT, messages: [{ role: "user", content: "x".repeat(1_100_000) }] };
    await expectOpenAIError(await chat(k.key, big), 413, "request_too_large");
  });
});

describe("routing and forwarding", () => {
  it("answers 503 with Retry-After when no node serves, 404 for a model nobody serves", async () => {
    const k = await createKey();
    const none = await chat(k.key, CHAT);
    expect(none.headers.get("retry-after")).toBe("2");
    expect(none.headers.get("x-ratelimit-limit-requests")).toBe("60");
    await expectOpenAIError(none, 503, "no_healthy_node");
    await addNode("a", () => nodeJson(), { models: ["other"] });
    const err = await expectOpenAIError(await chat(k.key, CHAT), 404, "model_not_found");
    expect(err.param).toBe("model");
  });

  it("signs the forwarded request, forwards x-request-id, never the API key, and passes the answer through", async () => {
    await addNode("a", () => nodeJson());
    const k = await createKey({ limits: { rpm: 10, tpm: 10_000 } });
    const sent = Date.now();
    const res = await chat(k.key, CHAT, { "x-request-id": "rid-1" });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { usage: { total_tokens: number } };
    expect(body.usage.total_tokens).toBe(13);
    expect(res.headers.get("x-request-id")).toBe("rid-1");
    expect(res.headers.get("x-ratelimit-limit-requests")).toBe("10");
    expect(res.headers.get("x-ratelimit-remaining-requests")).toBe("9");
    expect(res.headers.get("x-ratelimit-reset-requests")).toMatch(/^\d+(\.\d+)?(ms|s)$/);
    expect(res.headers.get("x-ratelimit-limit-tokens")).toBe("10000");
    expect(Number(res.headers.get("x-ratelimit-remaining-tokens"))).toBeLessThan(10_000 - 16);
    expect(res.headers.get("x-ratelimit-reset-tokens")).toBeTruthy();
    const { req, body: forwarded } = seen[0]!;
    expect(req.headers.get("x-request-id")).toBe("rid-1");
    expect(req.headers.get("authorization")).toBeNull();
    expect(forwarded).not.toContain(k.key);
    // Signed with this node's own edge key, for this node, carrying the key id the edge admitted under.
    const cred = await credentialFor(seen[0]!.host.split(".")[0]!);
    const verdict = await verifyRequest({ method: "POST", path: "/v1/chat/completions", body: forwarded, secret: cred.edgeKey, headers: req.headers, nodeId: cred.nodeId });
    expect(verdict.ok).toBe(true);
    expect(req.headers.get("x-seventy-key-id")).toBe(k.id);
    expect(req.headers.get("x-seventy-cache-salt")).toBe(`key:${k.id}`);
    // The lease settles with the node's usage (13 tokens), not the estimate.
    await vi.waitFor(async () => expect((await limiterState(await hashApiKey(k.key))).inFlight).toBe(0));
    const state = await limiterState(await hashApiKey(k.key));
    // 10000 tokens per minute refill 1 token per 6 ms meanwhile; the estimate (prompt + 16) would
    // have left about 40 fewer.
    const refill = Math.ceil(((Date.now() - sent) * 10_000) / 60_000);
    expect(state.remainingTokens).toBeGreaterThanOrEqual(10_000 - 13);
    expect(state.remainingTokens).toBeLessThanOrEqual(10_000 - 13 + refill);
  });

  it("streams through, asks the node for usage and strips it when the client did not", async () => {
    await addNode("a", () => new Response(streamOf([sseBody(3)]), { headers: { "content-type": "text/event-stream" } }));
    const k = await createKey();
    const res = await chat(k.key, { ...CHAT, stream: true });
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    expect(res.headers.get("content-encoding")).toBe("identity");
    expect(await res.text()).toBe(sseBody(3, { usage: false }));
    expect(JSON.parse(seen[0]!.body).stream_options).toEqual({ include_usage: true });
    const withUsage = await chat(k.key, { ...CHAT, stream: true, stream_options: { include_usage: true } });
    expect(await withUsage.text()).toBe(sseBody(3));
    // A request that asked for usage itself is forwarded byte for byte.
    expect(seen[1]!.body).toBe(JSON.stringify({ ...CHAT, stream: true, stream_options: { include_usage: true } }));
    await vi.waitFor(async () => {
      const usage = (await (await admin(`/admin/usage?key=${k.id}`)).json()) as { data: { requests: number; prompt_tokens: number; completion_tokens: number }[] };
      expect(usage.data[0]).toMatchObject({ requests: 2, prompt_tokens: 14, completion_tokens: 6 });
    });
  });

  it("ends a stream cut off mid-way with an error event, meters it, and counts an error", async () => {
    await addNode("a", () => new Response(streamOf([sseBody(2, { usage: false, done: false })], { errorAtEnd: true })));
    const k = await createKey();
    const res = await chat(k.key, { ...CHAT, stream: true });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).not.toContain("[DONE]");
    expect(text).toContain('data: {"error":{"message":');
    await vi.waitFor(async () => {
      const usage = (await (await admin(`/admin/usage?key=${k.id}`)).json()) as { data: { requests: number; completion_tokens: number; errors: number }[] };
      expect(usage.data[0]).toMatchObject({ requests: 1, completion_tokens: 2, errors: 1 });
    });
  });

  it("fails over on a connection error, a 5xx or a timeout, but not on a 4xx", async () => {
    const k = await createKey({ limits: { rpm: 100 } });
    await addNode("good", () => nodeJson());
    await addNode("down", () => {
      throw new TypeError("Network connection lost.");
    });
    await addNode("broken", () => Response.json({ error: { message: "boom" } }, { status: 500 }));
    await addNode("slow", (req) => new Promise((_, reject) => req.signal.addEventListener("abort", () => reject(new Error("aborted")))));
    for (let i = 0; i < 12; i++) {
      const res = await chat(k.key, { ...CHAT, messages: [{ role: "user", content: `q${i}` }] });
      expect(res.status).toBe(200);
      expect(res.headers.get("x-seventy-node")).toBe("good");
    }
    nodes.set("good.node.test", () => Response.json({ error: { message: "context too long", type: "invalid_request_error", param: "messages", code: null } }, { status: 400 }));
    const before = seen.length;
    await expectOpenAIError(await chat(k.key, { ...CHAT, messages: [{ role: "user", content: "zz" }] }), 400);
    expect(seen.length - before).toBeLessThanOrEqual(3);
  });

  it("answers 502 when every node fails and 504 when the last one timed out", async () => {
    const k = await createKey();
    await addNode("broken", () => new Response("no", { status: 503 }));
    await expectOpenAIError(await chat(k.key, CHAT), 502, "upstream_error");
    nodes.set("broken.node.test", (req) => new Promise((_, reject) => req.signal.addEventListener("abort", () => reject(new Error("aborted")))));
    const res = await chat(k.key, CHAT);
    expect(res.headers.get("x-ratelimit-limit-requests")).toBe("60");
    await expectOpenAIError(res, 504, "upstream_timeout");
  });

  it("does not fail over a stream once its first bytes were sent", async () => {
    const k = await createKey();
    let calls = 0;
    await addNode("a", () => {
      calls++;
      return new Response(streamOf([sseBody(1, { usage: false, done: false })], { errorAtEnd: true }));
    });
    await addNode("b", () => {
      calls++;
      return new Response(streamOf([sseBody(1, { usage: false, done: false })], { errorAtEnd: true }));
    });
    const text = await (await chat(k.key, { ...CHAT, stream: true })).text();
    expect(text).toContain('"code":"upstream_disconnected"');
    expect(calls).toBe(1);
  });

  it("sends no new requests to a drained node", async () => {
    const k = await createKey({ limits: { rpm: 100 } });
    await addNode("a", () => nodeJson());
    await addNode("b", () => nodeJson());
    const drained = await admin("/admin/nodes/a/drain", { method: "POST" });
    expect(await drained.json()).toMatchObject({ id: "a", status: "draining" });
    for (let i = 0; i < 8; i++) {
      const res = await chat(k.key, { ...CHAT, messages: [{ role: "user", content: `q${i}` }] });
      expect(res.headers.get("x-seventy-node")).toBe("b");
    }
    // The drain outlives the node's next heartbeat.
    expect(await (await sendHeartbeat(heartbeat("a"))).json()).toMatchObject({ draining: true });
    await admin("/admin/nodes/a/undrain", { method: "POST" });
    await expectOpenAIError(await admin("/admin/nodes/zz/drain", { method: "POST" }), 404, "node_not_found");
  });

  it("sends the same conversation head to the same node", async () => {
    const k = await createKey({ limits: { rpm: 1000 } });
    for (const id of ["a", "b", "c", "d"]) await addNode(id, () => nodeJson());
    const system = { role: "system", content: "You are a helpful assistant. ".repeat(10) };
    const placed = new Set<string>();
    for (let turn = 0; turn < 6; turn++) {
      const messages = [system, { role: "user", content: "first question" }];
      for (let t = 0; t < turn; t++) messages.push({ role: "assistant", content: `a${t}` }, { role: "user", content: `q${t}` });
      const res = await chat(k.key, { ...CHAT, messages });
      placed.add(res.headers.get("x-seventy-node")!);
    }
    expect(placed.size).toBe(1);
    const spread = new Set<string>();
    for (let c = 0; c < 24; c++) {
      const res = await chat(k.key, { ...CHAT, messages: [{ role: "user", content: `conversation ${c}` }] });
      spread.add(res.headers.get("x-seventy-node")!);
    }
    expect(spread.size).toBeGreaterThan(1);
  });

  it("answers 429 with Retry-After and rate-limit headers past the limit", async () => {
    await addNode("a", () => nodeJson());
    const k = await createKey({ limits: { rpm: 2 } });
    expect((await chat(k.key, CHAT)).status).toBe(200);
    expect((await chat(k.key, CHAT)).status).toBe(200);
    const res = await chat(k.key, CHAT);
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(29);
    expect(res.headers.get("x-ratelimit-remaining-requests")).toBe("0");
    const err = await expectOpenAIError(res, 429, "rate_limit_exceeded");
    expect(err.type).toBe("rate_limit_error");
  });

  it("lists the models of live nodes that the key may use", async () => {
    await addNode("a", () => nodeJson(), { models: ["tiny", "big"] });
    const k = await createKey({ models: ["big"] });
    const res = await call("/v1/models", { headers: { authorization: `Bearer ${k.key}` } });
    expect(await res.json()).toMatchObject({ object: "list", data: [{ id: "big", object: "model", max_model_len: 4096 }] });
  });
});

describe("CORS", () => {
  it("answers preflights for the configured origin and exposes the rate-limit headers", async () => {
    expect(env.CORS_ORIGINS).toBe("https://app.example");
    const res = await call("/v1/chat/completions", {
      method: "OPTIONS",
      headers: { origin: "https://app.example", "access-control-request-method": "POST", "access-control-request-headers": "authorization,content-type" },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get("access-control-allow-origin")).toBe("https://app.example");
    expect(res.headers.get("access-control-allow-headers")).toContain("authorization");
    const other = await call("/v1/models", { headers: { origin: "https://evil.example" } });
    expect(other.headers.get("access-control-allow-origin")).toBeNull();
    const k = await createKey();
    const ok = await call("/v1/models", { headers: { origin: "https://app.example", authorization: `Bearer ${k.key}` } });
    expect(ok.headers.get("access-control-expose-headers")).toContain("x-ratelimit-remaining-tokens");
  });
});

describe("client disconnects", () => {
  it("aborts the node request of a non-stream call when the client goes away, and releases the lease", async () => {
    const { default: worker } = await import("../src/index");
    const { createExecutionContext, waitOnExecutionContext } = await import("cloudflare:test");
    let nodeSawAbort = false;
    await addNode("a", (req) => new Promise((_, reject) => req.signal.addEventListener("abort", () => {
      nodeSawAbort = true;
      reject(new Error("aborted"));
    })));
    const k = await createKey();
    const client = new AbortController();
    const ctx = createExecutionContext();
    const req = new Request("http://edge.test/v1/chat/completions", {
      method: "POST",
      headers: { authorization: `Bearer ${k.key}`, "content-type": "application/json" },
      body: JSON.stringify(CHAT),
      signal: client.signal,
    });
    const pending = worker.fetch(req, env, ctx);
    await vi.waitFor(() => expect(seen).toHaveLength(1));
    client.abort();
    const res = await pending;
    expect(res.status).toBe(499);
    expect(nodeSawAbort).toBe(true);
    await waitOnExecutionContext(ctx);
    const state = await limiterState(await hashApiKey(k.key));
    expect(state).toMatchObject({ inFlight: 0, reservedTokens: 0 });
  });
});
