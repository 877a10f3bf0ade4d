import { retryAfterMs } from "../core/errors.js";

const INITIAL_DELAY_MS = 500;
const MAX_DELAY_MS = 8_000;
/** By default, a server hint longer than this is not waited for: the error goes to the caller, who can decide. */
export const DEFAULT_MAX_RETRY_DELAY_MS = 60_000;

/**
 * Whether a failed response may be sent again. Only called before the caller has seen a byte of
 * the response, so a retry can never duplicate or splice streamed output.
 *
 * - `x-should-retry: true|false` from the server wins: the edge knows whether the request reached a node.
 * - 408 (request timeout), 409 (lock conflict), 429 (rate limited) and every 5xx are transient.
 * - Everything else (400, 401, 403, 404, 422, …) will fail the same way again.
 */
export function isRetryableStatus(status: number, headers: Headers): boolean {
  const hint = headers.get("x-should-retry");
  if (hint === "true") return true;
  if (hint === "false") return false;
  return status === 408 || status === 409 || status === 429 || status >= 500;
}

/**
 * How long to wait before retry number `attempt` (1-based), or undefined for "do not retry".
 *
 * The server's `retry-after-ms` or `Retry-After` is honoured when it is at most `maxHintMs`
 * (60 s by default); a longer one means the caller should hear about it now rather than sit in a
 * hidden sleep.
 * Otherwise: exponential backoff from 0.5 s, doubling, capped at 8 s, minus up to 25 % jitter, so
 * that many clients rejected together do not come back together.
 */
export function retryDelayMs(
  attempt: number,
  headers: Headers | undefined,
  random: () => number = Math.random,
  maxHintMs: number = DEFAULT_MAX_RETRY_DELAY_MS,
): number | undefined {
  const hinted = retryAfterMs(headers);
  if (hinted !== undefined) return hinted <= maxHintMs ? hinted : undefined;
  const base = Math.min(INITIAL_DELAY_MS * 2 ** (attempt - 1), MAX_DELAY_MS);
  return base * (1 - random() * 0.25);
}
