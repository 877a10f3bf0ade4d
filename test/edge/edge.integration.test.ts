/**
 * The edge (its deploy bundle under workerd) in front of real gpu-nodes (tiny model, reference engine) on
 * loopback: authentication, exact limits, reconciliation, routing, failover, mid-stream failure,
 * cancellation, prefix affinity and drain.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  adminCall,
  freePort,
  registerNode,
  startEdge,
  startNode,
  stopGroup,
  waitFor,
  waitForNodes,
  type Started,
} from "../../edge/scripts/stack.mjs";
import { affinityNode } from "../../edge/src/pool/router";
import { chatPrefixHash } from "../../edge/src/proxy/prefix";

const ADMIN = "integration-admin-token";
const SECRET = "integration-node-secret";
const MODEL = "tiny-llama-3.1";
const UPSTREAM_TIMEOUT_MS = 4000;
const CONNECT_TIMEOUT_MS = 1000;

let stateDir: string;
let edge: Started;
const nodes = new Map<string, Started & { id: string | undefined }>();

type Json = Record<string, any>;
type Message = { role: string; content: string };

async function addNode(id: string): Promise<void> {
  const port = await freePort();
  const node = await startNode({
    port,
    edgeUrl: edge.url,
    credential: await registerNode(edge.url, ADMIN, { id, port }),
    args: ["--heartbeat-interval-ms", "300"],
  });
  nodes.set(id, node);
  await waitForNodes(edge.url, ADMIN, [id]);
}

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "seventy-edge-it-"));
  edge = await startEdge({
    port: await freePort(),
    adminToken: ADMIN,
    nodeSecret: SECRET,
    stateDir,
    vars: {
      NODE_TTL_MS: "1500",
      POOL_CACHE_MS: "200",
      UPSTREAM_TIMEOUT_MS: String(UPSTREAM_TIMEOUT_MS),
      CONNECT_TIMEOUT_MS: String(CONNECT_TIMEOUT_MS),
      NODE_EJECT_MS: "3000",
      MAX_BODY_BYTES: "262144",
      LOG_LEVEL: "error",
    },
  });
  await Promise.all([addNode("n1"), addNode("n2")]);
}, 120_000);

afterAll(async () => {
  await Promise.all([...nodes.values()].map((n) => stopGroup(n.child, "SIGKILL")));
  await edge?.stop();
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
}, 30_000);

async function newKey(json: Json = {}): Promise<{ id: string; key: string }> {
  return adminCall(edge.url, ADMIN, "POST", "/admin/keys", { name: "it", ...json });
}

function chat(key: string | null, body: Json, signal?: AbortSignal): Promise<Response> {
  return fetch(`${edge.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}) },
    body: JSON.stringify({ model: MODEL, max_tokens: 2, temperature: 0, ...body }),
    signal,
  });
}

function user(content: string): Message[] {
  return [{ role: "user", content }];
}

async function health(id: string): Promise<{ running: number; waiting: number }> {
  return (await fetch(`${nodes.get(id)!.url}/health`)).json() as Promise<{ running: number; waiting: number }>;
}

async function keyState(id: string): Promise<{ in_flight: number; reserved_tokens: number; remaining_tokens: number }> {
  return (await adminCall(edge.url, ADMIN, "GET", `/admin/keys/${id}`)).state;
}

async function usage(id: string): Promise<{ requests: number; prompt_tokens: number; completion_tokens: number; errors: number; rate_limited: number }> {
  const { data } = await adminCall(edge.url, ADMIN, "GET", `/admin/usage?key=${id}`);
  return data[0] ?? { requests: 0, prompt_tokens: 0, completion_tokens: 0, errors: 0, rate_limited: 0 };
}

/** A conversation whose prefix belongs to node `home` among `among` (the edge's own hashing). */
function messagesHomedOn(home: string, among: string[], tag: string): Message[] {
  for (let i = 0; i < 10_000; i++) {
    const messages = user(`${tag} ${i}`);
    const owner = affinityNode(among.map((id) => ({ id, busy: 0, waiting: 0, maxNumSeqs: 1, kvUsage: 0 })), chatPrefixHash({ messages } as never, 1024));
    if (owner?.id === home) return messages;
  }
  throw new Error("no prefix found");
}

