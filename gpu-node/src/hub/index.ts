export { cachedCommit, findCachedSnapshot, isRepoId, repoFolder } from "./cache.js";
export { downloadModel, formatDownloadResult, planDownload } from "./download.js";
export type { DownloadOptions, DownloadPlan, DownloadResult } from "./download.js";
export { hubEnv } from "./env.js";
export type { HubEnv } from "./env.js";
export { HubError } from "./errors.js";
export { isNeededFile } from "./files.js";
export { resolveModel } from "./resolve.js";
export type { ResolvedModel } from "./resolve.js";
