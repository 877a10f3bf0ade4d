/**
 * `--engine upstream`: a node in front of another gpu-node (which speaks vLLM's API and metric names)
 * and in front of a small fake that uses SGLang's metric names and error bodies. Heartbeats go to a
 * loopback receiver that checks their signatures as the edge does.
 */
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { formatNodeCredential, NODE_ID_HEADER, signRequest, verifyRequest, type NodeCredential, type NodeHeartbeat } from "@seventy/sdk/protocol";
import { SimulatedEngine } from "../../gpu-node/src/engine/index.js";
import { startNode, type RunningNode } from "../../gpu-node/src/node.js";
import { startUpstreamNode, type RunningUpstreamNode } from "../../gpu-node/src/upstream/index.js";
import { chatStreamText, parseSse } from "../helpers/sse.js";

const key = (c: string) => c.repeat(43);
/** Each node's own credential, as the edge's POST /admin/nodes hands it out. */
const FRONT: NodeCredential = { nodeId: "front-1", edgeKey: key("e"), nodeKey: key("n") };
const FRONT_SG: NodeCredential = { nodeId: "front-sg", edgeKey: key("f"), nodeKey: key("m") };
const MODEL = "tiny-llama-3.1";

/**
 * Collects heartbeats signed with the node's own node key and naming its id, refusing others, as the
 * edge's /internal/nodes/heartbeat does.
 */
