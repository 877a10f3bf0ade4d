import type { KeyLimiter } from "./limits/key-limiter";
import type { KeyRegistry } from "./keys/registry";
import type { NodePool } from "./pool/node-pool";

/**
 * Bindings of the edge worker (see wrangler.toml). Vars are strings as wrangler passes them;
 * `config()` parses them once with defaults.
 */
export interface Env {
  /** One object holds every key's record; the admin API's source of truth for listing. */
  KEY_REGISTRY: DurableObjectNamespace<KeyRegistry>;
  /** One object per key (named by the key's SHA-256): its record, buckets, leases and usage. */
  KEY_LIMITER: DurableObjectNamespace<KeyLimiter>;
  /** One object holds the pool of gpu-nodes fed by signed heartbeats. */
  NODE_POOL: DurableObjectNamespace<NodePool>;

  /** Secret: bearer token of the admin API. */
  ADMIN_TOKEN?: string;
  /**
   * Secret: the root from which every node's own keys are derived (see pool/node-keys.ts). Nodes
   * never see it; each gets its credential from `POST /admin/nodes`.
   */
  NODE_SECRET?: string;
  /** "true" lets nodes register http:// loopback URLs: for a local stack only (default false). */
  ALLOW_HTTP_LOOPBACK_NODES?: string;

  /** A node that has not sent a heartbeat for this long leaves the pool (default 6000 = 3 × 2 s). */
  NODE_TTL_MS?: string;
  /** How long an isolate reuses its snapshot of the pool before refreshing it (default 1000). */
  POOL_CACHE_MS?: string;
  /** Time allowed to a node until the first byte of its answer (default 60000). */
  UPSTREAM_TIMEOUT_MS?: string;
  /** A stream that sends nothing for this long is cut off with an error event (default 120000). */
  STREAM_IDLE_TIMEOUT_MS?: string;
  /** Nodes tried per request (default 3). */
  MAX_ATTEMPTS?: string;
  /** A node that refused a connection or timed out is skipped by this isolate for this long (default 5000). */
  NODE_EJECT_MS?: string;
  /** Largest accepted request body in bytes (default 1048576). */
  MAX_BODY_BYTES?: string;
  /** `*`, a comma-separated list of origins, or empty to send no CORS headers. */
  CORS_ORIGINS?: string;
  /** Limits given to a new key that does not name them. */
  DEFAULT_RPM?: string;
  DEFAULT_TPM?: string;
  DEFAULT_CONCURRENCY?: string;
  /** Completion tokens reserved when a request does not set max_tokens (default 1024). */
  DEFAULT_MAX_TOKENS?: string;
  /** Characters of the conversation head hashed for prefix affinity (default 1024). */
  AFFINITY_PREFIX_CHARS?: string;
  /** A lease whose release never arrived is reclaimed after this long (default 900000). */
  LEASE_TTL_MS?: string;
  /** `info` logs one line per request; `error` only failures (default info). */
  LOG_LEVEL?: string;
}
