import type { Usage } from "../protocol/common.js";
import { APIConnectionError, APIUserAbortError, REQUEST_ID_HEADER, SeventyError } from "./errors.js";
import { errorEventBody, type ChunkSource } from "./source.js";
import { encodeSSE } from "./sse.js";

export interface StreamEvents<TChunk> {
  /** Every chunk the iterator yields, in order. */
  chunk: (chunk: TChunk) => void;
  /** A piece of generated text, with all text of that choice so far. */
  content: (delta: string, snapshot: string, choiceIndex: number) => void;
  /** Token counts, once the server sends them (at the end). */
  usage: (usage: Usage) => void;
  error: (error: SeventyError) => void;
  /** The stream finished normally. */
  end: () => void;
}

type Listeners<TChunk> = { [K in keyof StreamEvents<TChunk>]?: StreamEvents<TChunk>[K][] };

interface UsageChunk {
  choices: readonly unknown[];
  usage?: Usage | null;
}

export interface StreamInit {
  response?: Response;
  /**
   * The caller did not ask for usage, but the SDK did (so `finalCompletion()` has it): the chunk
   * that only carries usage is then left out of iteration, as the caller expects.
   */
  hideUsageChunk?: boolean;
}

const DONE_EVENT = encodeSSE("[DONE]");
const DONE: IteratorReturnResult<undefined> = { done: true, value: undefined };

/**
 * A completion stream: an AsyncIterable of typed chunks that is read once.
 *
 * Whoever reads it (a `for await` loop, `textStream`, `toReadableStream()`, `toResponse()`, or
 * `finalCompletion()` when nothing else does) drives one pass over the response; `on()` listeners
 * see that pass, and the assembled completion is kept for `finalCompletion()`. Leaving a loop
 * early, `abort()`, or cancelling the readable stream aborts the HTTP request.
 */
export abstract class CompletionStreamBase<TChunk extends UsageChunk, TFinal> implements AsyncIterable<TChunk> {
  /** The HTTP response the chunks come from, when there is one. */
  readonly response: Response | undefined;
  protected readonly hideUsageChunk: boolean;
  protected listeners: Listeners<TChunk> = {};
  private started: false | "read" | "drain" = false;
  private finished = false;
  private failure: SeventyError | undefined;
  private result: TFinal | undefined;
  private waiters: { resolve: (v: TFinal) => void; reject: (e: unknown) => void }[] = [];

  protected constructor(
    protected readonly source: ChunkSource<TChunk>,
    init: StreamInit = {},
  ) {
    this.response = init.response;
    this.hideUsageChunk = init.hideUsageChunk ?? false;
  }

  /** The `x-request-id` of the response: quote it when reporting a problem. */
  get requestId(): string | undefined {
    return this.response?.headers.get(REQUEST_ID_HEADER) ?? undefined;
  }

  /** Folds one chunk into the completion being assembled, emitting `content`/`usage` events. */
  protected abstract accumulate(chunk: TChunk): void;
  /** True when every choice seen so far has a finish reason (and at least one was seen). */
  protected abstract allChoicesFinished(): boolean;
  protected abstract assemble(): TFinal;
  /** A new stream of the same kind over another source (for `tee()`). */
  protected abstract fork(source: ChunkSource<TChunk>): this;

  [Symbol.asyncIterator](): AsyncIterator<TChunk> {
    this.claim("read");
    return {
      next: () => this.pull(false),
      return: () => {
        this.close();
        return Promise.resolve(DONE);
      },
    };
  }

  /** The text of the first choice, piece by piece. */
  get textStream(): AsyncIterable<string> {
    return {
      [Symbol.asyncIterator]: () => {
        this.claim("read");
        return {
          next: async (): Promise<IteratorResult<string, undefined>> => {
            for (;;) {
              const r = await this.pull(false);
              if (r.done) return DONE;
              // `accumulate` already extracted the delta: no second walk over the chunk.
              if (this.lastDelta) return { value: this.lastDelta, done: false };
            }
          },
          return: () => {
            this.close();
            return Promise.resolve(DONE);
          },
        };
      },
    };
  }

  /** The first choice's text in the chunk last yielded (maintained by subclasses). */
  protected lastDelta = "";

  on<K extends keyof StreamEvents<TChunk>>(event: K, listener: StreamEvents<TChunk>[K]): this {
    const list = (this.listeners[event] ??= []) as StreamEvents<TChunk>[K][];
    list.push(listener);
    return this;
  }

  off<K extends keyof StreamEvents<TChunk>>(event: K, listener: StreamEvents<TChunk>[K]): this {
    const list = this.listeners[event];
    if (list) {
      const i = list.indexOf(listener);
      if (i !== -1) list.splice(i, 1);
      if (list.length === 0) delete this.listeners[event];
    }
    return this;
  }

  protected emit<K extends keyof StreamEvents<TChunk>>(event: K, ...args: Parameters<StreamEvents<TChunk>[K]>): void {
    const list = this.listeners[event];
    if (!list) return;
    for (const fn of list) (fn as (...a: unknown[]) => void)(...args);
  }

