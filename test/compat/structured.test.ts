// Structured outputs and forced tool calls through the local stack (edge under wrangler dev + a
// gpu-node on the tiny random model): the official openai client's parse() with zodResponseFormat,
// and the AI SDK's generateObject / streamObject / tool calling via @ai-sdk/openai-compatible
// (@seventy/sdk's parse() and runTools() run against a gpu-node in sdk/src/lib). Random weights say nothing sensible, yet every object and
// every call must parse and validate: the node only lets the model sample tokens that keep it valid.
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateObject, generateText, streamObject, streamText, tool } from "ai";
import OpenAI from "openai";
import { zodResponseFormat } from "openai/helpers/zod";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { z as z3 } from "zod";
import * as z from "zod/v4";
import { startStack, type Stack } from "./support/stack.js";

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterEach((context) => {
  if (context.task.result?.state === "fail" && stack) console.error(stack.logs());
});
afterAll(async () => {
  await stack?.stop();
});

const messages = [{ role: "user" as const, content: "Describe a city." }];
const MAX = 200;

describe("openai client", () => {
  it("chat.completions.parse with zodResponseFormat returns a parsed, valid object", async () => {
    const client = new OpenAI({ baseURL: stack.baseURL, apiKey: stack.apiKey, maxRetries: 0 });
    const City = z3.object({ name: z3.string().max(10), size: z3.enum(["small", "big"]), rank: z3.number().int().min(1).max(50) });
    for (const seed of [1, 2, 3]) {
      const c = await client.chat.completions.parse({ model: stack.model, messages, max_tokens: MAX, seed, response_format: zodResponseFormat(City, "city") });
      expect(c.choices[0]!.finish_reason).toBe("stop");
      expect(City.parse(c.choices[0]!.message.parsed)).toEqual(c.choices[0]!.message.parsed);
    }
  });
});

describe("AI SDK (@ai-sdk/openai-compatible)", () => {
  const provider = () =>
    createOpenAICompatible({ name: "seventy", baseURL: stack.baseURL, apiKey: stack.apiKey, supportsStructuredOutputs: true });
  const Pet = z.object({ kind: z.enum(["cat", "dog"]), age: z.number().int().min(0).max(30), tags: z.array(z.enum(["calm", "loud"])).max(2) });
  const Weather = z.object({ city: z.enum(["Paris", "Oslo"]), days: z.number().int().min(1).max(7) });

  it("generateObject returns a valid object", async () => {
    const { object } = await generateObject({ model: provider()(stack.model), schema: Pet, prompt: "A pet.", maxOutputTokens: MAX, seed: 4 });
    expect(Pet.parse(object)).toEqual(object);
  });

  it("streamObject streams partial objects and ends with a valid one", async () => {
    const result = streamObject({ model: provider()(stack.model), schema: Pet, prompt: "A pet.", maxOutputTokens: MAX, seed: 5 });
    let partials = 0;
    for await (const _ of result.partialObjectStream) partials++;
    const object = await result.object;
    expect(Pet.parse(object)).toEqual(object);
    expect(partials).toBeGreaterThan(1);
  });

  it("tool calling with a forced tool: generateText and streamText call it with valid input", async () => {
    const seen: unknown[] = [];
    const tools = { weather: tool({ description: "Forecast", inputSchema: Weather, execute: async (input) => (seen.push(input), "sunny") }) };
    const g = await generateText({ model: provider()(stack.model), tools, toolChoice: "required", prompt: "Weather?", maxOutputTokens: MAX, seed: 6 });
    expect(g.toolCalls).toHaveLength(1);
    expect(Weather.parse(g.toolCalls[0]!.input)).toEqual(g.toolCalls[0]!.input);

    const s = streamText({ model: provider()(stack.model), tools, toolChoice: { type: "tool", toolName: "weather" }, prompt: "Weather?", maxOutputTokens: MAX, seed: 7 });
    let deltas = "";
    let starts = 0;
    for await (const part of s.fullStream) {
      if (part.type === "tool-input-start") starts++;
      if (part.type === "tool-input-delta") deltas += part.delta;
    }
    const calls = await s.toolCalls;
    expect(starts).toBe(1);
    expect(calls).toHaveLength(1);
    expect(JSON.parse(deltas)).toEqual(calls[0]!.input);
    expect(Weather.parse(calls[0]!.input)).toEqual(calls[0]!.input);
    expect(seen).toHaveLength(2);
  });
});