async function startHeartbeatReceiver(cred: NodeCredential) {
  const beats: NodeHeartbeat[] = [];
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const verdict = await verifyRequest({ method: "POST", path: req.url!, body, secret: cred.nodeKey, nodeId: cred.nodeId, headers: { get: (n) => (req.headers[n] as string) ?? null } });
    res.writeHead(verdict.ok ? 200 : 401, { "content-type": "application/json" }).end("{}");
    if (verdict.ok) beats.push(JSON.parse(body.toString()));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, beats, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/** A request as the edge forwards it: signed with the node's edge key, addressed to the node. */
async function signed(cred: NodeCredential, url: string, path: string, body: unknown, signal?: AbortSignal): Promise<Response> {
  const text = JSON.stringify(body);
  const headers = await signRequest({ method: "POST", path, body: text, secret: cred.edgeKey, signed: { [NODE_ID_HEADER]: cred.nodeId } });
  return fetch(url + path, { method: "POST", body: text, headers: { ...headers, "content-type": "application/json" }, signal });
}

async function until<T>(f: () => T | undefined | null | false, what: string, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("in front of a gpu-node (vLLM's API and metric names)", () => {
  let engineNode: RunningNode;
  let front: RunningUpstreamNode;
  let edge: Awaited<ReturnType<typeof startHeartbeatReceiver>>;
  beforeAll(async () => {
    // The upstream: no secret, loopback, as vLLM runs beside the node.
    engineNode = await startNode({ port: 0, engineInstance: new SimulatedEngine({ numKvBlocks: 256, blockSize: 16, stepDelayMs: 20 }), log: () => {} });
    edge = await startHeartbeatReceiver(FRONT);
    front = await startUpstreamNode({ upstream: engineNode.url, port: 0, credential: formatNodeCredential(FRONT), edgeUrl: edge.url, heartbeatIntervalMs: 100, log: () => {} });
  });
  afterAll(async () => {
    await front?.close();
    await engineNode?.close();
    await edge?.close();
  });

  it("reports the upstream's model id and max_model_len in its heartbeats", async () => {
    const hb = await until(() => edge.beats.at(-1), "a heartbeat");
    expect(hb).toMatchObject({ node_id: FRONT.nodeId, url: front.url, models: [MODEL], engine: "upstream", capacity: { max_model_len: engineNode.ctx.maxModelLen }, draining: false });
    expect(front.modelName).toBe(MODEL);
  });

  it("passes a signed chat completion through, and refuses an unsigned one", async () => {
    const res = await signed(FRONT, front.url, "/v1/chat/completions", { model: MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 4 });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { model: string; choices: { message: { content: string } }[]; usage: { completion_tokens: number } };
    expect(body.model).toBe(MODEL);
    expect(body.usage.completion_tokens).toBe(4);
    const unsigned = await fetch(front.url + "/v1/chat/completions", { method: "POST", body: "{}", headers: { "content-type": "application/json" } });
    expect(unsigned.status).toBe(401);
    expect(((await unsigned.json()) as { error: { code: string } }).error.code).toBe("invalid_signature");
  });

  it("streams SSE through, event by event, to [DONE]", async () => {
    const res = await signed(FRONT, front.url, "/v1/chat/completions", { model: MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 6, stream: true, stream_options: { include_usage: true } });
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const events = parseSse(await res.text());
    expect(events.at(-1)).toBe("[DONE]");
    expect(chatStreamText(events).length).toBeGreaterThan(0);
    expect((events.at(-2) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(6);
  });

  it("an upstream 400 reaches the client in OpenAI's shape with its param", async () => {
    const res = await signed(FRONT, front.url, "/v1/chat/completions", { model: MODEL, messages: [{ role: "user", content: "hi" }], temperature: -3 });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { type: string; param: string } };
    expect(body.error.type).toBe("invalid_request_error");
    expect(body.error.param).toBe("temperature");
  });

  it("heartbeats carry the load read from vLLM's metrics; a client that leaves cancels the upstream request", async () => {
    const abort = new AbortController();
    const res = await signed(FRONT, front.url, "/v1/chat/completions", { model: MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 2000, stream: true }, abort.signal);
    const reader = res.body!.getReader();
    await reader.read();
    // The upstream runs it; the front's heartbeats say so, from the upstream's /metrics.
    await until(() => edge.beats.at(-1)!.load.running === 1, "a heartbeat with running = 1");
    abort.abort();
    await until(() => engineNode.ctx.scheduler.stats().numRunning === 0, "the upstream to stop generating");
    await until(() => edge.beats.at(-1)!.load.running === 0, "a heartbeat with running = 0");
  });
});

describe("in front of an engine with SGLang's metric names", () => {
  let fake: Server;
  let fakeUrl: string;
  let front: RunningUpstreamNode;
  let edge: Awaited<ReturnType<typeof startHeartbeatReceiver>>;
  let up = true;
  beforeAll(async () => {
    fake = createServer(async (req, res) => {
      if (!up) return req.socket.destroy();
      if (req.url === "/v1/models") return res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ object: "list", data: [{ id: "sglang/model", object: "model", max_model_len: 32768 }] }));
      if (req.url === "/metrics") {
        return res.writeHead(200, { "content-type": "text/plain" }).end(
          [
            '# TYPE sglang:num_running_reqs gauge',
            'sglang:num_running_reqs{model_name="sglang/model",dp_rank="0"} 3.0',
            'sglang:num_running_reqs{model_name="sglang/model",dp_rank="1"} 2.0',
            'sglang:num_queue_reqs{model_name="sglang/model",dp_rank="0"} 4.0',
            'sglang:token_usage{model_name="sglang/model",dp_rank="0"} 0.5',
            'sglang:token_usage{model_name="sglang/model",dp_rank="1"} 0.25',
          ].join("\n") + "\n",
        );
      }
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const body = JSON.parse(Buffer.concat(chunks).toString());
      if (body.max_tokens > 100) {
        return res.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify({ object: "error", message: "max_tokens too large for this server", type: "BadRequestError", param: null, code: 400 }));
      }
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(`data: ${JSON.stringify({ id: "1", object: "chat.completion.chunk", choices: [{ index: 0, delta: { content: "a" } }] })}\n\n`);
      // Dies mid-stream.
      setTimeout(() => res.destroy(), 30);
    });
    await new Promise<void>((r) => fake.listen(0, "127.0.0.1", r));
    fakeUrl = `http://127.0.0.1:${(fake.address() as AddressInfo).port}`;
    edge = await startHeartbeatReceiver(FRONT_SG);
    front = await startUpstreamNode({ upstream: fakeUrl, port: 0, credential: formatNodeCredential(FRONT_SG), edgeUrl: edge.url, heartbeatIntervalMs: 100, log: () => {} });
  });
  afterAll(async () => {
    await front?.close();
    fake?.closeAllConnections();
    await new Promise<void>((r) => fake.close(() => r()));
    await edge?.close();
  });
  afterEach(() => {
    up = true;
  });

  it("heartbeats carry SGLang's load (summed over ranks, KV averaged) and its model id", async () => {
    const hb = await until(() => edge.beats.find((b) => b.load.running === 5), "a heartbeat with SGLang's load");
    expect(hb).toMatchObject({ models: ["sglang/model"], capacity: { max_model_len: 32768 }, load: { running: 5, waiting: 4, kv_usage: 0.375 } });
  });

  it("SGLang's error body becomes OpenAI's shape", async () => {
    const res = await signed(FRONT_SG, front.url, "/v1/chat/completions", { model: "sglang/model", messages: [{ role: "user", content: "x" }], max_tokens: 1000 });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: { message: "max_tokens too large for this server", type: "invalid_request_error", param: null, code: null } });
  });

  it("an upstream that dies mid-stream ends the stream with an in-band error event and no [DONE]", async () => {
    const res = await signed(FRONT_SG, front.url, "/v1/chat/completions", { model: "sglang/model", messages: [{ role: "user", content: "x" }], max_tokens: 5, stream: true });
    const events = parseSse(await res.text());
    expect(events).not.toContain("[DONE]");
    expect((events.at(-1) as { error: { code: string } }).error.code).toBe("upstream_disconnected");
  });

  it("an unreachable upstream is a 502 in OpenAI's shape, and the node reports itself out of rotation", async () => {
    up = false;
    const res = await signed(FRONT_SG, front.url, "/v1/chat/completions", { model: "sglang/model", messages: [{ role: "user", content: "x" }], max_tokens: 5 });
    expect(res.status).toBe(502);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("upstream_unreachable");
    await until(() => edge.beats.at(-1)!.draining === true, "a draining heartbeat");
    up = true;
    await until(() => edge.beats.at(-1)!.draining === false, "back in rotation");
  });
});

