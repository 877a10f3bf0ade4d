export type * from "./types.js";
export { ReferenceEngine, type ReferenceEngineOptions } from "./reference/reference-engine.js";
export { ThreadedReferenceEngine } from "./reference/threaded-engine.js";
export { validateStepBatch, type StepLimits } from "./reference/validate.js";
export { ropeInvFreq, applyLlama3Scaling } from "./reference/rope.js";
export { resolveLlamaWeights, type LlamaWeights, type LlamaLayerWeights } from "./reference/weights.js";
export { SimulatedEngine, DEFAULT_TOKEN_CYCLE, type SimulatedEngineOptions } from "./simulated.js";
export {
  sampleToken,
  applyPenalties,
  checkSamplingParams,
  topKIndices,
  argmax,
  logSumExp,
  SAMPLING_EPS,
  GREEDY_SAMPLING,
  type SampleOutcome,
} from "./sampling.js";
export { uniformFor } from "./rng.js";
