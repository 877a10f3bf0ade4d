import * as z from "zod/v4";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNode, type RunningNode } from "../../gpu-node/src/node.js";
import { readSse } from "../helpers/sse.js";

// Constrained decoding end to end: a gpu-node serving the tiny random Llama 3.1 on the reference
// engine over real HTTP. Random weights produce nothing sensible on their own; every output below
// must still parse and validate, because only tokens that keep it valid can be sampled.
let node: RunningNode;
const MODEL = "tiny-llama-3.1";

beforeAll(async () => {
  node = await startNode({ port: 0, kvCacheBlocks: 2048, maxNumBatchedTokens: 512, log: () => {} });
});
afterAll(async () => {
  await node?.close();
});

const post = (path: string, body: unknown) =>
  fetch(node.url + path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
const messages = [{ role: "user", content: "Fill in the form." }];

type ChatResult = {
  choices: Array<{ message: { content: string | null; tool_calls?: Array<{ id: string; type: string; function: { name: string; arguments: string } }> }; finish_reason: string }>;
};
async function chat(body: Record<string, unknown>): Promise<ChatResult> {
  const res = await post("/v1/chat/completions", { model: MODEL, messages, max_tokens: 200, ...body });
  expect(res.status, await res.clone().text()).toBe(200);
  return (await res.json()) as ChatResult;
}

const short = z.string().max(6);
/** 20 schemas covering nested objects, arrays, enums, bounded numbers, optional fields, anyOf and patterns. */
const SCHEMAS: Record<string, z.ZodType> = {
  flat: z.object({ name: short, age: z.number().int().min(0).max(120) }),
  boolean: z.object({ ok: z.boolean() }),
  enum: z.object({ color: z.enum(["red", "green", "blue"]) }),
  boundedNumber: z.object({ score: z.number().min(-1.5).max(10) }),
  probability: z.object({ p: z.number().min(0).max(1) }),
  exclusive: z.object({ n: z.number().int().gt(-3).lt(3) }),
  optional: z.object({ id: z.number().int().min(1).max(999), note: short.optional() }),
  nested: z.object({ user: z.object({ name: short, address: z.object({ city: short, zip: z.string().regex(/^[0-9]{5}$/) }) }) }),
  array: z.object({ tags: z.array(z.enum(["a", "b", "c"])).max(3) }),
  arrayOfObjects: z.object({ items: z.array(z.object({ sku: z.string().regex(/^[A-Z]{3}-[0-9]{2}$/), qty: z.number().int().min(1).max(9) })).min(1).max(2) }),
  anyOf: z.object({ value: z.union([z.number().int().min(0).max(50), z.boolean(), z.enum(["none"])]) }),
  pattern: z.object({ code: z.string().regex(/^[a-z]{2}[0-9]{2}$/) }),
  date: z.object({ date: z.string().regex(/^20[0-9]{2}-(0[1-9]|1[0-2])-[0-2][0-9]$/) }),
  nullable: z.object({ maybe: z.union([short, z.null()]) }),
  literal: z.object({ kind: z.literal("point"), x: z.number().int().min(-10).max(10), y: z.number().int().min(-10).max(10) }),
  tuple: z.object({ pair: z.array(z.number().int().min(0).max(9)).min(2).max(2) }),
  deep: z.object({ a: z.object({ b: z.object({ c: z.object({ d: z.enum(["x", "y"]) }) }) }) }),
  mixed: z.object({ title: short, done: z.boolean(), priority: z.enum(["low", "high"]), estimate: z.number().min(0).max(100).optional() }),
  topLevelArray: z.array(z.object({ k: z.enum(["p", "q"]) })).min(1).max(3),
  union: z.union([z.object({ type: z.literal("cat"), lives: z.number().int().min(1).max(9) }), z.object({ type: z.literal("dog"), good: z.boolean() })]),
};
const jsonSchema = (s: z.ZodType) => z.toJSONSchema(s, { target: "draft-7" }) as Record<string, unknown>;

async function inBatches<T>(items: T[], size: number, f: (t: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(f));
}

describe("structured outputs (tiny random model)", () => {
  it("200 requests across 20 JSON schemas all parse and validate", async () => {
    const jobs = Object.entries(SCHEMAS).flatMap(([name, schema]) =>
      Array.from({ length: 10 }, (_, i) => ({ name, schema, seed: i, temperature: [0, 0.7, 1, 1.5][i % 4]! })),
    );
    expect(jobs.length).toBe(200);
    const failures: string[] = [];
    await inBatches(jobs, 25, async (job) => {
      const res = await chat({
        response_format: { type: "json_schema", json_schema: { name: job.name, schema: jsonSchema(job.schema), strict: true } },
        seed: job.seed,
        temperature: job.temperature,
      });
      const text = res.choices[0]!.message.content!;
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch {
        failures.push(`${job.name}#${job.seed}: not JSON (${res.choices[0]!.finish_reason}): ${text}`);
        return;
      }
      const check = job.schema.safeParse(value);
      if (!check.success) failures.push(`${job.name}#${job.seed}: ${text} → ${check.error.message}`);
      expect(res.choices[0]!.finish_reason).toBe("stop");
    });
    expect(failures).toEqual([]);
  }, 300_000);

  it("leaves unconstrained requests in the same batch unaffected", async () => {
    const free = { messages: [{ role: "user", content: "Tell me a story." }], seed: 7, temperature: 0.8, max_tokens: 24 };
    const alone = await chat(free);
    const mixed = await Promise.all([
      chat(free),
      ...Array.from({ length: 6 }, (_, i) => chat({ response_format: { type: "json_schema", json_schema: { name: "m", schema: jsonSchema(SCHEMAS.mixed!) } }, seed: i })),
      chat(free),
    ]);
    expect(mixed[0]!.choices[0]!.message.content).toBe(alone.choices[0]!.message.content);
    expect(mixed[7]!.choices[0]!.message.content).toBe(alone.choices[0]!.message.content);
  });

  it("json_object, regex, choice and grammar (vLLM structured_outputs) on chat and completions", async () => {
    // Any JSON object: its strings are unbounded, so random weights are only sure to finish greedily.
    const obj = await chat({ response_format: { type: "json_object" }, temperature: 0 });
    const parsed = JSON.parse(obj.choices[0]!.message.content!);
    expect(typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)).toBe(true);
    for (let seed = 0; seed < 5; seed++) {
      const re = await chat({ structured_outputs: { regex: "[a-c]{3}-[0-9]{2}" }, seed });
      expect(re.choices[0]!.message.content).toMatch(/^[a-c]{3}-[0-9]{2}$/);
      const choice = await chat({ structured_outputs: { choice: ["yes", "no", "maybe"] }, seed });
      expect(["yes", "no", "maybe"]).toContain(choice.choices[0]!.message.content);
      const g = await chat({ structured_outputs: { grammar: 'root ::= "(" [0-9]{1,3} ("+" [0-9]{1,3})? ")"' }, seed });
      expect(g.choices[0]!.message.content).toMatch(/^\([0-9]{1,3}(\+[0-9]{1,3})?\)$/);
    }
    const res = await post("/v1/completions", {
      model: MODEL,
      prompt: ["A JSON object:", "Another:"],
      n: 2,
      max_tokens: 200,
      seed: 1,
      response_format: { type: "json_schema", json_schema: { name: "f", schema: jsonSchema(SCHEMAS.flat!) } },
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { choices: Array<{ text: string }> };
    expect(body.choices).toHaveLength(4);
    for (const c of body.choices) expect(SCHEMAS.flat!.safeParse(JSON.parse(c.text)).success).toBe(true);
  });

  const weatherArgs = z.object({ city: z.enum(["Paris", "Oslo", "Lima"]), days: z.number().int().min(1).max(7), unit: z.enum(["c", "f"]).optional() });
  const tools = [
    { type: "function", function: { name: "get_weather", description: "Forecast", parameters: jsonSchema(weatherArgs) } },
    { type: "function", function: { name: "get_time", parameters: jsonSchema(z.object({ zone: z.string().regex(/^[A-Z]{3}$/) })) } },
  ];

  it("tool_choice required and a named function always yield a valid call", async () => {
    for (let seed = 0; seed < 8; seed++) {
      const named = await chat({ tools, tool_choice: { type: "function", function: { name: "get_weather" } }, seed, temperature: 1 });
      const call = named.choices[0]!.message.tool_calls![0]!;
      expect(named.choices[0]!.finish_reason).toBe("tool_calls");
      expect(call.function.name).toBe("get_weather");
      expect(call.id).toMatch(/^call_/);
      expect(weatherArgs.safeParse(JSON.parse(call.function.arguments)).success).toBe(true);

      const required = await chat({ tools, tool_choice: "required", seed, temperature: 1 });
      const rc = required.choices[0]!.message.tool_calls![0]!;
      expect(["get_weather", "get_time"]).toContain(rc.function.name);
      const args = JSON.parse(rc.function.arguments);
      if (rc.function.name === "get_weather") expect(weatherArgs.safeParse(args).success).toBe(true);
      else expect(args.zone).toMatch(/^[A-Z]{3}$/);
    }
  });

  it("streams tool calls as OpenAI does; the pieces equal the non-streamed arguments byte for byte", async () => {
    for (let seed = 0; seed < 4; seed++) {
      const body = { model: MODEL, messages, max_tokens: 200, tools, tool_choice: "required", seed, temperature: 1 };
      const whole = (await (await post("/v1/chat/completions", body)).json()) as ChatResult;
      const expected = whole.choices[0]!.message.tool_calls![0]!;
      const res = await post("/v1/chat/completions", { ...body, stream: true });
      type ToolDelta = { tool_calls?: Array<{ id?: string; function: { arguments: string } }> };
      const events = (await readSse(res)).filter((e) => e !== "[DONE]") as Array<{ choices: Array<{ delta?: ToolDelta; finish_reason?: string }> }>;
      const deltas = events.map((e) => e.choices[0]?.delta).filter((d): d is ToolDelta => d !== undefined);
      const toolDeltas = deltas.filter((d) => d.tool_calls).map((d) => d.tool_calls![0]!);
      const first = toolDeltas[0]!;
      expect(first).toMatchObject({ index: 0, type: "function", function: { name: expected.function.name, arguments: "" } });
      expect(first.id).toMatch(/^call_/);
      expect(toolDeltas.length).toBeGreaterThan(2); // the arguments arrive in pieces, not at the end
      for (const d of toolDeltas.slice(1)) expect(d.id).toBeUndefined();
      const streamed = toolDeltas.slice(1).map((d) => d.function.arguments).join("");
      expect(streamed).toBe(expected.function.arguments);
      expect(events.at(-1)!.choices[0]!.finish_reason).toBe("tool_calls");
    }
  });

  it("refuses what it cannot enforce with a 400 naming the keyword or field", async () => {
    const bad = async (body: Record<string, unknown>) => {
      const res = await post("/v1/chat/completions", { model: MODEL, messages, max_tokens: 8, ...body });
      expect(res.status).toBe(400);
      return ((await res.json()) as { error: { message: string; param: string | null } }).error;
    };
    const schema = (s: unknown) => ({ response_format: { type: "json_schema", json_schema: { name: "x", schema: s } } });
    expect((await bad(schema({ type: "object", properties: { a: { type: "string", format: "email" } } }))).message).toContain("'format'");
    expect((await bad(schema({ type: "object", properties: { a: { not: { type: "string" } } } }))).message).toContain("'not'");
    expect((await bad(schema({ type: "array", uniqueItems: true }))).message).toContain("'uniqueItems'");
    expect((await bad(schema({ type: "object", properties: { p: { type: "number", minimum: 0.2, maximum: 0.8 } } }))).param).toContain("response_format");
    expect((await bad({ tools, tool_choice: { type: "function", function: { name: "nope" } } })).param).toBe("tool_choice");
    expect((await bad({ tool_choice: "required" })).param).toBe("tool_choice");
    expect((await bad({ response_format: { type: "json_object" }, structured_outputs: { regex: "a" } })).param).toBe("structured_outputs");
    expect((await bad({ structured_outputs: { regex: "a", choice: ["b"] } })).param).toContain("structured_outputs");
    const grammarError = await bad({ structured_outputs: { grammar: "root ::= (" } });
    expect(grammarError.param).toBe("structured_outputs");
    expect(grammarError.message).toContain("EBNF parser error at line 1");
    const huge = { type: "object", properties: Object.fromEntries(Array.from({ length: 3000 }, (_, i) => [`field_${i}`, { type: "string", description: "x".repeat(20) }])) };
    expect((await bad(schema(huge))).message).toMatch(/bytes/);
    // The node still serves after all of that.
    expect((await chat({ max_tokens: 4 })).choices).toHaveLength(1);
  });

  it("reports grammar compile times in /metrics", async () => {
    const text = await (await fetch(node.url + "/metrics")).text();
    expect(text).toMatch(/seventy:grammar_compile_seconds_count\{[^}]*kind="json_schema"[^}]*\} [1-9]/);
    expect(text).toMatch(/seventy:grammar_mask_seconds_count\{[^}]*\} [1-9]/);
  });
});
