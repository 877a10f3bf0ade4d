import { describe, expect, it } from "vitest";
import { meteredStream, SseScanner, type StreamOutcome } from "../src/proxy/sse";
import { sseBody, streamOf } from "./helpers";

const enc = new TextEncoder();
const dec = new TextDecoder();

function scanAll(pieces: string[], strip: boolean): { out: string; scanner: SseScanner } {
  const scanner = new SseScanner(strip);
  let out = "";
  for (const p of pieces) {
    const b = scanner.push(enc.encode(p));
    if (b) out += dec.decode(b);
  }
  return { out, scanner };
}

/** Splits a string into pieces at every `step` characters (events torn across reads). */
function tear(s: string, step: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < s.length; i += step) out.push(s.slice(i, i + step));
  return out;
}

describe("SseScanner", () => {
  it("passes events through byte for byte, whole pieces without copying", () => {
    const body = sseBody(3);
    const scanner = new SseScanner(false);
    const piece = enc.encode(body);
    expect(scanner.push(piece)).toBe(piece);
    expect(scanner.outcome.completed).toBe(true);
    expect(scanner.outcome.usage).toEqual({ prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 });
    expect(scanner.outcome.chunks).toBe(3);
  });

  it("holds back only the unfinished part of an event torn across reads", () => {
    const body = sseBody(5);
    for (const step of [1, 7, 50, 333]) {
      const { out, scanner } = scanAll(tear(body, step), false);
      expect(out).toBe(body);
      expect(scanner.pending).toBe(0);
      expect(scanner.outcome.completed).toBe(true);
    }
    const scanner = new SseScanner(false);
    expect(scanner.push(enc.encode('data: {"id":'))).toBeNull();
    expect(scanner.pending).toBe(12);
  });

  it("strips the usage-only chunk when the client did not ask for usage, still reading it", () => {
    const body = sseBody(4);
    for (const step of [3, 64, body.length]) {
      const { out, scanner } = scanAll(tear(body, step), true);
      expect(out).toBe(sseBody(4, { usage: false }));
      expect(out).not.toContain('"usage"');
      expect(out.endsWith("data: [DONE]\n\n")).toBe(true);
      expect(scanner.outcome.usage?.completion_tokens).toBe(4);
    }
  });

  it("notes an in-band error event from the node", () => {
    const { out, scanner } = scanAll([sseBody(1, { usage: false, done: false }), 'data: {"error":{"message":"x","type":"server_error"}}\n\n'], true);
    expect(out).toContain('"error"');
    expect(scanner.outcome.errored).toBe(true);
    expect(scanner.outcome.completed).toBe(false);
  });
});

function collect(stream: ReadableStream<Uint8Array>): Promise<string> {
  return new Response(stream).text();
}

const BASE = { maxStreamMs: 60_000, drainMs: 1000, clientIdleMs: 60_000, stop: async () => false };

