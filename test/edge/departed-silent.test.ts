/**
 * Streams whose node is silent (a long prefill, a node that stalls), through the local stack: bare
 * workerd behind its front, a gpu-node in `--engine upstream` mode (signing, heartbeats, /v1/cancel
 * verified as for any node) in front of a scripted model server that goes quiet mid-answer.
 *
 * Under bare workerd the edge learns that a client left only when a write to it fails; the edge
 * writes an SSE comment after STREAM_KEEPALIVE_MS without bytes, so a client that leaves during the
 * silence is noticed within a few periods, not at STREAM_IDLE_TIMEOUT_MS: the node is told to stop,
 * the lease is released and the request is metered. A client that stays gets the comments, which
 * the official `openai` client ignores, and the exact answer.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adminCall, freePort, registerNode, startEdge, startNode, stopGroup, waitFor, waitForNodes, type Started } from "../../edge/scripts/stack.mjs";
import { scriptedModelServer, type ScriptedModelServer } from "../helpers/nodes.js";

const ADMIN = "departed-silent-admin";
const SECRET = "departed-silent-secret";
const MODEL = "silent-llama";
const KEEPALIVE_MS = 500;
/** Far beyond anything this test waits for: a departed client must be noticed long before. */
const IDLE_TIMEOUT_MS = 60_000;

let stateDir: string;
let edge: Started;
let node: Started;
let model: ScriptedModelServer;

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "seventy-departed-silent-"));
  model = await scriptedModelServer(MODEL);
  edge = await startEdge({
    port: await freePort(),
    adminToken: ADMIN,
    nodeSecret: SECRET,
    stateDir,
    vars: { STREAM_KEEPALIVE_MS: String(KEEPALIVE_MS), STREAM_IDLE_TIMEOUT_MS: String(IDLE_TIMEOUT_MS), POOL_CACHE_MS: "200", LOG_LEVEL: "error" },
  });
  const port = await freePort();
  node = await startNode({
    port,
    engine: "upstream",
    args: ["--upstream", model.url, "--heartbeat-interval-ms", "300"],
    edgeUrl: edge.url,
    credential: await registerNode(edge.url, ADMIN, { id: "s1", port }),
  });
  await waitForNodes(edge.url, ADMIN, ["s1"]);
}, 120_000);

afterAll(async () => {
  await stopGroup(node?.child, "SIGKILL");
  await edge?.stop();
  await model?.close();
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
}, 30_000);

async function newKey(): Promise<{ id: string; key: string }> {
  return adminCall(edge.url, ADMIN, "POST", "/admin/keys", { name: "silent", limits: { rpm: 1000, tpm: 1_000_000, concurrency: 2 } });
}

async function keyState(id: string): Promise<{ in_flight: number; reserved_tokens: number }> {
  return (await adminCall(edge.url, ADMIN, "GET", `/admin/keys/${id}`)).state;
}

async function usage(id: string): Promise<{ requests: number; prompt_tokens: number; completion_tokens: number; errors: number }> {
  const { data } = await adminCall(edge.url, ADMIN, "GET", `/admin/usage?key=${id}`);
  return data[0] ?? { requests: 0, prompt_tokens: 0, completion_tokens: 0, errors: 0 };
}

/** An `openai` client that also keeps the raw bytes of every answer it reads. */
function recordingClient(key: string): { client: OpenAI; raw: string[] } {
  const raw: string[] = [];
  const client = new OpenAI({
    baseURL: `${edge.url}/v1`,
    apiKey: key,
    maxRetries: 0,
    fetch: async (url, init) => {
      const res = await fetch(url, init);
      if (!res.body) return res;
      const [mine, theirs] = res.body.tee();
      const at = raw.push("") - 1;
      void (async () => {
        const dec = new TextDecoder();
        for await (const piece of mine) raw[at] += dec.decode(piece, { stream: true });
      })();
      return new Response(theirs, { status: res.status, statusText: res.statusText, headers: res.headers });
    },
  });
  return { client, raw };
}

