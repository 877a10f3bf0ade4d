export { probeEdge } from "./edge.js";
export type { EdgeProbe } from "./edge.js";
export { systemFacts } from "./facts.js";
export type { AddonReport, DoctorFacts, GpuInfo, GpuReport, ModelFacts } from "./facts.js";
export { archRuns, formatDoctor, runDoctor } from "./run.js";
export type { CheckResult, CheckStatus, DoctorOptions } from "./run.js";
