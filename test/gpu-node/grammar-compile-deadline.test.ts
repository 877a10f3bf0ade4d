import { monitorEventLoopDelay } from "node:perf_hooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SimulatedEngine } from "../../gpu-node/src/engine/index.js";
import { startNode, type RunningNode } from "../../gpu-node/src/node.js";
import { waitFor } from "../helpers/sse.js";

// Grammar compilation runs on worker threads with a deadline. A schema whose grammar takes longer
// (a string with a large maxLength: seconds of compiling over the 128k vocabulary) is a 400, and
// while it compiles the node's own thread keeps serving: unconstrained streams keep streaming.
let node: RunningNode;
const MODEL = "tiny-llama-3.1";
const DEADLINE_MS = 500;

beforeAll(async () => {
  // A simulated engine (5 ms steps off the node's thread), so any stall measured is the node's own.
  const engineInstance = new SimulatedEngine({ numKvBlocks: 1024, blockSize: 16, stepDelayMs: 5 });
  node = await startNode({ port: 0, engineInstance, grammarThreads: 2, grammarCompileTimeoutMs: DEADLINE_MS, log: () => {} });
});
afterAll(async () => {
  await node?.close();
});

const post = (body: unknown, signal?: AbortSignal) =>
  fetch(node.url + "/v1/chat/completions", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), signal });
const messages = [{ role: "user", content: "Fill in the form." }];
/** Compiles in several seconds (maxLength 30 over the full vocabulary), far past the deadline. */
const slowSchema = (field: string) => ({ type: "object", properties: { [field]: { type: "string", maxLength: 30 } }, required: [field] });
const structured = () => node.ctx.structured!.compiler;

describe("grammar compile deadline", () => {
  it("refuses a schema that compiles too long with a 400 while unconstrained streams keep streaming", async () => {
    // An unconstrained stream, running before, during and after the compilation.
    const abort = new AbortController();
    const res = await post({ model: MODEL, messages, stream: true, max_tokens: 3000, ignore_eos: true, temperature: 1 }, abort.signal);
    expect(res.status).toBe(200);
    const chunkTimes: number[] = [];
    const reader = res.body!.getReader();
    const reading = (async () => {
      try {
        for (;;) {
          const { done } = await reader.read();
          if (done) return;
          chunkTimes.push(performance.now());
        }
      } catch {
        // aborted below
      }
    })();
    while (chunkTimes.length === 0) await new Promise((r) => setTimeout(r, 10));

    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    await new Promise((r) => setTimeout(r, 50)); // the loop's first turns only start the measurement
    const t0 = performance.now();
    const bad = await post({ model: MODEL, messages, response_format: { type: "json_schema", json_schema: { name: "slow", schema: slowSchema("s") } } });
    const t1 = performance.now();
    delay.disable();
    abort.abort();
    await reading;

    expect(bad.status).toBe(400);
    const body = (await bad.json()) as { error: { message: string; type: string; param: string; code: string } };
    expect(body.error).toMatchObject({ type: "invalid_request_error", param: "response_format", code: "grammar_too_complex" });
    expect(body.error.message).toContain(`${DEADLINE_MS} ms`);
    // The refusal came at the deadline, not after the compilation would have finished...
    expect(t1 - t0).toBeGreaterThanOrEqual(DEADLINE_MS);
    // ...and meanwhile the node's thread was never blocked for long (compiled on it, the longest
    // stall would be the whole compilation, longer than t1 - t0), and tokens kept arriving.
    expect(delay.max / 1e6).toBeLessThan((t1 - t0) / 2);
    expect(chunkTimes.filter((t) => t > t0 && t < t1).length).toBeGreaterThan(0);
    expect(structured().stats.timeouts).toBe(1);

    // The same schema again is refused at once, without compiling it again.
    const again = await post({ model: MODEL, messages, response_format: { type: "json_schema", json_schema: { name: "slow", schema: slowSchema("s") } } });
    expect(again.status).toBe(400);
    expect(structured().stats.timeouts).toBe(1);
  }, 60_000);

  it("leaks no thread or matcher across repeated timeouts, and constrained requests still work after them", async () => {
    const before = structured().stats;
    for (const field of ["a", "b", "c"]) {
      const res = await post({ model: MODEL, messages, response_format: { type: "json_schema", json_schema: { name: "slow", schema: slowSchema(field) } } });
      expect(res.status).toBe(400);
    }
    const ok = await post({ model: MODEL, messages, max_tokens: 60, response_format: { type: "json_schema", json_schema: { name: "ok", schema: { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"] } } } });
    expect(ok.status).toBe(200);
    const json = (await ok.json()) as { choices: Array<{ message: { content: string } }> };
    expect(typeof (JSON.parse(json.choices[0]!.message.content) as { ok: boolean }).ok).toBe("boolean");

    const after = structured().stats;
    expect(after.timeouts - before.timeouts).toBe(3);
    expect(after.threadsStarted - before.threadsStarted).toBeGreaterThanOrEqual(3); // each timeout cost its thread
    // Every terminated thread exits; at most `grammarThreads` are alive.
    await waitFor(() => structured().stats.threadsStarted - structured().stats.threadsExited === structured().stats.threads, 10_000, "threads to exit");
    expect(structured().stats.threads).toBeLessThanOrEqual(2);
    expect(after.liveMatchers).toBe(0);

    const metrics = await (await fetch(node.url + "/metrics")).text();
    expect(metrics).toMatch(/seventy:grammar_compile_seconds_count\{[^}]*kind="json_schema"[^}]*\} [4-9]/);
  }, 60_000);
});
