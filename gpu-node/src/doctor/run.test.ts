import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { llamaConfigToJson, parseLlamaConfig } from "../model/config.js";
import { tinyLlamaConfig } from "../model/tiny-model.js";
import { systemFacts, type DoctorFacts, type GpuInfo } from "./facts.js";
import { archRuns, formatDoctor, runDoctor, type CheckResult } from "./run.js";

const GiB = 2 ** 30;
const H100: GpuInfo = { index: 0, name: "NVIDIA H100 80GB HBM3", driverVersion: "580.65.06", computeCapability: "9.0", memoryTotalBytes: 80 * GiB, memoryFreeBytes: 79 * GiB };
const config = parseLlamaConfig(llamaConfigToJson(tinyLlamaConfig()), "config.json");
/** Llama-3.1-70B's shapes (the config.json of Llama-3.1-Nemotron-70B-Instruct-HF). */
const config70b = parseLlamaConfig(
  { ...llamaConfigToJson(tinyLlamaConfig()), hidden_size: 8192, intermediate_size: 28672, num_hidden_layers: 80, num_attention_heads: 64, num_key_value_heads: 8, head_dim: 128, max_position_embeddings: 131072 },
  "config.json",
);

/** A rented H100 box where everything is right; each test changes one fact. */
function box(over: Partial<DoctorFacts> = {}): DoctorFacts {
  return {
    nodeVersion: () => "20.20.2",
    gpus: async () => ({ gpus: [H100], driverCudaVersion: "13.0" }),
    addon: async () => ({ flavors: ["cpu", "cuda"], cudaBuiltWith: "13.0", cudaArchitectures: ["80-real", "90a-real"], cudaLoad: { ok: true, detail: "CUDA on NVIDIA H100 80GB HBM3 (sm_90)" } }),
    freeBytes: async () => 500e9,
    model: async () => ({ source: "cache", dir: "/models/x", bytesToDownload: 0, weightBytes: 40e9, config }),
    portFree: async () => true,
    now: () => Date.now(),
    hubEnv: () => ({ cacheDir: "/root/.cache/huggingface/hub", token: undefined, offline: false, endpoint: "https://huggingface.co" }),
    ...over,
  };
}

const line = (results: CheckResult[], name: string) => results.find((r) => r.name === name)!;
function expectFailWithFix(results: CheckResult[], name: string, fix: RegExp) {
  const r = line(results, name);
  expect(r.status).toBe("fail");
  expect(r.fix).toMatch(fix);
}

