import type { Tool, ToolCall } from "@seventy/sdk/protocol";

/**
 * Llama 3.1's JSON tool calls: with tools in the chat template, the model answers a call as
 * `{"name": "fn", "parameters": {...}}` (several separated by ";"), possibly after <|python_tag|>
 * (a special token, so already gone from the decoded text). Anything else is plain content.
 */
export function parseToolCalls(text: string, tools: readonly Tool[], makeId: () => string): ToolCall[] | null {
  const trimmed = text.trim();
  if (!trimmed.startsWith("{")) return null;
  const names = new Set(tools.map((t) => t.function.name));
  const calls: ToolCall[] = [];
  for (const part of splitTopLevel(trimmed)) {
    let obj: unknown;
    try {
      obj = JSON.parse(part);
    } catch {
      return null;
    }
    if (!obj || typeof obj !== "object" || Array.isArray(obj)) return null;
    const { name, parameters, arguments: args } = obj as { name?: unknown; parameters?: unknown; arguments?: unknown };
    if (typeof name !== "string" || !names.has(name)) return null;
    const params = parameters ?? args ?? {};
    calls.push({
      id: makeId(),
      type: "function",
      function: { name, arguments: typeof params === "string" ? params : JSON.stringify(params) },
    });
  }
  return calls.length > 0 ? calls : null;
}

/** Splits `{...}; {...}` at top-level semicolons, ignoring those inside strings or braces. */
function splitTopLevel(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let inString = false;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (inString) {
      if (ch === "\\") i++;
      else if (ch === '"') inString = false;
    } else if (ch === '"') inString = true;
    else if (ch === "{" || ch === "[") depth++;
    else if (ch === "}" || ch === "]") depth--;
    else if (ch === ";" && depth === 0) {
      parts.push(text.slice(start, i).trim());
      start = i + 1;
    }
  }
  const last = text.slice(start).trim();
  if (last) parts.push(last);
  return parts;
}
