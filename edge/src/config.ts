import type { Env } from "./env";

export interface EdgeConfig {
  nodeTtlMs: number;
  poolCacheMs: number;
  upstreamTimeoutMs: number;
  streamIdleTimeoutMs: number;
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

// The env object is the same for every request of an isolate, so parsing happens once.
const parsed = new WeakMap<object, EdgeConfig>();

export function config(env: Env): EdgeConfig {
  let cfg = parsed.get(env);
  if (cfg) return cfg;
  cfg = {
    nodeTtlMs: int(env.NODE_TTL_MS, 6000, 1),
    poolCacheMs: int(env.POOL_CACHE_MS, 1000),
    upstreamTimeoutMs: int(env.UPSTREAM_TIMEOUT_MS, 60_000, 1),
    streamIdleTimeoutMs: int(env.STREAM_IDLE_TIMEOUT_MS, 120_000, 1),
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
    leaseTtlMs: int(env.LEASE_TTL_MS, 900_000, 1000),
    logRequests: (env.LOG_LEVEL ?? "info").toLowerCase() !== "error",
    allowHttpLoopbackNodes: env.ALLOW_HTTP_LOOPBACK_NODES === "true",
  };
  parsed.set(env, cfg);
  return cfg;
}
