import type { LlamaConfig, ProgressCallback, TensorInfo } from "../../model/types.js";
import type { MemoryPlan } from "../memory-plan.js";
import type { Engine, StepBatch, StepResult } from "../types.js";
import { loadNativeAddon, type AddonEngine, type AddonEngineOptions, type LoadedAddon, type NativeFlavor } from "./addon.js";
import { sampleToken } from "../sampling.js";
import { packStep, unpackResult } from "./pack.js";

export interface NativeEngineOptions {
  config: LlamaConfig;
  /** The checkpoint's tensors (from `listTensors` / `openModelDir`); not needed for `loadFormat: "dummy"`. */
  tensors?: ReadonlyMap<string, TensorInfo> | readonly TensorInfo[];
  /** "dummy": seeded random weights of the configured shape, made where they live (benchmarks). Default "safetensors". */
  loadFormat?: "safetensors" | "dummy";
  dummySeed?: number;
  /** "fp8": e4m3 weights with one scale per output channel, converted at load. Default "none". */
  quantization?: "none" | "fp8";
  /** "fp8": K/V stored as e4m3 (scale 1 per layer), half the bytes of "auto" (bf16 on CUDA, float32 on the CPU flavor). */
  kvCacheDtype?: "auto" | "fp8";
  /**
   * CUDA: "host" (default) keeps the bf16 embedding table in host memory and uploads each step's rows
   * (identical logits, the table's bytes go to the KV cache); "gpu" keeps it on the device. The CPU
   * flavor holds everything in host memory either way.
   */
  embeddingDevice?: "host" | "gpu";
  /** "fp8": lm_head quantized at load to e4m3 with one scale per vocab row (half the bytes). Default "auto" (as stored). */
  lmHeadDtype?: "auto" | "fp8";
  /** The plan this engine was sized by (reported, not enforced, by the engine). */
  memoryPlan?: MemoryPlan;
  /** Default 16. */
  blockSize?: number;
  /** Omitted: the CUDA flavor sizes the cache from free memory; the CPU flavor takes 4096 blocks (as the reference engine). */
  numKvBlocks?: number;
  /** CUDA: the fraction of device memory the engine may use (weights + KV cache + workspace). Default 0.9. */
  gpuMemoryUtilization?: number;
  maxNumSeqs?: number;
  maxNumBatchedTokens?: number;
  maxModelLen?: number;
  /** CUDA: replay decode steps from captured graphs. Default true. */
  cudaGraphs?: boolean;
  /** "auto" (default): CUDA when built and a GPU is usable, else CPU. */
  flavor?: NativeFlavor | "auto";
  /** Directory holding the built `.node` files (default gpu-node/native/build/Release). */
  addonDir?: string;
  onProgress?: ProgressCallback;
}

/**
 * The engine contract implemented by the C++/CUDA addon. Each `step()` is one call into a native
 * thread that owns the engine (and the CUDA context); the promise settles when the sampled ids are
 * back on the host.
 *
 * @example
 * const engine = await NativeEngine.create({ config: model.config, tensors: model.tensors, numKvBlocks: 512 });
 * console.log(engine.kind, engine.reason); // "native-cpu", "CPU flavor (no usable GPU: ...)"
 */
export class NativeEngine implements Engine {
  readonly kind: string;
  readonly blockSize: number;
  readonly numKvBlocks: number;
  /** Why this flavor was picked, for logs. */
  readonly reason: string;
  readonly weightBytes: number;
  readonly kvCacheBytes: number;
  readonly memoryPlan?: MemoryPlan;
  /** The addon's thread runs steps in call order and fills `tokenFromPreviousStep` from the previous step's samples. */
  readonly overlapsSteps = true;
  private native: AddonEngine | null;

  private constructor(
    native: AddonEngine,
    info: { kind: string; blockSize: number; numKvBlocks: number; weightBytes: number; kvCacheBytes: number },
    reason: string,
    memoryPlan: MemoryPlan | undefined,
  ) {
    if (memoryPlan) this.memoryPlan = memoryPlan;
    this.native = native;
    this.kind = info.kind;
    this.blockSize = info.blockSize;
    this.numKvBlocks = info.numKvBlocks;
    this.weightBytes = info.weightBytes;
    this.kvCacheBytes = info.kvCacheBytes;
    this.reason = reason;
  }