describe("a stream whose node is silent", () => {
  it("a client that leaves during the silence: the node is told to stop, the lease is released and the request metered, within a few keep-alive periods", async () => {
    const k = await newKey();
    const ac = new AbortController();
    const res = await fetch(`${edge.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${k.key}` },
      body: JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "stall" }], max_tokens: 64, stream: true }),
      signal: ac.signal,
    });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let text = "";
    while (!text.includes('"Hello"')) text += dec.decode((await reader.read()).value);
    // The model server is silent now, and stays so until it is told to stop.
    expect(model.silent).toBe(1);
    expect((await keyState(k.id)).in_flight).toBe(1);
    const left = Date.now();
    ac.abort();

    await waitFor(async () => model.cancels.length === 1 && (await keyState(k.id)).in_flight === 0, {
      timeoutMs: 10_000,
      intervalMs: 100,
      what: "the node to be told to stop and the lease to be released",
    });
    const noticedMs = Date.now() - left;
    expect(noticedMs).toBeLessThan(IDLE_TIMEOUT_MS / 6);
    // The node's /v1/cancel was signed (the node verifies it before passing it on) and names the request.
    expect(model.cancels[0]).toMatch(/\S/);
    expect(model.silent).toBe(0);
    expect((await keyState(k.id)).reserved_tokens).toBe(0);
    // Metered with what the node reported when it stopped.
    await waitFor(async () => (await usage(k.id)).requests === 1, { timeoutMs: 5000, what: "the request to be metered" });
    expect(await usage(k.id)).toMatchObject({ requests: 1, prompt_tokens: 9, completion_tokens: 1, errors: 0 });
  });

  it("a chat client that stays through the silence gets keep-alive comments, the exact content and [DONE]; the openai client ignores the comments", async () => {
    const k = await newKey();
    const { client, raw } = recordingClient(k.key);
    const stream = await client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "pause" }], max_tokens: 64, stream: true, stream_options: { include_usage: true } });
    let content = "";
    let finish: string | null = null;
    let reported: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      content += chunk.choices[0]?.delta.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunk.usage) reported = chunk.usage;
    }
    expect(content).toBe("Hello, world");
    expect(finish).toBe("stop");
    expect(reported).toMatchObject({ prompt_tokens: 9, completion_tokens: 3 });
    await waitFor(() => raw[0]!.endsWith("data: [DONE]\n\n"), { timeoutMs: 5000, what: "the raw stream to end" });
    const events = raw[0]!.split("\n\n").filter(Boolean);
    const comments = events.filter((e) => e === ": keep-alive");
    expect(comments.length).toBeGreaterThanOrEqual(2);
    // Every other event is whole: a data line of JSON, or the [DONE] at the end.
    const data = events.filter((e) => e !== ": keep-alive");
    expect(data.at(-1)).toBe("data: [DONE]");
    for (const e of data.slice(0, -1)) expect(() => JSON.parse(e.slice("data: ".length))).not.toThrow();
    // The comments came during the silence, between "Hello" and ", world".
    expect(raw[0]!.indexOf(": keep-alive")).toBeGreaterThan(raw[0]!.indexOf('"Hello"'));
    expect(raw[0]!.lastIndexOf(": keep-alive")).toBeLessThan(raw[0]!.indexOf('", world"'));
    await waitFor(async () => (await keyState(k.id)).in_flight === 0, { timeoutMs: 5000, what: "the lease to be released" });
    expect(await usage(k.id)).toMatchObject({ requests: 1, prompt_tokens: 9, completion_tokens: 3, errors: 0 });
  });

  it("a Responses API stream through the silence: the comments pass and the openai client reads every event", async () => {
    const k = await newKey();
    const { client, raw } = recordingClient(k.key);
    const stream = await client.responses.create({ model: MODEL, input: "pause", max_output_tokens: 64, stream: true });
    const types: string[] = [];
    let text = "";
    let final: OpenAI.Responses.Response | null = null;
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === "response.output_text.delta") text += event.delta;
      if (event.type === "response.completed") final = event.response;
    }
    expect(text).toBe("Hello, world");
    expect(types).toEqual(["response.created", "response.output_text.delta", "response.output_text.delta", "response.completed"]);
    expect(final?.status).toBe("completed");
    await waitFor(() => raw[0]!.includes("response.completed"), { timeoutMs: 5000, what: "the raw stream to end" });
    expect(raw[0]!.split("\n\n").filter((e) => e === ": keep-alive").length).toBeGreaterThanOrEqual(2);
    await waitFor(async () => (await keyState(k.id)).in_flight === 0, { timeoutMs: 5000, what: "the lease to be released" });
    expect(await usage(k.id)).toMatchObject({ requests: 1, prompt_tokens: 9, completion_tokens: 3, errors: 0 });
  });
});
