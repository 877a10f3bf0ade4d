import type { SamplingParams, TokenConstraint, TopLogprob } from "../engine/types.js";
import type { KvRequest } from "./kv-cache-manager.js";

/** What the HTTP layer submits: an already tokenized prompt and resolved sampling parameters. */
export interface GenerationRequest {
  requestId: string;
  promptTokenIds: number[];
  params: SamplingParams;
  /** Output tokens to generate at most (≥ 1). */
  maxTokens: number;
  /** Sampling any of these finishes the request with "stop"; the stop token is not emitted. */
  stopTokenIds: number[];
  /** Who asked (the edge's API key id): queue shares and fair scheduling are per key. Default "". */
  keyId?: string;
  /**
   * Salt of the prefix-cache hashes: only requests with the same salt share cached blocks, so one
   * tenant's prompts can neither be detected (cached_tokens, timing) nor reused by another. Default "".
   */
  cacheSalt?: string;
  /** Constrained decoding: the grammar the sampled tokens must follow (the engine applies it). */
  constraint?: TokenConstraint;
}

export type FinishReason = "stop" | "length" | "abort" | "error";

export type SeqEvent =
  | { type: "token"; tokenId: number; logprob?: number; topLogprobs?: TopLogprob[] }
  | {
      type: "finish";
      reason: FinishReason;
      numPromptTokens: number;
      /** Includes a stop token, which was sampled but not emitted. */
      numOutputTokens: number;
      /** Prompt tokens served from the prefix cache at first admission. */
      numCachedPromptTokens: number;
      error?: Error;
    };

/**
 * "waiting": in the waiting queue (new, or preempted: no blocks, numComputedTokens 0).
 * "running": holds KV blocks, scheduled each step while budget allows.
 * "finished": done; its blocks are free, or will be at the next step boundary (aborted mid-step).
 */
export type RequestStatus = "waiting" | "running" | "finished";

/** A request's state inside the scheduler. */
export class Request implements KvRequest {
  readonly requestId: string;
  /** The engine's stable id for this sequence. */
  readonly seqId: number;
  readonly promptTokenIds: readonly number[];
  readonly outputTokenIds: number[] = [];
  /** Prompt followed by the output: what `numComputedTokens` catches up with. */
  readonly allTokenIds: number[];
  readonly params: SamplingParams;
  readonly maxTokens: number;
  readonly stopTokenIds: ReadonlySet<number>;
  readonly onEvent: (ev: SeqEvent) => void;
  /** Whether the engine needs the prompt and output tokens (a penalty is active). */
  readonly needsTokenHistory: boolean;
  readonly keyId: string;
  readonly cacheSalt: string;
  readonly constraint: TokenConstraint | undefined;

  status: RequestStatus = "waiting";
  numComputedTokens = 0;
  /** Prefix-cache hit at first admission; -1 until admitted. */
  numCachedPromptTokens = -1;
  numPreemptions = 0;
  /** Its reader is not keeping up: holds its blocks but is not scheduled until resumed. */
  paused = false;

  constructor(req: GenerationRequest, seqId: number, onEvent: (ev: SeqEvent) => void) {
    this.requestId = req.requestId;
    this.seqId = seqId;
    this.promptTokenIds = req.promptTokenIds.slice();
    this.allTokenIds = req.promptTokenIds.slice();
    this.params = req.params;
    this.maxTokens = req.maxTokens;
    this.stopTokenIds = new Set(req.stopTokenIds);
    this.onEvent = onEvent;
    this.keyId = req.keyId ?? "";
    this.cacheSalt = req.cacheSalt ?? "";
    this.constraint = req.constraint;
    const p = req.params;
    this.needsTokenHistory = p.presencePenalty !== 0 || p.frequencyPenalty !== 0 || p.repetitionPenalty !== 1;
  }

  get numTokens(): number {
    return this.allTokenIds.length;
  }

  get numPromptTokens(): number {
    return this.promptTokenIds.length;
  }

  get numOutputTokens(): number {
    return this.outputTokenIds.length;
  }

  appendOutputToken(tokenId: number): void {
    this.outputTokenIds.push(tokenId);
    this.allTokenIds.push(tokenId);
  }
}