  /** Loads the addon, then the weights (reporting to `onProgress`), and allocates the KV cache. */
  static async create(opts: NativeEngineOptions): Promise<NativeEngine> {
    const loaded: LoadedAddon = loadNativeAddon(opts.flavor ?? "auto", opts.addonDir);
    const native = new loaded.addon.NativeEngine(addonOptions(opts, loaded.flavor));
    const onProgress = opts.onProgress;
    let info;
    try {
      info = await native.load(onProgress ? (p) => onProgress({ bytesDone: p.bytesDone, bytesTotal: p.bytesTotal, file: p.file }) : undefined);
    } catch (e) {
      await native.close().catch(() => {});
      throw e;
    }
    return new NativeEngine(native, info, loaded.reason, opts.memoryPlan);
  }

  async step(batch: StepBatch): Promise<StepResult> {
    if (!this.native) throw new Error("NativeEngine is closed");
    if (!batch.seqs.some((s) => s.sample?.allowedTokens)) return unpackResult(await this.native.step(packStep(batch)));
    // Constrained sequences: the addon returns their raw logits with the step, and the token is
    // sampled here under the mask (sampling.ts follows sampling.cpp's procedure exactly). The masks
    // are being computed while the step runs on the engine's thread; they are awaited only after it.
    const packed = packStep({ seqs: batch.seqs.map((s) => (s.sample?.allowedTokens ? { ...s, returnLogits: true } : s)) });
    const result = unpackResult(await this.native.step(packed));
    if (batch.masksReady) await batch.masksReady;
    const bySeq = new Map(batch.seqs.map((s) => [s.seqId, s]));
    for (const entry of result.sampled) {
      const s = bySeq.get(entry.seqId);
      if (!s?.sample?.allowedTokens || !entry.logits) continue;
      const { tokenId, logprob, topLogprobs } = sampleToken(entry.logits, s.sample);
      entry.tokenId = tokenId;
      if (logprob !== undefined) entry.logprob = logprob;
      if (topLogprobs !== undefined) entry.topLogprobs = topLogprobs;
      if (!s.returnLogits) delete entry.logits;
    }
    return result;
  }

  async close(): Promise<void> {
    const native = this.native;
    this.native = null;
    if (native) await native.close();
  }
}

const CPU_DEFAULT_KV_BLOCKS = 4096;

function addonOptions(o: NativeEngineOptions, flavor: NativeFlavor): AddonEngineOptions {
  const c = o.config;
  const loadFormat = o.loadFormat ?? "safetensors";
  let tensors: AddonEngineOptions["tensors"];
  if (loadFormat === "safetensors") {
    if (!o.tensors) throw new Error("NativeEngine: tensors are required unless loadFormat is \"dummy\"");
    const list = o.tensors instanceof Map ? [...o.tensors.values()] : [...(o.tensors as readonly TensorInfo[])];
    tensors = list.map((t) => ({ name: t.name, dtype: t.dtype, shape: [...t.shape], file: t.file, offset: t.offset, byteLength: t.byteLength }));
  }
  return {
    config: {
      hiddenSize: c.hiddenSize,
      intermediateSize: c.intermediateSize,
      numHiddenLayers: c.numHiddenLayers,
      numAttentionHeads: c.numAttentionHeads,
      numKeyValueHeads: c.numKeyValueHeads,
      headDim: c.headDim,
      vocabSize: c.vocabSize,
      rmsNormEps: c.rmsNormEps,
      ropeTheta: c.ropeTheta,
      tieWordEmbeddings: c.tieWordEmbeddings,
      ropeScaling: c.ropeScaling
        ? {
            factor: c.ropeScaling.factor,
            lowFreqFactor: c.ropeScaling.lowFreqFactor,
            highFreqFactor: c.ropeScaling.highFreqFactor,
            originalMaxPositionEmbeddings: c.ropeScaling.originalMaxPositionEmbeddings,
          }
        : null,
    },
    backend: flavor,
    loadFormat,
    tensors,
    dummySeed: o.dummySeed ?? 0,
    quantization: o.quantization ?? "none",
    kvCacheDtype: o.kvCacheDtype ?? "auto",
    embeddingDevice: o.embeddingDevice ?? "host",
    lmHeadDtype: o.lmHeadDtype ?? "auto",
    blockSize: o.blockSize ?? 16,
    numKvBlocks: o.numKvBlocks ?? (flavor === "cpu" ? CPU_DEFAULT_KV_BLOCKS : 0),
    gpuMemoryUtilization: o.gpuMemoryUtilization ?? 0.9,
    maxNumSeqs: o.maxNumSeqs ?? 256,
    maxNumBatchedTokens: o.maxNumBatchedTokens ?? 8192,
    maxModelLen: o.maxModelLen ?? c.maxPositionEmbeddings,
    cudaGraphs: o.cudaGraphs ?? true,
  };
}
