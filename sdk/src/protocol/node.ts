import * as z from "zod";

/** A node id: lowercase letters, digits and '-', 1-63 characters (it appears in credentials and URLs). */
export const NODE_ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

/**
 * What a gpu-node reports to the edge in its signed heartbeat (`POST /internal/nodes/heartbeat`),
 * and what the edge keeps about each node in its pool. The node id and URL must be the ones the
 * node was registered with.
 */
export const nodeHeartbeatSchema = z.object({
  node_id: z.string().regex(NODE_ID_PATTERN, "must be 1-63 lowercase letters, digits or '-'"),
  /** Base URL the edge forwards requests to: must equal the URL the node was registered with. */
  url: z.string().url(),
  models: z.array(z.string().max(256)).min(1).max(16),
  engine: z.string().max(64),
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

/**
 * A node's credential, as the admin API hands it out once and the node reads it from
 * SEVENTY_NODE_CREDENTIAL: `snc1.<node id>.<edge key>.<node key>`. The edge key verifies requests
 * the edge sends to this node; the node key signs this node's heartbeats. Both are 256-bit keys
 * (base64url) that belong to this node alone.
 */
export interface NodeCredential {
  nodeId: string;
  /** Edge → node: the node verifies forwarded requests with it. */
  edgeKey: string;
  /** Node → edge: the node signs heartbeats with it. */
  nodeKey: string;
}

const KEY_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export function formatNodeCredential(c: NodeCredential): string {
  return `snc1.${c.nodeId}.${c.edgeKey}.${c.nodeKey}`;
}

/** The credential, or null when the string is not one (never echo it: it is a secret). */
export function parseNodeCredential(s: string): NodeCredential | null {
  const parts = s.trim().split(".");
  if (parts.length !== 4 || parts[0] !== "snc1") return null;
  const [, nodeId, edgeKey, nodeKey] = parts as [string, string, string, string];
  if (!NODE_ID_PATTERN.test(nodeId) || !KEY_PATTERN.test(edgeKey) || !KEY_PATTERN.test(nodeKey)) return null;
  return { nodeId, edgeKey, nodeKey };
}

const LOOPBACK_HOSTNAME = /^(localhost|127\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[::1\])$/i;

/**
 * Why `url` cannot be a node's URL, or null when it can. The edge sends users' prompts there, so:
 * https only (http only to a loopback host, and only where `allowHttpLoopback`, i.e. a local dev
 * stack); no user name or password, no query string, no fragment.
 */
export function nodeUrlProblem(url: string, allowHttpLoopback: boolean): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return "is not a URL";
  }
  if (u.username || u.password) return "must not carry credentials";
  if (u.search || url.includes("?")) return "must not have a query string";
  if (u.hash || url.includes("#")) return "must not have a fragment";
  if (u.protocol === "https:") return null;
  if (u.protocol === "http:") {
    if (!LOOPBACK_HOSTNAME.test(u.hostname)) return "must use https (http is allowed for loopback hosts in a local stack only)";
    return allowHttpLoopback ? null : "must use https (http to loopback is allowed in a local stack only: ALLOW_HTTP_LOOPBACK_NODES)";
  }
  return "must use https";
}

/** A node URL without trailing slashes, as the edge stores and compares it (everything else kept). */
export function normalizeNodeUrl(url: string): string {
  const u = new URL(url);
  u.pathname = u.pathname.replace(/\/+$/, "") || "/";
  const href = u.href;
  return u.pathname === "/" && !u.search && !u.hash ? href.slice(0, -1) : href;
}
