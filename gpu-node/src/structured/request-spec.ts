import type { ResponseFormat, StructuredOutputs, Tool } from "@seventy/sdk/protocol";
import { ConstraintError, type ConstraintSpec } from "./spec.js";

type ToolChoice = "none" | "auto" | "required" | { type: "function"; function: { name: string } };

/** The request fields that can constrain the output (chat has all four, completions the first two). */
export interface ConstraintFields {
  response_format?: ResponseFormat;
  structured_outputs?: StructuredOutputs;
  tools?: Tool[];
  tool_choice?: ToolChoice;
}

export interface RequestConstraint {
  spec: ConstraintSpec;
  /** The request field it came from, named in errors. */
  param: string;
}

/**
 * The constraint a request asks for, or null for free text (including tool_choice "auto", where
 * the model decides between text and a call).
 * @throws ConstraintError when fields conflict or a named tool does not exist.
 */
export function constraintSpecFor(req: ConstraintFields): RequestConstraint | null {
  const found: RequestConstraint[] = [];
  const fromFormat = req.response_format ? constraintSpecFromFormat(req.response_format, "response_format") : null;
  if (fromFormat) found.push({ spec: fromFormat, param: "response_format" });
  if (req.structured_outputs) found.push({ spec: fromStructuredOutputs(req.structured_outputs), param: "structured_outputs" });
  const toolSpec = forcedToolCall(req.tools ?? [], req.tool_choice);
  if (toolSpec) found.push({ spec: toolSpec, param: "tool_choice" });
  if (found.length > 1) {
    throw new ConstraintError(`${found.map((f) => `'${f.param}'`).join(" and ")} cannot be combined: each constrains the whole output.`, found[1]!.param, "invalid_value");
  }
  return found[0] ?? null;
}

/**
 * A response_format-like value (`{type: "text" | "json_object" | "json_schema", ...}`) as a
 * constraint; null for plain text. Other routes (e.g. the Responses API's `text.format`, whose
 * json_schema members sit at the top level) can pass their format here.
 */
export function constraintSpecFromFormat(
  format: { type: string; json_schema?: { schema?: unknown }; schema?: unknown },
  param: string,
): ConstraintSpec | null {
  switch (format.type) {
    case "text":
      return null;
    case "json_object":
      return { kind: "json_object" };
    case "json_schema": {
      const schema = format.json_schema?.schema ?? format.schema;
      return schema === undefined ? { kind: "json_object" } : { kind: "json_schema", schema };
    }
    default:
      throw new ConstraintError(`${param}.type '${format.type}' is not supported.`, param, "invalid_value");
  }
}

function fromStructuredOutputs(so: StructuredOutputs): ConstraintSpec {
  if (so.json !== undefined) {
    let schema: unknown = so.json;
    if (typeof schema === "string") {
      try {
        schema = JSON.parse(schema);
      } catch {
        throw new ConstraintError("structured_outputs.json must be a JSON schema (object or JSON text).", "structured_outputs.json");
      }
    }
    const any = schema === true || (typeof schema === "object" && schema !== null && Object.keys(schema).length === 0);
    return any ? { kind: "json_object" } : { kind: "json_schema", schema };
  }
  if (so.regex !== undefined) return { kind: "regex", pattern: so.regex };
  if (so.choice !== undefined) return { kind: "choice", choices: so.choice };
  return { kind: "grammar", grammar: so.grammar! };
}

function forcedToolCall(tools: Tool[], choice: ToolChoice | undefined): ConstraintSpec | null {
  if (choice === undefined || choice === "auto" || choice === "none") return null;
  if (tools.length === 0) throw new ConstraintError("tool_choice requires 'tools'.", "tool_choice", "invalid_value");
  const pick =
    choice === "required"
      ? tools
      : tools.filter((t) => t.function.name === choice.function.name);
  if (pick.length === 0) {
    throw new ConstraintError(`tool_choice names '${(choice as { function: { name: string } }).function.name}', which is not in 'tools'.`, "tool_choice", "invalid_value");
  }
  return { kind: "tool_call", tools: pick.map((t) => ({ name: t.function.name, parameters: t.function.parameters ?? { type: "object" } })) };
}
