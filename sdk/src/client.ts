import { SeventyError } from "./core/errors.js";
import type { ClientContext } from "./internal/context.js";
import { readEnv } from "./internal/env.js";
import { Transport, type Fetch } from "./internal/transport.js";
import { ChatCompletionStream } from "./lib/chat-stream.js";
import type { ResponseValidator } from "./lib/validate.js";
import { Chat } from "./resources/chat.js";
import { Completions } from "./resources/completions.js";
import { Models } from "./resources/models.js";
import { Responses } from "./resources/responses.js";

export interface ClientOptions {
  /** The edge's API root, e.g. `https://llm.example.com/v1`. Default: `SEVENTY_BASE_URL`. */
  baseURL?: string;
  /** Default: `SEVENTY_API_KEY`. */
  apiKey?: string;
  /** Default: the global `fetch`. */
  fetch?: Fetch;
  /** Retries of connection errors and 408/409/429/5xx before a response arrives. Default 2. */
  maxRetries?: number;
  /**
   * The longest `Retry-After` the client sits out before retrying, in milliseconds (default 60 000).
   * A longer one is thrown at once (a `RateLimitError` with `retryAfter`), so nothing hangs unseen.
   */
  maxRetryDelay?: number;
  /**
   * Milliseconds. Non-streaming: each attempt as a whole. Streaming: until the first chunk.
   * Default 600 000 (10 minutes).
   */
  timeout?: number;
  /** Streaming: the longest silence allowed between pieces of a stream. Default 60 000. */
  idleTimeout?: number;
  /** Sent with every request. */
  headers?: Record<string, string>;
  /** Checks every response at run time, e.g. `protocolValidator`. Default: none (see README). */
  validate?: ResponseValidator;
}

/** The subset of a Workers service binding (`Fetcher`) the SDK uses. */
export interface ServiceBinding {
  fetch(input: string | Request, init?: RequestInit): Promise<Response>;
}

/** The origin used for requests through a service binding; the edge sees only the path. */
export const BINDING_ORIGIN = "https://seventy.binding";

/**
 * The Seventy API client.
 *
 * @example
 * import { Seventy } from "@seventy/sdk";
 * const client = new Seventy({ baseURL: "https://llm.example.com/v1", apiKey: process.env.SEVENTY_API_KEY });
 * const stream = await client.chat.completions.create({ model, messages, stream: true });
 * for await (const text of stream.textStream) process.stdout.write(text);
 */
export class Seventy implements ClientContext {
  readonly transport: Transport;
  readonly validate: ResponseValidator | undefined;
  readonly chat: Chat;
  readonly completions: Completions;
  readonly models: Models;
  readonly responses: Responses;

  constructor(options: ClientOptions = {}) {
    const baseURL = options.baseURL ?? readEnv("SEVENTY_BASE_URL");
    const apiKey = options.apiKey ?? readEnv("SEVENTY_API_KEY");
    if (!baseURL) throw new SeventyError("Missing baseURL: pass { baseURL } or set SEVENTY_BASE_URL.");
    if (!apiKey) throw new SeventyError("Missing apiKey: pass { apiKey } or set SEVENTY_API_KEY.");
    const fetchImpl = options.fetch ?? ((input, init) => fetch(input, init));
    this.transport = new Transport({
      baseURL,
      fetch: fetchImpl,
      maxRetries: options.maxRetries ?? 2,
      maxRetryDelay: options.maxRetryDelay,
      timeout: options.timeout ?? 600_000,
      idleTimeout: options.idleTimeout ?? 60_000,
      headers: { authorization: `Bearer ${apiKey}`, ...options.headers },
    });
    this.validate = options.validate;
    this.chat = new Chat(this);
    this.completions = new Completions(this);
    this.models = new Models(this);
    this.responses = new Responses(this);
  }

  /**
   * A client that calls the edge through a Workers service binding (its RPC entrypoint) instead of
   * the public internet. Same API, same streams; the edge applies the same auth and limits.
   *
   * @example
   * const client = Seventy.fromBinding(env.SEVENTY, { apiKey: env.SEVENTY_API_KEY });
   */
  static fromBinding(binding: ServiceBinding, options: Omit<ClientOptions, "baseURL" | "fetch"> = {}): Seventy {
    return new Seventy({
      ...options,
      baseURL: `${BINDING_ORIGIN}/v1`,
      fetch: (input, init) => binding.fetch(input, init),
    });
  }

  /** Rebuilds a chat completion stream from a `Response` carrying SSE (e.g. one from `toResponse()`). */
  static fromResponse(response: Response): ChatCompletionStream {
    return ChatCompletionStream.fromResponse(response);
  }

  /** Rebuilds a chat completion stream from SSE bytes (e.g. `toReadableStream()` relayed elsewhere). */
  static fromReadableStream(body: ReadableStream<Uint8Array>): ChatCompletionStream {
    return ChatCompletionStream.fromReadableStream(body);
  }
}
