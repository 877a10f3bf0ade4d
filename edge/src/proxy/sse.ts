import { errorBody, type Usage } from "@seventy/sdk/protocol";

/** How a proxied stream ended. */
export interface StreamOutcome {
  /** The node ended with `data: [DONE]`. */
  completed: boolean;
  /** The client went away first. */
  cancelled: boolean;
  /** The node sent an in-band error event, or the edge cut the stream off. */
  errored: boolean;
  /** Usage as the node reported it. */
  usage: Usage | null;
  /** Events carrying generated text: about one token each (the count used when usage never came). */
  chunks: number;
}

const LF = 10;
const decoder = new TextDecoder();
const encoder = new TextEncoder();
const USAGE_OBJECT = /"usage"\s*:\s*\{/;
/** A non-empty text delta: chat content, completion text or tool-call arguments. */
const TEXT_DELTA = /"(?:content|text|arguments)"\s*:\s*"(?:[^"\\]|\\.)/;

/** Index of the first "\n\n" at or after `from`, or -1. */
function findBoundary(buf: Uint8Array, from: number): number {
  for (let i = buf.indexOf(LF, from); i >= 0 && i + 1 < buf.length; i = buf.indexOf(LF, i + 1)) {
    if (buf[i + 1] === LF) return i;
  }
  return -1;
}

/** Index just past the last "\n\n", or -1. */
function lastBoundaryEnd(buf: Uint8Array): number {
  for (let i = buf.lastIndexOf(LF); i > 0; i = buf.lastIndexOf(LF, i - 1)) {
    if (buf[i - 1] === LF) return i + 1;
  }
  return -1;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a, 0);
  out.set(b, a.byteLength);
  return out;
}

/**
 * Watches an OpenAI-style SSE byte stream event by event and passes the bytes of complete events
 * on unchanged: nothing is re-encoded and nothing waits for more than the rest of its own event.
 * It notes usage, `[DONE]` and error events, and drops the usage-only chunk when asked to (the
 * edge always asks nodes for usage, the client may not have).
 */
export class SseScanner {
  readonly outcome: StreamOutcome = { completed: false, cancelled: false, errored: false, usage: null, chunks: 0 };
  private tail: Uint8Array | null = null;

  constructor(private readonly stripUsage: boolean) {}

  /** The bytes to forward for this piece of the stream (null: nothing complete yet). */
  push(piece: Uint8Array): Uint8Array | null {
    const data = this.tail ? concat(this.tail, piece) : piece;
    this.tail = null;
    const end = lastBoundaryEnd(data);
    if (end < 0) {
      this.tail = data.slice();
      return null;
    }
    if (end < data.length) this.tail = data.slice(end);
    let kept: Uint8Array[] | null = null;
    let keepFrom = 0;
    for (let start = 0; start < end; ) {
      const stop = findBoundary(data, start);
      const next = stop + 2;
      if (!this.keep(data.subarray(start, stop))) {
        (kept ??= []).push(data.subarray(keepFrom, start));
        keepFrom = next;
      }
      start = next;
    }
    if (!kept) return end === data.length ? data : data.subarray(0, end);
    kept.push(data.subarray(keepFrom, end));
    let size = 0;
    for (const k of kept) size += k.byteLength;
    const out = new Uint8Array(size);
    let at = 0;
    for (const k of kept) {
      out.set(k, at);
      at += k.byteLength;
    }
    return out;
  }

  /** Bytes of an unfinished event held back. */
  get pending(): number {
    return this.tail?.byteLength ?? 0;
  }

