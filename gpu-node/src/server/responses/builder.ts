import type {
  ResponseCreateRequest,
  ResponseFunctionToolCall,
  ResponseObject,
  ResponseOutputMessage,
  ResponseStreamEvent,
  ResponseUsage,
} from "@seventy/sdk/protocol";
import type { FinishReason, GenerationUsage } from "../generation.js";

/** Receives each stream event (type and serialised JSON); null for a non-streamed response. */
export type EmitEvent = ((type: ResponseStreamEvent["type"], json: string) => void) | null;

const itemId = (prefix: string) => `${prefix}_${crypto.randomUUID().replace(/-/g, "")}`;

export function responseUsage(u: Pick<GenerationUsage, "promptTokens" | "completionTokens"> & { cachedTokens?: number }): ResponseUsage {
  return {
    input_tokens: u.promptTokens,
    input_tokens_details: { cached_tokens: u.cachedTokens ?? 0 },
    output_tokens: u.completionTokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: u.promptTokens + u.completionTokens,
  };
}

/** The response object a request starts from: everything but output, status and usage. */
export function initialResponse(id: string, model: string, req: ResponseCreateRequest): ResponseObject {
  return {
    id,
    object: "response",
    created_at: Math.floor(Date.now() / 1000),
    status: "in_progress",
    error: null,
    incomplete_details: null,
    instructions: req.instructions ?? null,
    max_output_tokens: req.max_output_tokens ?? null,
    model,
    output: [],
    parallel_tool_calls: req.parallel_tool_calls ?? true,
    previous_response_id: req.previous_response_id ?? null,
    temperature: req.temperature ?? null,
    top_p: req.top_p ?? null,
    text: { format: req.text?.format ?? { type: "text" } },
    tool_choice: req.tool_choice ?? "auto",
    tools: (req.tools ?? []).map((t) => ({
      type: "function",
      name: t.name,
      description: t.description ?? null,
      parameters: t.parameters ?? null,
      strict: t.strict ?? null,
    })),
    truncation: "disabled",
    usage: null,
    ...(req.user !== undefined ? { user: req.user } : {}),
    metadata: req.metadata ?? null,
  };
}

/**
 * Builds one response from generated text, and — when streaming — the events that describe it,
 * in OpenAI's order: created, in_progress, output_item.added, content_part.added, output_text.delta…,
 * output_text.done, content_part.done, output_item.done, then completed (or incomplete / failed);
 * for a function call: output_item.added, function_call_arguments.delta… (as the arguments are
 * generated), function_call_arguments.done, output_item.done.
 * Streamed and non-streamed responses are built by this one class, so they carry the same output.
 */
export class ResponseBuilder {
  private seq = 0;
  private message: ResponseOutputMessage | null = null;
  private text = "";
  private readonly calls: ResponseFunctionToolCall[] = [];

  constructor(
    readonly response: ResponseObject,
    private readonly emit: EmitEvent,
  ) {}

  private send(event: Record<string, unknown> & { type: ResponseStreamEvent["type"] }): void {
    if (!this.emit) return;
    // `type` first and `sequence_number` last, as OpenAI writes them.
    this.emit(event.type, JSON.stringify({ ...event, sequence_number: this.seq++ }));
  }

  start(): void {
    this.send({ type: "response.created", response: this.response });
    this.send({ type: "response.in_progress", response: this.response });
  }

  private openMessage(): ResponseOutputMessage {
    if (this.message) return this.message;
    const message: ResponseOutputMessage = { type: "message", id: itemId("msg"), role: "assistant", status: "in_progress", content: [] };
    this.message = message;
    const outputIndex = this.response.output.length;
    this.response.output.push(message);
    this.send({ type: "response.output_item.added", output_index: outputIndex, item: message });
    message.content.push({ type: "output_text", text: "", annotations: [], logprobs: [] });
    this.send({
      type: "response.content_part.added",
      item_id: message.id,
      output_index: outputIndex,
      content_index: 0,
      part: { type: "output_text", text: "", annotations: [], logprobs: [] },
    });
    return message;
  }

