import { describe, expect, it } from "vitest";
import { MiB, formatMemoryPlan, maxAttentionRowSplits, memoryPlanError, memoryPlanJson, planMemory, type PlanModelShape } from "./memory-plan.js";

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

// Total memory as cudaMemGetInfo reports it (= cudaDeviceProp.totalGlobalMem, what the node plans
// with), which is a few hundred MiB under nvidia-smi's figure (H100 81,559 MiB, H200 143,771 MiB):
// torch.cuda.get_device_properties prints total_memory=81089MB for an "NVIDIA H100 80GB HBM3" and
// 143156MB for an "NVIDIA H200"; vLLM's memory profile logs total_gpu_memory 79.11–79.25 GiB on
// 80 GB H100s (vllm-project/vllm#10511) and 139.81 GiB on an H200; an "NVIDIA A100 80GB PCIe"
// reports total_memory=85093777408 bytes. The exact figure moves by a few MiB with the driver.
const H100 = 81089 * MiB; // 85,027,979,264
const H200 = 143156 * MiB; // 150,109,945,856
const A100 = 85_093_777_408;

// Hand-computed, per layer [out, in]: q 8192×8192, k 1024×8192, v 1024×8192, o 8192×8192,
// gate/up 28672×8192, down 8192×28672 → 855,638,016 weights; × 80 layers = 68,451,041,280.
const LINEAR_BF16 = 136_902_082_560; // × 2 bytes
// fp8: 1 byte per weight + float32 per output row (8192+1024+1024+8192+28672+28672+8192 = 83,968 rows × 80 × 4 = 26,869,760).
const LINEAR_FP8 = 68_477_911_040;
// AWQ g128: weights/2 = 34,225,520,640; groups×out per layer = 64·8192 + 2·64·1024 + 64·8192 + 2·64·28672 + 224·8192
// = 6,684,672, × 80 = 534,773,760; zeros at 4 bits = 267,386,880; fp16 scales = 1,069,547,520.
const LINEAR_AWQ = 35_562_455_040;
const TABLE = 2_101_346_304; // 128256 × 8192 × 2, embedding and lm_head each
// lm_head in e4m3 with a float32 scale per vocab row: 1,050,673,152 + 513,024.
const LM_HEAD_FP8 = 1_051_186_176;
const NORMS = 5_275_648; // (2·80 + 1) × 8192 × 4
// The scheduler's defaults: 2048 batched tokens, 256 sequences; 131072 context.
// Per batched token: residual 8192×4 + normed/output 2·8192×2 + q/attn 2·8192×2 + SwiGLU 28672×2
// + 5 row ints ×4 = 155,668 → 318,808,064. Per sampled sequence and fixed: last hidden 4,194,304
// + logits/scratch 2·256·128256·4 = 262,668,288 + split-K partials 98·64·130·4 = 3,261,440 (the split
// rule on 132 SMs with 8 KV heads: ceil(396 / 8·rows) splits, so at most 49 rows × 2 splits; rows ≥ 50
// run unsplit) + out ints 3,072 + block tables 256·8192·4 = 8,388,608 + penalties 16,777,216
// + params 16,384 + top logprobs 40,960 = 295,350,272.
// The fused residual add + RMSNorm's partial sums 2048 × 512 × 4 = 4,194,304 and the o_proj / down_proj
// split-K workspace 128 × (4 × 128 × 32 × 4 + 4) = 8,389,120 add 12,583,424.
const WORKSPACE = 626_741_760;
// AWQ layers add the W4 GEMV scratch: 64 rows × max(10,240, 57,344, 8,192) floats = 14,680,064, and
// 4 splits × 64 rows × 28,672 floats = 29,360,128 (+ 4 bytes of slack).
const WORKSPACE_AWQ = WORKSPACE + 14_680_064 + 29_360_132;
const GRAPHS = 536_870_912;

