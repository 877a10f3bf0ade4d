import { describe, expect, it } from "vitest";
import { MiB, formatMemoryPlan, memoryPlanError, memoryPlanJson, planMemory, type PlanModelShape } from "./memory-plan.js";

/** Llama-3.1-70B (Nemotron-70B-Instruct has the same shape). */
const L70B: PlanModelShape = {
  hiddenSize: 8192,
  intermediateSize: 28672,
  numHiddenLayers: 80,
  numAttentionHeads: 64,
  numKeyValueHeads: 8,
  headDim: 128,
  vocabSize: 128256,
  tieWordEmbeddings: false,
  maxPositionEmbeddings: 131072,
};

// Total memory as nvidia-smi reports it: H100 80GB HBM3 81559 MiB, H200 143771 MiB.
const H100 = 81559 * MiB; // 85,520,809,984
const H200 = 143771 * MiB; // 150,754,820,096

// Hand-computed, per layer [out, in]: q 8192×8192, k 1024×8192, v 1024×8192, o 8192×8192,
// gate/up 28672×8192, down 8192×28672 → 855,638,016 weights; × 80 layers = 68,451,041,280.
const LINEAR_BF16 = 136_902_082_560; // × 2 bytes
// fp8: 1 byte per weight + float32 per output row (8192+1024+1024+8192+28672+28672+8192 = 83,968 rows × 80 × 4 = 26,869,760).
const LINEAR_FP8 = 68_477_911_040;
// AWQ g128: weights/2 = 34,225,520,640; groups×out per layer = 64·8192 + 2·64·1024 + 64·8192 + 2·64·28672 + 224·8192
// = 6,684,672, × 80 = 534,773,760; zeros at 4 bits = 267,386,880; fp16 scales = 1,069,547,520.
const LINEAR_AWQ = 35_562_455_040;
const TABLE = 2_101_346_304; // 128256 × 8192 × 2, embedding and lm_head each
const NORMS = 5_275_648; // (2·80 + 1) × 8192 × 4
// 8192 batched tokens, 256 sequences, 131072 context: residual 268,435,456 + normed/output 268,435,456
// + q/attn 268,435,456 + SwiGLU 469,762,048 + last hidden 4,194,304 + logits/scratch 262,668,288
// + split-K partials 256·64·64·130·4 = 545,259,520 + row ints 163,840 + out ints 3,072
// + block tables 256·8192·4 = 8,388,608 + penalties 16,777,216 + params 16,384 + top logprobs 40,960.
const WORKSPACE = 2_112_580_608;
// AWQ layers add the W4 GEMV scratch: 64 rows × max(10,240, 57,344, 8,192) floats = 14,680,064, and
// 4 splits × 64 rows × 28,672 floats = 29,360,128 (+ 4 bytes of slack).
const WORKSPACE_AWQ = WORKSPACE + 14_680_064 + 29_360_132;
const GRAPHS = 536_870_912;

