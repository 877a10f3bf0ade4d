import type { SamplingParams, TokenConstraint, TopLogprob } from "../engine/types.js";
import type { Scheduler, SeqEvent } from "../scheduler/index.js";
import type { IncrementalDetokenizer } from "./detokenizer.js";
import { StopMatcher } from "./stop-matcher.js";

/** One generated token's logprob information, already turned into text. */
export interface TokenLogprobInfo {
  tokenId: number;
  logprob: number;
  top: TopLogprob[];
}

export type FinishReason = "stop" | "length";

export interface ChoiceDelta {
  index: number;
  text: string;
  logprobs: TokenLogprobInfo[];
  /** Set on the last delta of a choice. */
  finishReason?: FinishReason;
}

export interface GenerationUsage {
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
}

export interface GenerationSpec {
  requestId: string;
  promptTokenIds: number[];
  /** One entry per choice (n); each has its own seed. */
  params: SamplingParams[];
  maxTokens: number;
  stopTokenIds: number[];
  stopStrings: string[];
  wantLogprobs: boolean;
  /** The API key the request came under: queue share and fair scheduling (default: one local tenant). */
  keyId?: string;
  /** Prefix-cache salt: cached blocks are shared only within one salt. */
  cacheSalt?: string;
  /** Constrained decoding: one grammar per choice, disposed when its choice ends. */
  constraints?: Array<TokenConstraint & { dispose(): void }>;
}

export interface GenerationHooks {
  onDelta(delta: ChoiceDelta): void;
  onDone(usage: GenerationUsage): void;
  onError(error: Error): void;
  /** Per-token timing for metrics. */
  onToken?(choice: number, now: number): void;
}

/**
 * Runs one API request (n choices) through the scheduler and turns token events into text deltas:
 * detokenization, stop strings, logprobs, usage. Streaming and non-streaming responses are both
 * built from these deltas, so their text is the same by construction.
 */
export class Generation {
  private readonly choices: ChoiceState[];
  private remaining: number;
  private failed = false;
  private cancelled = false;
  private readonly usage: GenerationUsage;

  constructor(
    private readonly scheduler: Scheduler,
    private readonly spec: GenerationSpec,
    makeDetokenizer: () => IncrementalDetokenizer,
    private readonly hooks: GenerationHooks,
  ) {
    this.usage = { promptTokens: spec.promptTokenIds.length, completionTokens: 0, cachedTokens: 0 };
    this.choices = spec.params.map((_, i) => ({
      index: i,
      requestId: spec.params.length === 1 ? spec.requestId : `${spec.requestId}#${i}`,
      detok: makeDetokenizer(),
      stop: new StopMatcher(spec.stopStrings),
      stoppedByString: false,
      done: false,
    }));
    this.remaining = this.choices.length;
  }

  /** Admits every choice; throws (before anything was admitted for the first choice) on queue/size errors. */
  start(): void {
    const added: ChoiceState[] = [];
    try {
      for (const choice of this.choices) {
        this.scheduler.add(
          {
            requestId: choice.requestId,
            promptTokenIds: this.spec.promptTokenIds,
            params: this.spec.params[choice.index]!,
            maxTokens: this.spec.maxTokens,
            stopTokenIds: this.spec.stopTokenIds,
            keyId: this.spec.keyId,
            cacheSalt: this.spec.cacheSalt,
            ...(this.spec.constraints ? { constraint: this.spec.constraints[choice.index] } : {}),
          },
          (ev) => this.onEvent(choice, ev),
        );
        added.push(choice);
      }
    } catch (err) {
      this.cancelled = true;
      for (const c of added) this.scheduler.abort(c.requestId);
      for (const c of this.spec.constraints ?? []) c.dispose();
      throw err;
    }
  }

  /** The client went away: stop generating now. */
  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    for (const c of this.choices) if (!c.done) this.scheduler.abort(c.requestId);
    // Also when never started (a sibling's admission failed): the grammars' memory is ours to free.
    for (const c of this.spec.constraints ?? []) c.dispose();
  }

  /** The reader is behind: stop scheduling every unfinished choice (their KV blocks stay). */
  pause(): void {
    for (const c of this.choices) if (!c.done) this.scheduler.pause(c.requestId);
  }

  resume(): void {
    for (const c of this.choices) if (!c.done) this.scheduler.resume(c.requestId);
  }

  private onEvent(choice: ChoiceState, ev: SeqEvent): void {
    if (choice.done) return;
    if (ev.type === "token") {
      this.hooks.onToken?.(choice.index, performance.now());
      if (choice.stoppedByString) return;
      // The common case (no stop strings, no logprobs) allocates nothing but the delta: this runs
      // once per token of every stream.
      let text = choice.detok.push(ev.tokenId);
      let stopped = false;
      if (this.spec.stopStrings.length > 0) ({ text, stopped } = choice.stop.push(text));
      const logprobs: TokenLogprobInfo[] =
        this.spec.wantLogprobs && ev.logprob !== undefined
          ? [{ tokenId: ev.tokenId, logprob: ev.logprob, top: ev.topLogprobs ?? [] }]
          : NO_LOGPROBS;
      if (stopped) {
        choice.stoppedByString = true;
        // The scheduler reports this as an abort; we remember it was our stop string.
        this.scheduler.abort(choice.requestId);
      }
      if (text.length > 0 || logprobs.length > 0) this.hooks.onDelta({ index: choice.index, text, logprobs });
      return;
    }
    // finish
    choice.done = true;
    this.spec.constraints?.[choice.index]?.dispose();
    this.usage.completionTokens += ev.numOutputTokens;
    if (choice.index === 0) this.usage.cachedTokens = ev.numCachedPromptTokens;
    if (ev.reason === "error") {
      if (!this.failed) {
        this.failed = true;
        this.cancel();
        this.hooks.onError(ev.error ?? new Error("engine error"));
      }
      return;
    }
    if (this.failed) return;
    if (ev.reason === "abort" && !choice.stoppedByString) {
      // Cancelled by the client (or shutdown): nothing more to send for this choice.
      if (--this.remaining === 0) this.hooks.onDone(this.usage);
      return;
    }
    let tail = "";
    if (!choice.stoppedByString) {
      const { text, stopped } = choice.stop.push(choice.detok.flush());
      tail = stopped ? text : text + choice.stop.flush();
      if (stopped) choice.stoppedByString = true;
    }
    const finishReason: FinishReason = choice.stoppedByString || ev.reason === "stop" ? "stop" : "length";
    this.hooks.onDelta({ index: choice.index, text: tail, logprobs: [], finishReason });
    if (--this.remaining === 0) this.hooks.onDone(this.usage);
  }
}

const NO_LOGPROBS: TokenLogprobInfo[] = [];

interface ChoiceState {
  index: number;
  requestId: string;
  detok: IncrementalDetokenizer;
  stop: StopMatcher;
  stoppedByString: boolean;
  done: boolean;
}
