import * as z from "zod";
import { opt } from "./common.js";
import { toolSchema } from "./chat.js";

/**
 * OpenAI's Responses API (`POST /v1/responses`) as far as a text-only Llama model can serve it:
 * messages, function tools and their outputs in; messages and function calls out. The shapes
 * follow the `openai` package's types (`resources/responses`), which the official client parses.
 */

export const inputTextPartSchema = z.object({ type: z.literal("input_text"), text: z.string() });
/** An earlier answer sent back as input (the client replays `response.output`). */
export const outputTextPartSchema = z.object({
  type: z.literal("output_text"),
  text: z.string(),
  annotations: opt(z.array(z.unknown())),
});
const refusalPartSchema = z.object({ type: z.literal("refusal"), refusal: z.string() });
const contentPartSchema = z.discriminatedUnion("type", [inputTextPartSchema, outputTextPartSchema, refusalPartSchema]);

const itemStatusSchema = opt(z.enum(["in_progress", "completed", "incomplete"]));

export const messageItemSchema = z.object({
  type: z.literal("message"),
  id: opt(z.string()),
  role: z.enum(["user", "assistant", "system", "developer"]),
  content: z.union([z.string(), z.array(contentPartSchema)]),
  status: itemStatusSchema,
});

export const functionCallItemSchema = z.object({
  type: z.literal("function_call"),
  id: opt(z.string()),
  call_id: z.string().min(1, "must be a non-empty string"),
  name: z.string().min(1, "must be a non-empty string"),
  arguments: z.string(),
  status: itemStatusSchema,
});

export const functionCallOutputItemSchema = z.object({
  type: z.literal("function_call_output"),
  id: opt(z.string()),
  call_id: z.string().min(1, "must be a non-empty string"),
  output: z.union([z.string(), z.array(inputTextPartSchema)]),
  status: itemStatusSchema,
});

const itemUnion = z.discriminatedUnion("type", [messageItemSchema, functionCallItemSchema, functionCallOutputItemSchema]);

/**
 * One input item; an item without `type` is a message (EasyInputMessage). Discriminating on `type`
 * (rather than trying each shape) lets a 400 name the exact field that is wrong.
 */
export const inputItemSchema = z.preprocess(
  (v) => (v !== null && typeof v === "object" && !Array.isArray(v) && (v as { type?: unknown }).type == null ? { ...v, type: "message" } : v),
  itemUnion,
);
/** What a caller writes as an input item (`type` may be left out of a message). */
export type ResponseInputItemParam =
  | (Omit<z.input<typeof messageItemSchema>, "type"> & { type?: "message" | null })
  | z.input<typeof functionCallItemSchema>
  | z.input<typeof functionCallOutputItemSchema>;
export type InputItem = z.output<typeof itemUnion>;

export const functionToolSchema = z.object({
  type: z.literal("function"),
  name: toolSchema.shape.function.shape.name,
  description: opt(z.string()),
  parameters: opt(z.record(z.string(), z.unknown())),
  strict: opt(z.boolean()),
});
export type FunctionToolParam = z.input<typeof functionToolSchema>;

export const responsesToolChoiceSchema = z.union([
  z.enum(["none", "auto", "required"]),
  z.object({ type: z.literal("function"), name: z.string() }),
]);

export const textFormatSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text") }),
  z.object({ type: z.literal("json_object") }),
  z.object({
    type: z.literal("json_schema"),
    name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, "must be 1-64 letters, digits, '_' or '-'"),
    schema: z.record(z.string(), z.unknown()),
    description: opt(z.string()),
    strict: opt(z.boolean()),
  }),
]);
export type TextFormat = z.output<typeof textFormatSchema>;

/** Up to 16 pairs; keys at most 64 characters, values at most 512 (OpenAI's bounds). */
export const metadataSchema = z
  .record(z.string().max(64, "keys must be at most 64 characters"), z.string().max(512, "values must be at most 512 characters"))
  .refine((m) => Object.keys(m).length <= 16, "must have at most 16 keys");

export const responseCreateRequestSchema = z.object({
  model: z.string().min(1, "must be a non-empty string"),
  input: z.union([z.string(), z.array(inputItemSchema).min(1, "must contain at least one item")]),
  instructions: opt(z.string()),
  max_output_tokens: opt(z.number().int().min(1)),
  temperature: opt(z.number().min(0).max(2)),
  top_p: opt(z.number().gt(0).max(1)),
  tools: opt(z.array(functionToolSchema).max(128)),
  tool_choice: opt(responsesToolChoiceSchema),
  parallel_tool_calls: opt(z.boolean()),
  text: opt(z.object({ format: opt(textFormatSchema) })),
  stream: opt(z.boolean()),
  store: opt(z.boolean()),
  previous_response_id: opt(z.string().min(1, "must be a non-empty string")),
  /**
   * seventy's hand-off from the edge to a gpu-node: the conversation before `input` (the stored
   * items and outputs up to `previous_response_id`, which the edge resolved). Clients do not send it.
   */
  previous_items: opt(z.array(inputItemSchema)),
  metadata: opt(metadataSchema),
  user: opt(z.string().max(256)),
  /** Extra beyond OpenAI (as vLLM): makes sampling reproducible. */
  seed: opt(z.number().int().min(-(2 ** 63)).max(2 ** 64)),
});
/** What a caller writes (nulls allowed). */
export type ResponseCreateParams = Omit<z.input<typeof responseCreateRequestSchema>, "input" | "previous_items"> & {
  input: string | ResponseInputItemParam[];
};
/** What a server works with after parsing (nulls removed). */
export type ResponseCreateRequest = z.output<typeof responseCreateRequestSchema>;

