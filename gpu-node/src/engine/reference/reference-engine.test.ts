import { GREEDY_SAMPLING } from "../sampling.js";
import { describe, expect, it } from "vitest";
import type { LlamaConfig } from "../../model/types.js";
import type { SampleRequest, SeqStep } from "../types.js";
import { ReferenceEngine } from "./reference-engine.js";

// ───────────────────────── test model: config + seeded random weights ─────────────────────────

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function makeConfig(over: Partial<LlamaConfig>): LlamaConfig {
  return {
    architecture: "LlamaForCausalLM",
    hiddenSize: 24,
    intermediateSize: 40,
    numHiddenLayers: 2,
    numAttentionHeads: 3,
    numKeyValueHeads: 1,
    headDim: 8,
    vocabSize: 50,
    rmsNormEps: 1e-5,
    ropeTheta: 100,
    // head_dim 8, theta 100 → wavelengths 6.3, 19.9, 62.8, 199: one kept, two smoothed, one divided
    ropeScaling: { ropeType: "llama3", factor: 4, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 },
    maxPositionEmbeddings: 256,
    tieWordEmbeddings: false,
    bosTokenId: 1,
    eosTokenIds: [2],
    torchDtype: "float32",
    quantization: null,
    ...over,
  };
}

/** Awkward shapes: hidden 24, 3 query heads on 1 KV head, head_dim 8, vocab 50, llama3 rope scaling. */
const CONFIG_A = makeConfig({});
/** hidden 20 ≠ heads·head_dim 24, 4 heads on 2 KV heads, head_dim 6, no rope scaling, tied lm_head. */
const CONFIG_B = makeConfig({
  hiddenSize: 20,
  intermediateSize: 36,
  numHiddenLayers: 3,
  numAttentionHeads: 4,
  numKeyValueHeads: 2,
  headDim: 6,
  vocabSize: 37,
  ropeTheta: 10000,
  ropeScaling: null,
  tieWordEmbeddings: true,
});

function randomWeights(c: LlamaConfig, seed: number): Map<string, Float32Array> {
  const rand = mulberry32(seed);
  const w = new Map<string, Float32Array>();
  const uniform = (n: number, scale: number) => Float32Array.from({ length: n }, () => (rand() * 2 - 1) * scale);
  const norm = (n: number) => Float32Array.from({ length: n }, () => 0.8 + 0.4 * rand());
  const h = c.hiddenSize;
  const q = c.numAttentionHeads * c.headDim;
  const kv = c.numKeyValueHeads * c.headDim;
  const lin = (out: number, inDim: number, gain = 1.7) => uniform(out * inDim, gain / Math.sqrt(inDim));
  w.set("model.embed_tokens.weight", uniform(c.vocabSize * h, 1));
  for (let i = 0; i < c.numHiddenLayers; i++) {
    const p = `model.layers.${i}.`;
    w.set(`${p}input_layernorm.weight`, norm(h));
    // larger q/k gain so attention is far from uniform and position really matters
    w.set(`${p}self_attn.q_proj.weight`, lin(q, h, 4));
    w.set(`${p}self_attn.k_proj.weight`, lin(kv, h, 4));
    w.set(`${p}self_attn.v_proj.weight`, lin(kv, h));
    w.set(`${p}self_attn.o_proj.weight`, lin(h, q));
    w.set(`${p}post_attention_layernorm.weight`, norm(h));
    w.set(`${p}mlp.gate_proj.weight`, lin(c.intermediateSize, h));
    w.set(`${p}mlp.up_proj.weight`, lin(c.intermediateSize, h));
    w.set(`${p}mlp.down_proj.weight`, lin(h, c.intermediateSize));
  }
  w.set("model.norm.weight", norm(h));
  if (!c.tieWordEmbeddings) w.set("lm_head.weight", lin(c.vocabSize, h, 3));
  return w;
}

// ──────────── independent reference: unbatched, unpaged, contiguous KV, float64, every position ────────────

