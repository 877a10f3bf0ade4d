import type { Env } from "./env";

export interface EdgeConfig {
  nodeTtlMs: number;
  poolCacheMs: number;
  upstreamTimeoutMs: number;
  connectTimeoutMs: number;
  requestTimeoutMs: number;
  streamIdleTimeoutMs: number;
  streamKeepAliveMs: number;
  maxStreamMs: number;
  maxResponseBytes: number;
  maxEventBytes: number;
  cancelDrainMs: number;
  maxAttempts: number;
  nodeEjectMs: number;
  maxBodyBytes: number;
  /** null: no CORS headers at all. */
  corsOrigins: "*" | string[] | null;
  defaultLimits: { rpm: number; tpm: number; concurrency: number };
  defaultMaxTokens: number;
  affinityPrefixChars: number;
  leaseTtlMs: number;
  logRequests: boolean;
  /** Lets nodes register with http:// loopback URLs (a local stack only). */
  allowHttpLoopbackNodes: boolean;
}

function int(value: string | undefined, fallback: number, min = 0): number {
  if (value === undefined || value.trim() === "") return fallback;
  const n = Number(value);
  return Number.isFinite(n) && n >= min ? Math.floor(n) : fallback;
}

function corsOrigins(value: string | undefined): EdgeConfig["corsOrigins"] {
  const v = value?.trim();
  if (!v) return null;
  if (v === "*") return "*";
  return v.split(",").map((s) => s.trim()).filter(Boolean);
}

/**
 * A stream's client is sent an SSE comment after this long without bytes. The HTML standard's
 * advice for SSE is a comment about every 15 s: well inside the idle timeouts of common proxies and
 * load balancers (30 to 100 s), and under bare workerd a client that left a silent stream is
 * noticed by the failed write within about two periods instead of at STREAM_IDLE_TIMEOUT_MS.
 */
export const DEFAULT_STREAM_KEEPALIVE_MS = 15_000;

// The env object is the same for every request of an isolate, so parsing happens once.
const parsed = new WeakMap<object, EdgeConfig>();

export function config(env: Env): EdgeConfig {
  let cfg = parsed.get(env);
  if (cfg) return cfg;
  cfg = {
    nodeTtlMs: int(env.NODE_TTL_MS, 6000, 1),
    poolCacheMs: int(env.POOL_CACHE_MS, 1000),
    upstreamTimeoutMs: int(env.UPSTREAM_TIMEOUT_MS, 60_000, 1),
    connectTimeoutMs: int(env.CONNECT_TIMEOUT_MS, 2000, 1),
    requestTimeoutMs: int(env.REQUEST_TIMEOUT_MS, 600_000, 1),
    streamIdleTimeoutMs: int(env.STREAM_IDLE_TIMEOUT_MS, 120_000, 1),
    streamKeepAliveMs: int(env.STREAM_KEEPALIVE_MS, DEFAULT_STREAM_KEEPALIVE_MS),
    maxStreamMs: int(env.MAX_STREAM_MS, 1_800_000, 1),
    maxResponseBytes: int(env.MAX_RESPONSE_BYTES, 8 << 20, 1024),
    maxEventBytes: int(env.MAX_EVENT_BYTES, 1 << 20, 1024),
    cancelDrainMs: int(env.CANCEL_DRAIN_MS, 5000, 1),
    maxAttempts: int(env.MAX_ATTEMPTS, 3, 1),
    nodeEjectMs: int(env.NODE_EJECT_MS, 5000),
    maxBodyBytes: int(env.MAX_BODY_BYTES, 1 << 20, 1),
    corsOrigins: corsOrigins(env.CORS_ORIGINS),
    defaultLimits: {
      rpm: int(env.DEFAULT_RPM, 60, 1),
      tpm: int(env.DEFAULT_TPM, 200_000, 1),
      concurrency: int(env.DEFAULT_CONCURRENCY, 8, 1),
    },
    defaultMaxTokens: int(env.DEFAULT_MAX_TOKENS, 1024, 1),
    affinityPrefixChars: int(env.AFFINITY_PREFIX_CHARS, 1024, 1),
    leaseTtlMs: int(env.LEASE_TTL_MS, 120_000, 1000),
    logRequests: (env.LOG_LEVEL ?? "info").toLowerCase() !== "error",
    allowHttpLoopbackNodes: env.ALLOW_HTTP_LOOPBACK_NODES === "true",
  };
  parsed.set(env, cfg);
  return cfg;
}
