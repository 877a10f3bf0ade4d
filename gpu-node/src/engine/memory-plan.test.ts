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
// + logits/scratch 2·256·128256·4 = 262,668,288 + split-K partials 256·64·64·130·4 = 545,259,520
// + out ints 3,072 + block tables 256·8192·4 = 8,388,608 + penalties 16,777,216 + params 16,384
// + top logprobs 40,960 = 837,348,352.
const WORKSPACE = 1_156_156_416;
// AWQ layers add the W4 GEMV scratch: 64 rows × max(10,240, 57,344, 8,192) floats = 14,680,064, and
// 4 splits × 64 rows × 28,672 floats = 29,360,128 (+ 4 bytes of slack).
const WORKSPACE_AWQ = WORKSPACE + 14_680_064 + 29_360_132;
const GRAPHS = 536_870_912;

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
    // − 1,200,196,612 − 536,870,912 = 37,119,036,821 → 14,159 blocks of 16.
    expect(p.kvBytesPerToken).toBe(163_840);
    expect(p.kvBlocks).toBe(14_159);
    expect(p.kvTokens).toBe(226_544);
    expect(p.kvTokens).toBeGreaterThanOrEqual(190_000);
    expect(p.kvCache).toBe(14_159 * 16 * 163_840);
    expect(p.sequencesAt).toEqual({ "2048": 110, "8192": 27, "32768": 6 });
    expect(Math.floor(p.kvBlocks / Math.ceil(3072 / 16))).toBe(73); // ≥ 64 users × 3k
    expect(p.maxModelLen).toBe(131_072);
    expect(p.fits).toBe(true);
    expect(memoryPlanError(p)).toBeNull();
    // With the table on the device as well: 39,770,423,296 of weights, 13,358 blocks.
    const gpu = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "awq-int4", kvCacheDtype: "fp8", embeddingDevice: "gpu" });
    expect(gpu.weights.total).toBe(39_770_423_296);
    expect(gpu.kvTokens).toBe(213_728);
    // An A100 80GB PCIe (85,093,777,408 bytes): budget 76,584,399,667 → 14,182 blocks.
    expect(planMemory({ model: L70B, deviceMemoryBytes: A100, weights: "awq-int4", kvCacheDtype: "fp8" }).kvTokens).toBe(226_912);
  });

  it("AWQ with a bf16 KV cache holds half the tokens", () => {
    const p = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "awq-int4", kvCacheDtype: "bf16" });
    expect(p.kvBytesPerToken).toBe(327_680);
    expect(p.kvBlocks).toBe(7_079);
    expect(p.kvTokens).toBe(113_264);
    expect(p.sequencesAt).toEqual({ "2048": 55, "8192": 13, "32768": 3 });
  });

  it("FP8 on an 80 GB H100: 26k FP8 KV tokens with the table in host memory, 32k with an FP8 lm_head; 40k needs 0.92 of the card", () => {
    // Every table on the device: 818 blocks.
    const before = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", embeddingDevice: "gpu" });
    expect(before.weights).toEqual({ linear: LINEAR_FP8, embedding: TABLE, lmHead: TABLE, norms: NORMS, total: 72_685_879_296 });
    // 76,525,181,337 − 72,685,879,296 − 1,156,156,416 − 536,870,912 = 2,146,274,713 → 818 blocks.
    expect(before.kvTokens).toBe(13_088);

    const p = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8" });
    expect(p.weights).toEqual({ linear: LINEAR_FP8, embedding: 0, lmHead: TABLE, norms: NORMS, total: 70_584_532_992 });
    // + the table's 2,101,346,304 bytes: 4,247,621,017 → 1,620 blocks.
    expect(p.kvBlocks).toBe(1_620);
    expect(p.kvTokens).toBe(25_920);
    expect(p.maxModelLen).toBe(25_920);
    expect(p.fits).toBe(true);

    const lm = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", lmHeadDtype: "fp8" });
    expect(lm.weights).toEqual({ linear: LINEAR_FP8, embedding: 0, lmHead: LM_HEAD_FP8, norms: NORMS, total: 69_534_372_864 });
    // + 1,050,160,128 bytes: 5,297,781,145 → 2,020 blocks: short of the 40k target at 0.9.
    expect(lm.kvBlocks).toBe(2_020);
    expect(lm.kvTokens).toBe(32_320);
    expect(lm.kvTokens).toBeLessThan(40_000);
    expect(lm.sequencesAt).toEqual({ "2048": 15, "8192": 3, "32768": 0 });
    // 40,000 tokens = 2,500 blocks: 69,534,372,864 + 1,156,156,416 + 536,870,912 + 6,553,600,000
    // = 77,781,000,192 = 0.9148 of the card.
    const u92 = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", lmHeadDtype: "fp8", gpuMemoryUtilization: 0.92 });
    expect(u92.kvTokens).toBe(42_704); // floor(0.92 × 85,027,979,264) = 78,225,740,922 → 2,669 blocks
    expect(u92.kvTokens).toBeGreaterThanOrEqual(40_000);
  });

  it("on a 141 GB H200: FP8 weights leave room for 383k FP8 KV tokens, AWQ for 584k", () => {
    const budget = Math.floor(0.9 * H200);
    expect(budget).toBe(135_098_951_270);
    const fp8 = planMemory({ model: L70B, deviceMemoryBytes: H200, weights: "fp8", kvCacheDtype: "fp8" });
    // 135,098,951,270 − 70,584,532,992 − 1,156,156,416 − 536,870,912 = 62,821,390,950 → 23,964 blocks.
    expect(fp8.kvBlocks).toBe(23_964);
    expect(fp8.kvTokens).toBe(383_424);
    expect(fp8.sequencesAt).toEqual({ "2048": 187, "8192": 46, "32768": 11 });
    const fp8lm = planMemory({ model: L70B, deviceMemoryBytes: H200, weights: "fp8", kvCacheDtype: "fp8", lmHeadDtype: "fp8" });
    expect(fp8lm.kvTokens).toBe(389_840); // + 1,050,160,128 bytes → 24,365 blocks
    const awq = planMemory({ model: L70B, deviceMemoryBytes: H200, weights: "awq-int4", kvCacheDtype: "fp8" });
    // 135,098,951,270 − 37,669,076,992 − 1,200,196,612 − 536,870,912 = 95,692,806,754 → 36,503 blocks.
    expect(awq.kvBlocks).toBe(36_503);
    expect(awq.kvTokens).toBe(584_048);
    const fp8bf16 = planMemory({ model: L70B, deviceMemoryBytes: H200, weights: "fp8", kvCacheDtype: "bf16" });
    expect(fp8bf16.kvTokens).toBe(191_712);
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
    expect(err).toContain("--quantization fp8 (12,960 KV tokens)");
    expect(err).not.toContain("--max-model-len");
    expect(err).not.toContain("--lm-head-dtype"); // 1 GB does not make 137 GB of linear weights fit
  });

  it("a context longer than the cache holds fails with the flags that would fit", () => {
    const p = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "bf16", maxModelLen: 32768 });
    // Block tables for 32k contexts are 6,291,456 bytes smaller than for 131k: workspace 1,149,864,960,
    // left 4,253,912,473 → 811 blocks.
    expect(p.workspace).toBe(1_149_864_960);
    expect(p.kvTokens).toBe(12_976);
    expect(p.fits).toBe(false);
    const err = memoryPlanError(p)!;
    expect(err).toMatch(/^the model does not fit: the KV cache holds 12,976 tokens, fewer than --max-model-len 32,768/);
    expect(err).toContain("--max-model-len 12976");
    expect(err).not.toContain("--kv-cache-dtype fp8"); // 25,952 tokens is still short of 32k
    expect(err).not.toContain("--lm-head-dtype fp8"); // 16,176
    // fixed 72,271,268,864 + 32,768 × 327,680 = 83,008,687,104 = 0.9763 of the card.
    expect(err).toContain("--gpu-memory-utilization 0.98");

    const q = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "bf16", maxModelLen: 16384 });
    const err2 = memoryPlanError(q)!;
    expect(q.kvTokens).toBe(12_976);
    expect(err2).toContain("--kv-cache-dtype fp8 (25,968 KV tokens)");
    expect(err2).not.toContain("--lm-head-dtype fp8"); // 16,176
    // (70,584,532,992 + 1,148,816,384 + 536,870,912 + 16,384 × 327,680) / 85,027,979,264 = 0.9131 → 0.92
    expect(err2).toContain("--gpu-memory-utilization 0.92");
    expect(planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "bf16", maxModelLen: 16384, gpuMemoryUtilization: 0.92 }).kvTokens).toBe(18_160);
  });

  it("the fail-fast line names --lm-head-dtype fp8 and --embedding-device host when they make it fit", () => {
    // FP8 KV, 28k context: 1,622 blocks = 25,952 tokens; an FP8 lm_head frees 1,050,160,128 bytes → 2,023 blocks.
    const p = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", maxModelLen: 28672 });
    expect(p.kvTokens).toBe(25_952);
    const err = memoryPlanError(p)!;
    expect(err).toContain("--lm-head-dtype fp8 (32,368 KV tokens)");
    expect(err).not.toContain("--embedding-device");
    expect(err).toContain("--max-model-len 25952");
    // (70,584,532,992 + 1,149,602,816 + 536,870,912 + 28,672 × 163,840) / 85,027,979,264 = 0.9052 → 0.91
    expect(err).toContain("--gpu-memory-utilization 0.91");
    // The table on the device leaves 2,153,614,745 bytes (821 blocks) for a 16k context; in host memory 1,623.
    const q = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", maxModelLen: 16384, embeddingDevice: "gpu" });
    expect(q.kvTokens).toBe(13_136);
    const err2 = memoryPlanError(q)!;
    expect(err2).toContain("--embedding-device host (25,968 KV tokens)");
    expect(err2).toContain("--lm-head-dtype fp8 (19,552 KV tokens)");
    // (72,685,879,296 + 1,148,816,384 + 536,870,912 + 16,384 × 163,840) / 85,027,979,264 = 0.9062 → 0.91
    expect(err2).toContain("--gpu-memory-utilization 0.91");
  });

  it("prints four lines and serves bytes in /health's shape", () => {
    const p = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "awq-int4", kvCacheDtype: "fp8" });
    const lines = formatMemoryPlan(p);
    expect(lines).toHaveLength(4);
    expect(lines[0]).toBe("memory plan: 85.03 GB device × 0.9 = 76.53 GB");
    expect(lines[1]).toContain("weights 37.67 GB (linear int4 AWQ 35.56 GB, embedding in host memory (2.10 GB), lm_head bf16 2.10 GB");
    expect(lines[2]).toContain("workspace 1.20 GB (2,048 batched tokens, 256 sequences)");
    expect(lines[3]).toContain("226,544 tokens (14,159 blocks of 16); sequences that fit: 110 × 2k, 27 × 8k, 6 × 32k");
    const j = memoryPlanJson(p);
    expect(j).toMatchObject({ kv_tokens: 226_544, kv_cache_dtype: "fp8", weights_format: "awq-int4", embedding_device: "host", lm_head_dtype: "auto", sequences_that_fit: { "2048": 110 } });
    expect(j.weights_bytes).toMatchObject({ total: 37_669_076_992, embedding: 0, lm_head: TABLE });
  });

  it("rejects nonsense inputs", () => {
    expect(() => planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", gpuMemoryUtilization: 1.5 })).toThrow(/gpuMemoryUtilization/);
    expect(() => planMemory({ model: L70B, deviceMemoryBytes: 0, weights: "fp8", kvCacheDtype: "fp8" })).toThrow(/deviceMemoryBytes/);
    expect(() => planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", maxModelLen: 0 })).toThrow(/maxModelLen/);
    expect(() => planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", lmHeadDtype: "int4" as never })).toThrow(/lmHeadDtype/);
    expect(() => planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", embeddingDevice: "cpu" as never })).toThrow(/embeddingDevice/);
  });
});
