import { describe, expect, it } from "vitest";
import { GREEDY_SAMPLING } from "../engine/sampling.js";
import { SimulatedEngine } from "../engine/simulated.js";
import { QueueFullError } from "./errors.js";
import type { GenerationRequest, SeqEvent } from "./request.js";
import { Scheduler } from "./scheduler.js";

// Per-key fairness: one key's flood neither fills the node's queue nor delays another key's request
// for the length of the flood; and prefix-cache blocks are shared only within one salt.

function req(requestId: string, keyId: string, maxTokens: number, extra: Partial<GenerationRequest> = {}): GenerationRequest {
  return { requestId, promptTokenIds: [1, 2, 3, 4, 5], params: { ...GREEDY_SAMPLING }, maxTokens, stopTokenIds: [], keyId, ...extra };
}

type Finish = Extract<SeqEvent, { type: "finish" }>;

function track() {
  const finishes = new Map<string, Finish & { atStep: number; tokens: number }>();
  return {
    finishes,
    sink(scheduler: Scheduler, id: string) {
      let tokens = 0;
      return (ev: SeqEvent) => {
        if (ev.type === "token") tokens++;
        else finishes.set(id, { ...ev, atStep: scheduler.stats().numSteps, tokens });
      };
    },
  };
}

describe("per-key fairness", () => {
  it("one key cannot fill the queue: its share is a quarter, other keys still get in", () => {
    const scheduler = new Scheduler(new SimulatedEngine({ numKvBlocks: 256, blockSize: 16 }), { maxNumSeqs: 4, maxQueue: 64 });
    let refused: unknown;
    let admitted = 0;
    for (let i = 0; i < 64; i++) {
      try {
        scheduler.add(req(`a${i}`, "key-a", 4), () => {});
        admitted++;
      } catch (e) {
        refused = e;
        break;
      }
    }
    expect(admitted).toBe(16);
    expect(refused).toBeInstanceOf(QueueFullError);
    expect(() => scheduler.add(req("b0", "key-b", 4), () => {})).not.toThrow();
    return scheduler.close();
  });

  it("a small request of another key is served within a few steps of a flood, not after it", async () => {
    const engine = new SimulatedEngine({ numKvBlocks: 1024, blockSize: 16, stepDelayMs: 1 });
    const scheduler = new Scheduler(engine, { maxNumSeqs: 8, maxQueue: 64 });
    const t = track();
    // Key A: every sequence slot busy with long generations, and 8 more queued.
    for (let i = 0; i < 16; i++) scheduler.add(req(`a${i}`, "key-a", 200), t.sink(scheduler, `a${i}`));
    while (scheduler.stats().numSteps < 5) await new Promise((r) => setTimeout(r, 1));
    expect(scheduler.stats().numRunning).toBe(8);

    const addedAtStep = scheduler.stats().numSteps;
    const t0 = performance.now();
    let waitedMs = 0;
    scheduler.add(req("b", "key-b", 4), (ev) => {
      t.sink(scheduler, "b")(ev);
      if (ev.type === "finish") waitedMs = performance.now() - t0;
    });
    await scheduler.idle();

    const b = t.finishes.get("b")!;
    const stepsForB = b.atStep - addedAtStep;
    const lastA = Math.max(...[...t.finishes.entries()].filter(([id]) => id.startsWith("a")).map(([, f]) => f.atStep));
    console.log(`fairness: key B's 4-token request finished after ${stepsForB} steps (${waitedMs.toFixed(0)} ms at 1 ms/step); key A's flood ran ${lastA} steps`);
    expect(b.reason).toBe("length");
    // Without fairness B waits for all of A's 16 requests (≥ 400 steps); with it, one step for a slot + 4 decodes.
    expect(stepsForB).toBeLessThanOrEqual(8);
    // A's preempted request was recomputed and finished whole; nothing leaked.
    for (let i = 0; i < 16; i++) expect(t.finishes.get(`a${i}`)).toMatchObject({ reason: "length", tokens: 200 });
    expect(scheduler.stats().numPreemptions).toBeGreaterThanOrEqual(1);
    expect(scheduler.stats().kvBlocksUsed).toBe(0);
  });

  it("admits the oldest request of the key with the fewest running requests, round robin among equals", async () => {
    const engine = new SimulatedEngine({ numKvBlocks: 1024, blockSize: 16 });
    const scheduler = new Scheduler(engine, { maxNumSeqs: 2, maxQueue: 64 });
    const order: string[] = [];
    const add = (id: string, key: string) =>
      scheduler.add(req(id, key, 1), (ev) => {
        if (ev.type === "finish") order.push(id);
      });
    for (let i = 0; i < 6; i++) add(`a${i}`, "a");
    add("b0", "b");
    add("b1", "b");
    add("c0", "c");
    await scheduler.idle();
    // Round robin across keys instead of a's six first (FIFO would serve a0..a5, then b0, b1, c0).
    expect(order.slice(0, 3).sort()).toEqual(["a0", "b0", "c0"]);
    expect(order.slice(3, 5).sort()).toEqual(["a1", "b1"]);
  });
});

describe("prefix-cache salt", () => {
  it("shares cached blocks only between requests with the same salt", async () => {
    const scheduler = new Scheduler(new SimulatedEngine({ numKvBlocks: 64, blockSize: 4 }), {});
    const prompt = Array.from({ length: 40 }, (_, i) => 100 + i);
    const cached = async (id: string, cacheSalt: string) => {
      let n = -1;
      scheduler.add(req(id, "k", 1, { promptTokenIds: prompt, cacheSalt }), (ev) => {
        if (ev.type === "finish") n = ev.numCachedPromptTokens;
      });
      await scheduler.idle();
      return n;
    };
    expect(await cached("victim", "tenant-1")).toBe(0);
    expect(await cached("guess", "tenant-2")).toBe(0);
    expect(await cached("same-tenant", "tenant-1")).toBe(36);
  });
});

describe("paused requests (slow readers)", () => {
  it("are not scheduled while paused, keep their blocks, and finish once resumed", async () => {
    const scheduler = new Scheduler(new SimulatedEngine({ numKvBlocks: 64, blockSize: 16 }), {});
    let tokens = 0;
    let finished = false;
    scheduler.add(req("slow", "k", 50), (ev) => {
      if (ev.type === "token") {
        if (++tokens === 5) scheduler.pause("slow");
      } else finished = true;
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(tokens).toBe(5);
    expect(scheduler.stats().kvBlocksUsed).toBeGreaterThan(0);
    scheduler.resume("slow");
    await scheduler.idle();
    expect(finished).toBe(true);
    expect(tokens).toBe(50);
  });

  it("an aborted paused request frees its blocks and idle() resolves", async () => {
    const scheduler = new Scheduler(new SimulatedEngine({ numKvBlocks: 64, blockSize: 16 }), {});
    scheduler.add(req("stuck", "k", 50), (ev) => {
      if (ev.type === "token") scheduler.pause("stuck");
    });
    await new Promise((r) => setTimeout(r, 20));
    const idle = scheduler.idle();
    scheduler.abort("stuck");
    await idle;
    expect(scheduler.stats().kvBlocksUsed).toBe(0);
  });
});
