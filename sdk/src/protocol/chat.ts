import * as z from "zod";
import { finishReasonSchema, opt, samplingFields, tokenLogprobSchema, usageSchema, responseEnvelope } from "./common.js";

export const textPartSchema = z.object({ type: z.literal("text"), text: z.string() });

/** String content or a list of text parts (images and audio are not supported by this model). */
const contentSchema = z.union([z.string(), z.array(textPartSchema)]);

export const toolCallSchema = z.object({
  id: z.string(),
  type: z.literal("function"),
  function: z.object({ name: z.string(), arguments: z.string() }),
});
export type ToolCall = z.infer<typeof toolCallSchema>;

export const chatMessageSchema = z.discriminatedUnion("role", [
  z.object({ role: z.literal("system"), content: contentSchema, name: opt(z.string()) }),
  // "developer" is OpenAI's newer name for the system role.
  z.object({ role: z.literal("developer"), content: contentSchema, name: opt(z.string()) }),
  z.object({ role: z.literal("user"), content: contentSchema, name: opt(z.string()) }),
  z.object({
    role: z.literal("assistant"),
    content: opt(contentSchema),
    name: opt(z.string()),
    tool_calls: opt(z.array(toolCallSchema)),
  }),
  z.object({ role: z.literal("tool"), content: contentSchema, tool_call_id: z.string() }),
]);
export type ChatMessage = z.input<typeof chatMessageSchema>;

export const toolSchema = z.object({
  type: z.literal("function"),
  function: z.object({
    name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, "must be 1-64 letters, digits, '_' or '-'"),
    description: opt(z.string()),
    parameters: opt(z.record(z.string(), z.unknown())),
    strict: opt(z.boolean()),
  }),
});
export type Tool = z.infer<typeof toolSchema>;

export const toolChoiceSchema = z.union([
  z.enum(["none", "auto", "required"]),
  z.object({ type: z.literal("function"), function: z.object({ name: z.string() }) }),
]);

export const responseFormatSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text") }),
  z.object({ type: z.literal("json_object") }),
  z.object({
    type: z.literal("json_schema"),
    json_schema: z.object({
      name: z.string(),
      description: opt(z.string()),
      schema: opt(z.record(z.string(), z.unknown())),
      strict: opt(z.boolean()),
    }),
  }),
]);

/**
 * vLLM's `structured_outputs` request field (exactly one of its members): JSON valid for a schema
 * (`true` or `{}`: any JSON object), a regular expression, one of a list of strings, or an EBNF/GBNF grammar.
 */
export const structuredOutputsSchema = z
  .object({
    json: opt(z.union([z.record(z.string(), z.unknown()), z.boolean(), z.string()])),
    regex: opt(z.string()),
    choice: opt(z.array(z.string()).min(1)),
    grammar: opt(z.string()),
  })
  .superRefine((v, ctx) => {
    const set = (["json", "regex", "choice", "grammar"] as const).filter((k) => v[k] !== undefined);
    if (set.length !== 1) ctx.addIssue({ code: "custom", message: "must set exactly one of json, regex, choice, grammar" });
  });
export type StructuredOutputs = z.output<typeof structuredOutputsSchema>;
export type ResponseFormat = z.output<typeof responseFormatSchema>;

export const chatCompletionRequestSchema = z
  .object({
    ...samplingFields,
    messages: z.array(chatMessageSchema).min(1, "must contain at least one message"),
    max_completion_tokens: opt(z.number().int().min(1)),
    logprobs: opt(z.boolean()),
    top_logprobs: opt(z.number().int().min(0).max(20)),
    tools: opt(z.array(toolSchema).max(128)),
    tool_choice: opt(toolChoiceSchema),
    parallel_tool_calls: opt(z.boolean()),
    response_format: opt(responseFormatSchema),
    structured_outputs: opt(structuredOutputsSchema),
  })
  .superRefine((req, ctx) => {
    if (req.top_logprobs !== undefined && req.top_logprobs > 0 && !req.logprobs) {
      ctx.addIssue({ code: "custom", path: ["top_logprobs"], message: "requires 'logprobs' to be true" });
    }
  });
/** What a caller writes (nulls allowed). */
export type ChatCompletionCreateParams = z.input<typeof chatCompletionRequestSchema>;
/** What a server works with after parsing (nulls removed). */
export type ChatCompletionRequest = z.output<typeof chatCompletionRequestSchema>;

export const chatCompletionMessageSchema = z.object({
  role: z.literal("assistant"),
  content: z.string().nullable(),
  tool_calls: z.array(toolCallSchema).optional(),
  refusal: z.string().nullable().optional(),
});

export const chatCompletionSchema = z.object({
  ...responseEnvelope,
  object: z.literal("chat.completion"),
  choices: z.array(
    z.object({
      index: z.number().int(),
      message: chatCompletionMessageSchema,
      logprobs: z.object({ content: z.array(tokenLogprobSchema).nullable() }).nullable(),
      finish_reason: finishReasonSchema,
    }),
  ),
  usage: usageSchema.optional(),
});
export type ChatCompletion = z.infer<typeof chatCompletionSchema>;

export const toolCallDeltaSchema = z.object({
  index: z.number().int(),
  id: z.string().optional(),
  type: z.literal("function").optional(),
  function: z.object({ name: z.string().optional(), arguments: z.string().optional() }).optional(),
});

export const chatCompletionChunkSchema = z.object({
  ...responseEnvelope,
  object: z.literal("chat.completion.chunk"),
  choices: z.array(
    z.object({
      index: z.number().int(),
      delta: z.object({
        role: z.literal("assistant").optional(),
        content: z.string().nullable().optional(),
        tool_calls: z.array(toolCallDeltaSchema).optional(),
      }),
      logprobs: z.object({ content: z.array(tokenLogprobSchema).nullable() }).nullable().optional(),
      finish_reason: finishReasonSchema.nullable(),
    }),
  ),
  usage: usageSchema.nullable().optional(),
});
export type ChatCompletionChunk = z.infer<typeof chatCompletionChunkSchema>;
