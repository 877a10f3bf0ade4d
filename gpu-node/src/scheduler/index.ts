export { hashBlockTokens, type BlockHash } from "./block-hash.js";
export { BlockPool } from "./block-pool.js";
export {
  EngineStepError,
  InvalidRequestError,
  QueueFullError,
  RequestTooLargeError,
  SchedulerClosedError,
  SchedulerError,
} from "./errors.js";
export { KvCacheManager, type ComputedBlocks, type KvRequest } from "./kv-cache-manager.js";
export type { FinishReason, GenerationRequest, RequestStatus, SeqEvent } from "./request.js";
export {
  Scheduler,
  type ScheduledRequest,
  type SchedulerOptions,
  type SchedulerOutput,
  type SchedulerStats,
} from "./scheduler.js";