/** HF LlamaForCausalLM on one sequence; returns the logits of every position. */
function plainForward(c: LlamaConfig, W: Map<string, Float32Array>, tokens: number[]): Float64Array[] {
  const H = c.hiddenSize;
  const D = c.headDim;
  const nH = c.numAttentionHeads;
  const nKv = c.numKeyValueHeads;
  const get = (name: string) => {
    const t = W.get(name);
    if (!t) throw new Error(`test weights lack ${name}`);
    return t;
  };
  const matvec = (w: Float32Array, x: Float64Array, out: number): Float64Array => {
    const inDim = x.length;
    const y = new Float64Array(out);
    for (let o = 0; o < out; o++) {
      let s = 0;
      for (let i = 0; i < inDim; i++) s += w[o * inDim + i] * x[i];
      y[o] = s;
    }
    return y;
  };
  const rms = (x: Float64Array, w: Float32Array): Float64Array => {
    let ss = 0;
    for (const v of x) ss += v * v;
    const inv = 1 / Math.sqrt(ss / x.length + c.rmsNormEps);
    return x.map((v, i) => v * inv * w[i]);
  };
  const invFreq: number[] = [];
  for (let i = 0; i < D / 2; i++) {
    let f = 1 / Math.pow(c.ropeTheta, (2 * i) / D);
    const s = c.ropeScaling;
    if (s) {
      const wl = (2 * Math.PI) / f;
      if (wl > s.originalMaxPositionEmbeddings / s.lowFreqFactor) f = f / s.factor;
      else if (wl >= s.originalMaxPositionEmbeddings / s.highFreqFactor) {
        const smooth = (s.originalMaxPositionEmbeddings / wl - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        f = ((1 - smooth) * f) / s.factor + smooth * f;
      }
    }
    invFreq.push(f);
  }
  // rotate_half: out = x·cos + cat(−x2, x1)·sin, cos/sin = cat(freqs, freqs)
  const rope = (x: Float64Array, heads: number, pos: number) => {
    for (let h = 0; h < heads; h++) {
      const head = x.slice(h * D, (h + 1) * D);
      for (let i = 0; i < D; i++) {
        const theta = pos * invFreq[i % (D / 2)];
        const rot = i < D / 2 ? -head[i + D / 2] : head[i - D / 2];
        x[h * D + i] = head[i] * Math.cos(theta) + rot * Math.sin(theta);
      }
    }
  };

  let xs = tokens.map((t) => Float64Array.from(get("model.embed_tokens.weight").subarray(t * H, (t + 1) * H)));
  for (let l = 0; l < c.numHiddenLayers; l++) {
    const p = `model.layers.${l}.`;
    const Ks: Float64Array[] = [];
    const Vs: Float64Array[] = [];
    const Qs: Float64Array[] = [];
    xs.forEach((x, pos) => {
      const h = rms(x, get(`${p}input_layernorm.weight`));
      const q = matvec(get(`${p}self_attn.q_proj.weight`), h, nH * D);
      const k = matvec(get(`${p}self_attn.k_proj.weight`), h, nKv * D);
      rope(q, nH, pos);
      rope(k, nKv, pos);
      Qs.push(q);
      Ks.push(k);
      Vs.push(matvec(get(`${p}self_attn.v_proj.weight`), h, nKv * D));
    });
    xs = xs.map((x, pos) => {
      const attn = new Float64Array(nH * D);
      for (let h = 0; h < nH; h++) {
        const kvh = Math.floor((h * nKv) / nH);
        const scores: number[] = [];
        for (let j = 0; j <= pos; j++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += Qs[pos][h * D + d] * Ks[j][kvh * D + d];
          scores.push(s / Math.sqrt(D));
        }
        const m = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let j = 0; j <= pos; j++) for (let d = 0; d < D; d++) attn[h * D + d] += (e[j] / z) * Vs[j][kvh * D + d];
      }
      const o = matvec(get(`${p}self_attn.o_proj.weight`), attn, H);
      const x1 = x.map((v, i) => v + o[i]);
      const h2 = rms(x1, get(`${p}post_attention_layernorm.weight`));
      const g = matvec(get(`${p}mlp.gate_proj.weight`), h2, c.intermediateSize);
      const u = matvec(get(`${p}mlp.up_proj.weight`), h2, c.intermediateSize);
      const act = g.map((gv, i) => (gv / (1 + Math.exp(-gv))) * u[i]);
      const down = matvec(get(`${p}mlp.down_proj.weight`), act, H);
      return x1.map((v, i) => v + down[i]);
    });
  }
  const lmHead = c.tieWordEmbeddings ? get("model.embed_tokens.weight") : get("lm_head.weight");
  return xs.map((x) => matvec(lmHead, rms(x, get("model.norm.weight")), c.vocabSize));
}

// ───────────────────────────────────────── helpers ─────────────────────────────────────────

const greedy = (outputIndex = 0): SampleRequest => ({
  params: { ...GREEDY_SAMPLING },
  outputIndex,
});

function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

