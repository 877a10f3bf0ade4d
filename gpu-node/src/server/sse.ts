import type { ServerResponse } from "node:http";
import { errorBody } from "@seventy/sdk/protocol";

/**
 * A push-based SSE response. Events are written as OpenAI does (`data: …\n\n`), and the client
 * going away calls `onCancel` so generation stops at once.
 *
 * Under Node the writer writes straight to the socket's ServerResponse: a web ReadableStream costs
 * a promise round trip per chunk, which at 256 concurrent streams is most of the host path. Other
 * runtimes (and `app.fetch` in tests) get a ReadableStream body.
 */
export interface StreamFlow {
  /** The reader fell behind: stop producing (the generation keeps its KV blocks). */
  pause(): void;
  /** The reader caught up. */
  resume(): void;
  /** A paused stream whose reader has not caught up after this long is cancelled (default 30 s). */
  stallMs?: number;
  /** Bytes buffered for the reader beyond which the stream is cancelled at once (default 1 MiB). */
  maxBufferedBytes?: number;
}

export class SseWriter {
  private closed = false;
  private readonly sink: { write(s: string): void; end(): void };
  private readonly webStream: ReadableStream<Uint8Array> | null = null;
  private paused = false;
  private stallTimer: NodeJS.Timeout | undefined;
  private readonly cancel: () => void;

  /**
   * `flow` honours backpressure: when the client stops reading, the generation is paused; once the
   * client catches up it resumes; a client that stays behind for `stallMs` (or lets more than
   * `maxBufferedBytes` pile up) has its stream cancelled, which aborts the generation and frees its
   * KV blocks. Without `flow` the stream is still cancelled past those bounds, only never paused.
   */
  constructor(onCancel: () => void, outgoing?: ServerResponse, extraHeaders: Record<string, string> = {}, private readonly flow?: StreamFlow) {
    const stallMs = flow?.stallMs ?? 30_000;
    const maxBuffered = flow?.maxBufferedBytes ?? 1 << 20;
    this.cancel = () => {
      if (this.closed) return;
      this.closed = true;
      clearTimeout(this.stallTimer);
      onCancel();
    };
    const behind = () => {
      if (this.paused || this.closed) return;
      this.paused = true;
      this.flow?.pause();
      this.stallTimer = setTimeout(() => {
        this.cancel();
        outgoing?.destroy();
        if (this.webStream) controller?.error(new Error("the client stopped reading"));
      }, stallMs);
      this.stallTimer.unref();
    };
    const caughtUp = () => {
      if (!this.paused || this.closed) return;
      this.paused = false;
      clearTimeout(this.stallTimer);
      this.flow?.resume();
    };
    if (outgoing) {
      outgoing.writeHead(200, { ...SSE_HEADERS, ...extraHeaders });
      outgoing.flushHeaders();
      outgoing.on("close", () => this.cancel());
      outgoing.on("drain", caughtUp);
      this.sink = {
        write: (s) => {
          if (outgoing.write(s)) return;
          if (outgoing.writableLength > maxBuffered) {
            this.cancel();
            outgoing.destroy();
          } else behind();
        },
        end: () => outgoing.end(),
      };
      return;
    }
    const encoder = new TextEncoder();
    let controller: ReadableStreamDefaultController<Uint8Array> | undefined;
    this.webStream = new ReadableStream<Uint8Array>(
      {
        start: (c) => {
          controller = c;
        },
        pull: () => caughtUp(),
        cancel: () => this.cancel(),
      },
      new ByteLengthQueuingStrategy({ highWaterMark: 64 * 1024 }),
    );
    this.sink = {
      write: (s) => {
        controller!.enqueue(encoder.encode(s));
        const desired = controller!.desiredSize ?? 0;
        if (desired < 64 * 1024 - maxBuffered) {
          this.cancel();
          controller!.error(new Error("the client stopped reading"));
        } else if (desired <= 0) behind();
      },
      end: () => controller!.close(),
    };
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** The Response to return from the handler (a marker response when written to Node directly). */
  response(alreadySent: Response): Response {
    return this.webStream ? new Response(this.webStream, { headers: SSE_HEADERS }) : alreadySent;
  }

  /** Writes `data: <json>\n\n`; `json` is an already serialised object. */
  data(json: string): void {
    if (this.closed) return;
    this.sink.write(`data: ${json}\n\n`);
  }

  /**
   * Ends the stream with an in-band error event and no [DONE]: the client must not mistake a
   * cut-off answer for a whole one.
   */
  fail(err: Error): void {
    this.data(JSON.stringify(errorBody(500, `Generation failed: ${err.message}`, { type: "server_error", code: "engine_error" })));
    this.close();
  }

  done(): void {
    if (this.closed) return;
    this.sink.write("data: [DONE]\n\n");
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.stallTimer);
    this.sink.end();
  }
}

export const SSE_HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache",
  "x-accel-buffering": "no",
  // Proxies (and Workers) must not compress or buffer the stream.
  "content-encoding": "identity",
} as const;
