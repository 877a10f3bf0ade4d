/**
 * Finding and loading the native addon. Two flavors may be built side by side in
 * `gpu-node/native/build/Release/`: `seventy_cuda.node` (CUDA kernels, also contains the CPU backend)
 * and `seventy_cpu.node` (CPU only). `loadNativeAddon("auto")` takes the CUDA flavor when it is
 * built and a GPU is usable, else the CPU flavor, and says why in `reason`.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export type NativeFlavor = "cpu" | "cuda";

export interface DeviceProbe {
  usable: boolean;
  /** Why the device cannot be used (no driver, no GPU, CPU-only build). */
  reason: string;
  name: string;
  computeCapability: number;
  multiprocessors: number;
  totalMemory: number;
  freeMemory: number;
}

/** Options as the addon's `NativeEngine` constructor reads them (see native/napi/addon.cpp). */
export interface AddonEngineOptions {
  config: {
    hiddenSize: number;
    intermediateSize: number;
    numHiddenLayers: number;
    numAttentionHeads: number;
    numKeyValueHeads: number;
    headDim: number;
    vocabSize: number;
    rmsNormEps: number;
    ropeTheta: number;
    tieWordEmbeddings: boolean;
    ropeScaling: { factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number } | null;
  };
  backend: NativeFlavor;
  loadFormat: "safetensors" | "dummy";
  tensors?: { name: string; dtype: string; shape: number[]; file: string; offset: number; byteLength: number }[];
  dummySeed?: number;
  quantization: "none" | "fp8";
  kvCacheDtype: "auto" | "fp8";
  embeddingDevice: "host" | "gpu";
  lmHeadDtype: "auto" | "fp8";
  blockSize: number;
  numKvBlocks: number;
  gpuMemoryUtilization?: number;
  maxNumSeqs?: number;
  maxNumBatchedTokens?: number;
  maxModelLen?: number;
  cudaGraphs?: boolean;
}

export interface AddonLoadResult {
  kind: string;
  blockSize: number;
  numKvBlocks: number;
  weightBytes: number;
  kvCacheBytes: number;
}

/** The batch as flat typed arrays (see pack.ts). */
export interface PackedStep {
  tokens: Int32Array;
  blockTables: Int32Array;
  penaltyTokens: Int32Array;
  seqMeta: Int32Array;
  seqParams: Float64Array;
}

export interface PackedResult {
  seqIds: Int32Array;
  tokenIds: Int32Array;
  /** NaN where no logprob was asked for. */
  logprobs: Float64Array;
  /** -1: no logprobs; else the number of top entries of this row in topIds/topLogprobs. */
  topCounts: Int32Array;
  topIds: Int32Array;
  topLogprobs: Float64Array;
  logits: (Float32Array | null)[];
  /** The engine thread's host time for the step (CUDA flavor; absent where not measured). */
  hostPrepareUs?: number;
  hostReadbackUs?: number;
}

export interface AddonEngine {
  load(onProgress?: (p: { bytesDone: number; bytesTotal: number; file: string }) => void): Promise<AddonLoadResult>;
  step(packed: PackedStep): Promise<PackedResult>;
  close(): Promise<void>;
}

export interface NativeAddon {
  buildFlavor: NativeFlavor;
  probeDevice(): DeviceProbe;
  NativeEngine: new (options: AddonEngineOptions) => AddonEngine;
}

export interface LoadedAddon {
  addon: NativeAddon;
  flavor: NativeFlavor;
  path: string;
  /** One line for logs: which flavor was picked and why. */
  reason: string;
  device: DeviceProbe;
}

/** The native addon is not built (or cannot be loaded). */
export class NativeAddonError extends Error {
  override readonly name = "NativeAddonError";
}

/** gpu-node/native/build/Release, from src/engine/native or dist/engine/native alike; `SEVENTY_NATIVE_DIR` overrides. */
export function defaultAddonDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.SEVENTY_NATIVE_DIR) return resolve(env.SEVENTY_NATIVE_DIR);
  const here = dirname(fileURLToPath(import.meta.url));
  return resolve(here, "..", "..", "..", "native", "build", "Release");
}

const BUILD_HINT = "run `npm run native:build -w @seventy/gpu-node` (CPU flavor: `ENGINE_CUDA=OFF npm run native:build -w @seventy/gpu-node`)";

function requireAddon(path: string): NativeAddon {
  const require = createRequire(import.meta.url);
  try {
    return require(path) as NativeAddon;
  } catch (e) {
    throw new NativeAddonError(`cannot load the native addon ${path}: ${(e as Error).message}; rebuild it: ${BUILD_HINT}`, { cause: e });
  }
}

/**
 * Loads the addon of `want` ("auto": CUDA when built and a GPU is usable, else CPU).
 * Throws a `NativeAddonError` that says how to build it when the file is missing.
 *
 * @example
 * const { addon, flavor, reason } = loadNativeAddon("auto");
 * console.log(`native engine: ${flavor} (${reason})`);
 */
export function loadNativeAddon(want: NativeFlavor | "auto" = "auto", dir = defaultAddonDir()): LoadedAddon {
  const cudaPath = join(dir, "seventy_cuda.node");
  const cpuPath = join(dir, "seventy_cpu.node");
  let cudaWhyNot = "the CUDA flavor is not built (npm run native:build:cuda)";
  if (want !== "cpu" && existsSync(cudaPath)) {
    const addon = requireAddon(cudaPath);
    const device = addon.probeDevice();
    if (device.usable) {
      return { addon, flavor: "cuda", path: cudaPath, device, reason: `CUDA on ${device.name} (sm_${device.computeCapability})` };
    }
    cudaWhyNot = `no usable GPU: ${device.reason}`;
    if (want === "cuda") throw new NativeAddonError(`the CUDA native engine cannot run here: ${device.reason}`);
  } else if (want === "cuda") {
    throw new NativeAddonError(`the CUDA native addon is not built (${cudaPath} is missing); run \`npm run native:build:cuda -w @seventy/gpu-node\` on a machine with nvcc`);
  }
  if (existsSync(cpuPath)) {
    const addon = requireAddon(cpuPath);
    return { addon, flavor: "cpu", path: cpuPath, device: addon.probeDevice(), reason: `CPU flavor (${cudaWhyNot})` };
  }
  if (existsSync(cudaPath)) {
    // A CUDA build also carries the CPU backend.
    const addon = requireAddon(cudaPath);
    return { addon, flavor: "cpu", path: cudaPath, device: addon.probeDevice(), reason: `CPU backend of the CUDA build (${cudaWhyNot})` };
  }
  throw new NativeAddonError(`the native engine addon is not built (no ${cpuPath}); ${BUILD_HINT}`);
}
