import type { InputItem, ResponseItem } from "@seventy/sdk/protocol";
import { hashString } from "../pool/router";

const itemId = (prefix: string) => `${prefix}_${crypto.randomUUID().replace(/-/g, "")}`;

function text(content: string | Array<{ text?: string; refusal?: string }>): string {
  if (typeof content === "string") return content;
  let out = "";
  for (const p of content) out += p.text ?? p.refusal ?? "";
  return out;
}

/**
 * A request's input as stored and listed by `input_items`: every item gets an id and a status, a
 * string becomes a user message, and content becomes text parts.
 */
export function storedItems(input: string | InputItem[]): ResponseItem[] {
  if (typeof input === "string") {
    return [{ type: "message", id: itemId("msg"), role: "user", status: "completed", content: [{ type: "input_text", text: input }] }];
  }
  return input.map((item): ResponseItem => {
    switch (item.type) {
      case "function_call":
        return { type: "function_call", id: item.id ?? itemId("fc"), call_id: item.call_id, name: item.name, arguments: item.arguments, status: "completed" };
      case "function_call_output":
        return { type: "function_call_output", id: item.id ?? itemId("fco"), call_id: item.call_id, output: text(item.output), status: "completed" };
      default: {
        const id = item.id ?? itemId("msg");
        if (item.role === "assistant") {
          return { type: "message", id, role: "assistant", status: "completed", content: [{ type: "output_text", text: text(item.content), annotations: [] }] };
        }
        return { type: "message", id, role: item.role, status: "completed", content: [{ type: "input_text", text: text(item.content) }] };
      }
    }
  });
}

/**
 * Prefix affinity for a conversation: the instructions and the items up to and including the first
 * user message, cut at `maxChars` — the same head on every turn, so later turns (sent whole or by
 * previous_response_id) land on the node that has it cached.
 */
export function responsesPrefixHash(instructions: string | undefined, items: ResponseItem[], maxChars: number): number {
  let head = instructions === undefined ? "" : `system\u0000${instructions}\u0001`;
  for (const item of items) {
    if (head.length >= maxChars) break;
    if (item.type !== "message") {
      head += `${item.type}\u0000${item.type === "function_call" ? item.arguments : item.output}\u0001`;
      continue;
    }
    head += `${item.role}\u0000${text(item.content)}\u0001`;
    if (item.role === "user") break;
  }
  return hashString(head.length > maxChars ? head.slice(0, maxChars) : head);
}
