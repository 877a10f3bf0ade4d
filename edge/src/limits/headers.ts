import type { RateSnapshot } from "./key-limiter";

/** Durations the way OpenAI writes them in x-ratelimit-reset-*: "20ms", "1.5s", "6m0s". */
export function formatResetDuration(ms: number): string {
  const t = Math.max(0, Math.ceil(ms));
  if (t < 1000) return `${t}ms`;
  if (t < 60_000) return `${+(t / 1000).toFixed(3)}s`;
  const h = Math.floor(t / 3_600_000);
  const m = Math.floor((t % 3_600_000) / 60_000);
  const s = +((t % 60_000) / 1000).toFixed(3);
  return h > 0 ? `${h}h${m}m${s}s` : `${m}m${s}s`;
}

export function rateLimitHeaders(r: RateSnapshot): Record<string, string> {
  return {
    "x-ratelimit-limit-requests": String(r.limitRequests),
    "x-ratelimit-remaining-requests": String(r.remainingRequests),
    "x-ratelimit-reset-requests": formatResetDuration(r.resetRequestsMs),
    "x-ratelimit-limit-tokens": String(r.limitTokens),
    "x-ratelimit-remaining-tokens": String(r.remainingTokens),
    "x-ratelimit-reset-tokens": formatResetDuration(r.resetTokensMs),
  };
}
