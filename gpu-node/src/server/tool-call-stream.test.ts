import type { Tool } from "@seventy/sdk/protocol";
import { describe, expect, it } from "vitest";
import { ToolCallStream, type ToolCallEvent } from "./tool-call-stream.js";

const tools: Tool[] = [
  { type: "function", function: { name: "get_weather", parameters: { type: "object" } } },
  { type: "function", function: { name: "add" } },
];

/** Feeds `pieces` one by one; returns the events per piece and the final result. */
function run(pieces: string[]) {
  let n = 0;
  const s = new ToolCallStream(tools, () => `call_${n++}`);
  const perPiece = pieces.map((p) => s.push(p));
  const end = s.finish();
  return { perPiece, events: [...perPiece.flat(), ...end.events], calls: end.calls };
}

const argsOf = (events: ToolCallEvent[], index = 0) =>
  events.filter((e): e is Extract<ToolCallEvent, { type: "arguments" }> => e.type === "arguments" && e.index === index).map((e) => e.text).join("");

describe("ToolCallStream", () => {
  it("announces the call as soon as the name is known, then streams the arguments as generated", () => {
    const pieces = ['{"name', '": "get_weather', '", "parameters": ', '{"city": ', '"Par', 'is", "days": [1, ', "2]}", "}"];
    const { perPiece, events, calls } = run(pieces);
    expect(perPiece[0]).toEqual([]);
    expect(perPiece[1]).toEqual([]); // the name may still go on
    expect(perPiece[2]).toEqual([{ type: "call", index: 0, id: "call_0", name: "get_weather" }]);
    expect(perPiece[3]).toEqual([{ type: "arguments", index: 0, text: '{"city": ' }]);
    expect(argsOf(events)).toBe('{"city": "Paris", "days": [1, 2]}');
    expect(calls).toEqual([{ id: "call_0", type: "function", function: { name: "get_weather", arguments: '{"city": "Paris", "days": [1, 2]}' } }]);
  });

  it("gives the same arguments whatever the split (stream == non-stream, byte for byte)", () => {
    const text = ' {"name":"add" , "arguments" :{"a":"x;}y\\"","b":{"c":[{}]}} } ; {"name": "get_weather", "parameters": {}}';
    const whole = run([text]);
    for (let cut = 1; cut < text.length; cut += 3) {
      const split = run([text.slice(0, cut), text.slice(cut)]);
      expect(split.calls!.map((c) => c.function)).toEqual(whole.calls!.map((c) => c.function));
      expect(argsOf(split.events, 0)).toBe(whole.calls![0]!.function.arguments);
      expect(argsOf(split.events, 1)).toBe("{}");
    }
    expect(whole.calls!.map((c) => c.function.arguments)).toEqual(['{"a":"x;}y\\"","b":{"c":[{}]}}', "{}"]);
  });

  it("passes text through as content at once when it cannot be a call", () => {
    const { perPiece, calls } = run(["  Hello", " world"]);
    expect(perPiece[0]).toEqual([{ type: "content", text: "  Hello" }]);
    expect(perPiece[1]).toEqual([{ type: "content", text: " world" }]);
    expect(calls).toBeNull();
  });

  it("a JSON answer that is not a call is content; an unknown tool too", () => {
    expect(run(['{"answer": 42}']).calls).toBeNull();
    expect(run(['{"answer": 42}']).events).toEqual([{ type: "content", text: '{"answer": 42}' }]);
    const unknown = run(['{"name": "rm", "parameters": {}}']);
    expect(unknown.calls).toBeNull();
    expect(unknown.events.map((e) => e.type)).toEqual(["content"]);
  });

  it("a call with its keys in another order is held to the end and parsed whole", () => {
    const { perPiece, events, calls } = run(['{"parameters": {"a": 1}, ', '"name": "add"}']);
    expect(perPiece.flat()).toEqual([]);
    expect(calls!.map((c) => c.function)).toEqual([{ name: "add", arguments: '{"a":1}' }]);
    expect(events.map((e) => e.type)).toEqual(["call", "arguments"]);
  });

  it("a truncated call (length) still reports what was generated", () => {
    const { calls } = run(['{"name": "add", "parameters": {"a": ']);
    expect(calls).toEqual([{ id: "call_0", type: "function", function: { name: "add", arguments: '{"a": ' } }]);
  });
});

describe("ToolCallStream after a call", () => {
  it("keeps announced calls and drops text that follows them, streamed or not", () => {
    const text = '{"name": "add", "parameters": {"a": 1}} and then some words';
    const whole = run([text]);
    const split = run(['{"name": "add", "parameters": {"a": 1}}', " and then", " some words"]);
    expect(whole.calls!.map((c) => c.function)).toEqual([{ name: "add", arguments: '{"a": 1}' }]);
    expect(split.calls!.map((c) => c.function)).toEqual(whole.calls!.map((c) => c.function));
    expect(split.events.filter((e) => e.type === "content")).toEqual([]);
  });
});