describe("planMemory: Llama-3.1-70B", () => {
  it("AWQ int4 with an FP8 KV cache on an 80 GB H100 meets the targets (weights ≤ 40 GB, ≥ 190k KV tokens)", () => {
    const p = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "awq-int4", kvCacheDtype: "fp8" });
    expect(p.weights).toEqual({ linear: LINEAR_AWQ, embedding: TABLE, lmHead: TABLE, norms: NORMS, total: 39_770_423_296 });
    expect(p.weights.total).toBeLessThanOrEqual(40e9);
    expect(p.workspace).toBe(WORKSPACE_AWQ);
    expect(p.cudaGraphs).toBe(GRAPHS);
    expect(p.budget).toBe(76_968_728_985); // floor(0.9 × 85,520,809,984)
    // KV per token: 80 layers × 2 × 8 heads × 128 × 1 byte = 163,840; left 76,968,728,985 − 39,770,423,296
    // − 2,156,620,804 − 536,870,912 = 34,504,813,973 → 13,162 blocks of 16.
    expect(p.kvBytesPerToken).toBe(163_840);
    expect(p.kvBlocks).toBe(13_162);
    expect(p.kvTokens).toBe(210_592);
    expect(p.kvTokens).toBeGreaterThanOrEqual(190_000);
    expect(p.kvCache).toBe(13_162 * 16 * 163_840);
    expect(p.sequencesAt).toEqual({ "2048": 102, "8192": 25, "32768": 6 });
    expect(Math.floor(p.kvBlocks / Math.ceil(3072 / 16))).toBeGreaterThanOrEqual(64); // 64 users × 3k
    expect(p.maxModelLen).toBe(131_072);
    expect(p.fits).toBe(true);
    expect(memoryPlanError(p)).toBeNull();
  });

  it("AWQ with a bf16 KV cache holds half the tokens", () => {
    const p = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "awq-int4", kvCacheDtype: "bf16" });
    expect(p.kvBytesPerToken).toBe(327_680);
    expect(p.kvBlocks).toBe(6_581);
    expect(p.kvTokens).toBe(105_296);
    expect(p.sequencesAt).toEqual({ "2048": 51, "8192": 12, "32768": 3 });
  });

  it("FP8 on an 80 GB H100: about 10k FP8 KV tokens at the default utilization, 41k at 0.96", () => {
    const p = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8" });
    expect(p.weights).toEqual({ linear: LINEAR_FP8, embedding: TABLE, lmHead: TABLE, norms: NORMS, total: 72_685_879_296 });
    // 76,968,728,985 − 72,685,879,296 − 2,112,580,608 − 536,870,912 = 1,633,398,169 → 623 blocks.
    expect(p.kvBlocks).toBe(623);
    expect(p.kvTokens).toBe(9_968);
    expect(p.maxModelLen).toBe(9_968);
    expect(p.fits).toBe(true);
    // The 40k-token target needs more of the card: floor(0.96 × 85,520,809,984) = 82,099,977,584 → 6,764,646,768 left.
    const q = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", gpuMemoryUtilization: 0.96 });
    expect(q.kvTokens).toBe(41_280);
    expect(q.kvTokens).toBeGreaterThanOrEqual(40_000);
  });

  it("on a 141 GB H200: FP8 weights leave room for 368k FP8 KV tokens, AWQ for 568k", () => {
    const budget = Math.floor(0.9 * H200);
    expect(budget).toBe(135_679_338_086);
    const fp8 = planMemory({ model: L70B, deviceMemoryBytes: H200, weights: "fp8", kvCacheDtype: "fp8" });
    // 135,679,338,086 − 72,685,879,296 − 2,112,580,608 − 536,870,912 = 60,344,007,270 → 23,019 blocks.
    expect(fp8.kvBlocks).toBe(23_019);
    expect(fp8.kvTokens).toBe(368_304);
    expect(fp8.sequencesAt).toEqual({ "2048": 179, "8192": 44, "32768": 11 });
    const awq = planMemory({ model: L70B, deviceMemoryBytes: H200, weights: "awq-int4", kvCacheDtype: "fp8" });
    expect(awq.kvBlocks).toBe(35_558);
    expect(awq.kvTokens).toBe(568_928);
    const fp8bf16 = planMemory({ model: L70B, deviceMemoryBytes: H200, weights: "fp8", kvCacheDtype: "bf16" });
    expect(fp8bf16.kvTokens).toBe(184_144);
  });

  it("bf16 weights do not fit one 80 GB card: one line names what would", () => {
    const p = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "bf16", kvCacheDtype: "bf16" });
    expect(p.weights.total).toBe(LINEAR_BF16 + 2 * TABLE + NORMS);
    expect(p.fits).toBe(false);
    expect(p.kvTokens).toBe(0);
    const err = memoryPlanError(p)!;
    expect(err).not.toContain("\n");
    expect(err).toMatch(/^the model does not fit: weights 141\.11 GB .* leave no room for a KV cache in 76\.97 GB/);
    expect(err).toContain("--quantization fp8 (4,976 KV tokens)");
    expect(err).not.toContain("--max-model-len");
  });

  it("a context longer than the cache holds fails with the flags that would fit", () => {
    const p = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "bf16", maxModelLen: 32768 });
    // Block tables for 32k contexts are 6,291,456 bytes smaller than for 131k: workspace 2,106,289,152,
    // left 1,639,689,625 → 312 blocks.
    expect(p.workspace).toBe(2_106_289_152);
    expect(p.kvTokens).toBe(4_992);
    expect(p.fits).toBe(false);
    const err = memoryPlanError(p)!;
    expect(err).toMatch(/^the model does not fit: the KV cache holds 4,992 tokens, fewer than --max-model-len 32,768/);
    expect(err).toContain("--max-model-len 4992");
    expect(err).not.toContain("--kv-cache-dtype fp8"); // 10,000 tokens is still short of 32k
    // fixed 75,329,039,360 + 32,768 × 327,680 = 86,066,659,840 > the whole card: no utilization helps.
    expect(err).not.toContain("--gpu-memory-utilization");
    const q = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "bf16", maxModelLen: 8192 });
    const err2 = memoryPlanError(q)!;
    expect(err2).toContain("--kv-cache-dtype fp8 (10,016 KV tokens)");
    // (72,685,879,296 + 2,104,716,288 + 536,870,912 + 8192 × 327,680) / 85,520,809,984 = 0.9122… → 0.92
    expect(err2).toContain("--gpu-memory-utilization 0.92");
    expect(planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "bf16", maxModelLen: 8192, gpuMemoryUtilization: 0.92 }).fits).toBe(true);
  });

  it("prints four lines and serves bytes in /health's shape", () => {
    const p = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "awq-int4", kvCacheDtype: "fp8" });
    const lines = formatMemoryPlan(p);
    expect(lines).toHaveLength(4);
    expect(lines[0]).toBe("memory plan: 85.52 GB device × 0.9 = 76.97 GB");
    expect(lines[1]).toContain("weights 39.77 GB (linear int4 AWQ 35.56 GB, embedding 2.10 GB, lm_head 2.10 GB");
    expect(lines[3]).toContain("210,592 tokens (13,162 blocks of 16); sequences that fit: 102 × 2k, 25 × 8k, 6 × 32k");
    const j = memoryPlanJson(p);
    expect(j).toMatchObject({ kv_tokens: 210_592, kv_cache_dtype: "fp8", weights_format: "awq-int4", sequences_that_fit: { "2048": 102 } });
    expect((j.weights_bytes as { total: number }).total).toBe(39_770_423_296);
  });

  it("rejects nonsense inputs", () => {
    expect(() => planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", gpuMemoryUtilization: 1.5 })).toThrow(/gpuMemoryUtilization/);
    expect(() => planMemory({ model: L70B, deviceMemoryBytes: 0, weights: "fp8", kvCacheDtype: "fp8" })).toThrow(/deviceMemoryBytes/);
    expect(() => planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", maxModelLen: 0 })).toThrow(/maxModelLen/);
  });
});
