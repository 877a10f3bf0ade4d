import type { KeyLimiter } from "./limits/key-limiter";
import type { KeyRegistry } from "./keys/registry";
import type { NodePool } from "./pool/node-pool";
import type { ResponseStore } from "./responses/store";

/**
 * Bindings of the edge worker (see wrangler.toml). Vars are strings as wrangler passes them;
 * `config()` parses them once with defaults.
 */
export interface Env {
  /** Only in a local stack under bare workerd: the dashboard's static files (in production the asset layer serves them). */
  ASSETS?: Fetcher;
  /** One object holds every key's record; the admin API's source of truth for listing. */
  KEY_REGISTRY: DurableObjectNamespace<KeyRegistry>;
  /** One object per key (named by the key's SHA-256): its record, buckets, leases and usage. */
  KEY_LIMITER: DurableObjectNamespace<KeyLimiter>;
  /** One object holds the pool of gpu-nodes fed by signed heartbeats. */
  NODE_POOL: DurableObjectNamespace<NodePool>;
  /** One object per key (named by the key's SHA-256): the key's stored responses. */
  RESPONSE_STORE: DurableObjectNamespace<ResponseStore>;

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
  /** Time allowed to a node until the first byte of a stream (default 60000). */
  UPSTREAM_TIMEOUT_MS?: string;
  /** Time allowed to a node until the headers of a stream, per attempt; then the next node (default 2000). */
  CONNECT_TIMEOUT_MS?: string;
  /** Time allowed to a node for a whole non-stream answer; never re-run after it (default 600000). */
  REQUEST_TIMEOUT_MS?: string;
  /** A stream that sends nothing for this long is cut off with an error event (default 120000). */
  STREAM_IDLE_TIMEOUT_MS?: string;
  /** A stream's client is sent an SSE comment after this long without bytes; 0: never (default 15000). */
  STREAM_KEEPALIVE_MS?: string;
  /** The longest a stream may run; then it ends with an error event (default 1800000). */
  MAX_STREAM_MS?: string;
  /** Largest non-stream answer passed on, in bytes (default 8388608). */
  MAX_RESPONSE_BYTES?: string;
  /** Largest single SSE event passed on, in bytes (default 1048576). */
  MAX_EVENT_BYTES?: string;
  /** How long the edge waits for a node it told to stop to report its usage (default 5000). */
  CANCEL_DRAIN_MS?: string;
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
  /** A lease not renewed (every third of this) and never released is reclaimed after this long (default 120000). */
  LEASE_TTL_MS?: string;
  /** Stored responses are kept this long (default 2592000000 = 30 days). */
  RESPONSES_RETENTION_MS?: string;
  /** Bytes of stored responses one key may keep; the oldest go first (default 67108864). */
  RESPONSES_MAX_BYTES?: string;
  /** `info` logs one line per request; `error` only failures (default info). */
  LOG_LEVEL?: string;
}