function expectClose(actual: Float32Array | undefined, expected: Float64Array, what: string): void {
  expect(actual, what).toBeDefined();
  const a = actual as Float32Array;
  expect(a.length).toBe(expected.length);
  let scale = 1;
  for (const v of expected) scale = Math.max(scale, Math.abs(v));
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - expected[i]));
  expect(worst / scale, `${what}: max |Δ| ${worst} vs scale ${scale}`).toBeLessThan(1e-4);
}

function randomTokens(n: number, vocab: number, seed: number): number[] {
  const rand = mulberry32(seed);
  return Array.from({ length: n }, () => Math.floor(rand() * vocab));
}

/** Blocks for positions [0, n) from a pool handed out in a shuffled order. */
function blockAllocator(numBlocks: number, seed: number): (count: number) => number[] {
  const rand = mulberry32(seed);
  const pool = Array.from({ length: numBlocks }, (_, i) => i);
  for (let i = pool.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [pool[i], pool[j]] = [pool[j], pool[i]];
  }
  return (count) => {
    if (count > pool.length) throw new Error("test ran out of blocks");
    return pool.splice(0, count);
  };
}

const seqStep = (over: Partial<SeqStep> & Pick<SeqStep, "seqId" | "tokenIds" | "startPos" | "blockTable">): SeqStep => ({
  sample: null,
  ...over,
});

// ────────────────────────────────────────── tests ──────────────────────────────────────────

