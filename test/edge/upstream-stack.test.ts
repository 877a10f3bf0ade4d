/**
 * The edge under `wrangler dev` in front of a node in `--engine upstream` mode, which fronts another
 * gpu-node (tiny model, reference engine) as it would front vLLM; and `seventy-node doctor` against that
 * real edge: right secret, wrong secret, a skewed clock.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runDoctor, systemFacts, type CheckResult } from "../../gpu-node/src/doctor/index.js";
import { adminCall, freePort, startEdge, startNode, stopGroup, waitForNodes, type Started } from "../../edge/scripts/stack.mjs";
import { chatStreamText, parseSse } from "../helpers/sse.js";

const ADMIN = "upstream-stack-admin";
const SECRET = "upstream-stack-secret";
const MODEL = "tiny-llama-3.1";

let stateDir: string;
let edge: Started;
let engineNode: Started;
let front: Started;
let key: string;

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "seventy-upstream-stack-"));
  // The engine on the box: a gpu-node with no edge and no secret, on loopback, as vLLM would run.
  const [edgePort, inspectorPort, enginePort, frontPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  [edge, engineNode] = await Promise.all([
    startEdge({ port: edgePort, inspectorPort, adminToken: ADMIN, nodeSecret: SECRET, stateDir, vars: { NODE_TTL_MS: "3000", POOL_CACHE_MS: "200", LOG_LEVEL: "error" } }),
    startNode({ port: enginePort }),
  ]);
  front = await startNode({
    port: frontPort,
    engine: "upstream",
    args: ["--upstream", engineNode.url, "--heartbeat-interval-ms", "300"],
    edgeUrl: edge.url,
    secret: SECRET,
    nodeId: "front",
  });
  await waitForNodes(edge.url, ADMIN, ["front"]);
  key = (await adminCall(edge.url, ADMIN, "POST", "/admin/keys", { name: "upstream-stack" })).key;
}, 120_000);

afterAll(async () => {
  await stopGroup(front?.child, "SIGKILL");
  await stopGroup(engineNode?.child, "SIGKILL");
  await edge?.stop();
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
}, 30_000);

function chat(body: Record<string, unknown>): Promise<Response> {
  return fetch(`${edge.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "Say hello." }], max_tokens: 8, temperature: 0, ...body }),
  });
}

describe("edge → upstream-mode node → gpu-node", () => {
  it("the node joined the pool under the upstream's model id", async () => {
    const { data } = await adminCall(edge.url, ADMIN, "GET", "/admin/nodes");
    expect(data.find((n: { id: string }) => n.id === "front")).toMatchObject({ status: "healthy", models: [MODEL] });
  });

  it("a chat completion, the same as asking the engine directly", async () => {
    const res = await chat({});
    expect(res.status).toBe(200);
    const body = (await res.json()) as { model: string; choices: { message: { content: string }; finish_reason: string }[]; usage: { completion_tokens: number } };
    expect(body.model).toBe(MODEL);
    expect(body.usage.completion_tokens).toBe(8);
    const direct = (await (
      await fetch(`${engineNode.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "Say hello." }], max_tokens: 8, temperature: 0 }),
      })
    ).json()) as typeof body;
    expect(body.choices[0]!.message.content).toBe(direct.choices[0]!.message.content);
  });

  it("a streamed chat completion, to [DONE], with usage", async () => {
    const res = await chat({ stream: true, stream_options: { include_usage: true } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const events = parseSse(await res.text());
    expect(events.at(-1)).toBe("[DONE]");
    expect(chatStreamText(events).length).toBeGreaterThan(0);
    expect((events.at(-2) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(8);
  });

  it("an engine's 400 reaches the app in OpenAI's shape", async () => {
    const res = await chat({ temperature: -1 });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { param: string; type: string } }).error).toMatchObject({ param: "temperature", type: "invalid_request_error" });
  });
});

describe("seventy-node doctor against the edge", () => {
  const edgeLines = (results: CheckResult[]) => Object.fromEntries(results.filter((r) => ["edge reachable", "clock skew", "signed heartbeat"].includes(r.name)).map((r) => [r.name, r]));

  it("the right secret: reachable, clocks agree, signature accepted; nothing joins the pool", async () => {
    const { results } = await runDoctor({ edge: edge.url, secret: SECRET, engine: "reference", port: 0 }, systemFacts());
    const lines = edgeLines(results);
    expect(lines["edge reachable"]!.status).toBe("ok");
    expect(lines["clock skew"]!.status).toBe("ok");
    expect(lines["signed heartbeat"]).toMatchObject({ status: "ok", detail: "the edge accepts this node's signature" });
    const { data } = await adminCall(edge.url, ADMIN, "GET", "/admin/nodes");
    expect(data.map((n: { id: string }) => n.id)).toEqual(["front"]);
  });

  it("a wrong secret: the signed heartbeat fails with the fix", async () => {
    const { ok, results } = await runDoctor({ edge: edge.url, secret: "not-the-secret", engine: "reference", port: 0 }, systemFacts());
    expect(ok).toBe(false);
    const hb = edgeLines(results)["signed heartbeat"]!;
    expect(hb).toMatchObject({ status: "fail", detail: "refused: SEVENTY_NODE_SECRET is not the edge's NODE_SECRET" });
    expect(hb.fix).toMatch(/wrangler secret put NODE_SECRET/);
  });

  it("a clock two minutes ahead: clock skew fails with the fix, and the refusal is put on the clock", async () => {
    const facts = { ...systemFacts(), now: () => Date.now() + 120_000 };
    const { ok, results } = await runDoctor({ edge: edge.url, secret: SECRET, engine: "reference", port: 0 }, facts);
    expect(ok).toBe(false);
    const lines = edgeLines(results);
    expect(lines["clock skew"]!.status).toBe("fail");
    expect(lines["clock skew"]!.detail).toMatch(/ahead of the edge's by 1(19|20|21) s; signatures are refused beyond 60 s/);
    expect(lines["clock skew"]!.fix).toMatch(/timedatectl set-ntp true/);
    expect(lines["signed heartbeat"]).toMatchObject({ status: "fail", detail: "refused: the clocks differ by more than the signature window" });
  });

  it("an edge that is not there", async () => {
    const { results } = await runDoctor({ edge: `http://127.0.0.1:${await freePort()}`, secret: SECRET, engine: "reference", port: 0 }, systemFacts());
    expect(edgeLines(results)["edge reachable"]).toMatchObject({ status: "fail", detail: expect.stringMatching(/ECONNREFUSED/) });
  });
});
