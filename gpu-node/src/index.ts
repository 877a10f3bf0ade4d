export { startNode, type NodeOptions, type RunningNode } from "./node.js";
export { createApp } from "./server/app.js";
export type { Engine, StepBatch, StepResult, SeqStep, SamplingParams } from "./engine/types.js";
export { makeTinyModel, ensureTinyModel, openModelDir } from "./model/index.js";
