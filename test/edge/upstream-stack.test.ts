/**
 * The edge under `wrangler dev` in front of a node in `--engine upstream` mode, which fronts another
 * gpu-node (tiny model, reference engine) as it would front vLLM, registered with the edge and holding
 * its own credential; and `seventy-node doctor` against that real edge: the right credential, a wrong
 * one, a node that is not registered, a revoked and a rotated credential, a skewed clock.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatNodeCredential, parseNodeCredential } from "@seventy/sdk/protocol";
import { runDoctor, systemFacts, type CheckResult } from "../../gpu-node/src/doctor/index.js";
import { adminCall, freePort, registerNode, startEdge, startNode, stopGroup, waitForNodes, type Started } from "../../edge/scripts/stack.mjs";
import { chatStreamText, parseSse } from "../helpers/sse.js";

const ADMIN = "upstream-stack-admin";
const SECRET = "upstream-stack-secret";
const MODEL = "tiny-llama-3.1";

let stateDir: string;
let edge: Started;
let engineNode: Started;
let front: Started;
let frontCredential: string;
let key: string;

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "seventy-upstream-stack-"));
  // The engine on the box: a gpu-node with no edge and no credential, on loopback, as vLLM would run.
  const [edgePort, inspectorPort, enginePort, frontPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  [edge, engineNode] = await Promise.all([
    startEdge({ port: edgePort, inspectorPort, adminToken: ADMIN, nodeSecret: SECRET, stateDir, vars: { NODE_TTL_MS: "3000", POOL_CACHE_MS: "200", LOG_LEVEL: "error" } }),
    startNode({ port: enginePort }),
  ]);
  frontCredential = await registerNode(edge.url, ADMIN, { id: "front", port: frontPort });
  front = await startNode({
    port: frontPort,
    engine: "upstream",
    args: ["--upstream", engineNode.url, "--heartbeat-interval-ms", "300"],
    edgeUrl: edge.url,
    credential: frontCredential,
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
  const edgeLines = (results: CheckResult[]) => Object.fromEntries(results.filter((r) => ["edge reachable", "clock skew", "node credential"].includes(r.name)).map((r) => [r.name, r]));
  const doctor = (credential: string | undefined, facts = systemFacts()) => runDoctor({ edge: edge.url, credential, engine: "reference", port: 0 }, facts);
  /** The line for a credential the edge refuses, whatever the cause, names them and how to fix each. */
  const expectRefused = (line: CheckResult | undefined, id: string) => {
    expect(line).toMatchObject({ status: "fail", detail: `refused: the edge does not accept node ${id}'s credential (the node is not registered there, its credential was rotated or revoked, or it was issued by another edge)` });
    expect(line!.fix).toContain(`POST /admin/nodes {"id":"${id}"`);
    expect(line!.fix).toContain(`POST /admin/nodes/${id}/rotate`);
    expect(line!.fix).toMatch(/set SEVENTY_NODE_CREDENTIAL to the credential in the answer/);
  };

  it("the node's credential: reachable, clocks agree, credential accepted; nothing joins the pool", async () => {
    const { ok, results } = await doctor(frontCredential);
    const lines = edgeLines(results);
    expect(lines["edge reachable"]!.status).toBe("ok");
    expect(lines["clock skew"]!.status).toBe("ok");
    expect(lines["node credential"]).toMatchObject({ status: "ok", detail: "the edge accepts node front's credential" });
    expect(ok).toBe(true);
    const { data } = await adminCall(edge.url, ADMIN, "GET", "/admin/nodes");
    expect(data.map((n: { id: string }) => n.id)).toEqual(["front"]);
  });

  it("a wrong credential (the right node id, other keys): refused, with the fix", async () => {
    const wrong = { ...parseNodeCredential(frontCredential)!, nodeKey: "k".repeat(43) };
    const { ok, results } = await doctor(formatNodeCredential(wrong));
    expect(ok).toBe(false);
    expectRefused(edgeLines(results)["node credential"], "front");
  });

  it("a node that is not registered: refused, with the fix", async () => {
    const { ok, results } = await doctor(formatNodeCredential({ nodeId: "ghost", edgeKey: "e".repeat(43), nodeKey: "n".repeat(43) }));
    expect(ok).toBe(false);
    expectRefused(edgeLines(results)["node credential"], "ghost");
  });

  it("a revoked node, and a rotated credential: the old one is refused, the new one accepted", async () => {
    const [gonePort, rotPort] = await Promise.all([freePort(), freePort()]);
    const gone = await registerNode(edge.url, ADMIN, { id: "gone", port: gonePort });
    expect(edgeLines((await doctor(gone)).results)["node credential"]!.status).toBe("ok");
    await adminCall(edge.url, ADMIN, "DELETE", "/admin/nodes/gone");
    expectRefused(edgeLines((await doctor(gone)).results)["node credential"], "gone");

    const old = await registerNode(edge.url, ADMIN, { id: "rot", port: rotPort });
    const { credential: fresh } = await adminCall(edge.url, ADMIN, "POST", "/admin/nodes/rot/rotate");
    expectRefused(edgeLines((await doctor(old)).results)["node credential"], "rot");
    expect(edgeLines((await doctor(fresh)).results)["node credential"]!.status).toBe("ok");
    await adminCall(edge.url, ADMIN, "DELETE", "/admin/nodes/rot");
  });

  it("no credential, or a malformed one: the line says so without echoing it, with the fix", async () => {
    const missing = edgeLines((await doctor(undefined)).results)["node credential"]!;
    expect(missing).toMatchObject({ status: "fail", detail: "SEVENTY_NODE_CREDENTIAL is not set" });
    expect(missing.fix).toMatch(/POST \/admin\/nodes/);
    const malformed = edgeLines((await doctor("snc1.front.secret-ish.value")).results)["node credential"]!;
    expect(malformed).toMatchObject({ status: "fail", detail: expect.stringMatching(/is not a node credential/) });
    expect(JSON.stringify(malformed)).not.toContain("secret-ish");
  });

  it("a clock two minutes ahead: clock skew fails with the fix, and the refusal is put on the clock", async () => {
    const facts = { ...systemFacts(), now: () => Date.now() + 120_000 };
    const { ok, results } = await doctor(frontCredential, facts);
    expect(ok).toBe(false);
    const lines = edgeLines(results);
    expect(lines["clock skew"]!.status).toBe("fail");
    expect(lines["clock skew"]!.detail).toMatch(/ahead of the edge's by 1(19|20|21) s; signatures are refused beyond 60 s/);
    expect(lines["clock skew"]!.fix).toMatch(/timedatectl set-ntp true/);
    expect(lines["node credential"]).toMatchObject({ status: "fail", detail: "refused: the clocks differ by more than the signature window" });
  });

  it("an edge that is not there", async () => {
    const { results } = await runDoctor({ edge: `http://127.0.0.1:${await freePort()}`, credential: frontCredential, engine: "reference", port: 0 }, systemFacts());
    expect(edgeLines(results)["edge reachable"]).toMatchObject({ status: "fail", detail: expect.stringMatching(/ECONNREFUSED/) });
  });
});
