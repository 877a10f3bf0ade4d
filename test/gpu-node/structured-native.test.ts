import * as z from "zod/v4";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNode, type RunningNode } from "../../gpu-node/src/node.js";

// Constrained decoding on `serve --engine native` (the CPU flavor here): the addon returns the
// constrained sequences' logits with the step and the mask is applied by the shared sampler, so the
// answers match the reference engine's and always validate.
let native: RunningNode;
let reference: RunningNode;
beforeAll(async () => {
  native = await startNode({ port: 0, engine: "native", kvCacheBlocks: 256, log: () => {} });
  reference = await startNode({ port: 0, engine: "reference", kvCacheBlocks: 256, log: () => {} });
});
afterAll(async () => {
  await native?.close();
  await reference?.close();
});

const Answer = z.object({ word: z.string().max(6), n: z.number().int().min(0).max(99), flag: z.boolean() });
const Args = z.object({ city: z.enum(["Paris", "Oslo"]), days: z.number().int().min(1).max(7) });

async function ask(node: RunningNode, extra: Record<string, unknown>) {
  const res = await fetch(node.url + "/v1/chat/completions", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "tiny-llama-3.1", messages: [{ role: "user", content: "Answer." }], max_tokens: 120, ...extra }),
  });
  expect(res.status).toBe(200);
  return (await res.json()) as { choices: Array<{ message: { content: string | null; tool_calls?: Array<{ function: { name: string; arguments: string } }> } }> };
}

describe("constrained decoding on the native engine (CPU flavor)", () => {
  it("JSON schema answers validate and match the reference engine", async () => {
    const format = { type: "json_schema", json_schema: { name: "a", schema: z.toJSONSchema(Answer) } };
    for (const [temperature, seed] of [[0, 0], [0.8, 1], [0.8, 2]] as const) {
      const nat = await ask(native, { response_format: format, temperature, seed });
      const ref = await ask(reference, { response_format: format, temperature, seed });
      const text = nat.choices[0]!.message.content!;
      expect(Answer.safeParse(JSON.parse(text)).success).toBe(true);
      expect(text).toBe(ref.choices[0]!.message.content);
    }
  });

  it("a forced tool call is valid", async () => {
    const tools = [{ type: "function", function: { name: "weather", parameters: z.toJSONSchema(Args) } }];
    const r = await ask(native, { tools, tool_choice: "required", temperature: 1, seed: 5 });
    const call = r.choices[0]!.message.tool_calls![0]!;
    expect(call.function.name).toBe("weather");
    expect(Args.safeParse(JSON.parse(call.function.arguments)).success).toBe(true);
  });
});
