import { GREEDY_SAMPLING } from "../sampling.js";
/**
 * The native engine (CPU flavor here; the CUDA flavor where a GPU is present) against the TypeScript
 * reference engine on tiny models: same greedy tokens, logits within float32 reordering error, same
 * seeded samples and logprobs. This test builds nothing: it needs `npm run native:build` first, and
 * FAILS (does not skip) when the addon is missing.
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listTensors, loadTensorsF32, makeTinyModel, readLlamaConfig } from "../../model/index.js";
import type { LlamaConfig, TensorInfo } from "../../model/types.js";
import { ReferenceEngine } from "../reference/reference-engine.js";
import { Scheduler } from "../../scheduler/scheduler.js";
import type { SeqEvent } from "../../scheduler/request.js";
import type { SamplingParams, SeqStep, StepBatch, StepResult } from "../types.js";
import { defaultAddonDir, loadNativeAddon, NativeAddonError } from "./addon.js";
import { NativeEngine } from "./native-engine.js";

const GREEDY: SamplingParams = { ...GREEDY_SAMPLING };

interface Model {
  config: LlamaConfig;
  tensors: Map<string, TensorInfo>;
  weights: Map<string, Float32Array>;
}

let tmp: string;

async function tinyModel(name: string, overrides: Parameters<typeof makeTinyModel>[0]): Promise<Model> {
  const dir = await makeTinyModel({ ...overrides, outDir: join(tmp, name) });
  const config = await readLlamaConfig(join(dir, "config.json"));
  const tensors = await listTensors(dir);
  return { config, tensors, weights: await loadTensorsF32(tensors) };
}

/** Max |a − b| over max |b|: float32 reordering puts this near 1e-6. */
function relMaxDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

/** Block ids handed out from the top, interleaved between sequences: not 0-based, not contiguous. */
function blockTables(numSeqs: number, blocksPerSeq: number, numKvBlocks: number): number[][] {
  return Array.from({ length: numSeqs }, (_, s) => Array.from({ length: blocksPerSeq }, (_, b) => numKvBlocks - 1 - (b * numSeqs + s)));
}

function prompt(len: number, salt: number): number[] {
  return Array.from({ length: len }, (_, i) => (i * 7919 + salt * 104729 + 13) % 128000);
}

/**
 * Drives both engines through the same steps: three sequences whose prompts cross block boundaries,
 * one prefilled in two chunks (the first samples nothing but returns its logits), then batched
 * decode. Each step's inputs come from the reference's tokens so one mismatch does not cascade.
 */
