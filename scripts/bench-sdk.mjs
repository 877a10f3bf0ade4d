// SSE parse-and-dispatch throughput of @seventy/sdk against openai-node (and the AI SDK), all
// consuming the same recorded chat stream through an in-process `fetch`, in one run.
//
//   node scripts/bench-sdk.mjs [--chunks 2000] [--rounds 7] [--streams 20] [--json]
//
// Runs against the built SDK (sdk/dist): `npm run build` first.
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { existsSync } from "node:fs";

const { values: args } = parseArgs({
  options: {
    chunks: { type: "string", default: "2000" },
    rounds: { type: "string", default: "7" },
    streams: { type: "string", default: "20" },
    // "event": one SSE event per network piece (a token server with TCP_NODELAY); or a size in
    // bytes to coalesce events into pieces of about that size (a proxy that buffers).
    pieces: { type: "string", default: "event" },
    json: { type: "boolean", default: false },
  },
});
const NUM_CHUNKS = Number(args.chunks);
const ROUNDS = Number(args.rounds);
const STREAMS = Number(args.streams);

const dist = fileURLToPath(new URL("../sdk/dist/index.js", import.meta.url));
if (!existsSync(dist)) {
  console.error("sdk/dist is missing: run `npm run build` first.");
  process.exit(1);
}
const { Seventy, protocolValidator } = await import(dist);
const { default: OpenAI } = await import("openai");
let aiSdk;
try {
  const { streamText } = await import("ai");
  const { createOpenAICompatible } = await import("@ai-sdk/openai-compatible");
  aiSdk = { streamText, createOpenAICompatible };
} catch {
  aiSdk = undefined; // the AI SDK row is context only
}

// ---- the recorded stream: n chunks as the gpu-node sends them (role, content…, finish, usage), one
// SSE event per network piece ----
const MODEL = "llama-3.1-nemotron-70b-instruct";
const WORDS = [" the", " model", " answers", ",", " and", " tokens", " arrive", " one", " by", " one", ".", "\n", " é", " 🦙"];
function recordedEvents(n) {
  const base = { id: "chatcmpl-9f2c1d0e8b7a4c3d", object: "chat.completion.chunk", created: 1764160000, model: MODEL };
  const events = [];
  const push = (obj) => events.push(`data: ${JSON.stringify(obj)}\n\n`);
  push({ ...base, choices: [{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }] });
  for (let i = 0; i < n - 3; i++) {
    push({ ...base, choices: [{ index: 0, delta: { content: WORDS[i % WORDS.length] }, logprobs: null, finish_reason: null }] });
  }
  push({ ...base, choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: "stop" }] });
  push({ ...base, choices: [], usage: { prompt_tokens: 31, completion_tokens: n - 3, total_tokens: n + 28 } });
  events.push("data: [DONE]\n\n");
  return events;
}
const encoder = new TextEncoder();
const EVENTS = recordedEvents(NUM_CHUNKS).map((e) => encoder.encode(e));
const PIECES = args.pieces === "event" ? EVENTS : coalesce(EVENTS, Number(args.pieces));
function coalesce(events, size) {
  const all = new Uint8Array(events.reduce((n, e) => n + e.length, 0));
  let at = 0;
  for (const e of events) all.set(e, (at += e.length) - e.length);
  const out = [];
  for (let i = 0; i < all.length; i += size) out.push(all.subarray(i, i + size));
  return out;
}
// Chunks every client yields to its caller: all but the usage-only chunk (hidden unless asked for).
const VISIBLE = NUM_CHUNKS - 1;

/** An in-process fetch answering every request with the recorded stream, one piece per read. */
async function replayFetch() {
  let i = 0;
  const body = new ReadableStream({
    pull(controller) {
      if (i < PIECES.length) controller.enqueue(PIECES[i++]);
      else controller.close();
    },
  });
  return new Response(body, { status: 200, headers: { "content-type": "text/event-stream", "x-request-id": "req_bench" } });
}

const baseURL = "http://bench.invalid/v1";
const messages = [{ role: "user", content: "Count to two thousand." }];
const seventy = new Seventy({ baseURL, apiKey: "sk-bench", fetch: replayFetch });
const seventyValidated = new Seventy({ baseURL, apiKey: "sk-bench", fetch: replayFetch, validate: protocolValidator });
const openai = new OpenAI({ baseURL, apiKey: "sk-bench", fetch: replayFetch, maxRetries: 0 });

function expectCount(name, got, want) {
  if (got !== want) throw new Error(`${name}: read ${got} chunks, expected ${want}`);
}

