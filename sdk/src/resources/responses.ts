import { APIConnectionError } from "../core/errors.js";
import { SSESource } from "../core/source.js";
import type { ClientContext } from "../internal/context.js";
import type { RequestOptions } from "../internal/transport.js";
import { DeferredSource, ResponseStream, withOutputText, type ResponseWithText } from "../lib/response-stream.js";
import type {
  ResponseCreateParams,
  ResponseDeleted,
  ResponseItemList,
  ResponseObject,
  ResponseStreamEvent,
} from "../protocol/responses.js";

export type ResponseCreateParamsStreaming = ResponseCreateParams & { stream: true };
export type ResponseCreateParamsNonStreaming = ResponseCreateParams & { stream?: false | null };

async function openResponseStream(client: ClientContext, params: ResponseCreateParams, options?: RequestOptions) {
  const { response, abortable, watchdog, idleTimeout } = await client.transport.open(
    { method: "POST", path: "/responses", body: { ...params, stream: true }, stream: true },
    options,
  );
  if (!response.body) {
    watchdog.stop();
    abortable.release();
    throw new APIConnectionError("The server answered a stream request without a body.", { headers: response.headers });
  }
  const source = new SSESource<ResponseStreamEvent>(response.body, {
    abortable,
    watchdog,
    idleTimeoutMs: idleTimeout,
    headers: response.headers,
    namedEvents: true,
  });
  return { source, response };
}

const path = (id: string) => `/responses/${encodeURIComponent(id)}`;

/**
 * OpenAI's Responses API: `create` (with `stream: true` a `ResponseStream`), `stream`, and the
 * stored responses the edge keeps per API key — `retrieve`, `delete`, `cancel`, `inputItems.list`.
 */
export class Responses {
  readonly inputItems: InputItems;

  constructor(private readonly client: ClientContext) {
    this.inputItems = new InputItems(client);
  }

  /**
   * Creates a response; `output_text` holds its text. With `stream: true` it resolves, once the
   * response headers are in, to a `ResponseStream`.
   *
   * @example
   * const response = await client.responses.create({ model, input: "Say hello." });
   * console.log(response.output_text);
   */
  create(params: ResponseCreateParamsNonStreaming, options?: RequestOptions): Promise<ResponseWithText>;
  create(params: ResponseCreateParamsStreaming, options?: RequestOptions): Promise<ResponseStream>;
  create(params: ResponseCreateParams, options?: RequestOptions): Promise<ResponseWithText | ResponseStream>;
  async create(params: ResponseCreateParams, options?: RequestOptions): Promise<ResponseWithText | ResponseStream> {
    if (params.stream) {
      const { source, response } = await openResponseStream(this.client, params, options);
      return new ResponseStream(source, { response });
    }
    const body = await this.client.transport.json<ResponseObject>({ method: "POST", path: "/responses", body: params }, options);
    return withOutputText(body);
  }

  /**
   * A streamed response, returned at once; the request starts when the stream is first read.
   *
   * @example
   * const stream = client.responses.stream({ model, input: "Say hello." });
   * stream.on("response.output_text.delta", (e) => process.stdout.write(e.delta));
   * const { output_text } = await stream.finalResponse();
   */
  stream(params: Omit<ResponseCreateParams, "stream">, options: RequestOptions = {}): ResponseStream {
    const controller = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, controller.signal]) : controller.signal;
    let stream!: ResponseStream;
    const source = new DeferredSource<ResponseStreamEvent>(
      async () => {
        const opened = await openResponseStream(this.client, { ...params, stream: true }, { ...options, signal });
        (stream as { response: Response | undefined }).response = opened.response;
        return opened.source;
      },
      () => controller.abort(),
    );
    stream = new ResponseStream(source);
    return stream;
  }

  /** A stored response (stored unless created with `store: false`). */
  async retrieve(id: string, options?: RequestOptions): Promise<ResponseWithText> {
    return withOutputText(await this.client.transport.json<ResponseObject>({ method: "GET", path: path(id) }, options));
  }

  delete(id: string, options?: RequestOptions): Promise<ResponseDeleted> {
    return this.client.transport.json<ResponseDeleted>({ method: "DELETE", path: path(id) }, options);
  }

  /** Cancels a background response; the edge stores finished responses only, so this answers 400 for them. */
  async cancel(id: string, options?: RequestOptions): Promise<ResponseWithText> {
    return withOutputText(await this.client.transport.json<ResponseObject>({ method: "POST", path: `${path(id)}/cancel` }, options));
  }
}

export class InputItems {
  constructor(private readonly client: ClientContext) {}

  /** The input items of a stored response (newest first unless `order: "asc"`). */
  list(
    id: string,
    query: { order?: "asc" | "desc"; limit?: number; after?: string } = {},
    options?: RequestOptions,
  ): Promise<ResponseItemList> {
    return this.client.transport.json<ResponseItemList>({ method: "GET", path: `${path(id)}/input_items`, query }, options);
  }
}