async function compareGreedy(
  m: Model,
  native: NativeEngine,
  opts: { decodeSteps: number; params?: (seq: number, outputIndex: number) => SamplingParams; tol: number },
): Promise<{ worstLogits: number; mismatches: number }> {
  const numKvBlocks = native.numKvBlocks;
  const reference = new ReferenceEngine(m.config, m.weights, { numKvBlocks, blockSize: native.blockSize });
  const prompts = [prompt(5, 1), prompt(23, 2), prompt(37, 3)];
  const tables = blockTables(3, Math.ceil((37 + opts.decodeSteps + 2) / native.blockSize), numKvBlocks);
  const generated: number[][] = [[], [], []];
  const computed = [0, 0, 0];
  const params = opts.params ?? (() => GREEDY);
  let worstLogits = 0;
  let mismatches = 0;

  const seqStep = (s: number, upTo?: number): SeqStep => {
    const p = prompts[s];
    const start = computed[s];
    let tokenIds: number[];
    if (start < p.length) tokenIds = p.slice(start, upTo ?? p.length);
    else tokenIds = [generated[s][generated[s].length - 1]];
    const endsPrompt = start >= p.length || start + tokenIds.length === p.length;
    const outputIndex = generated[s].length;
    return {
      seqId: 10 + s,
      tokenIds,
      startPos: start < p.length ? start : p.length + generated[s].length - 1,
      blockTable: tables[s],
      sample: endsPrompt ? { params: params(s, outputIndex), outputIndex, promptTokenIds: p, outputTokenIds: generated[s] } : null,
      returnLogits: true,
    };
  };

  const check = (batch: StepBatch, want: StepResult, got: StepResult) => {
    expect(got.sampled.map((x) => x.seqId)).toEqual(want.sampled.map((x) => x.seqId));
    want.sampled.forEach((w, i) => {
      const g = got.sampled[i];
      if (g.tokenId !== w.tokenId) mismatches++;
      worstLogits = Math.max(worstLogits, relMaxDiff(g.logits as Float32Array, w.logits as Float32Array));
      if (w.logprob !== undefined) {
        expect(g.logprob).toBeCloseTo(w.logprob, 4);
        expect(g.topLogprobs?.map((t) => t.tokenId)).toEqual(w.topLogprobs?.map((t) => t.tokenId));
      } else {
        expect(g.logprob).toBeUndefined();
      }
    });
    batch.seqs.forEach((s, i) => {
      computed[i] += s.tokenIds.length;
    });
    for (const w of want.sampled) if (w.tokenId >= 0) generated[w.seqId - 10].push(w.tokenId);
  };

  const run = async (batch: StepBatch) => {
    const want = await reference.step(batch);
    const got = await native.step(batch);
    check(batch, want, got);
  };

  await run({ seqs: [seqStep(0), seqStep(1, 10), seqStep(2)] }); // seq 1: first chunk, no sample
  await run({ seqs: [seqStep(0), seqStep(1), seqStep(2)] }); // seq 1: rest of its prompt
  for (let i = 0; i < opts.decodeSteps; i++) await run({ seqs: [seqStep(0), seqStep(1), seqStep(2)] });
  await reference.close();
  return { worstLogits, mismatches };
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "seventy-native-"));
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe("native engine addon", () => {
  it("is built (run `npm run native:build -w @seventy/gpu-node` first)", () => {
    const dir = defaultAddonDir();
    const built = existsSync(join(dir, "seventy_cpu.node")) || existsSync(join(dir, "seventy_cuda.node"));
    expect(built, `no native addon in ${dir}: run \`ENGINE_CUDA=OFF npm run native:build -w @seventy/gpu-node\``).toBe(true);
    const loaded = loadNativeAddon("auto");
    expect(["cpu", "cuda"]).toContain(loaded.flavor);
    expect(loaded.reason.length).toBeGreaterThan(0);
    // Without a GPU the device probe explains itself instead of crashing.
    if (!loaded.device.usable) expect(loaded.device.reason).toMatch(/\w/);
  });

  it("explains how to build it when the addon is missing", () => {
    expect(() => loadNativeAddon("auto", join(tmp, "no-such-dir"))).toThrow(NativeAddonError);
    expect(() => loadNativeAddon("auto", join(tmp, "no-such-dir"))).toThrow(/npm run native:build/);
  });
});

