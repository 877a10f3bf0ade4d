/**
 * Usage as nodes report it. A node is untrusted input: counts must be finite non-negative integers
 * within the request's reservation (a node cannot have generated more: the budget it enforces is
 * the reservation), else the report counts as no report at all.
 */

/** Tokens a request used. */
export interface TokenCount {
  promptTokens: number;
  completionTokens: number;
  /** Prompt tokens the node served from its prefix cache (reported, never charged differently). */
  cachedTokens?: number;
}

/** What a request's attempts used; `unknown` when one of them may have used tokens nobody reported. */
export interface Spent extends TokenCount {
  unknown: boolean;
}

export const NO_USAGE: Spent = { promptTokens: 0, completionTokens: 0, unknown: false };

function isCount(n: unknown): n is number {
  return typeof n === "number" && Number.isSafeInteger(n) && n >= 0;
}

/** A usage object (`{ prompt_tokens, completion_tokens }`) checked against `bound` tokens, or null. */
export function validUsage(u: unknown, bound: number): TokenCount | null {
  if (typeof u !== "object" || u === null) return null;
  const { prompt_tokens: p, completion_tokens: c, prompt_tokens_details: d } = u as Record<string, unknown>;
  if (!isCount(p) || !isCount(c) || p + c > bound) return null;
  const cached = typeof d === "object" && d !== null ? (d as Record<string, unknown>).cached_tokens : undefined;
  return { promptTokens: p, completionTokens: c, cachedTokens: isCount(cached) && cached <= p ? cached : 0 };
}

/** The node's `x-seventy-usage: <prompt>,<completion>[,<cached>]` header checked against `bound`, or null. */
export function usageFromHeader(value: string | null, bound: number): TokenCount | null {
  if (value === null) return null;
  const m = /^(\d{1,12}),(\d{1,12})(?:,(\d{1,12}))?$/.exec(value);
  if (!m) return null;
  return validUsage({ prompt_tokens: Number(m[1]), completion_tokens: Number(m[2]), prompt_tokens_details: { cached_tokens: Number(m[3] ?? 0) } }, bound);
}

/** `a` plus one more attempt's usage (null: unknown). */
export function addUsage(a: Spent, b: TokenCount | Spent | null): Spent {
  if (b === null) return { ...a, unknown: true };
  return {
    promptTokens: a.promptTokens + b.promptTokens,
    completionTokens: a.completionTokens + b.completionTokens,
    cachedTokens: (a.cachedTokens ?? 0) + (b.cachedTokens ?? 0),
    unknown: a.unknown || ("unknown" in b && b.unknown),
  };
}
