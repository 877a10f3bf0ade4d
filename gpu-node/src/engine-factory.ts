import type { Engine } from "./engine/types.js";
import { SimulatedEngine, ThreadedReferenceEngine } from "./engine/index.js";
import { loadTensorsF32, type ModelDir } from "./model/index.js";
import type { ProgressCallback } from "./model/types.js";

export type EngineChoice = "reference" | "native" | "simulated";
export const ENGINE_CHOICES: readonly EngineChoice[] = ["reference", "native", "simulated"];

export interface EngineSetup {
  blockSize: number;
  /** Default: sized for the engine (the reference engine keeps it small; it runs on a CPU). */
  numKvBlocks?: number;
  onProgress?: ProgressCallback;
  log: (line: string) => void;
  /** Native engine only. */
  quantization?: "none" | "fp8";
  loadFormat?: "safetensors" | "dummy";
  gpuMemoryUtilization?: number;
  maxNumSeqs?: number;
  maxModelLen?: number;
  /** Simulated engine only: wall time of one engine step (load tests pace their streams with it). */
  simulatedStepMs?: number;
}

/** Builds the engine behind the scheduler. The native engine is loaded lazily: it needs its addon built. */
export async function createEngine(choice: EngineChoice, model: ModelDir, setup: EngineSetup): Promise<Engine> {
  switch (choice) {
    case "reference": {
      if (setup.quantization && setup.quantization !== "none") throw new Error("--quantization needs --engine native");
      if (setup.loadFormat === "dummy") throw new Error("--load-format dummy needs --engine native");
      const weights = await loadTensorsF32(model.tensors, undefined, setup.onProgress);
      // On its own thread: a long prefill must not stall HTTP, /health or the edge heartbeats.
      return ThreadedReferenceEngine.create(model.config, weights, {
        numKvBlocks: setup.numKvBlocks ?? 4096,
        blockSize: setup.blockSize,
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
