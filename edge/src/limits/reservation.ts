import type { ChatCompletionRequest, CompletionRequest } from "@seventy/sdk/protocol";

/**
 * Tokens the template adds around a conversation beyond what its JSON body spells out (the Llama
 * 3.1 default system header, the tool preamble, BOS and the generation prompt).
 */
export const PROMPT_OVERHEAD_TOKENS = 256;

/** What the edge reserves for a request before forwarding it: the most it can use. */
export interface Reservation {
  /** Upper bound of the prompt tokens, every prompt together. */
  prompt: number;
  /** Completions generated: prompts × n. */
  sequences: number;
  /** Completion tokens each sequence may use (max_tokens, or DEFAULT_MAX_TOKENS when absent). */
  perSequence: number;
  /** prompt + sequences × perSequence: reserved, signed into the request, enforced by the node. */
  total: number;
}

/** Prompts in a completions request (a string, a token list, or a list of either). */
export function promptCount(prompt: CompletionRequest["prompt"]): number {
  if (typeof prompt === "string") return 1;
  if (prompt.length === 0) return 1;
  return typeof prompt[0] === "number" ? 1 : prompt.length;
}

/**
 * The reservation of a request. The prompt bound holds for the byte-level BPE tokenizers the
 * nodes serve: every token covers at least one byte, so a prompt has at most as many tokens as
 * its JSON body has bytes (escapes and framing only add bytes), plus the template's overhead;
 * and no prompt is longer than the model's context. The completion part is exact: the node stops
 * every sequence at `perSequence` and refuses a request whose worst case exceeds `total`.
 */
export function reservationFor(
  bodyBytes: number,
  req: Pick<ChatCompletionRequest, "max_tokens" | "n"> & { max_completion_tokens?: number | undefined; prompt?: CompletionRequest["prompt"] },
  defaultMaxTokens: number,
  maxModelLen: number,
): Reservation {
  const prompts = req.prompt === undefined ? 1 : promptCount(req.prompt);
  const prompt = Math.min(bodyBytes + PROMPT_OVERHEAD_TOKENS, prompts * maxModelLen);
  const sequences = prompts * (req.n ?? 1);
  const perSequence = Math.min(req.max_completion_tokens ?? req.max_tokens ?? defaultMaxTokens, maxModelLen);
  return { prompt, sequences, perSequence, total: prompt + sequences * perSequence };
}
