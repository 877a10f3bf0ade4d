// The shapes the `openai` package declares for the Responses API
// (node_modules/openai/resources/responses/responses.d.ts: Response, ResponseOutputMessage,
// ResponseOutputText, ResponseFunctionToolCall, ResponseUsage, FunctionTool and the stream events),
// as run-time schemas: every field the type requires, with the type's own enums. Tests check what
// the servers send against them, so the official client can parse all of it.
import * as z from "zod";

const outputText = z.object({
  type: z.literal("output_text"),
  text: z.string(),
  annotations: z.array(z.unknown()),
  logprobs: z.array(z.unknown()).optional(),
});
const itemStatus = z.enum(["in_progress", "completed", "incomplete"]);
const outputMessage = z.object({
  type: z.literal("message"),
  id: z.string(),
  role: z.literal("assistant"),
  status: itemStatus,
  content: z.array(outputText),
});
const functionCall = z.object({
  type: z.literal("function_call"),
  id: z.string().optional(),
  call_id: z.string(),
  name: z.string(),
  arguments: z.string(),
  status: itemStatus.optional(),
});
const outputItem = z.discriminatedUnion("type", [outputMessage, functionCall]);
const usage = z.object({
  input_tokens: z.number().int(),
  input_tokens_details: z.object({ cached_tokens: z.number().int() }),
  output_tokens: z.number().int(),
  output_tokens_details: z.object({ reasoning_tokens: z.number().int() }),
  total_tokens: z.number().int(),
});
const functionTool = z.object({
  type: z.literal("function"),
  name: z.string(),
  parameters: z.record(z.string(), z.unknown()).nullable(),
  strict: z.boolean().nullable(),
  description: z.string().nullable().optional(),
});

export const responseShape = z.object({
  id: z.string(),
  object: z.literal("response"),
  created_at: z.number(),
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
  incomplete_details: z.object({ reason: z.enum(["max_output_tokens", "content_filter"]).optional() }).nullable(),
  instructions: z.union([z.string(), z.array(z.unknown())]).nullable(),
  metadata: z.record(z.string(), z.string()).nullable(),
  model: z.string(),
  output: z.array(outputItem),
  parallel_tool_calls: z.boolean(),
  temperature: z.number().nullable(),
  tool_choice: z.union([z.enum(["none", "auto", "required"]), z.object({ type: z.literal("function"), name: z.string() })]),
  tools: z.array(functionTool),
  top_p: z.number().nullable(),
  max_output_tokens: z.number().int().nullable().optional(),
  previous_response_id: z.string().nullable().optional(),
  status: z.enum(["completed", "failed", "in_progress", "cancelled", "queued", "incomplete"]).optional(),
  text: z.object({ format: z.object({ type: z.enum(["text", "json_object", "json_schema"]) }).passthrough().optional() }).optional(),
  truncation: z.enum(["auto", "disabled"]).nullable().optional(),
  usage: usage.optional().nullable(),
  user: z.string().optional(),
});

const seq = { sequence_number: z.number().int() };
const itemRef = { item_id: z.string(), output_index: z.number().int() };
export const streamEventShape = z.discriminatedUnion("type", [
  z.object({ type: z.literal("response.created"), response: responseShape, ...seq }),
  z.object({ type: z.literal("response.in_progress"), response: responseShape, ...seq }),
  z.object({ type: z.literal("response.completed"), response: responseShape, ...seq }),
  z.object({ type: z.literal("response.incomplete"), response: responseShape, ...seq }),
  z.object({ type: z.literal("response.failed"), response: responseShape, ...seq }),
  z.object({ type: z.literal("response.output_item.added"), output_index: z.number().int(), item: outputItem, ...seq }),
  z.object({ type: z.literal("response.output_item.done"), output_index: z.number().int(), item: outputItem, ...seq }),
  z.object({ type: z.literal("response.content_part.added"), content_index: z.number().int(), part: outputText, ...itemRef, ...seq }),
  z.object({ type: z.literal("response.content_part.done"), content_index: z.number().int(), part: outputText, ...itemRef, ...seq }),
  z.object({ type: z.literal("response.output_text.delta"), content_index: z.number().int(), delta: z.string(), logprobs: z.array(z.unknown()), ...itemRef, ...seq }),
  z.object({ type: z.literal("response.output_text.done"), content_index: z.number().int(), text: z.string(), logprobs: z.array(z.unknown()), ...itemRef, ...seq }),
  z.object({ type: z.literal("response.function_call_arguments.delta"), delta: z.string(), ...itemRef, ...seq }),
  z.object({ type: z.literal("response.function_call_arguments.done"), arguments: z.string(), name: z.string(), ...itemRef, ...seq }),
  z.object({ type: z.literal("error"), code: z.string().nullable(), message: z.string(), param: z.string().nullable(), ...seq }),
]);

/** Throws, naming the field, when `value` is not a Response as openai-node declares it. */
export function checkResponse(value: unknown): void {
  responseShape.parse(value);
}

/** Checks each event's shape, and that sequence numbers count up from 0 without gaps. */
export function checkEvents(events: unknown[]): void {
  events.forEach((e, i) => {
    const parsed = streamEventShape.parse(e);
    if (parsed.sequence_number !== i) throw new Error(`event ${i} has sequence_number ${parsed.sequence_number}`);
  });
}

/** `event: name` / `data: json` blocks of a Responses stream; the event name must equal data.type. */
export function parseResponseEvents(text: string): Array<{ type: string } & Record<string, unknown>> {
  return text
    .split("\n\n")
    .filter((b) => b.trim())
    .map((block) => {
      const lines = block.split("\n");
      const name = lines.find((l) => l.startsWith("event: "))?.slice(7);
      const data = JSON.parse(lines.filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n")) as { type: string };
      if (name !== data.type) throw new Error(`event name ${name} but data.type ${data.type}`);
      return data as { type: string } & Record<string, unknown>;
    });
}