async function ended(ends: StreamOutcome[]): Promise<void> {
  for (let i = 0; i < 200 && ends.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
}

describe("meteredStream", () => {
  it("forwards a finished stream and reports its usage once", async () => {
    const ends: StreamOutcome[] = [];
    const body = sseBody(3);
    const upstream = streamOf(tear(body, 40));
    const reader = upstream.getReader();
    const first = (await reader.read()).value!;
    const text = await collect(meteredStream({ reader, first, stripUsage: true, ...BASE, idleTimeoutMs: 5000, onEnd: (o) => ends.push({ ...o }) }));
    expect(text).toBe(sseBody(3, { usage: false }));
    expect(ends).toHaveLength(1);
    expect(ends[0]).toMatchObject({ completed: true, cancelled: false, errored: false, chunks: 3 });
    expect(ends[0]!.usage?.total_tokens).toBe(10);
  });

  it("ends a stream cut off by the node with an error event and never [DONE]", async () => {
    for (const errorAtEnd of [false, true]) {
      const ends: StreamOutcome[] = [];
      // Two whole events and half of a third, then the connection ends (or errors).
      const partial = sseBody(3, { usage: false, done: false });
      const cut = partial.slice(0, partial.length - 20);
      const reader = streamOf([cut], { errorAtEnd }).getReader();
      const text = await collect(meteredStream({ reader, stripUsage: false, ...BASE, idleTimeoutMs: 5000, onEnd: (o) => ends.push({ ...o }) }));
      expect(text).not.toContain("[DONE]");
      const events = text.split("\n\n").filter(Boolean);
      const last = JSON.parse(events[events.length - 1]!.slice(6)) as { error: { type: string; code: string; message: string; param: null } };
      expect(last.error).toMatchObject({ type: "server_error", code: "upstream_disconnected", param: null });
      // The torn third event is dropped, not passed on half-written.
      expect(events).toHaveLength(3);
      expect(ends).toHaveLength(1);
      expect(ends[0]).toMatchObject({ completed: false, errored: true, chunks: 2 });
    }
  });

  it("cuts off a node that goes silent", async () => {
    const ends: StreamOutcome[] = [];
    const reader = new ReadableStream<Uint8Array>({ pull: () => new Promise(() => undefined) }).getReader();
    const first = enc.encode(sseBody(1, { usage: false, done: false }));
    const text = await collect(meteredStream({ reader, first, stripUsage: true, ...BASE, idleTimeoutMs: 50, onEnd: (o) => ends.push({ ...o }) }));
    expect(text).toContain('"code":"upstream_timeout"');
    expect(text).not.toContain("[DONE]");
    await ended(ends);
    expect(ends[0]).toMatchObject({ errored: true, completed: false });
  });

  it("cancels the node's stream when the client goes away", async () => {
    const ends: StreamOutcome[] = [];
    let upstreamCancelled = false;
    const upstream = new ReadableStream<Uint8Array>({
      pull: (c) => c.enqueue(enc.encode(sseBody(1, { usage: false, done: false }))),
      cancel: () => {
        upstreamCancelled = true;
      },
    });
    const out = meteredStream({ reader: upstream.getReader(), stripUsage: true, ...BASE, idleTimeoutMs: 5000, onEnd: (o) => ends.push({ ...o }) });
    const r = out.getReader();
    await r.read();
    await r.read();
    await r.cancel();
    await ended(ends);
    expect(upstreamCancelled).toBe(true);
    expect(ends).toHaveLength(1);
    // After the client left, the rest of the node's stream is read (for its usage), never passed on.
    expect(ends[0]).toMatchObject({ cancelled: true, completed: false });
    expect(ends[0]!.chunks).toBeGreaterThanOrEqual(2);
  });

  it("asks the node to stop when the client goes away, and meters the usage the node ends with", async () => {
    const ends: StreamOutcome[] = [];
    let stopped = false;
    let sent = 0;
    const upstream = new ReadableStream<Uint8Array>({
      pull: (c) => {
        if (!stopped) {
          sent++;
          c.enqueue(enc.encode(sseBody(1, { usage: false, done: false })));
          return;
        }
        // Told to stop: the node ends at once with what it really generated.
        c.enqueue(enc.encode(`data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":${sent + 1}}}\n\ndata: [DONE]\n\n`));
        c.close();
      },
    });
    const ac = new AbortController();
    const out = meteredStream({
      ...BASE,
      reader: upstream.getReader(),
      stripUsage: true,
      idleTimeoutMs: 5000,
      clientSignal: ac.signal,
      stop: async () => {
        stopped = true;
        return true;
      },
      onEnd: (o) => ends.push({ ...o }),
    });
    const r = out.getReader();
    await r.read();
    await r.read();
    // The runtime may never cancel the body of a departed client; the request's signal still ends it.
    ac.abort();
    await ended(ends);
    expect(ends).toHaveLength(1);
    expect(ends[0]).toMatchObject({ cancelled: true, errored: false });
    expect(ends[0]!.usage).toEqual({ prompt_tokens: 5, completion_tokens: sent + 1 });
  });

  it("ends a stream that runs past its wall time with an error event", async () => {
    const ends: StreamOutcome[] = [];
    const upstream = new ReadableStream<Uint8Array>({
      pull: async (c) => {
        await new Promise((r) => setTimeout(r, 10));
        c.enqueue(enc.encode(sseBody(1, { usage: false, done: false })));
      },
    });
    const text = await collect(meteredStream({ ...BASE, maxStreamMs: 100, reader: upstream.getReader(), stripUsage: true, idleTimeoutMs: 5000, onEnd: (o) => ends.push({ ...o }) }));
    expect(text).toContain('"code":"stream_time_limit"');
    expect(text).not.toContain("[DONE]");
    await ended(ends);
    expect(ends[0]).toMatchObject({ errored: true, cancelled: false });
  });

  it("cuts off a node whose event grows past the size bound", async () => {
    const ends: StreamOutcome[] = [];
    const big = "x".repeat(4096);
    const upstream = new ReadableStream<Uint8Array>({ pull: (c) => c.enqueue(enc.encode(`data: {"a":"${big}`)) });
    const text = await collect(meteredStream({ ...BASE, maxEventBytes: 16 * 1024, reader: upstream.getReader(), stripUsage: true, idleTimeoutMs: 5000, onEnd: (o) => ends.push({ ...o }) }));
    expect(text).toContain('"code":"upstream_event_too_large"');
    expect(text.length).toBeLessThan(1000);
    await ended(ends);
    expect(ends[0]).toMatchObject({ errored: true });
  });
});

describe("meteredStream keep-alive", () => {
  const COMMENT = ": keep-alive\n\n";
  const delta = (text: string) => `data: {"choices":[{"index":0,"delta":{"content":"${text}"}}]}\n\n`;

  /** A node's stream that sends the given pieces, each after its own wait, then stays silent. */
  function scripted(steps: { afterMs: number; text: string }[]): ReadableStreamDefaultReader<Uint8Array> {
    let i = 0;
    return new ReadableStream<Uint8Array>({
      async pull(c) {
        const step = steps[i++];
        if (!step) return new Promise<void>(() => undefined);
        await new Promise((r) => setTimeout(r, step.afterMs));
        c.enqueue(enc.encode(step.text));
      },
    }).getReader();
  }

  it("sends comments between whole events while the node is silent, and still cuts off a silent node", async () => {
    const ends: StreamOutcome[] = [];
    // The second event comes torn in two with a silence in the middle: no comment may land inside it.
    const second = delta("b");
    const reader = scripted([
      { afterMs: 0, text: delta("a") },
      { afterMs: 0, text: second.slice(0, 20) },
      { afterMs: 150, text: second.slice(20) },
      { afterMs: 150, text: delta("c") },
    ]);
    const text = await collect(meteredStream({ ...BASE, reader, stripUsage: true, idleTimeoutMs: 400, keepAliveMs: 20, onEnd: (o) => ends.push({ ...o }) }));
    const events = text.split("\n\n").filter(Boolean);
    const comments = events.filter((e) => e === ": keep-alive");
    const rest = events.filter((e) => e !== ": keep-alive");
    // Comments kept the client busy through each silence...
    expect(comments.length).toBeGreaterThanOrEqual(3);
    // ...never split an event, and never counted as the node's activity: the node is still cut off.
    expect(rest.slice(0, 3).map((e) => e + "\n\n")).toEqual([delta("a"), second, delta("c")]);
    expect(rest).toHaveLength(4);
    expect(JSON.parse(rest[3]!.slice(6))).toMatchObject({ error: { code: "upstream_timeout" } });
    expect(text.indexOf(COMMENT)).toBeGreaterThan(text.indexOf(delta("a")));
    await ended(ends);
    // Comments are not scanned: three text events, no more.
    expect(ends[0]).toMatchObject({ errored: true, completed: false, chunks: 3 });
  });

  it("sends a comment only when the client is waiting for a chunk: none pile up while it reads nothing", async () => {
    const ends: StreamOutcome[] = [];
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let i = 0;
    const reader = new ReadableStream<Uint8Array>({
      async pull(c) {
        if (i++ === 0) return c.enqueue(enc.encode(delta("a")));
        await released;
        c.enqueue(enc.encode(delta("b") + "data: [DONE]\n\n"));
        c.close();
      },
    }).getReader();
    const out = meteredStream({ ...BASE, reader, stripUsage: true, idleTimeoutMs: 5000, keepAliveMs: 10, onEnd: (o) => ends.push({ ...o }) });
    const r = out.getReader();
    expect(dec.decode((await r.read()).value)).toBe(delta("a"));
    // Waiting for a chunk while the node is silent: a comment comes.
    expect(dec.decode((await r.read()).value)).toBe(COMMENT);
    // Reading nothing for 20 keep-alive periods: nothing is queued meanwhile.
    await new Promise((res) => setTimeout(res, 200));
    release();
    let rest = "";
    for (let x = await r.read(); !x.done; x = await r.read()) rest += dec.decode(x.value);
    expect(rest).toBe(delta("b") + "data: [DONE]\n\n");
    await ended(ends);
    expect(ends[0]).toMatchObject({ completed: true, errored: false, chunks: 2 });
  });
});

describe("SseScanner bounds and framing", () => {
  it("parses CRLF-framed events", () => {
    const body = sseBody(3).replace(/\n/g, "\r\n");
    for (const step of [1, 5, body.length]) {
      const { out, scanner } = scanAll(tear(body, step), true);
      expect(scanner.outcome.completed).toBe(true);
      expect(scanner.outcome.usage?.completion_tokens).toBe(3);
      expect(scanner.outcome.chunks).toBe(3);
      expect(scanner.pending).toBe(0);
      expect(out).not.toContain('"usage"');
      expect(out.endsWith("data: [DONE]\r\n\r\n")).toBe(true);
    }
  });

  it("holds back at most maxEventBytes of an unfinished event", () => {
    const scanner = new SseScanner(false, 1024);
    for (let i = 0; i < 10 && !scanner.overflowed; i++) scanner.push(enc.encode("y".repeat(300)));
    expect(scanner.overflowed).toBe(true);
    expect(scanner.pending).toBeLessThanOrEqual(1024);
  });

  it("reads the usage a node's error event carries", () => {
    const { scanner } = scanAll(['data: {"error":{"message":"x","type":"server_error"},"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n'], false);
    expect(scanner.outcome.errored).toBe(true);
    expect(scanner.outcome.usage).toEqual({ prompt_tokens: 3, completion_tokens: 2 });
  });
});
