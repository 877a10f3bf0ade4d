/**
 * What a request may constrain its output to, as one plain value: the HTTP layer turns OpenAI's
 * `response_format`, forced tool calls and vLLM's `structured_outputs` into a ConstraintSpec, and
 * the grammar compiler turns a spec into a compiled grammar (cached by the spec's hash).
 */
export type ConstraintSpec =
  /** Any JSON object (OpenAI `json_object`). */
  | { kind: "json_object" }
  /** JSON valid against a schema (already checked by `checkJsonSchema`). */
  | { kind: "json_schema"; schema: unknown }
  /** Text matching a regular expression (vLLM `structured_outputs.regex`). */
  | { kind: "regex"; pattern: string }
  /** Exactly one of these strings (vLLM `structured_outputs.choice`). */
  | { kind: "choice"; choices: string[] }
  /** An EBNF/GBNF grammar with a `root` rule (vLLM `structured_outputs.grammar`). */
  | { kind: "grammar"; grammar: string }
  /**
   * Llama 3.1 JSON tool calls, `{"name": "fn", "parameters": {...}}`, one of `tools` (the ones a
   * named tool_choice allows, or all of them for "required"); `parameters` valid for that tool's schema.
   */
  | { kind: "tool_call"; tools: Array<{ name: string; parameters: unknown }> };

/** A user mistake in a constraint: becomes a 400 naming `param` (or another status, e.g. 503 when the grammar threads are all busy). */
export class ConstraintError extends Error {
  constructor(
    message: string,
    readonly param: string,
    readonly code: string = "invalid_constraint",
    readonly status: 400 | 503 = 400,
  ) {
    super(message);
    this.name = "ConstraintError";
  }
}