  /** Classifies one event (without its blank line); false drops it. */
  protected keep(event: Uint8Array): boolean {
    const text = decoder.decode(event);
    let at: number;
    if (text.startsWith("data:")) at = 5;
    else {
      const line = text.indexOf("\ndata:");
      if (line < 0) return true; // a comment or another field
      at = line + 6;
    }
    if (text.charCodeAt(at) === 32) at++;
    const payload = text.slice(at);
    if (payload.startsWith("[DONE]")) {
      this.outcome.completed = true;
      return true;
    }
    if (payload.startsWith('{"error"')) {
      this.outcome.errored = true;
      return true;
    }
    if (USAGE_OBJECT.test(payload)) {
      try {
        const chunk = JSON.parse(payload) as { usage?: Usage | null; choices?: unknown[] };
        if (chunk.usage) this.outcome.usage = chunk.usage;
        if (Array.isArray(chunk.choices) && chunk.choices.length === 0) return !this.stripUsage;
      } catch {
        // Not JSON after all: pass it on untouched.
      }
    }
    if (TEXT_DELTA.test(payload)) this.outcome.chunks++;
    return true;
  }
}

/** The in-band error event that ends a stream the node did not finish. Never followed by [DONE]. */
export function errorEvent(message: string, code: string): Uint8Array {
  return encoder.encode(`data: ${JSON.stringify(errorBody(502, message, { code }))}\n\n`);
}

export interface MeteredStreamOptions {
  reader: ReadableStreamDefaultReader<Uint8Array>;
  /** Bytes already read from `reader` (while deciding whether to fail over). */
  first?: Uint8Array;
  stripUsage: boolean;
  /** Silence from the node for this long ends the stream with an error event. */
  idleTimeoutMs: number;
  /** Called exactly once: at the end, at a cut-off, or when the client cancels. */
  onEnd(outcome: StreamOutcome): void;
  /** Another protocol's scanner and cut-off event (the Responses API's); chat's by default. */
  protocol?: { scanner: SseScanner; cutOffEvent(message: string, code: string): Uint8Array };
}

const IDLE = Symbol("idle");

function readWithin(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  ms: number,
): Promise<ReadableStreamReadResult<Uint8Array> | typeof IDLE> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const idle = new Promise<typeof IDLE>((resolve) => {
    timer = setTimeout(() => resolve(IDLE), ms);
  });
  return Promise.race([reader.read(), idle]).finally(() => clearTimeout(timer ?? null));
}

/**
 * The client's side of a proxied stream: node bytes pass through as they arrive; a node that
 * dies or goes silent mid-stream yields an OpenAI-shaped error event instead of `[DONE]`; a client
 * that goes away cancels the node's request.
 */
export function meteredStream(o: MeteredStreamOptions): ReadableStream<Uint8Array> {
  const scanner = o.protocol?.scanner ?? new SseScanner(o.stripUsage);
  const cutOffEvent = o.protocol?.cutOffEvent ?? errorEvent;
  let first = o.first;
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    o.onEnd(scanner.outcome);
  };
  const cutOff = (controller: ReadableStreamDefaultController<Uint8Array>, message: string, code: string) => {
    scanner.outcome.errored = true;
    controller.enqueue(cutOffEvent(message, code));
    controller.close();
    end();
  };

  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        for (;;) {
          let piece: Uint8Array;
          if (first) {
            piece = first;
            first = undefined;
          } else {
            let r: ReadableStreamReadResult<Uint8Array> | typeof IDLE;
            try {
              r = await readWithin(o.reader, o.idleTimeoutMs);
            } catch {
              return cutOff(controller, "The node serving this request failed before finishing the response.", "upstream_disconnected");
            }
            if (r === IDLE) {
              o.reader.cancel().catch(() => undefined);
              return cutOff(controller, "The node serving this request stopped sending.", "upstream_timeout");
            }
            if (r.done) {
              if (scanner.outcome.completed) {
                controller.close();
                end();
                return;
              }
              if (scanner.outcome.errored) {
                // The node ended with its own error event: pass that end on as it is.
                controller.close();
                end();
                return;
              }
              return cutOff(controller, "The node serving this request ended the stream before finishing the response.", "upstream_disconnected");
            }
            piece = r.value;
          }
          const out = scanner.push(piece);
          if (out && out.byteLength > 0) {
            controller.enqueue(out);
            return;
          }
        }
      },
      cancel() {
        scanner.outcome.cancelled = true;
        o.reader.cancel().catch(() => undefined);
        end();
      },
    },
    { highWaterMark: 0 },
  );
}
