import type { ModelDir } from "../../model/index.js";
import type { ProgressCallback } from "../../model/types.js";
import type { Engine } from "../types.js";
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
  gpuMemoryUtilization?: number;
  maxNumSeqs?: number;
  maxModelLen?: number;
}

/**
 * `seventy-node serve --engine native`: the CUDA flavor when it is built and a GPU is usable,
 * otherwise the CPU flavor; logs which and why.
 */
export async function createNativeEngine(model: ModelDir, setup: NativeEngineSetup): Promise<Engine> {
  const base: NativeEngineOptions = {
    config: model.config,
    tensors: model.tensors,
    blockSize: setup.blockSize,
    numKvBlocks: setup.numKvBlocks,
    onProgress: setup.onProgress,
    flavor: setup.flavor ?? "auto",
    loadFormat: setup.loadFormat,
    quantization: setup.quantization,
    gpuMemoryUtilization: setup.gpuMemoryUtilization,
    maxNumSeqs: setup.maxNumSeqs,
    maxModelLen: setup.maxModelLen,
  };
  const engine = await NativeEngine.create(base);
  setup.log(`native engine: ${engine.kind} — ${engine.reason}; ${engine.numKvBlocks} KV blocks of ${engine.blockSize} tokens`);
  return engine;
}