describe("native engine vs reference engine", () => {
  let m: Model;
  beforeAll(async () => {
    m = await tinyModel("tiny", { seed: 7 });
  });

  it("produces the reference's greedy tokens and logits (bf16 tiny model)", async () => {
    const native = await NativeEngine.create({ config: m.config, tensors: m.tensors, numKvBlocks: 40 });
    try {
      expect(native.kind).toMatch(/^native-(cpu|cuda)$/);
      const tol = native.kind === "native-cpu" ? 1e-4 : 2e-2;
      const { worstLogits, mismatches } = await compareGreedy(m, native, { decodeSteps: 12, tol });
      expect(mismatches).toBe(0);
      expect(worstLogits).toBeLessThan(tol);
    } finally {
      await native.close();
    }
  });

  it("samples the reference's seeded tokens with penalties, filters and logprobs", async () => {
    const native = await NativeEngine.create({ config: m.config, tensors: m.tensors, numKvBlocks: 40, flavor: "cpu" });
    const variants: Partial<SamplingParams>[] = [
      { temperature: 0.9, seed: 42, logprobs: 3 },
      { temperature: 0.7, topK: 40, topP: 0.9, seed: -5, logprobs: 0, repetitionPenalty: 1.3 },
      { temperature: 1.2, topP: 0.8, minP: 0.05, seed: 123456789, frequencyPenalty: 0.5, presencePenalty: 0.25, logprobs: 5 },
    ];
    try {
      const { worstLogits, mismatches } = await compareGreedy(m, native, {
        decodeSteps: 8,
        params: (s) => ({ ...GREEDY, ...variants[s] }),
        tol: 1e-4,
      });
      expect(worstLogits).toBeLessThan(1e-4);
      expect(mismatches).toBe(0);
    } finally {
      await native.close();
    }
  });

  it("serves an awkward f32 model (hidden 48, 6 heads over 2 KV heads, head_dim 8, 3 layers)", async () => {
    const odd = await tinyModel("odd", {
      seed: 3,
      dtype: "F32",
      hiddenSize: 48,
      numAttentionHeads: 6,
      numKeyValueHeads: 2,
      headDim: 8,
      intermediateSize: 72,
      numHiddenLayers: 3,
    });
    const native = await NativeEngine.create({ config: odd.config, tensors: odd.tensors, numKvBlocks: 37, blockSize: 8, flavor: "cpu" });
    try {
      const { worstLogits, mismatches } = await compareGreedy(odd, native, { decodeSteps: 6, tol: 1e-4 });
      expect(mismatches).toBe(0);
      expect(worstLogits).toBeLessThan(1e-4);
    } finally {
      await native.close();
    }
  });

  it("quantizes to fp8 per output channel and stays close to the bf16 logits", async () => {
    const native = await NativeEngine.create({ config: m.config, tensors: m.tensors, numKvBlocks: 40, flavor: "cpu", quantization: "fp8" });
    try {
      const { worstLogits } = await compareGreedy(m, native, { decodeSteps: 2, tol: 0.2 });
      // e4m3 keeps 3 mantissa bits: a few percent per projection, compounded over two layers.
      expect(worstLogits).toBeLessThan(0.2);
      expect(native.weightBytes).toBeLessThan(m.tensors.size > 0 ? totalBf16Bytes(m) : Infinity);
    } finally {
      await native.close();
    }
  });

  it("takes a step's token from the previous step on the engine thread (the scheduler's overlap)", async () => {
    const native = await NativeEngine.create({ config: m.config, tensors: m.tensors, numKvBlocks: 16, flavor: "cpu" });
    try {
      expect(native.overlapsSteps).toBe(true);
      const sample = (outputIndex: number) => ({ params: { ...GREEDY, temperature: 0.8, seed: 9 }, outputIndex });
      const p = prompt(9, 4);
      // Step 2 is handed over before step 1 has settled, with a placeholder token.
      const first = native.step({ seqs: [{ seqId: 3, tokenIds: p, startPos: 0, blockTable: [5], sample: sample(0) }] });
      const second = native.step({ seqs: [{ seqId: 3, tokenIds: [0], tokenFromPreviousStep: true, startPos: 9, blockTable: [5], sample: sample(1) }] });
      const [r1, r2] = await Promise.all([first, second]);
      // The same step with the token spelled out, over the same cache.
      const explicit = await native.step({ seqs: [{ seqId: 3, tokenIds: [r1.sampled[0].tokenId], startPos: 9, blockTable: [5], sample: sample(1) }] });
      expect(r2.sampled[0].tokenId).toBe(explicit.sampled[0].tokenId);
      // Nothing sampled for seq 4 in the previous step: a clear error, and the step after it has no previous tokens either.
      await expect(native.step({ seqs: [{ seqId: 4, tokenIds: [0], tokenFromPreviousStep: true, startPos: 0, blockTable: [6], sample: sample(0) }] })).rejects.toThrow(
        /seq 4: tokenFromPreviousStep, but the previous step sampled no token for it/,
      );
      await expect(native.step({ seqs: [{ seqId: 3, tokenIds: [0], tokenFromPreviousStep: true, startPos: 10, blockTable: [5], sample: sample(2) }] })).rejects.toThrow(
        /previous step sampled no token/,
      );
    } finally {
      await native.close();
    }
  });

  it("serves the scheduler's overlapped decode steps with the tokens of sequential ones", async () => {
    const run = async (overlapSteps: boolean) => {
      const native = await NativeEngine.create({ config: m.config, tensors: m.tensors, numKvBlocks: 64, flavor: "cpu" });
      const scheduler = new Scheduler(native, { overlapSteps });
      const events: SeqEvent[][] = [[], [], []];
      const stop = 77; // ends a request if ever sampled; max_tokens ends the others
      const params = [GREEDY, { ...GREEDY, temperature: 0.9, seed: 5, logprobs: 2 }, { ...GREEDY, temperature: 1.1, topP: 0.9, seed: 11 }];
      for (let i = 0; i < 3; i++) {
        scheduler.add({ requestId: `r${i}`, promptTokenIds: prompt(6 + 7 * i, i), params: params[i], maxTokens: 9 + 3 * i, stopTokenIds: [stop] }, (ev) =>
          events[i].push(ev),
        );
      }
      await scheduler.idle();
      const stats = scheduler.stats();
      await native.close();
      return { events, stats };
    };
    const sequential = await run(false);
    const overlapped = await run(true);
    expect(sequential.stats.numOverlappedSteps).toBe(0);
    expect(overlapped.stats.numOverlappedSteps).toBeGreaterThan(5);
    expect(overlapped.stats.kvBlocksUsed).toBe(0);
    expect(overlapped.events).toEqual(sequential.events);
  });

  it("rejects a bad batch with a clear error and refuses steps after close", async () => {
    const native = await NativeEngine.create({ config: m.config, tensors: m.tensors, numKvBlocks: 8, flavor: "cpu" });
    const bad: StepBatch = { seqs: [{ seqId: 1, tokenIds: [1, 2, 3], startPos: 0, blockTable: [8], sample: null }] };
    await expect(native.step(bad)).rejects.toThrow(/block id 8 is outside \[0, 8\)/);
    await expect(native.step(bad)).rejects.toMatchObject({ code: "ENGINE_INVALID_ARGUMENT" });
    await native.close();
    await expect(native.step(bad)).rejects.toThrow(/closed/);
  });

  it("reports loading progress and runs dummy weights of the configured shape", async () => {
    const seen: number[] = [];
    const native = await NativeEngine.create({
      config: m.config,
      tensors: m.tensors,
      numKvBlocks: 8,
      flavor: "cpu",
      onProgress: (p) => seen.push(p.bytesDone / p.bytesTotal),
    });
    await native.close();
    expect(seen.at(-1)).toBe(1);

    const dummy = await NativeEngine.create({ config: m.config, loadFormat: "dummy", dummySeed: 1, numKvBlocks: 8, flavor: "cpu" });
    try {
      const r = await dummy.step({
        seqs: [{ seqId: 5, tokenIds: [128000, 9906], startPos: 0, blockTable: [3], sample: { params: GREEDY, outputIndex: 0 } }],
      });
      expect(r.sampled).toHaveLength(1);
      expect(r.sampled[0].tokenId).toBeGreaterThanOrEqual(0);
      expect(r.sampled[0].tokenId).toBeLessThan(m.config.vocabSize);
    } finally {
      await dummy.close();
    }
  });
});

function totalBf16Bytes(m: Model): number {
  let n = 0;
  for (const t of m.tensors.values()) n += t.byteLength;
  return n;
}