  /** Appends generated text to the answer message. */
  appendText(delta: string): void {
    const message = this.openMessage();
    if (delta.length === 0) return;
    this.text += delta;
    this.send({
      type: "response.output_text.delta",
      item_id: message.id,
      output_index: this.response.output.indexOf(message),
      content_index: 0,
      delta,
      logprobs: [],
    });
  }

  private closeMessage(status: ResponseOutputMessage["status"]): void {
    const message = this.openMessage();
    const outputIndex = this.response.output.indexOf(message);
    const part = { type: "output_text" as const, text: this.text, annotations: [], logprobs: [] };
    message.content[0] = part;
    message.status = status;
    this.send({ type: "response.output_text.done", item_id: message.id, output_index: outputIndex, content_index: 0, text: this.text, logprobs: [] });
    this.send({ type: "response.content_part.done", item_id: message.id, output_index: outputIndex, content_index: 0, part });
    this.send({ type: "response.output_item.done", output_index: outputIndex, item: message });
  }

  /**
   * A function call begins (its name is known): a `function_call` item with empty arguments.
   * Its arguments follow piece by piece through `appendArguments`, as they are generated.
   */
  startFunctionCall(callId: string, name: string): void {
    const item: ResponseFunctionToolCall = { type: "function_call", id: itemId("fc"), call_id: callId, name, arguments: "", status: "in_progress" };
    const outputIndex = this.response.output.length;
    this.send({ type: "response.output_item.added", output_index: outputIndex, item: { ...item } });
    this.response.output.push(item);
    this.calls.push(item);
  }

  /** The next piece of function call `index`'s arguments (the pieces concatenate to the final `arguments`). */
  appendArguments(index: number, delta: string): void {
    const item = this.calls[index];
    if (!item || delta.length === 0) return;
    item.arguments += delta;
    this.send({ type: "response.function_call_arguments.delta", item_id: item.id, output_index: this.response.output.indexOf(item), delta });
  }

  private closeFunctionCall(item: ResponseFunctionToolCall): void {
    const outputIndex = this.response.output.indexOf(item);
    item.status = "completed";
    this.send({ type: "response.function_call_arguments.done", item_id: item.id, output_index: outputIndex, name: item.name, arguments: item.arguments });
    this.send({ type: "response.output_item.done", output_index: outputIndex, item });
  }

  /** Whether the output is function calls (then the generation's end closes them rather than a message). */
  get hasFunctionCalls(): boolean {
    return this.calls.length > 0;
  }

  /** The generation ended: close the output, settle status and usage, send the last event. */
  finish(reason: FinishReason, usage: GenerationUsage): ResponseObject {
    const r = this.response;
    const incomplete = reason === "length";
    const calls = this.calls.length > 0;
    if (calls) for (const item of this.calls) this.closeFunctionCall(item);
    else this.closeMessage(incomplete ? "incomplete" : "completed");
    r.status = incomplete && !calls ? "incomplete" : "completed";
    r.incomplete_details = r.status === "incomplete" ? { reason: "max_output_tokens" } : null;
    r.usage = responseUsage(usage);
    r.completed_at = Math.floor(Date.now() / 1000);
    this.send({ type: r.status === "incomplete" ? "response.incomplete" : "response.completed", response: r });
    return r;
  }

  /** The generation failed mid-way: an `error` event, then `response.failed`. */
  fail(message: string, usage: Parameters<typeof responseUsage>[0] | null): void {
    const r = this.response;
    r.status = "failed";
    r.error = { code: "server_error", message };
    if (usage) r.usage = responseUsage(usage);
    this.send({ type: "error", code: "server_error", message, param: null });
    this.send({ type: "response.failed", response: r });
  }
}
