import { APIConnectionError, APIError, APIUserAbortError, REQUEST_ID_HEADER, SeventyError } from "../core/errors.js";
import { SSESource, type ChunkSource } from "../core/source.js";
import type { ResponseObject, ResponseStreamEvent } from "../protocol/responses.js";

/** A response with `output_text`: the text of every `output_text` part, joined (as openai-node adds it). */
export type ResponseWithText = ResponseObject & { output_text: string };

/** The concatenated text of every `output_text` part: what openai-node calls `output_text`. */
export function responseOutputText(response: Pick<ResponseObject, "output">): string {
  let out = "";
  for (const item of response.output) {
    if (item.type !== "message") continue;
    for (const part of item.content) if (part.type === "output_text") out += part.text;
  }
  return out;
}

export function withOutputText(response: ResponseObject): ResponseWithText {
  return Object.assign(response, { output_text: responseOutputText(response) });
}

type EventOf<T extends ResponseStreamEvent["type"]> = Extract<ResponseStreamEvent, { type: T }>;

/** Listeners: every event by its `type`, plus `event` (all of them), `text`, `error` and `end`. */
export type ResponseStreamListeners = { [T in ResponseStreamEvent["type"]]: (event: EventOf<T>) => void } & {
  event: (event: ResponseStreamEvent) => void;
  /** A piece of answer text, with all the answer text so far. */
  text: (delta: string, snapshot: string) => void;
  error: (error: SeventyError) => void;
  /** The response finished (completed or incomplete). */
  end: () => void;
};

const TERMINAL = new Set(["response.completed", "response.incomplete", "response.failed"]);
const DONE: IteratorReturnResult<undefined> = { done: true, value: undefined };

/**
 * A streamed response: iterate it for typed events, or use `textStream`, `on(...)`,
 * `finalResponse()`. It is read once; leaving a loop early or `abort()` aborts the request.
 * A `response.failed` event, an `error` event, or a stream cut off before its last event throws.
 *
 * @example
 * const stream = client.responses.stream({ model, input: "Hi" });
 * for await (const text of stream.textStream) process.stdout.write(text);
 * console.log((await stream.finalResponse()).usage);
 */
export class ResponseStream implements AsyncIterable<ResponseStreamEvent> {
  /** The HTTP response the events come from, when there is one. */
  readonly response: Response | undefined;
  private listeners: { [K in keyof ResponseStreamListeners]?: Array<ResponseStreamListeners[K]> } = {};
  private started = false;
  private text = "";
  private lastDelta = "";
  private result: ResponseWithText | undefined;
  private failure: SeventyError | undefined;
  private waiters: Array<{ resolve: (r: ResponseWithText) => void; reject: (e: unknown) => void }> = [];

  constructor(
    private readonly source: ChunkSource<ResponseStreamEvent>,
    init: { response?: Response } = {},
  ) {
    this.response = init.response;
  }

  /** Rebuilds a stream from Responses SSE bytes (e.g. a relayed body). */
  static fromReadableStream(body: ReadableStream<Uint8Array>): ResponseStream {
    return new ResponseStream(new SSESource<ResponseStreamEvent>(body, { namedEvents: true }));
  }

  get requestId(): string | undefined {
    return this.response?.headers.get(REQUEST_ID_HEADER) ?? undefined;
  }

  [Symbol.asyncIterator](): AsyncIterator<ResponseStreamEvent> {
    this.claim();
    return { next: () => this.pull(), return: () => this.close() };
  }

  /** The answer text, piece by piece. */
  get textStream(): AsyncIterable<string> {
    return {
      [Symbol.asyncIterator]: () => {
        this.claim();
        return {
          next: async (): Promise<IteratorResult<string, undefined>> => {
            for (;;) {
              const r = await this.pull();
              if (r.done) return DONE;
              if (this.lastDelta) return { value: this.lastDelta, done: false };
            }
          },
          return: () => this.close(),
        };
      },
    };
  }

  on<K extends keyof ResponseStreamListeners>(event: K, listener: ResponseStreamListeners[K]): this {
    ((this.listeners[event] ??= []) as Array<ResponseStreamListeners[K]>).push(listener);
    return this;
  }

  off<K extends keyof ResponseStreamListeners>(event: K, listener: ResponseStreamListeners[K]): this {
    const list = this.listeners[event] as Array<ResponseStreamListeners[K]> | undefined;
    const i = list?.indexOf(listener) ?? -1;
    if (i >= 0) list!.splice(i, 1);
    return this;
  }

