export { startNode, type NodeOptions, type RunningNode } from "./node.js";
export { createApp } from "./server/app.js";
export type { Engine, StepBatch, StepResult, SeqStep, SamplingParams } from "./engine/types.js";
export { makeTinyModel, ensureTinyModel, openModelDir } from "./model/index.js";
export { downloadModel, resolveModel, hubEnv, HubError, type DownloadOptions, type DownloadResult, type HubEnv } from "./hub/index.js";
export { startUpstreamNode, type UpstreamNodeOptions, type RunningUpstreamNode } from "./upstream/index.js";
export { runDoctor, formatDoctor, systemFacts, type DoctorFacts, type DoctorOptions, type CheckResult } from "./doctor/index.js";
