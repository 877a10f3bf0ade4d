import { GREEDY_SAMPLING } from "../engine/sampling.js";
import { describe, expect, it } from "vitest";
import { DEFAULT_TOKEN_CYCLE, SimulatedEngine } from "../engine/simulated.js";
import type { Engine, SampledToken, SamplingParams, StepBatch, StepResult } from "../engine/types.js";
import { EngineStepError, InvalidRequestError, QueueFullError, RequestTooLargeError, SchedulerClosedError } from "./errors.js";
import type { GenerationRequest, SeqEvent } from "./request.js";
import { Scheduler, type SchedulerOptions } from "./scheduler.js";

// ---------------------------------------------------------------------------------------------
// A fake engine honouring the contract. It keeps a real paged "KV cache" of token ids: each step
// writes tokenIds at startPos.. through the block table, and a sampled token is a hash of every
// token read back through the block table (positions 0..end), the seed and outputIndex. So a wrong
// position, block table, prefix-cache reuse or outputIndex changes the tokens and fails the test
// against `reference()`, which computes the same function over the true token sequence.
// ---------------------------------------------------------------------------------------------

function nextToken(tokens: readonly number[], seed: number, outputIndex: number): number {
  let h = 0x811c9dc5 ^ seed;
  for (const t of tokens) h = Math.imul(h ^ t, 0x01000193);
  h = Math.imul(h ^ outputIndex, 0x01000193);
  h ^= h >>> 15;
  return 3 + ((h >>> 0) % 997);
}

function reference(prompt: number[], seed: number, maxTokens: number, stop: number[] = []): { tokens: number[]; reason: "stop" | "length"; numOutputTokens: number } {
  const all = prompt.slice();
  const tokens: number[] = [];
  for (let i = 0; i < maxTokens; i++) {
    const t = nextToken(all, seed, i);
    all.push(t);
    if (stop.includes(t)) return { tokens, reason: "stop", numOutputTokens: i + 1 };
    tokens.push(t);
  }
  return { tokens, reason: "length", numOutputTokens: maxTokens };
}

interface SeqRecord {
  seqId: number;
  startPos: number;
  tokenIds: number[];
  blockTable: number[];
  outputIndex: number | null;
  hasHistory: boolean;
  fromPrevious: boolean;
}

class FakeEngine implements Engine {
  readonly kind = "fake";
  readonly steps: SeqRecord[][] = [];
  readonly violations: string[] = [];
  /** Runs before the step computes; may await (to hold the step in flight) or throw (engine error). */
  onStep?: (batch: StepBatch, stepIndex: number) => void | Promise<void>;
  /** Calls made while an earlier step had not settled yet (overlap). */
  numEarlyCalls = 0;
  numCalls = 0;
  private readonly slots: (number | undefined)[];
  /** Steps run one at a time in call order, as the native engine's thread runs them. */
  private chain: Promise<unknown> = Promise.resolve();
  private numUnsettled = 0;
  /** What the previous step sampled, by seqId (`tokenFromPreviousStep`). */
  private lastSampled = new Map<number, number>();

  constructor(
    readonly blockSize: number,
    readonly numKvBlocks: number,
    readonly overlapsSteps = false,
  ) {
    this.slots = new Array(blockSize * numKvBlocks);
  }

  step(batch: StepBatch): Promise<StepResult> {
    this.numCalls++;
    if (this.numUnsettled > 0) this.numEarlyCalls++;
    this.numUnsettled++;
    const run = this.chain.then(() => this.run(batch));
    this.chain = run.catch(() => {});
    return run.finally(() => this.numUnsettled--);
  }

