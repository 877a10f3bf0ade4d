import type { ModelDir } from "../../model/index.js";
import type { ProgressCallback } from "../../model/types.js";
import { formatMemoryPlan, memoryPlanError, planMemory, type MemoryPlan, type PlanWeights } from "../memory-plan.js";
import type { Engine } from "../types.js";
import { DEFAULT_MAX_NUM_BATCHED_TOKENS, DEFAULT_MAX_NUM_SEQS } from "../../scheduler/scheduler.js";
import { loadNativeAddon } from "./addon.js";
import { NativeEngine, type NativeEngineOptions } from "./native-engine.js";

export { NativeEngine, type NativeEngineOptions } from "./native-engine.js";
export { loadNativeAddon, defaultAddonDir, NativeAddonError, type NativeFlavor, type DeviceProbe, type LoadedAddon } from "./addon.js";
export { packStep, unpackResult } from "./pack.js";

/** What the serve command passes (a superset of engine-factory's EngineSetup). */
export interface NativeEngineSetup {
  blockSize: number;
  numKvBlocks?: number;
  onProgress?: ProgressCallback;
  log: (line: string) => void;
  flavor?: NativeEngineOptions["flavor"];
  loadFormat?: NativeEngineOptions["loadFormat"];
  quantization?: NativeEngineOptions["quantization"];
  kvCacheDtype?: NativeEngineOptions["kvCacheDtype"];
  embeddingDevice?: NativeEngineOptions["embeddingDevice"];
  lmHeadDtype?: NativeEngineOptions["lmHeadDtype"];
  gpuMemoryUtilization?: number;
  /** Plan memory for a device of this many bytes (a target card) instead of the GPU found; printed, served and enforced. */
  deviceMemoryBytes?: number;
  maxNumSeqs?: number;
  maxNumBatchedTokens?: number;
  maxModelLen?: number;
  addonDir?: string;
}

/** How the plan counts a checkpoint's linear weights. */
export function planWeightsFormat(model: Pick<ModelDir, "config">, quantization: NativeEngineOptions["quantization"]): PlanWeights {
  const q = model.config.quantization;
  if (q?.method === "awq") return "awq-int4";
  if (q?.method === "compressed-tensors" || quantization === "fp8") return "fp8";
  return "bf16";
}

/**
 * `seventy-node serve --engine native`: the CUDA flavor when it is built and a GPU is usable,
 * otherwise the CPU flavor; logs which and why.
 */
export async function createNativeEngine(model: ModelDir, setup: NativeEngineSetup): Promise<Engine> {
  const flavor = setup.flavor ?? "auto";
  // The plan needs the device before any weight is read: a model that cannot fit fails here, in one line.
  const probe = loadNativeAddon(flavor, setup.addonDir);
  const deviceMemoryBytes = setup.deviceMemoryBytes ?? (probe.flavor === "cuda" ? probe.device.totalMemory : undefined);
  // The scheduler's limits, so the workspace is sized for the largest step it will send, not more.
  const maxNumSeqs = setup.maxNumSeqs ?? DEFAULT_MAX_NUM_SEQS;
  const maxNumBatchedTokens = setup.maxNumBatchedTokens ?? DEFAULT_MAX_NUM_BATCHED_TOKENS;
  let memoryPlan: MemoryPlan | undefined;
  if (deviceMemoryBytes !== undefined) {
    memoryPlan = planMemory({
      model: model.config,
      deviceMemoryBytes,
      weights: planWeightsFormat(model, setup.quantization),
      kvCacheDtype: setup.kvCacheDtype === "fp8" ? "fp8" : "bf16",
      embeddingDevice: setup.embeddingDevice ?? "host",
      lmHeadDtype: setup.lmHeadDtype ?? "auto",
      gpuMemoryUtilization: setup.gpuMemoryUtilization,
      maxNumSeqs,
      maxNumBatchedTokens,
      maxModelLen: setup.maxModelLen,
      blockSize: setup.blockSize,
      ...(probe.flavor === "cuda" && probe.device.multiprocessors > 0 ? { multiprocessors: probe.device.multiprocessors } : {}),
    });
    const misfit = memoryPlanError(memoryPlan);
    if (misfit !== null) throw new Error(misfit);
    for (const line of formatMemoryPlan(memoryPlan)) setup.log(line);
  }
  const base: NativeEngineOptions = {
    config: model.config,
    tensors: model.tensors,
    blockSize: setup.blockSize,
    // On a GPU the plan sizes the KV cache; the CPU flavor keeps its own default (it holds float32 K/V in host memory).
    numKvBlocks: setup.numKvBlocks ?? (probe.flavor === "cuda" ? memoryPlan?.kvBlocks : undefined),
    memoryPlan,
    addonDir: setup.addonDir,
    kvCacheDtype: setup.kvCacheDtype,
    embeddingDevice: setup.embeddingDevice,
    lmHeadDtype: setup.lmHeadDtype,
    maxNumBatchedTokens,
    onProgress: setup.onProgress,
    flavor,
    loadFormat: setup.loadFormat,
    quantization: setup.quantization,
    gpuMemoryUtilization: setup.gpuMemoryUtilization,
    maxNumSeqs,
    maxModelLen: setup.maxModelLen,
  };
  const engine = await NativeEngine.create(base);
  setup.log(`native engine: ${engine.kind} — ${engine.reason}; ${engine.numKvBlocks} KV blocks of ${engine.blockSize} tokens`);
  return engine;
}