for (const [name, config] of [
  ["A (24 hidden, 3 heads / 1 KV, llama3 rope)", CONFIG_A],
  ["B (20 hidden, 4 heads / 2 KV, head_dim 6, tied)", CONFIG_B],
] as const) {
  for (const blockSize of [4, 16]) {
    describe(`ReferenceEngine vs plain forward — config ${name}, block size ${blockSize}`, () => {
      const weights = randomWeights(config, 1234);
      const numKvBlocks = 64;
      const blocksFor = (n: number) => Math.ceil(n / blockSize);

      it("(a) whole prompt in one step, then greedy decode", async () => {
        const engine = new ReferenceEngine(config, weights, { numKvBlocks, blockSize });
        const alloc = blockAllocator(numKvBlocks, 1);
        const prompt = randomTokens(11, config.vocabSize, 2);
        const table = alloc(blocksFor(prompt.length + 8));
        const tokens = [...prompt];
        let step = { seqId: 7, tokenIds: prompt, startPos: 0 };
        for (let i = 0; i < 8; i++) {
          const ref = plainForward(config, weights, tokens);
          const { sampled } = await engine.step({ seqs: [{ ...step, blockTable: table, sample: greedy(i), returnLogits: true }] });
          expect(sampled).toHaveLength(1);
          expect(sampled[0].seqId).toBe(7);
          expectClose(sampled[0].logits, ref[tokens.length - 1], `token ${i}`);
          expect(sampled[0].tokenId).toBe(argmax(ref[tokens.length - 1]));
          step = { seqId: 7, tokenIds: [sampled[0].tokenId], startPos: tokens.length };
          tokens.push(sampled[0].tokenId);
        }
        await engine.close();
      });

      it("(b) prompt in uneven prefill chunks across steps", async () => {
        const engine = new ReferenceEngine(config, weights, { numKvBlocks, blockSize });
        const prompt = randomTokens(23, config.vocabSize, 3);
        const table = blockAllocator(numKvBlocks, 4)(blocksFor(prompt.length));
        const ref = plainForward(config, weights, prompt);
        let pos = 0;
        for (const len of [3, 1, 6, 2, 5, 6]) {
          const last = pos + len === prompt.length;
          const { sampled } = await engine.step({
            seqs: [
              seqStep({
                seqId: 1,
                tokenIds: prompt.slice(pos, pos + len),
                startPos: pos,
                // a chunk's table only needs to cover what it computes
                blockTable: table.slice(0, blocksFor(pos + len)),
                sample: last ? greedy() : null,
                returnLogits: true,
              }),
            ],
          });
          pos += len;
          expectClose(sampled[0].logits, ref[pos - 1], `chunk ending at ${pos}`);
          expect(sampled[0].tokenId).toBe(last ? argmax(ref[pos - 1]) : -1);
        }
        expect(pos).toBe(prompt.length);
      });

      it("(c) batched prefill chunks mixed with decodes of different lengths", async () => {
        const engine = new ReferenceEngine(config, weights, { numKvBlocks, blockSize });
        const alloc = blockAllocator(numKvBlocks, 5);
        const seqs = [
          { id: 10, tokens: randomTokens(9, config.vocabSize, 6) },
          { id: 11, tokens: randomTokens(3, config.vocabSize, 7) },
          { id: 12, tokens: randomTokens(17, config.vocabSize, 8) },
        ].map((s) => ({ ...s, done: 0, table: alloc(blocksFor(s.tokens.length + 6)) }));

        // step 1: first two prompts whole, third only a chunk
        // step 2+: 10 and 11 decode while 12 finishes its prompt in two more chunks, then all decode
        const chunkPlan = [[9, 3, 5], [1, 1, 7], [1, 1, 5], [1, 1, 1], [1, 1, 1]];
        for (const plan of chunkPlan) {
          const batch: SeqStep[] = seqs.map((s, i) => {
            const n = plan[i];
            const ids = s.tokens.slice(s.done, s.done + n);
            const reachesEnd = s.done + n === s.tokens.length;
            return seqStep({ seqId: s.id, tokenIds: ids, startPos: s.done, blockTable: s.table, sample: reachesEnd ? greedy() : null, returnLogits: true });
          });
          const { sampled } = await engine.step({ seqs: batch });
          expect(sampled.map((x) => x.seqId)).toEqual([10, 11, 12]);
          seqs.forEach((s, i) => {
            s.done += plan[i];
            const ref = plainForward(config, weights, s.tokens.slice(0, s.done));
            expectClose(sampled[i].logits, ref[s.done - 1], `seq ${s.id} at ${s.done}`);
            if (s.done === s.tokens.length) {
              expect(sampled[i].tokenId).toBe(argmax(ref[s.done - 1]));
              s.tokens.push(sampled[i].tokenId); // decode it next step
            }
          });
        }
      });

      it("(d) non-contiguous, shuffled block ids (and a longer table than needed)", async () => {
        const engine = new ReferenceEngine(config, weights, { numKvBlocks, blockSize });
        const prompt = randomTokens(19, config.vocabSize, 9);
        const n = blocksFor(prompt.length);
        const table = Array.from({ length: n + 2 }, (_, i) => numKvBlocks - 1 - 3 * i); // 63, 60, 57, …
        const ref = plainForward(config, weights, prompt);
        const first = await engine.step({ seqs: [seqStep({ seqId: 1, tokenIds: prompt.slice(0, 10), startPos: 0, blockTable: table })] });
        expect(first.sampled).toEqual([]);
        const { sampled } = await engine.step({
          seqs: [seqStep({ seqId: 1, tokenIds: prompt.slice(10), startPos: 10, blockTable: table, sample: greedy(), returnLogits: true })],
        });
        expectClose(sampled[0].logits, ref[prompt.length - 1], "shuffled blocks");
      });

      it("(e) a second sequence reuses the first one's prefix blocks", async () => {
        const engine = new ReferenceEngine(config, weights, { numKvBlocks, blockSize });
        const alloc = blockAllocator(numKvBlocks, 10);
        const sharedLen = 2 * blockSize; // only full blocks are shared
        const prefix = randomTokens(sharedLen, config.vocabSize, 11);
        const a = [...prefix, ...randomTokens(5, config.vocabSize, 12)];
        const b = [...prefix, ...randomTokens(7, config.vocabSize, 13)];
        const c = [...prefix, ...randomTokens(3, config.vocabSize, 14)];
        const tableA = alloc(blocksFor(a.length));
        const shared = tableA.slice(0, 2);
        const tableB = [...shared, ...alloc(blocksFor(b.length) - 2)];
        const tableC = [...shared, ...alloc(blocksFor(c.length) - 2)];

        await engine.step({ seqs: [seqStep({ seqId: 1, tokenIds: a, startPos: 0, blockTable: tableA, sample: greedy() })] });
        // B in a later step, only its suffix computed
        const rb = await engine.step({
          seqs: [seqStep({ seqId: 2, tokenIds: b.slice(sharedLen), startPos: sharedLen, blockTable: tableB, sample: greedy(), returnLogits: true })],
        });
        const refB = plainForward(config, weights, b);
        expectClose(rb.sampled[0].logits, refB[b.length - 1], "prefix-cached seq B");
        expect(rb.sampled[0].tokenId).toBe(argmax(refB[b.length - 1]));

        // C in the same step as a decode of A (A's last tokens must not leak into C)
        const rc = await engine.step({
          seqs: [
            seqStep({ seqId: 1, tokenIds: [3], startPos: a.length, blockTable: [...tableA, ...alloc(1)], sample: greedy(1), returnLogits: true }),
            seqStep({ seqId: 3, tokenIds: c.slice(sharedLen), startPos: sharedLen, blockTable: tableC, sample: greedy(), returnLogits: true }),
          ],
        });
        expectClose(rc.sampled[0].logits, plainForward(config, weights, [...a, 3])[a.length], "A decode");
        const refC = plainForward(config, weights, c);
        expectClose(rc.sampled[1].logits, refC[c.length - 1], "prefix-cached seq C");
      });

      it("(e') the sharer may run in the same step that fills the shared blocks", async () => {
        const engine = new ReferenceEngine(config, weights, { numKvBlocks, blockSize });
        const alloc = blockAllocator(numKvBlocks, 15);
        const prefix = randomTokens(blockSize, config.vocabSize, 16);
        const a = [...prefix, 5, 6];
        const b = [...prefix, 7, 8, 9];
        const tableA = alloc(blocksFor(a.length));
        const tableB = [tableA[0], ...alloc(blocksFor(b.length) - 1)];
        const { sampled } = await engine.step({
          seqs: [
            seqStep({ seqId: 1, tokenIds: a, startPos: 0, blockTable: tableA, sample: greedy(), returnLogits: true }),
            seqStep({ seqId: 2, tokenIds: b.slice(blockSize), startPos: blockSize, blockTable: tableB, sample: greedy(), returnLogits: true }),
          ],
        });
        expectClose(sampled[0].logits, plainForward(config, weights, a)[a.length - 1], "A");
        expectClose(sampled[1].logits, plainForward(config, weights, b)[b.length - 1], "B");
      });
    });
  }
}

