import * as z from "zod";
import { responseFormatSchema, structuredOutputsSchema } from "./chat.js";
import { finishReasonSchema, opt, samplingFields, usageSchema, responseEnvelope } from "./common.js";

const tokenIdsSchema = z.array(z.number().int().min(0)).min(1, "must not be empty");

export const completionRequestSchema = z.object({
  ...samplingFields,
  /** A string, a list of strings (one completion each), a token id list, or a list of token id lists. */
  prompt: z.union([z.string(), z.array(z.string()).min(1), tokenIdsSchema, z.array(tokenIdsSchema).min(1)]),
  echo: opt(z.boolean()),
  /** Legacy completions: number of top logprobs per token (0-5). */
  logprobs: opt(z.number().int().min(0).max(5)),
  suffix: opt(z.string()),
  response_format: opt(responseFormatSchema),
  structured_outputs: opt(structuredOutputsSchema),
});
export type CompletionCreateParams = z.input<typeof completionRequestSchema>;
export type CompletionRequest = z.output<typeof completionRequestSchema>;

export const completionLogprobsSchema = z.object({
  tokens: z.array(z.string()),
  token_logprobs: z.array(z.number().nullable()),
  top_logprobs: z.array(z.record(z.string(), z.number()).nullable()),
  text_offset: z.array(z.number().int()),
});

export const completionSchema = z.object({
  ...responseEnvelope,
  object: z.literal("text_completion"),
  choices: z.array(
    z.object({
      index: z.number().int(),
      text: z.string(),
      logprobs: completionLogprobsSchema.nullable(),
      finish_reason: finishReasonSchema.nullable(),
    }),
  ),
  usage: usageSchema.nullable().optional(),
});
/** Non-streamed completions and stream chunks share this shape (as in OpenAI's API). */
export type Completion = z.infer<typeof completionSchema>;