  private async run(batch: StepBatch): Promise<StepResult> {
    const stepIndex = this.steps.length;
    const previous = this.lastSampled;
    this.lastSampled = new Map();
    this.steps.push(
      batch.seqs.map((s) => ({
        seqId: s.seqId,
        startPos: s.startPos,
        tokenIds: s.tokenIds.slice(),
        blockTable: s.blockTable.slice(),
        outputIndex: s.sample === null ? null : s.sample.outputIndex,
        hasHistory: s.sample?.promptTokenIds !== undefined && s.sample?.outputTokenIds !== undefined,
        fromPrevious: s.tokenFromPreviousStep === true,
      })),
    );
    await this.onStep?.(batch, stepIndex);
    if (batch.seqs.some((s) => s.tokenFromPreviousStep)) {
      if (!this.overlapsSteps) this.violations.push(`step ${stepIndex}: tokenFromPreviousStep sent to an engine without overlap`);
      for (const s of batch.seqs) {
        if (!s.tokenFromPreviousStep) continue;
        const t = previous.get(s.seqId);
        if (t === undefined) throw new Error(`seq ${s.seqId}: the previous step sampled no token for it`);
        if (s.tokenIds.length !== 1) this.violations.push(`step ${stepIndex}: seq ${s.seqId} takes its token from the previous step but has ${s.tokenIds.length}`);
        s.tokenIds = [t];
      }
    }
    const bs = this.blockSize;
    const slotOf = (table: number[], pos: number) => table[Math.floor(pos / bs)] * bs + (pos % bs);
    const written = new Set<number>();
    for (const s of batch.seqs) {
      const end = s.startPos + s.tokenIds.length;
      if (s.tokenIds.length === 0) this.violations.push(`step ${stepIndex}: seq ${s.seqId} has no tokens`);
      if (s.blockTable.length < Math.ceil(end / bs)) this.violations.push(`step ${stepIndex}: seq ${s.seqId} block table too short`);
      if (new Set(s.blockTable).size !== s.blockTable.length) this.violations.push(`step ${stepIndex}: seq ${s.seqId} repeats a block`);
      if (s.blockTable.some((b) => b < 0 || b >= this.numKvBlocks)) this.violations.push(`step ${stepIndex}: seq ${s.seqId} block out of range`);
      s.tokenIds.forEach((t, j) => {
        const slot = slotOf(s.blockTable, s.startPos + j);
        if (written.has(slot)) this.violations.push(`step ${stepIndex}: slot ${slot} written twice`);
        written.add(slot);
        this.slots[slot] = t;
      });
    }
    const sampled: SampledToken[] = [];
    for (const s of batch.seqs) {
      if (s.sample === null) continue;
      const end = s.startPos + s.tokenIds.length;
      const tokens: number[] = [];
      for (let p = 0; p < end; p++) {
        const t = this.slots[slotOf(s.blockTable, p)];
        if (t === undefined) this.violations.push(`step ${stepIndex}: seq ${s.seqId} reads unwritten position ${p}`);
        tokens.push(t ?? -1);
      }
      const tokenId = nextToken(tokens, s.sample.params.seed, s.sample.outputIndex);
      this.lastSampled.set(s.seqId, tokenId);
      sampled.push(s.sample.params.logprobs >= 0 ? { seqId: s.seqId, tokenId, logprob: -s.sample.outputIndex } : { seqId: s.seqId, tokenId });
    }
    return { sampled };
  }

  async close(): Promise<void> {}

  /** Compact view of a step: [seqId, startPos, numTokens, outputIndex | null]. */
  view(stepIndex: number): [number, number, number, number | null][] {
    return this.steps[stepIndex].map((s) => [s.seqId, s.startPos, s.tokenIds.length, s.outputIndex]);
  }
}

const PARAMS: SamplingParams = { ...GREEDY_SAMPLING };

function request(requestId: string, promptTokenIds: number[], maxTokens: number, extra: Partial<GenerationRequest> = {}): GenerationRequest {
  return { requestId, promptTokenIds, params: { ...PARAMS, seed: requestId.length * 7919 }, maxTokens, stopTokenIds: [], ...extra };
}

class Sink {
  readonly events: SeqEvent[] = [];
  readonly onEvent = (ev: SeqEvent) => {
    this.events.push(ev);
  };
  get tokens(): number[] {
    return this.events.flatMap((e) => (e.type === "token" ? [e.tokenId] : []));
  }
  get finish(): Extract<SeqEvent, { type: "finish" }> {
    const f = this.events.filter((e) => e.type === "finish");
    expect(f).toHaveLength(1);
    expect(this.events.at(-1)).toBe(f[0]);
    return f[0] as Extract<SeqEvent, { type: "finish" }>;
  }
}

const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

function setup(blockSize: number, numKvBlocks: number, opts: SchedulerOptions = {}, overlapsSteps = false) {
  const engine = new FakeEngine(blockSize, numKvBlocks, overlapsSteps);
  const scheduler = new Scheduler(engine, opts);
  const add = (req: GenerationRequest) => {
    const sink = new Sink();
    scheduler.add(req, sink.onEvent);
    return { req, sink, expected: () => reference(req.promptTokenIds, req.params.seed, req.maxTokens, req.stopTokenIds) };
  };
  /** Nothing held: every block free, the pool's states consistent, the engine saw no violation. */
  const expectClean = () => {
    expect(engine.violations).toEqual([]);
    const s = scheduler.stats();
    expect(s.kvBlocksUsed).toBe(0);
    expect(s.numRunning).toBe(0);
    expect(s.numWaiting).toBe(0);
    expect(scheduler.kvCacheManager.pool.numFreeBlocks).toBe(numKvBlocks);
    scheduler.kvCacheManager.pool.checkInvariants();
  };
  return { engine, scheduler, add, expectClean };
}