  /**
   * The whole completion, with usage and tool calls, once the stream ends. If nothing else reads
   * the stream, this reads it (firing `on()` listeners as it goes).
   */
  finalCompletion(): Promise<TFinal> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.finished) return Promise.resolve(this.result as TFinal);
    const promise = new Promise<TFinal>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (!this.started) {
      this.claim("drain");
      void (async () => {
        try {
          while (!(await this.pull(false)).done) {
            /* listeners and accumulation do the work */
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
    if (this.finished || this.failure) return;
    this.fail(new APIUserAbortError());
  }

  /** Two independent streams over the same chunks; this one is consumed by them. */
  tee(): [this, this] {
    this.claim("read");
    const queues: TChunk[][] = [[], []];
    const live = [true, true];
    let pending: Promise<boolean> | undefined;
    let end: "ok" | SeventyError | undefined;
    // Pulls one chunk (hidden usage included) from this stream into both queues.
    const pump = (): Promise<boolean> =>
      (pending ??= this.pull(true).then(
        (r) => {
          pending = undefined;
          if (r.done) {
            end = "ok";
            return false;
          }
          for (let i = 0; i < 2; i++) if (live[i]) queues[i]!.push(r.value);
          return true;
        },
        (err: unknown) => {
          pending = undefined;
          end = toSeventyError(err);
          throw end;
        },
      ));
    const branch = (i: number): ChunkSource<TChunk> => ({
      get complete() {
        return end === "ok";
      },
      take: () => queues[i]!.shift(),
      fill: async () => {
        while (queues[i]!.length === 0) {
          if (end === "ok") return false;
          if (end) throw end;
          await pump();
        }
        return true;
      },
      cancel: () => {
        live[i] = false;
        queues[i]!.length = 0;
        if (!live[0] && !live[1]) this.close();
      },
    });
    return [this.fork(branch(0)), this.fork(branch(1))];
  }

  /**
   * The stream as SSE bytes (`data: {chunk}` … `data: [DONE]`), chunk for chunk, the usage chunk
   * included. An error becomes an error event, which `Seventy.fromReadableStream` (and openai-node)
   * turn back into a thrown error. Cancelling it aborts the request.
   */
  toReadableStream(): ReadableStream<Uint8Array> {
    this.claim("read");
    return new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          try {
            const r = await this.pull(true);
            if (r.done) {
              controller.enqueue(DONE_EVENT);
              controller.close();
            } else {
              controller.enqueue(encodeSSE(JSON.stringify(r.value)));
            }
          } catch (err) {
            if (!(err instanceof APIUserAbortError)) controller.enqueue(encodeSSE(JSON.stringify(errorEventBody(err))));
            controller.close();
          }
        },
        cancel: () => this.close(),
      },
      { highWaterMark: 0 },
    );
  }

  /**
   * An SSE `Response` to return from a route handler (Workers, Hono, Next.js, Deno, Bun).
   * It is not compressed, so proxies and Workers forward each event as it comes.
   */
  toResponse(init: ResponseInit = {}): Response {
    const headers = new Headers(init.headers);
    if (!headers.has("content-type")) headers.set("content-type", "text/event-stream; charset=utf-8");
    if (!headers.has("cache-control")) headers.set("cache-control", "no-cache");
    if (!headers.has("content-encoding")) headers.set("content-encoding", "identity");
    if (!headers.has("x-accel-buffering")) headers.set("x-accel-buffering", "no");
    const id = this.requestId;
    if (id && !headers.has(REQUEST_ID_HEADER)) headers.set(REQUEST_ID_HEADER, id);
    return new Response(this.toReadableStream(), { ...init, headers });
  }

  private claim(how: "read" | "drain"): void {
    if (this.started) {
      throw new SeventyError(
        "This stream has already been read. A stream is read once: use tee() to read it twice, or finalCompletion() after reading.",
      );
    }
    this.started = how;
  }

  /** The next chunk; `includeHidden` also returns the usage chunk the caller did not ask for. */
  private async pull(includeHidden: boolean): Promise<IteratorResult<TChunk, undefined>> {
    const source = this.source;
    for (;;) {
      if (this.failure) throw this.failure;
      if (this.finished) return DONE;
      const chunk = source.take();
      if (chunk === undefined) {
        let more: boolean;
        try {
          more = await source.fill();
        } catch (err) {
          throw this.fail(toSeventyError(err));
        }
        if (!more) this.finish();
        continue;
      }
      this.accumulate(chunk);
      if (this.hideUsageChunk && !includeHidden && chunk.choices.length === 0 && chunk.usage) continue;
      if (this.listeners.chunk) this.emit("chunk", chunk);
      return { value: chunk, done: false };
    }
  }

  private finish(): void {
    if (this.finished || this.failure) return;
    // A body that ends without `[DONE]` while a choice is unfinished was cut off (a dropped
    // connection, a crashed node): that is an error, not a short answer.
    if (!this.source.complete && !this.allChoicesFinished()) {
      this.fail(new APIConnectionError("The stream ended before the completion was finished.", { headers: this.response?.headers }));
      return;
    }
    this.finished = true;
    this.result = this.assemble();
    for (const w of this.waiters.splice(0)) w.resolve(this.result);
    this.emit("end");
  }

  private fail(err: SeventyError): SeventyError {
    if (this.failure || this.finished) return this.failure ?? err;
    this.failure = err;
    this.source.cancel(err);
    for (const w of this.waiters.splice(0)) w.reject(err);
    this.emit("error", err);
    return err;
  }

  /** The reader left early: abort the request quietly (no `error` event), settle any waiters. */
  private close(): void {
    if (this.finished || this.failure) return;
    const err = new APIUserAbortError("The stream was closed before it finished.");
    this.failure = err;
    this.source.cancel(err);
    for (const w of this.waiters.splice(0)) w.reject(err);
  }
}

function toSeventyError(err: unknown): SeventyError {
  if (err instanceof SeventyError) return err;
  return new APIConnectionError(err instanceof Error ? err.message : String(err), { cause: err });
}