describe("ReferenceEngine checks", () => {
  const config = CONFIG_A;
  const weights = randomWeights(config, 99);
  const engine = new ReferenceEngine(config, weights, { numKvBlocks: 8, blockSize: 4 });
  const base = { seqId: 1, tokenIds: [1, 2, 3, 4, 5], startPos: 0, blockTable: [0, 1], sample: null };

  it("defaults blockSize to 16 and reports its kind", () => {
    const e = new ReferenceEngine(config, weights, { numKvBlocks: 2 });
    expect(e.blockSize).toBe(16);
    expect(e.numKvBlocks).toBe(2);
    expect(e.kind).toBe("reference");
  });

  it.each([
    ["block table too short", { blockTable: [0] }, /block table has 1 blocks/],
    ["block id out of range", { blockTable: [0, 8] }, /block id 8 is outside \[0, 8\)/],
    ["negative block id", { blockTable: [-1, 0] }, /block id -1/],
    ["token outside vocab", { tokenIds: [1, 50] }, /token id 50 is outside the vocabulary/],
    ["non-integer token", { tokenIds: [1.5] }, /token id 1.5/],
    ["empty tokens", { tokenIds: [] }, /tokenIds is empty/],
    ["negative startPos", { startPos: -1 }, /startPos/],
  ])("rejects %s", async (_, over, message) => {
    await expect(engine.step({ seqs: [{ ...base, ...over }] })).rejects.toThrow(message);
  });

  it("rejects duplicate seqIds and two tokens writing one KV slot", async () => {
    await expect(engine.step({ seqs: [base, { ...base, blockTable: [2, 3] }] })).rejects.toThrow(/appears twice/);
    await expect(engine.step({ seqs: [base, { ...base, seqId: 2, blockTable: [1, 2] }] })).rejects.toThrow(/writes KV slot/);
  });

  it("rejects bad sampling params before computing anything", async () => {
    const bad = { ...greedy(), params: { ...greedy().params, topP: 0 } };
    await expect(engine.step({ seqs: [{ ...base, sample: bad }] })).rejects.toThrow(/topP/);
  });

  it("rejects weights that do not match the config, naming them", () => {
    const w = new Map(weights);
    w.delete("model.layers.1.mlp.up_proj.weight");
    w.set("model.norm.weight", new Float32Array(3));
    expect(() => new ReferenceEngine(config, w, { numKvBlocks: 4 })).toThrow(/missing model.layers.1.mlp.up_proj.weight[\s\S]*model.norm.weight has 3 values/);
  });

  it("throws after close", async () => {
    const e = new ReferenceEngine(config, weights, { numKvBlocks: 4, blockSize: 4 });
    await e.close();
    await expect(e.step({ seqs: [] })).rejects.toThrow(/closed/);
  });
});
