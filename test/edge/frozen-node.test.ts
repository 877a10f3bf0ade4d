/**
 * A non-stream request whose node freezes (SIGSTOP) while it generates: the edge (its deploy
 * bundle under workerd) sees no response headers, which a long answer also sends only at its end,
 * so it asks the node's /health on a fresh connection; a stopped process answers nothing (its
 * kernel still accepts the connection), and the request goes to the other node within
 * CONNECT_TIMEOUT_MS, long before the frozen node would leave the pool (NODE_TTL_MS is 30 s here).
 * The frozen node's attempt is stopped, so it does not finish the answer once it runs again, and
 * the request is charged once.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { adminCall, freePort, registerNode, sleep, startEdge, startNode, waitFor, waitForNodes, type Started } from "../../edge/scripts/stack.mjs";
import { metricSum, stopNodes } from "../helpers/nodes.js";

const ADMIN = "frozen-admin-token";
const SECRET = "frozen-node-secret";
const MODEL = "tiny-llama-3.1";
const STEP_MS = 100;

type Json = Record<string, any>;
let stateDir: string;
let edge: Started;
const nodes = new Map<string, Started>();
const edgeLog: Json[] = [];

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "seventy-frozen-"));
  edge = await startEdge({
    port: await freePort(),
    adminToken: ADMIN,
    nodeSecret: SECRET,
    stateDir,
    logLevel: "info",
    vars: { NODE_TTL_MS: "30000", POOL_CACHE_MS: "200", CONNECT_TIMEOUT_MS: "2000", CANCEL_DRAIN_MS: "1000", LOG_LEVEL: "info" },
  });
  for (const out of [edge.child.stdout!, edge.child.stderr!]) {
    let pending = "";
    out.on("data", (b: Buffer) => {
      pending += b.toString();
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const line of lines) if (line.includes('"event":"request"')) edgeLog.push(JSON.parse(line.slice(line.indexOf("{"))));
    });
  }
  await Promise.all(
    ["f1", "f2"].map(async (id) => {
      const port = await freePort();
      nodes.set(
        id,
        await startNode({
          port,
          edgeUrl: edge.url,
          credential: await registerNode(edge.url, ADMIN, { id, port }),
          engine: "simulated",
          args: ["--heartbeat-interval-ms", "300", "--simulated-step-ms", String(STEP_MS)],
        }),
      );
    }),
  );
  await waitForNodes(edge.url, ADMIN, ["f1", "f2"]);
}, 120_000);

afterAll(async () => {
  await stopNodes([...nodes.values()].map((n) => n.child));
  await edge?.stop();
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
}, 30_000);

async function metric(url: string, name: string): Promise<number> {
  return metricSum(await (await fetch(`${url}/metrics`)).text(), name);
}

it("fails a non-stream request over from a frozen node within CONNECT_TIMEOUT_MS, stops it there, and charges it once", async () => {
  const { key, id: keyId } = await adminCall(edge.url, ADMIN, "POST", "/admin/keys", { name: "frozen" });
  const chat = (requestId: string, maxTokens: number) =>
    fetch(`${edge.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${key}`, "x-request-id": requestId },
      body: JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "frozen mid-answer" }], max_tokens: maxTokens, ignore_eos: true }),
    });
  // The conversation's node (prefix affinity sends the same head to the same node).
  const first = await chat("frozen-warm", 1);
  expect(first.status).toBe(200);
  await first.json();
  const home = first.headers.get("x-seventy-node")!;
  const other = home === "f1" ? "f2" : "f1";
  const frozen = nodes.get(home)!;
  const generatedBefore = await metric(frozen.url, "vllm:generation_tokens_total");

  // 40 tokens at 100 ms a step: the answer takes 4 s, sending no headers until then. The node is
  // stopped a moment after it started generating.
  const started = Date.now();
  const pending = chat("frozen-1", 40);
  await waitFor(async () => (await (await fetch(`${frozen.url}/health`)).json()).running === 1, { intervalMs: 20, what: "the request to run" });
  process.kill(frozen.child.pid!, "SIGSTOP");
  const frozenAt = Date.now();
  const res = await pending;
  const body = (await res.json()) as Json;
  const answeredAt = Date.now();
  expect(res.status, JSON.stringify(body)).toBe(200);
  expect(res.headers.get("x-seventy-node")).toBe(other);
  expect(body.usage.completion_tokens).toBe(40);
  // Far sooner than the frozen node would have left the pool (30 s): the failover did not wait for that.
  expect(answeredAt - frozenAt).toBeLessThan(15_000);

  // It runs again: the attempt was stopped (its connection closed, and a cancel naming it), so it
  // generates no more for it.
  process.kill(frozen.child.pid!, "SIGCONT");
  await waitFor(async () => (await (await fetch(`${frozen.url}/health`)).json()).running === 0, { timeoutMs: 5000, intervalMs: 50, what: "the frozen node to drop the request" });
  await sleep(4 * STEP_MS);
  const generatedByFrozen = (await metric(frozen.url, "vllm:generation_tokens_total")) - generatedBefore;
  expect(generatedByFrozen).toBeLessThan(40);

  // Charged once: what the frozen attempt generated is unknown, so the reservation is charged (the
  // most the request could use), not the reservation plus the answer.
  await waitFor(() => edgeLog.find((l) => l.request_id === "frozen-1"), { timeoutMs: 5000, what: "the request's log line" });
  const line = edgeLog.find((l) => l.request_id === "frozen-1")!;
  expect(line).toMatchObject({ status: 200, node: other, attempts: 2, usage_unknown: true });
  expect(line.prompt_tokens + line.completion_tokens).toBe(line.reserved_tokens);
  await sleep(1500); // usage rows are written behind (1 s)
  const { data } = await adminCall(edge.url, ADMIN, "GET", `/admin/usage?key=${keyId}`);
  const warm = edgeLog.find((l) => l.request_id === "frozen-warm")!;
  expect(data[0].prompt_tokens + data[0].completion_tokens).toBe(line.reserved_tokens + warm.prompt_tokens + warm.completion_tokens);
  console.log(
    `frozen node: answered ${answeredAt - frozenAt} ms after the freeze (${answeredAt - started} ms in all, 4 s of it the other node's generation); ` +
      `the frozen node generated ${generatedByFrozen} of 40 tokens`,
  );
}, 90_000);
