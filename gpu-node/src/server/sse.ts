/**
 * A push-based SSE response body. Events are written as OpenAI does (`data: …\n\n`), and the
 * consumer going away (client disconnect) calls `onCancel` so generation stops at once.
 */
export class SseWriter {
  readonly stream: ReadableStream<Uint8Array>;
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  private closed = false;
  private readonly encoder = new TextEncoder();

  constructor(onCancel: () => void) {
    this.stream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.controller = controller;
      },
      cancel: () => {
        this.closed = true;
        onCancel();
      },
    });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Writes `data: <json>\n\n`; `json` is an already serialised object. */
  data(json: string): void {
    if (this.closed) return;
    this.controller.enqueue(this.encoder.encode(`data: ${json}\n\n`));
  }

  done(): void {
    if (this.closed) return;
    this.controller.enqueue(this.encoder.encode("data: [DONE]\n\n"));
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.controller.close();
  }
}

export const SSE_HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache",
  "x-accel-buffering": "no",
  // Proxies (and Workers) must not compress or buffer the stream.
  "content-encoding": "identity",
} as const;
