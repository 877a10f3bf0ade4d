import type { ServerResponse } from "node:http";
import type { MemoryPlan } from "../engine/memory-plan.js";
import type { NodeCredential } from "@seventy/sdk/protocol";
import type { Tenant } from "./signature.js";
import type { TokenizerPool } from "../model/tokenizer-pool.js";
import type { Scheduler } from "../scheduler/index.js";
import type { IncrementalDetokenizer, TokenByteTable } from "./detokenizer.js";
import type { NodeMetrics } from "./metrics.js";
import type { RequestLimits } from "./request-limits.js";
import type { StructuredOutputs } from "../structured/index.js";

/** What the HTTP layer needs of a tokenizer (the model directory's LlamaTokenizer satisfies it). */
export interface ServedTokenizer {
  encode(text: string, opts: { addSpecialTokens: boolean }): number[];
  decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): string;
  encodeChat(messages: unknown[], opts: { addGenerationPrompt: boolean; tools?: unknown[] }): number[];
}

export interface SamplingDefaults {
  temperature?: number;
  topP?: number;
  topK?: number;
  repetitionPenalty?: number;
}

/** Everything a request handler needs; built once by `startNode`. */
export interface NodeContext {
  modelName: string;
  engineKind: string;
  maxModelLen: number;
  /** Output cap (the model card says 4k). */
  maxOutputTokens: number;
  vocabSize: number;
  eosTokenIds: number[];
  samplingDefaults: SamplingDefaults;
  tokenizer: ServedTokenizer;
  /** Threads that render and tokenize large prompts off the event loop; absent: everything inline. */
  tokenizerPool?: TokenizerPool;
  /** A stream whose client stops reading is paused, and cancelled after `stallMs` or past `maxBufferedBytes`. */
  streamBounds: { stallMs: number; maxBufferedBytes: number };
  /** Caps on the work one request may ask for. */
  limits: RequestLimits;
  tokenTable: TokenByteTable | null;
  makeDetokenizer(): IncrementalDetokenizer;
  scheduler: Scheduler;
  metrics: NodeMetrics;
  /** Constrained decoding; null when the tokenizer is not byte-level BPE. */
  structured: StructuredOutputs | null;
  /** This node's credential (its id and keys); undefined serves unsigned requests (loopback only). */
  credential?: NodeCredential;
  maxBodyBytes: number;
  /** Set while draining: new requests get 503. */
  draining: boolean;
  startedAt: number;
  /** Where the GPU's memory goes (served in /health); null when the engine runs without one. */
  memoryPlan: MemoryPlan | null;
}

/** The client connection of one request, as the route handlers need it. */
export interface RequestConn {
  /** Aborts when the client goes away before the response is complete. */
  signal: AbortSignal;
  /** Node's response object, when served by Node: streams are written to it directly. */
  outgoing?: ServerResponse;
  requestId: string;
  /** The key the edge admitted the request under (signed), or the single local tenant. */
  tenant: Tenant;
}
