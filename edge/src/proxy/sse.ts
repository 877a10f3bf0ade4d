import { errorBody, type Usage } from "@seventy/sdk/protocol";
import { DEFAULT_STREAM_KEEPALIVE_MS } from "../config";

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
const CR = 13;
const decoder = new TextDecoder();
const encoder = new TextEncoder();
const USAGE_OBJECT = /"usage"\s*:\s*\{/;
/** A non-empty text delta: chat content, completion text or tool-call arguments. */
const TEXT_DELTA = /"(?:content|text|arguments)"\s*:\s*"(?:[^"\\]|\\.)/;

/**
 * An event ends at a blank line: "\n\n", or "\r\n\r\n" for CRLF framing (mixed endings too).
 * Returns the index of the blank line's LF at or after `from`, or -1.
 */
function findBoundary(buf: Uint8Array, from: number): number {
  for (let i = buf.indexOf(LF, from); i >= 0; i = buf.indexOf(LF, i + 1)) {
    if (i < 1) continue;
    if (buf[i - 1] === LF) return i;
    if (buf[i - 1] === CR && i >= 2 && buf[i - 2] === LF) return i;
  }
  return -1;
}

/** Index just past the last blank line, or -1. */
function lastBoundaryEnd(buf: Uint8Array): number {
  for (let i = buf.lastIndexOf(LF); i > 0; i = buf.lastIndexOf(LF, i - 1)) {
    if (buf[i - 1] === LF || (buf[i - 1] === CR && i >= 2 && buf[i - 2] === LF)) return i + 1;
  }
  return -1;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a, 0);
  out.set(b, a.byteLength);
  return out;
}

/** Largest unfinished event the scanner holds back by default (a node sending more is cut off). */
export const MAX_EVENT_BYTES = 1 << 20;

/**
 * Watches an OpenAI-style SSE byte stream event by event and passes the bytes of complete events
 * on unchanged: nothing is re-encoded and nothing waits for more than the rest of its own event.
 * It notes usage, `[DONE]` and error events, and drops the usage-only chunk when asked to (the
 * edge always asks nodes for usage, the client may not have).
 */
export class SseScanner {
  readonly outcome: StreamOutcome = { completed: false, cancelled: false, errored: false, usage: null, chunks: 0 };
  private tail: Uint8Array | null = null;
  /** An event grew past maxEventBytes without ending: the stream is not one this edge passes on. */
  overflowed = false;

  constructor(
    private readonly stripUsage: boolean,
    private readonly maxEventBytes = MAX_EVENT_BYTES,
  ) {}

