// The example Worker in workerd, calling the real edge (also in workerd) through a service binding
// to its RPC entrypoint, and over HTTP; a real gpu-node behind the edge.
import { build } from "esbuild";
import { Miniflare } from "miniflare";
import { fileURLToPath } from "node:url";
import { Seventy, SeventyAdmin } from "@seventy/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGpuNode, type GpuNode } from "../../test/compat/support/gpu-node.js";
import { freePort } from "../../test/compat/support/stack.js";

const root = fileURLToPath(new URL("../../", import.meta.url));
const ADMIN_TOKEN = "admin-token-for-worker-test";
const NODE_SECRET = "node-secret-for-worker-test";
const KEY = "sk-worker-example-0001";
const LIMITED_KEY = "sk-worker-example-0002";
const compat = { compatibilityDate: "2026-04-20", compatibilityFlags: ["enable_request_signal"] };

async function bundle(contents: string): Promise<string> {
  const out = await build({
    stdin: { contents, resolveDir: root, loader: "ts", sourcefile: "entry.ts" },
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    conditions: ["workerd", "worker", "browser"],
    mainFields: ["module", "main"],
    external: ["cloudflare:*"],
    write: false,
    logLevel: "silent",
  });
  return out.outputFiles[0]!.text;
}

/**
 * The edge worker as deployed. A service binding targets its RPC entrypoint `SeventyEntrypoint`,
 * which hands each request to the edge's own fetch handler, so auth, limits and metering are the
 * ones HTTP requests get.
 */
const EDGE_ENTRY = `export * from "./edge/src/index.ts"; export { default } from "./edge/src/index.ts";`;

let mf: Miniflare;
let node: GpuNode;
let edgeUrl: string;
let model: string;
let admin: SeventyAdmin;

beforeAll(async () => {
  const [edgeCode, appCode, port, nodePort] = await Promise.all([
    bundle(EDGE_ENTRY),
    bundle(`export { default } from "./examples/worker/worker.ts";`),
    freePort(),
    freePort(),
  ]);
  edgeUrl = `http://127.0.0.1:${port}`;
  const app = (name: string, bindings: Record<string, string>, bound = true) => ({
    name,
    ...compat,
    modules: [{ type: "ESModule" as const, path: `${name}.js`, contents: appCode }],
    bindings: { SEVENTY_MODEL: "tiny-llama-3.1", ...bindings },
    ...(bound ? { serviceBindings: { SEVENTY: { name: "edge", entrypoint: "SeventyEntrypoint" } } } : {}),
  });
  mf = new Miniflare({
    host: "127.0.0.1",
    port,
    workers: [
      {
        name: "edge",
        ...compat,
        modules: [{ type: "ESModule", path: "edge.js", contents: edgeCode }],
        bindings: { ADMIN_TOKEN, NODE_SECRET, ALLOW_HTTP_LOOPBACK_NODES: "true" },
        durableObjects: {
          KEY_REGISTRY: { className: "KeyRegistry", useSQLite: true },
          KEY_LIMITER: { className: "KeyLimiter", useSQLite: true },
          NODE_POOL: { className: "NodePool", useSQLite: true },
        },
      },
      app("app", { SEVENTY_API_KEY: KEY }),
      app("app-limited", { SEVENTY_API_KEY: LIMITED_KEY }),
      app("app-unknown-key", { SEVENTY_API_KEY: "sk-nobody-knows-this-key" }),
      app("app-http", { SEVENTY_API_KEY: KEY, SEVENTY_BASE_URL: `${edgeUrl}/v1` }, false),
    ],
  });
  await mf.ready;
  admin = new SeventyAdmin({ baseURL: edgeUrl, adminToken: ADMIN_TOKEN });
  const { credential } = await admin.nodes.register({ id: "worker-test-node", url: `http://127.0.0.1:${nodePort}` });
  node = await startGpuNode({ port: nodePort, edgeUrl, credential });
  for (let i = 0; i < 100 && (await admin.nodes.list()).data[0]?.status !== "healthy"; i++) await new Promise((r) => setTimeout(r, 100));
  model = (await admin.nodes.list()).data[0]!.models[0]!;
  expect(model).toBe("tiny-llama-3.1");
  await admin.keys.create({ name: "worker example", key: KEY });
  await admin.keys.create({ name: "worker example, 1 rpm", key: LIMITED_KEY, limits: { rpm: 1 } });
});

