import { describe, expect, it } from "vitest";
import { APIConnectionError } from "../core/errors.js";
import type { Completion } from "../protocol/completions.js";
import { CompletionStream } from "./completion-stream.js";

// What the legacy text completion stream assembles from the chunks it reads.

const base = { id: "cmpl-1", object: "text_completion", created: 7, model: "llama-test" } as const;
const lp = (token: string, logprob: number, offset: number) => ({
  tokens: [token],
  token_logprobs: [logprob],
  top_logprobs: [{ [token]: logprob }],
  text_offset: [offset],
});
const piece = (index: number, text: string, logprobs: Completion["choices"][number]["logprobs"] = null, finish: "stop" | "length" | null = null): Completion => ({
  ...base,
  choices: [{ index, text, logprobs, finish_reason: finish }],
});
const usage = { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 };

const encoder = new TextEncoder();
function sse(items: unknown[]): Response {
  const body = items.map((x) => `data: ${typeof x === "string" ? x : JSON.stringify(x)}\n\n`).join("");
  return new Response(encoder.encode(body), { headers: { "content-type": "text/event-stream" } });
}

describe("CompletionStream", () => {
  it("assembles every choice's text, logprobs and finish reason, with usage and content events", async () => {
    const stream = CompletionStream.fromResponse(
      sse([
        piece(0, "Once", lp("Once", -0.5, 0)),
        piece(1, "In"),
        piece(0, " upon", lp(" upon", -1.25, 4)),
        piece(1, "", null, "length"),
        piece(0, "", null, "stop"),
        { ...base, choices: [], usage },
        "[DONE]",
      ]),
    );
    const content: [string, string, number][] = [];
    const usages: unknown[] = [];
    stream.on("content", (delta, snapshot, index) => content.push([delta, snapshot, index]));
    stream.on("usage", (u) => usages.push(u));
    const texts: string[] = [];
    for await (const t of stream.textStream) texts.push(t);

    expect(texts).toEqual(["Once", " upon"]);
    expect(content).toEqual([
      ["Once", "Once", 0],
      ["In", "In", 1],
      [" upon", "Once upon", 0],
    ]);
    expect(usages).toEqual([usage]);
    expect(await stream.finalCompletion()).toEqual({
      ...base,
      choices: [
        {
          index: 0,
          text: "Once upon",
          logprobs: {
            tokens: ["Once", " upon"],
            token_logprobs: [-0.5, -1.25],
            top_logprobs: [{ Once: -0.5 }, { " upon": -1.25 }],
            text_offset: [0, 4],
          },
          finish_reason: "stop",
        },
        { index: 1, text: "In", logprobs: null, finish_reason: "length" },
      ],
      usage,
    });
  });

  it("a body that ends while a choice is unfinished is a connection error", async () => {
    const stream = CompletionStream.fromResponse(sse([piece(0, "Once"), piece(1, "In", null, "stop")]));
    await expect(stream.finalCompletion()).rejects.toBeInstanceOf(APIConnectionError);
  });

  it("a body that ends after every choice finished, without [DONE], is complete", async () => {
    const stream = CompletionStream.fromResponse(sse([piece(0, "Once"), piece(0, "", null, "stop")]));
    const final = await stream.finalCompletion();
    expect(final.choices).toEqual([{ index: 0, text: "Once", logprobs: null, finish_reason: "stop" }]);
    expect(final.usage).toBeUndefined();
  });

  it("fromResponse refuses a response without a body", () => {
    expect(() => CompletionStream.fromResponse(new Response(null))).toThrow(TypeError);
  });
});
