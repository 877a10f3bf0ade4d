/**
 * Live nodes stay routable while the edge (its deploy bundle under workerd) is saturated: a few
 * hundred streams at 50 chunks a second each keep workerd's one thread busy, so every request,
 * heartbeats included, waits its turn for seconds. Heartbeats wait as long as it takes, a late one
 * gives its node the time it waited, and an answer counts as a sign of life too, so no request is
 * refused with `503 no_healthy_node` and both nodes keep serving. (What /admin/nodes showed is
 * logged: on a machine far busier than the edge alone can make it, a node's heartbeats can still
 * come later than NODE_TTL_MS plus their measured wait, and it shows `gone` there for a moment while
 * its answers keep it in routing.)
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, fetch as undiciFetch } from "undici";
import { afterAll, beforeAll, expect, it } from "vitest";
import { adminCall, freePort, registerNode, sleep, startEdge, startNode, stopGroup, waitForNodes, type Started } from "../../edge/scripts/stack.mjs";

const ADMIN = "saturation-admin-token";
const SECRET = "saturation-node-secret";
const MODEL = "tiny-llama-3.1";
const STREAMS = 200;
const LOAD_MS = 12_000;

let stateDir: string;
let edge: Started;
const nodes: Started[] = [];
const agent = new Agent({ connections: 1024, keepAliveTimeout: 1000 });

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "seventy-saturation-"));
  edge = await startEdge({
    port: await freePort(),
    adminToken: ADMIN,
    nodeSecret: SECRET,
    stateDir,
    vars: { NODE_TTL_MS: "1500", POOL_CACHE_MS: "200", LOG_LEVEL: "error" },
  });
  for (const id of ["s1", "s2"]) {
    const port = await freePort();
    nodes.push(
      await startNode({
        port,
        edgeUrl: edge.url,
        credential: await registerNode(edge.url, ADMIN, { id, port }),
        engine: "simulated",
        args: ["--heartbeat-interval-ms", "300", "--simulated-step-ms", "20", "--max-num-seqs", "1024"],
      }),
    );
  }
  await waitForNodes(edge.url, ADMIN, ["s1", "s2"]);
}, 120_000);

afterAll(async () => {
  for (const n of nodes) await stopGroup(n.child, "SIGKILL");
  await edge?.stop();
  await agent.close();
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
}, 30_000);

it("keeps live nodes routable while the edge is saturated", async () => {
  const { key } = await adminCall(edge.url, ADMIN, "POST", "/admin/keys", { name: "saturation", limits: { rpm: 1_000_000, tpm: 1_000_000_000, concurrency: 5000 } });
  const codes = new Map<string, number>();
  const note = (c: string) => codes.set(c, (codes.get(c) ?? 0) + 1);
  let running = true;
  const loop = async (i: number) => {
    while (running) {
      try {
        const res = await undiciFetch(`${edge.url}/v1/chat/completions`, {
          method: "POST",
          dispatcher: agent,
          headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
          body: JSON.stringify({ model: MODEL, messages: [{ role: "user", content: `load ${i}` }], max_tokens: 50, ignore_eos: true, stream: true }),
        });
        const text = await res.text();
        note(res.status === 200 ? `200 ${res.headers.get("x-seventy-node")}` : `${res.status} ${/"code":"([a-z_]+)"/.exec(text)?.[1]}`);
      } catch (err) {
        note(`client error ${(err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message}`);
      }
    }
  };
  const loads = Array.from({ length: STREAMS }, (_, i) => loop(i));
  // The pool as the admin API reports it, and how late the edge answers, while the load runs.
  const polls: { status: string; ms: number }[] = [];
  const until = Date.now() + LOAD_MS;
  await sleep(1000);
  while (Date.now() < until) {
    const t = Date.now();
    try {
      const { data } = await adminCall(edge.url, ADMIN, "GET", "/admin/nodes");
      polls.push({ status: data.map((n: { id: string; status: string }) => `${n.id}:${n.status}`).sort().join(" "), ms: Date.now() - t });
    } catch (err) {
      polls.push({ status: `poll failed: ${(err as Error).message} ${(err as { cause?: { code?: string } }).cause?.code ?? ""}`, ms: Date.now() - t });
    }
    await sleep(200);
  }
  running = false;
  await Promise.all(loads);

  const slowest = Math.max(...polls.map((p) => p.ms));
  const notHealthy = polls.filter((p) => p.status !== "s1:healthy s2:healthy");
  console.log(
    `saturation: ${polls.length} pool polls, slowest answer ${slowest} ms, ${notHealthy.length} not all healthy ${JSON.stringify(notHealthy)}; ` +
      `outcomes ${JSON.stringify(Object.fromEntries(codes))}`,
  );
  expect(polls.length).toBeGreaterThan(0);
  expect(codes.get("503 no_healthy_node") ?? 0).toBe(0);
  expect(codes.get("200 s1") ?? 0).toBeGreaterThan(0);
  expect(codes.get("200 s2") ?? 0).toBeGreaterThan(0);
}, 120_000);
