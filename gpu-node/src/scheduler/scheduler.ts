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
  /**
   * Waiting requests of one key (the edge's API key id) at most; beyond, `add()` throws
   * `QueueFullError` for that key only. Default maxQueue / 4 (a queue of 16 or fewer is not split), so
   * no key can fill the queue.
   */
  maxQueuePerKey?: number;
  /** Reuse KV blocks across requests sharing a prefix. Default true. */
  enablePrefixCaching?: boolean;
  /**
   * With an engine that `overlapsSteps`: enqueue the next decode step before this one's tokens are
   * handed to the requests (see `scheduleOverlapped`). Default true.
   */
  overlapSteps?: boolean;
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
  /** Steps enqueued before the previous step's tokens were handed to the requests. */
  numOverlappedSteps: number;
}

/** A step handed to the engine and not yet accounted for in `update`. */
interface InFlightStep {
  out: SchedulerOutput;
  requests: Request[];
  promise: Promise<StepResult>;
  /** Host time to decide and submit it (packing for the native engine included). */
  scheduleMs: number;
}

/**
 * Where a step's host time goes, in milliseconds: the scheduler's own and, from the native engine,
 * its thread's. With `overlapped`, the next step was on the engine while `updateMs` ran.
 */
export interface StepHostTime {
  /** Deciding the step and handing it to the engine (the native engine's packing included). */
  scheduleMs: number;
  /** Handing its tokens to the requests (`update`: stops, callbacks). */
  updateMs: number;
  /** The engine thread's plan upload and read-back (`StepResult.hostTiming`); 0 for other engines. */
  engineMs: number;
  overlapped: boolean;
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
/** The step limits when none are given; the native engine sizes its workspace (and the memory plan) by the same. */
export const DEFAULT_MAX_NUM_SEQS = 256;
export const DEFAULT_MAX_NUM_BATCHED_TOKENS = 2048;

export class Scheduler {
  readonly engine: Engine;
  readonly maxNumSeqs: number;
  readonly maxNumBatchedTokens: number;
  readonly maxQueue: number;
  readonly maxQueuePerKey: number;
  /** Exposed for /health, metrics and tests; the scheduler is its only writer. */
  readonly kvCacheManager: KvCacheManager;

  private readonly requests = new Map<string, Request>();
  private waiting: Request[] = [];
  /** In admission order: the last one is the first to be preempted. */
  private running: Request[] = [];
  /** Finished while a step using their blocks was in flight; freed once none is. */
  private finishedInFlight: Request[] = [];
  /** How many steps in flight (submitted, not yet updated) each request is part of. */
  private readonly inFlightUse = new Map<Request, number>();
  private readonly overlapSteps: boolean;
  /** Called after every step with its host time (metrics, benchmarks). */
  onStepHostTime?: (t: StepHostTime) => void;
  private nextSeqId = 0;
  /** When each key last had a request admitted (an admission counter): round robin among equals. */
  private readonly keyLastAdmitted = new Map<string, number>();
  private numAdmissions = 0;

  private loopRunning = false;
  private closed = false;
  private idleWaiters: (() => void)[] = [];

  private numSteps = 0;
  private numPreemptions = 0;
  private numOverlappedSteps = 0;
  private numPrefixQueryTokens = 0;
  private numPrefixHitTokens = 0;

  constructor(engine: Engine, opts: SchedulerOptions = {}) {
    this.engine = engine;
    this.maxNumSeqs = positiveInt("maxNumSeqs", opts.maxNumSeqs ?? DEFAULT_MAX_NUM_SEQS);
    this.maxNumBatchedTokens = positiveInt("maxNumBatchedTokens", opts.maxNumBatchedTokens ?? DEFAULT_MAX_NUM_BATCHED_TOKENS);
    this.maxQueue = positiveInt("maxQueue", opts.maxQueue ?? 1024);
    this.maxQueuePerKey = positiveInt("maxQueuePerKey", opts.maxQueuePerKey ?? Math.max(Math.ceil(this.maxQueue / 4), Math.min(this.maxQueue, 16)));
    this.kvCacheManager = new KvCacheManager({
      numBlocks: engine.numKvBlocks,
      blockSize: engine.blockSize,
      enablePrefixCaching: opts.enablePrefixCaching ?? true,
    });
    this.overlapSteps = (opts.overlapSteps ?? true) && engine.overlapsSteps === true;
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
    const keyId = req.keyId ?? "";
    let numWaitingForKey = 0;
    for (const r of this.waiting) if (r.keyId === keyId) numWaitingForKey++;
    if (numWaitingForKey >= this.maxQueuePerKey) throw new QueueFullError(this.maxQueuePerKey, 1, true);

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
    } else {
      this.finishRequest(req, "abort"); // removed from `running` at the next reap
    }
    // A loop parked on paused requests must see the slot and blocks this freed (or, with nothing
    // left, resolve idle()).
    this.wake();
  }

