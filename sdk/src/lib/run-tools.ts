import type { ChatCompletion, ChatCompletionCreateParams, ChatMessage, ToolCall } from "../protocol/chat.js";
import type { Usage } from "../protocol/common.js";
import { ResponseValidationError, SeventyError } from "../core/errors.js";
import type { RequestOptions } from "../internal/transport.js";
import type { ChatCompletions } from "../resources/chat.js";
import { validateJSON } from "./parse.js";
import { toJSONSchema, type InferOutput, type StandardSchemaV1 } from "./standard-schema.js";

export interface ToolDefinition<S extends StandardSchemaV1 = StandardSchemaV1> {
  name: string;
  description?: string;
  /** The arguments' schema (zod 4.2+ or another Standard Schema that exports JSON Schema). */
  parameters: S;
  /** Runs the tool; a string result is sent as is, anything else as JSON. */
  run: (args: InferOutput<S>, context: { toolCall: ToolCall; signal?: AbortSignal | null }) => unknown;
}

/**
 * Declares a tool with its argument types inferred from the schema.
 *
 * @example
 * const weather = tool({ name: "weather", parameters: z.object({ city: z.string() }), run: ({ city }) => lookup(city) });
 */
export function tool<S extends StandardSchemaV1>(definition: ToolDefinition<S>): ToolDefinition<S> {
  return definition;
}

export type RunToolsParams = Omit<ChatCompletionCreateParams, "tools" | "stream"> & {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- each tool keeps its own schema type
  tools: ToolDefinition<any>[];
  /** Model calls allowed before giving up (default 10). */
  maxRounds?: number;
};

export interface RunToolsOptions extends RequestOptions {
  onToolCall?: (call: ToolCall) => void;
  onToolResult?: (call: ToolCall, result: string) => void;
}

export interface RunToolsResult {
  /** The last completion: the model's answer once it stopped calling tools. */
  completion: ChatCompletion;
  /** The whole conversation: the input messages, then every assistant turn and tool result. */
  messages: ChatMessage[];
  /** Token counts summed over every model call. */
  usage: Usage;
  rounds: number;
}

export async function runTools(
  completions: ChatCompletions,
  params: RunToolsParams,
  options: RunToolsOptions = {},
): Promise<RunToolsResult> {
  const { tools, maxRounds = 10, messages: input, ...rest } = params;
  const byName = new Map(tools.map((t) => [t.name, t]));
  const specs: NonNullable<ChatCompletionCreateParams["tools"]> = tools.map((t) => ({
    type: "function",
    function: {
      name: t.name,
      ...(t.description ? { description: t.description } : {}),
      parameters: toJSONSchema(t.parameters, `The parameters of tool "${t.name}"`),
    },
  }));
  const messages: ChatMessage[] = [...input];
  const usage: Usage = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };

  for (let round = 1; round <= maxRounds; round++) {
    // A forcing tool_choice ("required" or a named function) applies to the first call only; after
    // the tools ran, the model decides ("auto"), or it could never give its answer.
    const toolChoice = round > 1 && rest.tool_choice != null && rest.tool_choice !== "none" ? "auto" : rest.tool_choice;
    const completion = await completions.create(
      { ...rest, ...(toolChoice != null ? { tool_choice: toolChoice } : {}), messages, tools: specs, stream: false },
      options,
    );
    if (completion.usage) {
      usage.prompt_tokens += completion.usage.prompt_tokens;
      usage.completion_tokens += completion.usage.completion_tokens;
      usage.total_tokens += completion.usage.total_tokens;
    }
    const message = completion.choices[0]?.message;
    if (!message) throw new SeventyError("The completion has no choices.");
    const calls = message.tool_calls ?? [];
    messages.push({
      role: "assistant",
      content: message.content,
      ...(calls.length > 0 ? { tool_calls: calls } : {}),
    });
    if (calls.length === 0) return { completion, messages, usage, rounds: round };

    // Independent calls run together; results go back in the order the model asked.
    const results = await Promise.all(calls.map((call) => runOne(call, byName, options)));
    calls.forEach((call, i) => messages.push({ role: "tool", tool_call_id: call.id, content: results[i]! }));
  }
  throw new SeventyError(`The model was still calling tools after ${maxRounds} rounds.`);
}

/**
 * One tool call. A bad call (unknown tool, invalid arguments) or a tool that throws is reported to
 * the model as the tool's result, so it can correct itself; an abort stops the whole run.
 */
async function runOne(
  call: ToolCall,
  byName: Map<string, ToolDefinition>,
  options: RunToolsOptions,
): Promise<string> {
  options.onToolCall?.(call);
  let result: string;
  const definition = byName.get(call.function.name);
  if (!definition) {
    result = JSON.stringify({ error: `Unknown tool "${call.function.name}". Available: ${[...byName.keys()].join(", ")}.` });
  } else {
    try {
      const args = await validateJSON(definition.parameters, call.function.arguments || "{}");
      const value = await definition.run(args, { toolCall: call, signal: options.signal });
      result = typeof value === "string" ? value : JSON.stringify(value ?? null);
    } catch (err) {
      if (options.signal?.aborted) throw err;
      const message = err instanceof ResponseValidationError ? `Invalid arguments: ${err.message}` : String((err as Error)?.message ?? err);
      result = JSON.stringify({ error: message });
    }
  }
  options.onToolResult?.(call, result);
  return result;
}
