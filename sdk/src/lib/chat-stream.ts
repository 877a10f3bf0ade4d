import type { ChatCompletion, ChatCompletionChunk, ToolCall } from "../protocol/chat.js";
import type { TokenLogprob } from "../protocol/common.js";
import { SSESource, type ChunkSource } from "../core/source.js";
import type { StreamInit } from "../core/stream.js";
import { ChoiceStream, responseSource, type ChoiceState } from "./choice-stream.js";

interface ChatChoiceState extends ChoiceState {
  hasContent: boolean;
  toolCalls: ToolCall[];
  logprobs: TokenLogprob[] | null;
}

/**
 * A streamed chat completion: iterate it for chunks, or use `textStream`, `on('content')`,
 * `finalCompletion()`, `toResponse()`. See `CompletionStreamBase` for the reading rules.
 *
 * @example
 * const stream = await client.chat.completions.create({ model, messages, stream: true });
 * for await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta.content ?? "");
 * const { usage } = await stream.finalCompletion();
 */
export class ChatCompletionStream extends ChoiceStream<ChatCompletionChunk, ChatCompletion, ChatChoiceState> {
  private fingerprint: string | null | undefined;

  constructor(source: ChunkSource<ChatCompletionChunk>, init?: StreamInit) {
    super(source, init);
  }

  /** Rebuilds a stream from SSE bytes, e.g. a `toReadableStream()` relayed to a browser. */
  static fromReadableStream(body: ReadableStream<Uint8Array>): ChatCompletionStream {
    return new ChatCompletionStream(new SSESource<ChatCompletionChunk>(body));
  }

  /** Rebuilds a stream from a `Response` whose body is SSE (e.g. `fetch('/api/chat')` of a `toResponse()`). */
  static fromResponse(response: Response): ChatCompletionStream {
    return new ChatCompletionStream(responseSource<ChatCompletionChunk>(response), { response });
  }

  protected fork(source: ChunkSource<ChatCompletionChunk>): this {
    return new ChatCompletionStream(source, { response: this.response, hideUsageChunk: this.hideUsageChunk }) as this;
  }

  protected override accumulate(chunk: ChatCompletionChunk): void {
    if (chunk.system_fingerprint !== undefined) this.fingerprint = chunk.system_fingerprint;
    super.accumulate(chunk);
  }

  protected newChoice(): ChatChoiceState {
    return { text: "", hasContent: false, toolCalls: [], finishReason: null, logprobs: null };
  }

  protected accumulateChoice(state: ChatChoiceState, c: ChatCompletionChunk["choices"][number]): void {
    const delta = c.delta;
    const text = delta.content;
    if (text) {
      state.hasContent = true;
      this.appendText(state, c.index, text);
    } else if (text === "") {
      state.hasContent = true;
    }
    if (delta.tool_calls) mergeToolCalls(state.toolCalls, delta.tool_calls);
    if (c.finish_reason) state.finishReason = c.finish_reason;
    if (c.logprobs?.content) (state.logprobs ??= []).push(...c.logprobs.content);
  }

  protected assemble(): ChatCompletion {
    const completion: ChatCompletion = {
      id: this.id,
      object: "chat.completion",
      created: this.created,
      model: this.model,
      choices: [],
    };
    if (this.fingerprint !== undefined) completion.system_fingerprint = this.fingerprint;
    this.choices.forEach((s, index) => {
      const toolCalls = s.toolCalls.filter(Boolean);
      completion.choices.push({
        index,
        message: {
          role: "assistant",
          content: s.hasContent || toolCalls.length === 0 ? s.text : null,
          ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
        },
        logprobs: s.logprobs ? { content: s.logprobs } : null,
        finish_reason: s.finishReason ?? "stop",
      });
    });
    if (this.usage) completion.usage = this.usage;
    return completion;
  }
}

type ToolCallDelta = NonNullable<ChatCompletionChunk["choices"][number]["delta"]["tool_calls"]>[number];

/** Tool calls arrive as pieces keyed by `index`: the first has id and name, the rest append arguments. */
function mergeToolCalls(into: ToolCall[], deltas: ToolCallDelta[]): void {
  for (const d of deltas) {
    const existing = into[d.index];
    if (!existing) {
      into[d.index] = {
        id: d.id ?? "",
        type: "function",
        function: { name: d.function?.name ?? "", arguments: d.function?.arguments ?? "" },
      };
      continue;
    }
    if (d.id) existing.id = d.id;
    if (d.function?.name) existing.function.name += d.function.name;
    if (d.function?.arguments) existing.function.arguments += d.function.arguments;
  }
}
