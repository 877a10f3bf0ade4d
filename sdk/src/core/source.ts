import type { Abortable, Watchdog } from "../internal/abort.js";
import { APIConnectionError, APIError, APIUserAbortError, SeventyError, type APIErrorObject } from "./errors.js";
import { SSEDecoder } from "./sse.js";

/**
 * Where a stream's chunks come from. `take()` is synchronous so that chunks already decoded cost
 * no promise; `fill()` waits for more and says whether any will come.
 */
export interface ChunkSource<T> {
  take(): T | undefined;
  /** Resolves true when `take()` has something, false at the end; rejects with a `SeventyError`. */
  fill(): Promise<boolean>;
  /** True once the server said the stream is complete (`data: [DONE]`). */
  readonly complete: boolean;
  cancel(reason: SeventyError): void;
  /** The reader saw the protocol's own last event (the Responses API sends no `[DONE]`). */
  finish?(): void;
}

export interface SSESourceOptions {
  /** The attempt's abort state, when the bytes come from a request this SDK made. */
  abortable?: Abortable;
  /** Armed with the time-to-first-chunk limit; switched to `idleTimeoutMs` at the first chunk. */
  watchdog?: Watchdog;
  idleTimeoutMs?: number;
  headers?: Headers;
  /** Run-time validation of each chunk (off unless the client was given a validator). */
  validate?: (chunk: unknown) => unknown;
  /** Named events carry chunks too (the Responses API names every event); `error` stays an error. */
  namedEvents?: boolean;
}

/** Chunks decoded from an SSE byte stream: an HTTP body, or one rebuilt from `toReadableStream()`. */
export class SSESource<T> implements ChunkSource<T> {
  complete = false;
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly decoder: SSEDecoder;
  private queue: T[] = [];
  private head = 0;
  private ended = false;
  private gotFirst = false;
  /** An error met while decoding; thrown once the chunks before it have been taken. */
  private pending: SeventyError | undefined;
  private cancelled: SeventyError | undefined;

  constructor(
    body: ReadableStream<Uint8Array>,
    private readonly opts: SSESourceOptions = {},
  ) {
    this.reader = body.getReader();
    this.decoder = new SSEDecoder((event, data) => this.onEvent(event, data));
    // A `fetch` that ignores its signal (a custom one, a service binding) still stops reading.
    opts.abortable?.onAbort(() => this.reader.cancel(opts.abortable!.reason).catch(() => {}));
  }

  take(): T | undefined {
    if (this.head < this.queue.length) {
      const chunk = this.queue[this.head++]!;
      if (this.head === this.queue.length) {
        this.queue.length = 0;
        this.head = 0;
      }
      return chunk;
    }
    return undefined;
  }

