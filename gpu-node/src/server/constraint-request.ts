import { ConstraintError, constraintSpecFor, type ConstraintFields, type ConstraintSpec, type GrammarConstraint } from "../structured/index.js";
import type { NodeContext } from "./context.js";
import { HttpError } from "./http-error.js";

/** What a route hands to its Generation for constrained decoding. */
export interface PreparedConstraints {
  /** One grammar per choice; undefined for free text. */
  constraints?: GrammarConstraint[];
  /** The output is forced to be tool calls (tool_choice "required" or a named function). */
  forcedToolCall: boolean;
}

/**
 * The request's constraint fields (response_format, structured_outputs, forced tool_choice) as
 * compiled grammars for `n` choices. Every mistake is a 400 naming the field.
 */
export async function prepareConstraints(ctx: NodeContext, fields: ConstraintFields, n: number): Promise<PreparedConstraints> {
  const found = wrap(() => constraintSpecFor(fields));
  if (!found) return { forcedToolCall: false };
  return { constraints: await constraintsFor(ctx, found.spec, found.param, n), forcedToolCall: found.spec.kind === "tool_call" };
}

/** `n` grammars for one spec, for routes that build the spec themselves (e.g. from `text.format`). */
export async function constraintsFor(ctx: NodeContext, spec: ConstraintSpec, param: string, n: number): Promise<GrammarConstraint[]> {
  if (!ctx.structured) {
    throw new HttpError(400, "Constrained decoding needs a byte-level BPE tokenizer; this model's tokenizer is not one.", {
      param,
      code: "unsupported_value",
    });
  }
  const structured = ctx.structured;
  return wrapAsync(() => structured.constraints(spec, param, n));
}

function toHttp(err: unknown): never {
  if (err instanceof ConstraintError) {
    // 503: every grammar thread is busy with live sequences; one frees up as they finish.
    throw new HttpError(err.status, err.message, { param: err.param, code: err.code, ...(err.status === 503 ? { headers: { "retry-after": "1" } } : {}) });
  }
  throw err;
}

function wrap<T>(f: () => T): T {
  try {
    return f();
  } catch (err) {
    return toHttp(err);
  }
}

async function wrapAsync<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    return toHttp(err);
  }
}
