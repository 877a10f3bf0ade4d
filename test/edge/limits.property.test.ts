/**
 * Limits and metering as a property: 2,000 random requests against one key — chat or completions,
 * 1 to 4 prompts, n 1 to 4, max_tokens absent, small or far past the context, logprobs, stop
 * strings, streamed or not — and clients that hang up at random points (before the headers,
 * mid-stream, or not at all). Through the edge (deploy bundle under workerd) to a gpu-node with
 * the simulated engine on loopback.
 *
 * Whatever the shapes and the hang-ups: the key's metered usage equals the tokens the node
 * processed and generated (its own counters), and never exceeds the key's budget, nor its tokens
 * per minute over the run (a full bucket plus the refill).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, fetch as undiciFetch } from "undici";
import { afterAll, beforeAll, expect, it } from "vitest";
import { adminCall, freePort, registerNode, sleep, startEdge, startNode, stopGroup, waitForNodes, type Started } from "../../edge/scripts/stack.mjs";
import { metricSum } from "../helpers/nodes.js";

const ADMIN = "property-admin-token";
const SECRET = "property-node-secret";
const MODEL = "tiny-llama-3.1";
const REQUESTS = 2000;
const CONCURRENCY = 24;
const TPM = 600_000;
const BUDGET = 400_000;

let stateDir: string;
let edge: Started;
let node: Started;
const agent = new Agent({ connections: 64, keepAliveTimeout: 10_000 });

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "seventy-property-"));
  edge = await startEdge({
    port: await freePort(),
    adminToken: ADMIN,
    nodeSecret: SECRET,
    stateDir,
    vars: { DEFAULT_MAX_TOKENS: "24", STREAM_IDLE_TIMEOUT_MS: "3000", CANCEL_DRAIN_MS: "2000", LOG_LEVEL: "error" },
  });
  const port = await freePort();
  node = await startNode({
    port,
    edgeUrl: edge.url,
    credential: await registerNode(edge.url, ADMIN, { id: "p1", port }),
    engine: "simulated",
    args: ["--heartbeat-interval-ms", "500", "--simulated-step-ms", "2", "--max-model-len", "512"],
  });
  await waitForNodes(edge.url, ADMIN, ["p1"]);
}, 120_000);

afterAll(async () => {
  await stopGroup(node?.child, "SIGKILL");
  await edge?.stop();
  await agent.close();
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
}, 30_000);

/** A small deterministic PRNG, so a failing run can be replayed with its seed. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

it(
  "meters exactly what the node generated, within tpm and budget, over 2,000 random requests and hang-ups",
  async () => {
    const seed = Number(process.env.PROPERTY_SEED ?? Date.now() % 1_000_000);
    const random = prng(seed);
    const pick = <T>(xs: T[]): T => xs[Math.floor(random() * xs.length)]!;
    const key = await adminCall(edge.url, ADMIN, "POST", "/admin/keys", {
      name: "property",
      limits: { rpm: 1_000_000, tpm: TPM, concurrency: CONCURRENCY },
      budget: { tokens: BUDGET, period: "day" },
    });
    const started = Date.now();
    const statuses = new Map<number, number>();

    const one = async (i: number) => {
      const chat = random() < 0.5;
      const n = 1 + Math.floor(random() * 4);
      const prompts = Array.from({ length: 1 + Math.floor(random() * 4) }, (_, j) => `prompt ${i} ${j} ${"word ".repeat(Math.floor(random() * 20))}`);
      const maxTokens = pick([undefined, undefined, 1 + Math.floor(random() * 24), 100_000]);
      const stream = random() < 0.6;
      const body: Record<string, unknown> = { model: MODEL, n, stream };
      if (chat) body.messages = [{ role: "user", content: prompts[0] }];
      else body.prompt = prompts.length === 1 ? prompts[0] : prompts;
      if (maxTokens !== undefined) body.max_tokens = maxTokens;
      if (random() < 0.3) body.stop = pick([["zz"], "\n", ["a", "b"]]);
      if (random() < 0.3) {
        if (chat) Object.assign(body, { logprobs: true, top_logprobs: 1 + Math.floor(random() * 5) });
        else body.logprobs = 1 + Math.floor(random() * 5);
      }
      if (random() < 0.5) body.ignore_eos = true;
      const hangUp = random();
      const ac = new AbortController();
      // A third hang up: half of them before the answer starts, half while reading it.
      if (hangUp < 1 / 6) setTimeout(() => ac.abort(), Math.floor(random() * 20));
      const readChunks = hangUp >= 1 / 6 && hangUp < 1 / 3 ? 1 + Math.floor(random() * 5) : Infinity;
      try {
        const res = await undiciFetch(`${edge.url}${chat ? "/v1/chat/completions" : "/v1/completions"}`, {
          method: "POST",
          dispatcher: agent,
          headers: { "content-type": "application/json", authorization: `Bearer ${key.key}` },
          body: JSON.stringify(body),
          signal: ac.signal,
        });
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        let chunks = 0;
        for await (const _ of res.body!) {
          if (++chunks >= readChunks) {
            ac.abort();
            break;
          }
        }
      } catch {
        // our own hang-up
      }
    };

    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < REQUESTS) await one(next++);
      }),
    );
    const elapsedMs = Date.now() - started;

    // Every lease comes back, then the usage rows are written (behind, within a second).
    for (let t = 0; t < 100; t++) {
      const { state } = await adminCall(edge.url, ADMIN, "GET", `/admin/keys/${key.id}`);
      if (state.in_flight === 0) break;
      await sleep(100);
    }
    expect((await adminCall(edge.url, ADMIN, "GET", `/admin/keys/${key.id}`)).state).toMatchObject({ in_flight: 0, reserved_tokens: 0 });
    await sleep(1500);
    const { data } = await adminCall(edge.url, ADMIN, "GET", `/admin/usage?key=${key.id}`);
    const usage = data[0];
    const metered = usage.prompt_tokens + usage.completion_tokens;
    const m = await (await fetch(`${node.url}/metrics`)).text();
    const generated = metricSum(m, "vllm:prompt_tokens_total") + metricSum(m, "vllm:generation_tokens_total");

    console.log(
      `property (seed ${seed}): ${REQUESTS} requests in ${(elapsedMs / 1000).toFixed(1)} s; statuses ${JSON.stringify(Object.fromEntries(statuses))}; ` +
        `metered ${metered} tokens over ${usage.requests} requests, node ${generated}`,
    );
    expect(metered, `seed ${seed}`).toBe(generated);
    expect(metered).toBeLessThanOrEqual(BUDGET);
    expect(metered).toBeLessThanOrEqual(TPM + Math.ceil((TPM * elapsedMs) / 60_000));
    // The run exercised the limits: some requests were refused by them, most were served.
    expect((statuses.get(200) ?? 0) + (statuses.get(429) ?? 0) + (statuses.get(400) ?? 0)).toBeGreaterThan(REQUESTS / 2);
  },
  240_000,
);