afterAll(async () => {
  await node?.stop();
  await mf?.dispose();
});

async function call(worker: string, path: string, init?: RequestInit): Promise<Response> {
  const w = await mf.getWorker(worker);
  return (await w.fetch(`http://app${path}`, init as never)) as unknown as Response;
}

const chat = (content: string, max_tokens?: number): RequestInit => ({
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ messages: [{ role: "user", content }], max_tokens }),
});

describe("the example Worker, bound to the edge's RPC entrypoint", () => {
  it("answers a non-streaming question with usage", async () => {
    const res = await call("app", "/ask?q=Hello");
    expect(res.status).toBe(200);
    const body = (await res.json()) as { answer: string; usage: { completion_tokens: number } };
    expect(body.answer.length).toBeGreaterThan(0);
    expect(body.usage.completion_tokens).toBeGreaterThan(0);
  });

  it("streams through the binding, and the relayed SSE rebuilds with usage", async () => {
    const res = await call("app", "/chat", chat("Tell me a story."));
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const stream = Seventy.fromResponse(res);
    const pieces: string[] = [];
    for await (const t of stream.textStream) pieces.push(t);
    const final = await stream.finalCompletion();
    expect(pieces.length).toBeGreaterThan(1);
    expect(final.choices[0]!.message.content).toBe(pieces.join(""));
    expect(final.usage?.completion_tokens).toBeGreaterThan(1);
    expect(final.usage?.completion_tokens).toBeLessThanOrEqual(64);
  });

  it("gives the same answer as over HTTP", async () => {
    const [bound, http] = await Promise.all([call("app", "/ask?q=Same"), call("app-http", "/ask?q=Same")]);
    const a = (await bound.json()) as { usage: { prompt_tokens: number } };
    const b = (await http.json()) as { usage: { prompt_tokens: number } };
    expect(http.status).toBe(200);
    expect(a.usage.prompt_tokens).toBe(b.usage.prompt_tokens);
  });

  it("auth applies: an unknown key is refused with 401", async () => {
    const res = await call("app-unknown-key", "/ask?q=Hi");
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("invalid_api_key");
  });

  it("limits apply: the second request in a minute on a 1 rpm key is a 429", async () => {
    expect((await call("app-limited", "/ask?q=one")).status).toBe(200);
    const res = await call("app-limited", "/ask?q=two");
    expect(res.status).toBe(429);
  });

  it("the edge meters binding traffic like HTTP traffic", async () => {
    const keys = await admin.keys.list();
    const id = keys.data.find((k) => k.name === "worker example, 1 rpm")!.id;
    const usage = await admin.usage.retrieve({ key: id });
    expect(usage.data.reduce((n, d) => n + d.requests, 0)).toBeGreaterThanOrEqual(1);
    expect(usage.data.reduce((n, d) => n + d.rate_limited, 0)).toBeGreaterThanOrEqual(1);
  });

  it("a caller that stops reading ends the request at the edge", async () => {
    const keys = await admin.keys.list();
    const id = keys.data.find((k) => k.name === "worker example")!.id;
    // 1,000 tokens take about a minute on the tiny model: the request is surely still running.
    const res = await call("app", "/chat", chat("A long story, please.", 1000));
    const reader = res.body!.getReader();
    await reader.read();
    expect((await admin.keys.retrieve(id)).state.in_flight).toBe(1);
    await reader.cancel();
    const end = Date.now() + 10_000;
    let inFlight = -1;
    while (Date.now() < end && (inFlight = (await admin.keys.retrieve(id)).state.in_flight) !== 0) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(inFlight).toBe(0);
  });
});
