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
    // Default: embedding table in host memory, lm_head bf16.
    expect(p.input.embeddingDevice).toBe("host");
    expect(p.input.lmHeadDtype).toBe("auto");
    expect(p.weights).toEqual({ linear: LINEAR_AWQ, embedding: 0, lmHead: TABLE, norms: NORMS, total: 37_669_076_992 });
    expect(p.weights.total).toBeLessThanOrEqual(40e9);
    expect(p.workspace).toBe(WORKSPACE_AWQ);
    expect(p.cudaGraphs).toBe(GRAPHS);
    expect(p.budget).toBe(76_525_181_337); // floor(0.9 × 85,027,979,264)
    // KV per token: 80 layers × 2 × 8 heads × 128 × 1 byte = 163,840; left 76,525,181,337 − 37,669,076,992
    // − 2,156,620,804 − 536,870,912 = 36,162,612,629 → 13,794 blocks of 16.
    expect(p.kvBytesPerToken).toBe(163_840);
    expect(p.kvBlocks).toBe(13_794);
    expect(p.kvTokens).toBe(220_704);
    expect(p.kvTokens).toBeGreaterThanOrEqual(190_000);
    expect(p.kvCache).toBe(13_794 * 16 * 163_840);
    expect(p.sequencesAt).toEqual({ "2048": 107, "8192": 26, "32768": 6 });
    expect(Math.floor(p.kvBlocks / Math.ceil(3072 / 16))).toBe(71); // ≥ 64 users × 3k
    expect(p.maxModelLen).toBe(131_072);
    expect(p.fits).toBe(true);
    expect(memoryPlanError(p)).toBeNull();
    // With the table on the device as well: 39,770,423,296 of weights, 12,993 blocks.
    const gpu = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "awq-int4", kvCacheDtype: "fp8", embeddingDevice: "gpu" });
    expect(gpu.weights.total).toBe(39_770_423_296);
    expect(gpu.kvTokens).toBe(207_888);
    // An A100 80GB PCIe (85,093,777,408 bytes) plans the same within a few blocks: 13,817.
    expect(planMemory({ model: L70B, deviceMemoryBytes: A100, weights: "awq-int4", kvCacheDtype: "fp8" }).kvTokens).toBe(221_072);
  });

  it("AWQ with a bf16 KV cache holds half the tokens", () => {
    const p = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "awq-int4", kvCacheDtype: "bf16" });
    expect(p.kvBytesPerToken).toBe(327_680);
    expect(p.kvBlocks).toBe(6_897);
    expect(p.kvTokens).toBe(110_352);
    expect(p.sequencesAt).toEqual({ "2048": 53, "8192": 13, "32768": 3 });
  });

  it("FP8 on an 80 GB H100: 20k FP8 KV tokens with the table in host memory, 26.5k with an FP8 lm_head; 40k needs 0.93 of the card", () => {
    // As the engine held it before: every table on the device, 453 blocks.
    const before = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", embeddingDevice: "gpu" });
    expect(before.weights).toEqual({ linear: LINEAR_FP8, embedding: TABLE, lmHead: TABLE, norms: NORMS, total: 72_685_879_296 });
    // 76,525,181,337 − 72,685,879,296 − 2,112,580,608 − 536,870,912 = 1,189,850,521 → 453 blocks.
    expect(before.kvTokens).toBe(7_248);

    const p = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8" });
    expect(p.weights).toEqual({ linear: LINEAR_FP8, embedding: 0, lmHead: TABLE, norms: NORMS, total: 70_584_532_992 });
    // 76,525,181,337 − 70,584,532,992 − 2,112,580,608 − 536,870,912 = 3,291,196,825 → 1,255 blocks.
    expect(p.kvBlocks).toBe(1_255);
    expect(p.kvTokens).toBe(20_080);
    expect(p.maxModelLen).toBe(20_080);
    expect(p.fits).toBe(true);

    const lm = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", lmHeadDtype: "fp8" });
    expect(lm.weights).toEqual({ linear: LINEAR_FP8, embedding: 0, lmHead: LM_HEAD_FP8, norms: NORMS, total: 69_534_372_864 });
    // 3,291,196,825 + 1,050,160,128 = 4,341,356,953 → 1,656 blocks: short of the 40k target at 0.9.
    expect(lm.kvBlocks).toBe(1_656);
    expect(lm.kvTokens).toBe(26_496);
    expect(lm.kvTokens).toBeLessThan(40_000);
    expect(lm.sequencesAt).toEqual({ "2048": 12, "8192": 3, "32768": 0 });
    // 40,000 tokens = 2,500 blocks: 69,534,372,864 + 2,112,580,608 + 536,870,912 + 6,553,600,000
    // = 78,737,424,384 = 0.926 of the card.
    const u93 = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", lmHeadDtype: "fp8", gpuMemoryUtilization: 0.93 });
    expect(u93.kvTokens).toBeGreaterThanOrEqual(40_000);
    expect(u93.kvTokens).toBe(42_064); // floor(0.93 × 85,027,979,264) = 79,076,020,715 → 2,629 blocks
  });

  it("on a 141 GB H200: FP8 weights leave room for 378k FP8 KV tokens, AWQ for 578k", () => {
    const budget = Math.floor(0.9 * H200);
    expect(budget).toBe(135_098_951_270);
    const fp8 = planMemory({ model: L70B, deviceMemoryBytes: H200, weights: "fp8", kvCacheDtype: "fp8" });
    // 135,098,951,270 − 70,584,532,992 − 2,112,580,608 − 536,870,912 = 61,864,966,758 → 23,599 blocks.
    expect(fp8.kvBlocks).toBe(23_599);
    expect(fp8.kvTokens).toBe(377_584);
    expect(fp8.sequencesAt).toEqual({ "2048": 184, "8192": 46, "32768": 11 });
    const fp8lm = planMemory({ model: L70B, deviceMemoryBytes: H200, weights: "fp8", kvCacheDtype: "fp8", lmHeadDtype: "fp8" });
    expect(fp8lm.kvTokens).toBe(384_000); // + 1,050,160,128 bytes → 24,000 blocks
    const awq = planMemory({ model: L70B, deviceMemoryBytes: H200, weights: "awq-int4", kvCacheDtype: "fp8" });
    // 135,098,951,270 − 37,669,076,992 − 2,156,620,804 − 536,870,912 = 94,736,382,562 → 36,139 blocks.
    expect(awq.kvBlocks).toBe(36_139);
    expect(awq.kvTokens).toBe(578_224);
    const fp8bf16 = planMemory({ model: L70B, deviceMemoryBytes: H200, weights: "fp8", kvCacheDtype: "bf16" });
    expect(fp8bf16.kvTokens).toBe(188_784);
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
    expect(err).toContain("--quantization fp8 (10,032 KV tokens)");
    expect(err).not.toContain("--max-model-len");
    expect(err).not.toContain("--lm-head-dtype"); // 1 GB does not make 137 GB of linear weights fit
  });

  it("a context longer than the cache holds fails with the flags that would fit", () => {
    const p = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "bf16", maxModelLen: 32768 });
    // Block tables for 32k contexts are 6,291,456 bytes smaller than for 131k: workspace 2,106,289,152,
    // left 3,297,488,281 → 628 blocks.
    expect(p.workspace).toBe(2_106_289_152);
    expect(p.kvTokens).toBe(10_048);
    expect(p.fits).toBe(false);
    const err = memoryPlanError(p)!;
    expect(err).toMatch(/^the model does not fit: the KV cache holds 10,048 tokens, fewer than --max-model-len 32,768/);
    expect(err).toContain("--max-model-len 10048");
    expect(err).not.toContain("--kv-cache-dtype fp8"); // 20,112 tokens is still short of 32k
    expect(err).not.toContain("--lm-head-dtype fp8"); // 13,264
    // fixed 73,227,693,056 + 32,768 × 327,680 = 83,965,111,296 = 0.9875 of the card.
    expect(err).toContain("--gpu-memory-utilization 0.99");

    const q = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "bf16", maxModelLen: 16384 });
    const err2 = memoryPlanError(q)!;
    expect(q.kvTokens).toBe(10_064);
    expect(err2).toContain("--kv-cache-dtype fp8 (20,128 KV tokens)");
    // (70,584,532,992 + 2,105,240,576 + 536,870,912 + 16,384 × 327,680) / 85,027,979,264 = 0.9243… → 0.93
    expect(err2).toContain("--gpu-memory-utilization 0.93");
    expect(planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "bf16", maxModelLen: 16384, gpuMemoryUtilization: 0.93 }).kvTokens).toBe(17_840);
  });

  it("the fail-fast line names --lm-head-dtype fp8 and --embedding-device host when they make it fit", () => {
    // FP8 KV, 24k context: 1,258 blocks = 20,128 tokens; an FP8 lm_head frees 1,050,160,128 bytes → 1,658 blocks.
    const p = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", maxModelLen: 24576 });
    expect(p.kvTokens).toBe(20_128);
    const err = memoryPlanError(p)!;
    expect(err).toContain("--lm-head-dtype fp8 (26,528 KV tokens)");
    expect(err).not.toContain("--embedding-device");
    expect(err).toContain("--max-model-len 20128");
    // The table on the device leaves 1,197,190,553 bytes (456 blocks) for a 16k context; in host memory 1,258.
    const q = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", maxModelLen: 16384, embeddingDevice: "gpu" });
    expect(q.kvTokens).toBe(7_296);
    const err2 = memoryPlanError(q)!;
    expect(err2).toContain("--embedding-device host (20,128 KV tokens)");
    expect(err2).not.toContain("--lm-head-dtype fp8"); // 13,712 tokens
    expect(err2).toContain("--gpu-memory-utilization 0.92");
  });

  it("prints four lines and serves bytes in /health's shape", () => {
    const p = planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "awq-int4", kvCacheDtype: "fp8" });
    const lines = formatMemoryPlan(p);
    expect(lines).toHaveLength(4);
    expect(lines[0]).toBe("memory plan: 85.03 GB device × 0.9 = 76.53 GB");
    expect(lines[1]).toContain("weights 37.67 GB (linear int4 AWQ 35.56 GB, embedding in host memory (2.10 GB), lm_head bf16 2.10 GB");
    expect(lines[3]).toContain("220,704 tokens (13,794 blocks of 16); sequences that fit: 107 × 2k, 26 × 8k, 6 × 32k");
    const j = memoryPlanJson(p);
    expect(j).toMatchObject({ kv_tokens: 220_704, kv_cache_dtype: "fp8", weights_format: "awq-int4", embedding_device: "host", lm_head_dtype: "auto", sequences_that_fit: { "2048": 107 } });
    expect((j.weights_bytes as { total: number; embedding: number }).total).toBe(37_669_076_992);
    expect((j.weights_bytes as { total: number; embedding: number }).embedding).toBe(0);
  });

  it("rejects nonsense inputs", () => {
    expect(() => planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", gpuMemoryUtilization: 1.5 })).toThrow(/gpuMemoryUtilization/);
    expect(() => planMemory({ model: L70B, deviceMemoryBytes: 0, weights: "fp8", kvCacheDtype: "fp8" })).toThrow(/deviceMemoryBytes/);
    expect(() => planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", maxModelLen: 0 })).toThrow(/maxModelLen/);
    expect(() => planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", lmHeadDtype: "int4" as never })).toThrow(/lmHeadDtype/);
    expect(() => planMemory({ model: L70B, deviceMemoryBytes: H100, weights: "fp8", kvCacheDtype: "fp8", embeddingDevice: "cpu" as never })).toThrow(/embeddingDevice/);
  });
});