  /**
   * Stops scheduling the request until `resume` (its reader is not keeping up): it keeps its KV
   * blocks and its place, so resuming costs nothing. A paused request that is never resumed must be
   * aborted by its owner. Unknown or finished ids are ignored.
   */
  pause(requestId: string): void {
    const req = this.requests.get(requestId);
    if (req !== undefined && req.status !== "finished") req.paused = true;
  }

  resume(requestId: string): void {
    const req = this.requests.get(requestId);
    if (req === undefined || !req.paused) return;
    req.paused = false;
    this.wake();
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
      numOverlappedSteps: this.numOverlappedSteps,
    };
  }

  /** Resolves when no request is running or waiting and no step is in flight. */
  idle(): Promise<void> {
    if (!this.loopRunning && this.requests.size === 0) return Promise.resolve();
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

  /**
   * schedule → submit → (submit the overlapped next step) → await → update. With overlap, step N+1
   * is on the engine while step N's tokens are handed out; `current` is then the step already submitted.
   */
  private async runLoop(): Promise<void> {
    let current: InFlightStep | null = null;
    let next: InFlightStep | null = null;
    try {
      for (;;) {
        this.reap();
        if (current === null) {
          if (this.running.length === 0 && this.waiting.length === 0) break;
          const t0 = performance.now();
          const out = this.schedule();
          if (out.batch.seqs.length === 0) {
            // A lone request preempting itself leaves an empty step; it is readmitted next time.
            if (out.preemptedRequestIds.length > 0) continue;
            // Everything runnable is paused (slow readers): park until a resume or an abort wakes us.
            if (this.running.some((r) => r.paused)) break;
            throw new SchedulerError("the scheduler could not schedule any request");
          }
          current = this.submit(out, t0);
        }
        const t1 = performance.now();
        const overlapped: SchedulerOutput | null = this.overlapSteps ? this.scheduleOverlapped(current) : null;
        next = overlapped === null ? null : this.submit(overlapped, t1);
        await this.complete(current, next !== null);
        current = next;
        next = null;
        this.reap();
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } catch (err) {
      // A scheduler bug: fail everything rather than spin or hang `idle()`; blocks are freed only once
      // no step that may write them is still on the engine.
      for (const step of [current, next]) if (step !== null) await step.promise.catch(() => {});
      this.inFlightUse.clear();
      const error = err instanceof Error ? err : new SchedulerError(String(err));
      for (const req of [...this.waiting, ...this.running]) this.finishRequest(req, "error", error);
      this.waiting = [];
      this.reap();
    } finally {
      this.loopRunning = false;
      // Parked on paused requests: idle only once every request has finished.
      if (this.requests.size === 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const resolve of waiters) resolve();
      }
    }
  }

  /** Hands the step to the engine (in call order); its requests' blocks stay allocated until `complete`. */
  private submit(out: SchedulerOutput, scheduledAt: number): InFlightStep {
    const requests: Request[] = [];
    for (const s of out.scheduled) {
      const req = this.requests.get(s.requestId);
      if (req === undefined) continue;
      requests.push(req);
      this.inFlightUse.set(req, (this.inFlightUse.get(req) ?? 0) + 1);
    }
    let promise: Promise<StepResult>;
    try {
      promise = this.engine.step(out.batch);
    } catch (err) {
      promise = Promise.reject(err);
    }
    promise.catch(() => {}); // awaited in `complete`, possibly after the next step was submitted
    return { out, requests, promise, scheduleMs: performance.now() - scheduledAt };
  }

  private async complete(step: InFlightStep, nextSubmitted: boolean): Promise<void> {
    let result: StepResult | undefined;
    let failure: unknown;
    try {
      result = await step.promise;
    } catch (err) {
      failure = err ?? new Error("engine step failed");
    }
    const t0 = performance.now();
    this.numSteps++;
    if (nextSubmitted) this.numOverlappedSteps++;
    for (const req of step.requests) {
      const n = (this.inFlightUse.get(req) ?? 1) - 1;
      if (n > 0) this.inFlightUse.set(req, n);
      else this.inFlightUse.delete(req);
    }
    if (result === undefined) {
      const err = failure;
      const error = new EngineStepError(`engine step failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      for (const s of step.out.scheduled) {
        const req = this.requests.get(s.requestId);
        if (req !== undefined && req.status === "running") this.finishRequest(req, "error", error);
      }
    } else {
      this.update(step.out, result);
    }
    if (this.onStepHostTime) {
      const h = result?.hostTiming;
      this.onStepHostTime({
        scheduleMs: step.scheduleMs,
        updateMs: performance.now() - t0,
        engineMs: h ? (h.prepareUs + h.readbackUs) / 1000 : 0,
        overlapped: nextSubmitted,
      });
    }
  }

  /** Decides the next step. Mutates queues and block tables only; token state is left to `update`. */
  private schedule(): SchedulerOutput {
    const kv = this.kvCacheManager;
    const seqs: SeqStep[] = [];
    const scheduled: ScheduledRequest[] = [];
    const preemptedRequestIds: string[] = [];
    let budget = this.maxNumBatchedTokens;

    // A key waiting with less than its fair share of the sequence slots takes one back from the key
    // holding the most (its newest request is preempted, to be recomputed later).
    this.rebalance(preemptedRequestIds);
    let kvPreempted = false;

    // Running requests first, in admission order. A decode needs 1 token, a partial prefill the rest of
    // its prompt; either may need a new block, and getting none preempts from the back of `running`.
    let i = 0;
    while (i < this.running.length && budget > 0) {
      const req = this.running[i];
      if (req.paused) {
        i++;
        continue;
      }
      const numNew = Math.min(req.numTokens - req.numComputedTokens, budget);
      let allocated = true;
      while (kv.allocateSlots(req, numNew) === null) {
        const victim = this.running.pop() as Request;
        this.preempt(victim);
        preemptedRequestIds.push(victim.requestId);
        kvPreempted = true;
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

    // Waiting requests, fairly across keys (see `nextWaiting`), unless this step had to preempt for
    // KV blocks (admitting now would only thrash). The chosen request blocks the queue when its first
    // chunk does not fit: no overtaking by smaller requests.
    if (!kvPreempted) {
      const numRunningByKey = this.countRunningByKey();
      while (budget > 0 && this.running.length < this.maxNumSeqs) {
        const w = this.nextWaiting(numRunningByKey);
        if (w < 0) break;
        const req = this.waiting[w];
        const computed = kv.getComputedBlocks(req);
        const numNew = Math.min(req.numTokens - computed.numTokens, budget);
        if (kv.allocateSlots(req, numNew, computed) === null) break;
        this.waiting.splice(w, 1);
        numRunningByKey.set(req.keyId, (numRunningByKey.get(req.keyId) ?? 0) + 1);
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

  private countRunningByKey(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const r of this.running) if (r.status === "running") counts.set(r.keyId, (counts.get(r.keyId) ?? 0) + 1);
    return counts;
  }

  /**
   * Index of the waiting request to admit next: the oldest one of the key with the fewest running
   * requests, ties going to the key admitted least recently (round robin), so a key with one request
   * is never stuck behind another key's thousand. Paused ones are skipped; -1 when none.
   */
  private nextWaiting(numRunningByKey: Map<string, number>): number {
    let best = -1;
    let bestRunning = Infinity;
    let bestLast = Infinity;
    const seen = new Set<string>();
    for (let w = 0; w < this.waiting.length; w++) {
      const req = this.waiting[w];
      if (req.paused || seen.has(req.keyId)) continue;
      seen.add(req.keyId);
      const running = numRunningByKey.get(req.keyId) ?? 0;
      const last = this.keyLastAdmitted.get(req.keyId) ?? -1;
      if (running < bestRunning || (running === bestRunning && last < bestLast)) {
        best = w;
        bestRunning = running;
        bestLast = last;
      }
    }
    if (best >= 0) {
      if (this.keyLastAdmitted.size > 4096) this.keyLastAdmitted.clear();
      this.keyLastAdmitted.set(this.waiting[best].keyId, this.numAdmissions++);
    }
    return best;
  }

  /**
   * Fair shares of the sequence slots: when every slot is taken and a key is waiting with fewer than
   * maxNumSeqs / (keys with work) running, the key with the most running requests above its share
   * gives up its newest one. One slot per starved key per step, so shares converge without thrashing.
   */
  private rebalance(preemptedRequestIds: string[]): void {
    if (this.running.length < this.maxNumSeqs || this.waiting.length === 0) return;
    const numRunningByKey = this.countRunningByKey();
    const starved: string[] = [];
    const keys = new Set(numRunningByKey.keys());
    for (const r of this.waiting) {
      if (r.paused) continue;
      if (!keys.has(r.keyId)) starved.push(r.keyId);
      keys.add(r.keyId);
    }
    if (keys.size < 2) return;
    const share = Math.max(1, Math.floor(this.maxNumSeqs / keys.size));
    for (const [key, n] of numRunningByKey) if (n < share && this.waiting.some((r) => r.keyId === key && !r.paused)) starved.push(key);
    for (const _ of starved) {
      let richest: string | null = null;
      let most = share;
      for (const [key, n] of numRunningByKey) {
        if (n > most) {
          richest = key;
          most = n;
        }
      }
      if (richest === null) return;
      let v = this.running.length - 1;
      while (v >= 0 && (this.running[v].keyId !== richest || this.running[v].status !== "running")) v--;
      if (v < 0) return;
      const [victim] = this.running.splice(v, 1);
      this.preempt(victim);
      preemptedRequestIds.push(victim.requestId);
      numRunningByKey.set(richest, most - 1);
    }
  }

  /**
   * The decode step after `current` (in flight), built before its tokens are known: each sequence
   * computes the token it samples in `current` (`tokenFromPreviousStep`) one position further.
   * Only in the steady state the scheduler would repeat anyway: every runnable request is decoding
   * in `current` and continues after it unless its token stops it, nobody is waiting to be admitted,
   * and the blocks are free without preempting. Requests whose next step needs what only
   * `current`'s token gives opt out (and so prevent the overlap): a grammar's mask (structured
   * output) and penalties' token history. One that `current` finishes (stop token, stop string,
   * abort, error) has its overlapped token dropped in `update`.
   */
  private scheduleOverlapped(current: InFlightStep): SchedulerOutput | null {
    if (this.waiting.some((r) => !r.paused)) return null;
    const cur = current.out.scheduled;
    if (cur.length === 0 || cur.length > this.maxNumBatchedTokens) return null;
    const reqs: Request[] = [];
    for (const s of cur) {
      const req = this.requests.get(s.requestId);
      if (req === undefined || req.status !== "running" || req.paused || s.numNewTokens !== 1 || !s.sample) return null;
      if (req.constraint !== undefined || req.needsTokenHistory) return null;
      // `current` samples output token numOutputTokens; this step would sample the one after.
      if (req.numOutputTokens + 1 >= req.maxTokens) return null;
      // Its token in `current` is its last uncomputed one: exactly one decode in flight.
      if (req.numComputedTokens + 1 !== req.numTokens) return null;
      reqs.push(req);
    }
    let numRunnable = 0;
    for (const r of this.running) if (r.status === "running" && !r.paused) numRunnable++;
    if (numRunnable !== reqs.length) return null;
    const kv = this.kvCacheManager;
    let numNewBlocks = 0;
    for (const req of reqs) numNewBlocks += Math.max(0, kv.numBlocksFor(req.numComputedTokens + 2) - kv.getBlockIds(req.requestId).length);
    if (numNewBlocks > kv.pool.numFreeBlocks) return null;

    const seqs: SeqStep[] = [];
    const scheduled: ScheduledRequest[] = [];
    for (const req of reqs) {
      // `current`'s position and this one's; its own block was allocated when it was scheduled.
      if (kv.allocateSlots(req, 2) === null) throw new SchedulerError(`request ${req.requestId}: blocks counted free were not`);
      seqs.push({
        seqId: req.seqId,
        tokenIds: [0],
        tokenFromPreviousStep: true,
        startPos: req.numComputedTokens + 1,
        blockTable: kv.getBlockIds(req.requestId).slice(),
        sample: { params: req.params, outputIndex: req.numOutputTokens + 1 },
      });
      scheduled.push({ requestId: req.requestId, numNewTokens: 1, sample: true });
    }
    return { batch: { seqs }, scheduled, numBatchedTokens: seqs.length, preemptedRequestIds: [] };
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

  /**
   * Step boundary: frees the blocks of requests that finished while a step using them was in flight,
   * once no step in flight uses them, and drops finished requests from `running`.
   */
  private reap(): void {
    if (this.finishedInFlight.length > 0) {
      const still: Request[] = [];
      for (const req of this.finishedInFlight) {
        if (this.inFlightUse.has(req)) {
          still.push(req);
          continue;
        }
        this.kvCacheManager.free(req.requestId);
        this.requests.delete(req.requestId);
      }
      this.finishedInFlight = still;
    }
    if (this.running.some((r) => r.status !== "running")) this.running = this.running.filter((r) => r.status === "running");
  }

  /**
   * Finishes the request now; its blocks are freed at once, or, while a step in flight may still
   * write them, at the first step boundary after it (whatever that step samples for it is dropped).
   */
  private finishRequest(req: Request, reason: FinishReason, error?: Error): void {
    if (req.status === "finished") return;
    req.status = "finished";
    if (this.inFlightUse.has(req)) {
      this.finishedInFlight.push(req);
    } else {
      this.kvCacheManager.free(req.requestId);
      this.requests.delete(req.requestId);
    }
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