// ---- what the server sends --------------------------------------------------------------------

export interface ResponseOutputText {
  type: "output_text";
  text: string;
  annotations: unknown[];
  logprobs?: unknown[];
}

export interface ResponseOutputMessage {
  type: "message";
  id: string;
  role: "assistant";
  status: "in_progress" | "completed" | "incomplete";
  content: ResponseOutputText[];
}

export interface ResponseFunctionToolCall {
  type: "function_call";
  id: string;
  call_id: string;
  name: string;
  arguments: string;
  status: "in_progress" | "completed" | "incomplete";
}

export type ResponseOutputItem = ResponseOutputMessage | ResponseFunctionToolCall;

export interface ResponseUsage {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
}

export interface ResponseFunctionTool {
  type: "function";
  name: string;
  description: string | null;
  parameters: Record<string, unknown> | null;
  strict: boolean | null;
}

export type ResponseStatus = "completed" | "failed" | "in_progress" | "cancelled" | "queued" | "incomplete";

/** The response object (`object: "response"`). `output_text` is added by clients, not sent. */
export interface ResponseObject {
  id: string;
  object: "response";
  created_at: number;
  completed_at?: number | null;
  status: ResponseStatus;
  error: { code: string; message: string } | null;
  incomplete_details: { reason: "max_output_tokens" | "content_filter" } | null;
  instructions: string | null;
  max_output_tokens: number | null;
  model: string;
  output: ResponseOutputItem[];
  parallel_tool_calls: boolean;
  previous_response_id: string | null;
  temperature: number | null;
  top_p: number | null;
  text: { format: TextFormat };
  tool_choice: "none" | "auto" | "required" | { type: "function"; name: string };
  tools: ResponseFunctionTool[];
  truncation: "disabled";
  usage?: ResponseUsage | null;
  user?: string;
  metadata: Record<string, string> | null;
}

/** An input item as `GET /v1/responses/{id}/input_items` lists it: every item has an id. */
export type ResponseItem =
  | { type: "message"; id: string; role: "user" | "system" | "developer"; status: "completed"; content: Array<{ type: "input_text"; text: string }> }
  | ResponseOutputMessage
  | ResponseFunctionToolCall
  | { type: "function_call_output"; id: string; call_id: string; output: string; status: "completed" };

export interface ResponseItemList {
  object: "list";
  data: ResponseItem[];
  first_id: string | null;
  last_id: string | null;
  has_more: boolean;
}

export interface ResponseDeleted {
  id: string;
  object: "response.deleted";
  deleted: true;
}

type Seq = { sequence_number: number };
type ItemRef = { item_id: string; output_index: number };
type Lifecycle<T extends string> = { type: T; response: ResponseObject } & Seq;
type ItemEvent<T extends string> = { type: T; output_index: number; item: ResponseOutputItem } & Seq;
type PartEvent<T extends string> = { type: T; content_index: number; part: ResponseOutputText } & ItemRef & Seq;

/** The events of a streamed response, each its own member so `Extract<…, { type }>` finds it. */
export type ResponseStreamEvent =
  | Lifecycle<"response.created">
  | Lifecycle<"response.in_progress">
  | Lifecycle<"response.completed">
  | Lifecycle<"response.incomplete">
  | Lifecycle<"response.failed">
  | ItemEvent<"response.output_item.added">
  | ItemEvent<"response.output_item.done">
  | PartEvent<"response.content_part.added">
  | PartEvent<"response.content_part.done">
  | ({ type: "response.output_text.delta"; content_index: number; delta: string; logprobs: unknown[] } & ItemRef & Seq)
  | ({ type: "response.output_text.done"; content_index: number; text: string; logprobs: unknown[] } & ItemRef & Seq)
  | ({ type: "response.function_call_arguments.delta"; delta: string } & ItemRef & Seq)
  | ({ type: "response.function_call_arguments.done"; arguments: string; name: string } & ItemRef & Seq)
  | ({ type: "error"; code: string | null; message: string; param: string | null } & Seq);

export type ResponseStreamEventType = ResponseStreamEvent["type"];
