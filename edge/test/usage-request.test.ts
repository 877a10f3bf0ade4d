import { describe, expect, it } from "vitest";
import { withUsageRequested } from "../src/routes/v1";

const enc = new TextEncoder();
const dec = new TextDecoder();

function forwarded(text: string): { parsed: unknown; text: string } {
  const out = dec.decode(withUsageRequested(JSON.parse(text) as Record<string, unknown>, enc.encode(text)));
  return { parsed: JSON.parse(out), text: out };
}

describe("asking a stream's node for usage", () => {
  it("splices stream_options into a body without it, leaving the client's bytes as they were", () => {
    const body = `{"model":"m","messages":[{"role":"user","content":"héllo \\u00e9 ✓"}],"stream":true}`;
    const { parsed, text } = forwarded(body);
    expect(parsed).toEqual({ ...JSON.parse(body), stream_options: { include_usage: true } });
    expect(text.endsWith(body.slice(1))).toBe(true);
  });

  it("handles whitespace around the opening brace", () => {
    const body = ` \n\t{ \r\n "model": "m", "stream": true }\n`;
    expect(forwarded(body).parsed).toEqual({ model: "m", stream: true, stream_options: { include_usage: true } });
  });

  it("rebuilds a body that has stream_options already (null, false or other members)", () => {
    for (const so of [null, { include_usage: false }, {}]) {
      const body = JSON.stringify({ model: "m", stream: true, stream_options: so });
      expect(forwarded(body).parsed).toEqual({ model: "m", stream: true, stream_options: { include_usage: true } });
    }
  });

  it("never yields a duplicate key or invalid JSON for an empty object", () => {
    expect(forwarded("{}").parsed).toEqual({ stream_options: { include_usage: true } });
    expect(forwarded(" { } ").parsed).toEqual({ stream_options: { include_usage: true } });
  });
});
