/** The admin API's shapes, as the edge serves them under `/admin` (types only: the edge validates admin input itself). */

export interface KeyLimits {
  /** Requests per minute. */
  rpm: number;
  /** Tokens (prompt + completion) per minute. */
  tpm: number;
  /** Requests in flight at once. */
  concurrency: number;
}

/** A hard cap on tokens per UTC day or month. */
export interface KeyBudget {
  tokens: number;
  period: "day" | "month";
}

export interface ApiKey {
  id: string;
  object: "api_key";
  name: string;
  /** The first characters of the key, to recognise it by. */
  prefix: string;
  /** Unix seconds. */
  created: number;
  disabled: boolean;
  /** null: every model. */
  models: string[] | null;
  limits: KeyLimits;
  budget: KeyBudget | null;
  /** Unix seconds after which the key is refused (401 `key_expired`); null: never. */
  expires_at: number | null;
  /** Keys with the same salt share gpu-node prefix caches (one tenant); null: the key's cache is its own. */
  cache_salt: string | null;
}

/** `keys.create()`'s answer: the only time the secret key is shown. */
export interface CreatedApiKey extends ApiKey {
  key: string;
}

export interface ApiKeyWithState extends ApiKey {
  state: {
    in_flight: number;
    reserved_tokens: number;
    remaining_requests: number;
    remaining_tokens: number;
  };
}

export interface KeyCreateParams {
  name: string;
  /** Import this exact key (`sk-…`) instead of generating one. */
  key?: string;
  models?: string[] | null;
  /** Unset limits take the edge's defaults. */
  limits?: Partial<KeyLimits>;
  budget?: KeyBudget | null;
  disabled?: boolean;
  /** Unix seconds in the future after which the key is refused; null: never (the default). */
  expires_at?: number | null;
  cache_salt?: string | null;
}

export interface KeyUpdateParams {
  name?: string;
  models?: string[] | null;
  /** Merged into the current limits. */
  limits?: Partial<KeyLimits>;
  budget?: KeyBudget | null;
  disabled?: boolean;
  /** Unix seconds in the future after which the key is refused; null: never (the default). */
  expires_at?: number | null;
  cache_salt?: string | null;
}

export interface DeletedApiKey {
  id: string;
  object: "api_key";
  deleted: true;
}

export interface GpuNode {
  id: string;
  object: "node";
  /** The only URL the edge sends this node's requests to (set at registration). */
  url: string;
  models: string[];
  engine: string | null;
  /** "registered": no heartbeat yet with the current credential. */
  status: "registered" | "healthy" | "draining" | "gone";
  drained_by_admin: boolean;
  /** Unix seconds of registration. */
  created: number;
  capacity: { max_num_seqs: number; kv_blocks_total: number; max_model_len: number } | null;
  load: { running: number; waiting: number; kv_usage: number; prefix_cache_hit_rate?: number } | null;
  last_heartbeat_ms_ago: number | null;
}

export interface NodeRegisterParams {
  /** 1-63 lowercase letters, digits or '-'; never reusable while registered. */
  id: string;
  /** https (http only to loopback in a local stack); no credentials, query or fragment. */
  url: string;
}

/** Registration and rotation answers: the only time the node's credential is shown. */
export interface RegisteredGpuNode extends GpuNode {
  /** For SEVENTY_NODE_CREDENTIAL on the node: `snc1.<id>.<edge key>.<node key>`. */
  credential: string;
}

export interface DeletedGpuNode {
  id: string;
  object: "node";
  deleted: true;
}

export interface UsageDay {
  /** YYYY-MM-DD (UTC). */
  day: string;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  errors: number;
  rate_limited: number;
}

export interface UsageParams {
  /** A key id; all keys when left out. */
  key?: string;
  /** YYYY-MM-DD, inclusive. */
  from?: string;
  to?: string;
}

export interface UsageReport {
  object: "list";
  key: string | null;
  data: UsageDay[];
}

/** One bucket of a usage series: what requests that ended in [start, start + step) used. */
export interface UsageBucket {
  /** Epoch ms. */
  start: number;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  cached_tokens: number;
  errors: number;
}

export interface UsageSeriesParams {
  /** `hour`: the last 60 minutes by minute; `month`: the last 30 days by UTC day. */
  window: "hour" | "month";
}

/** Usage over time per key, every key's buckets aligned on the same starts. */
export interface UsageSeries {
  object: "usage_series";
  window: "hour" | "month";
  /** Bucket width in ms. */
  step: number;
  keys: { id: string; name: string; prefix: string; revoked: boolean; buckets: UsageBucket[] }[];
}

export interface List<T> {
  object: "list";
  data: T[];
}
