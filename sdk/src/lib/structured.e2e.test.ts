// parse() and runTools() against a real gpu-node (tiny random Llama 3.1, reference engine, real HTTP
// on loopback). The weights are random; the node's constrained decoding is what makes every answer
// parse and every tool call validate.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { startNode, type RunningNode } from "../../../gpu-node/src/node.js";
import { Seventy } from "../client.js";
import { tool } from "./run-tools.js";

let node: RunningNode;
let client: Seventy;
beforeAll(async () => {
  node = await startNode({ port: 0, kvCacheBlocks: 1024, log: () => {} });
  client = new Seventy({ baseURL: `${node.url}/v1`, apiKey: "unused", maxRetries: 0 });
});
afterAll(async () => {
  await node?.close();
});

const model = "tiny-llama-3.1";
const messages = [{ role: "user" as const, content: "Order something." }];

describe("@seventy/sdk against a gpu-node", () => {
  it("chat.completions.parse with a zod schema returns the typed, validated object", async () => {
    const Order = z.object({ item: z.enum(["tea", "coffee"]), qty: z.number().int().min(1).max(9), note: z.string().max(8).optional() });
    for (const seed of [1, 2, 3]) {
      const r = await client.chat.completions.parse({ model, messages, max_tokens: 200, seed, responseFormat: Order, responseFormatName: "order" });
      const parsed: { item: "tea" | "coffee"; qty: number; note?: string } = r.parsed;
      expect(Order.parse(parsed)).toEqual(parsed);
      expect(JSON.parse(r.choices[0]!.message.content!)).toEqual(parsed);
    }
  });

  it("runTools: a forced first call runs the tool with validated arguments, then the model answers", async () => {
    const calls: Array<{ city: string; days: number }> = [];
    const weather = tool({
      name: "weather",
      parameters: z.object({ city: z.enum(["Paris", "Oslo"]), days: z.number().int().min(1).max(7) }),
      run: (args) => {
        calls.push(args);
        return { forecast: "sunny" };
      },
    });
    const result = await client.chat.completions.runTools({ model, messages, max_tokens: 64, seed: 3, tools: [weather], tool_choice: "required" });
    expect(calls).toHaveLength(1);
    expect(["Paris", "Oslo"]).toContain(calls[0]!.city);
    expect(calls[0]!.days).toBeGreaterThanOrEqual(1);
    expect(result.rounds).toBe(2);
    expect(result.messages.map((m) => m.role)).toEqual(["user", "assistant", "tool", "assistant"]);
  });
});
