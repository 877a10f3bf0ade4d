import { describe, expect, it } from "vitest";
import { z } from "zod";
import { Seventy } from "../client.js";
import { ResponseValidationError } from "../core/errors.js";
import type { ChatCompletion, ToolCall } from "../protocol/chat.js";
import { tool } from "./run-tools.js";

// A scripted model behind an in-process fetch: each request gets the next answer in the list.
function scripted(answers: Array<Partial<ChatCompletion["choices"][number]["message"]> & { finish?: string }>) {
  const requests: any[] = [];
  const fetch = async (_url: string, init: RequestInit) => {
    const body = JSON.parse(init.body as string);
    requests.push(body);
    const a = answers[requests.length - 1];
    if (!a) throw new Error("no more scripted answers");
    const { finish, ...message } = a;
    const completion: ChatCompletion = {
      id: `chatcmpl-${requests.length}`,
      object: "chat.completion",
      created: 1,
      model: body.model,
      choices: [
        {
          index: 0,
          message: { role: "assistant", content: null, ...message },
          logprobs: null,
          finish_reason: (finish ?? (message.tool_calls ? "tool_calls" : "stop")) as "stop",
        },
      ],
      usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 },
    };
    return Response.json(completion);
  };
  return { client: new Seventy({ baseURL: "http://edge.invalid/v1", apiKey: "k", fetch }), requests };
}

const call = (id: string, name: string, args: string): ToolCall => ({ id, type: "function", function: { name, arguments: args } });
const messages = [{ role: "user" as const, content: "Where?" }];
const City = z.object({ city: z.string(), population: z.number().int() });

describe("chat.completions.parse", () => {
  it("sends the schema as a json_schema response format and returns the typed object", async () => {
    const { client, requests } = scripted([{ content: '{"city":"Lyon","population":522000}' }]);
    const result = await client.chat.completions.parse({ model: "m", messages, responseFormat: City, responseFormatName: "city" });
    const parsed: { city: string; population: number } = result.parsed;
    expect(parsed).toEqual({ city: "Lyon", population: 522000 });
    expect(result.choices[0]!.message.content).toBe('{"city":"Lyon","population":522000}');
    expect(requests[0].response_format).toEqual({
      type: "json_schema",
      json_schema: {
        name: "city",
        strict: true,
        schema: {
          type: "object",
          properties: { city: { type: "string" }, population: { type: "integer", minimum: -9007199254740991, maximum: 9007199254740991 } },
          required: ["city", "population"],
          additionalProperties: false,
        },
      },
    });
    expect(requests[0].stream).toBe(false);
  });

  it("accepts JSON inside a Markdown fence", async () => {
    const { client } = scripted([{ content: '```json\n{"city":"Oslo","population":700000}\n```' }]);
    expect((await client.chat.completions.parse({ model: "m", messages, responseFormat: City })).parsed.city).toBe("Oslo");
  });

  it("throws ResponseValidationError for JSON that fails the schema, text that is not JSON, and a cut-off answer", async () => {
    const { client } = scripted([
      { content: '{"city":"Oslo","population":"many"}' },
      { content: "Oslo, I think." },
      { content: '{"city":"Os', finish: "length" },
    ]);
    const e1 = await client.chat.completions.parse({ model: "m", messages, responseFormat: City }).catch((e) => e);
    expect(e1).toBeInstanceOf(ResponseValidationError);
    expect(e1.message).toMatch(/at population/);
    expect(e1.raw).toBe('{"city":"Oslo","population":"many"}');
    expect(e1.issues[0].path).toEqual(["population"]);
    const e2 = await client.chat.completions.parse({ model: "m", messages, responseFormat: City }).catch((e) => e);
    expect(e2.message).toMatch(/not valid JSON/);
    const e3 = await client.chat.completions.parse({ model: "m", messages, responseFormat: City }).catch((e) => e);
    expect(e3.message).toMatch(/cut off/);
  });
});

describe("chat.completions.runTools", () => {
  const weather = tool({
    name: "weather",
    description: "Current temperature in a city",
    parameters: z.object({ city: z.string() }),
    run: ({ city }) => ({ city, celsius: city === "Paris" ? 18 : 25 }),
  });

  it("runs the tools the model calls, sends results back, and returns the final answer", async () => {
    const { client, requests } = scripted([
      { tool_calls: [call("c1", "weather", '{"city":"Paris"}'), call("c2", "weather", '{"city":"Rome"}')] },
      { content: "Paris 18 °C, Rome 25 °C." },
    ]);
    const calls: string[] = [];
    const result = await client.chat.completions.runTools(
      { model: "m", messages, tools: [weather] },
      { onToolCall: (c) => calls.push(c.id) },
    );
    expect(result.completion.choices[0]!.message.content).toBe("Paris 18 °C, Rome 25 °C.");
    expect(result.rounds).toBe(2);
    expect(result.usage).toEqual({ prompt_tokens: 20, completion_tokens: 10, total_tokens: 30 });
    expect(calls).toEqual(["c1", "c2"]);
    expect(requests[0].tools).toEqual([
      {
        type: "function",
        function: {
          name: "weather",
          description: "Current temperature in a city",
          parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"], additionalProperties: false },
        },
      },
    ]);
    expect(requests[1].messages.slice(1)).toEqual([
      { role: "assistant", content: null, tool_calls: [call("c1", "weather", '{"city":"Paris"}'), call("c2", "weather", '{"city":"Rome"}')] },
      { role: "tool", tool_call_id: "c1", content: '{"city":"Paris","celsius":18}' },
      { role: "tool", tool_call_id: "c2", content: '{"city":"Rome","celsius":25}' },
    ]);
    expect(result.messages).toHaveLength(5);
  });

  it("reports bad arguments, unknown tools and thrown errors to the model as tool results", async () => {
    const failing = tool({ name: "fail", parameters: z.object({}), run: () => { throw new Error("database down"); } });
    const { client, requests } = scripted([
      { tool_calls: [call("a", "weather", '{"town":"Paris"}'), call("b", "nope", "{}"), call("c", "fail", "{}")] },
      { content: "Sorry." },
    ]);
    await client.chat.completions.runTools({ model: "m", messages, tools: [weather, failing] });
    const results = requests[1].messages.filter((m: any) => m.role === "tool").map((m: any) => JSON.parse(m.content).error);
    expect(results[0]).toMatch(/^Invalid arguments: .*city/);
    expect(results[1]).toBe('Unknown tool "nope". Available: weather, fail.');
    expect(results[2]).toBe("database down");
  });

  it("stops after maxRounds", async () => {
    const loop = { tool_calls: [call("x", "weather", '{"city":"Paris"}')] };
    const { client } = scripted([loop, loop, loop]);
    await expect(client.chat.completions.runTools({ model: "m", messages, tools: [weather], maxRounds: 2 })).rejects.toThrow(/after 2 rounds/);
  });
});
