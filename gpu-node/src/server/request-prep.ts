import type { SamplingParams } from "../engine/types.js";
import type { NodeContext } from "./context.js";
import { HttpError } from "./http-error.js";

/** The sampling-related request fields shared by chat completions and completions (already validated). */
export interface SamplingRequestFields {
  model: string;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  seed?: number;
  n?: number;
  presence_penalty?: number;
  frequency_penalty?: number;
  repetition_penalty?: number;
  stop?: string | string[];
  ignore_eos?: boolean;
}

export function checkModel(ctx: NodeContext, model: string): void {
  if (model !== ctx.modelName) {
    throw new HttpError(404, `The model '${model}' does not exist on this node (it serves '${ctx.modelName}').`, {
      param: "model",
      code: "model_not_found",
    });
  }
}

/** Reduces any integer seed (OpenAI allows 64-bit) to the engine's 32-bit seed. */
function seed32(seed: number): number {
  const m = seed % 4294967296;
  return (m < 0 ? m + 4294967296 : m) >>> 0;
}

/**
 * One SamplingParams per choice. Unset fields take the model's generation_config defaults (as vLLM
 * does), then the neutral value. Without a seed each request draws a random one; choice i of a
 * seeded request uses a seed derived from (seed, i), so n > 1 gives different answers and a seeded
 * request is reproducible.
 */
export function samplingParams(ctx: NodeContext, req: SamplingRequestFields, logprobs: number): SamplingParams[] {
  const n = req.n ?? 1;
  const base = req.seed !== undefined ? seed32(req.seed) : (Math.random() * 4294967296) >>> 0;
  const topK = req.top_k ?? ctx.samplingDefaults.topK ?? 0;
  const out: SamplingParams[] = [];
  for (let i = 0; i < n; i++) {
    out.push({
      temperature: req.temperature ?? ctx.samplingDefaults.temperature ?? 1,
      topP: req.top_p ?? ctx.samplingDefaults.topP ?? 1,
      topK: topK < 0 ? 0 : topK,
      minP: req.min_p ?? 0,
      presencePenalty: req.presence_penalty ?? 0,
      frequencyPenalty: req.frequency_penalty ?? 0,
      repetitionPenalty: req.repetition_penalty ?? ctx.samplingDefaults.repetitionPenalty ?? 1,
      seed: (base + Math.imul(i, 0x9e3779b9)) >>> 0,
      logprobs,
    });
  }
  return out;
}

/**
 * The output budget: max_tokens defaults to (and is capped at) the model's output cap, and must fit
 * in the context with the prompt.
 */
export function resolveMaxTokens(
  ctx: NodeContext,
  promptLength: number,
  requested: number | undefined,
  param: string,
  promptParam: string,
): number {
  if (promptLength >= ctx.maxModelLen) {
    throw new HttpError(
      400,
      `This model's maximum context length is ${ctx.maxModelLen} tokens, but the prompt has ${promptLength} tokens.`,
      { param: promptParam, code: "context_length_exceeded" },
    );
  }
  if (requested === undefined) return Math.min(ctx.maxOutputTokens, ctx.maxModelLen - promptLength);
  // Asking for more than the context holds is a mistake worth reporting; asking for more than the
  // output cap (but within the context) is served up to the cap.
  if (promptLength + requested > ctx.maxModelLen) {
    throw new HttpError(
      400,
      `This model's maximum context length is ${ctx.maxModelLen} tokens. However, you requested ${promptLength + requested} tokens (${promptLength} in the prompt, ${requested} for the completion). Please reduce the prompt or '${param}'.`,
      { param, code: "context_length_exceeded" },
    );
  }
  return Math.min(requested, ctx.maxOutputTokens);
}

export function newId(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().replace(/-/g, "")}`;
}
