import type { Completion, CompletionCreateParams } from "../protocol/completions.js";
import type { ClientContext } from "../internal/context.js";
import { openStream } from "../internal/open-stream.js";
import type { RequestOptions } from "../internal/transport.js";
import { CompletionStream } from "../lib/completion-stream.js";

export type CompletionCreateParamsStreaming = CompletionCreateParams & { stream: true };
export type CompletionCreateParamsNonStreaming = CompletionCreateParams & { stream?: false | null };

/** Legacy text completions (`POST /completions`): a raw prompt, no chat template. */
export class Completions {
  constructor(private readonly client: ClientContext) {}

  create(params: CompletionCreateParamsNonStreaming, options?: RequestOptions): Promise<Completion>;
  create(params: CompletionCreateParamsStreaming, options?: RequestOptions): Promise<CompletionStream>;
  create(params: CompletionCreateParams, options?: RequestOptions): Promise<Completion | CompletionStream>;
  async create(params: CompletionCreateParams, options?: RequestOptions): Promise<Completion | CompletionStream> {
    const { client } = this;
    if (params.stream) {
      return openStream(
        client,
        "/completions",
        params,
        options,
        (source, init) => new CompletionStream(source, init),
        client.validate?.completion,
      );
    }
    const body = await client.transport.json<unknown>({ method: "POST", path: "/completions", body: params }, options);
    return client.validate ? client.validate.completion(body) : (body as Completion);
  }
}
