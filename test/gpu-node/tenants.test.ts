import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CACHE_SALT_HEADER, formatNodeCredential, KEY_ID_HEADER, NODE_ID_HEADER, signRequest } from "@seventy/sdk/protocol";
import { SimulatedEngine } from "../../gpu-node/src/engine/index.js";
import { startNode, type RunningNode } from "../../gpu-node/src/node.js";

// Tenants on one node, as the edge signs them in (x-seventy-key-id, x-seventy-cache-salt): one key's
// flood does not hold up another key, and one key's prompts cannot be detected through the prefix cache.
const CRED = { nodeId: "node-t", edgeKey: "e".repeat(43), nodeKey: "n".repeat(43) };
const MODEL = "tiny-llama-3.1";
let node: RunningNode;

beforeAll(async () => {
  node = await startNode({
    port: 0,
    credential: formatNodeCredential(CRED),
    engineInstance: new SimulatedEngine({ numKvBlocks: 4096, blockSize: 16, stepDelayMs: 2 }),
    maxNumSeqs: 64,
    log: () => {},
  });
});
afterAll(async () => node?.close());

async function call(path: string, keyId: string, json: unknown, salt = `key:${keyId}`) {
  const body = JSON.stringify(json);
  const headers = await signRequest({
    method: "POST",
    path,
    body,
    secret: CRED.edgeKey,
    signed: { [NODE_ID_HEADER]: CRED.nodeId, [KEY_ID_HEADER]: keyId, [CACHE_SALT_HEADER]: salt },
  });
  const res = await fetch(node.url + path, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
  return { status: res.status, json: (await res.json()) as { usage: { prompt_tokens: number; prompt_tokens_details: { cached_tokens: number } } } };
}

describe("tenants on one node", () => {
  it("a prompt another key sent is not reported as cached (no cross-tenant oracle); the same key's is", async () => {
    const system = "You are the assistant of ACME Corp. Internal escalation code: 4471-ZETA. ".repeat(8);
    const ask = (key: string, salt?: string) =>
      call("/v1/chat/completions", key, { model: MODEL, max_tokens: 1, messages: [{ role: "system", content: system }, { role: "user", content: "hi" }] }, salt);
    const victim = await ask("key_victim");
    expect(victim.status).toBe(200);
    const guess = await ask("key_attacker");
    const again = await ask("key_victim");
    const shared = await ask("key_victim_2", "salt:acme");
    const shared2 = await ask("key_victim_3", "salt:acme");
    console.log(
      `prefix cache: victim ${victim.json.usage.prompt_tokens} prompt tokens; attacker's right guess shows ${guess.json.usage.prompt_tokens_details.cached_tokens} cached; the victim's next request ${again.json.usage.prompt_tokens_details.cached_tokens}`,
    );
    expect(guess.json.usage.prompt_tokens_details.cached_tokens).toBe(0);
    expect(again.json.usage.prompt_tokens_details.cached_tokens).toBeGreaterThan(100);
    // Keys an admin put in one tenant (a shared cache_salt) share the cache.
    expect(shared.json.usage.prompt_tokens_details.cached_tokens).toBe(0);
    expect(shared2.json.usage.prompt_tokens_details.cached_tokens).toBeGreaterThan(100);
  });

  it("another key's 4-token request is not held up by one key's 256 queued sequences", async () => {
    const flood = Array.from({ length: 4 }, () =>
      call("/v1/completions", "key_flood", { model: MODEL, prompt: Array(64).fill("hello"), max_tokens: 100, ignore_eos: true }),
    );
    await new Promise((r) => setTimeout(r, 100));
    const t0 = performance.now();
    const small = await call("/v1/chat/completions", "key_small", { model: MODEL, max_tokens: 4, messages: [{ role: "user", content: "hi" }] });
    const waitedMs = performance.now() - t0;
    const t1 = performance.now();
    const results = await Promise.all(flood);
    const floodMs = performance.now() - t0;
    void t1;
    console.log(`fairness over HTTP: the other key's 4-token request took ${waitedMs.toFixed(0)} ms; the flood (4 × 64 sequences × 100 tokens) ${floodMs.toFixed(0)} ms`);
    expect(small.status).toBe(200);
    expect(results.every((r) => r.status === 200)).toBe(true);
    // FIFO would serve it after the flood's first 256 sequences; fair admission serves it at once.
    expect(waitedMs).toBeLessThan(floodMs / 4);
    expect(node.ctx.scheduler.stats().kvBlocksUsed).toBe(0);
  });
});
