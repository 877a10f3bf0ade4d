import type { Engine, SampledToken, SeqStep, StepBatch, StepResult } from "../engine/types.js";
import {
  EngineStepError,
  InvalidRequestError,
  QueueFullError,
  RequestTooLargeError,
  SchedulerClosedError,
  SchedulerError,
} from "./errors.js";
import { KvCacheManager } from "./kv-cache-manager.js";
import { type FinishReason, type GenerationRequest, Request, type SeqEvent } from "./request.js";

export interface SchedulerOptions {
  /** Running requests at most. Default 256. */
  maxNumSeqs?: number;
  /** Tokens computed per engine step at most (prefill chunks + decodes). Default 2048. */
  maxNumBatchedTokens?: number;
  /** Waiting requests at most; `add()` beyond throws `QueueFullError`. Default 1024. */
  maxQueue?: number;
  /** Reuse KV blocks across requests sharing a prefix. Default true. */
  enablePrefixCaching?: boolean;
}

export interface SchedulerStats {
  numRunning: number;
  numWaiting: number;
  /** Blocks with refCount > 0. */
  kvBlocksUsed: number;
  kvBlocksTotal: number;
  /** kvBlocksUsed / kvBlocksTotal. */
  kvUsage: number;
  /** Prefix-cache hit tokens / tokens looked up, over all admissions so far (0 before any). */
  prefixCacheHitRate: number;
  numPreemptions: number;
  /** Engine steps run, failed ones included. */
  numSteps: number;
}

/** One request's share of a step: plain data, looked up again by id in `update`. */
export interface ScheduledRequest {
  requestId: string;
  numNewTokens: number;
  /** Whether the chunk reaches the end of the request's tokens, so the engine samples its next token. */
  sample: boolean;
}

/** What `schedule()` decided: the batch for the engine and the bookkeeping `update()` needs. */
export interface SchedulerOutput {
  batch: StepBatch;
  scheduled: ScheduledRequest[];
  numBatchedTokens: number;
  preemptedRequestIds: string[];
}

/**
 * Continuous batching over a paged KV cache, after vLLM v1. There are no prefill and decode phases:
 * each request has `numComputedTokens` catching up with its tokens (prompt + output) under a
 * per-step token budget. Running requests go first (a decode costs 1 token, an unfinished prompt a
 * chunk of what budget is left), then waiting ones in FIFO order while budget, `maxNumSeqs` and KV
 * blocks allow. When a running request cannot get a block, the most recently admitted running
 * request is preempted: its blocks are freed and it is recomputed later from the front of the queue.
 *
 * `schedule()` only decides; state advances in `update()` once the engine step has returned. A loop
 * runs schedule → engine.step → update while there is work, yielding to the event loop between steps.
 *
 * @example
 * const scheduler = new Scheduler(engine, { maxNumBatchedTokens: 4096 });
 * scheduler.add({ requestId: "r1", promptTokenIds, params, maxTokens: 64, stopTokenIds: [eos] }, (ev) => {
 *   if (ev.type === "token") write(ev.tokenId);
 *   else end(ev.reason);
 * });
 */
export class Scheduler {
  readonly engine: Engine;
  readonly maxNumSeqs: number;
  readonly maxNumBatchedTokens: number;
  readonly maxQueue: number;
  /** Exposed for /health, metrics and tests; the scheduler is its only writer. */
  readonly kvCacheManager: KvCacheManager;

  private readonly requests = new Map<string, Request>();
  private waiting: Request[] = [];
  /** In admission order: the last one is the first to be preempted. */
  private running: Request[] = [];
  /** Aborted while a step using their blocks was in flight; freed at the next step boundary. */
  private abortedInFlight: Request[] = [];
  private nextSeqId = 0;

  private loopRunning = false;
  private stepInFlight = false;
  private closed = false;
  private idleWaiters: (() => void)[] = [];

  private numSteps = 0;
  private numPreemptions = 0;
  private numPrefixQueryTokens = 0;
  private numPrefixHitTokens = 0;

