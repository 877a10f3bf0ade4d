import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { planMemory } from "../../gpu-node/src/engine/memory-plan.js";
import { makeTinyModel, readLlamaConfig } from "../../gpu-node/src/model/index.js";
import { startNode, type RunningNode } from "../../gpu-node/src/node.js";

// A tiny AutoAWQ checkpoint served by the native CPU flavor and by the reference engine through the
// whole HTTP stack; the memory plan for a target card in /health; a model that cannot fit refused in one line.
const CLI = fileURLToPath(new URL("../../gpu-node/dist/cli.js", import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), "seventy-quant-serve-"));
let awqDir: string;
let native: RunningNode;
let reference: RunningNode;
const H100 = 81559 * 1024 ** 2;

beforeAll(async () => {
  awqDir = await makeTinyModel({ outDir: join(tmp, "tiny-awq"), quant: "awq" });
  native = await startNode({ modelDir: awqDir, port: 0, engine: "native", kvCacheBlocks: 64, deviceMemoryBytes: H100, kvCacheDtype: "auto", log: () => {} });
  reference = await startNode({ modelDir: awqDir, port: 0, engine: "reference", kvCacheBlocks: 64, log: () => {} });
});
afterAll(async () => {
  await native?.close();
  await reference?.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe("serving a quantized checkpoint", () => {
  it("answers greedily exactly as the reference engine (AWQ int4, native CPU flavor)", async () => {
    const post = (n: RunningNode) =>
      fetch(n.url + "/v1/chat/completions", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "tiny-awq", messages: [{ role: "user", content: "Name three GPUs." }], max_tokens: 12, temperature: 0, ignore_eos: true }),
      });
    const ref = (await (await post(reference)).json()) as { choices: Array<{ message: { content: string } }>; usage: { completion_tokens: number } };
    const nat = (await (await post(native)).json()) as typeof ref;
    expect(ref.usage.completion_tokens).toBe(12);
    expect(nat.choices[0]!.message.content).toBe(ref.choices[0]!.message.content);
  });

  it("serves the memory plan for the target card in /health", async () => {
    const h = (await (await fetch(native.url + "/health")).json()) as { engine: string; memory_plan: Record<string, unknown> | null };
    expect(h.engine).toBe("native-cpu");
    const config = await readLlamaConfig(join(awqDir, "config.json"));
    const plan = planMemory({ model: config, deviceMemoryBytes: H100, weights: "awq-int4", kvCacheDtype: "bf16" });
    expect(h.memory_plan).toMatchObject({ device_memory_bytes: H100, weights_format: "awq-int4", kv_cache_dtype: "bf16", kv_tokens: plan.kvTokens, budget_bytes: plan.budget });
    expect(h.memory_plan).toMatchObject({ embedding_device: "host", lm_head_dtype: "auto", weights_bytes: { embedding: 0 } });
    expect((h.memory_plan!.weights_bytes as { total: number }).total).toBe(plan.weights.total);
    const r = (await (await fetch(reference.url + "/health")).json()) as { memory_plan: unknown };
    expect(r.memory_plan).toBeNull();
  });

  it("refuses to start a model that cannot fit, in one line that says so", () => {
    const r = spawnSync(process.execPath, [CLI, "serve", "--model", awqDir, "--engine", "native", "--port", "0", "--device-memory", "300MB"], {
      encoding: "utf8",
      timeout: 60_000,
    });
    expect(r.status).toBe(2);
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^seventy-node: the model does not fit: weights 0\.03 GB \+ workspace 0\.\d\d GB \+ CUDA graphs 0\.54 GB leave no room for a KV cache in 0\.27 GB/);
  });

  it("make-tiny-model --quant and serve --kv-cache-dtype refuse bad values in one line", () => {
    const a = spawnSync(process.execPath, [CLI, "make-tiny-model", "--out", join(tmp, "x"), "--quant", "gptq"], { encoding: "utf8" });
    expect(a.status).toBe(2);
    expect(a.stderr.trim()).toBe("seventy-node: --quant must be awq or fp8, got 'gptq'");
    const b = spawnSync(process.execPath, [CLI, "serve", "--kv-cache-dtype", "int8"], { encoding: "utf8" });
    expect(b.status).toBe(2);
    expect(b.stderr.trim()).toBe("seventy-node: --kv-cache-dtype must be auto or fp8, got 'int8'");
    for (const [flag, bad, msg] of [
      ["--lm-head-dtype", "int4", "--lm-head-dtype must be auto or fp8, got 'int4'"],
      ["--embedding-device", "cpu", "--embedding-device must be host or gpu, got 'cpu'"],
    ]) {
      const d = spawnSync(process.execPath, [CLI, "serve", flag!, bad!], { encoding: "utf8" });
      expect(d.status).toBe(2);
      expect(d.stderr.trim()).toBe(`seventy-node: ${msg}`);
    }
    const c = spawnSync(process.execPath, [CLI, "serve", "--device-memory", "lots"], { encoding: "utf8" });
    expect(c.status).toBe(2);
    expect(c.stderr.trim()).toMatch(/--device-memory must be a size such as 80GB/);
  });
});
