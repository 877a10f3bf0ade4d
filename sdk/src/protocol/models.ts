import * as z from "zod";
import { chatMessageSchema, toolSchema } from "./chat.js";

export const modelSchema = z.object({
  id: z.string(),
  object: z.literal("model"),
  created: z.number().int(),
  owned_by: z.string(),
  /** vLLM extra: the context length the server accepts. */
  max_model_len: z.number().int().optional(),
});
export type Model = z.infer<typeof modelSchema>;

export const modelListSchema = z.object({ object: z.literal("list"), data: z.array(modelSchema) });
export type ModelList = z.infer<typeof modelListSchema>;

/** vLLM-compatible `POST /tokenize`. */
export const tokenizeRequestSchema = z.union([
  z.object({
    model: z.string().nullish(),
    messages: z.array(chatMessageSchema).min(1),
    add_generation_prompt: z.boolean().nullish(),
    tools: z.array(toolSchema).nullish(),
  }),
  z.object({ model: z.string().nullish(), prompt: z.string(), add_special_tokens: z.boolean().nullish() }),
]);
export const tokenizeResponseSchema = z.object({
  tokens: z.array(z.number().int()),
  count: z.number().int(),
  max_model_len: z.number().int(),
});
export type TokenizeResponse = z.infer<typeof tokenizeResponseSchema>;
