import { describe, expect, it } from "vitest";
import { SSEDecoder, encodeSSE } from "./sse.js";

const enc = new TextEncoder();

function decodeAll(pieces: Uint8Array[]): [string | undefined, string][] {
  const out: [string | undefined, string][] = [];
  const d = new SSEDecoder((event, data) => out.push([event, data]));
  for (const p of pieces) d.push(p);
  d.end();
  return out;
}

/** Every way of cutting `bytes` into two pieces, plus one piece per byte. */
function splits(bytes: Uint8Array): Uint8Array[][] {
  const out: Uint8Array[][] = [[bytes]];
  for (let i = 1; i < bytes.length; i++) out.push([bytes.subarray(0, i), bytes.subarray(i)]);
  out.push(Array.from(bytes, (_, i) => bytes.subarray(i, i + 1)));
  return out;
}

describe("SSEDecoder", () => {
  it("decodes data events, in order, however the bytes are split", () => {
    const text = 'data: {"a":1}\n\ndata: {"b":"x y"}\n\n: keep-alive\n\ndata: [DONE]\n\n';
    const expected = [
      [undefined, '{"a":1}'],
      [undefined, '{"b":"x y"}'],
      [undefined, "[DONE]"],
    ];
    for (const pieces of splits(enc.encode(text))) expect(decodeAll(pieces)).toEqual(expected);
  });

  it("accepts CRLF and bare CR line endings, split anywhere", () => {
    for (const eol of ["\r\n", "\r"]) {
      const text = `data: one${eol}${eol}event: error${eol}data: two${eol}${eol}data:three${eol}${eol}`;
      for (const pieces of splits(enc.encode(text))) {
        expect(decodeAll(pieces)).toEqual([
          [undefined, "one"],
          ["error", "two"],
          [undefined, "three"],
        ]);
      }
    }
  });

  it("joins multi-line data, reads named events and ignores id, retry and comments", () => {
    const text = "id: 7\nretry: 100\nevent: note\n: comment\ndata: a\ndata:  b\ndata\n\nevent: message\ndata: m\n\n";
    expect(decodeAll([enc.encode(text)])).toEqual([
      ["note", "a\n b\n"],
      [undefined, "m"],
    ]);
  });

  it("keeps a multi-byte character split across pieces intact", () => {
    const bytes = enc.encode('data: {"t":"héllo 🦙 世界"}\n\n');
    for (const pieces of splits(bytes)) expect(decodeAll(pieces)).toEqual([[undefined, '{"t":"héllo 🦙 世界"}']]);
  });

  it("assembles an event much larger than the pieces it arrives in", () => {
    const big = "x".repeat(200_000);
    const bytes = enc.encode(`data: ${big}\n\ndata: tail\n\n`);
    const pieces: Uint8Array[] = [];
    for (let i = 0; i < bytes.length; i += 1000) pieces.push(bytes.subarray(i, i + 1000));
    expect(decodeAll(pieces)).toEqual([
      [undefined, big],
      [undefined, "tail"],
    ]);
  });

  it("delivers a last event that the body ended without a blank line", () => {
    expect(decodeAll([enc.encode("data: a\n\ndata: [DONE]\n")])).toEqual([
      [undefined, "a"],
      [undefined, "[DONE]"],
    ]);
  });

  it("drops events with neither data nor a name, as the spec says", () => {
    expect(decodeAll([enc.encode("id: 1\n\n\n\nretry: 5\n\ndata: x\n\n")])).toEqual([[undefined, "x"]]);
  });

  it("encodes what it decodes", () => {
    const bytes = new Uint8Array([...encodeSSE('{"a":1}'), ...encodeSSE("line1\nline2", "error")]);
    expect(decodeAll([bytes])).toEqual([
      [undefined, '{"a":1}'],
      ["error", "line1\nline2"],
    ]);
  });
});