  private emit<K extends keyof ResponseStreamListeners>(event: K, ...args: Parameters<ResponseStreamListeners[K]>): void {
    const list = this.listeners[event];
    if (list) for (const fn of list) (fn as (...a: unknown[]) => void)(...args);
  }

  /** The finished response (with `output_text`); reads the stream if nothing else does. */
  finalResponse(): Promise<ResponseWithText> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.result) return Promise.resolve(this.result);
    const promise = new Promise<ResponseWithText>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (!this.started) {
      this.claim();
      void (async () => {
        try {
          while (!(await this.pull()).done) {
            /* listeners do the work */
          }
        } catch {
          /* delivered to the waiters */
        }
      })();
    }
    return promise;
  }

  /** Stops the stream and aborts its HTTP request; readers get an `APIUserAbortError`. */
  abort(): void {
    this.fail(new APIUserAbortError());
  }

  private claim(): void {
    if (this.started) throw new SeventyError("This stream has already been read. A stream is read once; use finalResponse() after reading.");
    this.started = true;
  }

  private async pull(): Promise<IteratorResult<ResponseStreamEvent, undefined>> {
    for (;;) {
      if (this.failure) throw this.failure;
      if (this.result) return DONE;
      const event = this.source.take();
      if (event === undefined) {
        let more: boolean;
        try {
          more = await this.source.fill();
        } catch (err) {
          throw this.fail(err instanceof SeventyError ? err : new APIConnectionError(String(err), { cause: err }));
        }
        if (!more) {
          // The body ended before a final event: the answer was cut off.
          throw this.fail(new APIConnectionError("The stream ended before the response was finished.", { headers: this.response?.headers }));
        }
        continue;
      }
      this.accumulate(event);
      return { value: event, done: false };
    }
  }

  private accumulate(event: ResponseStreamEvent): void {
    this.lastDelta = "";
    if (event.type === "response.output_text.delta") {
      this.lastDelta = event.delta;
      this.text += event.delta;
      this.emit("text", event.delta, this.text);
    }
    this.emit("event", event);
    this.emit(event.type, event as never);
    if (!TERMINAL.has(event.type)) return;
    const response = (event as EventOf<"response.completed">).response;
    if (event.type === "response.failed") {
      const error = response.error ?? { code: "server_error", message: "The response failed." };
      this.fail(APIError.generate(500, { ...error, type: "server_error", param: null }, error.message, this.response?.headers));
      return;
    }
    this.result = withOutputText(response);
    this.source.finish?.();
    for (const w of this.waiters.splice(0)) w.resolve(this.result);
    this.emit("end");
  }

  private fail(err: SeventyError): SeventyError {
    if (this.failure || this.result) return this.failure ?? err;
    this.failure = err;
    this.source.cancel(err);
    for (const w of this.waiters.splice(0)) w.reject(err);
    this.emit("error", err);
    return err;
  }

  private close(): Promise<IteratorReturnResult<undefined>> {
    if (!this.failure && !this.result) {
      const err = new APIUserAbortError("The stream was closed before it finished.");
      this.failure = err;
      this.source.cancel(err);
      for (const w of this.waiters.splice(0)) w.reject(err);
    }
    return Promise.resolve(DONE);
  }
}

/**
 * A source that opens its request on first read: `responses.stream()` hands back a stream at once
 * (as openai-node does) and connects when something reads it.
 */
export class DeferredSource<T> implements ChunkSource<T> {
  private inner: ChunkSource<T> | undefined;
  private opening: Promise<ChunkSource<T>> | undefined;
  private cancelled: SeventyError | undefined;

  constructor(
    private readonly open: () => Promise<ChunkSource<T>>,
    private readonly onCancel: () => void,
  ) {}

  get complete(): boolean {
    return this.inner?.complete ?? false;
  }

  take(): T | undefined {
    return this.inner?.take();
  }

  async fill(): Promise<boolean> {
    if (!this.inner) {
      if (this.cancelled) throw this.cancelled;
      this.inner = await (this.opening ??= this.open());
      if (this.cancelled) this.inner.cancel(this.cancelled);
    }
    return this.inner.fill();
  }

  cancel(reason: SeventyError): void {
    this.cancelled = reason;
    if (this.inner) this.inner.cancel(reason);
    else this.onCancel();
  }

  finish(): void {
    this.inner?.finish?.();
  }
}