  constructor(engine: Engine, opts: SchedulerOptions = {}) {
    this.engine = engine;
    this.maxNumSeqs = positiveInt("maxNumSeqs", opts.maxNumSeqs ?? 256);
    this.maxNumBatchedTokens = positiveInt("maxNumBatchedTokens", opts.maxNumBatchedTokens ?? 2048);
    this.maxQueue = positiveInt("maxQueue", opts.maxQueue ?? 1024);
    this.kvCacheManager = new KvCacheManager({
      numBlocks: engine.numKvBlocks,
      blockSize: engine.blockSize,
      enablePrefixCaching: opts.enablePrefixCaching ?? true,
    });
  }

  /**
   * Queues a request; `onEvent` receives its tokens and then exactly one finish event.
   * @throws QueueFullError, RequestTooLargeError, InvalidRequestError, SchedulerClosedError
   */
  add(req: GenerationRequest, onEvent: (ev: SeqEvent) => void): void {
    if (this.closed) throw new SchedulerClosedError();
    if (this.requests.has(req.requestId)) throw new InvalidRequestError(`request id ${req.requestId} is already in use`);
    if (req.promptTokenIds.length === 0) throw new InvalidRequestError("the prompt is empty");
    if (!Number.isInteger(req.maxTokens) || req.maxTokens < 1) throw new InvalidRequestError(`maxTokens must be a positive integer, got ${req.maxTokens}`);
    // The last output token is sampled but never computed, so KV holds at most prompt + maxTokens - 1.
    const numKvTokens = req.promptTokenIds.length + req.maxTokens - 1;
    const numBlocks = this.kvCacheManager.numBlocksFor(numKvTokens);
    if (numBlocks > this.kvCacheManager.numBlocks) {
      throw new RequestTooLargeError(
        `prompt (${req.promptTokenIds.length} tokens) + maxTokens (${req.maxTokens}) needs ${numBlocks} KV blocks, ` +
          `the cache has ${this.kvCacheManager.numBlocks} (${this.kvCacheManager.numBlocks * this.kvCacheManager.blockSize} tokens)`,
      );
    }
    if (this.waiting.length >= this.maxQueue) throw new QueueFullError(this.maxQueue);

    const request = new Request(req, this.nextSeqId++, onEvent);
    this.requests.set(request.requestId, request);
    this.waiting.push(request);
    this.wake();
  }

  /**
   * Finishes the request with "abort" now. A waiting request is dropped; a running one's blocks are
   * freed at once between steps, or at the end of the step in flight that may be using them.
   * Unknown or finished ids are ignored.
   */
  abort(requestId: string): void {
    const req = this.requests.get(requestId);
    if (req === undefined || req.status === "finished") return;
    if (req.status === "waiting") {
      this.waiting.splice(this.waiting.indexOf(req), 1);
      this.finishRequest(req, "abort");
    } else if (this.stepInFlight) {
      req.status = "finished";
      this.abortedInFlight.push(req);
      this.emitFinish(req, "abort");
    } else {
      this.finishRequest(req, "abort"); // removed from `running` at the next reap
    }
  }

  stats(): SchedulerStats {
    const kvBlocksUsed = this.kvCacheManager.pool.numUsedBlocks;
    const kvBlocksTotal = this.kvCacheManager.numBlocks;
    return {
      numRunning: this.running.filter((r) => r.status === "running").length,
      numWaiting: this.waiting.length,
      kvBlocksUsed,
      kvBlocksTotal,
      kvUsage: kvBlocksUsed / kvBlocksTotal,
      prefixCacheHitRate: this.numPrefixQueryTokens === 0 ? 0 : this.numPrefixHitTokens / this.numPrefixQueryTokens,
      numPreemptions: this.numPreemptions,
      numSteps: this.numSteps,
    };
  }

