import type { ChatCompletion, ChatCompletionCreateParams } from "../protocol/chat.js";
import type { ClientContext } from "../internal/context.js";
import { openStream } from "../internal/open-stream.js";
import type { RequestOptions } from "../internal/transport.js";
import { ChatCompletionStream } from "../lib/chat-stream.js";
import { parseChatCompletion, type ParseParams, type ParsedChatCompletion } from "../lib/parse.js";
import { runTools, type RunToolsOptions, type RunToolsParams, type RunToolsResult } from "../lib/run-tools.js";
import type { StandardSchemaV1 } from "../lib/standard-schema.js";

export type ChatCompletionCreateParamsStreaming = ChatCompletionCreateParams & { stream: true };
export type ChatCompletionCreateParamsNonStreaming = ChatCompletionCreateParams & { stream?: false | null };

export class Chat {
  readonly completions: ChatCompletions;
  constructor(client: ClientContext) {
    this.completions = new ChatCompletions(client);
  }
}

export class ChatCompletions {
  constructor(private readonly client: ClientContext) {}

  /**
   * Creates a chat completion. With `stream: true` it resolves, once the response headers are in,
   * to a `ChatCompletionStream`.
   *
   * @example
   * const completion = await client.chat.completions.create({ model, messages: [{ role: "user", content: "Hi" }] });
   */
  create(params: ChatCompletionCreateParamsNonStreaming, options?: RequestOptions): Promise<ChatCompletion>;
  create(params: ChatCompletionCreateParamsStreaming, options?: RequestOptions): Promise<ChatCompletionStream>;
  create(params: ChatCompletionCreateParams, options?: RequestOptions): Promise<ChatCompletion | ChatCompletionStream>;
  async create(params: ChatCompletionCreateParams, options?: RequestOptions): Promise<ChatCompletion | ChatCompletionStream> {
    const { client } = this;
    if (params.stream) {
      return openStream(
        client,
        "/chat/completions",
        params,
        options,
        (source, init) => new ChatCompletionStream(source, init),
        client.validate?.chatCompletionChunk,
      );
    }
    const body = await client.transport.json<unknown>({ method: "POST", path: "/chat/completions", body: params }, options);
    return client.validate ? client.validate.chatCompletion(body) : (body as ChatCompletion);
  }

  /**
   * Asks for JSON matching `responseFormat` (a zod or other Standard Schema) and returns the
   * completion with `parsed`: the validated, typed object.
   *
   * @example
   * const { parsed } = await client.chat.completions.parse({ model, messages, responseFormat: z.object({ city: z.string() }) });
   */
  parse<S extends StandardSchemaV1>(params: ParseParams<S>, options?: RequestOptions): Promise<ParsedChatCompletion<S>> {
    return parseChatCompletion(this, params, options);
  }

  /**
   * Runs a tool-calling loop: calls the model, runs the tools it asks for (arguments validated by
   * each tool's schema), sends the results back, until it answers without calling a tool.
   */
  runTools(params: RunToolsParams, options?: RunToolsOptions): Promise<RunToolsResult> {
    return runTools(this, params, options);
  }
}