describe("maxAttentionRowSplits: the split-K workspace the split rule needs", () => {
  it("is 49 rows × 2 splits for the 70B on 132 SMs, 40 × 2 on an A100's 108, and grows only with the rule", () => {
    expect(maxAttentionRowSplits(256, 8, 132)).toBe(98);
    expect(maxAttentionRowSplits(256, 8, 108)).toBe(80); // ceil(324 / 8·rows): 40 rows × 2 splits
    // One KV head on 132 SMs: ceil(396 / rows) splits, capped at 64; the most is 197 rows × 3 = 591
    // (rows × splits < 396 + rows, and splits > 1 needs rows < 396).
    expect(maxAttentionRowSplits(256, 1, 132)).toBe(591);
    // A batch limit below the rule's own maximum caps it: 16 rows × ceil(49.5 / 16) = 64.
    expect(maxAttentionRowSplits(16, 8, 132)).toBe(64);
    expect(maxAttentionRowSplits(1, 8, 132)).toBe(50); // batch 1: 50 splits
    expect(maxAttentionRowSplits(4, 128, 1)).toBe(0); // never splits: no workspace
  });
});

describe("planMemory: Llama-3.1-70B", () => {
  it("AWQ int4 with an FP8 KV cache on an 80 GB H100 meets the targets (weights ≤ 40 GB, ≥ 190k KV tokens)", () => {
    const p = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "awq-int4", kvCacheDtype: "fp8" });
    // Defaults: the embedding table in host memory, lm_head bf16, the scheduler's step limits.
    expect(p.input).toMatchObject({ embeddingDevice: "host", lmHeadDtype: "auto", maxNumBatchedTokens: 2048, maxNumSeqs: 256 });
    expect(p.weights).toEqual({ linear: LINEAR_AWQ, embedding: 0, lmHead: TABLE, norms: NORMS, total: 37_669_076_992 });
    expect(p.weights.total).toBeLessThanOrEqual(40e9);
    expect(p.workspace).toBe(WORKSPACE_AWQ);
    expect(p.cudaGraphs).toBe(GRAPHS);
    expect(p.budget).toBe(76_525_181_337); // floor(0.9 × 85,027,979,264)
    // KV per token: 80 layers × 2 × 8 heads × 128 × 1 byte = 163,840; left 76,525,181,337 − 37,669,076,992
    // − 670,781,956 − 536,870,912 = 37,648,451,477 → 14,361 blocks of 16.
    expect(p.kvBytesPerToken).toBe(163_840);
    expect(p.kvBlocks).toBe(14_361);
    expect(p.kvTokens).toBe(229_776);
    expect(p.kvTokens).toBeGreaterThanOrEqual(190_000);
    expect(p.kvCache).toBe(14_361 * 16 * 163_840);
    expect(p.sequencesAt).toEqual({ "2048": 112, "8192": 28, "32768": 7 });
    expect(Math.floor(p.kvBlocks / Math.ceil(3072 / 16))).toBe(74); // ≥ 64 users × 3k
    expect(p.maxModelLen).toBe(131_072);
    expect(p.fits).toBe(true);
    expect(memoryPlanError(p)).toBeNull();
    // With the table on the device as well: 39,770,423,296 of weights, 13,560 blocks.
    const gpu = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "awq-int4", kvCacheDtype: "fp8", embeddingDevice: "gpu" });
    expect(gpu.weights.total).toBe(39_770_423_296);
    expect(gpu.kvTokens).toBe(216_960);
    // An A100 80GB PCIe (85,093,777,408 bytes, 108 SMs: 80 row-splits, 599,040 bytes less of partials):
    // budget 76,584,399,667, left 37,708,268,847 → 14,384 blocks.
    const a100 = planMemory({ model: L70B, deviceMemoryBytes: A100, weights: "awq-int4", kvCacheDtype: "fp8", multiprocessors: 108 });
    expect(a100.workspace).toBe(WORKSPACE_AWQ - 599_040);
    expect(a100.kvTokens).toBe(230_144);
  });

  it("AWQ with a bf16 KV cache holds half the tokens", () => {
    const p = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "awq-int4", kvCacheDtype: "bf16" });
    expect(p.kvBytesPerToken).toBe(327_680);
    expect(p.kvBlocks).toBe(7_180);
    expect(p.kvTokens).toBe(114_880);
    expect(p.sequencesAt).toEqual({ "2048": 56, "8192": 14, "32768": 3 });
  });

  it("FP8 on an 80 GB H100: 29k FP8 KV tokens with the table in host memory, 35.6k with an FP8 lm_head; 40k needs 0.91 of the card", () => {
    // Every table on the device: 1,020 blocks.
    const before = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", embeddingDevice: "gpu" });
    expect(before.weights).toEqual({ linear: LINEAR_FP8, embedding: TABLE, lmHead: TABLE, norms: NORMS, total: 72_685_879_296 });
    // 76,525,181,337 − 72,685,879,296 − 626,741,760 − 536,870,912 = 2,675,689,369 → 1,020 blocks.
    expect(before.workspace).toBe(WORKSPACE);
    expect(before.kvTokens).toBe(16_320);

    const p = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8" });
    expect(p.weights).toEqual({ linear: LINEAR_FP8, embedding: 0, lmHead: TABLE, norms: NORMS, total: 70_584_532_992 });
    // + the table's 2,101,346,304 bytes: 4,777,035,673 → 1,822 blocks.
    expect(p.kvBlocks).toBe(1_822);
    expect(p.kvTokens).toBe(29_152);
    expect(p.maxModelLen).toBe(29_152);
    expect(p.fits).toBe(true);

    const lm = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", lmHeadDtype: "fp8" });
    expect(lm.weights).toEqual({ linear: LINEAR_FP8, embedding: 0, lmHead: LM_HEAD_FP8, norms: NORMS, total: 69_534_372_864 });
    // + 1,050,160,128 bytes: 5,827,195,801 → 2,222 blocks: short of the 40k target at 0.9.
    expect(lm.kvBlocks).toBe(2_222);
    expect(lm.kvTokens).toBe(35_552);
    expect(lm.kvTokens).toBeLessThan(40_000);
    expect(lm.sequencesAt).toEqual({ "2048": 17, "8192": 4, "32768": 1 });
    // 40,000 tokens = 2,500 blocks: 69,534,372,864 + 626,741,760 + 536,870,912 + 6,553,600,000
    // = 77,251,585,536 = 0.9085 of the card.
    const u91 = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", lmHeadDtype: "fp8", gpuMemoryUtilization: 0.91 });
    expect(u91.kvTokens).toBe(40_752); // floor(0.91 × 85,027,979,264) = 77,375,461,130 → 2,547 blocks
    expect(u91.kvTokens).toBeGreaterThanOrEqual(40_000);
  });

  it("on a 141 GB H200: FP8 weights leave room for 386k FP8 KV tokens, AWQ for 587k", () => {
    const budget = Math.floor(0.9 * H200);
    expect(budget).toBe(135_098_951_270);
    const fp8 = planMemory({ model: L70B, deviceMemoryBytes: H200, weights: "fp8", kvCacheDtype: "fp8" });
    // 135,098,951,270 − 70,584,532,992 − 626,741,760 − 536,870,912 = 63,350,805,606 → 24,166 blocks.
    expect(fp8.kvBlocks).toBe(24_166);
    expect(fp8.kvTokens).toBe(386_656);
    expect(fp8.sequencesAt).toEqual({ "2048": 188, "8192": 47, "32768": 11 });
    const fp8lm = planMemory({ model: L70B, deviceMemoryBytes: H200, weights: "fp8", kvCacheDtype: "fp8", lmHeadDtype: "fp8" });
    expect(fp8lm.kvTokens).toBe(393_072); // + 1,050,160,128 bytes → 24,567 blocks
    const awq = planMemory({ model: L70B, deviceMemoryBytes: H200, weights: "awq-int4", kvCacheDtype: "fp8" });
    // 135,098,951,270 − 37,669,076,992 − 670,781,956 − 536,870,912 = 96,222,221,410 → 36,705 blocks.
    expect(awq.kvBlocks).toBe(36_705);
    expect(awq.kvTokens).toBe(587_280);
    const fp8bf16 = planMemory({ model: L70B, deviceMemoryBytes: H200, weights: "fp8", kvCacheDtype: "bf16" });
    expect(fp8bf16.kvTokens).toBe(193_328);
  });

  it("tied embeddings: a bf16 lm_head is the device table the embedding reads; an FP8 one is its own copy", () => {
    const tied = { ...L70B, tieWordEmbeddings: true };
    const host = planMemory({ model: tied, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8" });
    expect([host.weights.embedding, host.weights.lmHead]).toEqual([0, TABLE]);
    const gpu = planMemory({ model: tied, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", embeddingDevice: "gpu" });
    expect([gpu.weights.embedding, gpu.weights.lmHead]).toEqual([TABLE, 0]);
    expect(formatMemoryPlan(host)[1]).toContain("embedding shared with lm_head, lm_head bf16 2.10 GB");
    const fp8 = planMemory({ model: tied, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", lmHeadDtype: "fp8" });
    expect([fp8.weights.embedding, fp8.weights.lmHead]).toEqual([0, LM_HEAD_FP8]);
    expect(formatMemoryPlan(fp8)[1]).toContain("embedding in host memory (2.10 GB), lm_head fp8 1.05 GB");
  });

  it("bf16 weights do not fit one 80 GB card: one line names what would", () => {
    const p = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "bf16", kvCacheDtype: "bf16" });
    expect(p.weights.total).toBe(LINEAR_BF16 + TABLE + NORMS);
    expect(p.fits).toBe(false);
    expect(p.kvTokens).toBe(0);
    const err = memoryPlanError(p)!;
    expect(err).not.toContain("\n");
    expect(err).toMatch(/^the model does not fit: weights 139\.01 GB .* leave no room for a KV cache in 76\.53 GB/);
    expect(err).toContain("--quantization fp8 (14,576 KV tokens)");
    expect(err).not.toContain("--max-model-len");
    expect(err).not.toContain("--lm-head-dtype"); // 1 GB does not make 137 GB of linear weights fit
  });

  it("a context longer than the cache holds fails with the flags that would fit", () => {
    const p = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "bf16", maxModelLen: 32768 });
    // Block tables for 32k contexts are 6,291,456 bytes smaller than for 131k: workspace 620,450,304,
    // left 4,783,327,129 → 912 blocks.
    expect(p.workspace).toBe(620_450_304);
    expect(p.kvTokens).toBe(14_592);
    expect(p.fits).toBe(false);
    const err = memoryPlanError(p)!;
    expect(err).toMatch(/^the model does not fit: the KV cache holds 14,592 tokens, fewer than --max-model-len 32,768/);
    expect(err).toContain("--max-model-len 14592");
    expect(err).not.toContain("--kv-cache-dtype fp8"); // 29,184 tokens is still short of 32k
    expect(err).not.toContain("--lm-head-dtype fp8"); // 17,792
    // fixed 71,741,854,208 + 32,768 × 327,680 = 82,479,272,448 = 0.9700 of the card.
    expect(err).toContain("--gpu-memory-utilization 0.98");

    const q = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "bf16", maxModelLen: 16384 });
    const err2 = memoryPlanError(q)!;
    expect(q.kvTokens).toBe(14_592);
    expect(err2).toContain("--kv-cache-dtype fp8 (29,200 KV tokens)");
    expect(err2).toContain("--lm-head-dtype fp8 (17,792 KV tokens)");
    // (70,584,532,992 + 619,401,728 + 536,870,912 + 16,384 × 327,680) / 85,027,979,264 = 0.9069 → 0.91
    expect(err2).toContain("--gpu-memory-utilization 0.91");
    expect(planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "bf16", maxModelLen: 16384, gpuMemoryUtilization: 0.92 }).kvTokens).toBe(19_776);
  });

  it("the fail-fast line names --lm-head-dtype fp8 and --embedding-device host when they make it fit", () => {
    // FP8 KV, 32k context: 1,824 blocks = 29,184 tokens; an FP8 lm_head frees 1,050,160,128 bytes → 2,225 blocks.
    const p = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", maxModelLen: 32768 });
    expect(p.kvTokens).toBe(29_184);
    const err = memoryPlanError(p)!;
    expect(err).toContain("--lm-head-dtype fp8 (35,600 KV tokens)");
    expect(err).not.toContain("--embedding-device");
    expect(err).toContain("--max-model-len 29184");
    // (70,584,532,992 + 620,450,304 + 536,870,912 + 32,768 × 163,840) / 85,027,979,264 = 0.9069 → 0.91
    expect(err).toContain("--gpu-memory-utilization 0.91");
    // The table on the device leaves 2,682,767,257 bytes (1,023 blocks) for a 20k context; in host memory 1,824.
    const q = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", maxModelLen: 20480, embeddingDevice: "gpu" });
    expect(q.kvTokens).toBe(16_368);
    const err2 = memoryPlanError(q)!;
    expect(err2).toContain("--embedding-device host (29,184 KV tokens)");
    expect(err2).toContain("--lm-head-dtype fp8 (22,768 KV tokens)");
    // (72,685,879,296 + 619,663,872 + 536,870,912 + 20,480 × 163,840) / 85,027,979,264 = 0.9079 → 0.91
    expect(err2).toContain("--gpu-memory-utilization 0.91");
  });

  it("prints four lines and serves bytes in /health's shape", () => {
    const p = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "awq-int4", kvCacheDtype: "fp8" });
    const lines = formatMemoryPlan(p);
    expect(lines).toHaveLength(4);
    expect(lines[0]).toBe("memory plan: 85.03 GB device × 0.9 = 76.53 GB");
    expect(lines[1]).toContain("weights 37.67 GB (linear int4 AWQ 35.56 GB, embedding in host memory (2.10 GB), lm_head bf16 2.10 GB");
    expect(lines[2]).toContain("workspace 0.67 GB (2,048 batched tokens, 256 sequences)");
    expect(lines[3]).toContain("229,776 tokens (14,361 blocks of 16); sequences that fit: 112 × 2k, 28 × 8k, 7 × 32k");
    const j = memoryPlanJson(p);
    expect(j).toMatchObject({ kv_tokens: 229_776, kv_cache_dtype: "fp8", weights_format: "awq-int4", embedding_device: "host", lm_head_dtype: "auto", sequences_that_fit: { "2048": 112 } });
    expect(j.weights_bytes).toMatchObject({ total: 37_669_076_992, embedding: 0, lm_head: TABLE });
  });

  it("rejects nonsense inputs", () => {
    expect(() => planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", gpuMemoryUtilization: 1.5 })).toThrow(/gpuMemoryUtilization/);
    expect(() => planMemory({ model: L70B, deviceMemoryBytes: 0, weights: "fp8", kvCacheDtype: "fp8" })).toThrow(/deviceMemoryBytes/);
    expect(() => planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", multiprocessors: 0 })).toThrow(/multiprocessors/);
    expect(() => planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", maxModelLen: 0 })).toThrow(/maxModelLen/);
    expect(() => planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", lmHeadDtype: "int4" as never })).toThrow(/lmHeadDtype/);
    expect(() => planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", embeddingDevice: "cpu" as never })).toThrow(/embeddingDevice/);
  });
});