describe("seventy-node doctor", () => {
  it("passes on a box where everything needed is right", async () => {
    const { ok, results } = await runDoctor({ model: "org/model" }, box());
    expect(results.filter((r) => r.status === "fail")).toEqual([]);
    expect(ok).toBe(true);
    expect(results.map((r) => r.name)).toEqual(["Node.js", "GPUs", "driver vs CUDA runtime", "compute capability", "CUDA flavor loads", "model", "disk", "memory plan", "port", "edge"]);
    expect(line(results, "memory plan").detail).toMatch(/^memory plan: .*KV cache/);
  });

  it("no GPU: fails with the fix, and only warns for an engine that needs none", async () => {
    const facts = box({
      gpus: async () => ({ gpus: [], error: "nvidia-smi not found (no NVIDIA driver installed)" }),
      addon: async () => ({ flavors: ["cpu", "cuda"], cudaBuiltWith: "13.0", cudaArchitectures: ["80-real", "90a-real"], cudaLoad: { ok: false, detail: "the CUDA native engine cannot run here: cudaErrorNoDevice" } }),
    });
    const native = await runDoctor({}, facts);
    expect(native.ok).toBe(false);
    expectFailWithFix(native.results, "GPUs", /install the NVIDIA driver/);
    expect(line(native.results, "GPUs").detail).toMatch(/nvidia-smi not found/);
    expectFailWithFix(native.results, "CUDA flavor loads", /SEVENTY_DEBUG=1/);
    const reference = await runDoctor({ engine: "reference" }, facts);
    expect(reference.ok).toBe(true);
    expect(line(reference.results, "GPUs").status).toBe("warn");
  });

  it("a driver older than the addon's CUDA runtime", async () => {
    const { ok, results } = await runDoctor({}, box({ gpus: async () => ({ gpus: [H100], driverCudaVersion: "12.4" }) }));
    expect(ok).toBe(false);
    expectFailWithFix(results, "driver vs CUDA runtime", /upgrade the NVIDIA driver to one that supports CUDA 13.0/);
  });

  it("a GPU the build has no code for", async () => {
    const t4 = { ...H100, name: "Tesla T4", computeCapability: "7.5" };
    const { results } = await runDoctor({}, box({ gpus: async () => ({ gpus: [t4], driverCudaVersion: "13.0" }) }));
    expectFailWithFix(results, "compute capability", /CMAKE_CUDA_ARCHITECTURES=75-real/);
    expect(archRuns(["80-real", "90a-real"], "8.6")).toBe(true);
    expect(archRuns(["80-real", "90a-real"], "9.0")).toBe(true);
    expect(archRuns(["80-real", "90a-real"], "10.0")).toBe(false);
    expect(archRuns(["90a-real"], "8.0")).toBe(false);
    expect(archRuns(["80"], "12.0")).toBe(true);
  });

  it("no disk space for the download", async () => {
    const facts = box({
      model: async () => ({ source: "hub", bytesToDownload: 141e9, weightBytes: 141e9, config }),
      freeBytes: async () => 20e9,
    });
    const { ok, results } = await runDoctor({ model: "nvidia/Llama-3.1-Nemotron-70B-Instruct-HF", quantization: "fp8" }, facts);
    expect(ok).toBe(false);
    expectFailWithFix(results, "disk", /HF_HUB_CACHE/);
    expect(line(results, "disk").detail).toMatch(/needs 131.32 GiB more .* 18.63 GiB free/);
  });

  it("a model too large for the GPU: bf16 70B on 80 GB fails with the fix; FP8 fits (the engine's memory plan)", async () => {
    const facts = box({ model: async () => ({ source: "dir", dir: "/m", bytesToDownload: 0, weightBytes: 141e9, config: config70b }) });
    const bf16 = await runDoctor({ model: "/m" }, facts);
    expect(bf16.ok).toBe(false);
    expectFailWithFix(bf16.results, "memory plan", /--quantization fp8/);
    expect(line(bf16.results, "memory plan").detail).toMatch(/the model does not fit: weights 139\.01 GB/); // the embedding table in host memory
    const fp8 = await runDoctor({ model: "/m", quantization: "fp8", kvCacheDtype: "fp8" }, facts);
    expect(line(fp8.results, "memory plan")).toMatchObject({ status: "ok", detail: expect.stringMatching(/weights 70\.58 GB .*embedding in host memory/) });
    const lm = await runDoctor({ model: "/m", quantization: "fp8", kvCacheDtype: "fp8", lmHeadDtype: "fp8", embeddingDevice: "gpu" }, facts);
    expect(line(lm.results, "memory plan").detail).toMatch(/weights 71\.64 GB .*embedding bf16 2\.10 GB, lm_head fp8 1\.05 GB/);
    // 141 GB of bf16 weights do not fit even an H200 at 0.9 of its 141 GB.
    const h200 = { ...H100, name: "NVIDIA H200", memoryTotalBytes: 141e9 };
    const big = await runDoctor({ model: "/m" }, { ...facts, gpus: async () => ({ gpus: [h200], driverCudaVersion: "13.0" }) });
    expect(line(big.results, "memory plan").status).toBe("fail");
  });

  it("a model that cannot be found is a failed line, not a crash", async () => {
    const { ok, results } = await runDoctor({ model: "org/gated" }, box({ model: async () => Promise.reject(new Error("org/gated: access is restricted (403)")) }));
    expect(ok).toBe(false);
    expect(line(results, "model")).toMatchObject({ status: "fail", detail: "org/gated: access is restricted (403)" });
  });

  it("a port in use (a real listener)", async () => {
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const port = (srv.address() as { port: number }).port;
    try {
      const { ok, results } = await runDoctor({ port }, box({ portFree: systemFacts().portFree }));
      expect(ok).toBe(false);
      expectFailWithFix(results, "port", new RegExp(`--port`));
    } finally {
      srv.close();
    }
  });

  it("the edge's shared secret in the environment: fails with the fix (nodes hold their own credential)", async () => {
    const { ok, results } = await runDoctor({ engine: "reference", sharedSecretSet: true }, box());
    expect(ok).toBe(false);
    expectFailWithFix(results, "SEVENTY_NODE_SECRET", /register the node with the edge \(POST \/admin\/nodes .*set SEVENTY_NODE_CREDENTIAL/);
    expect((await runDoctor({ engine: "reference" }, box())).results.some((r) => r.name === "SEVENTY_NODE_SECRET")).toBe(false);
  });

  it("an old Node", async () => {
    const { results } = await runDoctor({}, box({ nodeVersion: () => "18.19.0" }));
    expectFailWithFix(results, "Node.js", /Node 20.19 or newer/);
  });

  it("prints a fix under every failed line", async () => {
    const { results } = await runDoctor({ model: "/m" }, box({ gpus: async () => ({ gpus: [], error: "no GPU" }), portFree: async () => false }));
    const text = formatDoctor(results);
    const lines = text.split("\n");
    lines.forEach((l, i) => {
      if (l.startsWith("[FAIL]")) expect(lines[i + 1]).toMatch(/^\s+fix: /);
    });
    expect(text).toMatch(/\[FAIL\] GPUs/);
  });
});