  /** The bytes to forward for this piece of the stream (null: nothing complete yet). */
  push(piece: Uint8Array): Uint8Array | null {
    if (this.overflowed) return null;
    const data = this.tail ? concat(this.tail, piece) : piece;
    this.tail = null;
    const end = lastBoundaryEnd(data);
    if (end < 0) {
      if (data.byteLength > this.maxEventBytes) this.overflowed = true;
      else this.tail = data.slice();
      return null;
    }
    if (data.byteLength - end > this.maxEventBytes) {
      this.overflowed = true;
      return null;
    }
    if (end < data.length) this.tail = data.slice(end);
    let kept: Uint8Array[] | null = null;
    let keepFrom = 0;
    for (let start = 0; start < end; ) {
      const stop = findBoundary(data, start);
      const next = stop + 1;
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
      // A node's error event carries what it generated before failing.
      try {
        const ev = JSON.parse(payload) as { usage?: Usage | null };
        if (ev.usage) this.outcome.usage = ev.usage;
      } catch {
        // Not JSON: an error all the same.
      }
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
  /**
   * After this long with nothing sent to the client, an SSE comment (`: keep-alive`) is sent: idle
   * connections stay open through proxies, and a write is how the runtime learns that a client left
   * while the node is silent. Not the node's activity: node silence still ends at `idleTimeoutMs`.
   * 0: never. Default DEFAULT_STREAM_KEEPALIVE_MS.
   */
  keepAliveMs?: number;
  /** The longest a stream may run; then it ends with an error event. */
  maxStreamMs: number;
  /** Largest unfinished event held back. */
  maxEventBytes?: number;
  /** After asking the node to stop, how long to wait for the end of its stream (with its usage). */
  drainMs: number;
  /** Aborts when the client goes away (the runtime may not cancel the body when a write fails). */
  clientSignal?: AbortSignal;
  /**
   * A client that reads nothing for this long is gone. The runtime reads a response body as fast
   * as the connection takes it (kernel buffers hold far more than a stalled SSE stream sends), but
   * may drop the body of a client that left without reading or cancelling it again; without this
   * such a stream would hold its node and its lease forever.
   */
  clientIdleMs: number;
  /** Asks the node to stop this request; it then ends the stream with its usage. */
  stop(): Promise<boolean>;
  /** Called exactly once: at the end, at a cut-off, or after the client left. */
  onEnd(outcome: StreamOutcome): void;
  /** Runs at each tick of the stream's clock (the request's lease renewal rides on it). */
  onTick?: (now: number) => void;
  /**
   * Another protocol's scanner and cut-off event (the Responses API's); chat's by default. The
   * scanner must bound its held-back event as chat's does (`maxEventBytes`).
   */
  protocol?: { scanner: SseScanner; cutOffEvent(message: string, code: string): Uint8Array };
}

const IDLE = Symbol("idle");

/** An SSE comment line: clients ignore it (a line starting with ':'), the connection sees bytes. */
const KEEP_ALIVE = encoder.encode(": keep-alive\n\n");

/** The most a stream's clock waits between ticks. */
const MAX_TICK_MS = 1000;

/** Cut-offs that more than one place decides on. */
const WALL_TIME = { message: "The stream ran longer than this edge allows.", code: "stream_time_limit" };
const EVENT_TOO_LARGE = { message: "The node sent an event larger than this edge passes on.", code: "upstream_event_too_large" };

/**
 * The client's side of a proxied stream: node bytes pass through as they arrive. Every ending goes
 * through `finish`, which calls `onEnd` once:
 * - the node finished (`[DONE]`) or sent its own error event: passed on as it is;
 * - the node died mid-stream: an OpenAI-shaped error event instead of `[DONE]`;
 * - the node went silent, the stream ran past its wall time, or an event grew too large: an error
 *   event, and the node is asked to stop;
 * - the client went away (body cancelled or request aborted): the node is asked to stop.
 * A node asked to stop ends its stream at once with its real usage; the edge reads that end
 * (for at most `drainMs`) without passing anything more on.
 */
export function meteredStream(o: MeteredStreamOptions): ReadableStream<Uint8Array> {
  const scanner = o.protocol?.scanner ?? new SseScanner(o.stripUsage, o.maxEventBytes);
  const cutOffEvent = o.protocol?.cutOffEvent ?? errorEvent;
  const deadline = Date.now() + o.maxStreamMs;
  const keepAliveMs = o.keepAliveMs ?? DEFAULT_STREAM_KEEPALIVE_MS;
  /** When the client was last sent something (the headers count). */
  let lastSentAt = Date.now();
  /** When the edge began waiting for the node's next piece: node silence is counted from here. */
  let quietSince = lastSentAt;
  let finished = false;
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  // One read of the node's stream at a time: a read that outlived its wait (idle, or the client
  // left meanwhile) is the next one consumed, so no chunk (the usage chunk least of all) is lost.
  let pending: Promise<ReadableStreamReadResult<Uint8Array>> | null = null;
  const nextRead = () => {
    if (!pending) {
      quietSince = Date.now();
      pending = o.reader.read();
    }
    return pending;
  };
  /** Since when the client has had everything sent and not asked for more (null: a pull is on). */
  let unreadSince: number | null = lastSentAt;
  /** Wakes the pull waiting for the node (null: none waits). */
  let wake: (() => void) | null = null;
  const wakePull = () => {
    const w = wake;
    wake = null;
    w?.();
  };
  /** Only from within `pull`: the runtime is then waiting for a chunk, so nothing piles up here. */
  const send = (bytes: Uint8Array) => {
    controller.enqueue(bytes);
    lastSentAt = Date.now();
    unreadSince = lastSentAt;
  };

  const end = () => o.onEnd(scanner.outcome);
  const closeClient = (event?: Uint8Array) => {
    try {
      if (event) controller.enqueue(event);
      controller.close();
    } catch {
      // The client is gone already.
    }
  };
  /** Reads the rest of the node's stream for its usage, passing nothing on. */
  const drain = async () => {
    const until = Date.now() + o.drainMs;
    const timer = setTimeout(() => void o.reader.cancel().catch(() => undefined), o.drainMs);
    try {
      // The clock is checked too: a node that never pauses would keep the timer from firing.
      while (Date.now() < until) {
        const r = await nextRead();
        pending = null;
        if (r.done) break;
        scanner.push(r.value);
      }
    } catch {
      // Cut by the timer, or the node went away: usage stays unknown unless it came.
    } finally {
      clearTimeout(timer);
      o.reader.cancel().catch(() => undefined);
    }
  };
  const finish = (how: "end" | "broken" | "stop" | "client", event?: { message: string; code: string }) => {
    if (finished) return;
    finished = true;
    clearInterval(clock);
    wakePull();
    if (how === "client") scanner.outcome.cancelled = true;
    else if (event) {
      scanner.outcome.errored = true;
      closeClient(cutOffEvent(event.message, event.code));
    } else closeClient();
    if (how === "end" || how === "broken") {
      if (how === "broken") o.reader.cancel().catch(() => undefined);
      end();
      return;
    }
    // Learn what the node generated: stop it, then read its stream's end (a node that had already
    // finished has its usage chunk waiting there too; a silent one is cut off after drainMs).
    void (async () => {
      await o.stop().catch(() => false);
      await drain();
      end();
    })();
  };
  // One timer per stream: its clock ticks every `tickMs` and reads every deadline there — a client
  // that went away or reads nothing for clientIdleMs, the wall time, and, while a pull waits for the
  // node, the node's silence and the keep-alive (it wakes that pull) — so nothing is scheduled per
  // chunk. Deadlines land up to a tick late: a quarter of the shortest of them, at most a second.
  const tickMs = Math.max(5, Math.min(MAX_TICK_MS, Math.floor(Math.min(o.clientIdleMs, o.maxStreamMs, o.idleTimeoutMs, keepAliveMs > 0 ? keepAliveMs : Infinity) / 4)));
  const clock = setInterval(() => {
    const now = Date.now();
    o.onTick?.(now);
    if (finished) return;
    if (o.clientSignal?.aborted || (unreadSince !== null && now - unreadSince >= o.clientIdleMs)) return finish("client");
    if (wake === null) {
      if (now >= deadline) finish("stop", WALL_TIME);
    } else if (now >= deadline || now >= quietSince + o.idleTimeoutMs || (keepAliveMs > 0 && now >= lastSentAt + keepAliveMs)) {
      wakePull();
    }
  }, tickMs);

  return new ReadableStream<Uint8Array>(
    {
      start(c) {
        controller = c;
        // The first piece is in hand: queued now, it goes out as soon as the runtime reads the body,
        // without a call to `pull` first. One piece, so nothing piles up.
        if (o.first) {
          const out = scanner.push(o.first);
          if (scanner.overflowed) {
            queueMicrotask(() => finish("stop", EVENT_TOO_LARGE));
          } else if (out && out.byteLength > 0) {
            c.enqueue(out);
            lastSentAt = Date.now();
          }
        }
      },
      async pull() {
        unreadSince = null;
        while (!finished) {
          let r: ReadableStreamReadResult<Uint8Array> | typeof IDLE;
          // One wait: for the node's next piece, until the clock finds node silence, the wall
          // time or the client's keep-alive due.
          const read = nextRead();
          const idleAt = quietSince + o.idleTimeoutMs;
          try {
            r = await Promise.race([read, new Promise<typeof IDLE>((resolve) => (wake = () => resolve(IDLE)))]);
          } catch {
            wake = null;
            pending = null;
            if (finished) return;
            return finish("broken", { message: "The node serving this request failed before finishing the response.", code: "upstream_disconnected" });
          }
          wake = null;
          // The client left (or time ran out) while this read was in flight: the drain consumes it.
          if (finished) return;
          if (r !== IDLE) pending = null;
          if (r === IDLE) {
            const now = Date.now();
            if (now >= deadline) return finish("stop", WALL_TIME);
            if (now >= idleAt) return finish("stop", { message: "The node serving this request stopped sending.", code: "upstream_timeout" });
            // Only the keep-alive is due. The scanner passes whole events only, so the client is
            // between events here; the node's read stays pending for the next pull. A write to a
            // client that left fails, and the runtime then cancels this body (finish("client")).
            // A copy: a runtime may detach the buffers it is given.
            return send(KEEP_ALIVE.slice());
          }
          if (r.done) {
            // The node ended with [DONE] or with its own error event: pass that end on as it is.
            if (scanner.outcome.completed || scanner.outcome.errored) return finish("end");
            return finish("broken", { message: "The node serving this request ended the stream before finishing the response.", code: "upstream_disconnected" });
          }
          const out = scanner.push(r.value);
          if (scanner.overflowed) return finish("stop", EVENT_TOO_LARGE);
          if (out && out.byteLength > 0) return send(out);
        }
      },
      cancel() {
        finish("client");
      },
    },
    { highWaterMark: 0 },
  );
}
