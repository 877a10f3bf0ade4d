import type { ChatCompletionCreateParams, InputItem, ResponseCreateRequest } from "@seventy/sdk/protocol";

type ChatMessage = ChatCompletionCreateParams["messages"][number];

function partsText(content: string | Array<{ type: string; text?: string; refusal?: string }>): string {
  if (typeof content === "string") return content;
  let out = "";
  for (const p of content) out += p.text ?? p.refusal ?? "";
  return out;
}

/**
 * Responses input items → chat messages: the conversation the chat template renders. Consecutive
 * function calls join one assistant turn (as a chat completion would have returned them), and a
 * function call's output becomes a `tool` message.
 */
export function inputToMessages(instructions: string | undefined, input: string | InputItem[]): ChatMessage[] {
  const messages: ChatMessage[] = [];
  if (instructions !== undefined) messages.push({ role: "system", content: instructions });
  if (typeof input === "string") {
    messages.push({ role: "user", content: input });
    return messages;
  }
  for (const item of input) {
    if (item.type === "function_call") {
      const last = messages[messages.length - 1];
      const call = { id: item.call_id, type: "function" as const, function: { name: item.name, arguments: item.arguments } };
      if (last?.role === "assistant" && last.tool_calls) last.tool_calls.push(call);
      else messages.push({ role: "assistant", tool_calls: [call] });
    } else if (item.type === "function_call_output") {
      messages.push({ role: "tool", tool_call_id: item.call_id, content: partsText(item.output) });
    } else if (item.role === "assistant") {
      messages.push({ role: "assistant", content: partsText(item.content) });
    } else {
      messages.push({ role: item.role, content: partsText(item.content) });
    }
  }
  return messages;
}

/** The whole conversation: what the edge resolved from `previous_response_id`, then `input`. */
function conversation(req: ResponseCreateRequest): string | InputItem[] {
  if (!req.previous_items) return req.input;
  const input: InputItem[] = typeof req.input === "string" ? [{ type: "message", id: undefined, role: "user", content: req.input, status: undefined }] : req.input;
  return [...req.previous_items, ...input];
}

/**
 * A Responses request as the equivalent chat completions request body, so it runs through the very
 * same validate → render → plan → generate pipeline (and the same `response_format` / `tool_choice`
 * handling).
 */
export function toChatParams(req: ResponseCreateRequest): ChatCompletionCreateParams {
  const format = req.text?.format;
  const choice = req.tool_choice;
  return {
    model: req.model,
    messages: inputToMessages(req.instructions, conversation(req)),
    max_completion_tokens: req.max_output_tokens,
    temperature: req.temperature,
    top_p: req.top_p,
    seed: req.seed,
    user: req.user,
    stream: req.stream,
    parallel_tool_calls: req.parallel_tool_calls,
    tools: req.tools?.map((t) => ({
      type: "function" as const,
      function: { name: t.name, description: t.description, parameters: t.parameters, strict: t.strict },
    })),
    tool_choice: choice === undefined || typeof choice === "string" ? choice : { type: "function", function: { name: choice.name } },
    response_format:
      format === undefined || format.type !== "json_schema"
        ? format
        : {
            type: "json_schema",
            json_schema: { name: format.name, schema: format.schema, description: format.description, strict: format.strict },
          },
  };
}