const cases = [
  {
    name: "floor: fetch + TextDecoder + split + JSON.parse",
    chunks: VISIBLE,
    async run() {
      const res = await replayFetch();
      const decoder = new TextDecoder();
      let buf = "";
      let n = 0;
      for await (const piece of res.body) {
        buf += decoder.decode(piece, { stream: true });
        let idx;
        while ((idx = buf.indexOf("\n\n")) !== -1) {
          const event = buf.slice(0, idx);
          buf = buf.slice(idx + 2);
          const data = event.slice(6);
          if (data === "[DONE]") continue;
          const chunk = JSON.parse(data);
          if (chunk.choices.length > 0) n++;
        }
      }
      expectCount(this.name, n, VISIBLE);
    },
  },
  {
    name: "openai-node create({stream:true})",
    chunks: VISIBLE,
    baseline: true,
    async run() {
      const stream = await openai.chat.completions.create({ model: MODEL, messages, stream: true });
      let n = 0;
      for await (const chunk of stream) if (chunk.choices.length > 0) n++;
      expectCount(this.name, n, VISIBLE);
    },
  },
  {
    name: "openai-node .stream() + on('content')",
    chunks: VISIBLE,
    async run() {
      let n = 0;
      const runner = openai.chat.completions.stream({ model: MODEL, messages });
      runner.on("chunk", () => n++);
      await runner.finalChatCompletion();
      expectCount(this.name, n, NUM_CHUNKS);
    },
  },
  {
    name: "@seventy/sdk create({stream:true})",
    chunks: VISIBLE,
    subject: true,
    async run() {
      const stream = await seventy.chat.completions.create({ model: MODEL, messages, stream: true });
      let n = 0;
      for await (const chunk of stream) if (chunk.choices.length > 0) n++;
      expectCount(this.name, n, VISIBLE);
    },
  },
  {
    name: "@seventy/sdk .textStream",
    chunks: VISIBLE,
    async run() {
      const stream = await seventy.chat.completions.create({ model: MODEL, messages, stream: true });
      let chars = 0;
      for await (const text of stream.textStream) chars += text.length;
      if (chars === 0) throw new Error("no text");
    },
  },
  {
    name: "@seventy/sdk on('content') + finalCompletion()",
    chunks: VISIBLE,
    async run() {
      const stream = await seventy.chat.completions.create({ model: MODEL, messages, stream: true });
      let n = 0;
      stream.on("content", () => n++);
      const final = await stream.finalCompletion();
      if (!final.usage || n < VISIBLE - 10) throw new Error("incomplete");
    },
  },
  {
    name: "@seventy/sdk with validate: protocolValidator (zod)",
    chunks: VISIBLE,
    async run() {
      const stream = await seventyValidated.chat.completions.create({ model: MODEL, messages, stream: true });
      let n = 0;
      for await (const chunk of stream) if (chunk.choices.length > 0) n++;
      expectCount(this.name, n, VISIBLE);
    },
  },
];
if (aiSdk) {
  const provider = aiSdk.createOpenAICompatible({ name: "seventy", baseURL, apiKey: "sk-bench", fetch: replayFetch, includeUsage: true });
  cases.push({
    name: "AI SDK streamText().textStream",
    chunks: VISIBLE,
    async run() {
      const result = aiSdk.streamText({ model: provider.chatModel(MODEL), messages, maxRetries: 0 });
      let chars = 0;
      for await (const text of result.textStream) chars += text.length;
      if (chars === 0) throw new Error("no text");
    },
  });
}

// Warm up every case (JIT), then alternate cases round by round so drift hits all alike.
for (const c of cases) for (let i = 0; i < 5; i++) await c.run();
const samples = new Map(cases.map((c) => [c, []]));
for (let r = 0; r < ROUNDS; r++) {
  for (const c of cases) {
    const t0 = performance.now();
    for (let s = 0; s < STREAMS; s++) await c.run();
    const ms = performance.now() - t0;
    samples.get(c).push((c.chunks * STREAMS) / (ms / 1000));
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rows = cases.map((c) => ({ name: c.name, chunksPerSec: median(samples.get(c)), c }));
const base = rows.find((r) => r.c.baseline).chunksPerSec;
const subject = rows.find((r) => r.c.subject).chunksPerSec;

if (args.json) {
  console.log(JSON.stringify(rows.map(({ name, chunksPerSec }) => ({ name, chunksPerSec, usPerChunk: 1e6 / chunksPerSec }))));
} else {
  const how = args.pieces === "event" ? "one SSE event per network piece" : `${PIECES.length} network pieces of ${args.pieces} bytes`;
  console.log(`SDK stream consumption: ${NUM_CHUNKS}-chunk chat stream, ${how},`);
  console.log(`in-process fetch; median of ${ROUNDS} rounds × ${STREAMS} streams; Node ${process.version}\n`);
  const w = Math.max(...rows.map((r) => r.name.length));
  console.log(`${"client".padEnd(w)}  ${"chunks/s".padStart(10)}  ${"µs/chunk".padStart(9)}  ${"× openai".padStart(8)}`);
  for (const r of rows) {
    console.log(
      `${r.name.padEnd(w)}  ${Math.round(r.chunksPerSec).toLocaleString("en-US").padStart(10)}  ${(1e6 / r.chunksPerSec).toFixed(2).padStart(9)}  ${(r.chunksPerSec / base).toFixed(2).padStart(8)}`,
    );
  }
  const ratio = subject / base;
  console.log(`\n@seventy/sdk vs openai-node: ${ratio.toFixed(2)}× (target ≥ 1.50×: ${ratio >= 1.5 ? "met" : "NOT met"})`);
}