describe("Scheduler", () => {
  it("generates to maxTokens, emitting each token once, then finishes with length", async () => {
    const { engine, scheduler, add, expectClean } = setup(4, 16);
    const a = add(request("a", range(10, 6), 5, { params: { ...PARAMS, seed: 42, logprobs: 0 } }));
    await scheduler.idle();
    expect(a.sink.tokens).toEqual(a.expected().tokens);
    expect(a.sink.events[1]).toEqual({ type: "token", tokenId: a.expected().tokens[1], logprob: -1 });
    expect(a.sink.finish).toEqual({ type: "finish", reason: "length", numPromptTokens: 6, numOutputTokens: 5, numCachedPromptTokens: 0 });
    expect(engine.view(0)).toEqual([[0, 0, 6, 0]]);
    expect(engine.steps[0][0].blockTable).toEqual([0, 1]);
    expect(engine.view(4)).toEqual([[0, 9, 1, 4]]);
    expect(engine.steps[4][0].blockTable).toEqual([0, 1, 2]);
    expect(engine.steps).toHaveLength(5);
    expect(scheduler.stats().numSteps).toBe(5);
    expectClean();
  });

  it("finishes on a stop token, which counts as output but is not emitted", async () => {
    const { scheduler, add, expectClean } = setup(4, 16);
    const prompt = range(1, 5);
    const free = reference(prompt, "s".length * 7919, 10).tokens;
    const stop = free[3];
    expect(free.slice(0, 3)).not.toContain(stop);
    const s = add(request("s", prompt, 10, { stopTokenIds: [stop] }));
    await scheduler.idle();
    expect(s.sink.tokens).toEqual(free.slice(0, 3));
    expect(s.sink.finish).toMatchObject({ reason: "stop", numOutputTokens: 4 });
    expectClean();
  });

  it("chunks a long prompt under the token budget and samples only on the last chunk", async () => {
    const { engine, scheduler, add, expectClean } = setup(4, 32, { maxNumBatchedTokens: 8 });
    const p = add(request("p", range(100, 20), 3));
    await scheduler.idle();
    expect(engine.steps.map((_, i) => engine.view(i))).toEqual([
      [[0, 0, 8, null]],
      [[0, 8, 8, null]],
      [[0, 16, 4, 0]],
      [[0, 20, 1, 1]],
      [[0, 21, 1, 2]],
    ]);
    expect(engine.steps.map((s) => s[0].blockTable)).toEqual([[0, 1], [0, 1, 2, 3], [0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5]]);
    expect(p.sink.tokens).toEqual(p.expected().tokens);
    expectClean();
  });

  it("mixes decodes of running requests with prefill chunks of another in one step", async () => {
    const { engine, scheduler, add, expectClean } = setup(4, 32, { maxNumBatchedTokens: 8 });
    const a = add(request("a", range(1, 3), 6));
    const b = add(request("bb", range(50, 20), 2));
    await scheduler.idle();
    // Running requests first (a: 1 token per decode), then b's chunk takes what budget is left.
    expect(engine.steps.map((_, i) => engine.view(i))).toEqual([
      [[0, 0, 3, 0], [1, 0, 5, null]],
      [[0, 3, 1, 1], [1, 5, 7, null]],
      [[0, 4, 1, 2], [1, 12, 7, null]],
      [[0, 5, 1, 3], [1, 19, 1, 0]],
      [[0, 6, 1, 4], [1, 20, 1, 1]],
      [[0, 7, 1, 5]],
    ]);
    expect(a.sink.tokens).toEqual(a.expected().tokens);
    expect(b.sink.tokens).toEqual(b.expected().tokens);
    expectClean();
  });

  it("runs at most maxNumSeqs requests; the next waiting one is admitted when one finishes", async () => {
    const { engine, scheduler, add, expectClean } = setup(4, 32, { maxNumSeqs: 2 });
    const a = add(request("a", range(1, 4), 3));
    const b = add(request("bb", range(11, 4), 5));
    const c = add(request("ccc", range(21, 4), 2));
    expect(scheduler.stats()).toMatchObject({ numWaiting: 3, numRunning: 0 });
    await scheduler.idle();
    expect(engine.steps.every((s) => s.length <= 2)).toBe(true);
    expect(engine.steps.map((_, i) => engine.view(i).map(([seqId]) => seqId))).toEqual([[0, 1], [0, 1], [0, 1], [1, 2], [1, 2]]);
    for (const r of [a, b, c]) expect(r.sink.tokens).toEqual(r.expected().tokens);
    expectClean();
  });

  it("preempts the most recently admitted request when blocks run out, then recomputes it without re-emitting", async () => {
    // 6 blocks of 4 slots; a and b each need 5 blocks over their lifetime (8 + 10 - 1 = 17 tokens).
    const { engine, scheduler, add, expectClean } = setup(4, 6, { enablePrefixCaching: false });
    const a = add(request("a", range(1, 8), 10));
    const b = add(request("bb", range(101, 8), 10));
    let bBlocksAtPreemption: number[] = [];
    engine.onStep = (_, i) => {
      if (i === 4) bBlocksAtPreemption = [...scheduler.kvCacheManager.getBlockIds("bb")];
    };
    await scheduler.idle();

    expect(scheduler.stats().numPreemptions).toBe(1);
    expect(bBlocksAtPreemption).toEqual([2, 3, 5]);
    // Steps 0-4: both run (b's fifth token is sampled in step 4). Step 5: a needs a 4th block for
    // position 12, none is free: b (last admitted) is preempted and its blocks go to a (lowest first).
    expect(engine.view(4)).toEqual([[0, 11, 1, 4], [1, 11, 1, 4]]);
    expect(engine.view(5)).toEqual([[0, 12, 1, 5]]);
    expect(engine.steps[5][0].blockTable).toEqual([0, 1, 4, 2]);
    // b waits until a finishes (step 9), then recomputes prompt + its 5 outputs from position 0.
    for (let i = 6; i <= 9; i++) expect(engine.view(i).map(([seqId]) => seqId)).toEqual([0]);
    expect(engine.view(10)).toEqual([[1, 0, 13, 5]]);
    expect(engine.steps[10][0].tokenIds).toEqual([...range(101, 8), ...b.expected().tokens.slice(0, 5)]);
    expect(engine.steps[10][0].blockTable).toEqual([0, 1, 2, 3]);

    expect(a.sink.tokens).toEqual(a.expected().tokens);
    expect(b.sink.tokens).toEqual(b.expected().tokens); // each token exactly once, in order
    expect(b.sink.finish).toMatchObject({ reason: "length", numOutputTokens: 10 });
    expectClean();
  });

  it("reuses a preempted request's own cached prefix on readmission, as far as it survived eviction", async () => {
    const { engine, scheduler, add, expectClean } = setup(4, 6);
    const a = add(request("a", range(1, 8), 10));
    const b = add(request("bb", range(101, 8), 10));
    await scheduler.idle();
    expect(scheduler.stats().numPreemptions).toBe(1);
    // At preemption b's 3 full blocks [2,3,5] became cached free (tail first: 5,3,2); a evicted 5 and
    // later 3, so b's readmission reuses block 2 (its first 4 tokens) and recomputes from position 4.
    expect(engine.view(10)).toEqual([[1, 4, 9, 5]]);
    expect(engine.steps[10][0].blockTable.slice(0, 1)).toEqual([2]);
    expect(b.sink.tokens).toEqual(b.expected().tokens);
    expect(b.sink.finish.numCachedPromptTokens).toBe(0); // counted at first admission only
    expect(a.sink.tokens).toEqual(a.expected().tokens);
    expectClean();
  });

  it("shares prefix-cached blocks between requests and caps the hit below the whole prompt", async () => {
    const { engine, scheduler, add, expectClean } = setup(4, 16);
    const prompt = range(200, 12);
    const a = add(request("a", prompt, 6));
    let refsDuringC: number[] = [];
    engine.onStep = (_, i) => {
      if (i === 1) c = add(request("ccc", [...prompt.slice(0, 8), 7, 7], 2));
      if (i === 2) refsDuringC = [0, 1, 2, 3, 4].map((id) => scheduler.kvCacheManager.pool.refCount(id));
    };
    let c: ReturnType<typeof add> | undefined;
    await scheduler.idle();
    // c arrives during step 1 and is admitted in step 2 with a's first two blocks (8 tokens).
    expect(engine.view(2)).toEqual([[0, 13, 1, 2], [1, 8, 2, 0]]);
    expect(engine.steps[2][1].blockTable).toEqual([0, 1, 4]);
    expect(refsDuringC).toEqual([2, 2, 1, 1, 1]);
    expect(c?.sink.tokens).toEqual(c?.expected().tokens);
    expect(c?.sink.finish.numCachedPromptTokens).toBe(8);

    // The same 12-token prompt again, fully cached: only 8 tokens are reused, the last block recomputed.
    const d = add(request("dddd", prompt, 2));
    await scheduler.idle();
    const first = engine.steps.findIndex((s) => s.some((q) => q.seqId === 2));
    expect(engine.view(first)).toEqual([[2, 8, 4, 0]]);
    expect(engine.steps[first][0].blockTable.slice(0, 2)).toEqual([0, 1]);
    expect(d.sink.finish.numCachedPromptTokens).toBe(8);
    expect(d.sink.tokens).toEqual(d.expected().tokens);
    expect(a.sink.tokens).toEqual(a.expected().tokens);
    // Hit tokens / looked-up tokens: a 0/12, c 8/10, d 8/12.
    expect(scheduler.stats().prefixCacheHitRate).toBeCloseTo(16 / 34);
    expectClean();
  });

  it("passes prompt and output tokens only when a penalty is active", async () => {
    const { engine, scheduler, add } = setup(4, 16);
    add(request("a", range(1, 4), 2));
    add(request("bb", range(1, 4), 2, { params: { ...PARAMS, frequencyPenalty: 0.5 } }));
    await scheduler.idle();
    expect(engine.steps[0].map((s) => s.hasHistory)).toEqual([false, true]);
  });

  it("drops an aborted waiting request without it ever reaching the engine", async () => {
    const { engine, scheduler, add, expectClean } = setup(4, 16, { maxNumSeqs: 1 });
    const a = add(request("a", range(1, 4), 3));
    const b = add(request("bb", range(1, 4), 3));
    scheduler.abort("bb");
    scheduler.abort("bb"); // idempotent
    scheduler.abort("nope");
    expect(b.sink.events).toEqual([{ type: "finish", reason: "abort", numPromptTokens: 4, numOutputTokens: 0, numCachedPromptTokens: 0 }]);
    await scheduler.idle();
    expect(engine.steps.flat().every((s) => s.seqId === 0)).toBe(true);
    expect(a.sink.tokens).toEqual(a.expected().tokens);
    expectClean();
  });

  it("aborts a running request mid-step: finish at once, blocks free at the step boundary", async () => {
    const { engine, scheduler, add, expectClean } = setup(4, 16);
    const a = add(request("a", range(1, 9), 20)); // 3 blocks
    const b = add(request("bb", range(31, 4), 4));
    const usedAt: number[] = [];
    let release: () => void = () => {};
    engine.onStep = async (_, i) => {
      usedAt.push(scheduler.stats().kvBlocksUsed);
      if (i === 1) {
        scheduler.abort("a");
        expect(a.sink.finish).toMatchObject({ reason: "abort", numOutputTokens: 1 });
        expect(scheduler.stats().kvBlocksUsed).toBe(usedAt[1]); // the step may still be using them
        await new Promise<void>((r) => (release = r));
      }
    };
    const done = scheduler.idle();
    await new Promise((r) => setTimeout(r, 10));
    release();
    await done;
    expect(usedAt.slice(0, 3)).toEqual([4, 5, 2]); // a: 3 blocks, b: 1 then 2; after the abort only b's
    expect(engine.steps.slice(2).flat().every((s) => s.seqId === 1)).toBe(true);
    expect(a.sink.tokens).toHaveLength(1);
    expect(b.sink.tokens).toEqual(b.expected().tokens);
    expectClean();
  });

  it("aborts a running request from its own callback between steps", async () => {
    const { engine, scheduler, expectClean } = setup(4, 16);
    const events: SeqEvent[] = [];
    scheduler.add(request("a", range(1, 6), 50), (ev) => {
      events.push(ev);
      if (ev.type === "token" && events.length === 2) {
        scheduler.abort("a");
        expect(scheduler.stats().kvBlocksUsed).toBe(0);
      }
    });
    await scheduler.idle();
    expect(events.map((e) => e.type)).toEqual(["token", "token", "finish"]);
    expect(engine.steps).toHaveLength(2);
    expectClean();
  });

  it("refuses requests beyond maxQueue with QueueFullError (503)", async () => {
    const { scheduler, add, expectClean } = setup(4, 16, { maxQueue: 2 });
    add(request("a", [1], 1));
    add(request("bb", [1], 1));
    let err: unknown;
    try {
      add(request("ccc", [1], 1));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(QueueFullError);
    expect(err).toMatchObject({ status: 503, retryAfterS: 1 });
    await scheduler.idle();
    add(request("ccc", [1], 1));
    await scheduler.idle();
    expectClean();
  });

  it("rejects a request that could never fit the whole KV cache, and malformed ones", async () => {
    const { scheduler, add, expectClean } = setup(4, 4); // 16 slots
    expect(() => add(request("big", range(1, 10), 8))).toThrow(RequestTooLargeError);
    const fits = add(request("fits", range(1, 10), 7)); // 10 + 7 - 1 = 16 KV tokens
    expect(() => add(request("fits", [1], 1))).toThrow(InvalidRequestError);
    expect(() => add(request("empty", [], 1))).toThrow(InvalidRequestError);
    expect(() => add(request("zero", [1], 0))).toThrow(InvalidRequestError);
    await scheduler.idle();
    expect(fits.sink.tokens).toEqual(fits.expected().tokens);
    expectClean();
  });

  it("fails the requests of a step whose engine call throws, and keeps serving the others", async () => {
    const { engine, scheduler, add, expectClean } = setup(4, 16, { maxNumSeqs: 1 });
    const a = add(request("a", range(1, 4), 5));
    const b = add(request("bb", range(1, 4), 5));
    const boom = new Error("device lost");
    engine.onStep = (_, i) => {
      if (i === 1) throw boom;
    };
    await scheduler.idle();
    const f = a.sink.finish;
    expect(f).toMatchObject({ reason: "error", numOutputTokens: 1 });
    expect(f.error).toBeInstanceOf(EngineStepError);
    expect(f.error?.cause).toBe(boom);
    expect(b.sink.tokens).toEqual(b.expected().tokens);
    expect(scheduler.stats().numSteps).toBe(7);
    expectClean();
  });

  it("survives callbacks that throw", async () => {
    const { scheduler, add, expectClean } = setup(4, 16);
    scheduler.add(request("a", range(1, 4), 4), () => {
      throw new Error("consumer bug");
    });
    const b = add(request("bb", range(1, 4), 4));
    await scheduler.idle();
    expect(b.sink.tokens).toEqual(b.expected().tokens);
    expectClean();
  });

  it("close() aborts everything, waits for the step in flight and refuses new work", async () => {
    const { engine, scheduler, add, expectClean } = setup(4, 16, { maxNumSeqs: 1 });
    const a = add(request("a", range(1, 4), 50));
    const b = add(request("bb", range(1, 4), 50));
    let closing: Promise<void> | undefined;
    engine.onStep = (_, i) => {
      if (i === 2) closing = scheduler.close();
    };
    await scheduler.idle();
    await closing;
    expect(a.sink.finish).toMatchObject({ reason: "abort", numOutputTokens: 2 });
    expect(b.sink.finish).toMatchObject({ reason: "abort", numOutputTokens: 0 });
    expect(() => add(request("c", [1], 1))).toThrow(SchedulerClosedError);
    expectClean();
  });

  it.each([
    { seed: 1234, enablePrefixCaching: true },
    { seed: 99, enablePrefixCaching: true },
    { seed: 7, enablePrefixCaching: false },
    { seed: 4321, enablePrefixCaching: true, overlap: true },
  ])("leaks no block over a randomized run with shared prefixes, preemptions and aborts (%o)", async ({ seed, enablePrefixCaching, overlap }) => {
    const rand = mulberry32(seed);
    const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
    const { engine, scheduler, add, expectClean } = setup(4, 24, { maxNumSeqs: 6, maxNumBatchedTokens: 24, maxQueue: 10_000, enablePrefixCaching }, overlap === true);
    const prefixes = [range(1000, 12), range(2000, 7), range(3000, 16)];
    type Added = ReturnType<typeof add> & { aborted: boolean };
    const all: Added[] = [];
    let n = 0;
    const addRandom = () => {
      const prompt = [...prefixes[int(0, 2)].slice(0, int(0, 16)), ...range(int(0, 5000), int(1, 12))];
      const req = request(`r${n++}`, prompt, int(1, 24), { stopTokenIds: rand() < 0.3 ? [int(3, 999), int(3, 999)] : [] });
      all.push({ ...add(req), aborted: false });
    };
    const abortRandom = () => {
      const r = all[int(0, all.length - 1)];
      r.aborted = true;
      scheduler.abort(r.req.requestId);
    };
    for (let i = 0; i < 20; i++) addRandom();
    engine.onStep = async (_, i) => {
      if (i < 300 && rand() < 0.5) for (let k = int(1, 3); k > 0; k--) addRandom();
      if (rand() < 0.1) abortRandom(); // mid-step
      if (rand() < 0.05) await new Promise((r) => setImmediate(r));
    };
    const poll = setInterval(() => rand() < 0.5 && abortRandom(), 1); // between steps
    await scheduler.idle();
    clearInterval(poll);

    expect(all.length).toBeGreaterThan(150);
    expect(scheduler.stats().numPreemptions).toBeGreaterThan(5);
    if (enablePrefixCaching) expect(scheduler.stats().prefixCacheHitRate).toBeGreaterThan(0.1);
    let numCompleted = 0;
    for (const r of all) {
      const f = r.sink.finish; // exactly one finish, last
      const ref = r.expected();
      if (f.reason === "abort") {
        expect(r.aborted).toBe(true);
        expect(ref.tokens.slice(0, r.sink.tokens.length)).toEqual(r.sink.tokens);
      } else {
        numCompleted++;
        expect(r.sink.tokens).toEqual(ref.tokens);
        expect(f).toMatchObject({ reason: ref.reason, numOutputTokens: ref.numOutputTokens, numPromptTokens: r.req.promptTokenIds.length });
      }
    }
    expect(numCompleted).toBeGreaterThan(50);
    // The premise: steps did overlap. How many depends on how often the 1 ms poll above aborts
    // between steps, which a busy machine changes; any overlap at all puts the leak check to work.
    if (overlap) expect(scheduler.stats().numOverlappedSteps).toBeGreaterThan(0);
    expectClean();
  });
});

describe("Scheduler with the SimulatedEngine", () => {
  it("serves a burst under KV pressure: every request ends on EOS with the same tokens", async () => {
    const eos = 128009;
    const engine = new SimulatedEngine({ numKvBlocks: 12, blockSize: 4, eosAfter: 6, eosTokenId: eos });
    const scheduler = new Scheduler(engine, { maxNumSeqs: 8, maxNumBatchedTokens: 16 });
    const sinks = Array.from({ length: 40 }, (_, i) => {
      const sink = new Sink();
      scheduler.add(request(`r${i}`, range(1000 + (i % 3) * 100, 5 + (i % 7)), 32, { stopTokenIds: [eos] }), sink.onEvent);
      return sink;
    });
    await scheduler.idle();
    for (const sink of sinks) {
      expect(sink.finish).toMatchObject({ reason: "stop", numOutputTokens: 7 });
      expect(sink.tokens).toEqual(DEFAULT_TOKEN_CYCLE.slice(0, 6));
    }
    expect(scheduler.stats()).toMatchObject({ kvBlocksUsed: 0, numRunning: 0, numWaiting: 0 });
    expect(scheduler.stats().numPreemptions).toBeGreaterThan(0);
    scheduler.kvCacheManager.pool.checkInvariants();
  });
});

describe("Scheduler: overlapped steps (engine.overlapsSteps)", () => {
  const overlapped = (engine: FakeEngine) => engine.steps.map((st) => st.some((s) => s.fromPrevious));

  it("enqueues decode step N+1 before step N's tokens are handed out, with the reference's tokens", async () => {
    const { engine, scheduler, add, expectClean } = setup(4, 32, {}, true);
    const a = add(request("a", range(10, 6), 7, { params: { ...PARAMS, seed: 5, logprobs: 0 } }));
    const b = add(request("bb", range(40, 3), 4));
    const callsAtToken: number[] = [];
    a.sink.events.push = function (...evs: SeqEvent[]) {
      callsAtToken.push(engine.numCalls); // steps the engine had been handed when this event arrived
      return Array.prototype.push.apply(this, evs);
    };
    await scheduler.idle();
    expect(a.sink.tokens).toEqual(a.expected().tokens);
    expect(a.sink.events[2]).toEqual({ type: "token", tokenId: a.expected().tokens[2], logprob: -2 });
    expect(a.sink.finish).toMatchObject({ reason: "length", numOutputTokens: 7 });
    expect(b.sink.tokens).toEqual(b.expected().tokens);
    // Step 0 prefills both; step 1 (decode) is scheduled normally, and steps 2 and 3 go in while the
    // step before runs; b's last token (index 3) allows no step after it, so step 4 is scheduled
    // normally (b finished), then a overlaps alone up to its last token (index 6).
    expect(engine.steps.map((_, i) => engine.view(i))).toEqual([
      [[0, 0, 6, 0], [1, 0, 3, 0]],
      [[0, 6, 1, 1], [1, 3, 1, 1]],
      [[0, 7, 1, 2], [1, 4, 1, 2]],
      [[0, 8, 1, 3], [1, 5, 1, 3]],
      [[0, 9, 1, 4]],
      [[0, 10, 1, 5]],
      [[0, 11, 1, 6]],
    ]);
    expect(overlapped(engine)).toEqual([false, false, true, true, false, true, true]);
    expect(scheduler.stats()).toMatchObject({ numSteps: 7, numOverlappedSteps: 4 });
    // Token k comes from step k: when it was handed out, step k + 1 was already on the engine
    // except after steps 0, 3 and 6 (a prefill, b's last token, a's last token).
    expect(callsAtToken).toEqual([1, 3, 4, 4, 6, 7, 7, 7]);
    expectClean();
  });

  it("a sequence that stops on step N emits nothing from the overlapped step N+1, whose blocks are freed after it", async () => {
    const { engine, scheduler, add, expectClean } = setup(4, 32, {}, true);
    const prompt = range(1, 5);
    const free = reference(prompt, "s".length * 7919, 10).tokens;
    const stop = free[3];
    expect(free.slice(0, 3)).not.toContain(stop);
    const s = add(request("s", prompt, 10, { stopTokenIds: [stop] }));
    await scheduler.idle();
    expect(s.sink.tokens).toEqual(free.slice(0, 3));
    expect(s.sink.finish).toMatchObject({ reason: "stop", numOutputTokens: 4 });
    // The engine computed output index 4 (after the stop token) in an overlapped step; it was dropped.
    expect(engine.steps.at(-1)).toMatchObject([{ outputIndex: 4, fromPrevious: true }]);
    expectClean();
  });

  it("a stop string (abort from the token callback) mid-overlap: no later token, blocks kept until the step in flight ends", async () => {
    const { engine, scheduler, expectClean } = setup(4, 32, {}, true);
    const events: SeqEvent[] = [];
    let usedAtAbort = -1;
    scheduler.add(request("a", range(1, 6), 50), (ev) => {
      events.push(ev);
      if (ev.type === "token" && events.length === 3) {
        scheduler.abort("a");
        usedAtAbort = scheduler.stats().kvBlocksUsed; // the overlapped step is still writing them
      }
    });
    await scheduler.idle();
    expect(events.map((e) => e.type)).toEqual(["token", "token", "token", "finish"]);
    expect(usedAtAbort).toBe(3); // positions 0..8: 3 blocks of 4, not freed while step 3 runs
    expect(engine.steps).toHaveLength(4);
    expect(engine.steps[3][0]).toMatchObject({ outputIndex: 3, fromPrevious: true });
    expectClean();
  });

  it("cancellation while two steps are in flight frees the KV only after both, and nothing is reused early", async () => {
    const { engine, scheduler, add, expectClean } = setup(4, 8, {}, true);
    const a = add(request("a", range(1, 7), 20));
    let release: () => void = () => {};
    engine.onStep = async (_, i) => {
      if (i === 3) await new Promise<void>((r) => (release = r)); // hold step 3 (overlapped) on the engine
    };
    while (engine.steps.length < 4) await new Promise((r) => setTimeout(r, 1));
    // Tokens 0..2 are out; step 3 is held on the engine and step 4 queued behind it (positions 9, 10).
    expect(engine.numCalls).toBe(5);
    scheduler.abort("a");
    expect(a.sink.finish).toMatchObject({ reason: "abort", numOutputTokens: 3 });
    expect(scheduler.stats().kvBlocksUsed).toBe(3); // positions 0..10: still being written
    // A request that needs 6 of the 8 blocks waits for a's: none is handed out while steps 3 and 4 may write them.
    const b = add(request("bb", range(50, 24), 1));
    await new Promise((r) => setTimeout(r, 5));
    expect(b.sink.events).toEqual([]);
    expect(scheduler.stats().kvBlocksUsed).toBe(3);
    release();
    await scheduler.idle();
    expect(a.sink.tokens).toEqual(a.expected().tokens.slice(0, 3));
    expect(b.sink.tokens).toEqual(b.expected().tokens);
    // b's prefill came only after both of a's steps: it reused a's freed blocks.
    expect(engine.view(5)).toEqual([[1, 0, 24, 0]]);
    expectClean();
  });

  it("constrained sequences and penalties opt out: no step overlaps while one runs", async () => {
    const { engine, scheduler, add, expectClean } = setup(4, 64, {}, true);
    const accepted: number[] = [];
    const constraint = { fillNextTokenBitmask: async () => {}, acceptToken: (t: number) => (accepted.push(t), true) };
    const c = add(request("c", range(1, 4), 5, { constraint }));
    const p = add(request("pp", range(20, 4), 5, { params: { ...PARAMS, seed: 14, repetitionPenalty: 1.2 } }));
    const u = add(request("uuu", range(30, 4), 12));
    await scheduler.idle();
    expect(c.sink.tokens).toEqual(c.expected().tokens);
    expect(p.sink.tokens).toEqual(p.expected().tokens);
    expect(u.sink.tokens).toEqual(u.expected().tokens);
    // Steps 0..4 hold c and pp (5 tokens each); only once they are done does uuu's decode overlap.
    const flags = overlapped(engine);
    expect(flags.slice(0, 6).some(Boolean)).toBe(false);
    expect(flags.slice(6).some(Boolean)).toBe(true);
    expect(engine.steps.filter((st) => st.some((s) => s.fromPrevious && (s.seqId === 0 || s.seqId === 1)))).toEqual([]);
    expectClean();
  });

  it("an engine failure on step N fails its requests once; the overlapped step N+1 cannot reuse a token and nothing leaks", async () => {
    const { engine, scheduler, add, expectClean } = setup(4, 16, {}, true);
    const a = add(request("a", range(1, 5), 20));
    engine.onStep = (_, i) => {
      if (i === 2) throw new Error("device lost");
    };
    await scheduler.idle();
    expect(a.sink.finish).toMatchObject({ reason: "error" });
    expect(a.sink.events.filter((e) => e.type === "finish")).toHaveLength(1);
    expect(a.sink.tokens).toEqual(a.expected().tokens.slice(0, 2));
    expectClean();
  });

  it("is off with overlapSteps: false", async () => {
    const { engine, scheduler, add, expectClean } = setup(4, 16, { overlapSteps: false }, true);
    const a = add(request("a", range(1, 5), 6));
    await scheduler.idle();
    expect(a.sink.tokens).toEqual(a.expected().tokens);
    expect(overlapped(engine).some(Boolean)).toBe(false);
    expect(engine.numEarlyCalls).toBe(0);
    expectClean();
  });
});

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