describe("without a credential (loopback mode), like a native node", () => {
  let engineNode: RunningNode;
  let front: RunningUpstreamNode;
  beforeAll(async () => {
    engineNode = await startNode({ port: 0, engineInstance: new SimulatedEngine({ numKvBlocks: 64, blockSize: 16 }), log: () => {} });
    front = await startUpstreamNode({ upstream: engineNode.url, port: 0, log: () => {} });
  });
  afterAll(async () => {
    await front?.close();
    await engineNode?.close();
  });

  function raw(headers: Record<string, string>, body: string): Promise<number> {
    return new Promise((resolve, reject) => {
      const req = request(front.url + "/v1/chat/completions", { method: "POST", headers: { ...headers, "content-length": Buffer.byteLength(body) } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      req.end(body);
    });
  }
  const body = JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 1 });

  it("refuses text/plain bodies, a foreign Host (DNS rebinding) and a foreign Origin", async () => {
    expect(await raw({ "content-type": "text/plain" }, body)).toBe(415);
    expect(await raw({ "content-type": "application/json", host: "evil.example:80" }, body)).toBe(403);
    expect(await raw({ "content-type": "application/json", origin: "https://evil.example" }, body)).toBe(403);
  });

  it("serves loopback Host and Origin", async () => {
    const host = new URL(front.url).host;
    expect(await raw({ "content-type": "application/json", host, origin: `http://${host}` }, body)).toBe(200);
  });
});
