import type { NodeContext } from "./context.js";
import { HttpError } from "./http-error.js";

/**
 * Caps on the work one request may ask of a node, checked before anything expensive (tokenization,
 * template rendering, admission) happens. Each refusal is a 400 naming the parameter and the cap,
 * so a client can fix its request. Shared by every generation route.
 */
export interface RequestLimits {
  /** Sequences one request may start: prompts × n. */
  maxSequencesPerRequest: number;
  /** Prompt characters per token of context: a prompt longer than maxModelLen × this cannot fit. */
  maxCharsPerToken: number;
  /** Serialized size of all tool definitions, in characters. */
  maxToolsChars: number;
  /** Nesting depth of any JSON schema (tool parameters, response formats). */
  maxSchemaDepth: number;
  /** Characters per stop string (the count is capped at 4 by the protocol). */
  maxStopChars: number;
  /** Logprob entries one request may produce: sequences × (top_logprobs + 1) × max_tokens. */
  maxLogprobEntries: number;
}

export const DEFAULT_REQUEST_LIMITS: RequestLimits = {
  maxSequencesPerRequest: 64,
  maxCharsPerToken: 8,
  maxToolsChars: 128 * 1024,
  maxSchemaDepth: 32,
  maxStopChars: 256,
  maxLogprobEntries: 1 << 18,
};

/** prompts × n must stay within the per-request cap. */
export function checkSequences(ctx: NodeContext, numPrompts: number, n: number): void {
  const max = ctx.limits.maxSequencesPerRequest;
  if (numPrompts * n > max) {
    const what = numPrompts > 1 ? `${numPrompts} prompts × n ${n} = ${numPrompts * n} sequences` : `n ${n}`;
    throw new HttpError(400, `This request asks for ${what}; a request may start at most ${max} sequences.`, {
      param: numPrompts > 1 && n === 1 ? "prompt" : "n",
      code: "too_many_sequences",
    });
  }
}

/** Refuses prompts whose length in characters alone shows they cannot fit the context. */
export function checkPromptChars(ctx: NodeContext, chars: number, param: string): void {
  const max = ctx.maxModelLen * ctx.limits.maxCharsPerToken;
  if (chars > max) {
    throw new HttpError(
      400,
      `The prompt has ${chars} characters; this node accepts at most ${max} (its context is ${ctx.maxModelLen} tokens).`,
      { param, code: "prompt_too_long" },
    );
  }
}

/** Total characters of every string in a JSON value (message contents, tool calls, names). */
export function countChars(value: unknown): number {
  if (typeof value === "string") return value.length;
  let n = 0;
  if (Array.isArray(value)) for (const v of value) n += countChars(v);
  else if (value !== null && typeof value === "object") for (const [k, v] of Object.entries(value)) n += k.length + countChars(v);
  return n;
}

/** Nesting depth of a JSON value, stopping as soon as it passes `limit` (so a hostile value costs O(limit)). */
function depthExceeds(value: unknown, limit: number): boolean {
  if (limit < 0) return true;
  if (value === null || typeof value !== "object") return false;
  for (const v of Array.isArray(value) ? value : Object.values(value)) if (depthExceeds(v, limit - 1)) return true;
  return false;
}

/** A JSON schema (tool parameters, a response format) nested deeper than the cap is a 400. */
export function checkSchemaDepth(ctx: NodeContext, schema: unknown, param: string): void {
  if (depthExceeds(schema, ctx.limits.maxSchemaDepth)) {
    throw new HttpError(400, `The schema is nested more than ${ctx.limits.maxSchemaDepth} levels deep.`, { param, code: "schema_too_deep" });
  }
}

/** Tool definitions: each schema's depth, then their total size. */
export function checkTools(ctx: NodeContext, tools: ReadonlyArray<{ function: { parameters?: unknown } }>): void {
  tools.forEach((t, i) => checkSchemaDepth(ctx, t.function.parameters, `tools[${i}].function.parameters`));
  const size = JSON.stringify(tools).length;
  if (size > ctx.limits.maxToolsChars) {
    throw new HttpError(400, `The tool definitions are ${size} characters long; at most ${ctx.limits.maxToolsChars} are accepted.`, {
      param: "tools",
      code: "tools_too_large",
    });
  }
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Stop strings: non-empty ones kept, each within the length cap and well-formed UTF-16. */
export function checkStopStrings(ctx: NodeContext, stop: string | string[] | undefined): string[] {
  if (stop === undefined) return [];
  const list = (Array.isArray(stop) ? stop : [stop]).filter((s) => s.length > 0);
  for (const s of list) {
    if (s.length > ctx.limits.maxStopChars) {
      throw new HttpError(400, `A stop sequence is ${s.length} characters long; at most ${ctx.limits.maxStopChars} are accepted.`, {
        param: "stop",
        code: "stop_too_long",
      });
    }
    if (LONE_SURROGATE.test(s)) {
      throw new HttpError(400, "A stop sequence contains a lone UTF-16 surrogate; it can never match text.", {
        param: "stop",
        code: "invalid_value",
      });
    }
  }
  return list;
}

/** Logprob entries a request may produce (they are held and serialized per token). */
export function checkLogprobVolume(ctx: NodeContext, sequences: number, topLogprobs: number, maxTokens: number, param: string): void {
  const entries = sequences * (topLogprobs + 1) * maxTokens;
  if (entries > ctx.limits.maxLogprobEntries) {
    throw new HttpError(
      400,
      `This request would return ${entries} logprob entries (${sequences} sequences × ${topLogprobs + 1} × ${maxTokens} tokens); at most ${ctx.limits.maxLogprobEntries} are allowed. Lower n, ${param} or max_tokens.`,
      { param, code: "logprobs_too_large" },
    );
  }
}