  async fill(): Promise<boolean> {
    for (;;) {
      if (this.head < this.queue.length) return true;
      if (this.pending) throw this.fail(this.pending);
      if (this.complete) {
        this.afterDone();
        return false;
      }
      if (this.ended) return false;
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await this.reader.read();
      } catch (err) {
        throw this.fail(this.abortReason() ?? new APIConnectionError("The connection failed while streaming.", { cause: err, headers: this.opts.headers }));
      }
      // `reader.cancel()` ends a pending read with done: an abort must not look like a normal end.
      const reason = this.abortReason();
      if (reason) throw this.fail(reason);
      if (result.done) {
        this.decoder.end();
        this.ended = true;
        this.release();
        continue;
      }
      if (this.gotFirst) this.opts.watchdog?.touch();
      this.decoder.push(result.value);
      if (!this.gotFirst && (this.head < this.queue.length || this.complete)) {
        this.gotFirst = true;
        this.opts.watchdog?.arm(this.opts.idleTimeoutMs ?? 0, "idle");
      }
    }
  }

  finish(): void {
    if (this.pending || this.complete) return;
    this.complete = true;
    // Reads the body's end (or cuts off a server that holds it open) and releases the timers.
    void this.fill().catch(() => {});
  }

  cancel(reason: SeventyError): void {
    if (this.ended && !this.pending) return;
    this.cancelled ??= reason;
    this.ended = true;
    this.queue.length = 0;
    this.head = 0;
    if (this.opts.abortable) this.opts.abortable.abort(reason);
    else this.reader.cancel(reason).catch(() => {});
    this.release();
  }

  /**
   * `[DONE]` ends the stream for the reader at once. The body's own end normally follows in the same
   * packet; one more read lets the connection be reused, and a server that holds it open is cut off.
   */
  private afterDone(): void {
    if (this.ended) return;
    this.ended = true;
    this.release();
    const reader = this.reader;
    const cut = setTimeout(() => reader.cancel().catch(() => {}), 1_000);
    reader.read().then(
      (r) => {
        clearTimeout(cut);
        if (!r.done) reader.cancel().catch(() => {});
      },
      () => clearTimeout(cut),
    );
  }

  private abortReason(): SeventyError | undefined {
    return this.opts.abortable?.reason ?? this.cancelled;
  }

  private fail(err: SeventyError): SeventyError {
    this.ended = true;
    this.release();
    if (!this.opts.abortable?.reason) this.reader.cancel(err).catch(() => {});
    return err;
  }

  private release(): void {
    this.opts.watchdog?.stop();
    this.opts.abortable?.release();
  }

  private onEvent(event: string | undefined, data: string): void {
    if (this.pending || this.complete) return;
    if (data === "[DONE]") {
      this.complete = true;
      return;
    }
    let value: unknown;
    try {
      value = JSON.parse(data);
    } catch {
      if (event !== undefined && event !== "error") return; // a named event this client does not know
      this.pending = new APIConnectionError(`The stream sent an event that is not JSON: ${data.slice(0, 200)}`, {
        headers: this.opts.headers,
      });
      return;
    }
    if (event === "error" || (value !== null && (value as { error?: unknown }).error != null)) {
      this.pending = inStreamError(value, this.opts.headers);
      return;
    }
    if (event !== undefined && !this.opts.namedEvents) return; // named events other than `error` carry no chunks
    if (this.opts.validate) {
      try {
        value = this.opts.validate(value);
      } catch (err) {
        this.pending = err instanceof SeventyError ? err : new SeventyError(String(err));
        return;
      }
    }
    this.queue.push(value as T);
  }
}

/** The status each OpenAI error `type` stands for (the inverse of the protocol's `errorTypeForStatus`). */
const STATUS_FOR_TYPE: Record<string, number> = {
  invalid_request_error: 400,
  authentication_error: 401,
  permission_error: 403,
  not_found_error: 404,
  rate_limit_error: 429,
  server_error: 500,
  service_unavailable_error: 503,
  timeout_error: 504,
};

/**
 * An error event inside a 200 stream. Its status is the event's `error.status`, else a numeric
 * `error.code` (as vLLM sends), else the status its `type` stands for, so a node failing mid-stream
 * is an `InternalServerError` and a rate limit mid-stream a `RateLimitError`.
 */
export function inStreamError(value: unknown, headers: Headers | undefined): APIError {
  const raw = (value as { error?: unknown } | null)?.error ?? value;
  const error: APIErrorObject =
    typeof raw === "object" && raw !== null ? (raw as APIErrorObject) : { message: String(raw ?? "unknown error") };
  const statusField = (error as { status?: unknown }).status;
  let status =
    typeof statusField === "number" ? statusField : typeof error.code === "number" ? error.code : undefined;
  if (status === undefined || status < 400 || status >= 600) {
    status = typeof error.type === "string" ? STATUS_FOR_TYPE[error.type] : undefined;
  }
  // The Responses API's `error` event ({ type: "error", code, message }) says nothing of a status:
  // a stream the server could not finish is a server error.
  if (status === undefined && error.type === "error") status = 500;
  return APIError.generate(status, error, error.message ?? "The server reported an error in the stream.", headers);
}

/** The body of an in-stream error event for `err`, readable back by `inStreamError`. */
export function errorEventBody(err: unknown): { error: APIErrorObject } {
  if (err instanceof APIError) {
    const body: APIErrorObject = {
      message: err.error?.message ?? err.message,
      type: err.type ?? (err instanceof APIUserAbortError ? "aborted" : "stream_error"),
      param: err.param ?? null,
      code: err.code ?? null,
    };
    if (err.status !== undefined) body.status = err.status;
    return { error: body };
  }
  return { error: { message: err instanceof Error ? err.message : String(err), type: "stream_error", param: null, code: null } };
}
