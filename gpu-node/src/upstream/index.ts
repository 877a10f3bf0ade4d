export { normalizeUpstreamError } from "./errors.js";
export { loadFromMetrics, parsePrometheusText } from "./load.js";
export type { UpstreamLoad } from "./load.js";
export { startUpstreamNode } from "./node.js";
export type { RunningUpstreamNode, UpstreamNodeOptions } from "./node.js";
export { probeUpstream } from "./probe.js";
export type { UpstreamState } from "./probe.js";
