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
export class SseWriter {
  private closed = false;
  private readonly sink: { write(s: string): void; end(): void };
  private readonly webStream: ReadableStream<Uint8Array> | null = null;

  constructor(onCancel: () => void, outgoing?: ServerResponse, extraHeaders: Record<string, string> = {}) {
    if (outgoing) {
      outgoing.writeHead(200, { ...SSE_HEADERS, ...extraHeaders });
      outgoing.flushHeaders();
      outgoing.on("close", () => {
        if (!this.closed) {
          this.closed = true;
          onCancel();
        }
      });
      this.sink = { write: (s) => void outgoing.write(s), end: () => outgoing.end() };
      return;
    }
    const encoder = new TextEncoder();
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    this.webStream = new ReadableStream<Uint8Array>({
      start: (c) => {
        controller = c;
      },
      cancel: () => {
        this.closed = true;
        onCancel();
      },
    });
    this.sink = { write: (s) => controller.enqueue(encoder.encode(s)), end: () => controller.close() };
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

  /** Writes `event: <name>\ndata: <json>\n\n`: the Responses API names every event. */
  event(name: string, json: string): void {
    if (this.closed) return;
    this.sink.write(`event: ${name}\ndata: ${json}\n\n`);
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