/** Reads SSE text until `until(text)` holds or the stream ends. */
async function readUntil(res: Response, until: (text: string) => boolean): Promise<{ text: string; reader: ReadableStreamDefaultReader<Uint8Array> }> {
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let text = "";
  while (!until(text)) {
    const { done, value } = await reader.read();
    if (done) break;
    text += dec.decode(value, { stream: true });
  }
  return { text, reader };
}

async function readRest(reader: ReadableStreamDefaultReader<Uint8Array>, text = ""): Promise<string> {
  const dec = new TextDecoder();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return text;
    text += dec.decode(value, { stream: true });
  }
}

function contentChunks(text: string): number {
  return text.split("\n\n").filter((e) => /"content":"[^"]/.test(e)).length;
}

async function expectError(res: Response, status: number, code?: string): Promise<Json> {
  expect(res.status).toBe(status);
  const body = (await res.json()) as Json;
  expect(Object.keys(body)).toEqual(["error"]);
  expect(body.error).toEqual({ message: expect.any(String), type: expect.any(String), param: body.error.param, code: body.error.code });
  if (code) expect(body.error.code).toBe(code);
  return body.error;
}

describe("authentication", () => {
  it("answers 401 for missing, unknown and revoked keys at once, 403 for a model the key may not use", async () => {
    await expectError(await chat(null, { messages: user("hi") }), 401, "missing_api_key");
    await expectError(await chat("sk-this-key-does-not-exist", { messages: user("hi") }), 401, "invalid_api_key");
    const k = await newKey();
    expect((await chat(k.key, { messages: user("hi") })).status).toBe(200);
    await adminCall(edge.url, ADMIN, "DELETE", `/admin/keys/${k.id}`);
    await expectError(await chat(k.key, { messages: user("hi") }), 401, "invalid_api_key");
    const narrow = await newKey({ models: ["some-other-model"] });
    const err = await expectError(await chat(narrow.key, { messages: user("hi") }), 403, "model_not_allowed");
    expect(err.type).toBe("permission_error");
    await expectError(await fetch(`${edge.url}/admin/keys`, { headers: { authorization: "Bearer nope" } }), 401);
  });

  it("answers every error in the OpenAI shape: 400, 404, 413", async () => {
    const k = await newKey();
    const bad = await expectError(await chat(k.key, { messages: [], max_tokens: 2 }), 400, "invalid_value");
    expect(bad.param).toBe("messages");
    await expectError(await fetch(`${edge.url}/v1/nothing-here`), 404);
    await expectError(await chat(k.key, { messages: user("x".repeat(300_000)) }), 413, "request_too_large");
    // Without a content-length the body is counted as it arrives.
    const chunked = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < 40; i++) c.enqueue(new TextEncoder().encode("x".repeat(10_000)));
        c.close();
      },
    });
    const streamed = await fetch(`${edge.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${k.key}`, "content-type": "application/json" },
      body: chunked,
      duplex: "half",
    } as RequestInit);
    await expectError(streamed, 413, "request_too_large");
    await expectError(await chat(k.key, { model: "no-such-model", messages: user("hi") }), 404, "model_not_found");
  });
});

