import type { Engine } from "./engine/types.js";
import { SimulatedEngine, ThreadedReferenceEngine } from "./engine/index.js";
import { loadReferenceWeights } from "./engine/reference/load-weights.js";
import type { ModelDir } from "./model/index.js";
import type { ProgressCallback } from "./model/types.js";

export type EngineChoice = "reference" | "native" | "simulated";
export const ENGINE_CHOICES: readonly EngineChoice[] = ["reference", "native", "simulated"];

export interface EngineSetup {
  blockSize: number;
  /** Default: sized for the engine (the reference engine keeps it small; it runs on a CPU). */
  numKvBlocks?: number;
  onProgress?: ProgressCallback;
  log: (line: string) => void;
  /** Weights quantized to FP8 at load (the reference engine rounds through FP8 the same way). */
  quantization?: "none" | "fp8";
  /** "fp8": an e4m3 KV cache. */
  kvCacheDtype?: "auto" | "fp8";
  /** Native engine only: where the embedding table lives, and lm_head's dtype (engine/memory-plan.ts). */
  embeddingDevice?: "host" | "gpu";
  lmHeadDtype?: "auto" | "fp8";
  /** Native engine only. */
  loadFormat?: "safetensors" | "dummy";
  gpuMemoryUtilization?: number;
  /** Native engine only: plan memory for a device of this size (see engine/memory-plan.ts). */
  deviceMemoryBytes?: number;
  maxNumSeqs?: number;
  maxNumBatchedTokens?: number;
  maxModelLen?: number;
  /** Simulated engine only: wall time of one engine step (load tests pace their streams with it). */
  simulatedStepMs?: number;
}

/** Builds the engine behind the scheduler. The native engine is loaded lazily: it needs its addon built. */
export async function createEngine(choice: EngineChoice, model: ModelDir, setup: EngineSetup): Promise<Engine> {
  const stored = model.config.quantization;
  if (setup.quantization === "fp8" && stored !== null) {
    throw new Error(`--quantization fp8 quantizes a float checkpoint at load; this one is already quantized (${stored.method}): leave --quantization out`);
  }
  if (choice !== "native") {
    if (setup.embeddingDevice !== undefined) throw new Error("--embedding-device needs --engine native");
    if (setup.lmHeadDtype !== undefined) throw new Error("--lm-head-dtype needs --engine native");
  }
  switch (choice) {
    case "reference": {
      if (setup.loadFormat === "dummy") throw new Error("--load-format dummy needs --engine native");
      // Quantized checkpoints are dequantized to float32 here: the reference computes in floats.
      const weights = await loadReferenceWeights(model.config, model.tensors, { quantization: setup.quantization, onProgress: setup.onProgress });
      // On its own thread: a long prefill must not stall HTTP, /health or the edge heartbeats.
      return ThreadedReferenceEngine.create(model.config, weights, {
        numKvBlocks: setup.numKvBlocks ?? 4096,
        blockSize: setup.blockSize,
        kvCacheDtype: setup.kvCacheDtype,
      });
    }
    case "simulated":
      return new SimulatedEngine({ numKvBlocks: setup.numKvBlocks ?? 65536, blockSize: setup.blockSize, stepDelayMs: setup.simulatedStepMs });
    case "native": {
      const { createNativeEngine } = await import("./engine/native/index.js");
      return createNativeEngine(model, setup);
    }
  }
}
