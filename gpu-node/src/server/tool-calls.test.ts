import { describe, expect, it } from "vitest";
import type { Tool } from "@seventy/sdk/protocol";
import { parseToolCalls } from "./tool-calls.js";

const tools: Tool[] = [
  { type: "function", function: { name: "get_weather", parameters: { type: "object" } } },
  { type: "function", function: { name: "add" } },
];
let n = 0;
const id = () => `call_${n++}`;

describe("parseToolCalls (Llama 3.1 JSON tool calls)", () => {
  it("parses one call with parameters", () => {
    const calls = parseToolCalls(' {"name": "get_weather", "parameters": {"city": "Paris"}}', tools, id);
    expect(calls).toHaveLength(1);
    expect(calls![0]!.function).toEqual({ name: "get_weather", arguments: '{"city":"Paris"}' });
    expect(calls![0]!.type).toBe("function");
  });
  it("parses several calls separated by semicolons, keeping semicolons inside strings", () => {
    const calls = parseToolCalls('{"name":"add","parameters":{"a":"x;y"}}; {"name":"get_weather","arguments":{}}', tools, id);
    expect(calls!.map((c) => c.function.name)).toEqual(["add", "get_weather"]);
    expect(JSON.parse(calls![0]!.function.arguments)).toEqual({ a: "x;y" });
  });
  it("returns null for plain text, unknown tools and broken JSON", () => {
    expect(parseToolCalls("The weather is nice.", tools, id)).toBeNull();
    expect(parseToolCalls('{"name":"rm_rf","parameters":{}}', tools, id)).toBeNull();
    expect(parseToolCalls('{"name":"add","parameters":{', tools, id)).toBeNull();
    expect(parseToolCalls("[1,2]", tools, id)).toBeNull();
  });
});
