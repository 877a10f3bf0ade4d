import { request } from "node:http";
import { connect } from "node:net";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SimulatedEngine } from "../../gpu-node/src/engine/index.js";
import { startNode, type RunningNode } from "../../gpu-node/src/node.js";

// Bounded work per request: every oversized or pathological input is a clear 400 before it costs
// the node anything, and large but legitimate prompts are tokenized off the event loop.
const MODEL = "tiny-llama-3.1";
let node: RunningNode;

beforeAll(async () => {
  node = await startNode({
    port: 0,
    // The tiny model's full 131072-token context, so an 800 KB prompt is tokenized before it is refused.
    engineInstance: new SimulatedEngine({ numKvBlocks: 8192, blockSize: 16 }),
    maxConnections: 8,
    log: () => {},
  });
});
afterAll(async () => node?.close());

type ErrorBody = { error: { message: string; type: string; param: string | null; code: string | null } };

async function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(node.url + path, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as ErrorBody };
}

/** `chars` characters of random lowercase words: every word a tokenizer-cache miss, like real text. */
function randomWords(chars: number): string {
  let seed = 1;
  const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const words: string[] = [];
  let len = 0;
  while (len < chars) {
    let w = "";
    for (let i = 3 + Math.floor(rnd() * 8); i > 0; i--) w += String.fromCharCode(97 + Math.floor(rnd() * 26));
    words.push(w);
    len += w.length + 1;
  }
  return words.join(" ");
}

/** A JSON schema nested `depth` objects deep. */
function deepSchema(depth: number): Record<string, unknown> {
  let s: Record<string, unknown> = { type: "string" };
  for (let i = 0; i < depth; i++) s = { type: "object", properties: { a: s } };
  return s;
}

describe("caps on work per request", () => {
  it("64 prompts × n 16 (1,024 sequences) is refused: too many sequences for one request", async () => {
    const r = await post("/v1/completions", { model: MODEL, prompt: Array(64).fill("hi"), n: 16, max_tokens: 1 });
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe("too_many_sequences");
    expect(r.json.error.param).toBe("n");
    expect(node.ctx.scheduler.stats().numWaiting).toBe(0);
  });

  it("a tool schema nested 1,400 deep is refused before the template sees it", async () => {
    const tools = [{ type: "function", function: { name: "f", parameters: deepSchema(1400) } }];
    const r = await post("/v1/chat/completions", { model: MODEL, messages: [{ role: "user", content: "hi" }], tools, max_tokens: 1 });
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe("schema_too_deep");
    expect(r.json.error.param).toBe("tools[0].function.parameters");
  });

  it("tool definitions larger than the cap are refused", async () => {
    const tools = Array.from({ length: 100 }, (_, i) => ({ type: "function", function: { name: `f${i}`, description: "d".repeat(2000) } }));
    const r = await post("/v1/chat/completions", { model: MODEL, messages: [{ role: "user", content: "hi" }], tools, max_tokens: 1 });
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe("tools_too_large");
    expect(r.json.error.param).toBe("tools");
  });

  it("a stop string longer than the cap is refused", async () => {
    const r = await post("/v1/chat/completions", { model: MODEL, messages: [{ role: "user", content: "hi" }], stop: ["a".repeat(1000)], max_tokens: 1 });
    expect(r.status).toBe(400);
    expect(r.json.error.param).toBe("stop");
    expect(r.json.error.code).toBe("stop_too_long");
  });

  it("a stop string with a lone surrogate is refused", async () => {
    const r = await post("/v1/chat/completions", `{"model":"${MODEL}","messages":[{"role":"user","content":"hi"}],"stop":["\\ude00z"],"max_tokens":1}`);
    expect(r.status).toBe(400);
    expect(r.json.error.param).toBe("stop");
  });

  it("logprobs volume (n × top_logprobs × max_tokens) is capped", async () => {
    const r = await post("/v1/chat/completions", {
      model: MODEL,
      messages: [{ role: "user", content: "hi" }],
      n: 16,
      logprobs: true,
      top_logprobs: 20,
      max_tokens: 4096,
    });
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe("logprobs_too_large");
  });

  it("a prompt beyond the character cap is refused before tokenization", async () => {
    // maxModelLen × 8 characters at most (no tokenizer packs more than that into the context).
    const chars = node.ctx.maxModelLen * 8 + 1;
    const r = await post("/v1/completions", { model: MODEL, prompt: "a ".repeat(Math.ceil(chars / 2)), max_tokens: 1 });
    expect([400, 413]).toContain(r.status);
    if (r.status === 400) expect(r.json.error.code).toBe("prompt_too_long");
  });

  it("the body limit matches the edge's (1 MiB)", async () => {
    expect(node.ctx.maxBodyBytes).toBeLessThanOrEqual(1024 * 1024 + 4096);
    const r = await post("/v1/chat/completions", { model: MODEL, messages: [{ role: "user", content: "x".repeat(1100 * 1024) }] });
    expect(r.status).toBe(413);
  });
});

