import * as z from "zod";

/**
 * What a gpu-node reports to the edge in its signed heartbeat (`POST /internal/nodes/heartbeat`),
 * and what the edge keeps about each node in its pool.
 */
export const nodeHeartbeatSchema = z.object({
  node_id: z.string().min(1).max(128),
  /** Base URL the edge forwards requests to (https in production). */
  url: z.string().url(),
  models: z.array(z.string()).min(1),
  engine: z.string(),
  capacity: z.object({
    max_num_seqs: z.number().int().min(1),
    kv_blocks_total: z.number().int().min(0),
    max_model_len: z.number().int().min(1),
  }),
  load: z.object({
    running: z.number().int().min(0),
    waiting: z.number().int().min(0),
    /** Fraction of KV blocks in use, 0..1. */
    kv_usage: z.number().min(0).max(1),
    /** Prompt tokens found in the prefix cache / prompt tokens looked up, 0..1, since the node started. */
    prefix_cache_hit_rate: z.number().min(0).max(1).optional(),
  }),
  /** A draining node finishes its streams and takes no new requests. */
  draining: z.boolean().optional(),
});
export type NodeHeartbeat = z.infer<typeof nodeHeartbeatSchema>;

/** Headers the edge and gpu-node exchange. */
export const HEADER_REQUEST_ID = "x-request-id";