describe("rate limits", () => {
  it("admits exactly 10 of 50 concurrent requests against 10 requests per minute", async () => {
    const k = await newKey({ limits: { rpm: 10, concurrency: 100 } });
    const responses = await Promise.all(Array.from({ length: 50 }, (_, i) => chat(k.key, { messages: user(`burst ${i}`), max_tokens: 1 })));
    const statuses = responses.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(10);
    expect(statuses.filter((s) => s === 429)).toHaveLength(40);
    for (const r of responses) {
      expect(r.headers.get("x-ratelimit-limit-requests")).toBe("10");
      expect(r.headers.get("x-ratelimit-limit-tokens")).toBe("200000");
      expect(r.headers.get("x-ratelimit-remaining-requests")).toMatch(/^\d+$/);
      expect(r.headers.get("x-ratelimit-reset-tokens")).toBeTruthy();
      if (r.status === 429) {
        expect(Number(r.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
        await expectError(r, 429, "rate_limit_exceeded");
      } else await r.arrayBuffer();
    }
    expect((await usage(k.id)).rate_limited).toBe(40);
  });

  it("admits exactly 10 of 50 concurrent streams against a concurrency of 10; cancelling them stops the nodes", async () => {
    const k = await newKey({ limits: { rpm: 1000, concurrency: 10 } });
    const aborts = Array.from({ length: 50 }, () => new AbortController());
    const responses = await Promise.all(
      aborts.map((a, i) => chat(k.key, { messages: user(`long ${i}`), max_tokens: 2000, stream: true }, a.signal)),
    );
    const admitted = responses.filter((r) => r.status === 200);
    expect(admitted).toHaveLength(10);
    for (const r of responses.filter((r) => r.status !== 200)) await expectError(r, 429, "concurrency_limit_exceeded");
    expect((await keyState(k.id)).in_flight).toBe(10);
    // Every admitted stream is producing tokens on some node.
    await Promise.all(admitted.map((r) => readUntil(r, (t) => contentChunks(t) >= 1)));
    const running = (await health("n1")).running + (await health("n2")).running;
    expect(running).toBe(10);
    for (const a of aborts) a.abort();
    // 2000 tokens would take minutes; the disconnects end them on the nodes within seconds.
    await waitFor(async () => (await health("n1")).running + (await health("n2")).running === 0, { timeoutMs: 10_000, what: "nodes to stop" });
    await waitFor(async () => (await keyState(k.id)).in_flight === 0, { timeoutMs: 10_000, what: "leases released" });
  });

  it("reconciles reservations with real usage, also for a client that disconnects mid-stream", async () => {
    // 1000 tokens per minute; each request below reserves its prompt bound (body bytes + 256) + 500 tokens.
    const k = await newKey({ limits: { rpm: 1000, tpm: 1000, concurrency: 10 } });
    for (let round = 0; round < 3; round++) {
      const ac = new AbortController();
      const res = await chat(k.key, { messages: user(`reconcile ${round}`), max_tokens: 500, stream: true }, ac.signal);
      // Without reconciliation the second round would be refused (2 × 500+ > 1000).
      expect(res.status).toBe(200);
      await readUntil(res, (t) => contentChunks(t) >= 2);
      expect((await keyState(k.id)).reserved_tokens).toBeGreaterThan(500);
      ac.abort();
      await waitFor(async () => (await keyState(k.id)).in_flight === 0, { timeoutMs: 10_000, what: "lease released" });
    }
    const u = await usage(k.id);
    expect(u.requests).toBe(3);
    expect(u.errors).toBe(0);
    expect(u.completion_tokens).toBeGreaterThanOrEqual(6);
    expect(u.completion_tokens).toBeLessThan(100);
    const state = await keyState(k.id);
    expect(state.reserved_tokens).toBe(0);
    expect(state.remaining_tokens).toBeGreaterThan(1000 - u.prompt_tokens - u.completion_tokens - 1);
  });

  it("meters exactly the usage the node reports, and strips the usage chunk the client did not ask for", async () => {
    const k = await newKey();
    const body = { messages: user("the same question"), max_tokens: 3 };
    const plain = (await (await chat(k.key, body)).json()) as Json;
    const withUsage = await (await chat(k.key, { ...body, stream: true, stream_options: { include_usage: true } })).text();
    const without = await (await chat(k.key, { ...body, stream: true })).text();
    const usageChunk = withUsage.split("\n\n").find((e) => e.includes('"usage":{'))!;
    const streamed = JSON.parse(usageChunk.slice(6)).usage;
    expect(streamed.prompt_tokens).toBe(plain.usage.prompt_tokens);
    expect(without).not.toContain('"usage":{');
    expect(without.endsWith("data: [DONE]\n\n")).toBe(true);
    await waitFor(async () => (await usage(k.id)).requests === 3, { what: "three requests metered" });
    const u = await usage(k.id);
    expect(u.prompt_tokens).toBe(3 * plain.usage.prompt_tokens);
    expect(u.completion_tokens).toBe(plain.usage.completion_tokens + 2 * streamed.completion_tokens);
  });
});

describe("routing", () => {
  it("keeps a conversation head on one node, where its prefix cache hits", async () => {
    const k = await newKey({ limits: { rpm: 1000 } });
    const system = { role: "system", content: "You answer questions about the seventy project. ".repeat(24) };
    const served = new Set<string>();
    let cachedHits = 0;
    for (let turn = 0; turn < 4; turn++) {
      const res = await chat(k.key, { messages: [system, { role: "user", content: `question ${turn}` }], max_tokens: 1 });
      expect(res.status).toBe(200);
      served.add(res.headers.get("x-seventy-node")!);
      const body = (await res.json()) as Json;
      if (turn > 0 && body.usage.prompt_tokens_details?.cached_tokens > 0) cachedHits++;
    }
    expect(served.size).toBe(1);
    expect(cachedHits).toBe(3);
    // Short conversations are spread: each goes to the node its own head hashes to.
    for (const home of ["n1", "n2"]) {
      const res = await chat(k.key, { messages: messagesHomedOn(home, ["n1", "n2"], "short"), max_tokens: 1 });
      expect(res.headers.get("x-seventy-node")).toBe(home);
      await res.arrayBuffer();
    }
  });

  it("drains a node: it takes no new requests and finishes its streams", async () => {
    const k = await newKey({ limits: { rpm: 1000 } });
    const running = await chat(k.key, { messages: messagesHomedOn("n2", ["n1", "n2"], "drain"), max_tokens: 12, stream: true });
    expect(running.headers.get("x-seventy-node")).toBe("n2");
    const { text, reader } = await readUntil(running, (t) => contentChunks(t) >= 1);
    const drained = await adminCall(edge.url, ADMIN, "POST", "/admin/nodes/n2/drain");
    expect(drained.status).toBe("draining");
    try {
      for (let i = 0; i < 4; i++) {
        const res = await chat(k.key, { messages: messagesHomedOn("n2", ["n1", "n2"], `drained ${i}`), max_tokens: 1 });
        expect(res.headers.get("x-seventy-node")).toBe("n1");
        await res.arrayBuffer();
      }
      const all = await readRest(reader, text);
      expect(all.endsWith("data: [DONE]\n\n")).toBe(true);
      expect(contentChunks(all)).toBeGreaterThanOrEqual(10);
      // With every node drained there is nowhere to go.
      await adminCall(edge.url, ADMIN, "POST", "/admin/nodes/n1/drain");
      const none = await chat(k.key, { messages: user("anyone?") });
      expect(none.headers.get("retry-after")).toBe("2");
      await expectError(none, 503, "no_healthy_node");
    } finally {
      await adminCall(edge.url, ADMIN, "POST", "/admin/nodes/n1/undrain");
      await adminCall(edge.url, ADMIN, "POST", "/admin/nodes/n2/undrain");
    }
  });
});

describe("cancellation", () => {
  it("cancels the node's request when a streaming client disconnects, and meters what was sent", async () => {
    const k = await newKey();
    const ac = new AbortController();
    const res = await chat(k.key, { messages: messagesHomedOn("n1", ["n1", "n2"], "hang up"), max_tokens: 1500, stream: true }, ac.signal);
    expect(res.headers.get("x-seventy-node")).toBe("n1");
    await readUntil(res, (t) => contentChunks(t) >= 2);
    expect((await health("n1")).running).toBe(1);
    ac.abort();
    // 1500 tokens take minutes on the reference engine; the disconnect stops them at once.
    await waitFor(async () => (await health("n1")).running === 0, { timeoutMs: 5000, what: "n1 to stop the request" });
    await waitFor(async () => (await keyState(k.id)).in_flight === 0, { timeoutMs: 5000, what: "lease released" });
    const u = await usage(k.id);
    expect(u).toMatchObject({ requests: 1, errors: 0 });
    expect(u.completion_tokens).toBeGreaterThanOrEqual(2);
    expect(u.completion_tokens).toBeLessThan(200);
  });
});

describe("failures", () => {
  it("fails over past a killed node, and the pool drops it", async () => {
    await addNode("n3");
    const k = await newKey({ limits: { rpm: 1000 } });
    const messages = messagesHomedOn("n3", ["n1", "n2", "n3"], "victim");
    const before = await chat(k.key, { messages });
    expect(before.headers.get("x-seventy-node")).toBe("n3");
    await before.arrayBuffer();
    await stopGroup(nodes.get("n3")!.child, "SIGKILL");
    const after = await chat(k.key, { messages });
    expect(after.status).toBe(200);
    expect(["n1", "n2"]).toContain(after.headers.get("x-seventy-node"));
    await after.arrayBuffer();
    await waitForNodes(edge.url, ADMIN, ["n3"], { status: "gone", timeoutMs: 5000 });
  });

  it("fails over from a frozen node: a stream within the connect timeout, a non-stream when the node leaves the pool", async () => {
    await addNode("n4");
    const k = await newKey({ limits: { rpm: 1000 } });
    const messages = messagesHomedOn("n4", ["n1", "n2", "n4"], "frozen");
    const pid = nodes.get("n4")!.child.pid!;
    process.kill(pid, "SIGSTOP");
    try {
      const started = Date.now();
      const streamed = await chat(k.key, { messages, stream: true });
      expect(streamed.status).toBe(200);
      expect(["n1", "n2"]).toContain(streamed.headers.get("x-seventy-node"));
      expect(Date.now() - started).toBeGreaterThanOrEqual(CONNECT_TIMEOUT_MS - 50);
      expect(Date.now() - started).toBeLessThan(UPSTREAM_TIMEOUT_MS);
      expect(await streamed.text()).toMatch(/data: \[DONE\]\n\n$/);
      // The first attempt ejected n4 from this isolate's routing; the pool drops it when its heartbeats stop.
      const res = await chat(k.key, { messages: messagesHomedOn("n4", ["n1", "n2", "n4"], "frozen again") });
      expect(res.status).toBe(200);
      expect(["n1", "n2"]).toContain(res.headers.get("x-seventy-node"));
      await res.arrayBuffer();
    } finally {
      process.kill(pid, "SIGCONT");
    }
    await waitForNodes(edge.url, ADMIN, ["n4"], { timeoutMs: 10_000 });
  });

  it("ends a stream whose node dies with an in-band error event, never [DONE], and meters it", async () => {
    const k = await newKey({ limits: { rpm: 1000 } });
    // n4 is back from the previous test; wait out its ejection from the failed attempt.
    const messages = messagesHomedOn("n4", ["n1", "n2", "n4"], "doomed");
    const res = await waitFor(
      async () => {
        const r = await chat(k.key, { messages, max_tokens: 1500, stream: true });
        if (r.headers.get("x-seventy-node") === "n4") return r;
        await r.body?.cancel();
        return null;
      },
      { timeoutMs: 10_000, intervalMs: 500, what: "a stream on n4" },
    );
    const { text, reader } = await readUntil(res, (t) => contentChunks(t) >= 3);
    await stopGroup(nodes.get("n4")!.child, "SIGKILL");
    const all = await readRest(reader, text);
    expect(all).not.toContain("data: [DONE]");
    const last = all.trim().split("\n\n").pop()!;
    expect(last.startsWith("data: ")).toBe(true);
    const event = JSON.parse(last.slice(6)) as Json;
    expect(event.error).toMatchObject({ type: "server_error", code: "upstream_disconnected", param: null });
    // Streams that landed elsewhere and were cancelled above are metered too: wait for the cut-off one.
    await waitFor(async () => (await usage(k.id)).errors >= 1, { what: "the cut-off request metered" });
    const u = await usage(k.id);
    expect(u.errors).toBe(1);
    expect(u.completion_tokens).toBeGreaterThanOrEqual(3);
    expect(u.prompt_tokens).toBeGreaterThan(0);
  });
});