describe("large prompts do not stall the event loop", () => {
  it("an 800 KB prompt is tokenized with the event loop left free", async () => {
    const prompt = randomWords(800 * 1024);
    // The node runs in this process, so its loop is this loop: measure how busy it is while the
    // request is served (utilization counts time spent running, not time waiting for the thread),
    // and the longest stall a timer sees.
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    const elu0 = performance.eventLoopUtilization();
    const t0 = performance.now();
    const r = await post("/v1/chat/completions", { model: MODEL, messages: [{ role: "user", content: prompt }], max_tokens: 1 });
    const totalMs = performance.now() - t0;
    const elu = performance.eventLoopUtilization(elu0).utilization;
    delay.disable();
    console.log(
      `800 KB prompt: answered ${r.status} after ${totalMs.toFixed(0)} ms; event loop busy ${(elu * 100).toFixed(0)}% of it, longest stall ${(delay.max / 1e6).toFixed(0)} ms`,
    );
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe("context_length_exceeded");
    // Tokenizing on the loop keeps it busy for nearly the whole request.
    expect(elu).toBeLessThan(0.5);
  });
});

describe("loopback mode (no credential) resists browsers", () => {
  function raw(headers: Record<string, string>, body: string): Promise<number> {
    return new Promise((resolve, reject) => {
      const req = request(node.url + "/v1/chat/completions", { method: "POST", headers: { ...headers, "content-length": Buffer.byteLength(body) } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      req.end(body);
    });
  }
  const body = JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 1 });

  it("refuses text/plain bodies (a CORS-simple request a web page can send)", async () => {
    expect(await raw({ "content-type": "text/plain" }, body)).toBe(415);
  });

  it("refuses a foreign Host (DNS rebinding)", async () => {
    expect(await raw({ "content-type": "application/json", host: "evil.example:80" }, body)).toBe(403);
  });

  it("refuses a foreign Origin", async () => {
    expect(await raw({ "content-type": "application/json", origin: "https://evil.example" }, body)).toBe(403);
  });

  it("serves loopback Host and Origin", async () => {
    const host = new URL(node.url).host;
    expect(await raw({ "content-type": "application/json", host, origin: `http://${host}` }, body)).toBe(200);
  });
});

describe("connections", () => {
  it("are capped: sockets beyond maxConnections are closed at once", async () => {
    const { port } = new URL(node.url);
    const sockets = await Promise.all(
      Array.from({ length: 12 }, () => new Promise<import("node:net").Socket>((resolve) => {
        const s = connect(Number(port), "127.0.0.1", () => resolve(s));
        s.on("error", () => {});
      })),
    );
    await new Promise((r) => setTimeout(r, 300));
    const closed = sockets.filter((s) => s.destroyed || s.readableEnded).length;
    for (const s of sockets) s.destroy();
    expect(closed).toBeGreaterThanOrEqual(4);
  });
});

describe("the tokenization time budget", () => {
  it("refuses a prompt that takes too long to tokenize, and the next prompt is served", async () => {
    const slow = await startNode({
      port: 0,
      engineInstance: new SimulatedEngine({ numKvBlocks: 8192, blockSize: 16 }),
      tokenizeTimeoutMs: 300,
      tokenizerThreads: 1,
      log: () => {},
    });
    try {
      const send = (content: string) =>
        fetch(slow.url + "/v1/chat/completions", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ model: MODEL, messages: [{ role: "user", content }], max_tokens: 1 }),
        });
      // ~0.9 s of tokenizing against a 0.3 s budget.
      const res = await send(randomWords(800 * 1024));
      expect(res.status).toBe(400);
      expect(((await res.json()) as ErrorBody).error.code).toBe("prompt_too_complex");
      // The stopped thread is replaced: a 20 KB prompt (also tokenized on a thread) is served.
      const ok = await send(randomWords(20 * 1024));
      expect(ok.status).toBe(200);
    } finally {
      await slow.close();
    }
  });
});