  /** Resolves when no request is running or waiting and no step is in flight. */
  idle(): Promise<void> {
    if (!this.loopRunning) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Aborts every request, waits for a step in flight, and refuses new requests. Does not close the engine. */
  async close(): Promise<void> {
    this.closed = true;
    for (const req of [...this.waiting, ...this.running]) this.abort(req.requestId);
    await this.idle();
  }

  private wake(): void {
    if (this.loopRunning) return;
    this.loopRunning = true;
    setImmediate(() => void this.runLoop());
  }

  private async runLoop(): Promise<void> {
    try {
      for (;;) {
        this.reap();
        if (this.running.length === 0 && this.waiting.length === 0) break;
        const out = this.schedule();
        if (out.batch.seqs.length === 0) {
          // A lone request preempting itself leaves an empty step; it is readmitted next time.
          if (out.preemptedRequestIds.length > 0) continue;
          throw new SchedulerError("the scheduler could not schedule any request");
        }
        await this.step(out);
        this.reap();
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } catch (err) {
      // A scheduler bug: fail everything rather than spin or hang `idle()`.
      const error = err instanceof Error ? err : new SchedulerError(String(err));
      for (const req of [...this.waiting, ...this.running]) this.finishRequest(req, "error", error);
      this.waiting = [];
      this.reap();
    } finally {
      this.loopRunning = false;
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  private async step(out: SchedulerOutput): Promise<void> {
    let result: StepResult;
    this.stepInFlight = true;
    try {
      result = await this.engine.step(out.batch);
    } catch (err) {
      this.stepInFlight = false;
      this.numSteps++;
      const error = new EngineStepError(`engine step failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      for (const s of out.scheduled) {
        const req = this.requests.get(s.requestId);
        if (req !== undefined && req.status === "running") this.finishRequest(req, "error", error);
      }
      return;
    }
    this.stepInFlight = false;
    this.numSteps++;
    this.update(out, result);
  }

  /** Decides the next step. Mutates queues and block tables only; token state is left to `update`. */
  private schedule(): SchedulerOutput {
    const kv = this.kvCacheManager;
    const seqs: SeqStep[] = [];
    const scheduled: ScheduledRequest[] = [];
    const preemptedRequestIds: string[] = [];
    let budget = this.maxNumBatchedTokens;

    // Running requests first, in admission order. A decode needs 1 token, a partial prefill the rest of
    // its prompt; either may need a new block, and getting none preempts from the back of `running`.
    let i = 0;
    while (i < this.running.length && budget > 0) {
      const req = this.running[i];
      const numNew = Math.min(req.numTokens - req.numComputedTokens, budget);
      let allocated = true;
      while (kv.allocateSlots(req, numNew) === null) {
        const victim = this.running.pop() as Request;
        this.preempt(victim);
        preemptedRequestIds.push(victim.requestId);
        if (victim === req) {
          allocated = false;
          break;
        }
      }
      if (!allocated) break;
      seqs.push(this.seqStep(req, numNew));
      scheduled.push({ requestId: req.requestId, numNewTokens: numNew, sample: req.numComputedTokens + numNew === req.numTokens });
      budget -= numNew;
      i++;
    }

    // Waiting requests in FIFO order, unless this step had to preempt (admitting now would only thrash).
    // The head blocks the queue when its first chunk does not fit: no overtaking by smaller requests.
    if (preemptedRequestIds.length === 0) {
      while (this.waiting.length > 0 && budget > 0 && this.running.length < this.maxNumSeqs) {
        const req = this.waiting[0];
        const computed = kv.getComputedBlocks(req);
        const numNew = Math.min(req.numTokens - computed.numTokens, budget);
        if (kv.allocateSlots(req, numNew, computed) === null) break;
        this.waiting.shift();
        this.numPrefixQueryTokens += req.numTokens;
        this.numPrefixHitTokens += computed.numTokens;
        if (req.numCachedPromptTokens < 0) req.numCachedPromptTokens = computed.numTokens;
        req.numComputedTokens = computed.numTokens;
        req.status = "running";
        this.running.push(req);
        seqs.push(this.seqStep(req, numNew));
        scheduled.push({ requestId: req.requestId, numNewTokens: numNew, sample: req.numComputedTokens + numNew === req.numTokens });
        budget -= numNew;
      }
    }

    return { batch: { seqs }, scheduled, numBatchedTokens: this.maxNumBatchedTokens - budget, preemptedRequestIds };
  }

  private seqStep(req: Request, numNew: number): SeqStep {
    const start = req.numComputedTokens;
    const end = start + numNew;
    const sample =
      end === req.numTokens
        ? {
            params: req.params,
            outputIndex: req.numOutputTokens,
            ...(req.needsTokenHistory ? { promptTokenIds: req.promptTokenIds, outputTokenIds: req.outputTokenIds.slice() } : {}),
            ...(req.constraint ? { constraint: req.constraint } : {}),
          }
        : null;
    return {
      seqId: req.seqId,
      tokenIds: req.allTokenIds.slice(start, end),
      startPos: start,
      blockTable: this.kvCacheManager.getBlockIds(req.requestId).slice(),
      sample,
    };
  }

  /** Recompute preemption: drop the KV, keep the tokens; already emitted tokens are not emitted again. */
  private preempt(req: Request): void {
    this.kvCacheManager.free(req.requestId);
    req.numComputedTokens = 0;
    req.status = "waiting";
    req.numPreemptions++;
    this.numPreemptions++;
    this.waiting.unshift(req);
  }

  /** Advances state after a step: computed tokens, prefix-cache registration, sampled tokens, stops. */
  private update(out: SchedulerOutput, result: StepResult): void {
    const sampledBySeq = new Map<number, SampledToken>();
    for (const s of result?.sampled ?? []) sampledBySeq.set(s.seqId, s);
    for (const s of out.scheduled) {
      const req = this.requests.get(s.requestId);
      if (req === undefined || req.status !== "running") continue; // aborted during the step
      req.numComputedTokens += s.numNewTokens;
      this.kvCacheManager.cacheBlocks(req, req.numComputedTokens);
      if (!s.sample) continue;
      const tok = sampledBySeq.get(req.seqId);
      if (tok === undefined) {
        this.finishRequest(req, "error", new EngineStepError(`the engine returned no token for seq ${req.seqId}`));
        continue;
      }
      req.appendOutputToken(tok.tokenId);
      if (req.stopTokenIds.has(tok.tokenId)) {
        this.finishRequest(req, "stop");
        continue;
      }
      const ev: SeqEvent = { type: "token", tokenId: tok.tokenId };
      if (tok.logprob !== undefined) ev.logprob = tok.logprob;
      if (tok.topLogprobs !== undefined) ev.topLogprobs = tok.topLogprobs;
      this.emit(req, ev);
      // The callback may have aborted it.
      if (req.status === "running" && req.numOutputTokens >= req.maxTokens) this.finishRequest(req, "length");
    }
  }

  /** Step boundary: frees blocks of requests aborted mid-step and drops finished ones from `running`. */
  private reap(): void {
    for (const req of this.abortedInFlight) {
      this.kvCacheManager.free(req.requestId);
      this.requests.delete(req.requestId);
    }
    this.abortedInFlight = [];
    if (this.running.some((r) => r.status !== "running")) this.running = this.running.filter((r) => r.status === "running");
  }

  /** Only between steps: frees the request's blocks at once. */
  private finishRequest(req: Request, reason: FinishReason, error?: Error): void {
    if (req.status === "finished") return;
    req.status = "finished";
    this.kvCacheManager.free(req.requestId);
    this.requests.delete(req.requestId);
    this.emitFinish(req, reason, error);
  }

  private emitFinish(req: Request, reason: FinishReason, error?: Error): void {
    const ev: SeqEvent = {
      type: "finish",
      reason,
      numPromptTokens: req.numPromptTokens,
      numOutputTokens: req.numOutputTokens,
      numCachedPromptTokens: Math.max(req.numCachedPromptTokens, 0),
    };
    if (error !== undefined) ev.error = error;
    this.emit(req, ev);
  }

  /** A throwing callback is the consumer's problem: it must not break the loop or other requests. */
  private emit(req: Request, ev: SeqEvent): void {
    try {
      req.onEvent(ev);
    } catch {
      // ignored on purpose
    }
  }
}

function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, got ${v}`);
  return v;
}
