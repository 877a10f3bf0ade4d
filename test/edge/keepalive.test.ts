/**
 * Pooled keep-alive client connections are never reset without a response. workerd closes a
 * connection about 5 s after its last response, silently; under load a client reads responses late,
 * so one whose pool reuses a connection after 4 to 5 s of idle sent its request into a closing
 * connection and got ECONNRESET. The local stack puts a front before workerd (edge/scripts/front.mjs)
 * that holds client connections open while they are idle, as Cloudflare's front line does.
 *
 * 200 streams keep the edge busy while 60 requests go over two small pools (Node's http.Agent with
 * keepAlive and no idle timeout of its own, and undici with a 10 s one) in batches after idle gaps
 * right below workerd's 5 s; every one must be answered.
 */
import http from "node:http";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, fetch as undiciFetch } from "undici";
import { afterAll, beforeAll, expect, it } from "vitest";
import { adminCall, freePort, registerNode, sleep, startEdge, startNode, stopGroup, waitForNodes, type Started } from "../../edge/scripts/stack.mjs";

const ADMIN = "keepalive-admin-token";
const SECRET = "keepalive-node-secret";
const MODEL = "tiny-llama-3.1";
const GAPS_MS = [0, 4300, 4600, 4800, 4900, 4975];
const PER_POOL = 5;

let stateDir: string;
let edge: Started;
let node: Started;
const load = new Agent({ connections: 1024 });
const httpPool = new http.Agent({ keepAlive: true, maxSockets: PER_POOL });
const undiciPool = new Agent({ connections: PER_POOL, keepAliveTimeout: 10_000 });

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "seventy-keepalive-"));
  edge = await startEdge({ port: await freePort(), adminToken: ADMIN, nodeSecret: SECRET, stateDir, vars: { POOL_CACHE_MS: "200", LOG_LEVEL: "error" } });
  const port = await freePort();
  node = await startNode({
    port,
    edgeUrl: edge.url,
    credential: await registerNode(edge.url, ADMIN, { id: "k1", port }),
    engine: "simulated",
    args: ["--heartbeat-interval-ms", "300", "--simulated-step-ms", "20", "--max-num-seqs", "1024"],
  });
  await waitForNodes(edge.url, ADMIN, ["k1"]);
}, 120_000);

afterAll(async () => {
  await stopGroup(node?.child, "SIGKILL");
  await edge?.stop();
  httpPool.destroy();
  await Promise.all([load.close(), undiciPool.close()]);
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
}, 30_000);

it("answers every request on pooled keep-alive connections, also after idle gaps near workerd's timeout, under streaming load", async () => {
  const { key } = await adminCall(edge.url, ADMIN, "POST", "/admin/keys", { name: "keepalive", limits: { rpm: 1_000_000, tpm: 1_000_000_000, concurrency: 5000 } });
  const headers = { "content-type": "application/json", authorization: `Bearer ${key}` };
  const body = (stream: boolean, maxTokens: number) => JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "keep alive" }], max_tokens: maxTokens, ignore_eos: true, stream });
  let running = true;
  const loads = Array.from({ length: 200 }, async () => {
    while (running) {
      try {
        const res = await undiciFetch(`${edge.url}/v1/chat/completions`, { method: "POST", dispatcher: load, headers, body: body(true, 100) });
        await res.text();
      } catch {
        // the load's own outcome is not what this test is about
      }
    }
  });
  const viaHttpAgent = () =>
    new Promise<string>((resolve) => {
      const data = body(false, 4);
      const req = http.request(`${edge.url}/v1/chat/completions`, { method: "POST", agent: httpPool, headers: { ...headers, "content-length": Buffer.byteLength(data) } }, (res) => {
        res.resume();
        res.on("end", () => resolve(String(res.statusCode)));
      });
      req.on("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
      req.end(data);
    });
  const viaUndici = async () => {
    try {
      const res = await undiciFetch(`${edge.url}/v1/chat/completions`, { method: "POST", dispatcher: undiciPool, headers, body: body(false, 4) });
      await res.arrayBuffer();
      return String(res.status);
    } catch (err) {
      return (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
    }
  };
  await sleep(1000);
  const outcomes: string[] = [];
  for (const gap of GAPS_MS) {
    await sleep(gap);
    outcomes.push(...(await Promise.all([...Array.from({ length: PER_POOL }, viaHttpAgent), ...Array.from({ length: PER_POOL }, viaUndici)])));
  }
  running = false;
  await Promise.all(loads);
  const counts = outcomes.reduce<Record<string, number>>((m, o) => ({ ...m, [o]: (m[o] ?? 0) + 1 }), {});
  console.log(`keep-alive: ${outcomes.length} pooled requests under load: ${JSON.stringify(counts)}`);
  expect(outcomes).toHaveLength(60);
  expect(counts).toEqual({ "200": 60 });
}, 120_000);
