import * as z from "zod";

/**
 * Optional request fields: OpenAI clients and proxies send `null` for "not set", so null and
 * undefined mean the same thing. Unknown fields are stripped (z.object's default), never rejected.
 */
export const opt = <T extends z.ZodType>(schema: T) => schema.nullish().transform((v) => v ?? undefined);

export const usageSchema = z.object({
  prompt_tokens: z.number().int(),
  completion_tokens: z.number().int(),
  total_tokens: z.number().int(),
  prompt_tokens_details: z.object({ cached_tokens: z.number().int() }).nullish(),
});
export type Usage = z.infer<typeof usageSchema>;

export const finishReasonSchema = z.enum(["stop", "length", "tool_calls", "content_filter", "function_call"]);
export type FinishReason = z.infer<typeof finishReasonSchema>;

export const topLogprobSchema = z.object({
  token: z.string(),
  logprob: z.number(),
  bytes: z.array(z.number().int()).nullable(),
});

export const tokenLogprobSchema = topLogprobSchema.extend({
  top_logprobs: z.array(topLogprobSchema),
});
export type TokenLogprob = z.infer<typeof tokenLogprobSchema>;

/** Sampling parameters shared by chat completions and completions (OpenAI names plus vLLM's extras). */
export const samplingFields = {
  model: z.string().min(1, "must be a non-empty string"),
  temperature: opt(z.number().min(0).max(2)),
  top_p: opt(z.number().gt(0).max(1)),
  /** vLLM extra: -1 or 0 disables. */
  top_k: opt(z.number().int().min(-1)),
  /** vLLM extra. */
  min_p: opt(z.number().min(0).max(1)),
  max_tokens: opt(z.number().int().min(1)),
  stop: opt(z.union([z.string(), z.array(z.string()).max(4, "at most 4 stop sequences")])),
  seed: opt(z.number().int().min(-(2 ** 63)).max(2 ** 64)),
  n: opt(z.number().int().min(1).max(16)),
  presence_penalty: opt(z.number().min(-2).max(2)),
  frequency_penalty: opt(z.number().min(-2).max(2)),
  /** vLLM extra: 1 disables. */
  repetition_penalty: opt(z.number().gt(0).max(2)),
  stream: opt(z.boolean()),
  stream_options: opt(z.object({ include_usage: opt(z.boolean()) })),
  user: opt(z.string().max(256)),
  /** vLLM extra: do not stop at the model's end-of-sequence tokens. */
  ignore_eos: opt(z.boolean()),
};

/** Fields every completion response and stream chunk starts with (`object` names the kind). */
export const responseEnvelope = {
  id: z.string(),
  created: z.number().int(),
  model: z.string(),
  system_fingerprint: z.string().nullable().optional(),
};
