// Host work per decode step on the JavaScript side of the native engine, at the 70B's serving shape
// (64 sequences decoding, 8k tokens of context: 512 KV blocks each): the scheduler deciding the
// step, packing it for the addon, unpacking the addon's result and handing each token to its
// request. The engine is free (it answers at once, in the addon's result layout), so what is timed
// is host time only; the table shows it next to the 20–25 ms of a 70B decode step at batch 64 on an
// H100, with the scheduler's overlap (step N+1 handed to the engine before step N's tokens go out)
// and without it. Needs `npm run build` (gpu-node/dist).
import { fileURLToPath } from "node:url";

const dist = (p) => fileURLToPath(new URL(`../gpu-node/dist/${p}`, import.meta.url));
const { Scheduler } = await import(dist("scheduler/scheduler.js"));
const { packStep, unpackResult } = await import(dist("engine/native/pack.js"));

const BATCH = Number(process.env.BENCH_BATCH ?? 64);
const CONTEXT = Number(process.env.BENCH_CONTEXT ?? 8192);
const DECODE_STEPS = Number(process.env.BENCH_STEPS ?? 200);
const BLOCK = 16;
const STEP_MS_70B = [20, 25];

/** Packs every step as the NativeEngine does and answers with an addon-shaped result, in call order. */
class FreeEngine {
  kind = "free";
  blockSize = BLOCK;
  constructor(numKvBlocks, overlapsSteps) {
    this.numKvBlocks = numKvBlocks;
    this.overlapsSteps = overlapsSteps;
    this.unpackMs = 0;
    this.token = 1000;
  }
  async step(batch) {
    const packed = packStep(batch); // synchronous: counted in the scheduler's scheduleMs
    const n = packed.seqMeta.length / 12;
    const seqIds = new Int32Array(n);
    const tokenIds = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      seqIds[i] = packed.seqMeta[i * 12];
      tokenIds[i] = 1000 + ((this.token++ * 7919) % 120000);
    }
    const r = { seqIds, tokenIds, logprobs: new Float64Array(n).fill(NaN), topCounts: new Int32Array(n).fill(-1), topIds: new Int32Array(0), topLogprobs: new Float64Array(0), logits: new Array(n).fill(null) };
    await null;
    const t0 = performance.now();
    const result = unpackResult(r);
    this.unpackMs += performance.now() - t0;
    return result;
  }
  async close() {}
}

async function run(overlap) {
  const numKvBlocks = BATCH * Math.ceil((CONTEXT + DECODE_STEPS + 8) / BLOCK) + 64;
  const engine = new FreeEngine(numKvBlocks, overlap);
  const scheduler = new Scheduler(engine, { maxNumSeqs: 256, maxNumBatchedTokens: 2048 * 8, enablePrefixCaching: false });
  const decode = [];
  scheduler.onStepHostTime = (t) => decode.push(t);
  let tokens = 0;
  for (let i = 0; i < BATCH; i++) {
    const prompt = Array.from({ length: CONTEXT - 1 }, (_, j) => 1 + ((i * 131 + j * 7) % 120000));
    scheduler.add({ requestId: `r${i}`, promptTokenIds: prompt, params: { temperature: 0, topK: 0, topP: 1, minP: 0, presencePenalty: 0, frequencyPenalty: 0, repetitionPenalty: 1, seed: i, logprobs: -1 }, maxTokens: DECODE_STEPS, stopTokenIds: [] }, (ev) => {
      if (ev.type === "token") tokens++;
    });
  }
  await scheduler.idle();
  // Decode steps only (every sequence computing one token): the prefill steps are a different cost.
  const steady = decode.slice(-Math.floor(DECODE_STEPS * 0.8));
  const mean = (f) => steady.reduce((a, t) => a + f(t), 0) / steady.length;
  const stats = scheduler.stats();
  return {
    scheduleMs: mean((t) => t.scheduleMs),
    updateMs: mean((t) => t.updateMs),
    unpackMs: engine.unpackMs / decode.length,
    overlapped: stats.numOverlappedSteps,
    steps: stats.numSteps,
    tokens,
  };
}

// Warm the JIT once, then measure both ways.
await run(true);
const rows = [];
for (const overlap of [false, true]) {
  const r = await run(overlap);
  const host = r.scheduleMs + r.unpackMs + r.updateMs;
  // Without overlap the GPU waits for all of it; with it, only for what precedes the next step's
  // submission on the critical path: nothing on this side (step N+1 is already queued on the
  // engine thread when step N's ids arrive), as long as it all fits inside one GPU step.
  rows.push({ overlap, ...r, host });
}
console.log(`JS host work per decode step, ${BATCH} sequences at ${CONTEXT} tokens of context (${rows[0].steps} steps, node ${process.version})`);
console.log("overlap | schedule+pack ms | unpack ms | tokens to requests ms | total ms | GPU waits for | share of a 20–25 ms 70B step");
const pct = (ms) => `${((100 * ms) / STEP_MS_70B[1]).toFixed(2)}–${((100 * ms) / STEP_MS_70B[0]).toFixed(2)}%`;
for (const r of rows) {
  const waits = r.overlap ? "none (behind step N+1)" : `${r.host.toFixed(3)} ms`;
  console.log(
    `${r.overlap ? "on " : "off"}     | ${r.scheduleMs.toFixed(3).padStart(16)} | ${r.unpackMs.toFixed(3).padStart(9)} | ${r.updateMs.toFixed(3).padStart(21)} | ${r.host.toFixed(3).padStart(8)} | ${waits.padStart(22)} | ${r.overlap ? "0% while it fits in a step; " + pct(r.host) + " of the host thread" : pct(r.host)} (overlapped steps: ${r.overlapped}/${r.steps})`,
  );
}
console.log(
  "The engine thread's own host work (plan, uploads with the embedding rows, read-back) is measured by the CUDA engine per step " +
    "(StepResult.hostTiming; decode_bench prints it against the 80-layer step) and is on the critical path either way.",
);
